//! The exchange observer's cost per request: the request body read, a whole chat response
//! read, and a 256-token stream read (strip mode, as the gateway runs it when it adds
//! `include_usage`). Bodies are vLLM 0.32's, as the simulator writes them.
//!
//! `cargo bench -p inferscope-core --bench observe`

use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use inferscope_core::observe::capture::CapturePolicy;
use inferscope_core::observe::request;
use inferscope_core::observe::response::ResponseObserver;
use inferscope_core::observe::route::Api;

const REQUEST: &str = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Write a long story about a lighthouse keeper."}],"max_tokens":16,"ignore_eos":true,"stream":false}"#;

const CHAT: &str = r#"{"id":"chatcmpl-28ed772eaa7cf6f1","object":"chat.completion","created":1796160334,"model":"tiny-llama","choices":[{"index":0,"message":{"role":"assistant","content":" bely start issment str; by 2linklinenhelp matrix data env","refusal":null,"annotations":null,"audio":null,"function_call":null,"reasoning":null},"logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null,"routed_experts":null}],"service_tier":null,"system_fingerprint":"vllm-0.32.0-27997771","usage":{"prompt_tokens":26,"total_tokens":42,"completion_tokens":16,"prompt_tokens_details":null,"completion_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"prompt_text":null,"kv_transfer_params":null,"ec_transfer_params":null,"metrics":null}"#;

const WORDS: [&str; 8] = [
    " by", " system", " kernel", " the", " light", "house", " keeper", ",",
];

/// A 256-token stream in vLLM's bytes, one event per HTTP chunk, with the usage chunk the
/// gateway asks for.
fn stream_events() -> Vec<Bytes> {
    let head = r#"{"id":"chatcmpl-6c4468cdde472955","object":"chat.completion.chunk","created":1796160334,"model":"tiny-llama","choices":[{"index":0,"#;
    let mut out = vec![Bytes::from(format!(
        "data: {head}\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}],\"prompt_token_ids\":null,\"prompt_text\":null}}\n\n"
    ))];
    for i in 0..255 {
        out.push(Bytes::from(format!(
            "data: {head}\"delta\":{{\"content\":\"{}\"}},\"logprobs\":null,\"finish_reason\":null,\"token_ids\":null}}]}}\n\n",
            WORDS[i % WORDS.len()]
        )));
    }
    out.push(Bytes::from(format!(
        "data: {head}\"delta\":{{\"content\":\" end\"}},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null,\"token_ids\":null}}]}}\n\n"
    )));
    out.push(Bytes::from_static(br#"data: {"id":"chatcmpl-6c4468cdde472955","object":"chat.completion.chunk","created":1796160334,"model":"tiny-llama","choices":[],"usage":{"prompt_tokens":26,"total_tokens":282,"completion_tokens":256},"system_fingerprint":"vllm-0.32.0-27997771"}

"#));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

fn observe(c: &mut Criterion) {
    let policy = CapturePolicy::default();
    c.bench_function("request body (chat)", |b| {
        b.iter(|| request::parse(Api::Chat, std::hint::black_box(REQUEST.as_bytes()), &policy))
    });
    let chat = Bytes::from_static(CHAT.as_bytes());
    c.bench_function("whole chat response", |b| {
        b.iter(|| {
            let mut o = ResponseObserver::new(false, false, &policy, 1 << 20);
            let _ = o.on_chunk(chat.clone(), Instant::now());
            let _ = o.on_end();
            o.into_facts()
        })
    });
    let events = stream_events();
    let at = Instant::now();
    c.bench_function("256-token stream (strip mode)", |b| {
        b.iter(|| {
            let mut o = ResponseObserver::new(true, true, &policy, 1 << 20);
            for e in &events {
                let _ = std::hint::black_box(o.on_chunk(e.clone(), at));
            }
            let _ = o.on_end();
            o.into_facts()
        })
    });
}

criterion_group!(benches, observe);
criterion_main!(benches);
