//! Ingest jobs: `POST /v1/ingest` (uploaded files, or server-side paths under
//! `server.ingest_root`) answers 202 with a job id; one worker runs the jobs one at a time
//! (the one writer), while searches and chats go on. Each job's state is a JSON file under
//! `DATA/jobs/`, rewritten as files finish: at shutdown the running job stops between files,
//! and jobs left queued or interrupted are queued again when the server starts (files already
//! ingested are skipped by their hash). Uploaded files live under `DATA/uploads/JOB/`: they
//! are the sources' files, served as their media, and removed with the source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use super::error::{ApiError, ApiJson};
use super::search::{safe_file_name, save_field};
use super::ServerState;
use crate::app::Mosaic;
use crate::catalog::Source;
use crate::engine::Progress;
use crate::fault::{Fault, HasFault};
use crate::ingest::{Failure, IngestOptions};

#[derive(Debug, Error)]
pub enum JobError {
    #[error("cannot keep job state in {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HasFault for JobError {
    fn fault(&self) -> Fault {
        Fault::Internal
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    /// Stopped between files by a shutdown; queued again at the next start.
    Interrupted,
    Done,
    Failed,
}

/// One ingest job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub paths: Vec<PathBuf>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub files_total: u64,
    pub files_done: u64,
    /// The file being written now.
    pub current: Option<String>,
    pub ingested: usize,
    pub skipped: usize,
    pub removed: usize,
    pub chunks: usize,
    pub failed: Vec<Failure>,
    pub error: Option<String>,
    /// Times the job was started again after a shutdown.
    pub resumed: u32,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Inner {
    mosaic: Arc<Mosaic>,
    jobs: Mutex<BTreeMap<String, Job>>,
    queue: tokio::sync::mpsc::UnboundedSender<String>,
    /// Held by whoever writes: the job worker, a delete.
    writer: tokio::sync::Mutex<()>,
    stop: AtomicBool,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    dir: PathBuf,
    ingest_root: Option<PathBuf>,
}

/// The job queue and its worker.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl Jobs {
    /// Reads the jobs of earlier runs, queues the unfinished ones and starts the worker.
    pub fn start(mosaic: Arc<Mosaic>, ingest_root: Option<PathBuf>) -> Result<Self, JobError> {
        let dir = mosaic.settings.data_dir.join("jobs");
        std::fs::create_dir_all(&dir).map_err(|source| JobError::State {
            path: dir.clone(),
            source,
        })?;
        let mut jobs = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                match std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Job>(&b).ok())
                {
                    Some(job) => {
                        jobs.insert(job.id.clone(), job);
                    }
                    None => tracing::warn!(path = %path.display(), "unreadable job state skipped"),
                }
            }
        }
        let (queue, receiver) = tokio::sync::mpsc::unbounded_channel();
        let this = Self {
            inner: Arc::new(Inner {
                mosaic,
                jobs: Mutex::new(BTreeMap::new()),
                queue,
                writer: tokio::sync::Mutex::new(()),
                stop: AtomicBool::new(false),
                worker: Mutex::new(None),
                dir,
                ingest_root,
            }),
        };
        let mut unfinished: Vec<Job> = jobs
            .values()
            .filter(|j| {
                matches!(
                    j.status,
                    JobStatus::Queued | JobStatus::Running | JobStatus::Interrupted
                )
            })
            .cloned()
            .collect();
        unfinished.sort_by_key(|j| j.created_at);
        *this.inner.jobs.lock().expect("job table") = jobs;
        for mut job in unfinished {
            tracing::info!(job = %job.id, "resuming an ingest job an earlier run left unfinished");
            job.status = JobStatus::Queued;
            job.resumed += 1;
            this.update(job.clone());
            let _ = this.inner.queue.send(job.id);
        }
        let worker = tokio::spawn(run_worker(this.clone(), receiver));
        *this.inner.worker.lock().expect("worker slot") = Some(worker);
        Ok(this)
    }

    fn update(&self, job: Job) {
        let path = self.inner.dir.join(format!("{}.json", job.id));
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&job)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(job = %job.id, "cannot save job state: {e}");
        }
        self.inner
            .jobs
            .lock()
            .expect("job table")
            .insert(job.id.clone(), job);
    }

    fn edit(&self, id: &str, change: impl FnOnce(&mut Job)) {
        let job = {
            let mut table = self.inner.jobs.lock().expect("job table");
            let Some(job) = table.get_mut(id) else {
                return;
            };
            change(job);
            job.clone()
        };
        self.update(job);
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.inner.jobs.lock().expect("job table").get(id).cloned()
    }

    pub fn all(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .inner
            .jobs
            .lock()
            .expect("job table")
            .values()
            .cloned()
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.created_at));
        jobs
    }

    /// Queues a job over `paths`.
    pub fn submit(&self, id: String, paths: Vec<PathBuf>) -> Job {
        let job = Job {
            id: id.clone(),
            status: JobStatus::Queued,
            paths,
            created_at: now(),
            started_at: None,
            finished_at: None,
            files_total: 0,
            files_done: 0,
            current: None,
            ingested: 0,
            skipped: 0,
            removed: 0,
            chunks: 0,
            failed: Vec::new(),
            error: None,
            resumed: 0,
        };
        self.update(job.clone());
        let _ = self.inner.queue.send(id);
        job
    }

    /// Removes a source under the writer lock (with its uploaded file, when it was uploaded).
    pub async fn remove_source(&self, source: &Source) -> Result<(), ApiError> {
        let _writer = self.inner.writer.lock().await;
        let mosaic = &self.inner.mosaic;
        mosaic
            .remove_sources(std::slice::from_ref(&source.id))
            .await?;
        let uploads = mosaic.settings.data_dir.join("uploads");
        if let Some(path) = crate::uri::uri_path(&source.uri) {
            if path.starts_with(&uploads) {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Stops the worker between files and waits for it.
    pub async fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // The worker waits on the queue when idle: a message wakes it to see the flag.
        let _ = self.inner.queue.send(String::new());
        let worker = self.inner.worker.lock().expect("worker slot").take();
        if let Some(worker) = worker {
            let _ = worker.await;
        }
    }

    /// Jobs read only uploads and what lies under the ingest root.
    fn options(&self) -> IngestOptions {
        let mut confine = vec![self.inner.mosaic.settings.data_dir.join("uploads")];
        confine.extend(self.inner.ingest_root.clone());
        IngestOptions {
            prune: false,
            confine,
            // On a shared catalog other servers and workers write too: their half-written
            // sources are not this server's to repair.
            shared_writers: self.inner.mosaic.settings.backend.postgres_url().is_some(),
        }
    }

    fn stopping(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst)
    }
}

/// The job's progress, recorded as files finish; it asks the ingest to stop at shutdown.
struct JobProgress {
    jobs: Jobs,
    id: String,
}

impl Progress for JobProgress {
    fn set_length(&self, steps: u64) {
        self.jobs.edit(&self.id, |j| j.files_total = steps);
    }
    fn advance(&self) {
        self.jobs.edit(&self.id, |j| j.files_done += 1);
    }
    fn message(&self, text: String) {
        if let Ok(mut table) = self.jobs.inner.jobs.lock() {
            if let Some(job) = table.get_mut(&self.id) {
                job.current = Some(text);
            }
        }
    }
    fn finish(&self) {}
    fn cancelled(&self) -> bool {
        self.jobs.stopping()
    }
}

async fn run_worker(jobs: Jobs, mut receiver: tokio::sync::mpsc::UnboundedReceiver<String>) {
    while let Some(id) = receiver.recv().await {
        if jobs.stopping() {
            break;
        }
        let Some(job) = jobs.get(&id) else {
            continue;
        };
        let _writer = jobs.inner.writer.lock().await;
        jobs.edit(&id, |j| {
            j.status = JobStatus::Running;
            j.started_at = Some(now());
            j.files_done = 0;
        });
        let progress = Arc::new(JobProgress {
            jobs: jobs.clone(),
            id: id.clone(),
        });
        let result = jobs
            .inner
            .mosaic
            .ingest(&job.paths, &jobs.options(), progress)
            .await;
        let stopped = jobs.stopping();
        jobs.edit(&id, |j| {
            j.current = None;
            match result {
                Ok(report) => {
                    j.ingested += report.ingested;
                    j.skipped += report.skipped;
                    j.removed += report.removed;
                    j.chunks += report.chunks;
                    for failure in report.failed {
                        if !j.failed.contains(&failure) {
                            j.failed.push(failure);
                        }
                    }
                    if stopped && j.files_done < j.files_total {
                        j.status = JobStatus::Interrupted;
                    } else {
                        j.status = JobStatus::Done;
                        j.finished_at = Some(now());
                    }
                }
                Err(e) => {
                    tracing::error!(job = %j.id, "ingest job failed: {e}");
                    j.status = JobStatus::Failed;
                    j.error = Some(match e.fault() {
                        Fault::Internal => "internal error (the server log has the details)".into(),
                        _ => e.to_string(),
                    });
                    j.finished_at = Some(now());
                }
            }
        });
        if stopped {
            break;
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    pub paths: Vec<String>,
}

/// A server-side path named by a caller: relative ones are under the root; the real path
/// (links resolved) must lie under it.
pub fn confined(root: Option<&Path>, named: &str) -> Result<PathBuf, ApiError> {
    let root = root.ok_or_else(|| {
        ApiError::forbidden(
            "server-side paths are off: set server.ingest_root, or upload the files",
        )
    })?;
    let root = std::fs::canonicalize(root).map_err(ApiError::internal)?;
    let path = Path::new(named);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    };
    let real = std::fs::canonicalize(&joined)
        .map_err(|_| ApiError::not_found(format!("no such path under the ingest root: {named}")))?;
    if !real.starts_with(&root) {
        return Err(ApiError::forbidden(format!(
            "{named} lies outside server.ingest_root"
        )));
    }
    Ok(real)
}

pub async fn ingest(
    State(state): State<Arc<ServerState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let id = uuid::Uuid::new_v4().simple().to_string();
    let root = state.settings.ingest_root.clone();
    let mut paths = Vec::new();
    if multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(format!("bad multipart body: {}", e.body_text())))?;
        let dir = state.mosaic.settings.data_dir.join("uploads").join(&id);
        let mut names = std::collections::HashSet::new();
        let saved = async {
            while let Some(mut field) = form.next_field().await? {
                match field.name().unwrap_or_default() {
                    "file" | "files" => {
                        std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
                        let mut name = safe_file_name(field.file_name().unwrap_or("upload"));
                        if !names.insert(name.clone()) {
                            name = format!("{}-{name}", names.len());
                            names.insert(name.clone());
                        }
                        let path = dir.join(&name);
                        save_field(&mut field, &path).await?;
                        paths.push(path);
                    }
                    "path" => {
                        let named = field.text().await?;
                        paths.push(confined(root.as_deref(), named.trim())?);
                    }
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unknown form field {other:?} (file, path)"
                        )))
                    }
                }
            }
            Ok::<_, ApiError>(())
        }
        .await;
        if let Err(e) = saved {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    } else {
        let ApiJson(body) = ApiJson::<IngestBody>::from_request(request, &state).await?;
        for named in &body.paths {
            paths.push(confined(root.as_deref(), named)?);
        }
    }
    if paths.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to ingest: send files or paths",
        ));
    }
    let job = state.jobs.submit(id, paths);
    let body = json!({"id": job.id, "status": job.status, "url": format!("/v1/jobs/{}", job.id)});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

pub async fn show(
    State(state): State<Arc<ServerState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Job>, ApiError> {
    state
        .jobs
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))
}

pub async fn list(State(state): State<Arc<ServerState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": state.jobs.all()}))
}
