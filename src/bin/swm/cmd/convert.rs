//! `swm convert`: a checkpoint into a validated deployment artifact (host only).

use std::process::ExitCode;

use swm::artifact::{self, Artifact, Checkpoint};

use crate::cli::{existing, ConvertArgs};
use crate::error::CliError;

/// Validates the checkpoint's weights against its model, writes the artifact to `--out` and reopens it.
pub fn run(args: ConvertArgs) -> Result<ExitCode, CliError> {
    let path =
        args.checkpoint.as_deref().ok_or_else(|| CliError::usage("convert: give a checkpoint PATH or --hf-repo"))?;
    let checkpoint = Checkpoint::open(existing(path, "checkpoint")?)?;
    let mut artifact = artifact::convert(&checkpoint, &args.load.options(), &args.out, None)?;
    let matmul = args.matmul.precision();
    if matmul != artifact.schema.matmul {
        artifact.schema.matmul = matmul;
        Artifact::write_metadata(&args.out, &artifact.preprocess, &artifact.schema)?;
        artifact = Artifact::open(&args.out)?;
    }
    outln!(
        "wrote {} ({} model, action_dim {}{})",
        args.out.display(),
        artifact.schema.family,
        artifact.schema.action_dim,
        if matmul == swm::artifact::MatmulPrecision::Tf32 { ", TF32 matmuls" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
