//! BM25 as Qdrant sparse vectors, for the cluster mode (no node-local index). One collection,
//! `<prefix>__lexical`, holds a point per chunk (the chunk id) with a sparse vector `bm25`
//! whose collection applies Qdrant's IDF modifier, `ln(1 + (N − n + 0.5) / (n + 0.5))`, the
//! IDF tantivy's BM25 uses. Terms come from the same tantivy analyzer the embedded index
//! uses (`en_stem` by default); each term is a sparse index (the first four bytes of its
//! BLAKE3 hash) and its value is BM25's saturated term frequency,
//! `tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl))` with tantivy's k1 = 1.2 and b = 0.75. A query
//! is its unique terms at weight 1, so the score is tantivy's BM25 sum.
//!
//! The one difference: tantivy knows the exact mean chunk length at query time, while here
//! each document's weight uses the mean length of every chunk written so far (kept in the
//! collection's metadata), as it stood when the document was written. On a corpus written in
//! one go the two agree; the lexical conformance test compares the rankings.
//!
//! Writes are queued and applied at [`LexicalIndex::commit`], in order, waiting for the
//! cluster to apply each. The payload keeps `source_id`, `modality` and the unique terms
//! (keyword-indexed: document frequencies for [`LexicalIndex::without_common_words`]).

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::FutureExt;
use qdrant_client::qdrant::{
    value::Kind, Condition, CountPointsBuilder, DeletePointsBuilder, Filter, Modifier,
    PayloadIncludeSelector, PointStruct, PointsIdsList, QueryPointsBuilder, ScrollPointsBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpdateCollectionBuilder,
    UpsertPointsBuilder, Vector,
};
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};

use super::{LexicalDoc, LexicalError, LexicalHit, LexicalIndex, Opened, Result};
use crate::store::{point_id_text, QdrantConn, StoreError};

const SPARSE: &str = "bm25";
const K1: f32 = 1.2;
const B: f32 = 0.75;

enum Pending {
    Upsert(Vec<LexicalDoc>),
    DeleteSource(String),
    DeleteChunks(Vec<String>),
}

/// BM25 in a Qdrant collection of sparse vectors.
pub struct QdrantLexical {
    conn: QdrantConn,
    collection: String,
    analyzer: Mutex<TextAnalyzer>,
    pending: Mutex<Vec<Pending>>,
}

fn store(e: StoreError) -> LexicalError {
    LexicalError::Store(e)
}

/// The sparse index of a term.
pub fn term_index(term: &str) -> u32 {
    let hash = blake3::hash(term.as_bytes());
    let b = hash.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The point of a chunk: its id when it is a UUID (Mosaic's chunk ids are), else a UUID made
/// from it. The chunk id itself travels in the payload.
fn point_of(chunk_id: &str) -> String {
    uuid::Uuid::parse_str(chunk_id)
        .unwrap_or_else(|_| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, chunk_id.as_bytes()))
        .to_string()
}

/// The chunk id a point's payload carries.
fn chunk_of(payload: &HashMap<String, qdrant_client::qdrant::Value>) -> Option<String> {
    match payload.get("chunk_id").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The number in a metadata value.
fn number(value: Option<&qdrant_client::qdrant::Value>) -> f64 {
    match value.and_then(|v| v.kind.as_ref()) {
        Some(Kind::DoubleValue(d)) => *d,
        Some(Kind::IntegerValue(i)) => *i as f64,
        _ => 0.0,
    }
}

impl QdrantLexical {
    /// Opens (creating if needed) the lexical collection with the analyzer `analyzer`; says
    /// whether it was created (the caller then refills it from the catalog).
    pub async fn open(conn: QdrantConn, analyzer: &str) -> Result<(Self, Opened)> {
        if !matches!(analyzer, "en_stem" | "default" | "raw") {
            return Err(LexicalError::Analyzer(analyzer.to_string()));
        }
        let tokenizer = TokenizerManager::default()
            .get(analyzer)
            .ok_or_else(|| LexicalError::Analyzer(analyzer.to_string()))?;
        let collection = format!("{}__lexical", conn.settings.collection_prefix);
        let this = Self {
            conn,
            collection,
            analyzer: Mutex::new(tokenizer),
            pending: Mutex::new(Vec::new()),
        };
        let created = this.create(analyzer).await?;
        Ok((
            this,
            if created {
                Opened::Created
            } else {
                Opened::Existing
            },
        ))
    }

    async fn metadata(&self) -> Result<HashMap<String, qdrant_client::qdrant::Value>> {
        let info = self
            .conn
            .retry("reading the lexical collection", || {
                self.conn.client().collection_info(self.collection.clone())
            })
            .await
            .map_err(store)?;
        Ok(info
            .result
            .and_then(|r| r.config)
            .map(|c| c.metadata)
            .unwrap_or_default())
    }

    async fn exists(&self) -> Result<bool> {
        self.conn
            .retry("checking the lexical collection", || {
                self.conn
                    .client()
                    .collection_exists(self.collection.clone())
            })
            .await
            .map_err(store)
    }

    async fn create(&self, analyzer: &str) -> Result<bool> {
        let exists = self.exists().await?;
        if exists {
            let metadata = self.metadata().await?;
            let made_with = metadata
                .get("analyzer")
                .and_then(|v| v.kind.as_ref())
                .and_then(|k| match k {
                    Kind::StringValue(s) => Some(s.clone()),
                    _ => None,
                });
            if made_with.as_deref() != Some(analyzer) {
                return Err(LexicalError::Cluster(format!(
                    "the lexical collection {} was built with the analyzer {made_with:?}, the text \
                     pipeline asks for {analyzer:?}: delete the collection and re-run `mosaic repair`",
                    self.collection
                )));
            }
            return Ok(false);
        }
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            SPARSE,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
        );
        let metadata = HashMap::from([
            ("analyzer".to_string(), serde_json::json!(analyzer)),
            ("docs".to_string(), serde_json::json!(0)),
            ("tokens".to_string(), serde_json::json!(0)),
        ]);
        let request = self
            .conn
            .create_builder(&self.collection)
            .sparse_vectors_config(sparse)
            .metadata(metadata);
        let created = self
            .conn
            .retry("creating the lexical collection", || {
                self.conn.client().create_collection(request.clone())
            })
            .await;
        if let Err(e) = created {
            // Another server or worker may have created it at the same moment.
            if !self.exists().await? {
                return Err(store(e));
            }
        }
        self.conn
            .keyword_indexes(&self.collection, &["source_id", "modality", "terms"])
            .await
            .map_err(store)?;
        Ok(true)
    }

    fn analyze(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.lock().expect("analyzer lock");
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        while let Some(token) = stream.next() {
            terms.push(token.text.clone());
        }
        terms
    }

    async fn apply_upserts(&self, docs: Vec<LexicalDoc>) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let analyzed: Vec<(LexicalDoc, Vec<String>)> = docs
            .into_iter()
            .map(|d| {
                let terms = self.analyze(&d.text);
                (d, terms)
            })
            .collect();
        let metadata = self.metadata().await?;
        let docs_before = number(metadata.get("docs"));
        let tokens_before = number(metadata.get("tokens"));
        let batch_tokens: usize = analyzed.iter().map(|(_, t)| t.len()).sum();
        let docs_after = docs_before + analyzed.len() as f64;
        let tokens_after = tokens_before + batch_tokens as f64;
        let avgdl = (tokens_after / docs_after.max(1.0)).max(1.0) as f32;

        let mut points = Vec::with_capacity(analyzed.len());
        for (doc, terms) in analyzed {
            let mut tf: HashMap<&str, f32> = HashMap::new();
            for t in &terms {
                *tf.entry(t.as_str()).or_default() += 1.0;
            }
            let dl = terms.len() as f32;
            let norm = K1 * (1.0 - B + B * dl / avgdl);
            let mut by_index: HashMap<u32, f32> = HashMap::new();
            for (term, f) in &tf {
                *by_index.entry(term_index(term)).or_default() += f * (K1 + 1.0) / (f + norm);
            }
            let mut sparse: Vec<(u32, f32)> = by_index.into_iter().collect();
            sparse.sort_by_key(|(i, _)| *i);
            let mut unique: Vec<&str> = tf.keys().copied().collect();
            unique.sort_unstable();
            let payload = serde_json::json!({
                "chunk_id": doc.chunk_id,
                "source_id": doc.source_id,
                "modality": doc.modality,
                "terms": unique,
                "length": terms.len(),
            });
            let serde_json::Value::Object(payload) = payload else {
                unreachable!("a JSON object literal")
            };
            let vectors: HashMap<String, Vector> =
                HashMap::from([(SPARSE.to_string(), Vector::from(sparse))]);
            points.push(PointStruct::new(point_of(&doc.chunk_id), vectors, payload));
        }
        for part in points.chunks(self.conn.settings.upsert_batch.max(1)) {
            let request =
                UpsertPointsBuilder::new(self.collection.clone(), part.to_vec()).wait(true);
            self.conn
                .retry("upserting BM25 points", || {
                    self.conn.client().upsert_points(request.clone())
                })
                .await
                .map_err(store)?;
        }
        let update =
            UpdateCollectionBuilder::new(self.collection.clone()).metadata(HashMap::from([
                ("docs".to_string(), serde_json::json!(docs_after)),
                ("tokens".to_string(), serde_json::json!(tokens_after)),
            ]));
        self.conn
            .retry("updating BM25 statistics", || {
                self.conn.client().update_collection(update.clone())
            })
            .await
            .map_err(store)?;
        Ok(())
    }

    async fn delete(
        &self,
        selector: impl Into<qdrant_client::qdrant::points_selector::PointsSelectorOneOf>,
    ) -> Result<()> {
        let request = DeletePointsBuilder::new(self.collection.clone())
            .points(selector)
            .wait(true);
        self.conn
            .retry("deleting BM25 points", || {
                self.conn.client().delete_points(request.clone())
            })
            .await
            .map_err(store)?;
        Ok(())
    }

    async fn count_where(&self, filter: Option<Filter>) -> Result<u64> {
        let mut request = CountPointsBuilder::new(self.collection.clone()).exact(true);
        if let Some(f) = filter {
            request = request.filter(f);
        }
        let response = self
            .conn
            .retry("counting BM25 points", || {
                self.conn.client().count(request.clone())
            })
            .await
            .map_err(store)?;
        Ok(response.result.map_or(0, |r| r.count))
    }

    async fn commit_pending(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        for op in pending {
            match op {
                Pending::Upsert(docs) => self.apply_upserts(docs).await?,
                Pending::DeleteSource(source) => {
                    self.delete(Filter::must([Condition::matches("source_id", source)]))
                        .await?
                }
                Pending::DeleteChunks(ids) => {
                    let ids = ids.iter().map(|i| point_of(i).into()).collect();
                    self.delete(PointsIdsList { ids }).await?
                }
            }
        }
        Ok(())
    }

    async fn search_terms(
        &self,
        query: String,
        limit: usize,
        modalities: Vec<String>,
    ) -> Result<Vec<LexicalHit>> {
        let mut terms = self.analyze(&query);
        let mut seen = std::collections::HashSet::new();
        terms.retain(|t| seen.insert(t.clone()));
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_index: HashMap<u32, f32> = HashMap::new();
        for t in &terms {
            by_index.insert(term_index(t), 1.0);
        }
        let mut sparse: Vec<(u32, f32)> = by_index.into_iter().collect();
        sparse.sort_by_key(|(i, _)| *i);
        let mut request = QueryPointsBuilder::new(self.collection.clone())
            .query(sparse)
            .using(SPARSE)
            .limit(limit.max(1) as u64)
            .with_payload(PayloadIncludeSelector::new(vec!["chunk_id".to_string()]));
        if !modalities.is_empty() {
            request = request.filter(Filter::must([Condition::matches("modality", modalities)]));
        }
        let response = self
            .conn
            .retry("BM25 search", || self.conn.client().query(request.clone()))
            .await
            .map_err(store)?;
        Ok(response
            .result
            .into_iter()
            .map(|p| LexicalHit {
                id: chunk_of(&p.payload).unwrap_or_else(|| point_id_text(p.id)),
                score: p.score,
            })
            .collect())
    }

    async fn all_chunk_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut offset: Option<qdrant_client::qdrant::PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(self.collection.clone())
                .limit(1000)
                .with_payload(PayloadIncludeSelector::new(vec!["chunk_id".to_string()]))
                .with_vectors(false);
            if let Some(o) = offset.clone() {
                request = request.offset(o);
            }
            let response = self
                .conn
                .retry("listing BM25 points", || {
                    self.conn.client().scroll(request.clone())
                })
                .await
                .map_err(store)?;
            ids.extend(
                response
                    .result
                    .iter()
                    .map(|p| chunk_of(&p.payload).unwrap_or_else(|| point_id_text(p.id.clone()))),
            );
            match response.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(ids),
            }
        }
    }

    async fn without_common(&self, text: String, share: f64) -> Result<String> {
        let total = self.count_where(None).await?;
        if total == 0 {
            return Ok(text);
        }
        let mut frequency: HashMap<String, u64> = HashMap::new();
        let mut kept = Vec::new();
        for word in text.split_whitespace() {
            let terms = self.analyze(word);
            let mut common = !terms.is_empty();
            for term in terms {
                let n = match frequency.get(&term) {
                    Some(n) => *n,
                    None => {
                        let n = self
                            .count_where(Some(Filter::must([Condition::matches(
                                "terms",
                                vec![term.clone()],
                            )])))
                            .await?;
                        frequency.insert(term, n);
                        n
                    }
                };
                common &= n as f64 > share * total as f64;
            }
            if !common {
                kept.push(word);
            }
        }
        Ok(if kept.iter().any(|w| !self.analyze(w).is_empty()) {
            kept.join(" ")
        } else {
            text
        })
    }
}

impl LexicalIndex for QdrantLexical {
    fn upsert(&self, docs: Vec<LexicalDoc>) -> BoxFuture<'_, Result<()>> {
        self.pending
            .lock()
            .expect("pending lock")
            .push(Pending::Upsert(docs));
        async { Ok(()) }.boxed()
    }

    fn delete_source(&self, source_id: String) -> BoxFuture<'_, Result<()>> {
        self.pending
            .lock()
            .expect("pending lock")
            .push(Pending::DeleteSource(source_id));
        async { Ok(()) }.boxed()
    }

    fn delete_chunks(&self, ids: Vec<String>) -> BoxFuture<'_, Result<()>> {
        self.pending
            .lock()
            .expect("pending lock")
            .push(Pending::DeleteChunks(ids));
        async { Ok(()) }.boxed()
    }

    fn commit(&self) -> BoxFuture<'_, Result<()>> {
        self.commit_pending().boxed()
    }

    fn compact(&self) -> BoxFuture<'_, Result<()>> {
        // Qdrant's IDF counts live points only; nothing to purge.
        async { Ok(()) }.boxed()
    }

    fn close_writer(&self) -> BoxFuture<'_, Result<()>> {
        async { Ok(()) }.boxed()
    }

    fn search(
        &self,
        query: String,
        limit: usize,
        modalities: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<LexicalHit>>> {
        self.search_terms(query, limit, modalities).boxed()
    }

    fn chunk_ids(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        self.all_chunk_ids().boxed()
    }

    fn count(&self) -> BoxFuture<'_, Result<u64>> {
        self.count_where(None).boxed()
    }

    fn terms(&self, text: &str) -> Result<Vec<String>> {
        Ok(self.analyze(text))
    }

    fn without_common_words(&self, text: String, share: f64) -> BoxFuture<'_, Result<String>> {
        self.without_common(text, share).boxed()
    }
}
