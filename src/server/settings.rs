//! The server's settings, plain data with their defaults.

use std::time::Duration;

/// `REQUEST_TIMEOUT_MS`'s default (shared/CONTRACT.md).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept free under the process's limit: for the connections answered
/// past the cap ([`SHED_SLOTS`]) and whatever else the process opens.
pub(crate) const FD_HEADROOM: usize = 128;
/// Connections past the cap answered at the same time; more are closed at once.
pub(crate) const SHED_SLOTS: usize = 64;
/// The cap of every SSE frame on a connection whose socket's room is not measured
/// (HTTP/2, TLS, other systems than Linux; on Linux before warm-up and after a quiet
/// spell, see `room`): a stalled reader holds at most about this much.
pub(crate) const UNMEASURED_FRAME: usize = 12 * 1024;
/// The open-files limit assumed where the process's own cannot be read.
const FALLBACK_FD_LIMIT: usize = 1024;

/// TCP keepalive: probe after `time` idle, every `interval`, give up after `retries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Keepalive {
    pub(crate) time: Duration,
    pub(crate) interval: Duration,
    pub(crate) retries: u32,
}

/// Every setting of a [`Server`](super::Server); see its table of defaults.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) request_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) user_timeout: Option<Duration>,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) notsent_lowat: Option<u32>,
    pub(crate) http1_max_buf_size: usize,
    pub(crate) http2_max_send_buf_size: usize,
    pub(crate) http2_max_concurrent_streams: u32,
    pub(crate) shutdown_grace: Duration,
    pub(crate) shed_retry: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            request_timeout: REQUEST_TIMEOUT,
            max_connections: default_max_connections(),
            keepalive: Some(Keepalive {
                time: Duration::from_secs(30),
                interval: Duration::from_secs(10),
                retries: 3,
            }),
            user_timeout: Some(Duration::from_secs(30)),
            send_buffer: None,
            notsent_lowat: Some(16 * 1024),
            http1_max_buf_size: 64 * 1024,
            http2_max_send_buf_size: 16 * 1024,
            http2_max_concurrent_streams: 200,
            shutdown_grace: Duration::from_secs(3),
            shed_retry: Duration::from_secs(1),
        }
    }
}

/// The process's open-files soft limit minus [`FD_HEADROOM`] (at least 1).
pub(crate) fn default_max_connections() -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| soft_fd_limit(&limits))
        .unwrap_or(FALLBACK_FD_LIMIT);
    limit.saturating_sub(FD_HEADROOM).max(1)
}

/// The soft `Max open files` of a `/proc/<pid>/limits` text (`usize::MAX` when
/// unlimited).
fn soft_fd_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(usize::MAX),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_limit_of_open_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63413                63413                processes \n\
                      Max open files            20000                1048576              files     \n";
        assert_eq!(soft_fd_limit(limits), Some(20_000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_fd_limit(unlimited), Some(usize::MAX));
        assert_eq!(soft_fd_limit("Max processes 1 1 processes\n"), None);
    }

    #[test]
    fn the_default_cap_keeps_headroom() {
        let cap = default_max_connections();
        assert!(cap >= 1);
        if let Some(limit) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| soft_fd_limit(&l))
        {
            assert_eq!(cap, limit.saturating_sub(FD_HEADROOM).max(1));
        }
    }
}
