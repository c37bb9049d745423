//! Who may call what: every route of the server × every kind of caller, in one table, against
//! the real binary with tokens made by `eddy token create`. The router's own list of routes
//! (`eddy_server::routes`) must equal its access rules (`eddy_server::access::RULES`) and the
//! table's rows, so a new route fails this test until its rule and row are written. Then the audit: the test's admin actions and
//! refused requests are events of `_audit`, with token ids and without any secret.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeSet;

use common::{agent, post, wait_for, Server};
use serde_json::{json, Value};

/// The callers, in the order of each row's letters.
const CALLERS: [&str; 7] = [
    "no token",
    "wrong token",
    "expired token",
    "ingest:web",
    "read:web",
    "metrics",
    "admin",
];

/// Per route, what each caller gets: `Y` passes the check (the handler answers, whatever it
/// says), `U` is 401, `F` is 403.
const PUBLIC: &str = "YYYYYYY";
const METRICS: &str = "UFUFFYY";
const ADMIN: &str = "UFUFFFY";
const KNOWN: &str = "UFUYYYY";
const READ: &str = "UFUFYFY";
const INGEST: &str = "UFUYFFF";

/// (method, route, the path requested, expected per caller).
const MATRIX: &[(&str, &str, &str, &str)] = &[
    ("GET", "/health", "/health", PUBLIC),
    ("GET", "/ready", "/ready", PUBLIC),
    ("GET", "/", "/", PUBLIC),
    ("GET", "/assets/{*path}", "/assets/none.js", PUBLIC),
    ("GET", "/metrics", "/metrics", METRICS),
    (
        "POST",
        "/api/v1/ingest/{repository}",
        "/api/v1/ingest/web",
        INGEST,
    ),
    ("GET", "/api/v1/repositories", "/api/v1/repositories", ADMIN),
    (
        "POST",
        "/api/v1/repositories",
        "/api/v1/repositories",
        ADMIN,
    ),
    (
        "GET",
        "/api/v1/repositories/{name}",
        "/api/v1/repositories/web",
        ADMIN,
    ),
    // The old events endpoint: ingest tokens no longer read (issue 26).
    (
        "GET",
        "/api/v1/repositories/{name}/events",
        "/api/v1/repositories/web/events",
        READ,
    ),
    (
        "POST",
        "/api/v1/repositories/{name}/query",
        "/api/v1/repositories/web/query",
        READ,
    ),
    (
        "POST",
        "/api/v1/repositories/{name}/query/partial",
        "/api/v1/repositories/web/query/partial",
        READ,
    ),
    (
        "GET",
        "/api/v1/repositories/{name}/fields",
        "/api/v1/repositories/web/fields",
        READ,
    ),
    (
        "GET",
        "/api/v1/repositories/{name}/live",
        "/api/v1/repositories/web/live",
        READ,
    ),
    (
        "GET",
        "/api/v1/channels/{name}",
        "/api/v1/channels/c",
        ADMIN,
    ),
    (
        "GET",
        "/api/v1/cluster/nodes",
        "/api/v1/cluster/nodes",
        ADMIN,
    ),
    (
        "DELETE",
        "/api/v1/cluster/nodes/{name}",
        "/api/v1/cluster/nodes/gone",
        ADMIN,
    ),
    ("GET", "/api/v1/tokens", "/api/v1/tokens", ADMIN),
    ("POST", "/api/v1/tokens", "/api/v1/tokens", ADMIN),
    (
        "DELETE",
        "/api/v1/tokens/{id}",
        "/api/v1/tokens/tok_none",
        ADMIN,
    ),
    ("GET", "/api/v1/pipelines", "/api/v1/pipelines", ADMIN),
    ("POST", "/api/v1/pipelines", "/api/v1/pipelines", ADMIN),
    (
        "GET",
        "/api/v1/pipelines/{name}",
        "/api/v1/pipelines/none",
        ADMIN,
    ),
    (
        "DELETE",
        "/api/v1/pipelines/{name}",
        "/api/v1/pipelines/none",
        ADMIN,
    ),
    ("GET", "/api/v1/alerts", "/api/v1/alerts", ADMIN),
    ("POST", "/api/v1/alerts", "/api/v1/alerts", ADMIN),
    ("GET", "/api/v1/alerts/{name}", "/api/v1/alerts/none", ADMIN),
    (
        "DELETE",
        "/api/v1/alerts/{name}",
        "/api/v1/alerts/none",
        ADMIN,
    ),
    (
        "POST",
        "/api/v1/alerts/{name}/test",
        "/api/v1/alerts/none/test",
        ADMIN,
    ),
    ("GET", "/api/v1/silences", "/api/v1/silences", ADMIN),
    ("POST", "/api/v1/silences", "/api/v1/silences", ADMIN),
    (
        "GET",
        "/api/v1/notification-groups",
        "/api/v1/notification-groups",
        ADMIN,
    ),
    (
        "DELETE",
        "/api/v1/silences/{id}",
        "/api/v1/silences/none",
        ADMIN,
    ),
    ("POST", "/api/v1/query/check", "/api/v1/query/check", KNOWN),
    ("GET", "/api/v1/dashboards", "/api/v1/dashboards", READ),
    ("POST", "/api/v1/dashboards", "/api/v1/dashboards", READ),
    (
        "GET",
        "/api/v1/dashboards/{id}",
        "/api/v1/dashboards/none",
        READ,
    ),
    (
        "PUT",
        "/api/v1/dashboards/{id}",
        "/api/v1/dashboards/none",
        READ,
    ),
    (
        "DELETE",
        "/api/v1/dashboards/{id}",
        "/api/v1/dashboards/none",
        READ,
    ),
    ("GET", "/api/v1/searches", "/api/v1/searches", READ),
    ("POST", "/api/v1/searches", "/api/v1/searches", READ),
    (
        "GET",
        "/api/v1/searches/{id}",
        "/api/v1/searches/none",
        READ,
    ),
    (
        "PUT",
        "/api/v1/searches/{id}",
        "/api/v1/searches/none",
        READ,
    ),
    (
        "DELETE",
        "/api/v1/searches/{id}",
        "/api/v1/searches/none",
        READ,
    ),
    ("GET", "/api/v1/registry/", "/api/v1/registry/", PUBLIC),
    (
        "GET",
        "/api/v1/registry/schemas/types",
        "/api/v1/registry/schemas/types",
        PUBLIC,
    ),
    (
        "GET",
        "/api/v1/registry/subjects",
        "/api/v1/registry/subjects",
        KNOWN,
    ),
    (
        "POST",
        "/api/v1/registry/subjects/{subject}",
        "/api/v1/registry/subjects/s",
        KNOWN,
    ),
    (
        "DELETE",
        "/api/v1/registry/subjects/{subject}",
        "/api/v1/registry/subjects/s",
        ADMIN,
    ),
    (
        "GET",
        "/api/v1/registry/subjects/{subject}/versions",
        "/api/v1/registry/subjects/s/versions",
        KNOWN,
    ),
    (
        "POST",
        "/api/v1/registry/subjects/{subject}/versions",
        "/api/v1/registry/subjects/s/versions",
        ADMIN,
    ),
    (
        "GET",
        "/api/v1/registry/subjects/{subject}/versions/{version}",
        "/api/v1/registry/subjects/s/versions/1",
        KNOWN,
    ),
    (
        "DELETE",
        "/api/v1/registry/subjects/{subject}/versions/{version}",
        "/api/v1/registry/subjects/s/versions/1",
        ADMIN,
    ),
    (
        "GET",
        "/api/v1/registry/subjects/{subject}/versions/{version}/schema",
        "/api/v1/registry/subjects/s/versions/1/schema",
        KNOWN,
    ),
    (
        "GET",
        "/api/v1/registry/schemas/ids/{id}",
        "/api/v1/registry/schemas/ids/1",
        KNOWN,
    ),
    (
        "GET",
        "/api/v1/registry/schemas/ids/{id}/schema",
        "/api/v1/registry/schemas/ids/1/schema",
        KNOWN,
    ),
    (
        "POST",
        "/api/v1/registry/compatibility/subjects/{subject}/versions",
        "/api/v1/registry/compatibility/subjects/s/versions",
        KNOWN,
    ),
    (
        "POST",
        "/api/v1/registry/compatibility/subjects/{subject}/versions/{version}",
        "/api/v1/registry/compatibility/subjects/s/versions/1",
        KNOWN,
    ),
    (
        "GET",
        "/api/v1/registry/config",
        "/api/v1/registry/config",
        KNOWN,
    ),
    (
        "PUT",
        "/api/v1/registry/config",
        "/api/v1/registry/config",
        ADMIN,
    ),
    (
        "GET",
        "/api/v1/registry/config/{subject}",
        "/api/v1/registry/config/s",
        KNOWN,
    ),
    (
        "PUT",
        "/api/v1/registry/config/{subject}",
        "/api/v1/registry/config/s",
        ADMIN,
    ),
    (
        "DELETE",
        "/api/v1/registry/config/{subject}",
        "/api/v1/registry/config/s",
        ADMIN,
    ),
    ("POST", "/v1/logs", "/v1/logs", INGEST),
    ("POST", "/v1/metrics", "/v1/metrics", INGEST),
    ("POST", "/_bulk", "/_bulk", INGEST),
    ("PUT", "/_bulk", "/_bulk", INGEST),
    ("POST", "/{index}/_bulk", "/web/_bulk", INGEST),
    ("PUT", "/{index}/_bulk", "/web/_bulk", INGEST),
    ("POST", "/elastic/_bulk", "/elastic/_bulk", INGEST),
    ("PUT", "/elastic/_bulk", "/elastic/_bulk", INGEST),
    (
        "POST",
        "/elastic/{index}/_bulk",
        "/elastic/web/_bulk",
        INGEST,
    ),
    (
        "PUT",
        "/elastic/{index}/_bulk",
        "/elastic/web/_bulk",
        INGEST,
    ),
    ("GET", "/elastic", "/elastic", PUBLIC),
    ("GET", "/elastic/", "/elastic/", PUBLIC),
    ("GET", "/elastic/_license", "/elastic/_license", PUBLIC),
    ("GET", "/elastic/_xpack", "/elastic/_xpack", PUBLIC),
    (
        "GET",
        "/elastic/_cluster/health",
        "/elastic/_cluster/health",
        PUBLIC,
    ),
    (
        "GET",
        "/elastic/_index_template/{name}",
        "/elastic/_index_template/t",
        PUBLIC,
    ),
    (
        "PUT",
        "/elastic/_index_template/{name}",
        "/elastic/_index_template/t",
        PUBLIC,
    ),
    (
        "POST",
        "/elastic/_index_template/{name}",
        "/elastic/_index_template/t",
        PUBLIC,
    ),
    (
        "GET",
        "/elastic/_template/{name}",
        "/elastic/_template/t",
        PUBLIC,
    ),
    (
        "PUT",
        "/elastic/_template/{name}",
        "/elastic/_template/t",
        PUBLIC,
    ),
    (
        "POST",
        "/elastic/_template/{name}",
        "/elastic/_template/t",
        PUBLIC,
    ),
    (
        "GET",
        "/elastic/_ilm/policy/{name}",
        "/elastic/_ilm/policy/t",
        PUBLIC,
    ),
    (
        "PUT",
        "/elastic/_ilm/policy/{name}",
        "/elastic/_ilm/policy/t",
        PUBLIC,
    ),
    (
        "POST",
        "/elastic/_ilm/policy/{name}",
        "/elastic/_ilm/policy/t",
        PUBLIC,
    ),
    (
        "GET",
        "/elastic/_ingest/pipeline/{name}",
        "/elastic/_ingest/pipeline/t",
        PUBLIC,
    ),
    (
        "PUT",
        "/elastic/_ingest/pipeline/{name}",
        "/elastic/_ingest/pipeline/t",
        PUBLIC,
    ),
    (
        "POST",
        "/elastic/_ingest/pipeline/{name}",
        "/elastic/_ingest/pipeline/t",
        PUBLIC,
    ),
    (
        "GET",
        "/elastic/_data_stream/{name}",
        "/elastic/_data_stream/t",
        PUBLIC,
    ),
    (
        "PUT",
        "/elastic/_data_stream/{name}",
        "/elastic/_data_stream/t",
        PUBLIC,
    ),
    (
        "POST",
        "/elastic/_data_stream/{name}",
        "/elastic/_data_stream/t",
        PUBLIC,
    ),
    ("POST", "/loki/api/v1/push", "/loki/api/v1/push", INGEST),
    ("POST", "/api/v2/write", "/api/v2/write", INGEST),
    ("POST", "/write", "/write", INGEST),
    ("POST", "/services/collector", "/services/collector", INGEST),
    (
        "POST",
        "/services/collector/event",
        "/services/collector/event",
        INGEST,
    ),
    (
        "POST",
        "/services/collector/event/1.0",
        "/services/collector/event/1.0",
        INGEST,
    ),
    (
        "POST",
        "/services/collector/raw",
        "/services/collector/raw",
        INGEST,
    ),
    (
        "POST",
        "/services/collector/raw/1.0",
        "/services/collector/raw/1.0",
        INGEST,
    ),
    (
        "GET",
        "/services/collector/health",
        "/services/collector/health",
        PUBLIC,
    ),
];

const CONFIG: &str = "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.web]\n[repositories.other]\n\
     [doors.otlp]\nenabled = true\nrepository = \"web\"\n[doors.elastic]\nenabled = true\nrepository = \"web\"\n\
     [doors.loki]\nenabled = true\nrepository = \"web\"\n[doors.influx]\nenabled = true\nrepository = \"web\"\n\
     [doors.hec]\nenabled = true\nrepository = \"web\"\n";

/// `eddy token create` with `args`, as `admin` (none: the server has no token yet); the
/// created token as JSON.
fn create_token(server: &Server, admin: Option<&str>, args: &[&str]) -> Value {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.args(["token", "create", "--json", "--url", &server.url]);
    if let Some(t) = admin {
        command.args(["--token", t]);
    }
    let out = command.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The status of `method path` sent with `token`.
fn status(server: &Server, method: &str, path: &str, token: Option<&str>) -> u16 {
    let url = format!("{}{path}", server.url);
    let auth = token.map(|t| format!("Bearer {t}"));
    let agent = agent();
    macro_rules! with_auth {
        ($req:expr) => {{
            let mut req = $req;
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req
        }};
    }
    let resp = match method {
        "GET" => with_auth!(agent.get(&url)).call(),
        "DELETE" => with_auth!(agent.delete(&url)).call(),
        "POST" => with_auth!(agent.post(&url)).send(&b""[..]),
        "PUT" => with_auth!(agent.put(&url)).send(&b""[..]),
        other => panic!("no method {other} in the matrix"),
    };
    resp.unwrap().status().as_u16()
}

#[test]
fn every_route_answers_each_caller_as_its_row_says_and_the_audit_keeps_who_did_what() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), CONFIG);

    // Every route the router has (built from the test's config, every door on) has an access
    // rule and a row, and no rule or row is for a route that is not.
    let config = eddy_server::config::Config::parse(CONFIG).unwrap();
    let routes: BTreeSet<(String, String)> = eddy_server::routes(&config.doors)
        .listed()
        .iter()
        .map(|(m, p)| (m.to_string(), p.clone()))
        .collect();
    let rules: BTreeSet<(String, String)> = eddy_server::access::RULES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        routes.difference(&rules).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes of the router without an access rule (access::RULES)"
    );
    assert_eq!(
        rules.difference(&routes).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "access rules for routes the router does not have"
    );
    let rows: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(rows.len(), MATRIX.len(), "a route has two rows");
    let missing: Vec<_> = rules.difference(&rows).collect();
    let extra: Vec<_> = rows.difference(&rules).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in MATRIX: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "rows for routes the router does not have: {extra:?}"
    );

    // No token exists: none is needed, so the first admin token is made without one.
    let admin = create_token(
        &server,
        None,
        &["--scope", "admin", "--name", "first admin"],
    );
    let admin_secret = admin["secret"].as_str().unwrap().to_string();
    assert!(admin_secret.starts_with("eddy_"), "{admin}");
    let make = |scope: &str, extra: &[&str]| {
        let mut args = vec!["--scope", scope];
        args.extend_from_slice(extra);
        create_token(&server, Some(&admin_secret), &args)
    };
    let expired = make("*", &["--expires", "1s"]);
    let ingest = make("ingest:web", &[]);
    let read = make("read:web", &[]);
    let metrics = make("metrics", &["--name", "prometheus"]);
    let secret = |t: &Value| t["secret"].as_str().unwrap().to_string();
    let expired_secret = secret(&expired);
    // The expired token works until it expires, then gets 401.
    wait_for("the token to expire", || {
        (status(&server, "GET", "/api/v1/tokens", Some(&expired_secret)) == 401).then_some(())
    });
    let tokens: [Option<String>; 7] = [
        None,
        Some("eddy_not-a-token-anyone-made".into()),
        Some(expired_secret.clone()),
        Some(secret(&ingest)),
        Some(secret(&read)),
        Some(secret(&metrics)),
        Some(admin_secret.clone()),
    ];

    let mut wrong = Vec::new();
    for (method, route, path, expected) in MATRIX {
        for ((caller, token), want) in CALLERS.iter().zip(&tokens).zip(expected.chars()) {
            let got = status(&server, method, path, token.as_deref());
            let ok = match want {
                'U' => got == 401,
                'F' => got == 403,
                _ => ![401, 403, 500].contains(&got),
            };
            if !ok {
                wrong.push(format!(
                    "{method} {route} as {caller}: {got}, expected {want}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // The admin actions of this test, then the audit.
    let auth = format!("Bearer {admin_secret}");
    let (code, _) = post(
        &server,
        "/api/v1/repositories",
        &[("Authorization", &auth)],
        br#"{"name":"made"}"#,
    );
    assert_eq!(code, 201);
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["token", "revoke", ingest["id"].as_str().unwrap()])
        .args(["--url", &server.url, "--token", &admin_secret])
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    assert_eq!(
        status(
            &server,
            "POST",
            "/api/v1/ingest/web",
            Some(&secret(&ingest))
        ),
        403,
        "a revoked token stops working"
    );
    let audit = wait_for("the audit to hold the test's actions", || {
        let (code, answer) = post(
            &server,
            "/api/v1/repositories/_audit/query",
            &[("Authorization", &auth)],
            json!({"query": "*", "start": "1h", "limit": 10000})
                .to_string()
                .as_bytes(),
        );
        if code != 200 {
            return None;
        }
        let events = answer["rows"].as_array()?.clone();
        let has = |action: &str, target: &str| {
            events.iter().any(|e| {
                e["action"] == json!(action)
                    && e["target"] == json!(target)
                    && e["actor"] == admin["id"]
            })
        };
        (has("token.create", read["id"].as_str()?)
            && has("token.revoke", ingest["id"].as_str()?)
            && has("repository.create", "made")
            && events
                .iter()
                .any(|e| e.to_string().contains("auth.refused")))
        .then_some(events)
    });
    let text = serde_json::to_string(&audit).unwrap();
    for t in tokens.iter().flatten() {
        assert!(!text.contains(t.as_str()), "a secret in the audit");
    }
    assert!(
        text.contains(expired["id"].as_str().unwrap()),
        "the expired token's refusals name its id"
    );
    server.stop();
}

#[test]
fn a_token_past_its_request_rate_gets_429_with_retry_after_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), CONFIG);
    let admin = create_token(&server, None, &["--scope", "admin"]);
    let admin_secret = admin["secret"].as_str().unwrap().to_string();
    // One request per 1000 s: the first passes, the next waits for a refill that will not
    // come during the test.
    let slow = create_token(
        &server,
        Some(&admin_secret),
        &["--scope", "ingest:web", "--requests-per-second", "0.001"],
    );
    let auth = format!("Bearer {}", slow["secret"].as_str().unwrap());
    let url = format!("{}/api/v1/ingest/web", server.url);
    let send = || {
        agent()
            .post(&url)
            .header("Authorization", &auth)
            .send(&b"{\"a\":1}\n"[..])
            .unwrap()
    };
    assert_eq!(send().status().as_u16(), 200);
    let refused = send();
    assert_eq!(refused.status().as_u16(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let id = slow["id"].as_str().unwrap();
    let series = format!("eddy_limited_total{{token=\"{id}\",limit=\"requests\"}}");
    let metrics = agent()
        .get(format!("{}/metrics", server.url))
        .header("Authorization", &format!("Bearer {admin_secret}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains(&format!("{series} 1")),
        "{series} not in\n{metrics}"
    );
    server.stop();
}
