//! Speech to text behind the [`Transcriber`] trait: whisper.cpp (`whisper-rs`) with timed
//! segments on its model worker, and the grouping of segments into timed transcript chunks.

pub mod chunks;
pub mod service;
pub mod whisper;

use std::path::Path;

use futures::future::BoxFuture;

pub use service::{Progress, TranscriberService};
pub use whisper::{
    EncoderTiming, Segment, TranscribeError, TranscribeOptions, Transcript, Whisper,
};

/// A speech model: decodes a recording and writes its words with their times.
pub trait Transcriber: Send + Sync {
    /// Decodes and transcribes `path`; `progress` hears (decoded ms, total ms when known).
    fn transcribe<'a>(
        &'a self,
        path: &'a Path,
        options: TranscribeOptions,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transcript, TranscribeError>>;
}

impl Transcriber for TranscriberService {
    fn transcribe<'a>(
        &'a self,
        path: &'a Path,
        options: TranscribeOptions,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transcript, TranscribeError>> {
        Box::pin(TranscriberService::transcribe(
            self, path, options, progress,
        ))
    }
}
