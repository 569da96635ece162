//! What the GPU commands run on: an artifact (or a checkpoint with default interface, or the embedded demo) and
//! random observations shaped by its schema.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use swm::artifact::{Artifact, Checkpoint, ObservationKind, Preprocess, Schema};
use swm::session::Observation;

use crate::cli::existing;
use crate::demo_dir::DemoDir;
use crate::error::CliError;

/// An opened artifact, and the temporary demo directory it lives in (kept until the weights are read).
pub struct Opened {
    /// The artifact (config, weights path, preprocessing, schema), read on the host.
    pub artifact: Artifact,
    /// The demo directory when no PATH was given.
    _demo: Option<DemoDir>,
}

/// Opens `path` on the host — an artifact (has `schema.json`), or a checkpoint directory / weights file with
/// its family's default preprocessing and schema — or, without a path, the embedded demo artifact. A path that
/// does not exist is a usage error; nothing touches the GPU.
pub fn open(path: Option<&Path>) -> Result<Opened, CliError> {
    let Some(path) = path else {
        let demo = DemoDir::create()?;
        return Ok(Opened { artifact: Artifact::open(demo.path())?, _demo: Some(demo) });
    };
    existing(path, "PATH")?;
    if path.is_dir() && path.join("schema.json").is_file() {
        return Ok(Opened { artifact: Artifact::open(path)?, _demo: None });
    }
    let checkpoint = Checkpoint::open(path)?;
    let preprocess = checkpoint.default_preprocess()?;
    let schema = checkpoint.default_schema()?;
    let artifact = Artifact { checkpoint, preprocess, schema };
    artifact.validate()?;
    Ok(Opened { artifact, _demo: None })
}

/// One random observation for every modality of a schema, in host memory (uploaded by the session, as a camera
/// frame would be): `u8` RGB frames (1, H, W, 3) of `preprocess.image_size` for image and video modalities,
/// standard-normal `f32` state vectors (1, d) for state modalities.
pub struct RandomObservation {
    inputs: Vec<(String, Tensor, ObservationKind)>,
}

impl RandomObservation {
    /// Draws one observation (batch 1).
    pub fn new(schema: &Schema, preprocess: &Preprocess) -> Result<Self, CliError> {
        let host = Device::Cpu;
        let [h, w] = preprocess.image_size;
        let mut inputs = Vec::with_capacity(schema.observations.len());
        for spec in &schema.observations {
            let tensor = match spec.kind {
                ObservationKind::State => {
                    let dim = spec.shape.iter().product::<usize>();
                    Tensor::randn(0f32, 1f32, (1, dim), &host)?
                }
                ObservationKind::Image | ObservationKind::Video => {
                    Tensor::rand(0f32, 255.99f32, (1, h, w, 3), &host)?.to_dtype(DType::U8)?
                }
            };
            inputs.push((spec.name.clone(), tensor, spec.kind));
        }
        Ok(Self { inputs })
    }

    /// The observation as the session takes it.
    pub fn observation(&self) -> Observation<'_> {
        self.inputs.iter().fold(Observation::new(), |obs, (name, tensor, kind)| match kind {
            ObservationKind::State => obs.state(name, tensor),
            ObservationKind::Image | ObservationKind::Video => obs.frames(name, tensor),
        })
    }
}
