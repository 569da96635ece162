//! LeWM `config.json`: the resolved Hydra `model:` node that upstream checkpoints ship (spec docs/spec/lewm.md §1.2).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::checkpoint::ParamSpec;
use crate::config::{within, ConfigError};

/// The whole LeWM configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// `stable_worldmodel.wm.lewm.LeWM`.
    #[serde(rename = "_target_", default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The ViT image encoder (`vit_hf` arguments).
    pub encoder: EncoderConfig,
    /// The AdaLN-zero predictor.
    pub predictor: PredictorConfig,
    /// The action-block embedder.
    pub action_encoder: ActionEncoderConfig,
    /// CLS -> embedding MLP; `None` (absent or null) is the identity.
    #[serde(default)]
    pub projector: Option<MlpConfig>,
    /// Predictor output MLP; `None` (absent or null) is the identity.
    #[serde(default)]
    pub pred_proj: Option<MlpConfig>,
}

impl Config {
    /// The public PushT checkpoint's config (`quentinll/lewm-pusht`, docs/lewm.md): ViT-Tiny, patch 14 at 224²,
    /// history 3, 10-d action blocks (frameskip 5 × 2-d actions), BatchNorm projector heads.
    pub fn pusht() -> Self {
        Self::preset(EncoderConfig::vit_hf(14, 224, BTreeMap::new()), 192, 6, 16, 2048, 10)
    }

    /// The tiny model of the demo artifact and the committed test fixture: ViT 32 px, patch 8, width 32, 2 layers,
    /// predictor of 3 frames and depth 2, 4-d action blocks, BatchNorm projector heads.
    pub fn tiny() -> Self {
        let overrides =
            [("hidden_size", 32), ("num_hidden_layers", 2), ("num_attention_heads", 2), ("intermediate_size", 64)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
                .collect();
        let mut config = Self::preset(EncoderConfig::vit_hf(8, 32, overrides), 32, 2, 2, 64, 4);
        config.predictor.dim_head = 16;
        config
    }

    /// An upstream LeWM: `width` everywhere (encoder, predictor, heads), `mlp` hidden units in the predictor and
    /// the heads, 3 history frames, dim_head 64.
    fn preset(encoder: EncoderConfig, width: usize, depth: usize, heads: usize, mlp: usize, action: usize) -> Self {
        let head =
            || MlpConfig { input_dim: width, hidden_dim: mlp, output_dim: Some(width), norm_fn: Norm::BatchNorm };
        Self {
            target: Some("stable_worldmodel.wm.lewm.LeWM".into()),
            encoder,
            predictor: PredictorConfig {
                num_frames: 3,
                input_dim: width,
                hidden_dim: width,
                output_dim: Some(width),
                depth,
                heads,
                mlp_dim: mlp,
                dim_head: 64,
                dropout: 0.1,
                emb_dropout: 0.0,
            },
            action_encoder: ActionEncoderConfig { input_dim: action, smoothed_dim: 10, emb_dim: width, mlp_scale: 4 },
            projector: Some(head()),
            pred_proj: Some(head()),
        }
    }
}

impl EncoderConfig {
    /// `vit_hf("tiny", patch_size, image_size, pretrained=False, use_mask_token=False, **overrides)`.
    fn vit_hf(patch_size: usize, image_size: usize, mut overrides: BTreeMap<String, serde_json::Value>) -> Self {
        overrides.insert("_target_".into(), "stable_pretraining.backbone.utils.vit_hf".into());
        Self { size: "tiny".into(), patch_size, image_size, pretrained: false, use_mask_token: false, overrides }
    }
}

/// `vit_hf(size, patch_size, image_size, pretrained, use_mask_token, **overrides)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Preset: tiny, small, base, large or huge.
    #[serde(default = "default_size")]
    pub size: String,
    /// Square patch side (vit_hf default 16).
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Nominal square input side; sets the position table length.
    #[serde(default = "default_image")]
    pub image_size: usize,
    /// Whether pretrained Google weights were requested (irrelevant once a checkpoint is loaded).
    #[serde(default)]
    pub pretrained: bool,
    /// Adds `encoder.embeddings.mask_token` (vit_hf default true).
    #[serde(default = "default_true")]
    pub use_mask_token: bool,
    /// Extra keys forwarded to `transformers.ViTConfig` (`hidden_size`, `num_hidden_layers`, ...) and `_target_`.
    #[serde(flatten)]
    pub overrides: BTreeMap<String, serde_json::Value>,
}

/// `stable_worldmodel.wm.lewm.module.Predictor` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictorConfig {
    /// Positional table length and rollout window (history size).
    pub num_frames: usize,
    /// Embedding dim D fed to the predictor.
    pub input_dim: usize,
    /// Transformer width W.
    pub hidden_dim: usize,
    /// Output dim (defaults to `input_dim`).
    #[serde(default)]
    pub output_dim: Option<usize>,
    /// Number of AdaLN blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// FFN hidden size.
    pub mlp_dim: usize,
    /// Head dim (inner = heads * dim_head).
    #[serde(default = "default_dim_head")]
    pub dim_head: usize,
    /// Train-only dropout.
    #[serde(default)]
    pub dropout: f64,
    /// Train-only embedding dropout.
    #[serde(default)]
    pub emb_dropout: f64,
}

/// `stable_worldmodel.wm.lewm.module.Embedder` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionEncoderConfig {
    /// Action-block dim A_in = frameskip x env action dim.
    #[serde(default = "default_ten")]
    pub input_dim: usize,
    /// Conv1d output channels (a constant 10 upstream, not `input_dim`).
    #[serde(default = "default_ten")]
    pub smoothed_dim: usize,
    /// Action embedding dim (must equal the predictor input dim).
    #[serde(default = "default_ten")]
    pub emb_dim: usize,
    /// Hidden = mlp_scale * emb_dim.
    #[serde(default = "default_mlp_scale")]
    pub mlp_scale: usize,
}

/// `stable_worldmodel.wm.lewm.module.MLP` arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input features.
    pub input_dim: usize,
    /// Hidden features.
    pub hidden_dim: usize,
    /// Output features (defaults to `input_dim`).
    #[serde(default)]
    pub output_dim: Option<usize>,
    /// Normalisation after the first Linear.
    #[serde(default = "default_norm", deserialize_with = "deserialize_norm", serialize_with = "serialize_norm")]
    pub norm_fn: Norm,
}

/// Normalisation layer of an [`MlpConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `torch.nn.BatchNorm1d` (public checkpoints), eval mode: running statistics, eps 1e-5.
    BatchNorm,
    /// `torch.nn.LayerNorm` (the class default when `norm_fn` is absent), eps 1e-5.
    LayerNorm,
    /// `norm_fn: null`.
    Identity,
}

fn default_size() -> String {
    "tiny".into()
}
fn default_patch() -> usize {
    16
}
fn default_image() -> usize {
    224
}
fn default_true() -> bool {
    true
}
fn default_dim_head() -> usize {
    64
}
fn default_ten() -> usize {
    10
}
fn default_mlp_scale() -> usize {
    4
}
fn default_norm() -> Norm {
    Norm::LayerNorm
}

fn deserialize_norm<'de, D: Deserializer<'de>>(d: D) -> Result<Norm, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    let Some(value) = value else { return Ok(Norm::Identity) };
    let target = match &value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => map.get("_target_").and_then(|t| t.as_str()).unwrap_or_default().to_string(),
        _ => String::new(),
    };
    match target.rsplit('.').next() {
        Some("BatchNorm1d") => Ok(Norm::BatchNorm),
        Some("LayerNorm") => Ok(Norm::LayerNorm),
        Some("Identity") => Ok(Norm::Identity),
        _ => Err(serde::de::Error::custom(format!(
            "unsupported norm_fn {value}; expected torch.nn.BatchNorm1d, torch.nn.LayerNorm or null"
        ))),
    }
}

fn serialize_norm<S: serde::Serializer>(norm: &Norm, s: S) -> Result<S::Ok, S::Error> {
    let target = match norm {
        Norm::BatchNorm => "torch.nn.BatchNorm1d",
        Norm::LayerNorm => "torch.nn.LayerNorm",
        Norm::Identity => return s.serialize_none(),
    };
    let mut map = serde_json::Map::new();
    map.insert("_target_".into(), target.into());
    map.insert("_partial_".into(), true.into());
    serde_json::Value::Object(map).serialize(s)
}

/// The ViT dimensions after applying the preset and the overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitDims {
    /// Hidden size E.
    pub hidden: usize,
    /// Number of layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// FFN size (4E unless overridden).
    pub intermediate: usize,
    /// Patch side P.
    pub patch: usize,
    /// Nominal image side.
    pub image: usize,
    /// Input channels (3).
    pub channels: usize,
    /// LayerNorm eps (1e-12).
    pub layer_norm_eps: f64,
}

impl VitDims {
    /// Patches per side of the nominal image (0 for a zero patch, which [`Config::validate`] refuses).
    pub fn grid(&self) -> usize {
        self.image.checked_div(self.patch).unwrap_or(0)
    }
    /// Position-table rows: grid² + 1 (CLS). Saturates instead of wrapping; a validated config is far below.
    pub fn positions(&self) -> usize {
        self.grid().saturating_mul(self.grid()).saturating_add(1)
    }
}

impl EncoderConfig {
    /// Resolves the `size` preset and `ViTConfig` overrides.
    pub fn dims(&self) -> Result<VitDims, ConfigError> {
        let (hidden, layers, heads) = match self.size.as_str() {
            "tiny" => (192, 12, 3),
            "small" => (384, 12, 6),
            "base" => (768, 12, 12),
            "large" => (1024, 24, 16),
            "huge" => (1280, 32, 16),
            other => {
                return Err(ConfigError::invalid(
                    "encoder.size",
                    format!("unknown ViT size `{other}` (tiny, small, base, large, huge)"),
                ))
            }
        };
        let int = |key: &str, default: usize| -> Result<usize, ConfigError> {
            match self.overrides.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| ConfigError::invalid(format!("encoder.{key}"), "must be a non-negative integer")),
            }
        };
        let hidden = int("hidden_size", hidden)?;
        let layer_norm_eps = match self.overrides.get("layer_norm_eps") {
            None => 1e-12,
            Some(v) => v.as_f64().ok_or_else(|| ConfigError::invalid("encoder.layer_norm_eps", "must be a number"))?,
        };
        for (key, wanted) in [("hidden_act", "gelu"), ("qkv_bias", "true")] {
            if let Some(v) = self.overrides.get(key) {
                let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                if text != wanted {
                    return Err(ConfigError::invalid(
                        format!("encoder.{key}"),
                        format!("only `{wanted}` is supported"),
                    ));
                }
            }
        }
        let intermediate = match self.overrides.get("intermediate_size") {
            Some(_) => int("intermediate_size", 0)?,
            None => ConfigError::checked_mul("encoder.hidden_size", 4, hidden)?,
        };
        Ok(VitDims {
            hidden,
            layers: int("num_hidden_layers", layers)?,
            heads: int("num_attention_heads", heads)?,
            intermediate,
            patch: self.patch_size,
            image: self.image_size,
            channels: int("num_channels", 3)?,
            layer_norm_eps,
        })
    }
}

impl MlpConfig {
    /// Output features.
    pub fn output(&self) -> usize {
        self.output_dim.unwrap_or(self.input_dim)
    }
}

impl PredictorConfig {
    /// Output dim (Dout).
    pub fn output(&self) -> usize {
        self.output_dim.unwrap_or(self.input_dim)
    }
    /// Attention inner dim = heads * dim_head. Saturates instead of wrapping; [`Config::validate`] bounds it by
    /// [`crate::config::limits::MAX_WIDTH`].
    pub fn inner(&self) -> usize {
        self.heads.saturating_mul(self.dim_head)
    }
}

/// Shapes derived from a config's fields with checked arithmetic, every field within [`crate::config::limits`].
struct Shapes {
    /// The resolved ViT dims.
    vit: VitDims,
    /// ViT position-table rows (grid² + 1).
    positions: usize,
    /// Predictor attention inner dim (heads × dim_head).
    inner: usize,
    /// Predictor qkv rows (3 × inner).
    qkv: usize,
    /// AdaLN modulation rows (6 × predictor width).
    modulation: usize,
    /// Action embedder hidden width (mlp_scale × emb_dim).
    action_hidden: usize,
}

impl Config {
    /// Checks every count and width against [`crate::config::limits`] and derives the shapes the parameter table
    /// needs with checked arithmetic: nothing here can overflow, wrap or allocate.
    fn shapes(&self) -> Result<Shapes, ConfigError> {
        let vit = self.encoder.dims()?;
        within!("encoder.hidden_size", vit.hidden, 1, MAX_WIDTH)?;
        within!("encoder.intermediate_size", vit.intermediate, 1, MAX_WIDTH)?;
        within!("encoder.num_hidden_layers", vit.layers, 1, MAX_LAYERS)?;
        within!("encoder.num_attention_heads", vit.heads, 1, MAX_HEADS)?;
        within!("encoder.patch_size", vit.patch, 1, MAX_IMAGE_SIDE)?;
        within!("encoder.image_size", vit.image, 1, MAX_IMAGE_SIDE)?;
        if !(0.0..=1.0).contains(&vit.layer_norm_eps) {
            return Err(ConfigError::invalid(
                "encoder.layer_norm_eps",
                format!("{} is outside [0, 1]", vit.layer_norm_eps),
            ));
        }
        let pr = &self.predictor;
        within!("predictor.num_frames", pr.num_frames, 1, MAX_FRAMES)?;
        within!("predictor.input_dim", pr.input_dim, 1, MAX_WIDTH)?;
        within!("predictor.hidden_dim", pr.hidden_dim, 1, MAX_WIDTH)?;
        if let Some(out) = pr.output_dim {
            within!("predictor.output_dim", out, 1, MAX_WIDTH)?;
        }
        within!("predictor.depth", pr.depth, 1, MAX_LAYERS)?;
        within!("predictor.heads", pr.heads, 1, MAX_HEADS)?;
        within!("predictor.dim_head", pr.dim_head, 1, MAX_WIDTH)?;
        within!("predictor.mlp_dim", pr.mlp_dim, 1, MAX_WIDTH)?;
        let inner = ConfigError::checked_mul("predictor.dim_head", pr.heads, pr.dim_head)?;
        product_within("predictor.dim_head", "predictor.heads × predictor.dim_head", inner)?;
        let ae = &self.action_encoder;
        within!("action_encoder.input_dim", ae.input_dim, 1, MAX_ACTION_DIM)?;
        within!("action_encoder.smoothed_dim", ae.smoothed_dim, 1, MAX_WIDTH)?;
        within!("action_encoder.emb_dim", ae.emb_dim, 1, MAX_WIDTH)?;
        within!("action_encoder.mlp_scale", ae.mlp_scale, 1, MAX_WIDTH)?;
        let action_hidden = ConfigError::checked_mul("action_encoder.mlp_scale", ae.mlp_scale, ae.emb_dim)?;
        product_within("action_encoder.mlp_scale", "action_encoder.mlp_scale × action_encoder.emb_dim", action_hidden)?;
        for (prefix, mlp) in [("projector", &self.projector), ("pred_proj", &self.pred_proj)] {
            let Some(mlp) = mlp else { continue };
            within!(&format!("{prefix}.input_dim"), mlp.input_dim, 1, MAX_WIDTH)?;
            within!(&format!("{prefix}.hidden_dim"), mlp.hidden_dim, 1, MAX_WIDTH)?;
            if let Some(out) = mlp.output_dim {
                within!(&format!("{prefix}.output_dim"), out, 1, MAX_WIDTH)?;
            }
        }
        let grid = vit.grid();
        let positions = ConfigError::checked_mul("encoder.image_size", grid, grid)
            .and_then(|cells| ConfigError::checked_add("encoder.image_size", cells, 1))?;
        Ok(Shapes {
            vit,
            positions,
            inner,
            qkv: ConfigError::checked_mul("predictor.dim_head", 3, inner)?,
            modulation: ConfigError::checked_mul("predictor.hidden_dim", 6, pr.hidden_dim)?,
            action_hidden,
        })
    }

    /// Checks that the sub-configs fit together (dims agree, nothing is zero), that every count and width is
    /// within [`crate::config::limits`] and that the whole model holds at most
    /// [`crate::config::limits::MAX_PARAMETERS`] parameters (counted with checked arithmetic). Errors name the
    /// dotted field and the limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let shapes = self.shapes()?;
        let vit = shapes.vit;
        if vit.hidden % vit.heads != 0 {
            return Err(ConfigError::invalid(
                "encoder.num_attention_heads",
                format!("hidden size {} is not divisible by {} heads", vit.hidden, vit.heads),
            ));
        }
        if vit.channels != 3 {
            return Err(ConfigError::invalid("encoder.num_channels", "LeWM encodes RGB frames (3 channels)"));
        }
        if vit.patch > vit.image {
            return Err(ConfigError::invalid("encoder.patch_size", "larger than encoder.image_size"));
        }
        let emb_dim = match &self.projector {
            Some(p) => {
                if p.input_dim != vit.hidden {
                    return Err(ConfigError::invalid(
                        "projector.input_dim",
                        format!("{} != encoder hidden size {}", p.input_dim, vit.hidden),
                    ));
                }
                p.output()
            }
            None => vit.hidden,
        };
        if emb_dim != self.predictor.input_dim {
            return Err(ConfigError::invalid(
                "predictor.input_dim",
                format!("{} != embedding dim {emb_dim} (projector output)", self.predictor.input_dim),
            ));
        }
        if self.action_encoder.emb_dim != self.predictor.input_dim {
            return Err(ConfigError::invalid(
                "action_encoder.emb_dim",
                format!("{} != predictor.input_dim {}", self.action_encoder.emb_dim, self.predictor.input_dim),
            ));
        }
        if let Some(p) = &self.pred_proj {
            if p.input_dim != self.predictor.output() {
                return Err(ConfigError::invalid(
                    "pred_proj.input_dim",
                    format!("{} != predictor output dim {}", p.input_dim, self.predictor.output()),
                ));
            }
        }
        if self.embedding_dim()? != emb_dim {
            return Err(ConfigError::invalid(
                "pred_proj.output_dim",
                format!("predictions ({}) must live in the embedding space ({emb_dim})", self.embedding_dim()?),
            ));
        }
        crate::config::parameter_count(&self.table(&shapes))?;
        Ok(())
    }

    /// Dimension of predicted embeddings (pred_proj output, or predictor output).
    fn embedding_dim(&self) -> Result<usize, ConfigError> {
        Ok(self.pred_proj.as_ref().map(|p| p.output()).unwrap_or(self.predictor.output()))
    }

    /// Embedding dim D (what `encode` returns and the goal cost compares).
    pub fn embed_dim(&self) -> usize {
        self.predictor.input_dim
    }

    /// The full parameter table (state-dict key, shape) that a checkpoint of this config must hold, in the
    /// transformers < 5.9 ViT key layout (docs/spec/lewm.md §2). Every count and width is checked against
    /// [`crate::config::limits`] first (at the limits the table has ~30 000 entries) and every
    /// shape is computed with checked arithmetic; the dims need not agree with each other ([`Config::validate`]
    /// checks that, and the parameter count).
    pub fn parameter_table(&self) -> Result<Vec<ParamSpec>, ConfigError> {
        Ok(self.table(&self.shapes()?))
    }

    /// The parameter table from checked [`Shapes`].
    fn table(&self, shapes: &Shapes) -> Vec<ParamSpec> {
        let vit = &shapes.vit;
        let (e, i, p) = (vit.hidden, vit.intermediate, vit.patch);
        let mut t = vec![
            ParamSpec::float("encoder.embeddings.cls_token", &[1, 1, e]),
            ParamSpec::float("encoder.embeddings.position_embeddings", &[1, shapes.positions, e]),
            ParamSpec::float("encoder.embeddings.patch_embeddings.projection.weight", &[e, vit.channels, p, p]),
            ParamSpec::float("encoder.embeddings.patch_embeddings.projection.bias", &[e]),
        ];
        if self.encoder.use_mask_token {
            t.push(ParamSpec::float("encoder.embeddings.mask_token", &[1, 1, e]));
        }
        for l in 0..vit.layers {
            let pre = format!("encoder.encoder.layer.{l}");
            for name in ["attention.attention.query", "attention.attention.key", "attention.attention.value"] {
                t.push(ParamSpec::float(format!("{pre}.{name}.weight"), &[e, e]));
                t.push(ParamSpec::float(format!("{pre}.{name}.bias"), &[e]));
            }
            t.push(ParamSpec::float(format!("{pre}.attention.output.dense.weight"), &[e, e]));
            t.push(ParamSpec::float(format!("{pre}.attention.output.dense.bias"), &[e]));
            t.push(ParamSpec::float(format!("{pre}.intermediate.dense.weight"), &[i, e]));
            t.push(ParamSpec::float(format!("{pre}.intermediate.dense.bias"), &[i]));
            t.push(ParamSpec::float(format!("{pre}.output.dense.weight"), &[e, i]));
            t.push(ParamSpec::float(format!("{pre}.output.dense.bias"), &[e]));
            for ln in ["layernorm_before", "layernorm_after"] {
                t.push(ParamSpec::float(format!("{pre}.{ln}.weight"), &[e]));
                t.push(ParamSpec::float(format!("{pre}.{ln}.bias"), &[e]));
            }
        }
        t.push(ParamSpec::float("encoder.layernorm.weight", &[e]));
        t.push(ParamSpec::float("encoder.layernorm.bias", &[e]));

        let pr = &self.predictor;
        let (d, w, dout, inner, m) = (pr.input_dim, pr.hidden_dim, pr.output(), shapes.inner, pr.mlp_dim);
        t.push(ParamSpec::float("predictor.pos_embedding", &[1, pr.num_frames, d]));
        if d != w {
            t.push(ParamSpec::float("predictor.transformer.input_proj.weight", &[w, d]));
            t.push(ParamSpec::float("predictor.transformer.input_proj.bias", &[w]));
            t.push(ParamSpec::float("predictor.transformer.cond_proj.weight", &[w, d]));
            t.push(ParamSpec::float("predictor.transformer.cond_proj.bias", &[w]));
        }
        if w != dout {
            t.push(ParamSpec::float("predictor.transformer.output_proj.weight", &[dout, w]));
            t.push(ParamSpec::float("predictor.transformer.output_proj.bias", &[dout]));
        }
        t.push(ParamSpec::float("predictor.transformer.norm.weight", &[w]));
        t.push(ParamSpec::float("predictor.transformer.norm.bias", &[w]));
        for j in 0..pr.depth {
            let pre = format!("predictor.transformer.layers.{j}");
            t.push(ParamSpec::float(format!("{pre}.attn.norm.weight"), &[w]));
            t.push(ParamSpec::float(format!("{pre}.attn.norm.bias"), &[w]));
            t.push(ParamSpec::float(format!("{pre}.attn.to_qkv.weight"), &[shapes.qkv, w]));
            if self.predictor_has_out_proj() {
                t.push(ParamSpec::float(format!("{pre}.attn.to_out.0.weight"), &[w, inner]));
                t.push(ParamSpec::float(format!("{pre}.attn.to_out.0.bias"), &[w]));
            }
            t.push(ParamSpec::float(format!("{pre}.mlp.net.0.weight"), &[w]));
            t.push(ParamSpec::float(format!("{pre}.mlp.net.0.bias"), &[w]));
            t.push(ParamSpec::float(format!("{pre}.mlp.net.1.weight"), &[m, w]));
            t.push(ParamSpec::float(format!("{pre}.mlp.net.1.bias"), &[m]));
            t.push(ParamSpec::float(format!("{pre}.mlp.net.4.weight"), &[w, m]));
            t.push(ParamSpec::float(format!("{pre}.mlp.net.4.bias"), &[w]));
            t.push(ParamSpec::float(format!("{pre}.adaLN_modulation.1.weight"), &[shapes.modulation, w]));
            t.push(ParamSpec::float(format!("{pre}.adaLN_modulation.1.bias"), &[shapes.modulation]));
        }

        let ae = &self.action_encoder;
        let hidden = shapes.action_hidden;
        t.push(ParamSpec::float("action_encoder.patch_embed.weight", &[ae.smoothed_dim, ae.input_dim, 1]));
        t.push(ParamSpec::float("action_encoder.patch_embed.bias", &[ae.smoothed_dim]));
        t.push(ParamSpec::float("action_encoder.embed.0.weight", &[hidden, ae.smoothed_dim]));
        t.push(ParamSpec::float("action_encoder.embed.0.bias", &[hidden]));
        t.push(ParamSpec::float("action_encoder.embed.2.weight", &[ae.emb_dim, hidden]));
        t.push(ParamSpec::float("action_encoder.embed.2.bias", &[ae.emb_dim]));

        for (prefix, mlp) in [("projector", &self.projector), ("pred_proj", &self.pred_proj)] {
            let Some(mlp) = mlp else { continue };
            let (inp, hid, out) = (mlp.input_dim, mlp.hidden_dim, mlp.output());
            t.push(ParamSpec::float(format!("{prefix}.net.0.weight"), &[hid, inp]));
            t.push(ParamSpec::float(format!("{prefix}.net.0.bias"), &[hid]));
            match mlp.norm_fn {
                Norm::BatchNorm => {
                    for name in ["weight", "bias", "running_mean", "running_var"] {
                        t.push(ParamSpec::float(format!("{prefix}.net.1.{name}"), &[hid]));
                    }
                    t.push(ParamSpec::counter(format!("{prefix}.net.1.num_batches_tracked")));
                }
                Norm::LayerNorm => {
                    t.push(ParamSpec::float(format!("{prefix}.net.1.weight"), &[hid]));
                    t.push(ParamSpec::float(format!("{prefix}.net.1.bias"), &[hid]));
                }
                Norm::Identity => {}
            }
            t.push(ParamSpec::float(format!("{prefix}.net.3.weight"), &[out, hid]));
            t.push(ParamSpec::float(format!("{prefix}.net.3.bias"), &[out]));
        }
        t
    }

    /// Upstream `Attention` drops `to_out` (Identity) when a single head already spans the width.
    pub fn predictor_has_out_proj(&self) -> bool {
        !(self.predictor.heads == 1 && self.predictor.dim_head == self.predictor.hidden_dim)
    }
}

/// A derived width (a product of two fields) within [`crate::config::limits::MAX_WIDTH`]; the error names `field`
/// and shows the product as `what`.
fn product_within(field: &str, what: &str, value: usize) -> Result<(), ConfigError> {
    let max = crate::config::limits::MAX_WIDTH;
    if value > max {
        return Err(ConfigError::invalid(
            field,
            format!("{what} = {value} exceeds the limit of {max} (limits::MAX_WIDTH)"),
        ));
    }
    Ok(())
}

/// Maps a transformers >= 5.9 ViT key (`encoder.layers.3.attention.q_proj.weight`) to the 4.x spelling that the
/// public checkpoints and [`Config::parameter_table`] use; returns `None` for keys that need no renaming.
pub fn legacy_vit_key(key: &str) -> Option<String> {
    let rest = key.strip_prefix("encoder.layers.")?;
    let (index, tail) = rest.split_once('.')?;
    let tail = [
        ("attention.q_proj.", "attention.attention.query."),
        ("attention.k_proj.", "attention.attention.key."),
        ("attention.v_proj.", "attention.attention.value."),
        ("attention.o_proj.", "attention.output.dense."),
        ("mlp.fc1.", "intermediate.dense."),
        ("mlp.fc2.", "output.dense."),
    ]
    .iter()
    .find_map(|(new, old)| tail.strip_prefix(new).map(|param| format!("{old}{param}")))
    .unwrap_or_else(|| tail.to_string());
    Some(format!("encoder.encoder.layer.{index}.{tail}"))
}
