//! DR-TLS-1 and DR-TLS-4 over real loopback sockets: who may connect to the SBC listener,
//! which versions and suites are negotiated, and what identity the proxy sees.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use drhub::certs::{write_lab_pki, LabCa, LeafSpec, PkiReport, PkiRequest, Usage};
use drhub::transport::tls::{
    client_config, load_certs, provider, server_config, PeerIdentity, TlsError, TlsFiles,
    TlsVersion,
};
use rustls::crypto::aws_lc_rs::{self, cipher_suite as cs};
use rustls::pki_types::ServerName;
use rustls::{CertificateError, CipherSuite, ProtocolVersion, SupportedCipherSuite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const PROXY: &str = "sip.pstnhub.microsoft.com";
const V12: &[TlsVersion] = &[TlsVersion::V1_2];
const V13: &[TlsVersion] = &[TlsVersion::V1_3];
const BOTH: &[TlsVersion] = &[TlsVersion::V1_2, TlsVersion::V1_3];

/// One lab PKI per test binary: RSA key generation is the slow part.
struct Lab {
    dir: PathBuf,
    report: PkiReport,
    ca: LabCa,
}

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tls_handshake");
        let _ = std::fs::remove_dir_all(&dir);
        let proxy = vec![PROXY.to_owned(), "sip2.pstnhub.microsoft.com".to_owned()];
        let sbcs = vec!["sbc1.adatum.biz".to_owned(), "*.contoso.com".to_owned()];
        let report = write_lab_pki(&PkiRequest {
            dir: &dir,
            proxy_names: &proxy,
            sbc_fqdns: &sbcs,
            force: true,
        })
        .expect("lab PKI is written");
        let ca = LabCa::load(&dir).expect("lab CA loads");
        Lab { dir, report, ca }
    })
}

impl Lab {
    fn proxy_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.report.proxy.cert.clone(),
            key: self.report.proxy.key.clone(),
            client_ca: self.report.ca.cert.clone(),
        }
    }

    fn sbc_files(&self, index: usize) -> TlsFiles {
        TlsFiles {
            cert: self.report.sbcs[index].files.cert.clone(),
            key: self.report.sbcs[index].files.key.clone(),
            client_ca: self.report.ca.cert.clone(),
        }
    }

    /// Issues `spec` with `ca`, writes it under `stem`, and returns SBC-side files that
    /// trust the lab CA.
    fn issued(&self, ca: &LabCa, spec: &LeafSpec, stem: &str) -> TlsFiles {
        let pair = ca
            .issue(spec)
            .expect("test certificate is issued")
            .write(&self.dir, stem)
            .expect("test certificate is written");
        TlsFiles {
            cert: pair.cert,
            key: pair.key,
            client_ca: self.report.ca.cert.clone(),
        }
    }

    fn server(&self, versions: &[TlsVersion]) -> Arc<rustls::ServerConfig> {
        server_config(&self.proxy_files(), versions).expect("server config")
    }
}

/// A client config outside our policy: any suites, optionally no certificate.
fn foreign_client(
    suites: &[SupportedCipherSuite],
    versions: &[&'static rustls::SupportedProtocolVersion],
    cert: Option<&TlsFiles>,
) -> Arc<rustls::ClientConfig> {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites.to_vec(),
        ..aws_lc_rs::default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    for der in load_certs(&lab().report.ca.cert).expect("CA bundle") {
        roots.add(der).expect("CA is an anchor");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions and suites fit")
        .with_root_certificates(roots);
    let config = match cert {
        Some(files) => builder
            .with_client_auth_cert(
                load_certs(&files.cert).expect("cert"),
                drhub::transport::tls::load_key(&files.key).expect("key"),
            )
            .expect("cert and key match"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// What the server side saw of a completed handshake.
#[derive(Debug)]
struct Accepted {
    identity: PeerIdentity,
    version: ProtocolVersion,
    suite: CipherSuite,
}

#[derive(Debug)]
struct Outcome {
    server: io::Result<Accepted>,
    /// Ok when the client completed its handshake *and* read the server's greeting, which
    /// is only sent once the server has accepted the client certificate (in TLS 1.3 the
    /// client finishes its side before the server has judged its certificate).
    client: io::Result<()>,
}

impl Outcome {
    fn accepted(self) -> Accepted {
        self.client.expect("client side succeeds");
        self.server.expect("server side succeeds")
    }

    /// Asserts both sides failed and returns the server's rustls error.
    fn refused(self) -> rustls::Error {
        assert!(
            self.client.is_err(),
            "client must not get through: {self:?}"
        );
        let err = self.server.expect_err("server must refuse");
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .cloned()
            .unwrap_or_else(|| panic!("not a TLS error: {err}"))
    }
}

/// One connection over loopback TCP: the proxy's acceptor against `client`, which dials
/// `server_name`.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        let (_, conn) = tls.get_ref();
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| io::Error::other("no client certificate after handshake"))?;
        let accepted = Accepted {
            identity: PeerIdentity::from_der(leaf).map_err(io::Error::other)?,
            version: conn
                .protocol_version()
                .ok_or_else(|| io::Error::other("no version"))?,
            suite: conn
                .negotiated_cipher_suite()
                .ok_or_else(|| io::Error::other("no suite"))?
                .suite(),
        };
        tls.write_all(b"ok\n").await?;
        tls.flush().await?;
        Ok::<_, io::Error>(accepted)
    });
    let name = ServerName::try_from(server_name.to_owned()).expect("valid server name");
    let client = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        let mut greeting = [0u8; 3];
        tls.read_exact(&mut greeting).await?;
        if &greeting != b"ok\n" {
            return Err(io::Error::other("unexpected greeting"));
        }
        Ok(())
    };
    let client = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("client timed out")));
    let server = tokio::time::timeout(Duration::from_secs(10), server_task)
        .await
        .unwrap_or_else(|_| Ok(Err(io::Error::other("server timed out"))))
        .unwrap_or_else(|e| Err(io::Error::other(e)));
    Outcome { server, client }
}

fn allowed(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
    )
}

#[tokio::test]
async fn dr_tls_1_lab_sbc_certificate_is_accepted_and_identified() {
    let lab = lab();
    let client = client_config(&lab.sbc_files(0), BOTH).expect("client config");
    let got = handshake(lab.server(V12), client, PROXY).await.accepted();
    assert_eq!(got.version, ProtocolVersion::TLSv1_2);
    assert!(allowed(got.suite), "{:?}", got.suite);
    // DR-VAL-3 inputs
    assert_eq!(got.identity.subject_cn.as_deref(), Some("sbc1.adatum.biz"));
    assert!(got.identity.matches("sbc1.adatum.biz"));
    assert!(got.identity.matches("SBC1.ADATUM.BIZ."));
    assert!(!got.identity.matches("sbc2.adatum.biz"));
    assert!(!got
        .identity
        .expires_within(time::OffsetDateTime::now_utc(), 30));
}

#[tokio::test]
async fn dr_val_3_wildcard_sbc_certificate_matches_one_label() {
    let lab = lab();
    assert!(lab.report.sbcs[1]
        .files
        .cert
        .ends_with("star.contoso.com.pem"));
    let client = client_config(&lab.sbc_files(1), V12).expect("client config");
    let got = handshake(lab.server(V12), client, PROXY).await.accepted();
    assert!(got.identity.matches("sbc7.contoso.com"));
    assert!(!got.identity.matches("a.sbc7.contoso.com"));
    assert!(!got.identity.matches("contoso.com"));
}

/// DR-TLS-1 (README, `[[listener]]`): a client certificate's extended key usage must list
/// clientAuth or serverAuth; one without the extension is refused like one with neither.
#[tokio::test]
async fn dr_tls_1_extended_key_usage_policy() {
    let lab = lab();
    let cases: &[(&str, &[Usage], bool)] = &[
        ("eku-server-only", &[Usage::ServerAuth], true),
        ("eku-client-only", &[Usage::ClientAuth], true),
        ("eku-none", &[], false),
        ("eku-code-signing", &[Usage::CodeSigning], false),
    ];
    for (stem, usages, ok) in cases {
        let spec = LeafSpec::new(["sbc2.adatum.biz"]).usages(usages);
        let files = lab.issued(&lab.ca, &spec, stem);
        for versions in [V12, BOTH] {
            let client = client_config(&files, versions).expect("client config");
            let outcome = handshake(lab.server(BOTH), client, PROXY).await;
            if *ok {
                assert!(
                    outcome.accepted().identity.matches("sbc2.adatum.biz"),
                    "{stem}"
                );
            } else {
                let err = outcome.refused();
                assert_eq!(
                    err,
                    rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose),
                    "{stem}"
                );
            }
        }
    }
}

#[tokio::test]
async fn dr_tls_1_handshake_without_client_certificate_fails() {
    let lab = lab();
    for versions in [V12, BOTH] {
        let client = foreign_client(
            aws_lc_rs::DEFAULT_CIPHER_SUITES,
            &[&rustls::version::TLS12, &rustls::version::TLS13],
            None,
        );
        let err = handshake(lab.server(versions), client, PROXY)
            .await
            .refused();
        assert_eq!(err, rustls::Error::NoCertificatesPresented, "{versions:?}");
    }
}

#[tokio::test]
async fn dr_tls_1_certificate_from_an_untrusted_ca_fails() {
    let lab = lab();
    let stranger = LabCa::generate().expect("second CA");
    let files = lab.issued(&stranger, &LeafSpec::new(["sbc1.adatum.biz"]), "untrusted");
    for versions in [V12, BOTH] {
        let client = client_config(&files, versions).expect("client config");
        let err = handshake(lab.server(versions), client, PROXY)
            .await
            .refused();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }
}

#[tokio::test]
async fn dr_tls_1_expired_certificate_fails() {
    let lab = lab();
    let files = lab.issued(
        &lab.ca,
        &LeafSpec::new(["sbc1.adatum.biz"]).expired(),
        "expired",
    );
    for versions in [V12, BOTH] {
        let client = client_config(&files, versions).expect("client config");
        let err = handshake(lab.server(versions), client, PROXY)
            .await
            .refused();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn dr_tls_1_tls13_only_when_enabled() {
    let lab = lab();
    let sbc = lab.sbc_files(0);

    // 1.2 only: a 1.3-only client is refused, a 1.2+1.3 client lands on 1.2.
    let client = client_config(&sbc, V13).expect("client config");
    handshake(lab.server(V12), client, PROXY).await.refused();
    let client = client_config(&sbc, BOTH).expect("client config");
    let got = handshake(lab.server(V12), client, PROXY).await.accepted();
    assert_eq!(got.version, ProtocolVersion::TLSv1_2);

    // 1.3 enabled: negotiated when offered, 1.2 still served.
    let client = client_config(&sbc, V13).expect("client config");
    let got = handshake(lab.server(BOTH), client, PROXY).await.accepted();
    assert_eq!(got.version, ProtocolVersion::TLSv1_3);
    assert!(allowed(got.suite), "{:?}", got.suite);
    let client = client_config(&sbc, V12).expect("client config");
    let got = handshake(lab.server(BOTH), client, PROXY).await.accepted();
    assert_eq!(got.version, ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn dr_tls_1_only_configured_suites_negotiate() {
    let lab = lab();
    let sbc = lab.sbc_files(0);
    let tls12 = &rustls::version::TLS12;
    let tls13 = &rustls::version::TLS13;
    let cases = [
        // A client preferring CHACHA20 still gets AES-GCM.
        (
            vec![
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ],
            tls12,
            Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ),
        (
            vec![cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384],
            tls12,
            Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        ),
        (
            vec![
                cs::TLS13_CHACHA20_POLY1305_SHA256,
                cs::TLS13_AES_128_GCM_SHA256,
            ],
            tls13,
            Some(CipherSuite::TLS13_AES_128_GCM_SHA256),
        ),
        // Suites we never offer.
        (
            vec![cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256],
            tls12,
            None,
        ),
        (
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
            tls12,
            None,
        ),
        (vec![cs::TLS13_CHACHA20_POLY1305_SHA256], tls13, None),
    ];
    for (suites, version, want) in cases {
        let client = foreign_client(&suites, &[version], Some(&sbc));
        let outcome = handshake(lab.server(BOTH), client, PROXY).await;
        match want {
            Some(want) => assert_eq!(outcome.accepted().suite, want),
            None => {
                let err = outcome.refused();
                assert!(
                    matches!(err, rustls::Error::PeerIncompatible(_)),
                    "{suites:?}: {err:?}"
                );
            }
        }
    }
    // And what our own provider offers by default.
    let offered: Vec<_> = provider(BOTH)
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect();
    assert!(offered.iter().all(|s| allowed(*s)), "{offered:?}");
}

#[tokio::test]
async fn dr_tls_4_proxy_connects_to_an_sbc_and_checks_its_name() {
    let lab = lab();
    // The SBC side as a server, trusting the lab CA for the proxy's client certificate.
    let sbc_server = server_config(&lab.sbc_files(0), V12).expect("SBC server config");
    let proxy_client = client_config(&lab.proxy_files(), BOTH).expect("proxy client config");

    let got = handshake(sbc_server.clone(), proxy_client.clone(), "sbc1.adatum.biz")
        .await
        .accepted();
    assert!(got.identity.matches(PROXY));
    assert!(got.identity.matches("localhost"));

    let outcome = handshake(sbc_server, proxy_client, "sbc2.adatum.biz").await;
    let err = outcome
        .client
        .expect_err("wrong SBC name must fail on the proxy side");
    let err = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    assert!(
        matches!(
            err,
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err:?}"
    );
}

/// The proxy's own connections (DR-TLS-4) hold the SBC's server certificate to the same
/// extended key usage rule as its client certificate (DR-TLS-1): serverAuth or clientAuth,
/// and refused without either, no EKU extension included.
#[tokio::test]
async fn dr_tls_4_sbc_server_certificate_extended_key_usage_policy() {
    let lab = lab();
    let proxy_client = client_config(&lab.proxy_files(), BOTH).expect("proxy client config");
    let cases: &[(&str, &[Usage], bool)] = &[
        ("sbc-eku-server-only", &[Usage::ServerAuth], true),
        ("sbc-eku-client-only", &[Usage::ClientAuth], true),
        ("sbc-eku-none", &[], false),
        ("sbc-eku-code-signing", &[Usage::CodeSigning], false),
    ];
    for (stem, usages, ok) in cases {
        let spec = LeafSpec::new(["sbc2.adatum.biz"]).usages(usages);
        let files = lab.issued(&lab.ca, &spec, stem);
        for versions in [V12, BOTH] {
            let sbc_server = server_config(&files, versions).expect("SBC server config");
            let outcome = handshake(sbc_server, proxy_client.clone(), "sbc2.adatum.biz").await;
            if *ok {
                assert!(outcome.accepted().identity.matches(PROXY), "{stem}");
                continue;
            }
            let err = outcome
                .client
                .expect_err("the proxy must refuse the SBC's certificate");
            let err = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .cloned();
            assert_eq!(
                err,
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::InvalidPurpose
                )),
                "{stem} {versions:?}"
            );
        }
    }
}

#[test]
fn config_errors_name_the_files() {
    let lab = lab();
    // A key that does not belong to the certificate.
    let files = TlsFiles {
        key: lab.sbc_files(0).key,
        ..lab.proxy_files()
    };
    let err = server_config(&files, V12).expect_err("mismatched key");
    assert!(matches!(err, TlsError::CertKey { .. }), "{err}");
    assert!(err.to_string().contains("proxy.pem"), "{err}");

    // ECDSA key with TLS 1.2: no ECDHE-RSA suite could ever be used.
    let ecdsa = rcgen::generate_simple_self_signed(vec![PROXY.to_owned()]).expect("ECDSA cert");
    let cert = lab.dir.join("ecdsa.pem");
    let key = lab.dir.join("ecdsa.key");
    std::fs::write(&cert, ecdsa.cert.pem()).expect("write");
    std::fs::write(&key, ecdsa.key_pair.serialize_pem()).expect("write");
    let files = TlsFiles {
        cert,
        key: key.clone(),
        client_ca: lab.report.ca.cert.clone(),
    };
    let err = server_config(&files, V12).expect_err("ECDSA with TLS 1.2");
    assert!(matches!(err, TlsError::NotRsa { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&key.display().to_string()),
        "{err}"
    );
    server_config(&files, V13).expect("ECDSA is fine for TLS 1.3 only");

    // A CA bundle without certificates.
    let files = TlsFiles {
        client_ca: lab.report.proxy.key.clone(),
        ..lab.proxy_files()
    };
    let err = server_config(&files, V12).expect_err("no CA");
    assert_eq!(
        err.to_string(),
        format!("{}: no certificate", lab.report.proxy.key.display())
    );
    assert!(matches!(
        server_config(&lab.proxy_files(), &[]),
        Err(TlsError::NoVersions)
    ));

    let ids = drhub::transport::tls::describe_pem_file(&lab.report.ca.cert).expect("CA");
    assert_eq!(ids.len(), 1);
    assert!(ids[0].to_string().contains("drhub lab CA"), "{}", ids[0]);
}
