#![no_main]
//! See [`tracelake_storage::fuzz::sketch`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = tracelake_storage::fuzz::sketch(data) {
        panic!("sketch: {e}");
    }
});
