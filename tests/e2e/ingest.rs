//! Ingestion through the binary: JSON report, idempotent re-runs, changed and deleted files,
//! model switches, and bad input that must be reported without damaging the index.

use std::path::Path;

use crate::common::{corpus_copy, fixtures, json, mosaic, ok, real_model, shared_index, MINILM};

fn status(data: &Path) -> serde_json::Value {
    ok(&mosaic(data, &["--json", "status"], &[]))
}

fn search(data: &Path, query: &str) -> serde_json::Value {
    ok(&mosaic(
        data,
        &["--json", "search", query, "--no-rerank"],
        &[],
    ))
}

fn top_files(result: &serde_json::Value, n: usize) -> Vec<String> {
    result["hits"]
        .as_array()
        .unwrap()
        .iter()
        .take(n)
        .map(|h| {
            h["source"]["uri"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn corpus_ingests_with_consistent_stores_and_documented_json() {
    let index = shared_index();
    let s = status(&index.data);
    assert_eq!(s["complete"], 14);
    assert_eq!(s["consistent"], true, "{s}");
    assert!(s["chunks"].as_i64().unwrap() >= 14);

    let result = search(&index.data, "glass frogs red blood cells");
    let hit = &result["hits"][0];
    for key in [
        "rank", "score", "chunk_id", "modality", "source", "anchor", "text",
    ] {
        assert!(hit.get(key).is_some(), "hit lacks {key}: {hit}");
    }
    assert_eq!(hit["anchor"]["kind"], "span");
    assert_eq!(result["query"], "glass frogs red blood cells");

    // The HTML extractor drops scripts: their canary never reaches the index.
    let canary = search(&index.data, "SCRIPTCANARY");
    assert!(canary["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| !h["text"].as_str().unwrap().contains("SCRIPTCANARY")));
}

/// Walking a folder skips hidden entries and what ignore files exclude: `.gitignore` inside a
/// git work tree, `.mosaicignore` anywhere. A file given by name is read regardless.
#[test]
fn folders_are_walked_as_their_ignore_files_say() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "guide.md",
        "# Guide\n\nThe canal towpath is open to walkers all year.\n",
    );
    write(
        "node_modules/pkg/README.md",
        "A package readme about bundlers.\n",
    );
    write("drafts/old.txt", "An old draft about ferries.\n");
    write(".cache/notes.txt", "Hidden notes about telescopes.\n");
    write(".gitignore", "node_modules/\n");
    write(".mosaicignore", "drafts/\n");
    std::fs::create_dir_all(root.join(".git")).unwrap();
    let data = dir.path().join("data");
    let report = ok(&mosaic(
        &data,
        &["--json", "ingest", root.to_str().unwrap()],
        &[],
    ));
    assert_eq!(
        (
            report["ingested"].as_u64(),
            report["failed"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0)),
        "{report}"
    );
    let named = root.join("drafts/old.txt");
    let report = ok(&mosaic(
        &data,
        &["--json", "ingest", named.to_str().unwrap()],
        &[],
    ));
    assert_eq!(report["ingested"], 1, "{report}");
}

#[test]
fn pdf_hits_carry_pages_and_anchors_select_the_chunk_text() {
    let index = shared_index();
    let result = search(&index.data, "member dividend of 350 kroner per household");
    let hit = result["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h["source"]["uri"]
                .as_str()
                .unwrap()
                .ends_with("annual-report-nordvik-ferries.pdf")
        })
        .expect("the PDF is found");
    assert_eq!(hit["anchor"]["page"], 3, "{hit}");
    let start = hit["anchor"]["char_start"].as_u64().unwrap();
    let end = hit["anchor"]["char_end"].as_u64().unwrap();
    assert_eq!(
        (end - start) as usize,
        hit["text"].as_str().unwrap().chars().count()
    );
}

#[test]
fn reingest_skips_unchanged_replaces_changed_and_prunes_deleted() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus_copy(dir.path());
    // Keep this test fast: five documents are enough.
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        let keep = [
            "faq-orbitron-q7.md",
            "travel-isle-of-marrow.txt",
            "release-notes-tallyho.txt",
            "science-glass-frogs.md",
            "history-varnholt-canal.md",
        ];
        if !keep.contains(&path.file_name().unwrap().to_str().unwrap()) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let data = dir.path().join("data");
    let c = corpus.to_str().unwrap();
    let first = ok(&mosaic(&data, &["--json", "ingest", c], &[]));
    assert_eq!(
        (first["ingested"].as_u64(), first["skipped"].as_u64()),
        (Some(5), Some(0))
    );
    let chunks_before = status(&data)["chunks"].as_i64().unwrap();

    let again = ok(&mosaic(&data, &["--json", "ingest", c], &[]));
    assert_eq!(
        (again["ingested"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(5))
    );
    assert_eq!(
        status(&data)["chunks"].as_i64().unwrap(),
        chunks_before,
        "no duplicates"
    );

    // Change one file: its old text disappears from every store, the new text is found.
    let faq = corpus.join("faq-orbitron-q7.md");
    let text = std::fs::read_to_string(&faq).unwrap();
    assert!(text.contains("17 seconds"));
    std::fs::write(
        &faq,
        text.replace("17 seconds", "29 seconds")
            .replace("Orbitron", "Quasitron"),
    )
    .unwrap();
    let changed = ok(&mosaic(&data, &["--json", "ingest", c], &[]));
    assert_eq!(
        (changed["ingested"].as_u64(), changed["skipped"].as_u64()),
        (Some(1), Some(4))
    );
    let s = status(&data);
    assert_eq!(s["consistent"], true, "{s}");
    let hits = search(&data, "Quasitron reset pinhole");
    assert_eq!(top_files(&hits, 1), vec!["faq-orbitron-q7.md"]);
    let stale = search(&data, "Orbitron");
    assert!(
        stale["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| !h["text"].as_str().unwrap().contains("Orbitron")),
        "old chunks are gone: {stale}"
    );

    // Delete a file: --prune removes it everywhere.
    std::fs::remove_file(corpus.join("travel-isle-of-marrow.txt")).unwrap();
    let pruned = ok(&mosaic(&data, &["--json", "ingest", "--prune", c], &[]));
    assert_eq!(pruned["removed"], 1);
    let s = status(&data);
    assert_eq!(
        (s["sources"].as_i64(), s["consistent"].as_bool()),
        (Some(4), Some(true)),
        "{s}"
    );
    assert!(
        !top_files(&search(&data, "crossing takes 2 hours 15 minutes"), 10)
            .contains(&"travel-isle-of-marrow.txt".to_string())
    );

    // One file reached by overlapping paths (its folder, itself, the folder by another
    // spelling) is read, embedded and counted once.
    let canal = corpus.join("history-varnholt-canal.md");
    let text = std::fs::read_to_string(&canal).unwrap();
    std::fs::write(&canal, text.replace("Varnholt", "Varnwick")).unwrap();
    let other_spelling = format!("{c}/../corpus/.");
    let overlapping = ok(&mosaic(
        &data,
        &[
            "--json",
            "ingest",
            c,
            canal.to_str().unwrap(),
            &other_spelling,
        ],
        &[],
    ));
    assert_eq!(
        (
            overlapping["ingested"].as_u64(),
            overlapping["skipped"].as_u64()
        ),
        (Some(1), Some(3)),
        "{overlapping}"
    );
    assert_eq!(status(&data)["consistent"], true);

    // A file that turns bad (here: emptied) is reported, and the version indexed before stays
    // searchable and counted as stale until the file is fixed.
    let frogs = corpus.join("science-glass-frogs.md");
    let good = std::fs::read_to_string(&frogs).unwrap();
    std::fs::write(&frogs, "").unwrap();
    let output = mosaic(&data, &["--json", "ingest", c], &[]);
    assert_eq!(output.status.code(), Some(3));
    let report = crate::common::json(&output);
    let error = report["failed"][0]["error"].as_str().unwrap();
    assert!(error.contains("stays searchable"), "{report}");
    let s = status(&data);
    assert_eq!(
        (s["stale"].as_i64(), s["failed"].as_i64()),
        (Some(1), Some(0)),
        "{s}"
    );
    assert_eq!(
        top_files(
            &search(&data, "glass frogs hide red blood cells in the liver"),
            1
        ),
        vec!["science-glass-frogs.md"]
    );
    // Restored as it was: nothing to re-embed, and no longer stale.
    std::fs::write(&frogs, good).unwrap();
    let fixed = ok(&mosaic(&data, &["--json", "ingest", c], &[]));
    assert_eq!(
        (fixed["ingested"].as_u64(), fixed["skipped"].as_u64()),
        (Some(0), Some(4)),
        "{fixed}"
    );
    assert_eq!(status(&data)["stale"], 0);

    // `mosaic remove` takes a file out explicitly.
    let removed = ok(&mosaic(
        &data,
        &[
            "--json",
            "remove",
            corpus.join("release-notes-tallyho.txt").to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(removed["removed"], 1);
    let s = status(&data);
    assert_eq!(
        (s["sources"].as_i64(), s["consistent"].as_bool()),
        (Some(3), Some(true)),
        "{s}"
    );
}

#[test]
fn switching_the_model_creates_a_new_space_and_reembeds() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("docs");
    std::fs::create_dir_all(&corpus).unwrap();
    for name in ["science-glass-frogs.md", "faq-orbitron-q7.md"] {
        std::fs::copy(fixtures().join("corpus").join(name), corpus.join(name)).unwrap();
    }
    let data = dir.path().join("data");
    ok(&mosaic(
        &data,
        &["--json", "ingest", corpus.to_str().unwrap()],
        &[],
    ));

    // A second model, installed by `mosaic models import` from a local folder.
    let (models, pipelines) = crate::common::second_text_model(dir.path(), &data);
    // The real MiniLM is linked into the same models folder so both stay available.
    std::os::unix::fs::symlink(
        real_model(MINILM),
        models.join("sentence-transformers--all-MiniLM-L6-v2"),
    )
    .unwrap();
    let env = [
        ("MOSAIC__MODELS__DIR", models.to_str().unwrap()),
        ("MOSAIC_PIPELINES", pipelines.to_str().unwrap()),
    ];

    let report = ok(&mosaic(
        &data,
        &["--json", "ingest", corpus.to_str().unwrap()],
        &env,
    ));
    assert_eq!(
        (report["ingested"].as_u64(), report["skipped"].as_u64()),
        (Some(2), Some(0)),
        "a new pipeline version re-ingests"
    );
    let s = ok(&mosaic(&data, &["--json", "status"], &env));
    assert_eq!(s["consistent"], true, "{s}");
    let spaces = s["spaces"].as_array().unwrap();
    let space = |name: &str| {
        spaces
            .iter()
            .find(|sp| sp["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no space {name}: {s}"))
    };
    assert_eq!(
        space("text/mosaic-test/tiny-xlmr/32")["chunks"],
        s["chunks"]
    );
    assert_eq!(
        space("text/sentence-transformers/all-MiniLM-L6-v2/384")["vectors"],
        0
    );
    // Queries now run in the new space.
    let hits = ok(&mosaic(
        &data,
        &[
            "--json",
            "search",
            "glass frogs",
            "--mode",
            "dense",
            "--no-rerank",
        ],
        &env,
    ));
    assert!(!hits["hits"].as_array().unwrap().is_empty());
}

#[test]
fn bad_inputs_are_reported_and_nothing_indexed_is_damaged() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let good = dir.path().join("good");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::copy(
        fixtures().join("corpus/science-glass-frogs.md"),
        good.join("science-glass-frogs.md"),
    )
    .unwrap();
    ok(&mosaic(
        &data,
        &["--json", "ingest", good.to_str().unwrap()],
        &[],
    ));
    let before = status(&data);

    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for entry in std::fs::read_dir(fixtures().join("bad")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, bad.join(path.file_name().unwrap())).unwrap();
    }
    // A 100 MB text file, over the default 64 MiB limit.
    let big = bad.join("huge.txt");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let line = "the quick brown fox jumps over the lazy dog again and again\n";
        for _ in 0..(100 * 1024 * 1024 / line.len() + 1) {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    // A link to nothing, and (when not running as root, who reads everything) a file without
    // read permission.
    std::os::unix::fs::symlink(dir.path().join("nowhere.txt"), bad.join("dangling.txt")).unwrap();
    let locked = bad.join("locked.txt");
    std::fs::write(&locked, "secret text").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root = std::fs::read(&locked).is_ok();

    let output = mosaic(&data, &["--json", "ingest", bad.to_str().unwrap()], &[]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "exit code 3 when some inputs failed"
    );
    let report = json(&output);
    let failed = report["failed"].as_array().unwrap();
    let reason = |name: &str| -> String {
        failed
            .iter()
            .find(|f| f["uri"].as_str().unwrap().ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("{name} not reported: {report}"))["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason("corrupt.pdf").contains("PDF"),
        "{}",
        reason("corrupt.pdf")
    );
    assert!(reason("empty.txt").contains("empty"));
    assert!(reason("binary-blob.txt").contains("binary"));
    assert!(
        reason("fake.docx").to_lowercase().contains("type") || reason("fake.docx").contains("DOCX"),
        "{}",
        reason("fake.docx")
    );
    assert!(reason("unknown.xyz").contains("unknown file type"));
    assert!(reason("huge.txt").contains("limit"));
    assert!(reason("dangling.txt").contains("cannot read"));
    if !root {
        assert!(reason("locked.txt").contains("ermission"));
    }
    // truncated.pdf may be partly readable by a lenient parser; it must not stop the batch.
    assert!(
        report["ingested"].as_u64().unwrap() >= 1,
        "good.md is ingested: {report}"
    );
    assert_eq!(
        top_files(&search(&data, "Horatio Vellacott"), 1),
        vec!["good.md"]
    );

    // What was indexed before is intact.
    let after = status(&data);
    assert_eq!(after["consistent"], true, "{after}");
    assert!(after["chunks"].as_i64() >= before["chunks"].as_i64());
    assert_eq!(
        top_files(&search(&data, "glass frog red blood cells"), 1),
        vec!["science-glass-frogs.md"]
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o600)).unwrap();
}
