//! Whisper on the shared model worker: one loaded model owned by one OS thread. FFmpeg decoding
//! and whisper.cpp both run there, never on the async runtime; one recording per request.

use std::path::{Path, PathBuf};

use super::whisper::{TranscribeError, TranscribeOptions, Transcript, Whisper};
use crate::embed::worker::{Model, Worker, WorkerError};

/// Called from the Whisper thread with (decoded ms, total ms when known).
pub type Progress = Box<dyn FnMut(u64, Option<u64>) + Send>;

/// One recording to transcribe.
pub struct Request {
    path: PathBuf,
    options: TranscribeOptions,
    progress: Progress,
}

impl Model for Whisper {
    type Input = Request;
    type Output = Transcript;
    type Params = ();

    fn cost(&self, _: &Request) -> usize {
        1
    }

    fn run(&mut self, _: &(), inputs: Vec<Request>) -> Result<Vec<Transcript>, String> {
        inputs
            .into_iter()
            .map(|mut r| {
                self.transcribe_file(&r.path, &r.options, &mut r.progress)
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// Handle to a Whisper model on its worker thread. Cheap to clone.
#[derive(Clone)]
pub struct TranscriberService {
    worker: Worker<Whisper>,
}

impl TranscriberService {
    /// Loads the ggml model (on a blocking thread) and starts its worker.
    pub async fn start(model: &Path) -> Result<Self, TranscribeError> {
        let path = model.to_path_buf();
        let whisper = tokio::task::spawn_blocking(move || Whisper::load(&path))
            .await
            .map_err(|e| TranscribeError::Whisper(e.to_string()))??;
        let worker = Worker::spawn("whisper", whisper, 4, 1).map_err(|e| {
            TranscribeError::Whisper(format!("cannot start the Whisper thread: {e}"))
        })?;
        Ok(TranscriberService { worker })
    }

    /// Decodes and transcribes `path` on the Whisper thread.
    pub async fn transcribe(
        &self,
        path: &Path,
        options: TranscribeOptions,
        progress: Progress,
    ) -> Result<Transcript, TranscribeError> {
        let request = Request {
            path: path.to_path_buf(),
            options,
            progress,
        };
        let mut out = self
            .worker
            .call((), vec![request])
            .await
            .map_err(|e| match e {
                WorkerError::Gone => TranscribeError::Whisper("the Whisper thread stopped".into()),
                WorkerError::Failed(reason) => TranscribeError::Failed(reason),
            })?;
        out.pop()
            .ok_or_else(|| TranscribeError::Whisper("no transcript came back".into()))
    }
}
