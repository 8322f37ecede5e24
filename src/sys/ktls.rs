//! Kernel TLS (kTLS): the `tls` upper-layer protocol on a TCP socket, the record keys the
//! kernel encrypts and decrypts with, and the records that are not application data.
//!
//! Owns the system calls only: which session's keys to hand over, and when, is the worker's
//! decision; what the keys are is rustls'. The layouts are the kernel's `struct
//! tls12_crypto_info_*` (`include/uapi/linux/tls.h`), built here byte by byte: a 4-byte
//! header (version, cipher) and byte arrays, so no padding can differ.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use super::retry_interrupted;

/// `TCP_ULP` (`include/uapi/linux/tcp.h`).
const TCP_ULP: libc::c_int = 31;
/// `SOL_TLS` (`include/linux/socket.h`).
const SOL_TLS: libc::c_int = 282;
/// `TLS_TX`, `TLS_RX`: the direction a key is for.
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
/// Control message types: the record type to send, or of the record received.
const TLS_SET_RECORD_TYPE: libc::c_int = 1;
const TLS_GET_RECORD_TYPE: libc::c_int = 2;
const TLS_1_3_VERSION: u16 = 0x0304;
const TLS_CIPHER_AES_GCM_128: u16 = 51;
const TLS_CIPHER_AES_GCM_256: u16 = 52;
const TLS_CIPHER_CHACHA20_POLY1305: u16 = 54;
/// The largest crypto_info: 4 + 8 + 32 + 4 + 8 (AES-256-GCM) or 4 + 12 + 32 + 8 (ChaCha20).
const INFO_MAX: usize = 56;

/// The TLS record type of application data.
pub const RECORD_APPLICATION_DATA: u8 = 23;

/// The keys of one direction of a TLS 1.3 session, as the kernel takes them: the AEAD, its
/// key, its 12-byte IV (the nonce is the IV xor the record sequence number, for every suite
/// in TLS 1.3) and the sequence number of the next record.
pub enum Tls13Keys<'a> {
    Aes128Gcm { key: &'a [u8; 16], iv: &'a [u8; 12] },
    Aes256Gcm { key: &'a [u8; 32], iv: &'a [u8; 12] },
    Chacha20Poly1305 { key: &'a [u8; 32], iv: &'a [u8; 12] },
}

/// Which way a key works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Transmit,
    Receive,
}

/// The kernel's crypto_info for `keys` with the next record's sequence number `seq`: the
/// bytes and how many of them count.
fn crypto_info(keys: &Tls13Keys<'_>, seq: u64) -> ([u8; INFO_MAX], usize) {
    let mut info = [0u8; INFO_MAX];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        info[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&TLS_1_3_VERSION.to_ne_bytes());
    match keys {
        // AES-GCM splits the IV: its last 8 bytes ("iv"), the key, its first 4 ("salt").
        Tls13Keys::Aes128Gcm { key, iv } => {
            put(&TLS_CIPHER_AES_GCM_128.to_ne_bytes());
            put(&iv[4..]);
            put(&key[..]);
            put(&iv[..4]);
        }
        Tls13Keys::Aes256Gcm { key, iv } => {
            put(&TLS_CIPHER_AES_GCM_256.to_ne_bytes());
            put(&iv[4..]);
            put(&key[..]);
            put(&iv[..4]);
        }
        // ChaCha20-Poly1305 takes the whole IV and no salt.
        Tls13Keys::Chacha20Poly1305 { key, iv } => {
            put(&TLS_CIPHER_CHACHA20_POLY1305.to_ne_bytes());
            put(&iv[..]);
            put(&key[..]);
        }
    }
    put(&seq.to_be_bytes());
    (info, at)
}

/// Attaches the `tls` upper-layer protocol to an established TCP socket. Until keys are set it
/// changes nothing, so a failure (ENOENT: the kernel has no `tls` module) leaves the socket as
/// it was.
pub fn attach_tls(stream: &TcpStream) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: the stream's fd is open; the option value points at `name`, 3 live bytes.
    syscall!(setsockopt(
        stream.as_raw_fd(),
        libc::IPPROTO_TCP,
        TCP_ULP,
        name.as_ptr().cast(),
        name.len() as libc::socklen_t
    ))?;
    Ok(())
}

/// Gives the kernel the keys for one direction of the TLS session on `stream` (which has the
/// `tls` protocol attached): from then on it encrypts what is written, or decrypts what is
/// read, starting with record number `seq`.
pub fn set_tls_keys(
    stream: &TcpStream,
    direction: Direction,
    keys: &Tls13Keys<'_>,
    seq: u64,
) -> io::Result<()> {
    let (mut info, len) = crypto_info(keys, seq);
    let which = match direction {
        Direction::Transmit => TLS_TX,
        Direction::Receive => TLS_RX,
    };
    // SAFETY: the stream's fd is open; the option value points at `info`, of which `len`
    // bytes (at most its size) are the crypto_info the kernel reads.
    let set = syscall!(setsockopt(
        stream.as_raw_fd(),
        SOL_TLS,
        which,
        info.as_ptr().cast(),
        len as libc::socklen_t
    ));
    // The key should not linger on the stack (best effort: the caller's copies are its own).
    info.fill(0);
    std::hint::black_box(&info);
    set.map(|_| ())
}

/// Room for one control message carrying one byte (a record type).
// SAFETY: CMSG_SPACE only computes a size.
const CONTROL_SPACE: usize = unsafe { libc::CMSG_SPACE(1) } as usize;
/// That room in u64 words, so the buffer is aligned for a cmsghdr.
const CONTROL_WORDS: usize = CONTROL_SPACE.div_ceil(8);

/// A message header over one buffer (`iov`) and `control`, for recvmsg or sendmsg. It points
/// at both: they must outlive the call it is given to.
fn message(iov: &mut libc::iovec, control: &mut [u64; CONTROL_WORDS]) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_SPACE as _;
    msg
}

/// Reads the plaintext of the next records into `buf`: the bytes and their record type (a read
/// never mixes types; it stops before a record of another type). Ok(0, _) is the end of the
/// stream; WouldBlock when no whole record is there. EINTR is retried.
pub fn recv_tls(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, u8)> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg = message(&mut iov, &mut control);
    let n = retry_interrupted(|| {
        // SAFETY: `msg` points at one iovec over `buf` (writable for its length) and at
        // `control` (writable for msg_controllen bytes); all live for the call.
        syscall!(recvmsg(stream.as_raw_fd(), &mut msg, 0))
    })?;
    let mut record_type = RECORD_APPLICATION_DATA;
    // SAFETY: `msg` was filled by recvmsg: CMSG_FIRSTHDR returns null or a header inside
    // `control` (msg_controllen was updated to what the kernel wrote), whose data byte is
    // inside it too when its level and type are the record type's.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == SOL_TLS
            && (*cmsg).cmsg_type == TLS_GET_RECORD_TYPE
        {
            record_type = *libc::CMSG_DATA(cmsg);
        }
    }
    Ok((usize::try_from(n).unwrap_or(0), record_type))
}

/// Sends `bytes` as one record of `record_type` (an alert, say) on a socket whose kernel
/// encrypts: a record of application data still being filled is closed and sent first.
pub fn send_tls_record(stream: &TcpStream, record_type: u8, bytes: &[u8]) -> io::Result<usize> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let msg = message(&mut iov, &mut control);
    // SAFETY: `control` is CONTROL_SPACE bytes, aligned, room for one header with one data
    // byte: CMSG_FIRSTHDR returns its start (msg_controllen ≥ a header), and CMSG_DATA a
    // byte inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = SOL_TLS;
        (*cmsg).cmsg_type = TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = record_type;
    }
    let n = retry_interrupted(|| {
        // SAFETY: `msg` points at one iovec over `bytes` (only read by sendmsg) and at the
        // control message above, all live for the call.
        syscall!(sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL))
    })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Whether this kernel encrypts TLS records with `keys`: tried on a loopback connection of its
/// own, so that the kernel loads the `tls` module and the cipher's on first use (as it does
/// for a real connection; /proc/sys/net/ipv4/tcp_available_ulp would not show them before).
/// The error says why not.
pub fn kernel_tls_takes(keys: &Tls13Keys<'_>) -> io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    // While the client is open: the protocol attaches to established connections only.
    let taken =
        attach_tls(&server).and_then(|()| set_tls_keys(&server, Direction::Transmit, keys, 0));
    drop(client);
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layouts of `struct tls12_crypto_info_aes_gcm_128`, `_aes_gcm_256` and
    /// `_chacha20_poly1305`: version and cipher (native u16), then iv, key, salt, rec_seq.
    #[test]
    fn crypto_info_follows_the_kernels_layout() {
        let key16 = [0x11; 16];
        let key32 = [0x22; 32];
        let iv: [u8; 12] = std::array::from_fn(|i| i as u8);
        let seq = 0x0102_0304_0506_0708u64;

        let (info, len) = crypto_info(
            &Tls13Keys::Aes128Gcm {
                key: &key16,
                iv: &iv,
            },
            seq,
        );
        assert_eq!(len, 40);
        assert_eq!(info[..2], 0x0304u16.to_ne_bytes());
        assert_eq!(info[2..4], 51u16.to_ne_bytes());
        assert_eq!(info[4..12], iv[4..]);
        assert_eq!(info[12..28], key16);
        assert_eq!(info[28..32], iv[..4]);
        assert_eq!(info[32..40], seq.to_be_bytes());

        let (info, len) = crypto_info(
            &Tls13Keys::Aes256Gcm {
                key: &key32,
                iv: &iv,
            },
            seq,
        );
        assert_eq!(len, 56);
        assert_eq!(info[2..4], 52u16.to_ne_bytes());
        assert_eq!(info[4..12], iv[4..]);
        assert_eq!(info[12..44], key32);
        assert_eq!(info[44..48], iv[..4]);
        assert_eq!(info[48..56], seq.to_be_bytes());

        let keys = Tls13Keys::Chacha20Poly1305 {
            key: &key32,
            iv: &iv,
        };
        let (info, len) = crypto_info(&keys, seq);
        assert_eq!(len, 56);
        assert_eq!(info[2..4], 54u16.to_ne_bytes());
        assert_eq!(info[4..16], iv);
        assert_eq!(info[16..48], key32);
        assert_eq!(info[48..56], seq.to_be_bytes());
    }

    /// Without keys, the protocol changes nothing: where the kernel attaches it, bytes still
    /// pass as they are; where it has no `tls` module, attaching fails and the socket works
    /// as before (with ENOENT, and no cipher is taken).
    #[test]
    fn attaching_tls_without_keys_leaves_the_socket_as_it_was() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let mut client =
            TcpStream::connect(listener.local_addr().unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        let (mut server, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        let attached = attach_tls(&server);
        let keys = Tls13Keys::Aes128Gcm {
            key: &[0; 16],
            iv: &[0; 12],
        };
        if let Err(e) = &attached {
            assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
            assert!(kernel_tls_takes(&keys).is_err());
        }
        client.write_all(b"ping").unwrap_or_else(|e| panic!("{e}"));
        let mut got = [0u8; 4];
        server
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got, b"ping");
        server.write_all(b"pong").unwrap_or_else(|e| panic!("{e}"));
        client
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got, b"pong");
    }
}
