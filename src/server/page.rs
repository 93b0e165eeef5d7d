//! The web page at `/`: plain HTML, CSS and JavaScript compiled into the binary (no CDN). Ask
//! with a streamed answer whose citations play the cited moment or open the cited page,
//! search, find similar media from an upload, ingest files and watch the job.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// Headers every page file carries: no framing, no sniffing, scripts from this origin only.
fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub async fn index() -> impl IntoResponse {
    page("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> impl IntoResponse {
    page("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> impl IntoResponse {
    page("text/css; charset=utf-8", STYLE)
}
