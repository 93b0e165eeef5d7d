//! Answers with citations: extractive without a model, the embedded SmolLM2, and an
//! OpenAI-compatible server stand-in that records the prompt it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};

use crate::common::{mosaic, ok, real_model, shared_index, SMOLLM};

#[test]
fn without_a_model_the_answer_is_extractive_and_cited() {
    let index = shared_index();
    let answer = ok(&mosaic(
        &index.data,
        &[
            "--json",
            "ask",
            "How long must I hold the reset pinhole on the Orbitron Q7?",
        ],
        &[],
    ));
    assert_eq!(answer["generator"], "extractive");
    let citations = answer["citations"].as_array().unwrap();
    assert!(!citations.is_empty());
    assert!(
        citations[0]["source"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("faq-orbitron-q7.md"),
        "{answer}"
    );
    assert!(answer["answer"].as_str().unwrap().contains("[1]"));
    // It cites exactly the passages it shows.
    let shown = answer["answer"].as_str().unwrap().matches("\n[").count();
    assert_eq!(citations.len(), shown, "{answer}");
    for c in citations {
        for key in ["n", "source", "anchor", "url", "text"] {
            assert!(c.get(key).is_some(), "citation lacks {key}: {c}");
        }
    }
}

#[derive(Clone, Default)]
struct Recorder {
    requests: Arc<Mutex<Vec<serde_json::Value>>>,
}

/// An OpenAI-compatible chat endpoint: finds the block of the prompt that holds the ferry
/// dividend and answers citing that block's number (plus one number no block has), streamed
/// as server-sent events like a real server.
async fn chat(
    State(recorder): State<Recorder>,
    Json(body): Json<serde_json::Value>,
) -> impl IntoResponse {
    recorder.requests.lock().unwrap().push(body.clone());
    let prompt: String = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let block = prompt
        .split("\n[")
        .filter_map(|part| {
            let (n, rest) = part.split_once(']')?;
            let n: usize = n.parse().ok()?;
            rest.contains("350 kroner").then_some(n)
        })
        .next()
        .unwrap_or(99);
    let pieces = [
        "The cooperative pays ",
        "350 kroner per household ",
        &format!("[{block}]"),
        " and more [42].",
    ];
    let mut sse = String::new();
    for piece in pieces {
        let chunk = serde_json::json!({
            "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "test-model",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": null}]
        });
        sse.push_str(&format!("data: {chunk}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], sse)
}

#[test]
fn openai_compatible_server_gets_numbered_blocks_and_its_citation_maps_back() {
    let index = shared_index();
    let recorder = Recorder::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(recorder.clone());
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let url = format!("http://{addr}/v1");
    let answer = ok(&mosaic(
        &index.data,
        &[
            "--json",
            "ask",
            "What dividend will each member household of the ferry cooperative get?",
        ],
        &[
            ("MOSAIC_LLM_URL", url.as_str()),
            ("MOSAIC__LLM__MODEL", "test-model"),
        ],
    ));
    assert_eq!(answer["generator"], "openai:test-model");
    assert!(
        answer["answer"]
            .as_str()
            .unwrap()
            .starts_with("The cooperative pays 350 kroner"),
        "{answer}"
    );

    let requests = recorder.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent["model"], "test-model");
    assert_eq!(sent["stream"], true);
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let user = messages[1]["content"].as_str().unwrap();
    assert!(
        user.contains("[1] ") && user.contains("[2] "),
        "numbered blocks in the prompt: {user}"
    );
    assert!(user.contains("Question: What dividend will each member household"));
    assert!(
        user.contains("350 kroner"),
        "the answer passage was retrieved into the prompt"
    );

    // The server cited the block holding the answer; [42] refers to no block and is dropped,
    // from the citations and from the answer's text.
    assert!(
        !answer["answer"].as_str().unwrap().contains("[42]"),
        "{answer}"
    );
    let citations = answer["citations"].as_array().unwrap();
    assert_eq!(citations.len(), 1, "{answer}");
    assert!(citations[0]["source"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("annual-report-nordvik-ferries.pdf"));
    assert_eq!(citations[0]["anchor"]["page"], 3);
    assert!(citations[0]["url"].as_str().unwrap().ends_with("#page=3"));
    assert!(citations[0]["text"]
        .as_str()
        .unwrap()
        .contains("350 kroner"));
}

#[test]
fn embedded_smollm2_answers_from_the_right_source() {
    real_model(SMOLLM);
    let index = shared_index();
    let answer = ok(&mosaic(
        &index.data,
        &[
            "--json",
            "ask",
            "How many days of paid annual leave do full-time Brightwater employees receive?",
        ],
        &[
            ("MOSAIC__LLM__EMBEDDED", "true"),
            ("MOSAIC__LLM__MAX_TOKENS", "64"),
        ],
    ));
    assert_eq!(
        answer["generator"], "embedded:SmolLM2-135M-Instruct",
        "{answer}"
    );
    let text = answer["answer"].as_str().unwrap();
    assert!(!text.trim().is_empty());
    let citations = answer["citations"].as_array().unwrap();
    let context = answer["context"].as_array().unwrap();
    assert!(
        context.iter().any(|c| c["source"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("handbook-brightwater.md")),
        "the blocks given to the model include the right file: {answer}"
    );
    if citations.is_empty() {
        // A 135M model does not always write [n]; the CLI then lists the blocks it was given.
        eprintln!("SmolLM2 cited no block");
    } else {
        assert!(
            citations.iter().any(|c| c["source"]["uri"]
                .as_str()
                .unwrap()
                .ends_with("handbook-brightwater.md")),
            "{answer}"
        );
    }
    eprintln!("SmolLM2 answer: {text}");
}
