//! Audio decoding with FFmpeg (`ffmpeg-next`): any container and codec FFmpeg reads, resampled
//! by libswresample to mono f32 at the rate a model wants, and handed out in windows so a
//! three-hour recording never sits in memory as one buffer.

use std::path::Path;

use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::format::Sample;
use ffmpeg::ChannelLayout;
use ffmpeg_next as ffmpeg;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("cannot open as audio: {0}")]
    Open(String),
    #[error("no audio stream in the file")]
    NoAudio,
    #[error("audio codec not supported: {0}")]
    Codec(String),
    #[error("decoding failed: {0}")]
    Decode(String),
    #[error("no decodable audio (the file is empty, truncated or corrupt: {0})")]
    Empty(String),
    #[error("stopped")]
    Stopped,
}

/// What a probe learns about a recording (stored in the catalog).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AudioInfo {
    /// Container name as FFmpeg calls it (`wav`, `mp3`, `mov,mp4,m4a,3gp,3g2,mj2`, `ogg`, ...).
    pub container: String,
    pub codec: String,
    pub channels: u16,
    pub sample_rate: u32,
    /// From the container header when it says; decoding gives the exact figure.
    pub duration_ms: Option<u64>,
    /// Whether the file also has a video stream.
    pub has_video: bool,
}

/// Initialises FFmpeg once per process (its own log quietened: errors are reported by Mosaic).
pub(crate) fn ffmpeg_init() -> Result<(), String> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::init().map_err(|e| e.to_string())?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
        Ok(())
    })
    .clone()
}

fn init() -> Result<(), DecodeError> {
    ffmpeg_init().map_err(DecodeError::Open)
}

fn info_of(ictx: &ffmpeg::format::context::Input) -> Result<AudioInfo, DecodeError> {
    let stream = ictx
        .streams()
        .best(ffmpeg::media::Type::Audio)
        .ok_or(DecodeError::NoAudio)?;
    let params = stream.parameters();
    let codec = ffmpeg::codec::decoder::find(params.id())
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| format!("{:?}", params.id()).to_lowercase());
    let ctx = ffmpeg::codec::context::Context::from_parameters(params)
        .map_err(|e| DecodeError::Codec(e.to_string()))?;
    let decoder = ctx
        .decoder()
        .audio()
        .map_err(|e| DecodeError::Codec(e.to_string()))?;
    let duration = if ictx.duration() > 0 {
        Some((ictx.duration() as f64 / ffmpeg::ffi::AV_TIME_BASE as f64 * 1000.0) as u64)
    } else if stream.duration() > 0 {
        let tb = stream.time_base();
        Some((stream.duration() as f64 * f64::from(tb) * 1000.0) as u64)
    } else {
        None
    };
    Ok(AudioInfo {
        container: ictx.format().name().to_string(),
        codec,
        channels: decoder.channels(),
        sample_rate: decoder.rate(),
        duration_ms: duration,
        has_video: ictx.streams().best(ffmpeg::media::Type::Video).is_some(),
    })
}

/// Summary of a full decode.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub info: AudioInfo,
    /// Samples produced at the target rate.
    pub samples: u64,
    /// Packets FFmpeg could not decode (skipped; a truncated file usually has one at the end).
    pub bad_packets: usize,
}

/// Decodes `path` to mono f32 at `rate` Hz and calls `sink` with consecutive blocks of samples
/// (in order, no gaps, no overlap; blocks are whatever the decoder produced, typically a few
/// thousand samples). `sink` returns `false` to stop early. `on_open` sees what the container
/// header says (duration for progress, codec) before the first block.
pub fn decode(
    path: &Path,
    rate: u32,
    on_open: impl FnOnce(&AudioInfo),
    mut sink: impl FnMut(&[f32]) -> bool,
) -> Result<Decoded, DecodeError> {
    init()?;
    let mut ictx = ffmpeg::format::input(path).map_err(|e| DecodeError::Open(e.to_string()))?;
    let info = info_of(&ictx)?;
    on_open(&info);
    let stream = ictx
        .streams()
        .best(ffmpeg::media::Type::Audio)
        .ok_or(DecodeError::NoAudio)?;
    let index = stream.index();
    let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| DecodeError::Codec(e.to_string()))?;
    let mut decoder = ctx
        .decoder()
        .audio()
        .map_err(|e| DecodeError::Codec(e.to_string()))?;

    let target = Sample::F32(SampleType::Packed);
    let mut resampler: Option<(
        ffmpeg::software::resampling::Context,
        Sample,
        ChannelLayout,
        u32,
    )> = None;
    let mut produced = 0u64;
    let mut bad_packets = 0usize;
    let mut last_error = String::new();
    let mut stopped = false;
    let mut frame = ffmpeg::frame::Audio::empty();

    // Resamples one decoded frame (rebuilding the resampler when the input format changes,
    // as it may mid-stream) and hands the samples on.
    let mut push = |frame: &mut ffmpeg::frame::Audio,
                    resampler: &mut Option<(
        ffmpeg::software::resampling::Context,
        Sample,
        ChannelLayout,
        u32,
    )>,
                    produced: &mut u64|
     -> Result<bool, DecodeError> {
        let channels = frame.channels().max(1);
        let mut layout = frame.channel_layout();
        if layout.is_empty() || layout.channels() != channels as i32 {
            layout = ChannelLayout::default(channels as i32);
            frame.set_channel_layout(layout);
        }
        let key = (frame.format(), layout, frame.rate());
        let stale = resampler
            .as_ref()
            .is_none_or(|(_, f, l, r)| (*f, *l, *r) != key);
        if stale {
            let ctx = ffmpeg::software::resampling::Context::get(
                key.0,
                key.1,
                key.2,
                target,
                ChannelLayout::MONO,
                rate,
            )
            .map_err(|e| DecodeError::Decode(format!("resampler: {e}")))?;
            *resampler = Some((ctx, key.0, key.1, key.2));
        }
        let (ctx, ..) = resampler.as_mut().expect("resampler just built");
        let capacity = (frame.samples() as u64 * rate as u64 / key.2.max(1) as u64) as usize + 512;
        let mut out = ffmpeg::frame::Audio::new(target, capacity, ChannelLayout::MONO);
        ctx.run(frame, &mut out)
            .map_err(|e| DecodeError::Decode(format!("resampling: {e}")))?;
        let samples = &out.plane::<f32>(0)[..out.samples()];
        *produced += samples.len() as u64;
        Ok(samples.is_empty() || sink(samples))
    };

    for (stream, packet) in ictx.packets() {
        if stream.index() != index {
            continue;
        }
        if let Err(e) = decoder.send_packet(&packet) {
            bad_packets += 1;
            last_error = e.to_string();
            continue;
        }
        loop {
            match decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    if !push(&mut frame, &mut resampler, &mut produced)? {
                        stopped = true;
                        break;
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    break
                }
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => {
                    bad_packets += 1;
                    last_error = e.to_string();
                    break;
                }
            }
        }
        if stopped {
            return Err(DecodeError::Stopped);
        }
    }
    if decoder.send_eof().is_ok() {
        while decoder.receive_frame(&mut frame).is_ok() {
            if !push(&mut frame, &mut resampler, &mut produced)? {
                return Err(DecodeError::Stopped);
            }
        }
    }
    // Samples still inside the resampler's filter.
    if let Some((ctx, ..)) = resampler.as_mut() {
        loop {
            let mut out = ffmpeg::frame::Audio::new(target, 4096, ChannelLayout::MONO);
            if ctx.flush(&mut out).is_err() || out.samples() == 0 {
                break;
            }
            let samples = &out.plane::<f32>(0)[..out.samples()];
            produced += samples.len() as u64;
            if !sink(samples) {
                return Err(DecodeError::Stopped);
            }
        }
    }
    if produced == 0 {
        let reason = if last_error.is_empty() {
            "no audio frames".to_string()
        } else {
            last_error
        };
        return Err(DecodeError::Empty(reason));
    }
    if bad_packets > 0 {
        tracing::warn!(path = %path.display(), bad_packets, error = %last_error, "skipped undecodable packets");
    }
    Ok(Decoded {
        info,
        samples: produced,
        bad_packets,
    })
}

/// Decodes a whole (short) file into memory: mono f32 at `rate`.
pub fn decode_all(path: &Path, rate: u32) -> Result<(Vec<f32>, Decoded), DecodeError> {
    let mut all = Vec::new();
    let decoded = decode(
        path,
        rate,
        |_| {},
        |block| {
            all.extend_from_slice(block);
            true
        },
    )?;
    Ok((all, decoded))
}
