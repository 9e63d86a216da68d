//! The `tracestate` header (W3C Trace Context Level 1, section 3.3).
//!
//! ```text
//! list        = list-member 0*31( OWS "," OWS list-member )
//! list-member = key "=" value / OWS   (empty members are allowed and skipped)
//! key         = simple-key / multi-tenant-key
//! simple-key  = lcalpha 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! multi-tenant-key = tenant-id "@" system-id
//! tenant-id   = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! system-id   = lcalpha 0*13( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
//! value       = 0*255(chr) nblk-chr
//! nblk-chr    = %x21-2B / %x2D-3C / %x3E-7E
//! chr         = %x20 / nblk-chr
//! ```
//!
//! inferscope is lenient where the specification allows a choice: an invalid member is dropped
//! (not the whole header), a repeated key keeps its first (leftmost, most recent) member, and at
//! most 32 members are kept. When the result exceeds 512 characters, members longer than 128
//! characters are dropped first, then members from the right, as section 3.3.1.5 suggests.

use std::sync::Arc;

/// Most members a `tracestate` may hold.
pub const MAX_MEMBERS: usize = 32;
/// The length a participant must be able to propagate.
pub const MAX_LEN: usize = 512;
/// Members longer than this are dropped first when the header is too long.
const LONG_MEMBER: usize = 128;

/// A validated `tracestate`: cheap to clone (a reference count), empty by default.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState(Option<Arc<str>>);

impl TraceState {
    /// The empty trace state.
    pub const EMPTY: TraceState = TraceState(None);

    /// Parses one or more `tracestate` header values (several header lines are one list,
    /// joined in order), dropping what is invalid.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> TraceState {
        let mut members: Vec<&'a str> = Vec::new();
        for value in values {
            for raw in value.split(',') {
                let member = raw.trim_matches([' ', '\t']);
                if member.is_empty() {
                    continue;
                }
                let Some((key, val)) = member.split_once('=') else {
                    tracing::debug!(member, "tracestate: member without '=' dropped");
                    continue;
                };
                if !valid_key(key) || !valid_value(val) {
                    tracing::debug!(member, "tracestate: invalid member dropped");
                    continue;
                }
                if members
                    .iter()
                    .any(|m| m.split_once('=').map(|(k, _)| k) == Some(key))
                {
                    tracing::debug!(key, "tracestate: repeated key dropped");
                    continue;
                }
                members.push(member);
            }
        }
        members.truncate(MAX_MEMBERS);
        if joined_len(&members) > MAX_LEN {
            members.retain(|m| m.len() <= LONG_MEMBER);
            while joined_len(&members) > MAX_LEN {
                members.pop();
            }
        }
        if members.is_empty() {
            TraceState(None)
        } else {
            TraceState(Some(Arc::from(members.join(","))))
        }
    }

    /// The header value, `None` when empty.
    pub fn header_value(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The members, left (most recent) first.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter_map(|m| m.split_once('='))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// A copy with `key=value` as the leftmost member, replacing an earlier member of `key`;
    /// `None` if the key or value is invalid.
    pub fn with(&self, key: &str, value: &str) -> Option<TraceState> {
        if !valid_key(key) || !valid_value(value) {
            return None;
        }
        let new = format!("{key}={value}");
        let rest = self.members().filter(|(k, _)| *k != key).map(|(k, v)| {
            // Re-join; the pieces were validated when parsed.
            let mut s = String::with_capacity(k.len() + 1 + v.len());
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s
        });
        let all: Vec<String> = std::iter::once(new).chain(rest).collect();
        Some(TraceState::parse(all.iter().map(String::as_str)))
    }
}

impl std::fmt::Debug for TraceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.header_value().unwrap_or(""))
    }
}

fn joined_len(members: &[&str]) -> usize {
    members.iter().map(|m| m.len()).sum::<usize>() + members.len().saturating_sub(1)
}

fn key_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// Whether `key` follows the Level 1 key grammar.
pub fn valid_key(key: &str) -> bool {
    let k = key.as_bytes();
    match key.split_once('@') {
        None => {
            matches!(k.first(), Some(b'a'..=b'z'))
                && k.len() <= 256
                && k.iter().all(|&c| key_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            matches!(t.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
                && t.len() <= 241
                && t.iter().all(|&c| key_char(c))
                && matches!(s.first(), Some(b'a'..=b'z'))
                && s.len() <= 14
                && s.iter().all(|&c| key_char(c))
        }
    }
}

fn nblk_chr(c: u8) -> bool {
    matches!(c, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e)
}

/// Whether `value` follows the Level 1 value grammar.
pub fn valid_value(value: &str) -> bool {
    let v = value.as_bytes();
    !v.is_empty()
        && v.len() <= 256
        && v.last().is_some_and(|&c| nblk_chr(c))
        && v.iter().all(|&c| c == b' ' || nblk_chr(c))
}
