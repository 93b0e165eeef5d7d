//! Answers on real documentation: eighteen manual pages as `man` saves them (rendered by
//! scripts/manuals/render.sh from the Debian packages installed here; nobody working on Mosaic
//! wrote them) and questions written from the pages before any answer was measured, each with
//! the fact, the page and the type of answer (tests/fixtures/manuals/questions.json), some of
//! which the pages cannot answer. `mosaic eval --answers` judges the extracted answers; the
//! figures asserted are the ones measured when this was written (docs/answers.md), as a guard
//! against regressions.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::common::{fixtures, mosaic, ok, real_model, MINILM};

/// One index of the manual pages.
fn manuals_index() -> &'static PathBuf {
    static INDEX: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &INDEX
        .get_or_init(|| {
            real_model(MINILM);
            let dir = tempfile::tempdir().unwrap();
            let pages = dir.path().join("manuals");
            std::fs::create_dir_all(&pages).unwrap();
            let mut count = 0;
            for entry in std::fs::read_dir(fixtures().join("manuals")).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "txt") {
                    std::fs::copy(&path, pages.join(path.file_name().unwrap())).unwrap();
                    count += 1;
                }
            }
            let data = dir.path().join("data");
            let report = ok(&mosaic(
                &data,
                &["--json", "ingest", pages.to_str().unwrap()],
                &[],
            ));
            assert_eq!(report["ingested"], count, "{report}");
            (dir, data)
        })
        .1
}

#[test]
fn answers_on_real_manual_pages_hold_the_fact_or_decline() {
    let questions = fixtures().join("manuals/questions.json");
    let report = ok(&mosaic(
        manuals_index(),
        &["--json", "eval", "--answers", questions.to_str().unwrap()],
        &[],
    ));
    let summary = &report["summary"];
    eprintln!("answers on the manual pages: {summary}");
    eprintln!("by type: {}", report["by_type"]);
    for r in report["results"].as_array().unwrap() {
        if r["ok"] != true {
            eprintln!("miss: {r}");
        }
    }
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert!(
        n("answerable") >= 60 && n("unanswerable") >= 10,
        "{summary}"
    );
    let figures = FIGURES;
    assert!(n("fact") >= figures.fact, "facts: {summary}");
    assert!(n("source") >= figures.source, "sources: {summary}");
    assert!(
        n("declined_unanswerable") >= figures.declined_unanswerable,
        "declines: {summary}"
    );
    assert!(
        n("declined_answerable") <= figures.declined_answerable,
        "answerable declined: {summary}"
    );
    let mean = summary["mean_length"].as_f64().unwrap();
    assert!(mean <= figures.mean_length, "mean length {mean}: {summary}");
    // Every answer type of the set is reported.
    for t in report["by_type"].as_object().unwrap().values() {
        assert!(t["answerable"].as_u64().unwrap() + t["unanswerable"].as_u64().unwrap() > 0);
    }
}

/// The figures measured on this set (docs/answers.md: 107 facts and 135 sources of 137, 5 of
/// 18 unanswerable declined, 2 answerable declined, 165 characters on average), given a
/// little room for the difference between CPUs' product paths (f32 or bf16 embeddings).
struct Figures {
    fact: u64,
    source: u64,
    declined_unanswerable: u64,
    declined_answerable: u64,
    mean_length: f64,
}

const FIGURES: Figures = Figures {
    fact: 100,
    source: 130,
    declined_unanswerable: 4,
    declined_answerable: 3,
    mean_length: 190.0,
};
