//! Table-driven tests for W3C Trace Context Level 1, built from the examples in the
//! specification (sections 3.2 and 3.3) and the cases of the W3C test suite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use inferscope_core::trace_context::{
    TRACE_HEADERS, TraceHeaders, TraceState, TraceparentError as E, contains_trace_headers,
    extract_trace_context, extract_trace_headers, fuzz_check, inject, log_tracing_disabled_warning,
    parse_traceparent,
};
use inferscope_core::{SpanContext, SpanId, TraceFlags, TraceId};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[test]
fn traceparent_table() {
    let long_future = format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like");
    /// (input, Ok((version, sampled)) or the error)
    type Case = (String, Result<(u8, bool), E>);
    let cases: Vec<Case> = [
        // valid, from the specification
        (format!("00-{TRACE}-{PARENT}-01"), Ok((0, true))),
        (format!("00-{TRACE}-{PARENT}-00"), Ok((0, false))),
        // unknown flags are tolerated; only `sampled` is read
        (format!("00-{TRACE}-{PARENT}-09"), Ok((0, true))),
        (format!("00-{TRACE}-{PARENT}-02"), Ok((0, false))),
        // optional whitespace around the value
        (format!("  00-{TRACE}-{PARENT}-01\t"), Ok((0, true))),
        // future versions: parsed forward-compatibly
        (format!("cc-{TRACE}-{PARENT}-01"), Ok((0xcc, true))),
        (long_future.clone(), Ok((0xcc, true))),
        (format!("01-{TRACE}-{PARENT}-00-"), Ok((1, false))),
        // invalid
        (String::new(), Err(E::TooShort)),
        (format!("00-{TRACE}-{PARENT}-0"), Err(E::TooShort)),
        (
            format!("00-{TRACE}-{PARENT}-01-"),
            Err(E::WrongLengthForVersion00),
        ),
        (
            format!("00-{TRACE}-{PARENT}-01x"),
            Err(E::WrongLengthForVersion00),
        ),
        (
            format!("cc-{TRACE}-{PARENT}-01.what"),
            Err(E::BadFutureVersionSuffix),
        ),
        (format!("ff-{TRACE}-{PARENT}-01"), Err(E::ForbiddenVersion)),
        (format!("0x-{TRACE}-{PARENT}-01"), Err(E::BadVersion)),
        (format!(".0-{TRACE}-{PARENT}-01"), Err(E::BadVersion)),
        (format!("0A-{TRACE}-{PARENT}-01"), Err(E::BadVersion)),
        (format!("00_{TRACE}-{PARENT}-01"), Err(E::BadSeparator)),
        (format!("00-{TRACE}_{PARENT}-01"), Err(E::BadSeparator)),
        (format!("00-{TRACE}-{PARENT}_01"), Err(E::BadSeparator)),
        (
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
            Err(E::BadTraceId),
        ),
        (
            format!("00-{}-{PARENT}-01", "0".repeat(32)),
            Err(E::ZeroTraceId),
        ),
        (
            format!("00-4bf92f3577b34da6a3ce929d0e0e473g-{PARENT}-01"),
            Err(E::BadTraceId),
        ),
        (
            format!("00-{TRACE}-{}-01", PARENT.to_uppercase()),
            Err(E::BadParentId),
        ),
        (
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
            Err(E::ZeroParentId),
        ),
        (format!("00-{TRACE}-{PARENT}-0x"), Err(E::BadFlags)),
        (format!("00-{TRACE}-{PARENT}-.1"), Err(E::BadFlags)),
        (format!("00-{TRACE}-{PARENT}-1F"), Err(E::BadFlags)),
        // a space inside the value is not whitespace around it
        (
            format!("00-{TRACE}- {PARENT}-01"),
            Err(E::WrongLengthForVersion00),
        ),
        (
            format!("00-{TRACE}- {}-01", &PARENT[1..]),
            Err(E::BadParentId),
        ),
    ]
    .into_iter()
    .collect();
    for (input, want) in cases {
        let got = parse_traceparent(&input).map(|tp| {
            assert_eq!(tp.trace_id, TraceId::from_hex(TRACE).unwrap(), "{input}");
            assert_eq!(tp.parent_id, SpanId::from_hex(PARENT).unwrap(), "{input}");
            (tp.version, tp.flags.is_sampled())
        });
        assert_eq!(got, want, "traceparent {input:?}");
    }
}

#[test]
fn traceparent_formats_version_00_with_only_the_sampled_flag() {
    let ctx = SpanContext {
        trace_id: TraceId::from_hex(TRACE).unwrap(),
        span_id: SpanId::from_hex(PARENT).unwrap(),
        flags: TraceFlags(0x09),
        ..SpanContext::default()
    };
    assert_eq!(&*ctx.traceparent(), format!("00-{TRACE}-{PARENT}-01"));
    let ctx = SpanContext {
        flags: TraceFlags(0x02),
        ..ctx
    };
    assert_eq!(&*ctx.traceparent(), format!("00-{TRACE}-{PARENT}-00"));
}

#[test]
fn tracestate_table() {
    let key256 = format!("a{}", "b".repeat(255));
    let key257 = format!("a{}", "b".repeat(256));
    let tenant241 = format!("1{}", "t".repeat(240));
    let value256 = "v".repeat(256);
    let cases: Vec<(String, &str)> = vec![
        // from the specification
        (
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        ),
        ("congo=t61rcWkgMzE".into(), "congo=t61rcWkgMzE"),
        (
            "vendorname1=opaqueValue1 , vendorname2=opaqueValue2".into(),
            "vendorname1=opaqueValue1,vendorname2=opaqueValue2",
        ),
        (
            "fw529a3039@dt=FWzN,congo=lZWRzIHRoZSBw".into(),
            "fw529a3039@dt=FWzN,congo=lZWRzIHRoZSBw",
        ),
        // empty members are skipped
        ("foo=1,,bar=2, ,".into(), "foo=1,bar=2"),
        ("".into(), ""),
        // key grammar
        ("Foo=1,foo=2".into(), "foo=2"),
        ("1foo=1".into(), ""),
        ("foo.bar=1".into(), ""),
        ("foo_-*/9=1".into(), "foo_-*/9=1"),
        (format!("{key256}=1"), "__key256__"),
        (format!("{key257}=1"), ""),
        (format!("{tenant241}@sys=1"), "__tenant241__"),
        (format!("1{}@sys=1", "t".repeat(241)), ""),
        ("t@abcdefghijklmn=1".into(), "t@abcdefghijklmn=1"),
        ("t@abcdefghijklmno=1".into(), ""),
        ("t@1sys=1".into(), ""),
        ("@sys=1".into(), ""),
        // value grammar
        ("foo= leading space ok".into(), "foo= leading space ok"),
        ("foo=trailing ".into(), "foo=trailing"), // trailing OWS belongs to the list
        ("foo=a=b".into(), ""),
        ("foo=".into(), ""),
        ("foo".into(), ""),
        ("foo=\u{e9}".into(), ""),
        ("foo=\x7f".into(), ""),
        (format!("foo={value256}"), "__value256__"),
        (format!("foo={value256}v"), ""),
        // invalid members are dropped, the rest kept
        ("a=1,BAD=2,b=3".into(), "a=1,b=3"),
        // a repeated key keeps its first (most recent) member
        ("a=1,b=2,a=3".into(), "a=1,b=2"),
    ];
    for (input, want) in cases {
        let want = match want {
            "__key256__" => format!("{key256}=1"),
            "__tenant241__" => format!("{tenant241}@sys=1"),
            "__value256__" => format!("foo={value256}"),
            w => w.to_owned(),
        };
        let got = TraceState::parse([input.as_str()]);
        assert_eq!(
            got.header_value().unwrap_or(""),
            want,
            "tracestate {input:?}"
        );
    }
}

#[test]
fn tracestate_keeps_at_most_32_members() {
    let members: Vec<String> = (0..40).map(|i| format!("k{i}=v{i}")).collect();
    let state = TraceState::parse([members.join(",").as_str()]);
    assert_eq!(state.members().count(), 32);
    assert_eq!(state.members().next(), Some(("k0", "v0")));
    assert_eq!(state.members().last(), Some(("k31", "v31")));
}

#[test]
fn tracestate_over_512_characters_drops_long_members_first() {
    let long = format!("long={}", "x".repeat(200));
    let shorts: Vec<String> = (0..30)
        .map(|i| format!("s{i:02}={}", "y".repeat(10)))
        .collect();
    let mut all = vec![long];
    all.extend(shorts);
    let state = TraceState::parse([all.join(",").as_str()]);
    let v = state.header_value().unwrap();
    assert!(v.len() <= 512, "{}", v.len());
    assert!(state.get("long").is_none(), "the long member goes first");
    assert_eq!(state.get("s00"), Some("yyyyyyyyyy"));
}

#[test]
fn tracestate_with_puts_the_new_member_first() {
    let state = TraceState::parse(["a=1,b=2"]);
    let state = state.with("b", "3").unwrap();
    assert_eq!(state.header_value(), Some("b=3,a=1"));
    assert!(state.with("Bad", "1").is_none());
}

#[test]
fn extraction_is_case_insensitive_and_joins_tracestate_lines() {
    let headers = vec![
        ("TraceParent", format!("00-{TRACE}-{PARENT}-01")),
        ("TRACESTATE", "rojo=00f067aa0ba902b7".to_owned()),
        ("tracestate", "congo=t61rcWkgMzE".to_owned()),
    ];
    let ctx = extract_trace_context(&headers).unwrap();
    assert_eq!(ctx.trace_id, TraceId::from_hex(TRACE).unwrap());
    assert_eq!(ctx.span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(ctx.is_sampled() && ctx.remote);
    assert_eq!(
        ctx.state.header_value(),
        Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    );

    let mut map = http::HeaderMap::new();
    map.insert(
        "traceparent",
        format!("00-{TRACE}-{PARENT}-00").parse().unwrap(),
    );
    let ctx = extract_trace_context(&map).unwrap();
    assert!(!ctx.is_sampled());
    assert!(ctx.state.is_empty());
}

#[test]
fn invalid_or_repeated_traceparent_starts_a_new_trace() {
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("tracestate", "a=1".into())],
        vec![("traceparent", "garbage".into())],
        vec![("traceparent", format!("00-{}-{PARENT}-01", "0".repeat(32)))],
        vec![
            ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
            ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
        ],
    ];
    for headers in cases {
        assert_eq!(extract_trace_context(&headers), None, "{headers:?}");
    }
}

#[test]
fn vllm_helper_equivalents() {
    assert_eq!(TRACE_HEADERS, ["traceparent", "tracestate"]);
    let none: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    assert!(!contains_trace_headers(&none));
    assert_eq!(extract_trace_headers(&none), TraceHeaders::default());

    // vLLM compares case-sensitively; inferscope does not.
    let headers = vec![
        ("TraceState", "a=1"),
        ("X-Other", "y"),
        ("tracestate", "b=2"),
    ];
    assert!(contains_trace_headers(&headers));
    let found = extract_trace_headers(&headers);
    assert_eq!(found.traceparent, None);
    assert_eq!(found.tracestate.as_deref(), Some("a=1,b=2"));
    assert_eq!(
        found.iter().collect::<Vec<_>>(),
        [("tracestate", "a=1,b=2")]
    );

    let mut map = std::collections::HashMap::new();
    map.insert("TRACEPARENT".to_owned(), format!("00-{TRACE}-{PARENT}-01"));
    assert!(contains_trace_headers(&map));
    assert!(extract_trace_context(&map).is_some());
}

#[test]
fn disabled_warning_is_logged_once_per_process() {
    let first = log_tracing_disabled_warning();
    let second = log_tracing_disabled_warning();
    // Another test in this binary may have called it first; never twice.
    assert!(!second);
    let _ = first;
}

#[test]
fn inject_replaces_stale_headers_in_any_case() {
    let ctx = SpanContext {
        trace_id: TraceId::from_hex(TRACE).unwrap(),
        span_id: SpanId::from_hex("b7ad6b7169203331").unwrap(),
        flags: TraceFlags::SAMPLED,
        state: TraceState::parse(["congo=t61rcWkgMzE"]),
        remote: false,
    };
    let mut headers: Vec<(String, String)> = vec![
        ("TraceParent".into(), "stale".into()),
        ("TRACESTATE".into(), "stale=1".into()),
        ("accept".into(), "*/*".into()),
    ];
    inject(&ctx, &mut headers);
    assert_eq!(
        headers,
        vec![
            ("accept".to_owned(), "*/*".to_owned()),
            (
                "traceparent".to_owned(),
                format!("00-{TRACE}-b7ad6b7169203331-01")
            ),
            ("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned()),
        ]
    );

    let mut map = http::HeaderMap::new();
    map.insert("tracestate", "old=1".parse().unwrap());
    let ctx = SpanContext {
        state: TraceState::EMPTY,
        ..ctx
    };
    inject(&ctx, &mut map);
    assert_eq!(
        map.get("traceparent").unwrap(),
        &format!("00-{TRACE}-b7ad6b7169203331-01")
    );
    assert!(
        map.get("tracestate").is_none(),
        "a stale tracestate must not survive"
    );

    inject(&SpanContext::INVALID, &mut map);
    assert!(map.is_empty());
}

/// The fuzz target's invariants, over a deterministic stream of inputs shaped like headers, so
/// the default test run exercises them too (`fuzz/` runs them coverage-guided).
#[test]
fn fuzz_invariants_hold_on_generated_inputs() {
    let mut rng = fastrand_like(0x5eed);
    let alphabet: &[u8] = b"0123456789abcdefABCDEF-=,@ \t*/_x\xc3\xa9";
    let seeds = [
        format!("00-{TRACE}-{PARENT}-01"),
        format!("cc-{TRACE}-{PARENT}-01-future"),
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned(),
    ];
    for i in 0..50_000 {
        let mut input: Vec<u8> = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..(rng() % 4) {
            let pos = (rng() as usize) % (input.len() + 1);
            let c = alphabet[(rng() as usize) % alphabet.len()];
            match rng() % 3 {
                0 if pos < input.len() => input[pos] = c,
                1 => input.insert(pos, c),
                _ if pos < input.len() => {
                    input.remove(pos);
                }
                _ => {}
            }
        }
        fuzz_check(&input);
    }
}

fn fastrand_like(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
