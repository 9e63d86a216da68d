//! Trace and span identifiers, trace flags, and their random generation.

use std::cell::Cell;
use std::fmt;

thread_local! {
    /// wyrand state (the generator `fastrand` uses), seeded from `fastrand` on first use.
    /// A `const` thread-local `Cell` is one TLS load: the unsampled path draws a trace id and a
    /// span id, and three `fastrand` calls (each a lazily-initialised TLS access) measured
    /// 6–8 ns of a 20 ns budget (BENCHMARKS.md, `record_span/unsampled_root`).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state).wrapping_mul(u128::from(*state ^ 0xe703_7ed1_a0b4_28db));
    ((t >> 64) as u64) ^ (t as u64)
}

/// Draws `N` non-zero random words with one thread-local access.
#[inline]
fn random_words<const N: usize>() -> [u64; N] {
    RNG.with(|cell| {
        let mut state = cell.get();
        if state == 0 {
            state = fastrand::u64(1..);
        }
        let mut out = [0u64; N];
        for w in &mut out {
            *w = wyrand(&mut state);
            while *w == 0 {
                *w = wyrand(&mut state);
            }
        }
        cell.set(state);
        out
    })
}

/// A new trace id and span id for a root span, both valid.
#[inline]
pub fn new_root_ids() -> (TraceId, SpanId) {
    let [a, b, c] = random_words::<3>();
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&a.to_be_bytes());
    t[8..].copy_from_slice(&b.to_be_bytes());
    (TraceId(t), SpanId(c.to_be_bytes()))
}

/// A 16-byte trace id. The all-zero id is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id. The all-zero id is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

/// W3C trace flags. Only [`TraceFlags::SAMPLED`] has a meaning in Trace Context Level 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(pub u8);

impl TraceFlags {
    /// No flag set: not sampled.
    pub const NONE: TraceFlags = TraceFlags(0);
    /// The `sampled` flag.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// These flags with `sampled` set to `sampled` and every other bit cleared, as Level 1
    /// asks of a participant that does not know the other bits.
    pub fn with_sampled(sampled: bool) -> TraceFlags {
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::NONE
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex<const N: usize>(bytes: &[u8], out: &mut [u8; N]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
    }
}

/// Decodes lowercase hex only (W3C Trace Context forbids uppercase).
pub(crate) fn decode_lower_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let hi = lower_hex_digit(*pair.first()?)?;
        let lo = lower_hex_digit(*pair.get(1)?)?;
        *o = (hi << 4) | lo;
    }
    Some(out)
}

pub(crate) fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl TraceId {
    /// The invalid, all-zero id.
    pub const INVALID: TraceId = TraceId([0; 16]);

    /// A new random, valid id.
    pub fn random() -> TraceId {
        new_root_ids().0
    }

    /// Whether the id is not all zeros.
    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }

    /// Parses 32 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<TraceId> {
        decode_lower_hex::<16>(s.as_bytes()).map(TraceId)
    }

    /// The 32 lowercase hex digits, without allocating.
    pub fn to_hex(&self) -> HexBuf<32> {
        let mut out = [0u8; 32];
        write_hex(&self.0, &mut out);
        HexBuf(out)
    }

    /// The low 8 bytes as a big-endian integer, which the ratio sampler compares.
    pub fn low_u64(&self) -> u64 {
        let [.., a, b, c, d, e, f, g, h] = self.0;
        u64::from_be_bytes([a, b, c, d, e, f, g, h])
    }
}

impl SpanId {
    /// The invalid, all-zero id.
    pub const INVALID: SpanId = SpanId([0; 8]);

    /// A new random, valid id.
    #[inline]
    pub fn random() -> SpanId {
        let [w] = random_words::<1>();
        SpanId(w.to_be_bytes())
    }

    /// Whether the id is not all zeros.
    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }

    /// Parses 16 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<SpanId> {
        decode_lower_hex::<8>(s.as_bytes()).map(SpanId)
    }

    /// The 16 lowercase hex digits, without allocating.
    pub fn to_hex(&self) -> HexBuf<16> {
        let mut out = [0u8; 16];
        write_hex(&self.0, &mut out);
        HexBuf(out)
    }
}

/// Lowercase hex digits on the stack; derefs to `str`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexBuf<const N: usize>([u8; N]);

impl<const N: usize> std::ops::Deref for HexBuf<N> {
    type Target = str;
    fn deref(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Display for HexBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(&*t.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(s.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn uppercase_and_wrong_length_are_rejected() {
        assert!(TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736").is_none());
        assert!(SpanId::from_hex("00f067aa0ba902b").is_none());
        assert!(SpanId::from_hex("00f067aa0ba902b7a").is_none());
        assert!(SpanId::from_hex("00f067aa0ba902g7").is_none());
    }

    #[test]
    fn ids_differ_across_threads_and_calls() {
        let here: Vec<_> = (0..100).map(|_| new_root_ids()).collect();
        let there: Vec<_> =
            std::thread::spawn(|| (0..100).map(|_| new_root_ids()).collect::<Vec<_>>())
                .join()
                .unwrap();
        let mut all: Vec<_> = here.iter().chain(&there).map(|(t, _)| *t).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200);
    }

    #[test]
    fn random_ids_are_valid() {
        for _ in 0..1000 {
            assert!(TraceId::random().is_valid());
            assert!(SpanId::random().is_valid());
        }
    }
}
