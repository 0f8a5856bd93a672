//! The `drhub` command: run the daemon, check a configuration, make a lab PKI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use drhub::certs::{self, PkiRequest};
use drhub::config::{Config, ConfigError, SipAddress, BUILTIN_LAB_CONFIG};
use drhub::directory::Directory;

/// sysexits EX_USAGE: the configuration (or the command line) is wrong.
const EX_CONFIG: u8 = 64;
/// sysexits EX_UNAVAILABLE: the running daemon the command needs is not there.
const EX_UNAVAILABLE: u8 = 69;
const DEFAULT_CONFIG: &str = "config/drhub.toml";

#[derive(Parser)]
#[command(
    name = "drhub",
    version,
    about = "Microsoft Teams Direct Routing SIP proxy emulator for labs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the daemon.
    Run {
        /// Configuration file. Without it, config/drhub.toml, or the built-in lab
        /// configuration when that file does not exist.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and its certificates and print a summary.
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Instead of the summary, show step by step where a call from USER to NUMBER
        /// goes (DR-OUT-1). Exit 0 when routed, 1 when it has no route, 64 when USER is
        /// no user of the configuration.
        #[arg(long, num_args = 2, value_names = ["USER", "NUMBER"])]
        route: Option<Vec<String>>,
    },
    /// Write a lab PKI: a CA, the proxy certificate and one client certificate per SBC.
    Certs {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Directory to write to (default: the config's [certs] dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also issue a certificate for this SBC FQDN (repeatable; `*.x.com` allowed).
        #[arg(long = "sbc", value_name = "FQDN")]
        sbc: Vec<String>,
        /// Replace an existing CA instead of reusing it.
        #[arg(long)]
        force: bool,
    },
    /// Ask a running daemon, through its control API, what it is doing: listeners and
    /// datacenter modes, SBCs with health and connections, calls.
    Status {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The API's address (default: the config's [api] address).
        #[arg(long, value_name = "ADDR:PORT")]
        api: Option<SocketAddr>,
        /// Print the API's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// Place a call from a Teams user to a number through a running daemon (DR-OUT-1):
    /// routed by the user's voice routing policy, sent to the SBCs in failover order.
    /// Follows the call until it ends; exit 0 when it was answered, 1 when it failed or
    /// was refused (the reason is printed), 69 when the daemon is not there.
    Call {
        /// The calling user's SIP address, `user1@adatum.biz`.
        from: String,
        /// What the user dials (the tenant's dial plan normalises it), `+14255550100`.
        to: String,
        /// Withhold the caller ID (From anonymous, `Privacy: id`).
        #[arg(long)]
        private: bool,
        /// Give up (CANCEL) when not answered within this many seconds.
        #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
        ring: f64,
        /// Hang up (BYE) this many seconds after the answer.
        #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
        talk: f64,
        /// Print the Call-ID and return without following the call.
        #[arg(long)]
        no_wait: bool,
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long, value_name = "ADDR:PORT")]
        api: Option<SocketAddr>,
    },
    /// The Teams user holds (or with --resume takes off hold) an answered call of a
    /// running daemon (DR-HOLD-2): music on hold through the media processor, or a
    /// re-INVITE with a=inactive to the SBC on a media-bypass call.
    Hold {
        /// The call's SBC-side Call-ID (`drhub status`, `GET /api/calls`).
        call_id: String,
        /// Take the call off hold instead.
        #[arg(long)]
        resume: bool,
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long, value_name = "ADDR:PORT")]
        api: Option<SocketAddr>,
    },
    /// The Teams user transfers an answered call of a running daemon (DR-XFER-3): a REFER
    /// to the SBC, to a `+E164` number or a user's SIP address of the call's tenant.
    Transfer {
        /// The call's SBC-side Call-ID (`drhub status`, `GET /api/calls`).
        call_id: String,
        /// Where to: `+14255550123` or `reception@adatum.biz` (with `--consult`, the
        /// consultation call's number when left out).
        to: Option<String>,
        /// Consultative (RFC 5589 §7): the Call-ID of the user's answered consultation
        /// call, whose dialog with the SBC the transfer replaces.
        #[arg(long, value_name = "CALL_ID")]
        consult: Option<String>,
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long, value_name = "ADDR:PORT")]
        api: Option<SocketAddr>,
    },
    /// Turn the JSON of the Teams PowerShell cmdlets (`... | ConvertTo-Json -Depth 5`) into
    /// a `[[tenant]]` for drhub's configuration that mirrors a production tenant: its
    /// SBCs, voice routing and users. Each input is optional; give at least one.
    Import(ImportArgs),
    /// Put an emulated datacenter of a running daemon into a fault mode (DR-DC-1):
    /// normal, busy, refuse, reset or silent.
    Datacenter {
        /// The datacenter: a listener name (`sip`, `sip2` ...).
        name: String,
        mode: String,
        /// Retry-After of `busy`, seconds.
        #[arg(long)]
        retry_after: Option<u32>,
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long, value_name = "ADDR:PORT")]
        api: Option<SocketAddr>,
    },
    /// The conformance report of a running daemon (DR-CONF): what each SBC broke or
    /// nearly broke, with counts, the last Call-ID and the requirement IDs.
    /// Make a running daemon re-read its config file, as SIGHUP does: new calls use the
    /// new config, calls up keep theirs, listeners are added or removed. Exit 0 when
    /// reloaded; 64 when the daemon refused the new config (its errors are printed and
    /// nothing changed); 1 when it runs on the built-in config; 69 when it is not there.
    Reload {
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long, value_name = "ADDR:PORT")]
        api: Option<SocketAddr>,
    },
    Report {
        /// Only this SBC.
        #[arg(long, value_name = "FQDN")]
        sbc: Option<String>,
        /// The API's JSON as it is.
        #[arg(long)]
        json: bool,
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long, value_name = "ADDR:PORT")]
        api: Option<SocketAddr>,
    },
}

/// `drhub import`'s inputs, one file per cmdlet, and where the fragment goes.
#[derive(clap::Args)]
struct ImportArgs {
    /// `Get-CsOnlinePSTNGateway | ConvertTo-Json -Depth 5`: the SBCs, as trunks.
    #[arg(long, value_name = "FILE")]
    gateways: Option<PathBuf>,
    /// `Get-CsOnlineVoiceRoute | ConvertTo-Json -Depth 5`.
    #[arg(long, value_name = "FILE")]
    routes: Option<PathBuf>,
    /// `Get-CsOnlinePstnUsage | ConvertTo-Json -Depth 5`.
    #[arg(long, value_name = "FILE")]
    usages: Option<PathBuf>,
    /// `Get-CsOnlineVoiceRoutingPolicy | ConvertTo-Json -Depth 5`.
    #[arg(long, value_name = "FILE")]
    policies: Option<PathBuf>,
    /// `Get-CsOnlineUser | ConvertTo-Json -Depth 5`: users with Enterprise Voice and a
    /// LineURI are imported.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// The tenant's id (default: the first label of its first domain).
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// A domain registered in the tenant (repeatable); those of the gateways' FQDNs and
    /// of the users' SIP addresses are added.
    #[arg(long = "domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Write the fragment to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config.as_deref()),
        Command::Check { config, route } => match route.as_deref() {
            Some([user, number]) => check_route(config.as_deref(), user, number),
            _ => check(config.as_deref()),
        },
        Command::Certs {
            config,
            dir,
            sbc,
            force,
        } => certs_cmd(config.as_deref(), dir, sbc, force),
        Command::Status { config, api, json } => {
            api_cmd(config.as_deref(), api, |address, token| async move {
                let (status, v) =
                    drhub::api::request(address, "GET", "/api/status", token.as_deref(), None)
                        .await?;
                if status == 200 && !json {
                    print_status(address, &v);
                } else {
                    println!("{v:#}");
                }
                Ok(status)
            })
        }
        Command::Call {
            from,
            to,
            private,
            ring,
            talk,
            no_wait,
            config,
            api,
        } => api_cmd(config.as_deref(), api, |address, token| async move {
            let body = serde_json::json!({
                "from": from, "to": to, "private": private,
                "ring_seconds": ring, "talk_seconds": talk,
            });
            let token = token.as_deref();
            let (status, v) =
                drhub::api::request(address, "POST", "/api/calls", token, Some(&body)).await?;
            if status != 201 {
                let code = v["code"]
                    .as_u64()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                eprintln!(
                    "refused: {}{code}\n{}",
                    v["status"],
                    v["error"].as_str().unwrap_or("error")
                );
                return Ok(status);
            }
            let call_id = v["call_id"].as_str().unwrap_or_default().to_owned();
            let gateways: Vec<&str> = v["gateways"]
                .as_array()
                .map(|a| a.iter().filter_map(|g| g.as_str()).collect())
                .unwrap_or_default();
            println!(
                "call {call_id}: {from} -> {} via {}",
                v["number"].as_str().unwrap_or("?"),
                gateways.join(", ")
            );
            if let Some(r) = v["out_of_rotation"].as_array().filter(|r| !r.is_empty()) {
                println!(
                    "  out of rotation (503 Retry-After): {}",
                    serde_json::Value::from(r.clone())
                );
            }
            if no_wait {
                return Ok(status);
            }
            let path = format!("/api/calls/{call_id}");
            let mut last = String::new();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let (s, c) = drhub::api::request(address, "GET", &path, token, None).await?;
                if s != 200 {
                    eprintln!("{}", c["error"].as_str().unwrap_or("call lost"));
                    return Ok(s);
                }
                let state = c["state"].as_str().unwrap_or("?");
                if state != last && state != "ended" {
                    println!("  {state}");
                    last = state.to_owned();
                }
                if c["state"] == "ended" {
                    let code = c["code"]
                        .as_u64()
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default();
                    println!(
                        "  ended: {}{code}: {}",
                        c["status"],
                        c["reason"].as_str().unwrap_or("")
                    );
                    // 2xx for an answered call, the call's failure otherwise.
                    return Ok(c["status"].as_u64().map_or(500, |x| x as u16));
                }
            }
        }),
        Command::Hold {
            call_id,
            resume,
            config,
            api,
        } => api_cmd(config.as_deref(), api, |address, token| async move {
            let verb = if resume { "resume" } else { "hold" };
            let path = format!("/api/calls/{call_id}/{verb}");
            let (status, v) =
                drhub::api::request(address, "POST", &path, token.as_deref(), None).await?;
            if (200..300).contains(&status) {
                println!("{verb} requested for {call_id}");
            } else {
                eprintln!("{}", v["error"].as_str().unwrap_or("error"));
            }
            Ok(status)
        }),
        Command::Transfer {
            call_id,
            to,
            consult,
            config,
            api,
        } => api_cmd(config.as_deref(), api, |address, token| async move {
            let path = format!("/api/calls/{call_id}/transfer");
            let mut body = serde_json::json!({});
            if let Some(to) = &to {
                body["to"] = to.as_str().into();
            }
            if let Some(c) = &consult {
                body["consult"] = c.as_str().into();
            }
            let (status, v) =
                drhub::api::request(address, "POST", &path, token.as_deref(), Some(&body)).await?;
            if (200..300).contains(&status) {
                let to = v["to"].as_str().unwrap_or("?");
                match &consult {
                    Some(c) => println!(
                        "consultative transfer of {call_id} to {to} (replacing {c}) requested"
                    ),
                    None => println!("transfer of {call_id} to {to} requested"),
                }
            } else {
                eprintln!("{}", v["error"].as_str().unwrap_or("error"));
            }
            Ok(status)
        }),
        Command::Report {
            sbc,
            json,
            config,
            api,
        } => api_cmd(config.as_deref(), api, |address, token| async move {
            let path = match &sbc {
                Some(s) => format!("/api/report?sbc={s}"),
                None => "/api/report".to_owned(),
            };
            let (status, v) =
                drhub::api::request(address, "GET", &path, token.as_deref(), None).await?;
            if !(200..300).contains(&status) {
                eprintln!("{}", v["error"].as_str().unwrap_or("error"));
            } else if json {
                println!("{v:#}");
            } else {
                print!("{}", report_text(&v));
            }
            Ok(status)
        }),
        Command::Reload { config, api } => {
            api_cmd(config.as_deref(), api, |address, token| async move {
                let (status, v) =
                    drhub::api::request(address, "POST", "/api/reload", token.as_deref(), None)
                        .await?;
                let lines = |key: &str| -> Vec<String> {
                    v[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect()
                };
                if status == 200 {
                    println!("reloaded");
                    let applied = lines("applied");
                    if applied.is_empty() {
                        println!("  nothing changed that a reload applies");
                    }
                    for a in applied {
                        println!("  applied: {a}");
                    }
                    for r in lines("restart_needed") {
                        println!("  changed, applies at the next restart: {r}");
                    }
                } else {
                    let errors = lines("errors");
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    let summary = v["error"].as_str().unwrap_or("reload failed");
                    if !errors.iter().any(|e| e == summary) {
                        eprintln!("{summary}");
                    }
                }
                Ok(status)
            })
        }
        Command::Import(args) => import_cmd(args),
        Command::Datacenter {
            name,
            mode,
            retry_after,
            config,
            api,
        } => api_cmd(config.as_deref(), api, |address, token| async move {
            let mut body = serde_json::json!({ "mode": mode });
            if let Some(r) = retry_after {
                body["retry_after"] = r.into();
            }
            let path = format!("/api/datacenters/{name}");
            let (status, v) =
                drhub::api::request(address, "POST", &path, token.as_deref(), Some(&body)).await?;
            if status == 200 {
                println!(
                    "datacenter {name}: {} (was {})",
                    v["mode"].as_str().unwrap_or("?"),
                    v["was"].as_str().unwrap_or("?")
                );
            } else {
                eprintln!("{}", v["error"].as_str().unwrap_or("error"));
            }
            Ok(status)
        }),
    }
}

/// The conformance report as text: per SBC, each finding on a line (severity,
/// requirement, count, what, the last Call-ID and time), its details under it.
fn report_text(v: &serde_json::Value) -> String {
    let mut s = String::new();
    for sbc in v["sbcs"].as_array().into_iter().flatten() {
        s.push_str(sbc["sbc"].as_str().unwrap_or("?"));
        s.push('\n');
        let findings = sbc["findings"].as_array().cloned().unwrap_or_default();
        if findings.is_empty() {
            s.push_str("  nothing found\n");
        }
        for f in findings {
            let when = f["last_at"]
                .as_i64()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            s.push_str(&format!(
                "  {:<6} {:<9} {:>5}x  {}  (last {when}{})\n",
                f["severity"].as_str().unwrap_or(""),
                f["requirement"].as_str().unwrap_or(""),
                f["count"].as_u64().unwrap_or(0),
                f["what"].as_str().unwrap_or(""),
                match f["last_call_id"].as_str() {
                    Some(c) if !c.is_empty() => format!(", Call-ID {c}"),
                    _ => String::new(),
                },
            ));
            if let Some(d) = f["detail"].as_str().filter(|d| !d.is_empty()) {
                s.push_str(&format!("         {d}\n"));
            }
        }
    }
    s
}

/// Runs one request against a running daemon's API: the address and token come from
/// `--api` or the config. Exit 0 on 2xx, 1 on an API error, 69 (EX_UNAVAILABLE) when the
/// daemon cannot be reached, 64 on a bad config, an API that is off, or a reload the
/// daemon refused for its config (422).
fn api_cmd<F, Fut>(path: Option<&Path>, api: Option<SocketAddr>, f: F) -> ExitCode
where
    F: FnOnce(SocketAddr, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<u16, drhub::api::ClientError>>,
{
    let (address, token) = match (api, load(path)) {
        (_, Err(e)) if path.is_some() => return report_config_error(&e),
        (Some(a), Ok((c, _))) => (a, c.api.token),
        (Some(a), Err(_)) => (a, None),
        (None, Ok((c, source))) => match c.api.address {
            Some(a) => (a, c.api.token),
            None => {
                eprintln!("{source}: [api] address is \"off\"; give --api ADDR:PORT");
                return ExitCode::from(EX_CONFIG);
            }
        },
        (None, Err(e)) => return report_config_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f(address, token)) {
        Ok(s) if (200..300).contains(&s) => ExitCode::SUCCESS,
        Ok(422) => ExitCode::from(EX_CONFIG),
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

/// `drhub status` for a human.
fn print_status(address: SocketAddr, v: &serde_json::Value) {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    println!("drhub {} (control API {address})", s(&v["version"]));
    println!("listeners:");
    for l in v["listeners"].as_array().into_iter().flatten() {
        let mode = match l["datacenter"]["mode"].as_str() {
            Some("busy") => format!("busy (Retry-After {})", l["datacenter"]["retry_after"]),
            Some(m) => m.to_owned(),
            None => String::new(),
        };
        println!(
            "  {:<10} {:<7} {:<21} {:<28} {mode}",
            s(&l["name"]),
            s(&l["transport"]),
            s(&l["address"]),
            s(&l["fqdn"]),
        );
    }
    println!("SBCs:");
    for b in v["sbcs"].as_array().into_iter().flatten() {
        let dcs: Vec<String> = b["datacenters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        let options = &b["options"];
        let opts = if options.is_object() {
            let moved = options["moves"]
                .as_array()
                .and_then(|m| m.last())
                .map(|m| format!("; last moved {} -> {}", s(&m["from"]), s(&m["to"])))
                .unwrap_or_default();
            format!(
                "OPTIONS in {} (to {}{moved}), out {} answered {} (last: {})",
                options["received"],
                s(&options["last_received_on"]),
                options["sent"],
                options["answered"],
                options["last_result"].as_str().unwrap_or("-")
            )
        } else {
            "no OPTIONS yet".to_owned()
        };
        println!(
            "  {} ({}{}): {}; datacenters: {}; {} connection(s); {} call(s) up; {opts}",
            s(&b["fqdn"]),
            s(&b["tenant"]),
            if b["enabled"] == false {
                ", disabled"
            } else {
                ""
            },
            s(&b["state"]),
            if dcs.is_empty() {
                "none".to_owned()
            } else {
                dcs.join(", ")
            },
            b["connections"].as_array().map_or(0, Vec::len),
            b["calls_up"],
        );
    }
    let c = &v["calls"];
    println!(
        "calls: {} up; {} started, {} answered, {} failed",
        c["up"], c["started"], c["answered"], c["failed"]
    );
    let k = &v["counters"];
    println!(
        "requests {}, rejected {}, shed {}, malformed {}; {} connection(s), {} transaction(s)",
        k["requests"],
        k["rejected"],
        k["shed"],
        k["malformed"],
        k["connections"],
        k["transactions"]
    );
}

/// Loads the configuration the user named, or the default file, or the built-in one.
fn load(path: Option<&Path>) -> Result<(Config, String), ConfigError> {
    match path {
        Some(p) => Config::load(p).map(|c| (c, p.display().to_string())),
        None if Path::new(DEFAULT_CONFIG).exists() => {
            Config::load(Path::new(DEFAULT_CONFIG)).map(|c| (c, DEFAULT_CONFIG.to_owned()))
        }
        None => Config::parse(BUILTIN_LAB_CONFIG, "built-in lab config")
            .map(|c| (c, "built-in lab config".to_owned())),
    }
}

fn report_config_error(e: &ConfigError) -> ExitCode {
    for issue in &e.issues {
        eprintln!("{issue}");
    }
    eprintln!(
        "{}: {} problem(s); nothing started",
        e.source_name,
        e.issues.len()
    );
    ExitCode::from(EX_CONFIG)
}

fn run(path: Option<&Path>) -> ExitCode {
    let (config, source) = match load(path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    if let Err(e) = drhub::logging::init(&config.log) {
        eprintln!("log: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    info!(config = %source, version = env!("CARGO_PKG_VERSION"), "drhub starting");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let config = Arc::new(config);
        let bound = match drhub::Daemon::bind(config).await {
            Ok(b) => b,
            Err(e) => {
                error!("{e}");
                return if e.is_config_error() {
                    ExitCode::from(EX_CONFIG)
                } else {
                    ExitCode::FAILURE
                };
            }
        };
        let file = path.map(Path::to_path_buf).or_else(|| {
            Path::new(DEFAULT_CONFIG)
                .exists()
                .then(|| PathBuf::from(DEFAULT_CONFIG))
        });
        let bound = bound.with_source(file);
        let hub = bound.hub();
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        tokio::spawn(reload_on_sighup(hub));
        drhub::systemd::ready();
        bound.serve(shutdown).await;
        info!("drhub stopped");
        ExitCode::SUCCESS
    })
}

/// SIGHUP re-reads the config file (`ExecReload` in the unit); the outcome is logged.
async fn reload_on_sighup(hub: Arc<drhub::hub::Hub>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot install the SIGHUP handler; reload with `drhub reload`");
        return;
    };
    while hup.recv().await.is_some() {
        info!("SIGHUP: reloading the configuration");
        drhub::systemd::reloading();
        // The daemon logs what it applied, or every error and that nothing changed.
        let _ = hub.reload().await;
        drhub::systemd::reloaded();
    }
}

/// SIGTERM or SIGINT starts the bounded drain; a second one is not needed.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop drhub with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = int.recv() => info!("SIGINT: draining"),
    }
    drhub::systemd::stopping();
    shutdown.cancel();
}

fn check(path: Option<&Path>) -> ExitCode {
    let (config, source) = match load(path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    let report = drhub::check::summarize(&config);
    print!("{}", report.text);
    if report.problems.is_empty() {
        println!("{source}: OK");
        ExitCode::SUCCESS
    } else {
        for p in &report.problems {
            eprintln!("{p}");
        }
        eprintln!("{source}: {} problem(s)", report.problems.len());
        ExitCode::from(EX_CONFIG)
    }
}

/// `drhub check --route USER NUMBER`: the DR-OUT-1 decision, without SBC health (every
/// SBC counts as active).
fn check_route(path: Option<&Path>, user: &str, number: &str) -> ExitCode {
    let (config, source) = match load(path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    let address = match user.parse::<SipAddress>() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("--route USER: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let directory = Directory::new(&config.tenants);
    let Some((tenant, caller)) = directory.find_user(&address) else {
        eprintln!("--route USER: {address} is no user of any tenant in {source}");
        return ExitCode::from(EX_CONFIG);
    };
    let decision = directory.route(tenant, caller, number, |_| false);
    print!("{decision}");
    if decision.routed().is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `drhub import`: exit 0 with the fragment written, 64 when an input is missing,
/// unreadable or wrong (every problem is printed), 1 when the output cannot be written.
fn import_cmd(args: ImportArgs) -> ExitCode {
    let files = [
        &args.gateways,
        &args.routes,
        &args.usages,
        &args.policies,
        &args.users,
    ];
    if files.iter().all(|f| f.is_none()) {
        eprintln!("drhub import: give at least one of --gateways, --routes, --usages, --policies, --users");
        return ExitCode::from(EX_CONFIG);
    }
    let mut unreadable = false;
    let mut read = |path: &Option<PathBuf>| {
        let path = path.as_deref()?;
        read_import_input(path)
            .map_err(|e| {
                eprintln!("{}: {e}", path.display());
                unreadable = true;
            })
            .ok()
    };
    let inputs = drhub::import::Inputs {
        gateways: read(&args.gateways),
        routes: read(&args.routes),
        usages: read(&args.usages),
        policies: read(&args.policies),
        users: read(&args.users),
        tenant: args.tenant,
        domains: args.domains,
    };
    if unreadable {
        return ExitCode::from(EX_CONFIG);
    }
    let imported = match drhub::import::import(&inputs) {
        Ok(i) => i,
        Err(issues) => {
            for issue in &issues {
                eprintln!("{issue}");
            }
            eprintln!("drhub import: {} problem(s); nothing written", issues.len());
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Err(e) = drhub::import::check_fragment(&imported.fragment) {
        eprintln!("drhub import: the inputs hold what drhub's configuration refuses:");
        for issue in &e.issues {
            eprintln!("{issue}");
        }
        eprintln!("drhub import: nothing written");
        return ExitCode::from(EX_CONFIG);
    }
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.fragment) {
                eprintln!("{}: cannot write: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("drhub import: {imported}; written to {}", path.display());
        }
        None => {
            print!("{}", imported.fragment);
            eprintln!("drhub import: {imported}");
        }
    }
    ExitCode::SUCCESS
}

/// One input file as text (UTF-8 or UTF-16, as PowerShell writes them).
fn read_import_input(path: &Path) -> Result<drhub::import::Input, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let text = drhub::import::decode(&bytes)?;
    Ok(drhub::import::Input {
        source: path.display().to_string(),
        text,
    })
}

fn certs_cmd(
    path: Option<&Path>,
    dir: Option<PathBuf>,
    extra: Vec<String>,
    force: bool,
) -> ExitCode {
    let (config, _) = match load(path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    let mut bad = false;
    let mut sbc = config.sbc_certificate_names();
    for (i, name) in extra.iter().enumerate() {
        match drhub::config::Fqdn::parse_wildcard(name) {
            Ok(n) if !sbc.contains(&n) => sbc.push(n),
            Ok(_) => {}
            Err(e) => {
                eprintln!("--sbc[{i}]: {e}");
                bad = true;
            }
        }
    }
    if bad {
        return ExitCode::from(EX_CONFIG);
    }
    let dir = dir.unwrap_or_else(|| config.certs.dir.clone());
    let proxy_names: Vec<String> = config.proxy.fqdns.iter().map(ToString::to_string).collect();
    let req = PkiRequest {
        dir: &dir,
        proxy_names: &proxy_names,
        sbc_fqdns: &sbc,
        force,
    };
    match certs::write_lab_pki(&req)
        .with_context(|| format!("writing the lab PKI in {}", dir.display()))
    {
        Ok(report) => {
            println!("lab PKI in {}", dir.display());
            print!("{report}");
            println!("On each SBC: trust the CA file, present its certificate and key, and put its FQDN in Contact.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
