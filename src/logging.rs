//! Logs go to stderr through tracing (journald picks them up under systemd). The level
//! comes from the config's `[log] level` unless `RUST_LOG` is set.

use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Installs the global subscriber; an invalid filter is a configuration error.
pub fn init(settings: &LogSettings) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG `{v}`: {e}"))?
        }
        _ => EnvFilter::try_new(&settings.level)
            .map_err(|e| format!("log.level: `{}` is not a valid filter: {e}", settings.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if settings.json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
