//! The BERT-family transformer encoder (BERT, RoBERTa, XLM-RoBERTa) on candle, shared by the
//! sentence embedders and the cross-encoder reranker. Written here rather than taken from
//! candle-transformers so that one code path covers both families (position ids differ), both
//! checkpoint layouts (bare or `bert.`/`roberta.` prefixed) and the classification heads, and so
//! the hot path can be tuned in one place.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct EncoderConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default)]
    pub num_labels: Option<usize>,
    #[serde(default)]
    pub id2label: Option<serde_json::Value>,
}

fn default_model_type() -> String {
    "bert".into()
}
fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl EncoderConfig {
    /// RoBERTa-style models number positions from `pad_token_id + 1`.
    pub fn roberta_positions(&self) -> bool {
        matches!(
            self.model_type.as_str(),
            "roberta" | "xlm-roberta" | "camembert"
        )
    }

    /// Positions available to real tokens.
    pub fn max_tokens(&self) -> usize {
        if self.roberta_positions() {
            self.max_position_embeddings - self.pad_token_id - 1
        } else {
            self.max_position_embeddings
        }
    }

    /// Number of classifier outputs (cross-encoders have 1).
    pub fn labels(&self) -> usize {
        self.num_labels
            .or_else(|| {
                self.id2label
                    .as_ref()
                    .and_then(|v| v.as_object())
                    .map(|m| m.len())
            })
            .unwrap_or(1)
    }

    pub fn is_supported(&self) -> bool {
        matches!(
            self.model_type.as_str(),
            "bert" | "roberta" | "xlm-roberta" | "camembert"
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> candle_core::Result<Self> {
        Ok(match name {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => candle_core::bail!("unsupported hidden_act {other}"),
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::GeluErf => xs.gelu_erf(),
            Activation::GeluTanh => xs.gelu(),
            Activation::Relu => xs.relu(),
        }
    }
}

fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    // Older checkpoints name the parameters gamma/beta.
    let (weight, bias) = if vb.contains_tensor("weight") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(LayerNorm::new(weight, bias, eps))
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &EncoderConfig) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let attention = vb.pp("attention");
        Ok(Self {
            query: candle_nn::linear(h, h, attention.pp("self").pp("query"))?,
            key: candle_nn::linear(h, h, attention.pp("self").pp("key"))?,
            value: candle_nn::linear(h, h, attention.pp("self").pp("value"))?,
            attention_out: candle_nn::linear(h, h, attention.pp("output").pp("dense"))?,
            attention_norm: layer_norm(
                h,
                c.layer_norm_eps,
                attention.pp("output").pp("LayerNorm"),
            )?,
            intermediate: candle_nn::linear(
                h,
                c.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?,
            output: candle_nn::linear(c.intermediate_size, h, vb.pp("output").pp("dense"))?,
            output_norm: layer_norm(h, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
        })
    }
}

/// A loaded encoder: token ids in, contextual hidden states out.
pub struct Encoder {
    config: EncoderConfig,
    word: Embedding,
    position: Embedding,
    token_type: Option<Embedding>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    activation: Activation,
    device: Device,
}

/// A padded batch of token ids.
pub struct TokenBatch {
    pub ids: Vec<Vec<u32>>,
    pub type_ids: Vec<Vec<u32>>,
}

impl Encoder {
    /// Loads from a var builder rooted where `embeddings.*` and `encoder.*` live.
    pub fn load(vb: VarBuilder, config: &EncoderConfig) -> candle_core::Result<Self> {
        let c = config;
        let emb = vb.pp("embeddings");
        let token_type =
            if c.type_vocab_size > 0 && emb.contains_tensor("token_type_embeddings.weight") {
                Some(candle_nn::embedding(
                    c.type_vocab_size,
                    c.hidden_size,
                    emb.pp("token_type_embeddings"),
                )?)
            } else {
                None
            };
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i), c))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            config: c.clone(),
            word: candle_nn::embedding(c.vocab_size, c.hidden_size, emb.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                c.max_position_embeddings,
                c.hidden_size,
                emb.pp("position_embeddings"),
            )?,
            token_type,
            embedding_norm: layer_norm(c.hidden_size, c.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            activation: Activation::parse(&c.hidden_act)?,
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the encoder over a batch of (unpadded) sequences. Returns hidden states
    /// `[batch, max_len, hidden]` and the attention mask `[batch, max_len]` as f32.
    pub fn forward(&self, batch: &TokenBatch) -> candle_core::Result<(Tensor, Tensor)> {
        let b = batch.ids.len();
        let len = batch.ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let pad = self.config.pad_token_id as u32;
        let mut ids = vec![pad; b * len];
        let mut types = vec![0u32; b * len];
        let mut positions = vec![0u32; b * len];
        let mut mask = vec![0f32; b * len];
        for (row, seq) in batch.ids.iter().enumerate() {
            for (i, &t) in seq.iter().enumerate() {
                ids[row * len + i] = t;
                mask[row * len + i] = 1.0;
                if let Some(tt) = batch.type_ids.get(row).and_then(|r| r.get(i)) {
                    types[row * len + i] = *tt;
                }
            }
            for i in 0..len {
                positions[row * len + i] = if self.config.roberta_positions() {
                    if i < seq.len() {
                        pad + 1 + i as u32
                    } else {
                        pad
                    }
                } else {
                    i as u32
                };
            }
        }
        let dev = &self.device;
        let ids = Tensor::from_vec(ids, (b, len), dev)?;
        let positions = Tensor::from_vec(positions, (b, len), dev)?;
        let mask = Tensor::from_vec(mask, (b, len), dev)?;

        let mut hidden = self
            .word
            .forward(&ids)?
            .add(&self.position.forward(&positions)?)?;
        if let Some(tt) = &self.token_type {
            let types = Tensor::from_vec(types, (b, len), dev)?;
            hidden = hidden.add(&tt.forward(&types)?)?;
        }
        let mut hidden = self.embedding_norm.forward(&hidden)?;

        // Additive mask: 0 where attended, a large negative number on padding.
        let bias = ((mask.ones_like()? - &mask)? * -1e9)?.reshape((b, 1, 1, len))?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.hidden_size / heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        for layer in &self.layers {
            let split = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((b, len, heads, head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = split(layer.query.forward(&hidden)?)?;
            let k = split(layer.key.forward(&hidden)?)?;
            let v = split(layer.value.forward(&hidden)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((
                b,
                len,
                self.config.hidden_size,
            ))?;
            let attended = layer
                .attention_norm
                .forward(&layer.attention_out.forward(&context)?.add(&hidden)?)?;
            let inner = self
                .activation
                .forward(&layer.intermediate.forward(&attended)?)?;
            hidden = layer
                .output_norm
                .forward(&layer.output.forward(&inner)?.add(&attended)?)?;
        }
        Ok((hidden, mask))
    }
}

/// Mean of hidden states over real tokens: `[batch, hidden]`.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask3 = mask.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask3)?.sum(1)?;
    let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::MAX)?;
    summed.broadcast_div(&counts)
}

/// Hidden state of the first token: `[batch, hidden]`.
pub fn cls_pool(hidden: &Tensor) -> candle_core::Result<Tensor> {
    hidden.narrow(1, 0, 1)?.squeeze(1)
}

/// L2-normalizes rows.
pub fn normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norm = xs
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    xs.broadcast_div(&norm)
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
