//! `motorpool`: run the platform (`up`), some services (`serve`), migrations, and print the
//! generated documents and the effective configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use motorpool::{Config, SERVICES};
use motorpool_platform::clock::Clock;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "motorpool", version, about = "Motorpool: one backend for the whole life of a car")]
struct Cli {
    /// Configuration file (default: ./motorpool.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override one key, e.g. `--set storage.backend=postgres`. Repeatable.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process, gateway on :8080, with demo data.
    Up {
        /// Do not seed demo accounts.
        #[arg(long)]
        no_demo: bool,
    },
    /// Run only the named services (one process per service in a distributed deployment).
    Serve {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Apply migrations (all services, or the named ones) and exit.
    Migrate { services: Vec<String> },
    /// Print the merged OpenAPI document.
    Openapi,
    /// Print the catalog of published events (AsyncAPI-style).
    Events,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Account administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account (if the email is not taken yet).
    Create {
        #[arg(long)]
        email: String,
        /// Read from the MOTORPOOL_ADMIN_PASSWORD environment variable when omitted.
        #[arg(long, env = "MOTORPOOL_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

fn all_services() -> Vec<String> {
    SERVICES.iter().map(|s| (*s).to_owned()).collect()
}

// mimalloc: the request path allocates many small, short-lived buffers (headers, bodies,
// futures); glibc's malloc spent about 13 % of the gateway's CPU on them (bench/REPORT.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = Config::load(cli.config.as_deref(), &cli.sets).and_then(|cfg| {
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        runtime.enable_all();
        if cfg.worker_threads > 0 {
            runtime.worker_threads(cfg.worker_threads);
        }
        runtime.build()?.block_on(run(cli, cfg))
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("motorpool: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, mut cfg: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Config => {
            print!("{}", cfg.to_masked_toml()?);
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&motorpool::openapi())?);
            Ok(())
        }
        Command::Events => {
            println!("{}", serde_json::to_string_pretty(&motorpool::event_catalog(&cfg))?);
            Ok(())
        }
        Command::Migrate { services } => {
            motorpool_platform::telemetry::init_logging(&cfg.log);
            let names = if services.is_empty() { all_services() } else { services };
            motorpool::migrate(&cfg, &names).await
        }
        Command::Admin { command: AdminCommand::Create { email, password } } => {
            motorpool_platform::telemetry::init_logging(&cfg.log);
            cfg.identity.bootstrap_admin_email = Some(email);
            cfg.identity.bootstrap_admin_password = Some(password);
            // Starting identity alone on a free port creates the admin, then it stops.
            cfg.listen.insert("identity".into(), "127.0.0.1:0".parse()?);
            let platform = motorpool::start(&cfg, &["identity".to_owned()], Clock::system(), CancellationToken::new()).await?;
            platform.stop().await;
            println!("admin ready");
            Ok(())
        }
        Command::Up { no_demo } => {
            cfg.demo_data = !no_demo;
            serve(cfg, all_services()).await
        }
        Command::Serve { services } => serve(cfg, services).await,
    }
}

async fn serve(cfg: Config, names: Vec<String>) -> anyhow::Result<()> {
    motorpool_platform::telemetry::init_logging(&cfg.log);
    let started = std::time::Instant::now();
    let shutdown = CancellationToken::new();
    let platform = motorpool::start(&cfg, &names, Clock::system(), shutdown.clone()).await?;
    for s in &platform.services {
        tracing::info!(service = s.name, addr = %s.addr, "listening");
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "all services started");
    if let Some(gw) = platform.addr("gateway") {
        eprintln!("Motorpool is up: http://{gw}/  (API docs: http://{gw}/docs)");
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    let limit = cfg.http.shutdown_timeout() + Duration::from_secs(2);
    if tokio::time::timeout(limit, platform.stop()).await.is_err() {
        tracing::warn!("services did not stop in time; exiting anyway");
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
