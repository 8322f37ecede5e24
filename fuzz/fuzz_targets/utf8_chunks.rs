//! The streaming UTF-8 validator, fed any split of any bytes, must agree with the standard
//! library on the whole: valid exactly when `std::str::from_utf8` says so, and never reject
//! a prefix of valid text early.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::ws::Utf8Validator;

fuzz_target!(|data: &[u8]| {
    let Some((&step, text)) = data.split_first() else {
        return;
    };
    let whole_is_valid = std::str::from_utf8(text).is_ok();
    let mut validator = Utf8Validator::new();
    for piece in text.chunks(1 + usize::from(step % 16)) {
        if validator.feed(piece).is_err() {
            assert!(!whole_is_valid, "rejected a piece of valid UTF-8");
            return;
        }
    }
    assert_eq!(validator.finish().is_ok(), whole_is_valid);
});
