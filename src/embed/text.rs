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

/// Counts tokens the way the embedder will see them (used by the chunker). Cheap to clone:
/// every clone shares one tokenizer (a tokenizer's own clone copies its whole vocabulary,
/// which per file cost ingestion more than the chunker's counting).
#[derive(Clone)]
pub struct TokenCounter {
    tokenizer: std::sync::Arc<Tokenizer>,
}

impl TokenCounter {
    pub fn new(tokenizer: Tokenizer) -> Self {
        Self {
            tokenizer: std::sync::Arc::new(tokenizer),
        }
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
        // `encode`, not `encode_fast`: the fast path leaves every offset at (0, 0).
        let Ok(encoding) = self.tokenizer.encode(text, false) else {
            return vec![text.len()];
        };
        let offsets = encoding.get_offsets();
        let mut points = Vec::new();
        // First token of the current window, and where the window starts in `text`.
        let mut first = 0;
        let mut window_start = 0;
        while offsets.len() - first > max {
            // Cut before token first + max, walking back to a whitespace boundary when the
            // window has one, so no word is split; the next window starts at the cut.
            let at = offsets[first + max].0;
            let mut cut = at;
            if let Some(ws) = text[window_start..at].rfind(char::is_whitespace) {
                if ws > 0 {
                    // After the whitespace character, whatever its width (NBSP, U+3000).
                    let width = text[window_start + ws..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8);
                    cut = window_start + ws + width;
                }
            }
            if cut <= window_start {
                break;
            }
            points.push(cut);
            window_start = cut;
            first += offsets[first..].partition_point(|o| o.0 < cut);
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

    /// Selects the product path of the forward pass from `dtype` (`"auto"`, `"f32"`,
    /// `"bf16"` or a path id; see [`super::paths::select`]). `cache` is where `auto`
    /// remembers its measurement.
    pub fn set_dtype(
        &mut self,
        dtype: &str,
        cache: Option<&Path>,
    ) -> Result<super::paths::PathChoice> {
        let probe = self.probe().map_err(|e| e.to_string());
        let id = self.spec.id.clone();
        super::paths::select(&mut self.encoder, &id, dtype, || probe, cache).map_err(|reason| {
            ModelError::Invalid {
                id,
                path: std::path::PathBuf::from("pipelines/text.toml"),
                reason,
            }
        })
    }

    /// The encoder, for benchmarks that switch paths.
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// The fixed batch `dtype = "auto"` measures the paths on: the probe passages, twice, as
    /// passages (about 1,300 tokens).
    pub fn probe(&self) -> Result<TokenBatch> {
        let texts: Vec<String> = super::paths::PROBE_TEXTS
            .iter()
            .cycle()
            .take(2 * super::paths::PROBE_TEXTS.len())
            .map(|t| t.to_string())
            .collect();
        Ok(TokenBatch {
            ids: self.tokenize(&texts, Purpose::Passage)?,
            type_ids: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_counter() -> TokenCounter {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/models/tiny-bert-embedder/tokenizer.json"
        );
        let mut tokenizer = Tokenizer::from_file(path).unwrap();
        let _ = tokenizer.with_truncation(None);
        TokenCounter::new(tokenizer)
    }

    /// A run of text with no sentence boundary is cut into windows of at most `max` tokens at
    /// word boundaries, with a real WordPiece tokenizer.
    #[test]
    fn split_points_cut_unpunctuated_text_into_windows() {
        let counter = fixture_counter();
        let text = ["canal lock towpath"; 300].join(" ");
        let total = counter.count(&text);
        assert!(total >= 900, "{total}");
        let points = counter.split_points(&text, 100);
        assert_eq!(*points.last().unwrap(), text.len());
        assert!(points.len() >= total / 100, "{points:?}");
        let mut start = 0;
        for &end in &points {
            assert!(end > start);
            let piece = &text[start..end];
            assert!(counter.count(piece) <= 100, "{piece}");
            // Cuts fall after a space: no word is split.
            assert!(start == 0 || text[..start].ends_with(' '));
            start = end;
        }
        // Multi-byte whitespace (no-break and ideographic spaces) is stepped over whole.
        let wide = ["canal\u{a0}lock\u{3000}towpath"; 300].join("\u{a0}");
        let points = counter.split_points(&wide, 50);
        assert!(points.len() > 1, "{points:?}");
        assert!(points.iter().all(|&p| wide.is_char_boundary(p)));
    }
}
