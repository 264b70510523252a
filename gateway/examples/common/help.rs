//! `--help` for the examples (each prints its own module documentation),
//! and their `--name value` options.

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

/// The value after `name` on the command line, else `default`.
#[allow(dead_code)] // not every example takes options
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_owned())
}
