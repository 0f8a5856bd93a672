//! What drhub shows beyond the real service (issue 10): the protocol trace, metrics, the
//! conformance report, and the status page with its ladder diagrams.

pub mod conformance;
pub mod ladder;
pub mod metrics;
pub mod refusals;
pub mod status_page;
pub mod trace;
