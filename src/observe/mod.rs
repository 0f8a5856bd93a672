//! What drhub shows beyond the real service: metrics now; the protocol trace and the
//! conformance report to come (issue 10).

pub mod conformance;
pub mod metrics;
pub mod trace;
