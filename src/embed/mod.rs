//! Embedders: the candle BERT-family encoder behind text embedding and cross-encoder
//! reranking, and the service that keeps a model on its own thread behind a bounded channel so
//! async code never runs inference inline.

pub mod audio;
pub mod cnn14;
pub mod cross;
pub mod encoder;
mod service;
mod text;

pub use cross::CrossEncoder;
pub use service::{EmbedderService, RerankerService};
pub use text::{Purpose, TextEmbedder, TokenCounter};
