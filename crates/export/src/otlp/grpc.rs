//! OTLP/gRPC over tonic, sending a request encoded once per batch (retries reuse the bytes).

use std::time::Duration;

use bytes::{BufMut, Bytes};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{BuildError, ExportResponse, Signal, clip, tls};
use crate::config::{Compression, OtlpConfig, redact_userinfo};
use crate::exporter::{Accepted, ExportError};

/// Sends already-encoded export request bytes; decodes the response with prost.
#[derive(Debug, Clone, Copy, Default)]
struct PreEncodedCodec;

#[derive(Debug, Clone, Copy, Default)]
struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = ExportResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        <ExportResponse as prost::Message>::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode the export response: {e}")))
    }
}

impl Codec for PreEncodedCodec {
    type Encode = Bytes;
    type Decode = ExportResponse;
    type Encoder = BytesEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

pub(super) struct GrpcTransport {
    grpc: tonic::client::Grpc<Channel>,
    metadata: MetadataMap,
    signal: Signal,
}

impl GrpcTransport {
    pub(super) fn new(config: &OtlpConfig, signal: Signal) -> Result<GrpcTransport, BuildError> {
        let shown = redact_userinfo(&config.endpoint);
        let url = if config.endpoint.contains("://") {
            config.endpoint.clone()
        } else if config.tls_enabled {
            format!("https://{}", config.endpoint)
        } else {
            format!("http://{}", config.endpoint)
        };
        let endpoint_error = |reason: String| BuildError::Endpoint {
            endpoint: shown.clone(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url)
            .map_err(|e| endpoint_error(e.to_string()))?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            // A batch of 512 inference spans is ~0.5 MB; HTTP/2's default 64 KiB windows
            // would make every export wait for several WINDOW_UPDATE round trips.
            .initial_stream_window_size(Some(4 * 1024 * 1024))
            .initial_connection_window_size(Some(8 * 1024 * 1024))
            .user_agent(concat!("inferscope/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| endpoint_error(e.to_string()))?;
        if config.tls_enabled {
            let mut tls_config = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &config.tls.ca_certificate {
                tls_config = tls_config.ca_certificate(Certificate::from_pem(tls::read_pem(ca)?));
            }
            if let (Some(cert), Some(key)) =
                (&config.tls.client_certificate, &config.tls.client_key)
            {
                tls_config = tls_config.identity(Identity::from_pem(
                    tls::read_pem(cert)?,
                    tls::read_pem(key)?,
                ));
            }
            endpoint = endpoint
                .tls_config(tls_config)
                .map_err(|e| endpoint_error(format!("TLS: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        let mut grpc = tonic::client::Grpc::new(channel)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(4 * 1024 * 1024);
        if config.compression == Compression::Gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (name, value) in &config.headers {
            let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| BuildError::Header(name.clone()))?;
            let value = MetadataValue::try_from(value.expose())
                .map_err(|_| BuildError::Header(name.clone()))?;
            metadata.insert(key, value);
        }
        Ok(GrpcTransport {
            grpc,
            metadata,
            signal,
        })
    }

    pub(super) async fn send(
        &self,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Accepted, ExportError> {
        let mut grpc = self.grpc.clone();
        let call = async {
            grpc.ready().await.map_err(|e| {
                ExportError::retryable(format!("gRPC channel not ready: {e}"), None)
            })?;
            let mut request = tonic::Request::new(body);
            *request.metadata_mut() = self.metadata.clone();
            request.set_timeout(timeout);
            let path = http::uri::PathAndQuery::from_static(self.signal.grpc_path());
            grpc.unary(request, path, PreEncodedCodec)
                .await
                .map_err(classify)
        };
        let response = tokio::time::timeout(timeout, call).await.map_err(|_| {
            ExportError::retryable(format!("gRPC export timed out after {timeout:?}"), None)
        })??;
        Ok(response.into_inner().accepted())
    }
}

/// Maps a gRPC status to OTLP's retry rules.
fn classify(status: Status) -> ExportError {
    let retry_after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => retry_after.is_some(),
        _ => false,
    };
    let message = format!("gRPC {:?}: {}", status.code(), clip(status.message()));
    if retryable {
        ExportError::retryable(message, retry_after)
    } else {
        ExportError::permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_otlp() {
        for code in [
            Code::Unavailable,
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(classify(Status::new(code, "x")).retryable, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Internal,
            Code::Unimplemented,
        ] {
            assert!(!classify(Status::new(code, "x")).retryable, "{code:?}");
        }
        assert!(!classify(Status::resource_exhausted("x")).retryable);
        let with_info = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))),
        );
        let e = classify(with_info);
        assert!(e.retryable);
        assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
    }
}
