//! Sentence embedding with a BERT-family model, exactly as sentence-transformers does it:
//! the model's tokenizer with its window, the configured pooling, optional normalization, and
//! the query/passage prefixes of the model card. Batches are formed by token budget from
//! length-sorted inputs so little compute is spent on padding.

use std::path::Path;

use candle_core::Device;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::encoder::{encoder_root, normalize, var_builder, Encoder, TokenBatch};
use crate::models::{ModelError, Pooling, Result, TextModelSpec};

/// Whether a text is a search query or a passage to index (prefixes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Query,
    Passage,
}

/// Counts tokens the way the embedder will see them (used by the chunker).
#[derive(Clone)]
pub struct TokenCounter {
    tokenizer: Tokenizer,
}

impl TokenCounter {
    pub fn new(tokenizer: Tokenizer) -> Self {
        Self { tokenizer }
    }

    /// Tokens of `text` without special tokens.
    pub fn count(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().len())
            .unwrap_or_else(|_| text.split_whitespace().count())
    }

    /// Byte offsets in `text` where each run of at most `max` tokens ends (the last is `text.len()`).
    pub fn split_points(&self, text: &str, max: usize) -> Vec<usize> {
        let max = max.max(1);
        let Ok(encoding) = self.tokenizer.encode_fast(text, false) else {
            return vec![text.len()];
        };
        let offsets = encoding.get_offsets();
        let mut points = Vec::new();
        let mut i = max;
        while i < offsets.len() {
            // Cut before token i, at its start offset (never inside a word piece run: walk back
            // to a whitespace boundary when there is one in the window).
            let mut cut = offsets[i].0;
            let window_start = points.last().copied().unwrap_or(0);
            if let Some(ws) = text[window_start..cut].rfind(char::is_whitespace) {
                if ws > 0 {
                    cut = window_start + ws + 1;
                }
            }
            if cut > window_start {
                points.push(cut);
            }
            i += max;
        }
        points.push(text.len());
        points.dedup();
        points
    }
}

/// A loaded sentence embedder. Not thread-safe by design: it lives on the model thread.
pub struct TextEmbedder {
    spec: TextModelSpec,
    tokenizer: Tokenizer,
    encoder: Encoder,
    batch_tokens: usize,
    max_batch_rows: usize,
}

impl TextEmbedder {
    /// Loads `spec`'s weights and tokenizer from `dir`.
    pub fn load(spec: TextModelSpec, dir: &Path, batch_tokens: usize) -> Result<Self> {
        let invalid = |reason: String| ModelError::Invalid {
            id: spec.id.clone(),
            path: dir.to_path_buf(),
            reason,
        };
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| invalid(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: spec.max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| invalid(e.to_string()))?;
        tokenizer.with_padding(None);
        let device = Device::Cpu;
        let vb = var_builder(dir, &device).map_err(|e| invalid(e.to_string()))?;
        let (root, _) = encoder_root(&vb);
        let encoder = Encoder::load(root, &spec.config).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            spec,
            tokenizer,
            encoder,
            batch_tokens: batch_tokens.max(1),
            max_batch_rows: 256,
        })
    }

    /// Selects the number type of the forward pass: `"f32"`, or `"bf16"` on CPUs with
    /// AVX512_BF16 (elsewhere it logs why and stays on f32). Returns the type in use.
    pub fn set_dtype(&mut self, dtype: &str) -> Result<&'static str> {
        self.encoder
            .set_dtype(&self.spec.id, dtype)
            .map_err(|reason| ModelError::Invalid {
                id: self.spec.id.clone(),
                path: std::path::PathBuf::from("pipelines/text.toml"),
                reason,
            })
    }

    /// Caps the number of texts per batch (the token budget still applies).
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows.max(1);
        self
    }

    pub fn spec(&self) -> &TextModelSpec {
        &self.spec
    }

    /// A token counter sharing this model's tokenizer (without truncation).
    pub fn token_counter(&self) -> TokenCounter {
        let mut t = self.tokenizer.clone();
        let _ = t.with_truncation(None);
        TokenCounter::new(t)
    }

    /// Token ids as the model will see them (prefix added, truncated to the window).
    pub fn tokenize(&self, texts: &[String], purpose: Purpose) -> Result<Vec<Vec<u32>>> {
        let prefix = match purpose {
            Purpose::Query => &self.spec.query_prefix,
            Purpose::Passage => &self.spec.passage_prefix,
        };
        let inputs: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Embeds texts; output order matches input order.
    pub fn embed(&self, texts: &[String], purpose: Purpose) -> Result<Vec<Vec<f32>>> {
        let ids = self.tokenize(texts, purpose)?;
        self.embed_ids(&ids)
    }

    /// Embeds pre-tokenized inputs in token-budget batches of similar length.
    pub fn embed_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = vec![Vec::new(); ids.len()];
        let mut start = 0;
        while start < order.len() {
            // Sorted longest first: the first row sets the padded length of the batch.
            let longest = ids[order[start]].len().max(1);
            let rows = (self.batch_tokens / longest).clamp(1, self.max_batch_rows);
            let end = (start + rows).min(order.len());
            let batch_idx = &order[start..end];
            let batch = TokenBatch {
                ids: batch_idx.iter().map(|&i| ids[i].clone()).collect(),
                type_ids: Vec::new(),
            };
            let vectors = self.forward(&batch)?;
            for (row, &i) in batch_idx.iter().enumerate() {
                out[i] = vectors[row].clone();
            }
            start = end;
        }
        Ok(out)
    }

    fn forward(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        let hidden = self.encoder.forward(batch)?;
        let mut pooled = match self.spec.pooling {
            Pooling::Mean => hidden.mean_pool(),
            Pooling::Cls => hidden.first_token(),
        };
        if self.spec.normalize {
            pooled.iter_mut().for_each(|v| normalize(v));
        }
        Ok(pooled)
    }
}
