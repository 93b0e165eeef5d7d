//! CLIP (Radford et al.) in transformers' `CLIPModel` layout (`openai/clip-vit-*` and OpenCLIP
//! checkpoints converted to it), both towers, so text→image and image→image share one space.
//! Written on the kernels rather than taken from candle-transformers, whose CLIP always uses
//! QuickGELU: here the activation is the config's `hidden_act` (QuickGELU for OpenAI's
//! checkpoints, exact GELU for most OpenCLIP ones). Text longer than the 77-position window is
//! truncated (`<|startoftext|>`, 75 tokens, `<|endoftext|>`), and the text is pooled where
//! transformers pools it: at the first end-of-text token, or, for configs that still carry the
//! old `eos_token_id = 2`, at the highest token id (which is `<|endoftext|>`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::efficientnet::StateDict;
use super::vit::{self, Norm, Patches, TowerShape, Transformer};
use super::{ImageModelError, Result};
use crate::kernels::conv::FeatureMap;
use crate::kernels::path::Linear;

/// A number in a config section, or its transformers default.
pub(super) fn num(section: &Value, key: &str, default: u64) -> usize {
    section.get(key).and_then(Value::as_u64).unwrap_or(default) as usize
}

pub(super) fn float(section: &Value, key: &str, default: f64) -> f64 {
    section.get(key).and_then(Value::as_f64).unwrap_or(default)
}

/// A tower's sizes from its config section, with the family's defaults.
pub(super) fn tower_shape(
    section: &Value,
    defaults: (u64, u64, u64, u64),
    act: &str,
    eps: f64,
) -> Result<TowerShape> {
    let (hidden, intermediate, layers, heads) = defaults;
    let shape = TowerShape {
        hidden: num(section, "hidden_size", hidden),
        intermediate: num(section, "intermediate_size", intermediate),
        layers: num(section, "num_hidden_layers", layers),
        heads: num(section, "num_attention_heads", heads),
        eps: float(section, "layer_norm_eps", eps),
        activation: vit::activation(
            section
                .get("hidden_act")
                .and_then(Value::as_str)
                .unwrap_or(act),
        )?,
    };
    if shape.heads == 0 || !shape.hidden.is_multiple_of(shape.heads) {
        return Err(ImageModelError::Unsupported(format!(
            "{} heads do not divide hidden size {}",
            shape.heads, shape.hidden
        )));
    }
    Ok(shape)
}

/// What both ViT families read first: the config's two sections, the vision tower's shape
/// (with the family's activation and epsilon when the config leaves them out), its input size,
/// patch grid side and patch embedding.
pub(super) struct VisionStart {
    pub vision: Value,
    pub text: Value,
    pub shape: TowerShape,
    pub image_size: usize,
    pub grid: usize,
    pub patches: Patches,
}

pub(super) fn vision_start(
    config: &Value,
    w: &mut StateDict,
    act: &str,
    eps: f64,
    default_patch: u64,
) -> Result<VisionStart> {
    let vision = config.get("vision_config").cloned().unwrap_or(Value::Null);
    let text = config.get("text_config").cloned().unwrap_or(Value::Null);
    let shape = tower_shape(&vision, (768, 3072, 12, 12), act, eps)?;
    let image_size = num(&vision, "image_size", 224);
    let patch = num(&vision, "patch_size", default_patch);
    let patches = Patches::load(
        w,
        "vision_model.embeddings.patch_embedding",
        shape.hidden,
        patch,
    )?;
    Ok(VisionStart {
        vision,
        text,
        shape,
        image_size,
        grid: image_size / patch.max(1),
        patches,
    })
}

/// The tokenizer file of a model folder: `tokenizer.json`, else (SigLIP's Hub repos) a
/// SentencePiece `spiece.model`.
pub(super) fn tokenizer_file(dir: &Path) -> Option<PathBuf> {
    ["tokenizer.json", "spiece.model"]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// The tokenizer in `path` (see [`tokenizer_file`]), truncating to `max_length` tokens with
/// its specials.
pub(super) fn tokenizer(path: &Path, max_length: usize) -> Result<Tokenizer> {
    let bad = |reason: String| ImageModelError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let mut tokenizer = if path.extension().is_some_and(|e| e == "model") {
        super::spiece::load(path).map_err(bad)?
    } else {
        Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?
    };
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| bad(e.to_string()))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// Packed token rows `[t × hidden]` and each sequence's (first row, length).
pub(super) type Packed = (Vec<f32>, Vec<(usize, usize)>);

/// Token and position embeddings of a text tower.
pub(super) struct TextEmbeddings {
    pub tokens: Vec<f32>,
    pub positions: Vec<f32>,
    pub vocab: usize,
    pub window: usize,
    pub hidden: usize,
}

impl TextEmbeddings {
    pub fn load(w: &mut StateDict, prefix: &str, hidden: usize) -> Result<Self> {
        let tokens_name = format!("{prefix}.token_embedding.weight");
        let vocab = w.dims(&tokens_name)?[0];
        let positions_name = format!("{prefix}.position_embedding.weight");
        let window = w.dims(&positions_name)?[0];
        Ok(Self {
            tokens: w.take(&tokens_name, &[vocab, hidden])?,
            positions: w.take(&positions_name, &[window, hidden])?,
            vocab,
            window,
            hidden,
        })
    }

    /// Packs `sequences` into `[t × hidden]` rows (token + position) and their spans.
    pub fn embed(&self, sequences: &[Vec<u32>]) -> Result<Packed> {
        let h = self.hidden;
        let total: usize = sequences.iter().map(Vec::len).sum();
        let mut x = vec![0f32; total * h];
        let mut spans = Vec::with_capacity(sequences.len());
        let mut row = 0;
        for ids in sequences {
            if ids.len() > self.window {
                return Err(ImageModelError::Unsupported(format!(
                    "{} tokens exceed the text window of {}",
                    ids.len(),
                    self.window
                )));
            }
            spans.push((row, ids.len()));
            for (p, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id >= self.vocab {
                    return Err(ImageModelError::Unsupported(format!(
                        "token id {id} is outside the vocabulary of {}",
                        self.vocab
                    )));
                }
                let dst = &mut x[(row + p) * h..(row + p + 1) * h];
                for ((d, t), q) in dst
                    .iter_mut()
                    .zip(&self.tokens[id * h..(id + 1) * h])
                    .zip(&self.positions[p * h..(p + 1) * h])
                {
                    *d = t + q;
                }
            }
            row += ids.len();
        }
        Ok((x, spans))
    }
}

struct TextTower {
    tokenizer: Tokenizer,
    embeddings: TextEmbeddings,
    encoder: Transformer,
    final_norm: Norm,
    projection: Linear,
    eos: u32,
    /// Pool at the highest id (configs with the pre-fix `eos_token_id = 2`).
    pool_at_max_id: bool,
}

/// A CLIP model: the vision tower and, when the folder has a tokenizer, the text tower.
pub struct Clip {
    patches: Patches,
    class_embedding: Vec<f32>,
    positions: Vec<f32>,
    pre_norm: Norm,
    encoder: Transformer,
    post_norm: Norm,
    projection: Linear,
    hidden: usize,
    image_size: usize,
    dims: usize,
    text: Option<TextTower>,
}

impl Clip {
    /// Loads a `CLIPModel` from its config and weights; the text tower needs
    /// `tokenizer.json` in `dir`.
    pub fn load(config: &Value, mut w: StateDict, dir: &Path) -> Result<Self> {
        let VisionStart {
            text,
            shape: vshape,
            image_size,
            grid,
            patches,
            ..
        } = vision_start(config, &mut w, "quick_gelu", 1e-5, 32)?;
        let h = vshape.hidden;
        let class_embedding = w.take("vision_model.embeddings.class_embedding", &[h])?;
        let positions = w.take(
            "vision_model.embeddings.position_embedding.weight",
            &[grid * grid + 1, h],
        )?;
        // `pre_layrnorm` is transformers' own spelling.
        let pre_norm = Norm::load(&mut w, "vision_model.pre_layrnorm", h, vshape.eps)?;
        let encoder = Transformer::load(&mut w, "vision_model.encoder", vshape, false)?;
        let post_norm = Norm::load(&mut w, "vision_model.post_layernorm", h, vshape.eps)?;
        let dims = w.dims("visual_projection.weight")?[0];
        let projection = vit::linear(&mut w, "visual_projection", h, dims)?;

        let text = if let Some(file) = Some(dir.join("tokenizer.json")).filter(|p| p.is_file()) {
            let tshape = tower_shape(&text, (512, 2048, 12, 8), "quick_gelu", 1e-5)?;
            let embeddings = TextEmbeddings::load(&mut w, "text_model.embeddings", tshape.hidden)?;
            let window = num(&text, "max_position_embeddings", 77).min(embeddings.window);
            let eos = num(&text, "eos_token_id", 49407) as u32;
            Some(TextTower {
                tokenizer: tokenizer(&file, window)?,
                encoder: Transformer::load(&mut w, "text_model.encoder", tshape, true)?,
                final_norm: Norm::load(
                    &mut w,
                    "text_model.final_layer_norm",
                    tshape.hidden,
                    tshape.eps,
                )?,
                projection: vit::linear(&mut w, "text_projection", tshape.hidden, dims)?,
                embeddings,
                eos,
                pool_at_max_id: eos == 2,
            })
        } else {
            None
        };
        Ok(Self {
            patches,
            class_embedding,
            positions,
            pre_norm,
            encoder,
            post_norm,
            projection,
            hidden: h,
            image_size,
            dims,
            text,
        })
    }

    /// Width of the shared embedding space (`projection_dim`).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The input side the vision tower was trained at.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// The vision tower's pooled output (before the projection) and the image embedding.
    pub fn embed_image(&self, pixels: &FeatureMap) -> (Vec<f32>, Vec<f32>) {
        self.embed_images(std::slice::from_ref(pixels))
            .pop()
            .expect("one picture in, one out")
    }

    /// [`Clip::embed_image`] of several pictures, packed into one pass of the tower.
    pub fn embed_images(&self, pictures: &[FeatureMap]) -> Vec<(Vec<f32>, Vec<f32>)> {
        let h = self.hidden;
        let mut x = Vec::new();
        let mut spans = Vec::with_capacity(pictures.len());
        for pixels in pictures {
            let (patches, n) = self.patches.embed(pixels);
            let start = x.len();
            spans.push((start / h, n + 1));
            x.extend_from_slice(&self.class_embedding);
            x.extend_from_slice(&patches);
            for (v, p) in x[start..].iter_mut().zip(&self.positions) {
                *v += p;
            }
        }
        self.pre_norm.apply(&mut x);
        self.encoder.forward(&mut x, &spans);
        let mut pooled = Vec::with_capacity(pictures.len() * h);
        for &(first, _) in &spans {
            pooled.extend_from_slice(&x[first * h..(first + 1) * h]);
        }
        self.post_norm.apply(&mut pooled);
        let embeddings = vit::apply(&self.projection, &pooled, pictures.len(), None);
        pooled
            .chunks(h)
            .zip(embeddings.chunks(self.dims))
            .map(|(p, e)| (p.to_vec(), e.to_vec()))
            .collect()
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

    /// Token ids of `text` as the CLIP tokenizer gives them, truncated to the window.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let tower = self.text_tower()?;
        let encoding = tower
            .tokenizer
            .encode(text, true)
            .map_err(|e| ImageModelError::Unsupported(format!("tokenizing: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    fn text_tower(&self) -> Result<&TextTower> {
        self.text.as_ref().ok_or_else(|| {
            ImageModelError::Unsupported(
                "this CLIP folder has no tokenizer.json: no text tower".into(),
            )
        })
    }

    /// Text embeddings (projected, not normalised) of `texts`, in order, with the pooled
    /// hidden states before the projection.
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let tower = self.text_tower()?;
        let ids = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>>>()?;
        let (mut x, spans) = tower.embeddings.embed(&ids)?;
        tower.encoder.forward(&mut x, &spans);
        let h = tower.embeddings.hidden;
        let mut out = Vec::with_capacity(ids.len());
        for (seq, &(start, len)) in ids.iter().zip(&spans) {
            let at = if tower.pool_at_max_id {
                (0..len).max_by_key(|&i| (seq[i], std::cmp::Reverse(i)))
            } else {
                seq.iter().position(|&id| id == tower.eos)
            }
            .unwrap_or(len.saturating_sub(1));
            let mut pooled = x[(start + at) * h..(start + at + 1) * h].to_vec();
            tower.final_norm.apply(&mut pooled);
            let embedding = vit::apply(&tower.projection, &pooled, 1, None);
            out.push((pooled, embedding));
        }
        Ok(out)
    }
}
