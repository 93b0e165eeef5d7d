//! `mosaic eval`: retrieval quality on a questions file, for hybrid, dense-only and BM25-only
//! retrieval side by side (hit rate at k and mean reciprocal rank); with `--answers`, the
//! quality of the answers `ask` gives (the fact, the cited source and time, and saying so when
//! the sources do not answer).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::json;

use crate::app::Mosaic;
use crate::query::{RetrievalMode, SearchRequest};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// JSON array of {"question", "file", "page" (optional), "answer_substring"}.
    pub questions: PathBuf,
    /// Cut-off rank.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// Skip the cross-encoder.
    #[arg(long)]
    pub no_rerank: bool,
    /// Judge the answers of `ask` instead of retrieval. Questions may add "facts" (strings
    /// the answer must hold, each with `|`-separated alternatives), "other_files" (other files that hold the answer), "time_s"
    /// ([start, end] of the spoken answer in a recording) and "unanswerable": true.
    #[arg(long)]
    pub answers: bool,
    /// With --answers: how far (seconds) a cited time range may start or end outside the
    /// spoken answer.
    #[arg(long, default_value_t = 3.0)]
    pub time_tolerance: f64,
}

/// A question for `eval --answers`.
#[derive(Debug, Deserialize)]
pub struct AnswerQuestion {
    pub question: String,
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub other_files: Vec<String>,
    #[serde(default)]
    pub answer_substring: Option<String>,
    #[serde(default)]
    pub facts: Vec<String>,
    #[serde(default)]
    pub time_s: Option<[f64; 2]>,
    #[serde(default)]
    pub unanswerable: bool,
    /// What the question asks for (`quantity`, `size`, … as `query::types` names them):
    /// results are reported per type.
    #[serde(default, rename = "type")]
    pub answer_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Question {
    pub question: String,
    pub file: String,
    #[serde(default)]
    pub page: Option<u32>,
    pub answer_substring: String,
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Rank (1-based) of the first hit from the right file (and page) holding the answer.
pub async fn first_relevant_rank(
    mosaic: &Mosaic,
    q: &Question,
    mode: RetrievalMode,
    k: usize,
    rerank: bool,
) -> Result<Option<usize>> {
    let outcome = mosaic
        .search(&SearchRequest {
            mode,
            rerank,
            ..SearchRequest::new(q.question.clone(), k).passages()
        })
        .await?;
    let needle = normalize(&q.answer_substring);
    Ok(outcome.hits.iter().find_map(|h| {
        let right_file = h.chunk.source.uri.ends_with(&format!("/{}", q.file));
        let right_page = match (q.page, &h.chunk.anchor) {
            (Some(p), crate::catalog::Anchor::Span { page: Some(hp), .. }) => p == *hp,
            (Some(_), _) => false,
            (None, _) => true,
        };
        (right_file && right_page && normalize(&h.chunk.text).contains(&needle)).then_some(h.rank)
    }))
}

/// Lower case, markers and emphasis removed, white space collapsed: how answers are compared.
fn comparable(s: &str) -> String {
    let (text, _) = crate::query::cite::split_markers(s, usize::MAX);
    normalize(&text.replace("[unsupported]", "")).to_lowercase()
}

/// Judges one answer.
fn judge_answer(
    q: &AnswerQuestion,
    answer: &crate::query::Answer,
    tolerance_s: f64,
) -> serde_json::Value {
    let text = comparable(&answer.answer);
    let asked = q.answer_type.clone().unwrap_or_else(|| "other".into());
    let classified = answer.answer_type.name();
    // What a reader sees of the answer: its text without the citation markers.
    let length = crate::query::cite::split_markers(&answer.answer, usize::MAX)
        .0
        .chars()
        .count();
    let citations: Vec<serde_json::Value> = answer
        .citations
        .iter()
        .map(|c| json!({"n": c.n, "file": c.source.uri.rsplit('/').next(), "anchor": c.anchor}))
        .collect();
    if q.unanswerable {
        return json!({
            "question": q.question, "unanswerable": true, "ok": !answer.answered,
            "type": asked, "classified": classified,
            "answered": answer.answered, "relevance": answer.relevance,
            "answer": answer.answer, "citations": citations,
        });
    }
    // Each fact is one string or alternatives separated by `|` ("seven|7").
    let mut needles: Vec<Vec<String>> = q
        .facts
        .iter()
        .map(|f| f.split('|').map(comparable).collect())
        .collect();
    needles.extend(q.answer_substring.iter().map(|a| vec![comparable(a)]));
    let fact = answer.answered
        && needles
            .iter()
            .all(|alternatives| alternatives.iter().any(|n| text.contains(n)));
    let right_file = |uri: &str| {
        std::iter::once(&q.file)
            .chain(&q.other_files)
            .any(|f| !f.is_empty() && uri.ends_with(&format!("/{f}")))
    };
    let source = answer.citations.iter().any(|c| right_file(&c.source.uri));
    let time = q.time_s.map(|[start, end]| {
        answer.citations.iter().any(|c| match c.anchor {
            crate::catalog::Anchor::Time { start_ms, end_ms } if right_file(&c.source.uri) => {
                let (s, e) = (start_ms as f64 / 1000.0, end_ms as f64 / 1000.0);
                (s - start).abs() <= tolerance_s && e <= end + tolerance_s && e >= start
            }
            _ => false,
        })
    });
    let short = answer.sentences.len() <= 3;
    json!({
        "question": q.question, "ok": fact && source && time.unwrap_or(true) && short,
        "type": asked, "classified": classified, "length": length,
        "fact": fact, "source": source, "time": time, "sentences": answer.sentences.len(),
        "answered": answer.answered, "relevance": answer.relevance,
        "answer": answer.answer, "citations": citations,
    })
}

/// `eval --answers`: asks every question and judges the answers.
async fn run_answers(
    mosaic: &Mosaic,
    args: &EvalArgs,
    questions: Vec<AnswerQuestion>,
    as_json: bool,
) -> Result<ExitCode> {
    let mut results = Vec::new();
    for q in &questions {
        let (sink, _stream) = tokio::sync::mpsc::unbounded_channel();
        let answer = mosaic
            .ask(&crate::query::AskRequest::new(q.question.clone()), sink)
            .await?;
        results.push(judge_answer(q, &answer, args.time_tolerance));
    }
    let summary = summarize(&results.iter().collect::<Vec<_>>());
    // Per answer type, in the order `query::types` lists them (then any other names).
    let mut names: Vec<String> = crate::query::types::AnswerType::ALL
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    for r in &results {
        let name = r["type"].as_str().unwrap_or("other").to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut by_type = serde_json::Map::new();
    for name in names {
        let of_type: Vec<&serde_json::Value> = results
            .iter()
            .filter(|r| r["type"] == name.as_str())
            .collect();
        if !of_type.is_empty() {
            by_type.insert(name, summarize(&of_type));
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "summary": summary, "by_type": by_type, "results": results })
            )?
        );
    } else {
        for r in &results {
            let mark = if r["ok"] == true { "ok  " } else { "MISS" };
            println!(
                "{mark} [{}] {}\n     {}",
                r["type"].as_str().unwrap_or_default(),
                r["question"].as_str().unwrap_or_default(),
                r["answer"].as_str().unwrap_or_default()
            );
        }
        let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_default();
        println!(
            "\n{:<11} {:>5} {:>7} {:>5} {:>6} {:>8} {:>7} {:>8} {:>6}",
            "type", "asked", "correct", "fact", "source", "declined", "unans.", "declined", "chars"
        );
        for (name, s) in by_type
            .iter()
            .chain(std::iter::once((&"all".to_string(), &summary)))
        {
            println!(
                "{:<11} {:>5} {:>7} {:>5} {:>6} {:>8} {:>7} {:>8} {:>6.0}",
                name,
                n(s, "answerable"),
                n(s, "correct"),
                n(s, "fact"),
                n(s, "source"),
                n(s, "declined_answerable"),
                n(s, "unanswerable"),
                n(s, "declined_unanswerable"),
                s["mean_length"].as_f64().unwrap_or_default()
            );
        }
        if n(&summary, "timed") > 0 {
            println!(
                "recording times within {} s: {} of {}",
                args.time_tolerance,
                n(&summary, "time"),
                n(&summary, "timed")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts over some judged answers: facts, sources, times, declines, and the mean length of
/// the answers given (characters shown, without citation markers).
fn summarize(results: &[&serde_json::Value]) -> serde_json::Value {
    let count =
        |pick: &dyn Fn(&serde_json::Value) -> bool| results.iter().filter(|r| pick(r)).count();
    let lengths: Vec<f64> = results
        .iter()
        .filter(|r| r["unanswerable"] != true && r["answered"] == true)
        .filter_map(|r| r["length"].as_f64())
        .collect();
    let mean_length = if lengths.is_empty() {
        0.0
    } else {
        lengths.iter().sum::<f64>() / lengths.len() as f64
    };
    let answerable = count(&|r| r["unanswerable"] != true);
    let unanswerable = results.len() - answerable;
    let timed = count(&|r| r["time"].is_boolean());
    json!({
        "questions": results.len(),
        "answerable": answerable,
        "correct": count(&|r| r["unanswerable"] != true && r["ok"] == true),
        "fact": count(&|r| r["fact"] == true),
        "source": count(&|r| r["source"] == true),
        "timed": timed,
        "time": count(&|r| r["time"] == true),
        "declined_answerable": count(&|r| r["unanswerable"] != true && r["answered"] == false),
        "unanswerable": unanswerable,
        "declined_unanswerable": count(&|r| r["unanswerable"] == true && r["ok"] == true),
        "classified": count(&|r| r["type"] == r["classified"]),
        "mean_length": mean_length,
    })
}

pub async fn run(mosaic: &Mosaic, args: EvalArgs, as_json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.questions)
        .with_context(|| format!("reading {}", args.questions.display()))?;
    if args.answers {
        let questions: Vec<AnswerQuestion> =
            serde_json::from_str(&text).context("questions file")?;
        return run_answers(mosaic, &args, questions, as_json).await;
    }
    let questions: Vec<Question> = serde_json::from_str(&text).context("questions file")?;
    let mut results = Vec::new();
    for mode in [
        RetrievalMode::Hybrid,
        RetrievalMode::Dense,
        RetrievalMode::Bm25,
    ] {
        let mut hits = 0;
        let mut reciprocal = 0.0;
        let mut misses = Vec::new();
        for q in &questions {
            match first_relevant_rank(mosaic, q, mode, args.k, !args.no_rerank).await? {
                Some(rank) => {
                    hits += 1;
                    reciprocal += 1.0 / rank as f64;
                }
                None => misses.push(q.question.clone()),
            }
        }
        let n = questions.len().max(1) as f64;
        results.push(json!({
            "mode": mode, "k": args.k, "questions": questions.len(),
            "hit_rate": hits as f64 / n, "mrr": reciprocal / n, "misses": misses,
        }));
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "results": results }))?
        );
    } else {
        println!(
            "{:<8} {:>9} {:>7}",
            "mode",
            format!("hit@{}", args.k),
            "MRR"
        );
        for r in &results {
            println!(
                "{:<8} {:>9.3} {:>7.3}",
                r["mode"].as_str().unwrap_or_default(),
                r["hit_rate"].as_f64().unwrap_or_default(),
                r["mrr"].as_f64().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
