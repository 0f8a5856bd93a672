//! The configuration: TOML in, a validated and typed [`Config`] out.
//!
//! Loading parses rather than validates: an FQDN arrives as an [`Fqdn`], a number as an
//! [`E164`], so nothing downstream re-checks them. Every problem found is reported with
//! the dotted path of the field (`tenant[0].trunk[1].port: ...`), all of them at once,
//! because a voice engineer editing a lab file wants the whole list, not one per run.
//! Unknown keys are errors too (a misspelt `send_option` must not silently mean the
//! default).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::sip::Transport;
use crate::transport::tls::TlsVersion;

mod routing;

pub use routing::{
    DialPlan, NormalizationRule, TeamsRegex, Translation, VoiceRoute, VoiceRouting,
    VoiceRoutingPolicy, GLOBAL_POLICY, MAX_NORMALIZATION_RULES,
};

/// The lab configuration shipped in `config/drhub.toml`, compiled in so that
/// `drhub run` works from any directory.
pub const BUILTIN_LAB_CONFIG: &str = include_str!("../config/drhub.toml");

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: ProxySettings,
    pub log: LogSettings,
    pub limits: Limits,
    pub certs: CertSettings,
    pub timers: SipTimers,
    pub media: MediaSettings,
    pub calls: CallSettings,
    pub endpoints: EndpointListener,
    pub health: HealthSettings,
    pub api: ApiSettings,
    /// The protocol trace (`[trace]`: text log, pcap).
    pub trace: crate::observe::trace::TraceConfig,
    pub listeners: Vec<Listener>,
    pub tenants: Vec<Tenant>,
}

/// RFC 3261 §17 timer bases (Table 4); every transaction timer derives from them.
#[derive(Debug, Clone, Copy)]
pub struct SipTimers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

/// The emulated media processor: what its SDP says (drhub relays no media).
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub address: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
}

/// SBC health (DR-OPT-3): the spec's timing by default; a lab may shorten it.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// How often the proxy sends its own OPTIONS to each SBC it has heard from.
    pub options_interval: Duration,
    /// An SBC is active only if it sent OPTIONS within this window.
    pub active_window: Duration,
    /// No OPTIONS from it (or none of the proxy's answered) for this long: inactive.
    pub inactive_after: Duration,
}

/// Call handling: ring timeout (DR-FORK-7) and overload limits (DR-ERR-1).
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub ring_timeout: Duration,
    /// 408 or 480 when nobody answers within `ring_timeout`.
    pub ring_timeout_status: u16,
    /// New INVITEs over this many calls up get 503 with Retry-After.
    pub max_concurrent: usize,
    /// New INVITEs over this rate get 503 with Retry-After.
    pub max_per_second: u32,
    /// Default delay before a user's voicemail answers.
    pub voicemail_answer_after: Duration,
    /// RFC 4028 Session-Expires the proxy prefers on non-bypass calls (DR-ST-1).
    pub session_expires: u32,
    /// The smallest session interval the proxy accepts (DR-ST-3); RFC 4028 says 90.
    pub min_se: u32,
    /// How long an answered call without a session timer waits for its SBC after the
    /// SBC's last connection closed without BYE, before the proxy asks whether the dialog
    /// is still there (DR-NH-5).
    pub orphan_timeout: Duration,
}

/// The control API (`[api]`): JSON over HTTP for status, calls and datacenter faults.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Where it listens; `None` turns it off.
    pub address: Option<SocketAddr>,
    /// When set, every request needs `Authorization: Bearer <token>` (the status page
    /// also takes it as the password of HTTP Basic authentication).
    pub token: Option<String>,
    /// How many recent calls' SIP the status page keeps for its ladder diagrams.
    pub ladder_calls: usize,
}

/// The API's address when the config names none: loopback only, as a lab tool should.
pub const DEFAULT_API_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// Where SIP endpoints (softphones, sipp) register and are reached.
#[derive(Debug, Clone)]
pub struct EndpointListener {
    /// UDP and TCP on this address; `None` disables SIP endpoints' listener.
    pub address: Option<SocketAddr>,
    pub min_expires: u32,
    pub max_expires: u32,
    /// TCP connections on the endpoint listener in all, and from one address; apart from
    /// the SBC listeners' (`[limits]`), so endpoints can never lock SBCs out.
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// An endpoint's TCP connection that carries no registration closes after this long
    /// without traffic; one with a registration lives like an SBC's (`[limits]`).
    pub idle_timeout: Duration,
    /// New requests per second from one source address (UDP and TCP alike), with a
    /// burst of twice as many; more get `503` + `Retry-After` without any state kept.
    pub requests_per_second_per_address: u32,
    /// Failed digests within `auth_window` that lock a source address or a user for
    /// `auth_lockout` (403 without checking credentials); 0 turns the throttle off.
    pub auth_failures: u32,
    pub auth_window: Duration,
    pub auth_lockout: Duration,
    /// The digest algorithms the listener's challenges offer, in order, and the only
    /// ones it accepts (`["SHA-256", "MD5"]`; MD5 alone for phones that fail on SHA-256).
    pub digest_algorithms: crate::endpoint::digest::Offered,
}

/// How drhub presents itself: the emulated proxy FQDNs and the shape of its answers.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The Direct Routing proxy names, first one is the default identity.
    pub fqdns: Vec<Fqdn>,
    pub profile: Profile,
    /// The `Server` header value (DR-OPT-1).
    pub server: String,
    /// Add the `ms-diagnostics` header to rejections (DR-VAL-8).
    pub ms_diagnostics: bool,
}

/// Which response shape drhub uses (DR-OPT-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Byte-for-byte the shape of the real service: upper-case names, no To tag.
    Faithful,
    /// An RFC 3261 textbook answer: To tag, Contact, Accept, Supported.
    Rfc3261,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A tracing-subscriber filter (`info`, `drhub=debug`); `RUST_LOG` overrides it.
    pub level: String,
    pub json: bool,
    /// Every this often a `status` line (calls, transactions, connections, load) is
    /// logged at info; `None` when 0.
    pub status_interval: Option<Duration>,
}

/// Resource limits per connection (DR-TLS-2).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    /// A connection with no traffic at all for this long is closed.
    pub idle_timeout: Duration,
    /// A message whose first byte has arrived must be complete within this time
    /// (defeats a peer that trickles one byte a second).
    pub message_timeout: Duration,
    /// The TLS handshake must be over within this time.
    pub handshake_timeout: Duration,
    /// How long the proxy's own connection to an SBC (TCP connect, then the TLS
    /// handshake) may take each (DR-TLS-4).
    pub connect_timeout: Duration,
    /// Connections open at once over all the SBC listeners, and from one address; more
    /// are refused at accept. The endpoint listener has its own (`[endpoints]`).
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// A write the peer does not take within this time closes the connection (a peer
    /// that sends but never reads).
    pub write_timeout: Duration,
    /// New INVITEs get `503` + `Retry-After` while the transaction layer's queue holds
    /// work this old (DR-ERR-1, the daemon's knee).
    pub overload_queue_delay: Duration,
    /// How long SIGTERM waits for connections to close before exiting.
    pub shutdown_grace: Duration,
}

/// Where the lab PKI lives and what `drhub certs` adds beyond the trunks.
#[derive(Debug, Clone)]
pub struct CertSettings {
    pub dir: PathBuf,
    /// Write the lab certificates the listeners name when they are missing at start.
    pub auto_create: bool,
    /// Extra SBC certificate names (e.g. `*.contoso.com` for a carrier SBC).
    pub extra_sbc_names: Vec<String>,
}

/// One SBC-facing listener, i.e. one emulated datacenter.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    /// TLS or TCP (UDP is the endpoint side's alone).
    pub transport: Transport,
    pub address: SocketAddr,
    /// The proxy FQDN this listener speaks as (Server identity, ms-diagnostics source).
    pub fqdn: Fqdn,
    pub enabled: bool,
    /// Present exactly when `transport` is TLS.
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub versions: Vec<TlsVersion>,
}

/// One Microsoft 365 tenant of the lab.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// Domains registered in the tenant: the keys of DR-TEN-1/2.
    pub domains: Vec<Fqdn>,
    pub trunks: Vec<Trunk>,
    pub users: Vec<User>,
    /// Caller numbers refused with 403/510534 (DR-TEN-5).
    pub blocked_callers: Vec<NumberPattern>,
    /// PSTN usages, voice routes, policies and the dial plan (DR-OUT-1).
    pub voice_routing: VoiceRouting,
}

/// One SBC of a tenant: the `Set-CsOnlinePSTNGateway` settings (DR-TEN-6).
#[derive(Debug, Clone)]
pub struct Trunk {
    pub fqdn: Fqdn,
    pub port: u16,
    pub enabled: bool,
    pub send_options: bool,
    pub media_bypass: bool,
    pub forward_call_history: bool,
    pub forward_pai: bool,
    /// Alert threshold only; calls are never refused for it.
    pub max_concurrent_sessions: Option<u32>,
    pub failover_response_codes: Vec<u16>,
    pub failover_time: Duration,
    /// Accept this SBC on the plain-TCP lab listener without a certificate (DR-TLS-5).
    pub allow_insecure: bool,
    /// When the SBC refuses a REFER (or never answers it), drhub carries the transfer
    /// out itself as referee (DR-XFER-2); otherwise the call goes on and it is logged.
    pub refer_fallback: bool,
    /// The protocol trace (`[trace]`) covers this SBC's connections.
    pub trace: bool,
    /// Where the proxy connects to reach this SBC (a lab has no DNS); the FQDN stays the
    /// TLS name. `None`: the system resolver (hosts file) resolves the FQDN (DR-TLS-4).
    pub address: Option<SocketAddr>,
}

/// A Teams user.
#[derive(Debug, Clone)]
pub struct User {
    /// The user's SIP address (`user1@adatum.biz`), stored lower-case.
    pub sip_address: SipAddress,
    pub display_name: String,
    pub line_uri: Option<LineUri>,
    /// Digest password for SIP endpoints registering as this user.
    pub password: Option<String>,
    /// Delay before this user's voicemail answers (DR-FORK-9).
    pub voicemail_answer_after: Duration,
    /// The user's clients; every call forks to all of them (DR-FORK-1).
    pub endpoints: Vec<Endpoint>,
    /// The name of one of the tenant's voice routing policies, as the policy spells it;
    /// `None`: the tenant's `Global` policy applies (DR-OUT-1).
    pub voice_routing_policy: Option<String>,
    /// Calls this user places on their own (`[[tenant.user.call]]`, DR-OUT-1).
    pub calls: Vec<ScheduledCall>,
    /// Call forwarding as the user set it in the Teams client (`[tenant.user.forwarding]`,
    /// DR-FWD-1).
    pub forwarding: Forwarding,
}

/// A user's call forwarding rules (DR-FWD-1), the Teams client's "Call handling and
/// forwarding" settings: forward at once, or when busy, unanswered after a while, or
/// unavailable (no client online or every one failed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Forward every call at once, ringing none of the user's clients (cause 302).
    pub immediate: Option<ForwardTarget>,
    /// When every client is busy (`486`/`600`; cause 486).
    pub busy: Option<ForwardTarget>,
    /// When nobody answered within `no_answer_after` (cause 408).
    pub no_answer: Option<ForwardTarget>,
    pub no_answer_after: Duration,
    /// When the user has no client to ring, or every one failed otherwise (cause 480).
    pub unavailable: Option<ForwardTarget>,
    /// Simultaneous ring ("also ring"): a number or another user rings with the user's
    /// clients.
    pub also_ring: Option<ForwardTarget>,
}

impl Forwarding {
    pub fn is_empty(&self) -> bool {
        self.immediate.is_none()
            && self.busy.is_none()
            && self.no_answer.is_none()
            && self.unavailable.is_none()
            && self.also_ring.is_none()
    }
}

/// Where a forwarding rule sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// A phone number: out through the user's voice routing to an SBC (DR-FWD-2).
    Number(E164),
    /// Another user of the same tenant: their clients ring instead.
    User(SipAddress),
    /// The user's own voicemail.
    Voicemail,
}

impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardTarget::Number(n) => write!(f, "{n}"),
            ForwardTarget::User(u) => write!(f, "{u}"),
            ForwardTarget::Voicemail => f.write_str("voicemail"),
        }
    }
}

impl FromStr for ForwardTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("voicemail") {
            return Ok(ForwardTarget::Voicemail);
        }
        if s.starts_with('+') || s.starts_with("tel:") {
            return s
                .trim_start_matches("tel:")
                .parse()
                .map(ForwardTarget::Number);
        }
        s.parse::<SipAddress>()
            .map(ForwardTarget::User)
            .map_err(|_| {
                format!(
                    "`{}` is none of `voicemail`, a +E.164 number, a user's SIP address",
                    s.escape_debug()
                )
            })
    }
}

/// A call a scripted Teams client places to the PSTN: what it dials, when, for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledCall {
    /// What the user dials (the tenant's dial plan normalises it).
    pub to: String,
    /// The first call this long after the daemon starts.
    pub after: Duration,
    /// Then again every so often (`None`: once).
    pub every: Option<Duration>,
    /// How many calls in all (`None` with `every`: until the daemon stops).
    pub count: Option<u32>,
    /// The caller gives up (CANCEL) after ringing this long.
    pub ring: Duration,
    /// The caller hangs up this long after the answer.
    pub talk: Duration,
    /// Caller ID withheld.
    pub private: bool,
}

/// One client of a user: a fork target.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub name: String,
    pub kind: EndpointKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EndpointKind {
    /// A scripted client inside drhub.
    Virtual(Script),
    /// A real SIP user agent: every contact registered for the user, plus an optional
    /// static contact.
    Sip { contact: Option<String> },
}

/// What a virtual endpoint does with a call, on the fork's clock (from the INVITE).
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// Send "call progress" (180) after this long.
    pub ring_after: Option<Duration>,
    /// Send "media answer" (183 with SDP) after this long.
    pub media_answer_after: Option<Duration>,
    /// How the fork ends, and when; `None` rings until cancelled.
    pub outcome: Option<(Duration, Outcome)>,
    /// After answering, hang up (BYE) after this long.
    pub hangup_after: Option<Duration>,
    /// After answering, the user holds the call after this long (DR-HOLD-2) ...
    pub hold_after: Option<Duration>,
    /// ... and resumes it this long later (`None`: held to the end).
    pub hold_for: Option<Duration>,
    /// After answering, the user transfers the call after this long (DR-XFER-3) ...
    pub transfer_after: Option<Duration>,
    /// ... to this `+E164` number or SIP address ...
    pub transfer_to: Option<String>,
    /// ... after a consultation call to the number, answered (RFC 5589 §7).
    pub transfer_consultative: bool,
    /// Whether this client can do media bypass (DR-ICE-1).
    pub bypass: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answer,
    Reject(u16),
    /// 302/303 to voicemail (`opaque=app:voicemail`) or a number (DR-FORK-9).
    Redirect(RedirectTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectTarget {
    Voicemail,
    Number(E164),
}

/// `user@domain`, case-folded for lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipAddress {
    pub user: String,
    pub domain: String,
}

impl fmt::Display for SipAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.domain)
    }
}

impl FromStr for SipAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.strip_prefix("sip:").unwrap_or(s);
        let (user, domain) = s
            .split_once('@')
            .ok_or_else(|| format!("`{s}` is not a SIP address of the form user@domain"))?;
        if user.is_empty() {
            return Err(format!("`{s}` has an empty user part"));
        }
        if user
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ';' | ':'))
        {
            return Err(format!("`{s}` has characters not allowed in a user part"));
        }
        let domain = Fqdn::from_str(domain)?;
        Ok(SipAddress {
            user: user.to_ascii_lowercase(),
            domain: domain.0,
        })
    }
}

/// A fully qualified domain name: ASCII, lower-case, at least two labels, not an IP
/// address. A leading `*.` is not allowed here (see [`Fqdn::parse_wildcard`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fqdn(String);

impl Fqdn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name with its first label removed (`sbc12.adatum.biz` -> `adatum.biz`), if
    /// what remains still has two labels (DR-TEN-2).
    pub fn parent(&self) -> Option<&str> {
        let (_, rest) = self.0.split_once('.')?;
        rest.contains('.').then_some(rest)
    }

    /// Accepts a certificate-style name with an optional leading `*.` label.
    pub fn parse_wildcard(s: &str) -> Result<String, String> {
        match s.strip_prefix("*.") {
            Some(rest) => Ok(format!("*.{}", Fqdn::from_str(rest)?.0)),
            None => Ok(Fqdn::from_str(s)?.0),
        }
    }
}

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fqdn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.strip_suffix('.').unwrap_or(s);
        if t.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "`{s}` is an IP address; Direct Routing needs an FQDN"
            ));
        }
        if t.len() > 253 || !t.contains('.') {
            return Err(format!("`{s}` is not a fully qualified domain name"));
        }
        for label in t.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "`{s}` is not a fully qualified domain name (label `{label}`)"
                ));
            }
        }
        if t.rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "`{s}` is not a fully qualified domain name (numeric top label)"
            ));
        }
        Ok(Fqdn(t.to_ascii_lowercase()))
    }
}

/// A phone number in E.164 form: `+` then 1 to 15 digits, separators removed.
/// Non-DID numbers such as `+1001` are E.164-shaped too, which is how Teams stores them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// The number with its `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a dialled number: `+` then digits, with the visual separators `-.()`
    /// of RFC 3966 ignored (DR-TEN-3). No `+`: `None`.
    pub fn parse_dialled(s: &str) -> Option<E164> {
        let rest = s.strip_prefix('+')?;
        let mut out = String::with_capacity(s.len());
        out.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => out.push(c),
                '-' | '.' | '(' | ')' => {}
                _ => return None,
            }
        }
        (2..=16).contains(&out.len()).then_some(E164(out))
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for E164 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.starts_with('+') {
            return Err(format!("`{s}` must start with `+` (E.164)"));
        }
        E164::parse_dialled(s)
            .ok_or_else(|| format!("`{s}` is not an E.164 number (`+` then 1 to 15 digits)"))
    }
}

/// A user's line URI: `tel:+18338006777` with an optional `;ext=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineUri {
    pub number: E164,
    pub ext: Option<String>,
}

impl fmt::Display for LineUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}", self.number)?;
        if let Some(ext) = &self.ext {
            write!(f, ";ext={ext}")?;
        }
        Ok(())
    }
}

impl FromStr for LineUri {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let body = s.strip_prefix("tel:").unwrap_or(s);
        let (num, params) = match body.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (body, None),
        };
        let number = E164::from_str(num)?;
        let mut ext = None;
        if let Some(params) = params {
            for p in params.split(';') {
                match p.split_once('=') {
                    Some((k, v)) if k.eq_ignore_ascii_case("ext") => {
                        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(format!("`{s}`: ext must be digits"));
                        }
                        ext = Some(v.to_owned());
                    }
                    _ => return Err(format!("`{s}`: only the `ext` parameter is allowed")),
                }
            }
        }
        Ok(LineUri { number, ext })
    }
}

/// A blocked-caller pattern: an E.164 prefix ending in `*`, or an exact number.
/// `?` stands for any one digit (`+1555???0100`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPattern {
    text: String,
    prefix: bool,
}

impl NumberPattern {
    pub fn matches(&self, number: &E164) -> bool {
        let pat = self.text.as_bytes();
        let num = number.as_str().as_bytes();
        if self.prefix {
            num.len() >= pat.len() && digits_match(pat, &num[..pat.len()])
        } else {
            num.len() == pat.len() && digits_match(pat, num)
        }
    }
}

fn digits_match(pat: &[u8], num: &[u8]) -> bool {
    pat.iter().zip(num).all(|(p, n)| *p == b'?' || p == n)
}

impl fmt::Display for NumberPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

impl FromStr for NumberPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (text, prefix) = match s.strip_suffix('*') {
            Some(t) => (t, true),
            None => (s, false),
        };
        let valid = text.starts_with('+')
            && text.len() >= 2
            && text[1..].bytes().all(|b| b.is_ascii_digit() || b == b'?');
        if !valid {
            return Err(format!(
                "`{s}` is not a number pattern (`+` then digits or `?`, optionally ending in `*`)"
            ));
        }
        Ok(NumberPattern {
            text: text.to_owned(),
            prefix,
        })
    }
}

/// One problem in a configuration, with the path of the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            issues: vec![ConfigIssue {
                path: name.clone(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Config::parse(&text, &name)
    }

    /// Validates configuration text; `source_name` names it in messages.
    pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            source_name: source_name.to_owned(),
            issues: vec![ConfigIssue {
                path: source_name.to_owned(),
                message: format!("not valid TOML: {}", e.to_string().trim_end()),
            }],
        })?;
        let errs = Issues::default();
        let config = build(&table, &errs);
        let issues = errs.0.into_inner();
        match config {
            Some(c) if issues.is_empty() => Ok(c),
            _ => Err(ConfigError {
                source_name: source_name.to_owned(),
                issues,
            }),
        }
    }

    /// The first proxy FQDN: drhub's default identity.
    pub fn primary_fqdn(&self) -> &Fqdn {
        // Invariant: `build` refuses an empty `proxy.fqdns`.
        &self.proxy.fqdns[0]
    }

    /// Every SBC certificate name the lab PKI should issue: trunk FQDNs and extras.
    pub fn sbc_certificate_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tenants
            .iter()
            .flat_map(|t| t.trunks.iter().map(|k| k.fqdn.to_string()))
            .chain(self.certs.extra_sbc_names.iter().cloned())
            .collect();
        let mut seen = HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }
}

#[derive(Default)]
struct Issues(RefCell<Vec<ConfigIssue>>);

impl Issues {
    fn push(&self, path: impl Into<String>, message: impl Into<String>) {
        self.0.borrow_mut().push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A TOML table being read, remembering its path for error messages.
struct Section<'a> {
    path: String,
    table: &'a toml::Table,
    errs: &'a Issues,
}

impl<'a> Section<'a> {
    /// Opens a table and reports every key not in `known`.
    fn new(table: &'a toml::Table, path: String, known: &[&str], errs: &'a Issues) -> Self {
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                errs.push(
                    join(&path, key),
                    format!("unknown field; expected one of: {}", known.join(", ")),
                );
            }
        }
        Section { path, table, errs }
    }

    fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn err(&self, key: &str, message: impl Into<String>) {
        self.errs.push(self.at(key), message);
    }

    fn str(&self, key: &str) -> Option<&'a str> {
        match self.table.get(key)? {
            toml::Value::String(s) => Some(s),
            other => {
                self.err(
                    key,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn req_str(&self, key: &str) -> Option<&'a str> {
        if !self.table.contains_key(key) {
            self.err(key, "missing (required)");
        }
        self.str(key)
    }

    /// A string field converted by `FromStr`, reporting the conversion error.
    fn parsed<T: FromStr<Err = String>>(&self, key: &str) -> Option<T> {
        let s = self.str(key)?;
        T::from_str(s).map_err(|e| self.err(key, e)).ok()
    }

    fn req_parsed<T: FromStr<Err = String>>(&self, key: &str) -> Option<T> {
        let s = self.req_str(key)?;
        T::from_str(s).map_err(|e| self.err(key, e)).ok()
    }

    fn bool(&self, key: &str, default: bool) -> bool {
        match self.table.get(key) {
            None => default,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                self.err(
                    key,
                    format!("expected true or false, found {}", other.type_str()),
                );
                default
            }
        }
    }

    fn int(&self, key: &str, default: i64, min: i64, max: i64) -> i64 {
        match self.table.get(key) {
            None => default,
            Some(toml::Value::Integer(i)) if (min..=max).contains(i) => *i,
            Some(toml::Value::Integer(i)) => {
                self.err(key, format!("{i} is out of range ({min} to {max})"));
                default
            }
            Some(other) => {
                self.err(
                    key,
                    format!("expected an integer, found {}", other.type_str()),
                );
                default
            }
        }
    }

    /// An `address:port`, `default` when absent, `None` for `"off"` (or empty).
    fn address_or_off(&self, key: &str, default: SocketAddr) -> Option<SocketAddr> {
        match self.str(key) {
            None => Some(default),
            Some("") | Some("off") => None,
            Some(a) => a
                .parse::<SocketAddr>()
                .map_err(|_| self.err(key, format!("`{a}` is not an address:port (or \"off\")")))
                .ok(),
        }
    }

    /// A duration in seconds; fractions are allowed (`0.5`).
    fn seconds(&self, key: &str, default: f64, min: f64, max: f64) -> Duration {
        let v = match self.table.get(key) {
            None => default,
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(toml::Value::Float(f)) => *f,
            Some(other) => {
                self.err(
                    key,
                    format!("expected a number of seconds, found {}", other.type_str()),
                );
                default
            }
        };
        if !(min..=max).contains(&v) || !v.is_finite() {
            self.err(key, format!("{v} seconds is out of range ({min} to {max})"));
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(v)
    }

    fn array(&self, key: &str) -> Vec<(String, &'a toml::Value)> {
        match self.table.get(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{}[{i}]", self.at(key)), v))
                .collect(),
            Some(other) => {
                self.err(
                    key,
                    format!("expected an array, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    fn str_list(&self, key: &str) -> Vec<(String, &'a str)> {
        self.array(key)
            .into_iter()
            .filter_map(|(path, v)| match v {
                toml::Value::String(s) => Some((path, s.as_str())),
                other => {
                    self.errs.push(
                        path,
                        format!("expected a string, found {}", other.type_str()),
                    );
                    None
                }
            })
            .collect()
    }

    fn parsed_list<T: FromStr<Err = String>>(&self, key: &str) -> Vec<T> {
        self.str_list(key)
            .into_iter()
            .filter_map(|(path, s)| T::from_str(s).map_err(|e| self.errs.push(path, e)).ok())
            .collect()
    }

    fn tables(&self, key: &str) -> Vec<(String, &'a toml::Table)> {
        self.array(key)
            .into_iter()
            .filter_map(|(path, v)| match v {
                toml::Value::Table(t) => Some((path, t)),
                other => {
                    self.errs.push(
                        path,
                        format!("expected a table, found {}", other.type_str()),
                    );
                    None
                }
            })
            .collect()
    }

    fn table(&self, key: &str) -> Option<&'a toml::Table> {
        match self.table.get(key)? {
            toml::Value::Table(t) => Some(t),
            other => {
                self.err(key, format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    fn sub(&self, key: &str, known: &[&str]) -> Section<'a> {
        static EMPTY: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
        let table = self
            .table(key)
            .unwrap_or_else(|| EMPTY.get_or_init(toml::Table::new));
        Section::new(table, self.at(key), known, self.errs)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

const DEFAULT_FQDNS: [&str; 3] = [
    "sip.pstnhub.microsoft.com",
    "sip2.pstnhub.microsoft.com",
    "sip3.pstnhub.microsoft.com",
];
/// The Server string of the real service in the captures of DR-OPT-1.
pub const DEFAULT_SERVER: &str = "Microsoft.PSTNHub.SIPProxy v.2020.7.31.1 i.USWE2.3";

fn build(table: &toml::Table, errs: &Issues) -> Option<Config> {
    let root = Section::new(
        table,
        String::new(),
        &[
            "proxy",
            "log",
            "limits",
            "certs",
            "timers",
            "media",
            "calls",
            "endpoints",
            "health",
            "api",
            "trace",
            "listener",
            "tenant",
        ],
        errs,
    );
    let proxy = build_proxy(&root.sub("proxy", &["fqdns", "profile", "server", "ms_diagnostics"]));
    let log = {
        let s = root.sub("log", &["level", "format", "status_interval_seconds"]);
        let json = match s.str("format").unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => {
                s.err(
                    "format",
                    format!("`{other}` is not a log format; use \"text\" or \"json\""),
                );
                false
            }
        };
        let status = s.seconds("status_interval_seconds", 60.0, 0.0, 86_400.0);
        LogSettings {
            level: s.str("level").unwrap_or("info").to_owned(),
            json,
            status_interval: (!status.is_zero()).then_some(status),
        }
    };
    let limits = {
        let s = root.sub(
            "limits",
            &[
                "max_header_bytes",
                "max_body_bytes",
                "idle_timeout_seconds",
                "message_timeout_seconds",
                "handshake_timeout_seconds",
                "connect_timeout_seconds",
                "max_connections",
                "max_connections_per_address",
                "write_timeout_seconds",
                "overload_queue_delay_ms",
                "shutdown_grace_seconds",
            ],
        );
        Limits {
            max_header_bytes: s.int("max_header_bytes", 16 * 1024, 1024, 1 << 20) as usize,
            max_body_bytes: s.int("max_body_bytes", 64 * 1024, 0, 16 << 20) as usize,
            idle_timeout: s.seconds("idle_timeout_seconds", 600.0, 0.05, 86_400.0),
            message_timeout: s.seconds("message_timeout_seconds", 10.0, 0.05, 3600.0),
            handshake_timeout: s.seconds("handshake_timeout_seconds", 10.0, 0.05, 600.0),
            connect_timeout: s.seconds("connect_timeout_seconds", 5.0, 0.05, 600.0),
            max_connections: s.int("max_connections", 10_000, 1, 1_000_000) as usize,
            max_connections_per_address: s.int("max_connections_per_address", 1000, 1, 1_000_000)
                as usize,
            write_timeout: s.seconds("write_timeout_seconds", 10.0, 0.05, 3600.0),
            overload_queue_delay: Duration::from_millis(s.int(
                "overload_queue_delay_ms",
                20,
                1,
                10_000,
            ) as u64),
            shutdown_grace: s.seconds("shutdown_grace_seconds", 5.0, 0.0, 3600.0),
        }
    };
    let certs = {
        let s = root.sub("certs", &["dir", "auto_create", "extra_sbc_names"]);
        let extra_sbc_names = s
            .str_list("extra_sbc_names")
            .into_iter()
            .filter_map(|(path, n)| Fqdn::parse_wildcard(n).map_err(|e| errs.push(path, e)).ok())
            .collect();
        CertSettings {
            dir: PathBuf::from(s.str("dir").unwrap_or("certs")),
            auto_create: s.bool("auto_create", true),
            extra_sbc_names,
        }
    };
    let timers = {
        let s = root.sub("timers", &["t1_seconds", "t2_seconds", "t4_seconds"]);
        SipTimers {
            t1: s.seconds("t1_seconds", 0.5, 0.01, 10.0),
            t2: s.seconds("t2_seconds", 4.0, 0.1, 60.0),
            t4: s.seconds("t4_seconds", 5.0, 0.1, 60.0),
        }
    };
    let media = {
        let s = root.sub("media", &["address", "port_min", "port_max"]);
        let address = match s.str("address") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(a) => a.parse().unwrap_or_else(|_| {
                s.err("address", format!("`{a}` is not an IP address"));
                IpAddr::from([127, 0, 0, 1])
            }),
        };
        let port_min = s.int("port_min", 49152, 1024, 65534) as u16;
        let port_max = s.int("port_max", 65534, 1025, 65535) as u16;
        if port_max <= port_min {
            s.err(
                "port_max",
                format!("{port_max} must be above port_min ({port_min})"),
            );
        }
        MediaSettings {
            address,
            port_min,
            port_max,
        }
    };
    let calls = {
        let s = root.sub(
            "calls",
            &[
                "ring_timeout_seconds",
                "ring_timeout_status",
                "max_concurrent",
                "max_per_second",
                "voicemail_answer_after_seconds",
                "session_expires_seconds",
                "min_se_seconds",
                "orphan_timeout_seconds",
            ],
        );
        let min_se = s.int("min_se_seconds", 90, 1, 86_400) as u32;
        let session_expires = s.int("session_expires_seconds", 1800, 1, 86_400) as u32;
        if session_expires < min_se {
            s.err(
                "session_expires_seconds",
                format!("{session_expires} must be at least min_se_seconds ({min_se}), RFC 4028 section 4"),
            );
        }
        let ring_timeout_status = s.int("ring_timeout_status", 480, 408, 480) as u16;
        if ring_timeout_status != 408 && ring_timeout_status != 480 {
            s.err(
                "ring_timeout_status",
                format!("{ring_timeout_status} must be 408 or 480"),
            );
        }
        CallSettings {
            ring_timeout: s.seconds("ring_timeout_seconds", 60.0, 0.05, 3600.0),
            ring_timeout_status,
            max_concurrent: s.int("max_concurrent", 20_000, 1, 10_000_000) as usize,
            max_per_second: s.int("max_per_second", 5_000, 1, 1_000_000) as u32,
            voicemail_answer_after: s.seconds("voicemail_answer_after_seconds", 5.0, 0.0, 600.0),
            session_expires,
            min_se,
            orphan_timeout: s.seconds("orphan_timeout_seconds", 120.0, 0.05, 86_400.0),
        }
    };
    let endpoints = {
        let s = root.sub(
            "endpoints",
            &[
                "address",
                "min_expires",
                "max_expires",
                "max_connections",
                "max_connections_per_address",
                "idle_timeout_seconds",
                "requests_per_second_per_address",
                "auth_failures",
                "auth_window_seconds",
                "auth_lockout_seconds",
                "digest_algorithms",
            ],
        );
        let digest_algorithms = {
            use crate::endpoint::digest::{Algorithm, Offered};
            match s.table.contains_key("digest_algorithms") {
                false => Offered::DEFAULT,
                true => {
                    let named = s.str_list("digest_algorithms");
                    let mut list = Vec::with_capacity(named.len());
                    for (path, name) in &named {
                        match Algorithm::parse(name) {
                            Some(a) => list.push(a),
                            None => s.errs.push(
                                path.clone(),
                                format!(
                                    "`{}` is no digest algorithm drhub offers: \"SHA-256\" or \"MD5\"",
                                    name.escape_debug()
                                ),
                            ),
                        }
                    }
                    match Offered::new(&list) {
                        Some(o) => o,
                        None => {
                            if list.len() == named.len() {
                                s.err(
                                    "digest_algorithms",
                                    "one or both of \"SHA-256\" and \"MD5\", each once",
                                );
                            }
                            Offered::DEFAULT
                        }
                    }
                }
            }
        };
        let address = s.address_or_off("address", SocketAddr::from(([127, 0, 0, 1], 5070)));
        let min_expires = s.int("min_expires", 60, 1, 86_400) as u32;
        let max_expires = s.int("max_expires", 3600, 1, 604_800) as u32;
        if max_expires < min_expires {
            s.err("max_expires", "must not be below min_expires");
        }
        EndpointListener {
            address,
            min_expires,
            max_expires,
            max_connections: s.int("max_connections", 1024, 1, 1_000_000) as usize,
            max_connections_per_address: s.int("max_connections_per_address", 32, 1, 1_000_000)
                as usize,
            idle_timeout: s.seconds("idle_timeout_seconds", 30.0, 0.05, 86_400.0),
            requests_per_second_per_address: s.int(
                "requests_per_second_per_address",
                50,
                1,
                1_000_000,
            ) as u32,
            auth_failures: s.int("auth_failures", 10, 0, 1_000_000) as u32,
            auth_window: s.seconds("auth_window_seconds", 60.0, 0.05, 86_400.0),
            auth_lockout: s.seconds("auth_lockout_seconds", 300.0, 0.05, 86_400.0),
            digest_algorithms,
        }
    };
    let health = {
        let s = root.sub(
            "health",
            &[
                "options_interval_seconds",
                "active_window_seconds",
                "inactive_after_seconds",
            ],
        );
        let active_window = s.seconds("active_window_seconds", 180.0, 0.1, 86_400.0);
        let inactive_after = s.seconds("inactive_after_seconds", 300.0, 0.1, 86_400.0);
        if inactive_after < active_window {
            s.err(
                "inactive_after_seconds",
                "must not be below active_window_seconds",
            );
        }
        HealthSettings {
            options_interval: s.seconds("options_interval_seconds", 60.0, 0.1, 86_400.0),
            active_window,
            inactive_after,
        }
    };
    let default_fqdn = proxy.as_ref().and_then(|p| p.fqdns.first().cloned());
    let listeners: Vec<Listener> = root
        .tables("listener")
        .into_iter()
        .filter_map(|(path, t)| {
            build_listener(
                Section::new(t, path, LISTENER_KEYS, errs),
                &certs,
                default_fqdn.clone(),
            )
        })
        .collect();
    if !root.table.contains_key("listener") {
        errs.push(
            "listener",
            "no listener configured; add a [[listener]] table",
        );
    }
    check_listeners(&listeners, errs);
    let tenants: Vec<Tenant> = root
        .tables("tenant")
        .into_iter()
        .filter_map(|(path, t)| build_tenant(Section::new(t, path, TENANT_KEYS, errs), &calls))
        .collect();
    check_tenants(&root.tables("tenant"), &tenants, errs);
    let api = build_api(&root.sub("api", &["address", "token", "ladder_calls"]));
    let trace = {
        let s = root.sub(
            "trace",
            &[
                "text",
                "pcap",
                "max_megabytes",
                "keep",
                "hep",
                "hep_capture_id",
            ],
        );
        let path = |key: &str| match s.str(key) {
            None | Some("off") => None,
            Some("") => {
                s.err(key, "a file path, or \"off\"");
                None
            }
            Some(p) => Some(PathBuf::from(p)),
        };
        crate::observe::trace::TraceConfig {
            text: path("text"),
            pcap: path("pcap"),
            max_bytes: s.int("max_megabytes", 100, 1, 1_000_000) as u64 * 1024 * 1024,
            keep: s.int("keep", 5, 0, 1000) as u32,
            hep: match s.str("hep") {
                None | Some("off") => None,
                Some(a) => match a.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        s.err(
                            "hep",
                            format!("`{}` is not ip:port, or \"off\"", a.escape_debug()),
                        );
                        None
                    }
                },
            },
            hep_id: s.int("hep_capture_id", 2001, 0, i64::from(u32::MAX)) as u32,
        }
    };
    Some(Config {
        proxy: proxy?,
        log,
        limits,
        certs,
        timers,
        media,
        calls,
        endpoints,
        health,
        api,
        trace,
        listeners,
        tenants,
    })
}

fn build_api(s: &Section) -> ApiSettings {
    let address = s.address_or_off("address", DEFAULT_API_ADDRESS);
    let token = match s.str("token") {
        Some("") => {
            s.err("token", "empty; remove the key to turn authentication off");
            None
        }
        Some(t) if t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            s.err("token", "must not contain spaces or control characters");
            None
        }
        t => t.map(str::to_owned),
    };
    let ladder_calls = s.int("ladder_calls", 200, 0, 10_000) as usize;
    ApiSettings {
        address,
        token,
        ladder_calls,
    }
}

fn build_proxy(s: &Section) -> Option<ProxySettings> {
    let fqdns: Vec<Fqdn> = if s.table.contains_key("fqdns") {
        s.parsed_list("fqdns")
    } else {
        DEFAULT_FQDNS
            .iter()
            .filter_map(|f| Fqdn::from_str(f).ok())
            .collect()
    };
    if fqdns.is_empty() {
        s.err("fqdns", "at least one proxy FQDN is needed");
    }
    let profile = match s.str("profile").unwrap_or("faithful") {
        "faithful" => Profile::Faithful,
        "rfc3261" => Profile::Rfc3261,
        other => {
            s.err(
                "profile",
                format!("`{other}` is not a profile; use \"faithful\" or \"rfc3261\""),
            );
            Profile::Faithful
        }
    };
    let server = s.str("server").unwrap_or(DEFAULT_SERVER);
    if server.chars().any(|c| c.is_control()) {
        s.err("server", "must not contain control characters");
    }
    let ms_diagnostics = s.bool("ms_diagnostics", true);
    (!fqdns.is_empty()).then(|| ProxySettings {
        fqdns,
        profile,
        server: server.to_owned(),
        ms_diagnostics,
    })
}

const LISTENER_KEYS: &[&str] = &[
    "name",
    "transport",
    "address",
    "fqdn",
    "enabled",
    "certificate",
    "key",
    "client_ca",
    "tls_versions",
];

fn build_listener(
    s: Section,
    certs: &CertSettings,
    default_fqdn: Option<Fqdn>,
) -> Option<Listener> {
    let name = s.req_str("name").map(str::to_owned);
    let transport = match s.str("transport").unwrap_or("tls") {
        "tls" => Some(Transport::Tls),
        "tcp" => Some(Transport::Tcp),
        other => {
            s.err(
                "transport",
                format!("`{other}` is not a transport; use \"tls\" or \"tcp\""),
            );
            None
        }
    };
    let address = s.req_str("address").and_then(|a| {
        a.parse::<SocketAddr>()
            .map_err(|_| {
                s.err(
                    "address",
                    format!("`{a}` is not an address:port such as 127.0.0.1:5061"),
                )
            })
            .ok()
    });
    let fqdn = s.parsed::<Fqdn>("fqdn").or(default_fqdn);
    let enabled = s.bool("enabled", true);
    let tls_keys = ["certificate", "key", "client_ca", "tls_versions"];
    let tls = match transport {
        Some(Transport::Tls) => {
            let path = |key: &str, file: &str| {
                s.str(key)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| certs.dir.join(file))
            };
            let versions = if s.table.contains_key("tls_versions") {
                s.str_list("tls_versions")
                    .into_iter()
                    .filter_map(|(p, v)| match v {
                        "1.2" => Some(TlsVersion::V1_2),
                        "1.3" => Some(TlsVersion::V1_3),
                        other => {
                            s.errs.push(
                                p,
                                format!("`{other}` is not supported; use \"1.2\" and/or \"1.3\" (1.0 and 1.1 are refused, as by the real service)"),
                            );
                            None
                        }
                    })
                    .collect()
            } else {
                vec![TlsVersion::V1_2]
            };
            if versions.is_empty() && s.table.contains_key("tls_versions") {
                s.err("tls_versions", "at least one TLS version is needed");
            }
            Some(ListenerTls {
                certificate: path("certificate", "proxy.pem"),
                key: path("key", "proxy.key"),
                client_ca: path("client_ca", "ca.pem"),
                versions,
            })
        }
        Some(Transport::Tcp | Transport::Udp) => {
            for key in tls_keys {
                if s.table.contains_key(key) {
                    s.err(key, "only meaningful with transport = \"tls\"");
                }
            }
            None
        }
        None => None,
    };
    Some(Listener {
        name: name?,
        transport: transport?,
        address: address?,
        fqdn: fqdn?,
        enabled,
        tls,
    })
}

fn check_listeners(listeners: &[Listener], errs: &Issues) {
    let mut names = HashSet::new();
    let mut addrs = HashMap::new();
    for (i, l) in listeners.iter().enumerate() {
        if !names.insert(l.name.as_str()) {
            errs.push(
                format!("listener[{i}].name"),
                format!("`{}` is used by another listener", l.name),
            );
        }
        if l.enabled && l.address.port() != 0 {
            if let Some(j) = addrs.insert(l.address, i) {
                errs.push(
                    format!("listener[{i}].address"),
                    format!("{} is also the address of listener[{j}]", l.address),
                );
            }
        }
    }
    if !listeners.is_empty() && !listeners.iter().any(|l| l.enabled) {
        errs.push(
            "listener",
            "every listener is disabled; drhub would serve nothing",
        );
    }
}

const TENANT_KEYS: &[&str] = &[
    "id",
    "name",
    "domains",
    "trunk",
    "user",
    "blocked_callers",
    "pstn_usages",
    "voice_route",
    "voice_routing_policy",
    "dial_plan",
];
const TRUNK_KEYS: &[&str] = &[
    "fqdn",
    "port",
    "enabled",
    "send_options",
    "media_bypass",
    "forward_call_history",
    "forward_pai",
    "max_concurrent_sessions",
    "failover_response_codes",
    "failover_time_seconds",
    "allow_insecure",
    "refer_fallback",
    "trace",
    "address",
];
const USER_KEYS: &[&str] = &[
    "sip_address",
    "display_name",
    "line_uri",
    "password",
    "voicemail_answer_after_seconds",
    "endpoint",
    "voice_routing_policy",
    "call",
    "forwarding",
];
const FORWARDING_KEYS: &[&str] = &[
    "immediate",
    "busy",
    "no_answer",
    "no_answer_after_seconds",
    "unavailable",
    "also_ring",
];
const CALL_KEYS: &[&str] = &[
    "to",
    "after_seconds",
    "every_seconds",
    "count",
    "ring_seconds",
    "talk_seconds",
    "private",
];
const ENDPOINT_KEYS: &[&str] = &[
    "name",
    "kind",
    "contact",
    "ring_after_seconds",
    "media_answer_after_seconds",
    "answer_after_seconds",
    "reject_status",
    "reject_after_seconds",
    "redirect_to",
    "redirect_after_seconds",
    "hangup_after_seconds",
    "hold_after_seconds",
    "hold_seconds",
    "transfer_to",
    "transfer_after_seconds",
    "transfer_consultative",
    "bypass",
];

fn build_tenant(s: Section, calls: &CallSettings) -> Option<Tenant> {
    let id = s.req_str("id");
    if id.is_some_and(|id| id.is_empty() || id.chars().any(|c| c.is_whitespace() || c == '"')) {
        s.err("id", "must be non-empty, without spaces or quotes");
    }
    let domains: Vec<Fqdn> = s.parsed_list("domains");
    if !s.table.contains_key("domains") {
        s.err(
            "domains",
            "missing (required): the DNS domains registered in this tenant",
        );
    }
    let trunks: Vec<Trunk> = s
        .tables("trunk")
        .into_iter()
        .filter_map(|(path, t)| build_trunk(&Section::new(t, path, TRUNK_KEYS, s.errs)))
        .collect();
    let voice_routing = routing::build(&s, &trunks);
    let users = s
        .tables("user")
        .into_iter()
        .filter_map(|(path, t)| {
            let u = Section::new(t, path, USER_KEYS, s.errs);
            let sip_address = u.req_parsed::<SipAddress>("sip_address");
            let display_name = u.str("display_name");
            let line_uri = u.parsed::<LineUri>("line_uri");
            let password = u.str("password").map(str::to_owned);
            let voice_routing_policy = routing::user_policy(&u, &voice_routing);
            let voicemail_answer_after = u.seconds(
                "voicemail_answer_after_seconds",
                calls.voicemail_answer_after.as_secs_f64(),
                0.0,
                600.0,
            );
            let endpoints: Vec<Endpoint> = u
                .tables("endpoint")
                .into_iter()
                .enumerate()
                .filter_map(|(i, (path, t))| {
                    build_endpoint(&Section::new(t, path, ENDPOINT_KEYS, u.errs), i)
                })
                .collect();
            let mut names = HashSet::new();
            for (i, e) in endpoints.iter().enumerate() {
                if !names.insert(e.name.as_str()) {
                    u.errs.push(
                        format!("{}.endpoint[{i}].name", u.path),
                        format!("`{}` is used by another endpoint of this user", e.name),
                    );
                }
            }
            let calls: Vec<ScheduledCall> = u
                .tables("call")
                .into_iter()
                .filter_map(|(path, t)| build_call(&Section::new(t, path, CALL_KEYS, u.errs)))
                .collect();
            if !calls.is_empty() && line_uri.is_none() && u.table.contains_key("sip_address") {
                u.err(
                    "call",
                    "a user without line_uri cannot call the PSTN (Teams gives such a user no outbound calling)",
                );
            }
            let forwarding = build_forwarding(&u.sub("forwarding", FORWARDING_KEYS));
            let sip_address = sip_address?;
            Some(User {
                display_name: display_name
                    .map(str::to_owned)
                    .unwrap_or_else(|| sip_address.user.clone()),
                sip_address,
                line_uri,
                password,
                voicemail_answer_after,
                endpoints,
                voice_routing_policy,
                calls,
                forwarding,
            })
        })
        .collect();
    let blocked_callers = s.parsed_list("blocked_callers");
    let id = id?.to_owned();
    Some(Tenant {
        name: s
            .str("name")
            .map(str::to_owned)
            .unwrap_or_else(|| id.clone()),
        id,
        domains,
        trunks,
        users,
        blocked_callers,
        voice_routing,
    })
}

/// `[tenant.user.forwarding]` (DR-FWD-1); targets naming users are checked against the
/// tenant in `check_tenants`.
fn build_forwarding(s: &Section) -> Forwarding {
    let target = |key: &str| {
        let text = s.str(key)?;
        text.parse::<ForwardTarget>()
            .map_err(|e| s.err(key, e))
            .ok()
    };
    let f = Forwarding {
        immediate: target("immediate"),
        busy: target("busy"),
        no_answer: target("no_answer"),
        // The Teams client offers 10 to 60 seconds; a lab may want less.
        no_answer_after: s.seconds("no_answer_after_seconds", 20.0, 1.0, 600.0),
        unavailable: target("unavailable"),
        also_ring: target("also_ring"),
    };
    if f.also_ring == Some(ForwardTarget::Voicemail) {
        s.err("also_ring", "rings a number or a user, not voicemail");
    }
    if f.immediate.is_some() {
        for key in ["busy", "no_answer", "unavailable", "also_ring"] {
            if s.table.contains_key(key) {
                s.err(
                    key,
                    "never used: `immediate` forwards every call before any client rings",
                );
            }
        }
    }
    if s.table.contains_key("no_answer_after_seconds") && f.no_answer.is_none() {
        s.err("no_answer_after_seconds", "needs no_answer");
    }
    f
}

fn build_call(s: &Section) -> Option<ScheduledCall> {
    let to = s.req_str("to");
    if to.is_some_and(|t| {
        t.trim().is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_graphic())
    }) {
        s.err("to", "must be a number one can dial (e.g. \"+14255550100\" or what the dial plan normalises)");
    }
    let every = s
        .table
        .contains_key("every_seconds")
        .then(|| s.seconds("every_seconds", 60.0, 0.0001, 86_400.0));
    let count = s
        .table
        .contains_key("count")
        .then(|| s.int("count", 1, 1, 1_000_000_000) as u32);
    if count.is_some_and(|c| c > 1) && every.is_none() {
        s.err("count", "more than one call needs every_seconds");
    }
    let after = s.seconds("after_seconds", 5.0, 0.0, 86_400.0);
    let ring = s.seconds("ring_seconds", 60.0, 0.0, 3_600.0);
    let talk = s.seconds("talk_seconds", 30.0, 0.0, 86_400.0);
    let private = s.bool("private", false);
    Some(ScheduledCall {
        to: to?.trim().to_owned(),
        after,
        every,
        count,
        ring,
        talk,
        private,
    })
}

fn build_endpoint(s: &Section, index: usize) -> Option<Endpoint> {
    let name = s
        .str("name")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("endpoint{}", index + 1));
    let secs = |key: &str| {
        s.table
            .contains_key(key)
            .then(|| s.seconds(key, 0.0, 0.0, 86_400.0))
    };
    let kind = match s.str("kind").unwrap_or("virtual") {
        "virtual" => {
            if s.table.contains_key("contact") {
                s.err("contact", "only meaningful with kind = \"sip\"");
            }
            let mut outcomes = Vec::new();
            if let Some(t) = secs("answer_after_seconds") {
                outcomes.push((t, Outcome::Answer));
            }
            if s.table.contains_key("reject_status") {
                let code = s.int("reject_status", 486, 300, 699) as u16;
                if !(400..=699).contains(&code) {
                    s.err(
                        "reject_status",
                        format!("{code} is not a failure status (400 to 699)"),
                    );
                }
                outcomes.push((
                    secs("reject_after_seconds").unwrap_or_default(),
                    Outcome::Reject(code),
                ));
            } else if s.table.contains_key("reject_after_seconds") {
                s.err("reject_after_seconds", "needs reject_status");
            }
            if let Some(to) = s.str("redirect_to") {
                let target = if to == "voicemail" {
                    Some(RedirectTarget::Voicemail)
                } else {
                    E164::from_str(to)
                        .map(RedirectTarget::Number)
                        .map_err(|e| s.err("redirect_to", format!("{e}; or \"voicemail\"")))
                        .ok()
                };
                if let Some(target) = target {
                    outcomes.push((
                        secs("redirect_after_seconds").unwrap_or_default(),
                        Outcome::Redirect(target),
                    ));
                }
            } else if s.table.contains_key("redirect_after_seconds") {
                s.err("redirect_after_seconds", "needs redirect_to");
            }
            if outcomes.len() > 1 {
                s.err("answer_after_seconds", "an endpoint either answers, rejects or redirects: set only one of answer_after_seconds, reject_status, redirect_to");
            }
            let hangup_after = secs("hangup_after_seconds");
            if hangup_after.is_some() && !matches!(outcomes.first(), Some((_, Outcome::Answer))) {
                s.err(
                    "hangup_after_seconds",
                    "only meaningful for an endpoint that answers",
                );
            }
            let hold_after = secs("hold_after_seconds");
            if hold_after.is_some() && !matches!(outcomes.first(), Some((_, Outcome::Answer))) {
                s.err(
                    "hold_after_seconds",
                    "only meaningful for an endpoint that answers",
                );
            }
            let hold_for = secs("hold_seconds");
            if hold_for.is_some() && hold_after.is_none() {
                s.err("hold_seconds", "needs hold_after_seconds");
            }
            let transfer_to = s.str("transfer_to").map(str::to_owned);
            if let Some(t) = &transfer_to {
                if crate::call::transfer::Target::parse(t).is_none() {
                    s.err(
                        "transfer_to",
                        format!(
                            "`{}` is neither a +E.164 number nor a SIP address",
                            t.escape_debug()
                        ),
                    );
                } else if !matches!(outcomes.first(), Some((_, Outcome::Answer))) {
                    s.err(
                        "transfer_to",
                        "only meaningful for an endpoint that answers",
                    );
                }
            }
            let transfer_after = secs("transfer_after_seconds");
            match (&transfer_to, transfer_after) {
                (Some(_), None) => s.err("transfer_to", "needs transfer_after_seconds"),
                (None, Some(_)) => s.err("transfer_after_seconds", "needs transfer_to"),
                _ => {}
            }
            let transfer_consultative = s.bool("transfer_consultative", false);
            if transfer_consultative && !transfer_to.as_deref().is_some_and(|t| t.starts_with('+'))
            {
                s.err(
                    "transfer_consultative",
                    "needs transfer_to to be a +E.164 number: the consultation call goes through an SBC",
                );
            }
            EndpointKind::Virtual(Script {
                ring_after: secs("ring_after_seconds"),
                media_answer_after: secs("media_answer_after_seconds"),
                outcome: outcomes.into_iter().next(),
                hangup_after,
                hold_after,
                hold_for,
                transfer_after,
                transfer_to,
                transfer_consultative,
                bypass: s.bool("bypass", true),
            })
        }
        "sip" => {
            for key in ENDPOINT_KEYS
                .iter()
                .filter(|k| !matches!(**k, "name" | "kind" | "contact"))
            {
                if s.table.contains_key(*key) {
                    s.err(key, "only meaningful with kind = \"virtual\"");
                }
            }
            let contact = s.str("contact").map(str::to_owned);
            if let Some(c) = &contact {
                if !c.starts_with("sip:") || c.len() < 5 {
                    s.err(
                        "contact",
                        format!("`{c}` is not a SIP URI such as sip:alice@127.0.0.1:5080"),
                    );
                }
            }
            EndpointKind::Sip { contact }
        }
        other => {
            s.err(
                "kind",
                format!("`{other}` is not an endpoint kind; use \"virtual\" or \"sip\""),
            );
            return None;
        }
    };
    Some(Endpoint { name, kind })
}

fn build_trunk(s: &Section) -> Option<Trunk> {
    let fqdn = s.req_parsed::<Fqdn>("fqdn");
    let codes: Vec<u16> = if s.table.contains_key("failover_response_codes") {
        s.array("failover_response_codes")
            .into_iter()
            .filter_map(|(path, v)| match v {
                toml::Value::Integer(c) if (300..=699).contains(c) => Some(*c as u16),
                toml::Value::Integer(c) => {
                    s.errs.push(
                        path,
                        format!("{c} is not a SIP final failure code (300 to 699)"),
                    );
                    None
                }
                other => {
                    s.errs.push(
                        path,
                        format!("expected a SIP status code, found {}", other.type_str()),
                    );
                    None
                }
            })
            .collect()
    } else {
        vec![408, 503, 504]
    };
    let max = s
        .table
        .contains_key("max_concurrent_sessions")
        .then(|| s.int("max_concurrent_sessions", 1, 1, u32::MAX as i64) as u32);
    Some(Trunk {
        fqdn: fqdn?,
        port: s.int("port", 5061, 1, 65535) as u16,
        enabled: s.bool("enabled", true),
        send_options: s.bool("send_options", true),
        media_bypass: s.bool("media_bypass", false),
        forward_call_history: s.bool("forward_call_history", false),
        forward_pai: s.bool("forward_pai", false),
        max_concurrent_sessions: max,
        failover_response_codes: codes,
        failover_time: s.seconds("failover_time_seconds", 10.0, 1.0, 600.0),
        allow_insecure: s.bool("allow_insecure", false),
        refer_fallback: s.bool("refer_fallback", false),
        trace: s.bool("trace", true),
        address: s.str("address").and_then(|a| {
            a.parse::<SocketAddr>()
                .map_err(|_| {
                    s.err(
                        "address",
                        format!("`{a}` is not ip:port (where the proxy connects to this SBC)"),
                    )
                })
                .ok()
        }),
    })
}

/// Cross-tenant rules: ids and domains unique, trunks reachable by DR-TEN-1/2, numbers
/// unique inside a tenant (but not across tenants: non-DID numbers may repeat, DR-TEN-4).
fn check_tenants(raw: &[(String, &toml::Table)], tenants: &[Tenant], errs: &Issues) {
    // `tenants` may be shorter than `raw` when a tenant failed to build; pair by id.
    let path_of = |id: &str| {
        raw.iter()
            .find(|(_, t)| t.get("id").and_then(|v| v.as_str()) == Some(id))
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| "tenant".to_owned())
    };
    let mut ids = HashSet::new();
    let mut domain_owner: HashMap<&Fqdn, &str> = HashMap::new();
    for t in tenants {
        let path = path_of(&t.id);
        if !ids.insert(t.id.as_str()) {
            errs.push(
                format!("{path}.id"),
                format!("`{}` is used by another tenant", t.id),
            );
        }
        for (i, d) in t.domains.iter().enumerate() {
            if let Some(other) = domain_owner.insert(d, &t.id) {
                errs.push(
                    format!("{path}.domains[{i}]"),
                    format!("`{d}` is already registered in tenant `{other}`; a domain belongs to one tenant"),
                );
            }
        }
    }
    for t in tenants {
        let path = path_of(&t.id);
        let mut trunk_fqdns = HashSet::new();
        for (i, k) in t.trunks.iter().enumerate() {
            if !trunk_fqdns.insert(&k.fqdn) {
                errs.push(
                    format!("{path}.trunk[{i}].fqdn"),
                    format!("`{}` appears twice in this tenant", k.fqdn),
                );
            }
            let owner = domain_owner.get(&k.fqdn).or_else(|| {
                k.fqdn
                    .parent()
                    .and_then(|p| Fqdn::from_str(p).ok())
                    .and_then(|p| domain_owner.get(&p))
            });
            match owner {
                Some(o) if *o == t.id => {}
                Some(o) => errs.push(
                    format!("{path}.trunk[{i}].fqdn"),
                    format!("`{}` resolves to tenant `{o}` by DR-TEN-1/2, not to `{}`", k.fqdn, t.id),
                ),
                None => errs.push(
                    format!("{path}.trunk[{i}].fqdn"),
                    format!(
                        "`{}` resolves to no tenant (DR-TEN-1/2): add `{}` or `{}` to this tenant's domains",
                        k.fqdn,
                        k.fqdn,
                        k.fqdn.parent().unwrap_or("its parent domain")
                    ),
                ),
            }
        }
        let mut numbers = HashMap::new();
        let mut addresses = HashSet::new();
        for (i, u) in t.users.iter().enumerate() {
            if !addresses.insert(&u.sip_address) {
                errs.push(
                    format!("{path}.user[{i}].sip_address"),
                    format!("`{}` is used by another user of this tenant", u.sip_address),
                );
            }
            for (key, target) in [
                ("immediate", &u.forwarding.immediate),
                ("busy", &u.forwarding.busy),
                ("no_answer", &u.forwarding.no_answer),
                ("unavailable", &u.forwarding.unavailable),
                ("also_ring", &u.forwarding.also_ring),
            ] {
                let at = || format!("{path}.user[{i}].forwarding.{key}");
                match target {
                    Some(ForwardTarget::User(a)) if *a == u.sip_address => {
                        errs.push(at(), "forwards the user's calls to the user")
                    }
                    Some(ForwardTarget::User(a)) if !t.users.iter().any(|o| o.sip_address == *a) => {
                        errs.push(at(), format!("`{a}` is no user of this tenant"))
                    }
                    Some(ForwardTarget::Number(_)) if u.line_uri.is_none() => errs.push(
                        at(),
                        "a user without line_uri cannot forward to the PSTN (the forwarded call goes out as theirs)",
                    ),
                    _ => {}
                }
            }
            if let Some(line) = &u.line_uri {
                if let Some(j) = numbers.insert((&line.number, &line.ext), i) {
                    errs.push(
                        format!("{path}.user[{i}].line_uri"),
                        format!("`{line}` is also the line of {path}.user[{j}]"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[listener]]
        name = "sip"
        address = "127.0.0.1:5061"

        [[tenant]]
        id = "adatum"
        domains = ["adatum.biz"]
        [[tenant.trunk]]
        fqdn = "sbc1.adatum.biz"
        [[tenant.user]]
        sip_address = "user1@adatum.biz"
        line_uri = "tel:+18338006777"
    "#;

    /// Every issue of a config text, as `path: message` (also used by the routing tests).
    pub(crate) fn issues(text: &str) -> Vec<String> {
        match Config::parse(text, "test.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.issues.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn builtin_lab_config_is_valid() {
        let c = Config::parse(BUILTIN_LAB_CONFIG, "builtin").unwrap();
        assert_eq!(c.primary_fqdn().as_str(), "sip.pstnhub.microsoft.com");
        assert!(c.tenants.iter().any(|t| t.id == "adatum"));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(c.proxy.fqdns.len(), 3);
        assert_eq!(c.proxy.profile, Profile::Faithful);
        assert_eq!(c.proxy.server, DEFAULT_SERVER);
        let l = &c.listeners[0];
        assert_eq!(l.transport, Transport::Tls);
        assert_eq!(
            l.tls.as_ref().unwrap().certificate,
            PathBuf::from("certs/proxy.pem")
        );
        assert_eq!(l.tls.as_ref().unwrap().versions, vec![TlsVersion::V1_2]);
        let k = &c.tenants[0].trunks[0];
        assert_eq!((k.port, k.send_options, k.enabled), (5061, true, true));
        assert_eq!(k.failover_response_codes, vec![408, 503, 504]);
        assert_eq!(k.failover_time, Duration::from_secs(10));
        assert_eq!(c.limits.max_header_bytes, 16 * 1024);
        assert_eq!(c.limits.max_body_bytes, 64 * 1024);
    }

    #[test]
    fn every_error_is_listed_with_its_path() {
        let text = r#"
            bogus = 1
            [proxy]
            profile = "loud"
            [[listener]]
            name = "sip"
            address = "localhost"
            transport = "udp"
            [[tenant]]
            id = "adatum"
            domains = ["10.0.0.1"]
            [[tenant.trunk]]
            fqdn = "sbc1.adatum.biz"
            port = 70000
            send_option = false
            [[tenant.user]]
            sip_address = "user1@adatum.biz"
            line_uri = "18338006777"
        "#;
        let got = issues(text);
        let expect = [
            "bogus: unknown field",
            "proxy.profile: `loud` is not a profile",
            "listener[0].address: `localhost` is not an address:port",
            "listener[0].transport: `udp` is not a transport",
            "tenant[0].domains[0]: `10.0.0.1` is an IP address",
            "tenant[0].trunk[0].port: 70000 is out of range",
            "tenant[0].trunk[0].send_option: unknown field",
            "tenant[0].user[0].line_uri: `18338006777` must start with `+`",
        ];
        for e in expect {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing `{e}` in {got:#?}"
            );
        }
    }

    #[test]
    fn api_address_and_token_are_checked() {
        let text = r#"
            [api]
            address = "localhost:8080"
            token = "two words"
            [[listener]]
            name = "sip"
            address = "127.0.0.1:5061"
            transport = "tcp"
        "#;
        let got = issues(text);
        for e in [
            "api.address: `localhost:8080` is not an address:port (or \"off\")",
            "api.token: must not contain spaces",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing `{e}` in {got:#?}"
            );
        }
        let off = BUILTIN_LAB_CONFIG.replace("address = \"127.0.0.1:8080\"", "address = \"off\"");
        let c = Config::parse(&off, "t").expect("valid");
        assert_eq!(c.api.address, None);
        let lab = Config::parse(BUILTIN_LAB_CONFIG, "t").expect("valid");
        assert_eq!(lab.api.address, Some(DEFAULT_API_ADDRESS));
        assert_eq!(lab.api.token, None);
    }

    /// DR-FWD-1: forwarding rules are typed and checked against the tenant, by path.
    #[test]
    fn dr_fwd_1_forwarding_rules_are_checked() {
        let c = Config::parse(BUILTIN_LAB_CONFIG, "builtin").unwrap();
        let fwd = c.tenants[0]
            .users
            .iter()
            .find(|u| u.sip_address.to_string() == "forward@adatum.biz")
            .expect("the lab's forwarding user");
        assert_eq!(
            fwd.forwarding.immediate,
            Some(ForwardTarget::Number("+14255550123".parse().unwrap()))
        );
        let user = |extra: &str| {
            format!("{MINIMAL}\n[tenant.user.forwarding]\n{extra}\n[[tenant.user]]\nsip_address = \"noline@adatum.biz\"\n[tenant.user.forwarding]\nbusy = \"+14255550123\"\n")
        };
        let cases = [
            ("immediate = \"nobody\"", "tenant[0].user[0].forwarding.immediate: `nobody` is none of `voicemail`, a +E.164 number, a user's SIP address"),
            ("immediate = \"user1@adatum.biz\"", "tenant[0].user[0].forwarding.immediate: forwards the user's calls to the user"),
            ("busy = \"ghost@adatum.biz\"", "tenant[0].user[0].forwarding.busy: `ghost@adatum.biz` is no user of this tenant"),
            ("immediate = \"voicemail\"\nbusy = \"voicemail\"", "tenant[0].user[0].forwarding.busy: never used: `immediate` forwards every call"),
            ("no_answer_after_seconds = 10", "tenant[0].user[0].forwarding.no_answer_after_seconds: needs no_answer"),
            ("no_answer = \"voicemail\"\nno_answer_after_seconds = 0", "tenant[0].user[0].forwarding.no_answer_after_seconds:"),
            ("also_ring = \"voicemail\"", "tenant[0].user[0].forwarding.also_ring: rings a number or a user, not voicemail"),
            ("immediate = \"voicemail\"\nalso_ring = \"+14255550123\"", "tenant[0].user[0].forwarding.also_ring: never used"),
            ("unavailable = \"voicemail\"", "tenant[0].user[1].forwarding.busy: a user without line_uri cannot forward to the PSTN"),
        ];
        for (extra, want) in cases {
            let got = issues(&user(extra));
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{extra}: missing `{want}` in {got:#?}"
            );
        }
    }

    #[test]
    fn endpoints_are_typed_and_contradictions_reported() {
        let c = Config::parse(BUILTIN_LAB_CONFIG, "builtin").unwrap();
        let user1 = &c.tenants[0].users[0];
        assert_eq!(user1.endpoints.len(), 3);
        let EndpointKind::Virtual(desktop) = &user1.endpoints[0].kind else {
            panic!("virtual")
        };
        assert_eq!(desktop.ring_after, Some(Duration::from_millis(200)));
        assert_eq!(
            desktop.outcome,
            Some((Duration::from_secs(2), Outcome::Answer))
        );
        assert_eq!(user1.endpoints[2].kind, EndpointKind::Sip { contact: None });

        let bad = format!(
            "{MINIMAL}\n[[tenant.user.endpoint]]\nanswer_after_seconds = 1\nreject_status = 486\nhangup_after_seconds = 3\n\
             [[tenant.user.endpoint]]\nkind = \"robot\"\n\
             [[tenant.user.endpoint]]\nkind = \"sip\"\nring_after_seconds = 1\n\
             [[tenant.user.endpoint]]\nredirect_to = \"12345\"\n\
             [[tenant.user.endpoint]]\nreject_status = 486\nhold_after_seconds = 1\n\
             [[tenant.user.endpoint]]\nanswer_after_seconds = 1\nhold_seconds = 5\n\
             [[tenant.user.endpoint]]\nanswer_after_seconds = 1\ntransfer_to = \"4255550123\"\ntransfer_after_seconds = 2\n\
             [[tenant.user.endpoint]]\nanswer_after_seconds = 1\ntransfer_to = \"+14255550123\"\n\
             [[tenant.user.endpoint]]\nanswer_after_seconds = 1\ntransfer_to = \"user2@adatum.biz\"\n\
             transfer_after_seconds = 2\ntransfer_consultative = true\n"
        );
        let got = issues(&bad);
        for e in [
            "tenant[0].user[0].endpoint[0].answer_after_seconds: an endpoint either answers, rejects or redirects",
            "tenant[0].user[0].endpoint[1].kind: `robot` is not an endpoint kind",
            "tenant[0].user[0].endpoint[2].ring_after_seconds: only meaningful with kind = \"virtual\"",
            "tenant[0].user[0].endpoint[3].redirect_to: `12345` must start with `+`",
            "tenant[0].user[0].endpoint[4].hold_after_seconds: only meaningful for an endpoint that answers",
            "tenant[0].user[0].endpoint[5].hold_seconds: needs hold_after_seconds",
            "tenant[0].user[0].endpoint[6].transfer_to: `4255550123` is neither a +E.164 number nor a SIP address",
            "tenant[0].user[0].endpoint[7].transfer_to: needs transfer_after_seconds",
            "tenant[0].user[0].endpoint[8].transfer_consultative: needs transfer_to to be a +E.164 number",
        ] {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing `{e}` in {got:#?}");
        }
    }

    /// DR-OUT-1: `[[tenant.user.call]]`, a scripted caller's calls, typed and checked.
    #[test]
    fn dr_out_1_scheduled_calls_are_typed_and_checked() {
        let good = format!(
            "{MINIMAL}\n[[tenant.user.call]]\nto = \"+14255550100\"\nafter_seconds = 2\nevery_seconds = 30\ncount = 3\ntalk_seconds = 10\nprivate = true\n\
             [[tenant.user.call]]\nto = \"4255550100\"\n"
        );
        let c = Config::parse(&good, "t").unwrap();
        let calls = &c.tenants[0].users[0].calls;
        assert_eq!(
            calls[0],
            ScheduledCall {
                to: "+14255550100".into(),
                after: Duration::from_secs(2),
                every: Some(Duration::from_secs(30)),
                count: Some(3),
                ring: Duration::from_secs(60),
                talk: Duration::from_secs(10),
                private: true,
            }
        );
        assert_eq!(calls[1].after, Duration::from_secs(5));
        assert_eq!(calls[1].every, None);

        let bad = format!(
            "{MINIMAL}\n[[tenant.user.call]]\nafter_seconds = -1\n\
             [[tenant.user.call]]\nto = \"+1 425\"\ncount = 2\nring = 5\n\
             [[tenant.user]]\nsip_address = \"nonumber@adatum.biz\"\n[[tenant.user.call]]\nto = \"+14255550100\"\n"
        );
        let got = issues(&bad);
        for e in [
            "tenant[0].user[0].call[0].to: missing (required)",
            "tenant[0].user[0].call[0].after_seconds: -1 seconds is out of range",
            "tenant[0].user[0].call[1].to: must be a number one can dial",
            "tenant[0].user[0].call[1].count: more than one call needs every_seconds",
            "tenant[0].user[0].call[1].ring: unknown field",
            "tenant[0].user[1].call: a user without line_uri cannot call the PSTN",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing `{e}` in {got:#?}"
            );
        }
    }

    #[test]
    fn endpoint_auth_throttle_keys() {
        let c = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(c.endpoints.auth_failures, 10);
        assert_eq!(c.endpoints.auth_window, Duration::from_secs(60));
        assert_eq!(c.endpoints.auth_lockout, Duration::from_secs(300));
        let off = format!(
            "{MINIMAL}\n[endpoints]\nauth_failures = 0\nauth_window_seconds = 0.5\nauth_lockout_seconds = 2\n"
        );
        let c = Config::parse(&off, "t").unwrap();
        assert_eq!(c.endpoints.auth_failures, 0);
        assert_eq!(c.endpoints.auth_window, Duration::from_millis(500));
        assert_eq!(c.endpoints.auth_lockout, Duration::from_secs(2));
        let bad = format!(
            "{MINIMAL}\n[endpoints]\nauth_failures = -1\nauth_window_seconds = 0\nauth_lockout_seconds = \"5m\"\n"
        );
        let got = issues(&bad);
        for e in [
            "endpoints.auth_failures: -1 is out of range",
            "endpoints.auth_window_seconds: 0 seconds is out of range",
            "endpoints.auth_lockout_seconds: expected a number of seconds",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing `{e}` in {got:#?}"
            );
        }
    }

    /// The endpoint listener's digest algorithms: SHA-256 then MD5 by default, MD5
    /// alone for old phones, in the order given; anything else is an error by path.
    #[test]
    fn endpoint_digest_algorithms() {
        use crate::endpoint::digest::{Algorithm, Offered};
        let c = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(c.endpoints.digest_algorithms, Offered::DEFAULT);
        for (list, want) in [
            ("[\"MD5\"]", vec![Algorithm::Md5]),
            (
                "[\"md5\", \"SHA-256\"]",
                vec![Algorithm::Md5, Algorithm::Sha256],
            ),
            ("[\"SHA-256\"]", vec![Algorithm::Sha256]),
        ] {
            let text = format!("{MINIMAL}\n[endpoints]\ndigest_algorithms = {list}\n");
            let c = Config::parse(&text, "t").unwrap();
            let got: Vec<Algorithm> = c.endpoints.digest_algorithms.iter().collect();
            assert_eq!(got, want, "{list}");
        }
        for (list, e) in [
            ("[]", "endpoints.digest_algorithms: one or both of"),
            (
                "[\"MD5\", \"MD5\"]",
                "endpoints.digest_algorithms: one or both of",
            ),
            (
                "[\"SHA-512-256\"]",
                "endpoints.digest_algorithms[0]: `SHA-512-256` is no digest algorithm",
            ),
            ("\"MD5\"", "endpoints.digest_algorithms: expected"),
        ] {
            let got = issues(&format!(
                "{MINIMAL}\n[endpoints]\ndigest_algorithms = {list}\n"
            ));
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "{list}: missing `{e}` in {got:#?}"
            );
        }
    }

    #[test]
    fn syntax_error_names_the_file() {
        let got = issues("[[listener]\n");
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("test.toml: not valid TOML"), "{got:?}");
    }

    #[test]
    fn trunk_must_resolve_to_its_own_tenant() {
        let text = MINIMAL.replace("sbc1.adatum.biz", "sbc1.other.biz");
        let got = issues(&text);
        assert!(
            got.iter().any(|g| g
                .starts_with("tenant[0].trunk[0].fqdn: `sbc1.other.biz` resolves to no tenant")),
            "{got:?}"
        );
    }

    #[test]
    fn dr_ten_4_same_number_in_two_tenants_is_allowed_but_not_twice_in_one() {
        let two = format!(
            "{MINIMAL}\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n[[tenant.user]]\nsip_address = \"a@contoso.com\"\nline_uri = \"tel:+18338006777\"\n"
        );
        assert!(issues(&two).is_empty(), "{:?}", issues(&two));
        let dup = format!("{MINIMAL}\n[[tenant.user]]\nsip_address = \"u2@adatum.biz\"\nline_uri = \"tel:+18338006777\"\n");
        assert!(issues(&dup)
            .iter()
            .any(|g| g.starts_with("tenant[0].user[1].line_uri")));
    }

    #[test]
    fn domains_belong_to_one_tenant() {
        let text = format!("{MINIMAL}\n[[tenant]]\nid = \"x\"\ndomains = [\"ADATUM.biz\"]\n");
        assert!(issues(&text)
            .iter()
            .any(|g| g.starts_with("tenant[1].domains[0]: `adatum.biz` is already registered")));
    }

    #[test]
    fn fqdn_parsing() {
        for ok in [
            "a.b",
            "SBC1.Adatum.Biz",
            "x-1.y.z.",
            "sip.pstnhub.microsoft.com",
        ] {
            assert!(Fqdn::from_str(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "localhost",
            "1.2.3.4",
            "::1",
            "a..b",
            "-a.b",
            "a_b.c",
            "a.123",
            "*.a.com",
        ] {
            assert!(Fqdn::from_str(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Fqdn::from_str("SBC1.Adatum.Biz.").unwrap().as_str(),
            "sbc1.adatum.biz"
        );
        assert_eq!(
            Fqdn::from_str("sbc12.adatum.biz").unwrap().parent(),
            Some("adatum.biz")
        );
        assert_eq!(Fqdn::from_str("adatum.biz").unwrap().parent(), None);
        assert_eq!(
            Fqdn::parse_wildcard("*.Contoso.com").unwrap(),
            "*.contoso.com"
        );
    }

    #[test]
    fn e164_and_line_uri() {
        assert_eq!(E164::parse_dialled("+1 (833)").map(|e| e.0), None);
        assert_eq!(
            E164::parse_dialled("+1-833-800.6777").unwrap().as_str(),
            "+18338006777"
        );
        assert_eq!(E164::parse_dialled("18338006777"), None);
        assert_eq!(E164::parse_dialled("+"), None);
        assert_eq!(E164::parse_dialled("+1234567890123456"), None);
        let l = LineUri::from_str("tel:+1001;ext=12").unwrap();
        assert_eq!((l.number.as_str(), l.ext.as_deref()), ("+1001", Some("12")));
        assert_eq!(l.to_string(), "tel:+1001;ext=12");
        assert!(LineUri::from_str("tel:+1001;foo=1").is_err());
        assert!(LineUri::from_str("+18338006777").is_ok());
    }

    #[test]
    fn number_patterns() {
        let n = |s: &str| E164::from_str(s).unwrap();
        let p = NumberPattern::from_str("+1555*").unwrap();
        assert!(p.matches(&n("+15551234567")));
        assert!(!p.matches(&n("+16551234567")));
        let exact = NumberPattern::from_str("+1716871278?").unwrap();
        assert!(exact.matches(&n("+17168712781")));
        assert!(!exact.matches(&n("+171687127811")));
        assert!(NumberPattern::from_str("1555*").is_err());
        assert!(NumberPattern::from_str("+15a").is_err());
    }

    #[test]
    fn sip_address_parsing() {
        let a = SipAddress::from_str("sip:User1@Adatum.biz").unwrap();
        assert_eq!(a.to_string(), "user1@adatum.biz");
        assert!(SipAddress::from_str("@adatum.biz").is_err());
        assert!(SipAddress::from_str("user1").is_err());
    }
}
