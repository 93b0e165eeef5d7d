//! The bf16 path (AVX512_BF16) against f32 on the real all-MiniLM-L6-v2: every embedding of
//! the test corpus's passages within cosine 0.999 of f32, and the top hit of every test
//! question unchanged, dense and hybrid. Skipped, saying so, on CPUs without AVX512_BF16.

use mosaic::embed::{Purpose, TextEmbedder};
use mosaic::models::TextModelSpec;
use mosaic::query::{RetrievalMode, SearchRequest};

use crate::common::{corpus_copy, cosine, fixtures, real_model, MINILM};

fn embedder(dtype: &str) -> TextEmbedder {
    let dir = real_model(MINILM);
    let spec = TextModelSpec::load(MINILM, &dir, None, None).unwrap();
    let mut e = TextEmbedder::load(spec, &dir, 8192).unwrap();
    assert_eq!(e.set_dtype(dtype).unwrap(), dtype);
    e
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
    if !mosaic::embed::bf16::supported() {
        eprintln!("this CPU has no AVX512_BF16: the bf16 path is not available here");
        return;
    }
    let texts = passages();
    assert!(texts.len() > 50, "{} passages", texts.len());
    let f32s = embedder("f32").embed(&texts, Purpose::Passage).unwrap();
    let bf16s = embedder("bf16").embed(&texts, Purpose::Passage).unwrap();
    let worst = f32s
        .iter()
        .zip(&bf16s)
        .map(|(a, b)| cosine(a, b))
        .fold(1.0f64, f64::min);
    eprintln!(
        "bf16 vs f32 on {} passages: worst cosine {worst:.6}",
        texts.len()
    );
    assert!(worst >= 0.999, "worst cosine {worst}");
}

#[test]
fn bf16_keeps_every_top_hit_of_the_test_questions() {
    if !mosaic::embed::bf16::supported() {
        eprintln!("this CPU has no AVX512_BF16: the bf16 path is not available here");
        return;
    }
    // Both indexes from one corpus copy: chunk ids derive from the source path, and exact
    // fusion ties (dense 1 + BM25 2 against dense 2 + BM25 1) are broken by id.
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus_copy(dir.path());
    let reference_pipelines = crate::common::repo().join("pipelines");
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    for name in ["text.toml", "query.toml", "audio.toml"] {
        let text = std::fs::read_to_string(reference_pipelines.join(name))
            .unwrap()
            .replace("dtype = \"f32\"", "dtype = \"bf16\"");
        std::fs::write(pipelines.join(name), text).unwrap();
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
            query: q.to_string(),
            limit: n,
            modalities: vec![],
            mode,
            rerank: false,
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
