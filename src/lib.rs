pub mod config;
pub mod directory;
pub mod transport;
