//! The web UI's static files, embedded in the binary so `cargo run --release` serves it with no build step.
//! Everything the pages show comes from the public API under `/api/`; nothing here reads broker state.
//!
//! `WARREN_UI_DIR=src/http/ui` serves the files from disk instead (read per request), so the UI can be
//! edited and reloaded without rebuilding the broker.

use axum::body::Body;
use axum::http::{header, Response, StatusCode};
use include_dir::{include_dir, Dir};

static UI: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/src/http/ui");

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file for a request path outside `/api/`, or `None` (404). `/` is the single page.
pub async fn file(raw_path: &str, head: bool) -> Option<Response<Body>> {
    let rel = match raw_path.trim_start_matches('/') {
        "" => "index.html",
        p => p,
    };
    // Only plain relative names: no parent steps, no hidden files, nothing a disk override could escape by.
    if rel
        .split('/')
        .any(|s| s.is_empty() || s.starts_with('.') || s.contains('\\'))
    {
        return None;
    }
    let bytes: Vec<u8> = match std::env::var_os("WARREN_UI_DIR") {
        Some(dir) => tokio::fs::read(std::path::Path::new(&dir).join(rel))
            .await
            .ok()?,
        None => UI.get_file(rel)?.contents().to_vec(),
    };
    let len = bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type(rel))
        .header(header::CONTENT_LENGTH, len)
        // The files change only with the binary; revalidating keeps an upgraded broker's UI current.
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-content-type-options", "nosniff")
        .body(body)
        .ok()
}
