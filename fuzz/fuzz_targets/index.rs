#![no_main]
//! See [`tracelake_storage::fuzz::index`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = tracelake_storage::fuzz::index(data) {
        panic!("index: {e}");
    }
});
