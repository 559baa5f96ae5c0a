#![no_main]
//! See [`tracelake::fuzz::differential`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    if let Err(e) = tracelake::fuzz::differential(dir.path(), data) {
        panic!("differential: {e}");
    }
});
