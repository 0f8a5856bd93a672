//! Emulated datacenters (DR-DC-1): every SBC listener is one, and each can be put into a
//! fault mode at run time (through the control API) so that an SBC's failover between
//! `sip`, `sip2` and `sip3` is exercised for real.
//!
//! The modes act where they would in a real outage: `refuse` closes the listening socket
//! (the kernel answers SYNs with a reset: "connection refused"); `reset` accepts the TCP
//! connection, reads the TLS ClientHello and resets; `silent` accepts and never answers
//! (no handshake on new connections, no answer to new requests on existing ones);
//! `busy` answers new INVITEs `503` with `Retry-After`. Calls already up are unaffected
//! by every mode: their in-dialog requests are served on connections already open.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;

use tokio::sync::watch;
use tracing::info;

/// What an emulated datacenter does with new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Normal,
    /// New INVITEs get `503` with this `Retry-After` (seconds) (DR-DC-1, DR-ERR-1).
    Busy { retry_after: u32 },
    /// The listening socket is closed: connection attempts are refused.
    Refuse,
    /// New connections are reset during the TLS handshake.
    Reset,
    /// New connections are accepted and never answered; new requests on open ones are
    /// dropped unanswered.
    Silent,
}

/// Retry-After of a busy datacenter when the operator names none: long enough for an
/// SBC's failover to the next datacenter to be seen, short enough for a lab.
pub const DEFAULT_BUSY_RETRY_AFTER: u32 = 30;

impl Mode {
    /// The mode's name, as the API and the log spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Busy { .. } => "busy",
            Mode::Refuse => "refuse",
            Mode::Reset => "reset",
            Mode::Silent => "silent",
        }
    }

    /// `retry_after` is used by `busy` only.
    pub fn parse(name: &str, retry_after: Option<u32>) -> Result<Mode, String> {
        let mode = match name {
            "normal" => Mode::Normal,
            "busy" => Mode::Busy {
                retry_after: retry_after.unwrap_or(DEFAULT_BUSY_RETRY_AFTER),
            },
            "refuse" => Mode::Refuse,
            "reset" => Mode::Reset,
            "silent" => Mode::Silent,
            other => {
                return Err(format!(
                    "unknown mode `{other}`; expected normal, busy, refuse, reset or silent"
                ))
            }
        };
        if retry_after.is_some() && !matches!(mode, Mode::Busy { .. }) {
            return Err("retry_after applies to mode busy only".to_owned());
        }
        Ok(mode)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Busy { retry_after } => write!(f, "busy (Retry-After {retry_after})"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Mode::parse(s, None)
    }
}

/// The datacenters of this daemon, one per SBC listener (a reload adds and removes
/// them with their listeners); their modes change at run time. Every reader sees a
/// change at once; the accept loops also wake on it ([`Datacenters::watch`]).
#[derive(Debug, Default)]
pub struct Datacenters {
    by_name: RwLock<BTreeMap<String, watch::Sender<Mode>>>,
}

/// A datacenter the daemon does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no datacenter named `{0}`")]
pub struct UnknownDatacenter(pub String);

impl Datacenters {
    /// One datacenter per name, all `normal`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Datacenters {
        let d = Datacenters::default();
        d.retain(names);
        d
    }

    /// Makes the set exactly `names`: a datacenter kept keeps its mode, a new one is
    /// `normal`.
    pub fn retain<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let names: Vec<&str> = names.into_iter().collect();
        let mut map = self.write();
        map.retain(|n, _| names.contains(&n.as_str()));
        for n in names {
            map.entry(n.to_owned())
                .or_insert_with(|| watch::Sender::new(Mode::Normal));
        }
    }

    /// The mode of the datacenter a listener is; `normal` for a listener that is none
    /// (the endpoint listener).
    pub fn mode(&self, listener: &str) -> Mode {
        self.read()
            .get(listener)
            .map(|tx| *tx.borrow())
            .unwrap_or_default()
    }

    /// Sets a datacenter's mode and logs the change; returns the mode it had.
    pub fn set(&self, name: &str, mode: Mode) -> Result<Mode, UnknownDatacenter> {
        let map = self.read();
        let tx = map
            .get(name)
            .ok_or_else(|| UnknownDatacenter(name.to_owned()))?;
        let before = tx.send_replace(mode);
        if before != mode {
            info!(datacenter = name, %mode, was = %before, "datacenter mode changed (DR-DC-1)");
        }
        Ok(before)
    }

    /// Wakes on every change of one datacenter's mode (`None` for a listener that is
    /// none).
    pub fn watch(&self, listener: &str) -> Option<watch::Receiver<Mode>> {
        self.read().get(listener).map(watch::Sender::subscribe)
    }

    /// Every datacenter and its mode, by name.
    pub fn list(&self) -> Vec<(String, Mode)> {
        self.read()
            .iter()
            .map(|(n, tx)| (n.clone(), *tx.borrow()))
            .collect()
    }

    /// Whether a datacenter of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, watch::Sender<Mode>>> {
        // Each change is one map operation; a poisoned lock is still consistent.
        self.by_name.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, watch::Sender<Mode>>> {
        self.by_name.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_dc_1_modes_parse_by_name_and_retry_after_only_for_busy() {
        assert_eq!(Mode::parse("normal", None), Ok(Mode::Normal));
        assert_eq!(
            Mode::parse("busy", None),
            Ok(Mode::Busy {
                retry_after: DEFAULT_BUSY_RETRY_AFTER
            })
        );
        assert_eq!(
            Mode::parse("busy", Some(5)),
            Ok(Mode::Busy { retry_after: 5 })
        );
        assert_eq!(Mode::parse("refuse", None), Ok(Mode::Refuse));
        assert_eq!(Mode::parse("reset", None), Ok(Mode::Reset));
        assert_eq!(Mode::parse("silent", None), Ok(Mode::Silent));
        assert!(Mode::parse("down", None)
            .unwrap_err()
            .contains("unknown mode"));
        assert!(Mode::parse("reset", Some(5)).is_err());
    }

    #[test]
    fn dr_dc_1_a_mode_change_is_seen_by_readers_and_watchers() {
        let dcs = Datacenters::new(["sip", "sip2"]);
        let mut w = dcs.watch("sip2").unwrap();
        assert_eq!(dcs.mode("sip2"), Mode::Normal);
        assert_eq!(dcs.set("sip2", Mode::Refuse), Ok(Mode::Normal));
        assert!(w.has_changed().unwrap());
        assert_eq!(*w.borrow_and_update(), Mode::Refuse);
        assert_eq!(dcs.mode("sip2"), Mode::Refuse);
        assert_eq!(dcs.mode("sip"), Mode::Normal);
        assert_eq!(dcs.mode("endpoints"), Mode::Normal);
        assert_eq!(
            dcs.set("sip9", Mode::Silent),
            Err(UnknownDatacenter("sip9".into()))
        );
        assert_eq!(
            dcs.list(),
            vec![("sip".into(), Mode::Normal), ("sip2".into(), Mode::Refuse)]
        );
    }
}
