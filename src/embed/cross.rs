//! The cross-encoder reranker: a BERT or XLM-R sequence classifier scoring (query, passage)
//! pairs, as `transformers`' `*ForSequenceClassification` computes it (logits, no activation).

use std::path::Path;

use candle_core::Device;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::encoder::{dense, encoder_root, var_builder, Encoder, EncoderConfig, TokenBatch};
use crate::kernels::path::{Linear, ProductPath};
use crate::models::{ModelError, Result};

/// Classification head on the first token's state.
/// Both kinds are `second(tanh(first(h_first_token)))`:
/// BERT: pooler.dense then classifier; RoBERTa/XLM-R: classifier.dense then classifier.out_proj.
struct Head {
    first: Linear,
    second: Linear,
}

/// A loaded cross-encoder. Lives on one thread.
pub struct CrossEncoder {
    id: String,
    tokenizer: Tokenizer,
    encoder: Encoder,
    head: Head,
    batch_tokens: usize,
}

impl CrossEncoder {
    /// Loads a cross-encoder. Pairs are truncated to `max_tokens` when given, else to the
    /// tokenizer's `model_max_length` (as sentence-transformers' `CrossEncoder` does), within
    /// the model's position window.
    pub fn load(
        id: &str,
        dir: &Path,
        max_tokens: Option<usize>,
        batch_tokens: usize,
    ) -> Result<Self> {
        let invalid = |reason: String| ModelError::Invalid {
            id: id.to_string(),
            path: dir.to_path_buf(),
            reason,
        };
        let config_text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| invalid(format!("config.json: {e}")))?;
        let config: EncoderConfig =
            serde_json::from_str(&config_text).map_err(|e| invalid(format!("config.json: {e}")))?;
        if !config.is_supported() {
            return Err(invalid(format!(
                "model_type {} is not a BERT-family classifier",
                config.model_type
            )));
        }
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| invalid(e.to_string()))?;
        let configured = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["model_max_length"].as_u64())
            .map(|n| n as usize);
        let window = max_tokens
            .or(configured)
            .unwrap_or(512)
            .min(config.max_tokens());
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: window,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| invalid(e.to_string()))?;
        tokenizer.with_padding(None);
        let device = Device::Cpu;
        let vb = var_builder(dir, &device).map_err(|e| invalid(e.to_string()))?;
        let (root, prefix) = encoder_root(&vb);
        let encoder = Encoder::load(root.clone(), &config).map_err(|e| invalid(e.to_string()))?;
        let h = config.hidden_size;
        let labels = config.labels();
        let load = |vb: candle_nn::VarBuilder, outputs: usize, what: &str| {
            dense(vb, h, outputs).map_err(|e| invalid(format!("{what}: {e}")))
        };
        let head = if vb.contains_tensor("classifier.out_proj.weight") {
            Head {
                first: load(vb.pp("classifier").pp("dense"), h, "classifier.dense")?,
                second: load(
                    vb.pp("classifier").pp("out_proj"),
                    labels,
                    "classifier.out_proj",
                )?,
            }
        } else {
            let pooler = if prefix.is_empty() {
                vb.pp("pooler")
            } else {
                root.pp("pooler")
            };
            Head {
                first: load(pooler.pp("dense"), h, "pooler")?,
                second: load(vb.pp("classifier"), labels, "classifier")?,
            }
        };
        Ok(Self {
            id: id.to_string(),
            tokenizer,
            encoder,
            head,
            batch_tokens: batch_tokens.max(1),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Selects the encoder's product path from `dtype` (`"auto"`, `"f32"`, `"bf16"` or a
    /// path id; see [`super::paths::select`]). The small classification head stays f32.
    pub fn set_dtype(
        &mut self,
        dtype: &str,
        cache: Option<&std::path::Path>,
    ) -> Result<super::paths::PathChoice> {
        let id = self.id.clone();
        let probe = self.probe()?;
        super::paths::select(&mut self.encoder, &id, dtype, || Ok(probe), cache).map_err(|reason| {
            ModelError::Invalid {
                id,
                path: std::path::PathBuf::from("pipelines/query.toml"),
                reason,
            }
        })
    }

    /// The encoder, for benchmarks that switch paths.
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// The fixed batch `dtype = "auto"` measures the paths on: each probe question with its
    /// passage, twice.
    pub fn probe(&self) -> Result<TokenBatch> {
        let mut pairs = Vec::new();
        for (question, passage) in super::paths::PROBE_QUESTIONS
            .iter()
            .zip(super::paths::PROBE_TEXTS)
            .cycle()
            .take(2 * super::paths::PROBE_TEXTS.len())
        {
            pairs.extend(self.tokenize(question, &[passage.to_string()])?);
        }
        Ok(TokenBatch {
            ids: pairs.iter().map(|p| p.0.clone()).collect(),
            type_ids: pairs.into_iter().map(|p| p.1).collect(),
        })
    }

    /// Token ids and type ids of each (query, passage) pair.
    pub fn tokenize(&self, query: &str, passages: &[String]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        let pairs: Vec<(String, String)> = passages
            .iter()
            .map(|p| (query.to_string(), p.clone()))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(pairs, true)
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| (e.get_ids().to_vec(), e.get_type_ids().to_vec()))
            .collect())
    }

    /// First logit per passage (the relevance score), in input order.
    pub fn score(&self, query: &str, passages: &[String]) -> Result<Vec<f32>> {
        let encoded = self.tokenize(query, passages)?;
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].0.len()));
        let mut out = vec![0f32; encoded.len()];
        let mut start = 0;
        while start < order.len() {
            let longest = encoded[order[start]].0.len().max(1);
            let rows = (self.batch_tokens / longest).clamp(1, 128);
            let end = (start + rows).min(order.len());
            let idx = &order[start..end];
            let batch = TokenBatch {
                ids: idx.iter().map(|&i| encoded[i].0.clone()).collect(),
                type_ids: idx.iter().map(|&i| encoded[i].1.clone()).collect(),
            };
            let logits = self.logits(&batch)?;
            for (row, &i) in idx.iter().enumerate() {
                out[i] = logits[row][0];
            }
            start = end;
        }
        Ok(out)
    }

    /// The encoder's first-token state of each pair: what the classification head reads.
    pub fn first_token_states(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        Ok(self.encoder.forward(batch)?.first_token())
    }

    /// Raw classifier logits `[batch][labels]`.
    pub fn logits(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        let rows = self.first_token_states(batch)?;
        let b = rows.len();
        let first: Vec<f32> = rows.into_iter().flatten().collect();
        let head = ProductPath::default_f32();
        let mut pooled = self.head.first.forward(head, &first, b);
        pooled.iter_mut().for_each(|v| *v = v.tanh());
        let logits = self.head.second.forward(head, &pooled, b);
        let labels = self.head.second.outputs();
        Ok(logits.chunks(labels).map(<[f32]>::to_vec).collect())
    }
}
