//! One connection: connect, send the request (HTTP/1.1 or h2c), feed every byte of
//! the response to the parser until it ends.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    pin::Pin,
    rc::Rc,
    task::{ready, Poll},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use tokio::{
    io::{AsyncRead as _, AsyncWriteExt as _, ReadBuf},
    net::{TcpSocket, TcpStream},
};

use crate::{
    cli::Protocol,
    failure::Failure,
    http1::check_answer,
    shared::{Phase, Run},
    sse::{Feed, Status},
};

/// Failure messages kept for the report (the first few different ones).
const MAX_SAMPLES: usize = 3;
/// A connection yields after this many reads in a row.
const YIELD_EVERY: u64 = 8;

/// Runs connection `id` to its end and records how it ended.
pub(crate) async fn connection(run: Rc<Run>, id: usize) {
    let result = match run.protocol {
        Protocol::Http1 => http1(&run, id).await,
        Protocol::H2c => h2c(&run, id).await,
    };
    let phase = run.phase.get();
    let mut state = run.state.borrow_mut();
    let conn = &mut state.conns[id];
    let failure = result.err();
    if conn.status == Status::Open {
        conn.status = Status::Closed;
        if phase != Phase::Done {
            state.closed += 1;
            if phase == Phase::Window {
                state.closed_in_window += 1;
            }
            let msg = failure.map_or_else(|| "the response ended".to_owned(), |f| f.to_string());
            sample(&mut state.close_samples, msg);
        }
    } else if conn.status == Status::Connecting {
        conn.status = Status::Failed;
        let failure = failure.unwrap_or(Failure::Http("the response ended before its head".into()));
        match failure {
            Failure::Connect(_) => state.connect_failed += 1,
            Failure::Http(_) | Failure::Io(_) | Failure::Protocol(_) => state.http_failed += 1,
        }
        sample(&mut state.fail_samples, failure.to_string());
    }
}

fn sample(samples: &mut Vec<String>, msg: String) {
    if samples.len() < MAX_SAMPLES && !samples.contains(&msg) {
        samples.push(msg);
    }
}

async fn open(run: &Run, id: usize) -> Result<TcpStream, Failure> {
    let tcp = match tokio::time::timeout(run.connect_timeout, connect(run, id)).await {
        Err(_) => return Err(Failure::Connect(format!("{}: timed out", run.addr))),
        Ok(Err(err)) => return Err(Failure::Connect(format!("{}: {err}", run.addr))),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    run.state.borrow_mut().tcp_connected += 1;
    Ok(tcp)
}

async fn http1(run: &Run, id: usize) -> Result<(), Failure> {
    let mut tcp = open(run, id).await?;
    tcp.write_all(&run.request(id)).await.map_err(Failure::Io)?;
    for reads in 1u64.. {
        // `poll_read` borrows the shared buffer only while it runs (never across an
        // await), and after a read shorter than the buffer tokio clears the socket's
        // readiness: one `read` per wake-up, not a second one to see `EAGAIN`.
        let feed = std::future::poll_fn(|cx| {
            let mut scratch = run.scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut tcp).poll_read(cx, &mut buf)).map_err(Failure::Io)?;
            let data = buf.filled();
            if data.is_empty() {
                return Poll::Ready(Ok((Feed::End, false)));
            }
            let full = data.len() == buf.capacity();
            let mut state = run.state.borrow_mut();
            let feed = state.feed(
                id,
                data,
                run.phase.get() == Phase::Window,
                Instant::now(),
                unix_ns(),
            );
            Poll::Ready(Ok((feed, full)))
        })
        .await?;
        match feed {
            (Feed::More, full) => fair(full || reads % YIELD_EVERY == 0).await,
            (Feed::End, _) => return Ok(()),
            (Feed::Failed(f), _) => return Err(f),
        }
    }
    Ok(())
}

/// Lets the timers and the other connections run: a socket that always has more to
/// read (a full buffer) keeps its readiness, and tokio's budget alone would let one
/// connection parse megabytes before the window's timer is looked at.
async fn fair(now: bool) {
    if now {
        tokio::task::yield_now().await;
    }
}

/// HTTP/2 with prior knowledge: one connection, one stream.
async fn h2c(run: &Run, id: usize) -> Result<(), Failure> {
    let tcp = open(run, id).await?;
    let h2 = |e: h2::Error| Failure::Http(format!("h2c: {e}"));
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .map_err(h2)?;
    // Ends with the connection (when the stream is dropped, or the server goes away).
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.map_err(h2)?;
    let (response, _) = client.send_request(run.h2_request(id)?, true).map_err(h2)?;
    let response = response.await.map_err(h2)?;
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    check_answer(response.status().as_u16(), content_type.as_deref()).map_err(Failure::Http)?;
    run.state.borrow_mut().open(id, Instant::now());
    let mut body = response.into_body();
    let mut frames = 0u64;
    while let Some(data) = body.data().await {
        frames += 1;
        let data = data.map_err(h2)?;
        let _ = body.flow_control().release_capacity(data.len());
        let feed = run.state.borrow_mut().body(
            id,
            &data,
            run.phase.get() == Phase::Window,
            Instant::now(),
            unix_ns(),
            true,
        );
        match feed {
            Feed::More => fair(frames % YIELD_EVERY == 0).await,
            Feed::End => return Ok(()),
            Feed::Failed(f) => return Err(f),
        }
    }
    Ok(())
}

/// Connects from source address `127.0.0.(2 + id % source_ips)` (from the kernel's
/// choice with `source_ips` 0). With tens of thousands of connections from one source
/// address to one port, Linux's search for a free ephemeral port
/// (`__inet_hash_connect`) grows with the ports in use and ends up dominating the
/// ramp-up; a port chosen by `bind` for each of several addresses stays cheap. Every
/// address of 127/8 is loopback.
async fn connect(run: &Run, id: usize) -> io::Result<TcpStream> {
    if run.source_ips == 0 {
        return TcpStream::connect(run.addr).await;
    }
    let socket = TcpSocket::new_v4()?;
    let host = 2 + (id % run.source_ips) as u32;
    let source = Ipv4Addr::from(u32::from(Ipv4Addr::LOCALHOST) & 0xff00_0000 | host);
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    socket.connect(run.addr).await
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
