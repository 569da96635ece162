//! `swm demo`: the embedded demo artifact written to a directory (host only).

use std::process::ExitCode;

use swm::tools::demo;

use crate::cli::DemoArgs;
use crate::error::CliError;

/// Writes the demo artifact to `--out`.
pub fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    demo::write_artifact(&args.out)?;
    outln!("wrote the demo artifact to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
