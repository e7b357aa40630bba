//! Stalled readers, for `benches/memory.sh`: clients that ask for an endless SSE
//! stream and then never read a byte, so that the server's memory per such client
//! (and its kernel send queue) can be measured.
//!
//! ```text
//! cargo run --release --example stalled -- --port 3000 --path '/slow?count=1000000000' --conns 1000
//! cargo run --release --example stalled -- --port 3000 --path /stream --h2-streams 200
//! ```
//!
//! - HTTP/1.1 (default): `--conns N` connections from `127.0.0.2` …, each sends one
//!   `GET` and reads nothing (the kernel's receive buffer fills, its window closes,
//!   then the server's send queue fills).
//! - h2c (`--h2-streams M`): one HTTP/2 connection (prior knowledge), windows at the
//!   protocol's default of 65,535 bytes, `M` streams whose bodies are never polled:
//!   the connection is read (pings, settings), the streams' windows are never given
//!   back.
//!
//! It prints `ready` once every request is sent (h2c: every response head received),
//! then holds the connections until stdin closes or the process is killed. Only
//! `127.0.0.1` is a target.

use std::{
    io::{self, Write as _},
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use http::Request;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP/2 protocol's default window (RFC 9113 §6.9.2), stream and connection.
const H2_DEFAULT_WINDOW: u32 = 65_535;

struct Args {
    port: u16,
    path: String,
    conns: usize,
    h2_streams: Option<usize>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args = parse(std::env::args().skip(1))?;
    // What is held open (and dropped at the end).
    let (_h1, _h2) = match args.h2_streams {
        Some(streams) => (
            Vec::new(),
            h2_streams(args.port, &args.path, streams).await?,
        ),
        None => (
            h1_conns(args.port, &args.path, args.conns).await?,
            Vec::new(),
        ),
    };
    println!("ready");
    io::stdout().flush()?;
    // Hold everything until stdin closes (or the process is killed).
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await.unwrap_or(0) > 0 {}
    Ok(())
}

/// `conns` HTTP/1.1 connections, each with one request sent and nothing read.
async fn h1_conns(port: u16, path: &str, conns: usize) -> Result<Vec<TcpStream>, BoxError> {
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n");
    let mut held = Vec::with_capacity(conns);
    for i in 0..conns {
        // Spread over source addresses, as the load generator does.
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % 32) as u8);
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source.into(), 0))?;
        let mut tcp = socket
            .connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port))
            .await?;
        tcp.write_all(request.as_bytes()).await?;
        held.push(tcp);
    }
    Ok(held)
}

/// One h2c connection with `streams` streams whose bodies are never read.
async fn h2_streams(
    port: u16,
    path: &str,
    streams: usize,
) -> Result<Vec<http::Response<hyper::body::Incoming>>, BoxError> {
    let tcp = TcpStream::connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)).await?;
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(H2_DEFAULT_WINDOW)
        .initial_connection_window_size(H2_DEFAULT_WINDOW)
        .adaptive_window(false)
        .handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tcp))
        .await?;
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            eprintln!("h2 connection: {err}");
        }
    });
    let mut held = Vec::with_capacity(streams);
    for _ in 0..streams {
        send.ready().await?;
        let req = Request::get(format!("http://127.0.0.1:{port}{path}"))
            .header("accept", "text/event-stream")
            .body(Empty::new())?;
        let res = tokio::time::timeout(Duration::from_secs(10), send.send_request(req)).await??;
        held.push(res);
    }
    Ok(held)
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, BoxError> {
    let mut args = Args {
        port: 0,
        path: "/slow?count=1000000000".to_owned(),
        conns: 1,
        h2_streams: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => args.port = value.parse()?,
            "--path" => args.path = value,
            "--conns" => args.conns = value.parse()?,
            "--h2-streams" => args.h2_streams = Some(value.parse()?),
            _ => return Err(format!("unknown option {flag:?}").into()),
        }
    }
    if args.port == 0 {
        return Err("--port is required".into());
    }
    Ok(args)
}
