//! Answers with citations on the test corpus: extracted without a model, the embedded
//! SmolLM2 (verified), and an OpenAI-compatible server stand-in that records the prompt it
//! receives.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};

use crate::common::{mosaic, ok, real_model, serve, shared_index, Recorder, SMOLLM};

#[test]
fn without_a_model_the_answer_is_extracted_and_cited_at_its_sentence() {
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
    assert_eq!(answer["generator"], "extracted");
    assert_eq!(answer["answered"], true);
    let text = answer["answer"].as_str().unwrap();
    assert!(text.contains("17 seconds"), "{answer}");
    let citations = answer["citations"].as_array().unwrap();
    assert!(!citations.is_empty());
    assert!(
        citations[0]["source"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("faq-orbitron-q7.md"),
        "{answer}"
    );
    // Each answer sentence is a block sentence, followed by its own citation.
    let sentences = answer["sentences"].as_array().unwrap();
    assert!((1..=3).contains(&sentences.len()), "{answer}");
    for s in sentences {
        let n = s["citations"][0].as_u64().unwrap() as usize;
        let c = &citations[n - 1];
        assert_eq!(c["text"], s["text"]);
        let shown = s["text"].as_str().unwrap().trim_end_matches('.');
        assert!(text.contains(&format!("{shown} [{n}]")), "{text}");
        for key in ["n", "block", "source", "anchor", "url", "text"] {
            assert!(c.get(key).is_some(), "citation lacks {key}: {c}");
        }
        let block = &answer["context"][c["block"].as_u64().unwrap() as usize - 1];
        let quoted = s["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap();
        assert!(block["text"].as_str().unwrap().contains(quoted));
    }
}

/// An OpenAI-compatible chat endpoint: finds the block of the prompt that holds the ferry
/// dividend and answers citing that block's number (plus one number no block has), streamed
/// as server-sent events like a real server.
pub(crate) async fn chat(
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
    crate::common::chat_stream(pieces)
}

#[test]
fn openai_compatible_server_gets_numbered_blocks_and_its_citation_maps_back() {
    let index = shared_index();
    let recorder = Recorder::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(recorder.clone());
    let url = serve(app, &runtime);
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

/// SmolLM2-135M phrases answers when turned on; what it writes is verified, and an answer
/// the sources do not support is replaced by the extracted one.
#[test]
fn embedded_smollm2_answers_are_verified() {
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
    let context = answer["context"].as_array().unwrap();
    assert!(
        context.iter().any(|c| c["source"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("handbook-brightwater.md")),
        "the blocks given to the model include the right file: {answer}"
    );
    let generator = answer["generator"].as_str().unwrap();
    if generator == "extracted" {
        // Replaced: what the model wrote is kept for inspection.
        assert_eq!(answer["generated"]["by"], "embedded:SmolLM2-135M-Instruct");
        eprintln!("SmolLM2 wrote (replaced): {}", answer["generated"]["text"]);
    } else {
        assert_eq!(generator, "embedded:SmolLM2-135M-Instruct", "{answer}");
        eprintln!("SmolLM2 answer (verified): {}", answer["answer"]);
    }
    // Whoever wrote it, every sentence shown as supported cites a block that holds its facts,
    // and the fact is in the answer.
    let citations = answer["citations"].as_array().unwrap();
    for s in answer["sentences"].as_array().unwrap() {
        if s["supported"] == true {
            assert!(!s["citations"].as_array().unwrap().is_empty(), "{answer}");
        } else {
            assert!(answer["answer"].as_str().unwrap().contains("[unsupported]"));
        }
    }
    assert!(!citations.is_empty(), "{answer}");
    assert!(
        answer["answer"].as_str().unwrap().contains("23"),
        "{answer}"
    );
}

/// Calibration of `[answer] support_threshold` on the test corpus: each question's answer,
/// restated as a claim (its `answer_substring`), must reach the threshold against a sentence
/// of the blocks retrieved for it from its own file, and stay below it against the blocks
/// retrieved for a question about another file. The distributions are printed; at most one
/// claim in ten may fall on the wrong side.
#[test]
fn the_support_threshold_separates_restated_answers_from_foreign_ones() {
    use mosaic::embed::Purpose;
    use mosaic::query::evidence::block_sentences;
    use mosaic::query::verify::cosine;
    use mosaic::query::SearchRequest;

    crate::common::real_model(crate::common::MINILM);
    let dir = tempfile::tempdir().unwrap();
    let corpus = crate::common::corpus_copy(dir.path());
    let data = dir.path().join("data");
    ok(&mosaic(
        &data,
        &["--json", "ingest", corpus.to_str().unwrap()],
        &[],
    ));
    let mut questions: Vec<serde_json::Value> = Vec::new();
    for set in ["questions.json", "questions-heldout.json"] {
        let path = crate::common::fixtures().join("corpus").join(set);
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        questions.extend(list);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (positives, negatives, threshold) = runtime.block_on(async {
        let settings = mosaic::config::Settings {
            data_dir: data.clone(),
            ..Default::default()
        };
        let app = mosaic::app::Mosaic::open(settings).await.unwrap();
        let embedder = app.text_embedder(crate::common::MINILM).await.unwrap();
        // Per question: its claim's vector, and (file, sentence vector) of its blocks.
        let mut per_question = Vec::new();
        for q in &questions {
            let found = app
                .search(&SearchRequest {
                    rerank: false,
                    ..SearchRequest::new(q["question"].as_str().unwrap(), 5).passages()
                })
                .await
                .unwrap();
            let mut files = Vec::new();
            let mut texts = Vec::new();
            for (i, hit) in found.hits.iter().enumerate() {
                for s in block_sentences(i + 1, &hit.chunk, &[]) {
                    files.push(hit.chunk.source.uri.rsplit('/').next().unwrap().to_string());
                    // Verification reads block sentences as they are, without the context line.
                    texts.push(s.text.clone());
                }
            }
            let vectors = embedder.embed(texts, Purpose::Passage).await.unwrap();
            let claim = q["answer_substring"].as_str().unwrap().to_string();
            let claim = embedder
                .embed(vec![claim], Purpose::Passage)
                .await
                .unwrap()
                .remove(0);
            per_question.push((claim, files, vectors));
        }
        let best =
            |claim: &[f32], files: &[String], vectors: &[Vec<f32>], keep: &dyn Fn(&str) -> bool| {
                files
                    .iter()
                    .zip(vectors)
                    .filter(|(f, _)| keep(f))
                    .map(|(_, v)| cosine(claim, v))
                    .fold(f64::NEG_INFINITY, f64::max)
            };
        let mut positives = Vec::new();
        let mut negatives = Vec::new();
        for (i, q) in questions.iter().enumerate() {
            let file = q["file"].as_str().unwrap();
            let (claim, files, vectors) = &per_question[i];
            positives.push(best(claim, files, vectors, &|f| f == file));
            // The next question about another file: its blocks, less any from this file.
            let other = (1..questions.len())
                .map(|k| (i + k) % questions.len())
                .find(|&k| questions[k]["file"] != q["file"])
                .unwrap();
            let (_, files, vectors) = &per_question[other];
            negatives.push(best(claim, files, vectors, &|f| f != file));
        }
        (
            positives,
            negatives,
            app.pipelines.query.answer.support_threshold,
        )
    });
    let mut sorted_positive = positives.clone();
    sorted_positive.sort_by(f64::total_cmp);
    let mut sorted_negative = negatives.clone();
    sorted_negative.sort_by(f64::total_cmp);
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!(
        "restated answers vs their own blocks: {}",
        fmt(&sorted_positive)
    );
    eprintln!(
        "restated answers vs foreign blocks:   {}",
        fmt(&sorted_negative)
    );
    let below = positives.iter().filter(|&&p| p < threshold).count();
    let above = negatives.iter().filter(|&&n| n >= threshold).count();
    eprintln!(
        "threshold {threshold}: {below} of {} true claims below, {above} of {} foreign claims at or above",
        positives.len(),
        negatives.len()
    );
    assert!(below * 10 <= positives.len(), "too strict");
    assert!(above * 10 <= negatives.len(), "too lax");
}
