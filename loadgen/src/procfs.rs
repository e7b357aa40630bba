//! `/proc`: a process's CPU time, run-queue wait, memory and syscalls.

#[derive(Clone, Copy)]
pub(crate) struct ProcSample {
    /// `utime + stime` of the process (threads that ended included), in seconds.
    pub(crate) cpu_s: f64,
    /// The sum of the live threads' run time from `/proc/PID/task/*/schedstat`, in
    /// nanoseconds: the same quantity, without the 10 ms resolution of clock ticks.
    pub(crate) sched_ns: Option<u64>,
    /// The live threads' time spent runnable but waiting for a CPU (second field of
    /// `schedstat`), in nanoseconds: on a shared machine, how much others got in the way.
    pub(crate) wait_ns: Option<u64>,
    pub(crate) rss_kb: u64,
    pub(crate) threads: u64,
    /// Read and write syscalls and the bytes they moved (`/proc/PID/io`: the same user
    /// or root only).
    pub(crate) syscr: Option<u64>,
    pub(crate) syscw: Option<u64>,
    pub(crate) wchar: Option<u64>,
}

impl ProcSample {
    pub(crate) fn read(pid: u32, clk_tck: f64) -> Option<Self> {
        Self::read_dir(&format!("/proc/{pid}"), clk_tck)
    }

    pub(crate) fn read_self(clk_tck: f64) -> Option<Self> {
        Self::read_dir("/proc/self", clk_tck)
    }

    fn read_dir(dir: &str, clk_tck: f64) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        // The command name may contain spaces and parentheses: fields start after the
        // last `)`. Field 3 (state) is index 0 here; utime is field 14, stime 15,
        // num_threads 20.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let threads: u64 = fields.get(17)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        let io = std::fs::read_to_string(format!("{dir}/io")).ok();
        let sched = schedstat(dir);
        let io_field = |name: &str| {
            io.as_deref()?
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        Some(Self {
            cpu_s: (utime + stime) as f64 / clk_tck,
            sched_ns: sched.map(|s| s.0),
            wait_ns: sched.map(|s| s.1),
            rss_kb,
            threads,
            syscr: io_field("syscr:"),
            syscw: io_field("syscw:"),
            wchar: io_field("wchar:"),
        })
    }
}

/// The run time and run-queue wait of every live thread of the process, summed
/// (nanoseconds).
fn schedstat(dir: &str) -> Option<(u64, u64)> {
    let (mut run, mut wait) = (0u64, 0u64);
    for task in std::fs::read_dir(format!("{dir}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended between the listing and the read: skip it.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let mut fields = text.split_whitespace();
        run += fields.next()?.parse::<u64>().ok()?;
        wait += fields.next()?.parse::<u64>().ok()?;
    }
    Some((run, wait))
}

/// Clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`; 100, the value on
/// every Linux this runs on, if that fails).
pub(crate) fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// This process's soft limit on open files (`/proc/self/limits`).
pub(crate) fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
