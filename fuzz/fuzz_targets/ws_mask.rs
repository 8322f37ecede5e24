//! The word-at-a-time masking routines (and the one-pass append behind other bytes) must equal
//! the byte-at-a-time definition of RFC 6455 §5.3 for every length, key and starting offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::ws::{apply_mask, apply_mask_naive, copy_masked, extend_unmasked};

fuzz_target!(|data: &[u8]| {
    let [k0, k1, k2, k3, offset, payload @ ..] = data else {
        return;
    };
    let key = [*k0, *k1, *k2, *k3];
    let offset = usize::from(*offset);

    let mut fast = payload.to_vec();
    let mut naive = payload.to_vec();
    apply_mask(&mut fast, key, offset);
    apply_mask_naive(&mut naive, key, offset);
    assert_eq!(fast, naive);

    let mut copied = vec![0u8; payload.len()];
    copy_masked(&mut copied, payload, key);
    let mut expected = payload.to_vec();
    apply_mask_naive(&mut expected, key, 0);
    assert_eq!(copied, expected);

    // Appended behind `offset` bytes already held (the echo's frame header), in one pass.
    let mut appended = vec![0xA5; offset % 16];
    extend_unmasked(&mut appended, payload, key);
    assert!(appended[..offset % 16].iter().all(|&b| b == 0xA5));
    assert_eq!(appended[offset % 16..], expected[..]);
});
