//! The BERT-family transformer encoder (BERT, RoBERTa, XLM-RoBERTa), shared by the
//! sentence embedders and the cross-encoder reranker. Written here rather than taken from
//! candle-transformers so that one code path covers both families (position ids differ), both
//! checkpoint layouts (bare or `bert.`/`roberta.` prefixed) and the classification heads, and so
//! the hot path can be tuned in one place.

use std::cell::RefCell;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::kernels::path::{Linear, ProductPath};
use crate::kernels::{self, attention, Activation};

/// Intermediate buffers of the forward pass, kept per thread and reused across layers and
/// batches: the largest is `[tokens × intermediate]` (50 MB for 8,192 MiniLM tokens), and
/// allocating it afresh per layer cost a page fault per 4 KiB written.
#[derive(Default)]
struct Workspace {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
    /// The bf16 data flow's queries, keys and values, and attention's output.
    qkv16: Vec<u16>,
    context16: Vec<u16>,
}

/// One block of rows' buffers in the bf16 data flow, per thread: a product's f32 output,
/// the attention sublayer's output (the second residual) and the bf16 rows the next product
/// reads.
#[derive(Default)]
struct BlockScratch {
    product: Vec<f32>,
    attended: Vec<f32>,
    rows16: Vec<u16>,
    inner16: Vec<u16>,
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
    static BLOCK: RefCell<BlockScratch> = RefCell::new(BlockScratch::default());
}

/// Rows per task of the bf16 data flow's row pass: one block's intermediate activations
/// (128 × 1,536 values in f32 and in bf16 for MiniLM, about 1.2 MB) stay in the core's cache
/// from the attention output's product to the next layer's queries, keys and values.
const BLOCK_ROWS: usize = 128;

/// The first `n` values of `buf`, growing it if needed (contents unspecified).
fn grow<T: Copy + Default>(buf: &mut Vec<T>, n: usize) -> &mut [T] {
    if buf.len() < n {
        buf.resize(n, T::default());
    }
    &mut buf[..n]
}

pub use crate::models::EncoderConfig;

fn activation(name: &str) -> candle_core::Result<Activation> {
    Ok(match name {
        "gelu" => Activation::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => candle_core::bail!("unsupported hidden_act {other}"),
    })
}

/// A tensor's values as a flat `Vec<f32>`.
fn flat(t: Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Loads a linear layer (weight `[out × in]`, bias `[out]`); its product path forms are
/// built by [`Linear::prepare`] (see [`kernels::path`]).
pub fn dense(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Linear> {
    Ok(Linear::new(
        flat(vb.get((outputs, inputs), "weight")?)?,
        flat(vb.get(outputs, "bias")?)?,
    ))
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

fn norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Norm> {
    // Older checkpoints name the parameters gamma/beta.
    let (gamma, beta) = if vb.contains_tensor("weight") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(Norm {
        gamma: flat(gamma)?,
        beta: flat(beta)?,
        eps: eps as f32,
    })
}

struct Layer {
    /// Query, key and value projections fused into one `[3h × h]` product.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &EncoderConfig) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let attention = vb.pp("attention");
        let parts = ["query", "key", "value"]
            .iter()
            .map(|name| dense(attention.pp("self").pp(name), h, h))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let qkv = Linear::new(
            parts
                .iter()
                .flat_map(|p| p.weight().unwrap_or_default().iter().copied())
                .collect(),
            parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
        );
        Ok(Self {
            qkv,
            attention_out: dense(attention.pp("output").pp("dense"), h, h)?,
            attention_norm: norm(h, c.layer_norm_eps, attention.pp("output").pp("LayerNorm"))?,
            intermediate: dense(vb.pp("intermediate").pp("dense"), h, c.intermediate_size)?,
            output: dense(vb.pp("output").pp("dense"), c.intermediate_size, h)?,
            output_norm: norm(h, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
        })
    }
}

/// A loaded encoder: token ids in, contextual hidden states out. Weights are read through
/// candle's `VarBuilder` (safetensors or PyTorch files, any float type); the forward pass runs
/// on packed tokens with the kernels in [`kernels`].
pub struct Encoder {
    config: EncoderConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Option<Vec<f32>>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    activation: Activation,
    path: ProductPath,
}

/// One product path measured on a probe batch.
#[derive(Debug, Clone, Copy)]
pub struct PathMeasure {
    pub path: ProductPath,
    /// Probe items per second: tokens for text encoders, pictures for image towers.
    pub per_s: f64,
    /// Worst cosine of the path's outputs against the f32 path's.
    pub worst_cosine: f32,
}

/// The parity bar a path must meet to be chosen by `dtype = "auto"`.
pub const PARITY_BAR: f32 = 0.999;

/// The fastest measured path whose worst cosine meets [`PARITY_BAR`] (the f32 reference
/// always does).
pub fn choose(measures: &[PathMeasure]) -> Option<PathMeasure> {
    measures
        .iter()
        .filter(|m| m.worst_cosine >= PARITY_BAR)
        .max_by(|a, b| a.per_s.total_cmp(&b.per_s))
        .copied()
}

/// The path a pipeline's `dtype` names (see [`Encoder::set_dtype`]).
pub fn resolve_dtype(
    model: &str,
    dtype: &str,
    chosen: Option<ProductPath>,
) -> std::result::Result<ProductPath, String> {
    Ok(match dtype {
        "f32" => ProductPath::default_f32(),
        "bf16" => ProductPath::default_bf16().unwrap_or_else(|| {
            tracing::warn!(
                %model,
                "dtype bf16 needs a CPU with AVX512_BF16 or MKL's bf16 products: using f32"
            );
            ProductPath::default_f32()
        }),
        "auto" => chosen.ok_or("dtype auto needs a measured choice")?,
        other => match ProductPath::from_id(other) {
            Some(path) if path.available() => path,
            Some(path) => {
                return Err(format!(
                    "dtype {other:?}: {} is not available on this machine",
                    path.describe()
                ))
            }
            None => {
                return Err(format!(
                    "unknown dtype {other:?} (auto, f32, bf16, or a path: f32-openblas, \
                     f32-mkl, f32-rust, bf16-avx512, bf16-mkl)"
                ))
            }
        },
    })
}

/// Cosine similarity in f64 (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// A batch of (unpadded) token sequences.
pub struct TokenBatch {
    pub ids: Vec<Vec<u32>>,
    pub type_ids: Vec<Vec<u32>>,
}

/// Hidden states of packed sequences: rows `spans[i].0 .. spans[i].0 + spans[i].1` of `data`
/// (`[tokens × hidden]`) belong to sequence `i`.
pub struct Hidden {
    pub data: Vec<f32>,
    pub hidden: usize,
    pub spans: Vec<(usize, usize)>,
}

impl Hidden {
    fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.hidden..(r + 1) * self.hidden]
    }

    /// Mean of each sequence's token states.
    pub fn mean_pool(&self) -> Vec<Vec<f32>> {
        self.spans
            .iter()
            .map(|&(start, len)| {
                let mut acc = vec![0f32; self.hidden];
                for r in start..start + len {
                    for (a, v) in acc.iter_mut().zip(self.row(r)) {
                        *a += v;
                    }
                }
                let n = len.max(1) as f32;
                acc.iter_mut().for_each(|a| *a /= n);
                acc
            })
            .collect()
    }

    /// Each sequence's first token state.
    pub fn first_token(&self) -> Vec<Vec<f32>> {
        self.spans
            .iter()
            .map(|&(start, _)| self.row(start).to_vec())
            .collect()
    }
}

/// L2-normalizes a vector in place.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

impl Encoder {
    /// The path the linear layers' products run on.
    pub fn path(&self) -> ProductPath {
        self.path
    }

    fn dense_layers(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.layers.iter_mut().flat_map(|layer| {
            [
                &mut layer.qkv,
                &mut layer.attention_out,
                &mut layer.intermediate,
                &mut layer.output,
            ]
        })
    }

    /// Runs the products on `path` from now on, building the weight forms it needs (the
    /// others are kept until [`Encoder::keep_only_path`]).
    pub fn use_path(&mut self, path: ProductPath) -> Result<(), String> {
        for dense in self.dense_layers() {
            dense.prepare(path)?;
        }
        self.path = path;
        Ok(())
    }

    /// Frees every weight form the current path does not use (bf16 paths free the f32 copy).
    pub fn keep_only_path(&mut self) {
        let path = self.path;
        for dense in self.dense_layers() {
            dense.keep_only(path);
        }
    }

    /// Measures every path this machine offers on `probe`: its speed and its worst cosine
    /// against the f32 path's output (first-token and mean-pooled states of each sequence).
    /// Leaves the encoder on the default f32 path, every form kept.
    pub fn measure_paths(&mut self, probe: &TokenBatch) -> Result<Vec<PathMeasure>, String> {
        let tokens: usize = probe.ids.iter().map(Vec::len).sum();
        super::paths::measure(self, tokens, Self::use_path, |encoder| {
            let hidden = encoder.forward(probe).map_err(|e| e.to_string())?;
            let mut outputs = hidden.first_token();
            outputs.extend(hidden.mean_pool());
            Ok(outputs)
        })
    }

    /// Selects the products' path from a pipeline's `dtype`: `"f32"` (the default library),
    /// `"bf16"` (the fastest bf16 path; f32 with a warning where the CPU has none), a path id
    /// (`"f32-mkl"`, `"bf16-avx512"`, ...; see [`ProductPath::id`]), or `"auto"`, which takes
    /// `chosen` (from [`choose`] on [`Encoder::measure_paths`]). Frees the weight forms the
    /// path does not use.
    pub fn set_dtype(
        &mut self,
        model: &str,
        dtype: &str,
        chosen: Option<ProductPath>,
    ) -> std::result::Result<ProductPath, String> {
        let path = resolve_dtype(model, dtype, chosen)?;
        self.use_path(path)?;
        self.keep_only_path();
        Ok(path)
    }

    /// Loads from a var builder rooted where `embeddings.*` and `encoder.*` live.
    pub fn load(vb: VarBuilder, config: &EncoderConfig) -> candle_core::Result<Self> {
        let c = config;
        let emb = vb.pp("embeddings");
        let token_type =
            if c.type_vocab_size > 0 && emb.contains_tensor("token_type_embeddings.weight") {
                Some(flat(emb.get(
                    (c.type_vocab_size, c.hidden_size),
                    "token_type_embeddings.weight",
                )?)?)
            } else {
                None
            };
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i), c))
            .collect::<candle_core::Result<Vec<_>>>()?;
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "hidden_size {} is not divisible by {} heads",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        Ok(Self {
            config: c.clone(),
            word: flat(emb.get((c.vocab_size, c.hidden_size), "word_embeddings.weight")?)?,
            position: flat(emb.get(
                (c.max_position_embeddings, c.hidden_size),
                "position_embeddings.weight",
            )?)?,
            token_type,
            embedding_norm: norm(c.hidden_size, c.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            activation: activation(&c.hidden_act)?,
            path: ProductPath::default_f32(),
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Runs the encoder over a batch of sequences, packed without padding.
    pub fn forward(&self, batch: &TokenBatch) -> candle_core::Result<Hidden> {
        let h = self.config.hidden_size;
        let mut spans = Vec::with_capacity(batch.ids.len());
        let mut total = 0;
        for seq in &batch.ids {
            spans.push((total, seq.len()));
            total += seq.len();
        }
        // Embeddings: word + position + token type, then layer norm.
        let pad = self.config.pad_token_id;
        let mut x = vec![0f32; total * h];
        for (i, seq) in batch.ids.iter().enumerate() {
            if seq.len() > self.config.max_tokens() {
                candle_core::bail!(
                    "sequence of {} tokens exceeds the model window {}",
                    seq.len(),
                    self.config.max_tokens()
                );
            }
            for (p, &id) in seq.iter().enumerate() {
                let id = id as usize;
                if id >= self.config.vocab_size {
                    candle_core::bail!(
                        "token id {id} is outside the vocabulary ({})",
                        self.config.vocab_size
                    );
                }
                let position = if self.config.roberta_positions() {
                    pad + 1 + p
                } else {
                    p
                };
                let row = &mut x[(spans[i].0 + p) * h..(spans[i].0 + p + 1) * h];
                row.copy_from_slice(&self.word[id * h..(id + 1) * h]);
                for (v, e) in row
                    .iter_mut()
                    .zip(&self.position[position * h..(position + 1) * h])
                {
                    *v += e;
                }
                if let Some(types) = &self.token_type {
                    let t = batch
                        .type_ids
                        .get(i)
                        .and_then(|r| r.get(p))
                        .copied()
                        .unwrap_or(0) as usize;
                    let t = t.min(self.config.type_vocab_size - 1);
                    for (v, e) in row.iter_mut().zip(&types[t * h..(t + 1) * h]) {
                        *v += e;
                    }
                }
            }
        }
        let n = &self.embedding_norm;
        kernels::layer_norm(&mut x, &n.gamma, &n.beta, n.eps);

        WORKSPACE.with(|cell| {
            // A forward pass started on this thread while another is in progress (a rayon
            // worker that stole an encoder call while waiting) gets buffers of its own.
            let mut own = None;
            let mut shared = cell.try_borrow_mut().ok();
            let ws = match shared.as_deref_mut() {
                Some(ws) => ws,
                None => own.insert(Workspace::default()),
            };
            let heads = self.config.num_attention_heads;
            let path = self.path;
            if path == ProductPath::Bf16Mkl && attention::mkl_supported(h / heads) {
                self.layers_bf16_mkl(&mut x, &spans, ws);
                return;
            }
            let Workspace {
                qkv,
                context,
                attended,
                inner,
                ..
            } = ws;
            let fused = attention::supported(h / heads);
            let bf16 = path.dtype() == "bf16";
            for layer in &self.layers {
                let qkv = grow(qkv, total * 3 * h);
                layer.qkv.forward_into(path, &x, total, None, qkv);
                let context = grow(context, total * h);
                if fused {
                    attention::attention(qkv, h, heads, &spans, bf16, context);
                } else {
                    kernels::attention(qkv, h, heads, &spans, context);
                }
                let attended = grow(attended, total * h);
                layer
                    .attention_out
                    .forward_into(path, context, total, None, attended);
                let n = &layer.attention_norm;
                kernels::add_layer_norm(attended, &x, &n.gamma, &n.beta, n.eps);
                let inner = grow(inner, total * self.config.intermediate_size);
                layer.intermediate.forward_into(
                    path,
                    attended,
                    total,
                    Some(self.activation),
                    inner,
                );
                // The layer's input is not needed past the first residual: the output
                // overwrites it.
                layer.output.forward_into(path, inner, total, None, &mut x);
                let n = &layer.output_norm;
                kernels::add_layer_norm(&mut x, attended, &n.gamma, &n.beta, n.eps);
            }
        });
        Ok(Hidden {
            data: x,
            hidden: h,
            spans,
        })
    }

    /// The layers on the `bf16-mkl` path, with activations kept in bf16 between products:
    /// MKL's products take bf16 rows and leave out the bias, and the pass after each adds it
    /// (with the residual and layer norm, or the activation) and writes the bf16 rows the next
    /// product reads, so no activation is rounded in a pass of its own. Apart from attention,
    /// which needs every row of a sequence, each layer runs as one pass over blocks of
    /// [`BLOCK_ROWS`] rows, from the attention output's product to the next layer's queries,
    /// keys and values, its intermediate values staying in cache. The residual stream `x`
    /// stays in f32.
    fn layers_bf16_mkl(&self, x: &mut [f32], spans: &[(usize, usize)], ws: &mut Workspace) {
        let h = self.config.hidden_size;
        let inter = self.config.intermediate_size;
        let heads = self.config.num_attention_heads;
        let total = x.len() / h;
        let qkv16 = grow(&mut ws.qkv16, total * 3 * h);
        let context16 = grow(&mut ws.context16, total * h);
        // One block's rows through `f`, with this thread's block buffers.
        let with_block = |f: &mut dyn FnMut(&mut BlockScratch)| {
            BLOCK.with(|cell| match cell.try_borrow_mut() {
                Ok(mut scratch) => f(&mut scratch),
                // A row pass started on this thread while another is in progress (a rayon
                // worker that stole a task while waiting) gets buffers of its own.
                Err(_) => f(&mut BlockScratch::default()),
            })
        };
        // The first layer's queries, keys and values from the embeddings.
        let Some(first) = self.layers.first() else {
            return;
        };
        x.par_chunks(BLOCK_ROWS * h)
            .zip(qkv16.par_chunks_mut(BLOCK_ROWS * 3 * h))
            .for_each(|(xb, qb)| {
                let rows = xb.len() / h;
                with_block(&mut |s| {
                    let x16 = grow(&mut s.rows16, rows * h);
                    kernels::path::to_bf16_rows(xb, x16);
                    let product = grow(&mut s.product, rows * 3 * h);
                    first.qkv.mkl_multiply(x16, rows, product);
                    kernels::bias_activate_rows_bf16(product, &first.qkv.bias, None, qb);
                })
            });
        for (i, layer) in self.layers.iter().enumerate() {
            attention::attention_mkl(qkv16, h, heads, spans, context16);
            let next = self.layers.get(i + 1);
            x.par_chunks_mut(BLOCK_ROWS * h)
                .zip(context16.par_chunks(BLOCK_ROWS * h))
                .zip(qkv16.par_chunks_mut(BLOCK_ROWS * 3 * h))
                .for_each(|((xb, cb), qb)| {
                    let rows = xb.len() / h;
                    with_block(&mut |s| {
                        let BlockScratch {
                            product,
                            attended,
                            rows16,
                            inner16,
                        } = s;
                        // Attention output, + bias + the layer's input, layer norm.
                        let attended = grow(attended, rows * h);
                        layer.attention_out.mkl_multiply(cb, rows, attended);
                        let a16 = grow(rows16, rows * h);
                        let n = &layer.attention_norm;
                        kernels::bias_add_layer_norm_rows(
                            attended,
                            &layer.attention_out.bias,
                            xb,
                            &n.gamma,
                            &n.beta,
                            n.eps,
                            Some(a16),
                        );
                        // Feed-forward: intermediate + bias, activation, output.
                        let wide = grow(product, rows * inter);
                        layer.intermediate.mkl_multiply(a16, rows, wide);
                        let inner16 = grow(inner16, rows * inter);
                        kernels::bias_activate_rows_bf16(
                            wide,
                            &layer.intermediate.bias,
                            Some(self.activation),
                            inner16,
                        );
                        // The layer's input is not needed past the first residual: the
                        // output overwrites it.
                        layer.output.mkl_multiply(inner16, rows, xb);
                        let n = &layer.output_norm;
                        let a16 = grow(rows16, rows * h);
                        kernels::bias_add_layer_norm_rows(
                            xb,
                            &layer.output.bias,
                            attended,
                            &n.gamma,
                            &n.beta,
                            n.eps,
                            next.is_some().then_some(&mut *a16),
                        );
                        // The next layer's queries, keys and values from these rows.
                        if let Some(next) = next {
                            let wide = grow(product, rows * 3 * h);
                            next.qkv.mkl_multiply(a16, rows, wide);
                            kernels::bias_activate_rows_bf16(wide, &next.qkv.bias, None, qb);
                        }
                    })
                });
        }
    }
}

/// Opens the weights of a model folder: `model.safetensors` (or sharded safetensors), else
/// `pytorch_model.bin`.
pub fn var_builder(
    dir: &std::path::Path,
    device: &Device,
) -> candle_core::Result<VarBuilder<'static>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        let data = std::fs::read(&single)?;
        return VarBuilder::from_buffered_safetensors(data, DType::F32, device);
    }
    let mut shards: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    shards.sort();
    if !shards.is_empty() {
        // SAFETY: the files are memory-mapped read-only and not modified while the model lives.
        return unsafe { VarBuilder::from_mmaped_safetensors(&shards, DType::F32, device) };
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return VarBuilder::from_pth(&bin, DType::F32, device);
    }
    candle_core::bail!(
        "no model.safetensors or pytorch_model.bin in {}",
        dir.display()
    )
}

/// The var builder rooted at the encoder, whatever prefix the checkpoint uses.
pub fn encoder_root(vb: &VarBuilder<'static>) -> (VarBuilder<'static>, &'static str) {
    for prefix in ["bert", "roberta", "model"] {
        if vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")) {
            return (vb.pp(prefix), prefix);
        }
    }
    (vb.clone(), "")
}
