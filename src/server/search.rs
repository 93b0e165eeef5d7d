//! `POST /v1/search` (hybrid search, grouped by source by default), `POST /v1/similar`
//! (an uploaded image, recording or video, or an ingested source and time) and
//! `POST /v1/embeddings` (OpenAI's shape, float or base64), each under the search permits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::chat::media_link;
use super::error::{ApiError, ApiJson};
use super::ServerState;
use crate::catalog::{Anchor, SourceRef};
use crate::embed::Purpose;
use crate::query::similar::SimilarHit;
use crate::query::{GroupBy, Hit, RetrievalMode, SearchRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub query: String,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Only these source ids.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Only sources of these media types (`pdf`, `audio`, `video`, `image`, ...).
    #[serde(default)]
    pub media_types: Vec<String>,
    #[serde(default)]
    pub group_by: Option<GroupBy>,
    /// Passages nested under each source when grouped.
    #[serde(default)]
    pub group_size: Option<usize>,
    #[serde(default)]
    pub mode: Option<RetrievalMode>,
    #[serde(default)]
    pub rerank: Option<bool>,
}

/// Hits a request may ask for.
fn check_top_k(top_k: usize) -> Result<(), ApiError> {
    if (1..=100).contains(&top_k) {
        Ok(())
    } else {
        Err(ApiError::bad_request("top_k must be between 1 and 100"))
    }
}

const MODALITIES: [&str; 6] = ["text", "transcript", "caption", "image", "frame", "audio"];

/// The thumbnail link of a picture or frame hit.
fn thumbnail_link(base: &str, source: &SourceRef, anchor: &Anchor) -> Option<String> {
    match anchor {
        Anchor::Image => Some(format!("{base}/v1/sources/{}/thumbnail", source.id)),
        Anchor::Frame { at_ms } => Some(format!(
            "{base}/v1/sources/{}/thumbnail?at_ms={at_ms}",
            source.id
        )),
        _ => None,
    }
}

/// A hit as the API shows it: the `--json` shape with links on this server.
pub fn hit_json(hit: &Hit, base: &str) -> Value {
    let mut value = serde_json::to_value(hit.to_json()).unwrap_or(Value::Null);
    let source = hit.chunk.source.as_ref();
    value["url"] = json!(media_link(base, &source, &hit.chunk.anchor));
    if let Some(thumbnail) = thumbnail_link(base, &source, &hit.chunk.anchor) {
        value["thumbnail"] = json!(thumbnail);
    }
    if let Some(more) = value["more"].as_array_mut() {
        for (entry, inner) in more.iter_mut().zip(&hit.more) {
            entry["url"] = json!(media_link(base, &source, &inner.chunk.anchor));
            if let Some(thumbnail) = thumbnail_link(base, &source, &inner.chunk.anchor) {
                entry["thumbnail"] = json!(thumbnail);
            }
        }
    }
    value
}

pub async fn search(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<Value>, ApiError> {
    if body.query.trim().is_empty() {
        return Err(ApiError::bad_request("query is empty"));
    }
    if let Some(bad) = body
        .modalities
        .iter()
        .find(|m| !MODALITIES.contains(&m.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "modalities: unknown {bad:?} (one of {})",
            MODALITIES.join(", ")
        )));
    }
    let top_k = body
        .top_k
        .unwrap_or(state.mosaic.pipelines.query.answer.search_limit);
    check_top_k(top_k)?;
    let _permit = state.search_permit()?;
    let mut request = SearchRequest::new(body.query.clone(), top_k);
    request.modalities = body.modalities;
    request.sources = body.sources;
    request.media_types = body.media_types;
    request.group_by = body.group_by.unwrap_or(GroupBy::Source);
    request.group_size = body.group_size.unwrap_or(request.group_size).min(20);
    request.mode = body.mode.unwrap_or(RetrievalMode::Hybrid);
    request.rerank = body.rerank.unwrap_or(true);
    let outcome = state.mosaic.search(&request).await?;
    let base = state.base_url(&headers);
    let hits: Vec<Value> = outcome.hits.iter().map(|h| hit_json(h, &base)).collect();
    Ok(Json(json!({
        "query": body.query,
        "hits": hits,
        "group_by": request.group_by,
        "reranker": outcome.reranker,
        "notices": outcome.notices,
    })))
}

/// What to find similar media to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarBody {
    pub source_id: String,
    /// For a video: the moment whose frame is the example.
    #[serde(default)]
    pub at_ms: Option<u64>,
    #[serde(default)]
    pub top_k: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Audio,
    Video,
}

impl Kind {
    fn parse(text: &str) -> Result<Self, ApiError> {
        match text {
            "image" => Ok(Kind::Image),
            "audio" => Ok(Kind::Audio),
            "video" => Ok(Kind::Video),
            other => Err(ApiError::bad_request(format!(
                "kind must be image, audio or video, not {other:?}"
            ))),
        }
    }

    /// From the file's first bytes.
    fn sniff(path: &Path) -> Option<Self> {
        let head = read_head(path)?;
        match infer::get(&head)?.matcher_type() {
            infer::MatcherType::Image => Some(Kind::Image),
            infer::MatcherType::Audio => Some(Kind::Audio),
            infer::MatcherType::Video => Some(Kind::Video),
            _ => None,
        }
    }
}

fn read_head(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = vec![0u8; 8192];
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut head).ok()?;
    head.truncate(n);
    Some(head)
}

/// An upload kept for the length of one request, removed when dropped.
struct TempUpload(PathBuf);

impl Drop for TempUpload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A file name reduced to safe characters (the extension helps FFmpeg and the decoders).
pub fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').trim().to_string();
    if cleaned.is_empty() {
        "upload".into()
    } else {
        cleaned.chars().take(120).collect()
    }
}

/// Streams a multipart field to `path`, returning its size.
pub async fn save_field(
    field: &mut axum::extract::multipart::Field<'_>,
    path: &Path,
) -> Result<u64, ApiError> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let mut size = 0u64;
    while let Some(bytes) = field.chunk().await? {
        size += bytes.len() as u64;
        file.write_all(&bytes).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    Ok(size)
}

pub async fn similar(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let _permit = state.search_permit()?;
    let data_dir = state.mosaic.settings.data_dir.clone();
    let (path, kind, top_k, _upload) = if multipart {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(format!("bad multipart body: {}", e.body_text())))?;
        let (mut kind, mut top_k, mut saved) = (None, None, None);
        while let Some(mut field) = form.next_field().await? {
            match field.name().unwrap_or_default() {
                "file" => {
                    let name = safe_file_name(field.file_name().unwrap_or("upload"));
                    let dir = data_dir.join("tmp");
                    std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
                    let path = dir.join(format!("{}-{name}", uuid::Uuid::new_v4().simple()));
                    let upload = TempUpload(path.clone());
                    let size = save_field(&mut field, &path).await?;
                    if size == 0 {
                        return Err(ApiError::bad_request("file: the upload is empty"));
                    }
                    saved = Some(upload);
                }
                "kind" => kind = Some(Kind::parse(field.text().await?.trim())?),
                "top_k" => {
                    top_k =
                        Some(field.text().await?.trim().parse::<usize>().map_err(|_| {
                            ApiError::bad_request("top_k must be a positive integer")
                        })?)
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown form field {other:?} (file, kind, top_k)"
                    )))
                }
            }
        }
        let upload = saved.ok_or_else(|| ApiError::bad_request("file: no file was uploaded"))?;
        let kind = match kind.or_else(|| Kind::sniff(&upload.0)) {
            Some(kind) => kind,
            None => {
                return Err(ApiError::bad_request(
                    "file: not an image, recording or video this server can read",
                ))
            }
        };
        (upload.0.clone(), kind, top_k, Some(upload))
    } else {
        let ApiJson(body) = ApiJson::<SimilarBody>::from_request(request, &state).await?;
        let source = state
            .mosaic
            .catalog
            .source(&body.source_id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no source {:?}", body.source_id)))?;
        match (source.media_type.as_str(), body.at_ms) {
            ("video", Some(at_ms)) => {
                let at = super::sources::nearest_frame(&state, &source.id, at_ms)
                    .await?
                    .ok_or_else(|| ApiError::not_found("this video has no kept frames"))?;
                let thumbnail =
                    crate::ingest::video::frame_thumbnail_path(&data_dir, &source.id, at);
                if !thumbnail.is_file() {
                    return Err(ApiError::not_found("the frame's thumbnail is missing"));
                }
                (thumbnail, Kind::Image, body.top_k, None)
            }
            (media, _) => {
                let kind = Kind::parse(media).map_err(|_| {
                    ApiError::bad_request(format!(
                        "source {} is a {media} file: similar media takes images, recordings and videos",
                        source.id
                    ))
                })?;
                let path = super::sources::source_file(&source)?;
                (path, kind, body.top_k, None)
            }
        }
    };
    let top_k = top_k.unwrap_or(10);
    check_top_k(top_k)?;
    let hits: Vec<SimilarHit> = match kind {
        Kind::Image => state.mosaic.similar_image(&path, top_k).await?,
        Kind::Audio => state.mosaic.similar_audio(&path, top_k).await?,
        Kind::Video => state.mosaic.similar_video(&path, top_k).await?,
    };
    let base = state.base_url(&headers);
    let hits: Vec<Value> = hits
        .iter()
        .map(|hit| {
            let mut value = serde_json::to_value(hit).unwrap_or(Value::Null);
            value["url"] = json!(format!("{base}/v1/sources/{}/media", hit.source.id));
            if let Some(matches) = value["matches"].as_array_mut() {
                for (entry, m) in matches.iter_mut().zip(&hit.matches) {
                    entry["url"] = json!(media_link(&base, &hit.source, &m.anchor));
                    if let Some(t) = thumbnail_link(&base, &hit.source, &m.anchor) {
                        entry["thumbnail"] = json!(t);
                    }
                }
            }
            value
        })
        .collect();
    let kind = match kind {
        Kind::Image => "image",
        Kind::Audio => "audio",
        Kind::Video => "video",
    };
    Ok(Json(json!({ "kind": kind, "hits": hits })))
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingsBody {
    pub input: Value,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub dimensions: Option<usize>,
}

const MAX_INPUTS: usize = 2048;

fn inputs(input: &Value) -> Result<Vec<String>, ApiError> {
    let token_ids = || {
        ApiError::bad_request(
            "input: token-id arrays are not supported (the server tokenizes with the model's own tokenizer): send text",
        )
    };
    let texts = match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::bad_request("input: the list is empty"))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Number(_) | Value::Array(_) => Err(token_ids()),
                _ => Err(ApiError::bad_request("input: items must be strings")),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "input must be a string or a list of strings",
            ))
        }
    };
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "input: at most {MAX_INPUTS} texts per request"
        )));
    }
    if texts.iter().any(|t| t.is_empty()) {
        return Err(ApiError::bad_request("input: texts must not be empty"));
    }
    Ok(texts)
}

pub async fn embeddings(
    State(state): State<Arc<ServerState>>,
    ApiJson(body): ApiJson<EmbeddingsBody>,
) -> Result<Json<Value>, ApiError> {
    let texts = inputs(&body.input)?;
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format must be float or base64, not {other:?}"
            )))
        }
    };
    let default = state.mosaic.pipelines.text.embedder.model.clone();
    let model = match body.model.as_deref() {
        None | Some("") | Some(super::chat::MODEL_RAG) => default,
        Some(id) => id.to_string(),
    };
    let _permit = state.search_permit()?;
    let embedder = match state.mosaic.text_embedder(&model).await {
        Ok(e) => e,
        Err(crate::models::ModelError::NotInstalled { id }) => {
            return Err(ApiError::not_found(format!(
                "model {id:?} is not installed (mosaic models pull {id})"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let dims = embedder.spec().dims();
    if body.dimensions.is_some_and(|d| d != dims) {
        return Err(ApiError::bad_request(format!(
            "dimensions: {model} gives {dims}-dimensional vectors"
        )));
    }
    let counter = embedder.token_counter();
    let tokens: usize = texts.iter().map(|t| counter.count(t)).sum();
    let vectors = embedder.embed(texts, Purpose::Passage).await?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": embedder.spec().id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_lose_their_folders_and_odd_characters() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("..\\x\\a b.jpg"), "a b.jpg");
        assert_eq!(safe_file_name(".hidden"), "hidden");
        assert_eq!(safe_file_name("cat;rm -rf.png"), "cat_rm -rf.png");
        assert_eq!(safe_file_name(""), "upload");
        assert_eq!(safe_file_name(".."), "upload");
    }

    #[test]
    fn embedding_inputs_are_texts() {
        assert_eq!(inputs(&json!("a")).unwrap(), ["a"]);
        assert_eq!(inputs(&json!(["a", "b"])).unwrap(), ["a", "b"]);
        let err = inputs(&json!([1, 2, 3])).unwrap_err();
        assert!(err.message.contains("token-id"), "{}", err.message);
        assert!(inputs(&json!([[1, 2]])).is_err());
        assert!(inputs(&json!([])).is_err());
        assert!(inputs(&json!([""])).is_err());
        assert!(inputs(&json!({"a": 1})).is_err());
    }
}
