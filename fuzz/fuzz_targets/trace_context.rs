//! `traceparent` / `tracestate` parsing and header extraction never panic, never accept an
//! all-zero id, round-trip, and keep `tracestate` within its limits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferscope_core::trace_context::fuzz_check(data);
});
