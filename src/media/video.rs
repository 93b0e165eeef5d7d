//! Video frames with FFmpeg (`ffmpeg-next`): any container and codec FFmpeg reads, sampled
//! where the picture changes plus at a maximum interval, within a frame budget.
//!
//! The scene score is FFmpeg's (`select='gt(scene,0.4)'`): each decoded frame is scaled to a
//! small grey picture (about 128 px wide), its mean absolute difference from the previous one
//! (`mafd`, 0-255) is compared with the previous frame's, and the score is
//! `min(mafd, |mafd − previous mafd|) / 100`. A cut is a score over the threshold at least
//! `min_cut_gap_ms` after the last cut; the frame kept for it is the first one
//! `cut_delay_ms` after it (past any transition). The first frame is kept, and a frame whenever
//! `max_interval_ms` passes without one. Over the budget, interval frames are thinned first
//! (evenly), cut frames only when they alone exceed it.
//!
//! Sampling is two passes over the file: the first decodes every frame (or only key frames in
//! the fast mode) to small grey pictures and decides the times; the second decodes again and
//! keeps the chosen frames only, as RGB with the shorter side at most `frame_side` and the
//! stream's rotation applied, so a long video never holds more than the kept frames.

use std::path::Path;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{context::Context as Scaler, flag::Flags};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::embed::image::preprocess::Rgb;

#[derive(Debug, Error)]
pub enum VideoError {
    #[error("cannot open as video: {0}")]
    Open(String),
    #[error("no video stream in the file")]
    NoVideo,
    #[error("video codec not supported: {0}")]
    Codec(String),
    #[error("no decodable video frames (the file is empty, truncated or corrupt{0})")]
    Empty(String),
    #[error("frame conversion failed: {0}")]
    Convert(String),
}

/// How frames are sampled (`pipelines/video.toml`, `[frames]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerSettings {
    /// Scene score above which a frame starts a new scene (FFmpeg's scale, 0-1).
    pub scene_threshold: f64,
    /// Cuts closer than this to the previous cut are ignored (flashes, fast edits).
    pub min_cut_gap_ms: u64,
    /// The frame kept for a cut is the first one at least this long after it.
    pub cut_delay_ms: u64,
    /// A frame is kept whenever this long passes without one.
    pub max_interval_ms: u64,
    /// At most this many frames per video.
    pub max_frames: usize,
    /// Width of the grey pictures the scene score compares.
    pub score_width: u32,
    /// Kept frames are scaled so their shorter side is at most this.
    pub frame_side: u32,
    /// Decode key frames only (much faster on long files; cuts are found at key frames).
    pub keyframes_only: bool,
    /// Videos longer than this are sampled from key frames only (0: never).
    pub keyframes_only_over_ms: u64,
}

impl Default for SamplerSettings {
    fn default() -> Self {
        Self {
            scene_threshold: 0.4,
            min_cut_gap_ms: 500,
            cut_delay_ms: 200,
            max_interval_ms: 10_000,
            max_frames: 300,
            score_width: 128,
            frame_side: 448,
            keyframes_only: false,
            keyframes_only_over_ms: 2 * 3600 * 1000,
        }
    }
}

/// Why a frame was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameReason {
    /// The first frame.
    Start,
    /// The picture changed (a scene cut).
    Cut,
    /// `max_interval_ms` passed without a kept frame.
    Interval,
}

/// A frame chosen by the first pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlannedFrame {
    pub at_ms: u64,
    pub reason: FrameReason,
    /// The scene score that made the cut (0 for the others).
    pub score: f64,
}

/// A kept frame.
#[derive(Debug, Clone)]
pub struct SampledFrame {
    pub at_ms: u64,
    pub reason: FrameReason,
    pub score: f64,
    pub rgb: Rgb,
}

/// What the sampler learnt about a video (stored with the source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    pub container: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation the stream's display matrix asks for (0, 90, 180, 270).
    pub rotation: u32,
    /// Time of the last decoded frame.
    pub duration_ms: u64,
    pub has_audio: bool,
    pub frames_decoded: u64,
    /// Packets FFmpeg could not decode (skipped: a truncated file has some at the end).
    pub bad_packets: usize,
    pub keyframes_only: bool,
}

/// The decoded frames of a file's video stream, one at a time, with their times; seekable.
struct Frames {
    ictx: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    index: usize,
    time_base: f64,
    start: i64,
    /// The last frame decoded and its time (times only go forward between seeks).
    frame: ffmpeg::frame::Video,
    last_ms: u64,
    /// Packets the decoder refused.
    bad: usize,
    eof_sent: bool,
}

/// A planned frame further ahead than this is reached by seeking, not by decoding to it.
const SEEK_AHEAD_MS: u64 = 3000;

fn init() -> Result<(), VideoError> {
    super::decode::ffmpeg_init().map_err(VideoError::Open)
}

/// The clockwise turn that puts a frame upright, from the stream's display matrix, as FFmpeg's
/// CLI computes it for autorotation (`get_rotation`: the negated `av_display_rotation_get`,
/// normalised to 0-360), rounded to a quarter turn.
fn rotation_of(matrix: &[u8]) -> u32 {
    if matrix.len() < 36 {
        return 0;
    }
    let m: Vec<f64> = matrix[..36]
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 / 65536.0)
        .collect();
    let (s0, s1) = (m[0].hypot(m[3]), m[1].hypot(m[4]));
    if s0 == 0.0 || s1 == 0.0 {
        return 0;
    }
    // av_display_rotation_get is −atan2(…); get_rotation negates it again.
    let theta = (m[1] / s1).atan2(m[0] / s0).to_degrees().round();
    (((theta / 90.0).round() as i64).rem_euclid(4) * 90) as u32
}

impl Frames {
    fn open(path: &Path, keyframes_only: bool) -> Result<(Self, VideoInfo), VideoError> {
        init()?;
        let ictx = ffmpeg::format::input(path).map_err(|e| VideoError::Open(e.to_string()))?;
        let stream = ictx
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or(VideoError::NoVideo)?;
        let index = stream.index();
        let time_base = f64::from(stream.time_base());
        let start = if stream.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE {
            0
        } else {
            stream.start_time()
        };
        let rotation = stream
            .side_data()
            .find(|d| d.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)
            .map(|d| rotation_of(d.data()))
            .unwrap_or(0);
        let codec = ffmpeg::codec::decoder::find(stream.parameters().id())
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| format!("{:?}", stream.parameters().id()).to_lowercase());
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| VideoError::Codec(e.to_string()))?;
        // Frame threads on every core, as the FFmpeg CLI decodes.
        let mut threads =
            ffmpeg::codec::threading::Config::kind(ffmpeg::codec::threading::Type::Frame);
        threads.count = 0;
        ctx.set_threading(threads);
        let mut decoder = ctx
            .decoder()
            .video()
            .map_err(|e| VideoError::Codec(e.to_string()))?;
        if keyframes_only {
            decoder.skip_frame(ffmpeg::Discard::NonKey);
        }
        let info = VideoInfo {
            container: ictx.format().name().to_string(),
            codec,
            width: decoder.width(),
            height: decoder.height(),
            rotation,
            duration_ms: 0,
            has_audio: ictx.streams().best(ffmpeg::media::Type::Audio).is_some(),
            frames_decoded: 0,
            bad_packets: 0,
            keyframes_only,
        };
        Ok((
            Self {
                ictx,
                decoder,
                index,
                time_base,
                start,
                frame: ffmpeg::frame::Video::empty(),
                last_ms: 0,
                bad: 0,
                eof_sent: false,
            },
            info,
        ))
    }

    /// The container's duration, when its header says.
    fn header_duration_ms(&self) -> Option<u64> {
        (self.ictx.duration() > 0)
            .then(|| (self.ictx.duration() as f64 / ffmpeg::ffi::AV_TIME_BASE as f64 * 1e3) as u64)
    }

    /// Decodes the next frame into `self.frame`; its time, or `None` at the end.
    fn next(&mut self) -> Option<u64> {
        loop {
            if self.decoder.receive_frame(&mut self.frame).is_ok() {
                let (start, time_base) = (self.start, self.time_base);
                let ms = self
                    .frame
                    .timestamp()
                    .or(self.frame.pts())
                    .map(|ts| (((ts - start) as f64 * time_base) * 1e3).max(0.0) as u64)
                    .unwrap_or(self.last_ms);
                // A broken stream may repeat or step back: times only go forward.
                self.last_ms = ms.max(self.last_ms);
                return Some(self.last_ms);
            }
            if self.eof_sent {
                return None;
            }
            match self.ictx.packets().next() {
                Some((stream, packet)) => {
                    if stream.index() == self.index && self.decoder.send_packet(&packet).is_err() {
                        self.bad += 1;
                    }
                }
                None => {
                    let _ = self.decoder.send_eof();
                    self.eof_sent = true;
                }
            }
        }
    }

    /// Seeks to the key frame at or before `ms`; false when the file cannot seek (then
    /// decoding goes on from where it is).
    fn seek(&mut self, ms: u64) -> bool {
        let ts = (ms as f64 / 1000.0 * ffmpeg::ffi::AV_TIME_BASE as f64) as i64;
        if self.ictx.seek(ts, ..ts + 1).is_err() {
            return false;
        }
        self.decoder.flush();
        self.eof_sent = false;
        self.last_ms = 0;
        true
    }
}

fn scaler(
    frame: &ffmpeg::frame::Video,
    format: Pixel,
    width: u32,
    height: u32,
) -> Result<Scaler, VideoError> {
    Scaler::get(
        frame.format(),
        frame.width(),
        frame.height(),
        format,
        width.max(1),
        height.max(1),
        Flags::AREA,
    )
    .map_err(|e| VideoError::Convert(e.to_string()))
}

/// A scaler kept while the decoder's output size and format stay the same.
struct CachedScaler {
    key: Option<(Pixel, u32, u32)>,
    scaler: Option<Scaler>,
}

impl CachedScaler {
    fn new() -> Self {
        Self {
            key: None,
            scaler: None,
        }
    }

    /// `frame` as `format`, `width` × `height`.
    fn run(
        &mut self,
        frame: &ffmpeg::frame::Video,
        format: Pixel,
        width: u32,
        height: u32,
    ) -> Result<ffmpeg::frame::Video, VideoError> {
        let key = (frame.format(), frame.width(), frame.height());
        if self.key != Some(key) {
            self.scaler = Some(scaler(frame, format, width, height)?);
            self.key = Some(key);
        }
        let mut out = ffmpeg::frame::Video::empty();
        self.scaler
            .as_mut()
            .expect("scaler set above")
            .run(frame, &mut out)
            .map_err(|e| VideoError::Convert(e.to_string()))?;
        Ok(out)
    }
}

/// The tightly packed bytes of plane 0 (`width × bytes_per_pixel` per row).
fn packed_plane(frame: &ffmpeg::frame::Video, row_bytes: usize) -> Vec<u8> {
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut out = Vec::with_capacity(row_bytes * frame.height() as usize);
    for y in 0..frame.height() as usize {
        out.extend_from_slice(&data[y * stride..y * stride + row_bytes]);
    }
    out
}

/// The scene scores' state: the previous grey picture and its difference.
struct SceneScore {
    previous: Option<Vec<u8>>,
    previous_mafd: f64,
}

impl SceneScore {
    /// FFmpeg's scene score of `grey` against the previous picture (0 for the first).
    fn next(&mut self, grey: Vec<u8>) -> f64 {
        let score = match &self.previous {
            Some(prev) if prev.len() == grey.len() && !grey.is_empty() => {
                let sad: u64 = prev
                    .iter()
                    .zip(&grey)
                    .map(|(a, b)| a.abs_diff(*b) as u64)
                    .sum();
                let mafd = sad as f64 / grey.len() as f64;
                let diff = (mafd - self.previous_mafd).abs();
                self.previous_mafd = mafd;
                (mafd.min(diff) / 100.0).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        self.previous = Some(grey);
        score
    }
}

/// Decides which frames to keep from `(time, score)` pairs in decoding order.
pub fn plan(scores: &[(u64, f64)], settings: &SamplerSettings) -> Vec<PlannedFrame> {
    let mut kept: Vec<PlannedFrame> = Vec::new();
    let mut last_cut: Option<u64> = None;
    // A cut found at this time, waiting for the frame `cut_delay_ms` after it.
    let mut pending: Option<(u64, f64)> = None;
    for &(at_ms, score) in scores {
        if kept.is_empty() {
            kept.push(PlannedFrame {
                at_ms,
                reason: FrameReason::Start,
                score: 0.0,
            });
            continue;
        }
        if score > settings.scene_threshold
            && last_cut.is_none_or(|c| at_ms >= c + settings.min_cut_gap_ms)
        {
            last_cut = Some(at_ms);
            pending = Some((at_ms, score));
        }
        if let Some((cut_at, cut_score)) = pending {
            if at_ms >= cut_at + settings.cut_delay_ms {
                kept.push(PlannedFrame {
                    at_ms,
                    reason: FrameReason::Cut,
                    score: cut_score,
                });
                pending = None;
                continue;
            }
        }
        let last = kept.last().map_or(0, |k| k.at_ms);
        if pending.is_none() && at_ms >= last + settings.max_interval_ms {
            kept.push(PlannedFrame {
                at_ms,
                reason: FrameReason::Interval,
                score: 0.0,
            });
        }
    }
    // A cut too close to the end for its delayed frame: the last frame stands for it.
    if let (Some((_, cut_score)), Some(&(at_ms, _))) = (pending, scores.last()) {
        if kept.last().is_none_or(|k| k.at_ms < at_ms) {
            kept.push(PlannedFrame {
                at_ms,
                reason: FrameReason::Cut,
                score: cut_score,
            });
        }
    }
    thin(kept, settings.max_frames)
}

/// Keeps at most `budget` frames: interval frames go first, evenly; then cut frames, evenly.
/// The start frame stays.
fn thin(frames: Vec<PlannedFrame>, budget: usize) -> Vec<PlannedFrame> {
    if frames.len() <= budget {
        return frames;
    }
    let budget = budget.max(1);
    let fixed = frames
        .iter()
        .filter(|f| f.reason != FrameReason::Interval)
        .count();
    let keep_evenly = |items: Vec<PlannedFrame>, n: usize| -> Vec<PlannedFrame> {
        if n >= items.len() {
            return items;
        }
        if n == 0 {
            return Vec::new();
        }
        (0..n)
            .map(|i| items[(i * items.len()) / n])
            .collect::<Vec<_>>()
    };
    let (mut fixed_frames, intervals): (Vec<_>, Vec<_>) = frames
        .into_iter()
        .partition(|f| f.reason != FrameReason::Interval);
    let mut out = if fixed <= budget {
        let mut out = keep_evenly(intervals, budget - fixed);
        out.append(&mut fixed_frames);
        out
    } else {
        let start: Vec<_> = fixed_frames
            .iter()
            .copied()
            .filter(|f| f.reason == FrameReason::Start)
            .collect();
        let cuts: Vec<_> = fixed_frames
            .into_iter()
            .filter(|f| f.reason == FrameReason::Cut)
            .collect();
        let mut out = keep_evenly(cuts, budget - start.len());
        out.extend(start);
        out
    };
    out.sort_by_key(|f| f.at_ms);
    out
}

/// The size a kept frame is scaled to: the shorter side at most `side`, never up.
fn frame_size(width: u32, height: u32, side: u32) -> (u32, u32) {
    let short = width.min(height);
    if short <= side || short == 0 {
        return (width.max(1), height.max(1));
    }
    let scale = side as f64 / short as f64;
    (
        ((width as f64 * scale).round() as u32).max(1),
        ((height as f64 * scale).round() as u32).max(1),
    )
}

/// Rotates a picture clockwise by `degrees` (0, 90, 180 or 270).
pub fn rotate(rgb: Rgb, degrees: u32) -> Rgb {
    let (w, h) = (rgb.width as usize, rgb.height as usize);
    let px = |x: usize, y: usize| &rgb.data[(y * w + x) * 3..(y * w + x) * 3 + 3];
    match degrees % 360 {
        90 => {
            let mut data = Vec::with_capacity(rgb.data.len());
            for y in 0..w {
                for x in 0..h {
                    data.extend_from_slice(px(y, h - 1 - x));
                }
            }
            Rgb::new(h as u32, w as u32, data)
        }
        180 => {
            let mut data = Vec::with_capacity(rgb.data.len());
            for y in (0..h).rev() {
                for x in (0..w).rev() {
                    data.extend_from_slice(px(x, y));
                }
            }
            Rgb::new(w as u32, h as u32, data)
        }
        270 => {
            let mut data = Vec::with_capacity(rgb.data.len());
            for y in 0..w {
                for x in 0..h {
                    data.extend_from_slice(px(w - 1 - y, x));
                }
            }
            Rgb::new(h as u32, w as u32, data)
        }
        _ => rgb,
    }
}

/// The first pass: scene scores of every frame and the frames to keep.
pub fn scan(
    path: &Path,
    settings: &SamplerSettings,
) -> Result<(VideoInfo, Vec<PlannedFrame>), VideoError> {
    let (mut frames, mut info) = Frames::open(path, settings.keyframes_only)?;
    // Long files (by the container's header) are read from key frames only.
    if !info.keyframes_only
        && settings.keyframes_only_over_ms > 0
        && frames
            .header_duration_ms()
            .is_some_and(|d| d > settings.keyframes_only_over_ms)
    {
        frames.decoder.skip_frame(ffmpeg::Discard::NonKey);
        info.keyframes_only = true;
    }
    let mut grey = CachedScaler::new();
    let mut scene = SceneScore {
        previous: None,
        previous_mafd: 0.0,
    };
    let mut scores = Vec::new();
    let width = settings.score_width.max(8);
    while let Some(ms) = frames.next() {
        let frame = &frames.frame;
        let height =
            ((frame.height() as u64 * width as u64) / frame.width().max(1) as u64).max(1) as u32;
        let small = grey.run(frame, Pixel::GRAY8, width, height)?;
        let score = scene.next(packed_plane(&small, width as usize));
        scores.push((ms, score));
    }
    let bad = frames.bad;
    info.bad_packets = bad;
    info.frames_decoded = scores.len() as u64;
    info.duration_ms = scores.last().map_or(0, |s| s.0);
    if scores.is_empty() {
        let why = if bad > 0 {
            format!(": {bad} undecodable packets")
        } else {
            String::new()
        };
        return Err(VideoError::Empty(why));
    }
    Ok((info, plan(&scores, settings)))
}

/// The second pass: the planned frames as RGB, rotated upright, in order.
pub fn capture(
    path: &Path,
    info: &VideoInfo,
    planned: &[PlannedFrame],
    settings: &SamplerSettings,
) -> Result<Vec<SampledFrame>, VideoError> {
    let (mut frames, _) = Frames::open(path, info.keyframes_only)?;
    let mut rgb = CachedScaler::new();
    let mut out = Vec::with_capacity(planned.len());
    let mut at: Option<u64> = None;
    for want in planned {
        // Far ahead: seek to the key frame before it rather than decode every frame between.
        if at.is_none_or(|a| want.at_ms > a + SEEK_AHEAD_MS) && want.at_ms > 0 {
            frames.seek(want.at_ms);
        }
        let found = loop {
            let Some(ms) = frames.next() else {
                break None;
            };
            at = Some(ms);
            if ms >= want.at_ms {
                break Some(ms);
            }
        };
        let Some(ms) = found else {
            break;
        };
        // A frame that passed more than one planned time stands for the first of them only.
        if out.last().is_some_and(|f: &SampledFrame| f.at_ms >= ms) {
            continue;
        }
        let frame = &frames.frame;
        let (w, h) = frame_size(frame.width(), frame.height(), settings.frame_side);
        let scaled = rgb.run(frame, Pixel::RGB24, w, h)?;
        let picture = Rgb::new(w, h, packed_plane(&scaled, w as usize * 3));
        out.push(SampledFrame {
            at_ms: ms,
            reason: want.reason,
            score: want.score,
            rgb: rotate(picture, info.rotation),
        });
    }
    Ok(out)
}

/// Both passes: the kept frames of `path` and what was learnt about it.
pub fn sample(
    path: &Path,
    settings: &SamplerSettings,
) -> Result<(VideoInfo, Vec<SampledFrame>), VideoError> {
    let (info, planned) = scan(path, settings)?;
    let frames = capture(path, &info, &planned, settings)?;
    Ok((info, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SamplerSettings {
        SamplerSettings::default()
    }

    #[test]
    fn cuts_intervals_and_the_start_are_planned() {
        // 25 fps for 30 s; cuts (score 0.9) at 4 s and at 4.2 s (too close: ignored), 15 s.
        let scores: Vec<(u64, f64)> = (0..750)
            .map(|i| {
                let ms = i * 40;
                let score = if ms == 4000 || ms == 4200 || ms == 15000 {
                    0.9
                } else {
                    0.01
                };
                (ms, score)
            })
            .collect();
        let plan = plan(&scores, &settings());
        let got: Vec<(u64, FrameReason)> = plan.iter().map(|p| (p.at_ms, p.reason)).collect();
        assert_eq!(
            got,
            vec![
                (0, FrameReason::Start),
                (4200, FrameReason::Cut),
                (14200, FrameReason::Interval),
                (15200, FrameReason::Cut),
                (25200, FrameReason::Interval),
            ]
        );
    }

    #[test]
    fn the_budget_thins_interval_frames_first() {
        let mut frames = vec![PlannedFrame {
            at_ms: 0,
            reason: FrameReason::Start,
            score: 0.0,
        }];
        for i in 1..=20 {
            frames.push(PlannedFrame {
                at_ms: i * 1000,
                reason: if i % 5 == 0 {
                    FrameReason::Cut
                } else {
                    FrameReason::Interval
                },
                score: 0.0,
            });
        }
        let kept = thin(frames.clone(), 8);
        assert_eq!(kept.len(), 8);
        let cuts: Vec<u64> = kept
            .iter()
            .filter(|f| f.reason == FrameReason::Cut)
            .map(|f| f.at_ms)
            .collect();
        assert_eq!(cuts, vec![5000, 10000, 15000, 20000], "every cut kept");
        assert_eq!(kept[0].reason, FrameReason::Start);
        assert!(kept.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        // Fewer slots than cuts: cuts thinned evenly, the start kept.
        let kept = thin(frames, 3);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0].reason, FrameReason::Start);
        assert!(kept[1..].iter().all(|f| f.reason == FrameReason::Cut));
    }

    #[test]
    fn scene_score_is_ffmpegs_formula() {
        let mut s = SceneScore {
            previous: None,
            previous_mafd: 0.0,
        };
        assert_eq!(s.next(vec![10; 100]), 0.0);
        // mafd 50, previous mafd 0: min(50, 50) / 100.
        assert!((s.next(vec![60; 100]) - 0.5).abs() < 1e-12);
        // The same change again: mafd 50, diff 0.
        assert_eq!(s.next(vec![110; 100]), 0.0);
    }

    #[test]
    fn rotation_turns_the_picture_clockwise() {
        // 2×1: red, green.
        let rgb = Rgb::new(2, 1, vec![255, 0, 0, 0, 255, 0]);
        let r90 = rotate(rgb.clone(), 90);
        assert_eq!((r90.width, r90.height), (1, 2));
        assert_eq!(r90.data, vec![255, 0, 0, 0, 255, 0], "red on top");
        let r270 = rotate(rgb.clone(), 270);
        assert_eq!(r270.data, vec![0, 255, 0, 255, 0, 0], "green on top");
        let r180 = rotate(rgb, 180);
        assert_eq!(r180.data, vec![0, 255, 0, 255, 0, 0]);
        // A display matrix of a quarter turn reads as one; an identity one as none.
        let quarter: [i32; 9] = [0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30];
        let bytes: Vec<u8> = quarter.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(rotation_of(&bytes), 90);
        let identity: [i32; 9] = [65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30];
        let bytes: Vec<u8> = identity.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(rotation_of(&bytes), 0);
    }
}
