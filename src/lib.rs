//! drhub: a lab emulator of the Microsoft Teams Direct Routing SIP proxy.
//!
//! - `config`: TOML in, validated typed [`config::Config`] out; errors name their path
//! - `directory`: tenants, domains, trunks, users, numbers (DR-TEN), pure lookups
//! - `policy`: the Direct Routing checks on SBC requests (DR-VAL), pure
//! - `diagnostics`: the catalogue of rejections: SIP status, ms-diagnostics code, Q.850
//! - `sip`: zero-copy SIP parser and the response/request builder; no I/O
//! - `transaction`: RFC 3261 §17 / RFC 6026 transactions as sans-IO machines plus one driver
//! - `transport`: every socket and direction (listeners, outbound connections, UDP), stream
//!   framing, the registry of flows, the tap
//! - `hub`: the shared state every layer reads (config, directory, health, calls, flows)
//! - `sbc`: the front door for SBC messages: validity, DR-VAL, OPTIONS, rejections
//! - `call`: the router (admission, routing to calls), dialogs, legs, the call machine
//! - `endpoint`: scripted Teams clients; SIP endpoints: REGISTER with digest (RFC 8760),
//!   throttled after repeated failures
//! - `sdp`: offer parsing and the media processor's and endpoints' answers
//! - `health`: per-SBC status from OPTIONS (DR-OPT-2)
//! - `api`: the control API: status, calls, datacenter fault modes (DR-DC), JSON over HTTP
//! - `certs`: the lab PKI behind `drhub certs`
//! - `check`: the `drhub check` summary
//! - `import`: `drhub import`, the Teams PowerShell cmdlets' JSON into a `[[tenant]]`
//! - `overload`: when a delay stands long enough to shed new calls (DR-ERR-1)
//! - `logging`, `systemd`: process plumbing
//!
//! [`Daemon::bind`] then [`Daemon::serve`] is the whole daemon; `main.rs` adds the CLI.

pub mod api;
pub mod call;
pub mod certs;
pub mod check;
pub mod config;
pub mod diagnostics;
pub mod directory;
pub mod endpoint;
pub mod health;
pub mod hub;
pub mod import;
pub mod logging;
pub mod observe;
pub mod overload;
pub mod policy;
pub mod reload;
pub mod sbc;
pub mod sdp;
pub mod sip;
pub mod systemd;
pub mod transaction;
pub mod transport;

mod daemon;

pub use daemon::{Daemon, StartError};
