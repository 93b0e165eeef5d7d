//! Speech to text with whisper.cpp (`whisper-rs`), keeping Whisper's timing.
//!
//! A recording is decoded in a stream and transcribed window by window (a few minutes each).
//! Each window ends at the quietest moment near its nominal end, so no word is cut in two, and
//! every segment's time is offset by the window's start: no text is lost or repeated at seams
//! and times stay true across a three-hour file.

use std::path::Path;

use thiserror::Error;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

pub use crate::catalog::{Segment, Word};
use crate::media::decode::{self, AudioInfo, DecodeError};

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

#[derive(Debug, Error)]
pub enum TranscribeError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("cannot load the Whisper model {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("whisper.cpp failed: {0}")]
    Whisper(String),
    /// A transcription that failed on the worker thread (the reason as it was reported there).
    #[error("{0}")]
    Failed(String),
}

/// Options from `pipelines/audio.toml`.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    pub threads: usize,
    /// `None` or `"auto"`: detect; otherwise an ISO code such as `en`.
    pub language: Option<String>,
    pub beam_size: usize,
    /// Nominal window length; each window ends at the quietest point of its last seconds.
    pub window_secs: u32,
    /// Windows quieter than this (peak 20 ms RMS, dBFS) are silence and not transcribed.
    pub silence_dbfs: f32,
    pub token_timestamps: bool,
    /// Snap segment times to the sound and drop text written over silence
    /// ([`refine_with_energy`]).
    pub refine_times: bool,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            language: None,
            beam_size: 1,
            window_secs: 300,
            silence_dbfs: -50.0,
            token_timestamps: true,
            refine_times: true,
        }
    }
}

/// A transcribed recording.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transcript {
    pub info: AudioInfo,
    /// Exact length from decoding.
    pub duration_ms: u64,
    pub language: Option<String>,
    pub segments: Vec<Segment>,
    /// Packets FFmpeg could not decode and skipped.
    pub bad_packets: usize,
}

/// [`Whisper::time_encoder`]'s measurement, in seconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct EncoderTiming {
    /// The log-mel spectrogram of the span.
    pub mel_s: f64,
    /// One encoder run over the 30 s span (best of the timed runs).
    pub encode_s: f64,
}

/// A loaded Whisper model.
pub struct Whisper {
    ctx: WhisperContext,
    multilingual: bool,
}

impl Whisper {
    pub fn load(path: &Path) -> Result<Self, TranscribeError> {
        static HOOKS: std::sync::Once = std::sync::Once::new();
        HOOKS.call_once(whisper_rs::install_logging_hooks);
        let fail = |reason: String| TranscribeError::Load {
            path: path.display().to_string(),
            reason,
        };
        if !path.is_file() {
            return Err(fail("no such file".into()));
        }
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| fail(format!("{e} (not a whisper.cpp ggml file?)")))?;
        let multilingual = ctx.is_multilingual();
        Ok(Whisper { ctx, multilingual })
    }

    /// Transcribes an in-memory 16 kHz mono buffer whose first sample is at `offset_ms`.
    pub fn transcribe_samples(
        &self,
        samples: &[f32],
        offset_ms: u64,
        options: &TranscribeOptions,
    ) -> Result<(Vec<Segment>, Option<String>), TranscribeError> {
        let werr = |e: whisper_rs::WhisperError| TranscribeError::Whisper(e.to_string());
        let mut state = self.ctx.create_state().map_err(werr)?;
        let strategy = if options.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: options.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 5 }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(options.threads.max(1) as i32);
        let language = match options.language.as_deref() {
            _ if !self.multilingual => "en",
            None | Some("auto") | Some("") => "auto",
            Some(code) => code,
        };
        params.set_language(Some(language));
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_nst(true);
        params.set_token_timestamps(options.token_timestamps);
        // whisper.cpp wants at least one second; pad short tails with silence.
        let min = SAMPLE_RATE as usize + SAMPLE_RATE as usize / 10;
        let padded;
        let data = if samples.len() < min {
            padded = [samples, &vec![0.0; min - samples.len()]].concat();
            &padded[..]
        } else {
            samples
        };
        state.full(params, data).map_err(werr)?;
        let detected =
            whisper_rs::get_lang_str(state.full_lang_id_from_state()).map(str::to_string);
        let eot = self.ctx.token_eot();
        let end_ms = offset_ms + samples.len() as u64 * 1000 / SAMPLE_RATE as u64;
        let mut segments = Vec::new();
        for segment in state.as_iter() {
            let text = segment.to_str_lossy().map_err(werr)?.trim().to_string();
            if text.is_empty() || is_non_speech(&text) {
                continue;
            }
            let cs = |t: i64| offset_ms + (t.max(0) as u64) * 10;
            let mut words = Vec::new();
            if options.token_timestamps {
                for i in 0..segment.n_tokens() {
                    let Some(token) = segment.get_token(i) else {
                        continue;
                    };
                    if token.token_id() >= eot {
                        continue;
                    }
                    let data = token.token_data();
                    let piece = token.to_str_lossy().map_err(werr)?.to_string();
                    if piece.is_empty() {
                        continue;
                    }
                    words.push(Word {
                        text: piece,
                        start_ms: cs(data.t0).min(end_ms),
                        end_ms: cs(data.t1).min(end_ms),
                    });
                }
            }
            segments.push(Segment {
                start_ms: cs(segment.start_timestamp()).min(end_ms),
                end_ms: cs(segment.end_timestamp()).min(end_ms),
                text,
                words,
            });
        }
        if options.refine_times {
            refine_with_energy(&mut segments, samples, offset_ms, options.silence_dbfs);
        }
        Ok((segments, detected))
    }

    /// Times whisper.cpp's parts on one 30 s span of `samples` (16 kHz) with `threads`
    /// threads: the log-mel spectrogram, then the encoder, once to warm the state's buffers and
    /// then `runs` times, best run kept. Whisper encodes a whole 30 s span whatever it holds, so
    /// a recording costs about one encoder run per 30 s span it is decoded in.
    pub fn time_encoder(
        &self,
        samples: &[f32],
        threads: usize,
        runs: usize,
    ) -> Result<EncoderTiming, TranscribeError> {
        let werr = |e: whisper_rs::WhisperError| TranscribeError::Whisper(e.to_string());
        let span = &samples[..samples.len().min(30 * SAMPLE_RATE as usize)];
        let threads = threads.max(1);
        let mut state = self.ctx.create_state().map_err(werr)?;
        let t = std::time::Instant::now();
        state.pcm_to_mel(span, threads).map_err(werr)?;
        let mel_s = t.elapsed().as_secs_f64();
        state.encode(0, threads).map_err(werr)?;
        let mut encode_s = f64::INFINITY;
        for _ in 0..runs.max(1) {
            let t = std::time::Instant::now();
            state.encode(0, threads).map_err(werr)?;
            encode_s = encode_s.min(t.elapsed().as_secs_f64());
        }
        Ok(EncoderTiming { mel_s, encode_s })
    }

    /// Decodes and transcribes a file window by window. `progress` gets (decoded ms, total ms
    /// when the container says).
    pub fn transcribe_file(
        &self,
        path: &Path,
        options: &TranscribeOptions,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Transcript, TranscribeError> {
        // The container's duration, for progress, once the file is open.
        let total = std::cell::Cell::new(None);
        let window = options.window_secs.max(30) as usize * SAMPLE_RATE as usize;
        let mut pending: Vec<f32> = Vec::with_capacity(window + SAMPLE_RATE as usize * 10);
        let mut offset_samples: u64 = 0;
        let mut segments = Vec::new();
        let mut language = None;
        let mut failure: Option<TranscribeError> = None;

        let mut run_window = |chunk: &[f32],
                              offset: u64,
                              segments: &mut Vec<Segment>|
         -> Result<(), TranscribeError> {
            if peak_dbfs(chunk) < options.silence_dbfs {
                tracing::debug!(
                    offset_ms = offset * 1000 / SAMPLE_RATE as u64,
                    "silent window skipped"
                );
                return Ok(());
            }
            let (found, lang) =
                self.transcribe_samples(chunk, offset * 1000 / SAMPLE_RATE as u64, options)?;
            if language.is_none() {
                language = lang;
            }
            segments.extend(found);
            Ok(())
        };

        let decoded = decode::decode(
            path,
            SAMPLE_RATE,
            |info| total.set(info.duration_ms),
            |block| {
                pending.extend_from_slice(block);
                while pending.len() >= window {
                    let cut = quiet_cut(&pending[..window], SAMPLE_RATE as usize * 15);
                    if let Err(e) = run_window(&pending[..cut], offset_samples, &mut segments) {
                        failure = Some(e);
                        return false;
                    }
                    pending.drain(..cut);
                    offset_samples += cut as u64;
                    progress(offset_samples * 1000 / SAMPLE_RATE as u64, total.get());
                }
                true
            },
        );
        if let Some(e) = failure {
            return Err(e);
        }
        let decoded = decoded?;
        if !pending.is_empty() {
            run_window(&pending, offset_samples, &mut segments)?;
        }
        let duration_ms = decoded.samples * 1000 / SAMPLE_RATE as u64;
        progress(duration_ms, total.get());
        Ok(Transcript {
            info: decoded.info,
            duration_ms,
            language,
            segments,
            bad_packets: decoded.bad_packets,
        })
    }
}

/// Frames of [`refine_with_energy`], in ms.
const FRAME_MS: u64 = 20;

/// Snaps segment times to the audio. Whisper often starts a segment where the previous one
/// ended, seconds before the speech after a pause, and small models sometimes write text over
/// silence. Frames louder than the window's loudest minus 40 dB count as sound: a segment's
/// start moves to its first sound (extended back over sound that runs into it), its end to
/// its last, and a segment with no sound at all (text over silence) is dropped.
pub fn refine_with_energy(
    segments: &mut Vec<Segment>,
    samples: &[f32],
    offset_ms: u64,
    silence_dbfs: f32,
) {
    let frame = (SAMPLE_RATE as u64 * FRAME_MS / 1000) as usize;
    let db: Vec<f32> = samples
        .chunks(frame)
        .map(|c| {
            let rms = (c.iter().map(|&x| x * x).sum::<f32>() / c.len() as f32).sqrt();
            20.0 * rms.max(1e-10).log10()
        })
        .collect();
    let Some(peak) = db.iter().copied().reduce(f32::max) else {
        return;
    };
    let threshold = (peak - 40.0).max(silence_dbfs);
    let sound: Vec<bool> = db.iter().map(|&d| d > threshold).collect();
    let n = sound.len();
    let to_frame = |ms: u64| (ms.saturating_sub(offset_ms) / FRAME_MS) as usize;
    let to_ms = |f: usize| offset_ms + f as u64 * FRAME_MS;
    let margin = 5; // frames (100 ms) of air kept around the sound
    let mut kept: Vec<Segment> = Vec::with_capacity(segments.len());
    for i in 0..segments.len() {
        let seg = &segments[i];
        let (fs, fe) = (
            to_frame(seg.start_ms).min(n),
            to_frame(seg.end_ms + FRAME_MS - 1).min(n),
        );
        let Some(first) = (fs..fe).find(|&f| sound[f]) else {
            tracing::debug!(text = %seg.text, "segment over silence dropped");
            continue;
        };
        let last = (fs..fe).rev().find(|&f| sound[f]).unwrap_or(first);
        let floor = kept
            .last()
            .map_or(0, |p: &Segment| to_frame(p.end_ms))
            .max(fs.saturating_sub(100));
        let ceiling = segments
            .get(i + 1)
            .map_or(n, |next| to_frame(next.start_ms).max(fe))
            .min(fe + 100)
            .min(n);
        let mut a = first;
        while a > floor && sound[a - 1] {
            a -= 1;
        }
        let mut b = last + 1;
        while b < ceiling && sound[b] {
            b += 1;
        }
        let start = to_ms(a.saturating_sub(margin).max(floor));
        let end = to_ms((b + margin).min(ceiling.max(b)));
        let mut seg = seg.clone();
        seg.start_ms = start;
        seg.end_ms = end.max(start + FRAME_MS);
        for w in &mut seg.words {
            w.start_ms = w.start_ms.clamp(seg.start_ms, seg.end_ms);
            w.end_ms = w.end_ms.clamp(w.start_ms, seg.end_ms);
        }
        kept.push(seg);
    }
    *segments = kept;
}

/// `[BLANK_AUDIO]`, `(music)`, `[ Silence ]`: Whisper's notes on non-speech.
fn is_non_speech(text: &str) -> bool {
    let t = text.trim();
    (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('(') && t.ends_with(')'))
}

/// Loudest 20 ms frame of 16 kHz `samples`, in dBFS.
pub fn peak_dbfs(samples: &[f32]) -> f32 {
    crate::media::peak_dbfs(samples, SAMPLE_RATE)
}

/// Where to end a window of `samples`: the middle of the quietest 200 ms within its last
/// `search` samples.
pub fn quiet_cut(samples: &[f32], search: usize) -> usize {
    let len = samples.len();
    let frame = (SAMPLE_RATE / 5) as usize;
    let hop = frame / 4;
    let from = len.saturating_sub(search);
    if len < frame * 2 || from + frame > len {
        return len;
    }
    let mut best = (f32::INFINITY, len);
    let mut start = from;
    while start + frame <= len {
        let energy: f32 = samples[start..start + frame].iter().map(|&x| x * x).sum();
        // Ties go to the later point: longer windows, fewer seams.
        if energy <= best.0 {
            best = (energy, start + frame / 2);
        }
        start += hop;
    }
    best.1.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_in_the_quietest_place_near_the_end() {
        let sr = SAMPLE_RATE as usize;
        let mut s: Vec<f32> = (0..sr * 20)
            .map(|i| (i as f32 * 0.05).sin() * 0.5)
            .collect();
        // Silence between 14.0 and 14.5 s.
        for x in &mut s[sr * 14..sr * 14 + sr / 2] {
            *x = 0.0;
        }
        let cut = quiet_cut(&s, sr * 10);
        assert!(cut > sr * 14 && cut < sr * 14 + sr / 2, "cut at {cut}");
        // A quiet spot before the search range is not used.
        let cut = quiet_cut(&s, sr * 3);
        assert!(cut >= sr * 17, "cut at {cut}");
    }

    fn seg(start_ms: u64, end_ms: u64, text: &str) -> Segment {
        Segment {
            start_ms,
            end_ms,
            text: text.into(),
            words: vec![],
        }
    }

    #[test]
    fn segment_times_snap_to_sound_and_text_over_silence_goes() {
        let sr = SAMPLE_RATE as usize;
        // 20 s window at offset 100 s: sound at 2-4 s and 11-15 s, silence elsewhere.
        let mut s = vec![0.0f32; sr * 20];
        for range in [sr * 2..sr * 4, sr * 11..sr * 15] {
            for i in range {
                s[i] = (i as f32 * 0.07).sin() * 0.3;
            }
        }
        let mut segs = vec![
            seg(101_800, 104_500, "first"),
            // Starts where the last one ended, seven seconds before the voice.
            seg(104_500, 114_000, "second"),
            seg(116_000, 119_000, "invented over silence"),
        ];
        refine_with_energy(&mut segs, &s, 100_000, -50.0);
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert!((segs[0].start_ms as i64 - 102_000).abs() <= 120, "{segs:?}");
        assert!((segs[0].end_ms as i64 - 104_000).abs() <= 120, "{segs:?}");
        assert!((segs[1].start_ms as i64 - 111_000).abs() <= 120, "{segs:?}");
        // The voice runs past Whisper's end: the end follows it.
        assert!((segs[1].end_ms as i64 - 115_000).abs() <= 120, "{segs:?}");
    }

    #[test]
    fn silence_is_below_any_threshold_and_speech_level_is_not() {
        assert!(peak_dbfs(&vec![0.0; 16000]) < -150.0);
        let tone: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.1).sin() * 0.1).collect();
        let db = peak_dbfs(&tone);
        assert!((db - (-23.0)).abs() < 1.0, "{db}");
        assert!(is_non_speech("[BLANK_AUDIO]"));
        assert!(is_non_speech(" (wind blowing) "));
        assert!(!is_non_speech("The budget was approved."));
    }
}
