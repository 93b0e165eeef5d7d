//! PANN CNN14 audio embedder (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural
//! Networks for Audio Pattern Recognition", 2020) on candle, inference only.
//!
//! Mirrors `panns_inference.models.Cnn14` in eval mode with the AudioSet configuration
//! of the published `Cnn14_mAP=0.431.pth` checkpoint:
//!
//! * front end ([`LogMel`]): torchlibrosa `Spectrogram` + `LogmelFilterBank` — periodic
//!   Hann window of 1024, hop 320, centred frames with reflect padding, power spectrum,
//!   librosa Slaney mel filterbank (64 bands, 50..14000 Hz, Slaney area norm) and
//!   `10 * log10(max(x, 1e-10))`;
//! * `bn0` over the mel axis, six conv blocks (3x3 conv -> BN -> ReLU, twice, then 2x2
//!   average pooling except for the last block), mean over mel, max + mean over time,
//!   `fc1` + ReLU = the 2048-d embedding; `fc_audioset` + sigmoid = clipwise output.
//!
//! Batch norms are folded into the preceding convolutions at load time. Weights load
//! from a `.safetensors` file or a PyTorch `.pth` checkpoint (zip or legacy pre-1.6
//! format, state dict at the top level or under the `model` key) using the PyTorch
//! parameter names (`conv_block1.conv1.weight`, `conv_block1.bn1.running_mean`, ...).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::kernels;
pub use crate::models::checkpoint::{load_state_dict, CheckpointError};

/// Sample rate the network expects, in Hz.
pub const SAMPLE_RATE: u32 = 32_000;
/// STFT window (and FFT) size in samples.
pub const WINDOW_SIZE: usize = 1024;
/// STFT hop in samples (10 ms).
pub const HOP_SIZE: usize = 320;
/// Number of mel bands.
pub const MEL_BINS: usize = 64;
/// Lowest mel filter edge in Hz.
pub const FMIN: f64 = 50.0;
/// Highest mel filter edge in Hz.
pub const FMAX: f64 = 14_000.0;
/// Embedding width of the published checkpoint.
pub const EMBEDDING_DIM: usize = 2048;
/// Number of AudioSet classes of `fc_audioset` in the published checkpoint.
pub const AUDIOSET_CLASSES: usize = 527;
/// Shortest input [`Cnn14::embed`] accepts: 32 frames, so that five 2x2 poolings
/// leave at least one time step (about 0.31 s).
pub const MIN_SAMPLES: usize = 31 * HOP_SIZE;

const FREQ_BINS: usize = WINDOW_SIZE / 2 + 1;
const BN_EPS: f64 = 1e-5;
const AMIN: f64 = 1e-10;
const POOLED_BLOCKS: usize = 5;
const NUM_BLOCKS: usize = 6;
/// Windows stacked into one forward pass by [`Cnn14::embed_batch`] on accelerators.
/// On CPU, stacking measured slower than one window at a time, so it is not done.
const MAX_BATCH: usize = 8;

/// Errors from loading or running CNN14.
#[derive(Debug, thiserror::Error)]
pub enum Cnn14Error {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint has no tensor `{0}`")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {got:?}, expected {expected}")]
    BadShape {
        name: String,
        got: Vec<usize>,
        expected: String,
    },
    #[error("checkpoint has no `fc_audioset` head")]
    NoClassifier,
    #[error("audio too short: {got} samples, need at least {min}")]
    TooShort { got: usize, min: usize },
    #[error("audio contains a non-finite sample at index {0}")]
    NonFinite(usize),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

type Result<T> = std::result::Result<T, Cnn14Error>;

// ---------------------------------------------------------------------------------------
// Front end
// ---------------------------------------------------------------------------------------

/// Iterative radix-2 complex FFT of a fixed power-of-two size, in f64.
#[derive(Debug, Clone)]
struct Fft {
    n: usize,
    cos: Vec<f64>,
    sin: Vec<f64>,
    rev: Vec<usize>,
}

impl Fft {
    fn new(n: usize) -> Self {
        debug_assert!(n.is_power_of_two() && n >= 2);
        let bits = n.trailing_zeros();
        let rev = (0..n)
            .map(|i| i.reverse_bits() >> (usize::BITS - bits))
            .collect();
        let step = 2.0 * std::f64::consts::PI / n as f64;
        let cos = (0..n / 2).map(|k| (step * k as f64).cos()).collect();
        let sin = (0..n / 2).map(|k| (step * k as f64).sin()).collect();
        Self { n, cos, sin, rev }
    }

    /// In-place forward transform, `X[k] = sum_n x[n] exp(-2 pi i k n / N)`.
    fn forward(&self, re: &mut [f64], im: &mut [f64]) {
        let n = self.n;
        for i in 0..n {
            let j = self.rev[i];
            if i < j {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let half = len / 2;
            let stride = n / len;
            for start in (0..n).step_by(len) {
                for k in 0..half {
                    let wr = self.cos[k * stride];
                    let wi = -self.sin[k * stride];
                    let a = start + k;
                    let b = a + half;
                    let tr = re[b] * wr - im[b] * wi;
                    let ti = re[b] * wi + im[b] * wr;
                    re[b] = re[a] - tr;
                    im[b] = im[a] - ti;
                    re[a] += tr;
                    im[a] += ti;
                }
            }
            len <<= 1;
        }
    }
}

/// `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` as `n_mels` rows of `n_fft / 2 + 1`
/// weights (see [`crate::media::mel::filterbank`]).
pub fn mel_filterbank(sr: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<Vec<f32>> {
    crate::media::mel::filterbank(sr as u32, n_fft, n_mels, fmin, fmax)
        .chunks(n_fft / 2 + 1)
        .map(<[f32]>::to_vec)
        .collect()
}

/// One mel filter as its non-zero span of FFT bins.
#[derive(Debug, Clone)]
struct MelFilter {
    start: usize,
    weights: Vec<f64>,
}

/// PANN's log-mel front end (torchlibrosa `Spectrogram` + `LogmelFilterBank` with
/// `ref = 1.0, amin = 1e-10, top_db = None`) for 32 kHz audio.
#[derive(Debug, Clone)]
pub struct LogMel {
    fft: Fft,
    window: Vec<f64>,
    filters: Vec<MelFilter>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    pub fn new() -> Self {
        // scipy.signal.get_window("hann", 1024, fftbins=True): periodic Hann.
        let window = (0..WINDOW_SIZE)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / WINDOW_SIZE as f64).cos())
            .collect();
        let filters = mel_filterbank(f64::from(SAMPLE_RATE), WINDOW_SIZE, MEL_BINS, FMIN, FMAX)
            .into_iter()
            .map(|row| {
                let start = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let end = row.iter().rposition(|&w| w != 0.0).map_or(start, |e| e + 1);
                MelFilter {
                    start,
                    weights: row[start..end].iter().map(|&w| f64::from(w)).collect(),
                }
            })
            .collect();
        Self {
            fft: Fft::new(WINDOW_SIZE),
            window,
            filters,
        }
    }

    /// Number of frames produced for `len` samples: `1 + len / HOP_SIZE`.
    pub fn num_frames(len: usize) -> usize {
        1 + len / HOP_SIZE
    }

    /// Log-mel spectrogram in dB, row-major `[frames, MEL_BINS]` with
    /// `frames = 1 + samples.len() / HOP_SIZE`. Reflect padding needs more than
    /// `WINDOW_SIZE / 2` samples.
    pub fn compute(&self, samples: &[f32]) -> Result<Vec<f32>> {
        let pad = WINDOW_SIZE / 2;
        if samples.len() <= pad {
            return Err(Cnn14Error::TooShort {
                got: samples.len(),
                min: pad + 1,
            });
        }
        let len = samples.len();
        // Reflect padding without repeating the edge sample (numpy/torch "reflect").
        let padded_at = |i: usize| -> f64 {
            let v = if i < pad {
                samples[pad - i]
            } else if i - pad < len {
                samples[i - pad]
            } else {
                samples[2 * (len - 1) - (i - pad)]
            };
            f64::from(v)
        };
        let frames = Self::num_frames(len);
        let mut out = Vec::with_capacity(frames * MEL_BINS);
        let mut re = vec![0.0f64; WINDOW_SIZE];
        let mut im = vec![0.0f64; WINDOW_SIZE];
        let mut power = vec![0.0f64; FREQ_BINS];
        for t in 0..frames {
            let base = t * HOP_SIZE;
            for (n, (r, i)) in re.iter_mut().zip(im.iter_mut()).enumerate() {
                *r = padded_at(base + n) * self.window[n];
                *i = 0.0;
            }
            self.fft.forward(&mut re, &mut im);
            for (k, p) in power.iter_mut().enumerate() {
                *p = re[k] * re[k] + im[k] * im[k];
            }
            for f in &self.filters {
                let mel: f64 = f
                    .weights
                    .iter()
                    .zip(&power[f.start..])
                    .map(|(w, p)| w * p)
                    .sum();
                out.push((10.0 * mel.max(AMIN).log10()) as f32);
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------

struct Weights {
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Take a tensor out of the map (keeps peak memory down) as f64.
    fn take(&mut self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| Cnn14Error::MissingTensor(name.to_string()))?;
        if t.dims() != expected {
            return Err(Cnn14Error::BadShape {
                name: name.to_string(),
                got: t.dims().to_vec(),
                expected: format!("{expected:?}"),
            });
        }
        Ok(t.to_dtype(DType::F64)?)
    }

    fn dims(&self, name: &str) -> Result<&[usize]> {
        self.tensors
            .get(name)
            .map(|t| t.dims())
            .ok_or_else(|| Cnn14Error::MissingTensor(name.to_string()))
    }

    /// Eval-mode batch norm as `(scale, shift)`: `y = x * scale + shift`.
    fn batch_norm(&mut self, prefix: &str, c: usize) -> Result<(Tensor, Tensor)> {
        let w = self.take(&format!("{prefix}.weight"), &[c])?;
        let b = self.take(&format!("{prefix}.bias"), &[c])?;
        let mean = self.take(&format!("{prefix}.running_mean"), &[c])?;
        let var = self.take(&format!("{prefix}.running_var"), &[c])?;
        let scale = w.div(&(var + BN_EPS)?.sqrt()?)?;
        let shift = b.sub(&mean.mul(&scale)?)?;
        Ok((scale, shift))
    }
}

/// 3x3 convolution (padding 1, no bias) with its batch norm folded in, then ReLU.
struct ConvBnRelu {
    c_out: usize,
    weights: ConvWeights,
}

/// A convolution's weights in the form its device runs: one copy, not both.
enum ConvWeights {
    /// Accelerators, for candle's conv2d: `[c_out, c_in, 3, 3]` and a `[1, c_out, 1, 1]` bias.
    Device { weight: Tensor, bias: Tensor },
    /// CPU, for [`ConvBnRelu::forward_cpu`]: `[c_out, c_in * 9]` rows and the bias.
    Cpu { weight: Vec<f32>, bias: Vec<f32> },
}

impl ConvBnRelu {
    fn load(w: &mut Weights, conv: &str, bn: &str, c_in: usize, device: &Device) -> Result<Self> {
        let name = format!("{conv}.weight");
        let dims = w.dims(&name)?;
        let c_out = dims.first().copied().unwrap_or(0);
        let kernel = w.take(&name, &[c_out, c_in, 3, 3])?;
        let (scale, shift) = w.batch_norm(bn, c_out)?;
        let weight = kernel
            .broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?
            .to_dtype(DType::F32)?;
        let bias = shift.to_dtype(DType::F32)?;
        let weights = if device.is_cpu() {
            ConvWeights::Cpu {
                weight: weight.flatten_all()?.to_vec1::<f32>()?,
                bias: bias.to_vec1::<f32>()?,
            }
        } else {
            ConvWeights::Device {
                weight: weight.to_device(device)?,
                bias: bias.reshape((1, c_out, 1, 1))?.to_device(device)?,
            }
        };
        Ok(Self { c_out, weights })
    }

    fn c_out(&self) -> usize {
        self.c_out
    }

    /// On accelerators (CPU runs [`ConvBnRelu::forward_cpu`]).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let ConvWeights::Device { weight, bias } = &self.weights else {
            unreachable!("CPU convolutions run forward_cpu");
        };
        let y = x.conv2d(weight, 1, 1, 1, 1)?;
        Ok(y.broadcast_add(bias)?.relu()?)
    }
}

impl ConvBnRelu {
    /// CPU path for one input `[c_in, h, w]`: im2col over column chunks that stay in cache,
    /// the encoder's GEMM (BLAS when present) accumulating onto the bias, then ReLU.
    /// Returns `[c_out, h, w]`.
    fn forward_cpu(&self, x: &[f32], c_in: usize, h: usize, w: usize) -> Vec<f32> {
        // About 4 MB of columns per chunk.
        self.forward_cpu_chunked(x, c_in, h, w, (1 << 20) / (c_in * 9))
    }

    /// [`ConvBnRelu::forward_cpu`] with im2col chunks of `chunk` positions.
    fn forward_cpu_chunked(
        &self,
        x: &[f32],
        c_in: usize,
        h: usize,
        w: usize,
        chunk: usize,
    ) -> Vec<f32> {
        let ConvWeights::Cpu { weight, bias } = &self.weights else {
            unreachable!("accelerator convolutions run forward");
        };
        let c_out = self.c_out;
        let k = c_in * 9;
        let positions = h * w;
        let mut out = vec![0f32; c_out * positions];
        out.par_chunks_mut(positions)
            .zip(bias.par_iter())
            .for_each(|(row, &b)| row.fill(b));
        let chunk = chunk.clamp(1, positions.max(1));
        let mut cols = vec![0f32; k * chunk];
        let mut p0 = 0;
        while p0 < positions {
            let n = chunk.min(positions - p0);
            let cols = &mut cols[..k * n];
            cols.par_chunks_mut(n).enumerate().for_each(|(r, dst)| {
                let (ci, ky, kx) = (r / 9, r % 9 / 3, r % 3);
                let plane = &x[ci * positions..(ci + 1) * positions];
                im2col_row(plane, h, w, ky, kx, p0, dst);
            });
            let dst = &mut out[p0..];
            kernels::matmul(true, c_out, n, k, weight, k, cols, n, dst, positions);
            p0 += n;
        }
        out.par_chunks_mut(1 << 14)
            .for_each(|c| c.iter_mut().for_each(|v| *v = v.max(0.0)));
        out
    }
}

/// One im2col row for tap `(ky, kx)` of a 3×3 convolution with padding 1:
/// `dst[j] = plane[y + ky - 1][x + kx - 1]` (zero outside) for positions `p0 + j = y·w + x`.
fn im2col_row(plane: &[f32], h: usize, w: usize, ky: usize, kx: usize, p0: usize, dst: &mut [f32]) {
    let mut j = 0;
    while j < dst.len() {
        let p = p0 + j;
        let (y, x0) = (p / w, p % w);
        let run = (w - x0).min(dst.len() - j);
        let seg = &mut dst[j..j + run];
        let iy = y as isize + ky as isize - 1;
        if iy < 0 || iy >= h as isize {
            seg.fill(0.0);
        } else {
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            // seg[i] = src[x0 + i + kx - 1] where that index is inside the row.
            let lo = 1usize.saturating_sub(x0 + kx).min(run);
            let hi = (w + 1).saturating_sub(x0 + kx).min(run).max(lo);
            seg[..lo].fill(0.0);
            seg[lo..hi].copy_from_slice(&src[x0 + lo + kx - 1..x0 + hi + kx - 1]);
            seg[hi..].fill(0.0);
        }
        j += run;
    }
}

/// 2×2 average pooling, stride 2, odd edges dropped (as `avg_pool2d((2, 2))`), of
/// `[c, h, w]`.
fn avg_pool_cpu(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0f32; c * ho * wo];
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(ch, dst)| {
            let plane = &x[ch * h * w..(ch + 1) * h * w];
            for y in 0..ho {
                let (r0, r1) = (&plane[2 * y * w..], &plane[(2 * y + 1) * w..]);
                for xo in 0..wo {
                    dst[y * wo + xo] =
                        (r0[2 * xo] + r0[2 * xo + 1] + r1[2 * xo] + r1[2 * xo + 1]) * 0.25;
                }
            }
        });
    out
}

struct ConvBlock {
    conv1: ConvBnRelu,
    conv2: ConvBnRelu,
    pool: bool,
}

impl ConvBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv2.forward(&self.conv1.forward(x)?)?;
        Ok(if self.pool { x.avg_pool2d((2, 2))? } else { x })
    }
}

/// Dense layer `y = x W^T + b` with `W^T` stored pre-transposed.
struct Dense {
    weight_t: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(w: &mut Weights, prefix: &str, d_in: usize, device: &Device) -> Result<Self> {
        let name = format!("{prefix}.weight");
        let d_out = w.dims(&name)?.first().copied().unwrap_or(0);
        let weight = w.take(&name, &[d_out, d_in])?;
        let bias = w.take(&format!("{prefix}.bias"), &[d_out])?;
        Ok(Self {
            weight_t: weight
                .t()?
                .contiguous()?
                .to_dtype(DType::F32)?
                .to_device(device)?,
            bias: bias
                .reshape((1, d_out))?
                .to_dtype(DType::F32)?
                .to_device(device)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight_t)?.broadcast_add(&self.bias)?)
    }
}

/// PANN CNN14 in eval mode.
pub struct Cnn14 {
    device: Device,
    log_mel: LogMel,
    bn0_scale: Vec<f64>,
    bn0_shift: Vec<f64>,
    blocks: Vec<ConvBlock>,
    fc1: Dense,
    fc_audioset: Option<Dense>,
    embedding_dim: usize,
}

impl std::fmt::Debug for Cnn14 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cnn14")
            .field("device", &self.device)
            .field("embedding_dim", &self.embedding_dim)
            .field("has_classifier", &self.fc_audioset.is_some())
            .finish_non_exhaustive()
    }
}

impl Cnn14 {
    /// Load from a `.safetensors` or `.pth` checkpoint (see [`load_state_dict`]).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::from_tensors(load_state_dict(path)?, device)
    }

    /// Build from tensors keyed by PyTorch parameter name. Layer widths are taken from
    /// the weight shapes (the published model: 64..2048 channels, 527 classes); extra
    /// entries such as `spectrogram_extractor.*` are ignored, and `fc_audioset` is
    /// optional.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        let mut w = Weights { tensors };
        let (scale, shift) = w.batch_norm("bn0", MEL_BINS)?;
        let bn0_scale = scale.to_vec1::<f64>()?;
        let bn0_shift = shift.to_vec1::<f64>()?;
        let mut blocks = Vec::with_capacity(NUM_BLOCKS);
        let mut c_in = 1;
        for i in 1..=NUM_BLOCKS {
            let p = format!("conv_block{i}");
            let conv1 = ConvBnRelu::load(
                &mut w,
                &format!("{p}.conv1"),
                &format!("{p}.bn1"),
                c_in,
                device,
            )?;
            let c = conv1.c_out();
            let conv2 = ConvBnRelu::load(
                &mut w,
                &format!("{p}.conv2"),
                &format!("{p}.bn2"),
                c,
                device,
            )?;
            c_in = conv2.c_out();
            blocks.push(ConvBlock {
                conv1,
                conv2,
                pool: i <= POOLED_BLOCKS,
            });
        }
        let fc1 = Dense::load(&mut w, "fc1", c_in, device)?;
        let embedding_dim = fc1.bias.dims()[1];
        let fc_audioset = if w.tensors.contains_key("fc_audioset.weight") {
            Some(Dense::load(&mut w, "fc_audioset", embedding_dim, device)?)
        } else {
            None
        };
        Ok(Self {
            device: device.clone(),
            log_mel: LogMel::new(),
            bn0_scale,
            bn0_shift,
            blocks,
            fc1,
            fc_audioset,
            embedding_dim,
        })
    }

    /// Width of [`Cnn14::embed`]'s output ([`EMBEDDING_DIM`] for the published model).
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// Number of `fc_audioset` classes, if the checkpoint has that head.
    pub fn num_classes(&self) -> Option<usize> {
        self.fc_audioset.as_ref().map(|d| d.bias.dims()[1])
    }

    /// The model's log-mel input (before `bn0`), row-major `[frames, MEL_BINS]`.
    pub fn log_mel(&self, samples_32k: &[f32]) -> Result<Vec<f32>> {
        self.log_mel.compute(samples_32k)
    }

    /// 2048-d embedding of mono 32 kHz audio (at least [`MIN_SAMPLES`] samples).
    pub fn embed(&self, samples_32k: &[f32]) -> Result<Vec<f32>> {
        let x = self.features(&[samples_32k])?;
        Ok(self.embedding(&x)?.squeeze(0)?.to_vec1()?)
    }

    /// Embeddings of several windows. On accelerators, equal-length neighbours share a
    /// forward pass; on CPU each window runs alone (faster there).
    pub fn embed_batch<W: AsRef<[f32]>>(&self, windows: &[W]) -> Result<Vec<Vec<f32>>> {
        let max_batch = if self.device.is_cpu() { 1 } else { MAX_BATCH };
        let mut out = Vec::with_capacity(windows.len());
        let mut i = 0;
        while i < windows.len() {
            let len = windows[i].as_ref().len();
            let mut j = i + 1;
            while j < windows.len() && j - i < max_batch && windows[j].as_ref().len() == len {
                j += 1;
            }
            let group: Vec<&[f32]> = windows[i..j].iter().map(|w| w.as_ref()).collect();
            let x = self.features(&group)?;
            out.extend(self.embedding(&x)?.to_vec2::<f32>()?);
            i = j;
        }
        Ok(out)
    }

    /// AudioSet tagging probabilities (`sigmoid(fc_audioset(embedding))`).
    pub fn clipwise_output(&self, samples_32k: &[f32]) -> Result<Vec<f32>> {
        let head = self.fc_audioset.as_ref().ok_or(Cnn14Error::NoClassifier)?;
        let x = self.features(&[samples_32k])?;
        let logits = head
            .forward(&self.embedding(&x)?)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        Ok(logits
            .into_iter()
            .map(|z| 1.0 / (1.0 + (-z).exp()))
            .collect())
    }

    /// `bn0(log_mel(x))` for equal-length inputs as a `[batch, 1, frames, MEL_BINS]` tensor.
    fn features(&self, windows: &[&[f32]]) -> Result<Tensor> {
        let len = windows.first().map_or(0, |w| w.len());
        let frames = LogMel::num_frames(len);
        let mut data = Vec::with_capacity(windows.len() * frames * MEL_BINS);
        for w in windows {
            if w.len() < MIN_SAMPLES {
                return Err(Cnn14Error::TooShort {
                    got: w.len(),
                    min: MIN_SAMPLES,
                });
            }
            if let Some(i) = w.iter().position(|v| !v.is_finite()) {
                return Err(Cnn14Error::NonFinite(i));
            }
            let mel = self.log_mel.compute(w)?;
            data.extend(mel.chunks_exact(MEL_BINS).flat_map(|row| {
                row.iter()
                    .zip(self.bn0_scale.iter().zip(&self.bn0_shift))
                    .map(|(&v, (&s, &b))| (f64::from(v) * s + b) as f32)
            }));
        }
        Ok(Tensor::from_vec(
            data,
            (windows.len(), 1, frames, MEL_BINS),
            &self.device,
        )?)
    }

    /// The conv blocks on CPU ([`ConvBnRelu::forward_cpu`]), one input at a time.
    fn trunk_cpu(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c0, h0, w0) = x.dims4()?;
        let data = x.flatten_all()?.to_vec1::<f32>()?;
        let mut outs = Vec::with_capacity(b);
        let mut shape = (c0, h0, w0);
        for item in data.chunks(c0 * h0 * w0) {
            let (mut c, mut h, mut w) = (c0, h0, w0);
            let mut y = item.to_vec();
            for block in &self.blocks {
                y = block.conv1.forward_cpu(&y, c, h, w);
                c = block.conv1.c_out();
                y = block.conv2.forward_cpu(&y, c, h, w);
                c = block.conv2.c_out();
                if block.pool {
                    y = avg_pool_cpu(&y, c, h, w);
                    (h, w) = (h / 2, w / 2);
                }
            }
            shape = (c, h, w);
            outs.extend(y);
        }
        Ok(Tensor::from_vec(
            outs,
            (b, shape.0, shape.1, shape.2),
            &self.device,
        )?)
    }

    /// Conv trunk + pooling + `fc1` + ReLU: `[batch, 1, frames, mel]` -> `[batch, dim]`.
    fn embedding(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        if self.device.is_cpu() {
            x = self.trunk_cpu(&x)?;
        } else {
            for block in &self.blocks {
                x = block.forward(&x)?;
            }
        }
        let x = x.mean(3)?; // over mel: [batch, channels, time]
        let x = (x.max(2)? + x.mean(2)?)?;
        Ok(self.fc1.forward(&x)?.relu()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_convolution_matches_candle_conv2d() {
        // Odd sizes: edges on every side, a width that does not divide the column chunks.
        let (c_in, c_out, h, w) = (3, 5, 37, 11);
        let val = |i: usize, s: usize| ((i * 2654435761 + s) % 1000) as f32 / 500.0 - 1.0;
        let weight: Vec<f32> = (0..c_out * c_in * 9).map(|i| val(i, 1)).collect();
        let bias: Vec<f32> = (0..c_out).map(|i| val(i, 2) * 0.1).collect();
        let x: Vec<f32> = (0..c_in * h * w).map(|i| val(i, 3)).collect();
        let dev = Device::Cpu;
        let wt = Tensor::from_vec(weight.clone(), (c_out, c_in, 3, 3), &dev).unwrap();
        let bt = Tensor::from_vec(bias.clone(), (1, c_out, 1, 1), &dev).unwrap();
        let conv = ConvBnRelu {
            c_out,
            weights: ConvWeights::Cpu { weight, bias },
        };
        let xt = Tensor::from_vec(x.clone(), (1, c_in, h, w), &dev).unwrap();
        let want = xt
            .conv2d(&wt, 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(&bt)
            .unwrap()
            .relu()
            .unwrap();
        let want_v = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // One chunk, and chunks that end mid-row.
        let got = conv.forward_cpu(&x, c_in, h, w);
        for chunk in [h * w, 50, 7] {
            let got = conv.forward_cpu_chunked(&x, c_in, h, w, chunk);
            for (i, (g, e)) in got.iter().zip(&want_v).enumerate() {
                assert!(
                    (g - e).abs() < 1e-4,
                    "chunk {chunk}, element {i}: {g} vs {e}"
                );
            }
        }
        let pooled = avg_pool_cpu(&got, c_out, h, w);
        let want_pool = want.avg_pool2d((2, 2)).unwrap();
        assert_eq!(want_pool.dims4().unwrap(), (1, c_out, h / 2, w / 2));
        let want_pool = want_pool.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (g, e) in pooled.iter().zip(&want_pool) {
            assert!((g - e).abs() < 1e-5);
        }
    }

    #[test]
    fn fft_matches_naive_dft() {
        let n = 64;
        let fft = Fft::new(n);
        let x: Vec<f64> = (0..n).map(|i| ((i * 7 % 13) as f64 - 6.0) / 3.0).collect();
        let mut re = x.clone();
        let mut im = vec![0.0; n];
        fft.forward(&mut re, &mut im);
        for k in 0..n {
            let (mut sr, mut si) = (0.0, 0.0);
            for (t, v) in x.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                sr += v * a.cos();
                si += v * a.sin();
            }
            assert!(
                (re[k] - sr).abs() < 1e-9 && (im[k] - si).abs() < 1e-9,
                "bin {k}"
            );
        }
    }

    #[test]
    fn mel_filterbank_shape_and_support() {
        let fb = mel_filterbank(32000.0, 1024, 64, 50.0, 14000.0);
        assert_eq!(fb.len(), 64);
        assert!(fb.iter().all(|r| r.len() == 513));
        assert!(fb.iter().all(|r| r.iter().any(|&w| w > 0.0)));
        // Nothing below fmin (bin 1 = 31.25 Hz) or above fmax (bin 449 = 14031 Hz).
        assert!(fb
            .iter()
            .all(|r| r[0] == 0.0 && r[1] == 0.0 && r[449..].iter().all(|&w| w == 0.0)));
    }

    #[test]
    fn log_mel_frames_and_silence() {
        let lm = LogMel::new();
        let out = lm.compute(&vec![0.0; 32000]).expect("log-mel");
        assert_eq!(out.len(), 101 * MEL_BINS);
        assert!(out.iter().all(|&v| (v + 100.0).abs() < 1e-4));
        assert!(matches!(
            lm.compute(&[0.0; 512]),
            Err(Cnn14Error::TooShort { .. })
        ));
    }

    #[test]
    fn load_reports_missing_and_garbage_files() {
        let dir = std::env::temp_dir().join(format!("cnn14-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let missing = dir.join("missing.pth");
        assert!(matches!(
            Cnn14::load(&missing, &Device::Cpu),
            Err(Cnn14Error::Checkpoint(CheckpointError::Io { .. }))
        ));
        let garbage = dir.join("garbage.bin");
        std::fs::write(&garbage, b"definitely not a checkpoint").expect("write");
        assert!(matches!(
            Cnn14::load(&garbage, &Device::Cpu),
            Err(Cnn14Error::Checkpoint(CheckpointError::Format { .. }))
        ));
        let mut truncated = crate::models::checkpoint::LEGACY_MAGIC.to_vec();
        truncated.extend_from_slice(&[0x80, 0x02]);
        std::fs::write(&garbage, &truncated).expect("write");
        assert!(Cnn14::load(&garbage, &Device::Cpu).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
