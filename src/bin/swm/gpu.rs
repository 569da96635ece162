//! `swm-gpu`: the GPU half of `swm`, which runs it for `score`, `plan`, `parity` and `bench` after checking the
//! driver (see `main.rs`); it runs every command, host-only ones included, with the same arguments and exit codes.

// `cli` and `error` are shared with `swm` (main.rs); the forwarding to this binary is unused here.
#[macro_use]
mod out;
#[allow(dead_code)]
mod cli;
mod cmd;
mod demo_dir;
#[allow(dead_code)]
mod error;
mod hub;
mod inputs;
mod planner;
mod precision;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use error::CliError;
use swm::device;
use swm::ops::gemm::{self, F32Matmul};

fn main() -> ExitCode {
    // Clap's own errors (unknown flags, bad values) print usage and exit with 2 here.
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    device::set_tf32(cli.tf32);
    if cli.cublas_f32 {
        gemm::set_f32_matmul(F32Matmul::Cublas);
    }
    error::exit(hub::resolve(cli.command, &cli.hub).and_then(run))
}

/// Runs one command.
fn run(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Score(args) => cmd::score::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Parity(family) => cmd::parity::run(family),
        Command::Bench(family) => cmd::bench::run(family),
        Command::Media(command) => cmd::media::run(command),
        Command::TrainBatch(args) => cmd::train::run(args),
    }
}
