//! Reload without dropping calls (issue 10): `SIGHUP`, `drhub reload` or
//! `POST /api/reload` re-read the config file the daemon started from. On any error
//! nothing changes and the errors are answered (and logged) with their paths; on success
//! new calls, OPTIONS and API requests use the new config while the calls up keep the
//! settings and routing decisions they took at their start.
//!
//! What a reload applies: the tenants (users, numbers, trunks, voice routing, dial
//! plans, forwarding, endpoints and their passwords), `[calls]`, and the SBC listeners
//! (added, removed, or changed in place: a listener keeping its address and transport
//! takes its new certificate, CA and FQDN for new connections, and its connections
//! stay; every listener's certificate files are read again, so a certificate renewed
//! at the same path applies too). The rest (`[proxy]`, `[log]`, `[limits]`, `[timers]`, `[media]`, `[certs]`,
//! `[endpoints]`, `[health]`, `[api]`, `[trace]`) is read at start only: a change there
//! is reported as needing a restart, and the reload goes on without it.
//!
//! The daemon does the work ([`crate::Daemon`] owns the sockets); this module says what
//! changed and carries requests to it.

use std::fmt::Debug;

use tokio::sync::{mpsc, oneshot};

use crate::config::Config;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What the new config changed that is now in force, one line each
    /// (`listener "sip2" added on 127.0.0.1:5063`, `tenants`).
    pub applied: Vec<String>,
    /// Sections that changed but apply only at the next restart.
    pub restart_needed: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the daemon runs on the built-in lab config: there is no file to re-read")]
    NoFile,
    /// The config's own errors, `path: what is wrong` each.
    #[error("{source_name}: {} problem(s); nothing changed", issues.len())]
    Config {
        source_name: String,
        issues: Vec<String>,
    },
    /// A new listener's certificate or socket (the message names the listener).
    #[error("{0}; nothing changed")]
    Listener(String),
    #[error("the daemon is shutting down")]
    Stopping,
}

impl Error {
    /// Every line to show or log: the issues of a bad config, else the one message.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Error::Config { issues, .. } => issues.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// A reload request to the daemon, with where to send its answer.
pub type Request = oneshot::Sender<Result<Report, Error>>;

/// How the API and the signal handler reach the daemon's reload.
#[derive(Debug, Clone)]
pub struct Handle(mpsc::Sender<Request>);

impl Handle {
    pub fn new() -> (Handle, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(4);
        (Handle(tx), rx)
    }

    /// Asks the daemon to reload and waits for the outcome. Reloads run one at a time.
    pub async fn reload(&self) -> Result<Report, Error> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.map_err(|_| Error::Stopping)?;
        rx.await.map_err(|_| Error::Stopping)?
    }
}

/// Whether two pieces of config differ. The config types are plain data with Debug;
/// some hold compiled patterns that have no equality, so their Debug text is what is
/// compared (once per reload, not on any hot path).
pub fn differs(a: &impl Debug, b: &impl Debug) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// The sections of `new` that differ from `old` and that only a restart applies.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut check = |name: &str, d: bool| {
        if d {
            changed.push(format!("[{name}]"));
        }
    };
    check("proxy", differs(&old.proxy, &new.proxy));
    check("log", differs(&old.log, &new.log));
    check("limits", differs(&old.limits, &new.limits));
    check("timers", differs(&old.timers, &new.timers));
    check("media", differs(&old.media, &new.media));
    check("certs", differs(&old.certs, &new.certs));
    check("endpoints", differs(&old.endpoints, &new.endpoints));
    check("health", differs(&old.health, &new.health));
    check("api", differs(&old.api, &new.api));
    check("trace", differs(&old.trace, &new.trace));
    changed
}

/// The sections a reload applies that changed (listeners are reported one by one by
/// the daemon).
pub fn applied_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut applied = Vec::new();
    if differs(&old.tenants, &new.tenants) {
        applied.push("tenants (users, numbers, trunks, voice routing)".to_owned());
    }
    if differs(&old.calls, &new.calls) {
        applied.push("[calls]".to_owned());
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(edit: impl FnOnce(String) -> String) -> Config {
        let text = edit(crate::config::BUILTIN_LAB_CONFIG.to_owned());
        Config::parse(&text, "test").expect("a valid config")
    }

    #[test]
    fn what_changed_is_sorted_into_applied_and_restart_only() {
        let old = lab(|t| t);
        assert_eq!(applied_changes(&old, &lab(|t| t)), Vec::<String>::new());
        assert!(restart_only_changes(&old, &lab(|t| t)).is_empty());

        let new = lab(|t| {
            t.replacen("ring_timeout_seconds = 60", "ring_timeout_seconds = 45", 1)
                .replacen("port_min = 49152", "port_min = 40000", 1)
        });
        assert_eq!(applied_changes(&old, &new), ["[calls]"]);
        assert_eq!(restart_only_changes(&old, &new), ["[media]"]);

        let new = lab(|t| t.replacen("display_name = \"", "display_name = \"New ", 1));
        assert_eq!(
            applied_changes(&old, &new),
            ["tenants (users, numbers, trunks, voice routing)"]
        );
    }
}
