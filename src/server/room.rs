//! How big the next frame of a busy stream may be: as much as the connection's socket
//! takes at once, read from Linux's `TCP_INFO`.
//!
//! A frame the kernel takes whole leaves nothing in the server, so a frame may be as
//! large as the socket's room without a stalled reader holding more (see `crate::gate`):
//! the peer's window not yet in flight (when it is at least one segment, or the kernel
//! would wait to send it), plus what `TCP_NOTSENT_LOWAT` lets the kernel hold unsent.
//! Until the client has acknowledged [`WARM_UP`] bytes a frame is also at most
//! [`UNMEASURED`]: a client that never reads fills its receive window before it is
//! warm, so its frames never grow past that. After a frame that did not fill its cap (a
//! quiet stream, whose next frame is a burst) nothing is measured, and the next frame
//! is at most [`UNMEASURED`]. Bigger writes make a busy stream cheaper:
//! the kernel's cost is per write (BENCHMARKS.md, "Frames sized to the socket").
//!
//! Linux and Android only (`mod room` is compiled there alone). This file holds the
//! crate's one `unsafe` call, `getsockopt(TCP_INFO)`, which no safe
//! wrapper in `socket2`, `nix` or `rustix` exposes; a benchmark shows what it buys.

use std::os::fd::RawFd;

/// A frame's cap when nothing was measured: before warm-up, and after a frame that
/// did not fill its cap. A stalled reader holds at most this much more than
/// the connection at rest (RELIABILITY.md, "Memory per connection").
pub(crate) use super::settings::UNMEASURED_FRAME as UNMEASURED;
/// The smallest cap: a socket with no room still gets a frame of a few events when
/// it becomes writable, rather than one event per write.
pub(crate) const MIN: usize = 4 * 1024;
/// Bytes the client must have acknowledged before its frames may grow past
/// [`UNMEASURED`]: more than the receive window of a client that has never read.
pub(crate) const WARM_UP: u64 = 256 * 1024;

/// What `TCP_INFO` says about a connection's send side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendSide {
    /// `tcpi_snd_mss`: the segment size.
    pub(crate) mss: u32,
    /// `tcpi_snd_cwnd`: the congestion window, in segments.
    pub(crate) cwnd: u32,
    /// `tcpi_bytes_acked`: bytes the peer acknowledged.
    pub(crate) acked: u64,
    /// `tcpi_notsent_bytes`: bytes in the send queue not yet sent.
    pub(crate) notsent: u32,
    /// `tcpi_bytes_sent`: bytes sent, retransmissions included.
    pub(crate) sent: u64,
    /// `tcpi_bytes_retrans`: bytes sent again.
    pub(crate) retrans: u64,
    /// `tcpi_snd_wnd`: the peer's receive window.
    pub(crate) window: u32,
}

impl SendSide {
    /// The next frame's cap, with `TCP_NOTSENT_LOWAT` at `lowat`: at least [`MIN`].
    pub(crate) fn frame_cap(&self, lowat: u32) -> usize {
        let room = self.room(lowat).max(MIN);
        if self.acked < WARM_UP {
            return room.min(UNMEASURED);
        }
        room
    }

    /// Bytes a write now would leave in the peer's window or within the low-water mark.
    fn room(&self, lowat: u32) -> usize {
        let in_flight = self
            .sent
            .saturating_sub(self.retrans)
            .saturating_sub(self.acked);
        let window = u64::from(self.window).min(u64::from(self.cwnd) * u64::from(self.mss));
        let mut sendable = window.saturating_sub(in_flight);
        if sendable < u64::from(self.mss) {
            // Less than a segment: the kernel holds it until the window opens.
            sendable = 0;
        }
        let unsent = u64::from(lowat.saturating_sub(self.notsent));
        usize::try_from(sendable + unsent).unwrap_or(usize::MAX)
    }
}

/// The cap of the frame after one that closed the write gate (`full` if it filled its
/// cap), for the socket `fd` with `TCP_NOTSENT_LOWAT` at `lowat`.
pub(crate) fn next_frame_cap(fd: RawFd, lowat: u32, full: bool) -> usize {
    if !full {
        return UNMEASURED;
    }
    send_side(fd).map_or(UNMEASURED, |side| side.frame_cap(lowat))
}

/// Reads `TCP_INFO` of the socket `fd`; `None` if the call fails or the kernel's
/// `tcp_info` is older than Linux 5.4 (no `tcpi_snd_wnd`).
#[allow(unsafe_code)]
pub(crate) fn send_side(fd: RawFd) -> Option<SendSide> {
    // `struct tcp_info` is 232 bytes up to `tcpi_rcv_wnd`; newer kernels add fields
    // the kernel leaves out when the buffer is shorter. Aligned for its `u64`s.
    let mut buf = [0u64; 32];
    let mut len = std::mem::size_of_val(&buf) as libc::socklen_t;
    // SAFETY: `buf` is valid for writes of `len` bytes, which is what `getsockopt`
    // writes at most, and `len` is a valid `socklen_t` it updates. `fd` is any
    // integer: a closed or foreign one makes the call fail or read another socket's
    // numbers, never touch memory but `buf` and `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 || (len as usize) < 232 {
        return None;
    }
    let mut bytes = [0u8; 256];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(buf) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(parse(&bytes))
}

/// The fields of a `struct tcp_info` (as `<linux/tcp.h>` lays it out) that
/// [`SendSide`] keeps.
fn parse(info: &[u8; 256]) -> SendSide {
    let u32_at = |at: usize| {
        let mut word = [0; 4];
        word.copy_from_slice(&info[at..at + 4]);
        u32::from_ne_bytes(word)
    };
    let u64_at = |at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&info[at..at + 8]);
        u64::from_ne_bytes(word)
    };
    SendSide {
        mss: u32_at(16),
        cwnd: u32_at(80),
        acked: u64_at(120),
        notsent: u32_at(144),
        sent: u64_at(200),
        retrans: u64_at(208),
        window: u32_at(228),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOWAT: u32 = 16 * 1024;

    /// A warm connection with a 64 KiB window, nothing in flight or unsent.
    fn idle() -> SendSide {
        SendSide {
            mss: 32 * 1024,
            cwnd: 10,
            acked: 1 << 20,
            notsent: 0,
            sent: 1 << 20,
            retrans: 0,
            window: 64 * 1024,
        }
    }

    #[test]
    fn a_warm_idle_socket_takes_its_window_and_the_low_water_mark() {
        assert_eq!(idle().frame_cap(LOWAT), 80 * 1024);
    }

    #[test]
    fn before_warm_up_frames_are_at_most_unmeasured() {
        let cold = SendSide {
            acked: WARM_UP - 1,
            sent: WARM_UP - 1,
            ..idle()
        };
        assert_eq!(cold.frame_cap(LOWAT), UNMEASURED);
        // A client that stopped reading before warm-up: less room, smaller frames.
        let stalled = SendSide {
            sent: cold.sent + 64 * 1024,
            notsent: 10 * 1024,
            ..cold
        };
        assert_eq!(stalled.frame_cap(LOWAT), 6 * 1024);
    }

    #[test]
    fn bytes_in_flight_and_unsent_take_room() {
        let busy = SendSide {
            sent: idle().sent + 40 * 1024,
            notsent: 10 * 1024,
            ..idle()
        };
        // A window of 24 KiB left is less than a segment: the kernel holds it.
        assert_eq!(busy.frame_cap(LOWAT), 6 * 1024);
        let retransmitted = SendSide {
            retrans: 40 * 1024,
            ..busy
        };
        assert_eq!(retransmitted.frame_cap(LOWAT), 70 * 1024);
    }

    #[test]
    fn the_congestion_window_bounds_the_room_too() {
        let congested = SendSide {
            cwnd: 2,
            mss: 1448,
            ..idle()
        };
        assert_eq!(congested.frame_cap(LOWAT), 2 * 1448 + 16 * 1024);
    }

    #[test]
    fn a_full_socket_still_gets_a_small_frame() {
        let full = SendSide {
            sent: idle().sent + 64 * 1024,
            notsent: 40 * 1024,
            ..idle()
        };
        assert_eq!(full.frame_cap(LOWAT), MIN);
        assert_eq!(idle().frame_cap(0), 64 * 1024);
    }

    #[test]
    fn the_fields_are_read_where_linux_lays_them_out() {
        let mut info = [0u8; 256];
        info[16..20].copy_from_slice(&1448u32.to_ne_bytes());
        info[80..84].copy_from_slice(&10u32.to_ne_bytes());
        info[120..128].copy_from_slice(&7u64.to_ne_bytes());
        info[144..148].copy_from_slice(&3u32.to_ne_bytes());
        info[200..208].copy_from_slice(&9u64.to_ne_bytes());
        info[208..216].copy_from_slice(&1u64.to_ne_bytes());
        info[228..232].copy_from_slice(&65535u32.to_ne_bytes());
        let side = parse(&info);
        assert_eq!(
            side,
            SendSide {
                mss: 1448,
                cwnd: 10,
                acked: 7,
                notsent: 3,
                sent: 9,
                retrans: 1,
                window: 65535,
            }
        );
    }

    /// On a real loopback connection: a client that reads warms up, and what it has
    /// not read yet shows as unsent.
    #[test]
    fn a_loopback_socket_reports_what_it_sent_and_what_was_acknowledged() {
        use std::{
            io::{Read, Write},
            os::fd::AsRawFd,
        };

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let fresh = send_side(server.as_raw_fd()).expect("Linux 5.4 or later");
        assert_eq!((fresh.sent, fresh.acked, fresh.notsent), (0, 0, 0));
        assert!(fresh.mss > 0 && fresh.window > 0, "{fresh:?}");
        assert_eq!(fresh.frame_cap(LOWAT), UNMEASURED);

        let chunk = vec![b'x'; 64 * 1024];
        let mut read = vec![0; 64 * 1024];
        for _ in 0..8 {
            server.write_all(&chunk).unwrap();
            client.read_exact(&mut read).unwrap();
        }
        // Acknowledgements on loopback arrive within the reads above, or soon after.
        let mut warm = send_side(server.as_raw_fd()).unwrap();
        for _ in 0..100 {
            if warm.acked == 8 * 64 * 1024 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            warm = send_side(server.as_raw_fd()).unwrap();
        }
        assert_eq!(warm.sent, 8 * 64 * 1024, "{warm:?}");
        assert_eq!(warm.acked, 8 * 64 * 1024, "{warm:?}");
        assert!(warm.frame_cap(LOWAT) > UNMEASURED, "{warm:?}");
    }
}
