//! The bf16 path (AVX512_BF16) against f32 on the real all-MiniLM-L6-v2: every embedding of
//! the test corpus's passages within cosine 0.999 of f32, and the top hit of every test
//! question unchanged, dense and hybrid. Skipped, saying so, on CPUs without AVX512_BF16.

use mosaic::embed::{Purpose, TextEmbedder};
use mosaic::kernels::path::ProductPath;
use mosaic::models::TextModelSpec;
use mosaic::query::{RetrievalMode, SearchRequest};

use crate::common::{corpus_copy, cosine, fixtures, real_model, MINILM};

fn embedder(path: ProductPath) -> TextEmbedder {
    let dir = real_model(MINILM);
    let spec = TextModelSpec::load(MINILM, &dir, None, None).unwrap();
    let mut e = TextEmbedder::load(spec, &dir, 8192).unwrap();
    assert_eq!(e.set_dtype(path.id(), None).unwrap().path, path);
    e
}

/// The bf16 paths this machine offers, after naming the ones it lacks.
fn bf16_paths() -> Vec<ProductPath> {
    for (path, why) in ProductPath::unavailable() {
        if path.dtype() == "bf16" {
            eprintln!("skipped {}: {why}", path.id());
        }
    }
    ProductPath::all_available()
        .into_iter()
        .filter(|p| p.dtype() == "bf16")
        .collect()
}

/// Paragraphs of the test corpus's text files.
fn passages() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures().join("corpus")).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("md" | "txt")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        out.extend(
            text.split("\n\n")
                .map(str::trim)
                .filter(|p| p.len() > 40)
                .map(str::to_string),
        );
    }
    out
}

#[test]
fn bf16_embeddings_stay_within_cosine_0999_of_f32() {
    let texts = passages();
    assert!(texts.len() > 50, "{} passages", texts.len());
    let f32s = embedder(ProductPath::default_f32())
        .embed(&texts, Purpose::Passage)
        .unwrap();
    for path in bf16_paths() {
        let bf16s = embedder(path).embed(&texts, Purpose::Passage).unwrap();
        let worst = f32s
            .iter()
            .zip(&bf16s)
            .map(|(a, b)| cosine(a, b))
            .fold(1.0f64, f64::min);
        eprintln!(
            "{} vs f32 on {} passages: worst cosine {worst:.6}",
            path.id(),
            texts.len()
        );
        assert!(worst >= 0.999, "{}: worst cosine {worst}", path.id());
    }
}

#[test]
fn bf16_keeps_every_top_hit_of_the_test_questions() {
    let Some(bf16) = ProductPath::default_bf16() else {
        eprintln!("skipped: no bf16 path here (no AVX512_BF16, no MKL, or MOSAIC_CPU=generic)");
        return;
    };
    eprintln!("dtype bf16 runs {}", bf16.describe());
    // Both indexes from one corpus copy: chunk ids derive from the source path, and exact
    // fusion ties (dense 1 + BM25 2 against dense 2 + BM25 1) are broken by id.
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus_copy(dir.path());
    let shipped = crate::common::repo().join("pipelines");
    let reference_pipelines = dir.path().join("pipelines-f32");
    let pipelines = dir.path().join("pipelines");
    for (folder, dtype) in [(&reference_pipelines, "f32"), (&pipelines, "bf16")] {
        std::fs::create_dir_all(folder).unwrap();
        for name in ["text.toml", "query.toml", "audio.toml"] {
            let text = std::fs::read_to_string(shipped.join(name))
                .unwrap()
                .replace("dtype = \"auto\"", &format!("dtype = \"{dtype}\""));
            std::fs::write(folder.join(name), text).unwrap();
        }
    }
    let f32_data = dir.path().join("f32");
    let bf16_data = dir.path().join("bf16");
    for (data, p) in [(&f32_data, &reference_pipelines), (&bf16_data, &pipelines)] {
        crate::common::ok(&crate::common::mosaic(
            data,
            &[
                "--pipelines",
                p.to_str().unwrap(),
                "--json",
                "ingest",
                corpus.to_str().unwrap(),
            ],
            &[],
        ));
    }
    let questions: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("corpus/questions.json")).unwrap(),
    )
    .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let open = |data: &std::path::Path, pipelines: Option<&std::path::Path>| {
        let mut settings = mosaic::config::resolve(None, Vec::new(), &[]).unwrap();
        settings.data_dir = data.to_path_buf();
        settings.pipelines_dir = pipelines.map(|p| p.to_path_buf());
        runtime
            .block_on(mosaic::app::Mosaic::open(settings))
            .unwrap()
    };
    // The top `n` hits: (file, anchor, text).
    let top = |m: &mosaic::app::Mosaic, q: &str, mode: RetrievalMode, n: usize| {
        let request = SearchRequest {
            mode,
            rerank: false,
            ..SearchRequest::new(q, n).passages()
        };
        let hits = runtime.block_on(m.search(&request)).unwrap().hits;
        hits.into_iter()
            .map(|hit| {
                (
                    hit.chunk.source.uri.rsplit('/').next().unwrap().to_string(),
                    hit.chunk.anchor,
                    hit.chunk.text.replace('\n', " "),
                )
            })
            .collect::<Vec<_>>()
    };
    let a = open(&f32_data, Some(&reference_pipelines));
    let b = open(&bf16_data, Some(&pipelines));
    for item in &questions {
        let q = item["question"].as_str().unwrap();
        let answer = item["answer_substring"].as_str().unwrap();
        // Dense retrieval is where bf16 acts: its top hit must be the very same chunk.
        let (da, db) = (
            top(&a, q, RetrievalMode::Dense, 1),
            top(&b, q, RetrievalMode::Dense, 1),
        );
        assert_eq!(
            (&da[0].0, &da[0].1),
            (&db[0].0, &db[0].1),
            "dense top hit changed: {q}"
        );
        // Hybrid: the same top hit, and the answer in the top 3 in both or neither. (Tied
        // candidates are ordered by id in each list, so ties cannot reorder it.)
        let (ha, hb) = (
            top(&a, q, RetrievalMode::Hybrid, 3),
            top(&b, q, RetrievalMode::Hybrid, 3),
        );
        let found = |hits: &[(String, mosaic::catalog::Anchor, String)]| {
            hits.iter().any(|h| h.2.contains(answer))
        };
        assert_eq!(
            found(&ha),
            found(&hb),
            "hybrid top 3 differs on the answer: {q}"
        );
        assert_eq!(
            (&ha[0].0, &ha[0].1),
            (&hb[0].0, &hb[0].1),
            "hybrid top hit changed: {q}"
        );
    }
    eprintln!(
        "bf16: dense and hybrid top-1 identical on {} questions",
        questions.len()
    );
}

/// A cross-encoder of ms-marco-MiniLM-L-6-v2's shape (BERT, 6 layers, 384 wide) on real
/// trained weights: all-MiniLM-L6-v2's encoder and pooler with a fixed classification head.
/// No trained cross-encoder can be fetched offline; the encoder is where bf16 acts.
fn minilm_cross_encoder(out: &std::path::Path) {
    use candle_core::{Device, Tensor};
    let src = real_model(MINILM);
    std::fs::create_dir_all(out).unwrap();
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(name), out.join(name)).unwrap();
    }
    let mut tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let w: Vec<f32> = (0..384u32)
        .map(|i| ((i.wrapping_mul(2654435761) >> 20) % 1000) as f32 / 5000.0 - 0.1)
        .collect();
    tensors.insert(
        "classifier.weight".into(),
        Tensor::from_vec(w, (1, 384), &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "classifier.bias".into(),
        Tensor::new(&[0.0f32], &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, out.join("model.safetensors")).unwrap();
}

#[test]
fn bf16_cross_encoder_states_stay_within_cosine_0999_of_f32() {
    let dir = tempfile::tempdir().unwrap();
    minilm_cross_encoder(dir.path());
    let load = |path: ProductPath| {
        let mut m =
            mosaic::embed::CrossEncoder::load("minilm-cross", dir.path(), None, 8192).unwrap();
        assert_eq!(m.set_dtype(path.id(), None).unwrap().path, path);
        m
    };
    let f = load(ProductPath::default_f32());
    for path in bf16_paths() {
        let mut b = load(path);
        // The f32 weights are freed once packed: going back needs a fresh load, and says so.
        assert!(b.set_dtype("f32", None).is_err());
        assert_eq!(b.set_dtype(path.id(), None).unwrap().path, path);
        cross_encoder_within_bar(&f, &b, path);
    }
}

fn cross_encoder_within_bar(
    f: &mosaic::embed::CrossEncoder,
    b: &mosaic::embed::CrossEncoder,
    path: ProductPath,
) {
    let texts = passages();
    let questions: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("corpus/questions.json")).unwrap(),
    )
    .unwrap();
    let mut worst = 1.0f64;
    let mut worst_score = 0.0f64;
    // Six questions against every passage (600+ pairs) keep the test under half a minute.
    let questions = &questions[..6];
    for item in questions {
        let q = item["question"].as_str().unwrap();
        let pairs = f.tokenize(q, &texts).unwrap();
        let batch = mosaic::embed::encoder::TokenBatch {
            ids: pairs.iter().map(|p| p.0.clone()).collect(),
            type_ids: pairs.iter().map(|p| p.1.clone()).collect(),
        };
        let (sf, sb) = (
            f.first_token_states(&batch).unwrap(),
            b.first_token_states(&batch).unwrap(),
        );
        for (x, y) in sf.iter().zip(&sb) {
            worst = worst.min(cosine(x, y));
        }
        let (lf, lb) = (f.score(q, &texts).unwrap(), b.score(q, &texts).unwrap());
        let spread = lf.iter().cloned().fold(f32::MIN, f32::max)
            - lf.iter().cloned().fold(f32::MAX, f32::min);
        for (x, y) in lf.iter().zip(&lb) {
            worst_score = worst_score.max(((x - y) / spread).abs() as f64);
        }
    }
    eprintln!(
        "cross-encoder {} vs f32 on {} pairs: worst first-token cosine {worst:.6}, worst score \
         change {:.4}% of the score range",
        path.id(),
        questions.len() * texts.len(),
        worst_score * 100.0
    );
    assert!(worst >= 0.999, "worst cosine {worst}");
    assert!(
        worst_score < 0.01,
        "a score moved by {worst_score} of the range"
    );
}
