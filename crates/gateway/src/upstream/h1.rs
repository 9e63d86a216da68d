//! The gateway's own HTTP/1.1 client side of an upstream connection (RFC 9112): it writes a
//! request, reads the response head with `httparse`, and decodes the body straight out of the
//! connection's read buffer.
//!
//! Why not hyper's client here (ADR 0010): hyper hands a response body over one HTTP chunk at
//! a time, through a channel with wakers, splitting its read buffer for each. For a stream of
//! tokens that was a quarter of the gateway's CPU in `perf`. Here one read of the socket
//! gives one frame holding every chunk that arrived in it, the decoding is a few comparisons
//! per chunk, and nothing is woken. hyper still serves the client side and h2c upstreams.
//!
//! Bounded and strict where it matters for safety: the head may be at most [`MAX_HEAD`]
//! bytes and 128 fields; a chunk-size line at most [`MAX_LINE`] bytes; trailers at most
//! [`MAX_HEAD`] bytes (and dropped); conflicting `Content-Length` values, a `Transfer-Encoding`
//! with a `Content-Length`, and malformed chunk sizes are errors, never guesses.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The longest response head, and the most trailer bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size line (with extensions).
pub(crate) const MAX_LINE: usize = 4096;
/// Most response header fields.
const MAX_FIELDS: usize = 128;
/// The least and the most the read buffer asks the socket for at a time. A stream trickles a
/// few hundred bytes an event, so the buffer stays small and thousands of streams waiting for
/// their next token hold little; a read that fills what was asked doubles the next one (a large
/// body), reads well under it halve it ([`ReadSize`]).
const READ_MIN: usize = 2 * 1024;
const READ_MAX: usize = 64 * 1024;
/// The first pieces of a body gathered into one buffer start at this size.
const GATHER_SIZE: usize = 16 * 1024;
/// Request body pieces at least this large are written as they are, not copied after the head.
const WRITE_DIRECT: usize = 64 * 1024;

/// Idle connections younger than this are judged by the reactor's readiness alone; see
/// [`Conn::is_idle_usable`].
const TRUST_READINESS_FOR: Duration = Duration::from_secs(1);

/// Why an upstream exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    /// No byte of the request reached the connection: writing its first byte failed. Only
    /// this failure proves the upstream never saw the request, so only it may be sent again on
    /// another connection (ADR 0010).
    #[error("the upstream connection failed before the request was written: {0}")]
    NotSent(String),
    /// The connection closed before any byte of a response. The upstream may have read the
    /// request and acted on it, so it is not sent again.
    #[error("the upstream closed the connection before responding")]
    ClosedBeforeResponse,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
    /// What arrived is not HTTP/1.1 as RFC 9112 has it.
    #[error("invalid response from the upstream: {0}")]
    Invalid(String),
    /// The connection closed in the middle of a body.
    #[error("the upstream closed the connection before the body ended")]
    Truncated,
    /// The request body could not be read from the client.
    #[error("request body: {0}")]
    RequestBody(String),
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (a response to HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length`: bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    UntilClose,
    /// The body is over.
    Done,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// In a chunk's data: bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer bytes seen so far.
    Trailers(usize),
}

/// One upstream connection: the socket, what has been read from it and not yet used, and
/// whether it can carry another request.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    read_size: ReadSize,
    keep_alive: bool,
    /// The upstream's `system_fingerprint` (raw JSON), once a response on this connection
    /// showed it: the same process answers every request on it.
    pub(crate) fingerprint: Option<String>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::new(),
            read_size: ReadSize::default(),
            keep_alive: true,
            fingerprint: None,
        }
    }

    /// Whether an idle connection is still usable: nothing was left unread, and the upstream
    /// has neither closed it nor sent anything since. `idle_for`: how long it has been idle.
    ///
    /// The last read of a body that came up short of the buffer drained the socket, and Tokio
    /// then cleared its readiness (see [`Conn::poll_fill`]). If the reactor has seen nothing on
    /// the socket since, it is still empty and open, and no system call is needed. Otherwise
    /// (data, end of stream, a reset, or a last read that filled the buffer) a one-byte peek
    /// asked of the kernel tells.
    ///
    /// The reactor may not have picked up a close that the kernel already has. Upstreams close
    /// idle connections deliberately at their keep-alive timeout (uvicorn's, which vLLM
    /// uses, is 5 s by default), so a connection idle for [`TRUST_READINESS_FOR`] or longer
    /// always gets the read. A close within that time is the same race as one that arrives
    /// just after the read: the request is sent again only if writing it failed before any
    /// byte was taken ([`super::Pool`], ADR 0010); otherwise the client gets a 502, never a
    /// request sent twice.
    pub(crate) fn is_idle_usable(&mut self, idle_for: Duration) -> bool {
        if !self.keep_alive || !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if idle_for < TRUST_READINESS_FOR && self.stream.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        // Asked of the kernel: Tokio's `try_read` would answer "nothing there" without a system
        // call while the reactor has not looked (see [`inferscope_server::socket`]).
        let mut probe = [0u8; 1];
        inferscope_server::socket::recv_now(&self.stream, &mut probe, true)
            == inferscope_server::socket::Pending::Nothing
    }

    /// Reads more bytes into the buffer. `Ready(Ok(0))` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        poll_fill(&mut self.stream, &mut self.buf, &mut self.read_size, cx)
    }

    /// Sends a request and reads the response head (skipping interim 1xx responses), and
    /// works out the body's framing. `head_request`: the request was HEAD, so no body follows.
    ///
    /// The body goes `Content-Length`-framed when its size is known and chunked otherwise; the
    /// caller's framing fields are replaced. While it is being sent the connection is watched
    /// for the response (RFC 9112 §9.5): an upstream that refuses an upload (a 413, say) may
    /// answer after the head and stop reading, or close. An early answer of 4xx/5xx, or one
    /// that closes the connection, ends the upload there (the connection is not reused); any
    /// other early answer is held until the whole body has gone.
    pub(crate) async fn exchange<B>(
        &mut self,
        method: &Method,
        path_and_query: &str,
        authority: &str,
        headers: &HeaderMap,
        body: B,
        head_request: bool,
    ) -> Result<(http::response::Parts, Framing), Error>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let exact = body.size_hint().exact();
        let (head, chunked) = self.request_head(method, path_and_query, authority, headers, exact);
        let Conn {
            stream,
            buf,
            read_size,
            keep_alive,
            ..
        } = self;
        let (mut reader, mut writer) = stream.split();
        let send = send_body(&mut writer, head, body, exact, chunked);
        let read = read_head(&mut reader, buf, read_size, head_request);
        tokio::pin!(send, read);
        let mut sent = false;
        let mut send_error = None;
        let mut early = None;
        let (parts, framing, close) = loop {
            tokio::select! {
                biased;
                r = &mut send, if !sent => {
                    sent = true;
                    match r {
                        Ok(()) => {}
                        // The client's body failed: that is the error, whatever the upstream
                        // says.
                        Err(e @ Error::RequestBody(_)) => return Err(e),
                        // Writing failed: the upstream may have answered before it stopped
                        // reading.
                        Err(e) => send_error = Some(e),
                    }
                    if let Some(head) = early.take() {
                        break head;
                    }
                }
                r = &mut read, if early.is_none() => match r {
                    Ok(head) if sent => break head,
                    Ok(head) => {
                        let refuses = head.0.status.is_client_error()
                            || head.0.status.is_server_error()
                            || head.2;
                        if refuses {
                            *keep_alive = false;
                            break head;
                        }
                        early = Some(head);
                    }
                    // The write failed first: its error says whether anything was sent.
                    Err(e @ (Error::ClosedBeforeResponse | Error::Io(_))) => {
                        return Err(send_error.take().unwrap_or(e));
                    }
                    Err(e) => return Err(e),
                },
            }
        };
        if close || send_error.is_some() {
            *keep_alive = false;
        }
        Ok((parts, framing))
    }

    /// The request head, with the framing fields for a body of `exact` bytes (or chunked).
    fn request_head(
        &mut self,
        method: &Method,
        path_and_query: &str,
        authority: &str,
        headers: &HeaderMap,
        exact: Option<u64>,
    ) -> (BytesMut, bool) {
        let mut head = BytesMut::with_capacity(512);
        head.extend_from_slice(method.as_str().as_bytes());
        head.extend_from_slice(b" ");
        head.extend_from_slice(path_and_query.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(authority.as_bytes());
        head.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            if name == header::HOST
                || name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
            {
                continue;
            }
            if name == header::CONNECTION && value.as_bytes().eq_ignore_ascii_case(b"close") {
                self.keep_alive = false;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        let chunked = match exact {
            Some(0) if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) => false,
            Some(n) => {
                head.extend_from_slice(b"content-length: ");
                head.extend_from_slice(n.to_string().as_bytes());
                head.extend_from_slice(b"\r\n");
                false
            }
            None => {
                head.extend_from_slice(b"transfer-encoding: chunked\r\n");
                true
            }
        };
        head.extend_from_slice(b"\r\n");
        (head, chunked)
    }

    /// The next piece of the body: every byte of it available now, decoded, as one `Bytes`
    /// (shared with the read buffer when it is one piece). `Ready(None)` at its end.
    pub(crate) fn poll_body(
        &mut self,
        framing: &mut Framing,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Error>>> {
        loop {
            let mut out = Pieces::default();
            if let Err(e) = decode(framing, &mut self.buf, &mut out) {
                self.keep_alive = false;
                return Poll::Ready(Some(Err(e)));
            }
            if let Some(data) = out.take() {
                return Poll::Ready(Some(Ok(data)));
            }
            if *framing == Framing::Done || *framing == Framing::Empty {
                *framing = Framing::Done;
                return Poll::Ready(None);
            }
            match self.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(0)) => {
                    self.keep_alive = false;
                    if *framing == Framing::UntilClose {
                        *framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(Error::Truncated)));
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    /// Whether the connection can carry another request once its body is `Done`.
    pub(crate) fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

/// Reads more bytes into `buf`. `Ready(Ok(0))` at the end of the stream.
///
/// Through Tokio's `AsyncRead`, which clears the socket's readiness after a read that returns
/// less than it asked for (the socket is drained), instead of needing one more read that fails
/// with `WouldBlock`.
fn poll_fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    size: &mut ReadSize,
    cx: &mut Context<'_>,
) -> Poll<Result<usize, Error>> {
    if buf.capacity() - buf.len() < READ_MIN / 2 {
        if buf.is_empty() {
            // A fresh block of the size wanted: `reserve` on a buffer whose bytes were handed
            // out would allocate at least its first capacity again.
            *buf = BytesMut::with_capacity(size.0);
        } else {
            buf.reserve(size.0);
        }
    }
    let asked = buf.capacity() - buf.len();
    match tokio_util::io::poll_read_buf(Pin::new(reader), cx, buf) {
        Poll::Ready(Ok(n)) => {
            size.record(asked, n);
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(Error::Io(e.to_string()))),
        Poll::Pending => Poll::Pending,
    }
}

/// How much the next read asks for, between [`READ_MIN`] and [`READ_MAX`].
#[derive(Debug, Clone, Copy)]
struct ReadSize(usize);

impl Default for ReadSize {
    fn default() -> ReadSize {
        ReadSize(4 * 1024)
    }
}

impl ReadSize {
    /// A read that was asked for `asked` bytes got `got`.
    fn record(&mut self, asked: usize, got: usize) {
        if got >= asked {
            self.0 = (self.0 * 2).min(READ_MAX);
        } else if got < self.0 / 4 {
            self.0 = (self.0 / 2).max(READ_MIN);
        }
    }
}

/// Writes the head and the body; the head and a body already in memory leave in one write.
async fn send_body<W, B>(
    writer: &mut W,
    mut out: BytesMut,
    mut body: B,
    exact: Option<u64>,
    chunked: bool,
) -> Result<(), Error>
where
    W: tokio::io::AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt as _;
    let mut written = Written::default();
    let mut sent: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::RequestBody(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if exact.is_some_and(|n| sent > n) {
            return Err(Error::RequestBody(
                "the request body is longer than its Content-Length".into(),
            ));
        }
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        // Each piece goes on as it came, the head with the first. A large one is written
        // from where it is rather than copied behind the head.
        if data.len() >= WRITE_DIRECT {
            if !out.is_empty() {
                written.write(writer, &out).await?;
                out.clear();
            }
            written.write(writer, &data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if !out.is_empty() {
            written.write(writer, &out).await?;
            out.clear();
        }
    }
    if exact.is_some_and(|n| sent != n) {
        return Err(Error::RequestBody(
            "the request body is shorter than its Content-Length".into(),
        ));
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        written.write(writer, &out).await?;
    }
    Ok(())
}

/// Counts what the socket accepted of a request, so that a failed write can tell whether the
/// upstream may have seen any of it.
#[derive(Default)]
struct Written(u64);

impl Written {
    async fn write<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        mut b: &[u8],
    ) -> Result<(), Error> {
        while !b.is_empty() {
            match w.write(b).await {
                Ok(0) => return Err(self.failed("the connection accepts no more bytes")),
                Ok(n) => {
                    self.0 += n as u64;
                    b = &b[n..];
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.failed(&e.to_string())),
            }
        }
        Ok(())
    }

    fn failed(&self, why: &str) -> Error {
        if self.0 == 0 {
            Error::NotSent(why.to_owned())
        } else {
            Error::Io(why.to_owned())
        }
    }
}

/// Reads a response head (skipping interim 1xx responses) into `buf` and works out the body's
/// framing; the third value says whether the connection closes after this response.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    read_size: &mut ReadSize,
    head_request: bool,
) -> Result<(http::response::Parts, Framing, bool), Error> {
    let mut read_any = false;
    loop {
        if !buf.is_empty() {
            read_any = true;
            if let Some((parts, used)) = parse_head(buf)? {
                buf.advance(used);
                let code = parts.status.as_u16();
                if (100..200).contains(&code) {
                    if code == 101 {
                        return Err(Error::Invalid(
                            "101 Switching Protocols is not supported".into(),
                        ));
                    }
                    continue;
                }
                let framing = framing(&parts, head_request)?;
                let close = parts.version == Version::HTTP_10
                    || connection_close(&parts.headers)
                    || framing == Framing::UntilClose;
                return Ok((parts, framing, close));
            }
            if buf.len() > MAX_HEAD {
                return Err(Error::Invalid(format!(
                    "response head over {MAX_HEAD} bytes"
                )));
            }
        }
        let n = std::future::poll_fn(|cx| poll_fill(reader, buf, read_size, cx)).await?;
        if n == 0 {
            return Err(if read_any {
                Error::Truncated
            } else {
                Error::ClosedBeforeResponse
            });
        }
    }
}

/// Parses a response head at the start of `buf`: `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(http::response::Parts, usize)>, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Invalid(e.to_string())),
    };
    let code = response.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| Error::Invalid(format!("status code {code}")))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut builder = http::Response::builder().status(status).version(version);
    if let Some(headers) = builder.headers_mut() {
        headers.reserve(response.headers.len());
        for h in response.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| Error::Invalid(format!("header name {:?}", h.name)))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| Error::Invalid(format!("value of header {name}")))?;
            headers.append(name, value);
        }
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|e| Error::Invalid(e.to_string()))?
        .into_parts();
    Ok(Some((parts, used)))
}

fn connection_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

/// RFC 9112 §6.3, in its order.
fn framing(parts: &http::response::Parts, head_request: bool) -> Result<Framing, Error> {
    let code = parts.status.as_u16();
    if head_request || code == 204 || code == 304 || (100..200).contains(&code) {
        return Ok(Framing::Empty);
    }
    let h = &parts.headers;
    if h.contains_key(header::TRANSFER_ENCODING) {
        if h.contains_key(header::CONTENT_LENGTH) {
            return Err(Error::Invalid(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        let last = h
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty());
        return Ok(match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") => Framing::Chunked(Chunk::Size),
            _ => Framing::UntilClose,
        });
    }
    let mut length: Option<u64> = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for part in v
            .to_str()
            .map_err(|_| Error::Invalid("Content-Length".into()))?
            .split(',')
        {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::Invalid(format!("Content-Length {part:?}")));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| Error::Invalid(format!("Content-Length {part:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Invalid("conflicting Content-Length values".into()));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// Decoded body bytes: one piece shared with the read buffer, or several copied together.
#[derive(Default)]
pub(crate) struct Pieces {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
}

impl Pieces {
    pub(crate) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match (&self.first, &mut self.rest) {
            (None, _) => self.first = Some(data),
            (Some(_), Some(rest)) => rest.extend_from_slice(&data),
            (Some(first), None) => {
                let mut b = BytesMut::with_capacity(GATHER_SIZE.max(first.len() + data.len()));
                b.extend_from_slice(first);
                b.extend_from_slice(&data);
                self.rest = Some(b);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match (&self.first, &self.rest) {
            (_, Some(r)) => r.len(),
            (Some(f), None) => f.len(),
            (None, None) => 0,
        }
    }

    pub(crate) fn take(self) -> Option<Bytes> {
        match (self.first, self.rest) {
            (_, Some(r)) => Some(r.freeze()),
            (f, None) => f,
        }
    }
}

/// Moves up to `left` body bytes from `buf` to `out` without a copy; returns how many are
/// still owed.
fn take(buf: &mut BytesMut, left: u64, out: &mut Pieces) -> u64 {
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    out.push(buf.split_to(n).freeze());
    left - n as u64
}

/// Decodes what `buf` holds of the body into `out`, consuming it; stops when more bytes are
/// needed or the body is over (`Done`).
pub(crate) fn decode(
    framing: &mut Framing,
    buf: &mut BytesMut,
    out: &mut Pieces,
) -> Result<(), Error> {
    loop {
        match *framing {
            Framing::Empty | Framing::Done => {
                *framing = Framing::Done;
                return Ok(());
            }
            Framing::UntilClose => {
                if !buf.is_empty() {
                    out.push(buf.split().freeze());
                }
                return Ok(());
            }
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(());
                }
                let left = take(buf, left, out);
                *framing = if left == 0 {
                    Framing::Done
                } else {
                    Framing::Length(left)
                };
                if left > 0 {
                    return Ok(());
                }
            }
            Framing::Chunked(Chunk::Size) => {
                let Some(nl) = memchr::memchr(b'\n', buf) else {
                    if buf.len() > MAX_LINE {
                        return Err(Error::Invalid("chunk-size line too long".into()));
                    }
                    return Ok(());
                };
                if nl > MAX_LINE {
                    return Err(Error::Invalid("chunk-size line too long".into()));
                }
                let size = chunk_size(&buf[..nl])?;
                buf.advance(nl + 1);
                *framing = Framing::Chunked(if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                });
            }
            Framing::Chunked(Chunk::Data(left)) => {
                if buf.is_empty() {
                    return Ok(());
                }
                let left = take(buf, left, out);
                *framing = Framing::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                });
                if left > 0 {
                    return Ok(());
                }
            }
            Framing::Chunked(Chunk::DataEnd) => {
                match buf.first() {
                    None => return Ok(()),
                    Some(b'\n') => buf.advance(1),
                    Some(b'\r') => match buf.get(1) {
                        None => return Ok(()),
                        Some(b'\n') => buf.advance(2),
                        Some(_) => return Err(Error::Invalid("no CRLF after chunk data".into())),
                    },
                    Some(_) => return Err(Error::Invalid("no CRLF after chunk data".into())),
                }
                *framing = Framing::Chunked(Chunk::Size);
            }
            Framing::Chunked(Chunk::Trailers(seen)) => {
                let Some(nl) = memchr::memchr(b'\n', buf) else {
                    if seen + buf.len() > MAX_HEAD {
                        return Err(Error::Invalid("trailers too long".into()));
                    }
                    return Ok(());
                };
                let line = &buf[..nl];
                let empty = line.is_empty() || line == b"\r";
                let seen = seen + nl + 1;
                buf.advance(nl + 1);
                if seen > MAX_HEAD {
                    return Err(Error::Invalid("trailers too long".into()));
                }
                *framing = if empty {
                    Framing::Done
                } else {
                    Framing::Chunked(Chunk::Trailers(seen))
                };
            }
        }
    }
}

/// The size on a chunk-size line (hex, then optional `;extensions`, then CR).
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = match memchr::memchr(b';', line) {
        Some(i) => &line[..i],
        None => line,
    };
    let digits = trim_ows(digits);
    if digits.is_empty() || digits.len() > 15 {
        return Err(Error::Invalid("bad chunk size".into()));
    }
    let mut size: u64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(Error::Invalid("bad chunk size".into())),
        };
        size = (size << 4) | u64::from(d);
    }
    Ok(size)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Checks the response reader's invariants on arbitrary bytes (the `upstream_h1` fuzz target
/// and its replay in the test suite): never a panic; the head either parses or is refused;
/// the body decodes to the same bytes and the same end state whether it arrives whole or cut
/// at any size, and never to more bytes than arrived.
#[cfg(any(test, feature = "fuzz"))]
#[allow(
    unreachable_pub,
    reason = "re-exported for the fuzz targets (feature `fuzz`)"
)]
pub fn fuzz_check(data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let (head_len, framing) = match parse_head(data) {
        Ok(Some((parts, used))) => match framing(&parts, false) {
            Ok(f) => (used, f),
            Err(_) => return,
        },
        _ => (0, Framing::Chunked(Chunk::Size)),
    };
    let body = &data[head_len..];
    let run = |step: usize| {
        let mut f = framing;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in body.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            let mut pieces = Pieces::default();
            let result = decode(&mut f, &mut buf, &mut pieces);
            if let Some(b) = pieces.take() {
                out.extend_from_slice(&b);
            }
            if result.is_err() {
                return (out, f, true);
            }
        }
        (out, f, false)
    };
    let whole = run(body.len());
    let cut = run(usize::from(cut % 32) + 1);
    assert!(whole.0.len() <= body.len(), "decoded more than arrived");
    // An error may be found later when bytes come in pieces, never a different result.
    if !whole.2 && !cut.2 {
        assert!(
            whole.0 == cut.0 && whole.1 == cut.1,
            "the split changed the body"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_size_grows_with_full_reads_and_shrinks_with_short_ones() {
        let mut size = ReadSize::default();
        for _ in 0..10 {
            size.record(size.0, size.0);
        }
        assert_eq!(size.0, READ_MAX);
        // A stream's events: a few hundred bytes a read.
        for _ in 0..10 {
            size.record(size.0, 300);
        }
        assert_eq!(size.0, READ_MIN);
        // Between a quarter and all of it: unchanged.
        size.record(READ_MIN, READ_MIN / 2);
        assert_eq!(size.0, READ_MIN);
    }

    /// An idle connection whose last read drained the socket is judged without a system call
    /// while nothing arrives; once the upstream closes it, or sends bytes nobody asked for,
    /// it is refused.
    #[tokio::test]
    async fn idle_connections_are_refused_once_the_upstream_closes_or_talks() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        for stray in [false, true] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                    .await
                    .unwrap();
                let _ = close_rx.await;
                if stray {
                    s.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
            let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
            let headers = HeaderMap::new();
            let (_, mut framing) = conn
                .exchange(
                    &Method::GET,
                    "/",
                    "up",
                    &headers,
                    http_body_util::Empty::<Bytes>::new(),
                    false,
                )
                .await
                .unwrap();
            let mut body = Vec::new();
            while let Some(piece) =
                std::future::poll_fn(|cx| conn.poll_body(&mut framing, cx)).await
            {
                body.extend_from_slice(&piece.unwrap());
            }
            assert_eq!(body, b"hello");
            let fresh = Duration::ZERO;
            assert!(
                conn.is_idle_usable(fresh),
                "a quiet idle connection is reused"
            );
            assert!(
                conn.is_idle_usable(fresh),
                "and asking again changes nothing"
            );
            assert!(
                conn.is_idle_usable(TRUST_READINESS_FOR),
                "an older one is probed, and is still open"
            );
            close_tx.send(()).unwrap();
            // Let the reactor see the close (or the bytes).
            let mut refused = false;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if !conn.is_idle_usable(fresh) {
                    refused = true;
                    break;
                }
            }
            assert!(
                refused,
                "stray={stray}: the connection was still judged usable"
            );
            server.abort();
        }
    }

    #[test]
    fn replays_generated_inputs() {
        let seeds: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nt: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..20_000 {
            let mut data = vec![rng.u8(..)];
            data.extend_from_slice(seeds[i % seeds.len()]);
            for _ in 0..rng.usize(0..6) {
                let at = rng.usize(..data.len());
                match rng.u8(..3) {
                    0 => data[at] = rng.u8(..),
                    1 => data.truncate(at.max(1)),
                    _ => data.insert(at, rng.u8(..)),
                }
            }
            fuzz_check(&data);
        }
    }

    fn run(
        framing: Framing,
        input: &[u8],
        split: usize,
    ) -> Result<(Vec<u8>, Framing, usize), Error> {
        let mut f = framing;
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for piece in input.chunks(split.max(1)) {
            buf.extend_from_slice(piece);
            let mut out = Pieces::default();
            decode(&mut f, &mut buf, &mut out)?;
            if let Some(b) = out.take() {
                body.extend_from_slice(&b);
            }
        }
        Ok((body, f, buf.len()))
    }

    #[test]
    fn chunked_bodies_at_every_split() {
        let wire =
            b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for split in 1..wire.len() {
            let (body, f, left) = run(Framing::Chunked(Chunk::Size), wire, split).unwrap();
            assert_eq!(body, b"hello 0123456789", "split {split}");
            assert_eq!(f, Framing::Done);
            assert_eq!(left, 4, "the next response's bytes stay in the buffer");
        }
        // Bare LF line ends are read too.
        let (body, f, _) = run(Framing::Chunked(Chunk::Size), b"3\nabc\n0\n\n", 64).unwrap();
        assert_eq!((body.as_slice(), f), (&b"abc"[..], Framing::Done));
    }

    #[test]
    fn length_and_close_bodies() {
        let (body, f, left) = run(Framing::Length(5), b"helloEXTRA", 3).unwrap();
        assert_eq!(
            (body.as_slice(), f, left),
            (&b"hello"[..], Framing::Done, 5)
        );
        let (body, f, _) = run(Framing::UntilClose, b"all of it", 2).unwrap();
        assert_eq!(
            (body.as_slice(), f),
            (&b"all of it"[..], Framing::UntilClose)
        );
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"1234567890abcdef0\r\n",
            b"-1\r\n",
        ] {
            assert!(
                run(Framing::Chunked(Chunk::Size), bad, 64).is_err(),
                "{bad:?}"
            );
        }
        let long = vec![b'1'; MAX_LINE + 2];
        assert!(run(Framing::Chunked(Chunk::Size), &long, 64).is_err());
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b'x', MAX_HEAD + 10));
        assert!(run(Framing::Chunked(Chunk::Size), &trailers, 1024).is_err());
    }

    #[test]
    fn heads_and_framing() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nrest";
        let (parts, used) = parse_head(wire).unwrap().unwrap();
        assert_eq!(&wire[used..], b"rest");
        assert_eq!(
            framing(&parts, false).unwrap(),
            Framing::Chunked(Chunk::Size)
        );
        assert_eq!(framing(&parts, true).unwrap(), Framing::Empty);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"NOT HTTP\r\n\r\n").is_err());
        let head = |text: &str| parse_head(text.as_bytes()).unwrap().unwrap().0;
        assert_eq!(
            framing(
                &head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n"),
                false
            )
            .unwrap(),
            Framing::Length(12)
        );
        assert_eq!(
            framing(
                &head("HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n"),
                false
            )
            .unwrap(),
            Framing::Length(7)
        );
        assert_eq!(
            framing(
                &head("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n"),
                false
            )
            .unwrap(),
            Framing::Empty
        );
        assert_eq!(
            framing(&head("HTTP/1.1 200 OK\r\n\r\n"), false).unwrap(),
            Framing::UntilClose
        );
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-length: 8\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +7\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert!(framing(&head(bad), false).is_err(), "{bad}");
        }
        assert!(connection_close(
            &head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n").headers
        ));
    }
}
