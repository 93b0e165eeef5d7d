//! BM25 over chunk text behind the [`LexicalIndex`] trait, keyed by the same chunk ids as the
//! vector store. The embedded implementation is tantivy ([`TantivyIndex`]); in cluster mode
//! [`QdrantLexical`] keeps BM25 as Qdrant sparse vectors behind the same trait. The analyzer comes from the text
//! pipeline; changing it rebuilds the index from the catalog.

mod qdrant;
mod tantivy;

use futures::future::BoxFuture;
use thiserror::Error;

pub use self::qdrant::{term_index, QdrantLexical};
pub use self::tantivy::{Opened, TantivyIndex};
use crate::fault::{Fault, HasFault};

#[derive(Debug, Error)]
pub enum LexicalError {
    #[error("BM25 index error: {0}")]
    Tantivy(#[from] ::tantivy::TantivyError),
    #[error("BM25 index directory error: {0}")]
    Directory(#[from] ::tantivy::directory::error::OpenDirectoryError),
    #[error("BM25 index I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown analyzer {0:?}: use en_stem, default or raw")]
    Analyzer(String),
    #[error("the BM25 index is locked by another mosaic process writing to {0}")]
    Locked(String),
    #[error("blocking task failed: {0}")]
    Join(String),
    #[error("BM25 in Qdrant: {0}")]
    Store(crate::store::StoreError),
    #[error("BM25 in Qdrant: {0}")]
    Cluster(String),
    /// Raised by fault-injection wrappers in tests.
    #[error("injected BM25 fault at call {0}")]
    Injected(usize),
}

impl HasFault for LexicalError {
    fn fault(&self) -> Fault {
        match self {
            LexicalError::Analyzer(_) => Fault::User,
            LexicalError::Locked(_) | LexicalError::Injected(_) => Fault::Transient,
            LexicalError::Store(e) => e.fault(),
            _ => Fault::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, LexicalError>;

/// One chunk as the BM25 index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexicalDoc {
    pub chunk_id: String,
    pub source_id: String,
    pub modality: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LexicalHit {
    pub id: String,
    pub score: f32,
}

/// A BM25 index of chunks. Writes are queued and become durable and visible together at
/// [`LexicalIndex::commit`]; implementations do their I/O off the async runtime.
pub trait LexicalIndex: Send + Sync {
    /// Queues documents, each replacing any document with its chunk id.
    fn upsert(&self, docs: Vec<LexicalDoc>) -> BoxFuture<'_, Result<()>>;
    /// Queues deletion of every chunk of a source.
    fn delete_source(&self, source_id: String) -> BoxFuture<'_, Result<()>>;
    /// Queues deletion of chunks by id.
    fn delete_chunks(&self, ids: Vec<String>) -> BoxFuture<'_, Result<()>>;
    /// Makes every queued change durable and visible.
    fn commit(&self) -> BoxFuture<'_, Result<()>>;
    /// Purges deleted documents (and their weight in BM25's statistics), so scores depend on
    /// the live chunks only. Call after a commit.
    fn compact(&self) -> BoxFuture<'_, Result<()>>;
    /// Waits for background work and releases the writer (another process may then write).
    fn close_writer(&self) -> BoxFuture<'_, Result<()>>;
    /// BM25 top `limit` for a plain-text query (not query syntax), optionally restricted to
    /// modalities.
    fn search(
        &self,
        query: String,
        limit: usize,
        modalities: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<LexicalHit>>>;
    /// Every indexed chunk id, repeats kept: the consistency check compares them by id.
    fn chunk_ids(&self) -> BoxFuture<'_, Result<Vec<String>>>;
    /// Number of live documents.
    fn count(&self) -> BoxFuture<'_, Result<u64>>;
    /// The terms the analyzer makes of `text`, in order (repeats kept); no index I/O.
    fn terms(&self, text: &str) -> Result<Vec<String>>;
    /// `text` without the words whose every term is in more than `share` of the indexed
    /// chunks (what the whole collection is about says nothing about which passage answers);
    /// kept whole when nothing would remain.
    fn without_common_words(&self, text: String, share: f64) -> BoxFuture<'_, Result<String>>;
}
