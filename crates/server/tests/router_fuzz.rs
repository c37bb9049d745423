//! Fuzzed requests against the whole router, in process: paths made of route pieces and
//! hostile ones (`..`, `%2e%2e`, `%00`, very long names), every method, bodies of random bytes
//! or broken JSON, with and without tokens. Never a panic, never a `500`: bad input is the
//! client's error.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-admin-token-0123456789";

/// One server for every case: its data directory, a runtime and the router.
fn server() -> &'static (tempfile::TempDir, tokio::runtime::Runtime, axum::Router) {
    static SERVER: std::sync::OnceLock<(tempfile::TempDir, tokio::runtime::Runtime, axum::Router)> =
        std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let router = runtime.block_on(async { router(dir.path()) });
        (dir, runtime, router)
    })
}

fn router(dir: &std::path::Path) -> axum::Router {
    let text = format!(
        "data_dir = {:?}\n[http]\nadmin_tokens = [\"{TOKEN}\"]\n[repositories.main]\n[repositories.web]\n\
         [doors.otlp]\nenabled = true\n[doors.elastic]\nenabled = true\n[doors.loki]\nenabled = true\n\
         [doors.influx]\nenabled = true\n[doors.hec]\nenabled = true\n",
        dir.join("data")
    );
    let config = eddy_server::Config::parse(&text).unwrap();
    let state = Arc::new(eddy_server::open(config).unwrap());
    eddy_server::router(state)
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "api",
            "v1",
            "ingest",
            "repositories",
            "main",
            "web",
            "events",
            "query",
            "fields",
            "live",
            "tokens",
            "pipelines",
            "alerts",
            "silences",
            "registry",
            "subjects",
            "versions",
            "schemas",
            "ids",
            "config",
            "dashboards",
            "searches",
            "_bulk",
            "elastic",
            "loki",
            "push",
            "write",
            "services",
            "collector",
            "raw",
            "event",
            "metrics",
            "..",
            "%2e%2e",
            "%2F",
            "%00",
            "_audit",
            "-1",
            "latest",
            "tok_000000000000",
            "",
            "assets",
        ])
        .prop_map(String::from),
        "[a-zA-Z0-9._~%-]{0,20}",
        Just("a".repeat(300)),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::sample::select(vec![
            r#"{"name":"x"}"#,
            r#"{"name":"../x"}"#,
            r#"{"name":"a\u0000b"}"#,
            r#"{"scopes":["admin"],"expires":"-1s"}"#,
            r#"{"scopes":["ingest:.."]}"#,
            r#"{"query":"count()","start":"nope"}"#,
            r#"{"schema":"{\"type\":\"record\"}"}"#,
            r#"{"scopes":[],"limits":{"requests_per_second":-1}}"#,
            "[",
            "null",
            "{}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn fuzzed_requests_never_panic_and_never_get_a_500(
        segments in prop::collection::vec(segment(), 0..7),
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
        body in body(),
        token in prop::sample::select(vec![None, Some(TOKEN), Some("eddy_wrong"), Some("")]),
        query in prop::sample::select(vec!["", "?start=nope", "?token=x&limit=-1", "?p=x", "?%zz"]),
    ) {
        let (_, runtime, router) = server();
        let status = runtime.block_on(async {
            let router = router.clone();
            let uri = format!("/{}{query}", segments.join("/"));
            let mut request = Request::builder().method(method).uri(&uri);
            if let Some(t) = token {
                request = request.header("Authorization", format!("Bearer {t}"));
            }
            match request.body(Body::from(body)) {
                // The client could not have sent it: not the router's concern.
                Err(_) => StatusCode::BAD_REQUEST,
                Ok(request) => router.oneshot(request).await.unwrap().status(),
            }
        });
        prop_assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
