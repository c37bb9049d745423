//! The web UI: the built assets of `ui/` (committed in `ui/dist`), embedded in the binary by
//! `build.rs` and served at `/` (the page) and `/assets/…` (scripts, styles), each with its
//! content type. Asset names carry a content hash, so they may be cached for good; the page
//! itself is revalidated, so a new binary's UI is seen on the next load.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every built file, by its path under `ui/dist`.
static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));

/// A built file by its path under `ui/dist`.
pub fn file(path: &str) -> Option<&'static [u8]> {
    FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, bytes)| *bytes)
}

/// The content type of a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, cache: &'static str) -> Response {
    match file(path) {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(path)),
                (header::CACHE_CONTROL, cache),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        None if path == "index.html" => (
            StatusCode::NOT_FOUND,
            "this eddy was built without its web UI (ui/dist is empty): see README, \"The web UI\"\n",
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no UI file {path:?}\n")).into_response(),
    }
}

/// `GET /`: the page.
pub async fn index() -> Response {
    serve("index.html", "no-cache")
}

/// `GET /assets/{*path}`: a hashed asset, cacheable for good.
pub async fn asset(Path(path): Path<String>) -> Response {
    serve(
        &format!("assets/{path}"),
        "public, max-age=31536000, immutable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_styles_and_the_page_get_their_content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("assets/index-abc.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("noextension"), "application/octet-stream");
    }

    #[test]
    fn the_built_page_is_embedded_and_names_only_embedded_assets() {
        let page = std::str::from_utf8(file("index.html").unwrap()).unwrap();
        for part in page.split("/assets/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                file(&format!("assets/{name}")).is_some(),
                "index.html names assets/{name}, which is not embedded"
            );
        }
    }
}
