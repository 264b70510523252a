//! `--help` for the examples: each prints its own module documentation.

use std::io::Write;

/// Whether `--help` (or `-h`) was asked; if so, the leading `//!` lines of
/// `source` (the example's own file) are printed as its help.
pub fn asked(source: &str) -> bool {
    if !std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        return false;
    }
    let mut out = std::io::stdout().lock();
    for line in source.lines().take_while(|l| l.starts_with("//!")) {
        let text = line.trim_start_matches("//!");
        // A closed pipe (`| head`) is no reason to fail.
        if writeln!(out, "{}", text.strip_prefix(' ').unwrap_or(text)).is_err() {
            break;
        }
    }
    true
}
