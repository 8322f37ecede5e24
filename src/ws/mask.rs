//! Client-to-server payload masking (RFC 6455 §5.3): XOR with a rotating 4-byte key.
//!
//! This file owns the fast word-at-a-time unmasking and its naive twin. It never uses `unsafe`
//! (appending without a zero fill is `sys`'s) and allocates only to append; the fast path
//! works on byte arrays the compiler can vectorise.

/// XORs `buf` with `key`, starting at byte `offset` of the key stream (the number of payload
/// bytes of this frame already unmasked), so a payload can be unmasked in pieces.
///
/// RFC 6455 §5.3: "Octet i of the transformed data ("transformed-octet-i") is the XOR of
/// octet i of the original data ("original-octet-i") with octet at index i modulo 4 of the
/// masking key ("masking-key-octet-j")".
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let word = key_word(key);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key stream is still aligned with `key`.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Writes `src` masked with `key` into `dst` in one pass (a client building a frame), so the
/// payload is not copied and then masked over again. Both must have the same length.
pub fn copy_masked(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    assert_eq!(dst.len(), src.len(), "copy_masked needs equal lengths");
    let word = key_word(key);
    let mut dst_chunks = dst.chunks_exact_mut(8);
    let mut src_chunks = src.chunks_exact(8);
    for (d, s) in (&mut dst_chunks).zip(&mut src_chunks) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(s);
        d.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    let tail = src_chunks.remainder().iter().zip(key.iter().cycle());
    for (d, (s, k)) in dst_chunks.into_remainder().iter_mut().zip(tail) {
        *d = s ^ k;
    }
}

/// Appends `masked` to `out` unmasked with `key` (from the key's first byte), in one pass over
/// both: no copy to unmask again, and no zero fill of the new bytes to write over.
pub fn extend_unmasked(out: &mut Vec<u8>, masked: &[u8], key: [u8; 4]) {
    crate::sys::extend_xored(out, masked, key_bytes(key));
}

/// The key repeated over 8 bytes, for XOR-ing a word at a time.
fn key_bytes(key: [u8; 4]) -> [u8; 8] {
    [
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]
}

/// The key repeated over a 64-bit word, for XOR-ing 8 bytes at a time.
fn key_word(key: [u8; 4]) -> u64 {
    u64::from_ne_bytes(key_bytes(key))
}

/// The key as seen from byte `offset` of the key stream.
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut rotated = key;
    rotated.rotate_left(offset % 4);
    rotated
}

/// The byte-at-a-time twin of [`apply_mask`], the reference it is tested against.
pub fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(len: usize, offset: usize) {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let mut fast = original.clone();
        let mut naive = original.clone();
        apply_mask(&mut fast, key, offset);
        apply_mask_naive(&mut naive, key, offset);
        assert_eq!(fast, naive, "len {len} offset {offset}");
        if len > 0 {
            assert_ne!(fast, original, "len {len} offset {offset}");
        }
        apply_mask(&mut fast, key, offset);
        assert_eq!(
            fast, original,
            "masking twice restores, len {len} offset {offset}"
        );
    }

    #[test]
    fn fast_matches_naive_for_every_length_and_offset() {
        for len in 0..64 {
            for offset in 0..4 {
                check(len, offset);
            }
        }
        check(1000, 6);
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_at_once() {
        let key = [1, 2, 3, 4];
        let original: Vec<u8> = (0..77u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..=original.len() {
            let mut pieces = original.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(pieces, whole, "split {split}");
        }
    }

    #[test]
    fn copy_masked_matches_the_naive_twin_for_every_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..64 {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut expected = payload.clone();
            apply_mask_naive(&mut expected, key, 0);
            let mut out = vec![0xAA; len];
            copy_masked(&mut out, &payload, key);
            assert_eq!(out, expected, "len {len}");
        }
    }

    #[test]
    fn rfc_6455_masked_hello() {
        // RFC 6455 §5.7: 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58 is "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
