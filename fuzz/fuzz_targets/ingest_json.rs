//! Engine-span ingest over OTLP/JSON (decoding, vLLM's phases, normalisation, re-encoding)
//! never panics, and derives at most four ordered phases inside their parent.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferscope_gateway::fuzz_ingest_json(data);
});
