//! The GenAI histograms of semantic conventions v1.41.0, with their units and the explicit
//! bucket boundaries the conventions advise.

/// A histogram the conventions define.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram {
    /// The OpenTelemetry metric name, e.g. `gen_ai.client.operation.duration`.
    pub name: &'static str,
    /// The UCUM unit, e.g. `s` or `{token}`.
    pub unit: &'static str,
    /// One line of description.
    pub description: &'static str,
    /// Upper bounds of the explicit buckets, ascending.
    pub buckets: &'static [f64],
}

impl Histogram {
    /// The name in Prometheus text format: dots become underscores and the unit becomes a
    /// suffix (`s` → `_seconds`); annotation units such as `{token}` add nothing.
    ///
    /// ```
    /// use inferscope_semconv::metric;
    /// assert_eq!(metric::CLIENT_OPERATION_DURATION.prometheus_name(), "gen_ai_client_operation_duration_seconds");
    /// assert_eq!(metric::CLIENT_TOKEN_USAGE.prometheus_name(), "gen_ai_client_token_usage");
    /// ```
    pub fn prometheus_name(&self) -> String {
        let mut name = self.name.replace('.', "_");
        match self.unit {
            "s" => name.push_str("_seconds"),
            "By" => name.push_str("_bytes"),
            _ => {}
        }
        name
    }
}

/// Boundaries for token counts.
pub const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// Boundaries for operation durations, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Boundaries for a server's time to first token, in seconds.
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Boundaries for a server's time per output token, in seconds.
pub const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// `gen_ai.client.token.usage`: input and output tokens per operation.
pub const CLIENT_TOKEN_USAGE: Histogram = Histogram {
    name: "gen_ai.client.token.usage",
    unit: "{token}",
    description: "Number of input and output tokens used.",
    buckets: TOKEN_BUCKETS,
};

/// `gen_ai.client.operation.duration`.
pub const CLIENT_OPERATION_DURATION: Histogram = Histogram {
    name: "gen_ai.client.operation.duration",
    unit: "s",
    description: "GenAI operation duration.",
    buckets: DURATION_BUCKETS,
};

/// `gen_ai.client.operation.time_to_first_chunk` (streaming only).
pub const CLIENT_TIME_TO_FIRST_CHUNK: Histogram = Histogram {
    name: "gen_ai.client.operation.time_to_first_chunk",
    unit: "s",
    description: "Time to receive the first chunk of a streamed response.",
    buckets: DURATION_BUCKETS,
};

/// `gen_ai.client.operation.time_per_output_chunk` (streaming only).
pub const CLIENT_TIME_PER_OUTPUT_CHUNK: Histogram = Histogram {
    name: "gen_ai.client.operation.time_per_output_chunk",
    unit: "s",
    description: "Time between consecutive chunks of a streamed response.",
    buckets: DURATION_BUCKETS,
};

/// `gen_ai.server.request.duration`.
pub const SERVER_REQUEST_DURATION: Histogram = Histogram {
    name: "gen_ai.server.request.duration",
    unit: "s",
    description: "GenAI server request duration, to the last output token.",
    buckets: DURATION_BUCKETS,
};

/// `gen_ai.server.time_to_first_token`.
pub const SERVER_TIME_TO_FIRST_TOKEN: Histogram = Histogram {
    name: "gen_ai.server.time_to_first_token",
    unit: "s",
    description: "Time to generate the first token, for successful responses.",
    buckets: TTFT_BUCKETS,
};

/// `gen_ai.server.time_per_output_token`.
pub const SERVER_TIME_PER_OUTPUT_TOKEN: Histogram = Histogram {
    name: "gen_ai.server.time_per_output_token",
    unit: "s",
    description: "Time per output token after the first, for successful responses.",
    buckets: TPOT_BUCKETS,
};

/// Every histogram above.
pub const ALL: &[Histogram] = &[
    CLIENT_TOKEN_USAGE,
    CLIENT_OPERATION_DURATION,
    CLIENT_TIME_TO_FIRST_CHUNK,
    CLIENT_TIME_PER_OUTPUT_CHUNK,
    SERVER_REQUEST_DURATION,
    SERVER_TIME_TO_FIRST_TOKEN,
    SERVER_TIME_PER_OUTPUT_TOKEN,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_ascend() {
        for h in ALL {
            assert!(
                h.buckets.windows(2).all(|w| w[0] < w[1]),
                "{} buckets are not ascending",
                h.name
            );
        }
    }
}
