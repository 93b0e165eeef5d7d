//! The bf16 path (AVX512_BF16) against f32 on the real all-MiniLM-L6-v2: every embedding of
//! the test corpus's passages within cosine 0.999 of f32, and the top hit of every test
//! question unchanged, dense and hybrid. Skipped, saying so, on CPUs without AVX512_BF16.

use mosaic::embed::{Purpose, TextEmbedder};
use mosaic::models::TextModelSpec;
use mosaic::query::{RetrievalMode, SearchRequest};

use crate::common::{corpus_copy, cosine, fixtures, real_model, shared_index, MINILM};

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
    let f32_index = shared_index();
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus_copy(dir.path());
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    for name in ["text.toml", "query.toml", "audio.toml"] {
        let text = std::fs::read_to_string(crate::common::repo().join("pipelines").join(name))
            .unwrap()
            .replace("dtype = \"f32\"", "dtype = \"bf16\"");
        std::fs::write(pipelines.join(name), text).unwrap();
    }
    let bf16_data = dir.path().join("data");
    let p = pipelines.to_str().unwrap();
    crate::common::ok(&crate::common::mosaic(
        &bf16_data,
        &[
            "--pipelines",
            p,
            "--json",
            "ingest",
            corpus.to_str().unwrap(),
        ],
        &[],
    ));
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
    let top = |m: &mosaic::app::Mosaic, q: &str, mode: RetrievalMode| {
        let request = SearchRequest {
            query: q.to_string(),
            limit: 1,
            modalities: vec![],
            mode,
            rerank: false,
        };
        let hit = runtime.block_on(m.search(&request)).unwrap().hits.remove(0);
        (
            hit.chunk.source.uri.rsplit('/').next().unwrap().to_string(),
            hit.chunk.anchor,
        )
    };
    let reference_pipelines = crate::common::repo().join("pipelines");
    let a = open(&f32_index.data, Some(&reference_pipelines));
    let b = open(&bf16_data, Some(&pipelines));
    for q in &questions {
        let q = q["question"].as_str().unwrap();
        for mode in [RetrievalMode::Dense, RetrievalMode::Hybrid] {
            assert_eq!(top(&a, q, mode), top(&b, q, mode), "{mode:?}: {q}");
        }
    }
}
