//! Vector storage behind one small trait. The embedded default is qdrant-edge (Qdrant's own
//! engine, in-process); [`QdrantStore`] keeps them in a Qdrant server or cluster.

mod edge;
mod qdrant;

use futures::future::BoxFuture;
use thiserror::Error;

use crate::fault::{Fault, HasFault};
pub use edge::EdgeStore;
pub use qdrant::{point_id_text, scroll_ids, QdrantConn, QdrantStore};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("vector store error: {0}")]
    Engine(String),
    #[error("vector store I/O error at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("unknown embedding space {0}")]
    UnknownSpace(String),
    #[error("vector has {got} dimensions, space {space} expects {expected}")]
    Dimensions {
        space: String,
        expected: usize,
        got: usize,
    },
    #[error("space {space} holds one vector per point; got {parts} more for point {id}")]
    NotMultivector {
        space: String,
        id: String,
        parts: usize,
    },
    #[error("space {space} exists with another vector layout (multivector: {existing})")]
    Layout { space: String, existing: bool },
    #[error("blocking task failed: {0}")]
    Join(String),
    #[error("vector store flush failed in space {space}: {reason}")]
    Flush { space: String, reason: String },
    #[error("cannot reach Qdrant at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Qdrant at {url} refused the API key: {reason}")]
    Unauthorized { url: String, reason: String },
    /// Raised by fault-injection wrappers in tests.
    #[error("injected vector store fault at call {0}")]
    Injected(usize),
}

impl HasFault for StoreError {
    fn fault(&self) -> Fault {
        match self {
            StoreError::UnknownSpace(_)
            | StoreError::Dimensions { .. }
            | StoreError::NotMultivector { .. }
            | StoreError::Layout { .. }
            | StoreError::Unauthorized { .. } => Fault::User,
            StoreError::Injected(_) | StoreError::Unreachable { .. } => Fault::Transient,
            _ => Fault::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An embedding space: one model's vectors, named like `text/all-MiniLM-L6-v2/384`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceSpec {
    pub name: String,
    pub dims: usize,
    /// Each point holds several vectors (a text chunk's own vector and one per sentence) and
    /// scores as the best of them against the query (Qdrant's multivector `max_sim`).
    pub multivector: bool,
}

impl SpaceSpec {
    /// The space a text model writes to, named `text/<model id>/<dims>`. With sentence vectors
    /// each chunk is a multivector point (its own vector and one per sentence), in a space of
    /// its own name.
    pub fn text(model_id: &str, dims: usize, sentence_vectors: bool) -> Self {
        let name = format!("text/{model_id}/{dims}");
        SpaceSpec {
            name: if sentence_vectors {
                format!("{name}/sentences")
            } else {
                name
            },
            dims,
            multivector: sentence_vectors,
        }
    }

    /// The space an image model writes pictures and video frames to, `image/<model id>/<dims>`.
    pub fn image(model_id: &str, dims: usize) -> Self {
        SpaceSpec {
            name: format!("image/{model_id}/{dims}"),
            dims,
            multivector: false,
        }
    }

    /// The space of audio windows (CNN14).
    pub fn audio(dims: usize) -> Self {
        SpaceSpec {
            name: format!("audio/cnn14/{dims}"),
            dims,
            multivector: false,
        }
    }
}

impl SpaceSpec {
    /// Whether an existing space with `dims` and `multivector` can take this spec: the same
    /// layout, or an error saying what differs.
    pub fn check_existing(&self, dims: usize, multivector: bool) -> Result<()> {
        if dims != self.dims {
            return Err(StoreError::Dimensions {
                space: self.name.clone(),
                expected: dims,
                got: self.dims,
            });
        }
        if multivector != self.multivector {
            return Err(StoreError::Layout {
                space: self.name.clone(),
                existing: multivector,
            });
        }
        Ok(())
    }
}

/// One point to upsert: a chunk's vector plus the payload queries filter and display on.
#[derive(Debug, Clone)]
pub struct VectorPoint {
    /// Chunk id (a UUID string).
    pub id: String,
    pub vector: Vec<f32>,
    /// Further vectors of the same point (a text chunk's sentences), scored together with
    /// `vector` by best match. Only multivector spaces take them.
    pub parts: Vec<Vec<f32>>,
    /// Must include `source_id` and `modality`.
    pub payload: serde_json::Value,
}

/// A point's vectors as a space stores them.
pub enum StoredVectors {
    Dense(Vec<f32>),
    /// The point's own vector first, then its parts.
    Multi(Vec<Vec<f32>>),
}

impl VectorPoint {
    /// Checks the point against a space's layout (every vector `dims` long; parts only in a
    /// multivector space) and takes its vectors in the form the space stores.
    pub fn take_vectors(
        &mut self,
        space: &str,
        dims: usize,
        multivector: bool,
    ) -> Result<StoredVectors> {
        if let Some(wrong) = std::iter::once(&self.vector)
            .chain(&self.parts)
            .find(|v| v.len() != dims)
        {
            return Err(StoreError::Dimensions {
                space: space.to_string(),
                expected: dims,
                got: wrong.len(),
            });
        }
        let vector = std::mem::take(&mut self.vector);
        let parts = std::mem::take(&mut self.parts);
        if multivector {
            let mut all = Vec::with_capacity(1 + parts.len());
            all.push(vector);
            all.extend(parts);
            Ok(StoredVectors::Multi(all))
        } else if parts.is_empty() {
            Ok(StoredVectors::Dense(vector))
        } else {
            Err(StoreError::NotMultivector {
                space: space.to_string(),
                id: self.id.clone(),
                parts: parts.len(),
            })
        }
    }
}

/// A scored hit: chunk id and cosine similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub id: String,
    pub score: f32,
}

/// Optional restrictions on a search.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub modalities: Vec<String>,
    pub source_id: Option<String>,
}

/// Dense vector storage with named spaces. Implementations do their I/O off the async runtime.
pub trait VectorStore: Send + Sync {
    /// Creates the space if it does not exist (idempotent).
    fn ensure_space<'a>(&'a self, space: &'a SpaceSpec) -> BoxFuture<'a, Result<()>>;
    /// Inserts or replaces points by id.
    fn upsert<'a>(&'a self, space: &'a str, points: Vec<VectorPoint>) -> BoxFuture<'a, Result<()>>;
    /// Removes every point of a source, in every space.
    fn delete_source<'a>(&'a self, source_id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Nearest neighbours by cosine similarity.
    fn search<'a>(
        &'a self,
        space: &'a str,
        vector: Vec<f32>,
        limit: usize,
        filter: SearchFilter,
    ) -> BoxFuture<'a, Result<Vec<VectorHit>>>;
    /// Exact number of points in a space (0 for an unknown space).
    fn count<'a>(&'a self, space: &'a str) -> BoxFuture<'a, Result<usize>>;
    /// The spaces that exist in the store.
    fn space_names(&self) -> BoxFuture<'_, Result<Vec<String>>>;
    /// Points by id with their vectors and payloads, in the order of `ids` (unknown ids left
    /// out): what `mosaic migrate` copies.
    fn points<'a>(
        &'a self,
        space: &'a str,
        ids: Vec<String>,
    ) -> BoxFuture<'a, Result<Vec<VectorPoint>>>;
    /// Every point id in a space (empty for an unknown space): the consistency check compares
    /// them with the catalog by id.
    fn point_ids<'a>(&'a self, space: &'a str) -> BoxFuture<'a, Result<Vec<String>>>;
    /// Removes points by id from one space.
    fn delete_points<'a>(&'a self, space: &'a str, ids: Vec<String>) -> BoxFuture<'a, Result<()>>;
    /// Makes every write so far durable; an error means they may not be.
    fn flush(&self) -> BoxFuture<'_, Result<()>>;
    /// Builds search indexes over what was written (costly: once per ingest run, not per batch).
    fn optimize(&self) -> BoxFuture<'_, Result<()>>;
}
