//! `swm`: the pipeline binary — inspect, convert, demo, score, plan, parity, bench and media.
//!
//! swm ships as two executables. `swm` (this file) parses every command, runs the host-only ones (`inspect`,
//! `convert`, `demo`) itself and links no CUDA library, so it starts on any Linux machine, with or without an
//! NVIDIA driver. The GPU commands (`score`, `plan`, `parity`, `bench`, `media`) run in `swm-gpu`, installed beside it:
//! `swm` first checks that the driver and the CUDA libraries load (naming the one that does not), then replaces
//! itself with `swm-gpu` and the same arguments. Exit codes:
//!
//! | outcome                                                              | exit |
//! |----------------------------------------------------------------------|------|
//! | success, or stdout closed early (`swm inspect \| head -1`)           | 0    |
//! | runtime failure (driver, device, checkpoint, artifact, model, planner) | 1  |
//! | a parity check or a checkpoint validation that fails                 | 1    |
//! | usage: bad flag values, missing files or planner files given as args | 2    |

// `cli`, `error` and `out` are shared with `swm-gpu` (gpu.rs); what only the GPU commands use is unused here.
#[macro_use]
#[allow(unused_macros)]
mod out;
#[allow(dead_code, unused_imports)]
mod cli;
mod demo_dir;
mod error;
mod forward;
mod hub;

/// The host-only commands.
mod cmd {
    pub mod convert;
    pub mod demo;
    pub mod inspect;
}

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use error::CliError;

fn main() -> ExitCode {
    // Clap's own errors (unknown flags, bad values) print usage and exit with 2 here, for every command.
    let cli = Cli::parse();
    if cli.command.needs_gpu() {
        return error::exit(Err(forward::to_gpu(&cli.command)));
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    error::exit(hub::resolve(cli.command, &cli.hub).and_then(run))
}

/// Runs one host-only command.
fn run(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        gpu => Err(forward::to_gpu(&gpu)),
    }
}
