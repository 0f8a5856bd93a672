//! SIP digest authentication (RFC 3261 §22.4 as updated by RFC 8760, computed per
//! RFC 7616 §3.4 with `qop=auth`): the challenges drhub sends, the `Authorization` values
//! it parses, and the check of a response against a password.
//!
//! This module owns the server secret and nothing else: nonces are self-validating, so
//! there is no per-client state to keep or expire. A nonce is
//! `base64(timestamp || salt || HMAC-SHA256(secret, label || timestamp || salt || realm))`,
//! where the timestamp counts milliseconds since the [`Authenticator`] was created and the
//! secret comes from the CSPRNG at that moment: a restart invalidates every nonce, and age
//! is checked on every use. Time is passed in; the only side effect is drawing random bytes.
//!
//! Crypto comes from rustls' aws-lc-rs provider (SHA-256, HMAC-SHA256, the CSPRNG), the
//! provider the daemon's TLS already uses, and from the RustCrypto `md-5` crate for the
//! legacy MD5 algorithm, which aws-lc-rs does not expose.
//!
//! Known limits, acceptable for a lab:
//! - `nc` is not tracked, so a captured `Authorization` can be replayed for the same
//!   method and digest URI until its nonce expires ([`DigestConfig::nonce_lifetime`]).
//!   RFC 7616 §5.5 makes replay protection a server choice; it needs per-nonce state.
//! - `opaque` is sent but not checked: it carries no state, the nonce does.
//! - Only `MD5` and `SHA-256` are accepted, without `-sess` variants, `qop=auth-int`,
//!   `userhash` or `username*`: drhub never offers them, and RFC 7616 §3.4 requires the
//!   client to answer with what was offered.
//! - A response without `qop` (the RFC 2069 form, which RFC 8760 §2.6 item 8 still lets a
//!   server receive) is accepted; the challenge always offers `qop="auth"`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use rustls::crypto::hash::{Context, Hash};
use rustls::crypto::tls13::{Hkdf, OkmBlock};
use rustls::crypto::SecureRandom;
use rustls::SupportedCipherSuite;

/// A digest algorithm drhub offers and accepts (RFC 8760 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `SHA-256`, offered first by default (RFC 8760 §2.3: most preferred at the top).
    Sha256,
    /// `MD5`, for clients that know nothing else (RFC 8760 §3: NOT RECOMMENDED, kept for
    /// backward compatibility; [`DigestConfig::algorithms`] decides).
    Md5,
}

impl Algorithm {
    /// The name as written in the `algorithm` parameter.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Bytes of a digest: 32 for SHA-256, 16 for MD5.
    pub fn output_len(&self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Md5 => 16,
        }
    }

    /// Maps an `algorithm` value (case-insensitive); `None` for anything drhub does not do.
    pub fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Digest settings; the daemon fills them from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// How long a nonce is accepted after it was issued. Older ones get `stale=true`.
    pub nonce_lifetime: Duration,
    /// The algorithms offered (one `WWW-Authenticate` each, in this order) and the only
    /// ones accepted: [`Offered::DEFAULT`] unless the config says otherwise.
    pub algorithms: Offered,
}

impl Default for DigestConfig {
    /// Five-minute nonces, SHA-256 and MD5 offered.
    fn default() -> Self {
        DigestConfig {
            nonce_lifetime: Duration::from_secs(300),
            algorithms: Offered::DEFAULT,
        }
    }
}

/// The digest algorithms offered, most preferred first: one or both, each once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered([Option<Algorithm>; 2]);

impl Offered {
    /// `SHA-256` then `MD5` (RFC 8760 §2.3: the preferred one first).
    pub const DEFAULT: Offered = Offered([Some(Algorithm::Sha256), Some(Algorithm::Md5)]);

    /// The list in this order; `None` when it is empty or names one twice.
    pub fn new(list: &[Algorithm]) -> Option<Offered> {
        match *list {
            [a] => Some(Offered([Some(a), None])),
            [a, b] if a != b => Some(Offered([Some(a), Some(b)])),
            _ => None,
        }
    }

    /// Most preferred first.
    pub fn iter(&self) -> impl Iterator<Item = Algorithm> {
        self.0.into_iter().flatten()
    }

    /// Whether `a` is offered (and so accepted).
    pub fn contains(&self, a: Algorithm) -> bool {
        self.0.contains(&Some(a))
    }
}

impl fmt::Display for Offered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(|a| a.as_str()).collect();
        f.write_str(&names.join(", "))
    }
}

/// Why the crypto provider could not serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The aws-lc-rs provider has no TLS 1.3 SHA-256 suite to take SHA-256 and HMAC from.
    #[error("the aws-lc-rs provider offers no SHA-256 suite")]
    NoSha256,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// The outcome of checking credentials (RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response matches and the nonce is ours and fresh.
    Ok,
    /// The response matches but the nonce expired, or is not ours (for example issued
    /// before a restart): re-challenge with `stale=true` so the client retries silently.
    /// Only a client that knows the password ever sees this.
    Stale,
    /// Wrong response (or an algorithm that was not offered): re-challenge without `stale`.
    Failed,
}

/// A directive of an `Authorization` value, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// `username`
    Username,
    /// `realm`
    Realm,
    /// `nonce`
    Nonce,
    /// `uri`
    Uri,
    /// `response`
    Response,
    /// `algorithm`
    Algorithm,
    /// `cnonce`
    Cnonce,
    /// `qop`
    Qop,
    /// `nc`
    Nc,
    /// `opaque`
    Opaque,
    /// `userhash`
    Userhash,
}

impl Directive {
    const ALL: [Directive; 11] = [
        Directive::Username,
        Directive::Realm,
        Directive::Nonce,
        Directive::Uri,
        Directive::Response,
        Directive::Algorithm,
        Directive::Cnonce,
        Directive::Qop,
        Directive::Nc,
        Directive::Opaque,
        Directive::Userhash,
    ];

    /// The directive name as written.
    pub fn as_str(&self) -> &'static str {
        match self {
            Directive::Username => "username",
            Directive::Realm => "realm",
            Directive::Nonce => "nonce",
            Directive::Uri => "uri",
            Directive::Response => "response",
            Directive::Algorithm => "algorithm",
            Directive::Cnonce => "cnonce",
            Directive::Qop => "qop",
            Directive::Nc => "nc",
            Directive::Opaque => "opaque",
            Directive::Userhash => "userhash",
        }
    }

    fn from_name(name: &str) -> Option<Directive> {
        Directive::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an `Authorization` value is not usable Digest credentials. Each is a `400` except
/// [`NotDigest`](AuthParseError::NotDigest) (another scheme: ignore the header) and
/// [`NoResponse`](AuthParseError::NoResponse) (not challenged yet: challenge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthParseError {
    /// The scheme is not `Digest`.
    #[error("not Digest credentials")]
    NotDigest,
    /// The parameter list does not follow `name=value *("," name=value)`.
    #[error("malformed parameter list")]
    Syntax,
    /// A directive appears twice.
    #[error("{0} given more than once")]
    Duplicate(Directive),
    /// A required directive is missing (`cnonce` and `nc` are required with `qop`).
    #[error("{0} missing")]
    Missing(Directive),
    /// A directive has a malformed value (a response of the wrong length, an `nc` that is
    /// not eight hex digits ...).
    #[error("malformed {0}")]
    Malformed(Directive),
    /// An empty `response`: RFC 8760 §2.7 allows it before the client has been challenged.
    #[error("empty response (not challenged yet)")]
    NoResponse,
    /// An algorithm other than MD5 and SHA-256.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// A `qop` other than `auth`.
    #[error("unsupported qop")]
    UnsupportedQop,
    /// `userhash=true` or `username*`, which drhub never offers.
    #[error("hashed or extended username")]
    UnsupportedUsername,
}

/// A digest value: up to 32 bytes, as long as its algorithm's output.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestBytes {
    buf: [u8; 32],
    len: usize,
}

impl DigestBytes {
    fn from_slice(b: &[u8]) -> DigestBytes {
        let mut buf = [0u8; 32];
        let len = b.len().min(32);
        for (d, s) in buf.iter_mut().zip(b) {
            *d = *s;
        }
        DigestBytes { buf, len }
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Lower-case hex, as digests are written (RFC 8760 §2.2).
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(self.len * 2);
        push_hex(&mut s, self.as_bytes());
        s
    }
}

impl fmt::Debug for DigestBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Parsed `Authorization: Digest ...` credentials, borrowed from the header value.
///
/// Guarantees: username, realm, nonce, uri and response are present; the response has
/// exactly the length of the algorithm's digest; with `qop` (always `auth`), `cnonce` is
/// present and `nc` is eight hex digits. Quoted values are unescaped (`\"` is `"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    username: Cow<'a, str>,
    realm: Cow<'a, str>,
    nonce: Cow<'a, str>,
    uri: Cow<'a, str>,
    response: DigestBytes,
    algorithm: Algorithm,
    qop: Option<QopAuth<'a>>,
    opaque: Option<Cow<'a, str>>,
}

/// The `qop=auth` part of a response: the values that enter the hash as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QopAuth<'a> {
    qop: Cow<'a, str>,
    nc: Cow<'a, str>,
    cnonce: Cow<'a, str>,
}

impl<'a> Authorization<'a> {
    /// Parses an `Authorization` (or `Proxy-Authorization`) header value.
    ///
    /// Directive names match in any case, in any order; values may be quoted or not
    /// whatever RFC 7616 §3.4 says each one should be, since clients differ; unknown
    /// directives are ignored (RFC 7616 §3.4: auth-param extensions).
    pub fn parse(value: &'a str) -> Result<Authorization<'a>, AuthParseError> {
        let v = value.trim_matches(is_lws_char);
        let scheme_end = v.find(is_lws_char).unwrap_or(v.len());
        let scheme = v.get(..scheme_end).unwrap_or("");
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthParseError::NotDigest);
        }
        let mut slots: [Option<Cow<'a, str>>; Directive::ALL.len()] = Default::default();
        let mut extended_username = false;
        for item in AuthParams::new(v.get(scheme_end..).unwrap_or("")) {
            let (name, value) = item?;
            if name.eq_ignore_ascii_case("username*") {
                extended_username = true;
                continue;
            }
            let Some(d) = Directive::from_name(name) else {
                continue;
            };
            let slot = slots
                .get_mut(d.index())
                .ok_or(AuthParseError::Malformed(d))?;
            if slot.is_some() {
                return Err(AuthParseError::Duplicate(d));
            }
            *slot = Some(value);
        }
        let mut take = |d: Directive| slots.get_mut(d.index()).and_then(Option::take);
        let userhash = take(Directive::Userhash);
        if extended_username || userhash.is_some_and(|u| u.eq_ignore_ascii_case("true")) {
            return Err(AuthParseError::UnsupportedUsername);
        }
        let mut required = |d: Directive| take(d).ok_or(AuthParseError::Missing(d));
        let username = required(Directive::Username)?;
        let realm = required(Directive::Realm)?;
        let nonce = required(Directive::Nonce)?;
        let uri = required(Directive::Uri)?;
        let response = required(Directive::Response)?;
        if response.is_empty() {
            return Err(AuthParseError::NoResponse);
        }
        let algorithm = match take(Directive::Algorithm) {
            // RFC 7616 §3.3: absent means MD5.
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(AuthParseError::UnsupportedAlgorithm)?,
        };
        let response = decode_hex(&response, algorithm.output_len())
            .ok_or(AuthParseError::Malformed(Directive::Response))?;
        let cnonce = take(Directive::Cnonce);
        let nc = take(Directive::Nc);
        let qop = match take(Directive::Qop) {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let cnonce = cnonce.ok_or(AuthParseError::Missing(Directive::Cnonce))?;
                let nc = nc.ok_or(AuthParseError::Missing(Directive::Nc))?;
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(AuthParseError::Malformed(Directive::Nc));
                }
                Some(QopAuth { qop: q, nc, cnonce })
            }
            Some(_) => return Err(AuthParseError::UnsupportedQop),
        };
        Ok(Authorization {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
            opaque: take(Directive::Opaque),
        })
    }

    /// The user name, unescaped.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The realm the client answered.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The nonce the client answered.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The digest URI (RFC 8760 §2.6: a Request-URI).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The algorithm used (MD5 when the client named none).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The response digest the client sent.
    pub fn response(&self) -> DigestBytes {
        self.response
    }

    /// True when the client used `qop=auth` (false for the RFC 2069 form).
    pub fn has_qop(&self) -> bool {
        self.qop.is_some()
    }

    /// The nonce count, when `qop` was used.
    pub fn nc(&self) -> Option<u32> {
        let nc = &self.qop.as_ref()?.nc;
        u32::from_str_radix(nc, 16).ok()
    }

    /// The client nonce, when `qop` was used.
    pub fn cnonce(&self) -> Option<&str> {
        self.qop.as_ref().map(|q| q.cnonce.as_ref())
    }

    /// The opaque value returned, if any (not checked, see the module documentation).
    pub fn opaque(&self) -> Option<&str> {
        self.opaque.as_deref()
    }
}

/// A challenge to send as `WWW-Authenticate` headers: one per offered algorithm, all with
/// the same realm, nonce and opaque, SHA-256 first (RFC 8760 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    realm: String,
    nonce: String,
    opaque: String,
    stale: bool,
    algorithms: Offered,
}

impl Challenge {
    /// The same challenge marked `stale=true` (RFC 7616 §3.3).
    pub fn stale(mut self) -> Challenge {
        self.stale = true;
        self
    }

    /// True when marked stale.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The algorithms offered, most preferred first.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> {
        self.algorithms.iter()
    }

    /// The `WWW-Authenticate` value offering `algorithm`.
    pub fn header_value(&self, algorithm: Algorithm) -> String {
        let mut s = String::with_capacity(96 + self.realm.len() + self.nonce.len());
        s.push_str("Digest realm=");
        push_quoted(&mut s, &self.realm);
        s.push_str(", nonce=");
        push_quoted(&mut s, &self.nonce);
        s.push_str(", opaque=");
        push_quoted(&mut s, &self.opaque);
        s.push_str(", algorithm=");
        s.push_str(algorithm.as_str());
        s.push_str(", qop=\"auth\"");
        if self.stale {
            s.push_str(", stale=true");
        }
        s
    }

    /// Every `WWW-Authenticate` value, in the order they must be sent.
    pub fn header_values(&self) -> impl Iterator<Item = String> + '_ {
        self.algorithms().map(|a| self.header_value(a))
    }
}

/// Label mixed into every nonce MAC, so the secret cannot be confused with another use.
const NONCE_LABEL: &[u8] = b"drhub digest nonce v1\0";
/// Timestamp, salt and MAC: the decoded length of every nonce drhub issues.
const NONCE_BYTES: usize = 8 + 8 + 32;

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceStatus {
    Fresh,
    Expired,
    /// Not ours: wrong length or encoding, wrong MAC (another secret, another realm), or
    /// a timestamp in the future.
    Foreign,
}

/// Issues challenges and checks credentials; holds the server secret.
///
/// Guarantees: nonces it issues verify only with this instance (the secret never leaves
/// it), only for the realm they were issued for, and only within
/// [`DigestConfig::nonce_lifetime`]; response comparison takes the same time whether or not
/// it matches.
pub struct Authenticator {
    config: DigestConfig,
    key: [u8; 32],
    opaque: String,
    epoch: Instant,
    sha256: &'static dyn Hash,
    hkdf: &'static dyn Hkdf,
    rng: &'static dyn SecureRandom,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("opaque", &self.opaque)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// A new authenticator with a fresh secret from the CSPRNG; `now` is its epoch.
    pub fn new(config: DigestConfig, now: Instant) -> Result<Authenticator, CryptoError> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let rng = provider.secure_random;
        let mut key = [0u8; 32];
        rng.fill(&mut key).map_err(|_| CryptoError::Random)?;
        let mut opaque = [0u8; 16];
        rng.fill(&mut opaque).map_err(|_| CryptoError::Random)?;
        Self::with_secret(config, key, &opaque, now)
    }

    /// An authenticator with a given secret and opaque value, for tests (the daemon uses
    /// [`Authenticator::new`]); `now` is its epoch, from which nonce timestamps count.
    pub fn with_secret(
        config: DigestConfig,
        key: [u8; 32],
        opaque: &[u8],
        now: Instant,
    ) -> Result<Authenticator, CryptoError> {
        // SHA-256 and HMAC-SHA256 are reached through a TLS 1.3 suite of the provider:
        // rustls exposes aws-lc-rs's hash and HMAC only there.
        let SupportedCipherSuite::Tls13(suite) =
            rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        else {
            return Err(CryptoError::NoSha256);
        };
        let sha256 = suite.common.hash_provider;
        if sha256.output_len() != 32 {
            return Err(CryptoError::NoSha256);
        }
        let mut hex = String::with_capacity(opaque.len() * 2);
        push_hex(&mut hex, opaque);
        Ok(Authenticator {
            config,
            key,
            opaque: hex,
            epoch: now,
            sha256,
            hkdf: suite.hkdf_provider,
            rng: rustls::crypto::aws_lc_rs::default_provider().secure_random,
        })
    }

    /// The settings.
    pub fn config(&self) -> &DigestConfig {
        &self.config
    }

    /// A fresh challenge for `realm` (RFC 7616 §3.3: a new nonce for every 401).
    pub fn challenge(&self, realm: &str, now: Instant) -> Result<Challenge, CryptoError> {
        let mut salt = [0u8; 8];
        self.rng.fill(&mut salt).map_err(|_| CryptoError::Random)?;
        let ts = self.millis(now).to_be_bytes();
        let mac = self.nonce_mac(&ts, &salt, realm);
        let mut raw = [0u8; NONCE_BYTES];
        for (d, s) in raw.iter_mut().zip(ts.iter().chain(&salt).chain(&mac)) {
            *d = *s;
        }
        Ok(Challenge {
            realm: realm.to_owned(),
            nonce: base64_encode(&raw),
            opaque: self.opaque.clone(),
            stale: false,
            algorithms: self.config.algorithms,
        })
    }

    /// Checks `auth` for a request with this method, against `password`.
    ///
    /// The digest is always computed and compared in full, and the nonce always checked,
    /// so that the time taken does not depend on which check fails. A caller that has no
    /// password (unknown user) must still call this with a stand-in password and treat the
    /// result as [`Outcome::Failed`].
    pub fn verify(
        &self,
        auth: &Authorization<'_>,
        method: &str,
        password: &str,
        now: Instant,
    ) -> Outcome {
        let expected = self.response_digest(auth, method, password);
        let matches = ct_eq(expected.as_bytes(), auth.response.as_bytes());
        let nonce = self.nonce_status(&auth.nonce, &auth.realm, now);
        let offered = self.config.algorithms.contains(auth.algorithm);
        match (matches && offered, nonce) {
            (false, _) => Outcome::Failed,
            (true, NonceStatus::Fresh) => Outcome::Ok,
            // RFC 7616 §3.3: stale only for a nonce that is invalid; RFC 2617 §3.2.1 adds
            // "with a valid digest for that nonce", which is what keeps stale=true from
            // telling a guesser anything.
            (true, NonceStatus::Expired | NonceStatus::Foreign) => Outcome::Stale,
        }
    }

    /// Lower-case hex of `bytes` (at most 32) random bytes from the CSPRNG, for To tags and
    /// similar tokens.
    pub fn random_hex(&self, bytes: usize) -> Result<String, CryptoError> {
        let mut buf = [0u8; 32];
        let buf = buf.get_mut(..bytes.min(32)).unwrap_or(&mut []);
        self.rng.fill(buf).map_err(|_| CryptoError::Random)?;
        let mut s = String::with_capacity(buf.len() * 2);
        push_hex(&mut s, buf);
        Ok(s)
    }

    /// The response a client knowing `password` computes for `auth`'s other values
    /// (RFC 7616 §3.4.1-3.4.3).
    pub fn response_digest(
        &self,
        auth: &Authorization<'_>,
        method: &str,
        password: &str,
    ) -> DigestBytes {
        let alg = auth.algorithm;
        let ha1 = self
            .digest(
                alg,
                &[
                    auth.username.as_bytes(),
                    b":",
                    auth.realm.as_bytes(),
                    b":",
                    password.as_bytes(),
                ],
            )
            .to_hex();
        let ha2 = self
            .digest(alg, &[method.as_bytes(), b":", auth.uri.as_bytes()])
            .to_hex();
        match &auth.qop {
            Some(q) => self.digest(
                alg,
                &[
                    ha1.as_bytes(),
                    b":",
                    auth.nonce.as_bytes(),
                    b":",
                    q.nc.as_bytes(),
                    b":",
                    q.cnonce.as_bytes(),
                    b":",
                    q.qop.as_bytes(),
                    b":",
                    ha2.as_bytes(),
                ],
            ),
            // RFC 2069 compatibility (RFC 3261 §22.4, RFC 8760 §2.6 item 8).
            None => self.digest(
                alg,
                &[
                    ha1.as_bytes(),
                    b":",
                    auth.nonce.as_bytes(),
                    b":",
                    ha2.as_bytes(),
                ],
            ),
        }
    }

    /// The digest of the concatenation of `parts`.
    fn digest(&self, alg: Algorithm, parts: &[&[u8]]) -> DigestBytes {
        match alg {
            Algorithm::Md5 => {
                let mut h = Md5::new();
                for p in parts {
                    h.update(p);
                }
                DigestBytes::from_slice(h.finalize().as_slice())
            }
            Algorithm::Sha256 => {
                let mut h: Box<dyn Context> = self.sha256.start();
                for p in parts {
                    h.update(p);
                }
                DigestBytes::from_slice(h.finish().as_ref())
            }
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn nonce_mac(&self, ts: &[u8; 8], salt: &[u8; 8], realm: &str) -> [u8; 32] {
        let mut msg = Vec::with_capacity(NONCE_LABEL.len() + 16 + realm.len());
        msg.extend_from_slice(NONCE_LABEL);
        msg.extend_from_slice(ts);
        msg.extend_from_slice(salt);
        msg.extend_from_slice(realm.as_bytes());
        let tag = self.hkdf.hmac_sign(&OkmBlock::new(&self.key), &msg);
        let mut out = [0u8; 32];
        for (d, s) in out.iter_mut().zip(tag.as_ref()) {
            *d = *s;
        }
        out
    }

    fn nonce_status(&self, nonce: &str, realm: &str, now: Instant) -> NonceStatus {
        let Some(raw) = base64_decode::<NONCE_BYTES>(nonce) else {
            return NonceStatus::Foreign;
        };
        let Some((ts, rest)) = raw.split_first_chunk::<8>() else {
            return NonceStatus::Foreign;
        };
        let Some((salt, mac)) = rest.split_first_chunk::<8>() else {
            return NonceStatus::Foreign;
        };
        if !ct_eq(&self.nonce_mac(ts, salt, realm), mac) {
            return NonceStatus::Foreign;
        }
        let issued = u64::from_be_bytes(*ts);
        let now = self.millis(now);
        let lifetime = u64::try_from(self.config.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
        match now.checked_sub(issued) {
            None => NonceStatus::Foreign,
            Some(age) if age > lifetime => NonceStatus::Expired,
            Some(_) => NonceStatus::Fresh,
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths (which are public:
/// both are digests of the same algorithm).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

// ---------------------------------------------------------------------------------------
// Lexing
// ---------------------------------------------------------------------------------------

fn is_lws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 §25.1 `token` characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Iterates `name=value` pairs separated by commas (empty elements are skipped, as in
/// HTTP's list rule). Values are tokens or quoted strings; unquoted values are taken up to
/// the next comma or whitespace, which also admits unquoted URIs that lax clients send.
struct AuthParams<'a> {
    s: &'a str,
    i: usize,
    failed: bool,
}

impl<'a> AuthParams<'a> {
    fn new(s: &'a str) -> Self {
        AuthParams {
            s,
            i: 0,
            failed: false,
        }
    }

    fn skip_lws(&mut self) {
        let b = self.s.as_bytes();
        while b.get(self.i).copied().is_some_and(is_lws) {
            self.i += 1;
        }
    }

    fn next_pair(&mut self) -> Option<Result<(&'a str, Cow<'a, str>), AuthParseError>> {
        let b = self.s.as_bytes();
        // Separators (and empty list elements) before the next pair.
        loop {
            self.skip_lws();
            match b.get(self.i) {
                Some(b',') => self.i += 1,
                None => return None,
                Some(_) => break,
            }
        }
        let start = self.i;
        while b.get(self.i).copied().is_some_and(is_token) {
            self.i += 1;
        }
        // `username*` (RFC 7616 §3.4) is the one name with a `*`.
        if b.get(self.i) == Some(&b'*') {
            self.i += 1;
        }
        let name = self.s.get(start..self.i)?;
        if name.is_empty() {
            return Some(Err(AuthParseError::Syntax));
        }
        self.skip_lws();
        if b.get(self.i) != Some(&b'=') {
            return Some(Err(AuthParseError::Syntax));
        }
        self.i += 1;
        self.skip_lws();
        let value = if b.get(self.i) == Some(&b'"') {
            match quoted_end(b, self.i) {
                Some(end) => {
                    let inner = self.s.get(self.i + 1..end - 1).unwrap_or("");
                    self.i = end;
                    unescape(inner)
                }
                None => return Some(Err(AuthParseError::Syntax)),
            }
        } else {
            let vs = self.i;
            while b
                .get(self.i)
                .is_some_and(|&c| c != b',' && c != b'"' && !is_lws(c) && !c.is_ascii_control())
            {
                self.i += 1;
            }
            if self.i == vs {
                return Some(Err(AuthParseError::Syntax));
            }
            Cow::Borrowed(self.s.get(vs..self.i).unwrap_or(""))
        };
        self.skip_lws();
        match b.get(self.i) {
            None | Some(b',') => Some(Ok((name, value))),
            Some(_) => Some(Err(AuthParseError::Syntax)),
        }
    }
}

impl<'a> Iterator for AuthParams<'a> {
    type Item = Result<(&'a str, Cow<'a, str>), AuthParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_pair();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}

/// Index just past the closing quote of the quoted string starting at `start`; `None` if
/// unterminated or holding a control character other than folding whitespace.
fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *b.get(i + 1)? {
                b'\r' | b'\n' => return None,
                _ => i += 2,
            },
            b'\t' | b'\r' | b'\n' => i += 1,
            c if c.is_ascii_control() => return None,
            _ => i += 1,
        }
    }
}

/// Resolves `\x` quoted-pairs; borrows when there are none.
fn unescape(inner: &str) -> Cow<'_, str> {
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if !escaped && c == '\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    Cow::Owned(out)
}

/// Appends `s` as a quoted string, escaping `"` and `\`.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        // Controls cannot be quoted (RFC 3261 §25.1); the response writer would blank them.
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.push('"');
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
}

/// Decodes exactly `len` bytes of hex (either case).
fn decode_hex(s: &str, len: usize) -> Option<DigestBytes> {
    if s.len() != len * 2 || len > 32 {
        return None;
    }
    let mut buf = [0u8; 32];
    for (d, pair) in buf.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let hi = char::from(*pair.first()?).to_digit(16)?;
        let lo = char::from(*pair.get(1)?).to_digit(16)?;
        *d = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(DigestBytes { buf, len })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648 §4) of a whole number of 3-byte groups, so without padding.
fn base64_encode(bytes: &[u8; NONCE_BYTES]) -> String {
    let mut out = String::with_capacity(NONCE_BYTES / 3 * 4);
    for g in bytes.chunks_exact(3) {
        let n = g.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        for shift in [18, 12, 6, 0] {
            let i = usize::try_from((n >> shift) & 0x3f).unwrap_or(0);
            out.push(char::from(B64.get(i).copied().unwrap_or(b'A')));
        }
    }
    out
}

/// Decodes unpadded base64 of exactly `N` bytes (`N` a multiple of 3); `None` otherwise.
fn base64_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    if N % 3 != 0 || s.len() != N / 3 * 4 {
        return None;
    }
    let value = |c: u8| {
        B64.iter()
            .position(|&x| x == c)
            .and_then(|p| u32::try_from(p).ok())
    };
    let mut out = [0u8; N];
    for (dst, quad) in out.chunks_exact_mut(3).zip(s.as_bytes().chunks_exact(4)) {
        let mut n = 0u32;
        for &c in quad {
            n = (n << 6) | value(c)?;
        }
        for (k, d) in dst.iter_mut().enumerate() {
            *d = u8::try_from((n >> (16 - 8 * k)) & 0xff).ok()?;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(v: &str) -> Authorization<'_> {
        match Authorization::parse(v) {
            Ok(a) => a,
            Err(e) => panic!("{v:?} should parse: {e}"),
        }
    }

    fn authenticator(now: Instant) -> Authenticator {
        match Authenticator::with_secret(DigestConfig::default(), [7u8; 32], b"op", now) {
            Ok(a) => a,
            Err(e) => panic!("no crypto: {e}"),
        }
    }

    // RFC 7616 §3.9.1: user "Mufasa", password "Circle of Life", GET /dir/index.html.
    const RFC7616_SHA256: &str = r#"Digest username="Mufasa",
        realm="http-auth@example.org",
        uri="/dir/index.html",
        algorithm=SHA-256,
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        nc=00000001,
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        qop=auth,
        response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    const RFC7616_MD5: &str = r#"Digest username="Mufasa",
        realm="http-auth@example.org",
        uri="/dir/index.html",
        algorithm=MD5,
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        nc=00000001,
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        qop=auth,
        response="8ca523f5e9506fed4657c9700eebdbec",
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn rfc7616_3_9_1_vectors_compute_the_published_responses() {
        let a = authenticator(Instant::now());
        for (value, alg) in [
            (RFC7616_SHA256, Algorithm::Sha256),
            (RFC7616_MD5, Algorithm::Md5),
        ] {
            let cred = auth(value);
            assert_eq!(cred.algorithm(), alg);
            assert_eq!(cred.username(), "Mufasa");
            assert_eq!(cred.nc(), Some(1));
            assert_eq!(
                a.response_digest(&cred, "GET", "Circle of Life"),
                cred.response(),
                "{alg}"
            );
        }
    }

    #[test]
    fn rfc7616_vectors_verify_as_stale_with_a_foreign_nonce_and_fail_when_tampered() {
        // The RFC's nonce is not one of ours: a correct digest is Stale, never Ok.
        let now = Instant::now();
        let a = authenticator(now);
        for value in [RFC7616_SHA256, RFC7616_MD5] {
            let cred = auth(value);
            assert_eq!(
                a.verify(&cred, "GET", "Circle of Life", now),
                Outcome::Stale
            );
            assert_eq!(
                a.verify(&cred, "GET", "Circle of life", now),
                Outcome::Failed
            );
            assert_eq!(
                a.verify(&cred, "POST", "Circle of Life", now),
                Outcome::Failed
            );
        }
        // Each field that enters the hash, changed, fails.
        let tampered = [
            ("username=\"Mufasa\"", "username=\"Simba\""),
            (
                "realm=\"http-auth@example.org\"",
                "realm=\"http-auth@example.com\"",
            ),
            ("uri=\"/dir/index.html\"", "uri=\"/dir/index.htm\""),
            ("nc=00000001", "nc=00000002"),
            ("cnonce=\"f2/", "cnonce=\"f3/"),
            ("nonce=\"7ypf", "nonce=\"8ypf"),
            ("response=\"7539", "response=\"7538"),
        ];
        for (from, to) in tampered {
            let v = RFC7616_SHA256.replacen(from, to, 1);
            assert_ne!(v, RFC7616_SHA256, "{from} not found");
            let cred = auth(&v);
            assert_eq!(
                a.verify(&cred, "GET", "Circle of Life", now),
                Outcome::Failed,
                "{to}"
            );
        }
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_test_case_2() {
        let a = authenticator(Instant::now());
        let tag = a
            .hkdf
            .hmac_sign(&OkmBlock::new(b"Jefe"), b"what do ya want for nothing?");
        let mut hex = String::new();
        push_hex(&mut hex, tag.as_ref());
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn own_nonce_round_trip_fresh_expired_foreign() {
        let t0 = Instant::now();
        let a = authenticator(t0);
        let ch = match a.challenge("adatum.biz", t0 + Duration::from_secs(1)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(ch.nonce().len(), 64);
        let answer = |nonce: &str, realm: &str| {
            format!(
                "Digest username=\"alice\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"sip:adatum.biz\", \
                 response=\"{}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"abc\"",
                "0".repeat(64)
            )
        };
        // Build a correct response with the authenticator's own formula, then check it.
        let with_response = |nonce: &str, realm: &str| {
            let v = answer(nonce, realm);
            let probe = auth(&v);
            let r = a.response_digest(&probe, "REGISTER", "pw").to_hex();
            v.replace(&"0".repeat(64), &r)
        };
        let ok = with_response(ch.nonce(), "adatum.biz");
        let check = |v: &str, at: Duration| a.verify(&auth(v), "REGISTER", "pw", t0 + at);
        assert_eq!(check(&ok, Duration::from_secs(2)), Outcome::Ok);
        assert_eq!(check(&ok, Duration::from_secs(301)), Outcome::Ok);
        assert_eq!(check(&ok, Duration::from_secs(302)), Outcome::Stale);
        assert_eq!(
            check(&ok, Duration::ZERO),
            Outcome::Stale,
            "issued in the future"
        );
        // The nonce is bound to its realm.
        let other_realm = with_response(ch.nonce(), "contoso.com");
        assert_eq!(check(&other_realm, Duration::from_secs(2)), Outcome::Stale);
        // Another secret (a restart) does not know the nonce.
        let restarted =
            match Authenticator::with_secret(DigestConfig::default(), [8u8; 32], b"op", t0) {
                Ok(a) => a,
                Err(e) => panic!("{e}"),
            };
        let cred = auth(&ok);
        assert_eq!(
            restarted.verify(&cred, "REGISTER", "pw", t0 + Duration::from_secs(2)),
            Outcome::Stale
        );
        // A flipped bit anywhere in the nonce makes it foreign.
        let mut flipped = ch.nonce().to_owned();
        let last = if flipped.ends_with('A') { "B" } else { "A" };
        flipped.replace_range(63.., last);
        let v = with_response(&flipped, "adatum.biz");
        assert_eq!(check(&v, Duration::from_secs(2)), Outcome::Stale);
        assert_eq!(
            a.verify(&auth(&v), "REGISTER", "wrong", t0 + Duration::from_secs(2)),
            Outcome::Failed
        );
    }

    #[test]
    fn md5_is_refused_when_not_offered() {
        let now = Instant::now();
        let config = DigestConfig {
            algorithms: Offered::new(&[Algorithm::Sha256]).expect("one algorithm"),
            ..DigestConfig::default()
        };
        let a = match Authenticator::with_secret(config, [1u8; 32], b"o", now) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let ch = match a.challenge("r", now) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(ch.header_values().count(), 1);
        let v = format!(
            "Digest username=\"u\", realm=\"r\", nonce=\"{}\", uri=\"sip:r\", response=\"{}\"",
            ch.nonce(),
            "0".repeat(32)
        );
        let probe = auth(&v);
        let r = a.response_digest(&probe, "REGISTER", "p").to_hex();
        let cred_text = v.replace(&"0".repeat(32), &r);
        assert_eq!(
            a.verify(&auth(&cred_text), "REGISTER", "p", now),
            Outcome::Failed
        );
    }

    /// Old phones (baresip 1.0) fail on a SHA-256 challenge: an MD5-only list offers one
    /// `WWW-Authenticate` with `algorithm=MD5`, accepts MD5 and refuses SHA-256; the order
    /// of a two-algorithm list is kept.
    #[test]
    fn an_md5_only_list_offers_and_accepts_md5_alone() {
        let now = Instant::now();
        let only = |list: &[Algorithm]| {
            let config = DigestConfig {
                algorithms: Offered::new(list).expect("a valid list"),
                ..DigestConfig::default()
            };
            match Authenticator::with_secret(config, [3u8; 32], b"o", now) {
                Ok(a) => a,
                Err(e) => panic!("{e}"),
            }
        };
        let a = only(&[Algorithm::Md5]);
        let ch = match a.challenge("r", now) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let values: Vec<String> = ch.header_values().collect();
        assert_eq!(values.len(), 1);
        assert!(values[0].contains(", algorithm=MD5,"), "{}", values[0]);
        for (alg, want) in [("MD5", Outcome::Ok), ("SHA-256", Outcome::Failed)] {
            let len = if alg == "MD5" { 32 } else { 64 };
            let v = format!(
                "Digest username=\"u\", realm=\"r\", nonce=\"{}\", uri=\"sip:r\", algorithm={alg}, response=\"{}\"",
                ch.nonce(),
                "0".repeat(len)
            );
            let r = a.response_digest(&auth(&v), "REGISTER", "p").to_hex();
            let cred = v.replace(&"0".repeat(len), &r);
            assert_eq!(a.verify(&auth(&cred), "REGISTER", "p", now), want, "{alg}");
        }
        let reversed = only(&[Algorithm::Md5, Algorithm::Sha256]);
        let ch = match reversed.challenge("r", now) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let order: Vec<Algorithm> = ch.algorithms().collect();
        assert_eq!(order, [Algorithm::Md5, Algorithm::Sha256]);
        assert_eq!(Offered::new(&[]), None);
        assert_eq!(Offered::new(&[Algorithm::Md5, Algorithm::Md5]), None);
        assert_eq!(Offered::DEFAULT.to_string(), "SHA-256, MD5");
    }

    #[test]
    fn challenge_headers_offer_sha256_first_then_md5() {
        let now = Instant::now();
        let a = authenticator(now);
        let ch = match a.challenge("adatum.biz", now) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let values: Vec<String> = ch.header_values().collect();
        assert_eq!(values.len(), 2);
        let expected = |alg: &str| {
            format!(
                "Digest realm=\"adatum.biz\", nonce=\"{}\", opaque=\"6f70\", algorithm={alg}, qop=\"auth\"",
                ch.nonce()
            )
        };
        assert_eq!(values[0], expected("SHA-256"));
        assert_eq!(values[1], expected("MD5"));
        let stale = ch.clone().stale();
        assert!(stale.header_value(Algorithm::Md5).ends_with(", stale=true"));
        // Realms with quotes are escaped.
        let odd = match a.challenge("a\"b\\c", now) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(odd
            .header_value(Algorithm::Sha256)
            .starts_with(r#"Digest realm="a\"b\\c", "#));
        // Two challenges never share a nonce.
        let again = match a.challenge("adatum.biz", now) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_ne!(again.nonce(), ch.nonce());
    }

    #[test]
    fn parsing_accepts_any_order_case_quoting_and_escapes() {
        let a = auth(
            "digest  QOP=\"auth\",NC=0000000a , Response=\"8CA523F5E9506FED4657C9700EEBDBEC\",\
             URI=sip:adatum.biz,, realm=adatum.biz, Nonce=\"n\",cnonce=c, \
             username=\"al\\\"ice\\\\\", algorithm=md5, opaque=\"x\", ext=\"ignored, really\"",
        );
        assert_eq!(a.username(), "al\"ice\\");
        assert_eq!(a.realm(), "adatum.biz");
        assert_eq!(a.uri(), "sip:adatum.biz");
        assert_eq!(a.nonce(), "n");
        assert_eq!(a.algorithm(), Algorithm::Md5);
        assert_eq!(a.nc(), Some(10));
        assert_eq!(a.cnonce(), Some("c"));
        assert_eq!(a.opaque(), Some("x"));
        assert_eq!(a.response().to_hex(), "8ca523f5e9506fed4657c9700eebdbec");
        // No algorithm means MD5; no qop is the RFC 2069 form.
        let legacy = auth(
            "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             uri=\"sip:bob@biloxi.com\", response=\"245f23415f11432b3434341c022f0a51\"",
        );
        assert_eq!(legacy.algorithm(), Algorithm::Md5);
        assert!(!legacy.has_qop());
        // A folded header value parses too.
        let folded = auth("Digest username=\"u\",\r\n realm=\"r\", nonce=\"n\",\r\n\turi=\"sip:r\", response=\"00000000000000000000000000000000\"");
        assert_eq!(folded.uri(), "sip:r");
    }

    #[test]
    fn rfc2069_form_computes_without_cnonce() {
        // response = MD5(HA1:nonce:HA2), with HA1 and HA2 computed here by hand.
        let a = authenticator(Instant::now());
        let md5 = |s: &str| {
            let mut h = Md5::new();
            h.update(s.as_bytes());
            DigestBytes::from_slice(h.finalize().as_slice()).to_hex()
        };
        let ha1 = md5("bob:biloxi.com:zanzibar");
        let ha2 = md5("REGISTER:sip:biloxi.com");
        let resp = md5(&format!("{ha1}:abc:{ha2}"));
        let v = format!(
            "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"abc\", uri=\"sip:biloxi.com\", response=\"{resp}\""
        );
        let cred = auth(&v);
        assert_eq!(
            a.response_digest(&cred, "REGISTER", "zanzibar").to_hex(),
            resp
        );
    }

    #[test]
    fn parse_errors_are_a_closed_set() {
        use AuthParseError as E;
        use Directive as D;
        let full = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\"";
        let r32 = "0".repeat(32);
        let r64 = "0".repeat(64);
        let cases: Vec<(String, AuthParseError)> = vec![
            ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into(), E::NotDigest),
            ("Digest".into(), E::Missing(D::Username)),
            (format!("Digest {full}"), E::Missing(D::Response)),
            (format!("Digest {full}, response=\"\""), E::NoResponse),
            (
                format!("Digest {full}, response=\"abc\""),
                E::Malformed(D::Response),
            ),
            (
                format!("Digest {full}, response=\"{r64}\""),
                E::Malformed(D::Response),
            ),
            (
                format!("Digest {full}, response=\"{}zz\"", "0".repeat(30)),
                E::Malformed(D::Response),
            ),
            (
                format!("Digest {full}, response=\"{r32}\", algorithm=SHA-256"),
                E::Malformed(D::Response),
            ),
            (
                format!("Digest {full}, response=\"{r32}\", algorithm=MD5-sess"),
                E::UnsupportedAlgorithm,
            ),
            (
                format!("Digest {full}, response=\"{r64}\", algorithm=SHA-512-256"),
                E::UnsupportedAlgorithm,
            ),
            (
                format!(
                    "Digest {full}, response=\"{r32}\", qop=auth-int, nc=00000001, cnonce=\"c\""
                ),
                E::UnsupportedQop,
            ),
            (
                format!("Digest {full}, response=\"{r32}\", qop=auth, nc=00000001"),
                E::Missing(D::Cnonce),
            ),
            (
                format!("Digest {full}, response=\"{r32}\", qop=auth, cnonce=\"c\""),
                E::Missing(D::Nc),
            ),
            (
                format!("Digest {full}, response=\"{r32}\", qop=auth, cnonce=\"c\", nc=1"),
                E::Malformed(D::Nc),
            ),
            (
                format!("Digest {full}, response=\"{r32}\", qop=auth, cnonce=\"c\", nc=0000000g"),
                E::Malformed(D::Nc),
            ),
            (
                format!("Digest {full}, REALM=\"x\", response=\"{r32}\""),
                E::Duplicate(D::Realm),
            ),
            (
                format!("Digest {full}, response=\"{r32}\", userhash=true"),
                E::UnsupportedUsername,
            ),
            (
                format!("Digest {full}, response=\"{r32}\", username*=UTF-8''a"),
                E::UnsupportedUsername,
            ),
            (format!("Digest {full}, response=\"{r32}"), E::Syntax),
            (format!("Digest {full}, response"), E::Syntax),
            (format!("Digest {full}, response=\"{r32}\" x"), E::Syntax),
            (format!("Digest {full}, =\"{r32}\""), E::Syntax),
            (
                format!("Digest {full}, response=\"{r32}\", nonce2=\"a\x01\""),
                E::Syntax,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(Authorization::parse(&value), Err(want), "{value}");
        }
    }

    #[test]
    fn base64_round_trip_and_strictness() {
        let mut raw = [0u8; NONCE_BYTES];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = u8::try_from(i * 37 % 256).unwrap_or(0);
        }
        let s = base64_encode(&raw);
        assert_eq!(base64_decode::<NONCE_BYTES>(&s), Some(raw));
        assert_eq!(base64_decode::<NONCE_BYTES>(&s[1..]), None);
        assert_eq!(base64_decode::<NONCE_BYTES>(&format!("={}", &s[1..])), None);
        // A known value: "Man" is "TWFu" (RFC 4648 §4 style example).
        assert_eq!(base64_decode::<3>("TWFu"), Some(*b"Man"));
    }
}
