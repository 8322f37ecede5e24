//! The TLS side of the harness: a test CA and server certificates made for each test (so no key
//! material is committed), a rustls client that trusts that CA, and a server started with one
//! plain and one TLS port.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{connect, Options, Root, Server};

/// A test CA and a server certificate it signed, written as PEM to a temporary directory.
pub struct TlsFiles {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA, to sign more server certificates.
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl TlsFiles {
    /// An ECDSA P-256 CA and server certificate.
    pub fn new() -> TlsFiles {
        TlsFiles::with(&rcgen::PKCS_ECDSA_P256_SHA256)
    }

    pub fn with(alg: &'static rcgen::SignatureAlgorithm) -> TlsFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = rcgen::KeyPair::generate_for(alg).expect("CA key");
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "percore test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params.clone(), &ca_key);
        let key = rcgen::KeyPair::generate_for(alg).expect("server key");
        // An IP address among the names becomes an IP SAN, so https://127.0.0.1 verifies too.
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .and_then(|params| params.signed_by(&key, &issuer))
            .expect("server certificate");
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("fullchain.pem"),
            key: dir.path().join("privkey.pem"),
            dir,
            ca_params,
            ca_key,
            alg,
        };
        // As an ACME client writes them: the server's certificate, then the chain above it.
        std::fs::write(&files.cert, cert.pem() + &ca.pem()).expect("write the chain");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        std::fs::write(&files.ca, ca.pem()).expect("write the CA");
        files
    }

    /// Another server certificate (and key) from the same CA, for `names`, written as
    /// `<stem>.pem` (the certificate alone) and `<stem>.key`.
    pub fn another(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, String) {
        let issuer = rcgen::Issuer::new(self.ca_params.clone(), &self.ca_key);
        let key = rcgen::KeyPair::generate_for(self.alg).expect("server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .and_then(|params| params.signed_by(&key, &issuer))
            .expect("server certificate");
        let (cert_path, key_path) = (
            self.dir.path().join(format!("{stem}.pem")),
            self.dir.path().join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
        (cert_path, key_path, cert.pem())
    }

    pub fn path(&self, file: &Path) -> String {
        file.to_str().expect("a UTF-8 temp path").to_owned()
    }

    /// `--tls-cert` and `--tls-key` naming these files.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path(&self.cert),
            "--tls-key".into(),
            self.path(&self.key),
        ]
    }

    /// A rustls client that trusts the test CA and offers ALPN http/1.1.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read the CA") {
            roots
                .add(cert.expect("a CA certificate"))
                .expect("trust the CA");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS connection to `port` (handshake done), verifying the server as localhost.
    pub fn connect(&self, port: u16) -> StreamOwned<ClientConnection, TcpStream> {
        let name = ServerName::try_from("localhost").expect("a server name");
        let conn = ClientConnection::new(self.client_config(), name).expect("a TLS client");
        let mut stream = StreamOwned::new(conn, connect(port));
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("the TLS handshake");
        }
        stream
    }
}

/// A server with a plain port and a TLS port serving `tls`'s certificate, and `extra` flags.
pub fn start(root: &Root, tls: &TlsFiles, extra: &[&str]) -> Server {
    let mut flags = tls.flags();
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start_with(
        root,
        Options {
            ports: 2,
            tls_ports: 1,
            extra: &flags,
            ..Options::default()
        },
    )
}

/// The server's TLS port (the plain one is `ports[0]`).
pub fn tls_port(server: &Server) -> u16 {
    server.ports[1]
}
