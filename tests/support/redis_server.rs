//! A `redis-server` child process on a free loopback port, for the tests that need a
//! real Redis (and to restart it): `use support::redis_server::Redis`.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Patience for redis-server to start.
const STEP: Duration = Duration::from_secs(10);

/// A `redis-server` child on `127.0.0.1:port`, killed (and its directory removed) on
/// drop.
pub(crate) struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// A hub on this Redis (one instance of a deployment) with the default history.
    #[cfg(feature = "redis")]
    pub(crate) async fn hub(&self) -> tower_sse::hub::Hub {
        tower_sse::hub::Hub::redis(self.url().as_str(), tower_sse::hub::History::default())
            .await
            .expect("a hub on the test Redis")
    }

    fn binary() -> String {
        std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
    }

    /// Starts a server on a free port.
    pub(crate) async fn start() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the redis directory");
        let mut redis = Self {
            child: None,
            port: 0,
            dir,
        };
        // The port is free when we look; if something takes it before redis binds it,
        // redis exits and we try another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            redis.port = port;
            if redis.spawn().await {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts a new server on the same port (after [`Redis::kill`]).
    pub(crate) async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        // The old socket may linger briefly; redis binds with SO_REUSEADDR.
        let deadline = Instant::now() + STEP;
        while !self.spawn().await {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Spawns redis-server on `self.port`; `true` once it answers PING.
    async fn spawn(&mut self) -> bool {
        let mut child = Command::new(Self::binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run {:?} ({err}): install Debian's redis-server \
                     (scripts/test.sh does) or set REDIS_SERVER_BIN",
                    Self::binary()
                )
            });
        let deadline = Instant::now() + STEP;
        loop {
            if child.try_wait().expect("redis-server status").is_some() {
                return false;
            }
            if ping(self.port).await {
                self.child = Some(child);
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to the clients) and waits for it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a redis on `port` answers `PING`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        tcp.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
