//! The Whisper thread: one loaded model owned by one OS thread, fed through a channel. FFmpeg
//! decoding and whisper.cpp both run there, never on the async runtime.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::whisper::{TranscribeError, TranscribeOptions, Transcript, Whisper};

/// Called from the Whisper thread with (decoded ms, total ms when known).
pub type Progress = Box<dyn FnMut(u64, Option<u64>) + Send>;

struct Job {
    path: PathBuf,
    options: TranscribeOptions,
    progress: Progress,
    reply: oneshot::Sender<Result<Transcript, TranscribeError>>,
}

/// Handle to a Whisper model on its own thread. Cheap to clone.
#[derive(Clone)]
pub struct TranscriberService {
    sender: mpsc::SyncSender<Job>,
}

impl TranscriberService {
    /// Loads the ggml model on a new thread; returns once it is loaded (or failed to).
    pub async fn start(model: &Path) -> Result<Self, TranscribeError> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(4);
        let (ready_tx, ready_rx) = oneshot::channel();
        let path = model.to_path_buf();
        std::thread::Builder::new()
            .name("whisper".into())
            .spawn(move || {
                let whisper = match Whisper::load(&path) {
                    Ok(w) => {
                        let _ = ready_tx.send(Ok(()));
                        w
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for mut job in receiver {
                    let result =
                        whisper.transcribe_file(&job.path, &job.options, &mut job.progress);
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| {
                TranscribeError::Whisper(format!("cannot start the Whisper thread: {e}"))
            })?;
        ready_rx
            .await
            .map_err(|_| TranscribeError::Whisper("the Whisper thread stopped".into()))??;
        Ok(TranscriberService { sender })
    }

    /// Decodes and transcribes `path` on the Whisper thread.
    pub async fn transcribe(
        &self,
        path: &Path,
        options: TranscribeOptions,
        progress: Progress,
    ) -> Result<Transcript, TranscribeError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            path: path.to_path_buf(),
            options,
            progress,
            reply,
        };
        let sender = self.sender.clone();
        tokio::task::spawn_blocking(move || sender.send(job))
            .await
            .map_err(|e| TranscribeError::Whisper(e.to_string()))?
            .map_err(|_| TranscribeError::Whisper("the Whisper thread stopped".into()))?;
        rx.await
            .map_err(|_| TranscribeError::Whisper("the Whisper thread stopped".into()))?
    }
}
