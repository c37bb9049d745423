//! `POST /api/v1/query/check` with `{"query": "..."}`: checks a query with the server's own
//! parser and compiler, without running it (the UI's editor calls it as the user types).
//!
//! Always `200` for a query that could be read: `{"ok": true}`, or `{"ok": false, "error",
//! "hint", "line", "column", "rendered", "from", "to"}`, where `from`..`to` is the offending
//! part in UTF-16 code units of the text (what a browser's string indexes count), never empty.
//! A body that is not such an object is a `400`; a text over the query size bound too. No
//! token is needed: nothing is read.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::query::{check_query_size, query_error_body, read_request};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The query text.
    pub query: String,
}

/// The handler.
pub async fn check(body: axum::body::Body) -> Response {
    let request: CheckRequest =
        match read_request(body, "a check request", r#"{"query": "..."}"#).await {
            Ok(r) => r,
            Err(r) => return r,
        };
    if let Err(r) = check_query_size(&request.query) {
        return r.into_response();
    }
    Json(verdict(&request.query)).into_response()
}

/// The verdict on a query text.
pub fn verdict(query: &str) -> serde_json::Value {
    let e = match eddy_query::prepare(query, eddy_query::engine::DEFAULT_LIMIT) {
        Ok(_) => return json!({ "ok": true }),
        Err(e) => e,
    };
    let mut body = query_error_body(query, &e);
    let from = utf16_len(query, e.span.start);
    let to = utf16_len(query, e.span.end).max(from + 1);
    body["ok"] = json!(false);
    body["from"] = json!(from);
    body["to"] = json!(to);
    body
}

/// The length in UTF-16 code units of `text` up to byte `at` (clamped to a char boundary).
fn utf16_len(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text[..at].encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_query_is_ok() {
        assert_eq!(verdict("error | count()"), json!({"ok": true}));
    }

    #[test]
    fn an_unknown_function_is_placed_at_its_name() {
        let v = verdict("error | cuont()");
        assert_eq!(v["ok"], json!(false));
        assert_eq!(v["column"], json!(9));
        assert_eq!((v["from"].as_u64(), v["to"].as_u64()), (Some(8), Some(13)));
        assert_eq!(v["hint"], json!("did you mean count?"));
    }

    #[test]
    fn offsets_count_utf16_units_after_wide_characters() {
        // "é" is 2 bytes but 1 UTF-16 unit; "😀" 4 bytes and 2 units.
        let v = verdict("\"é😀\" | cuont()");
        assert_eq!(v["from"].as_u64(), Some(8));
    }

    #[test]
    fn an_error_at_the_end_still_marks_one_unit() {
        let v = verdict("count(");
        assert_eq!(v["ok"], json!(false));
        let (from, to) = (v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap());
        assert!(to > from, "{v}");
    }
}
