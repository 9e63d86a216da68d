//! The OTLP/gRPC receiver (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_types::{ErrorDetails, StatusExt as _};

use super::{Refusal, accept};
use crate::Shared;

struct Service(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match accept(&self.0, request.into_inner()).await {
            Ok(a) => Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: (a.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: i64::try_from(a.rejected).unwrap_or(i64::MAX),
                    error_message: a.message.unwrap_or_default(),
                }),
            })),
            Err(Refusal::Busy(after)) => Err(tonic::Status::with_error_details(
                tonic::Code::ResourceExhausted,
                "the gateway's export queue is full; retry later",
                ErrorDetails::with_retry_info(Some(after)),
            )),
            Err(Refusal::Invalid(e)) => Err(tonic::Status::invalid_argument(e.to_string())),
        }
    }
}

/// Serves until `stopped` turns true. Messages over the ingest limit are refused by tonic
/// with `OUT_OF_RANGE` before they are decoded.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let limit = shared.config.ingest.max_bytes;
    let service = TraceServiceServer::new(Service(shared))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "OTLP/gRPC ingest stopped");
    }
}
