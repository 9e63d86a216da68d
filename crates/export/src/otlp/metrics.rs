//! Pushes metrics over OTLP: an `ExportMetricsServiceRequest` per export, over the same
//! transports, TLS, headers, compression and retry rules as spans.

use std::time::Instant;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use super::{BuildError, Sender, Signal};
use crate::config::{OtlpConfig, Protocol};
use crate::exporter::{Accepted, ExportError};

/// Exports metrics over OTLP to one endpoint.
#[derive(Debug)]
pub struct MetricsExporter {
    sender: Sender,
}

impl MetricsExporter {
    /// Builds the exporter. Must run inside a Tokio runtime; connecting is lazy.
    pub fn new(config: &OtlpConfig) -> Result<MetricsExporter, BuildError> {
        Ok(MetricsExporter {
            sender: Sender::new(config, Signal::Metrics)?,
        })
    }

    /// Sends one request, retrying as OTLP says, until `deadline`.
    pub async fn export(
        &self,
        request: &ExportMetricsServiceRequest,
        deadline: Instant,
    ) -> Result<Accepted, ExportError> {
        let body = match self.sender.protocol {
            Protocol::Grpc | Protocol::HttpProtobuf => Bytes::from(request.encode_to_vec()),
            Protocol::HttpJson => serde_json::to_vec(request)
                .map(Bytes::from)
                .map_err(|e| ExportError::permanent(format!("cannot encode OTLP/JSON: {e}")))?,
        };
        self.sender.send(body, deadline).await
    }
}
