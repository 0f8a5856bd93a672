//! The lab PKI: a CA, the proxy's certificate and one certificate per SBC, written by
//! `drhub certs` and on the daemon's first start, and the issuing API the test suites use
//! to make good and bad client certificates.
//!
//! Everything is RSA 2048 with SHA-256 signatures, because TLS 1.2 on the SBC side uses
//! ECDHE-RSA suites only (DR-TLS-1). Leaf certificates carry serverAuth and clientAuth, so
//! the same files serve an SBC as server (DR-TLS-4) and as client (DR-TLS-1). Private keys
//! are written with mode 0600; every file is written to a temporary name and renamed, so a
//! crash never leaves half a key behind.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PrintableString, RsaKeySize, SanType, SerialNumber,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// File name of the CA certificate, the file an SBC must trust.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA private key.
pub const CA_KEY: &str = "ca.key";
/// File name of the proxy certificate.
pub const PROXY_CERT: &str = "proxy.pem";
/// File name of the proxy private key.
pub const PROXY_KEY: &str = "proxy.key";

/// Validity of a lab CA.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Validity of proxy and SBC certificates.
pub const LEAF_VALIDITY: Duration = Duration::days(730);
/// How far `not_before` is moved into the past, so a peer whose clock is a little behind
/// accepts a certificate made a moment ago.
pub const BACKDATE: Duration = Duration::hours(1);

const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// What `drhub certs` (or the first start) is asked to produce.
#[derive(Clone, Copy, Debug)]
pub struct PkiRequest<'a> {
    /// Directory of the PKI; created if missing.
    pub dir: &'a Path,
    /// The proxy FQDNs (`sip.pstnhub.microsoft.com` ...); the first one is the CN.
    pub proxy_names: &'a [String],
    /// One certificate is made per SBC FQDN; `*.x.com` is allowed.
    pub sbc_fqdns: &'a [String],
    /// Replace an existing CA instead of reusing it.
    pub force: bool,
}

/// A certificate and its key as files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Whether the CA was made by this run or taken from the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaOrigin {
    /// A new CA was generated and written: every SBC must trust the new `ca.pem`.
    Generated,
    /// The existing `ca.pem`/`ca.key` signed the new certificates; SBC trust stores
    /// need no change.
    Reused,
}

/// The files written for one SBC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SbcFiles {
    pub fqdn: String,
    pub files: FilePair,
}

/// What [`write_lab_pki`] did, for the CLI to print what each SBC needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiReport {
    pub ca: FilePair,
    pub ca_origin: CaOrigin,
    pub ca_not_after: OffsetDateTime,
    pub proxy: FilePair,
    /// The DNS names in the proxy certificate (IP 127.0.0.1 is in it too).
    pub proxy_names: Vec<String>,
    pub sbcs: Vec<SbcFiles>,
}

impl fmt::Display for PkiReport {
    /// The text `drhub certs` prints: what was written and what to load on each SBC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = match self.ca_origin {
            CaOrigin::Generated => "new",
            CaOrigin::Reused => "reused",
        };
        writeln!(
            f,
            "CA ({origin}, valid until {}): {} (key {})",
            self.ca_not_after.date(),
            self.ca.cert.display(),
            self.ca.key.display()
        )?;
        writeln!(
            f,
            "proxy: {} (key {}) for {}, 127.0.0.1",
            self.proxy.cert.display(),
            self.proxy.key.display(),
            self.proxy_names.join(", ")
        )?;
        for sbc in &self.sbcs {
            writeln!(
                f,
                "SBC {}: trust {}; certificate {}; key {}",
                sbc.fqdn,
                self.ca.cert.display(),
                sbc.files.cert.display(),
                sbc.files.key.display()
            )?;
        }
        Ok(())
    }
}

/// Why the lab PKI could not be written or a CA could not be used. Variants about a file
/// name it.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: malformed PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{}: no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("{}: malformed certificate: {source}", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: X509Error,
    },
    #[error("{}: unusable private key: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("{}: not a CA certificate (basicConstraints cA is not set)", path.display())]
    NotACa { path: PathBuf },
    #[error(
        "{}: the CA expired on {not_after}; make a new one with `drhub certs --force`",
        path.display()
    )]
    CaExpired {
        path: PathBuf,
        not_after: OffsetDateTime,
    },
    #[error("{}: is not the key of the certificate in {}", key.display(), cert.display())]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "{}: the CA's subject name cannot be re-encoded exactly, so certificates it signs \
         would not chain to it; use a CA made by `drhub certs`",
        path.display()
    )]
    CaSubject { path: PathBuf },
    #[error(
        "{}: missing while {} exists; restore it, or replace the CA with `drhub certs --force`",
        missing.display(),
        present.display()
    )]
    CaIncomplete { present: PathBuf, missing: PathBuf },
    #[error("at least one proxy name is needed")]
    NoProxyName,
    #[error("a certificate needs at least one name")]
    NoName,
    #[error("{name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{first:?} and {second:?} would both be written to {}", path.display())]
    SameFile {
        first: String,
        second: String,
        path: PathBuf,
    },
    #[error("generating an RSA key: {source}")]
    KeyGen {
        #[source]
        source: rcgen::Error,
    },
    #[error("signing the certificate for {subject}: {source}")]
    Sign {
        subject: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("the system random number generator failed")]
    Random,
}

/// An extended key usage a test certificate may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage {
    ServerAuth,
    ClientAuth,
    /// A usage the SBC listener must refuse (wrong-usage tests).
    CodeSigning,
}

impl Usage {
    fn rcgen(self) -> ExtendedKeyUsagePurpose {
        match self {
            Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
        }
    }
}

/// What to put in a leaf certificate. The first name is the Common Name; all names are
/// DNS subjectAltNames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    pub names: Vec<String>,
    /// Subject Common Name; `None` uses the first name. Not validated as a DNS name, so
    /// a test can issue what real SBC certificates sometimes carry (`CN=f*.x.com`).
    pub common_name: Option<String>,
    pub ips: Vec<IpAddr>,
    /// Extended key usages; empty writes no EKU extension.
    pub usages: Vec<Usage>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// The lab default: serverAuth + clientAuth, valid from [`BACKDATE`] ago for
    /// [`LEAF_VALIDITY`].
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            names: names.into_iter().map(Into::into).collect(),
            common_name: None,
            ips: Vec::new(),
            usages: vec![Usage::ServerAuth, Usage::ClientAuth],
            not_before: now - BACKDATE,
            not_after: now + LEAF_VALIDITY,
        }
    }

    /// Sets the subject Common Name (see [`LeafSpec::common_name`]).
    pub fn common_name(mut self, cn: impl Into<String>) -> Self {
        self.common_name = Some(cn.into());
        self
    }

    /// Replaces the extended key usages.
    pub fn usages(mut self, usages: &[Usage]) -> Self {
        self.usages = usages.to_vec();
        self
    }

    /// Makes the certificate expired since yesterday (valid for the 30 days before).
    pub fn expired(mut self) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now - Duration::days(31);
        self.not_after = now - Duration::days(1);
        self
    }
}

/// A freshly issued certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl IssuedCert {
    /// Writes `<dir>/<stem>.pem` (0644) and `<dir>/<stem>.key` (0600).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<FilePair, CertError> {
        let files = FilePair {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        write_file(&files.key, &self.key_pem, KEY_MODE)?;
        write_file(&files.cert, &self.cert_pem, CERT_MODE)?;
        Ok(files)
    }
}

/// A CA able to sign: generated here, or loaded from `ca.pem`/`ca.key`.
///
/// A loaded CA is checked before use: it is a CA, it has not expired, the key belongs to
/// the certificate, and its subject re-encodes byte for byte, so that what it signs
/// chains to the very certificate the SBCs trust.
pub struct LabCa {
    /// Parameters and a (possibly re-signed) certificate that rcgen reads the issuer name,
    /// key identifier and algorithm from; never written out for a loaded CA.
    issuer: rcgen::Certificate,
    key: KeyPair,
    cert_pem: String,
    key_pem: String,
    not_after: OffsetDateTime,
}

impl fmt::Debug for LabCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabCa")
            .field("subject", &self.issuer.params().distinguished_name)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl LabCa {
    /// A new RSA 2048 CA valid for [`CA_VALIDITY`]. Its Common Name carries a random tag so
    /// two lab CAs never share a subject name in a trust store.
    pub fn generate() -> Result<Self, CertError> {
        let key = rsa_key()?;
        let now = OffsetDateTime::now_utc();
        let tag = random_bytes::<4>()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!(
                "drhub lab CA {:02x}{:02x}{:02x}{:02x}",
                tag[0], tag[1], tag[2], tag[3]
            ),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "drhub lab");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let not_after = params.not_after;
        let issuer = params.self_signed(&key).map_err(|source| CertError::Sign {
            subject: "the lab CA".into(),
            source,
        })?;
        Ok(Self {
            cert_pem: issuer.pem(),
            key_pem: key.serialize_pem(),
            issuer,
            key,
            not_after,
        })
    }

    /// Loads `<dir>/ca.pem` (its first certificate) and `<dir>/ca.key`.
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert_pem = read_to_string(&cert_path)?;
        let key_pem = read_to_string(&key_path)?;

        let der = match CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() {
            Some(Ok(der)) => der,
            Some(Err(source)) => {
                return Err(CertError::Pem {
                    path: cert_path,
                    source,
                })
            }
            None => return Err(CertError::NoCertificate { path: cert_path }),
        };
        let key = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => {
                return Err(CertError::NoPrivateKey { path: key_path })
            }
            Err(source) => {
                return Err(CertError::Pem {
                    path: key_path,
                    source,
                })
            }
        };
        let key = KeyPair::try_from(&key).map_err(|source| CertError::Key {
            path: key_path.clone(),
            source,
        })?;

        let malformed = |source| CertError::Malformed {
            path: cert_path.clone(),
            source,
        };
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| {
            malformed(match e {
                x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
                x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
            })
        })?;
        if !cert.is_ca() {
            return Err(CertError::NotACa { path: cert_path });
        }
        let not_after = cert.validity().not_after.to_datetime();
        if not_after <= OffsetDateTime::now_utc() {
            return Err(CertError::CaExpired {
                path: cert_path,
                not_after,
            });
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::CaKeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }

        let mut params = CertificateParams::default();
        params.distinguished_name =
            rcgen_name(cert.subject()).ok_or_else(|| CertError::CaSubject {
                path: cert_path.clone(),
            })?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = cert.validity().not_before.to_datetime();
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(cert.raw_serial()));
        params.key_identifier_method = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);
        let issuer = params.self_signed(&key).map_err(|source| CertError::Sign {
            subject: cert_path.display().to_string(),
            source,
        })?;
        // What we sign names `issuer`'s subject; it must be the trusted one, byte for byte.
        let same_subject = X509Certificate::from_der(issuer.der().as_ref())
            .is_ok_and(|(_, re)| re.subject().as_raw() == cert.subject().as_raw());
        if !same_subject {
            return Err(CertError::CaSubject { path: cert_path });
        }
        Ok(Self {
            issuer,
            key,
            cert_pem,
            key_pem,
            not_after,
        })
    }

    /// The CA certificate as PEM: the file SBCs trust (for a loaded CA, the file as read).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key as PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Writes `<dir>/ca.key` (0600) and `<dir>/ca.pem` (0644).
    pub fn write(&self, dir: &Path) -> Result<FilePair, CertError> {
        let files = FilePair {
            cert: dir.join(CA_CERT),
            key: dir.join(CA_KEY),
        };
        write_file(&files.key, &self.key_pem, KEY_MODE)?;
        write_file(&files.cert, &self.cert_pem, CERT_MODE)?;
        Ok(files)
    }

    /// Issues an RSA 2048 / SHA-256 leaf certificate with a fresh key. Names are checked
    /// to be DNS names (a wildcard only as the whole left-most label).
    pub fn issue(&self, spec: &LeafSpec) -> Result<IssuedCert, CertError> {
        self.issue_with_key(spec, &rsa_key()?)
    }

    /// A fresh RSA 2048 key, for [`LabCa::issue_with_key`].
    pub fn new_key() -> Result<KeyPair, CertError> {
        rsa_key()
    }

    /// [`LabCa::issue`] with a given key: a fleet of certificates (a thousand SBCs in a
    /// benchmark) without a key generation each.
    pub fn issue_with_key(&self, spec: &LeafSpec, key: &KeyPair) -> Result<IssuedCert, CertError> {
        let cn = spec
            .common_name
            .as_ref()
            .or(spec.names.first())
            .ok_or(CertError::NoName)?;
        let mut sans = Vec::with_capacity(spec.names.len() + spec.ips.len());
        for name in &spec.names {
            check_dns_name(name)?;
            let ia5 = Ia5String::try_from(name.as_str()).map_err(|_| CertError::InvalidName {
                name: name.clone(),
                reason: "not ASCII",
            })?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(spec.ips.iter().copied().map(SanType::IpAddress));

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str());
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = spec.usages.iter().map(|u| u.rcgen()).collect();
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;

        let cert = params
            .signed_by(key, &self.issuer, &self.key)
            .map_err(|source| CertError::Sign {
                subject: cn.clone(),
                source,
            })?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The file name stem of an SBC's certificate and key: the FQDN in lower case, a trailing
/// dot dropped, and a leading `*` written as `star` (`*.x.com` -> `star.x.com`), so no
/// shell ever globs a certificate file name.
pub fn sbc_file_stem(fqdn: &str) -> String {
    let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn).to_ascii_lowercase();
    match fqdn.strip_prefix('*') {
        Some(rest) => format!("star{rest}"),
        None => fqdn,
    }
}

/// Writes the lab PKI into `req.dir` and says what it wrote.
///
/// - `ca.pem`/`ca.key`: reused when both exist and `force` is false (checked as in
///   [`LabCa::load`]); generated otherwise. One of the two without the other is an error
///   unless `force`, so a lost key never silently replaces the CA that SBCs trust.
/// - `proxy.pem`/`proxy.key`: always reissued; CN is the first proxy name, SANs are every
///   proxy name plus `localhost` and IP 127.0.0.1.
/// - `<stem>.pem`/`<stem>.key` for each SBC FQDN ([`sbc_file_stem`]): always reissued;
///   CN and DNS SAN are the FQDN.
///
/// Every name is checked before anything is written.
pub fn write_lab_pki(req: &PkiRequest<'_>) -> Result<PkiReport, CertError> {
    if req.proxy_names.is_empty() {
        return Err(CertError::NoProxyName);
    }
    for name in req.proxy_names {
        check_dns_name(name)?;
    }
    let mut stems: Vec<(String, &String)> = Vec::with_capacity(req.sbc_fqdns.len());
    for fqdn in req.sbc_fqdns {
        check_dns_name(fqdn)?;
        if !fqdn.trim_end_matches('.').contains('.') {
            return Err(CertError::InvalidName {
                name: fqdn.clone(),
                reason: "an SBC name must be a fully qualified domain name",
            });
        }
        let stem = sbc_file_stem(fqdn);
        if let Some((_, other)) = stems.iter().find(|(s, _)| *s == stem) {
            return Err(CertError::SameFile {
                first: (*other).clone(),
                second: fqdn.clone(),
                path: req.dir.join(format!("{stem}.pem")),
            });
        }
        stems.push((stem, fqdn));
    }

    fs::create_dir_all(req.dir).map_err(|source| CertError::Io {
        path: req.dir.to_path_buf(),
        source,
    })?;

    let ca_files = FilePair {
        cert: req.dir.join(CA_CERT),
        key: req.dir.join(CA_KEY),
    };
    let (ca, ca_origin) = match (req.force, ca_files.cert.exists(), ca_files.key.exists()) {
        (false, true, true) => (LabCa::load(req.dir)?, CaOrigin::Reused),
        (false, true, false) => {
            return Err(CertError::CaIncomplete {
                present: ca_files.cert,
                missing: ca_files.key,
            })
        }
        (false, false, true) => {
            return Err(CertError::CaIncomplete {
                present: ca_files.key,
                missing: ca_files.cert,
            })
        }
        _ => {
            let ca = LabCa::generate()?;
            ca.write(req.dir)?;
            (ca, CaOrigin::Generated)
        }
    };

    let mut proxy_names: Vec<String> = Vec::with_capacity(req.proxy_names.len() + 1);
    for name in req
        .proxy_names
        .iter()
        .chain(std::iter::once(&"localhost".to_owned()))
    {
        if !proxy_names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            proxy_names.push(name.clone());
        }
    }
    let mut spec = LeafSpec::new(proxy_names.iter().cloned());
    spec.ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let proxy = ca.issue(&spec)?.write(req.dir, "proxy")?;

    let mut sbcs = Vec::with_capacity(stems.len());
    for (stem, fqdn) in stems {
        let files = ca
            .issue(&LeafSpec::new([fqdn.as_str()]))?
            .write(req.dir, &stem)?;
        sbcs.push(SbcFiles {
            fqdn: fqdn.clone(),
            files,
        });
    }

    Ok(PkiReport {
        ca: ca_files,
        ca_origin,
        ca_not_after: ca.not_after(),
        proxy,
        proxy_names,
        sbcs,
    })
}

/// A DNS name we are willing to put in a certificate: LDH labels of 1 to 63 characters,
/// at most 253 in all, one optional trailing dot, `*` only as the whole left-most label,
/// and not an IP address.
fn check_dns_name(name: &str) -> Result<(), CertError> {
    let invalid = |reason| {
        Err(CertError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.parse::<IpAddr>().is_ok() {
        return invalid("an IP address, not a DNS name");
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || bare.len() > 253 {
        return invalid("a DNS name has 1 to 253 characters");
    }
    for (i, label) in bare.split('.').enumerate() {
        if label == "*" && i == 0 {
            continue;
        }
        if label.contains('*') {
            return invalid("a wildcard must be the whole left-most label (`*.example.com`)");
        }
        if label.is_empty() || label.len() > 63 {
            return invalid("a DNS label has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return invalid("a DNS label holds letters, digits and inner hyphens only");
        }
    }
    if bare == "*" {
        return invalid("a wildcard needs a domain after it");
    }
    Ok(())
}

/// `name` as an rcgen distinguished name, or `None` when rcgen cannot express it
/// (repeated attribute types, string types other than UTF8/Printable/IA5). The caller
/// still compares the re-encoding with the original, which also catches multi-valued RDNs.
fn rcgen_name(name: &X509Name<'_>) -> Option<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    for attr in name.iter_attributes() {
        let arcs: Vec<u64> = attr.attr_type().iter()?.collect();
        let ty = match arcs.as_slice() {
            [2, 5, 4, 3] => DnType::CommonName,
            [2, 5, 4, 6] => DnType::CountryName,
            [2, 5, 4, 7] => DnType::LocalityName,
            [2, 5, 4, 8] => DnType::StateOrProvinceName,
            [2, 5, 4, 10] => DnType::OrganizationName,
            [2, 5, 4, 11] => DnType::OrganizationalUnitName,
            _ => DnType::CustomDnType(arcs),
        };
        if dn.get(&ty).is_some() {
            return None;
        }
        let text = std::str::from_utf8(attr.as_slice()).ok()?;
        let value = match attr.attr_value().tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(PrintableString::try_from(text).ok()?),
            Tag::Ia5String => DnValue::Ia5String(Ia5String::try_from(text).ok()?),
            _ => return None,
        };
        dn.push(ty, value);
    }
    Some(dn)
}

fn rsa_key() -> Result<KeyPair, CertError> {
    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
        .map_err(|source| CertError::KeyGen { source })
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CertError> {
    let mut buf = [0u8; N];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| CertError::Random)?;
    Ok(buf)
}

/// 128 random bits, positive and without a leading zero byte (RFC 5280 §4.1.2.2).
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = random_bytes::<16>()?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn read_to_string(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents` to `path` with `mode`, through a temporary file in the same directory
/// and a rename, so readers see the old file or the new one, never a mix, and a replaced
/// key file never keeps a looser mode.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` only applies when the file is created; a stale temporary keeps its own.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::public_key::PublicKey;

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("drhub-certs-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn parse_pem_cert(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("test PEM holds a certificate")
            .as_ref()
            .to_vec()
    }

    fn modulus_bits(modulus: &[u8]) -> usize {
        let m: Vec<u8> = modulus.iter().copied().skip_while(|b| *b == 0).collect();
        m.first()
            .map_or(0, |b| m.len() * 8 - b.leading_zeros() as usize)
    }

    #[test]
    fn sbc_file_stem_table() {
        let cases = [
            ("sbc1.adatum.biz", "sbc1.adatum.biz"),
            ("*.adatum.biz", "star.adatum.biz"),
            ("SBC1.Adatum.biz.", "sbc1.adatum.biz"),
            ("*.X.com", "star.x.com"),
        ];
        for (fqdn, want) in cases {
            assert_eq!(sbc_file_stem(fqdn), want, "{fqdn}");
        }
    }

    #[test]
    fn check_dns_name_table() {
        let cases = [
            ("sbc1.adatum.biz", true),
            ("sbc1.adatum.biz.", true),
            ("*.adatum.biz", true),
            ("localhost", true),
            ("a-b.c", true),
            ("f*.adatum.biz", false),
            ("a.*.biz", false),
            ("*", false),
            ("", false),
            ("a..b", false),
            ("-a.b", false),
            ("a_b.c", false),
            ("a/b.c", false),
            ("10.0.0.1", false),
            ("::1", false),
            ("täst.de", false),
        ];
        for (name, ok) in cases {
            assert_eq!(check_dns_name(name).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn lab_pki_is_rsa_2048_sha256_with_both_usages_and_private_keys() {
        let dir = Scratch::new("layout");
        let proxy = strings(&["sip.pstnhub.microsoft.com", "sip2.pstnhub.microsoft.com"]);
        let sbcs = strings(&["sbc1.adatum.biz", "*.contoso.com"]);
        let report = write_lab_pki(&PkiRequest {
            dir: &dir.0,
            proxy_names: &proxy,
            sbc_fqdns: &sbcs,
            force: false,
        })
        .expect("lab PKI is written");

        assert_eq!(report.ca_origin, CaOrigin::Generated);
        assert_eq!(
            report.proxy_names,
            strings(&[
                "sip.pstnhub.microsoft.com",
                "sip2.pstnhub.microsoft.com",
                "localhost"
            ])
        );
        assert_eq!(
            report.sbcs[1].files.cert,
            dir.0.join("star.contoso.com.pem")
        );
        assert_eq!(report.sbcs[1].files.key, dir.0.join("star.contoso.com.key"));

        let pairs = [
            &report.ca,
            &report.proxy,
            &report.sbcs[0].files,
            &report.sbcs[1].files,
        ];
        for pair in pairs {
            let key_mode = fs::metadata(&pair.key)
                .expect("key written")
                .permissions()
                .mode();
            assert_eq!(key_mode & 0o777, 0o600, "{}", pair.key.display());
            let cert_mode = fs::metadata(&pair.cert)
                .expect("cert written")
                .permissions()
                .mode();
            assert_eq!(cert_mode & 0o777, 0o644, "{}", pair.cert.display());

            let pem = fs::read_to_string(&pair.cert).expect("cert readable");
            let der = parse_pem_cert(&pem);
            let (_, cert) = X509Certificate::from_der(&der).expect("valid X.509");
            match cert.public_key().parsed().expect("known key type") {
                PublicKey::RSA(rsa) => assert_eq!(modulus_bits(rsa.modulus), 2048),
                other => panic!("{}: not RSA: {other:?}", pair.cert.display()),
            }
            assert_eq!(
                cert.signature_algorithm.algorithm,
                x509_parser::oid_registry::OID_PKCS1_SHA256WITHRSA
            );
            let key_pem = fs::read_to_string(&pair.key).expect("key readable");
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
            let key = KeyPair::try_from(&key).expect("key loads");
            assert_eq!(key.algorithm(), &rcgen::PKCS_RSA_SHA256);
            assert_eq!(
                key.public_key_raw(),
                cert.public_key().subject_public_key.data.as_ref()
            );
        }

        let ids = crate::transport::tls::describe_pem_file(&report.proxy.cert).expect("proxy");
        let proxy_id = &ids[0];
        assert_eq!(
            proxy_id.subject_cn.as_deref(),
            Some("sip.pstnhub.microsoft.com")
        );
        assert_eq!(proxy_id.dns_names, report.proxy_names);
        assert_eq!(proxy_id.ip_addresses, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let days = (proxy_id.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((729..=730).contains(&days), "{days}");

        let der = parse_pem_cert(&fs::read_to_string(&report.sbcs[0].files.cert).expect("sbc"));
        let (_, cert) = X509Certificate::from_der(&der).expect("valid X.509");
        let eku = cert
            .extended_key_usage()
            .expect("EKU parses")
            .expect("EKU present")
            .value;
        assert!(eku.server_auth && eku.client_auth);
        let id = crate::transport::tls::PeerIdentity::from_der(&CertificateDer::from(der.clone()))
            .expect("identity");
        assert_eq!(id.subject_cn.as_deref(), Some("sbc1.adatum.biz"));
        assert_eq!(id.dns_names, ["sbc1.adatum.biz"]);
    }

    #[test]
    fn ca_is_reused_without_force_and_replaced_with_force() {
        let dir = Scratch::new("reuse");
        let proxy = strings(&["sip.pstnhub.microsoft.com"]);
        let sbcs = strings(&["sbc1.adatum.biz"]);
        let mut req = PkiRequest {
            dir: &dir.0,
            proxy_names: &proxy,
            sbc_fqdns: &sbcs,
            force: false,
        };
        let read = |p: &Path| fs::read(p).expect("file written");
        let first = write_lab_pki(&req).expect("first run");
        let (ca1, proxy1) = (read(&first.ca.cert), read(&first.proxy.cert));

        let second = write_lab_pki(&req).expect("second run");
        assert_eq!(second.ca_origin, CaOrigin::Reused);
        assert_eq!(read(&second.ca.cert), ca1, "CA untouched without force");
        assert_ne!(read(&second.proxy.cert), proxy1, "proxy reissued");
        // The reissued proxy certificate chains to the reused CA, byte for byte.
        let ca_der = parse_pem_cert(&String::from_utf8_lossy(&ca1));
        let proxy_der = parse_pem_cert(&String::from_utf8_lossy(&read(&second.proxy.cert)));
        let (_, ca) = X509Certificate::from_der(&ca_der).expect("CA parses");
        let (_, leaf) = X509Certificate::from_der(&proxy_der).expect("leaf parses");
        assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
        let ca_cert = CertificateDer::from(ca_der.as_slice());
        let anchor = webpki::anchor_from_trusted_cert(&ca_cert).expect("CA is an anchor");
        let now = rustls_pki_types::UnixTime::now();
        let leaf_der = CertificateDer::from(proxy_der.as_slice());
        webpki::EndEntityCert::try_from(&leaf_der)
            .expect("leaf parses for webpki")
            .verify_for_usage(
                &[webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256],
                &[anchor],
                &[],
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .expect("signed by the reused CA");

        req.force = true;
        let third = write_lab_pki(&req).expect("forced run");
        assert_eq!(third.ca_origin, CaOrigin::Generated);
        assert_ne!(read(&third.ca.cert), ca1, "CA replaced with force");
    }

    #[test]
    fn half_a_ca_is_an_error_naming_the_missing_file() {
        let dir = Scratch::new("half");
        let proxy = strings(&["sip.pstnhub.microsoft.com"]);
        let req = PkiRequest {
            dir: &dir.0,
            proxy_names: &proxy,
            sbc_fqdns: &[],
            force: false,
        };
        let report = write_lab_pki(&req).expect("first run");
        fs::remove_file(&report.ca.key).expect("key removable");
        let err = write_lab_pki(&req).expect_err("key missing");
        assert!(
            err.to_string()
                .starts_with(&format!("{}: missing", report.ca.key.display())),
            "{err}"
        );
    }

    #[test]
    fn loaded_ca_rejects_a_foreign_key() {
        let dir = Scratch::new("mismatch");
        fs::create_dir_all(&dir.0).expect("dir");
        let a = LabCa::generate().expect("CA a");
        let b = LabCa::generate().expect("CA b");
        a.write(&dir.0).expect("written");
        write_file(&dir.0.join(CA_KEY), b.key_pem(), KEY_MODE).expect("written");
        let err = LabCa::load(&dir.0).expect_err("foreign key");
        assert!(matches!(err, CertError::CaKeyMismatch { .. }), "{err}");
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = Scratch::new("names");
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["sip.pstnhub.microsoft.com"], &["10.1.1.1"]),
            (&["sip.pstnhub.microsoft.com"], &["sbc1"]),
            (
                &["sip.pstnhub.microsoft.com"],
                &["sbc1.adatum.biz", "SBC1.adatum.biz"],
            ),
            (&["bad name"], &[]),
        ];
        for (proxy, sbcs) in cases {
            let (proxy, sbcs) = (strings(proxy), strings(sbcs));
            let req = PkiRequest {
                dir: &dir.0,
                proxy_names: &proxy,
                sbc_fqdns: &sbcs,
                force: false,
            };
            assert!(write_lab_pki(&req).is_err(), "{proxy:?} {sbcs:?}");
            assert!(!dir.0.exists(), "nothing written for {proxy:?} {sbcs:?}");
        }
    }
}
