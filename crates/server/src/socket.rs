//! Reading a socket now, whatever Tokio's reactor knows.
//!
//! Tokio's `try_read` makes no system call while its readiness flag for the socket is clear,
//! and the flag is set only when the reactor next looks for events. A close or bytes that the
//! kernel already holds can therefore read as "nothing there" ([`std::io::ErrorKind::WouldBlock`]).
//! Where the answer must be the kernel's (is an idle pooled connection still open? does a
//! closing client connection hold unread bytes?), these ask the kernel directly.

use std::io;
use std::os::fd::AsFd;

use rustix::net::RecvFlags;

/// What the kernel holds for a socket right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Nothing to read, and the peer has not closed.
    Nothing,
    /// This many bytes were read (or seen, when peeking).
    Bytes(usize),
    /// The peer closed its side.
    Closed,
    /// The socket failed (a reset, say).
    Failed,
}

/// Reads into `buf` without waiting (`peek`: leaves the bytes in the socket).
pub fn recv_now(socket: impl AsFd, buf: &mut [u8], peek: bool) -> Pending {
    let mut flags = RecvFlags::DONTWAIT;
    if peek {
        flags |= RecvFlags::PEEK;
    }
    match rustix::net::recv(socket, buf, flags) {
        Ok((_, 0)) => Pending::Closed,
        Ok((_, n)) => Pending::Bytes(n),
        Err(e) if io::Error::from(e).kind() == io::ErrorKind::WouldBlock => Pending::Nothing,
        Err(_) => Pending::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    // The blocking sleeps are the point: the reactor must not run between the write and the read.
    #[allow(clippy::disallowed_methods)]
    #[tokio::test]
    async fn sees_what_the_kernel_holds_before_the_reactor_does() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(recv_now(&server, &mut buf, true), Pending::Nothing);
        client.write_all(b"abc").await.unwrap();
        // Give the kernel the bytes; the reactor is not polled in between.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(recv_now(&server, &mut buf, true), Pending::Bytes(3));
        assert_eq!(recv_now(&server, &mut buf, false), Pending::Bytes(3));
        assert_eq!(recv_now(&server, &mut buf, false), Pending::Nothing);
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(recv_now(&server, &mut buf, true), Pending::Closed);
    }
}
