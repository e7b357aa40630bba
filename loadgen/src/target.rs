//! The target URL: `http://HOST[:PORT]/PATH[?QUERY]`, resolved once.

use std::net::{SocketAddr, ToSocketAddrs as _};

pub(crate) struct Target {
    /// The URL as given.
    pub(crate) url: String,
    /// `HOST[:PORT]`, for the `Host` header and h2's `:authority`.
    pub(crate) authority: String,
    /// The path and query (`/` when the URL has none).
    pub(crate) path: String,
    /// The resolved address (the first IPv4 one, else the first).
    pub(crate) addr: SocketAddr,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("{url}: https is not supported (plain HTTP/1.1 or h2c only)")
            } else {
                format!("{url}: expected http://HOST[:PORT]/PATH")
            }
        })?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let path = path.split('#').next().unwrap_or("/").to_owned();
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url}: expected http://HOST[:PORT]/PATH"));
        }
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "{url}: spaces and control characters must be %-encoded"
            ));
        }
        let with_port = if has_port(authority) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {authority}: {e}"))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| format!("{url}: {authority} has no address"))?;
        Ok(Self {
            url: url.to_owned(),
            authority: authority.to_owned(),
            path,
            addr,
        })
    }
}

/// `host:port` or `[v6]:port` (a bare `[v6]` or `host` has none).
fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(i) => authority[i..].contains(':'),
        None => authority.contains(':'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:3000/idle?hb_ms=100").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:3000", "/idle?hb_ms=100")
        );
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        let t = Target::parse("http://localhost:9").unwrap();
        assert_eq!(t.path, "/");
        assert!(t.addr.ip().is_loopback());
        let t = Target::parse("http://127.0.0.1?x=1").unwrap();
        assert_eq!((t.path.as_str(), t.addr.port()), ("/?x=1", 80));
        assert!(Target::parse("https://127.0.0.1:1/").is_err());
        assert!(Target::parse("127.0.0.1:1/").is_err());
        assert!(Target::parse("http://127.0.0.1:1/a b").is_err());
        assert!(Target::parse("http://[::1]:8080/x").unwrap().addr.is_ipv6());
    }
}
