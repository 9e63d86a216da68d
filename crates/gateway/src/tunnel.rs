//! Upgrade requests (a WebSocket, such as vLLM's `/v1/realtime`): the request goes upstream with
//! its `Upgrade` and `Connection: upgrade` (hop-by-hop fields that a proxy passes on for an
//! upgrade, RFC 9110 §7.8), over a connection of its own. If the upstream switches protocols
//! (101), the two connections are joined and bytes flow both ways unchanged until either side
//! closes; the SERVER span covers the session: the bytes each way and, for a WebSocket, the
//! close code of the first close frame and who sent it. Any other answer goes back to the
//! client as a normal response.

use std::sync::Arc;
use std::time::Duration;

use crate::upstream::tls::Stream;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use hyper_util::rt::TokioIo;
use inferscope_core::SpanContext;
use inferscope_semconv::inferscope as own;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ProxyState;
use crate::exchange::Exchange;
use crate::failure::Failure;
use crate::response_body::ResponseBody;

/// Largest response head read from the upstream.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body of a refusal (a non-101 answer) passed back.
const MAX_REFUSAL_BODY: usize = 1 << 20;

/// Whether the request asks to switch protocols: HTTP/1.1 with `Upgrade` and a `Connection`
/// naming `upgrade`.
pub(crate) fn is_upgrade(parts: &http::request::Parts) -> bool {
    parts.version == http::Version::HTTP_11
        && parts.headers.contains_key(header::UPGRADE)
        && parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Serves an upgrade request: returns the response for the client (the 101, after which the
/// session runs in a task of its own, or the upstream's refusal, or the gateway's failure).
pub(crate) async fn serve(
    shared: Arc<ProxyState>,
    mut exchange: Box<Exchange>,
    caller: Option<SpanContext>,
    mut parts: http::request::Parts,
) -> Response<ResponseBody> {
    let protocol = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if exchange.server.is_recording() {
        exchange
            .server
            .set_attribute(own::UPGRADE_PROTOCOL, protocol.clone());
    }
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let head = request_head(&shared, &exchange, caller.as_ref(), &parts, &protocol);
    exchange.hops.sent = Some(std::time::Instant::now());
    let connected = connect_and_send(&shared, &head).await;
    let (status, headers, mut upstream, rest) = match connected {
        Ok(c) => c,
        Err(failure) => return super::proxy::answer(&shared, exchange, failure),
    };
    exchange.hops.head = Some(std::time::Instant::now());
    let mut headers = headers;
    // The answer names the trace, as every other response does.
    crate::proxy::traceresponse(&shared, &exchange, &mut headers);
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return refusal(&mut exchange, status, headers, upstream, rest).await;
    }
    let Some(on_upgrade) = on_upgrade else {
        let failure = Failure::UpstreamBroken("the client's connection cannot be upgraded".into());
        return super::proxy::answer(&shared, exchange, failure);
    };
    exchange.response_started(101, None);
    let mut response = Response::new(ResponseBody::full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    let mut cut = shared.lifecycle.cut_tunnels.subscribe();
    tokio::spawn(async move {
        let client = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "the client's connection was not upgraded");
                exchange.finish(Some(Failure::ClientAborted));
                return;
            }
        };
        let counts = Counts::default();
        let joined = join(client, &mut upstream, rest, &counts);
        let cut_short = tokio::select! {
            () = joined => false,
            _ = cut.wait_for(|c| *c) => true,
        };
        let result = counts.session();
        if exchange.server.is_recording() {
            let s = &mut exchange.server;
            s.set_attribute(
                own::TUNNEL_BYTES_FROM_CLIENT,
                i64::try_from(result.from_client).unwrap_or(i64::MAX),
            );
            s.set_attribute(
                own::TUNNEL_BYTES_FROM_UPSTREAM,
                i64::try_from(result.from_upstream).unwrap_or(i64::MAX),
            );
            if let Some((code, by)) = result.close {
                s.set_attribute(own::WEBSOCKET_CLOSE_CODE, i64::from(code));
                s.set_attribute(own::WEBSOCKET_CLOSED_BY, by);
            }
        }
        exchange.add_response_bytes(result.from_upstream);
        exchange.finish(cut_short.then_some(Failure::Shutdown));
    });
    response
}

/// The request head for the upstream: the client's headers without hop-by-hop fields, then
/// the upgrade's own two, the upstream's host, and the trace context.
fn request_head(
    shared: &ProxyState,
    exchange: &Exchange,
    caller: Option<&SpanContext>,
    parts: &http::request::Parts,
    protocol: &str,
) -> Vec<u8> {
    let mut headers = parts.headers.clone();
    crate::proxy::upstream_headers(&mut headers, exchange.server.context(), caller);
    let upstream = &shared.config.upstream;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let base = upstream.base.split_once("://").map_or("", |(_, rest)| rest);
    let prefix = base
        .split_once('/')
        .map_or("", |(_, p)| p)
        .trim_end_matches('/');
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    if !prefix.is_empty() {
        head.push(b'/');
        head.extend_from_slice(prefix.as_bytes());
    }
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(upstream.host.as_bytes());
    if upstream.port != if upstream.tls { 443 } else { 80 } {
        head.extend_from_slice(format!(":{}", upstream.port).as_bytes());
    }
    head.extend_from_slice(b"\r\nconnection: upgrade\r\nupgrade: ");
    head.extend_from_slice(protocol.as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

type Answer = (StatusCode, HeaderMap, Stream, BytesMut);

/// Connects (a connection of the tunnel's own, never pooled), sends the head, reads the
/// answer's head; returns it with the bytes read past it.
async fn connect_and_send(shared: &ProxyState, head: &[u8]) -> Result<Answer, Failure> {
    let upstream = &shared.config.upstream;
    let timeouts = &shared.config.timeouts;
    let mut stream = shared
        .upstream
        .connect_tunnel(&upstream.host, upstream.port, timeouts.connect)
        .await?;
    let read = async {
        stream
            .write_all(head)
            .await
            .and(stream.flush().await)
            .map_err(|e| Failure::UpstreamBroken(format!("writing the upgrade request: {e}")))?;
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            if stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| Failure::UpstreamBroken(format!("reading the upgrade answer: {e}")))?
                == 0
            {
                return Err(Failure::UpstreamBroken(
                    "the upstream closed before answering the upgrade".into(),
                ));
            }
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut slots);
            match response.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = StatusCode::from_u16(response.code.unwrap_or(502))
                        .unwrap_or(StatusCode::BAD_GATEWAY);
                    let mut headers = HeaderMap::new();
                    for h in response.headers.iter() {
                        if let (Ok(n), Ok(v)) = (
                            http::HeaderName::from_bytes(h.name.as_bytes()),
                            HeaderValue::from_bytes(h.value),
                        ) {
                            headers.append(n, v);
                        }
                    }
                    let rest = buf.split_off(len);
                    return Ok((status, headers, rest));
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(Failure::UpstreamBroken(
                        "upgrade answer head too large".into(),
                    ));
                }
                Err(e) => {
                    return Err(Failure::UpstreamBroken(format!(
                        "the upgrade answer is not HTTP: {e}"
                    )));
                }
            }
        }
    };
    let (status, headers, rest) = tokio::time::timeout(timeouts.first_byte, read)
        .await
        .map_err(|_| Failure::FirstByteTimeout)??;
    Ok((status, headers, stream, rest))
}

/// The upstream did not switch: its answer, with a body read by its `Content-Length` (or to
/// its close), passed back as a normal response.
async fn refusal(
    exchange: &mut Exchange,
    status: StatusCode,
    mut headers: HeaderMap,
    mut upstream: Stream,
    mut body: BytesMut,
) -> Response<ResponseBody> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let want = length.unwrap_or(MAX_REFUSAL_BODY).min(MAX_REFUSAL_BODY);
    let read = async {
        while body.len() < want {
            match upstream.read_buf(&mut body).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    body.truncate(want);
    crate::headers::remove_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    let body = body.freeze();
    exchange.response_started(status.as_u16(), None);
    exchange.add_response_bytes(body.len() as u64);
    exchange.finish(None);
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// What a session carried.
#[derive(Debug, Default, PartialEq, Eq)]
struct Session {
    from_client: u64,
    from_upstream: u64,
    /// The first close frame's status code, and who sent it.
    close: Option<(u16, &'static str)>,
}

/// What a session has carried so far (read when it ends, or when the shutdown cuts it).
#[derive(Debug, Default)]
struct Counts {
    from_client: std::sync::atomic::AtomicU64,
    from_upstream: std::sync::atomic::AtomicU64,
    close: std::sync::Mutex<[Option<(u16, std::time::Instant)>; 2]>,
}

impl Counts {
    fn add(&self, counter: &std::sync::atomic::AtomicU64, n: usize) {
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn closed(&self, side: usize, frames: &Frames) {
        if let Some(c) = frames.close {
            let mut close = self
                .close
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            close[side].get_or_insert(c);
        }
    }

    fn session(&self) -> Session {
        let close = *self
            .close
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Session {
            from_client: self.from_client.load(std::sync::atomic::Ordering::Relaxed),
            from_upstream: self
                .from_upstream
                .load(std::sync::atomic::Ordering::Relaxed),
            close: first_close(close[0], close[1]),
        }
    }
}

/// Copies both ways until both directions have ended (each side's end is passed on as a
/// half-close), watching WebSocket frames for the first close. `rest`: upstream bytes read
/// past its answer's head, which go to the client first.
async fn join<C>(client: C, upstream: &mut Stream, rest: BytesMut, counts: &Counts)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let to_upstream = async {
        let mut frames = Frames::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let read = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(r) => r,
            };
            frames.feed(&buf[..read]);
            counts.closed(0, &frames);
            counts.add(&counts.from_client, read);
            // A TLS stream may keep written bytes until flushed.
            if up_write.write_all(&buf[..read]).await.is_err() || up_write.flush().await.is_err() {
                break;
            }
        }
        let _ = up_write.shutdown().await;
    };
    let to_client = async {
        let mut frames = Frames::default();
        frames.feed(&rest);
        counts.closed(1, &frames);
        counts.add(&counts.from_upstream, rest.len());
        // A TLS listener's stream may keep written bytes until flushed.
        if client_write.write_all(&rest).await.is_ok() && client_write.flush().await.is_ok() {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let read = match up_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(r) => r,
                };
                frames.feed(&buf[..read]);
                counts.closed(1, &frames);
                counts.add(&counts.from_upstream, read);
                if client_write.write_all(&buf[..read]).await.is_err()
                    || client_write.flush().await.is_err()
                {
                    break;
                }
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(to_upstream, to_client);
}

type Close = Option<(u16, std::time::Instant)>;

/// The first close frame of a session, and who sent it.
fn first_close(from_client: Close, from_upstream: Close) -> Option<(u16, &'static str)> {
    match (from_client, from_upstream) {
        (Some((c, a)), Some((u, b))) => Some(if a <= b {
            (c, "client")
        } else {
            (u, "upstream")
        }),
        (Some((c, _)), None) => Some((c, "client")),
        (None, Some((u, _))) => Some((u, "upstream")),
        (None, None) => None,
    }
}

/// Follows WebSocket frames (RFC 6455 §5.2) across reads, to find the first close frame's
/// status code. Payloads are skipped, not kept; bytes that are not frames only end the
/// watch.
#[derive(Debug, Default)]
struct Frames {
    /// Header bytes of the frame being read.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// A close frame: its mask, and the status code's bytes gathered so far.
    close_mask: Option<[u8; 4]>,
    close_code: Vec<u8>,
    in_close: bool,
    /// The close found: its code and when it was read.
    close: Option<(u16, std::time::Instant)>,
    lost: bool,
}

impl Frames {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost && self.close.is_none() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if self.in_close && self.close_code.len() < 2 {
                    for &b in &data[..n] {
                        if self.close_code.len() == 2 {
                            break;
                        }
                        let i = self.close_code.len();
                        let m = self.close_mask.map_or(0, |m| m[i % 4]);
                        self.close_code.push(b ^ m);
                    }
                    if self.close_code.len() == 2 {
                        let code = u16::from_be_bytes([self.close_code[0], self.close_code[1]]);
                        self.close = Some((code, std::time::Instant::now()));
                        return;
                    }
                }
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            self.header.push(data[0]);
            data = &data[1..];
            let h = &self.header;
            if h.len() < 2 {
                continue;
            }
            let masked = h[1] & 0x80 != 0;
            let len7 = h[1] & 0x7f;
            let ext = match len7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let need = 2 + ext + if masked { 4 } else { 0 };
            if h.len() < need {
                continue;
            }
            let len = match ext {
                0 => u64::from(len7),
                2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                _ => u64::from_be_bytes(h[2..10].try_into().unwrap_or([0; 8])),
            };
            let opcode = h[0] & 0x0f;
            // Reserved opcodes: these are not WebSocket frames (or the watch lost its place).
            if matches!(opcode, 0x3..=0x7 | 0xB..=0xF) {
                self.lost = true;
                return;
            }
            self.in_close = opcode == 0x8;
            self.close_mask = masked.then(|| {
                let m = &h[need - 4..need];
                [m[0], m[1], m[2], m[3]]
            });
            self.close_code.clear();
            self.skip = len;
            self.header.clear();
            if self.in_close && len < 2 {
                // A close frame without a code: 1005 ("no status received").
                self.close = Some((1005, std::time::Instant::now()));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a WebSocket client sends it.
    fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    #[test]
    fn the_first_close_code_is_found_at_any_split() {
        let mut stream = frame(0x1, b"hello", Some([1, 2, 3, 4]));
        stream.extend(frame(0x2, &vec![7u8; 70_000], Some([9, 9, 9, 9])));
        stream.extend(frame(0x9, b"", Some([5, 6, 7, 8])));
        stream.extend(frame(
            0x8,
            &[0x0f, 0xa1, b'b', b'y', b'e'],
            Some([0xde, 0xad, 0xbe, 0xef]),
        ));
        for split in [1, 2, 3, 7, 1000, stream.len()] {
            let mut f = Frames::default();
            for piece in stream.chunks(split) {
                f.feed(piece);
            }
            assert_eq!(f.close.map(|c| c.0), Some(4001), "split {split}");
        }
        // Unmasked (the server's side), and a close without a code.
        let mut f = Frames::default();
        f.feed(&frame(0x8, &1000u16.to_be_bytes(), None));
        assert_eq!(f.close.map(|c| c.0), Some(1000));
        let mut f = Frames::default();
        f.feed(&frame(0x8, b"", None));
        assert_eq!(f.close.map(|c| c.0), Some(1005));
        // Who closed first.
        let mut a = Frames::default();
        a.feed(&frame(0x8, &1000u16.to_be_bytes(), None));
        let mut b = Frames::default();
        b.feed(&frame(0x8, &1001u16.to_be_bytes(), None));
        assert_eq!(first_close(a.close, b.close), Some((1000, "client")));
        assert_eq!(first_close(None, b.close), Some((1001, "upstream")));
    }
}
