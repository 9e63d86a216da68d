//! Accepting connections, the same way for every listener inferscope runs (the gateway's proxy,
//! admin and both OTLP ingest receivers, the simulator, the test receiver):
//!
//! - **A cap on open connections.** Past it a new connection is closed at once, so a flood of
//!   connections cannot take the file descriptors the other listeners and the upstream need.
//! - **Accept errors back off.** Out of file descriptors (`EMFILE`) the loop sleeps from 5 ms,
//!   doubling to 1 s, instead of spinning on a core; such errors and refused connections are
//!   logged at most once per 10 s, with how many there were.
//! - **Quiet connections are closed.** A connection with no request in progress for the
//!   header timeout is closed: one that never sends a byte, one that sent half a head, an idle
//!   keep-alive or HTTP/2 connection. Checked once per period (no clock read per request): a
//!   connection is closed after a whole period in which no request began or ended, so between
//!   one and two periods after its last request ended, and one that never sent a request after
//!   one period.
//! - **Stopping.** [`Listener::serve`] stops accepting when told to drain, lets its connections
//!   finish for the grace period, then cuts the rest and returns once every connection task has
//!   ended, so whatever a cut connection held (an exchange and its spans) has ended too.
//!
//! A response body that cannot be completed (the upstream broke off, a timeout) throws the
//! connection's [`ClientConn::cut`] switch instead of returning an error: hyper then writes
//! every byte it was given and the socket closes after them (see [`ClientIo`]). hyper closes a
//! connection on a body error without flushing what it buffered, which lost the last bytes of a
//! response whose upstream closed right after them.
//!
//! [`socket`] asks the kernel directly whether a socket holds bytes or was closed (Tokio's
//! `try_read` can answer from stale readiness); the gateway's upstream pool uses it too.

mod listener;
pub mod socket;

pub use listener::{
    ClientBody, ClientConn, ClientIo, InProgress, Limits, Listener, Phase, open_file_limit,
    raise_open_file_limit,
};
