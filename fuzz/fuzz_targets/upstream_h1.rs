//! The gateway's upstream HTTP/1.1 response reader (head, framing, chunked decoding) never
//! panics, never decodes more than arrived, and decodes the same whether bytes come whole or
//! in pieces.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferscope_gateway::fuzz_upstream_h1(data);
});
