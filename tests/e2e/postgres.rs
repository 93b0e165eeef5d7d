//! The catalog on PostgreSQL (`[backend] catalog = "postgres://…"`): the catalog conformance
//! suite, and the main job (ingest, status, ask) with the catalog there, compared chunk id by
//! chunk id with the embedded SQLite catalog. Needs `DATABASE_URL` (a role that may create
//! databases); scripts/test.sh starts a throwaway PostgreSQL and sets it, and with
//! `MOSAIC_REQUIRE_POSTGRES=1` (which it also sets) a missing server is a failure, not a skip.

use std::sync::Arc;
use std::time::Duration;

use mosaic::catalog::{Catalog, SqlCatalog};
use mosaic::conformance;
use mosaic::faults::{FaultPlan, FaultyCatalog};
use sqlx::Connection;

use crate::common::{mosaic, ok, shared_index};

/// A new, empty database on the `DATABASE_URL` server, dropped with the guard.
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    /// `None` (saying so) when `DATABASE_URL` is unset, unless the run requires PostgreSQL.
    pub async fn create(test: &str) -> Option<Self> {
        let Ok(admin) = std::env::var("DATABASE_URL") else {
            assert!(
                std::env::var("MOSAIC_REQUIRE_POSTGRES").is_err(),
                "MOSAIC_REQUIRE_POSTGRES is set but DATABASE_URL is not"
            );
            println!("skipped {test}: DATABASE_URL is not set (scripts/test.sh starts PostgreSQL)");
            return None;
        };
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "mosaic_{}_{}_{}",
            test,
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("connecting to DATABASE_URL: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let mut url = reqwest::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        Some(Self {
            url: url.to_string(),
            admin,
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Its own runtime on its own thread: a drop may run inside another runtime.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await?;
                    conn.close().await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn postgres_catalog_conforms() {
    runtime().block_on(async {
        let Some(a) = PgDatabase::create("conform_a").await else {
            return;
        };
        let b = PgDatabase::create("conform_b").await.unwrap();
        let plain = SqlCatalog::connect(&a.url, 4, TIMEOUT).await.unwrap();
        conformance::catalog(&plain).await;
        plain.close().await;
        let wrapped = FaultyCatalog {
            inner: Arc::new(SqlCatalog::connect(&b.url, 4, TIMEOUT).await.unwrap()),
            plan: FaultPlan::never(),
        };
        conformance::catalog(&wrapped).await;
        assert!(wrapped.plan.calls() > 20);
        wrapped.close().await;
        // A second connection finds the schema in place (migrations are applied once).
        let again = SqlCatalog::connect(&a.url, 2, TIMEOUT).await.unwrap();
        again.counts().await.unwrap();
        again.close().await;
    });
}

/// The chunk keys of a catalog, sorted by id.
async fn keys(catalog: &SqlCatalog) -> Vec<(String, String, Vec<String>, bool)> {
    let mut keys: Vec<_> = catalog
        .chunk_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id, k.source_id, k.spaces, k.lexical))
        .collect();
    keys.sort();
    keys
}

#[test]
fn the_main_job_runs_with_the_catalog_on_postgres() {
    let rt = runtime();
    let Some(db) = rt.block_on(PgDatabase::create("main_job")) else {
        return;
    };
    let shared = shared_index();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("MOSAIC__BACKEND__CATALOG", db.url.as_str())];
    let report = ok(&mosaic(
        &data,
        &["--json", "ingest", shared.corpus.to_str().unwrap()],
        &env,
    ));
    assert_eq!(report["ingested"], 14, "{report}");
    assert!(
        !data.join("catalog.db").exists(),
        "the catalog lives in PostgreSQL, not under the data directory"
    );

    // The same files give the same catalog, chunk id by chunk id, on both engines.
    rt.block_on(async {
        let pg = SqlCatalog::connect(&db.url, 2, TIMEOUT).await.unwrap();
        let sqlite = SqlCatalog::open(&shared.data.join("catalog.db"))
            .await
            .unwrap();
        let (on_pg, on_sqlite) = (keys(&pg).await, keys(&sqlite).await);
        assert!(!on_pg.is_empty());
        assert_eq!(on_pg, on_sqlite, "chunk keys differ between the engines");
        pg.close().await;
        sqlite.close().await;
    });

    let status = ok(&mosaic(&data, &["--json", "status"], &env));
    assert_eq!(status["consistent"], true, "{status}");

    // A second run finds everything indexed and changes nothing.
    let again = ok(&mosaic(
        &data,
        &["--json", "ingest", shared.corpus.to_str().unwrap()],
        &env,
    ));
    assert_eq!(
        (&again["ingested"], &again["skipped"]),
        (&0.into(), &14.into()),
        "{again}"
    );

    // The same question gets the same answer and citations as on the embedded catalog.
    let question = "How many days of paid annual leave do full-time Brightwater employees receive?";
    let on_pg = ok(&mosaic(&data, &["--json", "ask", question], &env));
    let embedded = ok(&mosaic(&shared.data, &["--json", "ask", question], &[]));
    assert!(
        on_pg["answer"]
            .as_str()
            .unwrap()
            .contains("23 days of paid annual leave"),
        "{on_pg}"
    );
    assert_eq!(on_pg["answer"], embedded["answer"]);
    assert_eq!(on_pg["citations"], embedded["citations"]);
}

#[test]
fn an_unreachable_catalog_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens there.
    let url = "postgres://mosaic:secret@127.0.0.1:9/mosaic";
    let out = mosaic(
        dir.path(),
        &["status"],
        &[
            ("MOSAIC__BACKEND__CATALOG", url),
            ("MOSAIC__BACKEND__TIMEOUT_SECS", "3"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "cannot reach the catalog database at postgres://mosaic:***@127.0.0.1:9/mosaic"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password is not shown: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let bad = mosaic(
        dir.path(),
        &["status"],
        &[("MOSAIC__BACKEND__CATALOG", "mysql://127.0.0.1/x")],
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backend.catalog"), "{stderr}");
}

/// `mosaic worker` as a child process with its stdout piped.
fn spawn_worker(data: &std::path::Path, env: &[(String, String)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mosaic"));
    cmd.current_dir(crate::common::repo())
        .arg("--data-dir")
        .arg(data)
        .args(["--json", "worker", "--exit-when-idle", "--poll-secs", "0.2"])
        .env("MOSAIC__LLM__EMBEDDED", "false")
        .env("MOSAIC__LOCK_WAIT_SECS", "600")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start mosaic worker")
}

/// Waits for the first `claimed` event of a worker, then kills it (mid-file: the file's
/// ingest has just begun, with its model still loading).
fn kill_at_first_claim(mut child: std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            if event["event"] == "claimed" {
                child.kill().unwrap();
                child.wait().unwrap();
                return event["path"].as_str().unwrap().to_string();
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    panic!(
        "the worker ended without claiming a file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workers_share_the_queue_and_a_killed_one_loses_nothing() {
    let rt = runtime();
    let Some(db) = rt.block_on(PgDatabase::create("workers")) else {
        return;
    };
    let qdrant = crate::qdrant::qdrant("workers");
    let shared = shared_index();
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![("MOSAIC__BACKEND__CATALOG".to_string(), db.url.clone())];
    if let Some(q) = &qdrant {
        env.push(("MOSAIC__BACKEND__STORE__KIND".into(), "qdrant".into()));
        env.push(("MOSAIC__BACKEND__STORE__URL".into(), q.url.clone()));
        env.push((
            "MOSAIC__BACKEND__STORE__COLLECTION_PREFIX".into(),
            q.collection_prefix.clone(),
        ));
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let first = dir.path().join("a");
    let queued = ok(&mosaic(
        &first,
        &["--json", "enqueue", shared.corpus.to_str().unwrap()],
        &env_refs,
    ));
    assert_eq!(queued["queued"], 14, "{queued}");

    // With Qdrant the workers share every store, so they run at once, each with its own data
    // directory (as on separate machines); with the embedded store they share one directory
    // and take turns.
    let killed;
    if qdrant.is_some() {
        let a = spawn_worker(&first, &env);
        let b = spawn_worker(&dir.path().join("b"), &env);
        killed = kill_at_first_claim(a);
        let out = b.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        println!(
            "two workers at once need the shared Qdrant store (QDRANT_URL): they take turns here"
        );
        killed = kill_at_first_claim(spawn_worker(&first, &env));
    }
    // A last worker takes what is left, the killed worker's file included.
    let out = spawn_worker(&first, &env).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let rows =
            sqlx::query("SELECT path, status, attempts, worker FROM ingest_queue ORDER BY path")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        use sqlx::Row;
        assert_eq!(rows.len(), 14);
        for row in &rows {
            let path: String = row.get("path");
            let (status, attempts): (String, i64) = (row.get("status"), row.get("attempts"));
            assert_eq!(
                (status.as_str(), attempts),
                ("done", 1),
                "{path}: each file done once"
            );
        }
        let done_killed: String = rows
            .iter()
            .find(|r| r.get::<String, _>("path") == killed)
            .map(|r| r.get("worker"))
            .unwrap();
        assert!(
            !done_killed.is_empty(),
            "the killed worker's file was finished by another"
        );
        conn.close().await.unwrap();

        // The catalog holds the corpus's sources, by id, every one complete.
        let pg = SqlCatalog::connect(&db.url, 2, TIMEOUT).await.unwrap();
        let sqlite = SqlCatalog::open(&shared.data.join("catalog.db"))
            .await
            .unwrap();
        let ids = |s: Vec<mosaic::catalog::Source>| {
            let mut v: Vec<(String, String)> = s.into_iter().map(|s| (s.id, s.status)).collect();
            v.sort();
            v
        };
        assert_eq!(
            ids(pg.sources().await.unwrap()),
            ids(sqlite.sources().await.unwrap())
        );
        assert_eq!(keys(&pg).await, keys(&sqlite).await, "chunk ids differ");
        pg.close().await;
        sqlite.close().await;
    });
    let status = ok(&mosaic(&first, &["--json", "status"], &env_refs));
    assert_eq!(status["consistent"], true, "{status}");
    if let Some(q) = &qdrant {
        rt.block_on(crate::qdrant::drop_collections(q));
    }
}

#[test]
fn migrate_copies_the_index_without_reembedding_and_resumes() {
    let rt = runtime();
    let Some(db) = rt.block_on(PgDatabase::create("migrate")) else {
        return;
    };
    let qdrant = crate::qdrant::qdrant("migrate");
    let shared = shared_index();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    let mut config = format!(
        "data_dir = {:?}\n[backend]\ncatalog = {:?}\n",
        target.display().to_string(),
        db.url
    );
    if let Some(q) = &qdrant {
        config.push_str(&format!(
            "[backend.store]\nkind = \"qdrant\"\nurl = {:?}\ncollection_prefix = {:?}\n",
            q.url, q.collection_prefix
        ));
    }
    let config_file = dir.path().join("cluster.toml");
    std::fs::write(&config_file, config).unwrap();
    let to = config_file.to_str().unwrap();

    // The models folder is empty for this run: copying must not need any model.
    let no_models = dir.path().join("no-models");
    let offline = [("MOSAIC__MODELS__DIR", no_models.to_str().unwrap())];
    let report = ok(&mosaic(
        &shared.data,
        &["--json", "migrate", "--to", to],
        &offline,
    ));
    assert_eq!(
        (&report["copied"], &report["skipped"]),
        (&14.into(), &0.into()),
        "{report}"
    );
    assert_eq!(report["verified"], true, "{report}");

    rt.block_on(async {
        let pg = SqlCatalog::connect(&db.url, 2, TIMEOUT).await.unwrap();
        let sqlite = SqlCatalog::open(&shared.data.join("catalog.db"))
            .await
            .unwrap();
        assert_eq!(keys(&pg).await, keys(&sqlite).await, "chunk ids differ");
        // Interrupt one source in the target, as a killed run leaves it.
        let first = pg.sources().await.unwrap().remove(0);
        pg.set_status(&first.id, mosaic::catalog::status::INDEXING)
            .await
            .unwrap();
        pg.close().await;
        sqlite.close().await;
    });
    let again = ok(&mosaic(
        &shared.data,
        &["--json", "migrate", "--to", to],
        &offline,
    ));
    assert_eq!(
        (&again["copied"], &again["skipped"]),
        (&1.into(), &13.into()),
        "{again}"
    );
    assert_eq!(again["verified"], true, "{again}");

    // The target answers the test question as the source does.
    let mut env: Vec<(&str, &str)> = vec![("MOSAIC__BACKEND__CATALOG", db.url.as_str())];
    if let Some(q) = &qdrant {
        env.push(("MOSAIC__BACKEND__STORE__KIND", "qdrant"));
        env.push(("MOSAIC__BACKEND__STORE__URL", q.url.as_str()));
        env.push((
            "MOSAIC__BACKEND__STORE__COLLECTION_PREFIX",
            q.collection_prefix.as_str(),
        ));
    }
    let status = ok(&mosaic(&target, &["--json", "status"], &env));
    assert_eq!(status["consistent"], true, "{status}");
    let question = "How long should the saltmarsh barley stew simmer?";
    let moved = ok(&mosaic(&target, &["--json", "ask", question], &env));
    let original = ok(&mosaic(&shared.data, &["--json", "ask", question], &[]));
    assert_eq!(moved["answer"], original["answer"]);
    assert_eq!(moved["citations"], original["citations"]);
    if let Some(q) = &qdrant {
        rt.block_on(crate::qdrant::drop_collections(q));
    }
}
