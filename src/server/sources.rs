//! Sources over HTTP: list, one source with its transcript, delete; the original file with
//! HTTP Range (so players seek) and picture and frame thumbnails. Ids are checked before any
//! lookup, and a file is served only when its real path (links resolved) lies under the data
//! directory or `server.ingest_root`.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::ApiError;
use super::ServerState;
use crate::catalog::Source;
use crate::uri::uri_path;

/// A source id as the catalog makes them (32 hex digits): anything else is refused before it
/// reaches a store or the file system.
pub fn check_id(id: &str) -> Result<&str, ApiError> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(ApiError::not_found(format!("no source {id:?}")))
    }
}

async fn find(state: &ServerState, id: &str) -> Result<Source, ApiError> {
    let id = check_id(id)?;
    state
        .mosaic
        .catalog
        .source(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no source {id:?}")))
}

fn source_json(source: &Source, base: &str) -> Value {
    json!({
        "id": source.id,
        "uri": source.uri,
        "name": crate::uri::display_name(&source.uri),
        "title": source.title,
        "media_type": source.media_type,
        "bytes": source.bytes,
        "status": source.status,
        "error": source.error,
        "chunks": source.chunk_count,
        "url": format!("{base}/v1/sources/{}/media", source.id),
    })
}

pub async fn list(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let base = state.base_url(&headers);
    let sources = state.mosaic.catalog.sources().await?;
    let data: Vec<Value> = sources.iter().map(|s| source_json(s, &base)).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

pub async fn show(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let source = find(&state, &id).await?;
    let base = state.base_url(&headers);
    let mut value = source_json(&source, &base);
    if let Some((duration_ms, info)) = state.mosaic.catalog.media_info(&source.id).await? {
        value["duration_ms"] = json!(duration_ms);
        value["frames"] = info["frames"]["times"].clone();
        value["media"] = info;
        let segments = state
            .mosaic
            .catalog
            .segments(&source.id, 0, u64::MAX)
            .await?;
        let transcript: Vec<Value> = segments
            .iter()
            .map(|s| {
                json!({
                    "start_ms": s.start_ms,
                    "end_ms": s.end_ms,
                    "text": s.text.trim(),
                    "url": format!(
                        "{base}/v1/sources/{}/media#t={:.1},{:.1}",
                        source.id,
                        s.start_ms as f64 / 1000.0,
                        s.end_ms as f64 / 1000.0
                    ),
                })
            })
            .collect();
        value["transcript"] = json!(transcript);
    }
    Ok(Json(value))
}

pub async fn delete(
    State(state): State<Arc<ServerState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let source = find(&state, &id).await?;
    state.jobs.remove_source(&source).await?;
    Ok(Json(json!({"id": source.id, "deleted": true})))
}

/// Folders whose files may be served: the data directory and the ingest root, links resolved.
fn served_roots(state: &ServerState) -> Vec<PathBuf> {
    let mut roots = vec![state.mosaic.settings.data_dir.clone()];
    roots.extend(state.settings.ingest_root.clone());
    roots
        .into_iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect()
}

/// The source's file as the catalog records it.
pub fn source_file(source: &Source) -> Result<PathBuf, ApiError> {
    let path = uri_path(&source.uri)
        .ok_or_else(|| ApiError::not_found("this source has no local file"))?;
    if !path.is_file() {
        return Err(ApiError::not_found(format!(
            "the file of source {} is gone",
            source.id
        )));
    }
    Ok(path)
}

/// `path` with links resolved, when it lies under one of `roots`.
pub fn under_roots(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, ApiError> {
    let real = std::fs::canonicalize(path).map_err(|_| ApiError::not_found("no such file"))?;
    if roots.iter().any(|root| real.starts_with(root)) {
        Ok(real)
    } else {
        Err(ApiError::forbidden(
            "this file lies outside the folders the server may read (the data directory and server.ingest_root)",
        ))
    }
}

/// The content type of a file, from its extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mov" => "video/quicktime",
        "avi" => "video/x-msvideo",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "m4a" | "aac" => "audio/mp4",
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "txt" | "md" | "markdown" | "rst" | "csv" | "log" => "text/plain; charset=utf-8",
        // Shown as text: an ingested page must not run scripts in the server's origin.
        "html" | "htm" | "xhtml" | "svg" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
}

/// A `Range` header that cannot be satisfied (416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A byte range of a file of `size` bytes: `bytes=a-b`, `bytes=a-`, `bytes=-n` (the first range
/// of a list).
pub fn parse_range(header: &str, size: u64) -> Result<(u64, u64), Unsatisfiable> {
    let spec = header.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?;
    let first = spec.split(',').next().ok_or(Unsatisfiable)?.trim();
    let (start, end) = first.split_once('-').ok_or(Unsatisfiable)?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let suffix: u64 = end.parse().map_err(|_| Unsatisfiable)?;
        if suffix == 0 {
            return Err(Unsatisfiable);
        }
        (size.saturating_sub(suffix), size.saturating_sub(1))
    } else {
        let start: u64 = start.parse().map_err(|_| Unsatisfiable)?;
        let end = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse::<u64>()
                .map_err(|_| Unsatisfiable)?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if size == 0 || range.0 >= size || range.0 > range.1 {
        return Err(Unsatisfiable);
    }
    Ok(range)
}

/// Serves `path` whole or the requested range, streamed in pieces.
pub async fn serve_file(path: &Path, headers: &HeaderMap) -> Result<Response, ApiError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|_| ApiError::not_found("no such file"))?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, size));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(Err(Unsatisfiable)) => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "the range is outside the file",
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let length = if size == 0 { 0 } else { end - start + 1 };
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(ApiError::internal)?;
    let stream = futures::stream::unfold((file, length), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buffer = vec![0u8; (64 * 1024).min(left as usize)];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buffer)),
                    (file, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

pub async fn media(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let source = find(&state, &id).await?;
    let path = source_file(&source)?;
    let real = under_roots(&path, &served_roots(&state))?;
    serve_file(&real, &headers).await
}

#[derive(Debug, Deserialize)]
pub struct ThumbnailQuery {
    #[serde(default)]
    pub at_ms: Option<u64>,
}

/// The kept frame of a video nearest `at_ms`.
pub async fn nearest_frame(
    state: &ServerState,
    source_id: &str,
    at_ms: u64,
) -> Result<Option<u64>, ApiError> {
    let Some((_, info)) = state.mosaic.catalog.media_info(source_id).await? else {
        return Ok(None);
    };
    Ok(info["frames"]["times"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_u64())
        .min_by_key(|t| t.abs_diff(at_ms)))
}

pub async fn thumbnail(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<ThumbnailQuery>,
) -> Result<Response, ApiError> {
    let source = find(&state, &id).await?;
    let data_dir = &state.mosaic.settings.data_dir;
    let path = match (source.media_type.as_str(), query.at_ms) {
        ("video", at_ms) => {
            let at = nearest_frame(&state, &source.id, at_ms.unwrap_or(0))
                .await?
                .ok_or_else(|| ApiError::not_found("this video has no kept frames"))?;
            crate::ingest::video::frame_thumbnail_path(data_dir, &source.id, at)
        }
        ("image", _) => crate::ingest::image::thumbnail_path(data_dir, &source.id),
        (other, _) => {
            return Err(ApiError::not_found(format!(
                "a {other} source has no thumbnail"
            )))
        }
    };
    if !path.is_file() {
        return Err(ApiError::not_found("the thumbnail is missing"));
    }
    let real = under_roots(&path, &served_roots(&state))?;
    let mut response = serve_file(&real, &headers).await?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_browsers_send_them() {
        assert_eq!(parse_range("bytes=1000-1999", 5000), Ok((1000, 1999)));
        assert_eq!(parse_range("bytes=1000-", 5000), Ok((1000, 4999)));
        assert_eq!(parse_range("bytes=-500", 5000), Ok((4500, 4999)));
        assert_eq!(parse_range("bytes=0-99999", 5000), Ok((0, 4999)));
        assert_eq!(parse_range("bytes=0-1,5-6", 5000), Ok((0, 1)));
        assert_eq!(parse_range("bytes=5000-", 5000), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=9-3", 5000), Err(Unsatisfiable));
        assert_eq!(parse_range("items=0-1", 5000), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=0-0", 0), Err(Unsatisfiable));
    }

    #[test]
    fn ids_are_hex_before_any_lookup() {
        assert!(check_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_id("..%2F..%2Fetc%2Fpasswd").is_err());
        assert!(check_id("../../../../etc/passwd0000000000").is_err());
        assert!(check_id("").is_err());
    }

    #[test]
    fn files_outside_the_roots_are_refused_links_included() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(outside.join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("link.txt")).unwrap();
        let roots = vec![std::fs::canonicalize(&root).unwrap()];
        assert!(under_roots(&root.join("a.txt"), &roots).is_ok());
        let refused = under_roots(&root.join("link.txt"), &roots).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(under_roots(&root.join("../outside/secret.txt"), &roots).is_err());
    }
}
