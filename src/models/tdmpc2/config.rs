//! The TD-MPC2 model config (docs/spec/tdmpc2.md §1): the `cfg` node of a stable-worldmodel TD-MPC2 checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::checkpoint::ParamSpec;
use crate::config::{within, ConfigError};

/// Modalities and their latent widths in document order (`wm.encoding`). Upstream concatenates the per-modality
/// latents in this order (pixels always first), so the order of the JSON object matters and is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding(pub Vec<(String, usize)>);

impl<'de> Deserialize<'de> for Encoding {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Encoding;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of modality name to latent width")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Encoding, M::Error> {
                let mut entries = Vec::new();
                while let Some((key, width)) = map.next_entry::<String, usize>()? {
                    entries.push((key, width));
                }
                Ok(Encoding(entries))
            }
        }
        deserializer.deserialize_map(Ordered)
    }
}

impl Encoding {
    /// Width of the pixel latent, if pixels are encoded.
    pub fn pixels(&self) -> Option<usize> {
        self.0.iter().find(|(k, _)| k == "pixels").map(|(_, w)| *w)
    }

    /// The non-pixel modalities in concatenation order.
    pub fn extras(&self) -> impl Iterator<Item = (&str, usize)> {
        self.0.iter().filter(|(k, _)| k != "pixels").map(|(k, w)| (k.as_str(), *w))
    }
}

/// `cfg.wm`: world-model sizes and planning constants.
#[derive(Debug, Clone, Deserialize)]
pub struct WmConfig {
    /// Modality → latent width, in concatenation order.
    pub encoding: Encoding,
    /// Hidden width of each non-pixel encoder.
    #[serde(default)]
    pub enc_dim: usize,
    /// Hidden width of the dynamics, reward, actor and Q MLPs.
    pub mlp_dim: usize,
    /// SimNorm group size V.
    #[serde(default = "default_simnorm")]
    pub simnorm_dim: usize,
    /// Q ensemble size.
    pub num_q: usize,
    /// Two-hot bins.
    pub num_bins: usize,
    /// Lowest bin, in symlog space.
    pub vmin: f64,
    /// Highest bin, in symlog space.
    pub vmax: f64,
    /// γ of the planning return.
    #[serde(default = "default_discount")]
    pub discount: f64,
    /// c of the conservative terminal value `q̄ − c·|q̄|·σ_q`.
    #[serde(default = "default_penalty")]
    pub uncertainty_penalty: f64,
}

fn default_simnorm() -> usize {
    8
}
fn default_discount() -> f64 {
    0.99
}
fn default_penalty() -> f64 {
    0.5
}
fn default_pi_trajs() -> usize {
    1
}

/// The model config (fields the model reads; training-only fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Action dim A.
    pub action_dim: usize,
    /// Input width of each non-pixel modality.
    #[serde(default)]
    pub extra_dims: BTreeMap<String, usize>,
    /// Square pixel input side (sizes the CNN's flatten).
    #[serde(default)]
    pub image_size: Option<usize>,
    /// World-model sizes.
    pub wm: WmConfig,
    /// Actor trajectories averaged by `get_action`.
    #[serde(default = "default_pi_trajs")]
    pub num_pi_trajs: usize,
}

/// `{"_target_": "...TDMPC2", "cfg": {...}}`, the config.json written by upstream's training script.
#[derive(Deserialize)]
struct Wrapped {
    cfg: Config,
}

impl Config {
    /// Parses a TD-MPC2 `config.json`: the wrapped form (`_target_` + `cfg`) or the bare cfg dict. `path` names the
    /// file in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let value: serde_json::Value = crate::config::parse_json(text, path)?;
        // Parsed from the text (not the Value) so that `wm.encoding` keeps its document order.
        let config = if value.get("cfg").is_some() {
            crate::config::parse_json::<Wrapped>(text, path)?.cfg
        } else {
            crate::config::parse_json::<Config>(text, path)?
        };
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// The model of the official planning baseline's TD-MPC2 row (docs/tdmpc2.md): a 24-d state encoded to 512,
    /// MLPs of 512, 6-d actions, 5 Q heads, 101 bins over [−10, 10].
    pub fn bench() -> Self {
        Self {
            action_dim: 6,
            extra_dims: [("action".to_string(), 6), ("state".to_string(), 24)].into_iter().collect(),
            image_size: Some(64),
            wm: WmConfig {
                encoding: Encoding(vec![("state".into(), 512)]),
                enc_dim: 256,
                mlp_dim: 512,
                simnorm_dim: 8,
                num_q: 5,
                num_bins: 101,
                vmin: -10.0,
                vmax: 10.0,
                discount: 0.99,
                uncertainty_penalty: 0.5,
            },
            num_pi_trajs: 1,
        }
    }

    /// Latent width Z (the sum of the encoding widths). Saturates instead of wrapping; [`Config::validate`] bounds
    /// it by [`crate::config::limits::MAX_WIDTH`].
    pub fn latent_dim(&self) -> usize {
        self.wm.encoding.0.iter().fold(0, |z, (_, w)| z.saturating_add(*w))
    }

    /// Checks the fields against each other and against [`crate::config::limits`] (every count and width, the
    /// latent width, finite bin range and constants), then counts the parameter table with checked arithmetic
    /// (at most [`crate::config::limits::MAX_PARAMETERS`]). Errors name the dotted field and the limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let wm = &self.wm;
        if wm.encoding.0.is_empty() {
            return Err(ConfigError::invalid("wm.encoding", "no modality: the model needs pixels or a state input"));
        }
        within!("wm.encoding", wm.encoding.0.len(), 1, MAX_MODALITIES)?;
        let mut latent = 0usize;
        for (i, (key, width)) in wm.encoding.0.iter().enumerate() {
            if wm.encoding.0[..i].iter().any(|(k, _)| k == key) {
                return Err(ConfigError::invalid(format!("wm.encoding.{key}"), "listed twice"));
            }
            within!(&format!("wm.encoding.{key}"), *width, 1, MAX_WIDTH)?;
            latent = ConfigError::checked_add("wm.encoding", latent, *width)?;
        }
        if latent > crate::config::limits::MAX_WIDTH {
            return Err(ConfigError::invalid(
                "wm.encoding",
                format!(
                    "latent width {latent} (the sum of the widths) exceeds the limit of {} (limits::MAX_WIDTH)",
                    crate::config::limits::MAX_WIDTH
                ),
            ));
        }
        within!("action_dim", self.action_dim, 1, MAX_ACTION_DIM)?;
        within!("wm.mlp_dim", wm.mlp_dim, 1, MAX_WIDTH)?;
        within!("wm.simnorm_dim", wm.simnorm_dim, 1, MAX_WIDTH)?;
        within!("wm.enc_dim", wm.enc_dim, 0, MAX_WIDTH)?;
        within!("num_pi_trajs", self.num_pi_trajs, 1, MAX_PI_TRAJS)?;
        if wm.num_q < 2 {
            return Err(ConfigError::invalid("wm.num_q", format!("{} (the value spread needs ≥ 2 Q heads)", wm.num_q)));
        }
        within!("wm.num_q", wm.num_q, 2, MAX_Q_HEADS)?;
        if wm.num_bins < 2 || wm.vmin.partial_cmp(&wm.vmax) != Some(std::cmp::Ordering::Less) {
            return Err(ConfigError::invalid(
                "wm.num_bins",
                format!("{} bins over [{}, {}]: need ≥ 2 bins and vmin < vmax", wm.num_bins, wm.vmin, wm.vmax),
            ));
        }
        within!("wm.num_bins", wm.num_bins, 2, MAX_WIDTH)?;
        let symlog = crate::config::limits::MAX_SYMLOG;
        for (field, v) in [("wm.vmin", wm.vmin), ("wm.vmax", wm.vmax)] {
            if !(-symlog..=symlog).contains(&v) {
                return Err(ConfigError::invalid(
                    field,
                    format!("{v} is outside ±{symlog} (limits::MAX_SYMLOG: symexp of the bins must be a finite f32)"),
                ));
            }
        }
        for (field, v) in [("wm.discount", wm.discount), ("wm.uncertainty_penalty", wm.uncertainty_penalty)] {
            if !v.is_finite() {
                return Err(ConfigError::invalid(field, format!("{v} is not finite")));
            }
        }
        if let Some(side) = self.image_size {
            within!("image_size", side, 0, MAX_IMAGE_SIDE)?;
        }
        let z = latent;
        if !z.is_multiple_of(wm.simnorm_dim) {
            return Err(ConfigError::invalid(
                "wm.encoding",
                format!("latent width {z} is not a multiple of wm.simnorm_dim {}", wm.simnorm_dim),
            ));
        }
        if wm.encoding.pixels().is_some() && self.cnn_side().is_none() {
            return Err(ConfigError::invalid(
                "image_size",
                format!("{:?}: pixels need an image of at least 39 × 39", self.image_size),
            ));
        }
        for (key, _) in wm.encoding.extras() {
            match self.extra_dims.get(key) {
                None | Some(0) => {
                    return Err(ConfigError::invalid(
                        format!("extra_dims.{key}"),
                        "missing or zero for an encoded modality",
                    ))
                }
                Some(d) => within!(&format!("extra_dims.{key}"), *d, 1, MAX_WIDTH)?,
            };
            if wm.enc_dim == 0 {
                return Err(ConfigError::invalid("wm.enc_dim", "must be positive with non-pixel modalities"));
            }
        }
        // Every width is bounded now, so the table is small and its shapes cannot overflow; its size may still be
        // too large (a wide pixel encoder on a large image).
        crate::config::parameter_count(&self.table())?;
        Ok(())
    }

    /// Side of the CNN's last feature map (docs/spec/tdmpc2.md §3: 7/2, 5/2, 3/2, 3/1 without padding).
    pub fn cnn_side(&self) -> Option<usize> {
        let s = self.image_size?;
        let s1 = s.checked_sub(7)? / 2 + 1;
        let s2 = s1.checked_sub(5)? / 2 + 1;
        let s3 = s2.checked_sub(3)? / 2 + 1;
        let s4 = s3.checked_sub(2)?;
        (s4 > 0).then_some(s4)
    }

    /// Every tensor of the checkpoint's state dict, with its shape (§3), as a strict load expects it; the model
    /// does not read the training state in it (`target_qs.*`, `scale.value`). Validates the config first, so an
    /// unbounded `num_q` or width is an error, never a huge table.
    pub fn parameter_table(&self) -> Result<Vec<ParamSpec>, ConfigError> {
        self.validate()?;
        Ok(self.table())
    }

    /// The parameter table of a config whose widths are bounded (shapes saturate instead of wrapping, so an
    /// out-of-range width shows as `usize::MAX`, which [`crate::config::parameter_count`] refuses).
    fn table(&self) -> Vec<ParamSpec> {
        let (a, m, nb, z) = (self.action_dim, self.wm.mlp_dim, self.wm.num_bins, self.latent_dim());
        let (za, a2) = (z.saturating_add(a), a.saturating_mul(2));
        let mut t = Vec::new();
        let normed = |t: &mut Vec<ParamSpec>, name: &str, out: usize, inp: usize| {
            t.push(ParamSpec::float(format!("{name}.weight"), &[out, inp]));
            t.push(ParamSpec::float(format!("{name}.bias"), &[out]));
            t.push(ParamSpec::float(format!("{name}.ln.weight"), &[out]));
            t.push(ParamSpec::float(format!("{name}.ln.bias"), &[out]));
        };
        let plain = |t: &mut Vec<ParamSpec>, name: &str, out: usize, inp: usize| {
            t.push(ParamSpec::float(format!("{name}.weight"), &[out, inp]));
            t.push(ParamSpec::float(format!("{name}.bias"), &[out]));
        };
        if let (Some(pd), Some(side)) = (self.wm.encoding.pixels(), self.cnn_side()) {
            for (i, (cin, k)) in [(3, 7), (32, 5), (32, 3), (32, 3)].into_iter().enumerate() {
                t.push(ParamSpec::float(format!("cnn.{}.weight", 2 * i), &[32, cin, k, k]));
                t.push(ParamSpec::float(format!("cnn.{}.bias", 2 * i), &[32]));
            }
            plain(&mut t, "pixel_encoder", pd, side.saturating_mul(side).saturating_mul(32));
        }
        for (key, out) in self.wm.encoding.extras() {
            let inp = self.extra_dims.get(key).copied().unwrap_or(0);
            normed(&mut t, &format!("extra_encoders.{key}.0"), self.wm.enc_dim, inp);
            plain(&mut t, &format!("extra_encoders.{key}.1"), out, self.wm.enc_dim);
            t.push(ParamSpec::float(format!("extra_encoders.{key}.2.weight"), &[out]));
            t.push(ParamSpec::float(format!("extra_encoders.{key}.2.bias"), &[out]));
        }
        let mlp = |t: &mut Vec<ParamSpec>, name: &str, inp: usize, out: usize, normed_last: bool| {
            normed(t, &format!("{name}.0"), m, inp);
            normed(t, &format!("{name}.1"), m, m);
            if normed_last {
                normed(t, &format!("{name}.2"), out, m);
            } else {
                plain(t, &format!("{name}.2"), out, m);
            }
        };
        mlp(&mut t, "dynamics", za, z, true);
        mlp(&mut t, "reward", za, nb, false);
        mlp(&mut t, "pi", z, a2, false);
        for i in 0..self.wm.num_q {
            mlp(&mut t, &format!("qs.{i}"), za, nb, false);
        }
        // Training state a strict load accepts: the Polyak target Qs and the running value scale.
        for i in 0..self.wm.num_q {
            mlp(&mut t, &format!("target_qs.{i}"), za, nb, false);
        }
        t.push(ParamSpec::float("scale.value", &[1]));
        t
    }
}
