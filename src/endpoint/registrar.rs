//! The registrar for SIP endpoints of Teams users (RFC 3261 §10.3, with digest
//! authentication per RFC 8760 and the outbound bindings of RFC 5626 §6): it owns the
//! bindings from each address-of-record to the contacts a call to that user forks to.
//!
//! Sans-IO: [`Registrar::handle_register`] takes a parsed REGISTER, the flow it came on and
//! the time, and returns the complete response to send back on that flow; nothing here reads
//! a clock or a socket. Bindings expire by the `now` passed in: [`Registrar::poll_timeout`]
//! says when the next one does, [`Registrar::expire`] purges, and a call looks its targets up
//! with [`Registrar::bindings`] or [`Registrar::targets`].
//!
//! The steps of RFC 3261 §10.3 in the order the RFC gives them, with drhub's choices where it
//! leaves one:
//!
//! 1. The Request-URI must name this registrar: a `sip:` URI whose host is an IP address
//!    (sipp and many softphones register to `sip:<registrar-ip>`), one of the configured
//!    [aliases](RegistrarConfig::aliases), or a domain the [`UserLookup`] serves. drhub does
//!    not forward REGISTERs, so any other domain gets `404` (not a `403`: the domain is
//!    simply not one this location service holds). Domains are public, so this `404` tells
//!    nothing about users.
//! 2. `Require` with any option tag other than `outbound` gets `420` with `Unsupported`.
//! 3. Digest authentication, always. No usable credentials: `401` with one challenge per
//!    algorithm, SHA-256 first. A wrong password and an unknown user produce the same `401`:
//!    the same headers in the same order, differing only in nonce and To tag, and the same
//!    work (the digest is computed against a stand-in password when there is no user).
//!    Before any of it, the [`Throttle`] may refuse the request with
//!    `403 Too Many Failed Authentications`, credentials unread: its source address, or its
//!    AOR from an address that holds no current binding of it, failed too often lately.
//!    Failed digests (unknown users alike) are counted there; a verified one clears its
//!    address's count.
//! 4. The authenticated user must be the address-of-record: the digest username must be
//!    the AOR's user part or the whole `user@domain` (else `403`), and From must name the
//!    same AOR as To: third-party registration is refused with `403`.
//! 5. An AOR outside the Request-URI's domain gets `404` (only when the Request-URI names a
//!    domain, not an IP address or an alias).
//! 6. `Contact: *` needs `Expires: 0` (else `400`) and removes every binding.
//! 7. Each contact's expiry comes from its `expires` parameter, else the `Expires` header,
//!    else [`RegistrarConfig::default_expires`]; malformed values count as 3600 and huge ones
//!    saturate (RFC 3261 §20.19, §20.10). `0 < expiry < min(3600, min_expires)` gets `423`
//!    with `Min-Expires`; otherwise the grant is capped at
//!    [`max_expires`](RegistrarConfig::max_expires). A binding refreshed from the same
//!    Call-ID with a CSeq that is not higher aborts the whole request: the RFC says only
//!    that "the request fails", and in the same paragraph that a failed binding update
//!    fails the request with `500`, so drhub answers `500`. Updates are all or nothing.
//! 8. `200` lists every current binding with `;expires=` (seconds left) and a `Date`.
//!
//! RFC 5626: a contact with both `+sip.instance` and `reg-id` is bound by (AOR, instance,
//! reg-id) instead of by URI, and its flow (source address and transport) is what
//! [`Registrar::flow_closed`] removes; `Require: outbound` is returned when the client sent
//! `Supported: outbound`. A REGISTER that did not come straight from the client (more than one
//! Via) gets its `reg-id`s ignored, or `439` if it asked for outbound. `Path` is not stored:
//! endpoints register directly.
//!
//! Per AOR at most [`RegistrarConfig::max_bindings`] bindings are kept. A registration that
//! would exceed it evicts the bindings refreshed least recently, never ones the same request
//! refreshes; a single request carrying more new contacts than the limit gets `403`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

use super::digest::{AuthParseError, Authenticator, Authorization, CryptoError, Outcome};
use super::throttle::{Locked, Notice, Throttle, ThrottleConfig, UserKey, Verdict};
use crate::sip::build::{ResponseWriter, Style};
use crate::sip::{decode_into, Contact, HeaderName, Host, Invalid, Message, Method, Scheme, Uri};

/// The password digests are checked against when the user does not exist, so that an
/// unknown user costs the same work as a wrong password.
const STAND_IN_PASSWORD: &str = "drhub: no such user; this only burns the same cycles";

/// RFC 3261 §10.3 step 7: 423 only for intervals below one hour.
const ONE_HOUR: u32 = 3600;

/// The transport a REGISTER arrived on; a binding is reached back over the same one (UDP:
/// to the source address; TCP: over the connection from it while it is open).
pub use crate::sip::Transport;

/// An address-of-record: `user@domain` of a `sip:` URI, with the user part unescaped and both
/// parts lower-case (URI parameters and port dropped, RFC 3261 §10.3 step 5). The key of the
/// binding table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor {
    user: String,
    domain: String,
}

/// Why a URI is not an address-of-record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AorError {
    /// Not a `sip:` URI (drhub has no `sips:`, and `tel:` is no AOR).
    #[error("not a sip: URI")]
    Scheme,
    /// No user part.
    #[error("no user part")]
    NoUser,
    /// The user part does not decode to UTF-8.
    #[error("user part is not valid escaped UTF-8")]
    BadUser,
    /// The host is an IP address, which no tenant domain is.
    #[error("host is an IP address")]
    IpHost,
}

impl Aor {
    /// An AOR from its parts, lower-cased (a trailing dot on the domain is dropped).
    pub fn new(user: &str, domain: &str) -> Aor {
        Aor {
            user: user.to_ascii_lowercase(),
            domain: normalize_domain(domain),
        }
    }

    /// The AOR a `sip:` URI names (To and From of a REGISTER).
    pub fn from_uri(uri: &Uri<'_>) -> Result<Aor, AorError> {
        if uri.scheme() != Scheme::Sip {
            return Err(AorError::Scheme);
        }
        let user = uri.user().ok_or(AorError::NoUser)?;
        let mut buf = vec![0u8; user.len()];
        let decoded = decode_into(user, &mut buf).map_err(|_| AorError::BadUser)?;
        let user = std::str::from_utf8(decoded).map_err(|_| AorError::BadUser)?;
        match uri.host() {
            Some(Host::Domain(d)) => Ok(Aor::new(user, d)),
            Some(_) => Err(AorError::IpHost),
            None => Err(AorError::Scheme),
        }
    }

    /// The user part.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.domain)
    }
}

fn normalize_domain(d: &str) -> String {
    d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()
}

/// What the daemon knows about a user: the password their endpoints authenticate with and
/// whatever identifies the user to the rest of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a, I> {
    /// The SIP password (digest input; never logged or echoed).
    pub password: &'a str,
    /// The daemon's identity of the user (tenant and user ids, say).
    pub identity: I,
}

/// The user directory as the registrar sees it; the daemon implements it over its config.
pub trait UserLookup {
    /// How the daemon identifies a user; handed back in [`RegisterResult`].
    type Identity;

    /// True if `domain` (lower-case) is a tenant domain whose users register here.
    fn serves_domain(&self, domain: &str) -> bool;

    /// The user with this address-of-record, if any. Should take the same time whether or
    /// not the user exists (a hash map probe does).
    fn lookup(&self, aor: &Aor) -> Option<Credentials<'_, Self::Identity>>;
}

/// Registrar settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// The digest realm; `None` uses the AOR's domain (the tenant domain).
    pub realm: Option<String>,
    /// Host names (lower-case) that name the registrar itself in a Request-URI or digest
    /// URI, for any tenant domain: the proxy FQDNs an endpoint may be pointed at.
    pub aliases: Vec<String>,
    /// Shortest registration accepted, seconds (`423` below it).
    pub min_expires: u32,
    /// Longest registration granted, seconds (longer requests are shortened).
    pub max_expires: u32,
    /// Registration length when the REGISTER asks for none, seconds.
    pub default_expires: u32,
    /// Most bindings one AOR may hold.
    pub max_bindings: usize,
    /// Failed-digest throttling.
    pub throttle: ThrottleConfig,
}

impl Default for RegistrarConfig {
    /// Realm from the tenant domain, no aliases, 60 s to 3600 s (default 3600), 10 bindings,
    /// the default throttle.
    fn default() -> Self {
        RegistrarConfig {
            realm: None,
            aliases: Vec::new(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_bindings: 10,
            throttle: ThrottleConfig::default(),
        }
    }
}

/// A [`RegistrarConfig`] that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not `0 < min_expires <= default_expires <= max_expires`.
    #[error("expiry settings must satisfy 0 < min_expires <= default_expires <= max_expires")]
    ExpiryOrder,
    /// `max_bindings` is zero.
    #[error("max_bindings must be at least 1")]
    NoBindings,
}

impl RegistrarConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_expires == 0
            || self.min_expires > self.default_expires
            || self.default_expires > self.max_expires
        {
            return Err(ConfigError::ExpiryOrder);
        }
        if self.max_bindings == 0 {
            return Err(ConfigError::NoBindings);
        }
        Ok(())
    }
}

/// One registered contact of an AOR.
///
/// Guarantees: `contact_uri` is a `sip:` URI that parsed; `expires_at` is after the
/// `updated_at` of the REGISTER that set it (a binding with zero expiry is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as the endpoint wrote it; a call to the user is forked here.
    pub contact_uri: String,
    /// The Contact's header parameters other than `expires`, as written
    /// (`;q=0.5;+sip.instance="<urn:uuid:...>";reg-id=1`); echoed in `200` responses.
    pub params: String,
    /// When the binding lapses unless refreshed.
    pub expires_at: Instant,
    /// Call-ID of the REGISTER that last set it (RFC 3261 §10.3 step 7).
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// Where that REGISTER came from: the flow to reach the endpoint over (RFC 5626 §6).
    pub source: SocketAddr,
    /// The transport it came on.
    pub transport: Transport,
    /// The `+sip.instance` value without its quotes (`<urn:uuid:...>`), if any.
    pub instance: Option<String>,
    /// The RFC 5626 `reg-id`, only when `instance` is present too and outbound applied.
    pub reg_id: Option<u32>,
    /// When it was last added or refreshed.
    pub updated_at: Instant,
}

impl Binding {
    /// The Contact URI, parsed.
    pub fn uri(&self) -> Option<Uri<'_>> {
        Uri::parse(&self.contact_uri).ok()
    }

    /// Whole seconds left at `now`, rounded up (0 once expired).
    pub fn seconds_left(&self, now: Instant) -> u64 {
        let left = self.expires_at.saturating_duration_since(now);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }

    /// True for an RFC 5626 outbound binding (instance and reg-id).
    pub fn is_outbound(&self) -> bool {
        self.instance.is_some() && self.reg_id.is_some()
    }

    /// The Contact header value listing this binding in a `200` (RFC 3261 §10.3 step 8).
    fn contact_value(&self, now: Instant) -> String {
        format!(
            "<{}>{};expires={}",
            self.contact_uri,
            self.params,
            self.seconds_left(now)
        )
    }
}

/// How a successful REGISTER changed an AOR's bindings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// New bindings.
    pub added: usize,
    /// Existing bindings refreshed (new expiry, flow, Call-ID and CSeq).
    pub refreshed: usize,
    /// Bindings removed on request (`expires=0` or `*`).
    pub removed: usize,
    /// Bindings dropped to stay within [`RegistrarConfig::max_bindings`].
    pub evicted: usize,
    /// Bindings found expired while processing (they were no longer current).
    pub expired: usize,
}

/// Why a REGISTER was answered `401`: for logs only, the responses are alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeReason {
    /// No credentials for the realm (the first REGISTER of every client).
    NoCredentials,
    /// Credentials for a user that does not exist.
    UnknownUser,
    /// Credentials that do not match the user's password.
    WrongCredentials,
    /// Correct credentials on an expired or foreign nonce (`stale=true`).
    StaleNonce,
}

/// How a request other than REGISTER authenticated ([`Registrar::authenticate_request`]).
#[derive(Debug)]
pub enum RequestAuth {
    /// The From user proved its password.
    Authenticated(Aor),
    /// `407` with challenges, to send back.
    Challenged {
        /// Why.
        reason: ChallengeReason,
        /// The response.
        response: BytesMut,
    },
    /// Refused (`403` locked or wrong username, `400` unusable credentials ...).
    Refused {
        /// The response status.
        status: u16,
        /// The response.
        response: BytesMut,
    },
}

/// What a REGISTER did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterResult<I> {
    /// `200`: the AOR's bindings were updated as counted.
    Updated {
        /// The registered AOR.
        aor: Aor,
        /// The user, as [`UserLookup::lookup`] identified it.
        identity: I,
        /// What changed.
        changes: Changes,
    },
    /// `200` to a REGISTER without Contact: the bindings were listed, not changed.
    Queried {
        /// The AOR.
        aor: Aor,
        /// The user.
        identity: I,
    },
    /// `401` with fresh challenges.
    Challenged(ChallengeReason),
    /// Any other final response.
    Rejected(Rejection),
}

/// The answer to a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome<I> {
    /// The status code of `response`.
    pub status: u16,
    /// The complete response, to send on the flow the REGISTER came from.
    pub response: BytesMut,
    /// What happened.
    pub result: RegisterResult<I>,
}

/// Where a URI scheme was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriField {
    /// The Request-URI.
    RequestUri,
    /// The To header (the AOR).
    To,
}

impl fmt::Display for UriField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UriField::RequestUri => "Request-URI",
            UriField::To => "To",
        })
    }
}

/// Why a REGISTER was refused; each maps to one status and reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The message failed the RFC 3261 message checks (`400`, or `505`).
    #[error("{0}")]
    Invalid(Invalid),
    /// Not a REGISTER (`405`): a routing mistake of the caller.
    #[error("not a REGISTER request")]
    NotRegister,
    /// A `sips:`, `tel:` or other non-`sip:` Request-URI or To (`416`).
    #[error("unsupported URI scheme in {0}")]
    UnsupportedScheme(UriField),
    /// The Request-URI names a domain this registrar does not serve (`404`, §10.3 step 1).
    #[error("domain {0} is not served here")]
    DomainNotServed(String),
    /// The To URI is no address-of-record (`404`).
    #[error("To is no address-of-record: {0}")]
    BadAor(AorError),
    /// `Require` names extensions drhub lacks (`420`); the list goes into `Unsupported`.
    #[error("unsupported extensions required: {0}")]
    BadExtension(String),
    /// The `Authorization` for this realm could not be used (`400`).
    #[error("unusable Authorization header: {0}")]
    Authorization(AuthParseError),
    /// The digest URI does not name this registrar (`400`, RFC 8760 §2.6 item 6).
    #[error("digest uri does not name this registrar")]
    DigestUri,
    /// The digest username is neither the AOR's user part nor the AOR (`403`, §10.3 step 4).
    #[error("digest username does not match the address-of-record")]
    UsernameMismatch,
    /// From names another AOR than To (`403`, §10.3 step 4).
    #[error("third-party registration is not allowed")]
    ThirdParty,
    /// The AOR is not in the domain of the Request-URI (`404`, §10.3 step 5).
    #[error("address-of-record is not in the Request-URI's domain")]
    ForeignAor,
    /// `Contact: *` without `Expires: 0` (`400`, §10.3 step 6).
    #[error("Contact * requires Expires: 0")]
    StarWithoutExpiresZero,
    /// A contact that is not a `sip:` URI (`400`): drhub forks to SIP contacts only.
    #[error("contact is not a sip: URI")]
    ContactScheme,
    /// A `reg-id` that is not a number from 1 to 2^31-1 (`400`, RFC 5626 §4.2).
    #[error("malformed reg-id")]
    MalformedRegId,
    /// Several contacts with non-zero expiry and a `reg-id` (`400`, RFC 5626 §6).
    #[error("reg-id in a REGISTER with several contacts")]
    RegIdWithSeveralContacts,
    /// Outbound asked for through an intermediary (`439`, RFC 5626 §6).
    #[error("outbound requested but the REGISTER did not come from the first hop")]
    FirstHopLacksOutbound,
    /// An expiry below the minimum (`423` with `Min-Expires`, §10.3 step 7).
    #[error("registration interval below {min_expires} s")]
    IntervalTooBrief {
        /// The shortest interval accepted.
        min_expires: u32,
    },
    /// A binding update from the same Call-ID with a CSeq not higher than the stored one
    /// (`500`, §10.3 steps 6 and 7): nothing was changed.
    #[error("CSeq not higher than the binding's for the same Call-ID")]
    OutOfOrder,
    /// More new contacts than [`RegistrarConfig::max_bindings`] in one request (`403`).
    #[error("more than {max} contacts")]
    TooManyContacts {
        /// The limit.
        max: usize,
    },
    /// The source address or the AOR is locked by the [`Throttle`] after too many failed
    /// digests (`403`, credentials unread). The answer is the same for either lock.
    #[error("too many failed authentications: {0} is locked")]
    Throttled(Locked),
    /// The random number generator failed (`500`).
    #[error("{0}")]
    Crypto(CryptoError),
}

impl Rejection {
    /// The response status.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Invalid(i) => i.status,
            Rejection::NotRegister => 405,
            Rejection::UnsupportedScheme(_) => 416,
            Rejection::DomainNotServed(_) | Rejection::BadAor(_) | Rejection::ForeignAor => 404,
            Rejection::BadExtension(_) => 420,
            Rejection::Authorization(_)
            | Rejection::DigestUri
            | Rejection::StarWithoutExpiresZero
            | Rejection::ContactScheme
            | Rejection::MalformedRegId
            | Rejection::RegIdWithSeveralContacts => 400,
            Rejection::UsernameMismatch
            | Rejection::ThirdParty
            | Rejection::TooManyContacts { .. }
            | Rejection::Throttled(_) => 403,
            Rejection::FirstHopLacksOutbound => 439,
            Rejection::IntervalTooBrief { .. } => 423,
            Rejection::OutOfOrder | Rejection::Crypto(_) => 500,
        }
    }

    /// The reason phrase: specific enough to read the fault off a trace.
    pub fn reason_phrase(&self) -> &'static str {
        match self {
            Rejection::Invalid(i) => i.reason,
            Rejection::NotRegister => "Method Not Allowed",
            Rejection::UnsupportedScheme(_) => "Unsupported URI Scheme",
            Rejection::DomainNotServed(_) => "Domain Not Served Here",
            Rejection::BadAor(AorError::Scheme) => "To Is Not A SIP URI",
            Rejection::BadAor(AorError::NoUser) => "To Has No User Part",
            Rejection::BadAor(AorError::BadUser) => "Malformed User In To",
            Rejection::BadAor(AorError::IpHost) => "To Host Is An IP Address",
            Rejection::BadExtension(_) => "Bad Extension",
            Rejection::Authorization(AuthParseError::UnsupportedAlgorithm) => {
                "Unsupported Digest Algorithm"
            }
            Rejection::Authorization(AuthParseError::UnsupportedQop) => "Unsupported Digest Qop",
            Rejection::Authorization(AuthParseError::UnsupportedUsername) => {
                "Unsupported Digest Username Form"
            }
            Rejection::Authorization(_) => "Malformed Authorization Header",
            Rejection::DigestUri => "Digest URI Does Not Name This Registrar",
            Rejection::UsernameMismatch => "Digest Username Does Not Match To",
            Rejection::ThirdParty => "Third-Party Registration Not Allowed",
            Rejection::ForeignAor => "Address-Of-Record Not In Request-URI Domain",
            Rejection::StarWithoutExpiresZero => "Contact * Requires Expires 0",
            Rejection::ContactScheme => "Contact Is Not A SIP URI",
            Rejection::MalformedRegId => "Malformed reg-id",
            Rejection::RegIdWithSeveralContacts => "reg-id With Several Contacts",
            Rejection::FirstHopLacksOutbound => "First Hop Lacks Outbound Support",
            Rejection::IntervalTooBrief { .. } => "Interval Too Brief",
            Rejection::OutOfOrder => "Out Of Order REGISTER",
            Rejection::TooManyContacts { .. } => "Too Many Contacts",
            Rejection::Throttled(_) => "Too Many Failed Authentications",
            Rejection::Crypto(_) => "Server Internal Error",
        }
    }
}

/// How a Request-URI (or digest URI) names this registrar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RequestHost {
    /// By IP address: the request reached us, so it is ours.
    Ip,
    /// By a configured alias.
    Alias,
    /// By a tenant domain this registrar serves (lower-case).
    Domain(String),
}

/// One contact of a REGISTER, checked.
struct Requested<'b> {
    uri: Uri<'b>,
    params: String,
    expires: u32,
    instance: Option<String>,
    reg_id: Option<u32>,
}

/// Where a working binding came from, while a REGISTER is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Untouched,
    Refreshed,
    Added,
}

/// The location service: bindings per AOR, and the REGISTER logic that maintains them.
///
/// Guarantees: every stored binding was authenticated by its AOR's user; no AOR holds more
/// than [`RegistrarConfig::max_bindings`]; an AOR with no binding has no entry; a REGISTER
/// either applies all its changes or none; no credentials are checked for a key the
/// throttle has locked.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    auth: Authenticator,
    throttle: Throttle,
    bindings: HashMap<Aor, Vec<Binding>>,
    /// An instant and the wall-clock time at that instant, for `Date` headers.
    clock: (Instant, SystemTime),
}

impl Registrar {
    /// A registrar with no bindings. `now` and `wall` are the same moment on the monotonic
    /// and the wall clock; `Date` headers are derived from them and the `now` of each call.
    pub fn new(
        config: RegistrarConfig,
        auth: Authenticator,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Registrar, ConfigError> {
        config.validate()?;
        Ok(Registrar {
            throttle: Throttle::new(config.throttle),
            config,
            auth,
            bindings: HashMap::new(),
            clock: (now, wall),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// The authenticator, to challenge other requests of registered endpoints with the same
    /// secret (an INVITE from an endpoint, say).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// Authenticates a request other than REGISTER (an endpoint's INVITE, DR-OUT-1) as its
    /// From user, with the same secret, realm, throttle and answers as a REGISTER: no or
    /// wrong credentials get `407` with `Proxy-Authenticate` challenges (RFC 3261 §22.3;
    /// an `Authorization` answering a `401` is read too), a locked key or a username that
    /// is not the From user `403`, unusable credentials `400`.
    pub fn authenticate_request<U: UserLookup>(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        now: Instant,
        users: &U,
    ) -> RequestAuth {
        match self.authenticate_inner(msg, source, now, users) {
            Ok(a) => a,
            Err(r) => RequestAuth::Refused {
                status: r.status(),
                response: self.reject::<()>(msg, r).response,
            },
        }
    }

    fn authenticate_inner<U: UserLookup>(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        now: Instant,
        users: &U,
    ) -> Result<RequestAuth, Rejection> {
        let checked = msg.checked_request().map_err(Rejection::Invalid)?;
        let aor = match Aor::from_uri(checked.from.uri()) {
            Ok(aor) => aor,
            Err(AorError::Scheme) => return Err(Rejection::UnsupportedScheme(UriField::To)),
            Err(e) => return Err(Rejection::BadAor(e)),
        };
        let realm = self
            .config
            .realm
            .clone()
            .unwrap_or_else(|| aor.domain.clone());
        let user_key = UserKey::new(&aor.to_string());
        let vouched = self
            .bindings(&aor, now)
            .any(|b| b.source.ip() == source.ip());
        if let Verdict::Refused(lock) = self.throttle.check(source.ip(), &user_key, vouched, now) {
            return Err(Rejection::Throttled(lock));
        }
        let method = msg.method().map_or("INVITE", |m| m.as_str());
        let cred = match credentials_in(msg, HeaderName::ProxyAuthorization, &realm)? {
            Some(c) => Some(c),
            None => credentials_for(msg, &realm)?,
        };
        let challenge = |me: &Self, reason| -> Result<RequestAuth, Rejection> {
            let response = me.challenge_response(msg, &realm, reason, now, true)?;
            Ok(RequestAuth::Challenged { reason, response })
        };
        let Some(cred) = cred else {
            return challenge(self, ChallengeReason::NoCredentials);
        };
        let username = cred.username();
        if !(username.eq_ignore_ascii_case(&aor.user)
            || username.eq_ignore_ascii_case(&aor.to_string()))
        {
            return Err(Rejection::UsernameMismatch);
        }
        let user = users.lookup(&aor);
        let password = user.as_ref().map_or(STAND_IN_PASSWORD, |c| c.password);
        match (
            user.is_some(),
            self.auth.verify(&cred, method, password, now),
        ) {
            (true, Outcome::Ok) => {
                self.throttle.success(source.ip());
                Ok(RequestAuth::Authenticated(aor))
            }
            (false, _) => {
                self.throttle.failure(source.ip(), &user_key, now);
                challenge(self, ChallengeReason::UnknownUser)
            }
            (true, Outcome::Stale) => challenge(self, ChallengeReason::StaleNonce),
            (true, Outcome::Failed) => {
                self.throttle.failure(source.ip(), &user_key, now);
                challenge(self, ChallengeReason::WrongCredentials)
            }
        }
    }

    /// Processes a REGISTER that arrived from `source` over `transport` at `now`.
    ///
    /// Always returns a response (a `400` for a message that fails the RFC 3261 checks; the
    /// caller drops it instead when Via, From, To, Call-ID or CSeq is unusable, DR-ERR-3).
    pub fn handle_register<U: UserLookup>(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
        users: &U,
    ) -> RegisterOutcome<U::Identity> {
        match self.process(msg, source, transport, now, users) {
            Ok(outcome) => outcome,
            Err(rejection) => self.reject(msg, rejection),
        }
    }

    /// The current (unexpired at `now`) bindings of `aor`.
    pub fn bindings<'s>(
        &'s self,
        aor: &Aor,
        now: Instant,
    ) -> impl Iterator<Item = &'s Binding> + 's {
        self.bindings
            .get(aor)
            .into_iter()
            .flatten()
            .filter(move |b| b.expires_at > now)
    }

    /// The bindings a call to `aor` forks to: the current ones, with at most one per
    /// `+sip.instance`, the most recently refreshed (RFC 5626 §7).
    pub fn targets(&self, aor: &Aor, now: Instant) -> Vec<&Binding> {
        let mut out: Vec<&Binding> = Vec::new();
        for b in self.bindings(aor, now) {
            let same_instance = |o: &&mut &Binding| match (&o.instance, &b.instance) {
                (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                _ => false,
            };
            match out.iter_mut().find(same_instance) {
                Some(slot) if slot.updated_at < b.updated_at => *slot = b,
                Some(_) => {}
                None => out.push(b),
            }
        }
        out
    }

    /// Every AOR with at least one stored binding (some may have expired since).
    pub fn aors(&self) -> impl Iterator<Item = &Aor> {
        self.bindings.keys()
    }

    /// Total stored bindings.
    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// When the next binding expires or the next throttle lock ends: the driver calls
    /// [`expire`](Registrar::expire) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let binding = self.bindings.values().flatten().map(|b| b.expires_at).min();
        match (binding, self.throttle.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes every binding expired at `now` and returns them; ends the throttle's locks
    /// that are over (see [`poll_notice`](Registrar::poll_notice)).
    pub fn expire(&mut self, now: Instant) -> Vec<(Aor, Binding)> {
        self.throttle.handle_timeout(now);
        self.remove_where(|b| b.expires_at <= now)
    }

    /// Whether a binding that has not expired was registered from `source` over
    /// `transport` (its connection must stay open).
    pub fn has_binding_from(&self, source: SocketAddr, transport: Transport, now: Instant) -> bool {
        self.bindings
            .values()
            .flatten()
            .any(|b| b.source == source && b.transport == transport && b.expires_at > now)
    }

    /// The throttle's next notice for the log (a lock begun or ended), oldest first.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.throttle.poll_notice()
    }

    /// Removes the outbound bindings reached over a flow that is gone (a closed TCP
    /// connection) and returns them (RFC 5626 §7). Other bindings stay: their contact can
    /// still be reached by opening a new connection.
    pub fn flow_closed(&mut self, source: SocketAddr, transport: Transport) -> Vec<(Aor, Binding)> {
        self.remove_where(|b| b.is_outbound() && b.source == source && b.transport == transport)
    }

    fn remove_where(&mut self, mut pred: impl FnMut(&Binding) -> bool) -> Vec<(Aor, Binding)> {
        let mut removed = Vec::new();
        self.bindings.retain(|aor, list| {
            let mut kept = Vec::with_capacity(list.len());
            for b in list.drain(..) {
                if pred(&b) {
                    removed.push((aor.clone(), b));
                } else {
                    kept.push(b);
                }
            }
            *list = kept;
            !list.is_empty()
        });
        removed
    }

    // ------------------------------------------------------------------ REGISTER

    fn process<U: UserLookup>(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
        users: &U,
    ) -> Result<RegisterOutcome<U::Identity>, Rejection> {
        let checked = msg.checked_request().map_err(Rejection::Invalid)?;
        if msg.method() != Some(Method::Register) {
            return Err(Rejection::NotRegister);
        }
        // RFC 3261 §10.3 step 1: is this registrar responsible for the Request-URI?
        let ruri = match msg.request_uri() {
            Some(Ok(u)) => u,
            _ => return Err(Rejection::Invalid(invalid("Malformed Request-URI"))),
        };
        let request_host = self.request_host(&ruri, users)?;
        let aor = match Aor::from_uri(checked.to.uri()) {
            Ok(aor) => aor,
            Err(AorError::Scheme) => return Err(Rejection::UnsupportedScheme(UriField::To)),
            Err(e) => return Err(Rejection::BadAor(e)),
        };
        // Step 2: Require (RFC 3261 §8.2.2.3).
        let unsupported: Vec<&str> = msg
            .values(HeaderName::Require)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("outbound"))
            .collect();
        if !unsupported.is_empty() {
            return Err(Rejection::BadExtension(unsupported.join(", ")));
        }
        // Step 3: authentication (RFC 3261 §22, RFC 8760).
        let realm = self
            .config
            .realm
            .clone()
            .unwrap_or_else(|| aor.domain.clone());
        // The digest username must name the AOR (checked below), so the AOR is the user the
        // throttle counts, whether or not it exists; an address holding a current binding
        // of the AOR has authenticated as it lately and passes a lock of the user.
        let user_key = UserKey::new(&aor.to_string());
        let vouched = self
            .bindings(&aor, now)
            .any(|b| b.source.ip() == source.ip());
        if let Verdict::Refused(lock) = self.throttle.check(source.ip(), &user_key, vouched, now) {
            return Err(Rejection::Throttled(lock));
        }
        let Some(cred) = credentials_for(msg, &realm)? else {
            return self.challenge(msg, &realm, ChallengeReason::NoCredentials, now);
        };
        let username = cred.username();
        let names_aor = username.eq_ignore_ascii_case(&aor.user)
            || username.eq_ignore_ascii_case(&aor.to_string());
        if !names_aor {
            return Err(Rejection::UsernameMismatch);
        }
        let digest_uri_ok = Uri::parse(cred.uri())
            .ok()
            .is_some_and(|u| self.request_host(&u, users).is_ok());
        if !digest_uri_ok {
            return Err(Rejection::DigestUri);
        }
        let user = users.lookup(&aor);
        let password = user.as_ref().map_or(STAND_IN_PASSWORD, |c| c.password);
        let verdict = self
            .auth
            .verify(&cred, Method::Register.as_str(), password, now);
        let identity = match (user, verdict) {
            (Some(c), Outcome::Ok) => {
                self.throttle.success(source.ip());
                c.identity
            }
            (None, _) => {
                self.throttle.failure(source.ip(), &user_key, now);
                return self.challenge(msg, &realm, ChallengeReason::UnknownUser, now);
            }
            // Only a client that knows the password gets here: no guess.
            (Some(_), Outcome::Stale) => {
                return self.challenge(msg, &realm, ChallengeReason::StaleNonce, now)
            }
            (Some(_), Outcome::Failed) => {
                self.throttle.failure(source.ip(), &user_key, now);
                return self.challenge(msg, &realm, ChallengeReason::WrongCredentials, now);
            }
        };
        // Step 4: the authenticated user may only register itself.
        if Aor::from_uri(checked.from.uri()).ok().as_ref() != Some(&aor) {
            return Err(Rejection::ThirdParty);
        }
        // Step 5: the AOR must belong to the Request-URI's domain.
        if let RequestHost::Domain(d) = &request_host {
            if *d != aor.domain {
                return Err(Rejection::ForeignAor);
            }
        }
        // Steps 6 and 7.
        let mut contacts = Vec::new();
        for c in msg.contacts() {
            contacts.push(c.map_err(|_| Rejection::Invalid(invalid("Malformed Contact header")))?);
        }
        let expires_header = msg.header(HeaderName::Expires).map(parse_expires);
        let call_id = checked.call_id.as_str();
        let cseq = checked.cseq.seq;
        let supports_outbound = msg
            .values(HeaderName::Supported)
            .any(|t| t.eq_ignore_ascii_case("outbound"));
        let first_hop = msg.vias().count() == 1;

        // Drawn before anything changes, so that an RNG failure changes nothing either.
        let tag = self.auth.random_hex(8).map_err(Rejection::Crypto)?;
        let current = self.bindings.remove(&aor).unwrap_or_default();
        let before = current.len();
        let current: Vec<Binding> = current.into_iter().filter(|b| b.expires_at > now).collect();
        let expired = before - current.len();

        let applied = if contacts.is_empty() {
            Ok(None)
        } else if contacts.iter().any(|c| matches!(c, Contact::Star)) {
            star(&current, expires_header, call_id, cseq).map(|removed| {
                Some((
                    Vec::new(),
                    Changes {
                        removed,
                        ..Changes::default()
                    },
                    false,
                ))
            })
        } else {
            self.apply(
                current.clone(),
                &contacts,
                ContactContext {
                    expires_header,
                    call_id,
                    cseq,
                    source,
                    transport,
                    now,
                    first_hop,
                    supports_outbound,
                },
            )
            .map(Some)
        };
        let (kept, result, require_outbound) = match applied {
            Err(e) => {
                self.store(aor, current);
                return Err(e);
            }
            Ok(None) => (
                current,
                RegisterResult::Queried {
                    aor: aor.clone(),
                    identity,
                },
                false,
            ),
            Ok(Some((list, mut changes, require_outbound))) => {
                changes.expired = expired;
                (
                    list,
                    RegisterResult::Updated {
                        aor: aor.clone(),
                        identity,
                        changes,
                    },
                    require_outbound,
                )
            }
        };
        self.store(aor.clone(), kept);

        // Step 8.
        let mut out = BytesMut::new();
        let mut w = ResponseWriter::start(&mut out, Style::Rfc3261, msg, 200, "OK", Some(&tag));
        if require_outbound {
            w.header("Require", "outbound");
        }
        for b in self.bindings(&aor, now) {
            w.header("Contact", &b.contact_value(now));
        }
        w.header("Date", &self.date(now));
        w.finish(b"");
        Ok(RegisterOutcome {
            status: 200,
            response: out,
            result,
        })
    }

    /// Applies the contacts of a REGISTER to a copy of the AOR's current bindings; returns
    /// the new list, what changed, and whether to answer `Require: outbound`.
    fn apply(
        &self,
        mut working: Vec<Binding>,
        contacts: &[Contact<'_>],
        cx: ContactContext<'_>,
    ) -> Result<(Vec<Binding>, Changes, bool), Rejection> {
        let mut requested = Vec::with_capacity(contacts.len());
        for c in contacts {
            let Contact::Addr(addr) = c else {
                // `*` is handled by the caller; never mixed (checked_request refuses that).
                return Err(Rejection::StarWithoutExpiresZero);
            };
            if addr.uri().scheme() != Scheme::Sip {
                return Err(Rejection::ContactScheme);
            }
            let expires = match addr.param("expires") {
                Some(p) => parse_expires(p.value.unwrap_or("")),
                None => cx.expires_header.unwrap_or(self.config.default_expires),
            };
            let instance = addr
                .param("+sip.instance")
                .and_then(|p| p.value)
                .map(|v| crate::sip::unquote(v).to_owned());
            let reg_id = match addr.param("reg-id") {
                None => None,
                Some(p) => Some(parse_reg_id(p.value).ok_or(Rejection::MalformedRegId)?),
            };
            let mut params = String::new();
            for p in addr.params().iter() {
                if p.name.eq_ignore_ascii_case("expires") {
                    continue;
                }
                params.push(';');
                params.push_str(p.name);
                if let Some(v) = p.value {
                    params.push('=');
                    params.push_str(v);
                }
            }
            requested.push(Requested {
                uri: *addr.uri(),
                params,
                expires,
                // RFC 5626 §6: a reg-id without an instance is ignored.
                reg_id: reg_id.filter(|_| instance.is_some()),
                instance,
            });
        }
        // RFC 5626 §6: outbound only when the REGISTER comes straight from the client.
        if !cx.first_hop && requested.iter().any(|r| r.reg_id.is_some()) {
            if cx.supports_outbound {
                return Err(Rejection::FirstHopLacksOutbound);
            }
            for r in &mut requested {
                r.reg_id = None;
            }
        }
        let live = || requested.iter().filter(|r| r.expires > 0);
        if live().count() > 1 && live().any(|r| r.reg_id.is_some()) {
            return Err(Rejection::RegIdWithSeveralContacts);
        }
        // RFC 3261 §10.3 step 7: 423 for intervals below the minimum (and below an hour).
        let floor = self.config.min_expires.min(ONE_HOUR);
        if requested.iter().any(|r| r.expires > 0 && r.expires < floor) {
            return Err(Rejection::IntervalTooBrief {
                min_expires: self.config.min_expires,
            });
        }

        let mut marks = vec![Mark::Untouched; working.len()];
        let mut changes = Changes::default();
        let mut require_outbound = false;
        for r in &requested {
            let granted = r.expires.min(self.config.max_expires);
            let found = working.iter().position(|b| matches(b, r));
            match found {
                Some(i) => {
                    let mark = marks.get(i).copied().unwrap_or(Mark::Untouched);
                    if mark == Mark::Untouched {
                        let stale = working
                            .get(i)
                            .is_some_and(|b| b.call_id == cx.call_id && cx.cseq <= b.cseq);
                        if stale {
                            return Err(Rejection::OutOfOrder);
                        }
                    }
                    if granted == 0 {
                        working.remove(i);
                        marks.remove(i);
                        if mark != Mark::Added {
                            changes.removed += 1;
                        }
                    } else if let (Some(b), Some(m)) = (working.get_mut(i), marks.get_mut(i)) {
                        *b = self.binding(r, granted, &cx);
                        if *m == Mark::Untouched {
                            *m = Mark::Refreshed;
                        }
                    }
                }
                None if granted > 0 => {
                    working.push(self.binding(r, granted, &cx));
                    marks.push(Mark::Added);
                }
                None => {}
            }
            if granted > 0 && r.reg_id.is_some() && cx.supports_outbound {
                require_outbound = true;
            }
        }
        while working.len() > self.config.max_bindings {
            let victim = working
                .iter()
                .zip(&marks)
                .enumerate()
                .filter(|(_, (_, m))| **m == Mark::Untouched)
                .min_by_key(|(_, (b, _))| b.updated_at)
                .map(|(i, _)| i);
            let Some(i) = victim else {
                return Err(Rejection::TooManyContacts {
                    max: self.config.max_bindings,
                });
            };
            working.remove(i);
            marks.remove(i);
            changes.evicted += 1;
        }
        changes.added = marks.iter().filter(|m| **m == Mark::Added).count();
        changes.refreshed = marks.iter().filter(|m| **m == Mark::Refreshed).count();
        Ok((working, changes, require_outbound))
    }

    fn binding(&self, r: &Requested<'_>, granted: u32, cx: &ContactContext<'_>) -> Binding {
        Binding {
            contact_uri: r.uri.as_str().to_owned(),
            params: r.params.clone(),
            expires_at: cx.now + Duration::from_secs(u64::from(granted)),
            call_id: cx.call_id.to_owned(),
            cseq: cx.cseq,
            source: cx.source,
            transport: cx.transport,
            instance: r.instance.clone(),
            reg_id: r.reg_id,
            updated_at: cx.now,
        }
    }

    fn store(&mut self, aor: Aor, list: Vec<Binding>) {
        if !list.is_empty() {
            self.bindings.insert(aor, list);
        }
    }

    /// How `uri` names this registrar, or why it does not (RFC 3261 §10.3 step 1).
    fn request_host<U: UserLookup>(
        &self,
        uri: &Uri<'_>,
        users: &U,
    ) -> Result<RequestHost, Rejection> {
        if uri.scheme() != Scheme::Sip {
            return Err(Rejection::UnsupportedScheme(UriField::RequestUri));
        }
        match uri.host() {
            Some(Host::Domain(d)) => {
                let d = normalize_domain(d);
                if self
                    .config
                    .aliases
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&d))
                {
                    Ok(RequestHost::Alias)
                } else if users.serves_domain(&d) {
                    Ok(RequestHost::Domain(d))
                } else {
                    Err(Rejection::DomainNotServed(d))
                }
            }
            Some(_) => Ok(RequestHost::Ip),
            None => Err(Rejection::UnsupportedScheme(UriField::RequestUri)),
        }
    }

    /// A `401` with fresh challenges for `realm` (stale ones for a stale nonce).
    fn challenge<I>(
        &self,
        msg: &Message<'_>,
        realm: &str,
        reason: ChallengeReason,
        now: Instant,
    ) -> Result<RegisterOutcome<I>, Rejection> {
        Ok(RegisterOutcome {
            status: 401,
            response: self.challenge_response(msg, realm, reason, now, false)?,
            result: RegisterResult::Challenged(reason),
        })
    }

    /// Fresh challenges for `realm` (stale ones for a stale nonce): a `401` with
    /// `WWW-Authenticate` for a registrar, a `407` with `Proxy-Authenticate` for a proxy
    /// (RFC 3261 §22.3).
    fn challenge_response(
        &self,
        msg: &Message<'_>,
        realm: &str,
        reason: ChallengeReason,
        now: Instant,
        proxy: bool,
    ) -> Result<BytesMut, Rejection> {
        let challenge = self.auth.challenge(realm, now).map_err(Rejection::Crypto)?;
        let challenge = if reason == ChallengeReason::StaleNonce {
            challenge.stale()
        } else {
            challenge
        };
        let (status, phrase, header) = if proxy {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        } else {
            (401, "Unauthorized", "WWW-Authenticate")
        };
        let tag = self.auth.random_hex(8).map_err(Rejection::Crypto)?;
        let mut out = BytesMut::new();
        let mut w =
            ResponseWriter::start(&mut out, Style::Rfc3261, msg, status, phrase, Some(&tag));
        for value in challenge.header_values() {
            w.header(header, &value);
        }
        w.finish(b"");
        Ok(out)
    }

    fn reject<I>(&self, msg: &Message<'_>, rejection: Rejection) -> RegisterOutcome<I> {
        let status = rejection.status();
        // A response without a To tag is still a response; the tag only fails with the RNG.
        let tag = self.auth.random_hex(8).ok();
        let mut out = BytesMut::new();
        let mut w = ResponseWriter::start(
            &mut out,
            Style::Rfc3261,
            msg,
            status,
            rejection.reason_phrase(),
            tag.as_deref(),
        );
        match &rejection {
            Rejection::IntervalTooBrief { min_expires } => {
                w.header("Min-Expires", &min_expires.to_string());
            }
            Rejection::BadExtension(tags) => {
                w.header("Unsupported", tags);
            }
            Rejection::NotRegister => {
                w.header("Allow", "REGISTER");
            }
            _ => {}
        }
        w.finish(b"");
        RegisterOutcome {
            status,
            response: out,
            result: RegisterResult::Rejected(rejection),
        }
    }

    /// The `Date` header value for `now` (RFC 3261 §20.17).
    fn date(&self, now: Instant) -> String {
        let (at, wall) = self.clock;
        let wall = if now >= at {
            wall.checked_add(now.duration_since(at))
        } else {
            wall.checked_sub(at.duration_since(now))
        };
        let secs = wall
            .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        http_date(secs)
    }
}

/// The request-wide inputs to binding updates.
struct ContactContext<'m> {
    expires_header: Option<u32>,
    call_id: &'m str,
    cseq: u32,
    source: SocketAddr,
    transport: Transport,
    now: Instant,
    first_hop: bool,
    supports_outbound: bool,
}

/// RFC 3261 §10.3 step 6: `Contact: *` removes every binding, unless one of them was set by
/// the same Call-ID with a CSeq that is not lower; returns how many were removed.
fn star(
    current: &[Binding],
    expires_header: Option<u32>,
    call_id: &str,
    cseq: u32,
) -> Result<usize, Rejection> {
    if expires_header != Some(0) {
        return Err(Rejection::StarWithoutExpiresZero);
    }
    if current
        .iter()
        .any(|b| b.call_id == call_id && cseq <= b.cseq)
    {
        return Err(Rejection::OutOfOrder);
    }
    Ok(current.len())
}

/// The `Authorization` for `realm`, if the request carries one. Headers for other realms or
/// other schemes are skipped; one for no realm that cannot be parsed is a `400`.
fn credentials_for<'m>(
    msg: &Message<'m>,
    realm: &str,
) -> Result<Option<Authorization<'m>>, Rejection> {
    credentials_in(msg, HeaderName::Authorization, realm)
}

/// The digest credentials for `realm` in header `name` (`Authorization` or
/// `Proxy-Authorization`).
fn credentials_in<'m>(
    msg: &Message<'m>,
    name: HeaderName,
    realm: &str,
) -> Result<Option<Authorization<'m>>, Rejection> {
    let mut error = None;
    for h in msg.headers_named(name) {
        match Authorization::parse(h.value) {
            Ok(a) if a.realm() == realm => return Ok(Some(a)),
            Ok(_) | Err(AuthParseError::NotDigest) | Err(AuthParseError::NoResponse) => {}
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    match error {
        Some(e) => Err(Rejection::Authorization(e)),
        None => Ok(None),
    }
}

/// Does stored binding `b` stand for requested contact `r`? By (instance, reg-id) for RFC
/// 5626 outbound contacts, by RFC 3261 §19.1.4 URI equality for the rest.
fn matches(b: &Binding, r: &Requested<'_>) -> bool {
    match (&r.instance, r.reg_id) {
        (Some(instance), Some(reg_id)) => {
            b.reg_id == Some(reg_id)
                && b.instance
                    .as_deref()
                    .is_some_and(|i| i.eq_ignore_ascii_case(instance))
        }
        _ => !b.is_outbound() && b.uri().is_some_and(|u| uri_eq(&u, &r.uri)),
    }
}

/// A delta-seconds value (RFC 3261 §20.19, §20.10): values beyond 2^32-1 saturate, malformed
/// ones count as 3600.
fn parse_expires(s: &str) -> u32 {
    let s = s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'));
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return ONE_HOUR;
    }
    s.bytes().fold(0u32, |n, d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    })
}

/// `reg-id = 1*DIGIT`, 1 to 2^31-1 (RFC 5626 §4.2).
fn parse_reg_id(v: Option<&str>) -> Option<u32> {
    let v = v?;
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=0x7fff_ffff).contains(n))
}

fn invalid(reason: &'static str) -> Invalid {
    Invalid {
        status: 400,
        reason,
    }
}

/// RFC 3261 §19.1.4 URI equality: scheme, user and password octet for octet after
/// unescaping, host case-insensitively, port exactly (absent is not 5060), the parameters
/// `transport`, `user`, `ttl`, `method` and `maddr` present in both or neither and equal,
/// other parameters equal where both have them, and URI headers equal.
fn uri_eq(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    if a.scheme() != b.scheme()
        || !component_eq(a.user(), b.user(), false)
        || !component_eq(a.password(), b.password(), false)
        || a.port() != b.port()
    {
        return false;
    }
    let hosts = match (a.host(), b.host()) {
        (Some(Host::Domain(x)), Some(Host::Domain(y))) => x.eq_ignore_ascii_case(y),
        (x, y) => x == y,
    };
    if !hosts {
        return false;
    }
    for name in ["transport", "user", "ttl", "method", "maddr"] {
        match (a.param(name), b.param(name)) {
            (None, None) => {}
            (Some(x), Some(y)) if component_eq(x.value, y.value, true) => {}
            _ => return false,
        }
    }
    for p in a.params().iter() {
        if let Some(q) = b.params().get(p.name) {
            if !component_eq(p.value, q.value, true) {
                return false;
            }
        }
    }
    let mut ah: Vec<(Vec<u8>, Vec<u8>)> = a.headers().filter_map(decoded_pair).collect();
    let mut bh: Vec<(Vec<u8>, Vec<u8>)> = b.headers().filter_map(decoded_pair).collect();
    ah.sort();
    bh.sort();
    ah == bh
}

fn decoded_pair((n, v): (&str, &str)) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut n = decoded(n)?;
    n.make_ascii_lowercase();
    Some((n, decoded(v)?))
}

/// Compares two optional escaped components after unescaping.
fn component_eq(a: Option<&str>, b: Option<&str>, ignore_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => match (decoded(x), decoded(y)) {
            (Some(x), Some(y)) if ignore_case => x.eq_ignore_ascii_case(&y),
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}

fn decoded(s: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; s.len()];
    let n = decode_into(s, &mut buf).ok()?.len();
    buf.truncate(n);
    Some(buf)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the Unix epoch (RFC 1123 date in GMT,
/// as RFC 3261 §20.17 requires).
fn http_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let weekday = usize::try_from(days % 7)
        .ok()
        .and_then(|i| DAYS.get(i))
        .unwrap_or(&"Thu");
    let month_name = usize::try_from(month.saturating_sub(1))
        .ok()
        .and_then(|i| MONTHS.get(i))
        .unwrap_or(&"Jan");
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Gregorian (year, month 1-12, day 1-31) of a day count since 1970-01-01, by shifting the
/// year to start in March so that the leap day ends it, and counting 400-year eras.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::digest::DigestConfig;
    use crate::endpoint::throttle::AddrKey;
    use crate::sip::{Limits, SipDate, Status};
    use md5::{Digest as _, Md5};
    use rustls::SupportedCipherSuite;

    const T0_WALL: u64 = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT

    /// The lab directory: two tenant domains, three users.
    struct Users;

    impl UserLookup for Users {
        type Identity = u32;

        fn serves_domain(&self, domain: &str) -> bool {
            matches!(domain, "adatum.biz" | "contoso.com")
        }

        fn lookup(&self, aor: &Aor) -> Option<Credentials<'_, u32>> {
            let (password, identity) = match (aor.user(), aor.domain()) {
                ("alice", "adatum.biz") => ("alice-secret", 1),
                ("bob", "adatum.biz") => ("bob-secret", 2),
                ("carol", "contoso.com") => ("carol-secret", 3),
                _ => return None,
            };
            Some(Credentials { password, identity })
        }
    }

    struct Lab {
        reg: Registrar,
        t0: Instant,
    }

    fn lab_with(config: RegistrarConfig) -> Lab {
        let t0 = Instant::now();
        let auth = match Authenticator::with_secret(DigestConfig::default(), [42u8; 32], b"lab", t0)
        {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let wall = UNIX_EPOCH + Duration::from_secs(T0_WALL);
        match Registrar::new(config, auth, t0, wall) {
            Ok(reg) => Lab { reg, t0 },
            Err(e) => panic!("{e}"),
        }
    }

    fn lab() -> Lab {
        lab_with(RegistrarConfig {
            aliases: vec!["sip.pstnhub.microsoft.com".into()],
            ..RegistrarConfig::default()
        })
    }

    fn at(lab: &Lab, secs: u64) -> Instant {
        lab.t0 + Duration::from_secs(secs)
    }

    const SRC: &str = "192.0.2.20:5060";

    fn src() -> SocketAddr {
        match SRC.parse() {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    /// A REGISTER as a softphone sends it.
    #[derive(Clone)]
    struct Req {
        ruri: String,
        user: String,
        domain: String,
        from_user: Option<String>,
        call_id: String,
        cseq: u32,
        contacts: Vec<String>,
        extra: Vec<String>,
        vias: usize,
    }

    fn req(user: &str) -> Req {
        Req {
            ruri: "sip:adatum.biz".into(),
            user: user.into(),
            domain: "adatum.biz".into(),
            from_user: None,
            call_id: "reg-1@192.0.2.20".into(),
            cseq: 1,
            contacts: vec![format!("<sip:{user}@192.0.2.20:5060;transport=udp>")],
            extra: Vec::new(),
            vias: 1,
        }
    }

    impl Req {
        fn cseq(mut self, n: u32) -> Self {
            self.cseq = n;
            self
        }
        fn call_id(mut self, c: &str) -> Self {
            self.call_id = c.into();
            self
        }
        fn contacts(mut self, c: &[&str]) -> Self {
            self.contacts = c.iter().map(|s| s.to_string()).collect();
            self
        }
        fn header(mut self, h: &str) -> Self {
            self.extra.push(h.into());
            self
        }
        fn bytes(&self) -> Vec<u8> {
            let mut s = format!("REGISTER {} SIP/2.0\r\n", self.ruri);
            for i in 0..self.vias {
                s.push_str(&format!(
                    "Via: SIP/2.0/UDP 192.0.2.{}:5060;branch=z9hG4bK-{}-{i}\r\n",
                    20 + i,
                    self.cseq
                ));
            }
            let from = self.from_user.as_deref().unwrap_or(&self.user);
            s.push_str("Max-Forwards: 70\r\n");
            s.push_str(&format!(
                "From: <sip:{from}@{}>;tag=f{}\r\n",
                self.domain, self.cseq
            ));
            s.push_str(&format!("To: <sip:{}@{}>\r\n", self.user, self.domain));
            s.push_str(&format!("Call-ID: {}\r\n", self.call_id));
            s.push_str(&format!("CSeq: {} REGISTER\r\n", self.cseq));
            for c in &self.contacts {
                s.push_str(&format!("Contact: {c}\r\n"));
            }
            for h in &self.extra {
                s.push_str(h);
                s.push_str("\r\n");
            }
            s.push_str("Content-Length: 0\r\n\r\n");
            s.into_bytes()
        }
    }

    fn send_from(
        lab: &mut Lab,
        r: &Req,
        now: Instant,
        source: SocketAddr,
        transport: Transport,
    ) -> RegisterOutcome<u32> {
        let bytes = r.bytes();
        let msg = match Message::parse(&bytes, &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("test REGISTER did not parse: {other:?}"),
        };
        lab.reg
            .handle_register(&msg, source, transport, now, &Users)
    }

    fn send(lab: &mut Lab, r: &Req, now: Instant) -> RegisterOutcome<u32> {
        send_from(lab, r, now, src(), Transport::Udp)
    }

    /// The response's status and headers (raw name, value), via the daemon's own parser.
    struct Resp {
        text: String,
        status: u16,
        headers: Vec<(String, String)>,
    }

    impl Resp {
        fn all(&self, name: &str) -> Vec<&str> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        }
        fn one(&self, name: &str) -> &str {
            match self.all(name).as_slice() {
                [v] => v,
                other => panic!("{name}: {other:?} in\n{}", self.text),
            }
        }
    }

    fn resp(o: &RegisterOutcome<u32>) -> Resp {
        let msg = match Message::parse(&o.response, &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("response did not parse: {other:?}"),
        };
        assert!(msg.checked_response().is_ok(), "{msg:?}");
        let status = msg.status_code().unwrap_or(0);
        assert_eq!(status, o.status);
        Resp {
            text: String::from_utf8_lossy(&o.response).into_owned(),
            status,
            headers: msg
                .headers()
                .map(|h| (h.raw_name.to_owned(), h.value.to_owned()))
                .collect(),
        }
    }

    // ------------------------------------------------------------ first principles

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn md5_hex(s: &str) -> String {
        let mut h = Md5::new();
        h.update(s.as_bytes());
        hex(h.finalize().as_slice())
    }

    fn sha256_hex(s: &str) -> String {
        let SupportedCipherSuite::Tls13(suite) =
            rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        else {
            panic!("no TLS 1.3 suite");
        };
        hex(suite.common.hash_provider.hash(s.as_bytes()).as_ref())
    }

    /// The value of `name="..."` (or `name=token`) inside a challenge.
    fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
        let key = format!("{name}=");
        let Some(start) = challenge.find(&key).map(|i| i + key.len()) else {
            panic!("{name} not in {challenge}");
        };
        let rest = &challenge[start..];
        match rest.strip_prefix('"') {
            Some(q) => q.split('"').next().unwrap_or(""),
            None => rest.split(',').next().unwrap_or("").trim(),
        }
    }

    /// The Authorization header a client computes for `challenge` (RFC 7616 §3.4.1).
    fn answer(challenge: &str, username: &str, password: &str, uri: &str) -> String {
        let realm = param(challenge, "realm");
        let nonce = param(challenge, "nonce");
        let opaque = param(challenge, "opaque");
        let algorithm = param(challenge, "algorithm");
        let h = |s: &str| {
            if algorithm == "MD5" {
                md5_hex(s)
            } else {
                sha256_hex(s)
            }
        };
        let (nc, cnonce) = ("00000001", "0a4f113b");
        let ha1 = h(&format!("{username}:{realm}:{password}"));
        let ha2 = h(&format!("REGISTER:{uri}"));
        let response = h(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm={algorithm}, qop=auth, nc={nc}, \
             cnonce=\"{cnonce}\", opaque=\"{opaque}\""
        )
    }

    /// Sends `r` unauthenticated, then again (CSeq + 1) answering the challenge offering
    /// `algorithm`; returns the second outcome.
    fn register_with(
        lab: &mut Lab,
        r: &Req,
        password: &str,
        algorithm: &str,
        now: Instant,
    ) -> RegisterOutcome<u32> {
        register_from(lab, r, password, algorithm, now, src())
    }

    /// [`register_with`] from another source address (UDP).
    fn register_from(
        lab: &mut Lab,
        r: &Req,
        password: &str,
        algorithm: &str,
        now: Instant,
        source: SocketAddr,
    ) -> RegisterOutcome<u32> {
        let first = send_from(lab, r, now, source, Transport::Udp);
        assert_eq!(first.status, 401, "{}", resp(&first).text);
        let challenge = resp(&first)
            .all("WWW-Authenticate")
            .into_iter()
            .find(|c| param(c, "algorithm") == algorithm)
            .map(str::to_owned)
            .unwrap_or_default();
        let authed = r
            .clone()
            .cseq(r.cseq + 1)
            .header(&answer(&challenge, &r.user, password, &r.ruri));
        send_from(lab, &authed, now, source, Transport::Udp)
    }

    fn register(lab: &mut Lab, r: &Req, now: Instant) -> RegisterOutcome<u32> {
        let password = format!("{}-secret", r.user);
        let o = register_with(lab, r, &password, "SHA-256", now);
        assert_eq!(o.status, 200, "{}", resp(&o).text);
        o
    }

    fn alice() -> Aor {
        Aor::new("alice", "adatum.biz")
    }

    fn contacts_of(lab: &Lab, aor: &Aor, now: Instant) -> Vec<String> {
        lab.reg
            .bindings(aor, now)
            .map(|b| b.contact_uri.clone())
            .collect()
    }

    // ------------------------------------------------------------ tests

    #[test]
    fn sha256_challenge_response_round_trip_registers() {
        let mut lab = lab();
        let now = at(&lab, 10);
        let r = req("alice");
        let first = send(&mut lab, &r, now);
        assert_eq!(
            first.result,
            RegisterResult::Challenged(ChallengeReason::NoCredentials)
        );
        let c = resp(&first);
        assert_eq!(c.status, 401);
        let challenges = c.all("WWW-Authenticate");
        assert_eq!(challenges.len(), 2, "{}", c.text);
        // RFC 8760 §2.3: SHA-256 first, then MD5, same realm and nonce.
        assert_eq!(param(challenges[0], "algorithm"), "SHA-256");
        assert_eq!(param(challenges[1], "algorithm"), "MD5");
        assert_eq!(param(challenges[0], "realm"), "adatum.biz");
        assert_eq!(param(challenges[0], "qop"), "auth");
        assert_eq!(param(challenges[0], "nonce"), param(challenges[1], "nonce"));
        assert!(c.one("To").contains(";tag="), "{}", c.text);
        assert!(c.all("Contact").is_empty());

        let authed = r.clone().cseq(2).header(&answer(
            challenges[0],
            "alice",
            "alice-secret",
            "sip:adatum.biz",
        ));
        let ok = send(&mut lab, &authed, now);
        let o = resp(&ok);
        assert_eq!(o.status, 200, "{}", o.text);
        assert_eq!(
            ok.result,
            RegisterResult::Updated {
                aor: alice(),
                identity: 1,
                changes: Changes {
                    added: 1,
                    ..Changes::default()
                },
            }
        );
        assert_eq!(
            o.one("Contact"),
            "<sip:alice@192.0.2.20:5060;transport=udp>;expires=3600"
        );
        assert_eq!(o.one("Date"), "Tue, 14 Nov 2023 22:13:30 GMT");
        assert!(o.one("To").starts_with("<sip:alice@adatum.biz>;tag="));
        assert!(o
            .text
            .starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.20:5060;"));
        let bindings: Vec<&Binding> = lab.reg.bindings(&alice(), now).collect();
        assert_eq!(bindings.len(), 1);
        let b = bindings[0];
        assert_eq!(b.source, src());
        assert_eq!(b.transport, Transport::Udp);
        assert_eq!(b.call_id, "reg-1@192.0.2.20");
        assert_eq!(b.cseq, 2);
        assert_eq!(b.expires_at, now + Duration::from_secs(3600));
        assert_eq!(b.instance, None);
        assert_eq!(
            lab.reg.poll_timeout(),
            Some(now + Duration::from_secs(3600))
        );
    }

    #[test]
    fn md5_challenge_response_round_trip_with_expires_header() {
        let mut lab = lab();
        let now = at(&lab, 0);
        let r = req("bob").header("Expires: 120");
        let ok = register_with(&mut lab, &r, "bob-secret", "MD5", now);
        let o = resp(&ok);
        assert_eq!(o.status, 200, "{}", o.text);
        assert_eq!(
            o.one("Contact"),
            "<sip:bob@192.0.2.20:5060;transport=udp>;expires=120"
        );
        // The Date parses back as an RFC 1123 date.
        assert!(SipDate::parse(o.one("Date")).is_ok());
    }

    /// Masks what must differ between two 401s: the user name, the nonce and the To tag.
    fn masked(o: &RegisterOutcome<u32>, user: &str) -> String {
        let r = resp(o);
        let nonce = param(r.all("WWW-Authenticate")[0], "nonce").to_owned();
        let to = r.one("To");
        let tag = to.split(";tag=").nth(1).unwrap_or("").to_owned();
        assert!(!nonce.is_empty() && !tag.is_empty());
        r.text
            .replace(&nonce, "NONCE")
            .replace(&tag, "TAG")
            .replace(user, "USER")
    }

    #[test]
    fn unknown_user_and_wrong_password_get_identical_401s() {
        let mut lab = lab();
        let now = at(&lab, 5);
        // Same-length names so that only the masked parts differ.
        let known = req("alice");
        let unknown = req("zelda");
        // The first, credential-less 401 is the same for both.
        let k0 = send(&mut lab, &known, now);
        let u0 = send(&mut lab, &unknown, now);
        assert_eq!(masked(&k0, "alice"), masked(&u0, "zelda"));
        // Credentials with a wrong password vs credentials of a user that does not exist.
        let kc = resp(&k0).all("WWW-Authenticate")[0].to_owned();
        let uc = resp(&u0).all("WWW-Authenticate")[0].to_owned();
        let k1 = send(
            &mut lab,
            &known
                .clone()
                .cseq(2)
                .header(&answer(&kc, "alice", "guess", "sip:adatum.biz")),
            now,
        );
        let u1 = send(
            &mut lab,
            &unknown
                .clone()
                .cseq(2)
                .header(&answer(&uc, "zelda", "guess", "sip:adatum.biz")),
            now,
        );
        assert_eq!((k1.status, u1.status), (401, 401));
        assert_eq!(
            masked(&k1, "alice"),
            masked(&u1, "zelda"),
            "a 401 must not tell whether the user exists"
        );
        // Neither is stale: stale=true is only for a correct digest.
        assert!(!resp(&k1).text.contains("stale"));
        // The log reasons differ, the bytes on the wire do not.
        assert_eq!(
            k1.result,
            RegisterResult::Challenged(ChallengeReason::WrongCredentials)
        );
        assert_eq!(
            u1.result,
            RegisterResult::Challenged(ChallengeReason::UnknownUser)
        );
        // Even the correct password of another user gets the same answer, and so does an
        // MD5 answer (the algorithm does not change the response either).
        let mc = resp(&u0).all("WWW-Authenticate")[1].to_owned();
        for password in ["alice-secret", "zelda-secret"] {
            let u2 = send(
                &mut lab,
                &unknown
                    .clone()
                    .cseq(2)
                    .header(&answer(&mc, "zelda", password, "sip:adatum.biz")),
                now,
            );
            assert_eq!(masked(&u2, "zelda"), masked(&k1, "alice"));
        }
        assert_eq!(lab.reg.binding_count(), 0);
    }

    #[test]
    fn stale_nonce_is_rechallenged_with_stale_true_only_for_the_right_password() {
        let mut lab = lab();
        let t = at(&lab, 100);
        let r = req("alice");
        let first = send(&mut lab, &r, t);
        let challenge = resp(&first).all("WWW-Authenticate")[0].to_owned();
        let late = t + Duration::from_secs(301);
        let right = r.clone().cseq(2).header(&answer(
            &challenge,
            "alice",
            "alice-secret",
            "sip:adatum.biz",
        ));
        let o = send(&mut lab, &right, late);
        assert_eq!(
            o.result,
            RegisterResult::Challenged(ChallengeReason::StaleNonce)
        );
        let fresh = resp(&o);
        for c in fresh.all("WWW-Authenticate") {
            assert!(c.ends_with(", stale=true"), "{c}");
            assert_ne!(param(c, "nonce"), param(&challenge, "nonce"));
        }
        let wrong =
            r.clone()
                .cseq(3)
                .header(&answer(&challenge, "alice", "nope", "sip:adatum.biz"));
        let o = send(&mut lab, &wrong, late);
        assert_eq!(
            o.result,
            RegisterResult::Challenged(ChallengeReason::WrongCredentials)
        );
        assert!(!resp(&o).text.contains("stale"));
        // Retrying with the new nonce works.
        let retry = r.cseq(4).header(&answer(
            fresh.all("WWW-Authenticate")[0],
            "alice",
            "alice-secret",
            "sip:adatum.biz",
        ));
        assert_eq!(send(&mut lab, &retry, late).status, 200);
    }

    #[test]
    fn bindings_expire_on_a_virtual_clock() {
        let mut lab = lab();
        let t = at(&lab, 0);
        register(&mut lab, &req("alice").header("Expires: 60"), t);
        assert_eq!(lab.reg.poll_timeout(), Some(t + Duration::from_secs(60)));
        assert_eq!(
            contacts_of(&lab, &alice(), t + Duration::from_secs(59)).len(),
            1
        );
        let b = lab
            .reg
            .bindings(&alice(), t + Duration::from_millis(59_500))
            .next()
            .cloned();
        assert_eq!(
            b.map(|b| b.seconds_left(t + Duration::from_millis(59_500))),
            Some(1)
        );
        assert!(contacts_of(&lab, &alice(), t + Duration::from_secs(60)).is_empty());
        assert!(lab.reg.expire(t + Duration::from_secs(59)).is_empty());
        let gone = lab.reg.expire(t + Duration::from_secs(60));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, alice());
        assert_eq!(lab.reg.poll_timeout(), None);
        assert_eq!(lab.reg.aors().count(), 0);
    }

    #[test]
    fn star_with_expires_zero_removes_every_binding() {
        let mut lab = lab();
        let t = at(&lab, 0);
        let two =
            req("alice").contacts(&["<sip:alice@192.0.2.20:5060>", "<sip:alice@192.0.2.21:5060>"]);
        register(&mut lab, &two, t);
        assert_eq!(contacts_of(&lab, &alice(), t).len(), 2);
        // Needs Expires: 0.
        let star = req("alice").cseq(10).contacts(&["*"]);
        let o = register_with(&mut lab, &star, "alice-secret", "SHA-256", t);
        assert_eq!(o.status, 400);
        assert_eq!(
            o.result,
            RegisterResult::Rejected(Rejection::StarWithoutExpiresZero)
        );
        // Same Call-ID, CSeq not higher than the bindings' (2): fails, nothing removed.
        let old = req("alice").cseq(1).contacts(&["*"]).header("Expires: 0");
        let o = register_with(&mut lab, &old, "alice-secret", "SHA-256", t);
        assert_eq!(o.status, 500);
        assert_eq!(o.result, RegisterResult::Rejected(Rejection::OutOfOrder));
        assert_eq!(contacts_of(&lab, &alice(), t).len(), 2);
        let star = star.header("Expires: 0");
        let o = register_with(&mut lab, &star, "alice-secret", "SHA-256", t);
        let r = resp(&o);
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.all("Contact").is_empty());
        assert!(matches!(
            o.result,
            RegisterResult::Updated {
                changes: Changes { removed: 2, .. },
                ..
            }
        ));
        assert_eq!(lab.reg.binding_count(), 0);
    }

    #[test]
    fn expires_zero_removes_only_that_binding() {
        let mut lab = lab();
        let t = at(&lab, 0);
        let two =
            req("alice").contacts(&["<sip:alice@192.0.2.20:5060>", "<sip:alice@192.0.2.21:5060>"]);
        register(&mut lab, &two, t);
        // The same URI written differently (RFC 3261 §19.1.4) still matches.
        let bye = req("alice")
            .cseq(5)
            .contacts(&["<sip:%61lice@192.0.2.21:5060>;expires=0"]);
        let o = register(&mut lab, &bye, t);
        assert_eq!(
            contacts_of(&lab, &alice(), t),
            vec!["sip:alice@192.0.2.20:5060".to_owned()]
        );
        assert!(matches!(
            o.result,
            RegisterResult::Updated {
                changes: Changes {
                    removed: 1,
                    added: 0,
                    ..
                },
                ..
            }
        ));
        assert_eq!(resp(&o).all("Contact").len(), 1);
    }

    #[test]
    fn too_brief_intervals_get_423_with_min_expires() {
        let mut lab = lab();
        let t = at(&lab, 0);
        for (n, (r, status)) in [
            (req("alice").header("Expires: 30"), 423),
            (
                req("alice").contacts(&["<sip:alice@192.0.2.20>;expires=59"]),
                423,
            ),
            (
                req("alice").contacts(&["<sip:alice@192.0.2.20>;expires=60"]),
                200,
            ),
            // A per-contact expires wins over the header.
            (
                req("alice")
                    .contacts(&["<sip:alice@192.0.2.20>;expires=600"])
                    .header("Expires: 1"),
                200,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let r = r.call_id(&format!("brief-{n}"));
            let o = register_with(&mut lab, &r, "alice-secret", "SHA-256", t);
            assert_eq!(o.status, status, "{}", resp(&o).text);
            if status == 423 {
                assert_eq!(resp(&o).one("Min-Expires"), "60");
                assert_eq!(
                    o.result,
                    RegisterResult::Rejected(Rejection::IntervalTooBrief { min_expires: 60 })
                );
            }
        }
        // Long requests are cut to max_expires, malformed ones count as 3600.
        let long = req("bob").call_id("other").contacts(&[
            "<sip:bob@192.0.2.30>;expires=999999999999",
            "<sip:bob@192.0.2.31>;expires=soon",
        ]);
        let o = register(&mut lab, &long, t);
        let r = resp(&o);
        assert_eq!(
            r.all("Contact"),
            vec![
                "<sip:bob@192.0.2.30>;expires=3600",
                "<sip:bob@192.0.2.31>;expires=3600"
            ]
        );
    }

    #[test]
    fn register_without_contact_is_a_query() {
        let mut lab = lab();
        let t = at(&lab, 0);
        register(&mut lab, &req("alice").header("Expires: 600"), t);
        let later = t + Duration::from_secs(100);
        let q = req("alice").cseq(7).contacts(&[]);
        let o = register_with(&mut lab, &q, "alice-secret", "SHA-256", later);
        assert_eq!(
            o.result,
            RegisterResult::Queried {
                aor: alice(),
                identity: 1
            }
        );
        assert_eq!(
            resp(&o).one("Contact"),
            "<sip:alice@192.0.2.20:5060;transport=udp>;expires=500"
        );
        // Nothing changed: the binding keeps its expiry and CSeq.
        let b = lab.reg.bindings(&alice(), later).next().cloned();
        assert_eq!(
            b.map(|b| (b.cseq, b.expires_at)),
            Some((2, t + Duration::from_secs(600)))
        );
    }

    #[test]
    fn multiple_contacts_make_multiple_bindings() {
        let mut lab = lab();
        let t = at(&lab, 0);
        let r = req("alice").contacts(&[
            "<sip:alice@192.0.2.20:5060>;q=0.9, \"Desk\" <sip:alice@192.0.2.21:5060;transport=tcp>",
            "sip:alice@[2001:db8::7]:5062",
        ]);
        let o = register(&mut lab, &r, t);
        let contacts = resp(&o)
            .all("Contact")
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        assert_eq!(
            contacts,
            vec![
                "<sip:alice@192.0.2.20:5060>;q=0.9;expires=3600",
                "<sip:alice@192.0.2.21:5060;transport=tcp>;expires=3600",
                "<sip:alice@[2001:db8::7]:5062>;expires=3600",
            ]
        );
        assert!(matches!(
            o.result,
            RegisterResult::Updated {
                changes: Changes { added: 3, .. },
                ..
            }
        ));
        assert_eq!(lab.reg.targets(&alice(), t).len(), 3);
    }

    #[test]
    fn reregistration_refreshes_the_binding() {
        let mut lab = lab();
        let t = at(&lab, 0);
        register(&mut lab, &req("alice").header("Expires: 600"), t);
        let later = t + Duration::from_secs(500);
        // Same Call-ID, higher CSeq, new source port (NAT rebinding), over TCP now.
        let again = req("alice").cseq(3).header("Expires: 600");
        let first = send(&mut lab, &again, later);
        let ch = resp(&first).all("WWW-Authenticate")[0].to_owned();
        let authed = again
            .cseq(4)
            .header(&answer(&ch, "alice", "alice-secret", "sip:adatum.biz"));
        let moved: SocketAddr = match "192.0.2.20:40000".parse() {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let o = send_from(&mut lab, &authed, later, moved, Transport::Tcp);
        assert_eq!(o.status, 200);
        assert!(matches!(
            o.result,
            RegisterResult::Updated {
                changes: Changes {
                    refreshed: 1,
                    added: 0,
                    ..
                },
                ..
            }
        ));
        let all: Vec<&Binding> = lab.reg.bindings(&alice(), later).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].expires_at, later + Duration::from_secs(600));
        assert_eq!(
            (all[0].source, all[0].transport, all[0].cseq),
            (moved, Transport::Tcp, 4)
        );
        assert_eq!(all[0].updated_at, later);
    }

    #[test]
    fn same_call_id_with_lower_or_equal_cseq_fails_with_500() {
        let mut lab = lab();
        let t = at(&lab, 0);
        // Registered with Call-ID reg-1, CSeq 20 (after the challenge round).
        register(&mut lab, &req("alice").cseq(19), t);
        for cseq in [5, 19] {
            let stale = req("alice").cseq(cseq).header("Expires: 900");
            let o = register_with(&mut lab, &stale, "alice-secret", "SHA-256", t);
            // register_with answers with cseq + 1: 6 and 20, neither above 20.
            assert_eq!(o.status, 500, "{}", resp(&o).text);
            assert_eq!(o.result, RegisterResult::Rejected(Rejection::OutOfOrder));
        }
        let b = lab.reg.bindings(&alice(), t).next().cloned();
        assert_eq!(b.map(|b| b.expires_at), Some(t + Duration::from_secs(3600)));
        // Another Call-ID (a rebooted phone) may use any CSeq.
        let reboot = req("alice").call_id("reg-2").cseq(1).header("Expires: 900");
        register(&mut lab, &reboot, t);
        let b = lab.reg.bindings(&alice(), t).next().cloned();
        assert_eq!(
            b.map(|b| (b.call_id, b.expires_at)),
            Some(("reg-2".to_owned(), t + Duration::from_secs(900)))
        );
    }

    #[test]
    fn max_bindings_evicts_the_least_recently_refreshed() {
        let mut lab = lab_with(RegistrarConfig {
            max_bindings: 2,
            ..RegistrarConfig::default()
        });
        let phone = |n: u32| {
            req("alice")
                .call_id(&format!("phone-{n}"))
                .contacts(&[&format!("<sip:alice@192.0.2.{n}:5060>")])
        };
        let t = lab.t0;
        let secs = |n: u64| t + Duration::from_secs(n);
        register(&mut lab, &phone(1), secs(0));
        register(&mut lab, &phone(2), secs(10));
        let o = register(&mut lab, &phone(3), secs(20));
        assert!(matches!(
            o.result,
            RegisterResult::Updated {
                changes: Changes {
                    added: 1,
                    evicted: 1,
                    ..
                },
                ..
            }
        ));
        assert_eq!(
            contacts_of(&lab, &alice(), at(&lab, 20)),
            vec![
                "sip:alice@192.0.2.2:5060".to_owned(),
                "sip:alice@192.0.2.3:5060".to_owned()
            ]
        );
        // One REGISTER with more contacts than allowed is refused whole.
        let many = req("alice").call_id("phone-9").contacts(&[
            "<sip:alice@192.0.2.7>",
            "<sip:alice@192.0.2.8>",
            "<sip:alice@192.0.2.9>",
        ]);
        let o = register_with(&mut lab, &many, "alice-secret", "SHA-256", secs(30));
        assert_eq!(o.status, 403);
        assert_eq!(
            o.result,
            RegisterResult::Rejected(Rejection::TooManyContacts { max: 2 })
        );
        assert_eq!(contacts_of(&lab, &alice(), at(&lab, 30)).len(), 2);
    }

    #[test]
    fn third_party_and_foreign_usernames_are_refused_with_403() {
        let mut lab = lab();
        let t = at(&lab, 0);
        let mut third = req("alice");
        third.from_user = Some("bob".into());
        let o = register_with(&mut lab, &third, "alice-secret", "SHA-256", t);
        assert_eq!(o.status, 403);
        assert_eq!(o.result, RegisterResult::Rejected(Rejection::ThirdParty));
        // Bob's valid credentials cannot register Alice.
        let r = req("alice");
        let first = send(&mut lab, &r, t);
        let ch = resp(&first).all("WWW-Authenticate")[0].to_owned();
        let as_bob = r
            .clone()
            .cseq(2)
            .header(&answer(&ch, "bob", "bob-secret", "sip:adatum.biz"));
        let o = send(&mut lab, &as_bob, t);
        assert_eq!(
            o.result,
            RegisterResult::Rejected(Rejection::UsernameMismatch)
        );
        // The full AOR as username is fine.
        let full = r.cseq(3).header(&answer(
            &ch,
            "alice@adatum.biz",
            "alice-secret",
            "sip:adatum.biz",
        ));
        assert_eq!(send(&mut lab, &full, t).status, 200);
        assert_eq!(lab.reg.binding_count(), 1);
    }

    #[test]
    fn request_uri_rules_follow_rfc3261_10_3_steps_1_and_5() {
        let mut lab = lab();
        let t = at(&lab, 0);
        // Step 1: a domain nobody serves is refused before any challenge.
        let mut foreign = req("alice");
        foreign.ruri = "sip:fabrikam.com".into();
        let o = send(&mut lab, &foreign, t);
        assert_eq!(o.status, 404);
        assert_eq!(
            o.result,
            RegisterResult::Rejected(Rejection::DomainNotServed("fabrikam.com".into()))
        );
        // sips: is not supported.
        let mut sips = req("alice");
        sips.ruri = "sips:adatum.biz".into();
        assert_eq!(send(&mut lab, &sips, t).status, 416);
        // An IP address or an alias names the registrar for any tenant.
        for ruri in [
            "sip:192.0.2.1:5060",
            "sip:SIP.pstnhub.microsoft.com;transport=udp",
        ] {
            let mut r = req("carol");
            r.domain = "contoso.com".into();
            r.ruri = ruri.into();
            r.call_id = format!("via-{}", ruri.len());
            let o = register_with(&mut lab, &r, "carol-secret", "SHA-256", t);
            assert_eq!(o.status, 200, "{ruri}: {}", resp(&o).text);
        }
        // Step 5: a served domain that is not the AOR's: 404, after authentication.
        let mut cross = req("carol");
        cross.domain = "contoso.com".into();
        cross.call_id = "cross".into();
        let first = send(&mut lab, &cross, t);
        assert_eq!(first.status, 401);
        let o = register_with(&mut lab, &cross, "carol-secret", "SHA-256", t);
        assert_eq!(o.result, RegisterResult::Rejected(Rejection::ForeignAor));
        // A digest URI that names someone else is refused.
        let r = req("alice");
        let first = send(&mut lab, &r, t);
        let ch = resp(&first).all("WWW-Authenticate")[0].to_owned();
        let o = send(
            &mut lab,
            &r.cseq(2)
                .header(&answer(&ch, "alice", "alice-secret", "sip:fabrikam.com")),
            t,
        );
        assert_eq!(o.result, RegisterResult::Rejected(Rejection::DigestUri));
    }

    #[test]
    fn aor_is_case_folded_and_unescaped() {
        let mut lab = lab();
        let t = at(&lab, 0);
        let mut r = req("alice");
        r.user = "%41lice".into();
        r.domain = "ADATUM.biz".into();
        r.contacts = vec!["<sip:alice@192.0.2.20>".into()];
        let first = send(&mut lab, &r, t);
        let ch = resp(&first).all("WWW-Authenticate")[0].to_owned();
        // The realm is the tenant domain, lower-case.
        assert_eq!(param(&ch, "realm"), "adatum.biz");
        let o = send(
            &mut lab,
            &r.cseq(2)
                .header(&answer(&ch, "Alice", "alice-secret", "sip:adatum.biz")),
            t,
        );
        assert_eq!(o.status, 200, "{}", resp(&o).text);
        assert_eq!(contacts_of(&lab, &alice(), t).len(), 1);
    }

    #[test]
    fn outbound_bindings_are_keyed_by_instance_and_reg_id() {
        let mut lab = lab();
        let t = at(&lab, 0);
        let instance = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"";
        let flow1 = req("alice")
            .contacts(&[&format!(
                "<sip:alice@192.0.2.20:5060;transport=tcp;ob>;{instance};reg-id=1"
            )])
            .header("Supported: path, outbound");
        let o = register(&mut lab, &flow1, t);
        let r = resp(&o);
        assert_eq!(r.one("Require"), "outbound");
        assert_eq!(
            r.one("Contact"),
            format!(
                "<sip:alice@192.0.2.20:5060;transport=tcp;ob>;{instance};reg-id=1;expires=3600"
            )
        );
        // The same instance and reg-id from a new flow and contact replaces the binding.
        let tcp: SocketAddr = match "192.0.2.20:41000".parse() {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let flow2 = req("alice")
            .cseq(10)
            .contacts(&[&format!(
                "<sip:alice@192.0.2.20:41000;transport=tcp;ob>;{instance};reg-id=1"
            )])
            .header("Supported: outbound");
        let first = send(&mut lab, &flow2, t);
        let ch = resp(&first).all("WWW-Authenticate")[0].to_owned();
        let authed = flow2
            .cseq(11)
            .header(&answer(&ch, "alice", "alice-secret", "sip:adatum.biz"));
        let o = send_from(&mut lab, &authed, t, tcp, Transport::Tcp);
        assert!(matches!(
            o.result,
            RegisterResult::Updated {
                changes: Changes {
                    refreshed: 1,
                    added: 0,
                    ..
                },
                ..
            }
        ));
        let all: Vec<&Binding> = lab.reg.bindings(&alice(), t).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].contact_uri,
            "sip:alice@192.0.2.20:41000;transport=tcp;ob"
        );
        assert_eq!(all[0].reg_id, Some(1));
        assert_eq!(
            all[0].instance.as_deref(),
            Some("<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>")
        );
        // A second flow (reg-id 2) of the same instance is a second binding, but a call
        // forks to one of them only.
        let flow3 = req("alice").call_id("second-flow").contacts(&[&format!(
            "<sip:alice@192.0.2.20:42000;transport=tcp;ob>;{instance};reg-id=2"
        )]);
        let o = register(&mut lab, &flow3, t + Duration::from_secs(1));
        assert!(
            resp(&o).all("Require").is_empty(),
            "no Supported: outbound, no Require"
        );
        assert_eq!(lab.reg.bindings(&alice(), t).count(), 2);
        let targets = lab.reg.targets(&alice(), t + Duration::from_secs(1));
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].reg_id, Some(2));
        // The TCP connection of flow 2 closes: its binding goes.
        let gone = lab.reg.flow_closed(tcp, Transport::Tcp);
        assert_eq!(gone.len(), 1);
        assert_eq!(lab.reg.bindings(&alice(), t).count(), 1);
    }

    #[test]
    fn outbound_rules_of_rfc5626_section_6() {
        let mut lab = lab();
        let t = at(&lab, 0);
        let inst = |n: u32| format!("+sip.instance=\"<urn:uuid:{n}>\";reg-id=1");
        // Two live contacts with reg-id: 400.
        let two = req("alice").contacts(&[
            &format!("<sip:alice@192.0.2.20>;{}", inst(1)),
            &format!("<sip:alice@192.0.2.21>;{}", inst(2)),
        ]);
        let o = register_with(&mut lab, &two, "alice-secret", "SHA-256", t);
        assert_eq!(
            o.result,
            RegisterResult::Rejected(Rejection::RegIdWithSeveralContacts)
        );
        // Not the first hop and asking for outbound: 439.
        let mut proxied = req("alice")
            .call_id("p")
            .contacts(&[&format!("<sip:alice@192.0.2.20>;{}", inst(1))])
            .header("Supported: outbound");
        proxied.vias = 2;
        let o = register_with(&mut lab, &proxied, "alice-secret", "SHA-256", t);
        assert_eq!(o.status, 439);
        // Not the first hop without asking: reg-id ignored, a plain binding.
        proxied.extra.clear();
        proxied.call_id = "q".into();
        let o = register_with(&mut lab, &proxied, "alice-secret", "SHA-256", t);
        assert_eq!(o.status, 200);
        let b = lab.reg.bindings(&alice(), t).next().cloned();
        assert_eq!(
            b.map(|b| (b.instance.is_some(), b.reg_id)),
            Some((true, None))
        );
        // reg-id without instance is ignored; a malformed reg-id is a 400.
        let bare = req("bob").contacts(&["<sip:bob@192.0.2.40>;reg-id=1"]);
        register(&mut lab, &bare, t);
        let b = lab
            .reg
            .bindings(&Aor::new("bob", "adatum.biz"), t)
            .next()
            .cloned();
        assert_eq!(b.map(|b| b.reg_id), Some(None));
        let bad = req("bob")
            .call_id("b2")
            .contacts(&["<sip:bob@192.0.2.41>;+sip.instance=\"<urn:uuid:9>\";reg-id=0"]);
        let o = register_with(&mut lab, &bad, "bob-secret", "SHA-256", t);
        assert_eq!(
            o.result,
            RegisterResult::Rejected(Rejection::MalformedRegId)
        );
    }

    #[test]
    fn other_refusals_name_the_fault() {
        let mut lab = lab();
        let t = at(&lab, 0);
        // Require with an unknown extension: 420 with Unsupported, before any challenge.
        let o = send(
            &mut lab,
            &req("alice").header("Require: gruu, outbound, foo"),
            t,
        );
        let r = resp(&o);
        assert_eq!(r.status, 420);
        assert_eq!(r.one("Unsupported"), "gruu, foo");
        // A malformed Authorization for no realm at all: 400 naming it.
        let o = send(
            &mut lab,
            &req("alice").header("Authorization: Digest username=\"alice\", realm=\"adatum.biz\""),
            t,
        );
        assert_eq!(o.status, 400);
        assert_eq!(
            o.result,
            RegisterResult::Rejected(Rejection::Authorization(AuthParseError::Missing(
                crate::endpoint::digest::Directive::Nonce
            )))
        );
        // An empty response (client not challenged yet) and other schemes just get a 401.
        let o = send(
            &mut lab,
            &req("alice")
                .header("Authorization: Basic YWxpY2U6c2VjcmV0")
                .header("Authorization: Digest username=\"alice\", realm=\"adatum.biz\", nonce=\"\", uri=\"sip:adatum.biz\", response=\"\""),
            t,
        );
        assert_eq!(
            o.result,
            RegisterResult::Challenged(ChallengeReason::NoCredentials)
        );
        // Credentials for another realm are ignored.
        let o = send(
            &mut lab,
            &req("alice").header(&format!("Authorization: Digest username=\"alice\", realm=\"elsewhere\", nonce=\"n\", uri=\"sip:adatum.biz\", response=\"{}\"", "0".repeat(32))),
            t,
        );
        assert_eq!(
            o.result,
            RegisterResult::Challenged(ChallengeReason::NoCredentials)
        );
        // A contact that is not sip:.
        let tel = req("alice").contacts(&["<tel:+14255550100>"]);
        let o = register_with(&mut lab, &tel, "alice-secret", "SHA-256", t);
        assert_eq!(o.result, RegisterResult::Rejected(Rejection::ContactScheme));
        // To without a user part; To with sips.
        let mut no_user = req("alice");
        no_user.user = String::new();
        let bytes = String::from_utf8_lossy(&no_user.bytes())
            .replace("<sip:@adatum.biz>", "<sip:adatum.biz>");
        let msg = match Message::parse(bytes.as_bytes(), &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("{other:?}"),
        };
        let o = lab
            .reg
            .handle_register(&msg, src(), Transport::Udp, t, &Users);
        assert_eq!(
            o.result,
            RegisterResult::Rejected(Rejection::BadAor(AorError::NoUser))
        );
        assert_eq!(o.status, 404);
        // Not a REGISTER: 405 with Allow.
        let options = String::from_utf8_lossy(&req("alice").bytes()).replace("REGISTER", "OPTIONS");
        let msg = match Message::parse(options.as_bytes(), &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("{other:?}"),
        };
        let o = lab
            .reg
            .handle_register(&msg, src(), Transport::Udp, t, &Users);
        assert_eq!(o.status, 405);
        assert_eq!(resp(&o).one("Allow"), "REGISTER");
        // A message failing the RFC 3261 checks: 400 with the parser's reason.
        let broken = String::from_utf8_lossy(&req("alice").bytes())
            .replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE");
        let msg = match Message::parse(broken.as_bytes(), &Limits::default()) {
            Ok(Status::Complete(m)) => m,
            other => panic!("{other:?}"),
        };
        let o = lab
            .reg
            .handle_register(&msg, src(), Transport::Udp, t, &Users);
        assert_eq!(o.status, 400);
        assert!(resp(&o)
            .text
            .starts_with("SIP/2.0 400 CSeq method does not match request method\r\n"));
        assert_eq!(lab.reg.binding_count(), 0);
    }

    #[test]
    fn uri_equality_follows_rfc3261_19_1_4() {
        let same = [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;newparam=5",
            ),
            ("sip:alice@192.0.2.4", "sip:alice@192.0.2.4"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
        ];
        let different = [
            ("sip:alice@atlanta.com", "sip:ALICE@atlanta.com"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            (
                "sip:bob@biloxi.com:6000;transport=tcp",
                "sip:bob@biloxi.com:6000",
            ),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;security=off",
            ),
            ("sip:alice@192.0.2.4", "sip:alice@192.0.2.5"),
            ("sip:biloxi.com?a=1", "sip:biloxi.com"),
        ];
        let parse = |s: &'static str| match Uri::parse(s) {
            Ok(u) => u,
            Err(e) => panic!("{s}: {e}"),
        };
        for (a, b) in same {
            assert!(uri_eq(&parse(a), &parse(b)), "{a} == {b}");
            assert!(uri_eq(&parse(b), &parse(a)), "{b} == {a}");
        }
        for (a, b) in different {
            assert!(!uri_eq(&parse(a), &parse(b)), "{a} != {b}");
            assert!(!uri_eq(&parse(b), &parse(a)), "{b} != {a}");
        }
    }

    #[test]
    fn dates_are_rfc1123_gmt() {
        for (secs, text) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (T0_WALL, "Tue, 14 Nov 2023 22:13:20 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
            // 2100 is not a leap year.
            (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        ] {
            assert_eq!(http_date(secs), text);
            assert!(SipDate::parse(text).is_ok());
        }
    }

    #[test]
    fn expires_values_parse_per_rfc3261() {
        for (text, want) in [
            ("0", 0),
            ("3600", 3600),
            (" 60 ", 60),
            ("4294967295", u32::MAX),
            ("99999999999999999999", u32::MAX),
            ("", 3600),
            ("-1", 3600),
            ("Thu, 01 Dec 1994 16:00:00 GMT", 3600),
        ] {
            assert_eq!(parse_expires(text), want, "{text:?}");
        }
        for (v, want) in [
            (Some("1"), Some(1)),
            (Some("2147483647"), Some(0x7fff_ffff)),
            (Some("2147483648"), None),
            (Some("0"), None),
            (Some("x"), None),
            (None, None),
        ] {
            assert_eq!(parse_reg_id(v), want, "{v:?}");
        }
    }

    #[test]
    fn config_is_validated() {
        let bad = [
            RegistrarConfig {
                min_expires: 0,
                ..RegistrarConfig::default()
            },
            RegistrarConfig {
                min_expires: 4000,
                ..RegistrarConfig::default()
            },
            RegistrarConfig {
                default_expires: 7200,
                ..RegistrarConfig::default()
            },
        ];
        for c in bad {
            assert_eq!(c.validate(), Err(ConfigError::ExpiryOrder), "{c:?}");
        }
        let none = RegistrarConfig {
            max_bindings: 0,
            ..RegistrarConfig::default()
        };
        assert_eq!(none.validate(), Err(ConfigError::NoBindings));
        assert_eq!(RegistrarConfig::default().validate(), Ok(()));
    }

    // ------------------------------------------------------------ throttle

    fn addr(s: &str) -> SocketAddr {
        match s.parse() {
            Ok(a) => a,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn notices(lab: &mut Lab) -> Vec<Notice> {
        std::iter::from_fn(|| lab.reg.poll_notice()).collect()
    }

    /// A response with its To tag and the user name masked, to compare two answers.
    fn masked_403(o: &RegisterOutcome<u32>, user: &str) -> String {
        let r = resp(o);
        assert_eq!(r.status, 403, "{}", r.text);
        let tag = r.one("To").split(";tag=").nth(1).unwrap_or("").to_owned();
        assert!(!tag.is_empty(), "{}", r.text);
        r.text.replace(&tag, "TAG").replace(user, "USER")
    }

    #[test]
    fn fifty_wrong_passwords_lock_the_source_for_the_lockout_even_for_the_right_one() {
        let mut lab = lab();
        let t0 = lab.t0;
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let r = req("alice");
        let first = send(&mut lab, &r, t0);
        let challenge = resp(&first).all("WWW-Authenticate")[0].to_owned();
        let guess = |cseq: u32, password: &str| {
            r.clone()
                .cseq(cseq)
                .header(&answer(&challenge, "alice", password, "sip:adatum.biz"))
        };
        // A guess every 10 ms: the first ten are checked and challenged, the rest refused
        // unread. RegistrarConfig::default() has the daemon's defaults: 10 in 60 s, 300 s.
        let mut answers = Vec::new();
        for i in 0..50u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 10);
            answers.push(send(&mut lab, &guess(2 + i, "guess"), now));
        }
        let statuses: Vec<u16> = answers.iter().map(|o| o.status).collect();
        assert_eq!(statuses[..10], [401; 10]);
        assert!(statuses[10..].iter().all(|s| *s == 403), "{statuses:?}");
        let locked_at = t0 + Duration::from_millis(90);
        // Logged once for the address and once for the user, not per refusal.
        let lock = |key| Notice::Locked {
            key,
            failures: 10,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        };
        let address = Locked::Address(AddrKey::new(src().ip()));
        let user = Locked::User(UserKey::new("alice@adatum.biz"));
        assert_eq!(
            notices(&mut lab),
            vec![lock(address.clone()), lock(user.clone())]
        );
        // The right password, and a fresh REGISTER without credentials: refused too, to
        // the last moment of the lockout.
        let last = locked_at + Duration::from_secs(300) - Duration::from_millis(1);
        let right = send(&mut lab, &guess(60, "alice-secret"), last);
        assert_eq!(
            right.result,
            RegisterResult::Rejected(Rejection::Throttled(address.clone()))
        );
        let text = resp(&right).text;
        assert!(
            text.starts_with("SIP/2.0 403 Too Many Failed Authentications\r\n"),
            "{text}"
        );
        assert!(!text.contains("WWW-Authenticate"), "{text}");
        assert_eq!(send(&mut lab, &r.clone().cseq(61), last).status, 403);
        assert_eq!(lab.reg.binding_count(), 0);
        assert!(notices(&mut lab).is_empty());
        // The driver's timer: the lock's end is the next timeout.
        assert_eq!(
            lab.reg.poll_timeout(),
            Some(locked_at + Duration::from_secs(300))
        );
        // Then the lock ends (one notice each, with what was refused) and the right
        // password registers.
        lab.reg.expire(locked_at + Duration::from_secs(300));
        assert_eq!(
            notices(&mut lab),
            vec![
                Notice::Unlocked {
                    key: address,
                    refused: 42,
                },
                Notice::Unlocked {
                    key: user,
                    refused: 0,
                },
            ]
        );
        register(&mut lab, &r.clone().cseq(70), at(301));
    }

    #[test]
    fn a_user_lock_spares_the_address_where_the_user_is_registered() {
        let mut lab = lab();
        let t0 = lab.t0;
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let phone = addr("192.0.2.30:5060");
        let r = req("alice");
        let ok = register_from(&mut lab, &r, "alice-secret", "SHA-256", at(0), phone);
        assert_eq!(ok.status, 200, "{}", resp(&ok).text);
        // An attacker guesses alice's password from ten addresses, once each: no address
        // is locked, but alice is.
        for i in 1..=10u8 {
            let o = register_from(
                &mut lab,
                &req("alice"),
                "guess",
                "MD5",
                at(1),
                SocketAddr::from(([198, 51, 100, i], 5060)),
            );
            assert_eq!(o.status, 401);
        }
        assert_eq!(notices(&mut lab).len(), 1);
        // The registered phone refreshes as usual, a mistype included.
        let mistype = register_from(
            &mut lab,
            &r.clone().cseq(10),
            "alice-secrte",
            "SHA-256",
            at(2),
            phone,
        );
        assert_eq!(mistype.status, 401);
        let refresh = register_from(
            &mut lab,
            &r.clone().cseq(20),
            "alice-secret",
            "SHA-256",
            at(3),
            phone,
        );
        assert_eq!(refresh.status, 200, "{}", resp(&refresh).text);
        // A new address is refused, the right password notwithstanding, and so is the
        // attacker; other users are not affected.
        let elsewhere = addr("203.0.113.5:5060");
        let first = send_from(
            &mut lab,
            &r.clone().cseq(30),
            at(4),
            elsewhere,
            Transport::Udp,
        );
        assert_eq!(
            first.result,
            RegisterResult::Rejected(Rejection::Throttled(Locked::User(UserKey::new(
                "alice@adatum.biz"
            ))))
        );
        let bob = register_from(
            &mut lab,
            &req("bob"),
            "bob-secret",
            "SHA-256",
            at(4),
            elsewhere,
        );
        assert_eq!(bob.status, 200);
        // The phone's registration lapses: its address is no longer vouched for.
        assert_eq!(lab.reg.expire(at(3604)).len(), 2);
        let lapsed = send_from(
            &mut lab,
            &r.clone().cseq(40),
            at(3604),
            phone,
            Transport::Udp,
        );
        // (The lock, 300 s, is over by then: nothing is refused.)
        assert_eq!(lapsed.status, 401);
    }

    #[test]
    fn locked_known_and_unknown_users_get_identical_403s() {
        let mut lab = lab();
        let t0 = lab.t0;
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // Same-length names; alice exists, zelda does not. Each is guessed ten times from
        // its own address: both addresses and both users lock.
        for (name, attacker) in [
            ("alice", "198.51.100.1:5060"),
            ("zelda", "198.51.100.2:5060"),
        ] {
            for i in 0..10 {
                let o = register_from(
                    &mut lab,
                    &req(name).cseq(2 * i + 1),
                    "guess",
                    "SHA-256",
                    at(1),
                    addr(attacker),
                );
                assert_eq!(o.status, 401);
            }
        }
        assert_eq!(notices(&mut lab).len(), 4);
        // Locked user, from a new address; locked address, for either user.
        for source in ["203.0.113.5:5060", "198.51.100.1:5060"] {
            let known = send_from(&mut lab, &req("alice"), at(2), addr(source), Transport::Udp);
            let unknown = send_from(&mut lab, &req("zelda"), at(2), addr(source), Transport::Udp);
            assert_eq!(
                masked_403(&known, "alice"),
                masked_403(&unknown, "zelda"),
                "a 403 must not tell whether the user exists"
            );
        }
    }
}
