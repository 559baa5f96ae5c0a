//! Helpers shared by the engine's integration tests.

use std::path::PathBuf;

/// The team's `shared/` directory: beside the checkout, or `TRACELAKE_SHARED`.
pub(crate) fn shared() -> PathBuf {
    if let Some(p) = std::env::var_os("TRACELAKE_SHARED") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("fixtures").is_dir())
        .expect("the team's shared/ directory beside the checkout (or set TRACELAKE_SHARED)")
}
