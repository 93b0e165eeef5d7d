//! The pieces every command runs on: the resolved settings and pipelines, the three stores
//! behind their traits, and the model workers behind [`Models`]. Ingest and query are written
//! against this, never against `app` (which only builds it from the settings), so a test can
//! hand them wrapped stores and a server can share one set of model workers among callers.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::catalog::Catalog;
use crate::config::Settings;
use crate::embed::{AudioEmbedding, ImageEmbedding, Reranker, TextEmbedding};
use crate::lexical::LexicalIndex;
use crate::llm::Generator;
use crate::models::{ModelError, ModelStore};
use crate::pipeline::Pipelines;
use crate::store::VectorStore;
use crate::transcribe::Transcriber;

/// Where the models of a process come from. Each model is loaded once, on first use, onto its
/// own worker thread, and stays loaded for the life of the provider; loading one model never
/// holds up callers of another.
pub trait Models: Send + Sync {
    /// The text embedder `id` (a Hugging Face id installed in the models folder).
    fn text_embedder<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn TextEmbedding>, ModelError>>;
    /// The cross-encoder `id`.
    fn reranker<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Arc<dyn Reranker>, ModelError>>;
    /// The speech model `name` (a Whisper size such as `tiny.en`, or a path).
    fn transcriber<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn Transcriber>, ModelError>>;
    /// CNN14 from the checkpoint at `path`.
    fn audio_embedder<'a>(
        &'a self,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<Arc<dyn AudioEmbedding>, ModelError>>;
    /// The image model `id` (a Hugging Face id installed in the models folder).
    fn image_embedder<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn ImageEmbedding>, ModelError>>;
    /// The answer generator; `None` with the reason when answers are extracted only.
    fn generator(&self) -> BoxFuture<'_, (Option<Arc<dyn Generator>>, String)>;
}

/// Watches long work: the CLI draws it with indicatif, the server records it as job status.
pub trait Progress: Send + Sync {
    /// How many steps the work has (files, for an ingest).
    fn set_length(&self, steps: u64);
    /// One more step is done.
    fn advance(&self);
    /// What is happening now.
    fn message(&self, text: String);
    /// The work is over.
    fn finish(&self);
    /// Whether the work should stop at the next safe point (an ingest: between files).
    fn cancelled(&self) -> bool {
        false
    }
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_length(&self, _: u64) {}
    fn advance(&self) {}
    fn message(&self, _: String) {}
    fn finish(&self) {}
}

/// The stores of an engine, as `app::Mosaic::open_with` hands them to a wrapping function (tests
/// wrap them in fault injectors).
pub struct Stores {
    pub catalog: Arc<dyn Catalog>,
    pub vectors: Arc<dyn VectorStore>,
    pub lexical: Arc<dyn LexicalIndex>,
}

/// Settings, pipelines, stores and models, ready for ingest and query.
pub struct Engine {
    pub settings: Settings,
    pub pipelines: Pipelines,
    pub catalog: Arc<dyn Catalog>,
    pub vectors: Arc<dyn VectorStore>,
    pub lexical: Arc<dyn LexicalIndex>,
    /// The models folder: what is installed where.
    pub models: ModelStore,
    /// The loaded models.
    pub workers: Arc<dyn Models>,
}

impl Engine {
    /// The text embedder `id`, loaded on first use.
    pub async fn text_embedder(&self, id: &str) -> Result<Arc<dyn TextEmbedding>, ModelError> {
        self.workers.text_embedder(id).await
    }

    /// The cross-encoder `id`, loaded on first use.
    pub async fn reranker(&self, id: &str) -> Result<Arc<dyn Reranker>, ModelError> {
        self.workers.reranker(id).await
    }

    /// The answer generator (see [`Models::generator`]).
    pub async fn generator(&self) -> (Option<Arc<dyn Generator>>, String) {
        self.workers.generator().await
    }
}
