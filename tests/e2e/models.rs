//! Model code against reference implementations: the real all-MiniLM-L6-v2 against
//! sentence-transformers, and random-weight BERT / XLM-R embedders and cross-encoders against
//! transformers (fixtures rebuilt by scripts/make_parity_fixtures.py). Each check runs on
//! every product path this machine offers (f32 on each BLAS library and the pure-Rust GEMM,
//! bf16 on Mosaic's kernel and on MKL); the paths it lacks are named as skipped.

use std::path::Path;

use mosaic::embed::{CrossEncoder, Purpose, TextEmbedder};
use mosaic::kernels::path::ProductPath;
use mosaic::models::TextModelSpec;

use crate::common::{cosine, fixtures, floats, real_model, MINILM};

fn load_embedder(id: &str, dir: &Path) -> TextEmbedder {
    let spec = TextModelSpec::load(id, dir, None, None).unwrap();
    TextEmbedder::load(spec, dir, 8192).unwrap()
}

/// Every product path to check here, after naming the ones this machine lacks.
fn paths(check: &str) -> Vec<ProductPath> {
    for (path, why) in ProductPath::unavailable() {
        eprintln!("{check}: skipped {}: {why}", path.id());
    }
    ProductPath::all_available()
}

fn embedder_on(id: &str, dir: &Path, path: ProductPath) -> TextEmbedder {
    let mut e = load_embedder(id, dir);
    assert_eq!(e.set_dtype(path.id(), None).unwrap().path, path);
    e
}

fn expected(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn minilm_reproduces_the_model_card_cosine() {
    let dir = real_model(MINILM);
    let embedder = load_embedder(MINILM, &dir);
    assert_eq!(embedder.spec().dims(), 384);
    assert_eq!(embedder.spec().max_tokens, 256);
    let v = embedder
        .embed(
            &[
                "A man is eating food.".into(),
                "A man is eating a piece of bread.".into(),
            ],
            Purpose::Passage,
        )
        .unwrap();
    let c = cosine(&v[0], &v[1]);
    assert!((c - 0.7553).abs() < 1e-3, "cosine {c}");
}

#[test]
fn minilm_matches_sentence_transformers() {
    let dir = real_model(MINILM);
    for path in paths("minilm") {
        minilm_parity_on(&dir, path);
    }
}

fn minilm_parity_on(dir: &Path, path: ProductPath) {
    let embedder = embedder_on(MINILM, dir, path);
    // f32 paths match the reference to rounding; bf16 ones within the parity bar.
    let bar = if path.dtype() == "f32" { 0.9999 } else { 0.999 };
    let mut worst = 1.0f64;
    let reference = expected(&fixtures().join("models/minilm-reference.json"));
    let sentences = reference["sentences"].as_array().unwrap();
    let texts: Vec<String> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect();
    let ids = embedder.tokenize(&texts, Purpose::Passage).unwrap();
    let vectors = embedder.embed(&texts, Purpose::Passage).unwrap();
    let mut truncated = 0;
    for (i, s) in sentences.iter().enumerate() {
        let want_ids: Vec<u32> = s["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids[i], want_ids, "token ids of sentence {i}");
        truncated += s["truncated"].as_bool().unwrap() as usize;
        let c = cosine(&vectors[i], &floats(&s["embedding"]));
        worst = worst.min(c);
        assert!(
            c >= bar,
            "{}: sentence {i}: cosine {c} against sentence-transformers",
            path.id()
        );
    }
    eprintln!(
        "minilm on {}: worst cosine {worst:.6} against sentence-transformers",
        path.id()
    );
    assert!(truncated >= 1, "the reference set exercises truncation");
}

fn embedder_parity(name: &str) {
    for path in paths(name) {
        embedder_parity_on(name, path);
    }
}

fn embedder_parity_on(name: &str, path: ProductPath) {
    let dir = fixtures().join("models").join(name);
    let embedder = embedder_on(&format!("mosaic-test/{name}"), &dir, path);
    let reference = expected(&dir.join("expected.json"));
    let sentences = reference["sentences"].as_array().unwrap();
    let texts: Vec<String> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect();
    let ids = embedder.tokenize(&texts, Purpose::Passage).unwrap();
    let vectors = embedder.embed(&texts, Purpose::Passage).unwrap();
    for (i, s) in sentences.iter().enumerate() {
        let want_ids: Vec<u32> = s["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids[i], want_ids, "{name}: token ids of sentence {i}");
        let want = floats(&s["embedding"]);
        let c = cosine(&vectors[i], &want);
        let max_abs = vectors[i]
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let ok = if path.dtype() == "f32" {
            c > 0.9999 && max_abs < 1e-4
        } else {
            c >= 0.999
        };
        assert!(
            ok,
            "{name} on {}: sentence {i}: cosine {c}, max abs {max_abs}",
            path.id()
        );
    }
}

#[test]
fn bert_embedder_matches_sentence_transformers() {
    embedder_parity("tiny-bert-embedder");
}

#[test]
fn xlm_roberta_embedder_matches_sentence_transformers() {
    embedder_parity("tiny-xlmr-embedder");
}

fn cross_encoder_parity(name: &str) {
    for path in paths(name) {
        cross_encoder_parity_on(name, path);
    }
}

fn cross_encoder_parity_on(name: &str, path: ProductPath) {
    let dir = fixtures().join("models").join(name);
    let reference = expected(&dir.join("expected.json"));
    let window = reference["encoding"]["max_length"].as_u64().unwrap() as usize;
    let mut model =
        CrossEncoder::load(&format!("mosaic-test/{name}"), &dir, Some(window), 8192).unwrap();
    assert_eq!(model.set_dtype(path.id(), None).unwrap().path, path);
    for (i, pair) in reference["pairs"].as_array().unwrap().iter().enumerate() {
        let query = pair["query"].as_str().unwrap();
        let passage = pair["passage"].as_str().unwrap().to_string();
        let encoded = model
            .tokenize(query, std::slice::from_ref(&passage))
            .unwrap();
        let want_ids: Vec<u32> = pair["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(encoded[0].0, want_ids, "{name}: token ids of pair {i}");
        // XLM-R takes no token types (all zero); BERT's are recorded.
        let want_types: Vec<u32> = match pair["token_type_ids"].as_array() {
            Some(types) => types.iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            None => vec![0; want_ids.len()],
        };
        assert_eq!(encoded[0].1, want_types, "{name}: type ids of pair {i}");
    }
    // Batched scoring (padding inside the batch) against the reference logits.
    let pairs = reference["pairs"].as_array().unwrap();
    let want: Vec<f32> = floats(&reference["logits"]);
    if path.dtype() == "bf16" {
        // The parity bar is on what the head reads: each pair's first-token state within
        // cosine 0.999 of the f32 path's (which matches the reference to 1e-4 below). A
        // random-weight head amplifies bf16 rounding into the logits, so they are not compared.
        let f32_model =
            CrossEncoder::load(&format!("mosaic-test/{name}"), &dir, Some(window), 8192).unwrap();
        for pair in pairs {
            let query = pair["query"].as_str().unwrap();
            let passage = pair["passage"].as_str().unwrap().to_string();
            let encoded = model.tokenize(query, &[passage]).unwrap();
            let batch = mosaic::embed::encoder::TokenBatch {
                ids: vec![encoded[0].0.clone()],
                type_ids: vec![encoded[0].1.clone()],
            };
            let (a, b) = (
                model.first_token_states(&batch).unwrap(),
                f32_model.first_token_states(&batch).unwrap(),
            );
            let c = cosine(&a[0], &b[0]);
            assert!(
                c >= 0.999,
                "{name} on {}: first-token cosine {c}",
                path.id()
            );
        }
        return;
    }
    let tolerance = 1e-4;
    for (i, pair) in pairs.iter().enumerate() {
        let query = pair["query"].as_str().unwrap();
        let passages: Vec<String> = pairs
            .iter()
            .filter(|p| p["query"] == pair["query"])
            .map(|p| p["passage"].as_str().unwrap().to_string())
            .collect();
        let scores = model.score(query, &passages).unwrap();
        let mine = passages
            .iter()
            .position(|p| p == pair["passage"].as_str().unwrap())
            .unwrap();
        assert!(
            (scores[mine] - want[i]).abs() < tolerance,
            "{name} on {}: pair {i}: {} vs {}",
            path.id(),
            scores[mine],
            want[i]
        );
    }
}

#[test]
fn bert_cross_encoder_matches_transformers() {
    cross_encoder_parity("tiny-bert-cross-encoder");
}

#[test]
fn xlm_roberta_cross_encoder_matches_transformers() {
    cross_encoder_parity("tiny-xlmr-cross-encoder");
}

/// Hub repositories a stand-in serves: (repo id, folder with its files).
type HubRepos = std::sync::Arc<Vec<(String, std::path::PathBuf)>>;

/// A minimal stand-in for the Hub's file endpoint (`/{repo}/resolve/{revision}/{file}` with
/// range requests and the etag / commit headers hf-hub reads), serving fixture folders.
async fn hub_file(
    axum::extract::State(repos): axum::extract::State<HubRepos>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let Some((root, file)) = repos.iter().find_map(|(repo, root)| {
        path.strip_prefix(&format!("{repo}/resolve/main/"))
            .map(|f| (root, f))
    }) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(bytes) = std::fs::read(root.join(file)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let size = bytes.len();
    let start: usize = headers
        .get("range")
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let wants_probe = headers
        .get("range")
        .is_some_and(|r| r.as_bytes() == b"bytes=0-0");
    let end = if wants_probe { 0 } else { size - 1 };
    let body = bytes[start..=end].to_vec();
    (
        StatusCode::PARTIAL_CONTENT,
        [
            ("etag", format!("\"{}\"", blake3_hex(&bytes))),
            (
                "x-repo-commit",
                "0123456789abcdef0123456789abcdef01234567".to_string(),
            ),
            ("content-range", format!("bytes {start}-{end}/{size}")),
        ],
        body,
    )
        .into_response()
}

fn blake3_hex(bytes: &[u8]) -> String {
    // Any stable content hash works as an etag.
    let mut h: u64 = 1469598103934665603;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(1099511628211);
    }
    format!("{h:016x}")
}

/// Starts a Hub stand-in on a runtime the caller keeps alive; returns its endpoint.
fn hub_stand_in(
    runtime: &tokio::runtime::Runtime,
    repos: Vec<(String, std::path::PathBuf)>,
) -> String {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::get(hub_file))
        .with_state(std::sync::Arc::new(repos));
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    endpoint
}

#[test]
fn pull_fetches_whisper_ggml_files_from_the_hub() {
    let installed = crate::speech::tiny_en();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("whisper.cpp");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(&installed, repo.join("ggml-tiny.en.bin")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = hub_stand_in(
        &runtime,
        vec![("ggerganov/whisper.cpp".into(), repo.clone())],
    );
    let models = dir.path().join("models");
    let hf_home = dir.path().join("hf");
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", hf_home.to_str().unwrap()),
        ("MOSAIC__MODELS__DIR", models.to_str().unwrap()),
    ];
    let data = dir.path().join("data");
    let pulled = crate::common::ok(&crate::common::mosaic(
        &data,
        &["--json", "models", "pull", "whisper:tiny.en"],
        &env,
    ));
    let path = std::path::PathBuf::from(pulled["path"].as_str().unwrap());
    assert_eq!(path, models.join("whisper/ggml-tiny.en.bin"));
    assert!(std::fs::read(&path).unwrap() == std::fs::read(&installed).unwrap());
    mosaic::transcribe::Whisper::load(&path).unwrap();
    let listed = crate::common::ok(&crate::common::mosaic(
        &data,
        &["--json", "models", "list"],
        &env,
    ));
    assert!(
        listed["installed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "whisper:tiny.en"),
        "{listed}"
    );
    let missing = crate::common::mosaic(&data, &["models", "pull", "whisper:huge.xx"], &env);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ggml-huge.xx.bin"));
}

#[test]
fn pull_downloads_from_a_hub_endpoint_and_the_model_loads() {
    let fixture = fixtures().join("models/tiny-bert-embedder");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = hub_stand_in(
        &runtime,
        vec![("mosaic-test/tiny-bert".into(), fixture.clone())],
    );

    let dir = tempfile::tempdir().unwrap();
    let hf_home = dir.path().join("hf");
    let models = dir.path().join("models").display().to_string();
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", hf_home.to_str().unwrap()),
        ("MOSAIC__MODELS__DIR", models.as_str()),
    ];
    let data = dir.path().join("data");
    let pulled = crate::common::ok(&crate::common::mosaic(
        &data,
        &["--json", "models", "pull", "mosaic-test/tiny-bert"],
        &env,
    ));
    let path = std::path::PathBuf::from(pulled["path"].as_str().unwrap());
    assert!(
        path.starts_with(&hf_home),
        "{path:?} is in the Hugging Face cache"
    );
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        assert_eq!(
            std::fs::read(path.join(file)).unwrap(),
            std::fs::read(fixture.join(file)).unwrap(),
            "{file}"
        );
    }
    // The pulled model embeds like the reference.
    let embedder = load_embedder("mosaic-test/tiny-bert", &path);
    let reference = expected(&fixture.join("expected.json"));
    let first = &reference["sentences"][0];
    let v = embedder
        .embed(
            &[first["text"].as_str().unwrap().to_string()],
            Purpose::Passage,
        )
        .unwrap();
    assert!(cosine(&v[0], &floats(&first["embedding"])) > 0.9999);

    // An id the Hub does not have is a clear error.
    let missing = crate::common::mosaic(&data, &["models", "pull", "mosaic-test/absent"], &env);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("mosaic-test/absent"));
}

#[test]
fn bench_embed_reports_what_ingestion_computes() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = [
        "A man is eating food.",
        "The ferry cooperative carried 387,250 passengers.",
        "Glass frogs hide their red blood cells in the liver while they sleep.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let file = dir.path().join("texts.json");
    std::fs::write(&file, serde_json::to_string(&texts).unwrap()).unwrap();
    let report = crate::common::ok(&crate::common::mosaic(
        &dir.path().join("data"),
        &[
            "--json",
            "bench",
            "embed",
            "--texts",
            file.to_str().unwrap(),
            "--batch",
            "2",
            "--threads",
            "1",
        ],
        &[],
    ));
    let embedder = load_embedder(MINILM, &real_model(MINILM));
    let vectors = embedder.embed(&texts, Purpose::Passage).unwrap();
    let checksum: f64 = vectors.iter().flatten().map(|&x| x as f64).sum();
    // Every path this machine offers, side by side, the default f32 path first (what a
    // plain load runs).
    let rows = report["paths"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    let offered: Vec<&str> = ProductPath::all_available()
        .into_iter()
        .map(ProductPath::id)
        .collect();
    assert_eq!(ids, offered, "{report}");
    assert!(
        (rows[0]["checksum"].as_f64().unwrap() - checksum).abs() < 1e-3,
        "{report}"
    );
    for row in rows {
        assert!(row["tokens_per_s"].as_f64().unwrap() > 0.0, "{row}");
        let bar = if row["dtype"] == "f32" {
            0.99999
        } else {
            0.999
        };
        assert!(
            row["worst_cosine_to_first"].as_f64().unwrap() >= bar,
            "{row}"
        );
    }
    // What `auto` chose is one of them, and passed the parity bar on the probe.
    let auto = report["auto"]["path"].as_str().unwrap();
    assert!(ids.contains(&auto), "{report}");
    let probe = report["auto"]["probe"].as_array().unwrap();
    let chosen = probe.iter().find(|m| m["path"] == auto).unwrap();
    assert!(chosen["worst_cosine"].as_f64().unwrap() >= 0.999);
    let fastest_passing = probe
        .iter()
        .filter(|m| m["worst_cosine"].as_f64().unwrap() >= 0.999)
        .map(|m| m["tokens_per_s"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(chosen["tokens_per_s"].as_f64().unwrap(), fastest_passing);
    let tokens: usize = embedder
        .tokenize(&texts, Purpose::Passage)
        .unwrap()
        .iter()
        .map(Vec::len)
        .sum();
    assert_eq!(report["tokens"], tokens);
    assert_eq!(report["threads"], 1);

    // The reranker bench runs a cross-encoder installed by import.
    let models = dir.path().join("models");
    let env = [("MOSAIC__MODELS__DIR", models.to_str().unwrap())];
    let fixture = fixtures().join("models/tiny-bert-cross-encoder");
    crate::common::ok(&crate::common::mosaic(
        &dir.path().join("data"),
        &[
            "--json",
            "models",
            "import",
            fixture.to_str().unwrap(),
            "--id",
            "mosaic-test/tiny-ce",
        ],
        &env,
    ));
    let rerank = crate::common::ok(&crate::common::mosaic(
        &dir.path().join("data"),
        &[
            "--json",
            "bench",
            "rerank",
            "--model",
            "mosaic-test/tiny-ce",
            "--query",
            "how do glass frogs hide",
            "--texts",
            file.to_str().unwrap(),
        ],
        &env,
    ));
    assert_eq!(rerank["pairs"], 3);
    let model = CrossEncoder::load(
        "mosaic-test/tiny-ce",
        &models.join("mosaic-test--tiny-ce"),
        None,
        8192,
    )
    .unwrap();
    let scores = model.score("how do glass frogs hide", &texts).unwrap();
    let sum: f64 = scores.iter().map(|&s| s as f64).sum();
    assert!(
        (rerank["paths"][0]["checksum"].as_f64().unwrap() - sum).abs() < 1e-4,
        "{rerank}"
    );
}
