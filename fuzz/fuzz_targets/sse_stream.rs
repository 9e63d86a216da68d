//! The SSE reader and the stream observer (with and without removing the added usage chunk)
//! never panic, and find the same events, forward the same bytes and read the same facts
//! whether the stream comes whole or in pieces.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferscope_core::observe::response::fuzz_check(data);
});
