//! Image embedders: each architecture in its own module (EfficientNet-Lite0 now; ResNet and
//! the CLIP/SigLIP towers beside it), one loader that reads a model folder (its
//! `config.json`, weights and `preprocessor_config.json`) and preprocesses exactly as that
//! model's reference, and a service that keeps the model on its own worker thread, batching
//! pictures from concurrent callers.

pub mod clip;
pub mod efficientnet;
pub mod preprocess;
pub mod resnet;
pub mod siglip;
pub mod spiece;
pub mod vit;

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use rayon::prelude::*;
use serde_json::Value;
use thiserror::Error;

use self::clip::Clip;
use self::efficientnet::{EfficientNetLite, PaddingRule, StateDict};
use self::preprocess::{Filter, Pixels, Preprocess, Resize, Rgb};
use self::resnet::{Layout, ResNet, ResNetShape};
use self::siglip::Siglip;
use super::worker::{Model, Worker, WorkerError};
use crate::kernels::conv::FeatureMap;
use crate::kernels::path::ProductPath;
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
    ResNet(ResNet),
    Clip(Box<Clip>),
    Siglip(Box<Siglip>),
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

/// The model folder's `preprocessor_config.json` (`fallback` names the processor when the file
/// does not, or when there is no file: then its defaults apply).
fn processor(dir: &Path, fallback: &str) -> Result<Preprocess> {
    let path = dir.join("preprocessor_config.json");
    let config = if path.is_file() {
        read_json(&path)?
    } else {
        Value::Object(Default::default())
    };
    Preprocess::from_processor_config(&config, fallback)
        .map_err(|reason| ImageModelError::Config { path, reason })
}

/// timm's evaluation transform from its `config.json` (`pretrained_cfg`: input size,
/// interpolation, crop_pct, mean, std): the shorter side to `size / crop_pct`, then a centre
/// crop, as transformers' ConvNext processor does it.
fn timm_preprocess(config: &Value) -> std::result::Result<Preprocess, String> {
    let cfg = config.get("pretrained_cfg").unwrap_or(config);
    let size = cfg
        .get("input_size")
        .and_then(Value::as_array)
        .and_then(|a| a.last())
        .and_then(Value::as_u64)
        .unwrap_or(224);
    let resample = match cfg.get("interpolation").and_then(Value::as_str) {
        Some("bicubic") => 3,
        Some("bilinear") | None => 2,
        Some(other) => return Err(format!("interpolation `{other}`")),
    };
    let mut processor = serde_json::json!({
        "image_processor_type": "ConvNextImageProcessor",
        "size": size,
        "crop_pct": cfg.get("crop_pct").and_then(Value::as_f64).unwrap_or(0.875),
        "resample": resample,
    });
    for (from, to) in [("mean", "image_mean"), ("std", "image_std")] {
        if let Some(v) = cfg.get(from) {
            processor[to] = v.clone();
        }
    }
    Preprocess::from_processor_config(&processor, "ConvNextImageProcessor")
}

/// `bias + weight · pooled` for a classifier head stored as (`[classes × n]`, `[classes]`).
pub(super) fn linear_head(head: &(Vec<f32>, Vec<f32>), pooled: &[f32]) -> Vec<f32> {
    let (weight, bias) = head;
    let n = pooled.len();
    bias.iter()
        .enumerate()
        .map(|(c, &b)| {
            b + weight[c * n..(c + 1) * n]
                .iter()
                .zip(pooled)
                .map(|(w, x)| w * x)
                .sum::<f32>()
        })
        .collect()
}

impl ImageModel {
    /// Loads model `id` from its folder.
    pub fn load(id: &str, dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        // A bare torchvision checkpoint comes without a config: it is read as a ResNet with
        // torchvision's evaluation transform (256, centre crop 224, bilinear, ImageNet mean/std).
        let config = if config_path.is_file() || !weights_file(dir).is_ok_and(|w| w.is_file()) {
            read_json(&config_path)?
        } else {
            serde_json::json!({ "architecture": "resnet (torchvision, no config.json)" })
        };
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
            "clip" | "siglip" => {
                let tensors = load_state_dict(&weights_file(dir)?)?;
                let w = StateDict::new(tensors);
                let (dims, tower, fallback) = if model_type == "clip" {
                    let net = Clip::load(&config, w, dir)?;
                    (net.dims(), Tower::Clip(Box::new(net)), "CLIPImageProcessor")
                } else {
                    let net = Siglip::load(&config, w, dir)?;
                    (
                        net.dims(),
                        Tower::Siglip(Box::new(net)),
                        "SiglipImageProcessor",
                    )
                };
                let mut preprocess = processor(dir, fallback)?;
                // Without a preprocessor_config.json the input is the tower's own size.
                if !dir.join("preprocessor_config.json").is_file() {
                    let size = config
                        .pointer("/vision_config/image_size")
                        .and_then(Value::as_u64)
                        .unwrap_or(224) as u32;
                    preprocess.resize = match preprocess.resize {
                        Resize::ShortestEdge { .. } => Resize::ShortestEdge { size },
                        Resize::Exact { .. } => Resize::Exact {
                            width: size,
                            height: size,
                        },
                    };
                    preprocess.crop = preprocess.crop.map(|_| (size, size));
                }
                Ok(Self {
                    id: id.to_string(),
                    tower,
                    preprocess,
                    dims,
                })
            }
            "resnet" => {
                let tensors = load_state_dict(&weights_file(dir)?)?;
                let layout = Layout::detect(&tensors);
                let mut shape = match layout {
                    Some(layout) => ResNetShape::from_tensors(layout, &tensors)?,
                    None => {
                        return Err(ImageModelError::Unsupported(format!(
                            "{id}: config says resnet but the weights are not a ResNet's"
                        )))
                    }
                };
                let depths: Option<Vec<usize>> =
                    config.get("depths").and_then(Value::as_array).map(|a| {
                        a.iter()
                            .filter_map(Value::as_u64)
                            .map(|d| d as usize)
                            .collect()
                    });
                if let Some(depths) = depths {
                    if depths != shape.depths {
                        return Err(ImageModelError::Config {
                            path: config_path,
                            reason: format!(
                                "depths {depths:?}, but the weights have {:?}",
                                shape.depths
                            ),
                        });
                    }
                }
                if let Some(kind) = config.get("layer_type").and_then(Value::as_str) {
                    shape.bottleneck = kind == "bottleneck";
                }
                let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
                shape.stride_on_first = flag("downsample_in_bottleneck");
                shape.downsample_first_stage = flag("downsample_in_first_stage");
                let net = ResNet::from_tensors(tensors, &shape)?;
                let preprocess = processor(dir, "ConvNextImageProcessor")?;
                Ok(Self {
                    id: id.to_string(),
                    dims: net.features(),
                    tower: Tower::ResNet(net),
                    preprocess,
                })
            }
            // timm and torchvision checkpoints: no transformers config; timm's config.json
            // names the architecture and its evaluation transform.
            _ if config
                .get("architecture")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("resnet")) =>
            {
                let tensors = load_state_dict(&weights_file(dir)?)?;
                let Some(layout) = Layout::detect(&tensors) else {
                    return Err(ImageModelError::Unsupported(format!(
                        "{id}: config says {} but the weights are not a ResNet's",
                        config["architecture"]
                    )));
                };
                let shape = ResNetShape::from_tensors(layout, &tensors)?;
                let net = ResNet::from_tensors(tensors, &shape)?;
                let preprocess =
                    timm_preprocess(&config).map_err(|reason| ImageModelError::Config {
                        path: config_path.clone(),
                        reason,
                    })?;
                Ok(Self {
                    id: id.to_string(),
                    dims: net.features(),
                    tower: Tower::ResNet(net),
                    preprocess,
                })
            }
            other => Err(ImageModelError::Unsupported(format!(
                "{id}: model_type `{other}` (supported: clip, siglip, resnet, efficientnet_lite, \
                 and timm or torchvision resnet checkpoints)"
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
        self.features_of(vec![pixels])
            .pop()
            .expect("one picture in, one out")
    }

    /// [`ImageModel::features`] of several pictures, in order. The ViT towers take them in
    /// one packed pass (every product `pictures × tokens` rows high); the convolutional
    /// networks one by one (each convolution already spans the picture's whole grid).
    pub fn features_of(&self, pixels: Vec<Pixels>) -> Vec<Vec<f32>> {
        let maps: Vec<FeatureMap> = pixels
            .into_iter()
            .map(|p| FeatureMap::new(3, p.height, p.width, p.data))
            .collect();
        match &self.tower {
            Tower::EfficientNetLite(net) => maps.into_iter().map(|m| net.embed(m)).collect(),
            Tower::ResNet(net) => maps.into_iter().map(|m| net.embed(m)).collect(),
            Tower::Clip(net) => net
                .embed_images(&maps)
                .into_iter()
                .map(|(_, e)| e)
                .collect(),
            Tower::Siglip(net) => net.embed_images(&maps),
        }
    }

    /// The transformers whose products can switch paths (none for the convolutional
    /// networks, which run f32).
    fn transformers_mut(&mut self) -> Vec<&mut vit::Transformer> {
        match &mut self.tower {
            Tower::Clip(net) => net.transformers_mut(),
            Tower::Siglip(net) => net.transformers_mut(),
            Tower::EfficientNetLite(_) | Tower::ResNet(_) => Vec::new(),
        }
    }

    /// Whether the model's products can run on other paths than f32 (the ViT towers).
    pub fn switches_paths(&self) -> bool {
        matches!(self.tower, Tower::Clip(_) | Tower::Siglip(_))
    }

    /// The path the products run on (the default f32 path for the convolutional networks).
    pub fn path(&self) -> ProductPath {
        match &self.tower {
            Tower::Clip(_) | Tower::Siglip(_) => self
                .transformers()
                .first()
                .map_or_else(ProductPath::default_f32, |t| t.path()),
            Tower::EfficientNetLite(_) | Tower::ResNet(_) => ProductPath::default_f32(),
        }
    }

    fn transformers(&self) -> Vec<&vit::Transformer> {
        match &self.tower {
            Tower::Clip(net) => net.transformers(),
            Tower::Siglip(net) => net.transformers(),
            Tower::EfficientNetLite(_) | Tower::ResNet(_) => Vec::new(),
        }
    }

    /// Runs the products on `path` from now on (benchmarks; every weight form is kept).
    /// The convolutional networks take the default f32 path only.
    pub fn use_path(&mut self, path: ProductPath) -> std::result::Result<(), String> {
        if !self.switches_paths() {
            return if path == ProductPath::default_f32() {
                Ok(())
            } else {
                Err(format!(
                    "{} is a convolutional network: its products run {} only",
                    self.id,
                    ProductPath::default_f32().id()
                ))
            };
        }
        for t in self.transformers_mut() {
            t.use_path(path)?;
        }
        Ok(())
    }

    /// Selects the product path from the pipeline's `dtype` (`"auto"`, `"f32"`, `"bf16"` or
    /// a path id; see [`super::paths::select`]): the CLIP and SigLIP towers measure the paths
    /// on a fixed probe (pictures and texts) for `auto`; the convolutional networks run f32
    /// whatever the setting, and say so. `cache` is where `auto` remembers its measurement.
    pub fn set_dtype(
        &mut self,
        dtype: &str,
        cache: Option<&Path>,
    ) -> std::result::Result<super::paths::PathChoice, String> {
        if !self.switches_paths() {
            if !matches!(dtype, "auto" | "f32")
                && ProductPath::from_id(dtype).is_none_or(|p| p.dtype() != "f32")
            {
                tracing::warn!(model = %self.id, %dtype, "a convolutional picture model runs f32 only");
            }
            let choice = super::paths::PathChoice {
                path: ProductPath::default_f32(),
                dtype: dtype.to_string(),
                measures: Vec::new(),
                remembered: false,
                unit: "pictures",
            };
            tracing::info!(model = %self.id, "{} (convolutions run f32)", choice.explain());
            return Ok(choice);
        }
        let id = self.id.clone();
        let probe = self.probe();
        super::paths::select(self, &id, dtype, || Ok(probe), cache)
    }

    /// The fixed inputs `dtype = "auto"` measures the paths on: four synthetic pictures
    /// (smooth gradients, stripes and discs at the model's input size, preprocessed as any
    /// picture) and, with a text tower, the probe questions.
    pub fn probe(&self) -> ImageProbe {
        let (w, h) = self.preprocess.output_size();
        let pictures = (0..4u32)
            .map(|k| {
                let mut data = Vec::with_capacity((w * h * 3) as usize);
                for y in 0..h {
                    for x in 0..w {
                        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                        let (dx, dy) = (fx - 0.3 - 0.1 * k as f32, fy - 0.5);
                        let disc = dx * dx + dy * dy < 0.04 + 0.01 * k as f32;
                        let stripe = ((x / (3 + k)) % 2) as f32;
                        for c in 0..3u32 {
                            let v = match (disc, (c + k) % 3) {
                                (true, 0) => 230.0,
                                (true, _) => 40.0 + 20.0 * c as f32,
                                (false, 0) => 255.0 * fx,
                                (false, 1) => 255.0 * fy,
                                (false, _) => 60.0 + 120.0 * stripe * fx,
                            };
                            data.push(v.clamp(0.0, 255.0) as u8);
                        }
                    }
                }
                self.preprocess.apply(&Rgb::new(w, h, data))
            })
            .collect();
        let texts = if self.has_text() {
            super::paths::PROBE_QUESTIONS
                .iter()
                .map(|q| q.to_string())
                .collect()
        } else {
            Vec::new()
        };
        ImageProbe { pictures, texts }
    }

    /// Whether the model embeds text into its image space (CLIP and SigLIP with a tokenizer).
    pub fn has_text(&self) -> bool {
        match &self.tower {
            Tower::Clip(net) => net.has_text(),
            Tower::Siglip(net) => net.has_text(),
            Tower::EfficientNetLite(_) | Tower::ResNet(_) => false,
        }
    }

    /// The text tower's embeddings of `texts` (not normalised), in order.
    pub fn text_features(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        match &self.tower {
            Tower::Clip(net) => Ok(net
                .embed_texts(texts)?
                .into_iter()
                .map(|(_, e)| e)
                .collect()),
            Tower::Siglip(net) => net.embed_texts(texts),
            Tower::EfficientNetLite(_) | Tower::ResNet(_) => Err(ImageModelError::Unsupported(
                format!("{} embeds pictures only: it has no text tower", self.id),
            )),
        }
    }

    /// Token ids of a text as the text tower sees it (truncated, and padded for SigLIP).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        match &self.tower {
            Tower::Clip(net) => net.tokenize(text),
            Tower::Siglip(net) => net.tokenize(text),
            Tower::EfficientNetLite(_) | Tower::ResNet(_) => Err(ImageModelError::Unsupported(
                format!("{} has no text tower", self.id),
            )),
        }
    }

    /// Unit-length text embeddings in the image space, in order.
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .text_features(texts)?
            .into_iter()
            .map(normalized)
            .collect())
    }

    /// Class logits from pooled features, for models that carry a classifier.
    pub fn classify(&self, features: &[f32]) -> Option<Vec<f32>> {
        match &self.tower {
            Tower::EfficientNetLite(net) => net.classify(features),
            Tower::ResNet(net) => net.classify(features),
            Tower::Clip(_) | Tower::Siglip(_) => None,
        }
    }

    /// Unit-length embeddings of decoded pictures, in order.
    pub fn embed(&self, images: &[Rgb]) -> Vec<Vec<f32>> {
        let pixels: Vec<Pixels> = images
            .par_iter()
            .map(|image| self.preprocess.apply(image))
            .collect();
        self.features_of(pixels)
            .into_iter()
            .map(normalized)
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

/// The inputs `dtype = "auto"` measures an image model's paths on.
pub struct ImageProbe {
    pub pictures: Vec<Pixels>,
    pub texts: Vec<String>,
}

impl super::paths::PathModel for ImageModel {
    type Probe = ImageProbe;
    const UNIT: &'static str = "pictures";

    /// Every path on the probe: the pictures' embeddings and the texts' (one path serves
    /// both towers), timed together, counted in pictures.
    fn measure_paths(
        &mut self,
        probe: &ImageProbe,
    ) -> std::result::Result<Vec<super::encoder::PathMeasure>, String> {
        let forward = |model: &mut ImageModel| {
            let mut out = model.features_of(probe.pictures.clone());
            if !probe.texts.is_empty() {
                out.extend(
                    model
                        .text_features(&probe.texts)
                        .map_err(|e| e.to_string())?,
                );
            }
            Ok(out)
        };
        super::paths::measure(self, probe.pictures.len(), ImageModel::use_path, forward)
    }

    fn set_dtype(
        &mut self,
        model: &str,
        dtype: &str,
        chosen: Option<ProductPath>,
    ) -> std::result::Result<ProductPath, String> {
        let path = super::encoder::resolve_dtype(model, dtype, chosen)?;
        self.use_path(path)?;
        for t in self.transformers_mut() {
            t.keep_only_path();
        }
        Ok(path)
    }
}

/// What the image worker embeds: a picture, or a text for the text tower.
pub enum ImageInput {
    Picture(Rgb),
    Text(String),
}

impl Model for ImageModel {
    type Input = ImageInput;
    type Output = Vec<f32>;
    type Params = ();

    fn cost(&self, _: &ImageInput) -> usize {
        1
    }

    fn run(
        &mut self,
        _: &(),
        inputs: Vec<ImageInput>,
    ) -> std::result::Result<Vec<Vec<f32>>, String> {
        let mut pictures = Vec::new();
        let mut texts = Vec::new();
        let order: Vec<bool> = inputs
            .into_iter()
            .map(|input| match input {
                ImageInput::Picture(rgb) => {
                    pictures.push(rgb);
                    true
                }
                ImageInput::Text(text) => {
                    texts.push(text);
                    false
                }
            })
            .collect();
        let mut pictures = self.embed(&pictures).into_iter();
        let mut texts = if texts.is_empty() {
            Vec::new().into_iter()
        } else {
            self.embed_texts(&texts)
                .map_err(|e| e.to_string())?
                .into_iter()
        };
        Ok(order
            .into_iter()
            .map(|picture| {
                if picture {
                    pictures.next()
                } else {
                    texts.next()
                }
                .unwrap_or_default()
            })
            .collect())
    }
}

/// Pictures merged into one pass on the worker.
pub const BATCH: usize = 16;

/// Handle to an image model on its worker thread. Cheap to clone.
#[derive(Clone)]
pub struct ImageEmbedderService {
    worker: Worker<ImageModel>,
    id: String,
    dims: usize,
    text: bool,
}

impl ImageEmbedderService {
    /// Loads model `id` from `dir` and selects its product path from `dtype` (on a blocking
    /// thread; `cache` is where `auto` remembers its measurement), then starts its worker.
    pub async fn start(
        id: &str,
        dir: &Path,
        dtype: &str,
        cache: Option<PathBuf>,
    ) -> std::result::Result<Self, ModelError> {
        let (id_owned, path, dtype) = (id.to_string(), dir.to_path_buf(), dtype.to_string());
        let model = tokio::task::spawn_blocking(move || {
            let mut model = ImageModel::load(&id_owned, &path).map_err(|e| e.to_string())?;
            model.set_dtype(&dtype, cache.as_deref())?;
            Ok::<_, String>(model)
        })
        .await
        .map_err(|_| ModelError::ThreadGone)?
        .map_err(|reason| ModelError::Invalid {
            id: id.to_string(),
            path: dir.to_path_buf(),
            reason,
        })?;
        let dims = model.dims();
        let text = model.has_text();
        let worker = Worker::spawn(&format!("image {id}"), model, 8, BATCH)
            .map_err(|_| ModelError::ThreadGone)?;
        Ok(Self {
            worker,
            id: id.to_string(),
            dims,
            text,
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
        let inputs = images.into_iter().map(ImageInput::Picture).collect();
        Box::pin(self.call(inputs))
    }

    fn embeds_text(&self) -> bool {
        self.text
    }

    fn embed_texts(
        &self,
        texts: Vec<String>,
    ) -> BoxFuture<'_, std::result::Result<Vec<Vec<f32>>, ModelError>> {
        if !self.text {
            let reason = format!("{} embeds pictures only: it has no text tower", self.id);
            return Box::pin(async move { Err(ModelError::Inference(reason)) });
        }
        let inputs = texts.into_iter().map(ImageInput::Text).collect();
        Box::pin(self.call(inputs))
    }
}

impl ImageEmbedderService {
    async fn call(
        &self,
        inputs: Vec<ImageInput>,
    ) -> std::result::Result<Vec<Vec<f32>>, ModelError> {
        self.worker.call((), inputs).await.map_err(|e| match e {
            WorkerError::Gone => ModelError::ThreadGone,
            WorkerError::Failed(reason) => ModelError::Inference(reason),
        })
    }
}
