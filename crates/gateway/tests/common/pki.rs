//! Certificates from a generated CA, and a TLS front: a terminator that puts TLS (with the
//! ALPN it is told to offer, and client certificates when asked) in front of a plain server,
//! passing the bytes through and noting what each connection negotiated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

pub fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "inferscope test CA");
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// Writes a leaf for `localhost` (and 127.0.0.1) named `cn`, signed by `ca`, as `cert.pem`
/// and `key.pem` in `dir`.
pub fn leaf(ca: &Ca, cn: &str, dir: &Path) {
    leaf_for(ca, cn, &["localhost", "127.0.0.1"], dir);
}

/// Writes a leaf for `names`, as [`leaf`] does.
pub fn leaf_for(ca: &Ca, cn: &str, names: &[&str], dir: &Path) {
    let key = KeyPair::generate().unwrap();
    let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// Writes `ca.pem` into `dir`; returns its path.
pub fn write_ca(ca: &Ca, dir: &Path) -> PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &ca.pem).unwrap();
    path
}

/// What one connection to a [`TlsFront`] negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub alpn: Option<String>,
    pub sni: Option<String>,
    pub client_certificate: bool,
}

/// A TLS terminator in front of `backend`.
pub struct TlsFront {
    pub addr: SocketAddr,
    pub handshakes: Arc<Mutex<Vec<Handshake>>>,
}

impl TlsFront {
    /// Serves `cert.pem`/`key.pem` from `dir`, offering `alpn`; with `client_ca`, a client
    /// certificate signed by it is required.
    pub async fn start(
        backend: SocketAddr,
        dir: &Path,
        alpn: &[&[u8]],
        client_ca: Option<&Ca>,
    ) -> TlsFront {
        TlsFront::start_closing_idle(backend, dir, alpn, client_ca, None).await
    }

    /// As [`TlsFront::start`]; with `idle_close`, a connection quiet that long is closed
    /// (close_notify, then FIN), as an upstream's keep-alive timeout does.
    pub async fn start_closing_idle(
        backend: SocketAddr,
        dir: &Path,
        alpn: &[&[u8]],
        client_ca: Option<&Ca>,
        idle_close: Option<std::time::Duration>,
    ) -> TlsFront {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("cert.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der.clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, conn) = tls.get_ref();
                    seen.lock().unwrap().push(Handshake {
                        alpn: conn
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned()),
                        sni: conn.server_name().map(str::to_owned),
                        client_certificate: conn.peer_certificates().is_some(),
                    });
                    let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    match idle_close {
                        None => {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        }
                        Some(idle) => pipe_closing_idle(tls, plain, idle).await,
                    }
                });
            }
        });
        TlsFront { addr, handshakes }
    }

    pub fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }
}

/// Copies both ways until either side ends or nothing moved for `idle`; then closes the TLS
/// side cleanly.
async fn pipe_closing_idle(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    mut plain: tokio::net::TcpStream,
    idle: std::time::Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut a, mut b) = (vec![0u8; 16384], vec![0u8; 16384]);
    loop {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = tls.read(&mut a) => match r {
                    Ok(0) | Err(_) => false,
                    Ok(n) => plain.write_all(&a[..n]).await.is_ok(),
                },
                r = plain.read(&mut b) => match r {
                    Ok(0) | Err(_) => false,
                    Ok(n) => tls.write_all(&b[..n]).await.is_ok() && tls.flush().await.is_ok(),
                },
            }
        })
        .await;
        if step != Ok(true) {
            break;
        }
    }
    let _ = tls.shutdown().await;
}
