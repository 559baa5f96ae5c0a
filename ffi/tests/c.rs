//! The C programs of `tests/c/`, compiled by gcc (`-std=c11 -Wall -Wextra -Wpedantic
//! -Werror`) against the header and the shared library, run with AddressSanitizer and
//! then under valgrind (`--leak-check=full --error-exitcode=1`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `libtracelake_c.so` of this build.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for d in [deps, deps.parent().unwrap()] {
        if d.join("libtracelake_c.so").exists() {
            return d.to_path_buf();
        }
    }
    panic!("libtracelake_c.so not found beside {}", exe.display());
}

fn compile(name: &str, out: &Path, sanitize: bool) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let bin = out.join(format!("{name}{}", if sanitize { "-asan" } else { "" }));
    let mut c = Command::new("gcc");
    c.args([
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Werror",
        "-g",
        "-pthread",
    ]);
    if sanitize {
        c.arg("-fsanitize=address");
    }
    c.arg("-I").arg(&include).arg(&src).arg("-o").arg(&bin);
    c.arg("-L").arg(lib_dir()).arg("-ltracelake_c");
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "gcc {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

fn corpus() -> PathBuf {
    let shared = std::env::var_os("TRACELAKE_SHARED").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared"))
                .find(|s| s.join("fixtures").is_dir())
                .expect("the team's shared/ directory beside the checkout")
        },
        PathBuf::from,
    );
    shared.join("fixtures/sdk-python/datagrams.jsonl")
}

fn run(mut c: Command, what: &str) {
    c.env("LD_LIBRARY_PATH", lib_dir());
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn programs(sanitize: bool, valgrind: bool) {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["smoke", "threads"] {
        let bin = compile(name, tmp.path(), sanitize);
        let store = tmp.path().join(format!("store-{name}-{sanitize}"));
        let mut c = if valgrind {
            let mut v = Command::new("valgrind");
            v.args(["--leak-check=full", "--error-exitcode=1", "--quiet"]);
            let supp = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/valgrind.supp");
            v.arg(format!("--suppressions={}", supp.display()));
            v.arg(&bin);
            v
        } else {
            Command::new(&bin)
        };
        c.arg(&store);
        if name == "smoke" {
            c.arg(corpus());
        }
        if sanitize {
            c.env("ASAN_OPTIONS", "detect_leaks=1");
        }
        run(
            c,
            &format!("{name} (asan: {sanitize}, valgrind: {valgrind})"),
        );
    }
}

#[test]
fn c_programs_pass_under_address_sanitizer() {
    programs(true, false);
}

#[test]
fn c_programs_pass_under_valgrind() {
    assert!(
        Command::new("valgrind").arg("--version").output().is_ok(),
        "valgrind is needed (apt-get install valgrind)"
    );
    programs(false, true);
}
