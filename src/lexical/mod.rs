//! BM25 over chunk text with tantivy, keyed by the same chunk ids as the vector store. The
//! analyzer comes from the text pipeline; changing it rebuilds the index (and the pipeline
//! version, so every source is re-ingested into the new one).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use thiserror::Error;

use crate::fault::{Fault, HasFault};

#[derive(Debug, Error)]
pub enum LexicalError {
    #[error("BM25 index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("BM25 index directory error: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("BM25 index I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown analyzer {0:?}: use en_stem, default or raw")]
    Analyzer(String),
    #[error("the BM25 index is locked by another mosaic process writing to {0}")]
    Locked(String),
    #[error("blocking task failed: {0}")]
    Join(String),
}

impl HasFault for LexicalError {
    fn fault(&self) -> Fault {
        match self {
            LexicalError::Analyzer(_) => Fault::User,
            LexicalError::Locked(_) => Fault::Transient,
            _ => Fault::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, LexicalError>;

/// One chunk as the BM25 index holds it.
#[derive(Debug, Clone)]
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

#[derive(Clone, Copy)]
struct Fields {
    chunk_id: Field,
    source_id: Field,
    modality: Field,
    text: Field,
}

/// The tantivy BM25 index under `<data>/lexical`.
#[derive(Clone)]
pub struct LexicalIndex {
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

impl LexicalIndex {
    /// Opens or creates the index. Returns `true` as the second value when an index built with
    /// another analyzer was dropped and recreated empty.
    pub fn open(path: &Path, analyzer: &str) -> Result<(Self, bool)> {
        if !matches!(analyzer, "en_stem" | "default" | "raw") {
            return Err(LexicalError::Analyzer(analyzer.to_string()));
        }
        let marker = path.join(ANALYZER_FILE);
        let mut rebuilt = false;
        if path.exists() {
            let existing = std::fs::read_to_string(&marker).unwrap_or_default();
            if existing.trim() != analyzer {
                std::fs::remove_dir_all(path)?;
                rebuilt = !existing.is_empty();
            }
        }
        std::fs::create_dir_all(path)?;
        let index = Index::open_or_create(MmapDirectory::open(path)?, schema(analyzer))?;
        std::fs::write(&marker, analyzer)?;
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
        Ok((
            Self {
                path: path.to_path_buf(),
                index,
                reader,
                writer: Arc::new(Mutex::new(None)),
                fields,
            },
            rebuilt,
        ))
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

    /// Queues deletion of every chunk of a source (visible after [`LexicalIndex::commit`]).
    pub fn delete_source(&self, source_id: &str) -> Result<()> {
        self.with_writer(|w, f| {
            w.delete_term(Term::from_field_text(f.source_id, source_id));
            Ok(())
        })
    }

    /// Queues documents (visible after [`LexicalIndex::commit`]).
    pub fn add(&self, docs: &[LexicalDoc]) -> Result<()> {
        self.with_writer(|w, f| {
            for d in docs {
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

    /// Async wrapper: run `f` with this index on a blocking thread.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LexicalIndex) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| LexicalError::Join(e.to_string()))?
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
        let (index, _) = LexicalIndex::open(&dir.path().join("lexical"), "en_stem").unwrap();
        index
            .add(&[
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
        let (index, rebuilt) = LexicalIndex::open(&path, "en_stem").unwrap();
        assert!(!rebuilt);
        index
            .add(&[
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

        let (index, rebuilt) = LexicalIndex::open(&path, "default").unwrap();
        assert!(rebuilt);
        assert_eq!(index.count(), 0);
    }
}
