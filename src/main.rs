//! The `drhub` command: run the daemon, check a configuration, make a lab PKI.

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
    }
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
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        drhub::systemd::ready();
        bound.serve(shutdown).await;
        info!("drhub stopped");
        ExitCode::SUCCESS
    })
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
