//! A wsload connection's byte stream: the TCP socket itself, or TLS over it (`--tls`).
//!
//! It owns the socket and, over TLS, the rustls client session, and offers what the load loop
//! needs of a plain non-blocking socket: `read` and `write` that end in `WouldBlock`, and a read
//! that is short only when the socket is drained (the edge-triggered contract: a TLS read that
//! stopped at the end of one record while more waited in the socket would wait for an edge
//! that never comes). Ciphertext that the socket did not take waits inside rustls; the loop
//! calls [`Wire::flush_pending`] when the socket may take more. It must never verify anything
//! of the server's: wsload is a benchmark client, and over TLS it accepts any certificate.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

pub enum Wire {
    Plain(TcpStream),
    Tls(Box<TlsWire>),
}

pub struct TlsWire {
    conn: ClientConnection,
    sock: TcpStream,
    /// The socket blocks (the opening handshake): a read returns what one record gave, or
    /// it would wait for bytes that are not coming.
    blocking: bool,
}

impl Wire {
    /// TLS over `sock` (blocking, with timeouts, as during the opening handshake): the TLS
    /// handshake completes here, offering ALPN http/1.1 and `server_name` by SNI.
    pub fn tls(
        config: &Arc<ClientConfig>,
        server_name: &str,
        mut sock: TcpStream,
    ) -> Result<Wire, String> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("server name {server_name}: {e}"))?;
        let mut conn = ClientConnection::new(Arc::clone(config), name)
            .map_err(|e| format!("TLS session: {e}"))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(|e| format!("TLS handshake: {e}"))?;
        }
        Ok(Wire::Tls(Box::new(TlsWire {
            conn,
            sock,
            blocking: true,
        })))
    }

    /// Makes the socket non-blocking, for the load loop.
    pub fn set_nonblocking(&mut self) -> io::Result<()> {
        if let Wire::Tls(tls) = self {
            tls.blocking = false;
        }
        self.socket().set_nonblocking(true)
    }

    pub fn socket(&self) -> &TcpStream {
        match self {
            Wire::Plain(sock) => sock,
            Wire::Tls(tls) => &tls.sock,
        }
    }

    /// Sends the ciphertext rustls holds until the socket takes no more; true when none is
    /// left (always, on a plain socket).
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Wire::Plain(_) => Ok(true),
            Wire::Tls(tls) => tls.flush_pending(),
        }
    }
}

impl Wire {
    /// Sends a FIN (over TLS, close_notify before it, if the socket takes it now).
    pub fn shutdown_write(&mut self) {
        if let Wire::Tls(tls) = self {
            tls.conn.send_close_notify();
            let _ = tls.flush_pending();
        }
        let _ = self.socket().shutdown(std::net::Shutdown::Write);
    }
}

impl AsFd for Wire {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket().as_fd()
    }
}

impl TlsWire {
    fn flush_pending(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let tls = match self {
            Wire::Plain(sock) => return sock.read(buf),
            Wire::Tls(tls) => tls,
        };
        let mut total = 0;
        loop {
            while total < buf.len() {
                match tls.conn.reader().read(&mut buf[total..]) {
                    // close_notify: the end, after what was taken.
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) if total > 0 => return Ok(total),
                    Err(e) => return Err(e),
                }
            }
            if total == buf.len() || (total > 0 && tls.blocking) {
                return Ok(total);
            }
            match tls.conn.read_tls(&mut tls.sock) {
                // TCP closed: what was taken, then the end.
                Ok(0) => return Ok(total),
                Ok(_) => {
                    tls.conn
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    tls.flush_pending()?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if total > 0 && e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for Wire {
    /// Over TLS: nothing is taken while earlier ciphertext still waits for the socket
    /// (`WouldBlock`), so what the caller queues stays behind it.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let tls = match self {
            Wire::Plain(sock) => return sock.write(buf),
            Wire::Tls(tls) => tls,
        };
        if !tls.flush_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.conn.writer().write(buf)?;
        tls.flush_pending()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending().map(|_| ())
    }
}

/// A client configuration for `--tls`: rustls' defaults (TLS 1.3 and 1.2), ALPN http/1.1,
/// and any certificate accepted (signatures over the handshake are still checked).
pub fn client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(AnyCertificate(Arc::clone(&provider)));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        })
        .unwrap_or_else(|e| panic!("rustls' default protocol versions: {e}"));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Trusts whatever certificate the server sends: a load generator measures, it does not
/// authenticate (the servers it measures use throwaway self-signed certificates).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
