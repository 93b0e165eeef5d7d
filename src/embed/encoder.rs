//! The BERT-family transformer encoder (BERT, RoBERTa, XLM-RoBERTa), shared by the
//! sentence embedders and the cross-encoder reranker. Written here rather than taken from
//! candle-transformers so that one code path covers both families (position ids differ), both
//! checkpoint layouts (bare or `bert.`/`roberta.` prefixed) and the classification heads, and so
//! the hot path can be tuned in one place.

use std::cell::RefCell;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::{self, attention, bf16, Activation};

/// Intermediate buffers of the forward pass, kept per thread and reused across layers and
/// batches: the largest is `[tokens × intermediate]` (50 MB for 8,192 MiniLM tokens), and
/// allocating it afresh per layer cost a page fault per 4 KiB written.
#[derive(Default)]
struct Workspace {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

/// The first `n` values of `buf`, growing it if needed (contents unspecified).
fn grow(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
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

/// A linear layer's weight `[out × in]` and bias `[out]`, row-major; on the bf16 path the
/// weight is packed for [`bf16::matmul`] instead (and the f32 copy freed).
pub struct Dense {
    weight: Vec<f32>,
    pub bias: Vec<f32>,
    packed: Option<bf16::PackedBf16>,
}

impl Dense {
    pub fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Self> {
        Ok(Self {
            weight: flat(vb.get((outputs, inputs), "weight")?)?,
            bias: flat(vb.get(outputs, "bias")?)?,
            packed: None,
        })
    }

    /// Packs the weight as bf16 and frees the f32 copy; products then run on the bf16
    /// kernel. Once packed, calling it again changes nothing.
    pub fn use_bf16(&mut self) {
        if self.packed.is_none() {
            let packed = bf16::PackedBf16::pack(&self.weight, self.bias.len(), self.inputs());
            self.packed = Some(packed);
            self.weight = Vec::new();
        }
    }

    /// `out[t × out] = activation(x[t × in] · wᵀ + bias)`.
    pub fn forward_into(
        &self,
        x: &[f32],
        t: usize,
        activation: Option<Activation>,
        out: &mut [f32],
    ) {
        match &self.packed {
            Some(packed) => bf16::matmul(x, t, packed, &self.bias, activation, out),
            None => kernels::linear_activate(
                x,
                t,
                self.inputs(),
                &self.weight,
                &self.bias,
                activation,
                out,
            ),
        }
    }

    pub fn inputs(&self) -> usize {
        match &self.packed {
            Some(packed) => packed.inputs(),
            None => self.weight.len() / self.bias.len(),
        }
    }

    /// `x[t × in] -> [t × out]`.
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let mut out = vec![0f32; t * self.bias.len()];
        self.forward_into(x, t, None, &mut out);
        out
    }
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
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &EncoderConfig) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let attention = vb.pp("attention");
        let parts = ["query", "key", "value"]
            .iter()
            .map(|name| Dense::load(attention.pp("self").pp(name), h, h))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let qkv = Dense {
            weight: parts
                .iter()
                .flat_map(|p| p.weight.iter().copied())
                .collect(),
            bias: parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
            packed: None,
        };
        Ok(Self {
            qkv,
            attention_out: Dense::load(attention.pp("output").pp("dense"), h, h)?,
            attention_norm: norm(h, c.layer_norm_eps, attention.pp("output").pp("LayerNorm"))?,
            intermediate: Dense::load(vb.pp("intermediate").pp("dense"), h, c.intermediate_size)?,
            output: Dense::load(vb.pp("output").pp("dense"), c.intermediate_size, h)?,
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
    /// Switches every layer's products to the bf16 kernel (see [`bf16`]). Returns `false`,
    /// changing nothing, when the CPU lacks AVX512_BF16.
    pub fn use_bf16(&mut self) -> bool {
        if !bf16::supported() {
            return false;
        }
        for layer in &mut self.layers {
            for dense in [
                &mut layer.qkv,
                &mut layer.attention_out,
                &mut layer.intermediate,
                &mut layer.output,
            ] {
                dense.use_bf16();
            }
        }
        true
    }

    /// Whether the products run on the bf16 kernels (projections and attention).
    fn uses_bf16(&self) -> bool {
        self.layers.iter().any(|l| l.qkv.packed.is_some())
    }

    /// Selects the number type of the products: `"f32"`, or `"bf16"` where the CPU has
    /// AVX512_BF16 (elsewhere it logs why and stays on f32). Returns the type in use, or why
    /// `dtype` is not one.
    pub fn set_dtype(
        &mut self,
        model: &str,
        dtype: &str,
    ) -> std::result::Result<&'static str, String> {
        match dtype {
            "f32" if self.uses_bf16() => {
                Err("the model is already packed as bf16: load it again for f32".into())
            }
            "f32" => Ok("f32"),
            "bf16" => {
                if self.use_bf16() {
                    Ok("bf16")
                } else {
                    tracing::warn!(%model, "dtype bf16 needs a CPU with AVX512_BF16: using f32");
                    Ok("f32")
                }
            }
            other => Err(format!("unknown dtype {other:?} (f32 or bf16)")),
        }
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
            let Workspace {
                qkv,
                context,
                attended,
                inner,
            } = ws;
            let heads = self.config.num_attention_heads;
            let fused = attention::supported(h / heads);
            let bf16 = self.uses_bf16();
            for layer in &self.layers {
                let qkv = grow(qkv, total * 3 * h);
                layer.qkv.forward_into(&x, total, None, qkv);
                let context = grow(context, total * h);
                if fused {
                    attention::attention(qkv, h, heads, &spans, bf16, context);
                } else {
                    kernels::attention(qkv, h, heads, &spans, context);
                }
                let attended = grow(attended, total * h);
                layer
                    .attention_out
                    .forward_into(context, total, None, attended);
                let n = &layer.attention_norm;
                kernels::add_layer_norm(attended, &x, &n.gamma, &n.beta, n.eps);
                let inner = grow(inner, total * self.config.intermediate_size);
                layer
                    .intermediate
                    .forward_into(attended, total, Some(self.activation), inner);
                // The layer's input is not needed past the first residual: the output
                // overwrites it.
                layer.output.forward_into(inner, total, None, &mut x);
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
