//! Head sampling, as `OTEL_TRACES_SAMPLER` describes it.

use crate::ids::TraceId;
use crate::trace_context::SpanContext;

/// A sampler: decides, when a span starts, whether it is recorded and exported.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Sample everything (`always_on`).
    AlwaysOn,
    /// Sample nothing (`always_off`).
    AlwaysOff,
    /// Sample a deterministic fraction of trace ids (`traceidratio`), in `[0, 1]`.
    TraceIdRatio(f64),
    /// Follow the parent's `sampled` flag; use the inner sampler for roots
    /// (`parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`).
    ParentBased(Box<Sampler>),
}

impl Default for Sampler {
    /// `parentbased_always_on`, the OpenTelemetry default.
    fn default() -> Sampler {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    }
}

/// Why `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// The sampler name is not one inferscope knows.
    #[error(
        "unknown sampler {0:?} (expected always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio)"
    )]
    UnknownSampler(String),
    /// The ratio is not a number in [0, 1].
    #[error("sampler argument {0:?} is not a number between 0 and 1")]
    BadRatio(String),
}

impl Sampler {
    /// Builds a sampler from the `OTEL_TRACES_SAMPLER` name and `OTEL_TRACES_SAMPLER_ARG`.
    /// The argument is read only by the ratio samplers; absent, the ratio is 1.0.
    pub fn from_name(name: &str, arg: Option<&str>) -> Result<Sampler, SamplerError> {
        let ratio = || -> Result<f64, SamplerError> {
            match arg.map(str::trim) {
                None | Some("") => Ok(1.0),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| SamplerError::BadRatio(a.to_owned())),
            }
        };
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio(ratio()?),
            "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(ratio()?)))
            }
            _ => return Err(SamplerError::UnknownSampler(name.to_owned())),
        })
    }

    /// Whether a span with this parent, in this trace, is sampled. Allocates nothing.
    pub fn should_sample(&self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio(ratio) => ratio_accepts(*ratio, trace_id),
            Sampler::ParentBased(root) => match parent.filter(|p| p.is_valid()) {
                Some(p) => p.is_sampled(),
                None => root.should_sample(None, trace_id),
            },
        }
    }

    /// A short description, e.g. `parentbased_traceidratio(0.25)`.
    pub fn describe(&self) -> String {
        match self {
            Sampler::AlwaysOn => "always_on".into(),
            Sampler::AlwaysOff => "always_off".into(),
            Sampler::TraceIdRatio(r) => format!("traceidratio({r})"),
            Sampler::ParentBased(root) => format!("parentbased_{}", root.describe()),
        }
    }
}

/// The ratio decision is a function of the trace id alone, so every participant that uses the
/// same rule agrees: the low 63 bits of the trace id's last 8 bytes are compared with
/// `ratio × 2⁶³` (as opentelemetry-java and opentelemetry-rust do).
fn ratio_accepts(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 || ratio.is_nan() {
        return false;
    }
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    (trace_id.low_u64() >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SpanId, TraceFlags};

    fn parent(sampled: bool) -> SpanContext {
        SpanContext {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            flags: TraceFlags::with_sampled(sampled),
            remote: true,
            ..SpanContext::default()
        }
    }

    #[test]
    fn names() {
        let cases = [
            ("always_on", None, Sampler::AlwaysOn),
            ("ALWAYS_OFF", None, Sampler::AlwaysOff),
            ("traceidratio", Some("0.5"), Sampler::TraceIdRatio(0.5)),
            ("traceidratio", None, Sampler::TraceIdRatio(1.0)),
            (
                "parentbased_traceidratio",
                Some(" 0.25 "),
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.25))),
            ),
            (
                "parentbased_always_off",
                Some("ignored"),
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            ),
        ];
        for (name, arg, want) in cases {
            assert_eq!(Sampler::from_name(name, arg).unwrap(), want, "{name}");
        }
        assert!(matches!(
            Sampler::from_name("jaeger_remote", None),
            Err(SamplerError::UnknownSampler(_))
        ));
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            assert!(
                matches!(
                    Sampler::from_name("traceidratio", Some(bad)),
                    Err(SamplerError::BadRatio(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn parent_based_follows_the_parent() {
        let s = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        assert!(s.should_sample(Some(&parent(true)), TraceId([1; 16])));
        assert!(!s.should_sample(Some(&parent(false)), TraceId([1; 16])));
        assert!(!s.should_sample(None, TraceId([1; 16])));
        let s = Sampler::default();
        assert!(!s.should_sample(Some(&parent(false)), TraceId([1; 16])));
        assert!(s.should_sample(None, TraceId([1; 16])));
    }

    #[test]
    fn ratio_is_close_to_the_fraction_asked() {
        for ratio in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let s = Sampler::TraceIdRatio(ratio);
            let n = 20_000;
            let hits = (0..n)
                .filter(|_| s.should_sample(None, TraceId::random()))
                .count();
            let got = hits as f64 / n as f64;
            assert!((got - ratio).abs() < 0.02, "ratio {ratio} sampled {got}");
        }
    }

    #[test]
    fn ratio_is_a_function_of_the_trace_id() {
        let s = Sampler::TraceIdRatio(0.5);
        for _ in 0..100 {
            let id = TraceId::random();
            assert_eq!(s.should_sample(None, id), s.should_sample(None, id));
        }
    }
}
