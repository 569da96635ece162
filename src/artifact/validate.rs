//! Cross-validation of an artifact's four files: family, action dim, frame shapes, statistics, and the bounds of
//! every number that sizes an allocation or is divided by (docs/artifacts.md).

use crate::config::limits::{MAX_IMAGE_SIDE, MAX_MODALITIES, MAX_STAT, MAX_WIDTH, MIN_STD};
use crate::config::ModelConfig;

use super::{Artifact, ArtifactError, ObservationKind, Schema};

impl Artifact {
    /// Checks that schema, preprocessing and model config agree.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        let dir = &self.checkpoint.dir;
        let invalid = |file: &str, field: &str, reason: String| ArtifactError::Invalid {
            path: dir.join(file),
            field: field.into(),
            reason,
        };
        if self.schema.family != self.checkpoint.config.family() {
            return Err(invalid(
                "schema.json",
                "family",
                format!("{} but config.json describes {}", self.schema.family, self.checkpoint.config.family()),
            ));
        }
        self.validate_bounds()?;
        if let ModelConfig::Lewm(cfg) = &self.checkpoint.config {
            if self.schema.action_dim != cfg.action_encoder.input_dim {
                return Err(invalid(
                    "schema.json",
                    "action_dim",
                    format!(
                        "{} != config action_encoder.input_dim {}",
                        self.schema.action_dim, cfg.action_encoder.input_dim
                    ),
                ));
            }
            let [h, w] = self.preprocess.image_size;
            let patch = cfg.encoder.patch_size;
            if h < patch || w < patch {
                return Err(invalid(
                    "preprocess.json",
                    "image_size",
                    format!("{h}x{w} is smaller than one {patch}px patch"),
                ));
            }
            let pixels = self.schema.observations.iter().position(|o| o.name == "pixels");
            match pixels.map(|i| (i, &self.schema.observations[i])) {
                Some((_, obs)) if matches!(obs.kind, ObservationKind::Image | ObservationKind::Video) => {}
                Some((i, obs)) => {
                    return Err(invalid(
                        "schema.json",
                        &format!("observations[{i}].kind"),
                        format!("LeWM encodes frames: `pixels` must be an image or video stream, not {:?}", obs.kind),
                    ))
                }
                None => {
                    return Err(invalid(
                        "schema.json",
                        "observations",
                        "LeWM needs a `pixels` image observation (it encodes frames only)".into(),
                    ))
                }
            }
            if let Some(i) = self.schema.observations.iter().position(|o| o.kind == ObservationKind::State) {
                return Err(invalid(
                    "schema.json",
                    &format!("observations[{i}].kind"),
                    "LeWM takes no state observations (it encodes frames only)".into(),
                ));
            }
        }
        if let ModelConfig::Tdmpc2(cfg) = &self.checkpoint.config {
            if self.schema.action_dim != cfg.action_dim {
                return Err(invalid(
                    "schema.json",
                    "action_dim",
                    format!("{} != config action_dim {}", self.schema.action_dim, cfg.action_dim),
                ));
            }
            let expected = Schema::for_tdmpc2(cfg).observations;
            if self.schema.observations != expected {
                return Err(invalid(
                    "schema.json",
                    "observations",
                    format!("{:?} != the config's encoded modalities {:?}", self.schema.observations, expected),
                ));
            }
        }
        let a = &self.preprocess.action;
        for (name, bound) in [("action.low", &a.low), ("action.high", &a.high)] {
            if let Some(v) = bound {
                if v.len() != self.schema.action_dim {
                    return Err(invalid(
                        "preprocess.json",
                        name,
                        format!("has {} values, action_dim is {}", v.len(), self.schema.action_dim),
                    ));
                }
            }
        }
        if let (Some(low), Some(high)) = (&a.low, &a.high) {
            if let Some(i) = (0..low.len()).find(|&i| low[i].partial_cmp(&high[i]) != Some(std::cmp::Ordering::Less)) {
                return Err(invalid(
                    "preprocess.json",
                    &format!("action.low[{i}]"),
                    format!("{} is not below action.high[{i}] = {}", low[i], high[i]),
                ));
            }
        }
        if a.block == 0 || !self.schema.action_dim.is_multiple_of(a.block) {
            return Err(invalid(
                "preprocess.json",
                "action.block",
                format!("{} does not divide action_dim {}", a.block, self.schema.action_dim),
            ));
        }
        let env_dim = self.schema.action_dim / a.block;
        for (name, stats) in [("action.mean", &a.mean), ("action.std", &a.std)] {
            if let Some(v) = stats {
                if v.len() != env_dim {
                    return Err(invalid(
                        "preprocess.json",
                        name,
                        format!("has {} values, env action dim is {env_dim}", v.len()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Bounds on every number of `preprocess.json` and `schema.json` that sizes an allocation or is divided by
    /// (the limits are in [`crate::config::limits`], listed in docs/artifacts.md).
    fn validate_bounds(&self) -> Result<(), ArtifactError> {
        let dir = &self.checkpoint.dir;
        let invalid =
            |file: &str, field: String, reason: String| ArtifactError::Invalid { path: dir.join(file), field, reason };
        let [h, w] = self.preprocess.image_size;
        if h > MAX_IMAGE_SIDE || w > MAX_IMAGE_SIDE {
            return Err(invalid(
                "preprocess.json",
                "image_size".into(),
                format!("{h}x{w} exceeds the largest supported side {MAX_IMAGE_SIDE}"),
            ));
        }
        let obs = &self.schema.observations;
        if obs.is_empty() || obs.len() > MAX_MODALITIES {
            return Err(invalid(
                "schema.json",
                "observations".into(),
                format!("lists {} streams; a model takes 1 to {MAX_MODALITIES}", obs.len()),
            ));
        }
        for (i, o) in obs.iter().enumerate() {
            if o.name.is_empty() || obs[..i].iter().any(|p| p.name == o.name) {
                return Err(invalid(
                    "schema.json",
                    format!("observations[{i}].name"),
                    format!("{:?} is empty or named twice", o.name),
                ));
            }
            let ok = match o.kind {
                ObservationKind::Image | ObservationKind::Video => o.shape == [3, h, w],
                ObservationKind::State => matches!(o.shape.as_slice(), [d] if (1..=MAX_WIDTH).contains(d)),
            };
            if !ok {
                let expected = match o.kind {
                    ObservationKind::State => format!("[d] with 1 <= d <= {MAX_WIDTH}"),
                    _ => format!("[3, {h}, {w}] from preprocess.json image_size"),
                };
                return Err(invalid(
                    "schema.json",
                    format!("observations[{i}].shape"),
                    format!("{:?} != {expected}", o.shape),
                ));
            }
        }
        let n = &self.preprocess.normalization;
        stats("", &n.mean, &n.std).map_err(|(field, reason)| invalid("preprocess.json", field, reason))?;
        let a = &self.preprocess.action;
        match (&a.mean, &a.std) {
            (Some(mean), Some(std)) => {
                stats("action.", mean, std).map_err(|(field, reason)| invalid("preprocess.json", field, reason))?
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "preprocess.json",
                    "action.mean".into(),
                    "action.mean and action.std are given together or not at all".into(),
                ))
            }
        }
        for (name, bound) in [("action.low", &a.low), ("action.high", &a.high)] {
            if let Some(i) = bound.iter().flatten().position(|b| !(b.is_finite() && b.abs() <= MAX_STAT)) {
                return Err(invalid(
                    "preprocess.json",
                    format!("{name}[{i}]"),
                    format!("must be finite with magnitude <= {MAX_STAT:e}"),
                ));
            }
        }
        Ok(())
    }
}

/// Checks a mean/std pair of statistics: finite means of magnitude ≤ [`MAX_STAT`], standard deviations in
/// [[`MIN_STD`], [`MAX_STAT`]]. Returns the offending field (`{prefix}mean[i]`) and why.
fn stats(prefix: &str, mean: &[f32], std: &[f32]) -> Result<(), (String, String)> {
    if let Some(i) = mean.iter().position(|m| !(m.is_finite() && m.abs() <= MAX_STAT)) {
        return Err((
            format!("{prefix}mean[{i}]"),
            format!("{} must be finite with magnitude <= {MAX_STAT:e}", mean[i]),
        ));
    }
    if let Some(i) = std.iter().position(|s| !(s.is_finite() && (MIN_STD..=MAX_STAT).contains(s))) {
        return Err((
            format!("{prefix}std[{i}]"),
            format!("{:e} must be finite and within [{MIN_STD:e}, {MAX_STAT:e}]", std[i]),
        ));
    }
    Ok(())
}
