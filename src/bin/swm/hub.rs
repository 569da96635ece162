//! `--hf-repo`: fills an omitted checkpoint PATH from the local Hugging Face cache (feature `hub`).

use std::path::PathBuf;

use crate::cli::{BenchFamily, Command, HubArgs};
use crate::error::CliError;

/// Fills the PATH of commands that take a checkpoint, when it is omitted and `--hf-repo` is given. A repo that
/// is not cached, or a build without `hub`, is a usage error.
pub fn resolve(mut command: Command, hub: &HubArgs) -> Result<Command, CliError> {
    let Some(repo) = hub.hf_repo.as_deref() else { return Ok(command) };
    let slot = match &mut command {
        Command::Inspect(args) => &mut args.path,
        Command::Score(args) => &mut args.path,
        Command::Plan(args) => &mut args.path,
        Command::Convert(args) => &mut args.checkpoint,
        Command::Bench(BenchFamily::Lewm(args)) => &mut args.path,
        Command::Bench(BenchFamily::Plan(args)) => &mut args.path,
        _ => return Ok(command),
    };
    if slot.is_none() {
        *slot = Some(snapshot(repo, &hub.hf_revision)?);
    }
    Ok(command)
}

/// The cached snapshot directory of `repo` at `revision`.
#[cfg(feature = "hub")]
fn snapshot(repo: &str, revision: &str) -> Result<PathBuf, CliError> {
    swm::hub::resolve_checkpoint(repo, Some(revision), None).map_err(|e| CliError::usage(format!("--hf-repo: {e}")))
}

/// Without the `hub` feature there is no cache to read.
#[cfg(not(feature = "hub"))]
fn snapshot(repo: &str, _revision: &str) -> Result<PathBuf, CliError> {
    Err(CliError::usage(format!("--hf-repo `{repo}`: this build has no `hub` feature (cargo build --features hub)")))
}
