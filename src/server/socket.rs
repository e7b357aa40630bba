//! Sockets: binding the listener, the options of each accepted connection, and the
//! accept loop's back-off when the process is out of file descriptors.

use std::{io, net::SocketAddr, time::Duration};

use socket2::{SockRef, TcpKeepalive};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs},
    time::Instant,
};

use super::settings::Settings;

/// Pending connections the kernel queues for `accept`.
const BACKLOG: u32 = 4096;
/// The first and the longest pause after an accept error that is not one connection's.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// At most one log line per this interval about accept errors.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A listener on the first address `addr` resolves to that can be bound.
pub(crate) async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last_err = None;
    for addr in tokio::net::lookup_host(addr).await? {
        match bind_one(addr) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind to")))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Sets the connection's socket options from `settings`.
pub(crate) fn configure(tcp: &TcpStream, settings: &Settings) -> io::Result<()> {
    let socket = SockRef::from(tcp);
    // Events are small writes that should leave at once.
    socket.set_tcp_nodelay(true)?;
    if let Some(keepalive) = settings.keepalive {
        let params = TcpKeepalive::new().with_time(keepalive.time);
        #[cfg(any(
            target_os = "linux",
            target_os = "android",
            target_os = "macos",
            target_os = "freebsd"
        ))]
        let params = params
            .with_interval(keepalive.interval)
            .with_retries(keepalive.retries);
        socket.set_tcp_keepalive(&params)?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(timeout) = settings.user_timeout {
        socket.set_tcp_user_timeout(Some(timeout))?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(lowat) = settings.notsent_lowat {
        socket.set_tcp_notsent_lowat(lowat)?;
    }
    if let Some(size) = settings.send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    Ok(())
}

/// Accepts the next connection; after an error that is not one connection's (out of
/// file descriptors, out of memory) it pauses, longer each time, and logs at most once
/// a second.
#[derive(Debug, Default)]
pub(crate) struct Accept {
    pause: Duration,
    failures: u64,
    logged: Option<Instant>,
}

impl Accept {
    pub(crate) async fn next(&mut self, listener: &TcpListener) -> TcpStream {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    self.pause = Duration::ZERO;
                    return tcp;
                }
                Err(err) => self.failed(&err).await,
            }
        }
    }

    async fn failed(&mut self, err: &io::Error) {
        use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted, WouldBlock};
        if matches!(
            err.kind(),
            ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
        ) {
            // That one connection is gone; the next may be fine.
            return;
        }
        self.failures += 1;
        self.pause = (self.pause * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                failures = self.failures,
                pause_ms = self.pause.as_millis() as u64,
                "accepting connections failed: {err}; pausing"
            );
            self.logged = Some(Instant::now());
            self.failures = 0;
        }
        tokio::time::sleep(self.pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backs_off_from_errors_that_are_not_one_connections() {
        let mut accept = Accept::default();
        let emfile = io::Error::from_raw_os_error(24);
        let start = Instant::now();
        accept.failed(&emfile).await;
        assert_eq!(start.elapsed(), MIN_BACKOFF);
        for _ in 0..10 {
            accept.failed(&emfile).await;
        }
        assert_eq!(accept.pause, MAX_BACKOFF);
        let before = Instant::now();
        accept
            .failed(&io::Error::from(io::ErrorKind::ConnectionAborted))
            .await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
