//! The HTTP API without a socket (the router called directly): every endpoint's happy path
//! and its errors (bad JSON, missing fields, no or wrong key, a read key on a write route,
//! an oversize upload, unknown sources, traversal and links out of the ingest root), Range,
//! backpressure, and ingest jobs; then chat with an OpenAI-compatible stand-in that records
//! the prompt. The library underneath is real: MiniLM, Whisper, qdrant-edge, tantivy, SQLite.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use tower::ServiceExt;

use mosaic::app::Mosaic;
use mosaic::engine::NoProgress;
use mosaic::server::{router, ServerState};

use crate::common::{cosine, fixtures, real_model, spoken, Recorder, MINILM};

const READ: &str = "read-key-1";
const WRITE: &str = "write-key-1";
const BOUNDARY: &str = "mosaic-test-boundary";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "mosaic.test:8400");
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    if let Some(ct) = content_type {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str, key: Option<&str>) -> Reply {
    call(app, Method::GET, uri, key, None, Vec::new()).await
}

async fn post_json(app: &Router, uri: &str, key: Option<&str>, body: Value) -> Reply {
    call(
        app,
        Method::POST,
        uri,
        key,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await
}

/// A multipart body of `(field, file name, bytes)` parts (no file name: a plain field).
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some(file) => body.extend(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend(*bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_form(app: &Router, uri: &str, key: Option<&str>, body: Vec<u8>) -> Reply {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    call(app, Method::POST, uri, key, Some(&ct), body).await
}

fn settings(data: &Path) -> mosaic::config::Settings {
    let mut settings = mosaic::config::Settings {
        data_dir: data.to_path_buf(),
        pipelines_dir: Some(crate::common::repo().join("pipelines")),
        ..Default::default()
    };
    settings.llm.embedded = false;
    settings.lock_wait_secs = 30;
    settings.server.read_keys = vec![READ.into()];
    settings.server.write_keys = vec![WRITE.into()];
    settings
}

/// The events of a server-sent event stream (`data:` payloads).
fn events(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            assert!(e.starts_with("data: "), "only data lines: {e:?}");
            e["data: ".len()..].to_string()
        })
        .collect()
}

/// The characters of `text` in code points `[start, end)`.
fn code_points(text: &str, start: u64, end: u64) -> String {
    text.chars()
        .skip(start as usize)
        .take((end - start) as usize)
        .collect()
}

async fn wait_for_job(app: &Router, id: &str) -> Value {
    for _ in 0..600 {
        let job = get(app, &format!("/v1/jobs/{id}"), Some(READ)).await.json();
        if job["status"] == "done" || job["status"] == "failed" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("job {id} did not finish");
}

struct Library {
    _dir: tempfile::TempDir,
    data: PathBuf,
    root: PathBuf,
    recording: PathBuf,
}

/// Three documents and a spoken recording under an ingest root, ingested.
async fn library() -> Library {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for name in [
        "annual-report-nordvik-ferries.pdf",
        "handbook-brightwater.md",
        "science-glass-frogs.md",
    ] {
        std::fs::copy(fixtures().join("corpus").join(name), root.join(name)).unwrap();
    }
    let recording = spoken(
        &root.join("notice.wav"),
        "Good morning, and welcome to the weekly announcements from the facilities office \
         of the town hall. The lower car park will be closed for resurfacing in October. \
         Please use the upper car park by the library instead.",
    );
    let data = dir.path().join("data");
    let mosaic = Mosaic::open(settings(&data)).await.unwrap();
    let report = mosaic
        .ingest(
            std::slice::from_ref(&root),
            &Default::default(),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    assert_eq!(report.ingested, 4, "{report:?}");
    drop(mosaic);
    Library {
        _dir: dir,
        data,
        root,
        recording,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_serves_every_endpoint_and_refuses_what_it_must() {
    let lib = library().await;
    let outside = lib._dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "the secret word is marmalade").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), lib.root.join("link.txt")).unwrap();

    let mut settings = settings(&lib.data);
    settings.server.ingest_root = Some(lib.root.clone());
    settings.server.max_upload_bytes = 256 * 1024;
    settings.server.max_concurrent_searches = 2;
    let server = settings.server.clone();
    let mosaic = Arc::new(Mosaic::open(settings).await.unwrap());
    let state = ServerState::new(mosaic.clone(), server).unwrap();
    let app = router(state.clone());

    // Open routes and keys.
    assert_eq!(get(&app, "/healthz", None).await.status, StatusCode::OK);
    let page = get(&app, "/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("/app.js"));
    let none = get(&app, "/v1/models", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.json()["error"]["type"], "authentication_error");
    assert_eq!(
        get(&app, "/v1/models", Some("nope")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let models = get(&app, "/v1/models", Some(READ)).await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mosaic", "mosaic-chat"]);
    assert_eq!(
        get(&app, "/v1/nothing", Some(READ)).await.status,
        StatusCode::NOT_FOUND
    );

    // Chat: bad JSON, missing fields, unknown model, no user message.
    let bad = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        Some(READ),
        Some("application/json"),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["type"], "invalid_request_error");
    let missing = post_json(
        &app,
        "/v1/chat/completions",
        Some(READ),
        json!({"model": "mosaic"}),
    )
    .await;
    assert_eq!(
        missing.status,
        StatusCode::BAD_REQUEST,
        "{}",
        missing.json()
    );
    assert!(missing.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages"));
    let unknown = post_json(
        &app,
        "/v1/chat/completions",
        Some(READ),
        json!({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let system_only = post_json(
        &app,
        "/v1/chat/completions",
        Some(READ),
        json!({"messages": [{"role": "system", "content": "be brief"}]}),
    )
    .await;
    assert_eq!(system_only.status, StatusCode::BAD_REQUEST);

    // Chat, answered from the library: markers, annotations at the markers, deep links.
    let question = "When will the lower car park be closed for resurfacing?";
    let chat = post_json(
        &app,
        "/v1/chat/completions",
        Some(READ),
        json!({"model": "mosaic", "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [{"type": "text", "text": question}]}
        ]}),
    )
    .await;
    assert_eq!(
        chat.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&chat.body)
    );
    let chat = chat.json();
    assert_eq!(chat["object"], "chat.completion");
    assert!(chat["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let message = &chat["choices"][0]["message"];
    let content = message["content"].as_str().unwrap();
    assert!(content.contains("October"), "{content}");
    let annotations = message["annotations"].as_array().expect("annotations");
    assert!(!annotations.is_empty());
    let recording_id = mosaic::catalog::source_id(&mosaic::ingest::file_uri(&lib.recording));
    let mut cites_recording = false;
    for a in annotations {
        assert_eq!(a["type"], "url_citation");
        let c = &a["url_citation"];
        let marker = code_points(
            content,
            c["start_index"].as_u64().unwrap(),
            c["end_index"].as_u64().unwrap(),
        );
        assert!(
            marker.starts_with('[') && marker.ends_with(']'),
            "annotation spans its marker: {marker:?} in {content:?}"
        );
        let url = c["url"].as_str().unwrap();
        assert!(
            url.starts_with("http://mosaic.test:8400/v1/sources/"),
            "{url}"
        );
        if a["mosaic"]["source"]["id"] == recording_id.as_str() {
            cites_recording = true;
            assert!(url.contains(&format!("{recording_id}/media#t=")), "{url}");
            assert_eq!(a["mosaic"]["anchor"]["kind"], "time");
        }
    }
    assert!(cites_recording, "the spoken notice is cited: {chat}");
    assert!(chat["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // Streaming: role first, one source event per passage, content, one annotations delta,
    // finish, usage, [DONE]; one id throughout.
    let stream = post_json(
        &app,
        "/v1/chat/completions",
        Some(READ),
        json!({"model": "mosaic", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": question}]}),
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK);
    assert!(stream.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = events(&stream.body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "mosaic");
        assert!(c["created"].as_u64().unwrap() > 1_700_000_000);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let sources: Vec<&Value> = chunks.iter().filter(|c| c.get("event").is_some()).collect();
    assert!(!sources.is_empty());
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, content, "the stream carries the same answer");
    let annotation_chunks: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"].get("annotations").is_some())
        .collect();
    assert_eq!(annotation_chunks.len(), 1, "one annotations delta");
    for a in annotation_chunks[0]["choices"][0]["delta"]["annotations"]
        .as_array()
        .unwrap()
    {
        let url = a["url_citation"]["url"].as_str().unwrap();
        assert!(
            sources
                .iter()
                .any(|s| s["event"]["data"]["metadata"][0]["source"] == url),
            "a source event carries the annotation's URL {url}"
        );
    }
    let finish = chunks
        .iter()
        .position(|c| c["choices"][0]["finish_reason"] == "stop")
        .unwrap();
    assert!(
        chunks[finish + 1]["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(finish + 2, chunks.len());

    // The no-retrieval model answers title prompts without a language model.
    let title = post_json(
        &app,
        "/v1/chat/completions",
        Some(READ),
        json!({"model": "mosaic-chat", "messages": [{"role": "user", "content": "Glass frogs and their hearts"}]}),
    )
    .await
    .json();
    assert_eq!(
        title["choices"][0]["message"]["content"],
        "Glass frogs and their hearts"
    );

    // Embeddings: float and base64 agree with each other and with the model itself.
    let text = "Glass frogs hide their hearts.";
    let floats = post_json(
        &app,
        "/v1/embeddings",
        Some(READ),
        json!({"input": [text], "model": MINILM}),
    )
    .await
    .json();
    let vector: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(vector.len(), 384);
    let encoded = post_json(
        &app,
        "/v1/embeddings",
        Some(READ),
        json!({"input": text, "encoding_format": "base64"}),
    )
    .await
    .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, vector);
    let direct = mosaic
        .text_embedder(MINILM)
        .await
        .unwrap()
        .embed(vec![text.into()], mosaic::embed::Purpose::Passage)
        .await
        .unwrap();
    assert!(cosine(&direct[0], &vector) > 0.99999);
    let ids = post_json(
        &app,
        "/v1/embeddings",
        Some(READ),
        json!({"input": [[1, 2, 3]]}),
    )
    .await;
    assert_eq!(ids.status, StatusCode::BAD_REQUEST);
    assert!(ids.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("token-id"));
    assert_eq!(
        post_json(
            &app,
            "/v1/embeddings",
            Some(READ),
            json!({"input": "x", "model": "no/such"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // Search: grouped by source (each source once, more passages nested), or per passage.
    let grouped = post_json(
        &app,
        "/v1/search",
        Some(READ),
        json!({"query": "ferry cooperative dividend per household", "top_k": 10}),
    )
    .await
    .json();
    let hits = grouped["hits"].as_array().unwrap();
    let mut seen = std::collections::HashSet::new();
    for h in hits {
        assert!(
            seen.insert(h["source"]["id"].as_str().unwrap().to_string()),
            "each source once: {grouped}"
        );
        assert!(h["url"]
            .as_str()
            .unwrap()
            .starts_with("http://mosaic.test:8400/v1/sources/"));
    }
    let passages = post_json(
        &app,
        "/v1/search",
        Some(READ),
        json!({"query": "ferry cooperative dividend per household", "top_k": 10, "group_by": "none"}),
    )
    .await
    .json();
    let passage_sources: Vec<&str> = passages["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["source"]["id"].as_str().unwrap())
        .collect();
    assert!(
        passage_sources.len() > seen.len(),
        "per passage, sources repeat: {passage_sources:?}"
    );
    // The nested passages are the repeats, by chunk id.
    let nested: std::collections::HashSet<&str> = hits
        .iter()
        .flat_map(|h| {
            std::iter::once(h["chunk_id"].as_str().unwrap()).chain(
                h["more"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| m["chunk_id"].as_str().unwrap()),
            )
        })
        .collect();
    for h in passages["hits"].as_array().unwrap().iter().take(4) {
        assert!(nested.contains(h["chunk_id"].as_str().unwrap()), "{h}");
    }
    let audio_only = post_json(
        &app,
        "/v1/search",
        Some(READ),
        json!({"query": "car park resurfacing", "media_types": ["audio"]}),
    )
    .await
    .json();
    assert!(!audio_only["hits"].as_array().unwrap().is_empty());
    for h in audio_only["hits"].as_array().unwrap() {
        assert_eq!(h["source"]["id"], recording_id.as_str());
    }
    assert_eq!(
        post_json(&app, "/v1/search", Some(READ), json!({"query": " "}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_json(
            &app,
            "/v1/search",
            Some(READ),
            json!({"query": "x", "modalities": ["smell"]})
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_json(&app, "/v1/search", Some(READ), json!({"top_k": 3}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Backpressure: with every search permit taken, a quick 429 with Retry-After.
    let held = state.searches.clone().acquire_many_owned(2).await.unwrap();
    let busy = post_json(&app, "/v1/search", Some(READ), json!({"query": "frogs"})).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.headers[header::RETRY_AFTER], "1");
    assert_eq!(get(&app, "/healthz", None).await.status, StatusCode::OK);
    drop(held);

    // Sources, a transcript with times, media with Range.
    let sources = get(&app, "/v1/sources", Some(READ)).await.json();
    assert_eq!(sources["data"].as_array().unwrap().len(), 4);
    let shown = get(&app, &format!("/v1/sources/{recording_id}"), Some(READ))
        .await
        .json();
    let transcript = shown["transcript"].as_array().unwrap();
    assert!(transcript
        .iter()
        .any(|s| s["text"].as_str().unwrap().contains("October")));
    assert!(
        transcript[0]["end_ms"].as_u64().unwrap() > transcript[0]["start_ms"].as_u64().unwrap()
    );
    let bytes = std::fs::read(&lib.recording).unwrap();
    let media = format!("/v1/sources/{recording_id}/media");
    let whole = get(&app, &media, Some(READ)).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.headers[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(whole.body, bytes);
    let request = Request::builder()
        .uri(format!("/v1/sources/{recording_id}/media?key={READ}"))
        .header(header::RANGE, "bytes=1000-1999")
        .body(Body::empty())
        .unwrap();
    let partial = app.clone().oneshot(request).await.unwrap();
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        partial.headers()[header::CONTENT_RANGE],
        format!("bytes 1000-1999/{}", bytes.len()).as_str()
    );
    let body = axum::body::to_bytes(partial.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&body[..], &bytes[1000..2000]);
    for bad in [
        "/v1/sources/..%2F..%2Fetc%2Fpasswd/media",
        "/v1/sources/0123456789abcdef0123456789abcdef",
        "/v1/sources/%2e%2e/media",
    ] {
        assert_eq!(
            get(&app, bad, Some(READ)).await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }

    // Ingest: scopes, paths confined to the root (traversal, links out), uploads, limits.
    let body = json!({"paths": ["science-glass-frogs.md"]});
    assert_eq!(
        post_json(&app, "/v1/ingest", Some(READ), body.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    for (path, status) in [
        ("/etc/passwd", StatusCode::FORBIDDEN),
        ("../outside/secret.txt", StatusCode::FORBIDDEN),
        ("link.txt", StatusCode::FORBIDDEN),
        ("no-such-file.md", StatusCode::NOT_FOUND),
    ] {
        let refused = post_json(&app, "/v1/ingest", Some(WRITE), json!({"paths": [path]})).await;
        assert_eq!(refused.status, status, "{path}: {}", refused.json());
    }
    let note = b"The Brightwater ferry timetable changes on the first of May.";
    let upload = post_form(
        &app,
        "/v1/ingest",
        Some(WRITE),
        multipart(&[
            ("file", Some("../../timetable note.txt"), note),
            ("file", Some("empty.txt"), b""),
        ]),
    )
    .await;
    assert_eq!(upload.status, StatusCode::ACCEPTED, "{}", upload.json());
    let job = wait_for_job(&app, upload.json()["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["ingested"], 1, "{job}");
    let failed = job["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{job}");
    assert!(failed[0]["uri"].as_str().unwrap().ends_with("empty.txt"));
    let uploaded = lib
        .data
        .join("uploads")
        .join(job["id"].as_str().unwrap())
        .join("timetable note.txt");
    assert!(
        uploaded.is_file(),
        "kept as the source's file, its folders dropped"
    );
    let uploaded_id = mosaic::catalog::source_id(&mosaic::ingest::file_uri(&uploaded));
    let found = post_json(
        &app,
        "/v1/search",
        Some(READ),
        json!({"query": "ferry timetable first of May"}),
    )
    .await
    .json();
    assert_eq!(
        found["hits"][0]["source"]["id"],
        uploaded_id.as_str(),
        "{found}"
    );
    let big = vec![b'a'; 300 * 1024];
    let oversize = post_form(
        &app,
        "/v1/ingest",
        Some(WRITE),
        multipart(&[("file", Some("big.txt"), &big)]),
    )
    .await;
    assert_eq!(oversize.status, StatusCode::PAYLOAD_TOO_LARGE);
    let similar_text = post_form(
        &app,
        "/v1/similar",
        Some(READ),
        multipart(&[("file", Some("note.txt"), note)]),
    )
    .await;
    assert_eq!(similar_text.status, StatusCode::BAD_REQUEST);

    // Delete: a write route; the source and its uploaded file go.
    let uri = format!("/v1/sources/{uploaded_id}");
    assert_eq!(
        call(&app, Method::DELETE, &uri, Some(READ), None, Vec::new())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, Method::DELETE, &uri, Some(WRITE), None, Vec::new())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, &uri, Some(READ)).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(!uploaded.exists());
    let status = mosaic::cli::status(&mosaic).await.unwrap();
    assert_eq!(status["consistent"], true, "{status}");

    state.jobs.shutdown().await;
}

/// Chat through an OpenAI-compatible stand-in: the numbered blocks arrive in the prompt, and
/// the cited `[n]` maps to the right source, its annotation at the marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_an_openai_compatible_server_cites_the_block_it_was_given() {
    let lib = library().await;
    let recorder = Recorder::default();
    let stand_in = Router::new()
        .route("/v1/chat/completions", post(crate::answer::chat))
        .with_state(recorder.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, stand_in).await.unwrap() });

    let mut settings = settings(&lib.data);
    settings.llm.base_url = Some(format!("http://{addr}/v1"));
    settings.llm.model = "test-model".into();
    let server = settings.server.clone();
    let mosaic = Arc::new(Mosaic::open(settings).await.unwrap());
    let state = ServerState::new(mosaic, server).unwrap();
    let app = router(state.clone());
    let reply = post_json(
        &app,
        "/v1/chat/completions",
        Some(READ),
        json!({"model": "mosaic", "temperature": 0.3, "max_tokens": 77, "messages": [
            {"role": "user", "content": "What dividend will each member household of the ferry cooperative get?"}
        ]}),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = reply.json();
    assert_eq!(reply["mosaic"]["generator"], "openai:test-model");

    let sent = recorder.requests.lock().unwrap()[0].clone();
    assert_eq!(
        sent["max_tokens"], 77,
        "the caller's limits are passed on: {sent}"
    );
    assert!((sent["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    let prompt = sent["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        prompt.contains("[1] ") && prompt.contains("350 kroner"),
        "{prompt}"
    );
    // The block number the stand-in cited is the number in the answer.
    let cited_block = prompt
        .split("\n[")
        .chain(std::iter::once(prompt.as_str()))
        .find_map(|part| {
            let part = part.strip_prefix('[').unwrap_or(part);
            let (n, rest) = part.split_once(']')?;
            let n: usize = n.parse().ok()?;
            rest.contains("350 kroner").then_some(n)
        })
        .unwrap();
    let message = &reply["choices"][0]["message"];
    let content = message["content"].as_str().unwrap();
    assert!(content.contains(&format!("[{cited_block}]")), "{content}");
    assert!(
        !content.contains("[42]"),
        "a marker naming no block is dropped: {content}"
    );
    let annotation = &message["annotations"][0];
    let c = &annotation["url_citation"];
    assert_eq!(
        code_points(
            content,
            c["start_index"].as_u64().unwrap(),
            c["end_index"].as_u64().unwrap()
        ),
        format!("[{cited_block}]")
    );
    assert!(c["url"].as_str().unwrap().ends_with("/media#page=3"), "{c}");
    assert!(annotation["mosaic"]["source"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("annual-report-nordvik-ferries.pdf"));
    state.jobs.shutdown().await;
}

/// `mosaic serve` on a loopback port, as deployed: curl (JSON, Range), the official `openai`
/// client, LangChain and a bounded load test (tests/serve/clients.py), and the page in
/// headless Chromium (ask, click the time citation, the player is at the cited start; the
/// screenshot is kept); then SIGTERM, and the server stops cleanly.
#[test]
fn served_on_loopback_to_real_clients_and_a_browser() {
    let python = mosaic::config::default_models_dir()
        .parent()
        .unwrap()
        .join("venv-serve/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup.sh (it installs the HTTP test clients)",
        python.display()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lib = runtime.block_on(library());
    let data = lib.data.to_str().unwrap().to_string();
    let root = lib.root.to_str().unwrap().to_string();
    // The server's log, shown when something fails.
    let log = lib.data.with_file_name("serve.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .current_dir(crate::common::repo())
        .args(["--data-dir", &data, "serve", "--port", "0"])
        .env("MOSAIC__LLM__EMBEDDED", "false")
        .env_remove("MOSAIC_LLM_URL")
        .env("MOSAIC__SERVER__READ_KEYS", READ)
        .env("MOSAIC__SERVER__WRITE_KEYS", WRITE)
        .env("MOSAIC__SERVER__INGEST_ROOT", &root)
        .env("MOSAIC__SERVER__MAX_CONCURRENT_SEARCHES", "4")
        .env("MOSAIC__SERVER__MAX_CONCURRENT_CHATS", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("mosaic listening on ")
        .unwrap_or_else(|| panic!("the server says where it listens: {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-H",
                &format!("Authorization: Bearer {READ}"),
            ])
            .args(args)
            .output()
            .expect("curl (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        out.stdout
    };
    let found: Value = serde_json::from_slice(&curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"query": "car park resurfacing", "top_k": 3}"#,
        &format!("{base}/v1/search"),
    ]))
    .unwrap();
    let recording_id = mosaic::catalog::source_id(&mosaic::ingest::file_uri(&lib.recording));
    assert_eq!(
        found["hits"][0]["source"]["id"],
        recording_id.as_str(),
        "{found}"
    );
    let part = curl(&[
        "-r",
        "1000-1999",
        &format!("{base}/v1/sources/{recording_id}/media"),
    ]);
    assert_eq!(part, std::fs::read(&lib.recording).unwrap()[1000..2000]);

    let artifacts = mosaic::config::default_models_dir()
        .parent()
        .unwrap()
        .join("artifacts/serve");
    std::fs::create_dir_all(&artifacts).unwrap();
    let clients = std::process::Command::new(&python)
        .arg(crate::common::repo().join("tests/serve/clients.py"))
        .args([
            base.as_str(),
            READ,
            "When will the lower car park be closed for resurfacing?",
            "October",
            artifacts.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&clients.stdout));
    eprintln!("{}", String::from_utf8_lossy(&clients.stderr));
    let shot = artifacts.join("page.png");
    println!("page screenshot: {}", shot.display());

    // SIGTERM: in-flight work finishes and the process exits 0.
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    if !(clients.status.success() && status.success()) {
        eprintln!(
            "server log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(
        clients.status.success(),
        "the clients failed (output above)"
    );
    assert!(shot.is_file());
    assert!(status.success(), "graceful exit: {status:?}");
}
