//! Audio-to-audio similarity: CNN14 embeddings of fixed windows (about 10 s, overlapping) of a
//! recording, computed on the model's own thread. FFmpeg decodes to 32 kHz mono in a stream,
//! so only one window is held at a time.

use std::path::{Path, PathBuf};

use candle_core::Device;
use thiserror::Error;

use super::cnn14::{Cnn14, Cnn14Error, MIN_SAMPLES, SAMPLE_RATE};
use super::worker::{Model, Worker, WorkerError};
use crate::media::decode::{self, DecodeError};

#[derive(Debug, Error)]
pub enum AudioEmbedError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Model(#[from] Cnn14Error),
    #[error("the audio embedding thread stopped")]
    ThreadGone,
    /// Failed on the worker thread (the reason as it was reported there).
    #[error("{0}")]
    Failed(String),
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

/// One file to cut into windows and embed.
pub struct Request {
    path: PathBuf,
    options: WindowOptions,
}

impl Model for Cnn14 {
    type Input = Request;
    type Output = Vec<AudioWindow>;
    type Params = ();

    fn cost(&self, _: &Request) -> usize {
        1
    }

    fn run(&mut self, _: &(), inputs: Vec<Request>) -> Result<Vec<Vec<AudioWindow>>, String> {
        inputs
            .iter()
            .map(|r| embed_file(self, &r.path, &r.options).map_err(|e| e.to_string()))
            .collect()
    }
}

/// Handle to CNN14 on its worker thread. Cheap to clone.
#[derive(Clone)]
pub struct AudioEmbedderService {
    worker: Worker<Cnn14>,
    dims: usize,
}

impl AudioEmbedderService {
    /// Loads the checkpoint (on a blocking thread) and starts its worker.
    pub async fn start(checkpoint: &Path) -> Result<Self, AudioEmbedError> {
        let path = checkpoint.to_path_buf();
        let model = tokio::task::spawn_blocking(move || Cnn14::load(&path, &Device::Cpu))
            .await
            .map_err(|_| AudioEmbedError::ThreadGone)??;
        let dims = model.embedding_dim();
        let worker =
            Worker::spawn("cnn14", model, 4, 1).map_err(|_| AudioEmbedError::ThreadGone)?;
        Ok(Self { worker, dims })
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
        let request = Request {
            path: path.to_path_buf(),
            options,
        };
        let mut out = self
            .worker
            .call((), vec![request])
            .await
            .map_err(|e| match e {
                WorkerError::Gone => AudioEmbedError::ThreadGone,
                WorkerError::Failed(reason) => AudioEmbedError::Failed(reason),
            })?;
        out.pop().ok_or(AudioEmbedError::ThreadGone)
    }
}
