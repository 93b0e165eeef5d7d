//! SigLIP (Zhai et al.) in transformers' `SiglipModel` layout (`google/siglip-*` and the
//! fixed-resolution SigLIP 2 checkpoints), both towers. The vision tower has no class token: a
//! learned probe attends over the patch tokens (`SiglipMultiheadAttentionPoolingHead`, a
//! `torch.nn.MultiheadAttention` with q|k|v stacked in `in_proj_weight`). The text tower runs
//! as the reference runs it: the text canonicalised (lower-cased, ASCII punctuation removed,
//! whitespace collapsed), at most 63 pieces and `</s>`, padded with `</s>` to 64, no attention
//! mask, pooled at the last position and passed through `head`.

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use super::clip::{
    num, tokenizer, tokenizer_file, tower_shape, vision_start, TextEmbeddings, VisionStart,
};
use super::efficientnet::StateDict;
use super::vit::{self, Norm, Patches, Transformer};
use super::{ImageModelError, Result};
use crate::kernels::conv::FeatureMap;
use crate::kernels::path::Linear;
use crate::kernels::Activation;

/// The attention-pooling head of the vision tower.
struct PoolingHead {
    probe: Vec<f32>,
    q: Linear,
    kv: Linear,
    out: Linear,
    norm: Norm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    activation: Activation,
}

impl PoolingHead {
    fn load(w: &mut StateDict, prefix: &str, shape: &vit::TowerShape) -> Result<Self> {
        let h = shape.hidden;
        let weight = w.take(&format!("{prefix}.attention.in_proj_weight"), &[3 * h, h])?;
        let bias = w.take(&format!("{prefix}.attention.in_proj_bias"), &[3 * h])?;
        Ok(Self {
            probe: w.take(&format!("{prefix}.probe"), &[1, 1, h])?,
            q: Linear::new(weight[..h * h].to_vec(), bias[..h].to_vec()),
            kv: Linear::new(weight[h * h..].to_vec(), bias[h..].to_vec()),
            out: vit::linear(w, &format!("{prefix}.attention.out_proj"), h, h)?,
            norm: Norm::load(w, &format!("{prefix}.layernorm"), h, shape.eps)?,
            fc1: vit::linear(w, &format!("{prefix}.mlp.fc1"), h, shape.intermediate)?,
            fc2: vit::linear(w, &format!("{prefix}.mlp.fc2"), shape.intermediate, h)?,
            heads: shape.heads,
            activation: shape.activation,
        })
    }

    /// The pooled vector of each sequence of `x` (`[t × hidden]`; `spans` are each
    /// sequence's first row and length): one probe query attending over the sequence's tokens,
    /// then the output projection and the residual MLP.
    fn pool(&self, x: &[f32], spans: &[(usize, usize)]) -> Vec<Vec<f32>> {
        let h = self.probe.len();
        let d = h / self.heads;
        let q = vit::apply(&self.q, &self.probe, 1, None);
        let kv = vit::apply(&self.kv, x, x.len() / h, None);
        let scale = 1.0 / (d as f32).sqrt();
        let mut context = vec![0f32; spans.len() * h];
        for (&(first, n), context) in spans.iter().zip(context.chunks_mut(h)) {
            let kv = &kv[first * 2 * h..(first + n) * 2 * h];
            for head in 0..self.heads {
                let qh = &q[head * d..(head + 1) * d];
                let mut scores: Vec<f32> = (0..n)
                    .map(|j| {
                        let k = &kv[j * 2 * h + head * d..j * 2 * h + (head + 1) * d];
                        qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale
                    })
                    .collect();
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                for (j, s) in scores.iter().enumerate() {
                    let v = &kv[j * 2 * h + h + head * d..j * 2 * h + h + (head + 1) * d];
                    for (c, value) in context[head * d..(head + 1) * d].iter_mut().zip(v) {
                        *c += s / sum * value;
                    }
                }
            }
        }
        let rows = spans.len();
        let attended = vit::apply(&self.out, &context, rows, None);
        let mut normed = attended.clone();
        self.norm.apply(&mut normed);
        let inner = vit::apply(&self.fc1, &normed, rows, Some(self.activation));
        let mlp = vit::apply(&self.fc2, &inner, rows, None);
        attended
            .chunks(h)
            .zip(mlp.chunks(h))
            .map(|(a, m)| a.iter().zip(m).map(|(a, m)| a + m).collect())
            .collect()
    }
}

struct TextTower {
    tokenizer: Tokenizer,
    embeddings: TextEmbeddings,
    encoder: Transformer,
    final_norm: Norm,
    head: Linear,
    /// The fixed text length (64): every text is padded to it.
    length: usize,
    pad: u32,
}

/// A SigLIP model: the vision tower and, when the folder has a tokenizer, the text tower.
pub struct Siglip {
    patches: Patches,
    positions: Vec<f32>,
    encoder: Transformer,
    post_norm: Norm,
    head: PoolingHead,
    hidden: usize,
    text: Option<TextTower>,
}

/// SigLIP's text canonicalisation (big_vision's `_canonicalize_text`, which
/// `SiglipTokenizer` applies): lower-case, drop ASCII punctuation, collapse whitespace, trim.
pub fn canonicalize(text: &str) -> String {
    let lowered: String = text
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    lowered.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Siglip {
    /// Loads a `SiglipModel` from its config and weights; the text tower needs
    /// `tokenizer.json` or `spiece.model` in `dir`.
    pub fn load(config: &Value, mut w: StateDict, dir: &Path) -> Result<Self> {
        let VisionStart {
            vision,
            text,
            shape: vshape,
            grid,
            patches,
            ..
        } = vision_start(config, &mut w, "gelu_pytorch_tanh", 1e-6, 16)?;
        let h = vshape.hidden;
        if vision.get("vision_use_head").and_then(Value::as_bool) == Some(false) {
            return Err(ImageModelError::Unsupported(
                "vision_use_head false: a SigLIP without its pooling head has no image embedding"
                    .into(),
            ));
        }
        let positions = w.take(
            "vision_model.embeddings.position_embedding.weight",
            &[grid * grid, h],
        )?;
        let encoder = Transformer::load(&mut w, "vision_model.encoder", vshape, false)?;
        let post_norm = Norm::load(&mut w, "vision_model.post_layernorm", h, vshape.eps)?;
        let head = PoolingHead::load(&mut w, "vision_model.head", &vshape)?;

        let text = if let Some(file) = tokenizer_file(dir) {
            let tshape = tower_shape(&text, (768, 3072, 12, 12), "gelu_pytorch_tanh", 1e-6)?;
            let embeddings = TextEmbeddings::load(&mut w, "text_model.embeddings", tshape.hidden)?;
            let length = num(&text, "max_position_embeddings", 64).min(embeddings.window);
            let out = w.dims("text_model.head.weight")?[0];
            if out != h {
                return Err(ImageModelError::Unsupported(format!(
                    "text head gives {out} dimensions, the image tower {h}"
                )));
            }
            Some(TextTower {
                tokenizer: tokenizer(&file, length)?,
                encoder: Transformer::load(&mut w, "text_model.encoder", tshape, false)?,
                final_norm: Norm::load(
                    &mut w,
                    "text_model.final_layer_norm",
                    tshape.hidden,
                    tshape.eps,
                )?,
                head: vit::linear(&mut w, "text_model.head", tshape.hidden, out)?,
                embeddings,
                length,
                pad: num(&text, "pad_token_id", 1) as u32,
            })
        } else {
            None
        };
        Ok(Self {
            patches,
            positions,
            encoder,
            post_norm,
            head,
            hidden: h,
            text,
        })
    }

    /// Width of the shared embedding space.
    pub fn dims(&self) -> usize {
        self.hidden
    }

    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// The image embedding of a `[3, h, w]` picture.
    pub fn embed_image(&self, pixels: &FeatureMap) -> Vec<f32> {
        self.embed_images(std::slice::from_ref(pixels))
            .pop()
            .expect("one picture in, one out")
    }

    /// [`Siglip::embed_image`] of several pictures, packed into one pass of the tower.
    pub fn embed_images(&self, pictures: &[FeatureMap]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let mut x = Vec::new();
        let mut spans = Vec::with_capacity(pictures.len());
        for pixels in pictures {
            let (mut tokens, n) = self.patches.embed(pixels);
            for (v, p) in tokens.iter_mut().zip(&self.positions) {
                *v += p;
            }
            spans.push((x.len() / h, n));
            x.extend_from_slice(&tokens);
        }
        self.encoder.forward(&mut x, &spans);
        self.post_norm.apply(&mut x);
        self.head.pool(&x, &spans)
    }

    /// The towers' transformers (vision, then text where present).
    pub fn transformers(&self) -> Vec<&Transformer> {
        let mut all = vec![&self.encoder];
        if let Some(text) = &self.text {
            all.push(&text.encoder);
        }
        all
    }

    /// The towers' transformers (vision, then text where present), for path selection.
    pub fn transformers_mut(&mut self) -> Vec<&mut Transformer> {
        let mut all = vec![&mut self.encoder];
        if let Some(text) = &mut self.text {
            all.push(&mut text.encoder);
        }
        all
    }

    fn text_tower(&self) -> Result<&TextTower> {
        self.text.as_ref().ok_or_else(|| {
            ImageModelError::Unsupported(
                "this SigLIP folder has no tokenizer.json or spiece.model: no text tower".into(),
            )
        })
    }

    /// The model's input ids for `text`: canonicalised, truncated to 63 pieces and `</s>`,
    /// padded with the pad id to the fixed length.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let tower = self.text_tower()?;
        let encoding = tower
            .tokenizer
            .encode(canonicalize(text), true)
            .map_err(|e| ImageModelError::Unsupported(format!("tokenizing: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        ids.resize(tower.length, tower.pad);
        Ok(ids)
    }

    /// Text embeddings (not normalised) of `texts`, in order.
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let tower = self.text_tower()?;
        let ids = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>>>()?;
        let (mut x, spans) = tower.embeddings.embed(&ids)?;
        tower.encoder.forward(&mut x, &spans);
        let h = tower.embeddings.hidden;
        Ok(spans
            .iter()
            .map(|&(start, len)| {
                let last = start + len - 1;
                let mut pooled = x[last * h..(last + 1) * h].to_vec();
                tower.final_norm.apply(&mut pooled);
                vit::apply(&tower.head, &pooled, 1, None)
            })
            .collect())
    }
}
