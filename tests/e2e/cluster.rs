//! The profiles of docker-compose.yml, the `cluster` one above all, run from the file itself without a container
//! engine: its services are started as processes on loopback, each with the environment,
//! command, start order (`depends_on`) and health check the file gives it, the image
//! `qdrant/qdrant` being a Qdrant binary (`QDRANT_BIN`), `build: .` the `mosaic` binary
//! under the Dockerfile's environment, and `postgres` a new database on the `DATABASE_URL`
//! server. Container hosts and ports are mapped to loopback ports, container paths to test
//! folders. Then: three Qdrant nodes form one cluster over P2P, the worker ingests what is
//! queued, both API servers answer the same questions alike (neither holds any of the index),
//! and with one Qdrant node killed both still answer and take new files.
//!
//! The `embedded` and `server` profiles run the same way, each answering after an ingest through
//! its API. Needs `QDRANT_BIN` and `DATABASE_URL`; without them each test says it was skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{models_dir, mosaic, ok, repo, shared_index};
use crate::postgres::PgDatabase;

const KEY: &str = "cluster-test-key";

/// docker-compose.yml with its merges (`<<`) applied.
fn compose_file() -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc.apply_merge().unwrap();
    // Merges nested under a merged mapping (environment: <<: *mosaic-env) need a second pass.
    doc.apply_merge().unwrap();
    doc
}

/// A profile's services, merges (`<<`) applied, in the file's order.
fn compose_services(profile: &str) -> Vec<(String, serde_yaml::Value)> {
    let doc = compose_file();
    let services = doc["services"].as_mapping().unwrap();
    services
        .iter()
        .filter(|(_, s)| {
            s["profiles"]
                .as_sequence()
                .is_some_and(|p| p.iter().any(|p| p.as_str() == Some(profile)))
        })
        .map(|(name, s)| (name.as_str().unwrap().to_string(), s.clone()))
        .collect()
}

/// Compose's variable substitution: `${VAR}`, `${VAR:-default}`, `${VAR:?error}` (the error,
/// when VAR is unset or empty).
fn interpolate(value: &str, vars: &HashMap<&str, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        let (name, default) = if let Some((n, d)) = inner.split_once(":-") {
            (n, d.to_string())
        } else if let Some((n, message)) = inner.split_once(":?") {
            if vars.get(n).is_none_or(|v| v.is_empty()) {
                return Err(message.to_string());
            }
            (n, String::new())
        } else {
            (inner, String::new())
        };
        match vars.get(name) {
            Some(v) if !v.is_empty() => out.push_str(v),
            _ => out.push_str(&default),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `ENV` instruction of the Dockerfile's last stage, as the image's environment.
fn dockerfile_env() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let mut env = BTreeMap::new();
    for line in joined.lines() {
        if let Some(rest) = line.trim().strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV K=V");
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    env
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started service: its process (none for PostgreSQL) and where its log goes.
struct Running {
    child: Option<Child>,
    log: PathBuf,
}

/// Every process of the profile, killed when the test ends however it ends.
struct Cluster {
    running: BTreeMap<String, Running>,
    /// `service:container port` → loopback port.
    hosts: HashMap<String, u16>,
    /// The environment each `mosaic` service runs with.
    envs: BTreeMap<String, Vec<(String, String)>>,
}

impl Cluster {
    fn url(&self, service: &str, container_port: u16) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.hosts[&format!("{service}:{container_port}")]
        )
    }
}

impl Cluster {
    fn kill(&mut self, name: &str) {
        if let Some(child) = self.running.get_mut(name).and_then(|r| r.child.as_mut()) {
            child.kill().ok();
            child.wait().ok();
        }
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for (name, r) in &self.running {
            let text = std::fs::read_to_string(&r.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- {name} (last lines)\n"));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            self.kill(&name);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// `curl` with the key; the body parsed as JSON.
fn call(method: &str, url: &str, body: Option<&Value>) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--max-time", "120", "-X", method])
        .args(["-H", &format!("Authorization: Bearer {KEY}")]);
    if let Some(body) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ]);
    }
    let out = cmd.arg(url).output().expect("curl");
    assert!(
        out.status.success(),
        "{method} {url}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A health check's test command (`CMD` form), run on this machine until it passes.
fn wait_healthy(name: &str, test: &[String], within: Duration, cluster: &Cluster) {
    assert_eq!(
        test.first().map(String::as_str),
        Some("CMD"),
        "{name}: {test:?}"
    );
    let started = Instant::now();
    loop {
        let status = Command::new(&test[1])
            .args(&test[2..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if status.success() {
            return;
        }
        if started.elapsed() > within {
            panic!("{name} did not become healthy\n{}", cluster.logs());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    match v {
        serde_yaml::Value::Sequence(s) => {
            s.iter().map(|x| x.as_str().unwrap().to_string()).collect()
        }
        serde_yaml::Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The profile's services started in `depends_on` order, each waited for when another
/// depends on it being healthy.
fn start(profile: &str, qdrant: &Path, db: &PgDatabase, root: &Path, library: &Path) -> Cluster {
    let services = compose_services(profile);
    let vars: HashMap<&str, String> = [("MOSAIC_API_KEY", KEY.to_string())].into();
    // Every service gets a free loopback port for each container port the file uses (HTTP and
    // gRPC of Qdrant, its P2P port, Mosaic's API): "service:port" in a URL becomes that port.
    let mut hosts: HashMap<String, u16> = HashMap::new(); // "service:container port" → host port
    for (name, _) in &services {
        for port in [6333, 6334, 6335, 8400] {
            hosts.insert(format!("{name}:{port}"), free_port());
        }
    }
    let rewrite = |name: &str, s: &str| -> String {
        // Container hosts → loopback; the service's own loopback port → its host port.
        let mut out = s.to_string();
        for (key, port) in &hosts {
            out = out.replace(&format!("//{key}"), &format!("//127.0.0.1:{port}"));
        }
        for port in [6333, 6334, 6335, 8400] {
            let own = hosts[&format!("{name}:{port}")];
            out = out.replace(&format!("/127.0.0.1/{port}"), &format!("/127.0.0.1/{own}"));
        }
        out
    };
    let mut cluster = Cluster {
        running: BTreeMap::new(),
        hosts: hosts.clone(),
        envs: BTreeMap::new(),
    };
    let mut pending: Vec<(String, serde_yaml::Value)> = services.clone();
    let mut healthy: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|(_, s)| match s["depends_on"].as_mapping() {
                None => true,
                Some(deps) => deps.iter().all(|(d, _)| {
                    let d = d.as_str().unwrap();
                    healthy.iter().any(|h| h == d)
                }),
            })
            .expect("depends_on has no cycle and names services of the profile");
        let (name, service) = pending.remove(ready);
        // Wait for what this service depends on being healthy, then start it.
        let env: BTreeMap<String, String> = service["environment"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_yaml::Value::String(s) => s.clone(),
                            other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                        };
                        (
                            k.as_str().unwrap().to_string(),
                            interpolate(&v, &vars).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let image = service["image"].as_str().unwrap_or_default();
        let child = if image.starts_with("postgres") {
            None // the test's own database on the DATABASE_URL server
        } else if image.starts_with("qdrant/qdrant") {
            // No command: the image's own (`./qdrant`, no arguments).
            let args = strings(&service["command"]);
            if let Some(first) = args.first() {
                assert_eq!(first, "./qdrant", "{name}");
            }
            let mut cmd = Command::new(qdrant);
            cmd.current_dir(&dir)
                .args(args.iter().skip(1).map(|a| rewrite(&name, a)))
                .envs(&env)
                .env("QDRANT__SERVICE__HOST", "127.0.0.1")
                .env(
                    "QDRANT__SERVICE__HTTP_PORT",
                    hosts[&format!("{name}:6333")].to_string(),
                )
                .env(
                    "QDRANT__SERVICE__GRPC_PORT",
                    hosts[&format!("{name}:6334")].to_string(),
                )
                .env(
                    "QDRANT__CLUSTER__P2P__PORT",
                    hosts[&format!("{name}:6335")].to_string(),
                )
                .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
                .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
                .env("QDRANT__TELEMETRY_DISABLED", "true");
            Some(cmd)
        } else {
            assert_eq!(service["build"].as_str(), Some("."), "{name}");
            // The image's environment with its container paths mapped to this machine's.
            let mut image_env = dockerfile_env();
            let data = dir.join("data");
            for (key, value) in image_env.iter_mut() {
                *value = match value.as_str() {
                    "/data" => data.display().to_string(),
                    "/models" => models_dir().display().to_string(),
                    "/library" => library.display().to_string(),
                    "/etc/mosaic/pipelines" => repo().join("pipelines").display().to_string(),
                    "0.0.0.0" if key.ends_with("BIND") => "127.0.0.1".into(),
                    "8400" => hosts[&format!("{name}:8400")].to_string(),
                    other => other.to_string(),
                };
            }
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mosaic"));
            let command = strings(&service["command"]);
            let command = if command.is_empty() {
                vec!["serve".to_string()] // the Dockerfile's CMD
            } else {
                command
            };
            let mut all: Vec<(String, String)> = image_env.into_iter().collect();
            all.extend(env.iter().map(|(k, v)| {
                let v = if v.starts_with("postgres://") {
                    db.url.clone()
                } else {
                    rewrite(&name, v)
                };
                (k.clone(), v)
            }));
            cmd.current_dir(&dir)
                .args(&command)
                .envs(all.iter().cloned())
                .env("MOSAIC__LOCK_WAIT_SECS", "600")
                .env_remove("RUST_LOG");
            cluster.envs.insert(name.clone(), all);
            Some(cmd)
        };
        let child = child.map(|mut cmd| {
            cmd.stdout(std::fs::File::create(dir.join("stdout")).unwrap())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {name}: {e}"))
        });
        cluster.running.insert(name.clone(), Running { child, log });
        let test = strings(&service["healthcheck"]["test"]);
        let disabled = service["healthcheck"]["disable"].as_bool() == Some(true);
        if image.starts_with("postgres") || test.is_empty() || disabled {
            healthy.push(name);
        } else {
            let test: Vec<String> = test.iter().map(|a| rewrite(&name, a)).collect();
            wait_healthy(&name, &test, Duration::from_secs(180), &cluster);
            println!("{name} is healthy");
            healthy.push(name);
        }
    }
    cluster
}

/// The chat answer and what each annotation cites (source id, anchor, quoted text).
fn chat(base: &str, question: &str) -> (String, Vec<String>) {
    let reply = call(
        "POST",
        &format!("{base}/v1/chat/completions"),
        Some(&json!({"model": "mosaic", "messages": [{"role": "user", "content": question}]})),
    );
    let message = &reply["choices"][0]["message"];
    let cited = message["annotations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let m = &x["mosaic"];
                    json!([m["source"]["id"], m["anchor"], m["text"]]).to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    (message["content"].as_str().unwrap().to_string(), cited)
}

fn search_ids(base: &str, query: &str) -> Vec<String> {
    let found = call(
        "POST",
        &format!("{base}/v1/search"),
        Some(&json!({"query": query, "top_k": 5})),
    );
    found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["chunk_id"].to_string())
        .collect()
}

/// Each queued path and its status.
fn queue_status(db: &PgDatabase, rt: &tokio::runtime::Runtime) -> BTreeMap<String, String> {
    use sqlx::{Connection, Row};
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let rows = sqlx::query("SELECT path, status FROM ingest_queue")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        rows.iter()
            .map(|r| (r.get::<String, _>("path"), r.get::<String, _>("status")))
            .collect()
    })
}

#[test]
fn the_cluster_profile_runs_as_the_compose_file_describes() {
    let Ok(qdrant) = std::env::var("QDRANT_BIN") else {
        println!(
            "skipped the cluster profile: QDRANT_BIN (a Qdrant server binary) is not set \
             (see README, Tests: cluster backends)"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(PgDatabase::create("cluster")) else {
        return;
    };
    let shared = shared_index();
    let dir = tempfile::tempdir().unwrap();
    let library = crate::common::corpus_copy(dir.path());
    let mut cluster = start("cluster", Path::new(&qdrant), &db, dir.path(), &library);

    // Three Qdrant nodes in one Raft cluster.
    let q1 = cluster.url("qdrant-1", 6333);
    let info = call("GET", &format!("{q1}/cluster"), None);
    assert_eq!(info["result"]["status"], "enabled", "{info}");
    assert_eq!(
        info["result"]["peers"].as_object().map(|p| p.len()),
        Some(3),
        "{info}"
    );
    let (api1, api2) = (cluster.url("api-1", 8400), cluster.url("api-2", 8400));

    // What is queued the worker ingests (the README's `exec worker mosaic enqueue /library`).
    let env_refs: Vec<(&str, &str)> = cluster.envs["worker"]
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let queued = ok(&mosaic(
        &dir.path().join("worker/data"),
        &["--json", "enqueue", library.to_str().unwrap()],
        &env_refs,
    ));
    assert_eq!(queued["queued"], 14, "{queued}");
    let started = Instant::now();
    loop {
        let queue = queue_status(&db, &rt);
        if queue.len() == 14 && queue.values().all(|s| s == "done") {
            break;
        }
        assert!(
            queue.values().all(|s| s != "failed"),
            "{queue:?}\n{}",
            cluster.logs()
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the worker did not finish: {queue:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Collections as the profile configures them: three shards, two replicas each, spread
    // over the three nodes.
    let collections = call("GET", &format!("{q1}/collections"), None);
    let names: Vec<String> = collections["result"]["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let text_space = format!(
        "mosaic--{}",
        "text/sentence-transformers/all-MiniLM-L6-v2/384".replace('/', "%2F")
    );
    let mut want = vec![text_space, "mosaic__lexical".to_string()];
    want.sort();
    let mut got = names.clone();
    got.sort();
    assert_eq!(got, want, "the text space and BM25");
    for name in &names {
        // The names are percent-encoded space ids: escape their `%` for the URL path.
        let escaped = name.replace('%', "%25");
        let c = call("GET", &format!("{q1}/collections/{escaped}"), None);
        let params = &c["result"]["config"]["params"];
        assert_eq!(
            (&params["shard_number"], &params["replication_factor"]),
            (&json!(3), &json!(2)),
            "{name}: {params}"
        );
        let mut peers_per_shard: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for node in ["qdrant-1", "qdrant-2", "qdrant-3"] {
            let url = cluster.url(node, 6333);
            let shards = call("GET", &format!("{url}/collections/{escaped}/cluster"), None);
            let peer = shards["result"]["peer_id"].as_u64().unwrap();
            for s in shards["result"]["local_shards"].as_array().unwrap() {
                peers_per_shard
                    .entry(s["shard_id"].as_u64().unwrap())
                    .or_default()
                    .push(peer);
            }
        }
        println!("{name}: shard -> peers {peers_per_shard:?}");
        assert_eq!(peers_per_shard.len(), 3, "{name}: {peers_per_shard:?}");
        assert!(
            peers_per_shard.values().all(|p| p.len() == 2),
            "{name}: two replicas of every shard on two nodes: {peers_per_shard:?}"
        );
    }

    // Both API servers answer alike, and as the all-embedded index does; neither ingested
    // anything, and neither holds a catalog, vectors or BM25 of its own: everything they
    // answer from is in Qdrant and PostgreSQL.
    for api in ["api-1", "api-2"] {
        let data = dir.path().join(api).join("data");
        assert!(data.is_dir(), "{api} runs on {}", data.display());
        for local in ["catalog.db", "vectors", "lexical"] {
            assert!(
                !data.join(local).exists(),
                "{api} keeps {local} under its data directory"
            );
        }
    }
    let questions = [
        "How many days of paid annual leave do full-time Brightwater employees receive?",
        "How long should the saltmarsh barley stew simmer?",
    ];
    let mut answers = Vec::new();
    for question in questions {
        let (a1, c1) = chat(&api1, question);
        let (a2, c2) = chat(&api2, question);
        assert_eq!((&a1, &c1), (&a2, &c2), "{question}");
        assert!(!c1.is_empty(), "{question}: cited: {a1}");
        let embedded = ok(&mosaic(&shared.data, &["--json", "ask", question], &[]));
        let embedded_answer = embedded["answer"].as_str().unwrap();
        assert!(
            a1.starts_with(embedded_answer.split(" [").next().unwrap()),
            "{question}: cluster {a1:?} vs embedded {embedded_answer:?}"
        );
        assert_eq!(search_ids(&api1, question), search_ids(&api2, question));
        println!("both servers: {a1:?} ({} citations)", c1.len());
        answers.push((a1, c1));
    }

    // One Qdrant node down: with two replicas of every shard both servers still answer the
    // same, and a new file still goes in through the API and is found from the other server.
    cluster.kill("qdrant-3");
    let extra = library.join("notice.txt");
    std::fs::write(&extra, crate::common::NOTICE).unwrap();
    for (question, (answer, cited)) in questions.iter().zip(&answers) {
        assert_eq!(
            &chat(&api1, question),
            &(answer.clone(), cited.clone()),
            "{question}"
        );
        assert_eq!(
            &chat(&api2, question),
            &(answer.clone(), cited.clone()),
            "{question}"
        );
    }
    let job = call(
        "POST",
        &format!("{api2}/v1/ingest"),
        Some(&json!({"paths": [extra.display().to_string()]})),
    );
    let done = wait_for_job(&api2, job["id"].as_str().expect("a job id"), &cluster);
    assert_eq!(done["ingested"], 1, "{done}");
    let found = call(
        "POST",
        &format!("{api1}/v1/search"),
        Some(&json!({"query": "car park resurfacing", "top_k": 1})),
    );
    let notice = mosaic::catalog::source_id(&mosaic::ingest::file_uri(&extra));
    assert_eq!(found["hits"][0]["source"]["id"], notice.as_str(), "{found}");
    println!(
        "qdrant-3 down: both servers answered as before; a file ingested through api-2 is found from api-1"
    );
    drop(cluster);
}

/// Waits for an ingest job of the API; returns its final state.
fn wait_for_job(api: &str, id: &str, cluster: &Cluster) -> Value {
    let started = Instant::now();
    loop {
        let status = call("GET", &format!("{api}/v1/jobs/{id}"), None);
        if status["status"] == "done" {
            return status;
        }
        assert_ne!(status["status"], "failed", "{status}\n{}", cluster.logs());
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{status}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The `embedded` and `server` profiles the same way: the library ingested through the API
/// answers as the all-embedded index does.
#[test]
fn the_embedded_and_server_profiles_run_as_the_compose_file_describes() {
    let Ok(qdrant) = std::env::var("QDRANT_BIN") else {
        println!("skipped the embedded and server profiles: QDRANT_BIN is not set");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(PgDatabase::create("profiles")) else {
        return;
    };
    let shared = shared_index();
    let question = "How long should the saltmarsh barley stew simmer?";
    let embedded = ok(&mosaic(&shared.data, &["--json", "ask", question], &[]));
    let embedded_answer = embedded["answer"].as_str().unwrap();
    for (profile, service) in [("embedded", "mosaic"), ("server", "mosaic-server")] {
        let dir = tempfile::tempdir().unwrap();
        let library = crate::common::corpus_copy(dir.path());
        let cluster = start(profile, Path::new(&qdrant), &db, dir.path(), &library);
        let api = cluster.url(service, 8400);
        let job = call(
            "POST",
            &format!("{api}/v1/ingest"),
            Some(&json!({"paths": [library.display().to_string()]})),
        );
        let done = wait_for_job(&api, job["id"].as_str().unwrap(), &cluster);
        assert_eq!(done["ingested"], 14, "{profile}: {done}");
        let (answer, cited) = chat(&api, question);
        assert!(
            answer.starts_with(embedded_answer.split(" [").next().unwrap()) && !cited.is_empty(),
            "{profile}: {answer:?} vs embedded {embedded_answer:?}"
        );
        println!("{profile} profile: {answer:?}");
    }
}

/// The profile as the runner above reads it, checked without starting anything: merged keys
/// (`<<`) resolve as Compose resolves them, so CI, which has no Qdrant, still catches a
/// profile whose services lost their settings.
#[test]
fn the_cluster_profile_reads_as_compose_merges_it() {
    let services: BTreeMap<String, serde_yaml::Value> =
        compose_services("cluster").into_iter().collect();
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["api-1", "api-2", "postgres", "qdrant-1", "qdrant-2", "qdrant-3", "worker"]
    );
    let env = |service: &str, key: &str| {
        services[service]["environment"][key]
            .as_str()
            .map(str::to_string)
    };
    for api in ["api-1", "api-2", "worker"] {
        assert_eq!(
            env(api, "MOSAIC__BACKEND__STORE__KIND").as_deref(),
            Some("qdrant")
        );
        assert_eq!(
            env(api, "MOSAIC__BACKEND__STORE__SHARD_NUMBER").as_deref(),
            Some("3")
        );
        assert_eq!(
            env(api, "MOSAIC__BACKEND__STORE__REPLICATION_FACTOR").as_deref(),
            Some("2")
        );
        assert!(env(api, "MOSAIC__BACKEND__CATALOG")
            .is_some_and(|c| c.starts_with("postgres://") && c.contains("@postgres:5432/")));
        assert_eq!(services[api]["build"].as_str(), Some("."));
    }
    assert_eq!(
        env("api-2", "MOSAIC__BACKEND__STORE__URL").as_deref(),
        Some("http://qdrant-2:6334"),
        "api-2 overrides the URL it inherits"
    );
    assert_eq!(
        env("api-1", "MOSAIC__BACKEND__STORE__URL").as_deref(),
        Some("http://qdrant-1:6334")
    );
    assert_eq!(strings(&services["worker"]["command"]), ["worker"]);
    assert_eq!(
        services["worker"]["healthcheck"]["disable"].as_bool(),
        Some(true)
    );
    for node in ["qdrant-1", "qdrant-2", "qdrant-3"] {
        assert_eq!(
            env(node, "QDRANT__CLUSTER__ENABLED").as_deref(),
            Some("true"),
            "{node}"
        );
        assert!(services[node]["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("qdrant/qdrant:")));
    }
    assert!(strings(&services["qdrant-2"]["command"]).contains(&"http://qdrant-1:6335".to_string()));
    // Published ports on loopback only and data in declared named volumes, in every profile;
    // each Mosaic service mounts the models read-only and the library.
    let doc = compose_file();
    let volumes = doc["volumes"].as_mapping().unwrap();
    for (name, service) in doc["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        for port in strings(&service["ports"]) {
            assert!(port.starts_with("127.0.0.1:"), "{name} publishes {port}");
        }
        let mounts = strings(&service["volumes"]);
        for mount in &mounts {
            let host = mount.split(':').next().unwrap();
            if !host.starts_with(['.', '/', '~', '$']) {
                assert!(
                    volumes.contains_key(host),
                    "{name} mounts {host}, which the file does not declare"
                );
            }
        }
        if service["build"].as_str() == Some(".") {
            assert!(mounts.iter().any(|m| m.ends_with(":/models:ro")), "{name}");
            assert!(mounts.iter().any(|m| m.contains(":/library")), "{name}");
        }
    }
    for (service, data) in [
        ("mosaic", "/data"),
        ("postgres", "/var/lib/postgresql/data"),
        ("qdrant-1", "/qdrant/storage"),
    ] {
        let mounts = strings(&doc["services"][service]["volumes"]);
        assert!(
            mounts.iter().any(|m| m.ends_with(&format!(":{data}"))),
            "{service} keeps its data in a volume: {mounts:?}"
        );
    }
    // Interpolation as Compose does it.
    let vars: HashMap<&str, String> = [("A", "x".to_string())].into();
    assert_eq!(
        interpolate("${A}-${B:-d}-${A:-e}", &vars).as_deref(),
        Ok("x-d-x")
    );
    assert_eq!(interpolate("${B:?set B}", &vars), Err("set B".to_string()));
}
