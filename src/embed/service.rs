//! Text models on the shared [`Worker`]: the embedder and the cross-encoder, each owned by its
//! own thread. Async callers await without blocking the runtime, requests from several callers
//! are batched together, and a slow model applies backpressure to whoever feeds it.

use super::cross::CrossEncoder;
use super::text::{Purpose, TextEmbedder, TokenCounter};
use super::worker::{Model, Worker, WorkerError};
use crate::models::{ModelError, Result, TextModelSpec};

/// Texts merged into one embedding request across callers (the embedder then packs them into
/// forward passes by its own token budget).
const EMBED_BATCH_ITEMS: usize = 256;
/// Passages merged into one reranking request for the same query.
const RERANK_BATCH_ITEMS: usize = 128;
/// Requests waiting per model.
const QUEUE: usize = 8;

fn model_error(e: WorkerError) -> ModelError {
    match e {
        WorkerError::Gone => ModelError::ThreadGone,
        WorkerError::Failed(reason) => ModelError::Inference(reason),
    }
}

impl Model for TextEmbedder {
    type Input = String;
    type Output = Vec<f32>;
    type Params = Purpose;

    fn cost(&self, _: &String) -> usize {
        1
    }

    fn run(
        &mut self,
        purpose: &Purpose,
        inputs: Vec<String>,
    ) -> std::result::Result<Vec<Vec<f32>>, String> {
        self.embed(&inputs, *purpose).map_err(|e| e.to_string())
    }
}

/// Handle to a text embedder on its worker thread. Cheap to clone.
#[derive(Clone)]
pub struct EmbedderService {
    worker: Worker<TextEmbedder>,
    spec: TextModelSpec,
    counter: TokenCounter,
}

impl EmbedderService {
    /// Moves `embedder` onto a new worker thread.
    pub fn spawn(embedder: TextEmbedder) -> Self {
        let spec = embedder.spec().clone();
        let counter = embedder.token_counter();
        let worker = Worker::spawn(
            &format!("embed:{}", spec.id),
            embedder,
            QUEUE,
            EMBED_BATCH_ITEMS,
        )
        .expect("spawn embedder thread");
        Self {
            worker,
            spec,
            counter,
        }
    }

    pub fn spec(&self) -> &TextModelSpec {
        &self.spec
    }

    pub fn token_counter(&self) -> TokenCounter {
        self.counter.clone()
    }

    /// Embeds texts on the model thread.
    pub async fn embed(&self, texts: Vec<String>, purpose: Purpose) -> Result<Vec<Vec<f32>>> {
        self.worker.call(purpose, texts).await.map_err(model_error)
    }
}

impl Model for CrossEncoder {
    type Input = String;
    type Output = f32;
    type Params = String;

    fn cost(&self, _: &String) -> usize {
        1
    }

    fn run(
        &mut self,
        query: &String,
        passages: Vec<String>,
    ) -> std::result::Result<Vec<f32>, String> {
        self.score(query, &passages).map_err(|e| e.to_string())
    }
}

/// Handle to a cross-encoder on its worker thread.
#[derive(Clone)]
pub struct RerankerService {
    worker: Worker<CrossEncoder>,
    id: String,
}

impl RerankerService {
    pub fn spawn(model: CrossEncoder) -> Self {
        let id = model.id().to_string();
        let worker = Worker::spawn(&format!("rerank:{id}"), model, QUEUE, RERANK_BATCH_ITEMS)
            .expect("spawn reranker thread");
        Self { worker, id }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Relevance scores of `passages` for `query`, in input order.
    pub async fn score(&self, query: String, passages: Vec<String>) -> Result<Vec<f32>> {
        self.worker.call(query, passages).await.map_err(model_error)
    }
}
