//! Answer generation behind the [`Generator`] trait: any OpenAI-compatible server through
//! async-openai, or the embedded GGUF model on candle. Text is streamed as it is produced.

mod local;
mod openai;

use futures::future::BoxFuture;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::fault::{Fault, HasFault};
pub use local::LocalGenerator;
pub use openai::OpenAiGenerator;

#[derive(Debug, Error)]
pub enum LlmError {
    #[error("the language model server failed: {0}")]
    Remote(String),
    #[error("the embedded language model failed: {0}")]
    Local(String),
    #[error("cannot load the embedded model {path}: {reason}")]
    Load { path: String, reason: String },
}

impl HasFault for LlmError {
    fn fault(&self) -> Fault {
        match self {
            LlmError::Remote(_) => Fault::Transient,
            LlmError::Local(_) => Fault::Internal,
            LlmError::Load { .. } => Fault::User,
        }
    }
}

pub type Result<T> = std::result::Result<T, LlmError>;

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// Sampling limits of one generation.
#[derive(Debug, Clone, Copy)]
pub struct GenerationParams {
    pub max_tokens: u32,
    pub temperature: f32,
}

/// Produces an answer to chat messages, sending text pieces to `sink` as they come and
/// returning the whole text.
pub trait Generator: Send + Sync {
    /// Name shown in `ask` output, e.g. `openai:gpt-4o-mini` or `embedded:SmolLM2-135M-Instruct`.
    fn name(&self) -> String;
    /// Whether the model should get the instructions inside the user turn (small models that
    /// drift with a system prompt).
    fn prefers_single_turn(&self) -> bool {
        false
    }
    fn generate<'a>(
        &'a self,
        messages: Vec<Message>,
        params: GenerationParams,
        sink: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<String>>;
}
