//! `mosaic bench serve`: drives a running `mosaic serve` over HTTP the way its clients do, and
//! reports what they see: `/v1/search` latency percentiles and throughput at each concurrency,
//! chat time to first token (streamed, one conversation at a time), and `/v1/embeddings`
//! throughput in texts and tokens per second.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::bench::percentile;

/// What `bench serve` measures; see the subcommand's help.
pub struct ServeBench {
    pub url: String,
    pub key: Option<String>,
    pub queries: Vec<String>,
    pub concurrency: Vec<usize>,
    pub requests: usize,
    pub top_k: usize,
    pub chats: usize,
    pub texts: Vec<String>,
    pub embed_batch: usize,
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

/// One request's outcome: its latency, or how it failed.
enum Outcome {
    Ok(f64),
    Busy,
    Failed(String),
}

impl Client {
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        request
    }

    /// Sends one JSON request and reads the whole body.
    async fn call(&self, path: &str, body: &Value) -> Outcome {
        let start = Instant::now();
        let response = match self.post(path, body).send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let status = response.status();
        let bytes = response.bytes().await;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        match (status.as_u16(), bytes) {
            (200, Ok(_)) => Outcome::Ok(ms),
            (429, _) => Outcome::Busy,
            (code, Ok(b)) => Outcome::Failed(format!(
                "{path}: HTTP {code}: {}",
                String::from_utf8_lossy(&b[..b.len().min(300)])
            )),
            (_, Err(e)) => Outcome::Failed(format!("{path}: reading the body: {e}")),
        }
    }
}

fn summary(latencies: &mut [f64]) -> Value {
    latencies.sort_by(|a, b| a.total_cmp(b));
    json!({
        "p50_ms": percentile(latencies, 0.50),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "mean_ms": latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
    })
}

/// `requests` searches over the queries, `concurrency` in flight at a time.
async fn search_level(
    client: &Arc<Client>,
    queries: &Arc<Vec<String>>,
    top_k: usize,
    concurrency: usize,
    requests: usize,
) -> Result<Value> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, queries, next) = (client.clone(), queries.clone(), next.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return outcomes;
                    }
                    let body = json!({"query": queries[n % queries.len()], "top_k": top_k});
                    outcomes.push(client.call("/v1/search", &body).await);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut busy, mut errors) = (0usize, Vec::new());
    for worker in workers {
        for outcome in worker.await.context("a search worker panicked")? {
            match outcome {
                Outcome::Ok(ms) => latencies.push(ms),
                Outcome::Busy => busy += 1,
                Outcome::Failed(e) => errors.push(e),
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    if let Some(first) = errors.first() {
        bail!(
            "{} of {requests} searches failed; first: {first}",
            errors.len()
        );
    }
    let mut report = summary(&mut latencies);
    report["concurrency"] = json!(concurrency);
    report["requests"] = json!(requests);
    report["ok"] = json!(latencies.len());
    report["rejected_429"] = json!(busy);
    report["per_s"] = json!(latencies.len() as f64 / wall);
    Ok(report)
}

/// One streamed chat: times to the first byte, to the role delta, to the first content delta
/// and to `[DONE]`, in milliseconds.
async fn streamed_chat(client: &Client, question: &str) -> Result<[f64; 4]> {
    let body = json!({
        "model": "mosaic", "stream": true,
        "messages": [{"role": "user", "content": question}],
    });
    let start = Instant::now();
    let mut response = client.post("/v1/chat/completions", &body).send().await?;
    if !response.status().is_success() {
        bail!("chat: HTTP {}", response.status());
    }
    let ms = |start: Instant| start.elapsed().as_secs_f64() * 1000.0;
    let (mut first_byte, mut role, mut content) = (None, None, None);
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await? {
        first_byte.get_or_insert_with(|| ms(start));
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                let done = ms(start);
                let or_done = |t: Option<f64>| t.unwrap_or(done);
                return Ok([or_done(first_byte), or_done(role), or_done(content), done]);
            }
            let value: Value = serde_json::from_str(data).context("a chat chunk is not JSON")?;
            if let Some(error) = value.get("error") {
                bail!("chat stream error: {error}");
            }
            let delta = &value["choices"][0]["delta"];
            if delta.get("role").is_some() {
                role.get_or_insert_with(|| ms(start));
            }
            if delta["content"].as_str().is_some_and(|c| !c.is_empty()) {
                content.get_or_insert_with(|| ms(start));
            }
        }
    }
    bail!("chat stream ended without [DONE]")
}

async fn chat_report(client: &Client, queries: &[String], chats: usize) -> Result<Value> {
    let mut times: [Vec<f64>; 4] = Default::default();
    for n in 0..chats {
        let t = streamed_chat(client, &queries[n % queries.len()]).await?;
        for (all, one) in times.iter_mut().zip(t) {
            all.push(one);
        }
    }
    let [first_byte, role, content, done] = &mut times;
    Ok(json!({
        "chats": chats,
        "first_byte": summary(first_byte),
        "first_role_delta": summary(role),
        "first_content_token": summary(content),
        "complete": summary(done),
    }))
}

async fn embeddings_report(client: &Client, texts: &[String], batch: usize) -> Result<Value> {
    let (mut tokens, mut vectors) = (0u64, 0usize);
    let start = Instant::now();
    for part in texts.chunks(batch.max(1)) {
        let body = json!({"input": part, "encoding_format": "base64"});
        let response = client.post("/v1/embeddings", &body).send().await?;
        let status = response.status();
        let value: Value = serde_json::from_slice(&response.bytes().await?)
            .context("the embeddings response is not JSON")?;
        if !status.is_success() {
            bail!("embeddings: HTTP {status}: {value}");
        }
        vectors += value["data"].as_array().map_or(0, Vec::len);
        tokens += value["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    }
    let wall = start.elapsed().as_secs_f64();
    if vectors != texts.len() {
        bail!(
            "embeddings: {} texts sent, {vectors} vectors back",
            texts.len()
        );
    }
    Ok(json!({
        "texts": vectors, "batch": batch, "tokens": tokens, "seconds": wall,
        "texts_per_s": vectors as f64 / wall, "tokens_per_s": tokens as f64 / wall,
    }))
}

pub async fn run(bench: ServeBench) -> Result<Value> {
    if bench.queries.is_empty() {
        bail!("no queries to send");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(64)
        .build()
        .context("building the HTTP client")?;
    let client = Arc::new(Client {
        http,
        base: bench.url.trim_end_matches('/').to_string(),
        key: bench.key,
    });
    let health = client
        .http
        .get(format!("{}/healthz", client.base))
        .send()
        .await
        .with_context(|| format!("no server answers at {}", client.base))?;
    if !health.status().is_success() {
        bail!("{}/healthz answered {}", client.base, health.status());
    }
    let queries = Arc::new(bench.queries);
    // Warm-up: loads the embedder and the reranker, and fills the server's caches the way
    // a server that has been up a while has them.
    search_level(&client, &queries, bench.top_k, 1, queries.len().min(8)).await?;
    let mut levels = Vec::new();
    for &c in &bench.concurrency {
        levels.push(search_level(&client, &queries, bench.top_k, c, bench.requests).await?);
    }
    let chat = if bench.chats > 0 {
        streamed_chat(&client, &queries[0]).await?; // loads the generator
        chat_report(&client, &queries, bench.chats).await?
    } else {
        Value::Null
    };
    let embeddings = if bench.texts.is_empty() {
        Value::Null
    } else {
        embeddings_report(&client, &bench.texts[..bench.texts.len().min(32)], 32).await?;
        embeddings_report(&client, &bench.texts, bench.embed_batch).await?
    };
    Ok(json!({
        "url": client.base, "top_k": bench.top_k,
        "search": levels, "chat": chat, "embeddings": embeddings,
    }))
}
