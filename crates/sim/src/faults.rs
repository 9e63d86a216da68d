//! Fault injection, from the configuration (every request) or the `x-inferscope-fault` request
//! header (that request). The spec is `key=value` pairs separated by `;`:
//!
//! | key | effect |
//! |---|---|
//! | `status=503` | answer with this status and a vLLM-style error body |
//! | `stall_ms=2000` | wait this long before the first byte of the response |
//! | `close_after=3` | close the connection after 3 events of a stream (or 3 bytes of a body) |
//! | `malformed_after=2` | after 2 events, send one event whose JSON is cut short |
//! | `error_after=2` | after 2 events, the engine fails: vLLM's error event (`data: {"error":…}` then `[DONE]`; an `event: error` for the Messages API) ends the stream |
//! | `split=5` | write every event in 5-byte pieces, each a separate write |
//! | `split=random` | write every event in pieces of 1 to 16 bytes |
//!
//! Example: `x-inferscope-fault: stall_ms=500; split=random; close_after=4`.

use std::time::Duration;

/// The request header that carries a fault spec.
pub const FAULT_HEADER: &str = "x-inferscope-fault";

/// How to split events into writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Pieces of this many bytes.
    Fixed(usize),
    /// Pieces of 1 to 16 bytes, drawn from the request's seed.
    Random,
}

/// A parsed fault spec. The default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSpec {
    /// Answer with this HTTP status.
    pub status: Option<u16>,
    /// Stall before the first byte.
    pub stall: Option<Duration>,
    /// Close the connection after this many events (streams) or bytes (bodies).
    pub close_after: Option<usize>,
    /// Send a truncated event after this many events.
    pub malformed_after: Option<usize>,
    /// End the stream with the engine's error event after this many events.
    pub error_after: Option<usize>,
    /// Split events into several writes.
    pub split: Option<Split>,
}

impl FaultSpec {
    /// Parses `key=value; key=value`.
    pub fn parse(spec: &str) -> Result<FaultSpec, String> {
        let mut f = FaultSpec::default();
        for part in spec.split([';', ',']) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("`{key}` needs a whole number, not `{value}`"))
            };
            match key {
                "status" => {
                    let code = number()?;
                    if !(100..=599).contains(&code) {
                        return Err(format!("status {code} is not an HTTP status"));
                    }
                    f.status = u16::try_from(code).ok();
                }
                "stall_ms" => f.stall = Some(Duration::from_millis(number()?)),
                "close_after" => f.close_after = usize::try_from(number()?).ok(),
                "malformed_after" => f.malformed_after = usize::try_from(number()?).ok(),
                "error_after" => f.error_after = usize::try_from(number()?).ok(),
                "split" if value == "random" => f.split = Some(Split::Random),
                "split" => {
                    let n = number()?;
                    if n == 0 {
                        return Err("split needs at least 1 byte per piece".into());
                    }
                    f.split = usize::try_from(n).ok().map(Split::Fixed);
                }
                _ => return Err(format!("unknown fault `{key}`")),
            }
        }
        Ok(f)
    }

    /// This spec with every fault `other` sets added (`other` wins where both set one).
    pub fn merged(&self, other: &FaultSpec) -> FaultSpec {
        FaultSpec {
            status: other.status.or(self.status),
            stall: other.stall.or(self.stall),
            close_after: other.close_after.or(self.close_after),
            malformed_after: other.malformed_after.or(self.malformed_after),
            error_after: other.error_after.or(self.error_after),
            split: other.split.or(self.split),
        }
    }

    /// Whether nothing is injected.
    pub fn is_empty(&self) -> bool {
        *self == FaultSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let f = FaultSpec::parse(
            "status=503; stall_ms=20, close_after=3;malformed_after=1; split=random",
        )
        .unwrap();
        assert_eq!(f.status, Some(503));
        assert_eq!(f.stall, Some(Duration::from_millis(20)));
        assert_eq!(f.close_after, Some(3));
        assert_eq!(f.malformed_after, Some(1));
        assert_eq!(f.split, Some(Split::Random));
        assert_eq!(
            FaultSpec::parse("split=7").unwrap().split,
            Some(Split::Fixed(7))
        );
        assert!(FaultSpec::parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "status=99",
            "status=abc",
            "split=0",
            "boom=1",
            "close_after",
        ] {
            assert!(FaultSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_wins_over_config() {
        let config = FaultSpec::parse("status=500; stall_ms=5").unwrap();
        let header = FaultSpec::parse("status=429").unwrap();
        let m = config.merged(&header);
        assert_eq!(m.status, Some(429));
        assert_eq!(m.stall, Some(Duration::from_millis(5)));
    }
}
