//! RFC 4028 session timers for drhub: header parsing, negotiation and a sans-IO timer.
//!
//! Requirements covered:
//! - DR-ST-1: on non-bypass calls drhub always runs a session timer (`Supported: timer`,
//!   `Session-Expires`, `Min-SE`); the SBC's use of it is optional. Bypass calls simply
//!   never call into this module.
//! - DR-ST-2: the refresher refreshes at half the interval; without a refresh the session
//!   is torn down (the caller sends BYE on both legs when [`Action::Expire`] comes out).
//! - DR-ST-3: `422 Session Interval Too Small` is produced ([`UasDecision::TooSmall`]) and
//!   consumed ([`on_422`]) per RFC 4028.
//!
//! drhub is UAS towards an SBC that calls in ([`negotiate_uas`]) and UAC towards the SBC
//! for outbound calls and for its own refreshes ([`uac_request_headers`], [`on_422`],
//! [`negotiate_uac`]). The `refresher` wire value names the UAC or UAS of the transaction
//! that carries it (§9 table, §7.2), so an in-dialog request sent by the original callee
//! uses `uac` for itself; [`Role`] is the transaction-independent view.
//!
//! Everything here is std-only and does no I/O: header values come in as unfolded strings,
//! header values go out as strings, and time is passed in as [`Instant`].

use std::fmt;
use std::time::{Duration, Instant};

/// The option tag for `Supported`/`Require` (§3).
pub const OPTION_TAG: &str = "timer";
/// Absolute lowest `Min-SE` (§5: the value MUST NOT be less than 90 seconds; also its default).
pub const ABSOLUTE_MIN_SE: u32 = 90;
/// Recommended session interval (§4).
pub const DEFAULT_SESSION_EXPIRES: u32 = 1800;
/// Cap on how long before expiry the non-refresher gives up (§10: min(32 s, interval/3)).
const BYE_MARGIN_CAP: Duration = Duration::from_secs(32);
/// Shortest wait before retrying a failed refresh; covers the 2.1-4 s wait RFC 3261 §14.1
/// asks for after a 491, without needing randomness.
const RETRY_MIN: Duration = Duration::from_secs(4);

/// drhub's session timer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Preferred session interval in seconds (default 1800).
    pub session_expires: u32,
    /// Smallest session interval drhub accepts, in seconds (default 90).
    pub min_se: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            session_expires: DEFAULT_SESSION_EXPIRES,
            min_se: ABSOLUTE_MIN_SE,
        }
    }
}

impl Config {
    /// drhub's Min-SE. RFC 4028 §5 puts the floor at 90 s, the default; a lab may
    /// configure less to watch sessions expire in seconds (`drhub check` warns).
    pub fn floor(&self) -> u32 {
        self.min_se.max(1)
    }

    /// drhub's effective preferred interval: `session_expires`, raised to [`Config::floor`]
    /// (§7.1: Session-Expires MUST be >= Min-SE).
    pub fn preferred(&self) -> u32 {
        self.session_expires.max(self.floor())
    }
}

/// The `refresher` parameter value: the UAC or UAS of the transaction carrying it (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refresher {
    /// `refresher=uac`
    Uac,
    /// `refresher=uas`
    Uas,
}

impl Refresher {
    /// The wire token, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }

    /// Who refreshes when drhub is the UAS of the transaction carrying this value.
    pub fn role_as_uas(self) -> Role {
        match self {
            Refresher::Uac => Role::Remote,
            Refresher::Uas => Role::Local,
        }
    }

    /// Who refreshes when drhub is the UAC of the transaction carrying this value.
    pub fn role_as_uac(self) -> Role {
        match self {
            Refresher::Uac => Role::Local,
            Refresher::Uas => Role::Remote,
        }
    }
}

impl fmt::Display for Refresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who refreshes, from drhub's point of view (independent of transaction direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// drhub sends the refreshes.
    Local,
    /// The peer (the SBC) sends the refreshes; drhub watches for them.
    Remote,
}

/// A parsed `Session-Expires` value (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// Session interval in seconds, 1..=2^32-1.
    pub delta: u32,
    /// The `refresher` parameter, if present.
    pub refresher: Option<Refresher>,
}

/// Why a `Session-Expires` or `Min-SE` value could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The value is empty or only whitespace.
    Empty,
    /// delta-seconds is not 1*DIGIT.
    InvalidDelta,
    /// delta-seconds is 0.
    Zero,
    /// delta-seconds exceeds 2^32-1.
    Overflow,
    /// A `;` with no parameter after it.
    EmptyParam,
    /// A parameter that is not `token [ = token / host / quoted-string ]`.
    InvalidParam,
    /// `refresher` without a value, or with a value other than `uac`/`uas`.
    InvalidRefresher,
    /// More than one `refresher` parameter.
    DuplicateRefresher,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Empty => "empty value",
            ParseError::InvalidDelta => "delta-seconds is not a decimal number",
            ParseError::Zero => "delta-seconds is zero",
            ParseError::Overflow => "delta-seconds exceeds 2^32-1",
            ParseError::EmptyParam => "empty parameter",
            ParseError::InvalidParam => "malformed parameter",
            ParseError::InvalidRefresher => "refresher is neither uac nor uas",
            ParseError::DuplicateRefresher => "refresher given more than once",
        })
    }
}

impl std::error::Error for ParseError {}

/// Parses a `Session-Expires` value such as `1800;refresher=uac` (§4).
///
/// Accepts linear whitespace around tokens, parameter names and the refresher value in any
/// case, and ignores unknown parameters; rejects a delta outside 1..=2^32-1.
pub fn parse_session_expires(v: &str) -> Result<SessionExpires, ParseError> {
    let (delta, params) = split_value(v)?;
    let delta = parse_delta(delta)?;
    let mut refresher = None;
    for p in params {
        let (name, value) = parse_param(p)?;
        if !name.eq_ignore_ascii_case("refresher") {
            continue; // generic-param: ignored
        }
        let r = match value {
            Some(x) if x.eq_ignore_ascii_case("uac") => Refresher::Uac,
            Some(x) if x.eq_ignore_ascii_case("uas") => Refresher::Uas,
            _ => return Err(ParseError::InvalidRefresher),
        };
        if refresher.replace(r).is_some() {
            return Err(ParseError::DuplicateRefresher);
        }
    }
    Ok(SessionExpires { delta, refresher })
}

/// Parses a `Min-SE` value such as `90` (§5); parameters are checked for syntax and ignored.
pub fn parse_min_se(v: &str) -> Result<u32, ParseError> {
    let (delta, params) = split_value(v)?;
    let delta = parse_delta(delta)?;
    for p in params {
        parse_param(p)?;
    }
    Ok(delta)
}

fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

/// Splits `delta *(SEMI param)` on semicolons outside quoted strings.
fn split_value(v: &str) -> Result<(&str, Vec<&str>), ParseError> {
    if v.trim_matches(is_lws).is_empty() {
        return Err(ParseError::Empty);
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in v.char_indices() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == ';' {
            parts.push(&v[start..i]);
            start = i + 1;
        }
    }
    if in_quotes {
        return Err(ParseError::InvalidParam);
    }
    parts.push(&v[start..]);
    let mut it = parts.into_iter();
    let delta = it.next().unwrap_or("");
    Ok((delta, it.collect()))
}

fn parse_delta(s: &str) -> Result<u32, ParseError> {
    let s = s.trim_matches(is_lws);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::InvalidDelta);
    }
    let mut n: u32 = 0;
    for b in s.bytes() {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(b - b'0')))
            .ok_or(ParseError::Overflow)?;
    }
    if n == 0 {
        return Err(ParseError::Zero);
    }
    Ok(n)
}

/// Checks one `generic-param` and returns its trimmed name and value.
fn parse_param(p: &str) -> Result<(&str, Option<&str>), ParseError> {
    let p = p.trim_matches(is_lws);
    if p.is_empty() {
        return Err(ParseError::EmptyParam);
    }
    let (name, value) = match p.split_once('=') {
        Some((n, v)) => (n.trim_matches(is_lws), Some(v.trim_matches(is_lws))),
        None => (p, None),
    };
    if name.is_empty() || !name.chars().all(is_token_char) {
        return Err(ParseError::InvalidParam);
    }
    if let Some(v) = value {
        let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
        let plain = !v.is_empty() && v.chars().all(|c| is_token_char(c) || "[]:".contains(c));
        if !(quoted || plain) {
            return Err(ParseError::InvalidParam);
        }
    }
    Ok((name, value))
}

/// What the UAS side needs from a request (INVITE or UPDATE, initial or in-dialog).
///
/// The caller extracts the header values (already unfolded) from its own parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestTimers<'a> {
    /// `Supported` lists `timer`.
    pub supported_timer: bool,
    /// `Require` lists `timer` (implies support).
    pub require_timer: bool,
    /// The `Session-Expires` (or compact `x`) value, if present.
    pub session_expires: Option<&'a str>,
    /// The `Min-SE` value, if present.
    pub min_se: Option<&'a str>,
}

/// The UAS outcome for a session refresh request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasDecision {
    /// Answer 422 with this `Min-SE` value (§9: request's Session-Expires below our Min-SE).
    TooSmall {
        /// Value for the 422's `Min-SE` header.
        min_se: u32,
    },
    /// Use a session timer: the headers to put in the 2xx and the negotiated state.
    Accept(Negotiated),
    /// Malformed `Session-Expires`/`Min-SE`: answer 400 with this reason phrase.
    Malformed(&'static str),
}

/// A negotiated session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Session interval in seconds.
    pub interval: u32,
    /// The wire refresher for the transaction this came from.
    pub refresher: Refresher,
    /// Who refreshes, from drhub's point of view.
    pub local: Role,
    /// From [`negotiate_uas`]: put `Require: timer` in the 2xx (§9). From [`negotiate_uac`]:
    /// the 2xx carried `Require: timer` (informational).
    pub require: bool,
    /// The dialog's Min-SE floor, to repeat in later refresh requests (§7.4).
    pub min_se: u32,
}

impl Negotiated {
    /// The `Session-Expires` value for the 2xx, e.g. `1800;refresher=uas` (§9: always
    /// with a refresher).
    pub fn session_expires_header(&self) -> String {
        format!("{};refresher={}", self.interval, self.refresher)
    }

    /// Whether drhub is the refresher.
    pub fn is_local_refresher(&self) -> bool {
        self.local == Role::Local
    }
}

/// Decides the UAS answer to an INVITE or UPDATE (initial or in-dialog), RFC 4028 §9.
///
/// drhub policy (DR-ST-1): a timer is always used, even when the UAC does not support one;
/// the UAC's interval is kept when it is at least the floor (no reduction); when the UAC
/// supports timers but names no refresher, drhub picks `uac`.
pub fn negotiate_uas(req: &RequestTimers<'_>, cfg: &Config) -> UasDecision {
    // RFC 3261 §8.2 / §21.4.1: a header we cannot read makes a bad request.
    let se = match req.session_expires.map(parse_session_expires).transpose() {
        Ok(se) => se,
        Err(_) => return UasDecision::Malformed("Invalid Session-Expires"),
    };
    let req_min_se = match req.min_se.map(parse_min_se).transpose() {
        Ok(m) => m,
        Err(_) => return UasDecision::Malformed("Invalid Min-SE"),
    };
    // Require: timer cannot come from a UAC that does not support timer.
    let uac_supports = req.supported_timer || req.require_timer;
    // §5: the request's Min-SE can only raise the floor, never lower ours. (Its absence
    // means 90 to the UAC; that matters only for intervals drhub picks, which start at
    // the configured preference.)
    let floor = cfg.floor().max(req_min_se.unwrap_or(0));

    let interval = match se {
        // §9: "the UAS MAY reject the INVITE request with a 422 ... if the session interval
        // in the Session-Expires header field is smaller than the minimum interval defined by
        // the UAS' local policy"; the 422 carries the Min-SE the retry must meet, which is
        // the larger of ours and the request's own.
        Some(se) if se.delta < floor && uac_supports => {
            return UasDecision::TooSmall { min_se: floor }
        }
        // §9 + erratum 1687 (the §8.1 rule applied to a UAS): a UAC without timer support
        // cannot usefully be rejected with 422, so raise the interval to the floor instead.
        Some(se) if se.delta < floor => floor,
        // §9: the UAS MAY reduce (not below Min-SE) and MUST NOT increase; drhub keeps it.
        Some(se) => se.delta,
        // §9: a UAS may add Session-Expires itself, not below the request's Min-SE.
        None => cfg.preferred().max(floor),
    };

    // §9 table: supported+uac -> uac, supported+uas -> uas, supported+none -> uac or uas
    // (drhub: uac), not supported -> uas.
    let refresher = if uac_supports {
        se.and_then(|s| s.refresher).unwrap_or(Refresher::Uac)
    } else {
        Refresher::Uas
    };

    UasDecision::Accept(Negotiated {
        interval,
        refresher,
        local: refresher.role_as_uas(),
        // §9: refresher=uac MUST carry Require: timer, refresher=uas SHOULD when the UAC
        // supports timer; never Require an extension the UAC did not declare.
        require: uac_supports,
        min_se: floor,
    })
}

/// The timer headers for a request drhub sends as UAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UacHeaders {
    /// `Session-Expires` interval in seconds.
    pub session_expires: u32,
    /// `Min-SE` value in seconds.
    pub min_se: u32,
    /// The `refresher` parameter, if any.
    pub refresher: Option<Refresher>,
    /// These headers are already the retry after a 422 (a further 422 is final).
    pub after_422: bool,
}

impl UacHeaders {
    /// The `Supported` option tag to add (§7.1: MUST in every request).
    pub const SUPPORTED: &'static str = OPTION_TAG;

    /// The `Session-Expires` value, e.g. `1800` or `1800;refresher=uac`.
    pub fn session_expires_header(&self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.session_expires, r),
            None => self.session_expires.to_string(),
        }
    }

    /// The `Min-SE` value, e.g. `90`.
    pub fn min_se_header(&self) -> String {
        self.min_se.to_string()
    }
}

/// Headers for an initial INVITE drhub sends as UAC (§7.1).
///
/// `Session-Expires` = max(preferred, floor) and `Min-SE` = max(cfg floor, floor), where
/// `min_se_floor` is the largest Min-SE learnt so far (0 or 90 when none). No refresher
/// parameter: §7.1 RECOMMENDS leaving the choice to the UAS.
pub fn uac_request_headers(cfg: &Config, min_se_floor: u32) -> UacHeaders {
    let min_se = cfg.floor().max(min_se_floor);
    UacHeaders {
        session_expires: cfg.preferred().max(min_se),
        min_se,
        refresher: None,
        after_422: false,
    }
}

/// Why a 422 ends the attempt instead of producing a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final422 {
    /// The 422 has no `Min-SE` (§6 says it MUST).
    NoMinSe,
    /// The 422's `Min-SE` is malformed.
    BadMinSe(ParseError),
    /// The 422's `Min-SE` does not exceed the Session-Expires that was sent.
    NotRaised {
        /// The 422's Min-SE value.
        min_se: u32,
    },
    /// The request was already the retry after a 422 (drhub retries once).
    AlreadyRetried,
}

impl fmt::Display for Final422 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Final422::NoMinSe => f.write_str("422 without Min-SE"),
            Final422::BadMinSe(e) => write!(f, "422 with malformed Min-SE: {e}"),
            Final422::NotRaised { min_se } => {
                write!(f, "422 Min-SE {min_se} does not raise the interval sent")
            }
            Final422::AlreadyRetried => f.write_str("second 422 for the same request"),
        }
    }
}

impl std::error::Error for Final422 {}

/// Handles a 422 to a request drhub sent with `sent` (§7.3 initial, §7.4 in-dialog).
///
/// Returns the headers for the one retry: `Session-Expires` and `Min-SE` raised to the
/// 422's `Min-SE`, refresher unchanged. A 422 without a usable `Min-SE`, one that does not
/// raise the interval, or a second 422 is final.
pub fn on_422(min_se_header: Option<&str>, sent: &UacHeaders) -> Result<UacHeaders, Final422> {
    if sent.after_422 {
        return Err(Final422::AlreadyRetried);
    }
    let min_se =
        parse_min_se(min_se_header.ok_or(Final422::NoMinSe)?).map_err(Final422::BadMinSe)?;
    // §7.3: the retry carries Session-Expires >= the 422's Min-SE; if what we sent already
    // met it, retrying cannot succeed.
    if min_se <= sent.session_expires {
        return Err(Final422::NotRaised { min_se });
    }
    // §7.4: Min-SE is the largest of all 422 Min-SE values for this call; here that is the
    // new one, since it exceeds the Session-Expires sent, itself >= the Min-SE sent.
    let min_se = min_se.max(sent.min_se);
    Ok(UacHeaders {
        session_expires: min_se,
        min_se,
        refresher: sent.refresher,
        after_422: true,
    })
}

/// What the UAC side needs from a 2xx to an INVITE or UPDATE drhub sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseTimers<'a> {
    /// `Require` lists `timer`.
    pub require_timer: bool,
    /// The `Session-Expires` value, if present.
    pub session_expires: Option<&'a str>,
}

/// Turns the 2xx to a request sent with `sent` into the negotiated timer (§7.2).
///
/// Never declines: drhub always runs a timer on non-bypass calls. With a readable
/// `Session-Expires` its interval and refresher are used (an absent refresher means `uac`,
/// drhub). Without one (or with an unreadable one) drhub refreshes alone with the interval
/// it sent (§7.2: "as if the Session-Expires header field were in the 2xx response, and its
/// value was the same as the one in the request (but with a refresher parameter of 'uac')").
pub fn negotiate_uac(resp: &ResponseTimers<'_>, sent: &UacHeaders) -> Negotiated {
    let parsed = resp
        .session_expires
        .and_then(|v| parse_session_expires(v).ok());
    let (interval, refresher) = match parsed {
        // §7.2: "The UAC MUST set the identity of the refresher to the value of this
        // parameter"; the parameter is mandatory in a 2xx (§9), so when a broken UAS omits it
        // drhub refreshes: a double refresh is harmless, a missing one ends the call.
        Some(se) => (se.delta, se.refresher.unwrap_or(Refresher::Uac)),
        // §7.2: UAS without timer support; the UAC may still refresh on its own.
        None => (sent.session_expires, Refresher::Uac),
    };
    Negotiated {
        interval,
        refresher,
        local: refresher.role_as_uac(),
        require: resp.require_timer,
        min_se: sent.min_se,
    }
}

/// Work the caller must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// drhub is refresher: send a re-INVITE or UPDATE now (§10), headers from
    /// [`SessionTimer::refresh_headers`].
    Refresh,
    /// The session expired: send BYE on both legs (DR-ST-2, §10). The timer is done.
    Expire,
}

/// The per-dialog session timer, sans IO.
///
/// Start it (`new`) and restart it (`refreshed`) when the 2xx of a session refresh request
/// is sent or received, in either direction.
#[derive(Debug, Clone)]
pub struct SessionTimer {
    negotiated: Negotiated,
    expire_at: Instant,
    /// Next local refresh; `None` when the peer refreshes or a refresh is in flight.
    refresh_at: Option<Instant>,
    expired: bool,
}

/// §10: refresh once half the session interval has elapsed.
fn refresh_delay(interval: u32) -> Duration {
    Duration::from_secs(u64::from(interval)) / 2
}

/// §10: give up "the minimum of 32 seconds and one third of the session interval" before
/// the session expires.
fn expire_delay(interval: u32) -> Duration {
    let i = Duration::from_secs(u64::from(interval));
    i - (i / 3).min(BYE_MARGIN_CAP)
}

impl SessionTimer {
    /// Starts the timer at `now` (when the 2xx that negotiated `n` was sent or received).
    pub fn new(n: Negotiated, now: Instant) -> Self {
        let mut t = SessionTimer {
            negotiated: n,
            expire_at: now,
            refresh_at: None,
            expired: false,
        };
        t.restart(n, now);
        t
    }

    fn restart(&mut self, n: Negotiated, now: Instant) {
        self.negotiated = n;
        self.expire_at = now + expire_delay(n.interval);
        self.refresh_at = match n.local {
            // §10 (and §9 for a UAS refresher): refresh at half the interval.
            Role::Local => Some(now + refresh_delay(n.interval)),
            Role::Remote => None,
        };
    }

    /// A refresh succeeded (2xx to a re-INVITE/UPDATE carrying Session-Expires, either
    /// direction): restart with the new values. No effect once the session has expired.
    pub fn refreshed(&mut self, n: Negotiated, now: Instant) {
        if !self.expired {
            self.restart(n, now);
        }
    }

    /// The next instant `handle_timeout` has work; `None` once expired.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.expired {
            return None;
        }
        Some(match self.refresh_at {
            Some(r) if r < self.expire_at => r,
            _ => self.expire_at,
        })
    }

    /// Due work at `now`; `None` before any deadline (never fires early).
    ///
    /// `Refresh` when drhub refreshes and half the interval passed (§10). `Expire` at
    /// `interval - min(32, interval/3)` after the last refresh without a new one: for a
    /// remote refresher this is §10's BYE point; for a local one whose refresh did not
    /// succeed drhub uses the same point (§10 only says "before the session expires").
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Action> {
        if self.expired {
            return None;
        }
        // Checked first: a caller that polls late after the expiry must not refresh a
        // session the peer may already have torn down.
        if now >= self.expire_at {
            self.expired = true;
            return Some(Action::Expire);
        }
        match self.refresh_at {
            Some(r) if now >= r => {
                // In flight until `refreshed` or `refresh_failed`; `expire_at` still guards.
                self.refresh_at = None;
                Some(Action::Refresh)
            }
            _ => None,
        }
    }

    /// A local refresh failed with final status `status` (report a transaction timeout or a
    /// transport failure as 408).
    ///
    /// 408 and 481 end the session (§10: the UAC sends BYE): returns `Expire`. Any other
    /// failure (491, 5xx, a final 422, ...) leaves the session running until its expiry point
    /// (§10: only a 2xx extends it) and schedules a retry at half the remaining time, at least
    /// 4 s away (RFC 3261 §14.1 for 491), provided that is before the expiry point.
    pub fn refresh_failed(&mut self, status: u16, now: Instant) -> Option<Action> {
        if self.expired {
            return None;
        }
        if matches!(status, 408 | 481) || now >= self.expire_at {
            self.expired = true;
            return Some(Action::Expire);
        }
        let remaining = self.expire_at.duration_since(now);
        let retry_at = now + (remaining / 2).max(RETRY_MIN);
        self.refresh_at =
            (self.negotiated.local == Role::Local && retry_at < self.expire_at).then_some(retry_at);
        None
    }

    /// Headers for a refresh (or any re-INVITE/UPDATE) drhub sends in this dialog (§7.4):
    /// the current interval, the dialog's Min-SE and the current refresher, named from the
    /// new transaction's side (drhub is its UAC).
    pub fn refresh_headers(&self) -> UacHeaders {
        UacHeaders {
            session_expires: self.negotiated.interval,
            min_se: self.negotiated.min_se,
            refresher: Some(match self.negotiated.local {
                Role::Local => Refresher::Uac,
                Role::Remote => Refresher::Uas,
            }),
            after_422: false,
        }
    }

    /// The negotiated values in force.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// When the session expires without a refresh; `None` once expired.
    pub fn expires_at(&self) -> Option<Instant> {
        (!self.expired).then_some(self.expire_at)
    }

    /// Whether `Expire` has been returned.
    pub fn is_expired(&self) -> bool {
        self.expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: Config = Config {
        session_expires: 1800,
        min_se: 90,
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn neg(interval: u32, local: Role) -> Negotiated {
        Negotiated {
            interval,
            refresher: match local {
                Role::Local => Refresher::Uas,
                Role::Remote => Refresher::Uac,
            },
            local,
            require: true,
            min_se: 90,
        }
    }

    // ---- parsing ----------------------------------------------------------------------

    #[test]
    fn dr_st_1_parse_session_expires_good_table() {
        use Refresher::*;
        let rows: &[(&str, u32, Option<Refresher>)] = &[
            ("1800", 1800, None),
            ("  1800  ", 1800, None),
            ("\t90\t", 90, None),
            ("1800;refresher=uac", 1800, Some(Uac)),
            ("1800;refresher=uas", 1800, Some(Uas)),
            ("1800 ; refresher = uas", 1800, Some(Uas)),
            ("1800\t;\trefresher\t=\tuac", 1800, Some(Uac)),
            ("1800;refresher=UAC", 1800, Some(Uac)),
            ("1800;Refresher=Uas", 1800, Some(Uas)),
            ("1800;REFRESHER=uac", 1800, Some(Uac)),
            ("1800;foo=bar;refresher=uac", 1800, Some(Uac)),
            ("1800;refresher=uas;foo", 1800, Some(Uas)),
            ("1800;foo", 1800, None),
            ("1800;x-vendor=\"a;b=c\";refresher=uac", 1800, Some(Uac)),
            ("1800;host=[2001:db8::1]", 1800, None),
            ("1800;refreshers=uac", 1800, None),
            ("0090", 90, None),
            ("1", 1, None),
            ("4294967295", u32::MAX, None),
            ("000000000000004294967295", u32::MAX, None),
        ];
        for &(input, delta, refresher) in rows {
            assert_eq!(
                parse_session_expires(input),
                Ok(SessionExpires { delta, refresher }),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn dr_st_1_parse_session_expires_bad_table() {
        use ParseError::*;
        let rows: &[(&str, ParseError)] = &[
            ("", Empty),
            ("   ", Empty),
            ("\t", Empty),
            ("0", Zero),
            ("0000", Zero),
            ("0;refresher=uac", Zero),
            ("-1", InvalidDelta),
            ("+90", InvalidDelta),
            ("abc", InvalidDelta),
            ("18 00", InvalidDelta),
            ("1.5", InvalidDelta),
            ("1800s", InvalidDelta),
            ("0x700", InvalidDelta),
            ("1800 refresher=uac", InvalidDelta),
            (";refresher=uac", InvalidDelta),
            ("١٨٠٠", InvalidDelta),
            ("4294967296", Overflow),
            ("99999999999999999999", Overflow),
            ("1800;", EmptyParam),
            ("1800; ", EmptyParam),
            ("1800;;refresher=uac", EmptyParam),
            ("1800;refresher", InvalidRefresher),
            ("1800;refresher=", InvalidParam),
            ("1800;refresher=foo", InvalidRefresher),
            ("1800;refresher=\"uac\"", InvalidRefresher),
            ("1800;refresher=uac;refresher=uas", DuplicateRefresher),
            ("1800;refresher=uac;refresher=uac", DuplicateRefresher),
            ("1800;foo=\"unterminated", InvalidParam),
            ("1800;=x", InvalidParam),
            ("1800;fo o=x", InvalidParam),
            ("1800;foo=a b", InvalidParam),
        ];
        for &(input, err) in rows {
            assert_eq!(parse_session_expires(input), Err(err), "input {input:?}");
        }
    }

    #[test]
    fn dr_st_1_parse_min_se_table() {
        let good: &[(&str, u32)] = &[
            ("90", 90),
            (" 90 ", 90),
            ("\t120", 120),
            ("90;foo=bar", 90),
            ("90 ; lr", 90),
            ("3600", 3600),
            ("1", 1),
            ("4294967295", u32::MAX),
        ];
        for &(input, v) in good {
            assert_eq!(parse_min_se(input), Ok(v), "input {input:?}");
        }
        use ParseError::*;
        let bad: &[(&str, ParseError)] = &[
            ("", Empty),
            (" ", Empty),
            ("0", Zero),
            ("x", InvalidDelta),
            ("-90", InvalidDelta),
            ("90 s", InvalidDelta),
            ("9 0", InvalidDelta),
            ("90;", EmptyParam),
            ("90;=1", InvalidParam),
            ("4294967296", Overflow),
            ("18446744073709551616", Overflow),
        ];
        for &(input, err) in bad {
            assert_eq!(parse_min_se(input), Err(err), "input {input:?}");
        }
    }

    #[test]
    fn dr_st_1_parse_errors_display() {
        assert_eq!(ParseError::Zero.to_string(), "delta-seconds is zero");
        assert_eq!(
            Final422::NotRaised { min_se: 60 }.to_string(),
            "422 Min-SE 60 does not raise the interval sent"
        );
    }

    // ---- UAS negotiation --------------------------------------------------------------

    struct UasRow {
        name: &'static str,
        cfg: Config,
        supported: bool,
        require: bool,
        se: Option<&'static str>,
        min_se: Option<&'static str>,
        expect: UasDecision,
    }

    fn accept(
        interval: u32,
        refresher: Refresher,
        local: Role,
        require: bool,
        min_se: u32,
    ) -> UasDecision {
        UasDecision::Accept(Negotiated {
            interval,
            refresher,
            local,
            require,
            min_se,
        })
    }

    #[test]
    fn dr_st_1_uas_negotiation_table() {
        use Refresher::*;
        use Role::*;
        let high = Config {
            session_expires: 1800,
            min_se: 300,
        };
        let low = Config {
            session_expires: 60,
            min_se: 30,
        };
        let rows = [
            // UAC without timer support: drhub still runs a timer and refreshes itself.
            UasRow {
                name: "no support, no SE: drhub's default, uas, no Require",
                cfg: CFG,
                supported: false,
                require: false,
                se: None,
                min_se: None,
                expect: accept(1800, Uas, Local, false, 90),
            },
            UasRow {
                name: "no support, SE from a proxy is kept",
                cfg: CFG,
                supported: false,
                require: false,
                se: Some("1200"),
                min_se: None,
                expect: accept(1200, Uas, Local, false, 90),
            },
            UasRow {
                name: "no support, refresher=uac overridden to uas",
                cfg: CFG,
                supported: false,
                require: false,
                se: Some("1200;refresher=uac"),
                min_se: None,
                expect: accept(1200, Uas, Local, false, 90),
            },
            UasRow {
                name: "no support, SE below floor is raised, not 422",
                cfg: CFG,
                supported: false,
                require: false,
                se: Some("60"),
                min_se: None,
                expect: accept(90, Uas, Local, false, 90),
            },
            UasRow {
                name: "no support, SE below request Min-SE raised to it",
                cfg: CFG,
                supported: false,
                require: false,
                se: Some("100"),
                min_se: Some("120"),
                expect: accept(120, Uas, Local, false, 120),
            },
            UasRow {
                name: "no support, no SE, request Min-SE above our default",
                cfg: CFG,
                supported: false,
                require: false,
                se: None,
                min_se: Some("2400"),
                expect: accept(2400, Uas, Local, false, 2400),
            },
            // UAC with Supported: timer.
            UasRow {
                name: "support, no SE: default interval, drhub picks uac",
                cfg: CFG,
                supported: true,
                require: false,
                se: None,
                min_se: None,
                expect: accept(1800, Uac, Remote, true, 90),
            },
            UasRow {
                name: "support, no SE, own Min-SE above our default",
                cfg: CFG,
                supported: true,
                require: false,
                se: None,
                min_se: Some("3600"),
                expect: accept(3600, Uac, Remote, true, 3600),
            },
            UasRow {
                name: "support, refresher=uac kept",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("1800;refresher=uac"),
                min_se: None,
                expect: accept(1800, Uac, Remote, true, 90),
            },
            UasRow {
                name: "support, refresher=uas kept",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("1800;refresher=uas"),
                min_se: None,
                expect: accept(1800, Uas, Local, true, 90),
            },
            UasRow {
                name: "support, refresher absent: uac",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("1800"),
                min_se: None,
                expect: accept(1800, Uac, Remote, true, 90),
            },
            UasRow {
                name: "support, larger SE kept (no reduction)",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("7200;refresher=uas"),
                min_se: None,
                expect: accept(7200, Uas, Local, true, 90),
            },
            UasRow {
                name: "support, SE with own Min-SE above ours",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("600"),
                min_se: Some("300"),
                expect: accept(600, Uac, Remote, true, 300),
            },
            UasRow {
                name: "support, SE exactly at Min-SE 90",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("90;refresher=uas"),
                min_se: None,
                expect: accept(90, Uas, Local, true, 90),
            },
            UasRow {
                name: "support, request Min-SE below 90 cannot lower the floor",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("100"),
                min_se: Some("60"),
                expect: accept(100, Uac, Remote, true, 90),
            },
            // 422 (DR-ST-3).
            UasRow {
                name: "support, SE 89 < 90: 422 with our Min-SE",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("89"),
                min_se: None,
                expect: UasDecision::TooSmall { min_se: 90 },
            },
            UasRow {
                name: "support, SE below the request's own Min-SE: 422 with the max",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("100"),
                min_se: Some("120"),
                expect: UasDecision::TooSmall { min_se: 120 },
            },
            UasRow {
                name: "configured Min-SE 300: 422 with 300",
                cfg: high,
                supported: true,
                require: false,
                se: Some("200;refresher=uac"),
                min_se: Some("250"),
                expect: UasDecision::TooSmall { min_se: 300 },
            },
            UasRow {
                name: "configured Min-SE 300, request Min-SE 400: 422 with 400",
                cfg: high,
                supported: true,
                require: false,
                se: Some("350"),
                min_se: Some("400"),
                expect: UasDecision::TooSmall { min_se: 400 },
            },
            UasRow {
                name: "configured Min-SE 300, SE 300 accepted",
                cfg: high,
                supported: true,
                require: false,
                se: Some("300"),
                min_se: None,
                expect: accept(300, Uac, Remote, true, 300),
            },
            UasRow {
                name: "a lab's Min-SE below 90 is honoured",
                cfg: low,
                supported: true,
                require: false,
                se: Some("60"),
                min_se: None,
                expect: accept(60, Uac, Remote, true, 30),
            },
            UasRow {
                name: "a lab's Min-SE below 90 still refuses less",
                cfg: low,
                supported: true,
                require: false,
                se: Some("20"),
                min_se: None,
                expect: UasDecision::TooSmall { min_se: 30 },
            },
            UasRow {
                name: "no Session-Expires: the lab's preference",
                cfg: low,
                supported: true,
                require: false,
                se: None,
                min_se: None,
                expect: accept(60, Uac, Remote, true, 30),
            },
            // Require: timer.
            UasRow {
                name: "Require: timer alone counts as support",
                cfg: CFG,
                supported: false,
                require: true,
                se: Some("1800;refresher=uac"),
                min_se: None,
                expect: accept(1800, Uac, Remote, true, 90),
            },
            UasRow {
                name: "Require and Supported, refresher=uas",
                cfg: CFG,
                supported: true,
                require: true,
                se: Some("900;refresher=uas"),
                min_se: Some("90"),
                expect: accept(900, Uas, Local, true, 90),
            },
            UasRow {
                name: "Require: timer with small SE: 422",
                cfg: CFG,
                supported: false,
                require: true,
                se: Some("60"),
                min_se: None,
                expect: UasDecision::TooSmall { min_se: 90 },
            },
            // Malformed.
            UasRow {
                name: "malformed SE: 400",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("soon"),
                min_se: None,
                expect: UasDecision::Malformed("Invalid Session-Expires"),
            },
            UasRow {
                name: "zero SE: 400",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("0"),
                min_se: None,
                expect: UasDecision::Malformed("Invalid Session-Expires"),
            },
            UasRow {
                name: "bad refresher: 400",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("1800;refresher=proxy"),
                min_se: None,
                expect: UasDecision::Malformed("Invalid Session-Expires"),
            },
            UasRow {
                name: "malformed SE without timer support: still 400",
                cfg: CFG,
                supported: false,
                require: false,
                se: Some("1800;;"),
                min_se: None,
                expect: UasDecision::Malformed("Invalid Session-Expires"),
            },
            UasRow {
                name: "malformed Min-SE: 400",
                cfg: CFG,
                supported: true,
                require: false,
                se: Some("1800"),
                min_se: Some("ninety"),
                expect: UasDecision::Malformed("Invalid Min-SE"),
            },
            UasRow {
                name: "overflowing Min-SE: 400",
                cfg: CFG,
                supported: true,
                require: false,
                se: None,
                min_se: Some("4294967296"),
                expect: UasDecision::Malformed("Invalid Min-SE"),
            },
        ];
        for row in &rows {
            let req = RequestTimers {
                supported_timer: row.supported,
                require_timer: row.require,
                session_expires: row.se,
                min_se: row.min_se,
            };
            assert_eq!(negotiate_uas(&req, &row.cfg), row.expect, "{}", row.name);
        }
    }

    #[test]
    fn dr_st_1_uas_2xx_header_values() {
        let req = RequestTimers {
            supported_timer: true,
            session_expires: Some("1800;refresher=uas"),
            ..RequestTimers::default()
        };
        let UasDecision::Accept(n) = negotiate_uas(&req, &CFG) else {
            panic!("expected Accept");
        };
        assert_eq!(n.session_expires_header(), "1800;refresher=uas");
        assert!(n.require);
        assert!(n.is_local_refresher());

        let req = RequestTimers::default();
        let UasDecision::Accept(n) = negotiate_uas(&req, &CFG) else {
            panic!("expected Accept");
        };
        assert_eq!(n.session_expires_header(), "1800;refresher=uas");
        assert!(
            !n.require,
            "no Require: timer towards a UAC without timer support"
        );
    }

    #[test]
    fn dr_st_3_below_min_se_is_422() {
        let req = RequestTimers {
            supported_timer: true,
            session_expires: Some("60"),
            ..RequestTimers::default()
        };
        assert_eq!(
            negotiate_uas(&req, &CFG),
            UasDecision::TooSmall { min_se: 90 }
        );
        // The retry the 422 asks for (§7.3: Session-Expires and Min-SE raised) is accepted.
        let retry = RequestTimers {
            supported_timer: true,
            session_expires: Some("90"),
            min_se: Some("90"),
            ..RequestTimers::default()
        };
        assert!(matches!(
            negotiate_uas(&retry, &CFG),
            UasDecision::Accept(Negotiated { interval: 90, .. })
        ));
    }

    // ---- UAC --------------------------------------------------------------------------

    #[test]
    fn dr_st_1_uac_request_headers() {
        let h = uac_request_headers(&CFG, 0);
        assert_eq!(
            h,
            UacHeaders {
                session_expires: 1800,
                min_se: 90,
                refresher: None,
                after_422: false
            }
        );
        assert_eq!(UacHeaders::SUPPORTED, "timer");
        assert_eq!(h.session_expires_header(), "1800");
        assert_eq!(h.min_se_header(), "90");

        let rows: &[(Config, u32, u32, u32)] = &[
            // (cfg, floor, Session-Expires, Min-SE)
            (CFG, 90, 1800, 90),
            (CFG, 60, 1800, 90),
            (CFG, 600, 1800, 600),
            (CFG, 3600, 3600, 3600),
            (
                Config {
                    session_expires: 600,
                    min_se: 120,
                },
                0,
                600,
                120,
            ),
            (
                Config {
                    session_expires: 45,
                    min_se: 10,
                },
                0,
                45,
                10,
            ),
        ];
        for &(cfg, floor, se, min) in rows {
            let h = uac_request_headers(&cfg, floor);
            assert_eq!(
                (h.session_expires, h.min_se),
                (se, min),
                "{cfg:?} floor {floor}"
            );
            assert!(h.session_expires >= h.min_se, "§7.1 SE >= Min-SE");
        }
    }

    #[test]
    fn dr_st_3_uac_422_retry_once_then_final() {
        let first = uac_request_headers(&CFG, 0);
        let retry = on_422(Some("3600"), &first).expect("one retry");
        assert_eq!(
            retry,
            UacHeaders {
                session_expires: 3600,
                min_se: 3600,
                refresher: None,
                after_422: true
            }
        );
        assert_eq!(retry.session_expires_header(), "3600");
        assert_eq!(retry.min_se_header(), "3600");
        // A second 422, even with a larger Min-SE, is final.
        assert_eq!(on_422(Some("7200"), &retry), Err(Final422::AlreadyRetried));
    }

    #[test]
    fn dr_st_3_uac_422_final_table() {
        let sent = uac_request_headers(&CFG, 0);
        let rows: &[(Option<&str>, Final422)] = &[
            (None, Final422::NoMinSe),
            (Some(""), Final422::BadMinSe(ParseError::Empty)),
            (Some("abc"), Final422::BadMinSe(ParseError::InvalidDelta)),
            (Some("0"), Final422::BadMinSe(ParseError::Zero)),
            (
                Some("99999999999"),
                Final422::BadMinSe(ParseError::Overflow),
            ),
            (Some("90"), Final422::NotRaised { min_se: 90 }),
            (Some("1800"), Final422::NotRaised { min_se: 1800 }),
        ];
        for &(hdr, err) in rows {
            assert_eq!(on_422(hdr, &sent), Err(err), "Min-SE {hdr:?}");
        }
        assert_eq!(
            on_422(Some("1801"), &sent).map(|h| h.session_expires),
            Ok(1801)
        );
    }

    #[test]
    fn dr_st_3_uac_422_on_refresh_keeps_refresher_and_largest_min_se() {
        let t = SessionTimer::new(neg(600, Role::Local), Instant::now());
        let mut sent = t.refresh_headers();
        sent.min_se = 300;
        let retry = on_422(Some("900"), &sent).expect("retry");
        assert_eq!(retry.refresher, Some(Refresher::Uac));
        assert_eq!((retry.session_expires, retry.min_se), (900, 900));
        assert_eq!(retry.session_expires_header(), "900;refresher=uac");
    }

    #[test]
    fn dr_st_1_uac_2xx_table() {
        use Refresher::*;
        use Role::*;
        let sent = uac_request_headers(&CFG, 0);
        // (name, Require: timer, Session-Expires, interval, refresher, local)
        type Row = (
            &'static str,
            bool,
            Option<&'static str>,
            u32,
            Refresher,
            Role,
        );
        let rows: &[Row] = &[
            (
                "uac named",
                true,
                Some("1800;refresher=uac"),
                1800,
                Uac,
                Local,
            ),
            (
                "uas named",
                true,
                Some("1800;refresher=uas"),
                1800,
                Uas,
                Remote,
            ),
            (
                "reduced by UAS",
                true,
                Some("900;refresher=uas"),
                900,
                Uas,
                Remote,
            ),
            (
                "case",
                true,
                Some("1200 ; Refresher=UAS"),
                1200,
                Uas,
                Remote,
            ),
            (
                "no refresher with Require",
                true,
                Some("1200"),
                1200,
                Uac,
                Local,
            ),
            (
                "no refresher, no Require",
                false,
                Some("1200"),
                1200,
                Uac,
                Local,
            ),
            (
                "SE without Require",
                false,
                Some("600;refresher=uas"),
                600,
                Uas,
                Remote,
            ),
            ("no SE: UAS lacks timer", false, None, 1800, Uac, Local),
            ("Require but no SE", true, None, 1800, Uac, Local),
            ("malformed SE", true, Some("later"), 1800, Uac, Local),
        ];
        for &(name, require_timer, se, interval, refresher, local) in rows {
            let resp = ResponseTimers {
                require_timer,
                session_expires: se,
            };
            let n = negotiate_uac(&resp, &sent);
            assert_eq!(
                (n.interval, n.refresher, n.local, n.require, n.min_se),
                (interval, refresher, local, require_timer, 90),
                "{name}"
            );
        }
    }

    #[test]
    fn dr_st_3_uac_2xx_after_422_keeps_raised_interval_and_floor() {
        let first = uac_request_headers(&CFG, 0);
        let retry = on_422(Some("2400"), &first).expect("retry");
        let n = negotiate_uac(&ResponseTimers::default(), &retry);
        assert_eq!((n.interval, n.min_se, n.local), (2400, 2400, Role::Local));
        let t = SessionTimer::new(n, Instant::now());
        assert_eq!(t.refresh_headers().min_se_header(), "2400");
    }

    // ---- SessionTimer (virtual clock) -------------------------------------------------

    #[test]
    fn dr_st_2_local_refresher_refreshes_at_half_interval() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(1800, Role::Local), t0);
        assert_eq!(t.poll_timeout(), Some(t0 + secs(900)));
        assert_eq!(
            t.handle_timeout(t0 + secs(900) - Duration::from_nanos(1)),
            None
        );
        assert_eq!(t.handle_timeout(t0 + secs(900)), Some(Action::Refresh));
        // In flight: the only pending deadline is the expiry point.
        assert_eq!(t.poll_timeout(), Some(t0 + secs(1768)));
        assert_eq!(t.handle_timeout(t0 + secs(901)), None);

        t.refreshed(neg(1800, Role::Local), t0 + secs(900));
        assert_eq!(t.poll_timeout(), Some(t0 + secs(1800)));
        assert_eq!(t.handle_timeout(t0 + secs(1799)), None);
        assert_eq!(t.handle_timeout(t0 + secs(1800)), Some(Action::Refresh));
    }

    #[test]
    fn dr_st_2_remote_refresher_expires_at_interval_minus_32() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(1800, Role::Remote), t0);
        assert_eq!(t.poll_timeout(), Some(t0 + secs(1768)));
        assert_eq!(t.expires_at(), Some(t0 + secs(1768)));
        assert_eq!(t.handle_timeout(t0 + secs(900)), None);
        assert_eq!(
            t.handle_timeout(t0 + secs(1768) - Duration::from_nanos(1)),
            None
        );
        assert_eq!(t.handle_timeout(t0 + secs(1768)), Some(Action::Expire));
        assert!(t.is_expired());
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(t.expires_at(), None);
        assert_eq!(t.handle_timeout(t0 + secs(5000)), None);
    }

    #[test]
    fn dr_st_2_expiry_margin_table() {
        // (interval, refresh at, expire at) in ms; margin = min(32 s, interval/3).
        let rows: &[(u32, u64, u64)] = &[
            (90, 45_000, 60_000),
            (96, 48_000, 64_000),
            (100, 50_000, 68_000),
            (91, 45_500, 60_667),
            (1800, 900_000, 1_768_000),
            (3600, 1_800_000, 3_568_000),
        ];
        for &(interval, refresh_ms, expire_ms) in rows {
            let t0 = Instant::now();
            let local = SessionTimer::new(neg(interval, Role::Local), t0);
            assert_eq!(
                local.poll_timeout(),
                Some(t0 + Duration::from_millis(refresh_ms)),
                "refresh {interval}"
            );
            let remote = SessionTimer::new(neg(interval, Role::Remote), t0);
            let at = remote.poll_timeout().expect("armed");
            let diff = at.duration_since(t0).as_millis();
            assert!(
                diff.abs_diff(u128::from(expire_ms)) <= 1,
                "expire {interval}: {diff} ms"
            );
        }
    }

    #[test]
    fn dr_st_2_interval_90_expires_at_60() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(90, Role::Remote), t0);
        assert_eq!(t.poll_timeout(), Some(t0 + secs(60)));
        assert_eq!(t.handle_timeout(t0 + secs(59)), None);
        assert_eq!(t.handle_timeout(t0 + secs(60)), Some(Action::Expire));

        let mut t = SessionTimer::new(neg(90, Role::Local), t0);
        assert_eq!(t.handle_timeout(t0 + secs(45)), Some(Action::Refresh));
        assert_eq!(t.poll_timeout(), Some(t0 + secs(60)));
        assert_eq!(t.handle_timeout(t0 + secs(60)), Some(Action::Expire));
    }

    #[test]
    fn dr_st_2_never_fires_early() {
        for local in [Role::Local, Role::Remote] {
            let t0 = Instant::now();
            let mut t = SessionTimer::new(neg(1800, local), t0);
            let first = t.poll_timeout().expect("armed");
            let mut now = t0;
            while now < first {
                assert_eq!(t.handle_timeout(now), None, "{local:?} at {now:?}");
                assert_eq!(t.poll_timeout(), Some(first), "poll is stable");
                now += Duration::from_millis(997);
            }
            assert!(t.handle_timeout(first).is_some());
        }
    }

    #[test]
    fn dr_st_2_remote_refresh_pushes_expiry() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(1800, Role::Remote), t0);
        for k in 1..=5u64 {
            let at = t0 + secs(900 * k);
            assert_eq!(t.handle_timeout(at), None);
            t.refreshed(neg(1800, Role::Remote), at);
            assert_eq!(t.poll_timeout(), Some(at + secs(1768)));
        }
    }

    #[test]
    fn dr_st_2_local_refresh_unanswered_expires() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(1800, Role::Local), t0);
        assert_eq!(t.handle_timeout(t0 + secs(900)), Some(Action::Refresh));
        assert_eq!(t.handle_timeout(t0 + secs(1767)), None);
        assert_eq!(t.handle_timeout(t0 + secs(1768)), Some(Action::Expire));
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn dr_st_2_late_poll_expires_instead_of_refreshing() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(1800, Role::Local), t0);
        assert_eq!(t.handle_timeout(t0 + secs(2000)), Some(Action::Expire));
    }

    #[test]
    fn dr_st_2_refresh_failed_481_and_408_expire() {
        for status in [481, 408] {
            let t0 = Instant::now();
            let mut t = SessionTimer::new(neg(1800, Role::Local), t0);
            assert_eq!(t.handle_timeout(t0 + secs(900)), Some(Action::Refresh));
            assert_eq!(
                t.refresh_failed(status, t0 + secs(901)),
                Some(Action::Expire),
                "{status}"
            );
            assert_eq!(t.poll_timeout(), None);
            assert_eq!(t.handle_timeout(t0 + secs(1768)), None);
            assert_eq!(t.refresh_failed(status, t0 + secs(902)), None);
        }
    }

    #[test]
    fn dr_st_2_refresh_failed_491_retries_at_half_remaining() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(1800, Role::Local), t0);
        assert_eq!(t.handle_timeout(t0 + secs(900)), Some(Action::Refresh));
        assert_eq!(t.refresh_failed(491, t0 + secs(900)), None);
        // (1768 - 900) / 2 = 434
        assert_eq!(t.poll_timeout(), Some(t0 + secs(1334)));
        assert_eq!(t.handle_timeout(t0 + secs(1333)), None);
        assert_eq!(t.handle_timeout(t0 + secs(1334)), Some(Action::Refresh));
        t.refreshed(neg(1800, Role::Local), t0 + secs(1335));
        assert_eq!(t.poll_timeout(), Some(t0 + secs(1335 + 900)));
    }

    #[test]
    fn dr_st_2_repeated_failures_end_at_expiry_point() {
        let t0 = Instant::now();
        let expire = t0 + secs(1768);
        let mut t = SessionTimer::new(neg(1800, Role::Local), t0);
        let mut refreshes = 0;
        let mut last = t0;
        loop {
            let at = t.poll_timeout().expect("armed until Expire");
            assert!(at >= last && at <= expire);
            last = at;
            match t.handle_timeout(at) {
                Some(Action::Refresh) => {
                    refreshes += 1;
                    assert!(at < expire);
                    assert_eq!(t.refresh_failed(500, at + Duration::from_millis(50)), None);
                }
                Some(Action::Expire) => {
                    assert_eq!(at, expire);
                    break;
                }
                None => panic!("poll_timeout pointed at nothing"),
            }
            assert!(refreshes < 20, "retries are bounded");
        }
        assert!(refreshes > 1, "retried at least once: {refreshes}");
    }

    #[test]
    fn dr_st_2_failure_too_close_to_expiry_does_not_retry() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(90, Role::Local), t0);
        assert_eq!(t.handle_timeout(t0 + secs(45)), Some(Action::Refresh));
        // 3 s before the 60 s expiry point: a 4 s retry would land after it.
        assert_eq!(t.refresh_failed(503, t0 + secs(57)), None);
        assert_eq!(t.poll_timeout(), Some(t0 + secs(60)));
        assert_eq!(t.handle_timeout(t0 + secs(60)), Some(Action::Expire));
        // A failure reported after the expiry point ends the session at once.
        let mut t = SessionTimer::new(neg(90, Role::Local), t0);
        assert_eq!(t.refresh_failed(500, t0 + secs(61)), Some(Action::Expire));
    }

    #[test]
    fn dr_st_2_role_switch_on_refresh() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(1800, Role::Remote), t0);
        t.refreshed(neg(600, Role::Local), t0 + secs(100));
        assert_eq!(t.poll_timeout(), Some(t0 + secs(400)));
        assert_eq!(
            t.refresh_headers().session_expires_header(),
            "600;refresher=uac"
        );
        t.refreshed(neg(1800, Role::Remote), t0 + secs(400));
        assert_eq!(t.poll_timeout(), Some(t0 + secs(400 + 1768)));
        assert_eq!(
            t.refresh_headers().session_expires_header(),
            "1800;refresher=uas"
        );
        assert_eq!(t.negotiated().interval, 1800);
    }

    #[test]
    fn dr_st_2_refreshed_after_expire_is_ignored() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(neg(90, Role::Remote), t0);
        assert_eq!(t.handle_timeout(t0 + secs(60)), Some(Action::Expire));
        t.refreshed(neg(90, Role::Remote), t0 + secs(61));
        assert_eq!(t.poll_timeout(), None);
        assert!(t.is_expired());
    }

    // ---- end to end -------------------------------------------------------------------

    #[test]
    fn dr_st_1_inbound_call_uac_refresher_then_expiry() {
        // SBC calls in with Supported: timer and no refresher; drhub picks uac, so the SBC
        // refreshes; one refresh arrives, the next does not.
        let req = RequestTimers {
            supported_timer: true,
            session_expires: Some("1800"),
            min_se: Some("90"),
            ..RequestTimers::default()
        };
        let UasDecision::Accept(n) = negotiate_uas(&req, &CFG) else {
            panic!("expected Accept");
        };
        assert_eq!(n.session_expires_header(), "1800;refresher=uac");
        let t0 = Instant::now();
        let mut t = SessionTimer::new(n, t0);
        // SBC's re-INVITE at 900 s: drhub is the UAS again.
        let refresh = RequestTimers {
            supported_timer: true,
            session_expires: Some("1800;refresher=uac"),
            min_se: Some("90"),
            ..RequestTimers::default()
        };
        let UasDecision::Accept(n2) = negotiate_uas(&refresh, &CFG) else {
            panic!("expected Accept");
        };
        t.refreshed(n2, t0 + secs(900));
        assert_eq!(t.handle_timeout(t0 + secs(900 + 1767)), None);
        assert_eq!(
            t.handle_timeout(t0 + secs(900 + 1768)),
            Some(Action::Expire)
        );
    }

    #[test]
    fn dr_st_3_outbound_call_422_then_2xx_then_local_refresh() {
        let cfg = Config {
            session_expires: 300,
            min_se: 90,
        };
        let first = uac_request_headers(&cfg, 0);
        assert_eq!(first.session_expires_header(), "300");
        let retry = on_422(Some("600"), &first).expect("retry");
        assert_eq!(
            (retry.session_expires_header(), retry.min_se_header()),
            ("600".to_string(), "600".to_string())
        );
        let n = negotiate_uac(
            &ResponseTimers {
                require_timer: true,
                session_expires: Some("600;refresher=uac"),
            },
            &retry,
        );
        let t0 = Instant::now();
        let mut t = SessionTimer::new(n, t0);
        assert_eq!(t.handle_timeout(t0 + secs(300)), Some(Action::Refresh));
        let h = t.refresh_headers();
        assert_eq!(
            (h.session_expires_header(), h.min_se_header()),
            ("600;refresher=uac".to_string(), "600".to_string())
        );
        // The SBC's 2xx to drhub's refresh.
        let n2 = negotiate_uac(
            &ResponseTimers {
                require_timer: true,
                session_expires: Some("600;refresher=uac"),
            },
            &h,
        );
        t.refreshed(n2, t0 + secs(301));
        assert_eq!(t.poll_timeout(), Some(t0 + secs(601)));
    }

    #[test]
    fn dr_st_1_uas_refresher_drhub_refreshes_a_uac_without_timer() {
        let UasDecision::Accept(n) = negotiate_uas(&RequestTimers::default(), &CFG) else {
            panic!("expected Accept");
        };
        let t0 = Instant::now();
        let mut t = SessionTimer::new(n, t0);
        assert_eq!(t.handle_timeout(t0 + secs(900)), Some(Action::Refresh));
        // drhub is the UAC of its own refresh: refresher=uac names drhub.
        let h = t.refresh_headers();
        assert_eq!(h.session_expires_header(), "1800;refresher=uac");
        // The SBC does not support timers: its 2xx has no Session-Expires.
        let n2 = negotiate_uac(&ResponseTimers::default(), &h);
        assert_eq!((n2.interval, n2.local), (1800, Role::Local));
        t.refreshed(n2, t0 + secs(900));
        assert_eq!(t.poll_timeout(), Some(t0 + secs(1800)));
    }
}
