//! The conformance report (DR-CONF): for every SBC, each requirement its traffic broke
//! (drhub refused it) or nearly broke (drhub let it through, the real service may not
//! forever, or the SBC's state says it is heading there), with a count, the last
//! Call-ID, the last time and the requirement's ID. Rejections are recorded where they
//! are sent; the SBC's OPTIONS and certificate are read from its health record when the
//! report is asked for (`GET /api/report`, `drhub report`). What an SBC does after a
//! refusal (a `603` tried again, a busy datacenter tried again) is found with the recent
//! refusals of [`crate::observe::refusals`], which this store keeps.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::diagnostics::{Diagnostic, Rejection};
use crate::observe::refusals::{Refusals, Refused};
use crate::sip::Message;
use crate::transport::FlowInfo;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// drhub refused the SBC's message, as the real service does.
    Broke,
    /// Accepted, but against the spec's advice, or close to a limit.
    Nearly,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Broke => "broke",
            Severity::Nearly => "nearly",
        }
    }
}

/// One requirement an SBC broke or nearly broke, with what was seen last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub requirement: &'static str,
    pub severity: Severity,
    /// What was wrong, in words (a diagnostic's text, a warning).
    pub what: String,
    pub count: u64,
    pub last_call_id: String,
    pub last_at: SystemTime,
    /// The last occurrence's details (the rejection's facts).
    pub detail: String,
}

/// How many distinct findings one SBC keeps (a flood of odd messages cannot grow it).
const MAX_PER_SBC: usize = 256;

/// The findings per SBC.
#[derive(Debug, Default)]
pub struct Conformance {
    by_sbc: Mutex<HashMap<String, Vec<Finding>>>,
    /// The refusals whose aftermath is a finding (DR-ERR-2, DR-DC-2).
    refusals: Refusals,
}

impl Conformance {
    /// Counts one occurrence.
    pub fn record(
        &self,
        sbc: &str,
        requirement: &'static str,
        severity: Severity,
        what: &str,
        call_id: &str,
        detail: String,
    ) {
        let mut map = self.by_sbc.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(sbc.to_ascii_lowercase()).or_default();
        let now = SystemTime::now();
        let full = list.len() >= MAX_PER_SBC;
        match list
            .iter_mut()
            .find(|f| f.requirement == requirement && f.what == what)
        {
            Some(f) => {
                f.count += 1;
                f.last_call_id = call_id.to_owned();
                f.last_at = now;
                f.detail = detail;
                f.severity = f.severity.min(severity);
            }
            None if !full => list.push(Finding {
                requirement,
                severity,
                what: what.to_owned(),
                count: 1,
                last_call_id: call_id.to_owned(),
                last_at: now,
                detail,
            }),
            None => {}
        }
    }

    /// A rejection drhub sent to an SBC on `flow`, when it says something about the SBC
    /// (a malformed or refused message; not drhub's own overload or a number the
    /// tenant lacks).
    pub fn rejected(&self, flow: &FlowInfo, call_id: &str, r: &Rejection) {
        if flow.listener == crate::transport::ENDPOINT_LISTENER || !sbc_fault(r) {
            return;
        }
        let e = r.entry();
        // A number without `+` is refused as any unknown number, but it is the SBC's.
        let what = match r.facts.iter().find(|(k, _)| *k == "detail") {
            Some((_, d)) if r.diagnostic == Diagnostic::NumberNotFound => d.as_str(),
            _ => e.text,
        };
        self.record(
            &sbc_of(flow),
            e.requirement,
            Severity::Broke,
            what,
            call_id,
            r.facts_line(),
        );
    }

    /// drhub refused `invite` from `sbc` (named as [`sbc_of`] names it) with a `603` or a
    /// busy datacenter's `503`: remembered, for the SBC's next INVITE of the same call.
    pub fn refused(&self, sbc: &str, invite: &Message<'_>, how: Refused) {
        self.refusals.remember(sbc, invite, how, Instant::now());
    }

    /// A new INVITE from the SBC on `flow`, before anything answers it: a finding when it
    /// tries again a call drhub declined (DR-ERR-2), or the busy datacenter that told it
    /// to go elsewhere (DR-DC-2).
    pub fn new_invite(&self, flow: &FlowInfo, invite: &Message<'_>) {
        if self.refusals.is_empty() {
            return;
        }
        let sbc = sbc_of(flow);
        if let Some(r) = self
            .refusals
            .retry(&sbc, invite, &flow.listener, Instant::now())
        {
            let call_id = invite.call_id().unwrap_or("");
            self.record(
                &sbc,
                r.requirement,
                Severity::Broke,
                r.what,
                call_id,
                r.detail,
            );
        }
    }

    /// Every SBC's findings, worst first, with what its health record says now.
    pub fn snapshot(&self) -> HashMap<String, Vec<Finding>> {
        self.by_sbc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The name an SBC goes by in the report: its certificate's first DNS name (not a
/// wildcard), else the certificate's Common Name, else (the plain-TCP lab listener) its
/// IP address.
pub fn sbc_of(flow: &FlowInfo) -> String {
    match &flow.identity {
        Some(id) => id
            .dns_names
            .iter()
            .find(|n| !n.starts_with('*'))
            .or(id.subject_cn.as_ref())
            .or(id.dns_names.first())
            .cloned()
            .unwrap_or_else(|| flow.peer.ip().to_string()),
        None => flow.peer.ip().to_string(),
    }
}

/// Whether a rejection is the SBC's doing (DR-CONF lists what the report keeps): a
/// malformed or refused message, a number without `+`; not drhub's overload, nor a
/// number the tenant does not have.
fn sbc_fault(r: &Rejection) -> bool {
    use Diagnostic::*;
    let without_plus = r
        .facts
        .iter()
        .any(|(k, v)| *k == "detail" && v.contains("without a leading +"));
    matches!(
        r.diagnostic,
        Malformed(_)
            | TooLarge(_)
            | VersionNotSupported
            | ContactMissing
            | ContactIsIp
            | ContactCertMismatch
            | RecordRouteIsIp
            | RecordRouteCertMismatch
            | SipsUri
            | UnsupportedScheme
            | Replaces
            | EmptyUserPart
            | BadExtension
            | InsecureNotAllowed
            | MethodNotAllowed
            | DelayedOffer
            | ZeroAddressHold
            | TransferMismatch
            | CSeqOutOfOrder
            | SbcDidNotAck
            | SessionIntervalTooSmall
    ) || (r.diagnostic == NumberNotFound && without_plus)
}

/// The report as JSON: per SBC (or the one asked for), its findings with those the
/// health record gives now (no OPTIONS for 5 minutes, DR-OPT-3; a certificate that
/// expires within 30 days).
pub fn report(hub: &crate::hub::Hub, only: Option<&str>) -> Value {
    let mut all = hub.conformance.snapshot();
    let now = SystemTime::now();
    for r in hub.health.snapshot() {
        let sbc = r.fqdn.to_ascii_lowercase();
        let heard = now
            .duration_since(r.last_options_at)
            .unwrap_or(Duration::ZERO);
        let list = all.entry(sbc.clone()).or_default();
        if heard > Duration::from_secs(300) {
            list.push(Finding {
                requirement: "DR-OPT-3",
                severity: Severity::Nearly,
                what: "No OPTIONS from the SBC for 5 minutes: inactive, no calls routed to it"
                    .into(),
                count: 1,
                last_call_id: String::new(),
                last_at: r.last_options_at,
                detail: format!("last OPTIONS {} s ago", heard.as_secs()),
            });
        }
        if let Some(cert) = &r.certificate {
            let left = cert.not_after - time::OffsetDateTime::now_utc();
            if left < time::Duration::days(30) {
                list.push(Finding {
                    requirement: "DR-TLS-1",
                    severity: if left.is_negative() {
                        Severity::Broke
                    } else {
                        Severity::Nearly
                    },
                    what: "The SBC's certificate expires within 30 days".into(),
                    count: 1,
                    last_call_id: String::new(),
                    last_at: now,
                    detail: format!("not after {}", cert.not_after),
                });
            }
        }
    }
    // SBCs of the config that never spoke are listed too, with nothing found.
    for t in &hub.config().tenants {
        for trunk in &t.trunks {
            all.entry(trunk.fqdn.to_string().to_ascii_lowercase())
                .or_default();
        }
    }
    let mut names: Vec<&String> = all
        .keys()
        .filter(|n| only.is_none_or(|o| o.eq_ignore_ascii_case(n)))
        .collect();
    names.sort();
    let sbcs: Vec<Value> = names
        .into_iter()
        .map(|n| {
            let mut list = all[n].clone();
            list.sort_by(|a, b| {
                (a.severity, std::cmp::Reverse(a.count), a.requirement)
                    .cmp(&(b.severity, std::cmp::Reverse(b.count), b.requirement))
            });
            json!({
                "sbc": n,
                "findings": list.iter().map(|f| json!({
                    "requirement": f.requirement,
                    "severity": f.severity.as_str(),
                    "what": f.what,
                    "count": f.count,
                    "last_call_id": f.last_call_id,
                    "last_at": f.last_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                    "detail": f.detail,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "sbcs": sbcs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Occurrences of the same fault add up (count, last Call-ID); another fault is a
    /// finding of its own; a broke-and-nearly finding stays broke.
    #[test]
    fn dr_conf_findings_count_per_sbc_and_requirement() {
        let c = Conformance::default();
        c.record(
            "SBC1.adatum.biz",
            "DR-VAL-2",
            Severity::Broke,
            "IP in Contact",
            "a",
            "x".into(),
        );
        c.record(
            "sbc1.adatum.biz",
            "DR-VAL-2",
            Severity::Broke,
            "IP in Contact",
            "b",
            "y".into(),
        );
        c.record(
            "sbc1.adatum.biz",
            "DR-TEN-3",
            Severity::Nearly,
            "no user=phone",
            "c",
            String::new(),
        );
        c.record(
            "sbc1.adatum.biz",
            "DR-TEN-3",
            Severity::Broke,
            "no user=phone",
            "d",
            String::new(),
        );
        let s = c.snapshot();
        let list = &s["sbc1.adatum.biz"];
        assert_eq!(list.len(), 2);
        assert_eq!(
            (
                list[0].count,
                list[0].last_call_id.as_str(),
                list[0].detail.as_str()
            ),
            (2, "b", "y")
        );
        assert_eq!(list[1].severity, Severity::Broke);
        for i in 0..(MAX_PER_SBC + 10) {
            c.record(
                "flood",
                "DR-ERR-3",
                Severity::Broke,
                &format!("fault {i}"),
                "",
                String::new(),
            );
        }
        assert_eq!(c.snapshot()["flood"].len(), MAX_PER_SBC);
    }

    #[test]
    fn what_counts_as_the_sbcs_fault() {
        let r = |d| Rejection::new(d);
        assert!(sbc_fault(&r(Diagnostic::ContactIsIp)));
        assert!(sbc_fault(&r(Diagnostic::Replaces)));
        assert!(sbc_fault(&r(Diagnostic::DelayedOffer)));
        assert!(!sbc_fault(&r(Diagnostic::Overloaded)));
        assert!(!sbc_fault(&r(Diagnostic::RingTimeout)));
        assert!(!sbc_fault(&r(Diagnostic::CallerBlocked)));
        assert!(!sbc_fault(&r(Diagnostic::NumberNotFound)));
        let no_plus = r(Diagnostic::NumberNotFound).with(
            "detail",
            "phone number without a leading + (E.164 required)",
        );
        assert!(sbc_fault(&no_plus));
    }
}
