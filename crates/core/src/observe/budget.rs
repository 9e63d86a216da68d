//! A bound on the bytes held for parsing across every exchange at once.
//!
//! Each body read whole for tracing (a request, a non-streamed response) takes its bytes from
//! one shared budget while it holds them and gives them back when it lets go. A body that does
//! not fit is not parsed (it passes through as it is, and its span says why), so a burst of
//! large bodies cannot grow the process without bound.
//!
//! ```
//! use std::sync::Arc;
//! use inferscope_core::observe::budget::ParseBudget;
//!
//! let budget = Arc::new(ParseBudget::new(100));
//! let held = budget.take(60).unwrap();
//! assert!(budget.take(60).is_none()); // over the bound
//! drop(held);
//! assert!(budget.take(60).is_some());
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes that may be held for parsing at once.
#[derive(Debug)]
pub struct ParseBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ParseBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> ParseBudget {
        ParseBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes, or nothing if they do not fit.
    pub fn take(self: &Arc<Self>, n: usize) -> Option<Held> {
        let mut held = self.hold();
        held.grow(n).then_some(held)
    }

    /// A hold of no bytes yet, to [grow](Held::grow) as bytes arrive.
    pub fn hold(self: &Arc<Self>) -> Held {
        Held {
            budget: self.clone(),
            n: 0,
        }
    }

    fn try_add(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes taken from a [`ParseBudget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<ParseBudget>,
    n: usize,
}

impl Held {
    /// Takes `n` more bytes; `false` (and nothing taken) if they do not fit.
    pub fn grow(&mut self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        if self.budget.try_add(n) {
            self.n += n;
            true
        } else {
            false
        }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_grows_and_gives_back() {
        let b = Arc::new(ParseBudget::new(10));
        let mut h = b.take(4).unwrap();
        assert!(h.grow(6));
        assert!(!h.grow(1));
        assert_eq!((h.len(), b.used()), (10, 10));
        drop(h);
        assert_eq!(b.used(), 0);
        assert!(b.take(11).is_none());
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn threads_never_overdraw() {
        let b = Arc::new(ParseBudget::new(1000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(h) = b.take(300) {
                            assert!(b.used() <= 1000);
                            drop(h);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.used(), 0);
    }
}
