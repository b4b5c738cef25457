//! The locked-down API, in-process over the `FakeView` test double: bearer token on mutating
//! requests (403 without a configured token, 401 without / with a wrong one), retraining
//! only from the data directories (no `..`, no symlink out), body size and rate limits,
//! security headers, and `serve_on` refusing a non-loopback address without a token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use complaintflow::http::{self, ApiSecurity, ApiToken, DataDirs, HttpUiConfig};
use tower::ServiceExt;

#[allow(dead_code)]
#[path = "support/fake_view.rs"]
mod fake_view;

use fake_view::FakeView;

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: serde_json::Value,
}

impl Answer {
    fn error(&self) -> String {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("not a JSON error: {}", self.body))
            .to_string()
    }
}

fn cfg(token: Option<&str>, dirs: &[PathBuf], per_minute: u32) -> HttpUiConfig {
    HttpUiConfig {
        api: ApiSecurity {
            token: token.map(|t| ApiToken::new(t, "test").unwrap()),
            data_dirs: DataDirs::new(dirs, &[]).unwrap(),
            max_body_bytes: 4096,
            mutations_per_minute: per_minute,
        },
        ..HttpUiConfig::default()
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn retrain_req(auth: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post("/api/retrain").header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        r = r.header(header::AUTHORIZATION, a);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn path_body(p: &Path) -> String {
    serde_json::json!({ "path": p.to_str().unwrap() }).to_string()
}

/// A data directory with `train.json`, and an outside directory with `secret.json`.
struct Dirs {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    outside: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let outside = tmp.path().join("data2"); // shares a prefix with `data`, is not inside it
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(data.join("train.json"), "[]").unwrap();
    std::fs::write(outside.join("secret.json"), "[]").unwrap();
    Dirs {
        data: std::fs::canonicalize(&data).unwrap(),
        outside: std::fs::canonicalize(&outside).unwrap(),
        _tmp: tmp,
    }
}

#[tokio::test]
async fn without_a_configured_token_mutations_are_disabled_even_on_loopback() {
    let d = dirs();
    let view = Arc::new(FakeView::new());
    let (app, _) = http::app(view.clone(), cfg(None, std::slice::from_ref(&d.data), 30));
    for auth in [
        None,
        Some(bearer().as_str()),
        Some("Bearer anything-at-all-here"),
    ] {
        let a = call(
            &app,
            retrain_req(auth, &path_body(&d.data.join("train.json"))),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{auth:?}");
        assert!(
            a.error().contains("COMPLAINTFLOW_API_TOKEN"),
            "{}",
            a.error()
        );
    }
    assert!(view.calls().retrain.is_empty());
    // Reads stay open.
    let a = call(
        &app,
        Request::get("/api/models").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn a_post_without_the_token_is_401_and_with_it_202() {
    let d = dirs();
    let view = Arc::new(FakeView::new());
    let (app, _) = http::app(
        view.clone(),
        cfg(Some(TOKEN), std::slice::from_ref(&d.data), 30),
    );
    let body = path_body(&d.data.join("train.json"));
    let wrong = [
        None,
        Some("Bearer wrong-token-wrong-token".to_string()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(TOKEN.to_string()),
    ];
    for auth in &wrong {
        let a = call(&app, retrain_req(auth.as_deref(), &body)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(a.error().contains("Authorization: Bearer"), "{}", a.error());
        assert_eq!(
            a.headers.get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"complaintflow\""
        );
    }
    assert!(
        view.calls().retrain.is_empty(),
        "no refused request reaches the engine"
    );
    // Any other mutating method on any path needs the token too (401 before 404/405).
    for (m, p) in [
        ("PUT", "/api/models"),
        ("DELETE", "/api/retrain"),
        ("POST", "/nowhere"),
    ] {
        let r = Request::builder()
            .method(m)
            .uri(p)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            call(&app, r).await.status,
            StatusCode::UNAUTHORIZED,
            "{m} {p}"
        );
    }
    let a = call(&app, retrain_req(Some(&bearer()), &body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let a = call(&app, retrain_req(Some(&format!("bearer  {TOKEN} ")), &body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(view.calls().retrain.len(), 2);
    // With the token, a GET-only route answers a JSON 405.
    let r = Request::post("/api/models")
        .header(header::AUTHORIZATION, bearer())
        .body(Body::empty())
        .unwrap();
    let a = call(&app, r).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(a.error().contains("POST"));
}

#[tokio::test]
async fn retraining_reads_only_inside_the_data_directories() {
    let d = dirs();
    let view = Arc::new(FakeView::new());
    let (app, _) = http::app(
        view.clone(),
        cfg(Some(TOKEN), std::slice::from_ref(&d.data), 1000),
    );
    let post = |p: String| {
        let app = app.clone();
        async move {
            call(
                &app,
                retrain_req(
                    Some(&bearer()),
                    &serde_json::json!({ "path": p }).to_string(),
                ),
            )
            .await
        }
    };
    // The case.
    let a = post("/etc/passwd".into()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(
        a.error().contains("outside the data directories"),
        "{}",
        a.error()
    );
    // A sibling sharing the prefix, `..` out of the directory.
    for p in [
        d.outside.join("secret.json"),
        d.data.join("../data2/secret.json"),
        d.data.join("../../../../../../etc/passwd"),
    ] {
        let a = post(p.display().to_string()).await;
        assert_eq!(
            a.status,
            StatusCode::FORBIDDEN,
            "{}: {}",
            p.display(),
            a.body
        );
    }
    // A symlink inside the data directory that points out of it.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(d.outside.join("secret.json"), d.data.join("link.json"))
            .unwrap();
        std::os::unix::fs::symlink(&d.outside, d.data.join("sub")).unwrap();
        for p in [d.data.join("link.json"), d.data.join("sub/secret.json")] {
            let a = post(p.display().to_string()).await;
            assert_eq!(
                a.status,
                StatusCode::FORBIDDEN,
                "{}: {}",
                p.display(),
                a.body
            );
        }
        // A symlink that stays inside is fine, and the engine gets the canonical path.
        std::os::unix::fs::symlink(d.data.join("train.json"), d.data.join("alias.json")).unwrap();
        let a = post(d.data.join("alias.json").display().to_string()).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    }
    // Missing file, a directory: 400.
    let a = post(d.data.join("missing.json").display().to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("no such file"), "{}", a.error());
    let a = post(d.data.display().to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("not a regular file"), "{}", a.error());
    // `..` that comes back inside is accepted as its canonical path.
    let a = post(d.data.join("../data/train.json").display().to_string()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let want = d.data.join("train.json").display().to_string();
    let calls = view.calls().retrain;
    assert!(!calls.is_empty());
    assert!(
        calls.iter().all(|r| r.path == want),
        "the engine only ever sees the canonical path: {calls:?}"
    );
    // No data directory at all: every path refused.
    let (app2, _) = http::app(view.clone(), cfg(Some(TOKEN), &[], 1000));
    let a = call(
        &app2,
        retrain_req(Some(&bearer()), &path_body(&d.data.join("train.json"))),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.error().contains("data_dirs"), "{}", a.error());
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_before_reaching_the_engine() {
    let d = dirs();
    let view = Arc::new(FakeView::new());
    let (app, _) = http::app(
        view.clone(),
        cfg(Some(TOKEN), std::slice::from_ref(&d.data), 1000),
    );
    let big = format!("{{\"path\": \"{}\"}}", "a".repeat(8000));
    // With a Content-Length (refused before the body is read).
    let mut r = retrain_req(Some(&bearer()), &big);
    r.headers_mut().insert(
        header::CONTENT_LENGTH,
        big.len().to_string().parse().unwrap(),
    );
    let a = call(&app, r).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.error().contains("max_body_bytes"), "{}", a.error());
    // Streamed (no Content-Length): cut at the limit.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..10).map(|_| Ok("x".repeat(1000))).collect();
    let r = Request::post("/api/retrain")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, bearer())
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let a = call(&app, r).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    assert!(a.body["error"].is_string());
    // Unauthenticated big bodies too: 413 on their Content-Length; without one, 401 (the
    // body is never read).
    let mut r = retrain_req(None, &big);
    r.headers_mut().insert(
        header::CONTENT_LENGTH,
        big.len().to_string().parse().unwrap(),
    );
    assert_eq!(call(&app, r).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    let a = call(&app, retrain_req(None, &big)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(view.calls().retrain.is_empty());
}

#[tokio::test]
async fn mutating_requests_are_rate_limited_with_separate_budgets() {
    let d = dirs();
    let view = Arc::new(FakeView::new());
    let (app, _) = http::app(
        view.clone(),
        cfg(Some(TOKEN), std::slice::from_ref(&d.data), 3),
    );
    let body = path_body(&d.data.join("train.json"));
    // Someone without the token uses up the failed-authentication budget …
    for _ in 0..3 {
        let a = call(
            &app,
            retrain_req(Some("Bearer guess-guess-guess-guess"), &body),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = call(
        &app,
        retrain_req(Some("Bearer guess-guess-guess-guess"), &body),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.headers.get(header::RETRY_AFTER).is_some());
    assert!(a.error().contains("mutations_per_minute"), "{}", a.error());
    // … which leaves the operator's own budget whole.
    for _ in 0..3 {
        let a = call(&app, retrain_req(Some(&bearer()), &body)).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    }
    let a = call(&app, retrain_req(Some(&bearer()), &body)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = a.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(view.calls().retrain.len(), 3);
    // Reads are not limited.
    for _ in 0..20 {
        let a = call(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
        assert_eq!(a.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let view = Arc::new(FakeView::new());
    let (app, _) = http::app(view, HttpUiConfig::default());
    for uri in ["/", "/api/models", "/assets/app.js", "/nowhere"] {
        let a = call(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(
            a.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{uri}"
        );
    }
    // Query strings that do not decode are JSON 400s, not plain-text rejections.
    let a = call(
        &app,
        Request::get("/api/aggregates?by=%FF%FE")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["error"].is_string(), "{}", a.body);
}

#[tokio::test]
async fn serve_on_refuses_a_non_loopback_address_without_a_token() {
    let view: Arc<dyn http::EngineView> = Arc::new(FakeView::new());
    let listener = http::bind("0.0.0.0:0").await.unwrap();
    let e = http::serve_on(listener, view.clone(), HttpUiConfig::default(), async {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            http::ServeError::Security(http::SecurityError::ExposedWithoutToken { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("COMPLAINTFLOW_API_TOKEN"), "{e}");
    // With a token it serves (and stops at once here).
    let listener = http::bind("0.0.0.0:0").await.unwrap();
    http::serve_on(listener, view.clone(), cfg(Some(TOKEN), &[], 30), async {})
        .await
        .unwrap();
    // Loopback without a token is fine.
    let listener = http::bind("127.0.0.1:0").await.unwrap();
    http::serve_on(listener, view, HttpUiConfig::default(), async {})
        .await
        .unwrap();
}
