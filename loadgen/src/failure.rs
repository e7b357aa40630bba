//! Why a connection failed or ended.

use std::io;

/// Why a connection failed or ended.
pub(crate) enum Failure {
    Connect(String),
    Http(String),
    Io(io::Error),
    Protocol(&'static str),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Http(e) => write!(f, "http: {e}"),
            Failure::Io(e) => write!(f, "read/write: {e}"),
            Failure::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}
