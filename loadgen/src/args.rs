//! The command line.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

pub(crate) const USAGE: &str =
    "usage: sse-loadgen --url http://127.0.0.1:PORT --scenario stream|idle|fanout \
--conns N --secs S --warmup W [--hb-ms H] [--pid SERVER_PID] [--json] [--rate CONNS_PER_S] \
[--fanout-ms F] [--connect-timeout SECS] [--source-ips N] [--tag KEY=VALUE]...";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Scenario {
    Stream,
    Idle,
    Fanout,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Stream => "stream",
            Scenario::Idle => "idle",
            Scenario::Fanout => "fanout",
        }
    }

    /// What the server's cost is divided by.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Scenario::Stream => "event",
            Scenario::Idle => "heartbeat",
            Scenario::Fanout => "delivery",
        }
    }
}

pub(crate) struct Args {
    pub(crate) addr: SocketAddr,
    pub(crate) scenario: Scenario,
    pub(crate) conns: usize,
    pub(crate) secs: f64,
    pub(crate) warmup: f64,
    pub(crate) hb_ms: Option<u64>,
    pub(crate) pid: Option<u32>,
    pub(crate) json: bool,
    pub(crate) rate: f64,
    pub(crate) fanout_ms: Option<u64>,
    pub(crate) connect_timeout: f64,
    pub(crate) source_ips: usize,
    pub(crate) tags: Vec<(String, String)>,
}

impl Args {
    pub(crate) fn parse(mut it: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut url = None;
        let mut scenario = None;
        let mut conns = None;
        let mut secs = 10.0;
        let mut warmup = 2.0;
        let mut hb_ms = None;
        let mut pid = None;
        let mut json = false;
        let mut rate = 2000.0;
        let mut fanout_ms = None;
        let mut connect_timeout = 5.0;
        let mut source_ips = 32;
        let mut tags = Vec::new();
        while let Some(flag) = it.next() {
            if flag == "--json" {
                json = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                return Err("help".to_owned());
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--url" => url = Some(value),
                "--scenario" => {
                    scenario = Some(match value.as_str() {
                        "stream" => Scenario::Stream,
                        "idle" => Scenario::Idle,
                        "fanout" => Scenario::Fanout,
                        _ => return Err(format!("unknown scenario {value:?}")),
                    });
                }
                "--conns" => conns = Some(number::<usize>(&flag, &value)?),
                "--secs" => secs = number::<f64>(&flag, &value)?,
                "--warmup" => warmup = number::<f64>(&flag, &value)?,
                "--hb-ms" => hb_ms = Some(number::<u64>(&flag, &value)?),
                "--pid" => pid = Some(number::<u32>(&flag, &value)?),
                "--rate" => rate = number::<f64>(&flag, &value)?,
                "--fanout-ms" => fanout_ms = Some(number::<u64>(&flag, &value)?),
                "--connect-timeout" => connect_timeout = number::<f64>(&flag, &value)?,
                "--source-ips" => source_ips = number::<usize>(&flag, &value)?,
                "--tag" => {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| format!("--tag {value:?}: expected KEY=VALUE"))?;
                    tags.push((k.to_owned(), v.to_owned()));
                }
                _ => return Err(format!("unknown option {flag:?}")),
            }
        }
        let url = url.ok_or("--url is required")?;
        let scenario = scenario.ok_or("--scenario is required")?;
        let conns = conns.ok_or("--conns is required")?;
        if conns == 0 {
            return Err("--conns must be at least 1".to_owned());
        }
        for (name, v) in [("--secs", secs), ("--warmup", warmup)] {
            if !(0.0..=3600.0).contains(&v) {
                return Err(format!("{name} {v}: expected 0 to 3600 seconds"));
            }
        }
        if secs <= 0.0 {
            return Err("--secs must be above 0".to_owned());
        }
        if !(rate >= 1.0 && rate.is_finite()) {
            return Err("--rate must be at least 1 connection per second".to_owned());
        }
        if !(0.1..=60.0).contains(&connect_timeout) {
            return Err("--connect-timeout: expected 0.1 to 60 seconds".to_owned());
        }
        if source_ips > 250 {
            return Err("--source-ips: at most 250 (127.0.0.2 to 127.0.0.251)".to_owned());
        }
        if hb_ms == Some(0) && scenario == Scenario::Idle {
            return Err("--hb-ms 0: an idle connection without heartbeats measures nothing".into());
        }
        Ok(Self {
            addr: parse_url(&url)?,
            scenario,
            conns,
            secs,
            warmup,
            hb_ms,
            pid,
            json,
            rate,
            fanout_ms,
            connect_timeout,
            source_ips,
            tags,
        })
    }

    pub(crate) fn path(&self) -> String {
        match (self.scenario, self.hb_ms) {
            (Scenario::Stream, None) => "/stream".to_owned(),
            (Scenario::Stream, Some(h)) => format!("/stream?hb_ms={h}"),
            (Scenario::Idle, h) => format!("/idle?hb_ms={}", h.unwrap_or(1000)),
            (Scenario::Fanout, _) => "/fanout".to_owned(),
        }
    }

    /// How long connecting may take before the pending ones count as failed.
    pub(crate) fn ramp_budget(&self) -> Duration {
        secs(self.conns as f64 / self.rate + self.connect_timeout + 5.0)
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?}: not a number"))
}

/// `http://127.0.0.1:PORT` (a trailing `/` is fine); any other host is refused.
fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url:?}: only http:// is supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("--url {url:?}: the port is required"))?;
    if host != "127.0.0.1" && host != "localhost" {
        return Err(format!(
            "--url {url:?}: only 127.0.0.1 is a permitted target"
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--url {url:?}: bad port"))?;
    Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
}

pub(crate) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        assert!(parse_url("http://127.0.0.1:3000").is_ok());
        assert!(parse_url("http://localhost:3000/").is_ok());
        assert!(parse_url("http://10.0.0.1:3000").is_err());
        assert!(parse_url("http://example.com:80").is_err());
        assert!(parse_url("https://127.0.0.1:3000").is_err());
    }
}
