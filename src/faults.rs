//! Fault injection for the write path's tests: wrappers around the catalog, the vector store
//! and the BM25 index that count every call across all three and fail (with an error) or
//! panic at the N-th. A test runs a scenario once per N, re-runs it, and checks the stores
//! agree by id: every step of every write path is proven to leave a repairable index.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::catalog::{
    Catalog, CatalogCounts, CatalogError, ChunkKey, ChunkWithSpaces, FinishedSource, MediaRecord,
    NewSource, Result as CatalogResult, Segment, Source, SpaceRow, StoredChunk,
};
use crate::lexical::{LexicalDoc, LexicalError, LexicalHit, LexicalIndex, Result as LexResult};
use crate::store::{
    Result as StoreResult, SearchFilter, SpaceSpec, StoreError, VectorHit, VectorPoint, VectorStore,
};

/// What happens at the chosen call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call returns an error (nothing is done).
    Error,
    /// The call panics (nothing is done), as a crash inside the engine would.
    Panic,
}

/// One plan shared by the three wrappers: which call fails, and how.
#[derive(Debug)]
pub struct FaultPlan {
    at: Option<usize>,
    kind: FaultKind,
    calls: AtomicUsize,
    fired: AtomicBool,
    /// The name of every call, in order (what failed is `log[at - 1]`).
    log: Mutex<Vec<&'static str>>,
}

impl FaultPlan {
    /// Counts calls, fails none.
    pub fn never() -> Arc<Self> {
        Self::new(None, FaultKind::Error)
    }

    /// Fails the `n`-th call (1-based) in the given way.
    pub fn at(n: usize, kind: FaultKind) -> Arc<Self> {
        Self::new(Some(n), kind)
    }

    fn new(at: Option<usize>, kind: FaultKind) -> Arc<Self> {
        Arc::new(Self {
            at,
            kind,
            calls: AtomicUsize::new(0),
            fired: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        })
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Whether the fault happened.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Names of the calls made so far, in order.
    pub fn log(&self) -> Vec<&'static str> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Counts a call; `Some(n)` when it must fail with an error. Panics when it must panic.
    fn tick(&self, name: &'static str) -> Option<usize> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut log) = self.log.lock() {
            log.push(name);
        }
        if self.at != Some(n) {
            return None;
        }
        self.fired.store(true, Ordering::SeqCst);
        match self.kind {
            FaultKind::Error => Some(n),
            FaultKind::Panic => panic!("injected panic at call {n} ({name})"),
        }
    }
}

/// Counts the call and either fails it or runs it on the wrapped store.
macro_rules! guarded {
    ($self:ident, $name:literal, $error:expr, $call:expr) => {{
        match $self.plan.tick($name) {
            Some(n) => {
                let error = $error(n);
                async move { Err(error) }.boxed()
            }
            None => $call,
        }
    }};
}

/// A [`Catalog`] that fails as its plan says.
pub struct FaultyCatalog {
    pub inner: Arc<dyn Catalog>,
    pub plan: Arc<FaultPlan>,
}

impl Catalog for FaultyCatalog {
    fn source<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CatalogResult<Option<Source>>> {
        guarded!(
            self,
            "catalog.source",
            CatalogError::Injected,
            self.inner.source(id)
        )
    }
    fn sources(&self) -> BoxFuture<'_, CatalogResult<Vec<Source>>> {
        guarded!(
            self,
            "catalog.sources",
            CatalogError::Injected,
            self.inner.sources()
        )
    }
    fn sources_with_status<'a>(
        &'a self,
        status: &'a str,
    ) -> BoxFuture<'a, CatalogResult<Vec<Source>>> {
        guarded!(
            self,
            "catalog.sources_with_status",
            CatalogError::Injected,
            self.inner.sources_with_status(status)
        )
    }
    fn begin_source<'a>(&'a self, source: NewSource<'a>) -> BoxFuture<'a, CatalogResult<()>> {
        guarded!(
            self,
            "catalog.begin_source",
            CatalogError::Injected,
            self.inner.begin_source(source)
        )
    }
    fn finish_source<'a>(
        &'a self,
        done: &'a FinishedSource<'a>,
    ) -> BoxFuture<'a, CatalogResult<()>> {
        guarded!(
            self,
            "catalog.finish_source",
            CatalogError::Injected,
            self.inner.finish_source(done)
        )
    }
    fn fail_source<'a>(
        &'a self,
        source: NewSource<'a>,
        error: &'a str,
    ) -> BoxFuture<'a, CatalogResult<()>> {
        guarded!(
            self,
            "catalog.fail_source",
            CatalogError::Injected,
            self.inner.fail_source(source, error)
        )
    }
    fn clear_error<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CatalogResult<()>> {
        guarded!(
            self,
            "catalog.clear_error",
            CatalogError::Injected,
            self.inner.clear_error(id)
        )
    }
    fn set_status<'a>(&'a self, id: &'a str, status: &'a str) -> BoxFuture<'a, CatalogResult<()>> {
        guarded!(
            self,
            "catalog.set_status",
            CatalogError::Injected,
            self.inner.set_status(id, status)
        )
    }
    fn remove_source<'a>(&'a self, id: &'a str) -> BoxFuture<'a, CatalogResult<()>> {
        guarded!(
            self,
            "catalog.remove_source",
            CatalogError::Injected,
            self.inner.remove_source(id)
        )
    }
    fn ensure_space<'a>(
        &'a self,
        name: &'a str,
        model_id: &'a str,
        dims: usize,
        modality: &'a str,
    ) -> BoxFuture<'a, CatalogResult<()>> {
        guarded!(
            self,
            "catalog.ensure_space",
            CatalogError::Injected,
            self.inner.ensure_space(name, model_id, dims, modality)
        )
    }
    fn spaces(&self) -> BoxFuture<'_, CatalogResult<Vec<SpaceRow>>> {
        guarded!(
            self,
            "catalog.spaces",
            CatalogError::Injected,
            self.inner.spaces()
        )
    }
    fn searchable_spaces(&self) -> BoxFuture<'_, CatalogResult<Vec<SpaceRow>>> {
        guarded!(
            self,
            "catalog.searchable_spaces",
            CatalogError::Injected,
            self.inner.searchable_spaces()
        )
    }
    fn chunks_by_ids<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, CatalogResult<Vec<StoredChunk>>> {
        guarded!(
            self,
            "catalog.chunks_by_ids",
            CatalogError::Injected,
            self.inner.chunks_by_ids(ids)
        )
    }
    fn chunk_keys(&self) -> BoxFuture<'_, CatalogResult<Vec<ChunkKey>>> {
        guarded!(
            self,
            "catalog.chunk_keys",
            CatalogError::Injected,
            self.inner.chunk_keys()
        )
    }
    fn counts(&self) -> BoxFuture<'_, CatalogResult<CatalogCounts>> {
        guarded!(
            self,
            "catalog.counts",
            CatalogError::Injected,
            self.inner.counts()
        )
    }
    fn segments<'a>(
        &'a self,
        source_id: &'a str,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'a, CatalogResult<Vec<Segment>>> {
        guarded!(
            self,
            "catalog.segments",
            CatalogError::Injected,
            self.inner.segments(source_id, from_ms, to_ms)
        )
    }
    fn media_info<'a>(
        &'a self,
        source_id: &'a str,
    ) -> BoxFuture<'a, CatalogResult<Option<(u64, serde_json::Value)>>> {
        guarded!(
            self,
            "catalog.media_info",
            CatalogError::Injected,
            self.inner.media_info(source_id)
        )
    }
    fn transcript<'a>(
        &'a self,
        source_id: &'a str,
        transcript_key: &'a str,
    ) -> BoxFuture<'a, CatalogResult<Option<MediaRecord>>> {
        guarded!(
            self,
            "catalog.transcript",
            CatalogError::Injected,
            self.inner.transcript(source_id, transcript_key)
        )
    }
    fn source_records<'a>(
        &'a self,
        source_id: &'a str,
    ) -> BoxFuture<'a, CatalogResult<Vec<ChunkWithSpaces>>> {
        guarded!(
            self,
            "catalog.source_records",
            CatalogError::Injected,
            self.inner.source_records(source_id)
        )
    }
    fn media_record<'a>(
        &'a self,
        source_id: &'a str,
    ) -> BoxFuture<'a, CatalogResult<Option<MediaRecord>>> {
        guarded!(
            self,
            "catalog.media_record",
            CatalogError::Injected,
            self.inner.media_record(source_id)
        )
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
}

/// A [`VectorStore`] that fails as its plan says.
pub struct FaultyVectors {
    pub inner: Arc<dyn VectorStore>,
    pub plan: Arc<FaultPlan>,
}

impl VectorStore for FaultyVectors {
    fn ensure_space<'a>(&'a self, space: &'a SpaceSpec) -> BoxFuture<'a, StoreResult<()>> {
        guarded!(
            self,
            "vectors.ensure_space",
            StoreError::Injected,
            self.inner.ensure_space(space)
        )
    }
    fn upsert<'a>(
        &'a self,
        space: &'a str,
        points: Vec<VectorPoint>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        guarded!(
            self,
            "vectors.upsert",
            StoreError::Injected,
            self.inner.upsert(space, points)
        )
    }
    fn delete_source<'a>(&'a self, source_id: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        guarded!(
            self,
            "vectors.delete_source",
            StoreError::Injected,
            self.inner.delete_source(source_id)
        )
    }
    fn search<'a>(
        &'a self,
        space: &'a str,
        vector: Vec<f32>,
        limit: usize,
        filter: SearchFilter,
    ) -> BoxFuture<'a, StoreResult<Vec<VectorHit>>> {
        guarded!(
            self,
            "vectors.search",
            StoreError::Injected,
            self.inner.search(space, vector, limit, filter)
        )
    }
    fn count<'a>(&'a self, space: &'a str) -> BoxFuture<'a, StoreResult<usize>> {
        guarded!(
            self,
            "vectors.count",
            StoreError::Injected,
            self.inner.count(space)
        )
    }
    fn space_names(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        guarded!(
            self,
            "vectors.space_names",
            StoreError::Injected,
            self.inner.space_names()
        )
    }
    fn points<'a>(
        &'a self,
        space: &'a str,
        ids: Vec<String>,
    ) -> BoxFuture<'a, StoreResult<Vec<VectorPoint>>> {
        guarded!(
            self,
            "vectors.points",
            StoreError::Injected,
            self.inner.points(space, ids)
        )
    }
    fn point_ids<'a>(&'a self, space: &'a str) -> BoxFuture<'a, StoreResult<Vec<String>>> {
        guarded!(
            self,
            "vectors.point_ids",
            StoreError::Injected,
            self.inner.point_ids(space)
        )
    }
    fn delete_points<'a>(
        &'a self,
        space: &'a str,
        ids: Vec<String>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        guarded!(
            self,
            "vectors.delete_points",
            StoreError::Injected,
            self.inner.delete_points(space, ids)
        )
    }
    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        guarded!(
            self,
            "vectors.flush",
            StoreError::Injected,
            self.inner.flush()
        )
    }
    fn optimize(&self) -> BoxFuture<'_, StoreResult<()>> {
        guarded!(
            self,
            "vectors.optimize",
            StoreError::Injected,
            self.inner.optimize()
        )
    }
}

/// A [`LexicalIndex`] that fails as its plan says.
pub struct FaultyLexical {
    pub inner: Arc<dyn LexicalIndex>,
    pub plan: Arc<FaultPlan>,
}

impl LexicalIndex for FaultyLexical {
    fn upsert(&self, docs: Vec<LexicalDoc>) -> BoxFuture<'_, LexResult<()>> {
        guarded!(
            self,
            "lexical.upsert",
            LexicalError::Injected,
            self.inner.upsert(docs)
        )
    }
    fn delete_source(&self, source_id: String) -> BoxFuture<'_, LexResult<()>> {
        guarded!(
            self,
            "lexical.delete_source",
            LexicalError::Injected,
            self.inner.delete_source(source_id)
        )
    }
    fn delete_chunks(&self, ids: Vec<String>) -> BoxFuture<'_, LexResult<()>> {
        guarded!(
            self,
            "lexical.delete_chunks",
            LexicalError::Injected,
            self.inner.delete_chunks(ids)
        )
    }
    fn commit(&self) -> BoxFuture<'_, LexResult<()>> {
        guarded!(
            self,
            "lexical.commit",
            LexicalError::Injected,
            self.inner.commit()
        )
    }
    fn compact(&self) -> BoxFuture<'_, LexResult<()>> {
        guarded!(
            self,
            "lexical.compact",
            LexicalError::Injected,
            self.inner.compact()
        )
    }
    fn close_writer(&self) -> BoxFuture<'_, LexResult<()>> {
        guarded!(
            self,
            "lexical.close_writer",
            LexicalError::Injected,
            self.inner.close_writer()
        )
    }
    fn search(
        &self,
        query: String,
        limit: usize,
        modalities: Vec<String>,
    ) -> BoxFuture<'_, LexResult<Vec<LexicalHit>>> {
        guarded!(
            self,
            "lexical.search",
            LexicalError::Injected,
            self.inner.search(query, limit, modalities)
        )
    }
    fn chunk_ids(&self) -> BoxFuture<'_, LexResult<Vec<String>>> {
        guarded!(
            self,
            "lexical.chunk_ids",
            LexicalError::Injected,
            self.inner.chunk_ids()
        )
    }
    fn count(&self) -> BoxFuture<'_, LexResult<u64>> {
        guarded!(
            self,
            "lexical.count",
            LexicalError::Injected,
            self.inner.count()
        )
    }
    fn terms(&self, text: &str) -> LexResult<Vec<String>> {
        self.inner.terms(text)
    }
    fn without_common_words(&self, text: String, share: f64) -> BoxFuture<'_, LexResult<String>> {
        guarded!(
            self,
            "lexical.without_common_words",
            LexicalError::Injected,
            self.inner.without_common_words(text, share)
        )
    }
}

/// Wraps all three stores in injectors sharing one plan.
pub fn wrap(stores: crate::engine::Stores, plan: &Arc<FaultPlan>) -> crate::engine::Stores {
    crate::engine::Stores {
        catalog: Arc::new(FaultyCatalog {
            inner: stores.catalog,
            plan: plan.clone(),
        }),
        vectors: Arc::new(FaultyVectors {
            inner: stores.vectors,
            plan: plan.clone(),
        }),
        lexical: Arc::new(FaultyLexical {
            inner: stores.lexical,
            plan: plan.clone(),
        }),
    }
}
