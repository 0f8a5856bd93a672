//! The bodies of drhub's fuzz targets, one function per target taking the raw input.
//!
//! Each body drives one untrusted-input surface with whatever bytes it is given and
//! asserts invariants that must hold for every input, not only that nothing panics: a
//! framed message re-frames to itself, every strict prefix of a message is `Partial`,
//! typed views agree with the checks that produced them, an SDP answer parses back
//! with one m-line per offered one, digest credentials rendered from parsed ones verify.
//! A failed assertion is a finding like a panic.
//!
//! The AFL entry points (`src/bin/{parse,sdp,digest}.rs`) only call these functions,
//! and the root crate's `tests/fuzz_corpus.rs` includes this file to replay every seed
//! and every saved finding on each `cargo test`, so the file must compile both as this
//! crate's root and as a module of that test: it names drhub by path and nothing else.

#![forbid(unsafe_code)]

pub mod digest;
pub mod parse;
pub mod sdp;

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the corpus folder under `fuzz/corpus/` and
/// `fuzz/regressions/`, the AFL binary) and its body.
pub const TARGETS: [(&str, Body); 3] = [
    ("parse", parse::run),
    ("sdp", sdp::run),
    ("digest", digest::run),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
