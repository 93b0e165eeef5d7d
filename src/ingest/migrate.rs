//! `mosaic migrate --to <config>`: copies an index into another backend (the embedded one into
//! PostgreSQL and Qdrant, typically) without re-embedding. Every complete source is read back
//! from the first engine (its catalog rows, its vectors with their payloads, its transcript)
//! and written to the second through the ordinary write path, so the target is consistent at
//! every step and a run that stops (killed, a server away) is resumed by running it again:
//! sources the target already holds complete with the same content, pipeline version and
//! chunks are skipped. BM25 in the target is made from the chunk texts by the target's own
//! lexical index. At the end the target is verified chunk id by chunk id: every chunk the
//! source holds is catalogued in the target with the same spaces, and the target's stores hold
//! exactly what its catalog lists.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::write::{self, ExtraSet, SourceWrite, Writer};
use crate::catalog::{status, Catalog, ChunkKey, ChunkRecord, NewSource, Source};
use crate::engine::{Engine, Progress};
use crate::store::{SpaceSpec, VectorPoint};

/// Sources written per commit.
const BATCH: usize = 16;

/// What a migration did and what its verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrateReport {
    /// Sources written to the target by this run.
    pub copied: usize,
    /// Sources the target already held as they are (an earlier run copied them).
    pub skipped: usize,
    /// Failed sources whose error was carried over (they have no chunks).
    pub failed_copied: usize,
    /// Chunks written by this run.
    pub chunks: usize,
    /// Chunks of the source found in the target with the same spaces, by id.
    pub verified_chunks: usize,
    /// Whether the target holds every chunk of the source, by id, and its stores agree with
    /// its catalog.
    pub verified: bool,
    /// What disagrees, when something does (at most 20 lines).
    pub problems: Vec<String>,
}

/// Whether the target holds this source exactly as the source does.
fn already_copied(from: &Source, to: Option<&Source>) -> bool {
    to.is_some_and(|t| {
        t.status == status::COMPLETE
            && t.content_hash == from.content_hash
            && t.pipeline_version == from.pipeline_version
            && t.chunk_count == from.chunk_count
            && t.error.is_none()
    })
}

/// The write that recreates `source` in the target: its chunks with the vectors read back.
async fn source_write(from: &Engine, source: &Source) -> Result<SourceWrite, write::WriteError> {
    let records = from.catalog.source_records(&source.id).await?;
    // BM25 chunks are the ones written with the source's main space; the rest are extras,
    // grouped by their space.
    let mut main: Vec<(ChunkRecord, Option<String>)> = Vec::new();
    let mut extras: BTreeMap<String, Vec<ChunkRecord>> = BTreeMap::new();
    for (chunk, spaces) in records {
        if chunk.modality.in_bm25() {
            main.push((chunk, spaces.into_iter().next()));
        } else if let Some(space) = spaces.into_iter().next() {
            extras.entry(space).or_default().push(chunk);
        }
    }
    let space = main.iter().find_map(|(_, s)| s.clone()).unwrap_or_default();
    let chunks: Vec<ChunkRecord> = main.into_iter().map(|(c, _)| c).collect();
    let points = read_points(from, &space, &chunks).await?;
    let mut write = SourceWrite {
        source_id: source.id.clone(),
        uri: source.uri.clone(),
        media_type: source.media_type.clone(),
        bytes: source.bytes,
        content_hash: source.content_hash.clone().unwrap_or_default(),
        version: source.pipeline_version.clone().unwrap_or_default(),
        title: source.title.clone(),
        vectors: points.iter().map(|p| p.vector.clone()).collect(),
        sentence_vectors: if points.iter().any(|p| !p.parts.is_empty()) {
            points.iter().map(|p| p.parts.clone()).collect()
        } else {
            Vec::new()
        },
        chunks,
        space,
        extras: Vec::new(),
        media: from.catalog.media_record(&source.id).await?,
    };
    for (space, chunks) in extras {
        let points = read_points(from, &space, &chunks).await?;
        write.extras.push(ExtraSet {
            vectors: points.into_iter().map(|p| p.vector).collect(),
            space,
            chunks,
        });
    }
    Ok(write)
}

/// The vectors of `chunks` in `space`, in their order; a missing one is an error (the source
/// index is inconsistent: `mosaic repair` it first).
async fn read_points(
    from: &Engine,
    space: &str,
    chunks: &[ChunkRecord],
) -> Result<Vec<VectorPoint>, write::WriteError> {
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = chunks.iter().map(|c| c.id.clone()).collect();
    let points = from.vectors.points(space, ids).await?;
    if points.len() != chunks.len() || points.iter().zip(chunks).any(|(p, c)| p.id != c.id) {
        let found: std::collections::HashSet<&str> = points.iter().map(|p| p.id.as_str()).collect();
        let missing = chunks
            .iter()
            .find(|c| !found.contains(c.id.as_str()))
            .map_or("?", |c| c.id.as_str());
        return Err(write::WriteError::Inconsistent(format!(
            "chunk {missing} has no vector in space {space}: run `mosaic repair` on the source index first"
        )));
    }
    Ok(points)
}

/// Copies every source of `from` into `to` and verifies the result; see the module docs.
pub async fn migrate(
    from: &Engine,
    to: &Engine,
    progress: &dyn Progress,
) -> Result<MigrateReport, write::WriteError> {
    // Spaces first, with the layout the source's vectors have.
    for space in from.catalog.spaces().await? {
        to.catalog
            .ensure_space(
                &space.name,
                &space.model_id,
                space.dims as usize,
                &space.modality,
            )
            .await?;
        let multivector = space.name.ends_with("/sentences");
        to.vectors
            .ensure_space(&SpaceSpec {
                name: space.name.clone(),
                dims: space.dims as usize,
                multivector,
            })
            .await?;
    }
    let sources = from.catalog.sources().await?;
    let targets: HashMap<String, Source> = to
        .catalog
        .sources()
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    progress.set_length(sources.len() as u64);
    let mut report = MigrateReport::default();
    let mut writer = Writer::new(
        to.catalog.as_ref(),
        to.vectors.as_ref(),
        to.lexical.as_ref(),
    );
    for source in &sources {
        if progress.cancelled() {
            break;
        }
        progress.message(source.uri.clone());
        match source.status.as_str() {
            status::COMPLETE if already_copied(source, targets.get(&source.id)) => {
                report.skipped += 1;
            }
            status::COMPLETE => {
                let write = source_write(from, source).await?;
                report.chunks += write.chunk_count();
                writer.stage(write).await?;
                report.copied += 1;
                if writer.pending() >= BATCH {
                    writer.commit().await?;
                }
            }
            status::FAILED => {
                let new = NewSource {
                    id: &source.id,
                    uri: &source.uri,
                    media_type: &source.media_type,
                    bytes: source.bytes,
                };
                let error = source.error.as_deref().unwrap_or("failed");
                to.catalog.fail_source(new, error).await?;
                report.failed_copied += 1;
            }
            // Sources being written or removed in the source index are not copied: finish
            // them there (`mosaic repair`) and run the migration again.
            _ => {}
        }
        progress.advance();
    }
    writer.commit().await?;
    to.lexical.close_writer().await?;
    to.vectors.optimize().await?;
    progress.finish();
    verify(from.catalog.as_ref(), to, &mut report).await?;
    Ok(report)
}

async fn verify(
    from: &dyn Catalog,
    to: &Engine,
    report: &mut MigrateReport,
) -> Result<(), write::WriteError> {
    let target: HashMap<String, ChunkKey> = to
        .catalog
        .chunk_keys()
        .await?
        .into_iter()
        .map(|k| (k.id.clone(), k))
        .collect();
    let mut problems = Vec::new();
    for key in from.chunk_keys().await? {
        match target.get(&key.id) {
            Some(t) if t == &key => report.verified_chunks += 1,
            Some(t) => problems.push(format!(
                "chunk {} is catalogued differently: {:?} in the source, {:?} in the target",
                key.id, key, t
            )),
            None => problems.push(format!(
                "chunk {} (source {}) is not in the target",
                key.id, key.source_id
            )),
        }
    }
    let check = write::check(
        to.catalog.as_ref(),
        to.vectors.as_ref(),
        to.lexical.as_ref(),
    )
    .await?;
    if !check.consistent {
        for (space, c) in &check.vectors {
            if !c.agrees() {
                problems.push(format!(
                    "the target's space {space} disagrees with its catalog: {} missing, {} orphans",
                    c.missing, c.orphans
                ));
            }
        }
        if !check.lexical.agrees() {
            problems.push(format!(
                "the target's BM25 disagrees with its catalog: {} missing, {} orphans",
                check.lexical.missing, check.lexical.orphans
            ));
        }
        if check.interrupted > 0 {
            problems.push(format!(
                "{} sources in the target are unfinished",
                check.interrupted
            ));
        }
    }
    report.verified = problems.is_empty();
    problems.truncate(20);
    report.problems = problems;
    Ok(())
}
