//! The catalog of sources, chunks, embedding spaces and transcripts, behind the [`Catalog`]
//! trait. It is the source of truth: a source counts as indexed only once the catalog marks it
//! complete, which the write path (`ingest::write`) does after its vectors and BM25 entries are
//! durable. [`SqlCatalog`] implements it on SQLite in WAL mode (the embedded default) and on
//! PostgreSQL, with one set of statements.

mod queue;
mod sql;
mod types;

use futures::future::BoxFuture;
use thiserror::Error;

use crate::fault::{Fault, HasFault};
pub use queue::{Claim, Queue, QueueCounts};
pub use sql::{redact, SqlCatalog, SqlEngine};
pub use types::*;

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("catalog database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("catalog migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot lock the catalog to open it: {0}")]
    Lock(String),
    #[error("catalog settings: {0}")]
    Config(String),
    #[error("cannot reach the catalog database at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("catalog holds an invalid row: {0}")]
    Corrupt(String),
    /// Raised by fault-injection wrappers in tests.
    #[error("injected catalog fault at call {0}")]
    Injected(usize),
}

impl HasFault for CatalogError {
    fn fault(&self) -> Fault {
        match self {
            CatalogError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                Fault::Transient
            }
            CatalogError::Config(_) => Fault::User,
            CatalogError::Unreachable { .. } => Fault::Transient,
            CatalogError::Injected(_) => Fault::Transient,
            _ => Fault::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// Status of a source row.
pub mod status {
    /// Writes to the stores may be under way; not visible to queries. The next run repairs
    /// it: its entries are cleared from every store and its file ingested again.
    pub const INDEXING: &str = "indexing";
    /// Every chunk is in every store.
    pub const COMPLETE: &str = "complete";
    /// Could not be ingested; `error` says why.
    pub const FAILED: &str = "failed";
    /// Being removed: its entries leave the stores, then the row goes. The next run finishes
    /// an interrupted removal (it never re-ingests such a source).
    pub const REMOVING: &str = "removing";
}

/// Counts used by `mosaic status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CatalogCounts {
    pub sources: i64,
    pub complete: i64,
    pub failed: i64,
    /// Complete sources whose file failed its last ingestion: the version indexed before is
    /// still what search finds.
    pub stale: i64,
    /// Sources a run left `indexing` or `removing`: the next ingest or `repair` finishes them.
    pub indexing: i64,
    pub chunks: i64,
}

/// An embedding space registered in the catalog.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpaceRow {
    pub name: String,
    pub model_id: String,
    pub dims: i64,
    pub modality: String,
    pub chunks: i64,
}

/// Where one catalogued chunk of a complete source must be found: the spaces holding its
/// vectors (sorted, so keys compare equal across engines) and whether BM25 indexes it. What
/// the consistency check and `mosaic migrate`'s verification compare, id by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkKey {
    pub id: String,
    pub source_id: String,
    pub spaces: Vec<String>,
    pub lexical: bool,
}

/// A chunk as written, with the spaces holding its vectors.
pub type ChunkWithSpaces = (ChunkRecord, Vec<String>);

/// Opening a source for writing.
#[derive(Debug, Clone)]
pub struct NewSource<'a> {
    pub id: &'a str,
    pub uri: &'a str,
    pub media_type: &'a str,
    pub bytes: i64,
}

/// What [`Catalog::finish_source`] records.
pub struct FinishedSource<'a> {
    pub source_id: &'a str,
    pub content_hash: &'a str,
    pub pipeline_version: &'a str,
    pub title: Option<&'a str>,
    pub chunks: &'a [ChunkRecord],
    /// The embedding space the chunks' vectors were written to.
    pub space: Option<&'a str>,
    /// For recordings: probe data and the transcript's segments.
    pub media: Option<&'a MediaRecord>,
    /// Chunks whose vectors live in other spaces (audio windows, pictures, video frames),
    /// not in BM25: each set with its space.
    pub extras: Vec<(&'a str, &'a [ChunkRecord])>,
}

/// A recording's catalog data besides its chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRecord {
    pub duration_ms: u64,
    /// JSON object: container, codec, channels, sample_rate, language.
    pub info: String,
    pub segments: Vec<Segment>,
    /// Hash of the content, the speech model and the transcription options: while it is
    /// unchanged the transcript is reused instead of transcribing again.
    pub transcript_key: String,
}

/// The source of truth for what is indexed. Implementations keep every write of one call in
/// one transaction and make [`Catalog::finish_source`] durable before it returns.
pub trait Catalog: Send + Sync {
    /// The source with this id.
    fn source<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Source>>>;
    /// Every source, by uri.
    fn sources(&self) -> BoxFuture<'_, Result<Vec<Source>>>;
    /// Sources in one status, by uri.
    fn sources_with_status<'a>(&'a self, status: &'a str) -> BoxFuture<'a, Result<Vec<Source>>>;
    /// Marks a source as being written (`indexing`), creating its row if needed. Its old
    /// chunks stay listed until [`Catalog::finish_source`] replaces them, so a crash leaves a
    /// row to repair from.
    fn begin_source<'a>(&'a self, source: NewSource<'a>) -> BoxFuture<'a, Result<()>>;
    /// Replaces a source's chunks (and segments) and marks it complete, in one durable
    /// transaction. Called only once the stores hold exactly these chunks.
    fn finish_source<'a>(&'a self, done: &'a FinishedSource<'a>) -> BoxFuture<'a, Result<()>>;
    /// Records a per-file failure. A source indexed before keeps its chunks and carries the
    /// error; a new one is marked failed.
    fn fail_source<'a>(
        &'a self,
        source: NewSource<'a>,
        error: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
    /// Clears a source's recorded error (its file is back to the version that is indexed).
    fn clear_error<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Sets a source's status (`indexing` to have it re-ingested, `removing` before its
    /// entries leave the stores).
    fn set_status<'a>(&'a self, id: &'a str, status: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Deletes a source with its chunks and segments. Call after its entries left the stores.
    fn remove_source<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Registers an embedding space (idempotent).
    fn ensure_space<'a>(
        &'a self,
        name: &'a str,
        model_id: &'a str,
        dims: usize,
        modality: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
    /// Every registered space with the number of catalogued chunks that have a vector in it.
    fn spaces(&self) -> BoxFuture<'_, Result<Vec<SpaceRow>>>;
    /// The spaces that hold at least one chunk (their `chunks` is 1, not a count): what a
    /// search reads, without counting every vector row.
    fn searchable_spaces(&self) -> BoxFuture<'_, Result<Vec<SpaceRow>>>;
    /// Chunks by id, with their sources, keeping only those of complete sources, in the order
    /// of `ids`; unknown ids are left out.
    fn chunks_by_ids<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<StoredChunk>>>;
    /// The chunks of complete sources with where each must be stored.
    fn chunk_keys(&self) -> BoxFuture<'_, Result<Vec<ChunkKey>>>;
    fn counts(&self) -> BoxFuture<'_, Result<CatalogCounts>>;
    /// Transcript segments of a source that overlap `[from_ms, to_ms)`, in time order.
    fn segments<'a>(
        &'a self,
        source_id: &'a str,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Segment>>>;
    /// A recording's duration and probe data, when it has them.
    fn media_info<'a>(
        &'a self,
        source_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, serde_json::Value)>>>;
    /// The stored transcript of a source when it was made under `transcript_key`.
    fn transcript<'a>(
        &'a self,
        source_id: &'a str,
        transcript_key: &'a str,
    ) -> BoxFuture<'a, Result<Option<MediaRecord>>>;
    /// A source's chunks as they were written, in order, each with the spaces holding its
    /// vectors: what `mosaic migrate` copies without re-embedding.
    fn source_records<'a>(
        &'a self,
        source_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ChunkWithSpaces>>>;
    /// A recording's probe data and transcript as stored, whatever its transcript key.
    fn media_record<'a>(&'a self, source_id: &'a str)
        -> BoxFuture<'a, Result<Option<MediaRecord>>>;
    /// Closes connections (pending writes are already durable).
    fn close(&self) -> BoxFuture<'_, ()>;
}
