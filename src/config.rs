//! Layered settings: built-in defaults < `mosaic.toml` < `MOSAIC__SECTION__KEY` environment
//! variables < command-line flags, resolved once into one [`Settings`] value.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fault::{Fault, HasFault};

/// Errors while resolving settings.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

impl HasFault for ConfigError {
    fn fault(&self) -> Fault {
        Fault::User
    }
}

/// The fully resolved settings of one Mosaic process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the catalog, vector store and BM25 index live.
    pub data_dir: PathBuf,
    /// Folder holding `text.toml` and `query.toml`; built-in copies are used when absent.
    pub pipelines_dir: Option<PathBuf>,
    pub models: ModelSettings,
    pub llm: LlmSettings,
    pub ingest: IngestSettings,
    pub server: ServerSettings,
    /// Which engines hold the catalog, the vectors and BM25.
    pub backend: Backend,
    /// `tracing` filter, e.g. `info` or `mosaic=debug`.
    pub log: String,
    /// Seconds to wait for another process that holds the data directory.
    pub lock_wait_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Where `mosaic models pull|import` put model folders.
    pub dir: PathBuf,
    /// Never contact the Hugging Face Hub.
    pub offline: bool,
    /// Threads for model inference (0 = all cores).
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// OpenAI-compatible base URL (e.g. `http://127.0.0.1:8080/v1`). When set it is used.
    pub base_url: Option<String>,
    /// Model name sent to the OpenAI-compatible server.
    pub model: String,
    pub api_key: Option<String>,
    /// Phrase answers with the embedded GGUF model (SmolLM2-135M by default) when no base URL
    /// is set. Off by default: a 135M model is for phrasing, not for facts, and its answers
    /// are verified and replaced by the extracted answer when unsupported.
    pub embedded: bool,
    /// Hugging Face id of the embedded GGUF model.
    pub embedded_model: String,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    pub temperature: f32,
    /// Seconds to wait for a remote server.
    pub timeout_secs: u64,
}

/// The storage engines. By default everything is embedded under the data directory
/// (SQLite, qdrant-edge, tantivy); `catalog = "postgres://…"` moves the catalog to
/// PostgreSQL, so that several servers and workers share it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// `"sqlite"` (`<data_dir>/catalog.db`) or a PostgreSQL URL
    /// (`postgres://user:password@host:5432/db`).
    pub catalog: String,
    /// Where vectors and BM25 live: `{ kind = "embedded" }` (qdrant-edge and tantivy under
    /// the data directory) or `{ kind = "qdrant", url = "http://…:6334", … }`.
    pub store: StoreBackend,
    /// Connections the PostgreSQL catalog pool keeps at most.
    pub max_connections: u32,
    /// Seconds to wait for a cluster engine to answer (connecting, a pooled connection).
    pub timeout_secs: u64,
}

impl Default for Backend {
    fn default() -> Self {
        Self {
            catalog: "sqlite".into(),
            store: StoreBackend::Embedded,
            max_connections: 8,
            timeout_secs: 10,
        }
    }
}

/// The vector and BM25 engines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoreBackend {
    Embedded,
    /// A Qdrant server or cluster (gRPC): vectors per space, BM25 as sparse vectors.
    Qdrant(QdrantSettings),
}

/// `[backend.store]` with `kind = "qdrant"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QdrantSettings {
    /// gRPC URL, e.g. `http://127.0.0.1:6334`.
    pub url: String,
    pub api_key: Option<String>,
    /// Collections are named `<prefix>--<space>` and `<prefix>__lexical`.
    pub collection_prefix: String,
    pub shard_number: u32,
    pub replication_factor: u32,
    /// Replicas that must acknowledge a write.
    pub write_consistency_factor: u32,
    /// Vectors and payloads on disk (memory-mapped) rather than in RAM.
    pub on_disk: bool,
    /// int8 scalar quantization of dense vectors (kept in RAM; originals rescore).
    pub scalar_quantization: bool,
    /// Points per upsert request.
    pub upsert_batch: usize,
    /// Retries of a call that failed transiently (unavailable, deadline, overloaded).
    pub retries: u32,
    /// Seconds to wait for a connection or a call.
    pub timeout_secs: u64,
}

impl Default for QdrantSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:6334".into(),
            api_key: None,
            collection_prefix: "mosaic".into(),
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            on_disk: false,
            scalar_quantization: false,
            upsert_batch: 256,
            retries: 5,
            timeout_secs: 30,
        }
    }
}

impl Backend {
    /// The PostgreSQL URL, when the catalog is on PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        Some(self.catalog.trim()).filter(|c| !c.is_empty() && *c != "sqlite")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Documents larger than this are reported and skipped.
    pub max_file_bytes: u64,
    /// Recordings larger than this are reported and skipped (they are decoded in a stream, so
    /// this bounds time, not memory).
    pub max_media_bytes: u64,
    /// Files read and chunked concurrently (extraction overlaps embedding); pictures and
    /// recordings keep their place until embedded or transcribed. Up to eight times as many
    /// chunked documents wait for the embedding worker, which merges them into full batches.
    pub parallel_files: usize,
}

/// `mosaic serve`: where it listens, who may call it, and how much work it takes at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind. Without API keys the server binds to loopback whatever this says.
    pub bind: String,
    pub port: u16,
    /// Bearer keys that may search, ask, embed and read sources (comma-separated in the env).
    pub read_keys: Vec<String>,
    /// Bearer keys that may also ingest and delete (they can read too).
    pub write_keys: Vec<String>,
    /// Absolute base URL of citation links (`https://mosaic.example.org`); by default the
    /// request's own `Host`.
    pub public_url: Option<String>,
    /// Folder under which `POST /v1/ingest` may name server-side paths; unset: uploads only.
    pub ingest_root: Option<PathBuf>,
    /// Largest upload (`/v1/ingest`, `/v1/similar`).
    pub max_upload_bytes: u64,
    /// Largest JSON body.
    pub max_json_bytes: u64,
    /// Seconds a request may take before it is answered 504 (an event stream, once started,
    /// is not cut).
    pub request_timeout_secs: u64,
    /// Searches, similar-media and embedding requests served at once; more get 429.
    pub max_concurrent_searches: usize,
    /// Chat answers served at once; more get 429.
    pub max_concurrent_chats: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            port: 8400,
            read_keys: Vec::new(),
            write_keys: Vec::new(),
            public_url: None,
            ingest_root: None,
            max_upload_bytes: 2 * 1024 * 1024 * 1024,
            max_json_bytes: 4 * 1024 * 1024,
            request_timeout_secs: 300,
            max_concurrent_searches: 16,
            max_concurrent_chats: 4,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("mosaic-data"),
            pipelines_dir: None,
            models: ModelSettings {
                dir: default_models_dir(),
                offline: false,
                threads: 0,
            },
            llm: LlmSettings {
                base_url: None,
                model: "gpt-4o-mini".into(),
                api_key: None,
                embedded: false,
                embedded_model: "HuggingFaceTB/SmolLM2-135M-Instruct".into(),
                max_tokens: 256,
                temperature: 0.0,
                timeout_secs: 120,
            },
            ingest: IngestSettings {
                max_file_bytes: 64 * 1024 * 1024,
                max_media_bytes: 16 * 1024 * 1024 * 1024,
                parallel_files: 2,
            },
            server: ServerSettings::default(),
            backend: Backend::default(),
            log: "warn,mosaic=info,qdrant_edge=error".into(),
            lock_wait_secs: 60,
        }
    }
}

/// Where model folders go unless configured: `$MOSAIC_HOME/models` or `~/.cache/mosaic/models`.
pub fn default_models_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("MOSAIC_HOME") {
        return PathBuf::from(home).join("models");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("mosaic").join("models")
}

/// Builds [`Settings`] from all layers. `env` is the process environment (passed in so tests
/// can layer without touching global state); `overrides` are `section.key = value` pairs from
/// command-line flags, applied last.
pub fn resolve(
    config_file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(&str, toml::Value)],
) -> Result<Settings, ConfigError> {
    let mut merged = toml::Value::try_from(Settings::default())
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;

    let file = match config_file {
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from("mosaic.toml")).filter(|p| p.is_file()),
    };
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let layer: toml::Value = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        merge(&mut merged, layer);
    }

    for (name, value) in env {
        let Some(rest) = name.strip_prefix("MOSAIC__") else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            continue;
        }
        set_env(&mut merged, &keys, &value);
    }

    for (path, value) in overrides {
        let keys: Vec<String> = path.split('.').map(str::to_string).collect();
        set_path(&mut merged, &keys, value.clone());
    }

    let settings = merged
        .try_into::<Settings>()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    validate(settings)
}

/// Checks what parsing cannot: an empty LLM URL means "not set", any other must be an http(s)
/// URL, and a pipelines folder that was named must exist.
fn validate(mut settings: Settings) -> Result<Settings, ConfigError> {
    settings.llm.base_url = settings
        .llm
        .base_url
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    if let Some(url) = &settings.llm.base_url {
        match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            Ok(parsed) if !url.contains("//") => {
                return Err(ConfigError::Invalid(format!(
                    "llm.base_url {url:?} has no scheme (read as {:?}); write http://{url}",
                    parsed.scheme()
                )))
            }
            Ok(parsed) => {
                return Err(ConfigError::Invalid(format!(
                    "llm.base_url {url:?} must be an http or https URL, not {}",
                    parsed.scheme()
                )))
            }
            Err(e) => {
                return Err(ConfigError::Invalid(format!(
                "llm.base_url {url:?} is not a URL ({e}); expected e.g. http://127.0.0.1:8080/v1"
            )))
            }
        }
    }
    if let Some(dir) = &settings.pipelines_dir {
        if !dir.is_dir() {
            return Err(ConfigError::Invalid(format!(
                "pipelines folder {} does not exist",
                dir.display()
            )));
        }
    }
    if let Some(url) = settings.backend.postgres_url() {
        let scheme = url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(ConfigError::Invalid(format!(
                "backend.catalog is \"sqlite\" or a postgres:// URL, not {:?}",
                crate::catalog::redact(url)
            )));
        }
    }
    Ok(settings)
}

/// Environment values are strings; read one as the type of the setting it replaces
/// (`true`, `8`, `0.5`), and as a string where the setting is a string or has no default.
fn coerce(existing: Option<&toml::Value>, raw: &str) -> toml::Value {
    let parsed = match existing {
        Some(toml::Value::Boolean(_)) => raw.parse().ok().map(toml::Value::Boolean),
        Some(toml::Value::Integer(_)) => raw.parse().ok().map(toml::Value::Integer),
        Some(toml::Value::Float(_)) => raw.parse().ok().map(toml::Value::Float),
        // Lists (API keys) are comma-separated.
        Some(toml::Value::Array(_)) => Some(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        )),
        _ => None,
    };
    parsed.unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// The table that holds the last key of `keys`, created on the way where missing.
fn parent_table<'a>(root: &'a mut toml::Value, keys: &[String]) -> &'a mut toml::Table {
    let mut node = root;
    for key in &keys[..keys.len() - 1] {
        if !node.is_table() {
            *node = toml::Value::Table(Default::default());
        }
        node = node
            .as_table_mut()
            .expect("made a table above")
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    if !node.is_table() {
        *node = toml::Value::Table(Default::default());
    }
    node.as_table_mut().expect("made a table above")
}

fn set_env(root: &mut toml::Value, keys: &[String], raw: &str) {
    // `[backend.store]` has the Qdrant keys only once its kind is qdrant, so their types come
    // from the Qdrant defaults (`MOSAIC__BACKEND__STORE__SHARD_NUMBER=3` is a number).
    let qdrant = (keys.len() == 3 && keys[0] == "backend" && keys[1] == "store")
        .then(|| toml::Value::try_from(QdrantSettings::default()).ok())
        .flatten();
    let table = parent_table(root, keys);
    let last = &keys[keys.len() - 1];
    let hint = table
        .get(last)
        .or_else(|| qdrant.as_ref().and_then(|q| q.get(last)));
    let value = coerce(hint, raw);
    table.insert(last.clone(), value);
}

fn set_path(root: &mut toml::Value, keys: &[String], value: toml::Value) {
    let table = parent_table(root, keys);
    table.insert(keys[keys.len() - 1].clone(), value);
}

fn merge(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(base), toml::Value::Table(layer)) => {
            for (key, value) in layer {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_layers() {
        let settings = resolve(Some(Path::new("/dev/null")), env(&[]), &[]).unwrap();
        assert_eq!(settings.data_dir, PathBuf::from("mosaic-data"));
        assert!(settings.llm.base_url.is_none());
    }

    #[test]
    fn each_layer_overrides_the_one_below() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mosaic.toml");
        std::fs::write(
            &file,
            "data_dir = \"from-file\"\n[llm]\nmodel = \"file-model\"\nmax_tokens = 10\nbase_url = \"http://file\"\n",
        )
        .unwrap();

        let settings = resolve(Some(&file), env(&[]), &[]).unwrap();
        assert_eq!(settings.data_dir, PathBuf::from("from-file"));
        assert_eq!(settings.llm.model, "file-model");

        let settings = resolve(
            Some(&file),
            env(&[
                ("MOSAIC__LLM__MODEL", "env-model"),
                ("MOSAIC__LLM__MAX_TOKENS", "42"),
                ("MOSAIC__DATA_DIR", "from-env"),
                ("MOSAIC__LLM__TEMPERATURE", "1"),
                ("UNRELATED", "x"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(settings.llm.model, "env-model");
        assert_eq!(settings.llm.max_tokens, 42);
        assert_eq!(settings.llm.temperature, 1.0);
        assert_eq!(settings.data_dir, PathBuf::from("from-env"));
        assert_eq!(settings.llm.base_url.as_deref(), Some("http://file"));

        let settings = resolve(
            Some(&file),
            env(&[("MOSAIC__DATA_DIR", "from-env")]),
            &[("data_dir", toml::Value::String("from-flag".into()))],
        )
        .unwrap();
        assert_eq!(settings.data_dir, PathBuf::from("from-flag"));
        assert_eq!(settings.llm.model, "file-model");
    }

    #[test]
    fn llm_urls_and_pipeline_folders_are_checked() {
        let url = |value: &str| {
            resolve(
                Some(Path::new("/dev/null")),
                env(&[("MOSAIC__LLM__BASE_URL", value)]),
                &[],
            )
        };
        // Empty means "not set" (an unset variable in a compose file, say).
        assert!(url("").unwrap().llm.base_url.is_none());
        assert!(url("  ").unwrap().llm.base_url.is_none());
        assert_eq!(
            url(" http://127.0.0.1:8080/v1 ")
                .unwrap()
                .llm
                .base_url
                .as_deref(),
            Some("http://127.0.0.1:8080/v1")
        );
        for bad in ["notaurl", "ftp://host/v1", "127.0.0.1:8080"] {
            let err = url(bad).unwrap_err().to_string();
            assert!(err.contains("llm.base_url") && err.contains(bad), "{err}");
        }
        let missing = resolve(
            Some(Path::new("/dev/null")),
            env(&[]),
            &[(
                "pipelines_dir",
                toml::Value::String("/nonexistent/pipelines".into()),
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("/nonexistent/pipelines"), "{missing}");
    }

    #[test]
    fn backends_come_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mosaic.toml");
        std::fs::write(
            &file,
            "[backend]\ncatalog = \"postgres://m:pw@db/mosaic\"\n[backend.store]\nkind = \"qdrant\"\nurl = \"http://q:6334\"\nshard_number = 3\n",
        )
        .unwrap();
        let settings = resolve(Some(&file), env(&[]), &[]).unwrap();
        assert_eq!(
            settings.backend.postgres_url(),
            Some("postgres://m:pw@db/mosaic")
        );
        let StoreBackend::Qdrant(q) = &settings.backend.store else {
            panic!("{:?}", settings.backend.store)
        };
        assert_eq!(
            (q.url.as_str(), q.shard_number, q.replication_factor),
            ("http://q:6334", 3, 1)
        );

        // The environment alone, as the compose file sets it.
        let settings = resolve(
            Some(Path::new("/dev/null")),
            env(&[
                ("MOSAIC__BACKEND__STORE__KIND", "qdrant"),
                ("MOSAIC__BACKEND__STORE__URL", "http://q2:6334"),
                ("MOSAIC__BACKEND__STORE__REPLICATION_FACTOR", "2"),
            ]),
            &[],
        )
        .unwrap();
        let StoreBackend::Qdrant(q) = &settings.backend.store else {
            panic!("{:?}", settings.backend.store)
        };
        assert_eq!(
            (q.url.as_str(), q.replication_factor),
            ("http://q2:6334", 2)
        );
        assert_eq!(settings.backend.postgres_url(), None, "sqlite by default");

        // Unknown keys and other URL schemes are refused.
        std::fs::write(&file, "[backend.store]\nkind = \"qdrant\"\nshards = 3\n").unwrap();
        assert!(resolve(Some(&file), env(&[]), &[]).is_err());
        let mysql = resolve(
            Some(Path::new("/dev/null")),
            env(&[("MOSAIC__BACKEND__CATALOG", "mysql://x/y")]),
            &[],
        );
        assert!(mysql.unwrap_err().to_string().contains("backend.catalog"));
    }

    #[test]
    fn numeric_looking_strings_stay_strings() {
        let settings = resolve(
            Some(Path::new("/dev/null")),
            env(&[("MOSAIC__LLM__API_KEY", "12345")]),
            &[],
        )
        .unwrap();
        assert_eq!(settings.llm.api_key.as_deref(), Some("12345"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = resolve(
            Some(Path::new("/dev/null")),
            env(&[("MOSAIC__LLM__MODLE", "x")]),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("modle"), "{err}");
    }
}
