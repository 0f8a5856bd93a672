pub mod config;
pub mod transport;
