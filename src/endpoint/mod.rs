//! Endpoints of Teams users: digest authentication and the SIP registrar.

pub mod digest;
pub mod net;
pub mod registrar;
pub mod service;
