//! The API's listener: plain HTTP or TLS, HTTP/1.1, with deadlines on slow and idle
//! connections, and a certificate reloaded when its files change.
//!
//! axum's own `serve` has no deadlines and no TLS, so connections are served here with
//! hyper's HTTP/1 connection builder: a TLS handshake must end within [`HANDSHAKE_DEADLINE`],
//! a request's head must arrive within the idle deadline (`--api-idle-timeout`, 30 s; it also
//! closes a kept-alive connection idle that long), and a request must be answered, its body
//! read included, within [`REQUEST_DEADLINE`] (408 past it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use super::ApiError;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a request may take, its body read included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(120);
/// How often the certificate files are looked at for a change.
const RELOAD_PERIOD: Duration = Duration::from_secs(2);

/// The API's certificate and key files (PEM).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate or key cannot be used. It names the file, never the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no PEM of what it should.
    #[error("{}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The key is of a type rustls cannot sign with, or not the certificate's.
    #[error("{}: the key cannot serve the certificate: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

impl TlsFiles {
    /// Reads the certificate chain and key.
    fn read(&self) -> Result<CertifiedKey, TlsError> {
        let file_error = |path: &Path, problem: String| TlsError::File {
            path: path.to_owned(),
            problem,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect())
            .map_err(|e| file_error(&self.cert, format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(file_error(&self.cert, "holds no certificate".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| file_error(&self.key, format!("not a PEM private key: {e}")))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
            TlsError::Key {
                path: self.key.clone(),
                source,
            }
        })?;
        let pair = CertifiedKey::new(chain, signer);
        // A key and certificate caught half-renewed (one file written, not yet the other)
        // would fail every handshake: refused here, the previous pair kept.
        pair.keys_match().map_err(|source| TlsError::Key {
            path: self.key.clone(),
            source,
        })?;
        Ok(pair)
    }

    /// Returns when either file last changed, and their sizes: what tells a new pair.
    fn stamp(&self) -> Option<Stamp> {
        let cert = std::fs::metadata(&self.cert).ok()?;
        let key = std::fs::metadata(&self.key).ok()?;
        Some((
            cert.modified().ok()?,
            cert.len(),
            key.modified().ok()?,
            key.len(),
        ))
    }
}

/// When a certificate's files last changed, and their sizes.
type Stamp = (SystemTime, u64, SystemTime, u64);

/// The API's certificate as loaded at start, and the files it is loaded from again.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    first: CertifiedKey,
    stamp: Option<Stamp>,
}

impl ServerTls {
    /// Loads the certificate chain and key in `files`.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        // Taken before the read: a change made while reading is seen by the first reload.
        let stamp = files.stamp();
        let first = files.read()?;
        Ok(ServerTls {
            files,
            first,
            stamp,
        })
    }
}

/// Hands every handshake the certificate last loaded.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("not poisoned").clone())
    }
}

/// Loads the certificate again when its files change (`seen` is their stamp at the last
/// load), until `shutdown`. A pair that does not load (a key written before its certificate,
/// say) is logged and the old one kept; the next change is tried again.
async fn reload(
    files: TlsFiles,
    mut seen: Option<Stamp>,
    into: Arc<Reloading>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(RELOAD_PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stamp = files.stamp();
        if stamp == seen {
            continue;
        }
        seen = stamp;
        match files.read() {
            Ok(key) => {
                *into.current.write().expect("not poisoned") = Arc::new(key);
                info!(cert = %files.cert.display(), "API certificate reloaded");
            }
            Err(e) => warn!(error = %e, "API certificate not reloaded; the previous one is kept"),
        }
    }
}

/// Returns a TLS acceptor serving the certificate of `tls`, reloaded when its files change.
pub fn acceptor(tls: ServerTls, shutdown: &CancellationToken) -> tokio_rustls::TlsAcceptor {
    let resolver = Arc::new(Reloading {
        current: RwLock::new(Arc::new(tls.first)),
    });
    tokio::spawn(reload(
        tls.files,
        tls.stamp,
        resolver.clone(),
        shutdown.clone(),
    ));
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Answers 408 when a request takes longer than [`REQUEST_DEADLINE`], its body read
/// included: a client that sends its body slowly holds a connection no longer.
pub(super) async fn request_deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            vec![format!(
                "the request took longer than {}s",
                REQUEST_DEADLINE.as_secs()
            )],
        )
        .into_response(),
    }
}

/// How long a stopping API waits for its requests under way, watch streams included.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`, then lets the
/// requests under way finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    idle_deadline: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, say: the listener itself is fine.
                Err(e) => {
                    warn!(error = %e, "the API could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, tls, watcher) = (router.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, router, idle_deadline, watcher).await,
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, idle_deadline, watcher).await
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake not finished in time"),
                    }
                }
            }
        });
    }
    drop(listener);
    // A client that reads nothing more (a suspended watcher) must not hold the stop.
    if tokio::time::timeout(SHUTDOWN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open at shutdown were dropped after {SHUTDOWN_DEADLINE:?}");
    }
    Ok(())
}

async fn serve_connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    router: Router,
    idle_deadline: Duration,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Each request carries the client's address, for the audit trail.
    let service = TowerToHyperService::new(router.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request
        },
    ));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_deadline)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection).await {
        debug!(error = %e, "API connection ended");
    }
}
