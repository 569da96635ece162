//! One planning session over every model family, built from a deployment artifact.
//!
//! A [`Session`] holds a model on the GPU (LeWM or TD-MPC2) and the state a control loop feeds it: the encoded
//! observation context, the goal (LeWM), the artifact's preprocessing and action description. It scores candidate
//! action sequences for the planners ([`CandidateScorer`]) and proposes their initial mean (TD-MPC2's actor).
//!
//! Observations are named after the artifact's `schema.json`: every modality of the schema must be given, each as
//! raw RGB frames (`u8`, normalised here with the artifact's mean/std by our fused kernel), already-normalised
//! pixels (`f32`) or a state vector (`f32`). Inputs may live on the host (uploaded once) or on the session's device.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::artifact::{Artifact, MatmulPrecision, ObservationKind, Preprocess, Schema};
use crate::checkpoint::LoadOptions;
use crate::config::{Family, ModelConfig};
use crate::error::{Error, Result};
use crate::media::nvjpeg;
use crate::models::lewm::{LeWm, LeWmSession, RolloutSemantics};
use crate::models::tdmpc2::{ActorPrior, TdMpc2, TdMpc2Session};
use crate::ops::{frame_into, normalize_rgb_frames, FrameLayout, PixelFormat, ResizeTable};
use crate::planning::{ActionBounds, CandidateScorer};

/// One modality of an observation.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Raw RGB frames, `u8` (B, H, W, 3) — one frame per env — or (B, T, H, W, 3); normalised with the artifact's
    /// `preprocess.json` statistics on the GPU.
    Frames(&'a Tensor),
    /// Already-normalised pixels, `f32` (B, 3, H, W) or (B, T, 3, H, W).
    Pixels(&'a Tensor),
    /// A state vector per env, `f32` (B, d).
    State(&'a Tensor),
    /// Decoded camera frames of any size and pixel format (packed RGB/BGR/RGBA/BGRA with a pitch, or NV12): `u8`
    /// (B, [T,] bytes), each row one frame laid out as `FrameLayout` says. Converted, normalised and resized as
    /// upstream's `Resize` does, in one kernel.
    Image(&'a Tensor, FrameLayout),
    /// JPEG files, one per env, decoded on the GPU (nvJPEG) and preprocessed like [`Input::Image`].
    Jpeg(&'a [&'a [u8]]),
}

/// A named set of inputs, one per modality of the artifact's schema.
#[derive(Debug, Clone, Default)]
pub struct Observation<'a> {
    inputs: Vec<(&'a str, Input<'a>)>,
}

impl<'a> Observation<'a> {
    /// An empty observation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds raw RGB frames under `name` (see [`Input::Frames`]).
    pub fn frames(mut self, name: &'a str, frames: &'a Tensor) -> Self {
        self.inputs.push((name, Input::Frames(frames)));
        self
    }

    /// Adds normalised pixels under `name` (see [`Input::Pixels`]).
    pub fn pixels(mut self, name: &'a str, pixels: &'a Tensor) -> Self {
        self.inputs.push((name, Input::Pixels(pixels)));
        self
    }

    /// Adds decoded frames of any size and format under `name` (see [`Input::Image`]).
    pub fn image(mut self, name: &'a str, frames: &'a Tensor, layout: FrameLayout) -> Self {
        self.inputs.push((name, Input::Image(frames, layout)));
        self
    }

    /// Adds JPEG files, one per env, under `name` (see [`Input::Jpeg`]).
    pub fn jpeg(mut self, name: &'a str, files: &'a [&'a [u8]]) -> Self {
        self.inputs.push((name, Input::Jpeg(files)));
        self
    }

    /// Adds a state vector under `name` (see [`Input::State`]).
    pub fn state(mut self, name: &'a str, state: &'a Tensor) -> Self {
        self.inputs.push((name, Input::State(state)));
        self
    }

    /// The inputs in the order they were added.
    pub fn inputs(&self) -> &[(&'a str, Input<'a>)] {
        &self.inputs
    }

    fn get(&self, name: &str) -> Option<Input<'a>> {
        self.inputs.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
    }
}

/// How a session is set up beyond what the artifact says.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// LeWM rollout semantics (default `0.1.1`, the released package's).
    pub semantics: RolloutSemantics,
    /// LeWM: context frames kept (the newest `history` frames observed, 1 ..= the predictor's `num_frames`).
    /// Default 1: each step plans from the latest frame.
    pub history: usize,
    /// TD-MPC2: how the actor proposes the planner's initial mean.
    pub prior: ActorPrior,
    /// TD-MPC2: seed of the sampled actor prior.
    pub seed: u64,
    /// How to read the weights.
    pub load: LoadOptions,
    /// Matmul precision; `None`: the artifact's (`schema.json`'s `matmul`, f32 when absent).
    pub matmul: Option<MatmulPrecision>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            semantics: RolloutSemantics::Release011,
            history: 1,
            prior: ActorPrior::default(),
            seed: 0,
            load: LoadOptions::default(),
            matmul: None,
        }
    }
}

/// The model-specific part of a [`Session`].
#[derive(Debug)]
enum Model {
    Lewm {
        session: LeWmSession,
        /// Encoded context (B, T ≤ history, D) the session was last given.
        context: Option<Tensor>,
        history: usize,
    },
    Tdmpc2(TdMpc2Session),
}

/// A planning session over a LeWM or TD-MPC2 model (see the module docs). Owned by one thread: the sessions cache
/// CUDA graphs, which must be launched from the thread that captured them.
#[derive(Debug)]
pub struct Session {
    model: Model,
    schema: Schema,
    preprocess: Preprocess,
    device: Device,
    media: MediaCache,
}

/// What preprocessing camera frames needs across steps: resize tables per frame geometry, nvJPEG decoders.
#[derive(Default)]
struct MediaCache {
    /// Most recently used first; a handful of geometries at most.
    tables: Vec<ResizeTable>,
    /// nvJPEG on the hardware engines (created on the first JPEG), and the default backend for what they refuse.
    hardware: Option<nvjpeg::Decoder>,
    fallback: Option<nvjpeg::Decoder>,
}

impl std::fmt::Debug for MediaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaCache").field("tables", &self.tables.len()).finish()
    }
}

/// Resize tables kept per session (distinct camera geometries).
const MAX_TABLES: usize = 8;

impl MediaCache {
    /// The resize table for `h × w` frames to a model of `size` (shorter side).
    fn table(&mut self, h: usize, w: usize, size: usize, device: &Device) -> Result<&ResizeTable> {
        match self.tables.iter().position(|t| t.source() == (h, w)) {
            Some(i) => self.tables[..=i].rotate_right(1),
            None => {
                let table = ResizeTable::shorter_side(h, w, size, device)?;
                self.tables.insert(0, table);
                self.tables.truncate(MAX_TABLES);
            }
        }
        Ok(&self.tables[0])
    }

    /// Decodes the JPEGs of one observation to their planar components on `device`'s stream
    /// (`nvjpeg::Decoder::decode_planar_batch`: one hardware batch; the kernel finishes the decode as
    /// libjpeg-turbo does): the hardware decoder, or nvJPEG's default backend for what the hardware refuses
    /// (progressive JPEGs).
    fn decode_jpegs(&mut self, files: &[&[u8]], device: &Device) -> Result<Vec<(Tensor, FrameLayout)>> {
        if self.hardware.is_none() {
            self.hardware = Some(nvjpeg::Decoder::new(device, nvjpeg::Backend::Hardware)?);
        }
        if let Some(hw) = self.hardware.as_mut() {
            match hw.decode_planar_batch(files) {
                // Only the hardware engines refuse what the default backend decodes (progressive JPEGs); a
                // "hardware" decoder that fell back to the default backend has nothing to retry with.
                Err(crate::media::MediaError::Unsupported { .. }) if hw.backend() == nvjpeg::Backend::Hardware => {}
                other => return Ok(other?),
            }
        }
        if self.fallback.is_none() {
            self.fallback = Some(nvjpeg::Decoder::new(device, nvjpeg::Backend::Default)?);
        }
        // One by one: the files the engines take still go to them, the rest to the default backend (a single file
        // the engines just refused goes straight to the default backend).
        let mut hardware = if files.len() > 1 { self.hardware.as_mut() } else { None };
        let fallback = self.fallback.as_mut().ok_or_else(|| Error::Internal("no JPEG decoder".into()))?;
        let mut out = Vec::with_capacity(files.len());
        for bytes in files {
            let decoded = match hardware.as_mut().map(|hw| hw.decode_planar(bytes)) {
                Some(Ok(d)) => d,
                Some(Err(crate::media::MediaError::Unsupported { .. })) | None => fallback.decode_planar(bytes)?,
                Some(Err(e)) => return Err(e.into()),
            };
            out.push(decoded);
        }
        Ok(out)
    }
}

impl Session {
    /// Builds the artifact's model on `device` (weights validated strictly against the config) and a session
    /// over it.
    ///
    /// TF32 (from `options.matmul`, else the artifact's schema) turns on TF32 mode for the whole process
    /// ([`crate::device::set_tf32`]: Candle's cuBLAS switch is process-wide) once the session is built, before
    /// any of its graphs is captured (they are captured on first use); f32
    /// leaves the process's mode as it is (e.g. `swm --tf32`). Sessions of one process therefore plan in TF32 as
    /// soon as one of them asks for it.
    pub fn open(artifact: &Artifact, device: &Device, options: &SessionOptions) -> Result<Self> {
        let checkpoint = &artifact.checkpoint;
        let weights = checkpoint.state_dict(&options.load)?;
        let session = match &checkpoint.config {
            ModelConfig::Lewm(cfg) => {
                let model = Arc::new(LeWm::from_state_dict(cfg, &weights, device)?);
                Self::lewm(model, artifact.schema.clone(), artifact.preprocess.clone(), options)?
            }
            ModelConfig::Tdmpc2(cfg) => {
                let model = Arc::new(TdMpc2::from_state_dict(cfg, &weights, device)?);
                Self::tdmpc2(model, artifact.schema.clone(), artifact.preprocess.clone(), options)?
            }
        };
        // Once the session exists (a failed open changes nothing); its graphs are captured on first use.
        if options.matmul.unwrap_or(artifact.schema.matmul) == MatmulPrecision::Tf32 {
            crate::device::set_tf32(true);
        }
        Ok(session)
    }

    /// A session over a loaded LeWM with the given interface (see [`Schema::for_lewm`], [`Preprocess::for_lewm`]).
    pub fn lewm(model: Arc<LeWm>, schema: Schema, preprocess: Preprocess, options: &SessionOptions) -> Result<Self> {
        let frames = model.history_size();
        if options.history == 0 || options.history > frames {
            return Err(Error::invalid_input(
                "history",
                format!("{} context frames; this LeWM takes 1 ..= {frames}", options.history),
            ));
        }
        check_schema(&schema, Family::Lewm, model.action_dim())?;
        let device = model.device().clone();
        let session = LeWmSession::new(model, options.semantics);
        let model = Model::Lewm { session, context: None, history: options.history };
        Ok(Self { model, schema, preprocess, device, media: MediaCache::default() })
    }

    /// A session over a loaded TD-MPC2 with the given interface (see [`Schema::for_tdmpc2`]).
    pub fn tdmpc2(
        model: Arc<TdMpc2>,
        schema: Schema,
        preprocess: Preprocess,
        options: &SessionOptions,
    ) -> Result<Self> {
        check_schema(&schema, Family::Tdmpc2, model.action_dim())?;
        let device = model.device().clone();
        let session = TdMpc2Session::new(model).with_prior(options.prior).with_seed(options.seed);
        Ok(Self { model: Model::Tdmpc2(session), schema, preprocess, device, media: MediaCache::default() })
    }

    /// The model family.
    pub fn family(&self) -> Family {
        self.schema.family
    }

    /// The interface: observation modalities and the model action dim.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Frame size, normalisation and action description.
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// The CUDA device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Model action dim (LeWM: an action block of `action_block()` env actions).
    pub fn action_dim(&self) -> usize {
        self.schema.action_dim
    }

    /// Env steps per model action (LeWM's frameskip; 1 for TD-MPC2).
    pub fn action_block(&self) -> usize {
        self.preprocess.action.block
    }

    /// Env action dim: `action_dim() / action_block()`.
    pub fn env_action_dim(&self) -> usize {
        self.schema.action_dim / self.preprocess.action.block.max(1)
    }

    /// Per-env-dim bounds of the normalised action space from `preprocess.json` (one block's worth), if any.
    pub fn action_bounds(&self) -> Result<Option<ActionBounds>> {
        let a = &self.preprocess.action;
        let (Some(low), Some(high)) = (&a.low, &a.high) else { return Ok(None) };
        let env = self.env_action_dim();
        let per_block = |v: &[f32], field: &str| -> Result<Vec<f32>> {
            if v.len() != self.schema.action_dim || v.iter().enumerate().any(|(i, x)| *x != v[i % env]) {
                return Err(Error::invalid_input(
                    format!("preprocess.action.{field}"),
                    format!("{} values; the planner needs the same {env} bounds for every block", v.len()),
                ));
            }
            Ok(v[..env].to_vec())
        };
        Ok(Some(ActionBounds { low: per_block(low, "low")?, high: per_block(high, "high")? }))
    }

    /// Replaces the observation context with `obs` (every modality of the schema). LeWM: (B, T, …) frames with
    /// T ≤ the session's history (the newest `history` are kept); TD-MPC2: one observation per env.
    pub fn set_observation(&mut self, obs: &Observation<'_>) -> Result<()> {
        if let Model::Lewm { context, .. } = &mut self.model {
            *context = None;
        }
        self.push_observation(obs)
    }

    /// Appends `obs` to the context: LeWM encodes only the new frames and keeps the newest `history` embeddings
    /// (a sliding window over the episode); TD-MPC2 encodes `obs` as the current observation.
    pub fn push_observation(&mut self, obs: &Observation<'_>) -> Result<()> {
        self.check_names(obs)?;
        match &mut self.model {
            Model::Lewm { session, context, history } => {
                let pixels =
                    image_input(&self.schema, &self.preprocess, &self.device, &mut self.media, obs, "pixels", true)?;
                let emb = session.model().encode(&pixels)?;
                let joined = match context.take() {
                    Some(old) if old.dim(0)? == emb.dim(0)? => Tensor::cat(&[&old, &emb], 1)?,
                    _ => emb,
                };
                let t = joined.dim(1)?;
                let window =
                    if t > *history { joined.narrow(1, t - *history, *history)?.contiguous()? } else { joined };
                session.set_observation_embeddings(window.clone())?;
                *context = Some(window);
                Ok(())
            }
            Model::Tdmpc2(session) => {
                let mut owned = Vec::with_capacity(self.schema.observations.len());
                for spec in &self.schema.observations {
                    let t = match spec.kind {
                        ObservationKind::State => state_input(&self.device, obs, &spec.name, spec.shape[0])?,
                        _ => image_input(
                            &self.schema,
                            &self.preprocess,
                            &self.device,
                            &mut self.media,
                            obs,
                            &spec.name,
                            false,
                        )?,
                    };
                    owned.push((spec.name.clone(), t));
                }
                let named: Vec<(&str, &Tensor)> = owned.iter().map(|(n, t)| (n.as_str(), t)).collect();
                session.set_observation(&named)
            }
        }
    }

    /// Sets the goal the plan should reach (LeWM: the embedding of the last goal frame). TD-MPC2 maximises its
    /// learned return and takes no goal: a typed error.
    pub fn set_goal(&mut self, goal: &Observation<'_>) -> Result<()> {
        if matches!(self.model, Model::Lewm { .. }) {
            self.check_names(goal)?;
        }
        match &mut self.model {
            Model::Lewm { session, .. } => {
                let pixels =
                    image_input(&self.schema, &self.preprocess, &self.device, &mut self.media, goal, "pixels", true)?;
                session.set_goal(&pixels).map(drop)
            }
            Model::Tdmpc2(_) => {
                Err(Error::invalid_input("goal", "TD-MPC2 plans for its learned return and takes no goal"))
            }
        }
    }

    /// Forgets the observation context (an episode reset). The goal is kept.
    pub fn reset(&mut self) {
        if let Model::Lewm { context, .. } = &mut self.model {
            *context = None;
        }
    }

    /// The encoded observation context: LeWM (B, T ≤ history, D) embeddings, TD-MPC2 (B, Z) latent; `None` before
    /// the first observation (or after a reset, LeWM).
    pub fn encoded_observation(&self) -> Option<&Tensor> {
        match &self.model {
            Model::Lewm { context, .. } => context.as_ref(),
            Model::Tdmpc2(s) => s.latent(),
        }
    }

    /// The LeWM session, if this is one.
    pub fn as_lewm(&self) -> Option<&LeWmSession> {
        match &self.model {
            Model::Lewm { session, .. } => Some(session),
            Model::Tdmpc2(_) => None,
        }
    }

    /// The LeWM session, mutably (e.g. `score_graphed`), if this is one.
    pub fn as_lewm_mut(&mut self) -> Option<&mut LeWmSession> {
        match &mut self.model {
            Model::Lewm { session, .. } => Some(session),
            Model::Tdmpc2(_) => None,
        }
    }

    /// The TD-MPC2 session, if this is one.
    pub fn as_tdmpc2(&self) -> Option<&TdMpc2Session> {
        match &self.model {
            Model::Tdmpc2(session) => Some(session),
            Model::Lewm { .. } => None,
        }
    }

    /// Every name in `obs` must be a modality of the schema and every modality must be given.
    fn check_names(&self, obs: &Observation<'_>) -> Result<()> {
        for (name, _) in obs.inputs() {
            if !self.schema.observations.iter().any(|s| s.name == *name) {
                let known: Vec<&str> = self.schema.observations.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::invalid_input(
                    format!("observation `{name}`"),
                    format!("not a modality of this {} artifact ({})", self.schema.family, known.join(", ")),
                ));
            }
        }
        for spec in &self.schema.observations {
            if obs.get(&spec.name).is_none() {
                return Err(Error::invalid_input(format!("observation `{}`", spec.name), "missing"));
            }
        }
        Ok(())
    }
}

impl CandidateScorer for Session {
    fn score(&mut self, candidates: &Tensor) -> Result<Tensor> {
        match &mut self.model {
            Model::Lewm { session, .. } => CandidateScorer::score(session, candidates),
            Model::Tdmpc2(session) => session.score(candidates),
        }
    }

    fn revision(&self) -> u64 {
        match &self.model {
            Model::Lewm { session, .. } => session.revision(),
            Model::Tdmpc2(session) => session.revision(),
        }
    }

    fn propose(&mut self, mean: &Tensor, from: usize) -> Result<()> {
        match &mut self.model {
            Model::Lewm { session, .. } => session.propose(mean, from),
            Model::Tdmpc2(session) => session.propose(mean, from),
        }
    }
}

/// The schema must describe this family with the model's action dim.
fn check_schema(schema: &Schema, family: Family, action_dim: usize) -> Result<()> {
    if schema.family != family || schema.action_dim != action_dim {
        return Err(Error::invalid_input(
            "schema",
            format!(
                "{} with action_dim {} does not describe this {family} model (action_dim {action_dim})",
                schema.family, schema.action_dim
            ),
        ));
    }
    Ok(())
}

/// Moves a host tensor to `device` (after checking host floats for NaN/Inf); device tensors pass through.
fn to_device(t: &Tensor, device: &Device, name: &str) -> Result<Tensor> {
    if t.device().is_cuda() {
        return Ok(t.clone());
    }
    if t.dtype().is_float() {
        let finite = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| v.is_finite());
        if !finite {
            return Err(Error::invalid_input(format!("observation `{name}`"), "holds NaN or Inf"));
        }
    }
    Ok(t.to_device(device)?)
}

/// The image modality `name` as normalised f32 pixels: (B, T, 3, H, W) when `with_time`, else (B, 3, H, W).
fn image_input(
    schema: &Schema,
    preprocess: &Preprocess,
    device: &Device,
    media: &mut MediaCache,
    obs: &Observation<'_>,
    name: &str,
    with_time: bool,
) -> Result<Tensor> {
    let field = || format!("observation `{name}`");
    let [h, w] = preprocess.image_size;
    // (N, 3, h', w') pixels to (B, T, 3, h', w') (`with_time`) or (B, 3, h', w').
    let finish = |pixels: Tensor, lead: &[usize]| -> Result<Tensor> {
        let (b, t) = (lead.first().copied().unwrap_or(0), lead.get(1).copied().unwrap_or(1));
        if b == 0 || t == 0 {
            return Err(Error::invalid_input(field(), "empty batch"));
        }
        let (_, _, ph, pw) = pixels.dims4()?;
        if with_time {
            Ok(pixels.reshape((b, t, 3, ph, pw))?)
        } else if t == 1 {
            Ok(pixels.reshape((b, 3, ph, pw))?)
        } else {
            Err(Error::invalid_input(field(), "this model takes one frame per env"))
        }
    };
    let spec = schema.observations.iter().find(|s| s.name == name).map(|s| s.shape.as_slice());
    if spec.is_some_and(|s| s != [3, h, w]) {
        return Err(Error::invalid_input(field(), format!("schema shape {spec:?} is not [3, {h}, {w}]")));
    }
    let input = obs.get(name).ok_or_else(|| Error::invalid_input(field(), "missing"))?;
    let (pixels, dims) = match input {
        Input::Frames(f) => {
            if f.dtype() != DType::U8 {
                return Err(Error::invalid_input(field(), format!("frames must be u8 RGB, got {:?}", f.dtype())));
            }
            let dims = f.dims().to_vec();
            let (lead, tail) = match dims.as_slice() {
                [b, fh, fw, 3] => (vec![*b], [*fh, *fw]),
                [b, t, fh, fw, 3] => (vec![*b, *t], [*fh, *fw]),
                _ => {
                    return Err(Error::invalid_input(
                        field(),
                        format!("expected (B, [T,] H, W, 3) frames, got {dims:?}"),
                    ))
                }
            };
            let n: usize = lead.iter().product();
            if tail != [h, w] {
                // Another size: resized as upstream does, by the fused kernel.
                let layout = FrameLayout::packed(PixelFormat::Rgb, tail[1], tail[0]);
                let flat = to_device(f, device, name)?.reshape((n, tail[0] * tail[1] * 3))?;
                return finish(resized(&flat, &layout, preprocess, media, device, &field)?, &lead);
            }
            let flat = to_device(f, device, name)?.reshape((n, h, w, 3))?;
            let normalized = normalize_rgb_frames(&flat, &preprocess.normalization)?;
            (normalized.reshape((n, 3, h, w))?, lead)
        }
        Input::Image(f, layout) => {
            if f.dtype() != DType::U8 || !matches!(f.rank(), 2 | 3) {
                return Err(Error::invalid_input(
                    field(),
                    format!("expected u8 (B, [T,] bytes) frames, got {:?} {:?}", f.dtype(), f.dims()),
                ));
            }
            let dims = f.dims();
            let lead = dims[..dims.len() - 1].to_vec();
            let flat = to_device(f, device, name)?.reshape((lead.iter().product::<usize>(), dims[dims.len() - 1]))?;
            return finish(resized(&flat, &layout, preprocess, media, device, &field)?, &lead);
        }
        Input::Jpeg(files) => {
            let decoded = media.decode_jpegs(files, device)?;
            let Some(first) = decoded.first() else {
                return Err(Error::invalid_input(field(), "no JPEG given"));
            };
            let size = |l: &FrameLayout| (l.width, l.height);
            if decoded.iter().any(|(_, l)| size(l) != size(&first.1)) {
                return Err(Error::invalid_input(field(), "the JPEGs of one observation must have one size"));
            }
            // Each frame with its own layout (the files may differ in chroma sampling).
            return finish(resize_frames(&decoded, preprocess, media, device, &field)?, &[files.len()]);
        }
        Input::Pixels(p) => {
            let dims = p.dims().to_vec();
            let lead = match dims.as_slice() {
                [b, 3, ph, pw] if [*ph, *pw] == [h, w] => vec![*b],
                [b, t, 3, ph, pw] if [*ph, *pw] == [h, w] => vec![*b, *t],
                _ => {
                    return Err(Error::invalid_input(
                        field(),
                        format!("expected (B, [T,] 3, {h}, {w}) pixels, got {dims:?}"),
                    ))
                }
            };
            let n: usize = lead.iter().product();
            (to_device(p, device, name)?.to_dtype(DType::F32)?.reshape((n, 3, h, w))?, lead)
        }
        Input::State(_) => return Err(Error::invalid_input(field(), "an image modality; give frames or pixels")),
    };
    finish(pixels, &dims)
}

/// Preprocesses `n` frames (rows of `flat`, u8 on the device, each laid out as `layout`) with the fused kernel
/// into (n, 3, h', w'): the artifact's normalisation, the shorter side resized to the model's size.
fn resized(
    flat: &Tensor,
    layout: &FrameLayout,
    preprocess: &Preprocess,
    media: &mut MediaCache,
    device: &Device,
    field: &dyn Fn() -> String,
) -> Result<Tensor> {
    let (n, row) = flat.dims2()?;
    if row < layout.required_bytes() {
        return Err(Error::invalid_input(
            field(),
            format!("{row} bytes per frame; a {layout:?} frame needs {}", layout.required_bytes()),
        ));
    }
    let frames = (0..n).map(|i| Ok((flat.get(i)?, *layout))).collect::<Result<Vec<_>>>()?;
    resize_frames(&frames, preprocess, media, device, field)
}

/// Frames of one size (each with its layout) → `(n, 3, h, w)` model input, through the fused kernel.
fn resize_frames(
    frames: &[(Tensor, FrameLayout)],
    preprocess: &Preprocess,
    media: &mut MediaCache,
    device: &Device,
    field: &dyn Fn() -> String,
) -> Result<Tensor> {
    let [h, w] = preprocess.image_size;
    if h != w {
        return Err(Error::invalid_input(
            field(),
            format!("resizing frames needs a square model input (Resize(size)); this one is {h}x{w}"),
        ));
    }
    let Some((_, first)) = frames.first() else {
        return Err(Error::invalid_input(field(), "empty batch"));
    };
    let table = media.table(first.height, first.width, h, device)?;
    let (oh, ow) = table.output();
    let Device::Cuda(cuda) = device else {
        return Err(Error::Internal("a session on a non-CUDA device".into()));
    };
    // Every slot is written by `frame_into` below before the tensor is read.
    let out = crate::ops::launch::uninit_f32(cuda, (frames.len(), 3, oh, ow))?;
    for (i, (frame, layout)) in frames.iter().enumerate() {
        frame_into(frame, layout, table, &preprocess.normalization, &out, i)
            .map_err(|e| Error::invalid_input(field(), e.to_string()))?;
    }
    Ok(out)
}

/// The state modality `name` as f32 (B, dim) on the device.
fn state_input(device: &Device, obs: &Observation<'_>, name: &str, dim: usize) -> Result<Tensor> {
    let field = || format!("observation `{name}`");
    let Some(Input::State(s)) = obs.get(name) else {
        return Err(Error::invalid_input(field(), "a state modality; give a state vector"));
    };
    match s.dims() {
        [b, d] if *d == dim && *b > 0 => Ok(to_device(s, device, name)?.to_dtype(DType::F32)?),
        other => Err(Error::invalid_input(field(), format!("expected (B, {dim}), got {other:?}"))),
    }
}
