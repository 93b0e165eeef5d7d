//! The one write path. Every change to what is indexed (add, replace, remove, repair) goes
//! through [`Writer`], in this order, so that a crash, kill or store error at any step leaves
//! the three stores consistent after the next run:
//!
//! **Add or replace** a source ([`Writer::stage`], then [`Writer::commit`] per batch):
//! 1. catalog: the source is marked `indexing` (its old chunks stay listed);
//! 2. vector store and BM25: the source's old entries are deleted;
//! 3. vector store: the new points are upserted by chunk id; BM25: the new documents are
//!    upserted by chunk id;
//! 4. (batch commit) BM25 commit, then vector flush: both durable, or an error stops here;
//! 5. catalog: chunks replaced and the source marked `complete`, in one durable transaction.
//!
//! **Remove** sources ([`Writer::remove`]):
//! 1. catalog: each source is marked `removing`;
//! 2. vector store and BM25: its entries are deleted; BM25 commit, vector flush;
//! 3. catalog: the rows go.
//!
//! **Repair** ([`Writer::repair`], at the start of every ingest and by `mosaic repair`):
//! 1. sources left `indexing` or `removing`: their entries are deleted from both stores, BM25
//!    commit, vector flush; `removing` rows go, `indexing` ones are handed back to be ingested
//!    again (or removed, when their file is gone);
//! 2. the stores are compared with the catalog chunk id by chunk id ([`check`]): orphans
//!    (in a store, unknown to the catalog) are deleted; chunks missing from BM25, or
//!    duplicated there, are rewritten from the catalog's text; a source missing vectors is
//!    marked `indexing` and handed back to be ingested again; BM25 commit, vector flush.
//!
//! Until step 5 of an add, queries do not see the source's new chunks (the catalog only
//! returns chunks of complete sources), so a half-written source is never cited.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use crate::catalog::{
    status, Catalog, CatalogError, ChunkRecord, FinishedSource, MediaRecord, NewSource, Source,
};
use crate::fault::{Fault, HasFault};
use crate::lexical::{LexicalDoc, LexicalError, LexicalIndex};
use crate::store::{StoreError, VectorPoint, VectorStore};

/// A store failed: the run stops (what was written is repaired by the next one).
#[derive(Debug, Error)]
pub enum WriteError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lexical(#[from] LexicalError),
    /// The stores disagree in a way only a repair fixes (found while copying an index).
    #[error("the index is inconsistent: {0}")]
    Inconsistent(String),
}

impl HasFault for WriteError {
    fn fault(&self) -> Fault {
        match self {
            WriteError::Catalog(e) => e.fault(),
            WriteError::Store(e) => e.fault(),
            WriteError::Lexical(e) => e.fault(),
            WriteError::Inconsistent(_) => Fault::User,
        }
    }
}

pub type Result<T> = std::result::Result<T, WriteError>;

/// Everything one source's write needs: its catalog row, its chunks and their vectors.
#[derive(Debug, Clone, Default)]
pub struct SourceWrite {
    pub source_id: String,
    pub uri: String,
    pub media_type: String,
    pub bytes: i64,
    pub content_hash: String,
    /// Version of the pipeline that made the chunks.
    pub version: String,
    pub title: Option<String>,
    /// Chunks indexed in BM25 and in `space`.
    pub chunks: Vec<ChunkRecord>,
    pub space: String,
    pub vectors: Vec<Vec<f32>>,
    /// Per chunk, the vectors of its sentences (empty without sentence vectors).
    pub sentence_vectors: Vec<Vec<Vec<f32>>>,
    /// Chunks with vectors in other spaces, not in BM25 (audio windows, pictures, video
    /// frames).
    pub extras: Vec<ExtraSet>,
    /// Recordings: probe data and transcript.
    pub media: Option<MediaRecord>,
}

/// Chunks of one source in one more space, with their vectors.
#[derive(Debug, Clone, Default)]
pub struct ExtraSet {
    pub space: String,
    pub chunks: Vec<ChunkRecord>,
    pub vectors: Vec<Vec<f32>>,
}

impl SourceWrite {
    /// Chunks in every store, extras included.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len() + self.extras.iter().map(|e| e.chunks.len()).sum::<usize>()
    }

    fn new_source(&self) -> NewSource<'_> {
        NewSource {
            id: &self.source_id,
            uri: &self.uri,
            media_type: &self.media_type,
            bytes: self.bytes,
        }
    }
}

/// The BM25 document of a chunk.
pub fn lexical_doc(chunk: &ChunkRecord) -> LexicalDoc {
    LexicalDoc {
        chunk_id: chunk.id.clone(),
        source_id: chunk.source_id.clone(),
        modality: chunk.modality.as_str().to_string(),
        text: chunk.indexed_text(),
    }
}

/// Chunks with their vectors (and sentence vectors, one list per chunk, when given) as points
/// with the payload queries filter and display on.
pub fn vector_points(
    chunks: &[ChunkRecord],
    vectors: &[Vec<f32>],
    sentence_vectors: &[Vec<Vec<f32>>],
) -> Vec<VectorPoint> {
    chunks
        .iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (c, v))| VectorPoint {
            id: c.id.clone(),
            vector: v.clone(),
            parts: sentence_vectors.get(i).cloned().unwrap_or_default(),
            payload: json!({
                "source_id": c.source_id,
                "modality": c.modality.as_str(),
                "anchor": c.anchor,
                "text": c.text,
            }),
        })
        .collect()
}

/// What a repair did and what it leaves to the caller.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Sources whose rows were removed (an interrupted removal finished).
    pub removed: usize,
    /// Store entries deleted because the catalog does not know them.
    pub orphans_deleted: usize,
    /// BM25 documents rewritten from the catalog (missing or duplicated).
    pub lexical_rewritten: usize,
    /// Sources to ingest again: left half-written, or missing vectors. The caller ingests them
    /// from their files, or removes them with [`Writer::remove`] when the file is gone.
    #[serde(skip)]
    pub reingest: Vec<Source>,
}

/// One store's agreement with the catalog.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreCheck {
    /// Entries in the store.
    pub entries: usize,
    /// In the store, unknown to the catalog (or of a source that is not complete).
    pub orphans: usize,
    /// Catalogued chunks of complete sources the store lacks.
    pub missing: usize,
    /// Ids present more than once.
    pub duplicates: usize,
    #[serde(skip)]
    orphan_ids: Vec<String>,
    #[serde(skip)]
    missing_ids: Vec<String>,
    #[serde(skip)]
    duplicate_ids: Vec<String>,
}

impl StoreCheck {
    fn compare(expected: &HashSet<&str>, found: Vec<String>) -> Self {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for id in found {
            *seen.entry(id).or_default() += 1;
        }
        let mut check = StoreCheck {
            entries: seen.values().sum(),
            ..Default::default()
        };
        for (id, n) in &seen {
            if !expected.contains(id.as_str()) {
                check.orphan_ids.push(id.clone());
            } else if *n > 1 {
                check.duplicate_ids.push(id.clone());
            }
        }
        check.missing_ids = expected
            .iter()
            .filter(|id| !seen.contains_key(**id))
            .map(|id| id.to_string())
            .collect();
        check.orphan_ids.sort();
        check.missing_ids.sort();
        check.duplicate_ids.sort();
        check.orphans = check.orphan_ids.len();
        check.missing = check.missing_ids.len();
        check.duplicates = check.duplicate_ids.len();
        check
    }

    /// No orphans, nothing missing, no duplicates.
    pub fn agrees(&self) -> bool {
        self.orphans == 0 && self.missing == 0 && self.duplicates == 0
    }
}

/// The three stores compared chunk id by chunk id.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Consistency {
    /// No source is half-written and every store holds exactly the catalog's chunks.
    pub consistent: bool,
    /// Sources left `indexing` or `removing` by an interrupted run.
    pub interrupted: usize,
    /// Catalogued chunks of complete sources.
    pub chunks: usize,
    /// Per embedding space.
    pub vectors: BTreeMap<String, StoreCheck>,
    pub lexical: StoreCheck,
    /// Owner of each catalogued chunk, to find the sources of missing ones.
    #[serde(skip)]
    owners: HashMap<String, String>,
}

/// Compares the vector store and BM25 with the catalog, id by id. Read-only.
pub async fn check(
    catalog: &dyn Catalog,
    vectors: &dyn VectorStore,
    lexical: &dyn LexicalIndex,
) -> Result<Consistency> {
    let keys = catalog.chunk_keys().await?;
    let interrupted = catalog.counts().await?.indexing as usize;
    let mut per_space: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
    let mut in_lexical: HashSet<&str> = HashSet::new();
    for key in &keys {
        for space in &key.spaces {
            per_space.entry(space.clone()).or_default().insert(&key.id);
        }
        if key.lexical {
            in_lexical.insert(&key.id);
        }
    }
    for space in vectors.space_names().await? {
        per_space.entry(space).or_default();
    }
    let mut report = Consistency {
        interrupted,
        chunks: keys.len(),
        ..Default::default()
    };
    for (space, expected) in &per_space {
        let found = vectors.point_ids(space).await?;
        report
            .vectors
            .insert(space.clone(), StoreCheck::compare(expected, found));
    }
    report.lexical = StoreCheck::compare(&in_lexical, lexical.chunk_ids().await?);
    report.consistent = interrupted == 0
        && report.lexical.agrees()
        && report.vectors.values().all(StoreCheck::agrees);
    report.owners = keys
        .iter()
        .map(|k| (k.id.clone(), k.source_id.clone()))
        .collect();
    Ok(report)
}

/// Rewrites the whole BM25 index from the catalog's chunk texts (after it was created anew or
/// rebuilt). Returns how many documents were written.
pub async fn refill_lexical(catalog: &dyn Catalog, lexical: &dyn LexicalIndex) -> Result<usize> {
    let ids: Vec<String> = catalog
        .chunk_keys()
        .await?
        .into_iter()
        .filter(|k| k.lexical)
        .map(|k| k.id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let written = rewrite_lexical(catalog, lexical, &ids).await?;
    lexical.commit().await?;
    Ok(written)
}

/// Upserts the BM25 documents of `ids` from the catalog (not committed).
async fn rewrite_lexical(
    catalog: &dyn Catalog,
    lexical: &dyn LexicalIndex,
    ids: &[String],
) -> Result<usize> {
    let mut written = 0;
    for part in ids.chunks(512) {
        let docs: Vec<LexicalDoc> = catalog
            .chunks_by_ids(part)
            .await?
            .iter()
            .map(|c| LexicalDoc {
                chunk_id: c.id.clone(),
                source_id: c.source.id.clone(),
                modality: c.modality.as_str().to_string(),
                text: crate::catalog::with_context(&c.context, &c.text),
            })
            .collect();
        written += docs.len();
        lexical.upsert(docs).await?;
    }
    Ok(written)
}

/// Writes sources to the three stores in the order above. Sources staged since the last
/// [`Writer::commit`] become complete together.
pub struct Writer<'a> {
    catalog: &'a dyn Catalog,
    vectors: &'a dyn VectorStore,
    lexical: &'a dyn LexicalIndex,
    pending: Vec<SourceWrite>,
}

impl<'a> Writer<'a> {
    pub fn new(
        catalog: &'a dyn Catalog,
        vectors: &'a dyn VectorStore,
        lexical: &'a dyn LexicalIndex,
    ) -> Self {
        Self {
            catalog,
            vectors,
            lexical,
            pending: Vec::new(),
        }
    }

    /// Sources staged and not yet committed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Add or replace, steps 1-3: the source is `indexing` and its new entries are queued.
    pub async fn stage(&mut self, write: SourceWrite) -> Result<()> {
        self.catalog.begin_source(write.new_source()).await?;
        self.vectors.delete_source(&write.source_id).await?;
        self.lexical.delete_source(write.source_id.clone()).await?;
        self.vectors
            .upsert(
                &write.space,
                vector_points(&write.chunks, &write.vectors, &write.sentence_vectors),
            )
            .await?;
        for extra in &write.extras {
            self.vectors
                .upsert(
                    &extra.space,
                    vector_points(&extra.chunks, &extra.vectors, &[]),
                )
                .await?;
        }
        let docs: Vec<LexicalDoc> = write.chunks.iter().map(lexical_doc).collect();
        self.lexical.upsert(docs).await?;
        self.pending.push(write);
        Ok(())
    }

    /// Add or replace, steps 4-5: both stores durable, then the staged sources complete.
    /// Returns the sources and chunks made complete.
    pub async fn commit(&mut self) -> Result<(usize, usize)> {
        if self.pending.is_empty() {
            return Ok((0, 0));
        }
        self.lexical.commit().await?;
        self.vectors.flush().await?;
        let mut chunks = 0;
        let sources = self.pending.len();
        for write in self.pending.drain(..) {
            self.catalog
                .finish_source(&FinishedSource {
                    source_id: &write.source_id,
                    content_hash: &write.content_hash,
                    pipeline_version: &write.version,
                    title: write.title.as_deref(),
                    chunks: &write.chunks,
                    space: Some(&write.space),
                    media: write.media.as_ref(),
                    extras: write
                        .extras
                        .iter()
                        .map(|e| (e.space.as_str(), e.chunks.as_slice()))
                        .collect(),
                })
                .await?;
            chunks += write.chunk_count();
        }
        Ok((sources, chunks))
    }

    /// Removes sources from every store, then from the catalog.
    pub async fn remove(&mut self, source_ids: &[String]) -> Result<()> {
        if source_ids.is_empty() {
            return Ok(());
        }
        for id in source_ids {
            self.catalog.set_status(id, status::REMOVING).await?;
        }
        self.clear_from_stores(source_ids).await?;
        for id in source_ids {
            self.catalog.remove_source(id).await?;
        }
        Ok(())
    }

    /// Deletes sources' entries from both stores and makes that durable.
    async fn clear_from_stores(&self, source_ids: &[String]) -> Result<()> {
        for id in source_ids {
            self.vectors.delete_source(id).await?;
            self.lexical.delete_source(id.clone()).await?;
        }
        self.lexical.commit().await?;
        self.vectors.flush().await?;
        Ok(())
    }

    /// Finishes what interrupted runs left and reconciles the stores with the catalog by id.
    pub async fn repair(&mut self) -> Result<RepairReport> {
        let mut report = RepairReport::default();
        let indexing = self.catalog.sources_with_status(status::INDEXING).await?;
        let removing = self.catalog.sources_with_status(status::REMOVING).await?;
        if !indexing.is_empty() || !removing.is_empty() {
            let ids: Vec<String> = indexing
                .iter()
                .chain(&removing)
                .map(|s| s.id.clone())
                .collect();
            for source in indexing.iter().chain(&removing) {
                tracing::info!(uri = %source.uri, status = %source.status, "repairing a source an interrupted run left");
            }
            self.clear_from_stores(&ids).await?;
            for source in &removing {
                self.catalog.remove_source(&source.id).await?;
                report.removed += 1;
            }
            report.reingest.extend(indexing);
        }

        let found = check(self.catalog, self.vectors, self.lexical).await?;
        if found.consistent {
            return Ok(report);
        }
        let mut dirty = false;
        let mut missing_vectors: HashSet<String> = HashSet::new();
        for (space, space_check) in &found.vectors {
            if !space_check.orphan_ids.is_empty() {
                tracing::warn!(%space, orphans = space_check.orphans, "deleting vectors the catalog does not know");
                report.orphans_deleted += space_check.orphans;
                self.vectors
                    .delete_points(space, space_check.orphan_ids.clone())
                    .await?;
                dirty = true;
            }
            for id in &space_check.missing_ids {
                if let Some(owner) = found.owners.get(id) {
                    missing_vectors.insert(owner.clone());
                }
            }
        }
        let lexical = &found.lexical;
        if !lexical.orphan_ids.is_empty() {
            tracing::warn!(
                orphans = lexical.orphans,
                "deleting BM25 entries the catalog does not know"
            );
            report.orphans_deleted += lexical.orphans;
            self.lexical
                .delete_chunks(lexical.orphan_ids.clone())
                .await?;
            dirty = true;
        }
        let rewrite: Vec<String> = lexical
            .missing_ids
            .iter()
            .chain(&lexical.duplicate_ids)
            .cloned()
            .collect();
        if !rewrite.is_empty() {
            tracing::warn!(
                missing = lexical.missing,
                duplicates = lexical.duplicates,
                "rewriting BM25 entries from the catalog"
            );
            report.lexical_rewritten +=
                rewrite_lexical(self.catalog, self.lexical, &rewrite).await?;
            dirty = true;
        }
        if dirty {
            self.lexical.commit().await?;
            self.vectors.flush().await?;
        }
        let mut missing_vectors: Vec<String> = missing_vectors.into_iter().collect();
        missing_vectors.sort();
        for source_id in missing_vectors {
            if let Some(source) = self.catalog.source(&source_id).await? {
                tracing::warn!(uri = %source.uri, "vectors missing: the source is ingested again");
                self.catalog
                    .set_status(&source_id, status::INDEXING)
                    .await?;
                report.reingest.push(source);
            }
        }
        Ok(report)
    }
}
