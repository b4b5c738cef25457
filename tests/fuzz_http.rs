//! Fuzzing the HTTP request handlers in-process: the real router (`http::app`, with its
//! authorization, body limit and headers) over the `FakeView` test double, driven with
//! requests mutated from real ones — every route, its real query parameters and values,
//! percent-encoded junk, `..` segments, methods, `Authorization` variants, content types,
//! and retraining bodies naming files inside, outside and through symlinks out of the data
//! directory.
//!
//! Properties: no panic and no 5xx; every error answer is JSON with an `error` string; the
//! security headers are on every answer; a read never needs the token and a mutation never
//! succeeds without it; every path the engine is asked to train on is canonical and inside
//! the data directory. `CF_FUZZ_CASES` scales the run (see `fuzz_support`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_support;

#[allow(dead_code)]
#[path = "support/fake_view.rs"]
mod fake_view;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request};
use complaintflow::http::{self, ApiSecurity, ApiToken, DataDirs, HttpUiConfig};
use fake_view::FakeView;
use fuzz_support::{apply_bytes, byte_op, cases, runner, ByteOp, Tally};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token-0123456789abcdef";

const ROUTES: &[&str] = &[
    "/",
    "/health",
    "/metrics",
    "/api/aggregates",
    "/api/predictions/recent",
    "/api/models",
    "/api/history",
    "/api/metrics",
    "/api/metrics/series",
    "/api/summary",
    "/api/alerts",
    "/api/ui-config",
    "/api/dataflow",
    "/api/retrain",
    "/assets/app.js",
    "/assets/vendor/uPlot.min.css",
    "/assets/../../etc/passwd",
    "/nowhere",
];

const KEYS: &[&str] = &["by", "top", "limit", "priority", "escalated", "x", ""];
const VALUES: &[&str] = &[
    "product",
    "state",
    "company",
    "issue",
    "hour",
    "month",
    "month_product",
    "PRODUCT",
    "0",
    "1",
    "10",
    "1000",
    "1001",
    "-1",
    "18446744073709551616",
    "P1,P2",
    "P9",
    ",,,",
    "true",
    "false",
    "yes",
    "",
    "%",
    "%zz",
    "%FF%FE",
    "%00",
    "%E2%82",
    "a+b",
    "..%2F..%2Fetc",
];

#[derive(Clone, Debug)]
struct Req {
    method: usize,
    route: usize,
    path_ops: Vec<ByteOp>,
    query: Vec<(usize, usize)>,
    auth: usize,
    content_type: usize,
    accept: bool,
    body: usize,
    body_ops: Vec<ByteOp>,
}

const METHODS: &[&str] = &[
    "GET", "GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "FUZZ",
];

fn req() -> impl Strategy<Value = Req> {
    (
        0..METHODS.len(),
        0..ROUTES.len(),
        prop::collection::vec(byte_op(), 0..2),
        prop::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..4),
        0usize..7,
        0usize..4,
        any::<bool>(),
        0usize..8,
        prop::collection::vec(byte_op(), 0..3),
        0u8..3,
    )
        .prop_map(
            |(
                method,
                route,
                path_ops,
                query,
                auth,
                content_type,
                accept,
                body,
                body_ops,
                focus,
            )| {
                // A third of the requests are retraining requests (the only mutating route).
                let (method, route, path_ops) = if focus == 0 {
                    (3, RETRAIN, Vec::new())
                } else {
                    (method, route, path_ops)
                };
                Req {
                    method,
                    route,
                    path_ops,
                    query,
                    auth,
                    content_type,
                    accept,
                    body,
                    body_ops,
                }
            },
        )
}

/// Index of `/api/retrain` in [`ROUTES`].
const RETRAIN: usize = 13;

/// Percent-encodes every byte that may not stand in a URI path or query.
fn encode(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@?%".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

struct World {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    bodies: Vec<String>,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("data-out");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(data.join("train.json"), "[]").unwrap();
    std::fs::write(out.join("secret.json"), "[]").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(out.join("secret.json"), data.join("link.json")).unwrap();
    let data = std::fs::canonicalize(&data).unwrap();
    let d = data.display();
    let bodies = vec![
        format!("{{\"path\": \"{d}/train.json\"}}"),
        format!("{{\"path\": \"{d}/train.json\", \"format\": \"jsonl\"}}"),
        format!("{{\"path\": \"{d}/link.json\"}}"),
        format!("{{\"path\": \"{d}/../data-out/secret.json\"}}"),
        "{\"path\": \"/etc/passwd\"}".to_string(),
        format!("{{\"path\": \"{d}\"}}"),
        "{\"path\": \"\", \"extra\": 1}".to_string(),
        String::new(),
    ];
    World {
        _tmp: tmp,
        data,
        bodies,
    }
}

fn build(r: &Req, w: &World) -> Option<Request<Body>> {
    let mut path = ROUTES[r.route].as_bytes().to_vec();
    apply_bytes(&mut path, &r.path_ops);
    if path.first() != Some(&b'/') {
        path.insert(0, b'/');
    }
    let mut uri = encode(&path);
    if !r.query.is_empty() {
        let q: Vec<String> = r
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", KEYS[*k], VALUES[*v]))
            .collect();
        uri.push(if uri.contains('?') { '&' } else { '?' });
        uri.push_str(&q.join("&"));
    }
    let auth = [
        None,
        Some(format!("Bearer {TOKEN}")),
        Some(format!("bearer {TOKEN}")),
        Some("Bearer wrong-token-wrong-token".to_string()),
        Some(format!("Basic {TOKEN}")),
        Some("Bearer".to_string()),
        Some(format!("Bearer {TOKEN}{TOKEN}")),
    ][r.auth]
        .clone();
    let ct = [
        Some("application/json"),
        None,
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
    ][r.content_type];
    let mut body = w.bodies[r.body].clone().into_bytes();
    apply_bytes(&mut body, &r.body_ops);
    let mut b = Request::builder()
        .method(Method::from_bytes(METHODS[r.method].as_bytes()).ok()?)
        .uri(uri);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    if let Some(c) = ct {
        b = b.header(header::CONTENT_TYPE, c);
    }
    if r.accept {
        b = b.header(
            header::ACCEPT,
            "application/openmetrics-text; version=1.0.0",
        );
    }
    b.body(Body::from(body)).ok()
}

#[test]
fn fuzz_http_handlers() {
    assert_eq!(ROUTES[RETRAIN], "/api/retrain");
    let w = world();
    let view = Arc::new(FakeView::new());
    let cfg = HttpUiConfig {
        api: ApiSecurity {
            token: Some(ApiToken::new(TOKEN, "fuzz").unwrap()),
            data_dirs: DataDirs::new(std::slice::from_ref(&w.data), &[]).unwrap(),
            max_body_bytes: 2048,
            // No rate limit in the way of the fuzzer (http_security tests it).
            mutations_per_minute: u32::MAX,
        },
        ..HttpUiConfig::default()
    };
    let (app, _monitor) = http::app(view.clone(), cfg);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tally = Tally::new("http handlers");
    let unsendable = std::cell::Cell::new(0u64);
    let mut retrains = 0usize;
    let retrains_seen = std::cell::Cell::new(0usize);
    runner(cases("http", 20_000))
        .run(&req(), |r| {
            let Some(request) = build(&r, &w) else {
                unsendable.set(unsendable.get() + 1);
                return Ok(());
            };
            let method = request.method().clone();
            let authorized = matches!(r.auth, 1 | 2);
            let reading = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
            // A fresh call log per request (the double keeps every call).
            *view.calls.lock().unwrap() = fake_view::Calls::default();
            let calls_before = 0;
            let (status, headers, body) = rt.block_on(async {
                let resp = app.clone().oneshot(request).await.unwrap();
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
                    .await
                    .unwrap();
                (status, headers, body)
            });
            prop_assert!(!status.is_server_error(), "{:?} → {}", r, status);
            prop_assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
            prop_assert!(headers.contains_key(header::X_CONTENT_TYPE_OPTIONS));
            if status.is_client_error() && method != Method::HEAD {
                let j: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                    TestCaseError::fail(format!(
                        "{status} for {r:?} is not JSON ({e}): {}",
                        String::from_utf8_lossy(&body)
                    ))
                })?;
                prop_assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", j);
            }
            if reading {
                prop_assert!(
                    ![401u16, 403, 429].contains(&status.as_u16()),
                    "a read got {}",
                    status
                );
            } else if !authorized {
                prop_assert!(!status.is_success(), "unauthorized mutation got {}", status);
                prop_assert_eq!(view.calls().retrain.len(), calls_before);
            }
            let calls = view.calls().retrain;
            retrains_seen.set(retrains_seen.get() + calls.len());
            for c in &calls[calls_before..] {
                let p = std::path::Path::new(&c.path);
                prop_assert!(p.starts_with(&w.data), "trained on {}", c.path);
                prop_assert_eq!(std::fs::canonicalize(p).unwrap(), p.to_path_buf());
            }
            if status.is_success() {
                tally.ok();
            } else {
                tally.rejected(status.as_str());
            }
            Ok(())
        })
        .unwrap();
    retrains += retrains_seen.get();
    eprintln!(
        "fuzz http handlers: {} generated requests were not valid HTTP (skipped); {retrains} retraining requests reached the engine",
        unsendable.get()
    );
    assert!(tally.report() > 0);
    assert!(retrains > 0, "some retraining requests got through");
}
