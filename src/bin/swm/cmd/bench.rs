//! `swm bench`: benchmark rows, printed as they finish and written with `--json`. Row names are stable (scripts
//! and docs/benchmarks.md parse them).

mod gemm;
mod lewm;
mod media;
mod plan;
mod tdmpc2;
mod train;

use std::process::ExitCode;

use swm::tools::bench::BenchRow;

use crate::cli::BenchFamily;
use crate::error::CliError;

/// Runs one family of rows.
pub fn run(family: BenchFamily) -> Result<ExitCode, CliError> {
    let (rows, report) = match family {
        BenchFamily::Lewm(args) => (lewm::run(&args)?, args.report),
        BenchFamily::Gemm(args) => (gemm::run(&args)?, args.report),
        BenchFamily::Tdmpc2(args) => (tdmpc2::run(&args)?, args.report),
        BenchFamily::Plan(args) => (plan::run(&args)?, args.report),
        BenchFamily::Media(args) => (media::run(&args)?, args.report),
        BenchFamily::Train(args) => (train::run(&args)?, args.report),
    };
    report.write(&rows)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a finished row and keeps it.
fn keep(rows: &mut Vec<BenchRow>, row: BenchRow) -> Result<(), CliError> {
    outln!("{row}");
    rows.push(row);
    Ok(())
}
