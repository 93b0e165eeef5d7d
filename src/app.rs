//! Wiring: one [`Mosaic`] value opens the catalog, the vector store and the BM25 index under
//! the data directory and loads models on demand, each onto its own thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::Mutex;

use crate::catalog::{Catalog, CatalogError};
use crate::config::Settings;
use crate::embed::{CrossEncoder, EmbedderService, RerankerService, TextEmbedder};
use crate::fault::{Fault, HasFault};
use crate::lexical::{LexicalError, LexicalIndex};
use crate::llm::{Generator, LocalGenerator, OpenAiGenerator};
use crate::models::{ModelError, ModelStore, TextModelSpec};
use crate::pipeline::{PipelineError, Pipelines};
use crate::store::{EdgeStore, SpaceSpec, StoreError, VectorStore};

/// Errors of opening and wiring the parts.
#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lexical(#[from] LexicalError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {path} is in use by another mosaic process (waited {waited_secs} s; lock_wait_secs sets how long)")]
    Busy { path: PathBuf, waited_secs: u64 },
}

impl HasFault for AppError {
    fn fault(&self) -> Fault {
        match self {
            AppError::Catalog(e) => e.fault(),
            AppError::Store(e) => e.fault(),
            AppError::Lexical(e) => e.fault(),
            AppError::Model(e) => e.fault(),
            AppError::Pipeline(e) => e.fault(),
            AppError::DataDir { .. } => Fault::User,
            AppError::Busy { .. } => Fault::Transient,
        }
    }
}

/// An open Mosaic data directory with its pipelines and models.
pub struct Mosaic {
    pub settings: Settings,
    pub pipelines: Pipelines,
    pub catalog: Catalog,
    pub vectors: Arc<dyn VectorStore>,
    pub lexical: LexicalIndex,
    pub models: ModelStore,
    embedders: Mutex<HashMap<String, EmbedderService>>,
    /// Held for the life of this value: one process owns a data directory at a time.
    _lock: std::fs::File,
    rerankers: Mutex<HashMap<String, RerankerService>>,
    generator: Mutex<Option<Arc<dyn Generator>>>,
}

/// Takes the data directory's lock file, waiting up to `wait_secs` for another process to let go.
/// The operating system releases it when the process ends, however it ends.
async fn lock_data_dir(data: &std::path::Path, wait_secs: u64) -> Result<std::fs::File, AppError> {
    let path = data.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| AppError::DataDir {
            path: path.clone(),
            source,
        })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
    let mut warned = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                if std::time::Instant::now() >= deadline {
                    return Err(AppError::Busy {
                        path: data.to_path_buf(),
                        waited_secs: wait_secs,
                    });
                }
                if !warned {
                    tracing::info!(
                        "waiting for another mosaic process to release {}",
                        data.display()
                    );
                    warned = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(AppError::DataDir { path, source })
            }
        }
    }
}

impl Mosaic {
    /// Opens (creating if needed) the data directory named in `settings`.
    pub async fn open(settings: Settings) -> Result<Self, AppError> {
        let pipelines_dir = settings
            .pipelines_dir
            .clone()
            .or_else(|| Some(PathBuf::from("pipelines")).filter(|p| p.is_dir()));
        let pipelines = Pipelines::load(pipelines_dir.as_deref())?;
        let data = settings.data_dir.clone();
        std::fs::create_dir_all(&data).map_err(|source| AppError::DataDir {
            path: data.clone(),
            source,
        })?;
        let lock = lock_data_dir(&data, settings.lock_wait_secs).await?;
        let catalog = Catalog::open(&data.join("catalog.db")).await?;
        let vectors_dir = data.join("vectors");
        let vectors = tokio::task::spawn_blocking(move || EdgeStore::open(&vectors_dir))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))??;
        let lexical_dir = data.join("lexical");
        let analyzer = pipelines.text.lexical.analyzer.clone();
        let (lexical, rebuilt) =
            tokio::task::spawn_blocking(move || LexicalIndex::open(&lexical_dir, &analyzer))
                .await
                .map_err(|e| LexicalError::Join(e.to_string()))??;
        if rebuilt {
            tracing::warn!("BM25 analyzer changed: the lexical index was rebuilt empty; the next ingest refills it");
        }
        let models = ModelStore::new(&settings.models.dir);
        if settings.models.threads > 0 {
            // Candle's CPU kernels size their pool from this variable.
            std::env::set_var("RAYON_NUM_THREADS", settings.models.threads.to_string());
        }
        Ok(Self {
            settings,
            pipelines,
            catalog,
            vectors: Arc::new(vectors),
            lexical,
            models,
            embedders: Mutex::new(HashMap::new()),
            _lock: lock,
            rerankers: Mutex::new(HashMap::new()),
            generator: Mutex::new(None),
        })
    }

    /// The text model spec of `id` as configured in `pipelines/text.toml`.
    pub fn text_spec(&self, id: &str) -> Result<(TextModelSpec, PathBuf), ModelError> {
        let dir = self.models.require(id)?;
        let section = &self.pipelines.text.embedder;
        let (q, p) = if id == section.model {
            (
                section.query_prefix.as_deref(),
                section.passage_prefix.as_deref(),
            )
        } else {
            (None, None)
        };
        Ok((TextModelSpec::load(id, &dir, q, p)?, dir))
    }

    /// The embedder for a text model, loaded on first use onto its own thread.
    pub async fn text_embedder(&self, id: &str) -> Result<EmbedderService, ModelError> {
        let mut cache = self.embedders.lock().await;
        if let Some(service) = cache.get(id) {
            return Ok(service.clone());
        }
        let (spec, dir) = self.text_spec(id)?;
        let batch_tokens = self.pipelines.text.embedder.batch_tokens;
        let dtype = self.pipelines.text.embedder.dtype.clone();
        let embedder = tokio::task::spawn_blocking(move || {
            let mut embedder = TextEmbedder::load(spec, &dir, batch_tokens)?;
            embedder.set_dtype(&dtype)?;
            Ok::<_, ModelError>(embedder)
        })
        .await
        .map_err(|_| ModelError::ThreadGone)??;
        let service = EmbedderService::spawn(embedder);
        cache.insert(id.to_string(), service.clone());
        Ok(service)
    }

    /// The embedding space a text model writes to. With sentence vectors each chunk is a
    /// multivector point (its own vector and one per sentence), in a space of its own name.
    pub fn text_space(spec: &TextModelSpec, sentence_vectors: bool) -> SpaceSpec {
        let name = format!("text/{}/{}", spec.id, spec.dims());
        SpaceSpec {
            name: if sentence_vectors {
                format!("{name}/sentences")
            } else {
                name
            },
            dims: spec.dims(),
            multivector: sentence_vectors,
        }
    }

    /// The embedding space of audio windows (CNN14).
    pub fn audio_space(dims: usize) -> SpaceSpec {
        SpaceSpec {
            name: format!("audio/cnn14/{dims}"),
            dims,
            multivector: false,
        }
    }

    /// The cross-encoder `id`, loaded on first use onto its own thread.
    pub async fn reranker(&self, id: &str) -> Result<RerankerService, ModelError> {
        let mut cache = self.rerankers.lock().await;
        if let Some(service) = cache.get(id) {
            return Ok(service.clone());
        }
        let dir = self.models.require(id)?;
        let owned = id.to_string();
        let batch_tokens = self.pipelines.text.embedder.batch_tokens;
        let max_tokens = self.pipelines.query.rerank.max_tokens;
        let dtype = self.pipelines.query.rerank.dtype.clone();
        let model = tokio::task::spawn_blocking(move || {
            let mut model = CrossEncoder::load(&owned, &dir, max_tokens, batch_tokens)?;
            model.set_dtype(&dtype)?;
            Ok::<_, ModelError>(model)
        })
        .await
        .map_err(|_| ModelError::ThreadGone)??;
        let service = RerankerService::spawn(model);
        cache.insert(id.to_string(), service.clone());
        Ok(service)
    }

    /// The answer generator: the OpenAI-compatible server when a base URL is set, else the
    /// embedded GGUF model when installed. `None` (with the reason) means extracted answers only.
    pub async fn generator(&self) -> (Option<Arc<dyn Generator>>, String) {
        let mut slot = self.generator.lock().await;
        if let Some(g) = slot.as_ref() {
            return (Some(g.clone()), String::new());
        }
        let llm = &self.settings.llm;
        let made: Arc<dyn Generator> = if let Some(url) = &llm.base_url {
            Arc::new(OpenAiGenerator::new(
                url,
                &llm.model,
                llm.api_key.as_deref(),
                llm.timeout_secs,
            ))
        } else if !llm.embedded {
            return (
                None,
                "llm.base_url is not set and the embedded model is disabled".into(),
            );
        } else {
            let Some(path) = self
                .models
                .locate(&llm.embedded_model)
                .and_then(|d| crate::models::gguf_file(&d))
            else {
                return (
                    None,
                    format!(
                        "llm.base_url is not set and the embedded model {} is not installed",
                        llm.embedded_model
                    ),
                );
            };
            let name = llm
                .embedded_model
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            match tokio::task::spawn_blocking(move || LocalGenerator::load(&path, &name)).await {
                Ok(Ok(g)) => Arc::new(g),
                Ok(Err(e)) => return (None, e.to_string()),
                Err(e) => return (None, e.to_string()),
            }
        };
        *slot = Some(made.clone());
        (Some(made), String::new())
    }
}
