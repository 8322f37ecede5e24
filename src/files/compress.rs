//! Compression on the fly, once (`--compress`): which files are worth compressing, and the
//! compressed bytes of one, for the worker to keep in its cache beside the file until the file
//! changes, so a compressed hit costs what an uncompressed one does.
//!
//! Pure computation on bytes the worker already holds: it never reads a file. Only small
//! files are compressed (those the cache holds in memory), with settings that take a few
//! milliseconds for the largest of them, since the worker's other connections wait meanwhile.

use std::io::Write;

use super::encoding::Coding;

/// Files shorter than this are sent as they are: the head outweighs what compression saves.
pub const MIN_LEN: usize = 1024;
/// Brotli quality 6 (of 11) with a 4 MiB window: within a few percent of the best ratio on
/// text, at a small fraction of quality 11's time (64 KiB in about 2 ms, not 100).
const BROTLI_QUALITY: i32 = 6;
const BROTLI_WINDOW: i32 = 22;
/// gzip's best level: cheap on small files, and done once.
const GZIP_LEVEL: u32 = 9;

/// Whether a file of this type compresses (text, JSON, XML, SVG, JavaScript, WebAssembly),
/// not one that already is compressed (images, audio, video, fonts in WOFF, archives).
pub fn is_compressible(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/wasm"
                | "image/x-icon"
                | "image/bmp"
                | "font/ttf"
                | "font/otf"
        )
}

/// Which codings can be made here (Zstandard is only served from precompressed files).
pub fn can_make(coding: Coding) -> bool {
    matches!(coding, Coding::Br | Coding::Gzip)
}

/// `bytes` compressed with `coding`, or `None` when that cannot be made here or the result
/// is not smaller than the input.
pub fn compress(coding: Coding, bytes: &[u8]) -> Option<Vec<u8>> {
    let compressed = match coding {
        Coding::Br => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: BROTLI_QUALITY,
                lgwin: BROTLI_WINDOW,
                size_hint: bytes.len(),
                ..Default::default()
            };
            let mut out = Vec::with_capacity(bytes.len() / 2);
            brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).ok()?;
            out
        }
        Coding::Gzip => {
            let out = Vec::with_capacity(bytes.len() / 2);
            let mut encoder =
                flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            encoder.write_all(bytes).ok()?;
            encoder.finish().ok()?
        }
        Coding::Zstd => return None,
    };
    (compressed.len() < bytes.len()).then_some(compressed)
}

/// `len` bytes with no redundancy for a compressor to remove (xorshift64), for tests.
#[cfg(test)]
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn text(len: usize) -> Vec<u8> {
        (0..)
            .flat_map(|i| format!("<li>item {i} of a long list</li>\n").into_bytes())
            .take(len)
            .collect()
    }

    #[test]
    fn text_types_compress_and_compressed_ones_do_not() {
        for yes in [
            "text/html; charset=utf-8",
            "text/javascript; charset=utf-8",
            "application/json; charset=utf-8",
            "image/svg+xml; charset=utf-8",
            "application/manifest+json; charset=utf-8",
            "application/wasm",
        ] {
            assert!(is_compressible(yes), "{yes}");
        }
        for no in [
            "image/png",
            "font/woff2",
            "application/gzip",
            "video/mp4",
            "application/octet-stream",
        ] {
            assert!(!is_compressible(no), "{no}");
        }
    }

    #[test]
    fn gzip_and_brotli_round_trip() {
        let original = text(20_000);
        let gz = compress(Coding::Gzip, &original).expect("gzip output");
        assert!(gz.len() < original.len() / 4, "{}", gz.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, original);
        let br = compress(Coding::Br, &original).expect("brotli output");
        assert!(
            br.len() < gz.len(),
            "brotli {} vs gzip {}",
            br.len(),
            gz.len()
        );
        let mut back = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut back)
            .expect("unbrotli");
        assert_eq!(back, original);
        // The same input gives the same bytes (so every worker has the same ETag's bytes).
        assert_eq!(compress(Coding::Br, &original), Some(br));
        assert_eq!(compress(Coding::Gzip, &original), Some(gz));
    }

    #[test]
    fn output_that_is_not_smaller_is_refused() {
        let noise = noise(4096);
        assert_eq!(compress(Coding::Gzip, &noise), None);
        assert_eq!(compress(Coding::Zstd, &text(4096)), None);
        assert!(!can_make(Coding::Zstd) && can_make(Coding::Br) && can_make(Coding::Gzip));
    }
}
