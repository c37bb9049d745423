//! The web UI's documents, kept on the server: dashboards (`/api/v1/dashboards`) and saved
//! searches (`/api/v1/searches`). Each kind answers the same routes:
//!
//! - `GET /api/v1/dashboards`: `{"items": [{"id", "name", …summary}]}`, by name;
//! - `POST /api/v1/dashboards` with a document: creates it (also how an export is imported),
//!   `201 {"id", …}`;
//! - `GET /api/v1/dashboards/{id}`: the document as JSON (the export, importable as it is);
//! - `PUT /api/v1/dashboards/{id}` with a document: replaces it (renaming included);
//! - `DELETE /api/v1/dashboards/{id}`: `204`.
//!
//! Documents are checked before they are kept: unknown keys refused, names of 1 to
//! [`MAX_NAME_CHARS`] characters, at most [`MAX_WIDGETS`] widgets, every query parsed by the
//! server's parser; a `400` says which document part is wrong and why.
//!
//! Storage: one JSON file per kind in the data directory (`dashboards.json`,
//! `searches.json`), replaced whole, atomically and fsynced (`eddy_base::fs`), as
//! `repositories.json` and `pipelines.json` are. They are small documents read whole and
//! rewritten whole on a user's click; the bus (as the schema registry's `_schemas` journal)
//! would add a replay and compaction to what a file rename already gives.
//!
//! Access: a token with a `read:` scope of some repository, or `admin` (the router's guard,
//! [`crate::access`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_base::sync::lock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{error, Reject};
use crate::routes::Routes;
use crate::AppState;

/// The longest document body accepted, in bytes (1 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The most widgets on one dashboard.
pub const MAX_WIDGETS: usize = 64;

/// What a dashboard widget draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WidgetKind {
    /// A time chart of lines.
    Line,
    /// A time chart of filled areas.
    Area,
    /// A time chart of stacked bars.
    Bars,
    /// The answer's rows.
    Table,
    /// One number, with its trend.
    Single,
    /// The buckets of `histogram()`.
    Histogram,
    /// The boxes of `boxplot()`.
    Boxplot,
}

/// One widget: a query over a repository, drawn as `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widget {
    /// Its title.
    pub title: String,
    /// How it is drawn.
    pub kind: WidgetKind,
    /// The repository it asks.
    pub repository: String,
    /// The query.
    pub query: String,
    /// Whether it runs live (over the websocket) rather than refreshed.
    #[serde(default)]
    pub live: bool,
    /// How often a refreshed widget asks again, such as `30s` (none: on load only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
}

/// A dashboard: widgets in a grid, sharing one time range.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// Its name.
    pub name: String,
    /// The range's start for every widget (`1h` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The range's end (none: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The widgets, in grid order.
    #[serde(default)]
    pub widgets: Vec<Widget>,
}

/// A saved search: what the search page's URL holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSearch {
    /// Its name.
    pub name: String,
    /// The repository.
    pub repository: String,
    /// The query.
    pub query: String,
    /// The range's start (`1h` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The range's end (none: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A kind of document the UI keeps.
pub trait Document: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// The file it is kept in, in the data directory.
    const FILE: &'static str;
    /// What the list shows of it beside `id` and `name`.
    fn summary(&self) -> serde_json::Value;
    /// Its name.
    fn name(&self) -> &str;
    /// Every problem, each saying which part and why.
    fn problems(&self) -> Vec<String>;
}

fn name_problems(name: &str) -> Vec<String> {
    let chars = name.trim().chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        vec![format!(
            "name: must have 1 to {MAX_NAME_CHARS} characters (has {chars})"
        )]
    } else {
        Vec::new()
    }
}

fn query_problems(at: &str, query: &str) -> Option<String> {
    if query.len() > eddy_query::syntax::MAX_QUERY_BYTES {
        return Some(format!(
            "{at}: the text is {} bytes long; at most {} bytes are accepted",
            query.len(),
            eddy_query::syntax::MAX_QUERY_BYTES
        ));
    }
    eddy_query::prepare(query, eddy_query::engine::DEFAULT_LIMIT)
        .err()
        .map(|e| {
            let (line, column) = e.line_column(query);
            format!("{at}: line {line}, column {column}: {}", e.message)
        })
}

fn time_problems(at: &str, text: &Option<String>) -> Option<String> {
    let text = text.as_deref()?;
    crate::query::parse_time(text)
        .err()
        .map(|e| format!("{at}: {e}"))
}

impl Document for Dashboard {
    const FILE: &'static str = "dashboards.json";

    fn summary(&self) -> serde_json::Value {
        json!({ "widgets": self.widgets.len() })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = name_problems(&self.name);
        problems.extend(time_problems("start", &self.start));
        problems.extend(time_problems("end", &self.end));
        if self.widgets.len() > MAX_WIDGETS {
            problems.push(format!(
                "widgets: {} are too many; at most {MAX_WIDGETS}",
                self.widgets.len()
            ));
        }
        for (i, w) in self.widgets.iter().enumerate() {
            problems.extend(query_problems(&format!("widgets[{i}].query"), &w.query));
            if let Some(every) = &w.refresh {
                if let Err(e) = eddy_event::units::parse_duration(every) {
                    problems.push(format!("widgets[{i}].refresh: {e}"));
                }
            }
        }
        problems
    }
}

impl Document for SavedSearch {
    const FILE: &'static str = "searches.json";

    fn summary(&self) -> serde_json::Value {
        json!({ "repository": self.repository, "query": self.query, "start": self.start, "end": self.end })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = name_problems(&self.name);
        problems.extend(query_problems("query", &self.query));
        problems.extend(time_problems("start", &self.start));
        problems.extend(time_problems("end", &self.end));
        problems
    }
}

/// The documents of one kind, by id, and the file that keeps them.
#[derive(Debug)]
pub struct Documents<T> {
    path: PathBuf,
    /// Guarded: the file is rewritten whole.
    items: Mutex<BTreeMap<String, T>>,
}

impl<T: Document> Documents<T> {
    /// Reads them from the data directory (none if the file does not exist yet).
    pub fn open(data_dir: &std::path::Path) -> std::io::Result<Documents<T>> {
        let path = data_dir.join(T::FILE);
        let items = crate::created::read_file(&path)?;
        Ok(Documents {
            path,
            items: Mutex::new(items),
        })
    }

    fn save(&self, items: &BTreeMap<String, T>) -> Result<(), Reject> {
        crate::created::write_file(&self.path, items).map_err(|e| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not keep the change in the data directory: {e}"),
            )
        })
    }

    fn list(&self) -> Vec<serde_json::Value> {
        let items = lock(&self.items);
        let mut list: Vec<_> = items
            .iter()
            .map(|(id, d)| {
                let mut v = d.summary();
                v["id"] = json!(id);
                v["name"] = json!(d.name());
                v
            })
            .collect();
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        list
    }

    fn get(&self, id: &str) -> Result<T, Reject> {
        lock(&self.items)
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    fn create(&self, doc: T) -> Result<String, Reject> {
        let mut items = lock(&self.items);
        // Ids from the clock: never handed out twice, so an old link never opens a newer one.
        let mut n = eddy_log::now_ns().max(0) as u64;
        while items.contains_key(&format!("{n:x}")) {
            n += 1;
        }
        let id = format!("{n:x}");
        items.insert(id.clone(), doc);
        if let Err(r) = self.save(&items) {
            items.remove(&id);
            return Err(r);
        }
        Ok(id)
    }

    fn replace(&self, id: &str, doc: T) -> Result<(), Reject> {
        let mut items = lock(&self.items);
        let Some(old) = items.insert(id.to_string(), doc) else {
            items.remove(id);
            return Err(not_found(id));
        };
        if let Err(r) = self.save(&items) {
            items.insert(id.to_string(), old);
            return Err(r);
        }
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<(), Reject> {
        let mut items = lock(&self.items);
        let Some(old) = items.remove(id) else {
            return Err(not_found(id));
        };
        if let Err(r) = self.save(&items) {
            items.insert(id.to_string(), old);
            return Err(r);
        }
        Ok(())
    }
}

fn not_found(id: &str) -> Reject {
    error(StatusCode::NOT_FOUND, format!("no document with id {id:?}"))
}

/// The UI's documents of every kind.
#[derive(Debug)]
pub struct UiDocuments {
    /// Dashboards.
    pub dashboards: Documents<Dashboard>,
    /// Saved searches.
    pub searches: Documents<SavedSearch>,
}

impl UiDocuments {
    /// Reads them from the data directory.
    pub fn open(data_dir: &std::path::Path) -> std::io::Result<UiDocuments> {
        Ok(UiDocuments {
            dashboards: Documents::open(data_dir)?,
            searches: Documents::open(data_dir)?,
        })
    }
}

/// Which kind a route serves.
pub trait Kind: Document {
    /// Its documents in the server's state.
    fn documents(state: &AppState) -> &Documents<Self>;
}

impl Kind for Dashboard {
    fn documents(state: &AppState) -> &Documents<Dashboard> {
        &state.documents.dashboards
    }
}

impl Kind for SavedSearch {
    fn documents(state: &AppState) -> &Documents<SavedSearch> {
        &state.documents.searches
    }
}

/// A document from a request body, checked.
async fn document<T: Document>(body: Body) -> Result<T, Reject> {
    let bytes = to_bytes(body, MAX_DOCUMENT_BYTES).await.map_err(|_| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a document may have at most {MAX_DOCUMENT_BYTES} bytes"),
        )
    })?;
    let doc: T = serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid document: {e}")))?;
    let problems = doc.problems();
    if !problems.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("invalid document: {}", problems.join("; ")),
        ));
    }
    Ok(doc)
}

fn answer(result: Result<Response, Reject>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/v1/{kind}`.
pub async fn list<T: Kind>(State(state): State<Arc<AppState>>) -> Response {
    answer(Ok(
        Json(json!({ "items": T::documents(&state).list() })).into_response()
    ))
}

/// `POST /api/v1/{kind}`: create or import.
pub async fn create<T: Kind>(State(state): State<Arc<AppState>>, body: Body) -> Response {
    answer(
        async {
            let doc: T = document(body).await?;
            let name = doc.name().to_string();
            let id = T::documents(&state).create(doc)?;
            Ok((StatusCode::CREATED, Json(json!({ "id": id, "name": name }))).into_response())
        }
        .await,
    )
}

/// `GET /api/v1/{kind}/{id}`: the document (its export).
pub async fn get<T: Kind>(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    answer(
        T::documents(&state)
            .get(&id)
            .map(|doc| Json(doc).into_response()),
    )
}

/// `PUT /api/v1/{kind}/{id}`: replace (rename included).
pub async fn replace<T: Kind>(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    answer(
        async {
            let doc: T = document(body).await?;
            T::documents(&state).replace(&id, doc)?;
            Ok(Json(json!({ "id": id })).into_response())
        }
        .await,
    )
}

/// `DELETE /api/v1/{kind}/{id}`.
pub async fn delete<T: Kind>(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    answer(
        T::documents(&state)
            .delete(&id)
            .map(|()| StatusCode::NO_CONTENT.into_response()),
    )
}

/// The routes of one kind under `base` (such as `/api/v1/dashboards`).
pub fn routes<T: Kind>(routes: Routes, base: &str) -> Routes {
    let one = format!("{base}/{{id}}");
    routes
        .get(base, list::<T>)
        .post(base, create::<T>)
        .get(&one, get::<T>)
        .put(&one, replace::<T>)
        .delete(&one, delete::<T>)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dashboard(json: serde_json::Value) -> Result<Dashboard, String> {
        let d: Dashboard = serde_json::from_value(json).map_err(|e| e.to_string())?;
        let problems = d.problems();
        if problems.is_empty() {
            Ok(d)
        } else {
            Err(problems.join("; "))
        }
    }

    #[test]
    fn a_widget_with_a_bad_query_is_named_with_line_and_column() {
        let e = dashboard(json!({"name": "ops", "widgets": [
            {"title": "a", "kind": "line", "repository": "main", "query": "timechart()"},
            {"title": "b", "kind": "table", "repository": "main", "query": "error | cuont()"},
        ]}))
        .unwrap_err();
        assert_eq!(
            e,
            "widgets[1].query: line 1, column 9: unknown function cuont"
        );
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        assert!(dashboard(json!({"name": "x", "colour": "red"}))
            .unwrap_err()
            .contains("colour"));
        let e = dashboard(json!({"name": "x", "widgets": [
            {"title": "a", "kind": "pie", "repository": "main", "query": "count()"}]}))
        .unwrap_err();
        assert!(e.contains("pie"), "{e}");
    }

    #[test]
    fn an_empty_name_and_a_bad_range_are_problems() {
        let e = dashboard(json!({"name": "  ", "start": "yesterday-ish"})).unwrap_err();
        assert!(e.starts_with("name: must have 1 to 200 characters"), "{e}");
        assert!(e.contains("start: "), "{e}");
    }

    #[test]
    fn documents_survive_a_reopen_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let docs = Documents::<SavedSearch>::open(dir.path()).unwrap();
        let search = |name: &str| SavedSearch {
            name: name.into(),
            repository: "main".into(),
            query: "error".into(),
            start: Some("1h".into()),
            end: None,
        };
        let a = docs.create(search("a")).unwrap();
        let b = docs.create(search("b")).unwrap();
        assert_ne!(a, b);
        docs.replace(&a, search("renamed")).unwrap();
        docs.delete(&b).unwrap();
        let again = Documents::<SavedSearch>::open(dir.path()).unwrap();
        let names: Vec<_> = again.list().iter().map(|v| v["name"].clone()).collect();
        assert_eq!(names, vec![json!("renamed")]);
        assert_eq!(again.get(&b).unwrap_err().status(), StatusCode::NOT_FOUND);
        let c = again.create(search("c")).unwrap();
        assert_ne!(c, b);
    }
}
