//! The model thread: a [`TextEmbedder`] owned by one OS thread, fed through a bounded channel,
//! answering through oneshot channels. Async callers await without blocking the runtime, and
//! a slow model applies backpressure to whoever feeds it.

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::text::{Purpose, TextEmbedder, TokenCounter};
use crate::models::{ModelError, Result, TextModelSpec};

struct Request {
    texts: Vec<String>,
    purpose: Purpose,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

/// Handle to an embedder running on its own thread. Cheap to clone.
#[derive(Clone)]
pub struct EmbedderService {
    sender: mpsc::SyncSender<Request>,
    spec: TextModelSpec,
    counter: TokenCounter,
}

impl EmbedderService {
    /// Moves `embedder` onto a new thread.
    pub fn spawn(embedder: TextEmbedder) -> Self {
        let spec = embedder.spec().clone();
        let counter = embedder.token_counter();
        let (sender, receiver) = mpsc::sync_channel::<Request>(8);
        std::thread::Builder::new()
            .name(format!("embed:{}", spec.id))
            .spawn(move || {
                for request in receiver {
                    let result = embedder.embed(&request.texts, request.purpose);
                    let _ = request.reply.send(result);
                }
            })
            .expect("spawn embedder thread");
        Self {
            sender,
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
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let sender = self.sender.clone();
        let request = Request {
            texts,
            purpose,
            reply,
        };
        // `send` blocks while the queue is full: do that waiting off the runtime.
        tokio::task::spawn_blocking(move || sender.send(request))
            .await
            .map_err(|_| ModelError::ThreadGone)?
            .map_err(|_| ModelError::ThreadGone)?;
        answer.await.map_err(|_| ModelError::ThreadGone)?
    }
}

struct RerankRequest {
    query: String,
    passages: Vec<String>,
    reply: oneshot::Sender<Result<Vec<f32>>>,
}

/// Handle to a cross-encoder running on its own thread.
#[derive(Clone)]
pub struct RerankerService {
    sender: mpsc::SyncSender<RerankRequest>,
    id: String,
}

impl RerankerService {
    pub fn spawn(model: super::CrossEncoder) -> Self {
        let id = model.id().to_string();
        let (sender, receiver) = mpsc::sync_channel::<RerankRequest>(8);
        std::thread::Builder::new()
            .name(format!("rerank:{id}"))
            .spawn(move || {
                for request in receiver {
                    let _ = request
                        .reply
                        .send(model.score(&request.query, &request.passages));
                }
            })
            .expect("spawn reranker thread");
        Self { sender, id }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Relevance scores of `passages` for `query`, in input order.
    pub async fn score(&self, query: String, passages: Vec<String>) -> Result<Vec<f32>> {
        if passages.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let sender = self.sender.clone();
        tokio::task::spawn_blocking(move || {
            sender.send(RerankRequest {
                query,
                passages,
                reply,
            })
        })
        .await
        .map_err(|_| ModelError::ThreadGone)?
        .map_err(|_| ModelError::ThreadGone)?;
        answer.await.map_err(|_| ModelError::ThreadGone)?
    }
}
