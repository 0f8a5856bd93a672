//! The catalogue of reasons drhub refuses or fails something, and how each is told.
//!
//! Every rejection is one [`Diagnostic`]: it fixes the SIP status, the Microsoft
//! response code (`5XYZZZ`, spec DR-VAL-8), the Q.850 cause for the `Reason` header and
//! the requirement it enforces. [`Rejection`] adds what was observed (the FQDN that
//! failed, the certificate's names ...) so that the SBC engineer reads, in the
//! response and in the log, the same precise account of what to fix.

use std::fmt::Write as _;

use bytes::BytesMut;
use tracing::warn;

use crate::sip::build::{ResponseWriter, Style};
use crate::sip::{salvage, HeaderName, Invalid, Message, Method, ParseError, Status, Unanswered};

/// One entry of the catalogue. The README's diagnostic-code table lists them all (a
/// test keeps the two in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnostic {
    /// Malformed or unsupported SIP (DR-ERR-3); carries the specific fault.
    Malformed(&'static str),
    /// A stream message larger than the configured limit (DR-TLS-2).
    TooLarge(&'static str),
    /// SIP version other than 2.0.
    VersionNotSupported,
    /// DR-VAL-1: Contact missing from OPTIONS or INVITE.
    ContactMissing,
    /// DR-VAL-2: the first Contact's host is an IP address.
    ContactIsIp,
    /// DR-VAL-3: the Contact FQDN is not a name of the client certificate.
    ContactCertMismatch,
    /// DR-VAL-4: the top Record-Route carries an IP address.
    RecordRouteIsIp,
    /// DR-VAL-4: the top Record-Route FQDN is not a name of the client certificate.
    RecordRouteCertMismatch,
    /// DR-VAL-5: a `sips:` URI.
    SipsUri,
    /// A URI scheme drhub cannot route (RFC 3261 §8.2.2.1).
    UnsupportedScheme,
    /// DR-VAL-6: a Replaces header.
    Replaces,
    /// DR-VAL-7: `@` with an empty user part.
    EmptyUserPart,
    /// RFC 3261 §8.2.2.3: a Require option drhub does not support.
    BadExtension,
    /// DR-TEN-2 / DR-TEN-6: no tenant or no trunk for the SBC FQDN.
    NoTrunk,
    /// DR-TLS-5: plain TCP from a trunk without `allow_insecure`.
    InsecureNotAllowed,
    /// A method the proxy does not accept from an SBC outside a dialog.
    MethodNotAllowed,
    /// An in-dialog request or CANCEL that matches nothing.
    NoSuchDialog,
    /// DR-ERR-1: over capacity or draining.
    Overloaded,
    /// DR-TEN-3/4: no user with this number (or address) in the tenant.
    NumberNotFound,
    /// DR-TEN-5: the caller matches a blocked-caller pattern.
    CallerBlocked,
    /// DR-FORK-6: INVITE without an SDP offer.
    DelayedOffer,
    /// The offer cannot be parsed or has no codec drhub answers.
    NoAcceptableMedia,
    /// DR-HOLD-1: a re-offer holding with `c=0.0.0.0` (RFC 2543) instead of `a=inactive`.
    ZeroAddressHold,
    /// DR-FORK-7: the user has no endpoint to ring.
    NoEndpoints,
    /// DR-FORK-7: nobody answered within `ring_timeout`.
    RingTimeout,
    /// DR-FORK-7: every endpoint declined; the status is the forks' best (§16.7).
    AllForksFailed,
    /// DR-FWD-5: a forward whose target the incoming History-Info already names.
    ForwardLoop,
    /// DR-XFER-4: the SBC's INVITE back for a transfer does not carry what the REFER
    /// said (Referred-By altered, another Request-URI, another tenant).
    TransferMismatch,
    /// The SBC never ACKed the 200 OK (the call is ended with BYE).
    SbcDidNotAck,
    /// A capability of a later milestone (outbound calls from endpoints).
    NotImplemented,
    /// DR-OUT-1: no voice route of the caller's policy matches the dialled number (or
    /// every gateway of the matching routes is disabled).
    NoRoute,
    /// DR-OUT-2: the SBC gave no final response within `failover_time_seconds`.
    FailoverTimer,
    /// DR-OUT-3: the SBC answered an outbound INVITE with 503 (it says it is overloaded).
    SbcOverloaded,
    /// DR-OUT-2: the SBC refused an outbound call with a final failure that is not
    /// failed over; its status is passed on, the code is `560` and the status.
    SbcDeclined,
    /// DR-NH-5: no connection to the SBC could be had: no address, no certificate.
    NotConnected,
    /// DR-NH-5: connecting to the SBC was refused or timed out.
    ConnectFailed,
    /// DR-NH-5: the TLS handshake with the SBC failed (reset, alert, timeout).
    TlsFailed,
    /// DR-NH-5: the SBC's certificate failed verification (untrusted, wrong name,
    /// expired).
    TlsCertificate,
    /// DR-ST-3: the session interval is below the proxy's Min-SE (RFC 4028 §9).
    SessionIntervalTooSmall,
    /// DR-ST-2: nobody refreshed the session before it expired (RFC 4028 §10).
    SessionExpired,
    /// RFC 3261 §12.2.2: an in-dialog request whose CSeq is below the last one.
    CSeqOutOfOrder,
    /// The SBC's connection went away without a BYE and the dialog did not come back
    /// within `calls.orphan_timeout_seconds`.
    SbcGone,
}

/// Static facts of a catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub status: u16,
    /// The SIP reason phrase of the response.
    pub phrase: &'static str,
    /// Microsoft-style response code for `ms-diagnostics`.
    pub code: u32,
    /// The diagnostic text (the `reason=` of ms-diagnostics and the log line).
    pub text: &'static str,
    /// The requirement of the spec this enforces.
    pub requirement: &'static str,
    /// Q.850 cause for the `Reason` header.
    pub q850: u8,
    /// True when the code is drhub's own choice, not one Microsoft publishes.
    pub emulator_choice: bool,
}

impl Diagnostic {
    /// Every catalogue entry, one per variant, for the README and for tests.
    pub const ALL: &'static [Diagnostic] = &[
        Diagnostic::Malformed("Bad Request"),
        Diagnostic::TooLarge("Request Entity Too Large"),
        Diagnostic::VersionNotSupported,
        Diagnostic::ContactMissing,
        Diagnostic::ContactIsIp,
        Diagnostic::ContactCertMismatch,
        Diagnostic::RecordRouteIsIp,
        Diagnostic::RecordRouteCertMismatch,
        Diagnostic::SipsUri,
        Diagnostic::UnsupportedScheme,
        Diagnostic::Replaces,
        Diagnostic::EmptyUserPart,
        Diagnostic::BadExtension,
        Diagnostic::NoTrunk,
        Diagnostic::InsecureNotAllowed,
        Diagnostic::MethodNotAllowed,
        Diagnostic::NoSuchDialog,
        Diagnostic::Overloaded,
        Diagnostic::NumberNotFound,
        Diagnostic::CallerBlocked,
        Diagnostic::DelayedOffer,
        Diagnostic::NoAcceptableMedia,
        Diagnostic::ZeroAddressHold,
        Diagnostic::NoEndpoints,
        Diagnostic::RingTimeout,
        Diagnostic::AllForksFailed,
        Diagnostic::ForwardLoop,
        Diagnostic::TransferMismatch,
        Diagnostic::SbcDidNotAck,
        Diagnostic::NotImplemented,
        Diagnostic::NoRoute,
        Diagnostic::FailoverTimer,
        Diagnostic::SbcOverloaded,
        Diagnostic::SbcDeclined,
        Diagnostic::NotConnected,
        Diagnostic::ConnectFailed,
        Diagnostic::TlsFailed,
        Diagnostic::TlsCertificate,
        Diagnostic::SessionIntervalTooSmall,
        Diagnostic::SessionExpired,
        Diagnostic::CSeqOutOfOrder,
        Diagnostic::SbcGone,
    ];

    /// A message that fails the RFC 3261 checks (DR-ERR-3): 505 for a version other than
    /// 2.0, else 400 naming the fault.
    pub fn invalid(invalid: Invalid) -> Diagnostic {
        match invalid.status {
            505 => Diagnostic::VersionNotSupported,
            _ => Diagnostic::Malformed(invalid.reason),
        }
    }

    /// A message the parser rejected (DR-ERR-3): 413 for a body over the limit
    /// (DR-TLS-2), 505 for a version other than 2.0, else 400 naming the fault.
    pub fn unparsed(error: &ParseError) -> Diagnostic {
        match error.status() {
            413 => Diagnostic::TooLarge(error.reason()),
            505 => Diagnostic::VersionNotSupported,
            _ => Diagnostic::Malformed(error.reason()),
        }
    }

    pub fn entry(self) -> Entry {
        use Diagnostic::*;
        let e = |status, phrase, code, text, requirement, emulator_choice| Entry {
            status,
            phrase,
            code,
            text,
            requirement,
            q850: q850_for(status),
            emulator_choice,
        };
        match self {
            Malformed(fault) => e(
                400,
                fault,
                540400,
                "Malformed or unsupported SIP from the SBC",
                "DR-ERR-3",
                false,
            ),
            TooLarge(fault) => e(
                413,
                fault,
                540413,
                "Message larger than the configured limit",
                "DR-TLS-2",
                true,
            ),
            VersionNotSupported => e(
                505,
                "Version Not Supported",
                540505,
                "Only SIP/2.0 is supported",
                "DR-ERR-3",
                true,
            ),
            ContactMissing => e(
                400,
                "Contact Header Missing",
                540400,
                "Contact header is mandatory",
                "DR-VAL-1",
                false,
            ),
            ContactIsIp => e(
                403,
                "Forbidden",
                540431,
                "Contact host is an IP address, Direct Routing needs the SBC FQDN",
                "DR-VAL-2",
                true,
            ),
            ContactCertMismatch => e(
                403,
                "Forbidden",
                540403,
                "Contact FQDN does not match the TLS certificate (CN or SAN)",
                "DR-VAL-3",
                true,
            ),
            RecordRouteIsIp => e(
                403,
                "Forbidden",
                540432,
                "Record-Route host is an IP address, Direct Routing needs the SBC FQDN",
                "DR-VAL-4",
                true,
            ),
            RecordRouteCertMismatch => e(
                403,
                "Forbidden",
                540433,
                "Record-Route FQDN does not match the TLS certificate (CN or SAN)",
                "DR-VAL-4",
                true,
            ),
            SipsUri => e(
                416,
                "Unsupported URI Scheme",
                540416,
                "SIPS URIs are not supported by Direct Routing",
                "DR-VAL-5",
                true,
            ),
            UnsupportedScheme => e(
                416,
                "Unsupported URI Scheme",
                540417,
                "URI scheme not supported, use sip:",
                "DR-VAL-5",
                true,
            ),
            Replaces => e(
                403,
                "Forbidden",
                540434,
                "Replaces header is not supported by Direct Routing",
                "DR-VAL-6",
                true,
            ),
            EmptyUserPart => e(
                400,
                "Empty User Part In URI",
                540400,
                "A URI with @ must have a non-empty user part (RFC 3261 section 19.1.1)",
                "DR-VAL-7",
                false,
            ),
            BadExtension => e(
                420,
                "Bad Extension",
                540420,
                "Required SIP extension is not supported",
                "DR-ERR-3",
                true,
            ),
            NoTrunk => e(
                403,
                "Forbidden",
                510532,
                "No trunk config was found",
                "DR-TEN-2",
                false,
            ),
            InsecureNotAllowed => e(
                403,
                "Forbidden",
                540435,
                "Plain TCP is allowed only for trunks with allow_insecure = true",
                "DR-TLS-5",
                true,
            ),
            MethodNotAllowed => e(
                405,
                "Method Not Allowed",
                540405,
                "Method not accepted from an SBC outside a dialog",
                "DR-ERR-3",
                true,
            ),
            NoSuchDialog => e(
                481,
                "Call/Transaction Does Not Exist",
                540481,
                "No dialog or transaction matches the request",
                "DR-ERR-3",
                true,
            ),
            Overloaded => e(
                503,
                "Service Unavailable",
                540503,
                "Proxy is busy, retry later",
                "DR-ERR-1",
                true,
            ),
            NumberNotFound => e(
                404,
                "Not Found",
                511404,
                "The number was not found in the tenant",
                "DR-TEN-3",
                false,
            ),
            CallerBlocked => e(
                403,
                "Forbidden",
                510534,
                "The caller number is blocked",
                "DR-TEN-5",
                false,
            ),
            DelayedOffer => e(
                415,
                "Unsupported Media Type",
                540415,
                "INVITE without an SDP offer (delayed offer) is not supported",
                "DR-FORK-6",
                false,
            ),
            NoAcceptableMedia => e(
                488,
                "Not Acceptable Here",
                531000,
                "No acceptable media in the offer",
                "DR-FORK-6",
                false,
            ),
            ZeroAddressHold => e(
                488,
                "Not Acceptable Here",
                531052,
                "Hold with c=0.0.0.0 is not supported, hold with a=inactive",
                "DR-HOLD-1",
                false,
            ),
            NoEndpoints => {
                let mut x = e(
                    480,
                    "Temporarily Unavailable",
                    10037,
                    "The callee has no endpoints",
                    "DR-FORK-7",
                    false,
                );
                x.q850 = 31;
                x
            }
            RingTimeout => e(
                480,
                "Temporarily Unavailable",
                540480,
                "No answer within the ring timeout",
                "DR-FORK-7",
                true,
            ),
            AllForksFailed => e(
                0,
                "Call Failed",
                540100,
                "Every endpoint of the callee declined the call",
                "DR-FORK-7",
                true,
            ),
            ForwardLoop => e(
                500,
                "Server Internal Error",
                510482,
                "Forwarding loop detected: the target is already in the History-Info",
                "DR-FWD-5",
                false,
            ),
            TransferMismatch => e(
                403,
                "Forbidden",
                540436,
                "The INVITE does not match the transfer's REFER: copy Refer-To and Referred-By unchanged",
                "DR-XFER-4",
                true,
            ),
            SbcDidNotAck => e(
                408,
                "Request Timeout",
                1106,
                "The SBC did not ACK the 200 OK",
                "DR-FORK-8",
                false,
            ),
            NotImplemented => e(
                501,
                "Not Implemented",
                540501,
                "Not implemented in this drhub version",
                "DR-OUT-1",
                true,
            ),
            NoRoute => e(
                403,
                "Forbidden",
                510559,
                "Get Outbound routing - No viable path: no voice route matches the number",
                "DR-OUT-1",
                false,
            ),
            FailoverTimer => e(
                408,
                "Request Timeout",
                500001,
                "Outbound: the SBC gave no final response within the failover time",
                "DR-OUT-2",
                false,
            ),
            SbcOverloaded => e(
                503,
                "Service Unavailable",
                560503,
                "The SBC answered 503: it is overloaded or out of service",
                "DR-OUT-3",
                false,
            ),
            SbcDeclined => e(
                0,
                "Call Failed",
                560000,
                "The SBC refused the call (560 and its status: 560486 for its 486)",
                "DR-OUT-2",
                false,
            ),
            NotConnected => e(
                504,
                "Server Time-out",
                549002,
                "Unable to deliver the request: TLS transport is not connected",
                "DR-NH-5",
                false,
            ),
            ConnectFailed => e(
                504,
                "Server Time-out",
                569002,
                "Unable to deliver the request: the connection to the SBC was refused or timed out",
                "DR-NH-5",
                false,
            ),
            TlsFailed => e(
                504,
                "Server Time-out",
                569003,
                "Unable to deliver the request: the TLS negotiation with the SBC failed",
                "DR-NH-5",
                false,
            ),
            TlsCertificate => e(
                504,
                "Server Time-out",
                569008,
                "Unable to deliver the request: the SBC certificate is invalid (untrusted root, wrong name or expired)",
                "DR-NH-5",
                false,
            ),
            SessionIntervalTooSmall => e(
                422,
                "Session Interval Too Small",
                540422,
                "Session-Expires is below the proxy's Min-SE",
                "DR-ST-3",
                false,
            ),
            SessionExpired => e(
                408,
                "Request Timeout",
                540408,
                "The session expired without a refresh",
                "DR-ST-2",
                true,
            ),
            CSeqOutOfOrder => e(
                500,
                "Server Internal Error",
                540500,
                "CSeq lower than the last request of the dialog (RFC 3261 section 12.2.2)",
                "DR-NH-4",
                true,
            ),
            SbcGone => e(
                408,
                "Request Timeout",
                540409,
                "The SBC connection closed without BYE and the dialog did not recover",
                "DR-NH-5",
                true,
            ),
        }
    }
}

/// The Q.850 cause a SIP status maps to (RFC 3398 §8.2.6.1 and common practice for
/// the codes it leaves out).
pub fn q850_for(status: u16) -> u8 {
    match status {
        400 | 481 | 500 | 503 => 41,
        401 | 402 | 403 | 407 | 603 => 21,
        404 | 485 | 604 => 1,
        405 => 63,
        406 | 415 | 501 => 79,
        408 | 504 => 102,
        410 => 22,
        480 => 18,
        482 | 483 => 25,
        484 => 28,
        486 | 600 => 17,
        487 => 16,
        502 => 38,
        606 => 58,
        _ => 127,
    }
}

/// A catalogue entry plus what was observed; rendered into the response headers and
/// the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub diagnostic: Diagnostic,
    /// A status other than the catalogue's (ring timeout per config, the forks' best).
    pub status: Option<u16>,
    /// Observed values, in order: `fqdn="sbc9.adatum.biz"`, `certificate="..."`.
    pub facts: Vec<(&'static str, String)>,
    /// A response code other than the catalogue's (`560486`: the SBC's 486, passed on).
    pub code: Option<u32>,
}

impl Rejection {
    pub fn new(diagnostic: Diagnostic) -> Self {
        Rejection {
            diagnostic,
            status: None,
            facts: Vec::new(),
            code: None,
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.facts.push((key, value.into()));
        self
    }

    pub fn entry(&self) -> Entry {
        let mut e = self.diagnostic.entry();
        if let Some(c) = self.code {
            e.code = c;
        }
        e
    }

    /// Tells `code` instead of the catalogue's response code.
    pub fn with_code(mut self, code: u32) -> Self {
        self.code = Some(code);
        self
    }

    /// Answers with `status` instead of the catalogue's status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The SIP status of the response.
    pub fn status(&self) -> u16 {
        self.status.unwrap_or(self.entry().status)
    }

    /// The reason phrase: the catalogue's, or the standard phrase of an overridden status.
    pub fn phrase(&self) -> &'static str {
        match self.status {
            Some(s) if s != self.entry().status => standard_phrase(s),
            _ => self.entry().phrase,
        }
    }

    /// The Q.850 cause: the catalogue's, or the mapping of an overridden status.
    fn q850(&self) -> u8 {
        match self.status {
            Some(s) if s != self.entry().status => q850_for(s),
            _ => self.entry().q850,
        }
    }

    /// `Q.850;cause=<n>;text="<correlation-id>;<phrase>"` (DR-VAL-8).
    pub fn reason_header(&self, correlation_id: &str) -> String {
        let e = self.entry();
        format!(
            "Q.850;cause={};text=\"{};{}\"",
            self.q850(),
            correlation_id,
            quote_safe(e.text)
        )
    }

    /// `<code>;reason="...";<facts>;source="<proxy fqdn>"` in the seed trace's format.
    pub fn ms_diagnostics(&self, source: &str) -> String {
        let e = self.entry();
        let mut out = format!("{};reason=\"{}\"", e.code, quote_safe(e.text));
        for (k, v) in &self.facts {
            let _ = write!(out, ";{k}=\"{}\"", quote_safe(v));
        }
        let _ = write!(out, ";source=\"{}\"", quote_safe(source));
        out
    }

    /// The facts as one human line for logs: `fqdn=sbc9.adatum.biz certificate=...`.
    pub fn facts_line(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.facts {
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = write!(out, "{k}={v:?}");
        }
        out
    }
}

/// How a rejection is told on the flow it answers on.
#[derive(Debug, Clone, Copy)]
pub struct Teller<'a> {
    pub style: Style,
    /// The proxy FQDN of the listener (ms-diagnostics `source`).
    pub source: &'a str,
    pub server: &'a str,
    pub ms_diagnostics: bool,
    /// The flow, for the log line.
    pub flow: &'a str,
    /// The methods a 405 lists.
    pub allow: &'a str,
}

impl Rejection {
    /// Logs the rejection once, with its correlation id and facts (DR-VAL-8), and
    /// writes the response to `req` into `out`: the status, `Reason`, `ms-diagnostics`,
    /// and what the status itself needs (Allow, Unsupported, Retry-After, Min-SE). False,
    /// with nothing written, when `req` lacks what a response copies (DR-ERR-3).
    pub fn respond(&self, req: &Message<'_>, teller: &Teller<'_>, out: &mut BytesMut) -> bool {
        let tag = format!("{:016x}", fastrand::u64(..));
        self.respond_tagged(req, teller, out, &tag)
    }

    /// [`respond`](Rejection::respond) for a rejection no transaction keeps (RFC 3261
    /// §8.2.7): its To tag is a [`stateless_tag`], by which the front doors know the ACK
    /// that comes back and drop it on arrival.
    pub fn respond_stateless(
        &self,
        req: &Message<'_>,
        teller: &Teller<'_>,
        out: &mut BytesMut,
    ) -> bool {
        self.respond_tagged(req, teller, out, &stateless_tag())
    }

    fn respond_tagged(
        &self,
        req: &Message<'_>,
        teller: &Teller<'_>,
        out: &mut BytesMut,
        tag: &str,
    ) -> bool {
        let e = self.entry();
        let id = correlation_id();
        let call_id = req.header(HeaderName::CallId).unwrap_or("-");
        // Every rejection is logged, but a flood of them is counted, not written.
        crate::warn_limited!(
            flow = teller.flow,
            call_id,
            status = self.status(),
            code = e.code,
            requirement = e.requirement,
            correlation = %id,
            facts = %self.facts_line(),
            "rejected: {}",
            e.text
        );
        if !can_respond(req) {
            warn!(
                flow = teller.flow,
                "no response possible (Via, From, To, Call-ID or CSeq missing); dropped"
            );
            return false;
        }
        self.write_tagged(req, teller, &id, out, tag)
    }

    /// Writes the response to `req` into `out`, with `correlation` in its Reason header,
    /// and logs nothing: for per-message paths whose caller logs once (DR-VAL-8 wants the
    /// same text in the log). No transaction keeps these (a message that did not parse):
    /// the To tag is a [`stateless_tag`]. False, with nothing written, when `req` lacks
    /// what a response copies.
    pub fn write(
        &self,
        req: &Message<'_>,
        teller: &Teller<'_>,
        correlation: &str,
        out: &mut BytesMut,
    ) -> bool {
        self.write_tagged(req, teller, correlation, out, &stateless_tag())
    }

    fn write_tagged(
        &self,
        req: &Message<'_>,
        teller: &Teller<'_>,
        correlation: &str,
        out: &mut BytesMut,
        tag: &str,
    ) -> bool {
        if !can_respond(req) {
            return false;
        }
        let mut w = ResponseWriter::start(
            out,
            teller.style,
            req,
            self.status(),
            self.phrase(),
            Some(tag),
        );
        w.header("Reason", &self.reason_header(correlation));
        if teller.ms_diagnostics {
            w.header("ms-diagnostics", &self.ms_diagnostics(teller.source));
        }
        let fact = |key: &str| self.facts.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        match self.diagnostic {
            Diagnostic::BadExtension => {
                if let Some(tags) = fact("unsupported") {
                    w.header("Unsupported", tags);
                }
            }
            Diagnostic::MethodNotAllowed => {
                w.header("Allow", teller.allow);
            }
            Diagnostic::Overloaded => {
                // A busy datacenter names its own (DR-DC-1); overload says 1 s (DR-ERR-1).
                let after = fact("retry_after").map_or("1", String::as_str);
                w.header("Retry-After", after);
            }
            Diagnostic::SessionIntervalTooSmall => {
                if let Some(min_se) = fact("min_se") {
                    w.header("Min-SE", min_se);
                }
            }
            _ => {}
        }
        w.header("Server", teller.server);
        w.finish(b"");
        true
    }
}

/// The To tag of a response no transaction keeps: `sl` and 14 hex digits. The tags of
/// dialogs and of transaction-kept responses are hex digits only, so an ACK carrying
/// one of these belongs to nothing and is dropped where it arrives.
pub fn stateless_tag() -> String {
    format!("sl{:014x}", fastrand::u64(..) >> 8)
}

/// Whether a To tag is a [`stateless_tag`].
pub fn is_stateless_tag(tag: &str) -> bool {
    tag.starts_with("sl")
}

/// A message the parser rejected, answered: the rejection sent, with what the log line
/// needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub rejection: Rejection,
    /// The correlation id of the Reason header.
    pub correlation: String,
    pub call_id: String,
}

/// Answers a message the parser rejected with `error` (DR-ERR-3, DR-TLS-2): the
/// rejection of [`Diagnostic::unparsed`] is written to `out`. It is built from the header
/// block as received when that parses by itself (a framing fault, a version other than
/// 2.0) and is a request other than ACK with every header a response copies; otherwise
/// from the request [`salvage`] makes of `raw`. Nothing is logged: the caller logs once,
/// with what this returns, or with why no answer was possible (a response, an ACK, no
/// usable Via, From, To, Call-ID or CSeq).
pub fn answer_unparsed<'r>(
    raw: &'r [u8],
    error: &ParseError,
    teller: &Teller<'_>,
    out: &mut BytesMut,
) -> Result<Answered, Unanswered<'r>> {
    let rejection = Rejection::new(Diagnostic::unparsed(error));
    let correlation = correlation_id();
    let answered = |msg: &Message<'_>, rejection: Rejection, correlation: String| Answered {
        rejection,
        correlation,
        call_id: msg.call_id().unwrap_or("-").to_owned(),
    };
    let block = memchr::memmem::find(raw, b"\r\n\r\n").and_then(|end| raw.get(..end + 4));
    let head = block
        .and_then(|b| Message::parse_head(b).ok())
        .and_then(Status::complete)
        .filter(|m| m.is_request() && m.method() != Some(Method::Ack));
    if let Some(head) = head {
        if rejection.write(&head, teller, &correlation, out) {
            return Ok(answered(&head, rejection, correlation));
        }
    }
    let request = salvage(raw)?;
    let msg = request.message();
    // The salvaged request passed check_request, so it has every header a response copies.
    rejection.write(&msg, teller, &correlation, out);
    Ok(answered(&msg, rejection, correlation))
}

/// RFC 3261 §8.2.6: a response needs these copied from the request.
pub fn can_respond(msg: &Message<'_>) -> bool {
    [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ]
    .iter()
    .all(|h| msg.header(*h).is_some())
}

/// The RFC 3261 reason phrase of a status (RFC 3261 §21 and later RFCs).
pub fn standard_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Call Failed",
    }
}

/// Makes a value safe inside a SIP quoted-string: no quotes, backslashes or controls.
fn quote_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// A fresh correlation id in the 8-4-4-4-12 hex form the real service uses.
pub fn correlation_id() -> String {
    let a = fastrand::u128(..);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_val_8_ms_diagnostics_has_the_seed_trace_shape() {
        let r = Rejection::new(Diagnostic::NoTrunk).with("fqdn", "sbc9.adatum.biz");
        assert_eq!(
            r.ms_diagnostics("sip.pstnhub.microsoft.com"),
            "510532;reason=\"No trunk config was found\";fqdn=\"sbc9.adatum.biz\";source=\"sip.pstnhub.microsoft.com\""
        );
    }

    #[test]
    fn dr_val_8_reason_header_carries_correlation_id_and_phrase() {
        let r = Rejection::new(Diagnostic::ContactIsIp);
        let h = r.reason_header("0f3c2a1b-0000-4000-8000-000000000000");
        assert!(h.starts_with(
            "Q.850;cause=21;text=\"0f3c2a1b-0000-4000-8000-000000000000;Contact host is an IP"
        ));
        assert!(h.ends_with('"'));
    }

    #[test]
    fn quoted_values_cannot_break_the_header() {
        let r = Rejection::new(Diagnostic::ContactCertMismatch).with("fqdn", "a\"b\\c\r\nd");
        let h = r.ms_diagnostics("x");
        assert!(h.contains("fqdn=\"a'b/c  d\""), "{h}");
    }

    #[test]
    fn correlation_ids_are_uuid_shaped_and_fresh() {
        let a = correlation_id();
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(a, correlation_id());
    }

    #[test]
    fn catalogue_is_consistent() {
        for d in Diagnostic::ALL {
            let e = d.entry();
            assert!((400..700).contains(&e.status) || e.status == 0, "{d:?}");
            assert!(e.requirement.starts_with("DR-"), "{d:?}");
            assert!(!e.text.is_empty() && !e.phrase.is_empty());
            // The Reason text is `<correlation-id>;<text>`: a ';' in the text would
            // split it for anyone parsing it.
            assert!(!e.text.contains(';') && !e.text.contains('"'), "{d:?}");
            // drhub's own choices stay in 540xxx.
            if e.emulator_choice {
                assert_eq!(e.code / 1000, 540, "{d:?}");
            }
        }
    }

    #[test]
    fn readme_lists_every_code() {
        let readme = include_str!("../README.md");
        for d in Diagnostic::ALL {
            let e = d.entry();
            let status = if e.status == 0 {
                "4xx-6xx".to_owned()
            } else {
                e.status.to_string()
            };
            let row = format!("| {status} | {} |", e.code);
            assert!(
                readme.contains(&row),
                "README's diagnostic table lacks `{row}` ({d:?})"
            );
        }
    }

    #[test]
    fn q850_mapping_follows_rfc_3398() {
        assert_eq!(q850_for(404), 1);
        assert_eq!(q850_for(486), 17);
        assert_eq!(q850_for(480), 18);
        assert_eq!(q850_for(403), 21);
        assert_eq!(q850_for(599), 127);
    }
}
