#![no_main]
//! See [`tracelake_storage::fuzz::manifest`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = tracelake_storage::fuzz::manifest(data) {
        panic!("manifest: {e}");
    }
});
