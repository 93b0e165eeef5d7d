//! Grounded answers on the bundled samples (documents, a PDF, a DOCX and a spoken recording):
//! the extracted answer of the embedded default holds the fact, in at most three sentences,
//! each cited at its own words or time; questions the samples cannot answer are declined; a
//! generator's answers (replayed by an OpenAI-compatible stand-in that records the prompt)
//! are verified sentence by sentence.

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use crate::common::{mosaic, ok, real_model, repo, serve, Recorder, MINILM};

/// One ingested copy of samples/ (the recording transcribed by Whisper tiny.en).
fn samples_index() -> &'static PathBuf {
    static INDEX: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &INDEX
        .get_or_init(|| {
            real_model(MINILM);
            crate::speech::tiny_en();
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let samples = repo().join("samples");
            let report = ok(&mosaic(
                &data,
                &["--json", "ingest", samples.to_str().unwrap()],
                &[],
            ));
            assert_eq!(report["ingested"], 8, "{report}");
            (dir, data)
        })
        .1
}

fn ask(question: &str, env: &[(&str, &str)]) -> Value {
    ok(&mosaic(samples_index(), &["--json", "ask", question], env))
}

/// The demo questions, as `./scripts/demo.sh` asks them: the fact, at most three sentences,
/// every one supported and cited at the words it quotes.
#[test]
fn demo_questions_get_the_fact_cited_at_its_words() {
    for (question, file, facts, spoken) in [
        (
            "How large is the main telescope at Kestrel Ridge?",
            "telescopes.md",
            &["0.6-metre"][..],
            None,
        ),
        (
            "When is the lower car park closed for resurfacing?",
            "volunteer-briefing.opus",
            &["october", "november"][..],
            Some((10.3, 16.7)),
        ),
    ] {
        let answer = ask(question, &[]);
        assert_eq!(answer["generator"], "extracted", "{answer}");
        assert_eq!(answer["answered"], true, "{answer}");
        let text = answer["answer"].as_str().unwrap().to_lowercase();
        for fact in facts {
            assert!(text.contains(fact), "{question}: {text}");
        }
        let sentences = answer["sentences"].as_array().unwrap();
        assert!((1..=3).contains(&sentences.len()), "{answer}");
        let citations = answer["citations"].as_array().unwrap();
        let mut fact_cited = false;
        for s in sentences {
            assert_eq!(s["supported"], true, "{answer}");
            let numbers = s["citations"].as_array().unwrap();
            assert_eq!(numbers.len(), 1, "{answer}");
            let c = &citations[numbers[0].as_u64().unwrap() as usize - 1];
            // The citation quotes exactly this sentence, and its block holds it.
            assert_eq!(c["text"], s["text"], "{answer}");
            let block = &answer["context"][c["block"].as_u64().unwrap() as usize - 1];
            assert_eq!(block["source"], c["source"]);
            let uri = c["source"]["uri"].as_str().unwrap();
            let holds_fact = s["text"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains(facts[0]);
            if holds_fact {
                assert!(uri.ends_with(&format!("/{file}")), "{answer}");
                fact_cited = true;
            }
            match c["anchor"]["kind"].as_str().unwrap() {
                "span" => {
                    // A sentence's own span, inside its block's, holding exactly its words
                    // (Markdown and plain text are indexed as written).
                    let span = |a: &Value, k: &str| a["anchor"][k].as_u64().unwrap() as usize;
                    let (s0, s1) = (span(c, "char_start"), span(c, "char_end"));
                    assert!(s0 >= span(block, "char_start") && s1 <= span(block, "char_end"));
                    let raw = std::fs::read_to_string(uri.trim_start_matches("file://")).unwrap();
                    let words: String = raw.chars().skip(s0).take(s1 - s0).collect();
                    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
                    let words = words.replace("**", "");
                    assert_eq!(words.trim_start_matches("- "), c["text"], "{answer}");
                }
                "time" => {
                    let start = c["anchor"]["start_ms"].as_u64().unwrap() as f64 / 1000.0;
                    let end = c["anchor"]["end_ms"].as_u64().unwrap() as f64 / 1000.0;
                    if holds_fact {
                        let (from, to) = spoken.expect("the recording answers");
                        assert!(
                            (start - from).abs() <= 3.0 && end <= to + 3.0 && end > from,
                            "cited {start}-{end}, spoken {from}-{to}: {answer}"
                        );
                    }
                    let url = c["url"].as_str().unwrap();
                    assert!(url.ends_with(&format!("#t={start:.1},{end:.1}")), "{url}");
                    // Narrower than the transcript chunk it came from.
                    let b0 = block["anchor"]["start_ms"].as_u64().unwrap() as f64 / 1000.0;
                    let b1 = block["anchor"]["end_ms"].as_u64().unwrap() as f64 / 1000.0;
                    assert!(end - start < b1 - b0, "{answer}");
                }
                other => panic!("unexpected anchor {other}"),
            }
        }
        assert!(fact_cited, "no sentence holding {:?}: {answer}", facts[0]);
    }
}

/// Twenty-four answerable questions about the samples (paraphrases among them) and two the
/// samples cannot answer, judged by `mosaic eval --answers`. The figures are in the README.
#[test]
fn sample_questions_are_answered_or_declined() {
    let questions = repo().join("tests/fixtures/samples/questions.json");
    let report = ok(&mosaic(
        samples_index(),
        &["--json", "eval", "--answers", questions.to_str().unwrap()],
        &[],
    ));
    let summary = &report["summary"];
    eprintln!("answers on the samples: {summary}");
    for r in report["results"].as_array().unwrap() {
        if r["ok"] != true {
            eprintln!("miss: {r}");
        }
    }
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert!(n("answerable") >= 20 && n("unanswerable") >= 2, "{summary}");
    // Both unanswerable questions are declined, no answerable one is, and three answers in
    // four hold the fact from the right source (19 of 24 when this was written; the misses
    // are listed in docs/answers.md). Most timed answers cite a time range within 3 s of the
    // spoken answer.
    assert_eq!(n("declined_unanswerable"), n("unanswerable"), "{report}");
    assert_eq!(n("declined_answerable"), 0, "{report}");
    assert!(n("correct") * 4 >= n("answerable") * 3, "{report}");
    assert!(n("time") * 2 >= n("timed"), "{report}");
}

/// The number of the prompt's block whose text holds `needle`, or one that does not with
/// `!needle`.
fn block_number(prompt: &str, needle: &str) -> usize {
    let (needle, want) = match needle.strip_prefix('!') {
        Some(n) => (n, false),
        None => (needle, true),
    };
    prompt
        .split("\n[")
        .filter_map(|part| {
            let (n, rest) = part.split_once(']')?;
            let n: usize = n.parse().ok()?;
            (rest.contains(needle) == want).then_some(n)
        })
        .next()
        .unwrap_or(99)
}

/// Recorded generator outputs, one per question; `{0.6}` stands for the number of the block
/// holding "0.6-metre", `{other}` for one that does not.
fn recorded(question: &str) -> &'static str {
    if question.contains("main telescope") {
        // Right, wrong number, wrong name, right but uncited, right but cited to the wrong
        // block.
        "The main telescope is a 0.6-metre reflector installed in 2011 {0.6}. \
         It has a focal ratio of f/11 {0.6}. \
         It was named after Harriet Tubman {0.6}. \
         It sits on a computer-controlled fork mount. \
         It is named after Harriet Lowenthal, whose bequest paid for it {other}."
    } else if question.contains("car park") {
        // The embedded model's answer the issue quotes: nothing in it is in the blocks.
        "The lower car park is closed on the day of the last viewing, when 201 visitors come."
    } else {
        "I do not know."
    }
}

async fn chat(State(recorder): State<Recorder>, Json(body): Json<Value>) -> impl IntoResponse {
    recorder.requests.lock().unwrap().push(body.clone());
    let messages = body["messages"].as_array().unwrap();
    let prompt = messages.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    let question = prompt.rsplit("Question: ").next().unwrap_or_default();
    let text = recorded(question)
        .replace(
            "{0.6}",
            &format!("[{}]", block_number(&prompt, "0.6-metre")),
        )
        .replace(
            "{other}",
            &format!("[{}]", block_number(&prompt, "!0.6-metre")),
        );
    crate::common::chat_stream(text.split_inclusive(' '))
}

/// Serves [`chat`] on a loopback port; returns the base URL.
fn stand_in(recorder: &Recorder, runtime: &tokio::runtime::Runtime) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(recorder.clone());
    serve(app, runtime)
}

#[test]
fn generated_answers_are_verified_sentence_by_sentence() {
    let recorder = Recorder::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = stand_in(&recorder, &runtime);
    let env = [
        ("MOSAIC_LLM_URL", url.as_str()),
        ("MOSAIC__LLM__MODEL", "test-model"),
    ];
    let answer = ask("How large is the main telescope at Kestrel Ridge?", &env);
    assert_eq!(answer["generator"], "openai:test-model", "{answer}");
    let sentences = answer["sentences"].as_array().unwrap();
    assert_eq!(sentences.len(), 5, "{answer}");
    let verdict = |i: usize| {
        (
            sentences[i]["supported"].as_bool().unwrap(),
            sentences[i]["change"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(verdict(0), (true, "kept".into()), "{answer}");
    // A wrong number and a wrong name are marked, and lose their citation.
    assert_eq!(verdict(1), (false, "removed".into()), "{answer}");
    assert_eq!(sentences[1]["missing"], serde_json::json!(["11"]));
    assert_eq!(verdict(2), (false, "removed".into()), "{answer}");
    assert_eq!(sentences[2]["missing"], serde_json::json!(["tubman"]));
    // A right sentence gets the citation it lacked; a wrong citation is corrected.
    assert_eq!(verdict(3), (true, "added".into()), "{answer}");
    assert_eq!(verdict(4), (true, "corrected".into()), "{answer}");
    let text = answer["answer"].as_str().unwrap();
    assert!(
        text.contains("f/11 [unsupported].") && text.contains("Tubman [unsupported]."),
        "{text}"
    );
    let citations = answer["citations"].as_array().unwrap();
    let context = answer["context"].as_array().unwrap();
    for i in [0, 3, 4] {
        for n in sentences[i]["citations"].as_array().unwrap() {
            let c = &citations[n.as_u64().unwrap() as usize - 1];
            let block = &context[c["block"].as_u64().unwrap() as usize - 1];
            // Each citation lands on a sentence of its block.
            let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            let quoted = flat(c["text"].as_str().unwrap());
            let block_text = flat(block["text"].as_str().unwrap());
            for w in quoted.split(' ').rev().take(3) {
                assert!(
                    block_text.contains(w.trim_end_matches('.')),
                    "{w}: {answer}"
                );
            }
        }
    }
    let lowenthal = &citations[sentences[4]["citations"][0].as_u64().unwrap() as usize - 1];
    assert!(
        lowenthal["text"].as_str().unwrap().contains("Lowenthal"),
        "{answer}"
    );

    // The prompt: the instruction, then the numbered blocks with source and anchor.
    {
        let requests = recorder.requests.lock().unwrap();
        let sent = &requests[0];
        assert_eq!(sent["model"], "test-model");
        let system = sent["messages"][0]["content"].as_str().unwrap();
        assert!(
            system.contains("using only the numbered context blocks"),
            "{system}"
        );
        assert!(system.contains("End every sentence"), "{system}");
        let user = sent["messages"][1]["content"].as_str().unwrap();
        assert!(
            user.contains("[1] ") && user.contains("0.6-metre (24-inch)"),
            "{user}"
        );
        assert!(user.ends_with("Question: How large is the main telescope at Kestrel Ridge?"));
    }

    // A mostly unsupported answer is replaced by the extracted one, and says so.
    let replaced = ask("When is the lower car park closed for resurfacing?", &env);
    assert_eq!(replaced["generator"], "extracted", "{replaced}");
    assert_eq!(replaced["generated"]["by"], "openai:test-model");
    assert_eq!(replaced["generated"]["supported"], 0);
    assert!(
        replaced["answer"].as_str().unwrap().contains("October"),
        "{replaced}"
    );
    assert!(
        replaced["notices"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("showing the extracted answer instead")),
        "{replaced}"
    );

    // A question the sources cannot answer never reaches the model.
    let asked = recorder.requests.lock().unwrap().len();
    let declined = ask("What is the wifi password at the observatory?", &env);
    assert_eq!(declined["answered"], false, "{declined}");
    assert_eq!(recorder.requests.lock().unwrap().len(), asked);
}

#[test]
fn a_follow_up_is_searched_with_the_question_before_it() {
    let answer = ok(&mosaic(
        samples_index(),
        &[
            "--json",
            "ask",
            "And for children?",
            "--previous",
            "How much does a ticket for an adult cost?",
        ],
        &[],
    ));
    let text = answer["answer"].as_str().unwrap();
    assert!(text.contains("6 dollars for children"), "{answer}");
}
