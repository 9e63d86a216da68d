//! The request reader and the `include_usage` edit never panic, and an edited body differs
//! from the client's only in the bytes the edit names.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferscope_core::observe::request::fuzz_check(data);
});
