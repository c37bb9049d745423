//! `GET /api/v1/repositories/{name}/fields?start=24h&end=now`: which fields the repository's
//! events have in a time range, with their types, how many events have each and the top values
//! of fields with few distinct values (see [`eddy_query::discover`] for the rule and the bound
//! on the work). `start` and `end` read as the query API's; reading needs what a query needs.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use eddy_query::discover::{discover, Bounds};

use crate::http::error;
use crate::query::{empty_range_hint, parse_time};
use crate::AppState;

/// The handler.
pub async fn fields(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let repo = match state.existing_repository(&name) {
        Ok(repo) => repo,
        Err(r) => return r.into_response(),
    };
    let (start, end) = match range_of(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let found = tokio::task::spawn_blocking(move || {
        let mut d = discover(&repo.store, start, end, Bounds::default());
        if d.events == 0 {
            let range = eddy_query::Options {
                start,
                end,
                ..eddy_query::Options::default()
            };
            d.warnings.extend(empty_range_hint(&repo.store, &range));
        }
        d
    })
    .await;
    match found {
        Ok(d) => Json(d).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("field discovery failed: {e}"),
        )
        .into_response(),
    }
}

/// `start` (default `24h`) and `end` (default: no end) of the query string, in ns.
fn range_of(query: &str) -> Result<(i64, i64), String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| format!("bad query string: {e}"))?;
    let (mut start, mut end) = (None, None);
    for (k, v) in pairs {
        match k.as_str() {
            "start" => start = Some(parse_time(&v).map_err(|e| format!("start: {e}"))?),
            "end" => end = Some(parse_time(&v).map_err(|e| format!("end: {e}"))?),
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; expected start or end"
                ))
            }
        }
    }
    let start = match start {
        Some(t) => t,
        None => parse_time("24h")?,
    };
    let end = end.unwrap_or(i64::MAX);
    if start > end {
        return Err(format!(
            "start ({}) is after end ({}): the time range is empty",
            eddy_event::units::format_time(start),
            eddy_event::units::format_time(end)
        ));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_reads_like_the_query_apis() {
        let (start, end) = range_of("start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z").unwrap();
        assert_eq!(end - start, 86_400_000_000_000);
        let (_, end) = range_of("start=1h").unwrap();
        assert_eq!(end, i64::MAX);
    }

    proptest::proptest! {
        /// Any query string a client sends is a range or an error, never a panic, and a
        /// range is never empty.
        #[test]
        fn any_query_string_is_a_range_or_an_error(query in "((start|end|x)=[0-9a-zA-Z:%+.-]{0,24}&?){0,3}") {
            if let Ok((start, end)) = range_of(&query) {
                proptest::prop_assert!(start <= end);
            }
        }
    }

    #[test]
    fn a_bad_range_says_which_end_is_wrong() {
        assert!(range_of("start=yesterday")
            .unwrap_err()
            .starts_with("start:"));
        assert!(range_of("start=1h&end=2h")
            .unwrap_err()
            .contains("after end"));
        assert!(range_of("from=1h")
            .unwrap_err()
            .contains("unknown parameter"));
    }
}
