//! Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server) through
//! async-openai, streamed.

use async_openai::config::OpenAIConfig;
use async_openai::types::{
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequestArgs,
};
use async_openai::Client;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use super::{GenerationParams, Generator, LlmError, Message, Result, Role};

/// A remote chat model.
pub struct OpenAiGenerator {
    client: Client<OpenAIConfig>,
    model: String,
}

impl OpenAiGenerator {
    pub fn new(base_url: &str, model: &str, api_key: Option<&str>, timeout_secs: u64) -> Self {
        let mut config = OpenAIConfig::new().with_api_base(base_url.trim_end_matches('/'));
        config = config.with_api_key(api_key.unwrap_or("none"));
        let http = reqwest_client(timeout_secs);
        Self {
            client: Client::with_config(config).with_http_client(http),
            model: model.to_string(),
        }
    }
}

fn reqwest_client(timeout_secs: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(timeout_secs.max(1)))
        .build()
        .unwrap_or_default()
}

fn remote(e: impl std::fmt::Display) -> LlmError {
    LlmError::Remote(e.to_string())
}

fn to_request_message(m: &Message) -> Result<ChatCompletionRequestMessage> {
    Ok(match m.role {
        Role::System => ChatCompletionRequestSystemMessageArgs::default()
            .content(m.content.clone())
            .build()
            .map_err(remote)?
            .into(),
        Role::User => ChatCompletionRequestUserMessageArgs::default()
            .content(m.content.clone())
            .build()
            .map_err(remote)?
            .into(),
        Role::Assistant => ChatCompletionRequestAssistantMessageArgs::default()
            .content(m.content.clone())
            .build()
            .map_err(remote)?
            .into(),
    })
}

impl Generator for OpenAiGenerator {
    fn name(&self) -> String {
        format!("openai:{}", self.model)
    }

    fn generate<'a>(
        &'a self,
        messages: Vec<Message>,
        params: GenerationParams,
        sink: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<String>> {
        async move {
            let messages = messages
                .iter()
                .map(to_request_message)
                .collect::<Result<Vec<_>>>()?;
            let request = CreateChatCompletionRequestArgs::default()
                .model(self.model.clone())
                .messages(messages)
                .max_tokens(params.max_tokens)
                .temperature(params.temperature)
                .stream(true)
                .build()
                .map_err(remote)?;
            let mut stream = self
                .client
                .chat()
                .create_stream(request)
                .await
                .map_err(remote)?;
            let mut answer = String::new();
            while let Some(event) = stream.next().await {
                let chunk = event.map_err(remote)?;
                for choice in chunk.choices {
                    if let Some(text) = choice.delta.content {
                        let _ = sink.send(text.clone());
                        answer.push_str(&text);
                    }
                }
            }
            Ok(answer)
        }
        .boxed()
    }
}
