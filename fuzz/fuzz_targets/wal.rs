#![no_main]
//! See [`tracelake_storage::fuzz::wal`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = tracelake_storage::fuzz::wal(data) {
        panic!("wal: {e}");
    }
});
