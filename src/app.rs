//! Wiring: the one place that builds the pieces from the resolved [`Settings`]. [`Mosaic`]
//! opens the backend the settings name (the embedded one: SQLite, qdrant-edge and tantivy under
//! the data directory), repairs a BM25 index that had to be rebuilt, and hands ingest and query
//! an [`Engine`]; [`ModelHub`] loads each model once onto its own worker thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use thiserror::Error;
use tokio::sync::OnceCell;

use crate::catalog::{CatalogError, SqlCatalog};
use crate::config::{Backend, Settings, StoreBackend};
use crate::embed::audio::AudioEmbedderService;
use crate::embed::image::ImageEmbedderService;
use crate::embed::{
    AudioEmbedding, CrossEncoder, EmbedderService, ImageEmbedding, Reranker, RerankerService,
    TextEmbedder, TextEmbedding,
};
pub use crate::engine::Stores;
use crate::engine::{Engine, Models};
use crate::fault::{Fault, HasFault};
use crate::ingest::write::{self, WriteError};
use crate::lexical::{LexicalError, LexicalIndex, Opened, QdrantLexical, TantivyIndex};
use crate::llm::{Generator, LocalGenerator, OpenAiGenerator};
use crate::models::{ModelError, ModelStore, TextModelSpec};
use crate::pipeline::{PipelineError, Pipelines};
use crate::store::{EdgeStore, QdrantConn, QdrantStore, StoreError, VectorStore};
use crate::transcribe::{Transcriber, TranscriberService};

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
    #[error(transparent)]
    Write(#[from] WriteError),
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
            AppError::Write(e) => e.fault(),
            AppError::DataDir { .. } => Fault::User,
            AppError::Busy { .. } => Fault::Transient,
        }
    }
}

/// An open Mosaic data directory: the [`Engine`] (which it dereferences to) and the lock that
/// makes this process its only user.
pub struct Mosaic {
    engine: Engine,
    /// Held for the life of this value: one process owns a data directory at a time.
    _lock: std::fs::File,
}

impl std::ops::Deref for Mosaic {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
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
    /// Opens (creating if needed) the data directory named in `settings`, with a new model hub.
    pub async fn open(settings: Settings) -> Result<Self, AppError> {
        let hub = Arc::new(ModelHub::new(&settings)?);
        Self::open_with(settings, hub, |stores| stores).await
    }

    /// Opens the data directory with the given models (a hub shared by several opens keeps
    /// its loaded models) and passes the stores through `wrap` before anything uses them.
    pub async fn open_with(
        settings: Settings,
        workers: Arc<dyn Models>,
        wrap: impl FnOnce(Stores) -> Stores,
    ) -> Result<Self, AppError> {
        let pipelines = load_pipelines(&settings)?;
        let data = settings.data_dir.clone();
        std::fs::create_dir_all(&data).map_err(|source| AppError::DataDir {
            path: data.clone(),
            source,
        })?;
        let lock = lock_data_dir(&data, settings.lock_wait_secs).await?;
        let (stores, lexical_opened) = open_stores(&settings.backend, &data, &pipelines).await?;
        let stores = wrap(stores);
        if lexical_opened != Opened::Existing {
            // A new or rebuilt BM25 index is refilled from the catalog's chunk texts, so a
            // lost or unusable index never leaves indexed sources unsearchable by words.
            let refilled =
                write::refill_lexical(stores.catalog.as_ref(), stores.lexical.as_ref()).await?;
            if refilled > 0 {
                tracing::warn!(
                    chunks = refilled,
                    "the BM25 index was refilled from the catalog"
                );
            }
        }
        let models = ModelStore::new(&settings.models.dir);
        Ok(Self {
            engine: Engine {
                settings,
                pipelines,
                catalog: stores.catalog,
                vectors: stores.vectors,
                lexical: stores.lexical,
                models,
                workers,
            },
            _lock: lock,
        })
    }

    /// The engine ingest and query run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The pipelines folder of the settings (or `./pipelines` when present), else built-in copies.
fn load_pipelines(settings: &Settings) -> Result<Pipelines, AppError> {
    let dir = settings
        .pipelines_dir
        .clone()
        .or_else(|| Some(PathBuf::from("pipelines")).filter(|p| p.is_dir()));
    Ok(Pipelines::load(dir.as_deref())?)
}

/// The catalog the settings name (SQLite under the data directory, or PostgreSQL), and the
/// vector and BM25 stores (qdrant-edge and tantivy under the data directory, or Qdrant).
async fn open_stores(
    backend: &Backend,
    data: &Path,
    pipelines: &Pipelines,
) -> Result<(Stores, Opened), AppError> {
    let catalog = match backend.postgres_url() {
        Some(url) => {
            let timeout = std::time::Duration::from_secs(backend.timeout_secs.max(1));
            SqlCatalog::connect(url, backend.max_connections, timeout).await?
        }
        None => SqlCatalog::open(&data.join("catalog.db")).await?,
    };
    let analyzer = pipelines.text.lexical.analyzer.clone();
    let (vectors, lexical, opened): (Arc<dyn VectorStore>, Arc<dyn LexicalIndex>, Opened) =
        match &backend.store {
            StoreBackend::Embedded => {
                let vectors_dir = data.join("vectors");
                let vectors = tokio::task::spawn_blocking(move || EdgeStore::open(&vectors_dir))
                    .await
                    .map_err(|e| StoreError::Join(e.to_string()))??;
                let lexical_dir = data.join("lexical");
                let (lexical, opened) = tokio::task::spawn_blocking(move || {
                    TantivyIndex::open(&lexical_dir, &analyzer)
                })
                .await
                .map_err(|e| LexicalError::Join(e.to_string()))??;
                (Arc::new(vectors), Arc::new(lexical), opened)
            }
            StoreBackend::Qdrant(settings) => {
                let conn = QdrantConn::connect(settings).await?;
                let (lexical, opened) = QdrantLexical::open(conn.clone(), &analyzer).await?;
                (Arc::new(QdrantStore::new(conn)), Arc::new(lexical), opened)
            }
        };
    Ok((
        Stores {
            catalog: Arc::new(catalog),
            vectors,
            lexical,
        },
        opened,
    ))
}

/// A model slot: loaded once, on first use; concurrent first callers wait for the one load,
/// and a failed load is tried again by the next caller.
type Slot<T> = Arc<OnceCell<T>>;

fn slot<T>(map: &Mutex<HashMap<String, Slot<T>>>, key: &str) -> Slot<T> {
    map.lock()
        .expect("model map lock")
        .entry(key.to_string())
        .or_default()
        .clone()
}

/// The models of one process, each on its own worker thread once loaded. Loading runs on a
/// blocking thread under that model's own slot, so it never holds up callers of other models.
pub struct ModelHub {
    store: ModelStore,
    pipelines: Pipelines,
    llm: crate::config::LlmSettings,
    embedders: Mutex<HashMap<String, Slot<Arc<dyn TextEmbedding>>>>,
    rerankers: Mutex<HashMap<String, Slot<Arc<dyn Reranker>>>>,
    transcribers: Mutex<HashMap<String, Slot<Arc<dyn Transcriber>>>>,
    audio: Mutex<HashMap<String, Slot<Arc<dyn AudioEmbedding>>>>,
    images: Mutex<HashMap<String, Slot<Arc<dyn ImageEmbedding>>>>,
    generator: OnceCell<Arc<dyn Generator>>,
}

impl ModelHub {
    pub fn new(settings: &Settings) -> Result<Self, AppError> {
        if settings.models.threads > 0 {
            // Candle's CPU kernels size their pool from this variable.
            std::env::set_var("RAYON_NUM_THREADS", settings.models.threads.to_string());
        }
        Ok(Self {
            store: ModelStore::new(&settings.models.dir),
            pipelines: load_pipelines(settings)?,
            llm: settings.llm.clone(),
            embedders: Mutex::default(),
            rerankers: Mutex::default(),
            transcribers: Mutex::default(),
            audio: Mutex::default(),
            images: Mutex::default(),
            generator: OnceCell::new(),
        })
    }

    /// The text model spec of `id` as configured in `pipelines/text.toml`.
    pub fn text_spec(&self, id: &str) -> Result<(TextModelSpec, PathBuf), ModelError> {
        let dir = self.store.require(id)?;
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

    async fn load_text_embedder(&self, id: &str) -> Result<Arc<dyn TextEmbedding>, ModelError> {
        let (spec, dir) = self.text_spec(id)?;
        let batch_tokens = self.pipelines.text.embedder.batch_tokens;
        let dtype = self.pipelines.text.embedder.dtype.clone();
        let cache = crate::embed::paths::cache_file(self.store.dir());
        let embedder = tokio::task::spawn_blocking(move || {
            let mut embedder = TextEmbedder::load(spec, &dir, batch_tokens)?;
            embedder.set_dtype(&dtype, Some(&cache))?;
            Ok::<_, ModelError>(embedder)
        })
        .await
        .map_err(|_| ModelError::ThreadGone)??;
        Ok(Arc::new(EmbedderService::spawn(embedder)))
    }

    async fn load_reranker(&self, id: &str) -> Result<Arc<dyn Reranker>, ModelError> {
        let dir = self.store.require(id)?;
        let owned = id.to_string();
        let batch_tokens = self.pipelines.text.embedder.batch_tokens;
        let max_tokens = self.pipelines.query.rerank.max_tokens;
        let dtype = self.pipelines.query.rerank.dtype.clone();
        let cache = crate::embed::paths::cache_file(self.store.dir());
        let model = tokio::task::spawn_blocking(move || {
            let mut model = CrossEncoder::load(&owned, &dir, max_tokens, batch_tokens)?;
            model.set_dtype(&dtype, Some(&cache))?;
            Ok::<_, ModelError>(model)
        })
        .await
        .map_err(|_| ModelError::ThreadGone)??;
        Ok(Arc::new(RerankerService::spawn(model)))
    }

    async fn load_transcriber(&self, name: &str) -> Result<Arc<dyn Transcriber>, ModelError> {
        let path = self.store.require_whisper(name)?;
        tracing::info!(model = %path.display(), "loading Whisper");
        let service = TranscriberService::start(&path)
            .await
            .map_err(|e| ModelError::Invalid {
                id: name.to_string(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Arc::new(service))
    }

    async fn load_audio(&self, path: &Path) -> Result<Arc<dyn AudioEmbedding>, ModelError> {
        tracing::info!(model = %path.display(), "loading CNN14");
        let service = AudioEmbedderService::start(path)
            .await
            .map_err(|e| ModelError::Invalid {
                id: "cnn14".into(),
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Arc::new(service))
    }

    async fn load_image(&self, id: &str) -> Result<Arc<dyn ImageEmbedding>, ModelError> {
        let dir = self.store.require(id)?;
        tracing::info!(model = %id, path = %dir.display(), "loading image model");
        let dtype = &self.pipelines.image.embedder.dtype;
        let cache = crate::embed::paths::cache_file(self.store.dir());
        Ok(Arc::new(
            ImageEmbedderService::start(id, &dir, dtype, Some(cache)).await?,
        ))
    }

    async fn make_generator(&self) -> Result<Arc<dyn Generator>, String> {
        let llm = &self.llm;
        if let Some(url) = &llm.base_url {
            return Ok(Arc::new(OpenAiGenerator::new(
                url,
                &llm.model,
                llm.api_key.as_deref(),
                llm.timeout_secs,
            )));
        }
        if !llm.embedded {
            return Err("llm.base_url is not set and the embedded model is disabled".into());
        }
        let path = self
            .store
            .locate(&llm.embedded_model)
            .and_then(|d| crate::models::gguf_file(&d))
            .ok_or_else(|| {
                format!(
                    "llm.base_url is not set and the embedded model {} is not installed",
                    llm.embedded_model
                )
            })?;
        let name = llm
            .embedded_model
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        match tokio::task::spawn_blocking(move || LocalGenerator::load(&path, &name)).await {
            Ok(Ok(g)) => Ok(Arc::new(g)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Models for ModelHub {
    fn text_embedder<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn TextEmbedding>, ModelError>> {
        async move {
            let cell = slot(&self.embedders, id);
            cell.get_or_try_init(|| self.load_text_embedder(id))
                .await
                .cloned()
        }
        .boxed()
    }

    fn reranker<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Arc<dyn Reranker>, ModelError>> {
        async move {
            let cell = slot(&self.rerankers, id);
            cell.get_or_try_init(|| self.load_reranker(id))
                .await
                .cloned()
        }
        .boxed()
    }

    fn transcriber<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn Transcriber>, ModelError>> {
        async move {
            let cell = slot(&self.transcribers, name);
            cell.get_or_try_init(|| self.load_transcriber(name))
                .await
                .cloned()
        }
        .boxed()
    }

    fn audio_embedder<'a>(
        &'a self,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<Arc<dyn AudioEmbedding>, ModelError>> {
        async move {
            let cell = slot(&self.audio, &path.display().to_string());
            cell.get_or_try_init(|| self.load_audio(path))
                .await
                .cloned()
        }
        .boxed()
    }

    fn image_embedder<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn ImageEmbedding>, ModelError>> {
        async move {
            let cell = slot(&self.images, id);
            cell.get_or_try_init(|| self.load_image(id)).await.cloned()
        }
        .boxed()
    }

    fn generator(&self) -> BoxFuture<'_, (Option<Arc<dyn Generator>>, String)> {
        async move {
            match self
                .generator
                .get_or_try_init(|| self.make_generator())
                .await
            {
                Ok(g) => (Some(g.clone()), String::new()),
                Err(reason) => (None, reason),
            }
        }
        .boxed()
    }
}
