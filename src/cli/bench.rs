//! `mosaic bench`: embedding and query speed measured the way ingestion and search run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;

use crate::app::Mosaic;
use crate::config::Settings;
use crate::embed::{Purpose, TextEmbedder};
use crate::models::{ModelStore, TextModelSpec};
use crate::query::{RetrievalMode, SearchRequest};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Embedding throughput of a text model.
    Embed {
        #[arg(long, default_value = "sentence-transformers/all-MiniLM-L6-v2")]
        model: String,
        /// JSON array of strings, or one text per line.
        #[arg(long)]
        texts: PathBuf,
        /// Token budget per batch (real tokens: batches are packed without padding).
        #[arg(long, default_value_t = 8192)]
        batch_tokens: usize,
        /// At most this many texts per batch.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Compute threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Timed passes over all texts.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Cross-encoder throughput: score every text against one query.
    Rerank {
        #[arg(long, default_value = "cross-encoder/ms-marco-MiniLM-L-6-v2")]
        model: String,
        #[arg(long)]
        query: String,
        /// JSON array of strings, or one text per line.
        #[arg(long)]
        texts: PathBuf,
        #[arg(long, default_value_t = 8192)]
        batch_tokens: usize,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Query latency of `search` on the current index.
    Search {
        /// JSON array of strings or of objects with a "question" field.
        #[arg(long)]
        queries: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        no_rerank: bool,
    },
}

fn read_texts(path: &PathBuf) -> Result<Vec<String>> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(&raw) {
        return Ok(values
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Object(o) => o
                    .get("question")
                    .or_else(|| o.get("text"))
                    .and_then(|t| t.as_str())
                    .map(str::to_string),
                _ => None,
            })
            .collect());
    }
    Ok(raw
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// Peak resident memory of this process in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Sizes the compute thread pool; must run before any model work.
fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("setting the thread count")?;
    }
    Ok(())
}

pub async fn run(what: BenchCommand, settings: Settings, as_json: bool) -> Result<ExitCode> {
    match what {
        BenchCommand::Rerank {
            model,
            query,
            texts,
            batch_tokens,
            threads,
        } => {
            set_threads(threads)?;
            let texts = read_texts(&texts)?;
            let store = ModelStore::new(&settings.models.dir);
            let dir = store.require(&model)?;
            let report = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
                let reranker = crate::embed::CrossEncoder::load(&model, &dir, None, batch_tokens)?;
                let tokens: usize = reranker.tokenize(&query, &texts)?.iter().map(|(ids, _)| ids.len()).sum();
                reranker.score(&query, &texts[..texts.len().min(4)])?;
                let start = Instant::now();
                let scores = reranker.score(&query, &texts)?;
                let seconds = start.elapsed().as_secs_f64();
                Ok(json!({
                    "model": model, "pairs": texts.len(), "tokens": tokens, "seconds": seconds,
                    "pairs_per_s": texts.len() as f64 / seconds, "tokens_per_s": tokens as f64 / seconds,
                    "peak_rss_mib": peak_rss_mib(), "checksum": scores.iter().map(|&s| s as f64).sum::<f64>(),
                    "threads": rayon::current_num_threads(), "gemm": crate::embed::kernels::gemm().name(),
                }))
            })
            .await??;
            print_report(&report, as_json);
        }
        BenchCommand::Embed {
            model,
            texts,
            batch_tokens,
            batch,
            threads,
            repeat,
        } => {
            set_threads(threads)?;
            let texts = read_texts(&texts)?;
            let store = ModelStore::new(&settings.models.dir);
            let dir = store.require(&model)?;
            let spec = TextModelSpec::load(&model, &dir, None, None)?;
            let report = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
                let embedder =
                    TextEmbedder::load(spec, &dir, batch_tokens)?.with_max_batch_rows(batch);
                let ids = embedder.tokenize(&texts, Purpose::Passage)?;
                let tokens: usize = ids.iter().map(Vec::len).sum();
                // Warm-up on a few texts so one-time allocation is not timed.
                embedder.embed_ids(&ids[..ids.len().min(8)])?;
                let start = Instant::now();
                let mut vectors = Vec::new();
                for _ in 0..repeat.max(1) {
                    vectors = embedder.embed_ids(&ids)?;
                }
                let seconds = start.elapsed().as_secs_f64() / repeat.max(1) as f64;
                let checksum: f64 = vectors.iter().flatten().map(|&x| x as f64).sum();
                Ok(json!({
                    "model": embedder.spec().id, "texts": texts.len(), "tokens": tokens,
                    "seconds": seconds, "chunks_per_s": texts.len() as f64 / seconds,
                    "tokens_per_s": tokens as f64 / seconds, "peak_rss_mib": peak_rss_mib(),
                    "checksum": checksum, "batch_tokens": batch_tokens, "batch": batch,
                    "threads": rayon::current_num_threads(),
                    "gemm": crate::embed::kernels::gemm().name(),
                }))
            })
            .await??;
            print_report(&report, as_json);
        }
        BenchCommand::Search {
            queries,
            runs,
            no_rerank,
        } => {
            let queries = read_texts(&queries)?;
            let mosaic = Mosaic::open(settings).await?;
            let limit = mosaic.pipelines.query.answer.search_limit;
            let request = |query: &String| SearchRequest {
                query: query.clone(),
                limit,
                modalities: vec![],
                mode: RetrievalMode::Hybrid,
                rerank: !no_rerank,
            };
            // Warm-up loads the models (and says whether a reranker takes part).
            let mut reranker = None;
            if let Some(q) = queries.first() {
                reranker = mosaic.search(&request(q)).await?.reranker;
            }
            let mut latencies = Vec::new();
            for _ in 0..runs.max(1) {
                for q in &queries {
                    let start = Instant::now();
                    mosaic.search(&request(q)).await?;
                    latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                }
            }
            latencies.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            let counts = mosaic.catalog.counts().await?;
            let report = json!({
                "queries": latencies.len(), "sources": counts.sources, "chunks": counts.chunks,
                "p50_ms": percentile(&latencies, 0.5), "p95_ms": percentile(&latencies, 0.95),
                "mean_ms": latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
                "reranker": reranker,
            });
            print_report(&report, as_json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &serde_json::Value, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("JSON serializes")
        );
    } else if let Some(map) = report.as_object() {
        for (k, v) in map {
            println!("{k:>14}: {v}");
        }
    }
}
