//! Embedders: the candle BERT-family encoder behind text embedding and cross-encoder
//! reranking, and the service that keeps a model on its own thread behind a bounded channel so
//! async code never runs inference inline.

pub mod audio;
pub mod cnn14;
pub mod cross;
pub mod encoder;
pub mod image;
pub mod paths;
mod service;
mod text;
pub mod worker;

pub use cross::CrossEncoder;
pub use service::{EmbedderService, RerankerService};
pub use text::{Purpose, TextEmbedder, TokenCounter};

use futures::future::BoxFuture;

use crate::models::{ModelError, TextModelSpec};

/// A text embedding model (the text modality of a space): BERT-family sentence embedders, and
/// later the text tower of a two-tower model such as CLIP, whose image tower is the
/// [`ImageEmbedding`] of the same space.
pub trait TextEmbedding: Send + Sync {
    /// Model id, prefixes, dimensions and token window.
    fn spec(&self) -> &TextModelSpec;
    /// Counts tokens as the model's own tokenizer does (chunking budgets use it).
    fn token_counter(&self) -> TokenCounter;
    /// One vector per text, as a query or as a passage (their prefixes differ).
    fn embed(
        &self,
        texts: Vec<String>,
        purpose: Purpose,
    ) -> BoxFuture<'_, Result<Vec<Vec<f32>>, ModelError>>;
}

/// An image embedding model: an image-to-image network (EfficientNet, ResNet) or the image
/// tower of a two-tower model (CLIP, SigLIP) whose text tower shares its space.
pub trait ImageEmbedding: Send + Sync {
    fn model_id(&self) -> &str;
    fn dims(&self) -> usize;
    /// One unit-length vector per decoded picture, in order.
    fn embed(
        &self,
        images: Vec<image::preprocess::Rgb>,
    ) -> BoxFuture<'_, Result<Vec<Vec<f32>>, ModelError>>;
    /// Whether the model has a text tower into the same space (CLIP, SigLIP).
    fn embeds_text(&self) -> bool;
    /// One unit-length vector per text, in the pictures' space; an error for models without
    /// a text tower.
    fn embed_texts(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, ModelError>>;
}

/// An audio embedding model: windows of a recording, each with its vector.
pub trait AudioEmbedding: Send + Sync {
    fn dims(&self) -> usize;
    /// Decodes `path` and embeds its windows.
    fn embed_file<'a>(
        &'a self,
        path: &'a std::path::Path,
        options: audio::WindowOptions,
    ) -> BoxFuture<'a, Result<Vec<audio::AudioWindow>, audio::AudioEmbedError>>;
}

/// A cross-encoder: relevance of passages to a query.
pub trait Reranker: Send + Sync {
    fn id(&self) -> &str;
    /// One score per passage, in input order.
    fn score(
        &self,
        query: String,
        passages: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<f32>, ModelError>>;
}

impl TextEmbedding for EmbedderService {
    fn spec(&self) -> &TextModelSpec {
        EmbedderService::spec(self)
    }
    fn token_counter(&self) -> TokenCounter {
        EmbedderService::token_counter(self)
    }
    fn embed(
        &self,
        texts: Vec<String>,
        purpose: Purpose,
    ) -> BoxFuture<'_, Result<Vec<Vec<f32>>, ModelError>> {
        Box::pin(EmbedderService::embed(self, texts, purpose))
    }
}

impl Reranker for RerankerService {
    fn id(&self) -> &str {
        RerankerService::id(self)
    }
    fn score(
        &self,
        query: String,
        passages: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<f32>, ModelError>> {
        Box::pin(RerankerService::score(self, query, passages))
    }
}

impl AudioEmbedding for audio::AudioEmbedderService {
    fn dims(&self) -> usize {
        audio::AudioEmbedderService::dims(self)
    }
    fn embed_file<'a>(
        &'a self,
        path: &'a std::path::Path,
        options: audio::WindowOptions,
    ) -> BoxFuture<'a, Result<Vec<audio::AudioWindow>, audio::AudioEmbedError>> {
        Box::pin(audio::AudioEmbedderService::embed_file(self, path, options))
    }
}
