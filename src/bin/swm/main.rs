//! `swm`: the pipeline binary — inspect, convert, demo, score, plan, parity and bench.
//!
//! `main` parses the command line, sets the process-wide knobs once, dispatches to `cmd::<verb>::run` and maps
//! the outcome to an exit code:
//!
//! | outcome                                                              | exit |
//! |----------------------------------------------------------------------|------|
//! | success, or stdout closed early (`swm inspect \| head -1`)           | 0    |
//! | runtime failure (device, checkpoint, artifact, model, planner)       | 1    |
//! | a parity check or a checkpoint validation that fails                 | 1    |
//! | usage: bad flag values, missing files or planner files given as args | 2    |

#[macro_use]
mod out;
mod cli;
mod cmd;
mod demo_dir;
mod error;
mod hub;
mod inputs;
mod planner;
mod precision;

use std::io::Write;
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
    match hub::resolve(cli.command, &cli.hub).and_then(run) {
        Ok(code) => code,
        Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr may be closed too; there is nobody left to tell then.
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
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
    }
}
