use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::socket::{Pending, recv_now};

/// How a listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// A connection with no request in progress for this long is closed.
    pub header_timeout: Option<Duration>,
    /// How long connections may finish after the drain starts, before they are cut.
    pub grace: Duration,
}

/// What a listener is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Accept and serve.
    Serving,
    /// Accept nothing more; let connections finish.
    Draining,
}

/// One client connection, as its requests see it.
#[derive(Debug)]
pub struct ClientConn {
    /// The client's address.
    pub addr: SocketAddr,
    /// The client's IP, formatted once per connection for span attributes.
    pub ip: Arc<str>,
    cut: AtomicBool,
    /// A request body on this connection was left unread (the response went first): the
    /// client may still be sending it when the connection closes.
    unread_body: AtomicBool,
    /// Requests started or ended on this connection, ever: unchanged over a period means no
    /// request began or finished in it.
    events: AtomicU64,
    /// Requests whose response has not ended.
    active: AtomicUsize,
}

impl ClientConn {
    fn new(addr: SocketAddr) -> ClientConn {
        ClientConn {
            addr,
            ip: Arc::from(addr.ip().to_string()),
            cut: AtomicBool::new(false),
            unread_body: AtomicBool::new(false),
            events: AtomicU64::new(0),
            active: AtomicUsize::new(0),
        }
    }

    /// Ends the connection once every byte already handed to hyper is written (HTTP/1 only:
    /// an HTTP/2 connection carries other requests' streams).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }

    /// Whether the connection has been cut.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// A request started; it counts as in progress until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> InProgress {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        InProgress(self.clone())
    }
}

/// A request in progress on a connection (see [`ClientConn::request`]).
#[derive(Debug)]
pub struct InProgress(Arc<ClientConn>);

impl InProgress {
    /// The connection.
    pub fn conn(&self) -> &Arc<ClientConn> {
        &self.0
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request body as the client sends it. Dropped before its end (the upstream answered
/// early, say), it marks its connection: the client may still be sending, and the connection's
/// close must read that away first (see [`ClientIo`]).
#[derive(Debug)]
pub struct ClientBody {
    body: Incoming,
    conn: Arc<ClientConn>,
    ended: bool,
}

impl ClientBody {
    /// `body`, arriving on `conn`.
    pub fn new(body: Incoming, conn: Arc<ClientConn>) -> ClientBody {
        ClientBody {
            body,
            conn,
            ended: false,
        }
    }
}

impl http_body::Body for ClientBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() {
            this.ended = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        use http_body::Body as _;
        if !self.is_end_stream() {
            self.conn.unread_body.store(true, Ordering::Relaxed);
        }
    }
}

/// The client's socket as hyper sees it. Once the connection is [cut](ClientConn::cut), the
/// next flush (which hyper makes only after writing everything it buffered) shuts the socket's
/// write side and fails, and hyper drops the connection: the client gets every byte, then the
/// end of the stream, as it would from an upstream that closed.
///
/// **Lingering close.** Closing a socket that holds bytes nobody read makes the kernel send a
/// reset instead of a FIN, and a reset can reach the client before it has read the response:
/// a client still uploading (an upstream that answered 413 early, say) then sees its write
/// fail with a broken pipe and never reads the answer. So whenever the gateway ends a
/// connection (hyper's shutdown, or a cut) it first shuts its write side, then, if the client
/// has sent bytes nobody read or a request body was left unread ([`ClientBody`]), reads and
/// discards what arrives until the client closes, it stays quiet for `LINGER_QUIET` (500 ms), or
/// `LINGER_MAX` (5 s) has passed, as nginx's `lingering_close` does. Memory stays one small
/// buffer; time is bounded.
pub struct ClientIo {
    io: TokioIo<TcpStream>,
    conn: Arc<ClientConn>,
    linger: Linger,
}

/// Longest a closing connection reads away what its client still sends (nginx: 30 s).
const LINGER_MAX: Duration = Duration::from_secs(5);
/// A closing connection whose client sends nothing for this long is closed (nginx: 5 s).
const LINGER_QUIET: Duration = Duration::from_millis(500);
/// Reads per poll while lingering, before yielding to other tasks.
const LINGER_READS_PER_POLL: usize = 64;

/// Where a connection is in its lingering close.
enum Linger {
    /// Not closing yet.
    Open,
    /// Write side shut; reading away what the client still sends.
    Draining {
        /// The end of the whole linger.
        until: tokio::time::Instant,
        /// The end of the current quiet spell.
        quiet: Pin<Box<tokio::time::Sleep>>,
    },
    /// Done: the socket may close.
    Done,
}

impl Linger {
    fn draining() -> Linger {
        let now = tokio::time::Instant::now();
        Linger::Draining {
            until: now + LINGER_MAX,
            quiet: Box::pin(tokio::time::sleep_until(now + LINGER_QUIET)),
        }
    }
}

impl ClientIo {
    fn new(stream: TcpStream, conn: Arc<ClientConn>) -> ClientIo {
        ClientIo {
            io: TokioIo::new(stream),
            conn,
            linger: Linger::Open,
        }
    }

    /// Shuts the write side (every byte written before it goes first), then reads away what
    /// the client still sends (see [`ClientIo`]). Ready once the socket may close.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut sink = [0u8; 16 * 1024];
        loop {
            match &mut self.linger {
                Linger::Done => return Poll::Ready(()),
                Linger::Open => {
                    let shut = std::task::ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                    // Asked of the kernel, not of the reactor, which may not have looked yet.
                    // Nothing unread: the close sends a FIN, not a reset; no need to linger.
                    let unread = recv_now(self.io.inner(), &mut sink, false);
                    // A body left unread may still be on its way even if nothing is here now.
                    let body_left = self.conn.unread_body.load(Ordering::Relaxed)
                        && matches!(unread, Pending::Nothing);
                    self.linger = match (shut, unread) {
                        (Ok(()), Pending::Bytes(_)) => Linger::draining(),
                        (Ok(()), _) if body_left => Linger::draining(),
                        _ => Linger::Done,
                    };
                }
                Linger::Draining { until, quiet } => {
                    let stream = self.io.inner();
                    let finished = 'drain: {
                        for _ in 0..LINGER_READS_PER_POLL {
                            match stream.poll_read_ready(cx) {
                                Poll::Pending => {
                                    if quiet.as_mut().poll(cx).is_pending() {
                                        return Poll::Pending;
                                    }
                                    break 'drain true;
                                }
                                Poll::Ready(Err(_)) => break 'drain true,
                                Poll::Ready(Ok(())) => match stream.try_read(&mut sink) {
                                    // The client closed: nothing more can arrive.
                                    Ok(0) => break 'drain true,
                                    Ok(_) => {
                                        let next = tokio::time::Instant::now() + LINGER_QUIET;
                                        quiet.as_mut().reset(next.min(*until));
                                    }
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                                    Err(_) => break 'drain true,
                                },
                            }
                        }
                        tokio::time::Instant::now() >= *until
                    };
                    if !finished {
                        // A batch read and the client is still sending: let others run.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    self.linger = Linger::Done;
                }
            }
        }
    }
}

impl Read for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.cut.load(Ordering::Acquire) {
            std::task::ready!(this.poll_close(cx));
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "response cut short",
            )));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close(cx).map(Ok)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// A log line at most once per [`LOG_EVERY`], saying how many events it stands for.
#[derive(Debug, Default)]
struct Throttled {
    last: Mutex<Option<Instant>>,
    count: AtomicU64,
}

/// How often a repeated warning is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Throttled {
    /// Counts one event; returns how many to report when a line is due.
    fn due(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return None;
        }
        *last = Some(now);
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

/// A bound listener and how it treats connections.
pub struct Listener {
    /// What it serves, for logs (`proxy`, `admin`, `ingest-grpc`, `ingest-http`).
    pub name: &'static str,
    listener: TcpListener,
    limits: Limits,
    open: Arc<Open>,
    refused: Throttled,
    errors: Throttled,
    /// Terminates TLS on each connection before HTTP.
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Connections open, and a wake-up when the last one ends.
#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    none_left: Notify,
}

/// Counts one open connection until dropped.
struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// A timer that never fires in practice (a year).
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// First pause after an accept error that a pause can cure (out of descriptors or memory).
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// Longest such pause.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Listener {
    /// Binds `addr`.
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        limits: Limits,
    ) -> io::Result<Listener> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Listener {
            name,
            listener,
            limits,
            open: Arc::new(Open::default()),
            refused: Throttled::default(),
            errors: Throttled::default(),
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Terminates TLS with `acceptor` on every connection (a handshake not done within the
    /// header timeout closes the connection).
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, acceptor: tokio_rustls::TlsAcceptor) -> Listener {
        self.tls = Some(acceptor);
        self
    }

    /// Serves with the usual builder (HTTP/1.1 and h2c, found by the preface) a handler whose
    /// responses are written whole: each request counts as in progress until its handler's
    /// future ends. See [`Listener::serve`].
    pub async fn serve_plain<H, F, B, E>(self, handle: H, phase: watch::Receiver<Phase>) -> bool
    where
        H: Fn(http::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<http::Response<B>, E>> + Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let handle = move |req, in_progress: InProgress| {
            let response = handle(req);
            async move {
                let _in_progress = in_progress;
                response.await
            }
        };
        let builder = Builder::new(TokioExecutor::new());
        self.serve(builder, handle, phase, || {}).await
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections with `builder` and `handle` until `phase` turns to draining; then
    /// lets them finish for the grace period and cuts the rest. Returns whether every
    /// connection finished within the grace period.
    ///
    /// `handle` gets each request and its [`InProgress`] guard, which it keeps until its
    /// response has ended (for a streamed response: in the body). `on_cut` runs just before
    /// the connections still open are cut.
    pub async fn serve<H, F, B, E>(
        self,
        builder: Builder<TokioExecutor>,
        handle: H,
        mut phase: watch::Receiver<Phase>,
        on_cut: impl FnOnce(),
    ) -> bool
    where
        H: Fn(http::Request<Incoming>, InProgress) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<http::Response<B>, E>> + Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (cut_tx, cut_rx) = watch::channel(false);
        let mut backoff = BACKOFF_FIRST;
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = phase.wait_for(|p| *p >= Phase::Draining) => break,
            };
            let (stream, addr) = match accepted {
                Ok(a) => {
                    backoff = BACKOFF_FIRST;
                    a
                }
                Err(e) => {
                    self.accept_failed(&e, &mut backoff).await;
                    continue;
                }
            };
            if self.open.count.load(Ordering::Acquire) >= self.limits.max_connections {
                drop(stream);
                if let Some(n) = self.refused.due() {
                    tracing::warn!(
                        listener = self.name,
                        max_connections = self.limits.max_connections,
                        refused = n,
                        "connection limit reached: new connections are closed at once"
                    );
                }
                continue;
            }
            self.open.count.fetch_add(1, Ordering::AcqRel);
            let guard = OpenGuard(self.open.clone());
            let _ = stream.set_nodelay(true);
            let conn = Arc::new(ClientConn::new(addr));
            let io = ClientIo::new(stream, conn.clone());
            let handle = handle.clone();
            let service_conn = conn.clone();
            let service = hyper::service::service_fn(move |req| {
                let in_progress = service_conn.request();
                handle(req, in_progress)
            });
            let timeout = self.limits.header_timeout;
            let watch = Watch {
                phase: phase.clone(),
                cut: cut_rx.clone(),
            };
            #[cfg(feature = "tls")]
            if let Some(acceptor) = &self.tls {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let handshake = acceptor.accept(TokioIo::new(io));
                    let stream = tokio::select! {
                        s = handshake => s,
                        _ = tokio::time::sleep(timeout.unwrap_or(FOREVER)) => return,
                    };
                    let Ok(stream) = stream else { return };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    drive(connection, &conn, timeout, watch).await;
                });
                continue;
            }
            // With upgrades: an `Upgrade` request (a WebSocket) can take the connection over.
            let connection = builder
                .serve_connection_with_upgrades(io, service)
                .into_owned();
            tokio::spawn(async move {
                let _guard = guard;
                drive(connection, &conn, timeout, watch).await;
            });
        }
        drop(self.listener);
        let open = self.open.count.load(Ordering::Acquire);
        if open > 0 {
            tracing::debug!(
                listener = self.name,
                open,
                grace_ms = self.limits.grace.as_millis() as u64,
                "draining connections"
            );
        }
        let clean = wait_closed(&self.open, self.limits.grace).await;
        if !clean {
            tracing::warn!(
                listener = self.name,
                open = self.open.count.load(Ordering::Acquire),
                "grace period over; cutting the connections still open"
            );
            on_cut();
            let _ = cut_tx.send(true);
            // Cut connections end at once; the bound is for a task stuck elsewhere.
            let _ = wait_closed(&self.open, Duration::from_secs(5)).await;
        }
        clean
    }

    async fn accept_failed(&self, e: &io::Error, backoff: &mut Duration) {
        // Errors about one connection (it was reset before it was accepted) need no pause.
        let per_connection = matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
        );
        if let Some(n) = self.errors.due() {
            tracing::warn!(
                listener = self.name,
                error = %e,
                errors = n,
                "accept failed; backing off"
            );
        }
        if !per_connection {
            tokio::time::sleep(*backoff).await;
            *backoff = (*backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// What a connection task watches besides its connection: the drain and the cut.
struct Watch {
    phase: watch::Receiver<Phase>,
    cut: watch::Receiver<bool>,
}

/// Runs one connection to its end, or until it has been quiet for the header timeout, or
/// until the drain (requests in progress finish) or the cut (dropped at once, and with it
/// whatever its requests held).
async fn drive<C: GracefulConnection>(
    connection: C,
    conn: &ClientConn,
    timeout: Option<Duration>,
    mut watch: Watch,
) {
    let mut connection = std::pin::pin!(connection);
    let period = timeout.unwrap_or(FOREVER);
    let mut sleep = std::pin::pin!(tokio::time::sleep(period));
    let mut seen = 0u64;
    let mut draining = false;
    let mut quiet = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = watch.cut.wait_for(|c| *c) => return,
            _ = watch.phase.wait_for(|p| *p >= Phase::Draining), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = sleep.as_mut(), if timeout.is_some() && !draining => {
                let events = conn.events.load(Ordering::Relaxed);
                let idle = conn.active.load(Ordering::Relaxed) == 0;
                // Asked to close a period ago, and still open: drop it.
                if quiet && idle {
                    return;
                }
                // Quiet for a whole period: no request began or ended in it.
                if events == seen && idle {
                    tracing::debug!(client = %conn.addr, requests = events / 2, "closing a quiet connection");
                    quiet = true;
                    connection.as_mut().graceful_shutdown();
                }
                seen = events;
                sleep.as_mut().reset(tokio::time::Instant::now() + period);
            }
        }
    }
}

/// Waits until no connection is open, at most `limit`; returns whether none is.
async fn wait_closed(open: &Open, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = open.none_left.notified();
        if open.count.load(Ordering::Acquire) == 0 {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return open.count.load(Ordering::Acquire) == 0;
        }
    }
}

/// The process's open-file limit (the soft one), when it can be read.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the process's soft open-file limit to its hard limit (as Go's runtime does at start):
/// a soft limit of 1,024 would cap the gateway at a few hundred streams. Returns the limit now
/// in force.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
    open_file_limit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_lines_count_what_they_stand_for() {
        let t = Throttled::default();
        assert_eq!(t.due(), Some(1));
        for _ in 0..99 {
            assert_eq!(t.due(), None);
        }
        *t.last.lock().unwrap() = Some(Instant::now() - LOG_EVERY);
        assert_eq!(t.due(), Some(100));
    }
}
