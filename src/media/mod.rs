//! Media decoding with FFmpeg (`ffmpeg-next`) and the signal processing models share (mel
//! filter banks).

pub mod decode;
pub mod mel;
