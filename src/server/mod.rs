//! `mosaic serve`: the library as an HTTP service (axum on tokio). An OpenAI-compatible chat
//! endpoint whose citations stock clients show natively, embeddings, search, similar media,
//! ingest jobs, sources with their media (HTTP Range) and thumbnails, and a web page. Keys,
//! limits, timeouts and request ids are layers here; every error becomes a status in
//! [`error`]; models, tantivy and qdrant-edge run off the runtime behind the engine.

pub mod auth;
pub mod chat;
pub mod error;
pub mod jobs;
pub mod page;
pub mod search;
pub mod sources;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use thiserror::Error;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::app::Mosaic;
use crate::config::ServerSettings;
use crate::fault::{Fault, HasFault};
use error::ApiError;

/// Errors of starting and running the server.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server.bind {0:?} is not an IP address")]
    BadAddress(String),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Jobs(#[from] jobs::JobError),
}

impl HasFault for ServerError {
    fn fault(&self) -> Fault {
        match self {
            ServerError::Bind { .. } | ServerError::BadAddress(_) => Fault::User,
            ServerError::Serve(_) => Fault::Internal,
            ServerError::Jobs(e) => e.fault(),
        }
    }
}

/// What every handler shares.
pub struct ServerState {
    pub mosaic: Arc<Mosaic>,
    pub settings: ServerSettings,
    pub keys: auth::Keys,
    /// Bounds searches, similar-media and embedding requests.
    pub searches: Arc<Semaphore>,
    /// Bounds chat answers (held until a stream ends).
    pub chats: Arc<Semaphore>,
    pub jobs: jobs::Jobs,
    pub started: Instant,
}

impl ServerState {
    /// The state of a server over `mosaic`: its job queue is started (and jobs an earlier
    /// run left unfinished are queued again).
    pub fn new(mosaic: Arc<Mosaic>, settings: ServerSettings) -> Result<Arc<Self>, ServerError> {
        let jobs = jobs::Jobs::start(mosaic.clone(), settings.ingest_root.clone())?;
        Ok(Arc::new(Self {
            keys: auth::Keys::new(&settings.read_keys, &settings.write_keys),
            searches: Arc::new(Semaphore::new(settings.max_concurrent_searches.max(1))),
            chats: Arc::new(Semaphore::new(settings.max_concurrent_chats.max(1))),
            settings,
            jobs,
            mosaic,
            started: Instant::now(),
        }))
    }

    /// The absolute base of links in answers: `server.public_url`, else the request's host.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.settings.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get(axum::http::header::HOST))
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            })
            .unwrap_or("127.0.0.1");
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https")
            .unwrap_or("http");
        format!("{scheme}://{host}")
    }

    /// A search permit, or 429 at once when all are taken.
    pub fn search_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.searches
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::busy("searches"))
    }

    /// A chat permit, or 429 at once when all are taken.
    pub fn chat_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.chats
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::busy("chat answers"))
    }
}

/// Every route, with keys, limits, timeouts and request ids.
pub fn router(state: Arc<ServerState>) -> Router {
    let upload = DefaultBodyLimit::max(state.settings.max_upload_bytes as usize);
    let api = Router::new()
        .route("/v1/models", get(chat::models))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(search::embeddings))
        .route("/v1/search", post(search::search))
        .route("/v1/similar", post(search::similar).layer(upload))
        .route("/v1/ingest", post(jobs::ingest).layer(upload))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/sources", get(sources::list))
        .route(
            "/v1/sources/{id}",
            get(sources::show).delete(sources::delete),
        )
        .route("/v1/sources/{id}/media", get(sources::media))
        .route("/v1/sources/{id}/thumbnail", get(sources::thumbnail))
        .route_layer(from_fn_with_state(state.clone(), auth::require));
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(
            state.settings.max_json_bytes as usize,
        ))
        .layer(from_fn_with_state(state.clone(), timeout))
        .layer(from_fn(request_id))
        .with_state(state)
}

async fn healthz(State(state): State<Arc<ServerState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "uptime_secs": state.started.elapsed().as_secs(),
        "searches_in_use": state.settings.max_concurrent_searches.max(1) - state.searches.available_permits(),
        "chats_in_use": state.settings.max_concurrent_chats.max(1) - state.chats.available_permits(),
    }))
}

/// A request that takes longer than `server.request_timeout_secs` to answer is answered 504.
async fn timeout(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.settings.request_timeout_secs.max(1));
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request took longer than {} s",
                state.settings.request_timeout_secs
            ),
        )
        .into_response(),
    }
}

/// Tags each request with an id (the caller's `x-request-id` when it is a plain token), logs
/// it with its status and time, and returns the id in the response.
async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // The path only: a query string may carry a key.
    let span = tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path());
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let (status, ms) = (
        response.status().as_u16(),
        started.elapsed().as_millis() as u64,
    );
    span.in_scope(|| {
        if response.status().is_server_error() {
            tracing::warn!(status, ms, "answered");
        } else {
            tracing::debug!(status, ms, "answered");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Where the server listens: `server.bind`, except that with no API keys it is loopback.
pub fn listen_address(settings: &ServerSettings) -> Result<SocketAddr, ServerError> {
    let ip: IpAddr = settings
        .bind
        .parse()
        .map_err(|_| ServerError::BadAddress(settings.bind.clone()))?;
    let open = settings.read_keys.is_empty() && settings.write_keys.is_empty();
    let ip = if open && !ip.is_loopback() {
        tracing::warn!(
            bind = %ip,
            "no API keys are configured (server.read_keys, server.write_keys): listening on loopback only"
        );
        IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    };
    Ok(SocketAddr::new(ip, settings.port))
}

/// Runs the server until SIGINT or SIGTERM: in-flight requests finish, the ingest job stops
/// between files (it resumes when the server starts again).
pub async fn serve(mosaic: Mosaic, settings: ServerSettings) -> Result<(), ServerError> {
    let addr = listen_address(&settings)?;
    let open = settings.read_keys.is_empty() && settings.write_keys.is_empty();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    let mosaic = Arc::new(mosaic);
    let state = ServerState::new(mosaic.clone(), settings)?;
    if open {
        tracing::warn!("no API keys configured: any local user can read and write this library");
    }
    // One line on standard output that scripts wait for.
    println!("mosaic listening on http://{local}");
    tracing::info!(%local, "listening");
    let jobs = state.jobs.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(ServerError::Serve)?;
    tracing::info!("shutting down: the ingest job stops after its current file");
    jobs.shutdown().await;
    if let Err(e) = mosaic.lexical.close_writer().await {
        tracing::warn!("closing the BM25 writer: {e}");
    }
    mosaic.catalog.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
