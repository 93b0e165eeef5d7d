//! The ingest pipeline runner: `Source -> Extract -> Chunk -> Embed -> Write`.
//!
//! Files are read, detected and chunked on blocking threads, embedded on the model thread, and
//! written by one writer in batches. Write order makes a kill at any point safe: the catalog
//! marks a source `indexing` before its vectors and BM25 entries change, and `complete` only
//! after both are durable; the next run repairs any source left `indexing`. Per-file failures
//! are recorded with their reason and never stop the batch.

pub mod chunk;
pub mod detect;
pub mod extract;

use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use crate::app::{AppError, Mosaic};
use crate::catalog::{
    self, chunk_id, clock, source_id, with_context, Anchor, CatalogError, ChunkRecord,
    FinishedSource, MediaRecord, Modality,
};
use crate::embed::audio::{AudioEmbedderService, WindowOptions};
use crate::embed::{EmbedderService, Purpose};
use crate::fault::{Fault, HasFault};
use crate::lexical::{LexicalDoc, LexicalError};
use crate::models::ModelError;
use crate::store::{StoreError, VectorPoint};
use crate::transcribe::chunks::{self as transcript_chunks, GroupOptions};
use crate::transcribe::{TranscribeOptions, TranscriberService};

/// Errors that stop an ingest run (per-file problems are reported, not raised).
#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lexical(#[from] LexicalError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {reason}")]
    Path { path: PathBuf, reason: String },
}

impl HasFault for IngestError {
    fn fault(&self) -> Fault {
        match self {
            IngestError::App(e) => e.fault(),
            IngestError::Catalog(e) => e.fault(),
            IngestError::Store(e) => e.fault(),
            IngestError::Lexical(e) => e.fault(),
            IngestError::Model(e) => e.fault(),
            IngestError::Path { .. } => Fault::User,
        }
    }
}

/// One file that could not be ingested.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub uri: String,
    pub error: String,
}

/// The summary printed by `mosaic ingest` (`--json` shape from DESIGN.md).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub ingested: usize,
    pub skipped: usize,
    pub failed: Vec<Failure>,
    pub chunks: usize,
    /// Sources removed because their files are gone (`--prune`) or repaired after a crash.
    pub removed: usize,
    /// Files ingested with something worth knowing (a recording with no speech, undecodable
    /// packets skipped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
}

/// A remark about a file that was ingested.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Notice {
    pub uri: String,
    pub note: String,
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Remove catalogued sources under the given folders whose files no longer exist.
    pub prune: bool,
}

/// A file read, chunked and embedded, ready to write.
struct Prepared {
    source_id: String,
    uri: String,
    media_type: &'static str,
    bytes: i64,
    content_hash: String,
    title: Option<String>,
    chunks: Vec<ChunkRecord>,
    vectors: Vec<Vec<f32>>,
    /// Per chunk, the vectors of its sentences (empty without sentence vectors).
    sentence_vectors: Vec<Vec<Vec<f32>>>,
    /// Version of the pipeline that made the chunks (text or audio).
    version: String,
    /// Audio windows: chunks and vectors for the audio space (not in BM25).
    extra: Vec<ChunkRecord>,
    extra_vectors: Vec<Vec<f32>>,
    extra_space: Option<String>,
    /// Recordings: probe data and segments for the catalog.
    media: Option<MediaRecord>,
    notice: Option<String>,
}

/// A recording found, hashed and due for transcription.
struct MediaJob {
    path: PathBuf,
    uri: String,
    kind: detect::MediaKind,
    bytes: i64,
    content_hash: String,
}

enum Outcome {
    Prepared(Box<Prepared>),
    Media(Box<MediaJob>),
    /// Unchanged since it was indexed.
    Skipped {
        uri: String,
    },
    Failed {
        uri: String,
        media_type: String,
        bytes: i64,
        error: String,
    },
}

/// `file://` URI of a path (absolute, symlinks resolved where possible).
pub fn file_uri(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(path)
        }
    });
    format!("file://{}", absolute.display())
}

/// The path behind a `file://` URI.
pub fn uri_path(uri: &str) -> Option<PathBuf> {
    uri.strip_prefix("file://").map(PathBuf::from)
}

/// Every file under `paths` (folders recursively, hidden entries and the data directory
/// skipped), sorted.
fn collect_files(paths: &[PathBuf], data_dir: &Path) -> (Vec<PathBuf>, Vec<Failure>) {
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for path in paths {
        let meta = std::fs::symlink_metadata(path);
        match meta {
            Err(e) => failures.push(Failure {
                uri: file_uri(path),
                error: format!("cannot read {}: {e}", path.display()),
            }),
            Ok(m) if m.is_dir() => {
                let data_dir = data_dir.clone();
                // Hidden files and folders are skipped, and so is what `.gitignore` (in a git
                // work tree), `.ignore` or `.mosaicignore` files exclude, as in ripgrep.
                let walker = ignore::WalkBuilder::new(path)
                    .follow_links(true)
                    .hidden(true)
                    .add_custom_ignore_filename(".mosaicignore")
                    .sort_by_file_name(|a, b| a.cmp(b))
                    .filter_entry(move |e| {
                        !std::fs::canonicalize(e.path()).is_ok_and(|p| p.starts_with(&data_dir))
                    })
                    .build();
                for entry in walker {
                    match entry {
                        Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => {
                            files.push(e.into_path())
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let p = walk_error_path(&e).unwrap_or_else(|| path.clone());
                            // Recorded under the entry's own path (a link loop's link, not the
                            // folder it points to), so `--prune` drops it once it is gone.
                            failures.push(Failure {
                                uri: entry_uri(&p),
                                error: format!("cannot read {}: {e}", p.display()),
                            });
                        }
                    }
                }
            }
            Ok(_) => files.push(path.clone()),
        }
    }
    // One entry per file however it was reached (relative and absolute paths, overlapping
    // folders, links): the canonical path, which is also what its uri names.
    let mut files: Vec<PathBuf> = files
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect();
    files.sort();
    files.dedup();
    (files, failures)
}

/// The entry a walk error is about: the link of a loop, the path that could not be read.
fn walk_error_path(error: &ignore::Error) -> Option<PathBuf> {
    match error {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            walk_error_path(err)
        }
        ignore::Error::Partial(errors) => errors.iter().find_map(walk_error_path),
        _ => None,
    }
}

/// The uri of a directory entry without resolving the entry itself: its folder is made
/// canonical, its name kept.
fn entry_uri(path: &Path) -> String {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
            format!("file://{}", parent.join(name).display())
        }
        _ => file_uri(path),
    }
}

/// What the blocking read stage needs to know.
struct ReadLimits {
    max_bytes: u64,
    max_media_bytes: u64,
    budget: usize,
    overlap: usize,
    text_version: String,
    audio_version: String,
}

/// The first bytes of a file, enough to recognise a container.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(8192);
    std::fs::File::open(path)?
        .take(8192)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// blake3 of a file, read in a stream.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Whether a catalogued source is complete with this content and pipeline version.
fn unchanged(known: Option<&catalog::Source>, hash: &str, version: &str) -> bool {
    known.is_some_and(|source| {
        source.status == catalog::status::COMPLETE
            && source.content_hash.as_deref() == Some(hash)
            && source.pipeline_version.as_deref() == Some(version)
    })
}

/// Reads, detects, extracts and chunks one file (blocking). Recordings are only recognised
/// and hashed here; they are decoded and transcribed on the Whisper thread.
fn read_and_chunk(
    path: &Path,
    limits: &ReadLimits,
    counter: &crate::embed::TokenCounter,
    known: Option<&catalog::Source>,
) -> Outcome {
    let (max_bytes, budget, overlap) = (limits.max_bytes, limits.budget, limits.overlap);
    let pipeline_version = limits.text_version.as_str();
    let uri = file_uri(path);
    let fail = |media_type: &str, bytes: i64, error: String| Outcome::Failed {
        uri: uri.clone(),
        media_type: media_type.to_string(),
        bytes,
        error,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return fail("unknown", 0, format!("cannot read {}: {e}", path.display())),
    };
    if !meta.is_file() {
        return fail(
            "unknown",
            0,
            format!("{} is not a regular file", path.display()),
        );
    }
    let head = match read_head(path) {
        Ok(h) => h,
        Err(e) => {
            return fail(
                "unknown",
                meta.len() as i64,
                format!("cannot read {}: {e}", path.display()),
            )
        }
    };
    if let Some(kind) = detect::media_kind(&head) {
        let size = meta.len() as i64;
        if meta.len() > limits.max_media_bytes {
            return fail(
                kind.media_type(),
                size,
                format!(
                    "file is {:.1} GiB, over the {:.1} GiB limit (ingest.max_media_bytes)",
                    meta.len() as f64 / 1073741824.0,
                    limits.max_media_bytes as f64 / 1073741824.0
                ),
            );
        }
        let content_hash = match hash_file(path) {
            Ok(h) => h,
            Err(e) => {
                return fail(
                    kind.media_type(),
                    size,
                    format!("cannot read {}: {e}", path.display()),
                )
            }
        };
        if unchanged(known, &content_hash, &limits.audio_version) {
            return Outcome::Skipped { uri };
        }
        return Outcome::Media(Box::new(MediaJob {
            path: path.to_path_buf(),
            uri,
            kind,
            bytes: size,
            content_hash,
        }));
    }
    if meta.len() > max_bytes {
        return fail(
            "unknown",
            meta.len() as i64,
            format!(
                "file is {:.1} MiB, over the {:.1} MiB limit (ingest.max_file_bytes)",
                meta.len() as f64 / 1048576.0,
                max_bytes as f64 / 1048576.0
            ),
        );
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                "unknown",
                meta.len() as i64,
                format!("cannot read {}: {e}", path.display()),
            )
        }
    };
    let size = bytes.len() as i64;
    let content_hash = blake3::hash(&bytes).to_hex().to_string();
    if unchanged(known, &content_hash, pipeline_version) {
        return Outcome::Skipped { uri };
    }
    let kind = match detect::detect(path, &bytes) {
        Ok(k) => k,
        Err(rejection) => return fail("unknown", size, rejection.to_string()),
    };
    let extracted = match extract::extract(kind, &bytes) {
        Ok(e) => e,
        Err(e) => return fail(kind.media_type(), size, e.to_string()),
    };
    let title = extracted
        .title
        .clone()
        .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()));
    let spans = chunk::chunk(&extracted, title.as_deref(), counter, budget, overlap);
    let index = chunk::CharIndex::new(&extracted.text);
    let sid = source_id(&uri);
    let chunks = spans
        .iter()
        .enumerate()
        .map(|(ordinal, span)| {
            let anchor = Anchor::Span {
                page: span.page,
                char_start: index.char_offset(span.start) as u64,
                char_end: index.char_offset(span.end) as u64,
            };
            ChunkRecord {
                id: chunk_id(
                    &sid,
                    &content_hash,
                    pipeline_version,
                    Modality::Text,
                    &anchor,
                ),
                source_id: sid.clone(),
                ordinal: ordinal as u32,
                modality: Modality::Text,
                text: extracted.text[span.start..span.end].to_string(),
                context: span.context.clone(),
                token_count: span.tokens as u32,
                anchor,
            }
        })
        .collect();
    Outcome::Prepared(Box::new(Prepared {
        source_id: sid,
        uri,
        media_type: kind.media_type(),
        bytes: size,
        content_hash,
        title,
        chunks,
        vectors: Vec::new(),
        sentence_vectors: Vec::new(),
        version: pipeline_version.to_string(),
        extra: Vec::new(),
        extra_vectors: Vec::new(),
        extra_space: None,
        media: None,
        notice: extracted.notice.clone(),
    }))
}

/// Files written per batch before the BM25 commit and the catalog's `complete` marks.
const WRITE_BATCH: usize = 32;

impl Mosaic {
    /// Ingests files and folders. Returns the run's summary; only store or catalog failures
    /// (not bad files) are errors.
    pub async fn ingest(
        &self,
        paths: &[PathBuf],
        options: &IngestOptions,
        progress: &ProgressBar,
    ) -> Result<IngestReport, IngestError> {
        let mut report = IngestReport::default();
        let model_id = self.pipelines.text.embedder.model.clone();
        let embedder = self.text_embedder(&model_id).await?;
        let spec = embedder.spec().clone();
        let sentence_vectors = self.pipelines.text.embedder.sentence_vectors;
        let space = Mosaic::text_space(&spec, sentence_vectors);
        self.vectors.ensure_space(&space).await?;
        self.catalog
            .ensure_space(&space.name, &spec.id, space.dims, "text")
            .await?;
        let pipeline_version = self.pipelines.text.version();

        let (mut files, walk_failures) = collect_files(paths, &self.settings.data_dir);
        for failure in walk_failures {
            self.record_failure(&failure.uri, "unknown", 0, &failure.error)
                .await?;
            report.failed.push(failure);
        }

        // Repair sources a killed run left half-written: clear their entries everywhere and
        // ingest them again (or drop them if their file is gone).
        for source in self
            .catalog
            .sources_with_status(catalog::status::INDEXING)
            .await?
        {
            tracing::info!(uri = %source.uri, "repairing a source left by an interrupted run");
            self.remove_from_stores(&source.id).await?;
            match uri_path(&source.uri).filter(|p| p.is_file()) {
                Some(path) => files.push(path),
                None => {
                    self.catalog.remove_source(&source.id).await?;
                    report.removed += 1;
                }
            }
        }
        self.lexical.run(|l| l.commit()).await?;
        files.sort();
        files.dedup();

        if options.prune {
            report.removed += self.prune(paths).await?;
        }

        progress.set_length(files.len() as u64);
        let counter = embedder.token_counter();
        let prefix_tokens = counter.count(&spec.passage_prefix);
        let chunking = &self.pipelines.text.chunking;
        let budget = chunking
            .max_tokens
            .min(spec.max_tokens)
            .saturating_sub(2 + prefix_tokens)
            .max(8);
        let audio = &self.pipelines.audio;
        let panns = audio
            .similar
            .enabled
            .then(|| self.models.locate_panns(&audio.similar.model))
            .flatten();
        let limits = std::sync::Arc::new(ReadLimits {
            max_bytes: self.settings.ingest.max_file_bytes,
            max_media_bytes: self.settings.ingest.max_media_bytes,
            budget,
            overlap: chunking.overlap_tokens,
            text_version: pipeline_version.clone(),
            audio_version: self
                .pipelines
                .audio
                .version(&self.pipelines.text, panns.is_some()),
        });
        let media = std::sync::Arc::new(MediaContext {
            transcriber: tokio::sync::OnceCell::new(),
            model: audio.transcribe.model.clone(),
            options: audio.transcribe_options(),
            grouping: GroupOptions {
                min_ms: (audio.chunking.min_secs * 1000.0) as u64,
                max_ms: (audio.chunking.max_secs * 1000.0) as u64,
                overlap_ms: (audio.chunking.overlap_secs * 1000.0) as u64,
                max_tokens: budget,
            },
            version: limits.audio_version.clone(),
            version_without_windows: audio.version(&self.pipelines.text, false),
            panns,
            audio_embedder: tokio::sync::OnceCell::new(),
            windows: audio.similar.window_options(audio.transcribe.silence_dbfs),
            progress: progress.clone(),
        });

        let known: std::collections::HashMap<String, catalog::Source> = self
            .catalog
            .sources()
            .await?
            .into_iter()
            .map(|s| (s.uri.clone(), s))
            .collect();
        let known = std::sync::Arc::new(known);

        let prepared = stream::iter(files)
            .map(|path| {
                let counter = counter.clone();
                let limits = limits.clone();
                let known = known.clone();
                let embedder = embedder.clone();
                let media = media.clone();
                async move {
                    let read_counter = counter.clone();
                    let outcome = tokio::task::spawn_blocking(move || {
                        let source = known.get(&file_uri(&path));
                        read_and_chunk(&path, &limits, &read_counter, source)
                    })
                    .await
                    .unwrap_or_else(|e| Outcome::Failed {
                        uri: String::new(),
                        media_type: "unknown".into(),
                        bytes: 0,
                        error: format!("extraction crashed: {e}"),
                    });
                    let outcome = match outcome {
                        Outcome::Media(job) => {
                            self.transcribe_outcome(*job, &media, &counter).await
                        }
                        other => other,
                    };
                    embed_outcome(outcome, &embedder, sentence_vectors).await
                }
            })
            .buffered(self.settings.ingest.parallel_files.max(1));
        futures::pin_mut!(prepared);

        let mut batch: Vec<Prepared> = Vec::new();
        while let Some(outcome) = prepared.next().await {
            progress.inc(1);
            match outcome? {
                Outcome::Skipped { uri } => {
                    report.skipped += 1;
                    // Back to the version that is indexed: no longer stale.
                    if known.get(&uri).is_some_and(|s| s.error.is_some()) {
                        self.catalog.clear_error(&source_id(&uri)).await?;
                    }
                }
                Outcome::Media(_) => unreachable!("recordings are transcribed before this point"),
                Outcome::Failed {
                    uri,
                    media_type,
                    bytes,
                    error,
                } => {
                    // A file that was indexed before keeps its last good version (nothing
                    // already indexed is lost to a bad write); say so, and `status` counts it
                    // as stale until the file is fixed or removed.
                    let kept = known.get(&uri).is_some_and(|s| {
                        s.status == catalog::status::COMPLETE && s.chunk_count > 0
                    });
                    let error = if kept {
                        format!("{error} (the version indexed before stays searchable until the file is fixed or removed)")
                    } else {
                        error
                    };
                    tracing::warn!(%uri, %error, "file not ingested");
                    self.record_failure(&uri, &media_type, bytes, &error)
                        .await?;
                    report.failed.push(Failure { uri, error });
                }
                Outcome::Prepared(p) => {
                    progress.set_message(p.uri.rsplit('/').next().unwrap_or_default().to_string());
                    if let Some(note) = &p.notice {
                        tracing::info!(uri = %p.uri, %note, "ingested with a notice");
                        report.notices.push(Notice {
                            uri: p.uri.clone(),
                            note: note.clone(),
                        });
                    }
                    self.write_source(&p, &space.name).await?;
                    batch.push(*p);
                    if batch.len() >= WRITE_BATCH {
                        report.chunks += self.commit_batch(&mut batch, &space.name).await?;
                        report.ingested += WRITE_BATCH;
                    }
                }
            }
        }
        let last = batch.len();
        report.chunks += self.commit_batch(&mut batch, &space.name).await?;
        report.ingested += last;
        if report.ingested > 0 || report.removed > 0 {
            progress.set_message("building vector indexes");
            let started = std::time::Instant::now();
            self.vectors.optimize().await?;
            tracing::debug!(
                secs = started.elapsed().as_secs_f64(),
                "vector indexes built"
            );
        }
        self.lexical.run(|l| l.close_writer()).await?;
        progress.finish_and_clear();
        Ok(report)
    }

    async fn record_failure(
        &self,
        uri: &str,
        media_type: &str,
        bytes: i64,
        error: &str,
    ) -> Result<(), IngestError> {
        if uri.is_empty() {
            return Ok(());
        }
        self.catalog
            .fail_source(&source_id(uri), uri, media_type, bytes, error)
            .await?;
        Ok(())
    }

    /// Marks the source `indexing`, then replaces its entries in the vector store and the
    /// BM25 index (the BM25 part becomes visible at the batch commit).
    async fn write_source(&self, p: &Prepared, space: &str) -> Result<(), IngestError> {
        self.catalog
            .begin_source(&p.source_id, &p.uri, p.media_type, p.bytes)
            .await?;
        self.remove_from_stores(&p.source_id).await?;
        self.vectors
            .upsert(
                space,
                vector_points(&p.chunks, &p.vectors, &p.sentence_vectors),
            )
            .await?;
        if let Some(extra_space) = &p.extra_space {
            self.vectors
                .upsert(extra_space, vector_points(&p.extra, &p.extra_vectors, &[]))
                .await?;
        }
        let docs: Vec<LexicalDoc> = p
            .chunks
            .iter()
            .map(|c| LexicalDoc {
                chunk_id: c.id.clone(),
                source_id: c.source_id.clone(),
                modality: c.modality.as_str().to_string(),
                text: c.indexed_text(),
            })
            .collect();
        self.lexical.run(move |l| l.add(&docs)).await?;
        Ok(())
    }

    /// Makes the batch durable in both stores, then marks its sources complete.
    async fn commit_batch(
        &self,
        batch: &mut Vec<Prepared>,
        space: &str,
    ) -> Result<usize, IngestError> {
        if batch.is_empty() {
            return Ok(0);
        }
        self.lexical.run(|l| l.commit()).await?;
        self.vectors.flush().await?;
        let mut chunks = 0;
        for p in batch.drain(..) {
            self.catalog
                .finish_source(&FinishedSource {
                    source_id: &p.source_id,
                    content_hash: &p.content_hash,
                    pipeline_version: &p.version,
                    title: p.title.as_deref(),
                    chunks: &p.chunks,
                    space: Some(space),
                    media: p.media.as_ref(),
                    extra: &p.extra,
                    extra_space: p.extra_space.as_deref(),
                })
                .await?;
            chunks += p.chunks.len() + p.extra.len();
        }
        Ok(chunks)
    }

    /// Deletes a source's entries from the vector store and queues their BM25 deletion.
    async fn remove_from_stores(&self, source_id: &str) -> Result<(), IngestError> {
        self.vectors.delete_source(source_id).await?;
        let id = source_id.to_string();
        self.lexical.run(move |l| l.delete_source(&id)).await?;
        Ok(())
    }

    /// Removes sources whose uri is one of `paths` or lies under one of them. Returns how many.
    pub async fn remove_paths(
        &self,
        paths: &[PathBuf],
        only_missing: bool,
    ) -> Result<usize, IngestError> {
        let prefixes: Vec<String> = paths.iter().map(|p| file_uri(p)).collect();
        let mut removed = Vec::new();
        for source in self.catalog.sources().await? {
            let under = prefixes.iter().any(|p| {
                source.uri == *p
                    || source
                        .uri
                        .starts_with(&format!("{}/", p.trim_end_matches('/')))
            });
            if !under {
                continue;
            }
            // A broken link still exists (its failure stays recorded until the link goes).
            let exists = |p: PathBuf| std::fs::symlink_metadata(p).is_ok();
            if only_missing && uri_path(&source.uri).is_some_and(exists) {
                continue;
            }
            self.remove_from_stores(&source.id).await?;
            removed.push(source.id);
        }
        if !removed.is_empty() {
            self.lexical.run(|l| l.commit()).await?;
            self.vectors.flush().await?;
            for id in &removed {
                self.catalog.remove_source(id).await?;
            }
        }
        Ok(removed.len())
    }

    async fn prune(&self, paths: &[PathBuf]) -> Result<usize, IngestError> {
        self.remove_paths(paths, true).await
    }
}

/// Chunks with their vectors (and sentence vectors, when given: one list per chunk) as
/// points, with the payload queries filter and display on.
fn vector_points(
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

/// Shared by the recordings of one ingest run.
struct MediaContext {
    /// Started with the first recording; `Err` holds why it could not be (reported per file).
    transcriber: tokio::sync::OnceCell<Result<TranscriberService, String>>,
    model: String,
    options: TranscribeOptions,
    grouping: GroupOptions,
    version: String,
    /// The version recorded when audio windows could not be embedded.
    version_without_windows: String,
    /// The CNN14 checkpoint, when similar-audio search is on and it is installed.
    panns: Option<PathBuf>,
    audio_embedder: tokio::sync::OnceCell<Result<(AudioEmbedderService, String), String>>,
    windows: WindowOptions,
    progress: ProgressBar,
}

impl Mosaic {
    /// Loads CNN14 on its thread and registers its embedding space.
    async fn start_audio_embedder(
        &self,
        checkpoint: &Path,
    ) -> Result<(AudioEmbedderService, String), String> {
        tracing::info!(model = %checkpoint.display(), "loading CNN14");
        let service = AudioEmbedderService::start(checkpoint)
            .await
            .map_err(|e| e.to_string())?;
        let space = Mosaic::audio_space(service.dims());
        self.vectors
            .ensure_space(&space)
            .await
            .map_err(|e| e.to_string())?;
        self.catalog
            .ensure_space(
                &space.name,
                &checkpoint.display().to_string(),
                space.dims,
                "audio",
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok((service, space.name))
    }

    /// Decodes and transcribes a recording on the Whisper thread and groups its segments into
    /// timed transcript chunks (embedded afterwards like any text).
    async fn transcribe_outcome(
        &self,
        job: MediaJob,
        media: &MediaContext,
        counter: &crate::embed::TokenCounter,
    ) -> Outcome {
        let failed = |error: String| Outcome::Failed {
            uri: job.uri.clone(),
            media_type: job.kind.media_type().to_string(),
            bytes: job.bytes,
            error,
        };
        let service = media
            .transcriber
            .get_or_init(|| async {
                let path = self
                    .models
                    .require_whisper(&media.model)
                    .map_err(|e| format!("speech: {e}"))?;
                tracing::info!(model = %path.display(), "loading Whisper");
                TranscriberService::start(&path)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        let service = match service {
            Ok(s) => s.clone(),
            Err(e) => return failed(e.clone()),
        };
        let name = job
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bar = media.progress.clone();
        let label = name.clone();
        let progress = Box::new(move |done: u64, total: Option<u64>| {
            let total = total.map(|t| format!("/{}", clock(t))).unwrap_or_default();
            bar.set_message(format!("{label}: transcribed {}{total}", clock(done)));
        });
        let transcript = match service
            .transcribe(&job.path, media.options.clone(), progress)
            .await
        {
            Ok(t) => t,
            Err(e) => return failed(e.to_string()),
        };
        let sid = source_id(&job.uri);
        let groups =
            transcript_chunks::group(&transcript.segments, &media.grouping, &|t| counter.count(t));
        let chunks: Vec<ChunkRecord> = groups
            .iter()
            .enumerate()
            .map(|(ordinal, g)| {
                let anchor = Anchor::Time {
                    start_ms: g.start_ms,
                    end_ms: g.end_ms,
                };
                ChunkRecord {
                    id: chunk_id(
                        &sid,
                        &job.content_hash,
                        &media.version,
                        Modality::Transcript,
                        &anchor,
                    ),
                    source_id: sid.clone(),
                    ordinal: ordinal as u32,
                    modality: Modality::Transcript,
                    text: g.text.clone(),
                    context: name.clone(),
                    token_count: g.tokens as u32,
                    anchor,
                }
            })
            .collect();
        let mut notes = Vec::new();
        if transcript.segments.is_empty() {
            notes.push(format!(
                "no speech found in {} of audio",
                clock(transcript.duration_ms)
            ));
        }
        if transcript.bad_packets > 0 {
            notes.push(format!(
                "{} undecodable packets skipped (truncated or corrupt file?)",
                transcript.bad_packets
            ));
        }
        // Audio windows for similar-audio search, in their own space.
        let mut extra = Vec::new();
        let mut extra_vectors = Vec::new();
        let mut extra_space = None;
        let mut version = media.version.clone();
        if let Some(checkpoint) = &media.panns {
            let started = media
                .audio_embedder
                .get_or_init(|| self.start_audio_embedder(checkpoint))
                .await;
            let result = match started {
                Ok((service, space)) => {
                    media
                        .progress
                        .set_message(format!("{name}: audio embeddings"));
                    service
                        .embed_file(&job.path, media.windows)
                        .await
                        .map(|w| (w, space.clone()))
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok((windows, space)) => {
                    for w in windows {
                        let anchor = Anchor::Time {
                            start_ms: w.start_ms,
                            end_ms: w.end_ms,
                        };
                        extra.push(ChunkRecord {
                            id: chunk_id(
                                &sid,
                                &job.content_hash,
                                &version,
                                Modality::Audio,
                                &anchor,
                            ),
                            source_id: sid.clone(),
                            ordinal: (chunks.len() + extra.len()) as u32,
                            modality: Modality::Audio,
                            text: String::new(),
                            context: name.clone(),
                            token_count: 0,
                            anchor,
                        });
                        extra_vectors.push(w.vector);
                    }
                    extra_space = Some(space);
                }
                Err(e) => {
                    notes.push(format!("no audio embeddings for similar-audio search: {e}"));
                    version = media.version_without_windows.clone();
                }
            }
        }
        let info = &transcript.info;
        let media_info = json!({
            "container": info.container,
            "codec": info.codec,
            "channels": info.channels,
            "sample_rate": info.sample_rate,
            "has_video": info.has_video,
            "language": transcript.language,
            "model": media.model,
        });
        Outcome::Prepared(Box::new(Prepared {
            source_id: sid,
            uri: job.uri.clone(),
            media_type: job.kind.media_type(),
            bytes: job.bytes,
            content_hash: job.content_hash.clone(),
            title: Some(name),
            chunks,
            vectors: Vec::new(),
            sentence_vectors: Vec::new(),
            version,
            extra,
            extra_vectors,
            extra_space,
            media: Some(MediaRecord {
                duration_ms: transcript.duration_ms,
                info: media_info.to_string(),
                segments: transcript.segments,
            }),
            notice: (!notes.is_empty()).then(|| notes.join("; ")),
        }))
    }
}

/// Embeds a prepared file's chunks on the model thread, and with `sentences` each sentence
/// of each chunk, under the chunk's context line as the chunk itself is embedded.
async fn embed_outcome(
    outcome: Outcome,
    embedder: &EmbedderService,
    sentences: bool,
) -> Result<Outcome, IngestError> {
    let Outcome::Prepared(mut p) = outcome else {
        return Ok(outcome);
    };
    let mut texts: Vec<String> = p.chunks.iter().map(|c| c.indexed_text()).collect();
    let mut owners = Vec::new();
    if sentences {
        for (i, c) in p.chunks.iter().enumerate() {
            for (s, e) in chunk::sentence_spans(&c.text) {
                texts.push(with_context(&c.context, &c.text[s..e]));
                owners.push(i);
            }
        }
    }
    let mut vectors = embedder.embed(texts, Purpose::Passage).await?;
    let sentence_vectors = vectors.split_off(p.chunks.len());
    p.vectors = vectors;
    p.sentence_vectors = vec![Vec::new(); p.chunks.len()];
    for (owner, v) in owners.into_iter().zip(sentence_vectors) {
        p.sentence_vectors[owner].push(v);
    }
    Ok(Outcome::Prepared(p))
}
