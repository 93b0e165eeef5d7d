//! Similar media: `mosaic similar --audio CLIP`. The clip is cut into the same windows as
//! ingested recordings and embedded with CNN14; each window's nearest stored windows vote for
//! an alignment (where in a recording the clip would start). Votes are grouped by source, so a
//! recording is listed once, with the best matching time first.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::QueryError;
use crate::catalog::{Anchor, SourceRef, StoredChunk};
use crate::engine::Engine;
use crate::store::{SearchFilter, SpaceSpec};

/// One matching time in a source.
#[derive(Debug, Clone, Serialize)]
pub struct SimilarMatch {
    pub anchor: Anchor,
    pub score: f64,
}

/// A source that sounds like the clip (`--json` shape from DESIGN.md).
#[derive(Debug, Clone, Serialize)]
pub struct SimilarHit {
    pub rank: usize,
    pub score: f64,
    pub source: SourceRef,
    pub matches: Vec<SimilarMatch>,
}

/// Windows searched per query window.
const NEIGHBOURS: usize = 100;
/// Matching times listed per source.
const MATCHES_PER_SOURCE: usize = 3;

/// Votes of query windows for (source, alignment): the score of an alignment is the mean,
/// over all query windows, of the similarity of the stored window it lines up with (0 when
/// that window was not among the neighbours).
pub fn rank_alignments(
    votes: &[(String, i64, f32)],
    query_windows: usize,
    hop_ms: u64,
) -> Vec<(String, Vec<(i64, f64)>)> {
    let hop = hop_ms.max(1) as i64;
    // (source, alignment bucket) -> (sum of best score per query window, sum of offsets).
    let mut buckets: HashMap<(String, i64), (f64, i64, usize)> = HashMap::new();
    for (source, offset, score) in votes {
        let key = (source.clone(), (offset + hop / 2).div_euclid(hop));
        let entry = buckets.entry(key).or_insert((0.0, 0, 0));
        entry.0 += *score as f64;
        entry.1 += offset;
        entry.2 += 1;
    }
    let mut by_source: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
    for ((source, _), (sum, offsets, n)) in buckets {
        let score = sum / query_windows.max(1) as f64;
        by_source
            .entry(source)
            .or_default()
            .push((offsets / n as i64, score));
    }
    let mut ranked: Vec<(String, Vec<(i64, f64)>)> = by_source
        .into_iter()
        .map(|(source, mut alignments)| {
            alignments.sort_by(|a, b| b.1.total_cmp(&a.1));
            (source, alignments)
        })
        .collect();
    ranked.sort_by(|a, b| b.1[0].1.total_cmp(&a.1[0].1));
    ranked
}

/// Image neighbours searched per query picture.
const IMAGE_NEIGHBOURS: usize = 200;

impl Engine {
    /// The catalog's chunks of vector hits, by chunk id.
    async fn hit_chunks(
        &self,
        hits: &[crate::store::VectorHit],
    ) -> Result<HashMap<String, StoredChunk>, QueryError> {
        let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
        Ok(self
            .catalog
            .chunks_by_ids(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect())
    }

    /// Pictures (and, with video, frames) that look like the picture at `path`, best first:
    /// one hit per source, its best matching pictures or frames as matches.
    pub async fn similar_image(
        &self,
        path: &Path,
        limit: usize,
    ) -> Result<Vec<SimilarHit>, QueryError> {
        let fail = |e: String| QueryError::SimilarImage(format!("{}: {e}", path.display()));
        let section = &self.pipelines.image;
        let max_pixels = section.decode.max_pixels;
        let owned = path.to_path_buf();
        let picture = tokio::task::spawn_blocking(move || {
            crate::media::image::decode_file(&owned, max_pixels)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
        let service = self
            .workers
            .image_embedder(&section.embedder.model)
            .await
            .map_err(|e| QueryError::SimilarImage(e.to_string()))?;
        let space = SpaceSpec::image(service.model_id(), service.dims());
        let vector = service
            .embed(vec![picture.rgb])
            .await?
            .pop()
            .ok_or_else(|| fail("the image model returned no vector".into()))?;
        let hits = self
            .vectors
            .search(
                &space.name,
                vector,
                IMAGE_NEIGHBOURS,
                SearchFilter::default(),
            )
            .await?;
        let chunks = self.hit_chunks(&hits).await?;
        // Hits arrive best first: a source's first hit is its best.
        let mut order: Vec<String> = Vec::new();
        let mut by_source: HashMap<String, (SourceRef, Vec<SimilarMatch>)> = HashMap::new();
        for hit in hits {
            let Some(chunk) = chunks.get(&hit.id) else {
                continue;
            };
            let entry = by_source.entry(chunk.source.id.clone()).or_insert_with(|| {
                order.push(chunk.source.id.clone());
                (chunk.source.as_ref(), Vec::new())
            });
            if entry.1.len() < MATCHES_PER_SOURCE {
                entry.1.push(SimilarMatch {
                    anchor: chunk.anchor.clone(),
                    score: hit.score as f64,
                });
            }
        }
        Ok(order
            .into_iter()
            .take(limit)
            .enumerate()
            .filter_map(|(i, id)| {
                let (source, matches) = by_source.remove(&id)?;
                Some(SimilarHit {
                    rank: i + 1,
                    score: matches.first().map_or(0.0, |m| m.score),
                    source,
                    matches,
                })
            })
            .collect())
    }

    /// Recordings that sound like the clip at `clip`, best first, each with its best
    /// matching times.
    pub async fn similar_audio(
        &self,
        clip: &Path,
        limit: usize,
    ) -> Result<Vec<SimilarHit>, QueryError> {
        let similar = &self.pipelines.audio.similar;
        let checkpoint = self.models.locate_panns(&similar.model).ok_or_else(|| {
            QueryError::SimilarAudio(format!(
                "the CNN14 checkpoint {} is not installed: put it in {} or set [similar] model in pipelines/audio.toml to its path",
                similar.model,
                self.models.dir().join("panns").display()
            ))
        })?;
        let service = self
            .workers
            .audio_embedder(&checkpoint)
            .await
            .map_err(|e| QueryError::SimilarAudio(e.to_string()))?;
        let space = SpaceSpec::audio(service.dims());
        let options = similar.window_options(self.pipelines.audio.transcribe.silence_dbfs);
        let windows = service
            .embed_file(clip, options)
            .await
            .map_err(|e| QueryError::SimilarAudio(format!("{}: {e}", clip.display())))?;
        if windows.is_empty() {
            return Err(QueryError::SimilarAudio(format!(
                "{}: the clip is silent or shorter than a third of a second",
                clip.display()
            )));
        }
        let clip_ms = windows.last().map_or(0, |w| w.end_ms);
        let mut votes = Vec::new();
        let mut chunks = HashMap::new();
        for q in &windows {
            let hits = self
                .vectors
                .search(
                    &space.name,
                    q.vector.clone(),
                    NEIGHBOURS,
                    SearchFilter::default(),
                )
                .await?;
            chunks.extend(self.hit_chunks(&hits).await?);
            // Each query window votes once per (source, alignment): its best neighbour there.
            let mut seen = std::collections::HashSet::new();
            for hit in hits {
                let Some(chunk) = chunks.get(&hit.id) else {
                    continue;
                };
                let Anchor::Time { start_ms, .. } = chunk.anchor else {
                    continue;
                };
                let offset = start_ms as i64 - q.start_ms as i64;
                let hop = options.hop_ms.max(1) as i64;
                let key = (chunk.source.id.clone(), (offset + hop / 2).div_euclid(hop));
                if seen.insert(key) {
                    votes.push((chunk.source.id.clone(), offset, hit.score));
                }
            }
        }
        let sources: HashMap<String, SourceRef> = chunks
            .values()
            .map(|c| (c.source.id.clone(), c.source.as_ref()))
            .collect();
        let ranked = rank_alignments(&votes, windows.len(), options.hop_ms);
        Ok(ranked
            .into_iter()
            .take(limit)
            .enumerate()
            .filter_map(|(i, (source, alignments))| {
                let source = sources.get(&source)?.clone();
                let matches: Vec<SimilarMatch> = alignments
                    .iter()
                    .take(MATCHES_PER_SOURCE)
                    .map(|&(offset, score)| {
                        let start = offset.max(0) as u64;
                        SimilarMatch {
                            anchor: Anchor::Time {
                                start_ms: start,
                                end_ms: start + clip_ms,
                            },
                            score,
                        }
                    })
                    .collect();
                Some(SimilarHit {
                    rank: i + 1,
                    score: matches.first().map_or(0.0, |m| m.score),
                    source,
                    matches,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistent_alignments_beat_a_single_strong_vote() {
        // Three query windows, 5 s apart. Source a: all three line up at 60 s. Source b: one
        // window matches very well at 10 s, nothing else lines up.
        let votes = vec![
            ("a".to_string(), 60_000, 0.80),
            ("a".to_string(), 61_000, 0.82),
            ("a".to_string(), 59_500, 0.78),
            ("b".to_string(), 10_000, 0.95),
            ("b".to_string(), 30_000, 0.40),
        ];
        let ranked = rank_alignments(&votes, 3, 5_000);
        assert_eq!(ranked[0].0, "a");
        let (offset, score) = ranked[0].1[0];
        assert!((59_000..=61_000).contains(&offset), "{offset}");
        assert!((score - 0.8).abs() < 1e-6);
        assert_eq!(ranked[1].0, "b");
        assert!(ranked[1].1[0].1 < score);
    }
}
