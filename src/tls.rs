//! TLS for the AMQPS listener and the HTTPS management and Prometheus listeners, with rustls: TLS 1.2 and 1.3
//! only, the certificate and key from PEM files, and — when `verify_peer` is set — client certificates
//! verified against a CA bundle (required with `fail_if_no_peer_cert`). The server configuration sits behind
//! a lock that [`TlsState::reload`] swaps (on SIGHUP): connections already open keep the configuration they
//! were accepted with, new ones get the new one.
//!
//! [`Stream`] is what every listener hands on: a plain TCP stream or a TLS one. [`peer_user`] names the user
//! of a verified client certificate for the EXTERNAL mechanism, as RabbitMQ's rabbitmq_auth_mechanism_ssl
//! does (the subject's CN, or the whole subject as a distinguished name).

use crate::config;
use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: String },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid CA bundle: {0}")]
    Verifier(String),
}

/// ring, already in the build for ureq; rustls marks it deprecated only because it lacks the post-quantum
/// key exchange that aws-lc-rs (a C/CMake build) offers.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(
    what: &'static str,
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read {
            what,
            path: shown.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, path: shown });
    }
    Ok(certs)
}

/// Build a server configuration from the `[tls]` table's files.
pub fn server_config(cfg: &config::Tls) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs("certificate", &cfg.cert)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|source| TlsError::Read {
        what: "private key",
        path: cfg.key.display().to_string(),
        source,
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match (&cfg.ca, cfg.verify_peer) {
        (Some(ca), true) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs("CA certificate", ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if cfg.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?,
            )
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}

/// The TLS settings in force, swappable at run time.
pub struct TlsState {
    cfg: config::Tls,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState").field("cfg", &self.cfg).finish()
    }
}

impl TlsState {
    pub fn new(cfg: &config::Tls) -> Result<Arc<TlsState>, TlsError> {
        Ok(Arc::new(TlsState {
            current: RwLock::new(server_config(cfg)?),
            cfg: cfg.clone(),
        }))
    }

    /// Re-read the certificate, key and CA files. On an error the old configuration stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.cfg)?;
        *self.current.write() = fresh;
        Ok(())
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Run the TLS handshake, within `timeout`.
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> io::Result<Stream> {
        let acceptor = self.acceptor();
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// The user a verified client certificate names: its subject's first CN (`common_name`), or the whole
/// subject in RFC 4514 form (`distinguished_name`). `None` without a certificate.
pub fn peer_user(certs: Option<&[CertificateDer<'_>]>, login_from: &str) -> Option<String> {
    let leaf = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    if login_from == "distinguished_name" {
        return Some(rabbit_dn(subject));
    }
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    cn
}

/// A subject as RabbitMQ writes it for `ssl_cert_login_from = distinguished_name`: RFC 4514 (the last RDN
/// first, comma-separated, short attribute names, special characters escaped), e.g. `CN=app,O=Example,C=US`.
fn rabbit_dn(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let in_order: Vec<_> = name.iter_rdn().collect();
    let rdns: Vec<String> = in_order
        .into_iter()
        .rev()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let ty = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                        .map(str::to_string)
                        .unwrap_or_else(|_| attr.attr_type().to_id_string());
                    let value = attr.as_str().map(escape_dn_value).unwrap_or_default();
                    format!("{ty}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.join(",")
}

/// RFC 4514 escaping of an attribute value.
fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A client's byte stream: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The user a verified client certificate names (see [`peer_user`]).
    pub fn peer_user(&self, login_from: &str) -> Option<String> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => peer_user(s.get_ref().1.peer_certificates(), login_from),
        }
    }

    /// The negotiated protocol version ("TLSv1.3"), for the management API.
    pub fn tls_version(&self) -> Option<&'static str> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.get_ref().1.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "tlsv1.3",
                _ => "tlsv1.2",
            }),
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

/// `AsyncRead` / `AsyncWrite` for an enum whose variants each wrap an `Unpin` stream: every call goes to
/// the variant's stream.
macro_rules! delegate_io {
    (read $ty:ident: $($v:ident),+) => {
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => std::pin::Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }
    };
    (write $ty:ident: $($v:ident),+) => {
        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$v(s) => std::pin::Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$v(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),)+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $($ty::$v(s) => s.is_write_vectored(),)+
                }
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => std::pin::Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => std::pin::Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}
pub(crate) use delegate_io;

delegate_io!(read Stream: Plain, Tls);
delegate_io!(write Stream: Plain, Tls);

/// An HTTP listener, plain or TLS. TLS handshakes run in their own tasks (a client that stalls its
/// handshake holds nothing but its task), and finished streams are handed to the server through a channel.
pub struct HttpListener {
    local: SocketAddr,
    incoming: tokio::sync::mpsc::Receiver<(Stream, SocketAddr)>,
}

/// How long an HTTPS client has to finish its TLS handshake.
const HTTP_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpListener {
    /// Serve `listener` as it is, or with TLS when `tls` is given.
    pub fn new(listener: TcpListener, tls: Option<Arc<TlsState>>) -> io::Result<HttpListener> {
        let local = listener.local_addr()?;
        let (tx, incoming) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                match &tls {
                    None => {
                        if tx.send((Stream::Plain(tcp), peer)).await.is_err() {
                            return;
                        }
                    }
                    Some(tls) => {
                        let (tls, tx) = (tls.clone(), tx.clone());
                        tokio::spawn(async move {
                            match tls.accept(tcp, HTTP_HANDSHAKE_TIMEOUT).await {
                                Ok(s) => {
                                    let _ = tx.send((s, peer)).await;
                                }
                                Err(e) => {
                                    tracing::debug!(%peer, error = %e, "HTTPS handshake failed")
                                }
                            }
                        });
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(HttpListener { local, incoming })
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Stream, SocketAddr) {
        match self.incoming.recv().await {
            Some(x) => x,
            // The accept task only ends once the server is gone: never resolve.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The peer address of an HTTP request, for handlers that check it (loopback-only users).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpListener>>
    for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, HttpListener>) -> Peer {
        Peer(*s.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(subject: &[(rcgen::DnType, &str)]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        for (ty, v) in subject {
            params.distinguished_name.push(ty.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn user_names_from_certificates() {
        let c = cert(&[
            (rcgen::DnType::CountryName, "US"),
            (rcgen::DnType::OrganizationName, "Example, Inc."),
            (rcgen::DnType::CommonName, "app"),
        ]);
        assert_eq!(
            peer_user(Some(std::slice::from_ref(&c)), "common_name").as_deref(),
            Some("app")
        );
        // rcgen writes the subject as CN, C, O; RabbitMQ's form lists the RDNs last first.
        assert_eq!(
            peer_user(Some(&[c]), "distinguished_name").as_deref(),
            Some("O=Example\\, Inc.,C=US,CN=app")
        );
        assert_eq!(escape_dn_value(" #a+b "), "\\ #a\\+b\\ ");
        assert_eq!(peer_user(None, "common_name"), None);
    }
}
