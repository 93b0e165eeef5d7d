//! Kill a real `mosaic ingest` mid-run with SIGKILL, run it again, and check that the index is
//! complete and consistent: no duplicate or orphan chunks in the catalog, the vector store or
//! the BM25 index.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{fixtures, mosaic, ok, real_model, repo, MINILM};

#[test]
fn killed_ingest_reruns_to_a_consistent_index() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let bases: Vec<String> = [
        "handbook-brightwater.md",
        "science-glass-frogs.md",
        "travel-isle-of-marrow.txt",
        "history-varnholt-canal.md",
    ]
    .iter()
    .map(|n| std::fs::read_to_string(fixtures().join("corpus").join(n)).unwrap())
    .collect();
    let files = 120;
    for i in 0..files {
        let body = format!(
            "# Copy {i}\n\nThis is document number {i} of the crash test.\n\n{}",
            bases[i % bases.len()]
        );
        std::fs::write(docs.join(format!("doc-{i:03}.md")), body).unwrap();
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .current_dir(repo())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
            "ingest",
            docs.to_str().unwrap(),
        ])
        .env("MOSAIC__LLM__EMBEDDED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Wait until at least one batch is complete, then kill in the middle of the run.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let complete_at_kill = loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ingest finished ({status}) before it could be killed; make the corpus larger");
        }
        if data.join("catalog.db").exists() {
            let counts = runtime.block_on(async {
                let catalog = mosaic::catalog::Catalog::open(&data.join("catalog.db"))
                    .await
                    .ok()?;
                let counts = catalog.counts().await.ok();
                catalog.close().await;
                counts
            });
            if let Some(c) = counts {
                if c.complete > 0 {
                    break c.complete;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no batch completed in 10 minutes"
        );
    };
    // Let the run get into its next batch, then kill it hard.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(complete_at_kill < files as i64, "killed mid-run");

    let rerun = ok(&mosaic(
        &data,
        &["--json", "ingest", docs.to_str().unwrap()],
        &[],
    ));
    assert!(rerun["failed"].as_array().unwrap().is_empty(), "{rerun}");
    let status = ok(&mosaic(&data, &["--json", "status"], &[]));
    assert_eq!(status["complete"], files, "{status}");
    assert_eq!(status["indexing"], 0);
    assert_eq!(
        status["consistent"], true,
        "catalog, vectors and BM25 agree: {status}"
    );
    let space = &status["spaces"][0];
    assert_eq!(space["vectors"], status["chunks"]);
    assert_eq!(status["lexical_docs"], status["chunks"]);

    let third = ok(&mosaic(
        &data,
        &["--json", "ingest", docs.to_str().unwrap()],
        &[],
    ));
    assert_eq!(
        (third["ingested"].as_u64(), third["skipped"].as_u64()),
        (Some(0), Some(files as u64))
    );
}
