//! The `traceparent` header (W3C Trace Context Level 1, section 3.2).
//!
//! ```text
//! version "-" trace-id "-" parent-id "-" trace-flags
//! 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//! ```
//!
//! Rules applied, from the specification:
//! - every field is lowercase hex; uppercase is invalid;
//! - version `ff` is invalid; version `00` must be exactly 55 characters;
//! - a higher version is parsed forward-compatibly: the first 55 characters are read as
//!   version 00, and anything after them must start with `-`;
//! - an all-zero trace id or parent id is invalid.

use crate::ids::{SpanId, TraceFlags, TraceId, decode_lower_hex};

/// The parts of a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    /// The version the sender wrote.
    pub version: u8,
    /// The trace id.
    pub trace_id: TraceId,
    /// The caller's span id.
    pub parent_id: SpanId,
    /// The flags as sent.
    pub flags: TraceFlags,
}

/// Why a `traceparent` value is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceparentError {
    /// Fewer than 55 characters.
    #[error("traceparent is shorter than 55 characters")]
    TooShort,
    /// Version 00 with characters after the flags.
    #[error("version 00 traceparent must be exactly 55 characters")]
    WrongLengthForVersion00,
    /// A higher version whose extra data does not start with `-`.
    #[error("data after the flags of a future version must start with '-'")]
    BadFutureVersionSuffix,
    /// The version is not two lowercase hex digits.
    #[error("version is not two lowercase hex digits")]
    BadVersion,
    /// Version `ff`.
    #[error("version ff is invalid")]
    ForbiddenVersion,
    /// A separator is not `-`.
    #[error("fields must be separated by '-'")]
    BadSeparator,
    /// The trace id is not 32 lowercase hex digits.
    #[error("trace-id is not 32 lowercase hex digits")]
    BadTraceId,
    /// The trace id is all zeros.
    #[error("trace-id is all zeros")]
    ZeroTraceId,
    /// The parent id is not 16 lowercase hex digits.
    #[error("parent-id is not 16 lowercase hex digits")]
    BadParentId,
    /// The parent id is all zeros.
    #[error("parent-id is all zeros")]
    ZeroParentId,
    /// The flags are not two lowercase hex digits.
    #[error("trace-flags are not two lowercase hex digits")]
    BadFlags,
}

/// Length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// Parses a `traceparent` value. Surrounding spaces and tabs (optional whitespace in HTTP) are
/// ignored.
pub fn parse_traceparent(value: &str) -> Result<Traceparent, TraceparentError> {
    let v = value.trim_matches([' ', '\t']).as_bytes();
    if v.len() < TRACEPARENT_LEN {
        return Err(TraceparentError::TooShort);
    }
    let (head, rest) = v.split_at(TRACEPARENT_LEN);
    let version = decode_lower_hex::<1>(head.get(0..2).unwrap_or_default())
        .map(|[b]| b)
        .ok_or(TraceparentError::BadVersion)?;
    if version == 0xff {
        return Err(TraceparentError::ForbiddenVersion);
    }
    if version == 0 && !rest.is_empty() {
        return Err(TraceparentError::WrongLengthForVersion00);
    }
    if version > 0 && !rest.is_empty() && rest.first() != Some(&b'-') {
        return Err(TraceparentError::BadFutureVersionSuffix);
    }
    if [2usize, 35, 52].iter().any(|&i| head.get(i) != Some(&b'-')) {
        return Err(TraceparentError::BadSeparator);
    }
    let trace_id = decode_lower_hex::<16>(head.get(3..35).unwrap_or_default())
        .map(TraceId)
        .ok_or(TraceparentError::BadTraceId)?;
    if !trace_id.is_valid() {
        return Err(TraceparentError::ZeroTraceId);
    }
    let parent_id = decode_lower_hex::<8>(head.get(36..52).unwrap_or_default())
        .map(SpanId)
        .ok_or(TraceparentError::BadParentId)?;
    if !parent_id.is_valid() {
        return Err(TraceparentError::ZeroParentId);
    }
    let flags = decode_lower_hex::<1>(head.get(53..55).unwrap_or_default())
        .map(|[b]| TraceFlags(b))
        .ok_or(TraceparentError::BadFlags)?;
    Ok(Traceparent {
        version,
        trace_id,
        parent_id,
        flags,
    })
}

/// Formats a version-00 `traceparent` on the stack. Only the `sampled` flag is written,
/// as Level 1 requires of a participant that does not know the other flags.
pub fn format_traceparent(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> TraceparentBuf {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    out[3..35].copy_from_slice(trace_id.to_hex().as_bytes());
    out[36..52].copy_from_slice(span_id.to_hex().as_bytes());
    if flags.is_sampled() {
        out[54] = b'1';
    }
    TraceparentBuf(out)
}

/// A formatted `traceparent` on the stack; derefs to `str`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceparentBuf([u8; TRACEPARENT_LEN]);

impl std::ops::Deref for TraceparentBuf {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for TraceparentBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}
