//! What a text model is, read from its own files: `config.json` for the architecture,
//! sentence-transformers' `modules.json`, `1_Pooling/config.json` and
//! `sentence_bert_config.json` for pooling, normalization and window, plus the per-model
//! query/passage prefixes the model cards prescribe.

use std::path::Path;

use serde::Deserialize;

use super::{ModelError, Result};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

/// Everything needed to embed text the way the model's authors do.
#[derive(Debug, Clone)]
pub struct TextModelSpec {
    pub id: String,
    pub config: EncoderConfig,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Token window (special tokens included).
    pub max_tokens: usize,
    pub query_prefix: String,
    pub passage_prefix: String,
}

impl TextModelSpec {
    pub fn dims(&self) -> usize {
        self.config.hidden_size
    }

    /// Reads the spec from a model folder; `query_prefix`/`passage_prefix` override the
    /// registry's defaults when given.
    pub fn load(
        id: &str,
        dir: &Path,
        query_prefix: Option<&str>,
        passage_prefix: Option<&str>,
    ) -> Result<Self> {
        let invalid = |reason: String| ModelError::Invalid {
            id: id.to_string(),
            path: dir.to_path_buf(),
            reason,
        };
        let config: EncoderConfig = read_json(&dir.join("config.json"))?
            .ok_or_else(|| invalid("config.json is missing".into()))?;
        if !config.is_supported() {
            return Err(invalid(format!(
                "model_type {} is not a BERT-family encoder (bert, roberta, xlm-roberta)",
                config.model_type
            )));
        }
        if !dir.join("tokenizer.json").is_file() {
            return Err(invalid("tokenizer.json is missing".into()));
        }

        let modules: Option<Vec<Module>> = read_json(&dir.join("modules.json"))?;
        let mut pooling = default_pooling(id);
        let mut normalize = default_normalize(id);
        if let Some(modules) = &modules {
            normalize = modules.iter().any(|m| m.kind.ends_with("Normalize"));
            if let Some(pool) = modules.iter().find(|m| m.kind.ends_with("Pooling")) {
                let pool_cfg: Option<PoolingConfig> =
                    read_json(&dir.join(&pool.path).join("config.json"))?;
                if let Some(p) = pool_cfg {
                    pooling = if p.pooling_mode_cls_token {
                        Pooling::Cls
                    } else if p.pooling_mode_mean_tokens {
                        Pooling::Mean
                    } else {
                        return Err(invalid("only mean and CLS pooling are supported".into()));
                    };
                }
            }
        }
        let st: Option<SentenceBertConfig> = read_json(&dir.join("sentence_bert_config.json"))?;
        let window = config.max_tokens();
        let max_tokens = st
            .and_then(|s| s.max_seq_length)
            .unwrap_or(window)
            .min(window);
        let (q, p) = known_prefixes(id);
        Ok(Self {
            id: id.to_string(),
            config,
            pooling,
            normalize,
            max_tokens,
            query_prefix: query_prefix
                .map(str::to_string)
                .unwrap_or_else(|| q.to_string()),
            passage_prefix: passage_prefix
                .map(str::to_string)
                .unwrap_or_else(|| p.to_string()),
        })
    }
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ModelError::Invalid {
                id: String::new(),
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ModelError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

const RETRIEVAL_INSTRUCTION: &str = "Represent this sentence for searching relevant passages: ";

/// (query prefix, passage prefix) the model card prescribes for retrieval.
pub fn known_prefixes(id: &str) -> (&'static str, &'static str) {
    let lower = id.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    if name.starts_with("e5-") || name.starts_with("multilingual-e5-") {
        ("query: ", "passage: ")
    } else if name.starts_with("bge-") && name.contains("-zh") {
        ("为这个句子生成表示以用于检索相关文章：", "")
    } else if (name.starts_with("bge-") && name.contains("-en"))
        || name.starts_with("snowflake-arctic-embed")
        || name.starts_with("uae-")
        || name.starts_with("mxbai-embed")
    {
        (RETRIEVAL_INSTRUCTION, "")
    } else {
        ("", "")
    }
}

/// Pooling when a folder has no sentence-transformers files (plain transformers export).
fn default_pooling(id: &str) -> Pooling {
    let lower = id.to_ascii_lowercase();
    if lower.contains("bge-")
        || lower.contains("arctic-embed")
        || lower.contains("uae-")
        || lower.contains("mxbai")
    {
        Pooling::Cls
    } else {
        Pooling::Mean
    }
}

fn default_normalize(_id: &str) -> bool {
    true
}

/// Where the Hub publishes a GGUF build of an LLM id: (repository, file).
pub fn gguf_source(id: &str) -> Option<(&'static str, &'static str)> {
    match id {
        "HuggingFaceTB/SmolLM2-135M-Instruct" => Some((
            "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
            "smollm2-135m-instruct-q8_0.gguf",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_model_cards() {
        assert_eq!(
            known_prefixes("intfloat/e5-small-v2"),
            ("query: ", "passage: ")
        );
        assert_eq!(
            known_prefixes("intfloat/multilingual-e5-base").1,
            "passage: "
        );
        assert_eq!(
            known_prefixes("BAAI/bge-small-en-v1.5").0,
            RETRIEVAL_INSTRUCTION
        );
        assert_eq!(
            known_prefixes("Snowflake/snowflake-arctic-embed-s").0,
            RETRIEVAL_INSTRUCTION
        );
        assert_eq!(
            known_prefixes("WhereIsAI/UAE-Large-V1").0,
            RETRIEVAL_INSTRUCTION
        );
        assert_eq!(
            known_prefixes("sentence-transformers/all-MiniLM-L6-v2"),
            ("", "")
        );
        assert_eq!(known_prefixes("thenlper/gte-small"), ("", ""));
    }
}

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
