//! `swm inspect`: family, config summary, weight verification and tensor table of an artifact, a checkpoint or a
//! weights file (host only). The file's tensor table is compared with the model's before any tensor data is read;
//! the values (finite, variances ≥ 0) are checked only when the table matches.

use std::path::Path;
use std::process::ExitCode;

use swm::artifact::{Artifact, Checkpoint};
use swm::checkpoint::WeightsFile;
use swm::config::ModelConfig;

use crate::cli::{existing, InspectArgs};
use crate::demo_dir::DemoDir;
use crate::error::CliError;

/// Tensors listed without `--all`.
const TENSOR_LIMIT: usize = 40;

/// Prints the report; fails (exit 1) after printing it when the weights do not match the model.
pub fn run(args: InspectArgs) -> Result<ExitCode, CliError> {
    let demo;
    let path: &Path = match &args.path {
        Some(p) => existing(p, "PATH")?,
        None => {
            demo = DemoDir::create()?;
            outln!("(the embedded demo artifact)");
            demo.path()
        }
    };
    // Any `schema.json` entry (even a directory or a dangling link) makes it an artifact, whose opening says
    // what is wrong with it.
    let is_artifact = path.is_dir() && std::fs::symlink_metadata(path.join("schema.json")).is_ok();
    let checkpoint = if is_artifact { Artifact::open(path)?.checkpoint } else { Checkpoint::open(path)? };
    let weights = checkpoint.weights_file(&args.load.options())?;
    outln!("path:        {}", path.display());
    outln!("kind:        {}", if is_artifact { "deployment artifact" } else { "checkpoint" });
    outln!("family:      {}", checkpoint.config.family());
    outln!("weights:     {}", checkpoint.weights.display());
    match &checkpoint.config {
        ModelConfig::Lewm(cfg) => {
            let vit = cfg.encoder.dims()?;
            outln!(
                "encoder:     ViT {}x{} patch {} width {} layers {} heads {}",
                vit.image,
                vit.image,
                vit.patch,
                vit.hidden,
                vit.layers,
                vit.heads
            );
            let p = &cfg.predictor;
            outln!(
                "predictor:   frames {} width {} depth {} heads {}x{} mlp {}",
                p.num_frames,
                p.hidden_dim,
                p.depth,
                p.heads,
                p.dim_head,
                p.mlp_dim
            );
            outln!(
                "actions:     block dim {} -> embedding {}",
                cfg.action_encoder.input_dim,
                cfg.action_encoder.emb_dim
            );
        }
        ModelConfig::Tdmpc2(cfg) => {
            let encoding: Vec<String> = cfg.wm.encoding.0.iter().map(|(k, w)| format!("{k}->{w}")).collect();
            outln!(
                "encoding:    {} (latent {}, SimNorm groups of {})",
                encoding.join(", "),
                cfg.latent_dim(),
                cfg.wm.simnorm_dim
            );
            let wm = &cfg.wm;
            outln!(
                "heads:       mlp {} actions {} Q x{} bins {} over [{}, {}] discount {}",
                wm.mlp_dim,
                cfg.action_dim,
                wm.num_q,
                wm.num_bins,
                wm.vmin,
                wm.vmax,
                wm.discount
            );
        }
    }
    // The table first; the data only when the table matches the model.
    let table = checkpoint.parameter_table()?;
    let validation = weights.check(&table).and_then(|()| weights.read_raw()?.validate(&table));
    match &validation {
        Ok(()) => outln!("validation:  ok (every parameter present with the expected shape, finite values)"),
        Err(e) => outln!("validation:  FAILED: {e}"),
    }
    tensor_table(&weights, args.all)?;
    validation?;
    Ok(ExitCode::SUCCESS)
}

/// The parameter count and the tensors (the first [`TENSOR_LIMIT`] unless `all`).
fn tensor_table(weights: &WeightsFile, all: bool) -> Result<(), CliError> {
    outln!("parameters:  {} in {} tensors", weights.parameter_count(), weights.len());
    let limit = if all { usize::MAX } else { TENSOR_LIMIT };
    for (i, (key, t)) in weights.table().enumerate() {
        if i == limit {
            outln!("  ... {} more (--all)", weights.len() - limit);
            break;
        }
        outln!("  {:<64} {:>5} {:?}", key, t.dtype, t.shape);
    }
    Ok(())
}
