//! Every example binary answers `--help` with its own documentation, and
//! exits, rather than starting to listen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn every_example_answers_help_and_exits() {
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    // `cargo test` builds the examples next to the test binaries' deps.
    let built = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&sources).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        let first = source.lines().next().unwrap().trim_start_matches("//!").trim().to_owned();
        let out = Command::new(built.join(&name)).arg("--help").output().unwrap_or_else(|e| {
            panic!("{name}: {e} (the examples are built by `cargo test --workspace`, or `cargo build --examples`)")
        });
        assert!(out.status.success(), "{name} --help: {:?}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with(&first), "{name} --help printed:\n{stdout}");
        checked += 1;
    }
    assert!(checked >= 8, "{checked} examples");
}
