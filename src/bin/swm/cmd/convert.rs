//! `swm convert`: a checkpoint into a validated deployment artifact (host only).

use std::process::ExitCode;

use swm::artifact::{self, Checkpoint};

use crate::cli::{existing, ConvertArgs};
use crate::error::CliError;

/// Validates the checkpoint's weights against its model, writes the artifact to `--out` and reopens it.
pub fn run(args: ConvertArgs) -> Result<ExitCode, CliError> {
    let path =
        args.checkpoint.as_deref().ok_or_else(|| CliError::usage("convert: give a checkpoint PATH or --hf-repo"))?;
    let checkpoint = Checkpoint::open(existing(path, "checkpoint")?)?;
    let artifact = artifact::convert(&checkpoint, &args.load.options(), &args.out, None)?;
    outln!(
        "wrote {} ({} model, action_dim {})",
        args.out.display(),
        artifact.schema.family,
        artifact.schema.action_dim
    );
    Ok(ExitCode::SUCCESS)
}
