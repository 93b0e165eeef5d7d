//! The embedded language model: a llama-architecture GGUF (SmolLM2-135M-Instruct by default)
//! on candle's quantized llama, on the shared model worker (one request at a time; tokens
//! stream back through each request's own channel). The tokenizer is rebuilt from the GGUF
//! metadata (GPT-2 byte-level BPE: `tokenizer.ggml.tokens` and `merges`), so the one file is
//! all that is needed. Prompts use the ChatML template.

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};
use tokio::sync::mpsc;

use super::{GenerationParams, Generator, LlmError, Message, Result, Role};
use crate::embed::worker::{Model, Worker, WorkerError};

/// One generation: the prompt, its parameters and where its tokens go.
pub struct Request {
    prompt: String,
    params: GenerationParams,
    sink: mpsc::UnboundedSender<String>,
}

/// Handle to the embedded model on its worker thread.
pub struct LocalGenerator {
    name: String,
    worker: Worker<Engine>,
}

pub struct Engine {
    model: ModelWeights,
    tokenizer: Tokenizer,
    stop_ids: Vec<u32>,
}

fn load_error(path: &Path, reason: impl std::fmt::Display) -> LlmError {
    LlmError::Load {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Builds the byte-level BPE tokenizer stored in a GGUF file's metadata.
pub fn tokenizer_from_gguf(
    content: &gguf_file::Content,
) -> std::result::Result<(Tokenizer, Vec<u32>), String> {
    let get = |key: &str| {
        content
            .metadata
            .get(key)
            .ok_or_else(|| format!("GGUF metadata has no {key}"))
    };
    let tokens = get("tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(|e| e.to_string())?;
    let tokens: Vec<String> = tokens
        .iter()
        .map(|t| t.to_string().cloned().map_err(|e| e.to_string()))
        .collect::<std::result::Result<_, _>>()?;
    let merges = get("tokenizer.ggml.merges")?
        .to_vec()
        .map_err(|e| e.to_string())?;
    let merges: Vec<(String, String)> = merges
        .iter()
        .filter_map(|m| m.to_string().ok())
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    // Control tokens (token type 3) such as <|im_start|> are matched whole.
    let types: Vec<i32> = content
        .metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().filter_map(|t| t.to_i32().ok()).collect())
        .unwrap_or_default();
    let special: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| types.get(*i) == Some(&3) || (t.starts_with("<|") && t.ends_with("|>")))
        .map(|(_, t)| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| e.to_string())?;
    let mut stop = Vec::new();
    if let Some(eos) = content
        .metadata
        .get("tokenizer.ggml.eos_token_id")
        .and_then(|v| v.to_u32().ok())
    {
        stop.push(eos);
    }
    for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
        if let Some(id) = tokens.iter().position(|t| t == name) {
            if !stop.contains(&(id as u32)) {
                stop.push(id as u32);
            }
        }
    }
    Ok((tokenizer, stop))
}

/// ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message, then the assistant's turn.
pub fn chatml(messages: &[Message]) -> String {
    let mut prompt = String::new();
    for m in messages {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        prompt.push_str(&format!("<|im_start|>{role}\n{}<|im_end|>\n", m.content));
    }
    prompt.push_str("<|im_start|>assistant\n");
    prompt
}

impl LocalGenerator {
    /// Loads the GGUF file and starts the model thread.
    pub fn load(path: &Path, name: &str) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| load_error(path, e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| load_error(path, e))?;
        let (tokenizer, stop_ids) =
            tokenizer_from_gguf(&content).map_err(|e| load_error(path, e))?;
        let model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu)
            .map_err(|e| load_error(path, e))?;
        let engine = Engine {
            model,
            tokenizer,
            stop_ids,
        };
        let worker =
            Worker::spawn("llm:embedded", engine, 8, 1).map_err(|e| load_error(path, e))?;
        Ok(Self {
            name: format!("embedded:{name}"),
            worker,
        })
    }
}

impl Model for Engine {
    type Input = Request;
    type Output = String;
    type Params = ();

    fn cost(&self, _: &Request) -> usize {
        1
    }

    fn run(&mut self, _: &(), inputs: Vec<Request>) -> std::result::Result<Vec<String>, String> {
        inputs
            .into_iter()
            .map(|r| {
                self.generate(&r.prompt, r.params, &r.sink)
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

impl Engine {
    fn generate(
        &mut self,
        prompt: &str,
        params: GenerationParams,
        sink: &mpsc::UnboundedSender<String>,
    ) -> Result<String> {
        let local = |e: candle_core::Error| LlmError::Local(e.to_string());
        let encoding = self
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| LlmError::Local(e.to_string()))?;
        let prompt_ids = encoding.get_ids().to_vec();
        let temperature = (params.temperature > 0.0).then_some(params.temperature as f64);
        let mut sampler = LogitsProcessor::new(299792458, temperature, None);
        let mut generated: Vec<u32> = Vec::new();
        let mut sent = 0usize;
        let mut input = Tensor::new(prompt_ids.as_slice(), &Device::Cpu)
            .map_err(local)?
            .unsqueeze(0)
            .map_err(local)?;
        let mut position = 0;
        for _ in 0..params.max_tokens {
            let logits = self
                .model
                .forward(&input, position)
                .map_err(local)?
                .squeeze(0)
                .map_err(local)?;
            position += input.dim(1).map_err(local)?;
            let start = generated.len().saturating_sub(64);
            let logits =
                candle_transformers::utils::apply_repeat_penalty(&logits, 1.1, &generated[start..])
                    .map_err(local)?;
            let next = sampler.sample(&logits).map_err(local)?;
            if self.stop_ids.contains(&next) {
                break;
            }
            generated.push(next);
            let text = self
                .tokenizer
                .decode(&generated, true)
                .map_err(|e| LlmError::Local(e.to_string()))?;
            // Send only whole characters: a byte-level token can end inside one.
            if !text.ends_with('\u{fffd}') && text.len() > sent {
                let _ = sink.send(text[sent..].to_string());
                sent = text.len();
            }
            input = Tensor::new(&[next], &Device::Cpu)
                .map_err(local)?
                .unsqueeze(0)
                .map_err(local)?;
        }
        let text = self
            .tokenizer
            .decode(&generated, true)
            .map_err(|e| LlmError::Local(e.to_string()))?;
        if text.len() > sent {
            let _ = sink.send(text[sent..].to_string());
        }
        Ok(text)
    }
}

impl Generator for LocalGenerator {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn prefers_single_turn(&self) -> bool {
        true
    }

    fn generate<'a>(
        &'a self,
        messages: Vec<Message>,
        params: GenerationParams,
        sink: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<String>> {
        async move {
            let request = Request {
                prompt: chatml(&messages),
                params,
                sink,
            };
            let mut out = self
                .worker
                .call((), vec![request])
                .await
                .map_err(|e| match e {
                    WorkerError::Gone => LlmError::Local("the model thread stopped".into()),
                    WorkerError::Failed(reason) => LlmError::Local(reason),
                })?;
            out.pop()
                .ok_or_else(|| LlmError::Local("no answer came back".into()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_has_no_default_system_prompt() {
        let prompt = chatml(&[Message {
            role: Role::User,
            content: "Hi".into(),
        }]);
        assert_eq!(
            prompt,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
