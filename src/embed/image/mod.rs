//! Image embedders: each architecture in its own module (EfficientNet-Lite0 now; ResNet and
//! the CLIP/SigLIP towers beside it), one loader that reads a model folder (its
//! `config.json`, weights and `preprocessor_config.json`) and preprocesses exactly as that
//! model's reference, and a service that keeps the model on its own worker thread, batching
//! pictures from concurrent callers.

pub mod efficientnet;
pub mod preprocess;

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use rayon::prelude::*;
use serde_json::Value;
use thiserror::Error;

use self::efficientnet::{EfficientNetLite, PaddingRule};
use self::preprocess::{Filter, Pixels, Preprocess, Resize, Rgb};
use super::worker::{Model, Worker, WorkerError};
use crate::kernels::conv::FeatureMap;
use crate::models::checkpoint::{load_state_dict, CheckpointError};
use crate::models::ModelError;

#[derive(Debug, Error)]
pub enum ImageModelError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint has no tensor `{0}`")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    BadShape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("unsupported image model: {0}")]
    Unsupported(String),
    #[error("bad model config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ImageModelError>;

/// The network behind an image model.
enum Tower {
    EfficientNetLite(EfficientNetLite),
}

/// A loaded image model: its preprocessing and its network.
pub struct ImageModel {
    id: String,
    tower: Tower,
    preprocess: Preprocess,
    dims: usize,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ImageModelError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| ImageModelError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The weights file of a model folder: `model.safetensors`, else the one `.pth`/`.bin`.
fn weights_file(dir: &Path) -> Result<PathBuf> {
    let safetensors = dir.join("model.safetensors");
    if safetensors.is_file() {
        return Ok(safetensors);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ImageModelError::Config {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "pth" || e == "bin" || e == "safetensors")
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| ImageModelError::Config {
            path: dir.to_path_buf(),
            reason: "no model.safetensors, .pth or .bin weights".into(),
        })
}

/// EfficientNet-Lite's evaluation preprocessing (TensorFlow's reference): a centre crop of
/// 224/256 of the shorter side, bicubic to 224×224, then `(x − 127) / 128`.
pub fn efficientnet_lite_preprocess(size: u32) -> Preprocess {
    Preprocess {
        pre_crop: Some(size as f64 / (size as f64 + 32.0)),
        resize: Resize::Exact {
            width: size,
            height: size,
        },
        filter: Filter::Bicubic,
        crop: None,
        rescale: 1.0,
        mean: [127.0; 3],
        std: [128.0; 3],
    }
}

impl ImageModel {
    /// Loads model `id` from its folder.
    pub fn load(id: &str, dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match model_type {
            "efficientnet_lite" => {
                let padding = match config.get("padding").and_then(Value::as_str) {
                    Some("symmetric") => PaddingRule::Symmetric,
                    Some("same") | None => PaddingRule::Same,
                    Some(other) => {
                        return Err(ImageModelError::Config {
                            path: config_path,
                            reason: format!("padding `{other}`: expected `same` or `symmetric`"),
                        })
                    }
                };
                let size = config
                    .get("image_size")
                    .and_then(Value::as_u64)
                    .unwrap_or(224) as u32;
                let tensors = load_state_dict(&weights_file(dir)?)?;
                let net = EfficientNetLite::from_tensors(tensors, padding)?;
                Ok(Self {
                    id: id.to_string(),
                    tower: Tower::EfficientNetLite(net),
                    preprocess: efficientnet_lite_preprocess(size),
                    dims: efficientnet::FEATURES,
                })
            }
            other => Err(ImageModelError::Unsupported(format!(
                "{id}: model_type `{other}` (supported: efficientnet_lite)"
            ))),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// The network's pooled features of one preprocessed picture (not normalised).
    pub fn features(&self, pixels: Pixels) -> Vec<f32> {
        let map = FeatureMap::new(3, pixels.height, pixels.width, pixels.data);
        match &self.tower {
            Tower::EfficientNetLite(net) => net.embed(map),
        }
    }

    /// Class logits from pooled features, for models that carry a classifier.
    pub fn classify(&self, features: &[f32]) -> Option<Vec<f32>> {
        match &self.tower {
            Tower::EfficientNetLite(net) => net.classify(features),
        }
    }

    /// Unit-length embeddings of decoded pictures, in order.
    pub fn embed(&self, images: &[Rgb]) -> Vec<Vec<f32>> {
        let pixels: Vec<Pixels> = images
            .par_iter()
            .map(|image| self.preprocess.apply(image))
            .collect();
        pixels
            .into_iter()
            .map(|p| normalized(self.features(p)))
            .collect()
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt() as f32;
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

impl Model for ImageModel {
    type Input = Rgb;
    type Output = Vec<f32>;
    type Params = ();

    fn cost(&self, _: &Rgb) -> usize {
        1
    }

    fn run(&mut self, _: &(), inputs: Vec<Rgb>) -> std::result::Result<Vec<Vec<f32>>, String> {
        Ok(self.embed(&inputs))
    }
}

/// Pictures merged into one pass on the worker.
const BATCH: usize = 16;

/// Handle to an image model on its worker thread. Cheap to clone.
#[derive(Clone)]
pub struct ImageEmbedderService {
    worker: Worker<ImageModel>,
    id: String,
    dims: usize,
}

impl ImageEmbedderService {
    /// Loads model `id` from `dir` (on a blocking thread) and starts its worker.
    pub async fn start(id: &str, dir: &Path) -> std::result::Result<Self, ModelError> {
        let (id_owned, path) = (id.to_string(), dir.to_path_buf());
        let model = tokio::task::spawn_blocking(move || ImageModel::load(&id_owned, &path))
            .await
            .map_err(|_| ModelError::ThreadGone)?
            .map_err(|e| ModelError::Invalid {
                id: id.to_string(),
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        let dims = model.dims();
        let worker = Worker::spawn(&format!("image {id}"), model, 8, BATCH)
            .map_err(|_| ModelError::ThreadGone)?;
        Ok(Self {
            worker,
            id: id.to_string(),
            dims,
        })
    }
}

impl super::ImageEmbedding for ImageEmbedderService {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed(
        &self,
        images: Vec<Rgb>,
    ) -> BoxFuture<'_, std::result::Result<Vec<Vec<f32>>, ModelError>> {
        Box::pin(async move {
            self.worker.call((), images).await.map_err(|e| match e {
                WorkerError::Gone => ModelError::ThreadGone,
                WorkerError::Failed(reason) => ModelError::Inference(reason),
            })
        })
    }
}
