//! Kill a real `mosaic ingest` with SIGKILL at several random points, run it again, and check
//! that the index is complete and that the catalog, the vector store and the BM25 index agree
//! chunk id by chunk id: no duplicate, orphan or missing chunk anywhere.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mosaic::catalog::Catalog;

use crate::common::{fixtures, mosaic, ok, real_model, repo, MINILM};

/// Sources the catalog marks complete (0 while it cannot be read).
fn complete(runtime: &tokio::runtime::Runtime, data: &std::path::Path) -> i64 {
    if !data.join("catalog.db").exists() {
        return 0;
    }
    runtime.block_on(async {
        let Ok(catalog) = mosaic::catalog::SqlCatalog::open(&data.join("catalog.db")).await else {
            return 0;
        };
        let counts = catalog.counts().await.map(|c| c.complete).unwrap_or(0);
        catalog.close().await;
        counts
    })
}

#[test]
fn ingest_killed_at_random_points_reruns_to_a_consistent_index() {
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
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // A seed printed with the test, so a failing kill point can be replayed.
    let seed = std::env::var("MOSAIC_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("kill points from seed {seed} (MOSAIC_KILL_SEED replays them)");
    let mut state = seed | 1;
    let mut random = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };

    let mut kills = 0;
    for round in 0..3 {
        let before = complete(&runtime, &data);
        let log = dir.path().join(format!("ingest-{round}.log"));
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
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Wait for this run to make progress (its start-up and repair are over), then kill it
        // a random 0-3 s later: inside a batch, during a commit, or between batches.
        let started = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if complete(&runtime, &data) > before {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "no progress in 10 minutes"
            );
        }
        let delay = Duration::from_secs_f64(3.0 * random());
        std::thread::sleep(delay);
        if let Some(status) = child.try_wait().unwrap() {
            // A run may finish on a fast machine, but it must not fail: a failure here is a
            // fault of the run itself (a start-up race, say), not of the kill.
            assert!(
                status.success(),
                "round {round}: the run failed ({status}) before its kill point:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            println!("round {round}: the run finished before its kill point");
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let after = complete(&runtime, &data);
        println!(
            "round {round}: killed {:.2} s after progress, {after} of {files} sources complete",
            delay.as_secs_f64()
        );
        assert!(after < files as i64, "the kill landed mid-run");
        kills += 1;
    }
    assert!(kills >= 1, "at least one run was killed mid-run");

    let rerun = ok(&mosaic(
        &data,
        &["--json", "ingest", docs.to_str().unwrap()],
        &[],
    ));
    assert!(rerun["failed"].as_array().unwrap().is_empty(), "{rerun}");
    let status = ok(&mosaic(&data, &["--json", "status"], &[]));
    assert_eq!(status["complete"], files, "{status}");
    assert_eq!(status["interrupted"], 0, "{status}");
    assert_eq!(
        status["consistent"], true,
        "catalog, vectors and BM25 agree by id: {status}"
    );
    let lexical = &status["lexical"];
    assert_eq!(
        (
            &lexical["orphans"],
            &lexical["missing"],
            &lexical["duplicates"]
        ),
        (&0.into(), &0.into(), &0.into()),
        "{status}"
    );
    for space in status["spaces"].as_array().unwrap() {
        assert_eq!(
            (&space["orphans"], &space["missing"]),
            (&0.into(), &0.into())
        );
        assert_eq!(space["vectors"], space["chunks"]);
    }

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
