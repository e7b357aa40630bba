//! HTTPS (feature `tls`): the rustls configuration (loaded from PEM files, or the
//! caller's own), the handshake of each connection, bounded by the request timeout,
//! and the HTTP version its ALPN chose.

use std::{
    error::Error as StdError,
    fmt, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use rustls::{
    crypto::ring,
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
    ServerConfig,
};
use tokio::{net::TcpStream, sync::watch};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

use super::{
    conn::{Phase, Watch},
    gated::GatedIo,
    Server,
};
use crate::gate::WriteGate;

/// The ALPN protocols offered, in the server's order of preference: HTTP/2, then
/// HTTP/1.1.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A rustls server configuration from a PEM certificate chain (the server's
/// certificate first, then its intermediates) and a PEM private key (PKCS#8, PKCS#1
/// or SEC1), with the `ring` provider, TLS 1.2 and 1.3, and ALPN offering `h2` and
/// `http/1.1` ([`ALPN_PROTOCOLS`]). For [`Server::tls`].
///
/// ```no_run
/// # fn run() -> Result<(), tower_sse::server::TlsError> {
/// let config = tower_sse::server::tls_config_from_pem("cert.pem", "key.pem")?;
/// assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
/// # Ok(()) }
/// ```
pub fn tls_config_from_pem(
    cert_path: impl AsRef<Path>,
    key_path: impl AsRef<Path>,
) -> Result<ServerConfig, TlsError> {
    let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
    let chain = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|source| TlsError::Rejected {
            path: key_path.to_owned(),
            source,
        })?;
    config.alpn_protocols = alpn_protocols();
    Ok(config)
}

fn alpn_protocols() -> Vec<Vec<u8>> {
    ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect()
}

/// Every `CERTIFICATE` block of the PEM file at `path`, in order.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::pem(path, err))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The first private key block of the PEM file at `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        err => TlsError::pem(path, err),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Why [`tls_config_from_pem`] could not make a configuration; each names the file.
///
/// ```
/// use tower_sse::server::{tls_config_from_pem, TlsError};
///
/// let err = tls_config_from_pem("/no/such/cert.pem", "/no/such/key.pem").unwrap_err();
/// assert!(matches!(err, TlsError::Read { .. }));
/// assert_eq!(err.path(), std::path::Path::new("/no/such/cert.pem"));
/// assert!(err.to_string().starts_with("/no/such/cert.pem: cannot read"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The error reading it.
        source: io::Error,
    },
    /// The file is not valid PEM (a section without its end, bad base64, …).
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong, as the PEM parser says.
        source: PemError,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key block (`PRIVATE KEY`, `RSA PRIVATE KEY` or
    /// `EC PRIVATE KEY`).
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the key (its type is not supported, or it does not match the
    /// certificate).
    Rejected {
        /// The key file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// A PEM syntax error (rustls-pki-types').
pub type PemError = rustls::pki_types::pem::Error;

impl TlsError {
    fn pem(path: &Path, source: PemError) -> Self {
        Self::Pem {
            path: path.to_owned(),
            source,
        }
    }

    /// The file the error is about.
    ///
    /// ```
    /// # let err = tower_sse::server::tls_config_from_pem("/nope.pem", "/nope.key").unwrap_err();
    /// assert_eq!(err.path(), std::path::Path::new("/nope.pem"));
    /// ```
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. }
            | Self::Pem { path, .. }
            | Self::NoCertificate { path }
            | Self::NoPrivateKey { path }
            | Self::Rejected { path, .. } => path,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path().display();
        match self {
            Self::Read { source, .. } => write!(f, "{path}: cannot read: {source}"),
            Self::Pem { source, .. } => write!(f, "{path}: not valid PEM: {source}"),
            Self::NoCertificate { .. } => write!(f, "{path}: no CERTIFICATE block"),
            Self::NoPrivateKey { .. } => write!(f, "{path}: no PRIVATE KEY block"),
            Self::Rejected { source, .. } => write!(f, "{path}: key rejected: {source}"),
        }
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Pem { source, .. } => Some(source),
            Self::Rejected { source, .. } => Some(source),
            Self::NoCertificate { .. } | Self::NoPrivateKey { .. } => None,
        }
    }
}

impl Server {
    /// Serves HTTPS with `config`: each connection's TLS handshake must be done within
    /// the [request timeout](Server::request_timeout) (else it is closed), then its
    /// first request head within another; it counts against
    /// [`max_connections`](Server::max_connections) from its start (past the cap, the
    /// immediate answer is sent over TLS too). ALPN then picks HTTP/2 (`h2`, with the
    /// server's HTTP/2 settings) or HTTP/1.1 (`http/1.1`, or no ALPN). A configuration
    /// without ALPN protocols gets [`ALPN_PROTOCOLS`]. A failed handshake is logged at
    /// `debug` and closes that connection only.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_sse::server::{tls_config_from_pem, Server};
    ///
    /// let server = Server::bind("0.0.0.0:443")
    ///     .await?
    ///     .tls(tls_config_from_pem("cert.pem", "key.pem")?);
    /// println!("listening on https://{}", server.local_addr()?);
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: impl Into<Arc<ServerConfig>>) -> Self {
        let mut config = config.into();
        if config.alpn_protocols.is_empty() {
            Arc::make_mut(&mut config).alpn_protocols = alpn_protocols();
        }
        self.tls = Some(config);
        self
    }
}

/// What the accept loop needs for TLS: the acceptor, and hyper's settings for each
/// protocol ALPN may choose.
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

/// A connection after its handshake, as hyper reads it.
pub(crate) type TlsIo = TokioIo<GatedIo<TlsStream<TcpStream>>>;

impl Tls {
    /// `http` is the server's hyper builder (both protocols, its settings).
    pub(crate) fn new(config: Arc<ServerConfig>, http: &auto::Builder<TokioExecutor>) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
            h1: http.clone().http1_only(),
            h2: http.clone().http2_only(),
        }
    }

    /// The handshake on `tcp`, within `watch.head_timeout`, and hyper's builder for the
    /// protocol ALPN chose; `None` when the handshake failed, took too long, or the
    /// server began shutting down meanwhile (the connection is then dropped). Unless
    /// ALPN chose h2, the connection's writes work `gate` (see `gated`).
    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
        watch: &mut Watch,
        gate: Option<WriteGate>,
    ) -> Option<(TlsIo, &auto::Builder<TokioExecutor>)> {
        let peer = tcp.peer_addr().ok();
        let handshake = tokio::time::timeout(watch.head_timeout, self.acceptor.accept(tcp));
        let tls = tokio::select! {
            // First: a change of phase seen here is not seen again by `conn::drive`.
            biased;
            () = shutting_down(&mut watch.phase) => return None,
            done = handshake => handshaken(done, peer, watch.head_timeout)?,
        };
        let (http, gate) = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => (&self.h2, None),
            _ => (&self.h1, gate),
        };
        Some((TokioIo::new(GatedIo::new(tls, gate)), http))
    }
}

impl Tls {
    /// Serves `service` on `tcp` after the handshake (see [`Tls::accept`]), until the
    /// connection ends; for the served connections and the answers past the cap alike.
    pub(crate) async fn serve<S, B>(
        &self,
        tcp: TcpStream,
        service: S,
        mut watch: Watch,
        gate: Option<WriteGate>,
    ) where
        S: hyper::service::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<B>,
            > + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        if let Some((io, http)) = self.accept(tcp, &mut watch, gate).await {
            let conn = Box::pin(http.serve_connection(io, service).into_owned());
            super::conn::drive(conn, watch).await;
        }
    }
}

/// The stream of a handshake that succeeded in time; logs (at `debug`) one that did not.
fn handshaken(
    done: Result<io::Result<TlsStream<TcpStream>>, tokio::time::error::Elapsed>,
    peer: Option<SocketAddr>,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match done {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            tracing::debug!(?peer, "TLS handshake failed: {err}");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake not done within {timeout:?}; closing");
            None
        }
    }
}

/// Resolves once the server leaves [`Phase::Running`] (or is gone).
async fn shutting_down(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|phase| *phase != Phase::Running).await;
}
