//! What the end-to-end tests share: servers run as child processes (the Python
//! fixture, the workspace's demo and axum reference) and the built `sse-loadgen`.

#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Mutex,
    },
    time::Duration,
};

use serde_json::Value;

/// Patience for a server to print its address.
const START_WAIT: Duration = Duration::from_secs(30);

/// A server process, killed when dropped.
pub(crate) struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub(crate) base: String,
}

impl Server {
    /// Starts `cmd` (which must print `listening on http://HOST:PORT` on stdout).
    pub(crate) fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_owned());
                }
            }
        });
        let base = match rx.recv_timeout(START_WAIT) {
            Ok(base) => base,
            Err(e) => {
                let _ = child.kill();
                panic!("{cmd:?} printed no `listening on http://…` within {START_WAIT:?}: {e}");
            }
        };
        Self { child, base }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SSE server of `tests/fixtures/sse_server.py` (Python's standard library).
pub(crate) fn python_server() -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sse_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(script);
    Server::start(cmd)
}

/// An example of the workspace's root package (`demo`, `axum_ref`), built once per
/// test binary into this target directory, started on a free port.
pub(crate) fn example_server(name: &str, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(example(name));
    cmd.env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env_remove("REDIS_URL");
    cmd.envs(env.iter().copied());
    Server::start(cmd)
}

fn example(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("path of the test binary");
    // This binary is `<target>/<profile>/deps/<test>-<hash>`.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>");
    let target_dir = profile_dir.parent().expect("<target>");
    let bin = profile_dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        // The same command as the root package's tests (tests/support/demo.rs), so that
        // both share one build.
        build
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .args([
                "build",
                "--quiet",
                "-p",
                "tower-sse",
                "--example",
                name,
                "--target-dir",
            ])
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("run cargo build --example");
        assert!(status.success(), "cargo build --example {name}: {status}");
        built.push(name.to_owned());
    }
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

/// Runs `sse-loadgen ARGS…` (with a deadline) and returns its output.
pub(crate) fn loadgen(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-loadgen"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sse-loadgen");
    let pid = child.id();
    // A bounded wait: the tool has its own watchdog; this one catches a hang of it.
    let (tx, rx) = mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let err_reader =
        std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let out = std::io::read_to_string(stdout).unwrap_or_default();
    let status = child.wait().expect("wait for sse-loadgen");
    let _ = tx.send(());
    let _ = guard.join();
    let err = err_reader.join().unwrap_or_default();
    eprintln!("$ sse-loadgen {}\n{err}", args.join(" "));
    Output {
        status,
        stdout: out.into_bytes(),
        stderr: err.into_bytes(),
    }
}

/// Runs `sse-loadgen ARGS… --format json`, expects success, returns the JSON result.
pub(crate) fn measure(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = loadgen(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sse-loadgen {args:?}: {}\n{stdout}",
        out.status
    );
    let json: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    eprintln!("{json}");
    json
}

/// A field of a result as a number (fails the test if missing).
pub(crate) fn num(result: &Value, key: &str) -> f64 {
    result
        .get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number {key} in {result}"))
}

/// A fresh directory under the system's temporary directory.
pub(crate) fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sse-loadgen-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}
