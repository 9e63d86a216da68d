//! A global allocator that counts the allocations each thread makes, for tests and benchmarks
//! that show a path allocates nothing. Declare it in the test or bench binary:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: inferscope_testkit::alloc::Counting = inferscope_testkit::alloc::Counting;
//! ```
#![allow(unsafe_code)] // a GlobalAlloc wrapper is unsafe by definition; it only counts and forwards.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator, counting allocations and reallocations per thread.
#[derive(Debug, Clone, Copy)]
pub struct Counting;

thread_local! {
    /// Per thread: the harness and runtimes allocate on their own threads at any moment.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: during thread teardown the slot may be gone; those allocations are not ours.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// Allocations made by this thread so far (with [`Counting`] as the global allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for dealloc, and new_size is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
