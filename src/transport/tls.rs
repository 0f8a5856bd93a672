//! TLS for the SBC side (DR-TLS-1, DR-TLS-4): the rustls server and client configurations,
//! the client-certificate policy, and the peer identity that DR-VAL-3 compares against.
//!
//! This module owns every TLS decision the daemon makes:
//!
//! - the crypto provider is aws-lc-rs, passed explicitly to every config, never the process
//!   default; it is cut down to the ECDHE-RSA AES-GCM suites of TLS 1.2 and, when enabled,
//!   the AES-GCM suites of TLS 1.3 (TLS 1.0 and 1.1 do not exist in rustls);
//! - a client certificate is mandatory and is verified against the configured CA bundle by
//!   [`ClientAuthVerifier`], which accepts an extended key usage of clientAuth *or*
//!   serverAuth, as the real service does since public CAs stopped issuing clientAuth, and
//!   refuses a certificate with neither, an absent extended key usage extension included
//!   ([`end_entity_purpose`], DR-TLS-1);
//! - the SBC's server certificate on the proxy's own connections (DR-TLS-4) must pass the
//!   same purpose check, since an SBC presents one certificate both ways, and name the SBC;
//! - session resumption is off on both sides, so every connection proves its identity with
//!   a full certificate check and holds no session state in the daemon (see
//!   [`server_config`] for the memory budget);
//! - [`PeerIdentity`] and [`wildcard_match`] implement the name comparison of DR-VAL-3.
//!
//! Sockets live in `stream.rs`; this module only builds configurations and reads certificates.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A TLS protocol version the SBC listener may negotiate.
///
/// There is deliberately no 1.0 or 1.1: the real service refuses them (DR-TLS-1) and
/// rustls does not implement them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    /// TLS 1.2, the real service's floor.
    V1_2,
    /// TLS 1.3, off by default; enabled in config.
    V1_3,
}

impl TlsVersion {
    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::V1_2 => &rustls::version::TLS12,
            TlsVersion::V1_3 => &rustls::version::TLS13,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "TLS 1.2",
            TlsVersion::V1_3 => "TLS 1.3",
        })
    }
}

/// The three PEM files one side of a mutual-TLS connection needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Our certificate chain, end entity first (intermediates may follow).
    pub cert: PathBuf,
    /// The private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA bundle the peer's certificate must chain to; every certificate in it is a
    /// trust anchor.
    pub client_ca: PathBuf,
}

/// Why a TLS configuration or a certificate file could not be used. Every variant that
/// concerns a file names it, so the message alone tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read at all.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{}: malformed PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("{}: no certificate", path.display())]
    NoCertificate { path: PathBuf },
    /// The file holds no private key section.
    #[error("{}: no private key found", path.display())]
    NoPrivateKey { path: PathBuf },
    /// A certificate in the file is not valid X.509 DER.
    #[error("{}: certificate #{index}: {source}", path.display())]
    MalformedInFile {
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        #[source]
        source: X509Error,
    },
    /// A certificate handed over in DER (from a handshake) is not valid X.509.
    #[error("malformed certificate: {source}")]
    Malformed {
        #[source]
        source: X509Error,
    },
    /// A certificate in the CA bundle cannot serve as a trust anchor.
    #[error("{}: certificate #{index} is not a usable trust anchor: {source}", path.display())]
    TrustAnchor {
        path: PathBuf,
        index: usize,
        #[source]
        source: webpki::Error,
    },
    /// TLS 1.2 is enabled but the key is not RSA, so no ECDHE-RSA suite could be used.
    #[error(
        "{}: TLS 1.2 here uses ECDHE-RSA suites only, which need an RSA key (this key is {algorithm:?})",
        path.display()
    )]
    NotRsa {
        path: PathBuf,
        algorithm: rustls::SignatureAlgorithm,
    },
    /// The key cannot be loaded, or it does not belong to the certificate.
    #[error("{} with {}: {source}", cert.display(), key.display())]
    CertKey {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// No protocol version was enabled.
    #[error("no TLS version enabled: enable TLS 1.2, TLS 1.3 or both")]
    NoVersions,
    /// rustls refused the combination of provider and versions.
    #[error("TLS configuration: {source}")]
    Config {
        #[source]
        source: rustls::Error,
    },
}

/// The aws-lc-rs provider restricted to the suites the real service offers: TLS 1.2
/// ECDHE-RSA with AES-128-GCM or AES-256-GCM, plus the TLS 1.3 AES-GCM suites when
/// `versions` contains [`TlsVersion::V1_3`].
///
/// CHACHA20-POLY1305 and the ECDSA suites are left out. Key exchange groups, signature
/// verification algorithms, randomness and key loading are aws-lc-rs defaults.
pub fn provider(versions: &[TlsVersion]) -> Arc<CryptoProvider> {
    use aws_lc_rs::cipher_suite as cs;
    let mut cipher_suites: Vec<SupportedCipherSuite> = Vec::with_capacity(4);
    if versions.contains(&TlsVersion::V1_3) {
        cipher_suites.push(cs::TLS13_AES_256_GCM_SHA384);
        cipher_suites.push(cs::TLS13_AES_128_GCM_SHA256);
    }
    cipher_suites.push(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384);
    cipher_suites.push(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256);
    Arc::new(CryptoProvider {
        cipher_suites,
        ..aws_lc_rs::default_provider()
    })
}

/// The rustls versions for `versions`, deduplicated, or [`TlsError::NoVersions`].
fn rustls_versions(
    versions: &[TlsVersion],
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let mut out: Vec<&'static SupportedProtocolVersion> = Vec::with_capacity(2);
    for v in [TlsVersion::V1_3, TlsVersion::V1_2] {
        if versions.contains(&v) {
            out.push(v.rustls());
        }
    }
    if out.is_empty() {
        return Err(TlsError::NoVersions);
    }
    Ok(out)
}

/// The SBC-facing server configuration (DR-TLS-1).
///
/// Guarantees:
/// - a client certificate is required, and it must chain to a certificate in
///   `files.client_ca`, be within its validity period, and list clientAuth or serverAuth
///   in its extended key usage extension ([`end_entity_purpose`]: a certificate without the
///   extension is refused, although RFC 5280 §4.2.1.12 would let it serve any purpose);
///   anything else fails the handshake, so no byte of SIP is read from such a peer;
/// - handshake signatures are checked with the same provider's algorithms;
/// - with TLS 1.2 enabled, the key in `files.key` must be RSA (ECDHE-RSA suites only);
/// - no session resumption: no TLS 1.3 tickets are sent, no TLS 1.2 session ids are
///   stored, so the config holds no per-session state and a reconnecting SBC is always
///   verified afresh (an expired or replaced certificate is noticed at once).
///
/// Memory: nothing here grows with the number of sessions. Per connection, an idle rustls
/// connection keeps its deframer buffer (shrunk back to 4 KiB once empty), the record
/// keys, the peer's certificate chain and empty output queues: about 9 KiB resident per
/// idle connection in all, measured at 2,000 connections (`tests/tls_memory.rs`). Bursts
/// are bounded by rustls: one record (~18 KiB) or one handshake message (64 KiB) inbound,
/// 16 KiB of unread plaintext, and 64 KiB of unsent records unless the connection's
/// `set_buffer_limit` says otherwise (a cap, not an allocation).
pub fn server_config(
    files: &TlsFiles,
    versions: &[TlsVersion],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let proto = rustls_versions(versions)?;
    let provider = provider(versions);
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    if versions.contains(&TlsVersion::V1_2) {
        require_rsa(&provider, &files.cert, &files.key, &key)?;
    }
    let verifier = ClientAuthVerifier::new(&files.client_ca, &provider)?;

    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&proto)
        .map_err(|source| TlsError::Config { source })?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::CertKey {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    // SSLKEYLOGFILE, when set, gets every session's secrets (Wireshark decrypts with it).
    config.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(Arc::new(config))
}

/// The configuration for the proxy's own connections to an SBC (DR-TLS-4).
///
/// Presents the proxy certificate from `files.cert`/`files.key` and verifies the SBC's
/// server certificate with [`SbcServerVerifier`]: against `files.client_ca`, for the
/// purposes an SBC certificate must have ([`end_entity_purpose`], as on the listener), and
/// against the server name the caller passes to the connector (webpki rules: DNS SANs
/// only, `*` only as a whole left-most label). Resumption is disabled for the same reason
/// as on the server side: every connection shows the SBC's current certificate, which the
/// health check reads for expiry.
pub fn client_config(
    files: &TlsFiles,
    versions: &[TlsVersion],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let proto = rustls_versions(versions)?;
    let provider = provider(versions);
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let verifier = SbcServerVerifier {
        chain: PeerChain::new(&files.client_ca, &provider)?,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&proto)
        .map_err(|source| TlsError::Config { source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .map_err(|source| TlsError::CertKey {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    config.resumption = Resumption::disabled();
    config.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file, in file order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a CA bundle as a trust anchor.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = load_certs(path)?;
    let mut roots = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        let anchor =
            webpki::anchor_from_trusted_cert(der).map_err(|source| TlsError::TrustAnchor {
                path: path.to_path_buf(),
                index: i + 1,
                source,
            })?;
        roots.push(anchor.to_owned());
    }
    Ok(RootCertStore { roots })
}

fn require_rsa(
    provider: &CryptoProvider,
    cert: &Path,
    key_path: &Path,
    key: &PrivateKeyDer<'static>,
) -> Result<(), TlsError> {
    let signer = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|source| TlsError::CertKey {
            cert: cert.to_path_buf(),
            key: key_path.to_path_buf(),
            source,
        })?;
    match signer.algorithm() {
        rustls::SignatureAlgorithm::RSA => Ok(()),
        algorithm => Err(TlsError::NotRsa {
            path: key_path.to_path_buf(),
            algorithm,
        }),
    }
}

/// Why a peer's end-entity certificate is not fit to identify an SBC (DR-TLS-1): its
/// extended key usage extension must be present and list serverAuth or clientAuth.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PurposeError {
    /// No extended key usage extension. RFC 5280 §4.2.1.12 would let such a certificate
    /// serve any purpose; drhub's rule (README, `[[listener]]`) asks for one of the two.
    #[error("no extended key usage extension; serverAuth or clientAuth is required (DR-TLS-1)")]
    NoExtendedKeyUsage,
    /// The extension lists other purposes only (anyExtendedKeyUsage among them).
    #[error("extended key usage {present} has neither serverAuth nor clientAuth (DR-TLS-1)")]
    NeitherAuth {
        /// The purposes listed, by name or OID.
        present: String,
    },
    /// The certificate or its extension does not parse.
    #[error("unreadable certificate: {0}")]
    Unreadable(X509Error),
}

/// DR-TLS-1: the end-entity certificate an SBC presents, as a client or as a server, lists
/// serverAuth or clientAuth in its extended key usage extension.
pub fn end_entity_purpose(der: &CertificateDer<'_>) -> Result<(), PurposeError> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| PurposeError::Unreadable(nom_error(e)))?;
    let eku = cert
        .extended_key_usage()
        .map_err(PurposeError::Unreadable)?
        .ok_or(PurposeError::NoExtendedKeyUsage)?
        .value;
    if eku.server_auth || eku.client_auth {
        return Ok(());
    }
    let named = [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ];
    let present: Vec<String> = named
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name.to_owned())
        .chain(eku.other.iter().map(|oid| oid.to_id_string()))
        .collect();
    Err(PurposeError::NeitherAuth {
        present: if present.is_empty() {
            "(empty)".to_owned()
        } else {
            present.join(", ")
        },
    })
}

/// The trust anchors and signature algorithms an SBC's certificate chain is checked with,
/// in either direction.
#[derive(Debug)]
struct PeerChain {
    roots: Vec<TrustAnchor<'static>>,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerChain {
    /// Every certificate in the PEM bundle at `ca` as a trust anchor, signatures checked
    /// with `provider`'s algorithms.
    fn new(ca: &Path, provider: &CryptoProvider) -> Result<Self, TlsError> {
        let store = load_roots(ca)?;
        Ok(Self {
            hints: store.subjects(),
            roots: store.roots,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    /// The end entity's purpose ([`end_entity_purpose`]), then its path to a trust anchor
    /// at `now` (rustls-webpki: validity, signatures, name constraints, and the extended
    /// key usage of intermediates, [`ClientOrServerAuth`]). A purpose refusal is logged
    /// here with its reason, which the rustls error (`InvalidPurpose`) does not carry;
    /// `sbc` names the SBC the proxy connects to, when it does.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        sbc: Option<&str>,
    ) -> Result<(), rustls::Error> {
        let role = if sbc.is_some() { "server" } else { "client" };
        if let Err(e) = end_entity_purpose(end_entity) {
            tracing::warn!(reason = %e, sbc = sbc.unwrap_or("-"), "SBC {role} certificate refused");
            return Err(rustls::Error::InvalidCertificate(match e {
                PurposeError::Unreadable(_) => CertificateError::BadEncoding,
                _ => CertificateError::InvalidPurpose,
            }));
        }
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        match cert.verify_for_usage(
            self.algorithms.all,
            &self.roots,
            intermediates,
            now,
            ClientOrServerAuth,
            None,
            None,
        ) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, sbc = sbc.unwrap_or("-"), "SBC {role} certificate rejected");
                Err(pki_error(e))
            }
        }
    }
}

/// The client-certificate policy of the SBC listener: a mandatory certificate that chains
/// to the configured CA bundle, is currently valid, and whose extended key usage extension
/// lists clientAuth or serverAuth ([`end_entity_purpose`]).
///
/// Why not rustls' `WebPkiClientVerifier`: it insists on clientAuth, and public CAs stopped
/// putting clientAuth into server certificates in 2026, so real SBC certificates carry
/// serverAuth only; the real service accepts them and so must we. Everything else
/// (path building, validity, signatures, name constraints) is rustls-webpki's.
#[derive(Debug)]
pub struct ClientAuthVerifier {
    chain: PeerChain,
}

impl ClientAuthVerifier {
    /// A verifier trusting every certificate in the PEM bundle at `ca`, checking
    /// signatures with `provider`'s algorithms.
    pub fn new(ca: &Path, provider: &CryptoProvider) -> Result<Self, TlsError> {
        Ok(Self {
            chain: PeerChain::new(ca, provider)?,
        })
    }
}

/// The server-certificate policy of the proxy's own connections to an SBC (DR-TLS-4): the
/// chain and purpose rules of [`ClientAuthVerifier`] (serverAuth or clientAuth, none
/// refused: the SBC presents the same certificate both ways), and the SBC's FQDN among its
/// names by webpki's rules.
///
/// Why not rustls' `WebPkiServerVerifier`: it takes a certificate without the extended key
/// usage extension and refuses a clientAuth-only one, the opposite of the listener.
#[derive(Debug)]
pub struct SbcServerVerifier {
    chain: PeerChain,
}

/// OID content bytes of id-kp-serverAuth (1.3.6.1.5.5.7.3.1).
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// OID content bytes of id-kp-clientAuth (1.3.6.1.5.5.7.3.2).
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// Extended key usage policy for the certificates of a path: clientAuth or serverAuth, or
/// no EKU extension at all. webpki applies it to the end entity and to every intermediate,
/// and cannot tell them apart; intermediates usually have no EKU (RFC 5280 §4.2.1.12 lets
/// its absence mean "any"), so absence passes here, and the end entity, which must have
/// one, is held to [`end_entity_purpose`] before.
struct ClientOrServerAuth;

impl webpki::ExtendedKeyUsageValidator for ClientOrServerAuth {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let client = webpki::KeyPurposeId::new(EKU_CLIENT_AUTH);
        let server = webpki::KeyPurposeId::new(EKU_SERVER_AUTH);
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if id == client || id == server {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            // An intermediate without EKU: no restriction (RFC 5280 §4.2.1.12).
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::client_auth(),
                present,
            },
        ))
    }
}

impl ClientCertVerifier for ClientAuthVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.chain.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.chain
            .verify(end_entity, intermediates, now, None)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.chain.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.chain.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for SbcServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.chain
            .verify(end_entity, intermediates, now, Some(&server_name.to_str()))?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.chain.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.chain.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.algorithms.supported_schemes()
    }
}

/// webpki's verdict as the rustls error (and so the TLS alert) rustls' own verifiers use.
fn pki_error(error: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let cert = match error {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        E::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        E::InvalidCertValidity => CertificateError::Expired,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertRevoked => CertificateError::Revoked,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            CertificateError::InvalidPurpose
        }
        #[allow(deprecated)]
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            CertificateError::UnsupportedSignatureAlgorithm
        }
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert)
}

/// What a peer certificate says about who the peer is: the names DR-VAL-3 compares the
/// Contact host against, and the validity the health check reports.
///
/// Times are `time::OffsetDateTime` in UTC, the type x509-parser and rcgen use, so no
/// conversion can fail or lose precision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The first Common Name of the subject, if any.
    pub subject_cn: Option<String>,
    /// DNS names of the subjectAltName extension, as written (wildcards included).
    pub dns_names: Vec<String>,
    /// IP addresses of the subjectAltName extension (never matched by [`Self::matches`]).
    pub ip_addresses: Vec<IpAddr>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Serial number as colon-separated hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Issuer distinguished name, RFC 4514 style (`CN=..., O=...`).
    pub issuer: String,
}

impl PeerIdentity {
    /// The identity of the end-entity certificate a TLS peer presented, once its
    /// handshake is done; `None` when it presented none.
    pub fn of_peer(conn: &rustls::CommonState) -> Option<Result<Self, TlsError>> {
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .map(Self::from_der)
    }

    /// Reads the identity out of a DER certificate. Does no validation beyond parsing:
    /// that is the verifier's job and has happened by the time a handshake completes.
    pub fn from_der(der: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (_, cert) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| TlsError::Malformed {
                source: nom_error(e),
            })?;
        Self::from_x509(&cert).map_err(|source| TlsError::Malformed { source })
    }

    fn from_x509(cert: &X509Certificate<'_>) -> Result<Self, X509Error> {
        let subject_cn = match cert.subject().iter_common_name().next() {
            Some(cn) => Some(cn.as_str()?.to_owned()),
            None => None,
        };
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Some(san) = cert.subject_alternative_name()? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let validity = cert.validity();
        Ok(Self {
            subject_cn,
            dns_names,
            ip_addresses,
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            serial: cert.raw_serial_as_string(),
            issuer: cert.issuer().to_string(),
        })
    }

    /// DR-VAL-3: `fqdn` equals the Common Name or a DNS subjectAltName, or is matched by a
    /// wildcard in either ([`wildcard_match`]); case-insensitive.
    pub fn matches(&self, fqdn: &str) -> bool {
        self.subject_cn
            .iter()
            .chain(self.dns_names.iter())
            .any(|pattern| wildcard_match(pattern, fqdn))
    }

    /// True when the certificate has expired at `now` or will within `days` days.
    pub fn expires_within(&self, now: OffsetDateTime, days: u32) -> bool {
        self.not_after <= now + time::Duration::days(i64::from(days))
    }

    /// The names to show an operator: the Common Name, then the DNS names not equal to it.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        let cn = self.subject_cn.as_deref();
        cn.into_iter().chain(
            self.dns_names
                .iter()
                .map(String::as_str)
                .filter(move |n| cn.is_none_or(|cn| !cn.eq_ignore_ascii_case(n))),
        )
    }
}

impl fmt::Display for PeerIdentity {
    /// One line for `drhub check`: names, validity, issuer and serial.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for name in self.names() {
            f.write_str(if first { "" } else { ", " })?;
            f.write_str(name)?;
            first = false;
        }
        for ip in &self.ip_addresses {
            write!(f, "{}{ip}", if first { "" } else { ", " })?;
            first = false;
        }
        if first {
            f.write_str("(no names)")?;
        }
        write!(
            f,
            "; valid {} to {}; issuer {}; serial {}",
            self.not_before.date(),
            self.not_after.date(),
            self.issuer,
            self.serial
        )
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn nom_error(e: x509_parser::nom::Err<X509Error>) -> X509Error {
    match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
        x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
    }
}

/// The identities of every certificate in a PEM file, in file order (`drhub check`).
pub fn describe_pem_file(path: &Path) -> Result<Vec<PeerIdentity>, TlsError> {
    load_certs(path)?
        .iter()
        .enumerate()
        .map(|(i, der)| {
            let wrap = |source| TlsError::MalformedInFile {
                path: path.to_path_buf(),
                index: i + 1,
                source,
            };
            let (_, cert) =
                X509Certificate::from_der(der.as_ref()).map_err(|e| wrap(nom_error(e)))?;
            PeerIdentity::from_x509(&cert).map_err(wrap)
        })
        .collect()
}

/// RFC 2818 §3.1 name matching, as DR-VAL-3 states it.
///
/// - Without `*`, the names are equal ignoring ASCII case.
/// - `*` may appear once, in the left-most label only, and stands for one whole label
///   (`*.a.com`) or a fragment of one (`f*.com`); it never spans a dot, so `*.a.com`
///   matches `foo.a.com` but neither `bar.foo.a.com` nor `a.com`.
/// - `*` matches at least one character: `f*.com` does not match `f.com`, for the same
///   reason `*.a.com` does not match `.a.com`.
/// - The pattern must have a label after the wildcard label (`*` alone matches nothing).
/// - One trailing dot on either side is ignored; empty labels never match; a `name`
///   containing `*` never matches (names are not patterns).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.contains('*') || has_empty_label(name) || has_empty_label(pattern) {
        return false;
    }
    let Some(star) = pattern.find('*') else {
        return pattern.eq_ignore_ascii_case(name);
    };
    if pattern[star + 1..].contains('*') {
        return false;
    }
    let (Some((p_first, p_rest)), Some((n_first, n_rest))) =
        (pattern.split_once('.'), name.split_once('.'))
    else {
        return false;
    };
    if star >= p_first.len() || !p_rest.eq_ignore_ascii_case(n_rest) {
        return false;
    }
    let (prefix, suffix) = (&p_first[..star], &p_first[star + 1..]);
    n_first.len() > prefix.len() + suffix.len()
        && n_first
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        && n_first
            .get(n_first.len() - suffix.len()..)
            .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
}

fn has_empty_label(name: &str) -> bool {
    name.split('.').any(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_val_3_wildcard_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            // exact, case-insensitive, trailing dot
            ("sbc1.adatum.biz", "sbc1.adatum.biz", true),
            ("SBC1.Adatum.BIZ", "sbc1.adatum.biz", true),
            ("sbc1.adatum.biz.", "sbc1.adatum.biz", true),
            ("sbc1.adatum.biz", "sbc1.adatum.biz.", true),
            ("sbc1.adatum.biz", "sbc2.adatum.biz", false),
            ("sbc1.adatum.biz", "sbc1.adatum.biz.evil", false),
            // whole-label wildcard: exactly one label
            ("*.a.com", "foo.a.com", true),
            ("*.A.COM", "Foo.a.com", true),
            ("*.a.com", "bar.foo.a.com", false),
            ("*.a.com", "a.com", false),
            ("*.a.com", ".a.com", false),
            ("*.a.com", "foo.b.com", false),
            ("*.a.com.", "foo.a.com", true),
            // fragment wildcards
            ("f*.com", "foo.com", true),
            ("f*.com", "bar.com", false),
            ("f*.com", "f.com", false),
            ("*o.com", "foo.com", true),
            ("*o.com", "bar.com", false),
            ("b*z.a.com", "baz.a.com", true),
            ("b*z.a.com", "bz.a.com", false),
            ("b*z.a.com", "baz.b.a.com", false),
            ("F*.COM", "foo.com", true),
            // star placement and count
            ("a.*.com", "a.b.com", false),
            ("foo.*", "foo.com", false),
            ("*.*.com", "a.b.com", false),
            ("f**.com", "foo.com", false),
            ("*", "foo", false),
            ("*", "", false),
            // malformed input
            ("", "", false),
            ("a..com", "a..com", false),
            ("*.a.com", "*.a.com", false),
            ("*.a.com", "foo..a.com", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                wildcard_match(pattern, name),
                *want,
                "{pattern:?} vs {name:?}"
            );
        }
    }

    fn identity(cn: Option<&str>, dns: &[&str]) -> PeerIdentity {
        PeerIdentity {
            subject_cn: cn.map(str::to_owned),
            dns_names: dns.iter().map(|s| (*s).to_owned()).collect(),
            ip_addresses: vec![],
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH + time::Duration::days(100),
            serial: "01".into(),
            issuer: "CN=test".into(),
        }
    }

    #[test]
    fn dr_val_3_matches_cn_or_san() {
        let cases: &[(Option<&str>, &[&str], &str, bool)] = &[
            (Some("sbc1.adatum.biz"), &[], "SBC1.adatum.biz", true),
            (None, &["sbc1.adatum.biz"], "sbc1.adatum.biz", true),
            (
                Some("other.biz"),
                &["x.biz", "*.adatum.biz"],
                "sbc9.adatum.biz",
                true,
            ),
            (Some("*.adatum.biz"), &["x.biz"], "sbc9.adatum.biz", true),
            (
                Some("sbc1.adatum.biz"),
                &["sbc2.adatum.biz"],
                "sbc3.adatum.biz",
                false,
            ),
            (None, &[], "sbc1.adatum.biz", false),
        ];
        for (cn, dns, fqdn, want) in cases {
            assert_eq!(
                identity(*cn, dns).matches(fqdn),
                *want,
                "{cn:?} {dns:?} {fqdn}"
            );
        }
    }

    #[test]
    fn expires_within_days() {
        let id = identity(Some("a.b"), &[]);
        let day = time::Duration::days(1);
        let cases = [
            (id.not_after - day * 31, 30, false),
            (id.not_after - day * 30, 30, true),
            (id.not_after - day * 10, 30, true),
            (id.not_after + day, 0, true),
            (id.not_after - day, 0, false),
        ];
        for (now, days, want) in cases {
            assert_eq!(id.expires_within(now, days), want, "{now} {days}");
        }
    }

    #[test]
    fn names_puts_cn_first_without_duplicates() {
        let id = identity(
            Some("SBC1.adatum.biz"),
            &["sbc1.adatum.biz", "sbc2.adatum.biz"],
        );
        assert_eq!(
            id.names().collect::<Vec<_>>(),
            ["SBC1.adatum.biz", "sbc2.adatum.biz"]
        );
        let id = identity(None, &["a.b"]);
        assert_eq!(id.names().collect::<Vec<_>>(), ["a.b"]);
    }

    #[test]
    fn dr_tls_1_end_entity_purpose_table() {
        use rcgen::ExtendedKeyUsagePurpose as P;
        let key = match rcgen::KeyPair::generate() {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        };
        let cert = |usages: Vec<P>| {
            let mut params = match rcgen::CertificateParams::new(vec!["sbc1.adatum.biz".into()]) {
                Ok(p) => p,
                Err(e) => panic!("{e}"),
            };
            params.extended_key_usages = usages;
            match params.self_signed(&key) {
                Ok(c) => c.der().clone(),
                Err(e) => panic!("{e}"),
            }
        };
        let neither = |present: &str| {
            Err(PurposeError::NeitherAuth {
                present: present.to_owned(),
            })
        };
        let cases: Vec<(Vec<P>, Result<(), PurposeError>)> = vec![
            (vec![P::ServerAuth], Ok(())),
            (vec![P::ClientAuth], Ok(())),
            (vec![P::ServerAuth, P::ClientAuth], Ok(())),
            (vec![P::CodeSigning, P::ServerAuth], Ok(())),
            (vec![], Err(PurposeError::NoExtendedKeyUsage)),
            (vec![P::CodeSigning], neither("codeSigning")),
            (vec![P::Any], neither("anyExtendedKeyUsage")),
            (
                vec![
                    P::EmailProtection,
                    P::Other(vec![1, 3, 6, 1, 4, 1, 311, 99]),
                ],
                neither("emailProtection, 1.3.6.1.4.1.311.99"),
            ),
        ];
        for (usages, want) in cases {
            let label = format!("{usages:?}");
            assert_eq!(end_entity_purpose(&cert(usages)), want, "{label}");
        }
        assert!(matches!(
            end_entity_purpose(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])),
            Err(PurposeError::Unreadable(_))
        ));
        assert_eq!(
            PurposeError::NoExtendedKeyUsage.to_string(),
            "no extended key usage extension; serverAuth or clientAuth is required (DR-TLS-1)"
        );
    }

    #[test]
    fn provider_suites_follow_versions() {
        use rustls::CipherSuite as C;
        let suites = |v: &[TlsVersion]| -> Vec<C> {
            provider(v)
                .cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect()
        };
        assert_eq!(
            suites(&[TlsVersion::V1_2]),
            [
                C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ]
        );
        assert_eq!(
            suites(&[TlsVersion::V1_2, TlsVersion::V1_3]),
            [
                C::TLS13_AES_256_GCM_SHA384,
                C::TLS13_AES_128_GCM_SHA256,
                C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ]
        );
        assert!(matches!(rustls_versions(&[]), Err(TlsError::NoVersions)));
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("drhub-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        let empty = dir.join("proxy.key");
        std::fs::write(&empty, "not pem at all\n").expect("temp dir is writable");
        let err = load_key(&empty).expect_err("no key in file");
        assert_eq!(
            err.to_string(),
            format!("{}: no private key found", empty.display())
        );
        let err = load_certs(&empty).expect_err("no cert in file");
        assert_eq!(
            err.to_string(),
            format!("{}: no certificate", empty.display())
        );
        let missing = dir.join("missing.pem");
        let err = describe_pem_file(&missing).expect_err("missing file");
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", missing.display())),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
