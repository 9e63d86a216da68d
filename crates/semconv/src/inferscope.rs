//! inferscope's own keys, for facts no convention names. All live under `inferscope.`.

consts! {
    /// Mean gap between consecutive chunks of a stream, seconds.
    STREAM_CHUNK_GAP_MEAN = "inferscope.stream.chunk_gap.mean";
    /// Median gap between chunks, seconds.
    STREAM_CHUNK_GAP_P50 = "inferscope.stream.chunk_gap.p50";
    /// 90th percentile gap between chunks, seconds.
    STREAM_CHUNK_GAP_P90 = "inferscope.stream.chunk_gap.p90";
    /// 99th percentile gap between chunks, seconds.
    STREAM_CHUNK_GAP_P99 = "inferscope.stream.chunk_gap.p99";
    /// Largest gap between chunks, seconds.
    STREAM_CHUNK_GAP_MAX = "inferscope.stream.chunk_gap.max";
    /// Number of content chunks received.
    STREAM_CHUNK_COUNT = "inferscope.stream.chunk_count";
    /// Time per output token after the first, seconds.
    TIME_PER_OUTPUT_TOKEN = "inferscope.time_per_output_token";
    /// Why a request or response body could not be parsed for tracing.
    BODY_PARSE_ERROR = "inferscope.body.parse_error";
}
