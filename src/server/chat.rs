//! `POST /v1/chat/completions` and `GET /v1/models`, as OpenAI defines them, so stock clients
//! and chat front ends talk to Mosaic unmodified. Model `mosaic` answers from the library: the
//! last user message is the question (read with the one before it, so follow-ups resolve), the
//! answer carries `[n]` markers numbered as the passages were given (and as the stream's
//! source events come), `message.annotations` holds one `url_citation` per marker with its
//! deep link, and the sibling key `mosaic` the full citation. Model `mosaic-chat` passes the
//! conversation to the language model without retrieval (front ends use it for titles).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiJson};
use super::ServerState;
use crate::catalog::{Anchor, SourceRef};
use crate::llm::{GenerationParams, Message, Role};
use crate::query::{approx_tokens, Answer, AskRequest, Citation};

/// The retrieval-augmented model.
pub const MODEL_RAG: &str = "mosaic";
/// The conversation alone, no retrieval.
pub const MODEL_CHAT: &str = "mosaic-chat";

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub n: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string, or parts of which the text ones are read.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl ChatMessage {
    fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.clone())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    fn role(&self) -> Result<Option<Role>, ApiError> {
        Ok(match self.role.as_str() {
            "system" | "developer" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" | "function" => None,
            other => {
                return Err(ApiError::bad_request(format!(
                    "messages: unknown role {other:?}"
                )))
            }
        })
    }
}

pub async fn models() -> Json<Value> {
    let model = |id: &str, description: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "mosaic", "description": description});
    Json(json!({
        "object": "list",
        "data": [
            model(MODEL_RAG, "answers from the indexed library with citations"),
            model(MODEL_CHAT, "the conversation alone, without retrieval (titles, tags)"),
        ]
    }))
}

/// The request as the engine takes it, checked.
struct Prepared {
    model: String,
    conversation: Vec<Message>,
    params: (Option<f32>, Option<u32>),
    stream: bool,
    include_usage: bool,
}

fn prepare(request: ChatRequest) -> Result<Prepared, ApiError> {
    let model = request.model.unwrap_or_else(|| MODEL_RAG.to_string());
    if model != MODEL_RAG && model != MODEL_CHAT {
        return Err(ApiError::not_found(format!(
            "model {model:?} does not exist: use {MODEL_RAG:?} or {MODEL_CHAT:?} (GET /v1/models)"
        )));
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("n: only 1 choice is supported"));
    }
    if let Some(t) = request.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::bad_request("temperature must be between 0 and 2"));
        }
    }
    let mut conversation = Vec::new();
    for message in &request.messages {
        if let Some(role) = message.role()? {
            conversation.push(Message {
                role,
                content: message.text(),
            });
        }
    }
    if !conversation
        .iter()
        .any(|m| m.role == Role::User && !m.content.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "messages: there is no user message to answer",
        ));
    }
    Ok(Prepared {
        model,
        conversation,
        params: (
            request.temperature,
            request.max_completion_tokens.or(request.max_tokens),
        ),
        stream: request.stream.unwrap_or(false),
        include_usage: request.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// The question (the last user message) and the turns before it.
fn ask_request(prepared: &Prepared) -> AskRequest {
    let last = prepared
        .conversation
        .iter()
        .rposition(|m| m.role == Role::User && !m.content.trim().is_empty())
        .expect("prepare checked there is a user message");
    AskRequest {
        question: prepared.conversation[last].content.clone(),
        history: prepared.conversation[..last]
            .iter()
            .filter(|m| m.role != Role::System)
            .cloned()
            .collect(),
        temperature: prepared.params.0,
        max_tokens: prepared.params.1,
    }
}

/// A link that opens `source` at `anchor` on this server.
pub fn media_link(base: &str, source: &SourceRef, anchor: &Anchor) -> String {
    let url = format!("{base}/v1/sources/{}/media", source.id);
    match anchor.fragment() {
        Some(fragment) => format!("{url}#{fragment}"),
        None => url,
    }
}

fn label(citation: &Citation) -> String {
    let name = citation
        .title
        .clone()
        .unwrap_or_else(|| crate::uri::display_name(&citation.source.uri));
    format!("{name} ({})", citation.anchor.describe())
}

/// An answer as the API shows it: markers numbered by passage, one annotation per marker, one
/// source event per passage.
#[derive(Debug)]
pub struct Cited {
    pub content: String,
    pub annotations: Vec<Value>,
    pub passages: Vec<Value>,
}

/// Renumbers the answer's citation markers to the passages they point into (the order the
/// passages were given, and the order of the source events), and builds one `url_citation`
/// per marker: code-point indices spanning the marker, the deep link of the cited words.
/// Each passage's link is that of its first cited sentence (else its own start), so the
/// annotation and the source event of a passage carry the same URL.
pub fn cite(answer: &Answer, base: &str) -> Cited {
    let mut passage_url: HashMap<usize, String> = HashMap::new();
    for c in &answer.citations {
        passage_url
            .entry(c.block)
            .or_insert_with(|| media_link(base, &c.source, &c.anchor));
    }
    for b in &answer.blocks {
        passage_url
            .entry(b.n)
            .or_insert_with(|| media_link(base, &b.source, &b.anchor));
    }
    let mut content = String::new();
    let mut annotations = Vec::new();
    let mut written = 0usize; // code points in `content`
    let chars: Vec<char> = answer.answer.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            let digits: String = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let close = i + 1 + digits.len();
            let n = digits.parse::<usize>().ok();
            if let (Some(n), Some(']')) = (n, chars.get(close)) {
                if let Some(citation) = answer.citations.get(n.wrapping_sub(1)) {
                    let marker = format!("[{}]", citation.block);
                    let length = marker.chars().count();
                    let url = passage_url
                        .get(&citation.block)
                        .cloned()
                        .unwrap_or_else(|| media_link(base, &citation.source, &citation.anchor));
                    let mut own = serde_json::to_value(citation).unwrap_or(Value::Null);
                    own["url"] =
                        Value::String(media_link(base, &citation.source, &citation.anchor));
                    own["title"] = Value::String(label(citation));
                    annotations.push(json!({
                        "type": "url_citation",
                        "url_citation": {
                            "start_index": written,
                            "end_index": written + length,
                            "title": label(citation),
                            "url": url,
                        },
                        "mosaic": own,
                    }));
                    content.push_str(&marker);
                    written += length;
                    i = close + 1;
                    continue;
                }
            }
        }
        content.push(chars[i]);
        written += 1;
        i += 1;
    }
    let passages = answer
        .blocks
        .iter()
        .map(|block| {
            let url = passage_url
                .get(&block.n)
                .cloned()
                .unwrap_or_else(|| media_link(base, &block.source, &block.anchor));
            let name = label(block);
            let mut metadata = json!({
                "source": url,
                "name": name,
                "source_id": block.source.id,
                "media_type": block.source.media_type,
                "anchor": block.anchor,
                "n": block.n,
            });
            match block.anchor {
                Anchor::Span { page: Some(p), .. } => {
                    // Open WebUI counts pages from 0.
                    metadata["page"] = json!(p.saturating_sub(1));
                    metadata["page_label"] = json!(p);
                }
                Anchor::Time { start_ms, end_ms } => {
                    metadata["start_ms"] = json!(start_ms);
                    metadata["end_ms"] = json!(end_ms);
                }
                Anchor::Frame { at_ms } => metadata["start_ms"] = json!(at_ms),
                _ => {}
            }
            if let Some(score) = block.score {
                metadata["score"] = json!(score);
            }
            json!({
                "type": "source",
                "data": {
                    "source": {"name": name, "url": url, "id": block.source.id},
                    "document": [block.text],
                    "metadata": [metadata],
                }
            })
        })
        .collect();
    Cited {
        content,
        annotations,
        passages,
    }
}

fn usage(conversation: &[Message], extra_prompt: &str, completion: &str) -> Value {
    let prompt: usize = conversation
        .iter()
        .map(|m| approx_tokens(&m.content))
        .sum::<usize>()
        + approx_tokens(extra_prompt);
    let completion = approx_tokens(completion);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// What one request produced, before it is shaped as a response or a stream.
struct Reply {
    cited: Cited,
    usage: Value,
    extra: Value,
}

async fn reply(state: &ServerState, prepared: &Prepared, base: &str) -> Result<Reply, ApiError> {
    if prepared.model == MODEL_CHAT {
        return plain_reply(state, prepared).await;
    }
    let request = ask_request(prepared);
    let (sink, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
    let drain = tokio::spawn(async move { while pieces.recv().await.is_some() {} });
    let answer = state.mosaic.ask(&request, sink).await;
    let _ = drain.await;
    let answer = answer?;
    let cited = cite(&answer, base);
    let context: String = answer
        .blocks
        .iter()
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let usage = usage(&prepared.conversation, &context, &cited.content);
    let extra = json!({
        "generator": answer.generator,
        "answered": answer.answered,
        "relevance": answer.relevance,
        "sentences": answer.sentences,
        "notices": answer.notices,
    });
    Ok(Reply {
        cited,
        usage,
        extra,
    })
}

/// `mosaic-chat`: the conversation through the language model; without one, the first words
/// of the question (what a front end's title prompt needs).
async fn plain_reply(state: &ServerState, prepared: &Prepared) -> Result<Reply, ApiError> {
    let (generator, why_not) = state.mosaic.generator().await;
    let text = match generator {
        Some(generator) => {
            let (sink, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
            let drain = tokio::spawn(async move { while pieces.recv().await.is_some() {} });
            let params = GenerationParams {
                temperature: prepared
                    .params
                    .0
                    .unwrap_or(state.mosaic.settings.llm.temperature),
                max_tokens: prepared
                    .params
                    .1
                    .unwrap_or(state.mosaic.settings.llm.max_tokens),
            };
            let text = generator
                .generate(prepared.conversation.clone(), params, sink)
                .await;
            let _ = drain.await;
            text?
        }
        None => {
            tracing::debug!(
                "mosaic-chat without a language model ({why_not}): the question's first words"
            );
            first_words(&prepared.conversation)
        }
    };
    Ok(Reply {
        usage: usage(&prepared.conversation, "", &text),
        cited: Cited {
            content: text,
            annotations: Vec::new(),
            passages: Vec::new(),
        },
        extra: json!({"generator": "none", "retrieval": false}),
    })
}

/// The first words of the conversation's first question (inside a front end's
/// `<chat_history>` when it quotes one).
fn first_words(conversation: &[Message]) -> String {
    let last = conversation
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .unwrap_or_default();
    let quoted = last
        .find("<chat_history>")
        .map(|at| &last[at + "<chat_history>".len()..])
        .and_then(|rest| {
            rest.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix("USER:"))
        });
    let text = quoted.unwrap_or(last);
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .take(6)
        .collect();
    words.join(" ")
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn completions(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let prepared = prepare(request)?;
    let permit = state.chat_permit()?;
    let base = state.base_url(&headers);
    let id = completion_id();
    let created = now_secs();
    if !prepared.stream {
        let reply = reply(&state, &prepared, &base).await?;
        drop(permit);
        let mut message = json!({
            "role": "assistant",
            "content": reply.cited.content,
            "refusal": null,
        });
        if !reply.cited.annotations.is_empty() {
            message["annotations"] = Value::Array(reply.cited.annotations);
        }
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": prepared.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": null}],
            "usage": reply.usage,
            "mosaic": reply.extra,
        }))
        .into_response());
    }
    let (events, receiver) = tokio::sync::mpsc::channel::<Value>(64);
    let model = prepared.model.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let chunk = |choices: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices});
        let role = chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        );
        if events.send(role).await.is_err() {
            return;
        }
        let reply = match reply(&state, &prepared, &base).await {
            Ok(reply) => reply,
            Err(error) => {
                let _ = events.send(error.body()).await;
                return;
            }
        };
        let mut out = Vec::new();
        for passage in reply.cited.passages {
            let mut c = chunk(json!([]));
            c["event"] = passage;
            out.push(c);
        }
        for piece in content_pieces(&reply.cited.content) {
            out.push(chunk(
                json!([{"index": 0, "delta": {"content": piece}, "finish_reason": null}]),
            ));
        }
        if !reply.cited.annotations.is_empty() {
            out.push(chunk(json!([{"index": 0, "delta": {"annotations": reply.cited.annotations}, "finish_reason": null}])));
        }
        let mut finish = chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]));
        finish["mosaic"] = reply.extra;
        out.push(finish);
        if prepared.include_usage {
            let mut usage = chunk(json!([]));
            usage["usage"] = reply.usage;
            out.push(usage);
        }
        for value in out {
            if events.send(value).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        match receiver.recv().await {
            Some(value) => Some((
                Ok::<_, Infallible>(Event::default().data(value.to_string())),
                Some(receiver),
            )),
            None => Some((Ok(Event::default().data("[DONE]")), None)),
        }
    });
    Ok(Sse::new(stream).into_response())
}

/// The answer in word-sized pieces (a marker stays whole in one piece).
fn content_pieces(content: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for c in content.chars() {
        current.push(c);
        if c == ' ' && current.len() >= 12 {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn citation(n: usize, block: usize, anchor: Anchor) -> Citation {
        Citation {
            n,
            block,
            source: SourceRef {
                id: format!("s{block}"),
                uri: format!("file:///docs/doc{block}.pdf"),
                media_type: "pdf".into(),
            },
            anchor,
            url: String::new(),
            text: format!("passage {block}"),
            title: None,
            frame: None,
            score: Some(0.5),
        }
    }

    #[test]
    fn markers_are_renumbered_by_passage_and_annotations_span_them() {
        let span = |p| Anchor::Span {
            page: Some(p),
            char_start: 0,
            char_end: 5,
        };
        let time = Anchor::Time {
            start_ms: 12_500,
            end_ms: 31_000,
        };
        let answer = Answer {
            answer: "Été is warm [1]. The talk says so [2][1].".into(),
            citations: vec![citation(1, 3, span(7)), citation(2, 1, time.clone())],
            generator: "extracted".into(),
            answered: true,
            relevance: 1.0,
            answer_type: crate::query::types::AnswerType::Other,
            sentences: Vec::new(),
            blocks: vec![
                citation(1, 1, time),
                citation(2, 2, span(1)),
                citation(3, 3, span(6)),
            ],
            generated: None,
            notices: Vec::new(),
        };
        let cited = cite(&answer, "http://h:1");
        assert_eq!(cited.content, "Été is warm [3]. The talk says so [1][3].");
        let chars: Vec<char> = cited.content.chars().collect();
        let spans: Vec<String> = cited
            .annotations
            .iter()
            .map(|a| {
                let c = &a["url_citation"];
                let (s, e) = (
                    c["start_index"].as_u64().unwrap() as usize,
                    c["end_index"].as_u64().unwrap() as usize,
                );
                chars[s..e].iter().collect()
            })
            .collect();
        assert_eq!(spans, ["[3]", "[1]", "[3]"]);
        assert_eq!(
            cited.annotations[0]["url_citation"]["url"],
            "http://h:1/v1/sources/s3/media#page=7"
        );
        assert_eq!(
            cited.annotations[1]["url_citation"]["url"],
            "http://h:1/v1/sources/s1/media#t=12.5,31.0"
        );
        assert_eq!(cited.annotations[1]["mosaic"]["source"]["id"], "s1");
        // One source event per passage, in order, with the annotation's URL.
        assert_eq!(cited.passages.len(), 3);
        assert_eq!(
            cited.passages[2]["data"]["metadata"][0]["source"],
            cited.annotations[0]["url_citation"]["url"]
        );
        assert_eq!(cited.passages[1]["data"]["metadata"][0]["page"], 0);
        assert_eq!(
            cited.passages[1]["data"]["source"]["url"],
            "http://h:1/v1/sources/s2/media#page=1"
        );
    }

    #[test]
    fn markers_beyond_the_citations_stay_text() {
        let answer = Answer {
            answer: "See [9] and [x] and [1".into(),
            citations: Vec::new(),
            generator: "extracted".into(),
            answered: false,
            relevance: 0.0,
            answer_type: crate::query::types::AnswerType::Other,
            sentences: Vec::new(),
            blocks: Vec::new(),
            generated: None,
            notices: Vec::new(),
        };
        let cited = cite(&answer, "http://h");
        assert_eq!(cited.content, "See [9] and [x] and [1");
        assert!(cited.annotations.is_empty());
    }

    #[test]
    fn title_prompts_get_the_first_words_of_the_question() {
        let m = |content: &str| Message {
            role: Role::User,
            content: content.into(),
        };
        assert_eq!(
            first_words(&[m("### Task: title\n<chat_history>\nUSER: When does the observatory open, and what does it cost?\nASSISTANT: ...\n</chat_history>")]),
            "When does the observatory open and"
        );
        assert_eq!(first_words(&[m("hello there")]), "hello there");
    }

    #[test]
    fn content_pieces_join_back() {
        let text = "One two three four five six seven [1][2] eight.";
        assert_eq!(content_pieces(text).concat(), text);
        assert!(content_pieces(text).len() > 1);
    }
}
