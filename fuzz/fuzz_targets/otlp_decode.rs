//! The OTLP decoder the gateway's engine-span ingest uses (protobuf, JSON, gzip) never panics,
//! stays within its size limit, and re-encodes whatever it accepts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferscope_gateway::fuzz_otlp_decode(data);
});
