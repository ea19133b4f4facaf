//! A small HTTPS upstream for tests: a CA and a server certificate made by
//! rcgen in the test, rustls over blocking std sockets, one thread per
//! connection. Every answer is JSON describing the request and the TLS
//! session: `{"path", "authorization", "x_api_key", "conn", "n", "resumed", "body"}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{HandshakeKind, ServerConfig, ServerConnection, StreamOwned};

/// A test CA and a server certificate for `names` signed by it.
pub struct TestPki {
    pub ca_pem: String,
    pub cert: CertificateDer<'static>,
    pub key: Vec<u8>,
}

pub fn make_pki(names: &[&str]) -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: key.serialize_der(),
    }
}

/// Counters the server keeps.
#[derive(Default)]
pub struct Stats {
    pub handshakes: AtomicU64,
    pub resumed: AtomicU64,
    pub requests: AtomicU64,
}

/// Starts the server; `close_after_each`: answer `Connection: close`.
pub fn spawn_tls_server(pki: &TestPki, close_after_each: bool) -> (SocketAddr, Arc<Stats>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    std::thread::spawn(move || {
        let conns = AtomicU64::new(0);
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let config = config.clone();
            let stats = st.clone();
            let id = conns.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || serve(sock, config, stats, id, close_after_each));
        }
    });
    (addr, stats)
}

fn serve(
    sock: std::net::TcpStream,
    config: Arc<ServerConfig>,
    stats: Arc<Stats>,
    id: u64,
    close: bool,
) {
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, sock);
    // Finish the handshake before reading, to count it.
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return;
        }
    }
    stats.handshakes.fetch_add(1, Ordering::Relaxed);
    let resumed = tls.conn.handshake_kind() == Some(HandshakeKind::Resumed);
    if resumed {
        stats.resumed.fetch_add(1, Ordering::Relaxed);
    }
    let mut r = BufReader::new(tls);
    let mut n = 0u64;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mut len, mut auth, mut xkey) = (0usize, String::new(), String::new());
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((h, ""));
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => len = value.parse().unwrap_or(0),
                "authorization" => auth = value,
                "x-api-key" => xkey = value,
                _ => {}
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        n += 1;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let answer = serde_json::json!({
            "path": path, "authorization": auth, "x_api_key": xkey, "conn": id, "n": n,
            "resumed": resumed, "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            answer.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let tls = r.get_mut();
        if tls.write_all(head.as_bytes()).is_err()
            || tls.write_all(answer.as_bytes()).is_err()
            || tls.flush().is_err()
        {
            return;
        }
        if close {
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
            return;
        }
    }
}
