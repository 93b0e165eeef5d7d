//! Audio-to-audio similarity: CNN14 embeddings of fixed windows (about 10 s, overlapping) of a
//! recording, computed on the model's own thread. FFmpeg decodes to 32 kHz mono in a stream,
//! so only one window is held at a time.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use candle_core::Device;
use thiserror::Error;
use tokio::sync::oneshot;

use super::cnn14::{Cnn14, Cnn14Error, MIN_SAMPLES, SAMPLE_RATE};
use crate::media::decode::{self, DecodeError};

#[derive(Debug, Error)]
pub enum AudioEmbedError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Model(#[from] Cnn14Error),
    #[error("the audio embedding thread stopped")]
    ThreadGone,
}

/// Windowing of a recording.
#[derive(Debug, Clone, Copy)]
pub struct WindowOptions {
    pub window_ms: u64,
    pub hop_ms: u64,
    /// Windows whose loudest 20 ms is below this (dBFS) are silence and skipped.
    pub silence_dbfs: f32,
}

/// One embedded window.
#[derive(Debug, Clone)]
pub struct AudioWindow {
    pub start_ms: u64,
    pub end_ms: u64,
    pub vector: Vec<f32>,
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Embeds every window of `path`: starts every `hop_ms`, each `window_ms` long; the last
/// window ends with the recording (a clip shorter than one window is one window).
pub fn embed_file(
    model: &Cnn14,
    path: &Path,
    options: &WindowOptions,
) -> Result<Vec<AudioWindow>, AudioEmbedError> {
    let rate = SAMPLE_RATE as u64;
    let window = (options.window_ms * rate / 1000) as usize;
    let hop = (options.hop_ms.max(1) * rate / 1000) as usize;
    let mut pending: Vec<f32> = Vec::with_capacity(window * 2);
    let mut start: u64 = 0; // sample index of pending[0]
    let mut out = Vec::new();
    let mut failure = None;
    let take =
        |samples: &[f32], at: u64, out: &mut Vec<AudioWindow>| -> Result<(), AudioEmbedError> {
            if samples.len() < MIN_SAMPLES
                || crate::media::peak_dbfs(samples, SAMPLE_RATE) < options.silence_dbfs
            {
                return Ok(());
            }
            let vector = normalized(model.embed(samples)?);
            out.push(AudioWindow {
                start_ms: at * 1000 / rate,
                end_ms: (at + samples.len() as u64) * 1000 / rate,
                vector,
            });
            Ok(())
        };
    let mut last_end: u64 = 0;
    let decoded = decode::decode(
        path,
        SAMPLE_RATE,
        |_| {},
        |block| {
            pending.extend_from_slice(block);
            while pending.len() >= window {
                if let Err(e) = take(&pending[..window], start, &mut out) {
                    failure = Some(e);
                    return false;
                }
                last_end = start + window as u64;
                pending.drain(..hop.min(pending.len()));
                start += hop as u64;
            }
            true
        },
    );
    if let Some(e) = failure {
        return Err(e);
    }
    decoded?;
    // The tail after the last full window (or the whole clip when shorter than a window).
    let end = start + pending.len() as u64;
    if end > last_end && !pending.is_empty() {
        let from = pending.len().saturating_sub(window);
        take(&pending[from..], start + from as u64, &mut out)?;
    }
    Ok(out)
}

struct Job {
    path: PathBuf,
    options: WindowOptions,
    reply: oneshot::Sender<Result<Vec<AudioWindow>, AudioEmbedError>>,
}

/// Handle to CNN14 on its own thread. Cheap to clone.
#[derive(Clone)]
pub struct AudioEmbedderService {
    sender: mpsc::SyncSender<Job>,
    dims: usize,
}

impl AudioEmbedderService {
    /// Loads the checkpoint on a new thread; returns once it is loaded.
    pub async fn start(checkpoint: &Path) -> Result<Self, AudioEmbedError> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(4);
        let (ready_tx, ready_rx) = oneshot::channel();
        let path = checkpoint.to_path_buf();
        std::thread::Builder::new()
            .name("cnn14".into())
            .spawn(move || {
                let model = match Cnn14::load(&path, &Device::Cpu) {
                    Ok(m) => {
                        let _ = ready_tx.send(Ok(m.embedding_dim()));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for job in receiver {
                    let _ = job.reply.send(embed_file(&model, &job.path, &job.options));
                }
            })
            .map_err(|_| AudioEmbedError::ThreadGone)?;
        let dims = ready_rx.await.map_err(|_| AudioEmbedError::ThreadGone)??;
        Ok(Self { sender, dims })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Decodes and embeds the windows of `path` on the model thread.
    pub async fn embed_file(
        &self,
        path: &Path,
        options: WindowOptions,
    ) -> Result<Vec<AudioWindow>, AudioEmbedError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            path: path.to_path_buf(),
            options,
            reply,
        };
        let sender = self.sender.clone();
        tokio::task::spawn_blocking(move || sender.send(job))
            .await
            .map_err(|_| AudioEmbedError::ThreadGone)?
            .map_err(|_| AudioEmbedError::ThreadGone)?;
        rx.await.map_err(|_| AudioEmbedError::ThreadGone)?
    }
}
