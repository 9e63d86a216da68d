//! The OTLP/gRPC receiver (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::watch;
use tonic::codegen::Service as _;
use tonic_types::{ErrorDetails, StatusExt as _};

use super::{Refusal, accept};
use crate::IngestState;
use inferscope_server::{Listener, Phase};

struct Service(Arc<IngestState>);

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
        }
    }
}

/// Serves until told to drain. Messages over the ingest limit are refused by tonic with
/// `OUT_OF_RANGE` before they are decoded.
pub(crate) async fn serve(
    listener: Listener,
    shared: Arc<IngestState>,
    phase: watch::Receiver<Phase>,
) -> bool {
    let limit = shared.config.ingest.max_bytes;
    let service = TraceServiceServer::new(Service(shared))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http2_only();
    builder.http2().timer(TokioTimer::new());
    let handler = move |req: http::Request<hyper::body::Incoming>, in_progress| {
        let mut service = service.clone();
        async move {
            let _in_progress = in_progress;
            service.call(req).await
        }
    };
    listener.serve(builder, handler, phase, || {}).await
}
