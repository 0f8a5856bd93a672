//! What the proxy knows of each SBC from its OPTIONS (DR-OPT-2): when it last sent one,
//! the methods it advertised, its certificate's names and expiry, and the connection
//! it came on. Later layers read this: transfers pick REFER or not from `allow`
//! (DR-XFER-1), routing demotes SBCs that went quiet (DR-OPT-3).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::time::Instant;

use crate::transport::tls::PeerIdentity;
use crate::transport::FlowId;

/// The latest state of one SBC, keyed by its FQDN.
#[derive(Debug, Clone)]
pub struct SbcStatus {
    pub fqdn: String,
    pub tenant: String,
    /// Monotonic time of the last OPTIONS, for activity rules.
    pub last_options: Instant,
    /// Wall-clock time of the last OPTIONS, for display.
    pub last_options_at: SystemTime,
    pub options_received: u64,
    /// Methods from the SBC's `Allow` header, upper-case, in its order.
    pub allow: Vec<String>,
    /// The certificate the SBC presented; `None` on the plain-TCP lab listener.
    pub certificate: Option<Arc<PeerIdentity>>,
    pub flow: FlowId,
    pub peer: SocketAddr,
    pub listener: String,
}

impl SbcStatus {
    /// Whether the SBC listed a method in its Allow header (DR-XFER-1 asks for REFER).
    pub fn allows(&self, method: &str) -> bool {
        self.allow.iter().any(|m| m.eq_ignore_ascii_case(method))
    }
}

/// One OPTIONS observation, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct OptionsSeen<'a> {
    pub fqdn: &'a str,
    pub tenant: &'a str,
    pub allow: Vec<String>,
    pub certificate: Option<Arc<PeerIdentity>>,
    pub flow: FlowId,
    pub peer: SocketAddr,
    pub listener: &'a str,
}

/// Per-SBC records. Written once per OPTIONS, read by status and routing; the lock is
/// never held across an await.
#[derive(Debug, Default)]
pub struct Health {
    sbcs: Mutex<HashMap<String, SbcStatus>>,
}

impl Health {
    /// Records an accepted OPTIONS (DR-OPT-2).
    pub fn options_received(&self, seen: OptionsSeen<'_>) {
        let mut map = self.lock();
        let count = map.get(seen.fqdn).map_or(0, |s| s.options_received);
        map.insert(
            seen.fqdn.to_owned(),
            SbcStatus {
                fqdn: seen.fqdn.to_owned(),
                tenant: seen.tenant.to_owned(),
                last_options: Instant::now(),
                last_options_at: SystemTime::now(),
                options_received: count + 1,
                allow: seen.allow,
                certificate: seen.certificate,
                flow: seen.flow,
                peer: seen.peer,
                listener: seen.listener.to_owned(),
            },
        );
    }

    pub fn get(&self, fqdn: &str) -> Option<SbcStatus> {
        self.lock().get(&fqdn.to_ascii_lowercase()).cloned()
    }

    /// Every SBC heard from, sorted by FQDN.
    pub fn snapshot(&self) -> Vec<SbcStatus> {
        let mut v: Vec<SbcStatus> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SbcStatus>> {
        // Inserts replace whole records, so a poisoned map is still consistent.
        self.sbcs.lock().unwrap_or_else(|p| p.into_inner())
    }
}
