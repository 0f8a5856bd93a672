//! `drhub check`: everything a configuration means, in a form a voice engineer can read
//! before pointing an SBC at it, and every problem with the files it names.

use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::certs::sbc_file_stem;
use crate::config::{Config, Profile, Tenant, GLOBAL_POLICY};
use crate::sip::Transport;
use crate::transport::tls::{self, PeerIdentity, TlsFiles};

/// The printable summary and the problems found (each `path: what is wrong`).
#[derive(Debug, Default)]
pub struct Report {
    pub text: String,
    pub problems: Vec<String>,
}

/// Certificates expiring sooner than this are flagged (DR-CONF names 30 days).
const EXPIRY_WARNING_DAYS: u32 = 30;

/// Summarizes a validated configuration and checks the certificate files it names.
pub fn summarize(config: &Config) -> Report {
    let mut r = Report::default();
    let now = OffsetDateTime::now_utc();
    let t = &mut r.text;
    let fqdns: Vec<String> = config.proxy.fqdns.iter().map(ToString::to_string).collect();
    let _ = writeln!(t, "proxy: {}", fqdns.join(", "));
    let _ = writeln!(
        t,
        "  profile {}, ms-diagnostics {}, Server \"{}\"",
        match config.proxy.profile {
            Profile::Faithful => "faithful",
            Profile::Rfc3261 => "rfc3261",
        },
        if config.proxy.ms_diagnostics {
            "on"
        } else {
            "off"
        },
        config.proxy.server
    );
    let _ = writeln!(t, "listeners:");
    for (i, l) in config.listeners.iter().enumerate() {
        let _ = writeln!(
            t,
            "  {:<10} {} {:<21} as {}{}",
            l.name,
            l.transport,
            l.address,
            l.fqdn,
            if l.enabled { "" } else { "  (disabled)" }
        );
        if l.transport == Transport::Tcp && l.enabled {
            let _ = writeln!(
                t,
                "             plain TCP: serves only trunks with allow_insecure = true"
            );
        }
        let Some(tls_cfg) = &l.tls else { continue };
        let versions: Vec<&str> = tls_cfg
            .versions
            .iter()
            .map(|v| match v {
                tls::TlsVersion::V1_2 => "1.2",
                tls::TlsVersion::V1_3 => "1.3",
            })
            .collect();
        let _ = writeln!(
            t,
            "             TLS {}, client certificate required",
            versions.join(" and ")
        );
        let files = [
            ("certificate", &tls_cfg.certificate),
            ("key", &tls_cfg.key),
            ("client_ca", &tls_cfg.client_ca),
        ];
        let mut all_present = true;
        for (field, path) in files {
            if !path.exists() {
                all_present = false;
                if config.certs.auto_create && path.starts_with(&config.certs.dir) {
                    let _ = writeln!(
                        t,
                        "             {field} {}: missing; `drhub run` creates the lab PKI",
                        path.display()
                    );
                } else if l.enabled {
                    r.problems.push(format!(
                        "listener[{i}].{field}: {}: file not found",
                        path.display()
                    ));
                }
            }
        }
        if !all_present {
            continue;
        }
        let files = TlsFiles {
            cert: tls_cfg.certificate.clone(),
            key: tls_cfg.key.clone(),
            client_ca: tls_cfg.client_ca.clone(),
        };
        if let Err(e) = tls::server_config(&files, &tls_cfg.versions) {
            r.problems.push(format!("listener[{i}]: {e}"));
            continue;
        }
        for (field, path) in [
            ("certificate", &tls_cfg.certificate),
            ("client_ca", &tls_cfg.client_ca),
        ] {
            match tls::describe_pem_file(path) {
                Ok(certs) => {
                    if let Some(first) = certs.first() {
                        let _ = writeln!(
                            t,
                            "             {field} {}: {}",
                            path.display(),
                            describe(first, now)
                        );
                        if first.not_after < now {
                            r.problems.push(format!(
                                "listener[{i}].{field}: {}: expired {}",
                                path.display(),
                                date(first.not_after)
                            ));
                        }
                    }
                }
                Err(e) => r.problems.push(format!("listener[{i}].{field}: {e}")),
            }
        }
        if let Ok(certs) = tls::describe_pem_file(&tls_cfg.certificate) {
            if let Some(leaf) = certs.first() {
                for f in &config.proxy.fqdns {
                    if l.fqdn == *f && !leaf.matches(f.as_str()) {
                        r.problems.push(format!(
                            "listener[{i}].certificate: {} does not name {f}; SBCs verifying the proxy will refuse it",
                            tls_cfg.certificate.display()
                        ));
                    }
                }
            }
        }
    }

    let t = &mut r.text;
    let c = &config.calls;
    let _ = writeln!(
        t,
        "calls: session timer {}s, Min-SE {}s{} (non-bypass trunks, DR-ST-1); an orphaned call waits {}s for its SBC",
        c.session_expires,
        c.min_se,
        if c.min_se < 90 {
            " (below RFC 4028's 90 s: for lab tests only)"
        } else {
            ""
        },
        c.orphan_timeout.as_secs_f64()
    );
    let h = &config.health;
    let _ = writeln!(
        t,
        "SBC health: the proxy's OPTIONS every {}s; active if heard from within {}s, inactive after {}s (DR-OPT-3)",
        h.options_interval.as_secs_f64(),
        h.active_window.as_secs_f64(),
        h.inactive_after.as_secs_f64()
    );
    let e = &config.endpoints;
    match e.address {
        None => {
            let _ = writeln!(t, "endpoints: off");
        }
        Some(address) => {
            let throttle = if e.auth_failures == 0 {
                "digest throttle off".to_owned()
            } else {
                format!(
                    "{} failed digests within {}s lock an address or user for {}s",
                    e.auth_failures,
                    e.auth_window.as_secs_f64(),
                    e.auth_lockout.as_secs_f64()
                )
            };
            let _ = writeln!(
                t,
                "endpoints: REGISTER on {address} (UDP, TCP), {}s to {}s; {throttle}",
                e.min_expires, e.max_expires
            );
        }
    }
    let _ = match config.api.address {
        None => writeln!(t, "control API: off"),
        Some(a) => writeln!(
            t,
            "control API: http://{a}/api/status ({})",
            if config.api.token.is_some() {
                "bearer token required"
            } else {
                "no token"
            }
        ),
    };
    let _ = writeln!(t, "tenants:");
    for tenant in &config.tenants {
        let domains: Vec<&str> = tenant.domains.iter().map(|d| d.as_str()).collect();
        let _ = writeln!(
            t,
            "  {} ({}): domains {}",
            tenant.id,
            tenant.name,
            domains.join(", ")
        );
        if !tenant.blocked_callers.is_empty() {
            let b: Vec<String> = tenant
                .blocked_callers
                .iter()
                .map(ToString::to_string)
                .collect();
            let _ = writeln!(t, "    blocked callers: {}", b.join(", "));
        }
        for k in &tenant.trunks {
            let mut flags = vec![if k.enabled { "enabled" } else { "disabled" }];
            if k.send_options {
                flags.push("send_options");
            }
            if k.media_bypass {
                flags.push("media_bypass");
            }
            if k.forward_call_history {
                flags.push("forward_call_history");
            }
            if k.forward_pai {
                flags.push("forward_pai");
            }
            if k.allow_insecure {
                flags.push("allow_insecure");
            }
            let _ = writeln!(t, "    trunk {}:{} {}", k.fqdn, k.port, flags.join(" "));
            if let Some(a) = k.address {
                let _ = writeln!(t, "      the proxy connects to {a} (TLS name {})", k.fqdn);
            }
            let codes: Vec<String> = k
                .failover_response_codes
                .iter()
                .map(ToString::to_string)
                .collect();
            let _ = writeln!(
                t,
                "      failover on {} or after {}s{}",
                codes.join(","),
                k.failover_time.as_secs_f64(),
                k.max_concurrent_sessions
                    .map(|m| format!(", alert at {m} sessions"))
                    .unwrap_or_default()
            );
            let cert = config
                .certs
                .dir
                .join(format!("{}.pem", sbc_file_stem(k.fqdn.as_str())));
            if let Ok(certs) = tls::describe_pem_file(&cert) {
                if let Some(leaf) = certs.first() {
                    let _ = writeln!(
                        t,
                        "      lab certificate {}: {}",
                        cert.display(),
                        describe(leaf, now)
                    );
                }
            }
        }
        let routing = tenant.voice_routing.is_configured();
        for u in &tenant.users {
            let line = u
                .line_uri
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "no number".to_owned());
            let policy = match (&u.voice_routing_policy, routing) {
                (Some(p), _) => format!(", voice routing policy \"{p}\""),
                (None, true) => format!(", voice routing policy {GLOBAL_POLICY} (none assigned)"),
                (None, false) => String::new(),
            };
            let _ = writeln!(
                t,
                "    user {} <{}> {}{policy}",
                u.display_name, u.sip_address, line
            );
            let f = &u.forwarding;
            let mut rules = Vec::new();
            if let Some(x) = &f.immediate {
                rules.push(format!("immediately to {x} (cause 302)"));
            }
            if let Some(x) = &f.busy {
                rules.push(format!("when busy to {x} (cause 486)"));
            }
            if let Some(x) = &f.no_answer {
                rules.push(format!(
                    "unanswered after {}s to {x} (cause 408)",
                    f.no_answer_after.as_secs_f64()
                ));
            }
            if let Some(x) = &f.unavailable {
                rules.push(format!("when unavailable to {x} (cause 480)"));
            }
            if !rules.is_empty() {
                let _ = writeln!(t, "      forwards {} (DR-FWD-1)", rules.join("; "));
            }
            if let Some(x) = &f.also_ring {
                let _ = writeln!(t, "      also rings {x} (simultaneous ring, DR-FWD-1)");
            }
            for c in &u.calls {
                let repeat = match (c.every, c.count) {
                    (Some(e), Some(n)) => format!(", every {}s, {n} calls", e.as_secs_f64()),
                    (Some(e), None) => format!(", every {}s until stopped", e.as_secs_f64()),
                    (None, _) => String::new(),
                };
                let _ = writeln!(
                    t,
                    "      calls {} after {}s{repeat}; rings up to {}s, talks {}s{}",
                    c.to,
                    c.after.as_secs_f64(),
                    c.ring.as_secs_f64(),
                    c.talk.as_secs_f64(),
                    if c.private {
                        ", caller ID withheld"
                    } else {
                        ""
                    }
                );
            }
        }
        routing_table(t, tenant);
    }
    r
}

/// The tenant's voice routing (DR-OUT-1) as an admin reads it in the Teams admin
/// center: usages, routes by priority, policies, dial plan rules.
fn routing_table(t: &mut String, tenant: &Tenant) {
    let vr = &tenant.voice_routing;
    if !vr.is_configured() {
        return;
    }
    let quoted = |v: &[String]| {
        let q: Vec<String> = v.iter().map(|x| format!("\"{x}\"")).collect();
        if q.is_empty() {
            "none".to_owned()
        } else {
            q.join(", ")
        }
    };
    let _ = writeln!(t, "    voice routing (DR-OUT-1):");
    let _ = writeln!(t, "      PSTN usages: {}", quoted(&vr.pstn_usages));
    let mut routes: Vec<_> = vr.routes.iter().collect();
    routes.sort_by_key(|r| r.priority);
    for r in routes {
        let gateways: Vec<String> = r
            .online_pstn_gateway_list
            .iter()
            .map(|g| {
                let disabled = tenant.trunks.iter().any(|k| k.fqdn == *g && !k.enabled);
                format!("{g}{}", if disabled { " (disabled)" } else { "" })
            })
            .collect();
        let _ = writeln!(
            t,
            "      route \"{}\" priority {}: {} -> {}; usages {}",
            r.name,
            r.priority,
            r.number_pattern,
            gateways.join(", "),
            quoted(&r.online_pstn_usages)
        );
    }
    for p in &vr.policies {
        let _ = writeln!(
            t,
            "      policy \"{}\": usages {}",
            p.name,
            quoted(&p.online_pstn_usages)
        );
    }
    if vr.global_policy().is_none() {
        let _ = writeln!(
            t,
            "      policy {GLOBAL_POLICY} (built in, not configured): no usages; users without a policy cannot call the PSTN"
        );
    }
    for r in &vr.dial_plan.rules {
        let _ = writeln!(
            t,
            "      dial plan rule {} \"{}\": {} -> {}{}",
            r.priority,
            r.name,
            r.pattern,
            r.translation,
            if r.is_internal_extension {
                " (internal extension)"
            } else {
                ""
            }
        );
    }
}

fn describe(cert: &PeerIdentity, now: OffsetDateTime) -> String {
    let names: Vec<&str> = cert.names().collect();
    let days = (cert.not_after - now).whole_days();
    let when = if days < 0 {
        format!("EXPIRED {}", date(cert.not_after))
    } else if cert.expires_within(now, EXPIRY_WARNING_DAYS) {
        format!(
            "expires {} (in {days} days: renew soon)",
            date(cert.not_after)
        )
    } else {
        format!("expires {} ({days} days)", date(cert.not_after))
    };
    format!("{} ; {when}", names.join(", "))
}

fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}
