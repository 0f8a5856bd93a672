//! Endpoints of Teams users: scripted clients, and SIP endpoints with digest
//! authentication and the registrar.

pub mod admission;
pub mod digest;
pub mod net;
pub mod registrar;
pub mod script;
pub mod service;
pub mod throttle;
