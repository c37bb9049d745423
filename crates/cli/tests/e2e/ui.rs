//! The web UI through the real binary: its assets and endpoints over HTTP, then the issue's
//! scenarios in a real headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from `ui/node_modules`), which saves screenshots under `target/ui-screenshots/`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent, get, post, Server, NDJSON, TOKEN};
use serde_json::{json, Value};

fn ui_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui")
}

fn plain_server(dir: &std::path::Path) -> Running {
    Running(Some(Server::start_with(
        dir,
        "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.main]\n",
    )))
}

fn send(server: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let url = format!("{}{path}", server.url);
    let json = ("Content-Type", "application/json");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut resp = match method {
        "POST" => agent().post(&url).header(json.0, json.1).send(&body),
        "PUT" => agent().put(&url).header(json.0, json.1).send(&body),
        "DELETE" => agent().delete(&url).call(),
        _ => agent().get(&url).call(),
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn the_page_and_its_assets_are_served_with_their_content_types() {
    let dir = tempfile::tempdir().unwrap();
    let server = plain_server(dir.path());
    let mut page = agent().get(format!("{}/", server.url)).call().unwrap();
    assert_eq!(page.status(), 200);
    let kind = page.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(kind, "text/html; charset=utf-8");
    let html = page.body_mut().read_to_string().unwrap();
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    assert!(script.starts_with("/assets/"), "{html}");
    let asset = agent()
        .get(format!("{}{script}", server.url))
        .call()
        .unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["content-type"].to_str().unwrap(),
        "text/javascript; charset=utf-8"
    );
    let (missing, _) = get(&server, "/assets/nothing-here.js", &[]);
    assert_eq!(missing, 404);
    server.stop();
}

#[test]
fn the_syntax_check_places_an_error_at_its_column() {
    let dir = tempfile::tempdir().unwrap();
    let server = plain_server(dir.path());
    let check = |q: &str| {
        post(
            &server,
            "/api/v1/query/check",
            &[],
            json!({ "query": q }).to_string().as_bytes(),
        )
    };
    assert_eq!(check("error | count()"), (200, json!({"ok": true})));
    let (status, v) = check("error | cuont()");
    assert_eq!(status, 200);
    assert_eq!(
        (&v["ok"], &v["column"], &v["from"], &v["to"]),
        (&json!(false), &json!(9), &json!(8), &json!(13))
    );
    let (status, v) = check(&"x".repeat(70_000));
    assert_eq!(status, 400, "{v}");
    let (status, _) = post(&server, "/api/v1/query/check", &[], b"{\"q\": 1}");
    assert_eq!(status, 400);
    server.stop();
}

#[test]
fn dashboards_and_saved_searches_round_trip_as_json_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = plain_server(dir.path());
    let dashboard = json!({"name": "ops", "start": "1h", "widgets": [
        {"title": "errors", "kind": "single", "repository": "main", "query": "error | count()", "live": true},
        {"title": "rate", "kind": "line", "repository": "main", "query": "timechart(span=1m)", "refresh": "30s"},
    ]});
    let (status, created) = send(&server, "POST", "/api/v1/dashboards", Some(&dashboard));
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    // Export, rename, import the export as a second one.
    let (_, exported) = send(&server, "GET", &format!("/api/v1/dashboards/{id}"), None);
    let mut with_defaults = dashboard.clone();
    with_defaults["widgets"][1]["live"] = json!(false);
    assert_eq!(exported, with_defaults);
    let mut renamed = exported.clone();
    renamed["name"] = json!("ops (renamed)");
    let (status, _) = send(
        &server,
        "PUT",
        &format!("/api/v1/dashboards/{id}"),
        Some(&renamed),
    );
    assert_eq!(status, 200);
    let (status, imported) = send(&server, "POST", "/api/v1/dashboards", Some(&exported));
    assert_eq!(status, 201);
    let (status, _) = send(
        &server,
        "DELETE",
        &format!("/api/v1/dashboards/{}", imported["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 204);
    // A bad widget query is refused, saying where.
    let mut bad = dashboard.clone();
    bad["widgets"][1]["query"] = json!("timechart(span=1m) | cuont()");
    let (status, why) = send(&server, "POST", "/api/v1/dashboards", Some(&bad));
    assert_eq!(status, 400);
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("widgets[1].query: line 1, column 22: unknown function cuont"),
        "{why}"
    );
    let search =
        json!({"name": "errors", "repository": "main", "query": "level=ERROR", "start": "15m"});
    let (status, _) = send(&server, "POST", "/api/v1/searches", Some(&search));
    assert_eq!(status, 201);
    server.stop();

    let server = plain_server(dir.path());
    let (_, list) = send(&server, "GET", "/api/v1/dashboards", None);
    assert_eq!(
        list["items"],
        json!([{"id": id, "name": "ops (renamed)", "widgets": 2}])
    );
    let (_, searches) = send(&server, "GET", "/api/v1/searches", None);
    assert_eq!(searches["items"][0]["query"], json!("level=ERROR"));
    server.stop();
}

#[test]
fn documents_need_a_token_once_tokens_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running(Some(Server::start(dir.path(), "")));
    let (status, _) = get(&server, "/api/v1/dashboards", &[]);
    assert_eq!(status, 401);
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = get(&server, "/api/v1/dashboards", &[("Authorization", &auth)]);
    assert_eq!((status, body), (200, json!({"items": []})));
    server.stop();
}

/// The events the browser test searches: `EVENTS` over the last 17 minutes, every fourth of
/// service `checkout`, every tenth at level `ERROR`.
const EVENTS: i64 = 2000;

fn generated_events() -> String {
    let now = eddy_event::time::now_ns();
    (0..EVENTS)
        .map(|i| {
            let latency = (i * 37) % 900 + 1;
            let level = if i % 10 == 0 {
                "ERROR"
            } else if i % 3 == 0 {
                "WARN"
            } else {
                "INFO"
            };
            let service = ["checkout", "search", "auth", "billing"][(i % 4) as usize];
            let status = [200, 200, 200, 404, 500][(i % 5) as usize];
            let event = json!({
                "@timestamp": eddy_event::units::format_time(now - (EVENTS - i) * 500_000_000),
                "service": service,
                "level": level,
                "host": format!("web-{}", i % 5),
                "status": status,
                "latency_ms": latency,
                "message": format!("GET /api/item/{i} took {latency}ms"),
            });
            format!("{event}\n")
        })
        .collect()
}

/// A server killed if the test fails before stopping it (no orphan `eddy serve` left behind).
struct Running(Option<Server>);

impl Running {
    fn stop(mut self) {
        if let Some(server) = self.0.take() {
            server.stop();
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Server;
    fn deref(&self) -> &Server {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut server) = self.0.take() {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }
}

/// Why the browser test cannot run here, and the command that fixes it.
fn browser_missing() -> Option<String> {
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        return Some(
            "/usr/bin/chromium is missing: run `bench/setup.sh` (it runs `apt-get install chromium`)"
                .into(),
        );
    }
    if !ui_dir().join("node_modules/playwright-core").is_dir() {
        return Some(
            "ui/node_modules is missing: run `bench/setup.sh` (it runs `npm ci` in ui/)".into(),
        );
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is missing: run `bench/setup.sh` (it installs nodejs and npm)".into());
    }
    None
}

#[test]
fn the_ui_passes_the_issues_scenarios_in_headless_chromium() {
    if let Some(why) = browser_missing() {
        panic!("the browser test cannot run: {why}");
    }
    let dir = tempfile::tempdir().unwrap();
    // What the repositories page lists: two repositories, a pipeline between them, a subject
    // with two versions.
    let server = Running(Some(Server::start_with(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\n[repositories.main]\n[repositories.errors]\n\
         [pipelines.errors]\nfrom = \"main\"\nquery = \"level=ERROR\"\nstart = \"beginning\"\n\
         [[pipelines.errors.sinks]]\nrepository = \"errors\"\n",
    )));
    let (status, body) = post(
        &server,
        "/api/v1/ingest/main",
        &[NDJSON],
        generated_events().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    for fields in [
        r#"[{"name": "id", "type": "long"}]"#,
        r#"[{"name": "id", "type": "long"}, {"name": "total", "type": "double", "default": 0}]"#,
    ] {
        let schema = format!(r#"{{"type": "record", "name": "Order", "fields": {fields}}}"#);
        let (status, body) = post(
            &server,
            "/api/v1/registry/subjects/orders-value/versions",
            &[("Content-Type", "application/json")],
            json!({ "schema": schema }).to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
    }
    let expect = json!({
        "repository": "main",
        "range": "1h",
        "events": EVENTS,
        "checkout": EVENTS / 4,
        "checkoutErrors": EVENTS / 20,
        "subject": "orders-value",
        "pipeline": "errors",
    });
    // target/ui-screenshots, beside target/tmp.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots");
    // A second server whose repositories need tokens.
    let secure_dir = tempfile::tempdir().unwrap();
    let secure = Running(Some(Server::start(secure_dir.path(), "")));
    let mut child = Command::new("node")
        .arg(ui_dir().join("e2e/browser.mjs"))
        .arg(&server.url)
        .arg(&shots)
        .arg(expect.to_string())
        .arg(&secure.url)
        .arg(TOKEN)
        .current_dir(ui_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard only: the script takes seconds.
    let deadline = Instant::now() + Duration::from_secs(110);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    server.stop();
    secure.stop();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("the browser test failed ({s}):\n{stdout}\n{stderr}"),
        None => panic!("the browser test hung past 110 s:\n{stdout}\n{stderr}"),
    }
    for shot in [
        "search.png",
        "fields-sidebar.png",
        "live-tail.png",
        "dashboard.png",
        "repositories.png",
    ] {
        assert!(shots.join(shot).is_file(), "no screenshot {shot}");
    }
}
