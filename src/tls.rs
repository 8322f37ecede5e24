//! The server's TLS settings: a certificate chain and its private key read from PEM files,
//! checked against each other and turned into the one rustls `ServerConfig` that every worker
//! shares read-only.
//!
//! Owns the protocol choices (TLS 1.3 and 1.2, the server's own cipher-suite order, ALPN
//! `http/1.1`, resumption by tickets whose keys all workers share) and the one-line errors for unusable files. It reads
//! the two files it is given and nothing else, and never touches a socket: the worker's TLS
//! transport runs the sessions.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{self, cipher_suite};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ResolvesServerCertUsingSni,
};
use rustls::sign::CertifiedKey;
use rustls::{Error, InconsistentKeys, ServerConfig};

/// The protocol a TLS client is offered by ALPN: HTTP/1.1 only (WebSocket upgrades ride on it).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A certificate for the server names that ask for it by SNI (`[[tls_certificates]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniCertificate {
    /// Host names, lowercase; `*.example.com` stands for one label before `example.com`.
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Certificates and keys that load and match, as a shared rustls configuration.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    /// Every chain as loaded (the default's first, then one per SNI certificate with its
    /// names): what tells two loads apart (a changed key needs a changed certificate, since
    /// they must match).
    chains: Vec<(Vec<String>, Vec<CertificateDer<'static>>)>,
}

impl TlsConfig {
    /// Reads the PEM chain in `cert` (leaf first, intermediates after it) and the PEM private
    /// key in `key` (PKCS#8, or RSA PKCS#1, or EC SEC1), checks that they belong together, and
    /// does the same for each certificate chosen by SNI, which must also be valid for each of
    /// its names. `cert` answers clients that send no name, or one no other certificate has.
    /// The error is one line naming the file at fault.
    pub fn load(cert: &Path, key: &Path, by_name: &[SniCertificate]) -> Result<TlsConfig, String> {
        let provider = Arc::new(provider());
        let (chain, default) = certified_key(cert, key, &provider)?;
        let mut chains = vec![(Vec::new(), chain)];
        let mut names = HashMap::new();
        for sni in by_name {
            let (chain, certified) = certified_key(&sni.cert, &sni.key, &provider)?;
            let certified = Arc::new(certified);
            for name in &sni.names {
                check_name(name, &certified).map_err(|why| {
                    format!(
                        "the TLS certificate {} cannot serve the name {name}: {why}",
                        sni.cert.display()
                    )
                })?;
                if names.insert(name.clone(), Arc::clone(&certified)).is_some() {
                    return Err(format!("the TLS name {name} is given to two certificates"));
                }
            }
            chains.push((sni.names.clone(), chain));
        }
        let resolver = ByName {
            default: Arc::new(default),
            names,
        };
        let server = server_config(provider, resolver).map_err(|e| {
            format!(
                "cannot set up TLS with the certificate {}: {e}",
                cert.display()
            )
        })?;
        Ok(TlsConfig {
            server: Arc::new(server),
            chains,
        })
    }

    /// The same, with the sessions' traffic secrets extractable (`--ktls true`): a worker
    /// hands a finished session's keys to the kernel. Off by default, as rustls has it.
    pub fn with_kernel_tls(mut self, on: bool) -> TlsConfig {
        if self.server.enable_secret_extraction != on {
            let mut server = (*self.server).clone();
            server.enable_secret_extraction = on;
            self.server = Arc::new(server);
        }
        self
    }

    /// The configuration every TLS session of every worker is made from.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }
}

/// Two loads are equal when they hold the same chains for the same names (each key must
/// match its leaf).
impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.chains == other.chains
    }
}

impl Eq for TlsConfig {}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsConfig({} chain(s))", self.chains.len())
    }
}

/// Chooses the certificate by the name the client sends (SNI): an exact name, then the
/// wildcard for its parent (`*.example.com` for `www.example.com`), then the default, as
/// nginx's default server answers a name it does not know.
#[derive(Debug)]
struct ByName {
    default: Arc<CertifiedKey>,
    names: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(sent) = hello.server_name() else {
            return Some(Arc::clone(&self.default));
        };
        if self.names.is_empty() {
            return Some(Arc::clone(&self.default));
        }
        let name = sent.to_ascii_lowercase();
        let wildcard = || {
            let (_, parent) = name.split_once('.')?;
            self.names.get(&format!("*.{parent}"))
        };
        let chosen = self
            .names
            .get(&name)
            .or_else(wildcard)
            .unwrap_or(&self.default);
        Some(Arc::clone(chosen))
    }
}

/// Whether `certified`'s certificate is valid for `name` (for `*.parent`, for a name below
/// `parent`), as a client would check it.
fn check_name(name: &str, certified: &Arc<CertifiedKey>) -> Result<(), String> {
    let probe = match name.strip_prefix("*.") {
        Some(parent) => format!("percore-sni-check.{parent}"),
        None => name.to_owned(),
    };
    let mut check = ResolvesServerCertUsingSni::new();
    check
        .add(&probe, CertifiedKey::clone(certified))
        .map_err(|e| e.to_string())
}

/// The chain and key in `cert` and `key`, checked against each other.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<(Vec<CertificateDer<'static>>, CertifiedKey), String> {
    let chain = read_chain(cert)?;
    let key_der = read_key(key)?;
    let certified =
        CertifiedKey::from_der(chain.clone(), key_der, provider).map_err(|e| match e {
            Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => format!(
                "the TLS key {} does not match the certificate {} (the first certificate in \
             the file must be the server's own)",
                key.display(),
                cert.display()
            ),
            other => format!(
                "cannot use the TLS key {} with the certificate {}: {other}",
                key.display(),
                cert.display()
            ),
        })?;
    Ok((chain, certified))
}

/// aws-lc-rs with Mozilla's "intermediate" order: AES-128-GCM first (fastest with AES-NI),
/// then AES-256-GCM, then ChaCha20-Poly1305; TLS 1.2 only with forward secrecy and AEAD.
/// Certificates of one key type only use the TLS 1.2 suites of that type.
fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..aws_lc_rs::default_provider()
    }
}

/// The protocol settings around the certificates.
fn server_config(provider: Arc<CryptoProvider>, resolver: ByName) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    // The server picks the suite by its own order, as TLS scanners expect of a server.
    config.ignore_client_order = true;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    // Resumption by stateless tickets only. rustls' session cache is one locked map shared by
    // every worker, which a per-core server must not have on its handshake path; a ticket
    // carries the session itself, encrypted. The ticket keys are shared by all workers (this
    // ServerConfig is): a client's next connection lands on any worker (SO_REUSEPORT hashes
    // its new source port), so per-worker keys would resume one connection in N. rustls'
    // rotator takes a read lock per ticket made or opened (a write lock every 6 hours, when
    // it makes new keys; a ticket lives 12 hours), a cost far below a handshake's.
    // Two tickets per full TLS 1.3 handshake, as OpenSSL (and so nginx) sends.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.ticketer = aws_lc_rs::Ticketer::new()?;
    config.send_tls13_tickets = 2;
    Ok(config)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read the TLS certificate {shown}: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| format!("the TLS certificate {shown} is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "the TLS certificate {shown} holds no certificate (expected PEM blocks \
             '-----BEGIN CERTIFICATE-----', the server's first)"
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the TLS key {shown}: {e}"))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "the TLS key {shown} holds no private key (expected a PEM block \
             '-----BEGIN PRIVATE KEY-----', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY')"
        ),
        other => format!("the TLS key {shown} is not valid PEM: {other}"),
    })
}

/// Certificates made in tests (no key material is committed).
#[cfg(test)]
pub(crate) mod testing {
    /// A CA, a server certificate for localhost signed by it, and the server's key, as PEM.
    pub struct Made {
        pub ca: String,
        pub cert: String,
        pub key: String,
    }

    pub fn make(alg: &'static rcgen::SignatureAlgorithm) -> Made {
        make_for(alg, &["localhost"])
    }

    /// Like [`make`], for the server names `names`.
    pub fn make_for(alg: &'static rcgen::SignatureAlgorithm, names: &[&str]) -> Made {
        let ca_key = rcgen::KeyPair::generate_for(alg).unwrap_or_else(|e| panic!("{e}"));
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("{e}"));
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let key = rcgen::KeyPair::generate_for(alg).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .and_then(|params| params.signed_by(&key, &issuer))
            .unwrap_or_else(|e| panic!("{e}"));
        Made {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes `text` to `dir/name`.
    pub fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{make, make_for, write};
    use super::*;

    #[test]
    fn ecdsa_and_rsa_keys_load_with_their_chain() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_RSA_SHA256] {
            let made = make(alg);
            let cert = write(dir.path(), "chain.pem", &(made.cert.clone() + &made.ca));
            let key = write(dir.path(), "key.pem", &made.key);
            let loaded = TlsConfig::load(&cert, &key, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(loaded.chains[0].1.len(), 2);
            let config = loaded.server_config();
            assert!(config.ignore_client_order);
            assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
            assert_eq!(config.send_tls13_tickets, 2);
            assert!(config.ticketer.enabled());
        }
    }

    #[test]
    fn unusable_files_are_named_in_one_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (one, other) = (
            make(&rcgen::PKCS_ECDSA_P256_SHA256),
            make(&rcgen::PKCS_ECDSA_P256_SHA256),
        );
        let cert = write(dir.path(), "cert.pem", &one.cert);
        let key = write(dir.path(), "key.pem", &one.key);
        let other_key = write(dir.path(), "other.pem", &other.key);
        let empty = write(dir.path(), "empty.pem", "");
        let missing = dir.path().join("missing.pem");
        let (c, k, o, e, m) = (
            cert.display(),
            key.display(),
            other_key.display(),
            empty.display(),
            missing.display(),
        );
        let cases = [
            (
                &cert,
                &other_key,
                format!(
                    "the TLS key {o} does not match the certificate {c} (the first \
                     certificate in the file must be the server's own)"
                ),
            ),
            (
                &missing,
                &key,
                format!(
                    "cannot read the TLS certificate {m}: No such file or directory (os error 2)"
                ),
            ),
            (
                &cert,
                &missing,
                format!("cannot read the TLS key {m}: No such file or directory (os error 2)"),
            ),
            (
                &empty,
                &key,
                format!(
                    "the TLS certificate {e} holds no certificate (expected PEM blocks \
                     '-----BEGIN CERTIFICATE-----', the server's first)"
                ),
            ),
            // A certificate where the key should be.
            (
                &cert,
                &cert,
                format!(
                    "the TLS key {c} holds no private key (expected a PEM block \
                     '-----BEGIN PRIVATE KEY-----', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY')"
                ),
            ),
            // The chain in the wrong order: the CA first.
            (
                &write(dir.path(), "reversed.pem", &(one.ca.clone() + &one.cert)),
                &key,
                format!(
                    "the TLS key {k} does not match the certificate {}/reversed.pem (the \
                     first certificate in the file must be the server's own)",
                    dir.path().display()
                ),
            ),
        ];
        for (cert, key, expected) in cases {
            match TlsConfig::load(cert, key, &[]) {
                Err(got) => assert_eq!(got, expected),
                Ok(_) => panic!("{} with {} loaded", cert.display(), key.display()),
            }
        }
    }

    #[test]
    fn certificates_by_sni_must_be_valid_for_their_names() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let base = make(alg);
        let (cert, key) = (
            write(dir.path(), "cert.pem", &base.cert),
            write(dir.path(), "key.pem", &base.key),
        );
        let other = make_for(alg, &["a.test", "*.b.test"]);
        let sni = |names: &[&str]| SniCertificate {
            names: names.iter().map(|n| n.to_string()).collect(),
            cert: write(dir.path(), "a.pem", &other.cert),
            key: write(dir.path(), "a.key", &other.key),
        };
        let a = dir.path().join("a.pem");
        assert!(TlsConfig::load(&cert, &key, &[sni(&["a.test", "*.b.test"])]).is_ok());
        for (names, expected) in [
            (
                &["a.test", "c.test"][..],
                format!(
                    "the TLS certificate {} cannot serve the name c.test",
                    a.display()
                ),
            ),
            (
                &["*.a.test"][..],
                format!(
                    "the TLS certificate {} cannot serve the name *.a.test",
                    a.display()
                ),
            ),
        ] {
            let Err(got) = TlsConfig::load(&cert, &key, &[sni(names)]) else {
                panic!("{names:?} loaded");
            };
            assert!(got.starts_with(&expected), "{got}");
        }
        let twice = TlsConfig::load(&cert, &key, &[sni(&["a.test"]), sni(&["a.test"])]);
        assert_eq!(
            twice.err().as_deref(),
            Some("the TLS name a.test is given to two certificates")
        );
        // Another certificate's key: named like the default's mismatch.
        let wrong = SniCertificate {
            key: key.clone(),
            ..sni(&["a.test"])
        };
        let got = TlsConfig::load(&cert, &key, &[wrong])
            .err()
            .unwrap_or_default();
        assert!(
            got.contains("does not match the certificate") && got.contains("a.pem"),
            "{got}"
        );
    }

    #[test]
    fn loads_compare_by_their_chain() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let made = make(&rcgen::PKCS_ECDSA_P256_SHA256);
        let cert = write(dir.path(), "cert.pem", &made.cert);
        let key = write(dir.path(), "key.pem", &made.key);
        let first = TlsConfig::load(&cert, &key, &[]).unwrap_or_else(|e| panic!("{e}"));
        let again = TlsConfig::load(&cert, &key, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, again);
        let renewed = make(&rcgen::PKCS_ECDSA_P256_SHA256);
        write(dir.path(), "cert.pem", &renewed.cert);
        write(dir.path(), "key.pem", &renewed.key);
        let after = TlsConfig::load(&cert, &key, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(first, after);
    }
}
