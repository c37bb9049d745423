//! Who may call which route: [`RULES`], one row per method and route of the router, and the
//! guard that enforces them before any handler runs ([`guard`]). A route without a row is
//! refused (`500`, logged): a new route cannot be open by mistake. The scope-matrix test
//! compares this table with the router's own list of routes ([`crate::routes::Routes`]).
//!
//! The guard finds the caller ([`crate::auth::Auth::identify`]), asks [`AppState::check`]
//! for the route's [`Access`], applies the caller's limits ([`crate::limits`]) and records
//! the admin actions that change something in the audit ([`crate::audit`]). Protocol doors
//! learn their repository from the request and ask [`AppState::check`] themselves
//! ([`Access::Door`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{given_token, Caller, Need};
use crate::AppState;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, readiness, the web UI's static files, protocol handshakes.
    Public,
    /// The scope `metrics` (or `admin`).
    Metrics,
    /// The scope `admin`.
    Admin,
    /// Any valid token.
    Known,
    /// A `read:` scope of some repository (the web UI's documents).
    AnyRead,
    /// `read:<repo>`, the repository being this path parameter.
    Read(&'static str),
    /// `ingest:<repo>`, the repository being this path parameter.
    Ingest(&'static str),
    /// A protocol door: `ingest:<repo>` for the repository the request names, checked by
    /// the door.
    Door,
}

/// One route's rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The method (`HEAD` follows `GET`).
    pub method: &'static str,
    /// The route as the router writes it.
    pub path: &'static str,
    /// What it needs.
    pub access: Access,
    /// The audit's name for what it does, for routes that change something.
    pub audit: Option<&'static str>,
    /// A query parameter that may carry the token (websockets, which browsers open without
    /// headers; Influx 1.x's `p`).
    pub query_token: Option<&'static str>,
    /// It runs a historic query: the token's query-time limit applies.
    pub query_cost: bool,
}

const fn rule(method: &'static str, path: &'static str, access: Access) -> Rule {
    Rule {
        method,
        path,
        access,
        audit: None,
        query_token: None,
        query_cost: false,
    }
}

const fn audited(method: &'static str, path: &'static str, action: &'static str) -> Rule {
    Rule {
        method,
        path,
        access: Access::Admin,
        audit: Some(action),
        query_token: None,
        query_cost: false,
    }
}

const fn query(method: &'static str, path: &'static str) -> Rule {
    Rule {
        method,
        path,
        access: Access::Read("name"),
        audit: None,
        query_token: None,
        query_cost: true,
    }
}

const fn socket(path: &'static str, access: Access) -> Rule {
    Rule {
        method: "GET",
        path,
        access,
        audit: None,
        query_token: Some("token"),
        query_cost: false,
    }
}

use Access::*;

/// Every route of the router with what it needs.
pub const RULES: &[Rule] = &[
    rule("GET", "/health", Public),
    rule("GET", "/ready", Public),
    rule("GET", "/", Public),
    rule("GET", "/assets/{*path}", Public),
    rule("GET", "/metrics", Metrics),
    rule("POST", "/api/v1/ingest/{repository}", Ingest("repository")),
    rule("GET", "/api/v1/repositories", Admin),
    audited("POST", "/api/v1/repositories", "repository.create"),
    rule("GET", "/api/v1/repositories/{name}", Admin),
    query("GET", "/api/v1/repositories/{name}/events"),
    query("POST", "/api/v1/repositories/{name}/query"),
    query("POST", "/api/v1/repositories/{name}/query/partial"),
    query("GET", "/api/v1/repositories/{name}/fields"),
    socket("/api/v1/repositories/{name}/live", Read("name")),
    socket("/api/v1/channels/{name}", Admin),
    rule("GET", "/api/v1/cluster/nodes", Admin),
    audited("DELETE", "/api/v1/cluster/nodes/{name}", "node.forget"),
    rule("GET", "/api/v1/tokens", Admin),
    audited("POST", "/api/v1/tokens", "token.create"),
    audited("DELETE", "/api/v1/tokens/{id}", "token.revoke"),
    rule("GET", "/api/v1/pipelines", Admin),
    audited("POST", "/api/v1/pipelines", "pipeline.create"),
    rule("GET", "/api/v1/pipelines/{name}", Admin),
    audited("DELETE", "/api/v1/pipelines/{name}", "pipeline.delete"),
    rule("GET", "/api/v1/alerts", Admin),
    audited("POST", "/api/v1/alerts", "alert.create"),
    rule("GET", "/api/v1/alerts/{name}", Admin),
    audited("DELETE", "/api/v1/alerts/{name}", "alert.delete"),
    rule("POST", "/api/v1/alerts/{name}/test", Admin),
    rule("GET", "/api/v1/silences", Admin),
    rule("GET", "/api/v1/notification-groups", Admin),
    audited("POST", "/api/v1/silences", "silence.create"),
    audited("DELETE", "/api/v1/silences/{id}", "silence.delete"),
    rule("POST", "/api/v1/query/check", Known),
    rule("GET", "/api/v1/dashboards", AnyRead),
    rule("POST", "/api/v1/dashboards", AnyRead),
    rule("GET", "/api/v1/dashboards/{id}", AnyRead),
    rule("PUT", "/api/v1/dashboards/{id}", AnyRead),
    rule("DELETE", "/api/v1/dashboards/{id}", AnyRead),
    rule("GET", "/api/v1/searches", AnyRead),
    rule("POST", "/api/v1/searches", AnyRead),
    rule("GET", "/api/v1/searches/{id}", AnyRead),
    rule("PUT", "/api/v1/searches/{id}", AnyRead),
    rule("DELETE", "/api/v1/searches/{id}", AnyRead),
    // The schema registry: lookups for any token (producers resolve ids), changes for admin.
    rule("GET", "/api/v1/registry/", Public),
    rule("GET", "/api/v1/registry/schemas/types", Public),
    rule("GET", "/api/v1/registry/subjects", Known),
    rule("POST", "/api/v1/registry/subjects/{subject}", Known),
    audited(
        "DELETE",
        "/api/v1/registry/subjects/{subject}",
        "schema.delete",
    ),
    rule("GET", "/api/v1/registry/subjects/{subject}/versions", Known),
    audited(
        "POST",
        "/api/v1/registry/subjects/{subject}/versions",
        "schema.register",
    ),
    rule(
        "GET",
        "/api/v1/registry/subjects/{subject}/versions/{version}",
        Known,
    ),
    audited(
        "DELETE",
        "/api/v1/registry/subjects/{subject}/versions/{version}",
        "schema.delete",
    ),
    rule(
        "GET",
        "/api/v1/registry/subjects/{subject}/versions/{version}/schema",
        Known,
    ),
    rule("GET", "/api/v1/registry/schemas/ids/{id}", Known),
    rule("GET", "/api/v1/registry/schemas/ids/{id}/schema", Known),
    rule(
        "POST",
        "/api/v1/registry/compatibility/subjects/{subject}/versions",
        Known,
    ),
    rule(
        "POST",
        "/api/v1/registry/compatibility/subjects/{subject}/versions/{version}",
        Known,
    ),
    rule("GET", "/api/v1/registry/config", Known),
    audited("PUT", "/api/v1/registry/config", "schema.config"),
    rule("GET", "/api/v1/registry/config/{subject}", Known),
    audited("PUT", "/api/v1/registry/config/{subject}", "schema.config"),
    audited(
        "DELETE",
        "/api/v1/registry/config/{subject}",
        "schema.config",
    ),
    // Protocol doors (their routes exist only when enabled under [doors]).
    rule("POST", "/v1/logs", Door),
    rule("POST", "/v1/metrics", Door),
    rule("POST", "/_bulk", Door),
    rule("PUT", "/_bulk", Door),
    rule("POST", "/{index}/_bulk", Door),
    rule("PUT", "/{index}/_bulk", Door),
    rule("POST", "/elastic/_bulk", Door),
    rule("PUT", "/elastic/_bulk", Door),
    rule("POST", "/elastic/{index}/_bulk", Door),
    rule("PUT", "/elastic/{index}/_bulk", Door),
    rule("GET", "/elastic", Public),
    rule("GET", "/elastic/", Public),
    rule("GET", "/elastic/_license", Public),
    rule("GET", "/elastic/_xpack", Public),
    rule("GET", "/elastic/_cluster/health", Public),
    rule("GET", "/elastic/_index_template/{name}", Public),
    rule("PUT", "/elastic/_index_template/{name}", Public),
    rule("POST", "/elastic/_index_template/{name}", Public),
    rule("GET", "/elastic/_template/{name}", Public),
    rule("PUT", "/elastic/_template/{name}", Public),
    rule("POST", "/elastic/_template/{name}", Public),
    rule("GET", "/elastic/_ilm/policy/{name}", Public),
    rule("PUT", "/elastic/_ilm/policy/{name}", Public),
    rule("POST", "/elastic/_ilm/policy/{name}", Public),
    rule("GET", "/elastic/_ingest/pipeline/{name}", Public),
    rule("PUT", "/elastic/_ingest/pipeline/{name}", Public),
    rule("POST", "/elastic/_ingest/pipeline/{name}", Public),
    rule("GET", "/elastic/_data_stream/{name}", Public),
    rule("PUT", "/elastic/_data_stream/{name}", Public),
    rule("POST", "/elastic/_data_stream/{name}", Public),
    rule("POST", "/loki/api/v1/push", Door),
    Rule {
        query_token: Some("p"),
        ..rule("POST", "/api/v2/write", Door)
    },
    Rule {
        query_token: Some("p"),
        ..rule("POST", "/write", Door)
    },
    rule("POST", "/services/collector", Door),
    rule("POST", "/services/collector/event", Door),
    rule("POST", "/services/collector/event/1.0", Door),
    rule("POST", "/services/collector/raw", Door),
    rule("POST", "/services/collector/raw/1.0", Door),
    rule("GET", "/services/collector/health", Public),
];

static BY_ROUTE: LazyLock<HashMap<(&'static str, &'static str), &'static Rule>> =
    LazyLock::new(|| RULES.iter().map(|r| ((r.method, r.path), r)).collect());

/// The rule of `method` on `path` (`HEAD` as `GET`).
pub fn rule_of(method: &Method, path: &str) -> Option<&'static Rule> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    BY_ROUTE.get(&(method, path)).copied()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_pairs(query?).find(|(k, _)| k == name).map(|(_, v)| v)
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
}

/// Middleware (a route layer: it runs once the route is known): the rule of the route, the
/// one check, the limits, the audit.
pub async fn guard(
    State(state): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let Some(path) = matched.as_ref().map(|m| m.as_str().to_string()) else {
        return next.run(request).await;
    };
    let Some(rule) = rule_of(&method, &path) else {
        if RULES.iter().any(|r| r.path == path) {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        tracing::error!(%method, route = %path, "a route without an access rule: refused");
        return crate::http::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{method} {path} has no access rule"),
        )
        .into_response();
    };
    if rule.access == Public {
        return next.run(request).await;
    }
    let given = given_token(request.headers()).or_else(|| {
        rule.query_token
            .and_then(|name| query_param(request.uri().query(), name))
    });
    let caller = Caller(state.auth.identify(given.as_deref()));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    };
    let route = format!("{method} {path}");
    let repo;
    let need = match rule.access {
        Public | Door => None,
        Metrics => Some(Need::Metrics),
        Admin => Some(Need::Admin),
        Known => Some(Need::Known),
        AnyRead => Some(Need::AnyRead),
        Read(p) => {
            repo = param(p);
            Some(Need::Read(&repo))
        }
        Ingest(p) => {
            repo = param(p);
            Some(Need::Ingest(&repo))
        }
    };
    let principal = match need {
        Some(need) => match state.check(&caller, need, &route) {
            Ok(p) => p,
            Err(r) => return answer(&path, r),
        },
        // A door checks once it knows the repository, with the caller found here; its limits
        // are those of whom it names.
        None => match &caller.0 {
            Ok(p) => p.clone(),
            Err(_) => {
                request.extensions_mut().insert(caller);
                return next.run(request).await;
            }
        },
    };
    if let Err(limited) = principal.limits.admit(rule.query_cost) {
        let r = crate::limits::refusal(&state.metrics.limits, &principal.id, limited);
        return answer(&path, r);
    }
    if principal.limits.limits_bytes() {
        let limits = principal.limits.clone();
        request = request.map(|body| {
            use http_body_util::BodyExt;
            Body::new(body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    limits.charge_bytes(data.len());
                }
                frame
            }))
        });
    }
    request.extensions_mut().insert(caller);
    let started = Instant::now();
    let response = next.run(request).await;
    if rule.query_cost {
        principal.limits.charge_query(started.elapsed());
    }
    if let Some(action) = rule.audit {
        let target = response
            .extensions()
            .get::<AuditTarget>()
            .map(|t| t.0.clone())
            .or_else(|| {
                let values: Vec<&str> = params.iter().map(|(_, v)| v).collect();
                (!values.is_empty()).then(|| values.join("/"))
            });
        state.audit.record(crate::audit::Entry {
            action,
            actor: &principal.id,
            status: response.status().as_u16(),
            method: method.as_str(),
            route: &path,
            target: target.as_deref(),
            reason: None,
        });
    }
    response
}

/// A refusal in the form of the route's API: the registry's is Confluent's
/// (`{"error_code", "message"}`), which its clients read.
fn answer(path: &str, r: crate::http::Reject) -> Response {
    if !path.starts_with("/api/v1/registry") {
        return r.into_response();
    }
    let status = r.status();
    let body = serde_json::json!({"error_code": status.as_u16(), "message": r.message()});
    let mut response = r.into_response();
    *response.body_mut() = Body::from(body.to_string());
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
    );
    response
}

/// What an audited action acted on, when the path does not say (a created token's id, a new
/// repository's name): a handler puts it in its response's extensions.
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// A `201` with `body`, its `name` or `id` the audit's target.
pub(crate) fn created(body: serde_json::Value) -> Response {
    let target = ["name", "id"]
        .iter()
        .find_map(|k| body[*k].as_str().map(str::to_string));
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Some(t) = target {
        response.extensions_mut().insert(AuditTarget(t));
    }
    response
}
