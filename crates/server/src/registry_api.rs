//! The schema registry's REST API under `/api/v1/registry`, shaped like the Confluent Schema
//! Registry's so that its clients work unchanged (set their URL to
//! `http://<eddy>/api/v1/registry`): the same paths, JSON bodies, content type
//! (`application/vnd.schemaregistry.v1+json`) and errors (`{"error_code": 40401, "message":
//! ...}`).
//!
//! Deletes are soft only: `?permanent=true` is refused (42205), since producers may still send
//! data framed with a version. A refused registration (409) and a failed compatibility test
//! list every incompatibility with the field's path and the reason. With `http.admin_tokens`
//! set, every call needs one, as a bearer token or as the password of basic auth (what
//! Confluent clients send with `basic.auth.user.info`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use eddy_schema::registry::Version;
use eddy_schema::{Compatibility, Incompatibility, RegistryError, SchemaType};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::routes::Routes;
use crate::AppState;

/// The registry's content type.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry's routes (to be nested under `/api/v1/registry`).
pub fn routes(routes: Routes, base: &str) -> Routes {
    let at = |path: &str| format!("{base}{path}");
    routes
        .get(&at("/"), || async { reply(json!({})) })
        .get(&at("/subjects"), subjects)
        .post(&at("/subjects/{subject}"), lookup)
        .delete(&at("/subjects/{subject}"), delete_subject)
        .get(&at("/subjects/{subject}/versions"), versions)
        .post(&at("/subjects/{subject}/versions"), register)
        .get(&at("/subjects/{subject}/versions/{version}"), version)
        .delete(
            &at("/subjects/{subject}/versions/{version}"),
            delete_version,
        )
        .get(
            &at("/subjects/{subject}/versions/{version}/schema"),
            version_schema,
        )
        .get(&at("/schemas/types"), || async {
            reply(json!(["AVRO", "JSON"]))
        })
        .get(&at("/schemas/ids/{id}"), schema_by_id)
        .get(&at("/schemas/ids/{id}/schema"), schema_text_by_id)
        .post(&at("/compatibility/subjects/{subject}/versions"), test_all)
        .post(
            &at("/compatibility/subjects/{subject}/versions/{version}"),
            test_one,
        )
        .get(&at("/config"), get_config)
        .put(&at("/config"), set_config)
        .get(&at("/config/{subject}"), get_config)
        .put(&at("/config/{subject}"), set_config)
        .delete(&at("/config/{subject}"), delete_subject_config)
}

/// A registry answer or refusal.
type Answer = Result<Response, Refusal>;

/// A refusal in the Confluent shape.
pub struct Refusal {
    status: StatusCode,
    code: u32,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<RegistryError> for Refusal {
    fn from(e: RegistryError) -> Refusal {
        let code = e.code();
        let status = match code / 100 {
            404 => StatusCode::NOT_FOUND,
            422 => StatusCode::UNPROCESSABLE_ENTITY,
            4 => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal::new(status, code, e.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.code, "message": self.message});
        let mut r = reply(body);
        *r.status_mut() = self.status;
        r
    }
}

fn reply(body: Value) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

/// Runs a registry call off the async workers (writes fsync the journal).
async fn call<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&eddy_schema::Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, Refusal> {
    let registry = state.registry.clone();
    tokio::task::spawn_blocking(move || f(&registry))
        .await
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()))?
        .map_err(Refusal::from)
}

/// The body of a registration, lookup or compatibility test.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

impl SchemaRequest {
    fn parse(body: &[u8]) -> Result<(SchemaType, String), Refusal> {
        let unprocessable = |m: String| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, m);
        let r: SchemaRequest = serde_json::from_slice(body)
            .map_err(|e| unprocessable(format!("the request body is not a schema request: {e}")))?;
        if !r.references.is_empty() {
            return Err(unprocessable("schema references are not supported".into()));
        }
        let kind = match r.schema_type.as_deref() {
            None => SchemaType::Avro,
            Some(t) => t.parse().map_err(unprocessable)?,
        };
        Ok((kind, r.schema))
    }
}

#[derive(Debug, Deserialize, Default)]
struct Flags {
    #[serde(default)]
    permanent: bool,
}

fn refuse_permanent(flags: &Flags) -> Result<(), Refusal> {
    match flags.permanent {
        true => Err(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42205,
            "eddy never erases a schema (producers may still send data framed with it); soft deletes only",
        )),
        false => Ok(()),
    }
}

fn describe(v: &Version) -> Value {
    let mut body = json!({
        "subject": v.subject,
        "version": v.version,
        "id": v.id,
        "schema": v.schema,
    });
    if !v.schema_type.is_default() {
        body["schemaType"] = json!(v.schema_type.name());
    }
    body
}

fn incompatibilities(found: &[Incompatibility]) -> Value {
    json!({
        "is_compatible": found.is_empty(),
        "messages": found.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

async fn subjects(State(state): State<Arc<AppState>>) -> Answer {
    let subjects = call(&state, |r| Ok(r.subjects())).await?;
    Ok(reply(json!(subjects)))
}

async fn versions(State(state): State<Arc<AppState>>, Path(subject): Path<String>) -> Answer {
    let versions = call(&state, move |r| r.versions(&subject)).await?;
    Ok(reply(json!(versions)))
}

async fn register(
    State(state): State<Arc<AppState>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    check_subject(&subject)?;
    let (kind, schema) = SchemaRequest::parse(&body)?;
    let done = call(&state, move |r| {
        let done = r.register(&subject, kind, &schema)?;
        if done.added {
            tracing::info!(subject = %subject, id = done.id, version = done.version, "schema registered");
        }
        Ok(done)
    })
    .await?;
    Ok(reply(json!({"id": done.id})))
}

/// The longest subject name, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 249;

/// A new subject's name: 1 to [`MAX_SUBJECT_BYTES`] bytes, no control character (NUL
/// included), no `/`, no `..`. Subjects live in the bus's journal, not as files; the rule
/// keeps them safe to show and to use as names anywhere later.
fn check_subject(subject: &str) -> Result<(), Refusal> {
    let problem = if subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES {
        Some(format!("must be 1 to {MAX_SUBJECT_BYTES} bytes long"))
    } else if subject.chars().any(char::is_control) {
        Some("must not hold control characters".to_string())
    } else if subject.contains('/') || subject.contains("..") {
        Some("must not hold '/' or '..'".to_string())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!(
                "subject {:?}: {p}",
                subject.chars().take(64).collect::<String>()
            ),
        )),
    }
}

async fn lookup(
    State(state): State<Arc<AppState>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    let (kind, schema) = SchemaRequest::parse(&body)?;
    let v = call(&state, move |r| r.lookup(&subject, kind, &schema)).await?;
    Ok(reply(describe(&v)))
}

async fn version(
    State(state): State<Arc<AppState>>,
    Path((subject, version)): Path<(String, String)>,
) -> Answer {
    let v = call(&state, move |r| r.version(&subject, &version)).await?;
    Ok(reply(describe(&v)))
}

async fn version_schema(
    State(state): State<Arc<AppState>>,
    Path((subject, version)): Path<(String, String)>,
) -> Answer {
    let v = call(&state, move |r| r.version(&subject, &version)).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], v.schema).into_response())
}

async fn delete_version(
    State(state): State<Arc<AppState>>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> Answer {
    refuse_permanent(&flags)?;
    let v = call(&state, move |r| r.delete_version(&subject, &version)).await?;
    Ok(reply(json!(v)))
}

async fn delete_subject(
    State(state): State<Arc<AppState>>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> Answer {
    refuse_permanent(&flags)?;
    let vs = call(&state, move |r| r.delete_subject(&subject)).await?;
    Ok(reply(json!(vs)))
}

async fn schema_by_id(State(state): State<Arc<AppState>>, Path(id): Path<u32>) -> Answer {
    let (text, schema) = call(&state, move |r| r.schema(id)).await?;
    let mut body = json!({ "schema": text });
    if !schema.kind().is_default() {
        body["schemaType"] = json!(schema.kind().name());
    }
    Ok(reply(body))
}

async fn schema_text_by_id(State(state): State<Arc<AppState>>, Path(id): Path<u32>) -> Answer {
    let (text, _) = call(&state, move |r| r.schema(id)).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

async fn test_one(
    State(state): State<Arc<AppState>>,
    Path((subject, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let (kind, schema) = SchemaRequest::parse(&body)?;
    let found = call(&state, move |r| r.check(&subject, &version, kind, &schema)).await?;
    Ok(reply(incompatibilities(&found)))
}

async fn test_all(
    State(state): State<Arc<AppState>>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    let (kind, schema) = SchemaRequest::parse(&body)?;
    let found = call(&state, move |r| r.check_subject(&subject, kind, &schema)).await?;
    Ok(reply(incompatibilities(&found)))
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

fn parse_mode(body: &[u8]) -> Result<Compatibility, Refusal> {
    let invalid = |m: String| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, 42203, m);
    let r: ConfigRequest = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "the request body is not {{\"compatibility\": ...}}: {e}"
        ))
    })?;
    r.compatibility.parse().map_err(invalid)
}

/// The mode of a subject (its own, else the global one, as Confluent's `defaultToGlobal=true`),
/// or without one the global mode.
async fn get_config(State(state): State<Arc<AppState>>, subject: Option<Path<String>>) -> Answer {
    let subject = subject.map(|Path(s)| s);
    let mode = call(&state, move |r| Ok(r.compatibility(subject.as_deref()))).await?;
    Ok(reply(json!({"compatibilityLevel": mode.name()})))
}

async fn set_config(
    State(state): State<Arc<AppState>>,
    subject: Option<Path<String>>,
    body: Bytes,
) -> Answer {
    let mode = parse_mode(&body)?;
    let subject = subject.map(|Path(s)| s);
    call(&state, move |r| {
        r.set_compatibility(subject.as_deref(), Some(mode))
    })
    .await?;
    Ok(reply(json!({"compatibility": mode.name()})))
}

async fn delete_subject_config(
    State(state): State<Arc<AppState>>,
    Path(subject): Path<String>,
) -> Answer {
    let before = call(&state, move |r| {
        if !r.has_own_compatibility(&subject) {
            return Err(RegistryError::SubjectNotFound(subject));
        }
        let before = r.compatibility(Some(&subject));
        r.set_compatibility(Some(&subject), None)?;
        Ok(before)
    })
    .await?;
    Ok(reply(json!({"compatibilityLevel": before.name()})))
}

#[cfg(test)]
mod subject_tests {
    #[test]
    fn subjects_with_traversal_nul_or_too_long_are_refused() {
        for bad in ["", "..", "a/../b", "a/b", "a\0b", "x\u{1}"] {
            assert!(super::check_subject(bad).is_err(), "{bad:?}");
        }
        assert!(super::check_subject(&"s".repeat(250)).is_err());
        for good in ["orders-value", "com.example.Order", "web_events"] {
            assert!(super::check_subject(good).is_ok(), "{good}");
        }
    }
}
