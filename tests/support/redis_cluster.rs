//! A 3-master Redis Cluster of `redis-server` child processes on free loopback ports
//! (`--cluster-enabled yes`, slots assigned with `CLUSTER ADDSLOTSRANGE`, nodes joined
//! with `CLUSTER MEET`): `use support::redis_cluster::Cluster`. A master can be killed
//! and restarted on its port with its `nodes.conf` (no persistence: its keys are gone).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use super::STEP;

/// Masters of the test cluster.
pub(crate) const MASTERS: usize = 3;

/// One master: its process (while it runs), port and directory (`nodes.conf`).
struct Node {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

/// A cluster of [`MASTERS`] masters, no replicas, killed (and its directories removed)
/// on drop.
pub(crate) struct Cluster {
    nodes: Vec<Node>,
}

/// A free port whose cluster bus port (+10000) is free as well.
fn free_port_pair() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        if port > 55_000 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl Node {
    fn spawn(&mut self) -> bool {
        let binary =
            std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(&binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "1000"])
            // The other masters go on serving their slots while one is down.
            .args(["--cluster-require-full-coverage", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run {binary:?} ({err}): install Debian's redis-server (scripts/test.sh does)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if child.try_wait().expect("redis-server status").is_some() {
                    self.child = None;
                    return false;
                }
            }
            if let Ok(Ok(_)) = query_sync(self.port, &["PING"]) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server (cluster node) did not answer on {}",
            self.port
        );
    }
}

fn cluster_ok(info: &str) -> bool {
    info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{MASTERS}"))
}

/// One command over a fresh blocking connection (setup only).
fn query_sync(port: u16, args: &[&str]) -> redis::RedisResult<redis::RedisResult<redis::Value>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    Ok(cmd.query(&mut conn))
}

impl Cluster {
    /// Starts the masters, gives each a third of the slots, joins them and waits until
    /// every node says `cluster_state:ok`.
    pub(crate) async fn start() -> Self {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .expect("cluster start")
    }

    fn start_blocking() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let mut nodes = Vec::new();
        for i in 0..MASTERS {
            let dir = std::env::temp_dir().join(format!(
                "tower-sse-cluster-{}-{}-{i}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("create the node directory");
            let mut node = Node {
                child: None,
                port: 0,
                dir,
            };
            let mut tries = 0;
            loop {
                node.port = free_port_pair();
                if node.spawn() {
                    break;
                }
                tries += 1;
                assert!(tries < 5, "cluster node did not start on 5 free ports");
            }
            nodes.push(node);
        }
        let cluster = Self { nodes };
        let per = 16384 / MASTERS;
        for (i, node) in cluster.nodes.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == MASTERS {
                16383
            } else {
                first + per - 1
            };
            let (first, last) = (first.to_string(), last.to_string());
            query_sync(node.port, &["CLUSTER", "ADDSLOTSRANGE", &first, &last])
                .unwrap()
                .expect("ADDSLOTSRANGE");
        }
        for node in &cluster.nodes[1..] {
            let port = node.port.to_string();
            query_sync(
                cluster.nodes[0].port,
                &["CLUSTER", "MEET", "127.0.0.1", &port],
            )
            .unwrap()
            .expect("CLUSTER MEET");
        }
        cluster.wait_ok_blocking();
        cluster
    }

    /// Waits until every running node says `cluster_state:ok` and knows every master.
    fn wait_ok_blocking(&self) {
        let deadline = Instant::now() + STEP;
        while !self.nodes.iter().all(|node| {
            matches!(query_sync(node.port, &["CLUSTER", "INFO"]), Ok(Ok(redis::Value::BulkString(text)))
                if cluster_ok(&String::from_utf8_lossy(&text)))
        }) {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the cluster says ok again (after a restart).
    pub(crate) async fn wait_ok(&self) {
        let deadline = Instant::now() + STEP;
        loop {
            let mut all = true;
            for node in &self.nodes {
                all &= cluster_ok(&self.info(node.port).await);
            }
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become ok again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn info(&self, port: u16) -> String {
        let attempt = async {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The masters' URLs, comma-separated (as `REDIS_URL` names a cluster).
    pub(crate) fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of master `i`.
    pub(crate) fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.nodes[i].port)
    }

    /// Which master serves `slot` (by the slot ranges given at start).
    pub(crate) fn master_of_slot(slot: u16) -> usize {
        (usize::from(slot) / (16384 / MASTERS)).min(MASTERS - 1)
    }

    /// A hub on this cluster (one instance) with the default history.
    pub(crate) async fn hub(&self) -> tower_sse::hub::Hub {
        let backplane = tower_sse::hub::RedisBackplane::cluster(self.urls().split(','))
            .await
            .expect("a backplane on the test cluster");
        tower_sse::hub::Hub::with_backplane(
            backplane,
            tower_sse::hub::History::default(),
            tower_sse::hub::Lag::End,
        )
    }

    /// Kills master `i` (SIGKILL) and waits for it.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts master `i` again on its port with its `nodes.conf`, then waits until the
    /// cluster is ok.
    pub(crate) async fn restart(&mut self, i: usize) {
        let deadline = Instant::now() + STEP;
        while !self.nodes[i].spawn() {
            assert!(Instant::now() < deadline, "cluster node did not restart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_ok().await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_dir_all(&node.dir);
        }
    }
}
