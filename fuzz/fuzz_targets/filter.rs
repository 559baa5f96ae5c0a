#![no_main]
//! See [`tracelake_query::fuzz::filter`].
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = tracelake_query::fuzz::filter(data) {
        panic!("filter: {e}");
    }
});
