//! The layout of `gateway/src` follows a call: each top-level module may use
//! only modules after it in [`ORDER`] (outer layers use inner ones; leaves use
//! nothing). The dependencies that still point backwards are listed in
//! [`KNOWN_BACK_EDGES`], a ratchet: a new one fails this test, and so does
//! one that is gone but still listed (remove it from the list).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules, outermost first.
const ORDER: &[&str] = &[
    "server",
    "edge",
    "services",
    "call",
    "gateway",
    "policy",
    "ops",
    "telemetry",
    "audit",
    "outbox",
    "cluster",
    "config",
    "errors",
    "crypto",
];

/// Backward dependencies still to remove: none (the operators' views read
/// `telemetry::view::Observed`, which `server` implements).
const KNOWN_BACK_EDGES: &[(&str, &str)] = &[];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::<module>` uses per top-level module, outside comments.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if !ORDER.contains(&module.as_str()) {
            continue; // lib.rs, main.rs, fuzz_tests.rs
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String =
                    line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name != module && ORDER.contains(&name.as_str()) {
                    deps.entry(module.clone()).or_default().insert(name);
                }
            }
        }
    }
    deps
}

#[test]
fn modules_depend_only_inwards_but_for_the_known_back_edges() {
    let rank = |m: &str| ORDER.iter().position(|o| *o == m).unwrap();
    let deps = dependencies();
    assert!(deps.get("server").is_some_and(|d| d.contains("edge")), "the scan found nothing: {deps:?}");
    let back: BTreeSet<(String, String)> = deps
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |t| (from.clone(), t.clone())))
        .filter(|(from, to)| rank(to) < rank(from))
        .collect();
    let known: BTreeSet<(String, String)> =
        KNOWN_BACK_EDGES.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    let new: Vec<_> = back.difference(&known).collect();
    let gone: Vec<_> = known.difference(&back).collect();
    assert!(new.is_empty(), "new backward dependencies (an outer module used from an inner one): {new:?}");
    assert!(gone.is_empty(), "these backward dependencies are gone: remove them from KNOWN_BACK_EDGES: {gone:?}");
    // The leaves use nothing of the gateway's.
    for leaf in ["errors", "crypto"] {
        assert!(deps.get(leaf).is_none_or(BTreeSet::is_empty), "{leaf} must be a leaf: {:?}", deps.get(leaf));
    }
}
