//! Videos: frames sampled where the picture changes (see [`crate::media::video`]) embedded by
//! the picture model into its space, each a `Frame{at_ms}` chunk that carries the words of the
//! transcript chunk covering its time, so a hit or a citation shows what was on screen and what
//! was said; the sound track is transcribed as any recording's. A video with no sound track is
//! frames only; a truncated one keeps what decodes, with a notice.

use std::path::Path;

use super::image::{thumbnail_path, PictureLimits};
use super::write::ExtraSet;
use super::{MediaContext, MediaJob, Outcome, Prepared};
use crate::catalog::{chunk_id, source_id, Anchor, ChunkRecord, MediaRecord, Modality};
use crate::engine::Engine;
use crate::media::video::{self, SampledFrame, SamplerSettings, VideoError, VideoInfo};

/// Where the thumbnail of the frame at `at_ms` of source `source_id` is kept.
pub fn frame_thumbnail_path(data_dir: &Path, source_id: &str, at_ms: u64) -> std::path::PathBuf {
    data_dir
        .join("thumbnails")
        .join(format!("{source_id}-{at_ms}.jpg"))
}

/// What the video stage needs besides the recording's context.
pub(super) struct VideoContext {
    pub settings: SamplerSettings,
    pub pictures: PictureLimits,
    /// Version of a video's chunks, given the sound track's version.
    pub version: Box<dyn Fn(&str) -> String + Send + Sync>,
}

/// Frames per request to the picture model (bounds the pixels held at once).
const FRAME_BATCH: usize = 32;

impl Engine {
    /// Samples, embeds and transcribes a video.
    pub(super) async fn video_outcome(
        &self,
        job: MediaJob,
        media: &MediaContext,
        counter: &crate::embed::TokenCounter,
        video: &VideoContext,
        picture_space: &tokio::sync::OnceCell<String>,
    ) -> Outcome {
        let failed = |error: String| Outcome::Failed {
            uri: job.uri.clone(),
            media_type: "video".into(),
            bytes: job.bytes,
            error,
        };
        let name = crate::uri::display_name(&job.uri);
        media.progress.message(format!("{name}: sampling frames"));
        let (path, settings) = (job.path.clone(), video.settings.clone());
        let sampled = tokio::task::spawn_blocking(move || video::sample(&path, &settings)).await;
        let (info, frames) = match sampled {
            Ok(Ok(found)) => found,
            // A container with sound only (an .mp4 of a talk, say): a recording.
            Ok(Err(VideoError::NoVideo)) => {
                return self.transcribe_outcome(job, media, counter).await;
            }
            Ok(Err(e)) => return failed(e.to_string()),
            Err(e) => return failed(format!("frame sampling crashed: {e}")),
        };
        tracing::debug!(uri = %job.uri, frames = frames.len(), ?info, "frames sampled");

        // The sound track, as any recording's.
        let mut notes = Vec::new();
        let mut prepared = if info.has_audio {
            match self.transcribe_outcome(job.clone(), media, counter).await {
                Outcome::Prepared(p) => *p,
                Outcome::Failed { error, .. } => {
                    notes.push(format!("sound track not transcribed: {error}"));
                    silent(&job, media, &info)
                }
                other => return other,
            }
        } else {
            notes.push("no sound track: frames only".into());
            silent(&job, media, &info)
        };
        if let Some(notice) = prepared.notice.take() {
            notes.insert(0, notice);
        }
        if info.bad_packets > 0 {
            notes.push(format!(
                "{} undecodable video packets skipped (truncated or corrupt file?); frames up to {} kept",
                info.bad_packets,
                crate::catalog::clock(info.duration_ms)
            ));
        }

        // The frames, into the picture model's space.
        let (service, space) = match self
            .picture_model(&video.pictures.model, picture_space)
            .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => return failed(error),
            Err(fatal) => return Outcome::Fatal(Box::new(fatal)),
        };
        media
            .progress
            .message(format!("{name}: embedding {} frames", frames.len()));
        let mut vectors = Vec::with_capacity(frames.len());
        for batch in frames.chunks(FRAME_BATCH) {
            let pictures = batch.iter().map(|f| f.rgb.clone()).collect::<Vec<_>>();
            match service.embed(pictures).await {
                Ok(v) if v.len() == batch.len() => vectors.extend(v),
                Ok(v) => {
                    return failed(format!(
                        "image model returned {} vectors for {} frames",
                        v.len(),
                        batch.len()
                    ))
                }
                Err(e) => return failed(format!("embedding frames failed: {e}")),
            }
        }
        let write = &mut prepared.write;
        let sid = source_id(&job.uri);
        write.version = (video.version)(&write.version);
        write.media_type = "video".into();
        let first_ordinal = write.chunk_count() as u32;
        let chunks: Vec<ChunkRecord> = frames
            .iter()
            .enumerate()
            .map(|(i, frame)| {
                let anchor = Anchor::Frame { at_ms: frame.at_ms };
                ChunkRecord {
                    id: chunk_id(
                        &sid,
                        &job.content_hash,
                        &write.version,
                        Modality::Frame,
                        &anchor,
                    ),
                    source_id: sid.clone(),
                    ordinal: first_ordinal + i as u32,
                    modality: Modality::Frame,
                    text: spoken_at(&write.chunks, frame.at_ms),
                    context: name.clone(),
                    token_count: 0,
                    anchor,
                }
            })
            .collect();
        // Chunk ids carry the version: re-key the transcript chunks and windows with it too.
        for chunk in write
            .chunks
            .iter_mut()
            .chain(write.extras.iter_mut().flat_map(|e| e.chunks.iter_mut()))
        {
            chunk.id = chunk_id(
                &sid,
                &job.content_hash,
                &write.version,
                chunk.modality,
                &chunk.anchor,
            );
        }
        write.extras.push(ExtraSet {
            space,
            chunks,
            vectors,
        });
        if let Some(record) = write.media.as_mut() {
            record.info = with_video_info(&record.info, &info, &frames);
        }
        if video.pictures.thumbnail_px > 0 {
            if let Err(e) = write_thumbnails(&video.pictures, &sid, &frames).await {
                tracing::warn!(uri = %job.uri, "frame thumbnails not written: {e}");
            }
        }
        prepared.notice = (!notes.is_empty()).then(|| notes.join("; "));
        Outcome::Prepared(Box::new(prepared))
    }
}

/// A video with no transcript: no text chunks, its probe data only.
fn silent(job: &MediaJob, media: &MediaContext, info: &VideoInfo) -> Prepared {
    Prepared {
        write: super::write::SourceWrite {
            source_id: source_id(&job.uri),
            uri: job.uri.clone(),
            media_type: "video".into(),
            bytes: job.bytes,
            content_hash: job.content_hash.clone(),
            version: media.version_without_windows.clone(),
            title: Some(crate::uri::display_name(&job.uri)),
            space: media.text_space.clone(),
            media: Some(MediaRecord {
                duration_ms: info.duration_ms,
                info: serde_json::json!({}).to_string(),
                segments: Vec::new(),
                transcript_key: String::new(),
            }),
            ..Default::default()
        },
        notice: None,
    }
}

/// The words of the transcript chunk that covers `at_ms` (the nearest one before it when none
/// does); empty without a transcript.
fn spoken_at(transcript: &[ChunkRecord], at_ms: u64) -> String {
    let span = |c: &ChunkRecord| match c.anchor {
        Anchor::Time { start_ms, end_ms } => Some((start_ms, end_ms)),
        _ => None,
    };
    transcript
        .iter()
        .filter_map(|c| span(c).map(|s| (s, c)))
        .filter(|((start, _), _)| *start <= at_ms)
        .min_by_key(|((start, end), _)| {
            // Covering chunks first (the latest-starting of them), then the closest before.
            let covers = at_ms < *end;
            (
                !covers,
                if covers {
                    u64::MAX - start
                } else {
                    at_ms - end
                },
            )
        })
        .map(|(_, c)| c.text.clone())
        .unwrap_or_default()
}

/// The recording's probe data with the video stream's and the sampler's.
fn with_video_info(audio: &str, info: &VideoInfo, frames: &[SampledFrame]) -> String {
    let mut value: serde_json::Value =
        serde_json::from_str(audio).unwrap_or_else(|_| serde_json::json!({}));
    if !value.is_object() {
        value = serde_json::json!({});
    }
    value["video"] = serde_json::to_value(info).unwrap_or_default();
    value["frames"] = serde_json::json!({
        "kept": frames.len(),
        "cuts": frames.iter().filter(|f| f.reason == video::FrameReason::Cut).count(),
        "times": frames.iter().map(|f| f.at_ms).collect::<Vec<_>>(),
    });
    value.to_string()
}

/// JPEG thumbnails of every kept frame (and the first as the video's own).
async fn write_thumbnails(
    limits: &PictureLimits,
    sid: &str,
    frames: &[SampledFrame],
) -> std::io::Result<()> {
    let jobs: Vec<(std::path::PathBuf, crate::embed::image::preprocess::Rgb)> = frames
        .iter()
        .map(|f| {
            (
                frame_thumbnail_path(&limits.data_dir, sid, f.at_ms),
                f.rgb.clone(),
            )
        })
        .chain(
            frames
                .first()
                .map(|f| (thumbnail_path(&limits.data_dir, sid), f.rgb.clone())),
        )
        .collect();
    let side = limits.thumbnail_px;
    let (data_dir, sid) = (limits.data_dir.clone(), sid.to_string());
    let times: Vec<u64> = frames.iter().map(|f| f.at_ms).collect();
    tokio::task::spawn_blocking(move || {
        for (path, rgb) in jobs {
            let jpeg = crate::media::image::thumbnail_jpeg(&rgb, side)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            super::image::write_atomically(&path, &jpeg)?;
        }
        // Frames an earlier version of the file had at other times.
        super::image::remove_thumbnails(&data_dir, &[], Some((&sid, &times)));
        Ok(())
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}
