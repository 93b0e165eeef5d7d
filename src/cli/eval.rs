//! `mosaic eval`: retrieval quality on a questions file, for hybrid, dense-only and BM25-only
//! retrieval side by side (hit rate at k and mean reciprocal rank).

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
            query: q.question.clone(),
            limit: k,
            modalities: Vec::new(),
            mode,
            rerank,
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

pub async fn run(mosaic: &Mosaic, args: EvalArgs, as_json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.questions)
        .with_context(|| format!("reading {}", args.questions.display()))?;
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
