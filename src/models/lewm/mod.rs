//! LeWM (LeWorldModel): a ViT-Tiny JEPA world model with an AdaLN-zero action-conditioned predictor
//! (spec `docs/spec/lewm.md`). Parameter names mirror the upstream `state_dict()` so public checkpoints load unchanged.
//!
//! - [`LeWm`] holds the weights on the GPU and exposes encode / action embedding / predict / rollout / goal cost.
//! - [`LeWmSession`] caches the encoded observation history and the goal embedding and scores candidate batches
//!   `[batch, samples, horizon, action_dim]` without re-encoding anything.

mod config;
mod heads;
mod predictor;
mod vit;

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;

pub use config::{
    legacy_vit_key, ActionEncoderConfig, Config, EncoderConfig, MlpConfig, Norm, PredictorConfig, VitDims,
};
pub use heads::{ActionEncoder, Mlp};
pub use predictor::Predictor;
pub use vit::VitEncoder;

use crate::checkpoint::StateDict;
use crate::error::{Error, Result};
use crate::graph::CapturedGraph;

/// How `rollout` pairs actions with context frames (docs/spec/lewm.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum RolloutSemantics {
    /// PyPI `stable-worldmodel==0.1.1`: the first H steps of each candidate are the actions paired with the H
    /// context frames; a candidate of Ttot steps yields Ttot − H + 1 predictions.
    #[default]
    #[serde(rename = "0.1.1")]
    Release011,
    /// Upstream HEAD: executed `action_history` (H − 1 blocks) + strictly future candidates (T predictions).
    #[serde(rename = "head")]
    Head,
}

impl std::str::FromStr for RolloutSemantics {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "0.1.1" | "release" => Ok(Self::Release011),
            "head" => Ok(Self::Head),
            other => Err(format!("unknown rollout semantics `{other}` (0.1.1 or head)")),
        }
    }
}

/// The LeWM model on a CUDA device (fp32).
#[derive(Debug, Clone)]
pub struct LeWm {
    config: Config,
    encoder: VitEncoder,
    projector: Option<Mlp>,
    predictor: Predictor,
    action_encoder: ActionEncoder,
    pred_proj: Option<Mlp>,
    device: Device,
}

impl LeWm {
    /// Builds the model from a `VarBuilder` rooted at the state-dict root.
    pub fn load(config: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let dims = config.encoder.dims().map_err(candle_core::Error::wrap)?;
        Ok(Self {
            encoder: VitEncoder::load(&dims, vb.pp("encoder"))?,
            projector: config.projector.as_ref().map(|c| Mlp::load(c, vb.pp("projector"))).transpose()?,
            predictor: Predictor::load(&config.predictor, config.predictor_has_out_proj(), vb.pp("predictor"))?,
            action_encoder: ActionEncoder::load(&config.action_encoder, vb.pp("action_encoder"))?,
            pred_proj: config.pred_proj.as_ref().map(|c| Mlp::load(c, vb.pp("pred_proj"))).transpose()?,
            device: vb.device().clone(),
            config: config.clone(),
        })
    }

    /// Validates `weights` against the config's parameter table (accepting both ViT key layouts), uploads them
    /// to `device` and builds the model. Errors name the missing/misshaped tensor.
    pub fn from_state_dict(config: &Config, weights: &StateDict, device: &Device) -> Result<Self> {
        let mut weights = weights.clone();
        weights.rename_keys(legacy_vit_key)?;
        weights.validate(&config.parameter_table()?)?;
        let vb = weights.to_var_builder(DType::F32, device)?;
        Ok(Self::load(config, vb)?)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Embedding dim D.
    pub fn embed_dim(&self) -> usize {
        self.config.embed_dim()
    }

    /// Action-block dim A_in.
    pub fn action_dim(&self) -> usize {
        self.config.action_encoder.input_dim
    }

    /// Rollout window (predictor `num_frames`).
    pub fn history_size(&self) -> usize {
        self.predictor.num_frames()
    }

    /// `encode`: (B, T, 3, H, W) preprocessed frames -> (B, T, D) embeddings.
    pub fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = pixels.dims5().map_err(|_| {
            Error::invalid_input("pixels", format!("expected (B, T, 3, H, W), got {:?}", pixels.dims()))
        })?;
        if c != 3 {
            return Err(Error::invalid_input("pixels", format!("expected 3 channels (RGB), got {c}")));
        }
        let cls = self.encoder.forward(&pixels.reshape((b * t, c, h, w))?)?;
        let emb = match &self.projector {
            Some(p) => p.forward(&cls)?,
            None => cls,
        };
        Ok(emb.reshape((b, t, ()))?)
    }

    /// Action encoder: (…, T, A_in) -> (…, T, D).
    pub fn embed_actions(&self, actions: &Tensor) -> Result<Tensor> {
        let a = actions.dim(D::Minus1)?;
        if a != self.action_dim() {
            return Err(Error::invalid_input(
                "actions",
                format!("last dim is {a}, the model takes action blocks of {}", self.action_dim()),
            ));
        }
        Ok(self.action_encoder.forward(&actions.to_dtype(DType::F32)?)?)
    }

    /// `predict`: (B, T, D) embeddings + (B, T, D) action embeddings -> (B, T, D) next-step predictions.
    pub fn predict(&self, emb: &Tensor, act_emb: &Tensor) -> Result<Tensor> {
        let out = self.predictor.forward(emb, act_emb)?;
        Ok(self.project_prediction(&out)?)
    }

    fn project_prediction(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.pred_proj {
            Some(p) => p.forward(x),
            None => Ok(x.clone()),
        }
    }

    /// Autoregressive latent rollout over a sliding window of `history_size` frames (docs/spec/lewm.md §6).
    ///
    /// `context`: (N, H, D) encoded context frames; `paired`: (N, L, D) action embeddings where index k is the
    /// block leaving frame k (context or predicted); `steps` predictions are made, so `L ≥ H + steps − 1`.
    /// Returns (N, H + steps, D) when `keep_all`, else only the last prediction (N, D).
    pub fn rollout_embeddings(
        &self,
        context: &Tensor,
        paired: &Tensor,
        steps: usize,
        history_size: usize,
        keep_all: bool,
    ) -> Result<Tensor> {
        let (_, h, _) = context.dims3()?;
        let l = paired.dim(1)?;
        if history_size == 0 || history_size > self.history_size() {
            return Err(Error::invalid_input(
                "history_size",
                format!("{history_size} is outside 1..={} (predictor num_frames)", self.history_size()),
            ));
        }
        if steps == 0 || l + 1 < h + steps {
            return Err(Error::invalid_input(
                "actions",
                format!("{l} action blocks cannot drive {steps} predictions from {h} context frames"),
            ));
        }
        // The AdaLN vectors of every (candidate, action block, predictor block), once for all steps.
        let table = self.predictor.modulation_table(paired)?.contiguous()?;
        // While the window grows (it starts at frame 0), earlier positions are reused from a QKV cache and only
        // the newest frame goes through the predictor; once it slides, whole windows are recomputed.
        let mut cache = if h < history_size && steps > 1 {
            Some(self.predictor.window_cache(context.dim(0)?, &self.device)?)
        } else {
            None
        };
        let mut frames: Vec<Tensor> = (0..h).map(|i| context.narrow(1, i, 1)).collect::<candle_core::Result<_>>()?;
        for t in 0..steps {
            let end = h + t;
            let lo = end.saturating_sub(history_size);
            let cached = cache.as_ref().map_or(0, |c| c.len());
            let last = if lo == 0 && cached > 0 {
                self.predictor.forward_window_last(&frames[end - 1], &table, 0, end - 1, cache.as_mut())?
            } else {
                let window = Tensor::cat(&frames[lo..end], 1)?;
                let keep = if lo == 0 { cache.as_mut() } else { None };
                self.predictor.forward_window_last(&window, &table, lo, 0, keep)?
            };
            frames.push(self.project_prediction(&last)?.unsqueeze(1)?);
        }
        if keep_all {
            Ok(Tensor::cat(&frames, 1)?)
        } else {
            Ok(frames[frames.len() - 1].squeeze(1)?)
        }
    }

    /// The reference (unfused) rollout: the predictor's full forward per window, for tests of the fused path.
    pub fn rollout_embeddings_reference(
        &self,
        context: &Tensor,
        paired: &Tensor,
        steps: usize,
        history_size: usize,
    ) -> Result<Tensor> {
        let h = context.dim(1)?;
        let mut frames: Vec<Tensor> = (0..h).map(|i| context.narrow(1, i, 1)).collect::<candle_core::Result<_>>()?;
        for t in 0..steps {
            let end = h + t;
            let lo = end.saturating_sub(history_size);
            let window = Tensor::cat(&frames[lo..end], 1)?;
            let actions = paired.narrow(1, lo, end - lo)?;
            let out = self.predictor.forward(&window, &actions)?;
            let last = out.narrow(1, end - lo - 1, 1)?;
            frames.push(self.project_prediction(&last)?);
        }
        Ok(Tensor::cat(&frames, 1)?)
    }

    /// Goal cost: Σ_d (pred[b, s, d] − goal[b, d])² for `pred` (B, S, D) and `goal` (B, D) -> (B, S).
    pub fn goal_cost(pred: &Tensor, goal: &Tensor) -> Result<Tensor> {
        Ok(pred.broadcast_sub(&goal.unsqueeze(1)?)?.sqr()?.sum(D::Minus1)?)
    }
}

/// A planning session: the encoded observation history and goal embedding, cached on the GPU.
#[derive(Debug)]
pub struct LeWmSession {
    model: Arc<LeWm>,
    semantics: RolloutSemantics,
    history_size: usize,
    /// (B, H, D)
    context: Option<Tensor>,
    /// (B, D): the last goal frame's embedding.
    goal: Option<Tensor>,
    /// (B, H − 1, A_in), HEAD semantics only.
    action_history: Option<Tensor>,
    /// Captured scoring graph for the last candidate shape (see [`LeWmSession::score_graphed`]).
    score_graph: Option<ScoreGraph>,
    /// Bumped whenever a cached tensor is reallocated (see [`crate::planning::CandidateScorer::revision`]).
    revision: u64,
}

/// A captured scoring rollout and the persistent buffers it reads and writes.
#[derive(Debug)]
struct ScoreGraph {
    /// The session revision (cached tensors the graph reads) it was captured at.
    revision: u64,
    /// Input buffer; its shape is the candidate shape the graph was captured for.
    candidates: Tensor,
    cost: Tensor,
    graph: CapturedGraph,
}

/// Stores `value` into `slot` in place when the shape is unchanged, so that captured graphs keep reading it;
/// bumps `revision` when the slot had to be reallocated.
fn store(slot: &mut Option<Tensor>, value: &Tensor, revision: &mut u64) -> Result<()> {
    let value = value.contiguous()?;
    match slot {
        Some(existing) if existing.dims() == value.dims() && existing.dtype() == value.dtype() => {
            existing.slice_set(&value, 0, 0)?;
        }
        _ => {
            *slot = Some(value.copy()?);
            *revision = crate::planning::next_revision();
        }
    }
    Ok(())
}

impl LeWmSession {
    /// A session with the model's own window (`predictor.num_frames`).
    pub fn new(model: Arc<LeWm>, semantics: RolloutSemantics) -> Self {
        let history_size = model.history_size();
        Self {
            model,
            semantics,
            history_size,
            context: None,
            goal: None,
            action_history: None,
            score_graph: None,
            revision: crate::planning::next_revision(),
        }
    }

    /// Overrides the rollout window (1..=num_frames).
    pub fn with_history_size(mut self, history_size: usize) -> Self {
        self.history_size = history_size;
        self
    }

    /// The model.
    pub fn model(&self) -> &Arc<LeWm> {
        &self.model
    }

    /// Encodes and caches the context frames (B, H, 3, Hi, Wi).
    pub fn set_observation(&mut self, pixels: &Tensor) -> Result<()> {
        let emb = self.model.encode(pixels)?;
        store(&mut self.context, &emb, &mut self.revision)
    }

    /// Caches already-encoded context embeddings (B, H, D).
    pub fn set_observation_embeddings(&mut self, emb: Tensor) -> Result<()> {
        let d = emb.dim(D::Minus1)?;
        if emb.rank() != 3 || d != self.model.embed_dim() {
            return Err(Error::invalid_input(
                "emb",
                format!("expected (B, H, {}), got {:?}", self.model.embed_dim(), emb.dims()),
            ));
        }
        store(&mut self.context, &emb, &mut self.revision)
    }

    /// Encodes the goal frames (B, Tg, 3, Hi, Wi) and caches the last frame's embedding.
    pub fn set_goal(&mut self, goal_pixels: &Tensor) -> Result<Tensor> {
        let emb = self.model.encode(goal_pixels)?;
        let tg = emb.dim(1)?;
        store(&mut self.goal, &emb.narrow(1, tg - 1, 1)?.squeeze(1)?, &mut self.revision)?;
        Ok(emb)
    }

    /// Executed action blocks between the context frames, (B, H − 1, A_in); HEAD semantics only.
    pub fn set_action_history(&mut self, history: &Tensor) -> Result<()> {
        store(&mut self.action_history, history, &mut self.revision)
    }

    fn context(&self) -> Result<&Tensor> {
        self.context
            .as_ref()
            .ok_or_else(|| Error::invalid_input("session", "no observation set (call set_observation)"))
    }

    /// Rolls every candidate out; returns all predicted embeddings (B, S, K, D) when `keep_all`, else the last
    /// prediction (B, S, D).
    pub fn rollout(&self, candidates: &Tensor, keep_all: bool) -> Result<Tensor> {
        let context = self.context()?;
        let (b, h, d) = context.dims3()?;
        let (cb, s, t, a) = candidates.dims4().map_err(|_| {
            Error::invalid_input("candidates", format!("expected (B, S, T, A), got {:?}", candidates.dims()))
        })?;
        if cb != b {
            return Err(Error::invalid_input("candidates", format!("batch {cb} != observation batch {b}")));
        }
        if a != self.model.action_dim() {
            return Err(Error::invalid_input(
                "candidates",
                format!("action dim {a} != model action dim {}", self.model.action_dim()),
            ));
        }
        let n = b * s;
        let (paired, steps) = match self.semantics {
            RolloutSemantics::Release011 => {
                if t < h {
                    return Err(Error::invalid_input(
                        "candidates",
                        format!("0.1.1 semantics: {t} steps cannot cover the {h} context actions at the front"),
                    ));
                }
                (candidates.reshape((n, t, a))?, t - h + 1)
            }
            RolloutSemantics::Head => {
                let past = match (&self.action_history, h) {
                    (_, 1) => None,
                    (Some(hist), _) => {
                        if hist.dims() != [b, h - 1, a] {
                            return Err(Error::invalid_input(
                                "action_history",
                                format!("expected ({b}, {}, {a}), got {:?}", h - 1, hist.dims()),
                            ));
                        }
                        Some(hist.unsqueeze(1)?.broadcast_as((b, s, h - 1, a))?.reshape((n, h - 1, a))?)
                    }
                    (None, _) => {
                        return Err(Error::invalid_input(
                            "action_history",
                            format!("HEAD semantics with {h} context frames needs {} executed action blocks", h - 1),
                        ))
                    }
                };
                let future = candidates.reshape((n, t, a))?;
                let all = match past {
                    Some(p) => Tensor::cat(&[&p, &future], 1)?,
                    None => future,
                };
                (all, t)
            }
        };
        let act_emb = self.model.embed_actions(&paired)?;
        let ctx = context.unsqueeze(1)?.broadcast_as((b, s, h, d))?.reshape((n, h, d))?;
        let out = self.model.rollout_embeddings(&ctx, &act_emb, steps, self.history_size, keep_all)?;
        if keep_all {
            let k = out.dim(1)?;
            Ok(out.reshape((b, s, k, d))?)
        } else {
            Ok(out.reshape((b, s, d))?)
        }
    }

    /// Goal cost of every candidate (B, S), device-resident.
    pub fn score(&self, candidates: &Tensor) -> Result<Tensor> {
        self.context()?;
        let goal = self.goal.as_ref().ok_or_else(|| Error::invalid_input("session", "no goal set (call set_goal)"))?;
        let last = self.rollout(candidates, false)?;
        LeWm::goal_cost(&last, goal)
    }

    /// [`LeWmSession::score`] replayed from a CUDA graph: the first call for a candidate shape validates,
    /// warms up and captures the rollout; later calls copy the candidates into the graph's input buffer and
    /// launch it. Observation and goal updates of the same shape are picked up (they are stored in place).
    ///
    /// The returned (B, S) costs live in the graph's output buffer: read or copy them before the next call.
    pub fn score_graphed(&mut self, candidates: &Tensor) -> Result<&Tensor> {
        // Compared without allocating: this runs on every control step.
        let revision = self.revision;
        let stale = self
            .score_graph
            .as_ref()
            .is_none_or(|g| g.revision != revision || g.candidates.dims() != candidates.dims());
        if stale {
            self.score_graph = None;
            // Validates shapes eagerly, with errors that name the input, before anything is captured.
            let cost = self.score(candidates)?;
            let input = candidates.to_dtype(DType::F32)?.copy()?;
            let output = cost.zeros_like()?;
            let graph = CapturedGraph::capture(self.model.device(), || -> Result<()> {
                let cost = self.score(&input)?;
                Ok(output.slice_set(&cost, 0, 0)?)
            })?;
            self.score_graph = Some(ScoreGraph { revision, candidates: input, cost: output, graph });
        }
        let g = self.score_graph.as_ref().ok_or_else(|| Error::invalid_input("graph", "capture failed"))?;
        g.candidates.slice_set(&candidates.to_dtype(DType::F32)?.contiguous()?, 0, 0)?;
        g.graph.launch()?;
        Ok(&g.cost)
    }
}

impl crate::planning::CandidateScorer for LeWmSession {
    fn score(&mut self, candidates: &Tensor) -> Result<Tensor> {
        LeWmSession::score(self, candidates)
    }

    fn revision(&self) -> u64 {
        self.revision
    }
}

/// `encode` of a fixed (B, T) frame batch replayed from a CUDA graph.
#[derive(Debug)]
pub struct GraphedEncoder {
    input: Tensor,
    output: Tensor,
    graph: CapturedGraph,
}

impl GraphedEncoder {
    /// Captures `model.encode` for (batch, frames) frames of the model's input size.
    pub fn new(model: &LeWm, batch: usize, frames: usize) -> Result<Self> {
        let side = model.config().encoder.image_size;
        let input = Tensor::zeros((batch, frames, 3, side, side), DType::F32, model.device())?;
        let output = Tensor::zeros((batch, frames, model.embed_dim()), DType::F32, model.device())?;
        let graph = CapturedGraph::capture(model.device(), || -> Result<()> {
            let emb = model.encode(&input)?;
            Ok(output.slice_set(&emb, 0, 0)?)
        })?;
        Ok(Self { input, output, graph })
    }

    /// Encodes `pixels` (the captured shape); the returned embeddings live in the graph's output buffer
    /// until the next call.
    pub fn encode(&self, pixels: &Tensor) -> Result<&Tensor> {
        if pixels.dims() != self.input.dims() {
            return Err(Error::invalid_input(
                "pixels",
                format!("graph captured for {:?}, got {:?}", self.input.dims(), pixels.dims()),
            ));
        }
        self.input.slice_set(&pixels.to_dtype(DType::F32)?.contiguous()?, 0, 0)?;
        self.graph.launch()?;
        Ok(&self.output)
    }
}
