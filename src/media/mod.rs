//! Media decoding with FFmpeg (`ffmpeg-next`) and the signal processing models share (mel
//! filter banks).

pub mod decode;
pub mod image;
pub mod mel;
pub mod video;

/// Loudest 20 ms frame of mono `samples` at `rate` Hz, in dBFS (silence is about -200).
pub fn peak_dbfs(samples: &[f32], rate: u32) -> f32 {
    let frame = (rate / 50).max(1) as usize;
    let peak = samples
        .chunks(frame)
        .map(|c| (c.iter().map(|&x| x * x).sum::<f32>() / c.len() as f32).sqrt())
        .fold(0.0f32, f32::max);
    20.0 * peak.max(1e-10).log10()
}
