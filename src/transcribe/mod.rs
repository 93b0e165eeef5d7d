//! Speech to text with whisper.cpp (`whisper-rs`): timed segments, the model thread, and the
//! grouping of segments into timed transcript chunks.

pub mod chunks;
pub mod service;
pub mod whisper;

pub use service::TranscriberService;
pub use whisper::{Segment, TranscribeError, TranscribeOptions, Transcript, Whisper};
