#![no_main]
//! See [`tracelake_storage::fuzz::segment`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = tracelake_storage::fuzz::segment(data) {
        panic!("segment: {e}");
    }
});
