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

/// `--profile`: `work` twice, then once between cuProfilerStart and cuProfilerStop with the stream synchronised on
/// both sides, for `ncu --profile-from-start off` or `nsys --capture-range=cudaProfilerApi`; prints `profiled {what}`.
fn profile_once(
    device: &candle_core::Device,
    what: &str,
    mut work: impl FnMut() -> Result<(), CliError>,
) -> Result<(), CliError> {
    let candle_core::Device::Cuda(cuda) = device else {
        return Err(CliError::usage("--profile: needs a CUDA device"));
    };
    let driver = |e: cudarc::driver::DriverError| CliError::from(swm::Error::from(e));
    for _ in 0..2 {
        work()?;
    }
    let stream = cuda.cuda_stream();
    stream.synchronize().map_err(driver)?;
    cudarc::driver::safe::profiler_start().map_err(driver)?;
    work()?;
    stream.synchronize().map_err(driver)?;
    cudarc::driver::safe::profiler_stop().map_err(driver)?;
    outln!("profiled {what}");
    Ok(())
}

/// Prints a finished row and keeps it.
fn keep(rows: &mut Vec<BenchRow>, row: BenchRow) -> Result<(), CliError> {
    outln!("{row}");
    rows.push(row);
    Ok(())
}
