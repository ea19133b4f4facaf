//! HTTPS to upstreams: rustls over the shard's connection type
//! ([`Conn`]: its own ring or glommio's sockets; through futures-rustls, so
//! no second runtime), one client configuration per trust setting for the
//! whole process.
//!
//! - Trust: the webpki (Mozilla) roots by default; a target's `ca_pem` /
//!   `ca_file` replaces them with its own CA; `insecure_ssl: true` accepts
//!   any certificate (logged when the configuration is compiled).
//! - SNI: the target's host name (IP literals send none, as browsers do).
//! - Session resumption: rustls' in-memory ticket/session store, kept in
//!   the shared `ClientConfig`, so every shard and every configuration change
//!   resumes sessions made before. Only the handshake touches that store.
//! - Pooling: TLS connections are pooled per shard like plain ones, keyed by
//!   address and TLS identity (see [`TlsClient::id`]).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;
use std::time::Duration;

use crate::buf::ReadBuf;
use crate::runtime::conn::{timed, Conn};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a target's certificates are checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The webpki roots.
    Public,
    /// Only this CA bundle (PEM text).
    Custom(String),
    /// Anything (`insecure_ssl: true`).
    Insecure,
}

/// What a TLS target needs to connect: the shared client configuration and
/// the name to send and verify.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    /// Distinguishes pooled connections of different names or trust on the
    /// same address.
    pub id: u64,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// The ALPN we speak upstream.
const ALPN_HTTP11: &[u8] = b"http/1.1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything))
            .with_no_client_auth(),
        Trust::Public => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Custom(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_pem_certs(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The certificates in a PEM bundle; an error when there are none.
pub fn parse_pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e:?}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// The process-wide configuration for `trust`, built once (on the control
/// thread, while compiling a snapshot) and shared by every snapshot after:
/// its session cache survives configuration changes.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    static CONFIGS: OnceLock<Mutex<HashMap<Trust, Arc<ClientConfig>>>> = OnceLock::new();
    let mut map = CONFIGS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(c) = map.get(trust) {
        return Ok(c.clone());
    }
    let c = build(trust)?;
    map.insert(trust.clone(), c.clone());
    Ok(c)
}

/// The SNI / verification name for `host` (IP literals verify against the
/// certificate's IP SANs).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|e| format!("{host:?}: {e}"))
}

/// Verifies nothing: `insecure_ssl: true`.
#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An upstream byte stream, plain or TLS. Writers through the
/// `AsyncWrite` impl must `flush()` after writing: rustls may hold
/// encrypted records until then ([`Stream::send`] does).
pub enum Stream {
    Plain(Conn),
    Tls(Box<TlsStream<Conn>>),
}

impl Stream {
    /// The TCP connection underneath (for the pool's liveness check).
    pub fn tcp(&self) -> &Conn {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// One read into the free space of `buf` within `wait` (see [`Conn::fill`]).
    pub async fn fill(&mut self, buf: &mut ReadBuf, wait: Duration) -> Option<io::Result<usize>> {
        match self {
            Stream::Plain(c) => c.fill(buf, wait).await,
            Stream::Tls(s) => timed(wait, buf.fill_from(s.as_mut())).await,
        }
    }

    /// Hands all of `bytes` to the connection within `wait` (see [`Conn::send`]).
    pub async fn send(&mut self, bytes: &[u8], wait: Duration) -> bool {
        match self {
            Stream::Plain(c) => c.send(bytes, wait).await,
            Stream::Tls(s) => crate::runtime::conn::send_within(wait, s.as_mut(), bytes).await,
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self.tcp() {
            Conn::Ring(s) => s.fd(),
            Conn::Glommio(s) => s.as_raw_fd(),
        }
    }
}

/// Runs the TLS handshake over a connected socket.
pub async fn handshake(tcp: Conn, tls: &TlsClient) -> io::Result<Stream> {
    let connector = futures_rustls::TlsConnector::from(tls.config.clone());
    let stream = connector.connect(tls.server_name.clone(), tcp).await?;
    Ok(Stream::Tls(Box::new(stream)))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_shared_per_trust() {
        let a = client_config(&Trust::Public).unwrap();
        let b = client_config(&Trust::Public).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = client_config(&Trust::Insecure).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn bad_ca_is_refused() {
        assert!(client_config(&Trust::Custom("nonsense".into())).is_err());
        assert!(parse_pem_certs("").is_err());
    }

    #[test]
    fn server_names() {
        assert!(server_name("api.openai.com").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
