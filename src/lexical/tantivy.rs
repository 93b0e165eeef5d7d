//! The embedded BM25 index: tantivy under `<data>/lexical`, keyed by chunk id. tantivy is
//! synchronous, so the [`LexicalIndex`] methods run it on blocking threads.
//!
//! Opening never loses an index silently: an index made with another analyzer, one whose
//! analyzer marker cannot be read, or one tantivy cannot open is set aside and reported as
//! [`Opened::Rebuilt`], and the caller refills it from the catalog (which holds every chunk's
//! text).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::{LexicalDoc, LexicalError, LexicalHit, LexicalIndex, Result};

#[derive(Clone, Copy)]
struct Fields {
    chunk_id: Field,
    source_id: Field,
    modality: Field,
    text: Field,
}

/// The tantivy BM25 index under `<data>/lexical`.
#[derive(Clone)]
pub struct TantivyIndex {
    path: PathBuf,
    index: Index,
    reader: IndexReader,
    writer: Arc<Mutex<Option<IndexWriter>>>,
    fields: Fields,
}

const ANALYZER_FILE: &str = "mosaic-analyzer";

fn schema(analyzer: &str) -> Schema {
    let mut builder = Schema::builder();
    builder.add_text_field("chunk_id", STRING | STORED);
    builder.add_text_field("source_id", STRING);
    builder.add_text_field("modality", STRING);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(analyzer)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    builder.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(indexing),
    );
    builder.build()
}

impl TantivyIndex {
    /// Opens or creates the index. An index that cannot be used as it is (another analyzer,
    /// an unreadable analyzer marker, a damaged index) is moved aside to `lexical.old` and a new
    /// empty one created: the second value says so, and the caller refills it from the catalog.
    pub fn open(path: &Path, analyzer: &str) -> Result<(Self, Opened)> {
        if !matches!(analyzer, "en_stem" | "default" | "raw") {
            return Err(LexicalError::Analyzer(analyzer.to_string()));
        }
        let marker = path.join(ANALYZER_FILE);
        let has_files = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some());
        if !has_files {
            let index = Self::create(path, analyzer)?;
            return Ok((index, Opened::Created));
        }
        let reason = match std::fs::read_to_string(&marker) {
            Ok(existing) if existing.trim() == analyzer => {
                match Self::open_existing(path, analyzer) {
                    Ok(index) => return Ok((index, Opened::Existing)),
                    Err(e) => format!("tantivy cannot open it: {e}"),
                }
            }
            Ok(existing) => format!(
                "it was built with the analyzer {:?}, the text pipeline now asks for {analyzer:?}",
                existing.trim()
            ),
            Err(e) => format!(
                "its analyzer marker {} cannot be read: {e}",
                marker.display()
            ),
        };
        let aside = path.with_extension("old");
        if aside.exists() {
            std::fs::remove_dir_all(&aside)?;
        }
        std::fs::rename(path, &aside)?;
        tracing::warn!(
            path = %path.display(),
            moved_to = %aside.display(),
            %reason,
            "the BM25 index is rebuilt from the catalog"
        );
        let index = Self::create(path, analyzer)?;
        Ok((index, Opened::Rebuilt { reason }))
    }

    fn create(path: &Path, analyzer: &str) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let index = Index::create(
            MmapDirectory::open(path)?,
            schema(analyzer),
            Default::default(),
        )?;
        // Written once the index exists: a marker always names a usable index.
        std::fs::write(path.join(ANALYZER_FILE), analyzer)?;
        Self::from_index(path, index)
    }

    fn open_existing(path: &Path, analyzer: &str) -> Result<Self> {
        let index = Index::open(MmapDirectory::open(path)?)?;
        if index.schema() != schema(analyzer) {
            return Err(LexicalError::Tantivy(tantivy::TantivyError::SchemaError(
                "the index has another schema".into(),
            )));
        }
        Self::from_index(path, index)
    }

    fn from_index(path: &Path, index: Index) -> Result<Self> {
        let s = index.schema();
        let fields = Fields {
            chunk_id: s.get_field("chunk_id")?,
            source_id: s.get_field("source_id")?,
            modality: s.get_field("modality")?,
            text: s.get_field("text")?,
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            path: path.to_path_buf(),
            index,
            reader,
            writer: Arc::new(Mutex::new(None)),
            fields,
        })
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut IndexWriter, Fields) -> Result<T>) -> Result<T> {
        let mut guard = self.writer.lock().expect("writer lock");
        if guard.is_none() {
            let writer = self.index.writer(64 * 1024 * 1024).map_err(|e| match e {
                tantivy::TantivyError::LockFailure(..) => {
                    LexicalError::Locked(self.path.display().to_string())
                }
                other => LexicalError::Tantivy(other),
            })?;
            *guard = Some(writer);
        }
        f(guard.as_mut().expect("writer opened above"), self.fields)
    }

    /// Queues deletion of chunks by id.
    pub fn delete_chunks(&self, ids: &[String]) -> Result<()> {
        self.with_writer(|w, f| {
            for id in ids {
                w.delete_term(Term::from_field_text(f.chunk_id, id));
            }
            Ok(())
        })
    }

    /// Every live document's chunk id, repeats kept (a repeat is a duplicate to repair).
    pub fn chunk_ids(&self) -> Result<Vec<String>> {
        let searcher = self.reader.searcher();
        let mut ids = Vec::with_capacity(searcher.num_docs() as usize);
        for segment in searcher.segment_readers() {
            let store = segment.get_store_reader(64)?;
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                let d: TantivyDocument = store.get(doc)?;
                if let Some(id) = d.get_first(self.fields.chunk_id).and_then(|v| v.as_str()) {
                    ids.push(id.to_string());
                }
            }
        }
        Ok(ids)
    }

    /// Queues deletion of every chunk of a source (visible after [`TantivyIndex::commit`]).
    pub fn delete_source(&self, source_id: &str) -> Result<()> {
        self.with_writer(|w, f| {
            w.delete_term(Term::from_field_text(f.source_id, source_id));
            Ok(())
        })
    }

    /// Queues documents, each replacing any document of its chunk id (visible after
    /// [`TantivyIndex::commit`]). A delete applies to what was added before it, so the new
    /// document survives its own delete.
    pub fn upsert(&self, docs: &[LexicalDoc]) -> Result<()> {
        self.with_writer(|w, f| {
            for d in docs {
                w.delete_term(Term::from_field_text(f.chunk_id, &d.chunk_id));
                w.add_document(doc!(
                    f.chunk_id => d.chunk_id.as_str(),
                    f.source_id => d.source_id.as_str(),
                    f.modality => d.modality.as_str(),
                    f.text => d.text.as_str(),
                ))?;
            }
            Ok(())
        })
    }

    /// Makes queued changes durable and visible.
    pub fn commit(&self) -> Result<()> {
        let committed = {
            let mut guard = self.writer.lock().expect("writer lock");
            match guard.as_mut() {
                Some(w) => {
                    w.commit()?;
                    true
                }
                None => false,
            }
        };
        if committed {
            self.reader.reload()?;
        }
        Ok(())
    }

    /// Merges the segments that hold deleted documents, so they are gone from the index and
    /// from BM25's statistics (tantivy counts a deleted document's terms until its segment is
    /// merged): scores then depend on the live chunks only, not on the history of writes. The
    /// cost is proportional to those segments. Call after a commit.
    pub fn compact(&self) -> Result<()> {
        let with_deletes: Vec<::tantivy::index::SegmentId> = self
            .index
            .searchable_segment_metas()?
            .into_iter()
            .filter(|m| m.has_deletes())
            .map(|m| m.id())
            .collect();
        if with_deletes.is_empty() {
            return Ok(());
        }
        self.with_writer(|w, _| {
            w.merge(&with_deletes).wait()?;
            Ok(())
        })?;
        self.reader.reload()?;
        Ok(())
    }

    /// Waits for background merges and releases the writer lock.
    pub fn close_writer(&self) -> Result<()> {
        let writer = self.writer.lock().expect("writer lock").take();
        if let Some(w) = writer {
            w.wait_merging_threads()?;
        }
        Ok(())
    }

    /// The terms the BM25 field's analyzer makes of `text`, in order (repeats kept). Pure
    /// in-memory work: no index I/O.
    pub fn terms(&self, text: &str) -> Result<Vec<String>> {
        let mut analyzer = self.index.tokenizer_for_field(self.fields.text)?;
        let mut terms = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            terms.push(token.text.clone());
        }
        Ok(terms)
    }

    /// BM25 top `limit` for a free-text query (query syntax errors are tolerated).
    pub fn search(
        &self,
        query: &str,
        limit: usize,
        modalities: &[String],
    ) -> Result<Vec<LexicalHit>> {
        let searcher = self.reader.searcher();
        // The question is plain text, not query syntax: `error: timeout`, `AF-IMP-2607` or
        // `canal -history` mean their words. Each term the field's analyzer makes from it is
        // one optional clause, scored by BM25.
        let mut terms = self.terms(query)?;
        let mut seen = std::collections::HashSet::new();
        terms.retain(|t| seen.insert(t.clone()));
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.text, t),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        let text_query: Box<dyn Query> = Box::new(BooleanQuery::new(clauses));
        let query: Box<dyn Query> = if modalities.is_empty() {
            text_query
        } else {
            let any_modality: Vec<(Occur, Box<dyn Query>)> = modalities
                .iter()
                .map(|m| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(self.fields.modality, m),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, text_query),
                (Occur::Must, Box::new(BooleanQuery::new(any_modality))),
            ]))
        };
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1)))?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.fields.chunk_id).and_then(|v| v.as_str()) {
                hits.push(LexicalHit {
                    id: id.to_string(),
                    score,
                });
            }
        }
        Ok(hits)
    }

    /// `text` without the words whose every term is in more than `share` of the indexed
    /// chunks: what the whole collection is about ("Kestrel Ridge" in an observatory's
    /// documents) says nothing about which passage answers a question. The text is kept
    /// whole when nothing would remain.
    pub fn without_common_words(&self, text: &str, share: f64) -> Result<String> {
        let searcher = self.reader.searcher();
        let total = searcher.num_docs();
        if total == 0 {
            return Ok(text.to_string());
        }
        let mut kept = Vec::new();
        for word in text.split_whitespace() {
            let terms = self.terms(word)?;
            let mut common = !terms.is_empty();
            for term in &terms {
                let frequency =
                    searcher.doc_freq(&Term::from_field_text(self.fields.text, term))?;
                common &= frequency as f64 > share * total as f64;
            }
            if !common {
                kept.push(word);
            }
        }
        Ok(
            if kept
                .iter()
                .any(|w| !self.terms(w).unwrap_or_default().is_empty())
            {
                kept.join(" ")
            } else {
                text.to_string()
            },
        )
    }

    /// Number of live documents.
    pub fn count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Runs `f` with this index on a blocking thread.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&TantivyIndex) -> Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T>> {
        let this = self.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&this))
                .await
                .map_err(|e| LexicalError::Join(e.to_string()))?
        }
        .boxed()
    }
}

/// How [`TantivyIndex::open`] found the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Existing,
    /// There was none: a new data directory, or its folder was removed.
    Created,
    /// The old one could not be used and was moved aside; `reason` says why.
    Rebuilt {
        reason: String,
    },
}

impl LexicalIndex for TantivyIndex {
    fn upsert(&self, docs: Vec<LexicalDoc>) -> BoxFuture<'_, Result<()>> {
        self.run(move |l| l.upsert(&docs))
    }

    fn delete_source(&self, source_id: String) -> BoxFuture<'_, Result<()>> {
        self.run(move |l| TantivyIndex::delete_source(l, &source_id))
    }

    fn delete_chunks(&self, ids: Vec<String>) -> BoxFuture<'_, Result<()>> {
        self.run(move |l| TantivyIndex::delete_chunks(l, &ids))
    }

    fn commit(&self) -> BoxFuture<'_, Result<()>> {
        self.run(TantivyIndex::commit)
    }

    fn close_writer(&self) -> BoxFuture<'_, Result<()>> {
        self.run(TantivyIndex::close_writer)
    }

    fn compact(&self) -> BoxFuture<'_, Result<()>> {
        self.run(TantivyIndex::compact)
    }

    fn search(
        &self,
        query: String,
        limit: usize,
        modalities: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<LexicalHit>>> {
        self.run(move |l| TantivyIndex::search(l, &query, limit, &modalities))
    }

    fn chunk_ids(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        self.run(TantivyIndex::chunk_ids)
    }

    fn count(&self) -> BoxFuture<'_, Result<u64>> {
        self.run(|l| Ok(TantivyIndex::count(l)))
    }

    fn terms(&self, text: &str) -> Result<Vec<String>> {
        TantivyIndex::terms(self, text)
    }

    fn without_common_words(&self, text: String, share: f64) -> BoxFuture<'_, Result<String>> {
        self.run(move |l| TantivyIndex::without_common_words(l, &text, share))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, source: &str, text: &str) -> LexicalDoc {
        LexicalDoc {
            chunk_id: id.into(),
            source_id: source.into(),
            modality: "text".into(),
            text: text.into(),
        }
    }

    #[test]
    fn words_most_chunks_share_leave_the_question() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = TantivyIndex::open(&dir.path().join("lexical"), "en_stem").unwrap();
        index
            .upsert(&[
                d("1", "a", "Kestrel Ridge has a large telescope."),
                d("2", "a", "Kestrel Ridge sits at 1,840 metres."),
                d("3", "b", "The Kestrel Ridge shuttle costs 8 dollars."),
                d("4", "b", "Tickets cost 12 dollars."),
            ])
            .unwrap();
        index.commit().unwrap();
        assert_eq!(
            index
                .without_common_words("How large is the telescope at Kestrel Ridge?", 0.5)
                .unwrap(),
            "How large is the telescope at"
        );
        // Words in at most half of the chunks stay; a question of common words alone stays.
        assert_eq!(
            index
                .without_common_words("What do dollars buy?", 0.5)
                .unwrap(),
            "What do dollars buy?"
        );
        assert_eq!(
            index.without_common_words("Kestrel Ridge?", 0.5).unwrap(),
            "Kestrel Ridge?"
        );
    }

    #[test]
    fn stemmed_search_delete_and_analyzer_switch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lexical");
        let (index, opened) = TantivyIndex::open(&path, "en_stem").unwrap();
        assert_eq!(opened, Opened::Created);
        index
            .upsert(&[
                d("1", "a", "The telescopes were calibrated at night."),
                d("2", "a", "Volunteers bring thermos flasks."),
                d("3", "b", "A telescope needs calibration."),
            ])
            .unwrap();
        index.commit().unwrap();
        let hits = index.search("telescope", 10, &[]).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert!(
            ids.contains(&"1") && ids.contains(&"3"),
            "stemming matches plural: {ids:?}"
        );
        assert!(
            index.search("AND OR (", 10, &[]).is_ok(),
            "syntax errors are tolerated"
        );
        // Questions are plain text: a colon is not a field, a minus not an exclusion, and
        // punctuation alone matches nothing.
        let ids = |q: &str| -> Vec<String> {
            let mut ids: Vec<String> = index
                .search(q, 10, &[])
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids("telescope:calibration"), ["1", "3"]);
        assert_eq!(ids("calibrated -telescope"), ["1", "3"]);
        assert_eq!(ids("\"thermos\" (flasks)"), ["2"]);
        assert!(ids("?! ... --").is_empty());
        assert!(index
            .search("telescope", 10, &["transcript".into()])
            .unwrap()
            .is_empty());

        index.delete_source("a").unwrap();
        index.commit().unwrap();
        assert_eq!(index.count(), 1);
        index.close_writer().unwrap();
        drop(index);

        let (index, opened) = TantivyIndex::open(&path, "default").unwrap();
        assert!(matches!(opened, Opened::Rebuilt { .. }), "{opened:?}");
        assert_eq!(index.count(), 0);
        assert!(
            path.with_extension("old").join(ANALYZER_FILE).exists(),
            "the old index is set aside, not deleted"
        );
        drop(index);
        let (_, opened) = TantivyIndex::open(&path, "default").unwrap();
        assert_eq!(opened, Opened::Existing);
        // An unreadable marker is reported, never taken for an empty index.
        std::fs::remove_file(path.join(ANALYZER_FILE)).unwrap();
        let (_, opened) = TantivyIndex::open(&path, "default").unwrap();
        assert!(matches!(opened, Opened::Rebuilt { .. }), "{opened:?}");
    }
}
