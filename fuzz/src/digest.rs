//! Target `digest`: the `Authorization` header parser of `endpoint/digest.rs`, the
//! check of parsed credentials against a fixed password (both the failing and the
//! matching compare), and the `WWW-Authenticate` values drhub renders for a realm.
//!
//! drhub is the server side of digest authentication only: it renders challenges and
//! parses credentials, it never parses a `WWW-Authenticate`. The input is taken as an
//! `Authorization` value and, separately, as a realm to challenge for.

use std::time::{Duration, Instant};

use drhub::endpoint::digest::{Algorithm, Authenticator, Authorization, DigestConfig, Outcome};

const PASSWORD: &str = "fuzz-password";
const METHOD: &str = "REGISTER";
const KEY: [u8; 32] = [0x5a; 32];
const OPAQUE: &[u8] = b"fuzz";

/// The target body.
pub fn run(data: &[u8]) {
    // Header values reach the parser as text (the SIP parser checks UTF-8).
    let value = String::from_utf8_lossy(data);
    let epoch = Instant::now();
    let config = DigestConfig::default();
    let lifetime = config.nonce_lifetime;
    let server = Authenticator::with_secret(config, KEY, OPAQUE, epoch).expect("aws-lc-rs");

    challenge(&server, &value, epoch);
    answered(
        &server,
        "alice",
        &value,
        "sip:dr.example.com",
        epoch,
        lifetime,
    );

    let cred = match Authorization::parse(&value) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    guarantees(&cred);

    // The compare path on what was sent: only the right digest gets past Failed.
    let outcome = server.verify(&cred, METHOD, PASSWORD, epoch);
    if outcome != Outcome::Failed {
        assert_eq!(
            server.response_digest(&cred, METHOD, PASSWORD),
            cred.response()
        );
    }
    // The same credentials with a nonce of ours and the right digest verify.
    answered(
        &server,
        cred.username(),
        cred.realm(),
        cred.uri(),
        epoch,
        lifetime,
    );
    let nonce = server
        .challenge(cred.realm(), epoch)
        .expect("the CSPRNG works");
    let fixed = Fields {
        nonce: nonce.nonce(),
        response: String::new(),
        ..Fields::of(&cred)
    };
    let fixed = with_response(&server, fixed);
    let rendered = fixed.render();
    let again = parse(&rendered);
    assert_eq!(again.username(), cred.username());
    assert_eq!(again.realm(), cred.realm());
    assert_eq!(again.uri(), cred.uri());
    assert_eq!(again.algorithm(), cred.algorithm());
    assert_eq!(again.has_qop(), cred.has_qop());
    assert_eq!(again.nc(), cred.nc());
    assert_eq!(again.cnonce(), cred.cnonce());
    assert_eq!(again.opaque(), cred.opaque());
    assert_eq!(server.verify(&again, METHOD, PASSWORD, epoch), Outcome::Ok);
}

/// What parsed credentials guarantee.
fn guarantees(cred: &Authorization<'_>) {
    let alg = cred.algorithm();
    assert_eq!(cred.response().as_bytes().len(), alg.output_len());
    assert_eq!(cred.response().to_hex().len(), 2 * alg.output_len());
    assert_eq!(Algorithm::parse(alg.as_str()), Some(alg));
    assert_eq!(
        cred.has_qop(),
        cred.nc().is_some(),
        "qop and nc go together"
    );
    assert_eq!(
        cred.has_qop(),
        cred.cnonce().is_some(),
        "qop and cnonce go together"
    );
}

/// The challenge for `realm`: one value per algorithm, SHA-256 first, and nothing in
/// them that could end a header line.
fn challenge(server: &Authenticator, realm: &str, now: Instant) {
    let c = server.challenge(realm, now).expect("the CSPRNG works");
    assert_eq!(c.realm(), realm);
    assert!(!c.is_stale());
    let algorithms: Vec<_> = c.algorithms().collect();
    assert_eq!(algorithms.first(), Some(&Algorithm::Sha256));
    let values: Vec<_> = c.header_values().collect();
    assert_eq!(values.len(), algorithms.len());
    for v in values
        .iter()
        .chain([&c.clone().stale().header_value(Algorithm::Md5)])
    {
        assert!(v.starts_with("Digest realm=\""));
        assert!(
            !v.chars().any(char::is_control),
            "control character in {v:?}"
        );
        assert!(v.contains(c.nonce()));
    }
}

/// Credentials a client knowing the password sends for `username`, `realm` and `uri`
/// (in both algorithms, with and without qop) verify: Ok while the nonce is fresh,
/// Stale once it expired, Failed with another password or method.
fn answered(
    server: &Authenticator,
    username: &str,
    realm: &str,
    uri: &str,
    now: Instant,
    lifetime: Duration,
) {
    let c = server.challenge(realm, now).expect("the CSPRNG works");
    for (algorithm, qop) in [(Algorithm::Sha256, true), (Algorithm::Md5, false)] {
        let f = Fields {
            username,
            realm,
            nonce: c.nonce(),
            uri,
            response: String::new(),
            algorithm,
            qop: qop.then(|| ("00000001".to_owned(), "0a4f113b")),
            opaque: Some("6675_7a7a"),
        };
        let f = with_response(server, f);
        let rendered = f.render();
        let cred = parse(&rendered);
        assert_eq!(cred.username(), username);
        assert_eq!(cred.realm(), realm);
        assert_eq!(cred.uri(), uri);
        let later = now + Duration::from_secs(1);
        assert_eq!(server.verify(&cred, METHOD, PASSWORD, later), Outcome::Ok);
        let expired = now + lifetime + Duration::from_secs(1);
        assert_eq!(
            server.verify(&cred, METHOD, PASSWORD, expired),
            Outcome::Stale
        );
        assert_eq!(
            server.verify(&cred, METHOD, "wrong", later),
            Outcome::Failed
        );
        assert_eq!(
            server.verify(&cred, "INVITE", PASSWORD, later),
            Outcome::Failed
        );
    }
}

fn parse(value: &str) -> Authorization<'_> {
    match Authorization::parse(value) {
        Ok(a) => a,
        Err(e) => panic!("rendered credentials {value:?} do not parse: {e}"),
    }
}

/// The directives of an `Authorization` value, to render.
struct Fields<'a> {
    username: &'a str,
    realm: &'a str,
    nonce: &'a str,
    uri: &'a str,
    /// Hex; empty until [`with_response`] fills it.
    response: String,
    algorithm: Algorithm,
    /// `nc` and `cnonce` with `qop=auth`.
    qop: Option<(String, &'a str)>,
    opaque: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn of(c: &'a Authorization<'a>) -> Fields<'a> {
        Fields {
            username: c.username(),
            realm: c.realm(),
            nonce: c.nonce(),
            uri: c.uri(),
            response: c.response().to_hex(),
            algorithm: c.algorithm(),
            // `nc` was eight hex digits; rendered again the same way.
            qop: c
                .nc()
                .zip(c.cnonce())
                .map(|(nc, cn)| (format!("{nc:08x}"), cn)),
            opaque: c.opaque(),
        }
    }

    fn render(&self) -> String {
        let mut s = String::from("Digest username=");
        quote(&mut s, self.username);
        s.push_str(", realm=");
        quote(&mut s, self.realm);
        s.push_str(", nonce=");
        quote(&mut s, self.nonce);
        s.push_str(", uri=");
        quote(&mut s, self.uri);
        s.push_str(", response=\"");
        s.push_str(&self.response);
        s.push_str("\", algorithm=");
        s.push_str(self.algorithm.as_str());
        if let Some((nc, cnonce)) = &self.qop {
            s.push_str(", qop=auth, nc=");
            s.push_str(nc);
            s.push_str(", cnonce=");
            quote(&mut s, cnonce);
        }
        if let Some(o) = self.opaque {
            s.push_str(", opaque=");
            quote(&mut s, o);
        }
        s
    }
}

/// `fields` with the response a client knowing [`PASSWORD`] computes (the digest is
/// taken over a parse of the rendering, so it covers exactly what is sent).
fn with_response<'a>(server: &Authenticator, mut fields: Fields<'a>) -> Fields<'a> {
    fields.response = "0".repeat(2 * fields.algorithm.output_len());
    let draft = fields.render();
    let draft = parse(&draft);
    fields.response = server.response_digest(&draft, METHOD, PASSWORD).to_hex();
    fields
}

/// A quoted string holding exactly `s`: `"` and `\` escaped, CR, LF and HT left as they
/// are (folding whitespace inside a quoted string), any other control escaped.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' || (c.is_ascii_control() && !matches!(c, '\r' | '\n' | '\t')) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}
