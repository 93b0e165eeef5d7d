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
    /// For a similar video: the aligned range in the query video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<Anchor>,
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
/// Stored frames searched per query frame.
const FRAME_NEIGHBOURS: usize = 50;
/// Offset bins of similar-video voting.
const OFFSET_BIN_MS: i64 = 1000;

/// One query frame's vote: a stored frame of `source` at `ref_ms` matched the query frame
/// `query` (at `query_ms`) with `score`.
#[derive(Debug, Clone)]
pub struct FrameVote {
    pub source: String,
    pub query: usize,
    pub query_ms: u64,
    pub ref_ms: u64,
    pub score: f64,
}

/// Where a stored video lines up with the query video.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    /// The matched frames' summed similarity.
    pub similarity: f64,
    /// Query frames matched at this offset.
    pub frames: usize,
    /// Times of the matched frames in the query and in the stored video.
    pub query: (u64, u64),
    pub reference: (u64, u64),
}

/// The best alignment of one source: the offset (reference time − query time) whose 1 s bin,
/// merged with its neighbours, gathers the most matched similarity, counting each query frame
/// once (its best vote there); `None` below `min_frames` matched frames.
pub fn best_alignment(votes: &[&FrameVote], min_frames: usize) -> Option<Alignment> {
    let bin = |v: &FrameVote| (v.ref_ms as i64 - v.query_ms as i64).div_euclid(OFFSET_BIN_MS);
    let mut bins: Vec<i64> = votes.iter().map(|v| bin(v)).collect();
    bins.sort_unstable();
    bins.dedup();
    let mut best: Option<Alignment> = None;
    for &center in &bins {
        // Per query frame, its best vote within the merged bins.
        let mut per_query: HashMap<usize, &FrameVote> = HashMap::new();
        for v in votes.iter().filter(|v| (bin(v) - center).abs() <= 1) {
            let slot = per_query.entry(v.query).or_insert(v);
            if v.score > slot.score {
                *slot = v;
            }
        }
        if per_query.len() < min_frames.max(1) {
            continue;
        }
        let sum: f64 = per_query.values().map(|v| v.score).sum();
        let range = |f: &dyn Fn(&FrameVote) -> u64| {
            let values = per_query.values().map(|v| f(v));
            (values.clone().min().unwrap_or(0), values.max().unwrap_or(0))
        };
        let candidate = Alignment {
            similarity: sum,
            frames: per_query.len(),
            query: range(&|v| v.query_ms),
            reference: range(&|v| v.ref_ms),
        };
        if best
            .as_ref()
            .is_none_or(|b| candidate.similarity > b.similarity)
        {
            best = Some(candidate);
        }
    }
    best
}

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
                    query: None,
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

    /// Videos that hold footage like the video at `path`, best first: the query is sampled
    /// as ingestion samples, each of its frames votes for (video, time offset) through its
    /// nearest stored frames, and each video's strongest offset gives its score (matched
    /// similarity over the shorter side's frame count) and the aligned range in both videos.
    pub async fn similar_video(
        &self,
        path: &Path,
        limit: usize,
    ) -> Result<Vec<SimilarHit>, QueryError> {
        let fail = |e: String| QueryError::SimilarVideo(format!("{}: {e}", path.display()));
        let settings = self.pipelines.video.frames.clone();
        let similar = &self.pipelines.video.similar;
        let owned = path.to_path_buf();
        let (_, frames) =
            tokio::task::spawn_blocking(move || crate::media::video::sample(&owned, &settings))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(e.to_string()))?;
        let service = self
            .workers
            .image_embedder(&self.pipelines.image.embedder.model)
            .await
            .map_err(|e| QueryError::SimilarVideo(e.to_string()))?;
        let space = SpaceSpec::image(service.model_id(), service.dims());
        let mut votes = Vec::new();
        for (batch_start, batch) in frames.chunks(32).enumerate() {
            let vectors = service
                .embed(batch.iter().map(|f| f.rgb.clone()).collect())
                .await?;
            for (i, (frame, vector)) in batch.iter().zip(vectors).enumerate() {
                let hits = self
                    .vectors
                    .search(
                        &space.name,
                        vector,
                        FRAME_NEIGHBOURS,
                        SearchFilter {
                            modalities: vec!["frame".into()],
                            source_id: None,
                        },
                    )
                    .await?;
                let chunks = self.hit_chunks(&hits).await?;
                for hit in hits {
                    let Some(chunk) = chunks.get(&hit.id) else {
                        continue;
                    };
                    if (hit.score as f64) < similar.min_frame_similarity {
                        continue;
                    }
                    if let Anchor::Frame { at_ms } = chunk.anchor {
                        votes.push((
                            chunk.source.as_ref(),
                            FrameVote {
                                source: chunk.source.id.clone(),
                                query: batch_start * 32 + i,
                                query_ms: frame.at_ms,
                                ref_ms: at_ms,
                                score: hit.score as f64,
                            },
                        ));
                    }
                }
            }
        }
        let mut by_source: HashMap<String, (SourceRef, Vec<&FrameVote>)> = HashMap::new();
        for (source, vote) in &votes {
            by_source
                .entry(vote.source.clone())
                .or_insert_with(|| (source.clone(), Vec::new()))
                .1
                .push(vote);
        }
        let mut ranked = Vec::new();
        for (id, (source, votes)) in by_source {
            let Some(Alignment {
                similarity: sum,
                frames: matched,
                query,
                reference,
            }) = best_alignment(&votes, similar.min_matched_frames)
            else {
                continue;
            };
            let stored_frames = self
                .catalog
                .media_info(&id)
                .await?
                .and_then(|(_, info)| info["frames"]["kept"].as_u64())
                .unwrap_or(matched as u64) as usize;
            let shorter = frames.len().min(stored_frames).max(1);
            let score = sum / shorter as f64;
            ranked.push(SimilarHit {
                rank: 0,
                score,
                source,
                matches: vec![SimilarMatch {
                    anchor: Anchor::Time {
                        start_ms: reference.0,
                        end_ms: reference.1,
                    },
                    score,
                    query: Some(Anchor::Time {
                        start_ms: query.0,
                        end_ms: query.1,
                    }),
                }],
            });
            tracing::debug!(source = %id, matched, score, "similar video alignment");
        }
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        ranked.truncate(limit);
        for (i, hit) in ranked.iter_mut().enumerate() {
            hit.rank = i + 1;
        }
        Ok(ranked)
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
                            query: None,
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
    fn video_votes_align_by_offset_and_need_three_frames() {
        let vote = |query: usize, query_ms: u64, ref_ms: u64, score: f64| FrameVote {
            source: "v".into(),
            query,
            query_ms,
            ref_ms,
            score,
        };
        // Three query frames line up 6 s later (one of them 0.6 s off, within the merged
        // bins); one strong vote elsewhere; a query frame voting twice counts once.
        let votes = [
            vote(0, 0, 4200, 0.95),
            vote(1, 2200, 8200, 0.9),
            vote(1, 2200, 8300, 0.5),
            vote(2, 12200, 18800, 0.8),
            vote(3, 14200, 20200, 0.85),
        ];
        let refs: Vec<&FrameVote> = votes.iter().collect();
        let best = best_alignment(&refs, 3).unwrap();
        assert_eq!(best.frames, 3);
        assert!((best.similarity - (0.9 + 0.8 + 0.85)).abs() < 1e-9);
        assert_eq!(best.query, (2200, 14200));
        assert_eq!(best.reference, (8200, 20200));
        assert!(
            best_alignment(&refs[..3], 3).is_none(),
            "two frames are not a match"
        );
    }

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
