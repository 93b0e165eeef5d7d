//! The ingest pipeline runner: `Source -> Extract -> Chunk -> Embed -> Write`.
//!
//! Files are read, detected and chunked on blocking threads, embedded on the model thread, and
//! written through the one write path ([`write`]) in batches, so a kill at any point is safe
//! and the next run repairs what it left. A file's own failure (extraction, decoding,
//! transcription, embedding, or a panic in any of them) is recorded with its path and reason
//! and never stops the batch; only catalog or store failures end a run.

pub mod chunk;
pub mod detect;
pub mod extract;
pub mod image;
pub mod migrate;
pub mod video;
pub mod write;

use std::path::{Path, PathBuf};

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use crate::catalog::{
    self, chunk_id, clock, source_id, with_context, Anchor, CatalogError, ChunkRecord, MediaRecord,
    Modality, NewSource,
};
use crate::embed::audio::WindowOptions;
use crate::embed::{AudioEmbedding, Purpose, TextEmbedding};
use crate::engine::{Engine, Progress};
use crate::fault::{panic_text, Fault, HasFault};
use crate::lexical::LexicalError;
use crate::models::ModelError;
use crate::store::{SpaceSpec, StoreError};
use crate::transcribe::chunks::{self as transcript_chunks, GroupOptions};
use crate::transcribe::TranscribeOptions;
pub use crate::uri::{file_uri, uri_path};
use write::{SourceWrite, WriteError, Writer};

/// Errors that stop an ingest run (per-file problems are reported, not raised).
#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    Write(#[from] WriteError),
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
            IngestError::Write(e) => e.fault(),
            IngestError::Catalog(e) => e.fault(),
            IngestError::Store(e) => e.fault(),
            IngestError::Lexical(e) => e.fault(),
            IngestError::Model(e) => e.fault(),
            IngestError::Path { .. } => Fault::User,
        }
    }
}

/// One file that could not be ingested.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
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
    /// The run was asked to stop and left files unread.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
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
    /// When not empty, only files whose real path (links resolved) lies under one of these
    /// folders are read; others are reported (the server confines ingestion to its roots).
    pub confine: Vec<PathBuf>,
    /// Leave the start-of-run repair out: other writers share the stores (`mosaic worker` on
    /// a cluster backend), so a source being written looks interrupted and its entries like
    /// orphans. A file whose run died is written whole again when it is retried.
    pub shared_writers: bool,
}

/// A file read, chunked and embedded, ready to write.
struct Prepared {
    write: SourceWrite,
    /// Something worth telling about the file (no speech found, packets skipped).
    notice: Option<String>,
}

/// A recording found, hashed and due for transcription.
#[derive(Clone)]
struct MediaJob {
    path: PathBuf,
    uri: String,
    kind: detect::MediaKind,
    bytes: i64,
    content_hash: String,
}

enum Outcome {
    Prepared(Box<Prepared>),
    /// A catalog or store failed while the file was prepared: the run stops.
    Fatal(Box<IngestError>),
    Media(Box<MediaJob>),
    Picture(Box<image::PictureJob>),
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

/// Every file under `paths` (folders recursively, hidden entries and the data directory
/// skipped), sorted.
/// The files under `paths` an ingest would read (folders walked as ingest walks them: hidden
/// and ignored files left out, the data directory skipped), with what could not be read.
pub fn collect_files(
    paths: &[PathBuf],
    data_dir: &Path,
    confine: &[PathBuf],
) -> (Vec<PathBuf>, Vec<Failure>) {
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
    if !confine.is_empty() {
        let roots: Vec<PathBuf> = confine
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        files.retain(|file| {
            let inside = roots.iter().any(|r| file.starts_with(r));
            if !inside {
                failures.push(Failure {
                    uri: file_uri(file),
                    error: format!(
                        "{} lies outside the folders this server may read (a link out of them?)",
                        file.display()
                    ),
                });
            }
            inside
        });
    }
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
            crate::uri::path_uri(&parent.join(name))
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
    /// Version of a video's chunks; `None` when videos are transcribed only.
    video_version: Option<String>,
    /// The space text chunks' vectors go to.
    text_space: String,
    pictures: image::PictureLimits,
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

/// blake3 of bytes in memory, as hex.
fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
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
    if let Some(format) = crate::media::image::format_of(&head) {
        return image::read_picture(
            path,
            format,
            &limits.pictures,
            limits.max_media_bytes,
            known,
        );
    }
    if crate::media::image::is_picture_extension(path) && detect::media_kind(&head).is_none() {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let what = if head.is_empty() {
            "the file is empty".to_string()
        } else {
            match infer::get(&head) {
                Some(kind) => format!("it holds {} ({})", kind.mime_type(), kind.extension()),
                None if std::str::from_utf8(&head).is_ok() => "it holds text".to_string(),
                None => "its bytes are no known format".to_string(),
            }
        };
        return fail(
            "image",
            meta.len() as i64,
            format!("named .{ext} but not a picture Mosaic decodes (JPEG, PNG, WebP, GIF, BMP, TIFF): {what}"),
        );
    }
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
        let version = match (&limits.video_version, kind) {
            (Some(video), detect::MediaKind::Video) => video,
            _ => &limits.audio_version,
        };
        if unchanged(known, &content_hash, version) {
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
        write: SourceWrite {
            source_id: sid,
            uri,
            media_type: kind.media_type().to_string(),
            bytes: size,
            content_hash,
            version: pipeline_version.to_string(),
            title,
            chunks,
            space: limits.text_space.clone(),
            ..Default::default()
        },
        notice: extracted.notice.clone(),
    }))
}

/// Files written per batch before the BM25 commit and the catalog's `complete` marks.
const WRITE_BATCH: usize = 32;

/// Files in flight per file read at once: each reader's file, once chunked, waits in the
/// embedding worker's queue with the others', so the worker merges a whole batch of them
/// (a few chunks per file) instead of the one or two files the readers have just finished.
const FILES_AHEAD_PER_READER: usize = 8;

/// Whether `uri` is one of `prefixes` or lies under one of them.
fn under_any(uri: &str, prefixes: &[String]) -> bool {
    prefixes
        .iter()
        .any(|p| uri == p || uri.starts_with(&format!("{}/", p.trim_end_matches('/'))))
}

impl Engine {
    /// Ingests files and folders. Returns the run's summary; only store or catalog failures
    /// (not bad files) are errors.
    pub async fn ingest(
        &self,
        paths: &[PathBuf],
        options: &IngestOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<IngestReport, IngestError> {
        let mut report = IngestReport::default();
        let model_id = self.pipelines.text.embedder.model.clone();
        let embedder = self.text_embedder(&model_id).await?;
        let spec = embedder.spec().clone();
        let sentence_vectors = self.pipelines.text.embedder.sentence_vectors;
        let space = SpaceSpec::text(&spec.id, spec.dims(), sentence_vectors);
        self.vectors.ensure_space(&space).await?;
        self.catalog
            .ensure_space(&space.name, &spec.id, space.dims, "text")
            .await?;
        let pipeline_version = self.pipelines.text.version();
        let mut writer = Writer::new(
            self.catalog.as_ref(),
            self.vectors.as_ref(),
            self.lexical.as_ref(),
        );

        let (mut files, walk_failures) =
            collect_files(paths, &self.settings.data_dir, &options.confine);
        for failure in walk_failures {
            self.record_failure(&failure.uri, "unknown", 0, &failure.error)
                .await?;
            report.failed.push(failure);
        }

        // Finish what an interrupted run left and reconcile the stores by id; sources that
        // must be written again are ingested from their files (or removed, when gone).
        let repair = if options.shared_writers {
            Default::default()
        } else {
            writer.repair().await?
        };
        report.removed += repair.removed;
        let repaired = repair.orphans_deleted + repair.lexical_rewritten > 0;
        let mut gone = Vec::new();
        for source in repair.reingest {
            match uri_path(&source.uri).filter(|p| p.is_file()) {
                Some(path) => files.push(path),
                None => gone.push(source.id),
            }
        }
        report.removed += gone.len();
        writer.remove(&gone).await?;
        image::remove_thumbnails(&self.settings.data_dir, &gone, None);
        files.sort();
        files.dedup();

        if options.prune {
            report.removed += self.remove_paths(paths, true).await?;
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
        let audio_version = self
            .pipelines
            .audio
            .version(&self.pipelines.text, panns.is_some());
        let video_pipeline = self.pipelines.video.clone();
        let image_pipeline = self.pipelines.image.clone();
        let videos = self.pipelines.video.embed.enabled && self.pipelines.image.embedder.enabled;
        let video_version = move |audio: &str| video_pipeline.version(&image_pipeline, audio);
        let limits = Arc::new(ReadLimits {
            video_version: videos.then(|| video_version(&audio_version)),
            max_bytes: self.settings.ingest.max_file_bytes,
            max_media_bytes: self.settings.ingest.max_media_bytes,
            budget,
            overlap: chunking.overlap_tokens,
            text_version: pipeline_version.clone(),
            audio_version,
            text_space: space.name.clone(),
            pictures: image::PictureLimits {
                enabled: self.pipelines.image.embedder.enabled,
                model: self.pipelines.image.embedder.model.clone(),
                max_pixels: self.pipelines.image.decode.max_pixels,
                version: self.pipelines.image.version(),
                thumbnail_px: self.pipelines.image.decode.thumbnail_px,
                data_dir: self.settings.data_dir.clone(),
            },
        });
        let picture_space = Arc::new(tokio::sync::OnceCell::new());
        let video = Arc::new(video::VideoContext {
            settings: self.pipelines.video.frames.clone(),
            pictures: limits.pictures.clone(),
            version: Box::new(video_version),
        });
        let media = Arc::new(MediaContext {
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
            text_space: space.name.clone(),
            panns,
            audio_space: tokio::sync::OnceCell::new(),
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
        let known = Arc::new(known);

        // `parallel_files` files are read and chunked at once; more wait for embedding.
        let readers = self.settings.ingest.parallel_files.max(1);
        let reading = Arc::new(tokio::sync::Semaphore::new(readers));
        let prepared = stream::iter(files)
            .map(|path| {
                let reading = reading.clone();
                let counter = counter.clone();
                let limits = limits.clone();
                let known = known.clone();
                let embedder = embedder.clone();
                let media = media.clone();
                let picture_space = picture_space.clone();
                let after_read = limits.clone();
                let video = video.clone();
                async move {
                    let uri = file_uri(&path);
                    let read_counter = counter.clone();
                    let read_uri = uri.clone();
                    let permit = reading.acquire_owned().await;
                    let outcome = tokio::task::spawn_blocking(move || {
                        let source = known.get(&read_uri);
                        read_and_chunk(&path, &limits, &read_counter, source)
                    })
                    .await
                    .unwrap_or_else(|e| Outcome::Failed {
                        uri: uri.clone(),
                        media_type: "unknown".into(),
                        bytes: 0,
                        error: match e.try_into_panic() {
                            Ok(panic) => format!("extraction crashed: {}", panic_text(&*panic)),
                            Err(e) => format!("extraction stopped: {e}"),
                        },
                    });
                    // A text file's reader is free once it is chunked; a picture (decoded
                    // pixels) or a recording keeps its reader's place until it is embedded
                    // or transcribed, so no more of them are held at once than files read.
                    let permit = match outcome {
                        Outcome::Media(_) | Outcome::Picture(_) => Some(permit),
                        _ => {
                            drop(permit);
                            None
                        }
                    };
                    // Decoding, transcription and embedding run on the model workers, which
                    // turn a panic into that request's error: it fails this file alone.
                    let outcome = match outcome {
                        Outcome::Media(job)
                            if job.kind == detect::MediaKind::Video
                                && after_read.video_version.is_some() =>
                        {
                            self.video_outcome(*job, &media, &counter, &video, &picture_space)
                                .await
                        }
                        Outcome::Media(job) => {
                            self.transcribe_outcome(*job, &media, &counter).await
                        }
                        Outcome::Picture(job) => {
                            self.picture_outcome(
                                *job,
                                &after_read.pictures,
                                &picture_space,
                                &after_read.text_space,
                            )
                            .await
                        }
                        other => other,
                    };
                    drop(permit);
                    embed_outcome(outcome, embedder.as_ref(), sentence_vectors).await
                }
            })
            .buffered(readers * FILES_AHEAD_PER_READER);
        futures::pin_mut!(prepared);

        while let Some(outcome) = prepared.next().await {
            progress.advance();
            match outcome {
                Outcome::Fatal(error) => return Err(*error),
                Outcome::Skipped { uri } => {
                    report.skipped += 1;
                    // Back to the version that is indexed: no longer stale.
                    if known.get(&uri).is_some_and(|s| s.error.is_some()) {
                        self.catalog.clear_error(&source_id(&uri)).await?;
                    }
                }
                Outcome::Media(_) => unreachable!("recordings are transcribed before this point"),
                Outcome::Picture(_) => unreachable!("pictures are embedded before this point"),
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
                    progress.message(crate::uri::display_name(&p.write.uri));
                    if let Some(note) = &p.notice {
                        tracing::info!(uri = %p.write.uri, %note, "ingested with a notice");
                        report.notices.push(Notice {
                            uri: p.write.uri.clone(),
                            note: note.clone(),
                        });
                    }
                    writer.stage(p.write).await?;
                    if writer.pending() >= WRITE_BATCH {
                        let (sources, chunks) = writer.commit().await?;
                        report.ingested += sources;
                        report.chunks += chunks;
                    }
                }
            }
            if progress.cancelled() {
                // Stopped between files: what is staged is written below; the rest is read
                // again by the next run (finished files are skipped by their hash).
                tracing::info!("ingest stopped between files");
                report.stopped = true;
                break;
            }
        }
        let (sources, chunks) = writer.commit().await?;
        report.ingested += sources;
        report.chunks += chunks;
        if report.ingested > 0 || report.removed > 0 {
            progress.message("building vector indexes".into());
            let started = std::time::Instant::now();
            self.vectors.optimize().await?;
            tracing::debug!(
                secs = started.elapsed().as_secs_f64(),
                "vector indexes built"
            );
        }
        if report.ingested > 0 || report.removed > 0 || repaired {
            self.lexical.compact().await?;
        }
        self.lexical.close_writer().await?;
        progress.finish();
        Ok(report)
    }

    /// Finishes interrupted writes and reconciles the stores with the catalog by id, then
    /// ingests again the sources that need it (removing those whose files are gone).
    pub async fn repair(&self, progress: Arc<dyn Progress>) -> Result<IngestReport, IngestError> {
        // A full ingest of nothing: it runs the repair, then writes what it hands back.
        self.ingest(&[], &IngestOptions::default(), progress).await
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
        let id = source_id(uri);
        self.catalog
            .fail_source(
                NewSource {
                    id: &id,
                    uri,
                    media_type,
                    bytes,
                },
                error,
            )
            .await?;
        Ok(())
    }

    /// Removes sources whose uri is one of `paths` or lies under one of them (with
    /// `only_missing`, only those whose files are gone). Returns how many.
    pub async fn remove_paths(
        &self,
        paths: &[PathBuf],
        only_missing: bool,
    ) -> Result<usize, IngestError> {
        let prefixes: Vec<String> = paths.iter().map(|p| file_uri(p)).collect();
        let mut removed = Vec::new();
        for source in self.catalog.sources().await? {
            if !under_any(&source.uri, &prefixes) {
                continue;
            }
            // A broken link still exists (its failure stays recorded until the link goes).
            let exists = |p: PathBuf| std::fs::symlink_metadata(p).is_ok();
            if only_missing && uri_path(&source.uri).is_some_and(exists) {
                continue;
            }
            removed.push(source.id);
        }
        self.remove_sources(&removed).await
    }

    /// Removes the sources with these ids from every store (and their thumbnails). Returns
    /// how many.
    pub async fn remove_sources(&self, removed: &[String]) -> Result<usize, IngestError> {
        let removed = removed.to_vec();
        let mut writer = Writer::new(
            self.catalog.as_ref(),
            self.vectors.as_ref(),
            self.lexical.as_ref(),
        );
        writer.remove(&removed).await?;
        if !removed.is_empty() {
            self.lexical.compact().await?;
            image::remove_thumbnails(&self.settings.data_dir, &removed, None);
        }
        Ok(removed.len())
    }
}

/// Shared by the recordings of one ingest run.
struct MediaContext {
    model: String,
    options: TranscribeOptions,
    grouping: GroupOptions,
    version: String,
    /// The version recorded when audio windows could not be embedded.
    version_without_windows: String,
    text_space: String,
    /// The CNN14 checkpoint, when similar-audio search is on and it is installed.
    panns: Option<PathBuf>,
    /// The audio space, registered with the first recording.
    audio_space: tokio::sync::OnceCell<String>,
    windows: WindowOptions,
    progress: Arc<dyn Progress>,
}

impl Engine {
    /// Registers CNN14's embedding space in both stores.
    async fn register_audio_space(
        &self,
        service: &dyn AudioEmbedding,
        checkpoint: &Path,
    ) -> Result<String, IngestError> {
        let space = SpaceSpec::audio(service.dims());
        self.vectors.ensure_space(&space).await?;
        self.catalog
            .ensure_space(
                &space.name,
                &checkpoint.display().to_string(),
                space.dims,
                "audio",
            )
            .await?;
        Ok(space.name)
    }

    /// The transcript of a recording: the catalog's, when this content was transcribed before
    /// with the same model and options, else Whisper's (decoded and transcribed on the
    /// Whisper thread).
    async fn transcript_of(
        &self,
        job: &MediaJob,
        media: &MediaContext,
        name: &str,
    ) -> Result<Result<(MediaRecord, Option<String>), String>, IngestError> {
        let sid = source_id(&job.uri);
        let key = self.pipelines.audio.transcript_key(&job.content_hash);
        if let Some(stored) = self.catalog.transcript(&sid, &key).await? {
            tracing::info!(uri = %job.uri, "transcript reused: same recording, speech model and options");
            return Ok(Ok((stored, None)));
        }
        Ok(self.transcribe_now(job, media, name, key).await)
    }

    /// Decodes and transcribes a recording on the Whisper thread.
    async fn transcribe_now(
        &self,
        job: &MediaJob,
        media: &MediaContext,
        name: &str,
        key: String,
    ) -> Result<(MediaRecord, Option<String>), String> {
        let service = self
            .workers
            .transcriber(&media.model)
            .await
            .map_err(|e| format!("speech: {e}"))?;
        let progress = media.progress.clone();
        let label = name.to_string();
        let report = Box::new(move |done: u64, total: Option<u64>| {
            let total = total.map(|t| format!("/{}", clock(t))).unwrap_or_default();
            progress.message(format!("{label}: transcribed {}{total}", clock(done)));
        });
        let transcript = service
            .transcribe(&job.path, media.options.clone(), report)
            .await
            .map_err(|e| e.to_string())?;
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
        let bad = (transcript.bad_packets > 0).then(|| {
            format!(
                "{} undecodable packets skipped (truncated or corrupt file?)",
                transcript.bad_packets
            )
        });
        Ok((
            MediaRecord {
                duration_ms: transcript.duration_ms,
                info: media_info.to_string(),
                segments: transcript.segments,
                transcript_key: key,
            },
            bad,
        ))
    }

    /// Transcribes a recording (or reuses its transcript) and groups the segments into timed
    /// transcript chunks (embedded afterwards like any text), plus audio windows for
    /// similar-audio search.
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
        let name = crate::uri::display_name(&job.uri);
        let (record, bad_packets) = match self.transcript_of(&job, media, &name).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return failed(e),
            Err(fatal) => return Outcome::Fatal(Box::new(fatal)),
        };
        let sid = source_id(&job.uri);
        let groups =
            transcript_chunks::group(&record.segments, &media.grouping, &|t| counter.count(t));
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
        if record.segments.is_empty() {
            notes.push(format!(
                "no speech found in {} of audio",
                clock(record.duration_ms)
            ));
        }
        notes.extend(bad_packets);
        // Audio windows for similar-audio search, in their own space.
        let mut extras = Vec::new();
        let mut version = media.version.clone();
        if let Some(checkpoint) = &media.panns {
            let result = async {
                let service = self
                    .workers
                    .audio_embedder(checkpoint)
                    .await
                    .map_err(|e| e.to_string())?;
                let space = match media
                    .audio_space
                    .get_or_try_init(|| self.register_audio_space(service.as_ref(), checkpoint))
                    .await
                {
                    Ok(space) => space.clone(),
                    Err(fatal) => return Ok(Err(fatal)),
                };
                media.progress.message(format!("{name}: audio embeddings"));
                let windows = service
                    .embed_file(&job.path, media.windows)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(Ok((windows, space)))
            }
            .await;
            match result {
                Ok(Err(fatal)) => return Outcome::Fatal(Box::new(fatal)),
                Ok(Ok((windows, space))) => {
                    let mut extra = Vec::new();
                    let mut extra_vectors = Vec::new();
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
                    extras.push(write::ExtraSet {
                        space,
                        chunks: extra,
                        vectors: extra_vectors,
                    });
                }
                Err(e) => {
                    notes.push(format!("no audio embeddings for similar-audio search: {e}"));
                    version = media.version_without_windows.clone();
                }
            }
        }
        Outcome::Prepared(Box::new(Prepared {
            write: SourceWrite {
                source_id: sid,
                uri: job.uri.clone(),
                media_type: job.kind.media_type().to_string(),
                bytes: job.bytes,
                content_hash: job.content_hash.clone(),
                version,
                title: Some(name),
                chunks,
                space: media.text_space.clone(),
                vectors: Vec::new(),
                sentence_vectors: Vec::new(),
                extras,
                media: Some(record),
            },
            notice: (!notes.is_empty()).then(|| notes.join("; ")),
        }))
    }
}

/// Embeds a prepared file's chunks on the model thread, and with `sentences` each sentence
/// of each chunk, under the chunk's context line as the chunk itself is embedded. An embedding
/// failure fails this file alone.
async fn embed_outcome(outcome: Outcome, embedder: &dyn TextEmbedding, sentences: bool) -> Outcome {
    let Outcome::Prepared(mut p) = outcome else {
        return outcome;
    };
    let chunks = &p.write.chunks;
    let mut texts: Vec<String> = chunks.iter().map(|c| c.indexed_text()).collect();
    let mut owners = Vec::new();
    if sentences {
        for (i, c) in chunks.iter().enumerate() {
            for (s, e) in chunk::sentence_spans(&c.text) {
                texts.push(with_context(&c.context, &c.text[s..e]));
                owners.push(i);
            }
        }
    }
    let count = chunks.len();
    let mut vectors = match embedder.embed(texts, Purpose::Passage).await {
        Ok(v) => v,
        Err(e) => {
            return Outcome::Failed {
                uri: p.write.uri.clone(),
                media_type: p.write.media_type.clone(),
                bytes: p.write.bytes,
                error: format!("embedding failed: {e}"),
            }
        }
    };
    let sentence_vectors = vectors.split_off(count.min(vectors.len()));
    p.write.vectors = vectors;
    p.write.sentence_vectors = vec![Vec::new(); count];
    for (owner, v) in owners.into_iter().zip(sentence_vectors) {
        p.write.sentence_vectors[owner].push(v);
    }
    Outcome::Prepared(p)
}
