//! The fuzz targets' bodies (`fuzz/src/`) over every seed in `fuzz/corpus/<target>/` and
//! every saved finding in `fuzz/regressions/<target>/`, so that plain `cargo test` keeps
//! the invariants the fuzzers check and a fixed finding stays fixed. The fuzz crate itself
//! (AFL, `fuzz/run`) is never built here.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)] // `target` serves the fuzz crate's replay tool
mod targets;

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

/// Runs `name`'s body over its corpus and regressions; returns how many inputs ran.
fn replay(name: &str) -> usize {
    let run = targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .expect("a target of that name");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = inputs(&root.join("corpus").join(name));
    assert!(!seeds.is_empty(), "no seeds in fuzz/corpus/{name}");
    let regressions = inputs(&root.join("regressions").join(name));
    for file in seeds.iter().chain(&regressions) {
        let data = std::fs::read(file).expect("readable input");
        // The file name is in the panic output: catch_unwind would lose the backtrace.
        eprintln!("{name}: {}", file.display());
        run(&data);
    }
    seeds.len() + regressions.len()
}

#[test]
fn parse_corpus_and_regressions() {
    assert!(replay("parse") >= 60);
}

#[test]
fn sdp_corpus_and_regressions() {
    assert!(replay("sdp") >= 10);
}

#[test]
fn digest_corpus_and_regressions() {
    assert!(replay("digest") >= 10);
}

#[test]
fn every_target_is_replayed() {
    let names: Vec<_> = targets::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["parse", "sdp", "digest"]);
}
