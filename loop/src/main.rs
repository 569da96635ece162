//! `swm-loop`: parses the command line, loads the configuration, installs the one signal handler and runs the
//! daemon until SIGINT, SIGTERM or a `Shutdown` command.
//!
//! Exit codes: 0 clean shutdown, 1 runtime failure (artifact, device, transport), 2 bad configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use swm_loop::backend::{inputs, EngineBackend};
use swm_loop::config::LoopConfig;
use swm_loop::daemon::{take_signals, Daemon, Shutdown};
use swm_loop::transport::Iceoryx;

/// The real-time control-loop daemon beside a robot controller.
#[derive(Parser)]
#[command(name = "swm-loop", version)]
struct Args {
    /// The daemon configuration (TOML, see configs/); without it, the defaults and the flags below.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The deployment artifact to serve (overrides `artifact`).
    #[arg(long)]
    artifact: Option<PathBuf>,
    /// CUDA device ordinal (overrides `gpu`).
    #[arg(long)]
    gpu: Option<usize>,
    /// Control rate in Hz (overrides `rate_hz`).
    #[arg(long)]
    rate_hz: Option<f64>,
    /// Step budget in milliseconds (overrides `deadline_ms`).
    #[arg(long)]
    deadline_ms: Option<f64>,
    /// Service name prefix (overrides `ipc.prefix`).
    #[arg(long)]
    prefix: Option<String>,
    /// SCHED_FIFO priority of the hot threads, 0 = off (overrides `realtime.priority`).
    #[arg(long)]
    rt_priority: Option<u8>,
    /// Validate the configuration, print it resolved (TOML) and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match resolve(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        match toml::to_string_pretty(&config) {
            Ok(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The configuration file (or the defaults) with the flags applied, validated.
fn resolve(args: &Args) -> Result<LoopConfig, swm_loop::config::ConfigError> {
    let (mut config, path) = match &args.config {
        Some(path) => (LoopConfig::load_unvalidated(path)?, path.clone()),
        None => (LoopConfig::default(), PathBuf::from("<command line>")),
    };
    if let Some(a) = &args.artifact {
        config.artifact = Some(a.clone());
    }
    if let Some(g) = args.gpu {
        config.gpu = g;
    }
    if let Some(r) = args.rate_hz {
        config.rate_hz = r;
    }
    if let Some(d) = args.deadline_ms {
        config.deadline_ms = Some(d);
    }
    if let Some(p) = &args.prefix {
        config.ipc.prefix = p.clone();
    }
    if let Some(p) = args.rt_priority {
        config.realtime.priority = p;
    }
    config.validate(&path)?;
    Ok(config)
}

/// Runs the daemon until a shutdown is requested.
fn run(config: LoopConfig) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::default();
    // The one owner of SIGINT/SIGTERM/SIGHUP in this process (iceoryx2's own handling is disabled on every node).
    take_signals(&shutdown)?;
    let artifact_dir = config.artifact.clone().ok_or("no artifact")?;
    let artifact = swm::artifact::Artifact::open(&artifact_dir)?;
    let inputs = inputs(&artifact.schema);
    let transport = Arc::new(Iceoryx::new(&config.ipc)?);
    let backend_config = config.clone();
    tracing::info!(
        "serving {} at {} Hz (deadline {:?}) on GPU {}, services {}/*",
        artifact_dir.display(),
        config.rate_hz,
        config.deadline(),
        config.gpu,
        config.ipc.prefix
    );
    if let Some(stall) = config.fault.delay_before(config.fault.every) {
        tracing::warn!("fault injection: every {}th step waits behind a {stall:?} GPU stall", config.fault.every);
    }
    let daemon =
        Daemon::start(&config, inputs, transport, move || EngineBackend::open(&backend_config), shutdown.clone())?;
    tracing::info!("ready");
    while !shutdown.requested() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::info!("shutting down");
    daemon.join()?;
    Ok(())
}
