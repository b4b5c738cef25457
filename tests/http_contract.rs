//! HTTP contract of the query API, in-process over the `FakeView` test double: parameter
//! validation (400 naming the parameter), unknown routes (404 JSON), the JSON shapes, and the
//! `/metrics` exposition formats, the byte-exact JSON of the shared contract types, and
//! `/api/dataflow` over a real (small) timely dataflow observed through its logging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use complaintflow::http;
use tower::ServiceExt;

#[allow(dead_code)]
#[path = "support/fake_view.rs"]
mod fake_view;

use fake_view::FakeView;
use http::view::{DataflowView, Dimension, RetrainError};

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .expect("an error answer has an \"error\" string")
            .to_string()
    }
}

/// The API token the tests' server is configured with (mutating requests need it).
const TOKEN: &str = "http-contract-token-0123456789";

/// A configuration with [`TOKEN`], retraining allowed under the system's temp directory.
fn ui_config() -> http::HttpUiConfig {
    http::HttpUiConfig {
        api: http::ApiSecurity {
            token: Some(http::ApiToken::new(TOKEN, "test").unwrap()),
            data_dirs: http::DataDirs::new(&[std::env::temp_dir()], &[]).unwrap(),
            ..http::ApiSecurity::default()
        },
        ..http::HttpUiConfig::default()
    }
}

async fn call(view: &Arc<FakeView>, req: Request<Body>) -> Answer {
    let (app, _monitor) = http::app(view.clone(), ui_config());
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

async fn get(view: &Arc<FakeView>, uri: &str) -> Answer {
    call(view, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post_json(view: &Arc<FakeView>, uri: &str, body: &str) -> Answer {
    call(
        view,
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn bad_by_is_a_400_naming_the_parameter_and_the_choices() {
    let view = Arc::new(FakeView::new());
    for bad in ["colour", "", "PRODUCT", "product,state"] {
        let a = get(&view, &format!("/api/aggregates?by={bad}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "by={bad}");
        let e = a.error();
        assert!(e.contains("by="), "{e}");
        for d in Dimension::ALL {
            assert!(e.contains(d.as_str()), "{e} lists {d}");
        }
    }
    assert!(
        view.calls().aggregates.is_empty(),
        "a bad request never reaches the engine"
    );
}

#[tokio::test]
async fn bad_top_is_a_400_naming_the_parameter() {
    let view = Arc::new(FakeView::new());
    for bad in ["-1", "ten", "1.5", ""] {
        let a = get(&view, &format!("/api/aggregates?by=product&top={bad}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "top={bad}");
        assert!(a.error().starts_with("top="), "{}", a.error());
    }
}

#[tokio::test]
async fn good_aggregate_requests_pass_by_and_top_to_the_engine() {
    let view = Arc::new(FakeView::new());
    let a = get(&view, "/api/aggregates?by=state&top=2").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type.starts_with("application/json"));
    let j = a.json();
    assert_eq!(j["by"], "state");
    assert_eq!(j["rows"].as_array().unwrap().len(), 2);
    assert_eq!(j["rows"][0]["key"], view.rows[&Dimension::State][0].key);
    assert_eq!(j["as_of"], serde_json::json!(view.as_of));
    // Default dimension is product; month_product is a dimension too.
    let d = get(&view, "/api/aggregates").await.json();
    assert_eq!(d["by"], "product");
    assert_eq!(
        get(&view, "/api/aggregates?by=month_product").await.json()["by"],
        "month_product"
    );
    assert_eq!(
        view.calls().aggregates,
        vec![
            (Dimension::State, Some(2)),
            (Dimension::Product, None),
            (Dimension::MonthProduct, None)
        ]
    );
}

#[tokio::test]
async fn bad_limit_is_a_400_naming_the_parameter() {
    let view = Arc::new(FakeView::new());
    for bad in ["0", "1001", "-3", "many"] {
        let a = get(&view, &format!("/api/predictions/recent?limit={bad}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "limit={bad}");
        assert!(a.error().starts_with("limit="), "{}", a.error());
    }
    let a = get(&view, "/api/predictions/recent?escalated=maybe").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().starts_with("escalated="), "{}", a.error());
}

#[tokio::test]
async fn recent_filters_by_priority_and_escalation() {
    let view = Arc::new(FakeView::new());
    let all = get(&view, "/api/predictions/recent?limit=1000")
        .await
        .json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), view.recent.len());
    let p1: Vec<_> = get(&view, "/api/predictions/recent?priority=P1&limit=3")
        .await
        .json()
        .as_array()
        .unwrap()
        .clone();
    let want: Vec<_> = view
        .recent
        .iter()
        .filter(|d| d["priority"] == "P1")
        .take(3)
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(p1, want);
    let esc = get(&view, "/api/predictions/recent?escalated=true")
        .await
        .json();
    let n_esc = view.recent.iter().filter(|d| d["escalate"] == true).count();
    assert_eq!(esc.as_array().unwrap().len(), n_esc);
    assert!(esc
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["escalate"] == true));
}

#[tokio::test]
async fn retrain_validates_its_body() {
    let view = Arc::new(FakeView::new());
    // Not JSON, unknown field, missing path, empty path: 400 naming what to send.
    for body in ["nope", "{\"file\": \"x.json\"}", "{}", "{\"path\": \"  \"}"] {
        let a = post_json(&view, "/api/retrain", body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(a.error().contains("path"), "{body}: {}", a.error());
    }
    assert!(
        view.calls().retrain.is_empty(),
        "invalid bodies never reach the engine"
    );
    // The engine's refusals map to 400 (invalid) and 409 (busy) with its message. (The
    // file must exist inside the data directories: see http_security for those checks.)
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::canonicalize(dir.path()).unwrap().join("data.json");
    std::fs::write(&data, "[]").unwrap();
    let body = |extra: &str| format!("{{\"path\": {:?}{extra}}}", data.to_str().unwrap());
    *view.retrain_answer.lock().unwrap() = Err(RetrainError::Invalid(
        "path \"/nowhere.json\": no such file".into(),
    ));
    let a = post_json(&view, "/api/retrain", &body("")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("path"), "{}", a.error());
    *view.retrain_answer.lock().unwrap() = Err(RetrainError::Busy("already retraining".into()));
    let a = post_json(&view, "/api/retrain", &body("")).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    *view.retrain_answer.lock().unwrap() = Ok(());
    let a = post_json(&view, "/api/retrain", &body(", \"format\": \"jsonl\"")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.json()["path"], data.to_str().unwrap());
    assert_eq!(a.json()["format"], "jsonl");
    assert_eq!(view.calls().retrain.len(), 3);
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let view = Arc::new(FakeView::new());
    for uri in [
        "/nope",
        "/api/aggregate",
        "/api/models/v0001",
        "/assets/missing.js",
    ] {
        let a = get(&view, uri).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(a.content_type.starts_with("application/json"), "{uri}");
        assert!(!a.error().is_empty());
    }
    // A known route with the wrong method is not served either.
    let a = post_json(&view, "/api/models", "{}").await;
    assert!(a.status.is_client_error(), "{}", a.status);
}

#[tokio::test]
async fn every_api_route_answers_json_from_the_view() {
    let view = Arc::new(FakeView::new());
    let h = get(&view, "/health").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json()["status"], "running");
    let m = get(&view, "/api/models").await.json();
    assert_eq!(m["production"], "v0001");
    assert_eq!(m["live"][0]["version"], "v0001");
    let hist = get(&view, "/api/history").await.json();
    assert_eq!(hist["training"][0]["count"], view.history.training[0].count);
    let met = get(&view, "/api/metrics").await.json();
    assert_eq!(
        met["records_processed"],
        view.metrics.lock().unwrap().records_processed
    );
    let s = get(&view, "/api/summary").await.json();
    let prod = &view.rows[&Dimension::Product];
    let decisions: u64 = prod.iter().map(|r| r.count).sum();
    let esc: u64 = prod.iter().map(|r| r.escalations).sum();
    assert_eq!(s["decisions"], decisions);
    assert_eq!(s["escalations"], esc);
    assert!(
        (s["escalation_pct"].as_f64().unwrap() - esc as f64 * 100.0 / decisions as f64).abs()
            < 1e-9
    );
    let ui = get(&view, "/api/ui-config").await.json();
    assert_eq!(ui["refresh_ms"], 5000, "default refresh is 5 s");
    let a = get(&view, "/api/alerts").await.json();
    assert_eq!(a["rules"].as_array().unwrap().len(), 4);
    let series = get(&view, "/api/metrics/series").await.json();
    assert!(series["t_ms"].is_array());
    // The dashboard and its assets are embedded.
    let page = get(&view, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8(page.body).unwrap();
    for asset in [
        "/assets/app.js",
        "/assets/app.css",
        "/assets/vendor/uPlot.iife.min.js",
    ] {
        assert!(html.contains(asset), "{asset}");
        let a = get(&view, asset).await;
        assert_eq!(a.status, StatusCode::OK, "{asset}");
        assert!(!a.body.is_empty());
    }
}

#[tokio::test]
async fn metrics_negotiates_text_004_and_openmetrics() {
    let view = Arc::new(FakeView::new());
    let text = get(&view, "/metrics").await;
    assert_eq!(text.status, StatusCode::OK);
    assert!(text.content_type.starts_with("text/plain; version=0.0.4"));
    let body = String::from_utf8(text.body).unwrap();
    assert!(!body.contains("# EOF") && !body.contains("# UNIT"));
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let m = view.metrics.lock().unwrap().clone();
    let counter = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                ref other => panic!("{name} is not a counter: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no {name} {label:?} in\n{body}"))
    };
    assert_eq!(
        counter("complaintflow_records_processed_total", None),
        m.records_processed as f64
    );
    for (reason, n) in &m.dead_letters {
        assert_eq!(
            counter("complaintflow_dead_letters_total", Some(("reason", reason))),
            *n as f64
        );
    }

    let om = call(
        &view,
        Request::get("/metrics")
            .header(
                header::ACCEPT,
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(om.content_type.starts_with("application/openmetrics-text"));
    let om = String::from_utf8(om.body).unwrap();
    assert!(om.trim_end().ends_with("# EOF"));
    assert!(om.contains("# TYPE complaintflow_records_processed counter"));
    assert!(om.contains("# UNIT complaintflow_epoch_latency_seconds seconds"));
    // The same samples in both formats.
    let samples = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| !l.starts_with("complaintflow_uptime_seconds"))
            .map(String::from)
            .collect()
    };
    assert_eq!(samples(&om), samples(&body));
}

#[tokio::test]
async fn shared_contract_types_serialize_byte_for_byte_as_before() {
    // The engine and the HTTP layer share these types (complaintflow_pipelines::contract);
    // their JSON is the API: field order and names must not move.
    let view = Arc::new(FakeView::new());
    let a = get(&view, "/api/aggregates?by=product&top=1").await;
    assert_eq!(
        String::from_utf8(a.body).unwrap(),
        r#"{"by":"product","as_of":6,"rows":[{"key":"Debt collection","count":60,"escalations":15,"escalation_rate":0.25,"mean_score":0.12}]}"#
    );
    let m = get(&view, "/api/metrics").await;
    assert_eq!(
        String::from_utf8(m.body).unwrap(),
        concat!(
            r#"{"records_in":110,"parsed":104,"records_processed":108,"predictions":100,"escalations":23,"#,
            r#""dead_letters":{"malformed_json":6,"missing_field":2},"epochs_completed":6,"#,
            r#""epoch_latency_seconds":{"bounds":[0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,0.5,1.0,2.5,5.0,10.0,30.0],"#,
            r#""counts":[0,1,1,0,0,2,0,1,0,0,1,0,0,0,0],"sum":1.766},"#,
            r#""consumer_lag":42,"input_waiting":true,"checkpoint_age_secs":null}"#
        )
    );
    let models = get(&view, "/api/models").await.json();
    assert_eq!(
        models["live"][0]["scores"]["bounds"],
        serde_json::json!([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    );
}

/// A real dataflow on 2 worker threads, input → map → exchange → count → probe, fed
/// `records` records in epochs of 1,000, observed through timely's logging.
fn observed_dataflow(records: u64) -> DataflowView {
    use complaintflow_pipelines::introspect::{install, DataflowStats};
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::generic::Operator;
    use timely::dataflow::operators::vec::Map;
    use timely::dataflow::operators::{Input, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};

    let stats = DataflowStats::new();
    let s = stats.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        install(worker, &s);
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<u64>>> = InputHandle::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .map(|x| x + 1)
                .unary::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
                    Exchange::new(|x: &u64| *x),
                    "Count",
                    |_, _| {
                        let mut n = 0u64;
                        move |input, output| {
                            input.for_each(|cap, data| {
                                n += data.len() as u64;
                                output.session(&cap).give(n);
                            });
                        }
                    },
                )
                .probe_with(&probe);
        });
        for (i, x) in (index..records).step_by(peers as usize).enumerate() {
            input.send(x);
            if i % 1000 == 999 {
                input.advance_to(input.time() + 1);
                while probe.less_than(input.time()) {
                    worker.step();
                }
            }
        }
    })
    .unwrap()
    .join()
    .into_iter()
    .for_each(|r| r.unwrap());
    stats.snapshot()
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn dataflow_lists_operators_with_counters_rates_and_edges() {
    let view = Arc::new(FakeView::new());
    // Before an engine has run: an empty graph.
    let empty = get(&view, "/api/dataflow").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.content_type.starts_with("application/json"));
    let e = empty.json();
    assert_eq!(e["operators"], serde_json::json!([]));
    assert_eq!(e["edges"], serde_json::json!([]));
    assert_eq!(e["workers"], 0);

    let records = 20_000;
    let observed = observed_dataflow(records);
    *view.dataflow.lock().unwrap() = observed.clone();
    let a = get(&view, "/api/dataflow").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(a.body.clone()).unwrap(),
        serde_json::to_string(&observed).unwrap(),
        "the view, serialized as is"
    );
    let j = a.json();
    assert_eq!(
        keys(&j),
        [
            "edges",
            "interval_ms",
            "operators",
            "untracked_events",
            "workers"
        ]
    );
    assert_eq!(j["workers"], 2);
    assert!(j["interval_ms"].as_f64().unwrap() > 0.0);
    let ops = j["operators"].as_array().unwrap();
    for o in ops {
        assert_eq!(
            keys(o),
            [
                "address",
                "batches",
                "batches_out",
                "batches_per_s",
                "busy_ms",
                "busy_pct",
                "dataflow",
                "id",
                "name",
                "records_in",
                "records_in_per_s",
                "records_out",
                "records_out_per_s",
                "schedules",
                "scope",
                "shut_down"
            ]
        );
        assert_eq!(o["dataflow"], o["address"][0]);
        assert!(
            (0.0..=100.0).contains(&o["busy_pct"].as_f64().unwrap()),
            "{o}"
        );
    }
    let by_name = |n: &str| {
        ops.iter()
            .find(|o| o["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {j}"))
    };
    // Every record through the map (summed over both workers) and into the count.
    assert_eq!(by_name("FlatMap")["records_in"], records);
    assert_eq!(by_name("FlatMap")["records_out"], records);
    assert_eq!(by_name("Count")["records_in"], records);
    assert!(by_name("Count")["busy_ms"].as_f64().unwrap() > 0.0);
    assert!(by_name("Count")["records_in_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(by_name("Dataflow")["scope"], true);
    // Edges name operators of the list; input → map → count → probe is a chain.
    let ids: Vec<&serde_json::Value> = ops.iter().map(|o| &o["id"]).collect();
    let edges = j["edges"].as_array().unwrap();
    for e in edges {
        assert_eq!(
            keys(e),
            [
                "batches",
                "channel",
                "dataflow",
                "from",
                "from_port",
                "records",
                "records_per_s",
                "to",
                "to_port"
            ]
        );
        assert!(ids.contains(&&e["from"]) && ids.contains(&&e["to"]), "{e}");
    }
    let edge = |from: &str, to: &str| {
        edges
            .iter()
            .find(|e| e["from"] == by_name(from)["id"] && e["to"] == by_name(to)["id"])
            .unwrap_or_else(|| panic!("no edge {from} → {to} in {j}"))
    };
    assert_eq!(edge("Input", "FlatMap")["records"], records);
    assert_eq!(edge("FlatMap", "Count")["records"], records);
    assert_eq!(
        edge("Count", "Probe")["records"],
        by_name("Count")["records_out"]
    );
}

/// An [`http::EngineView`] that does not implement `dataflow`: the trait's default answers.
struct NoDataflow(FakeView);

impl http::EngineView for NoDataflow {
    fn health(&self) -> http::Health {
        self.0.health()
    }
    fn aggregates(&self, by: Dimension, top: Option<usize>) -> http::AggregateAnswer {
        self.0.aggregates(by, top)
    }
    fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        self.0.recent(limit)
    }
    fn models(&self) -> http::ModelsView {
        self.0.models()
    }
    fn metrics(&self) -> http::MetricsSnapshot {
        self.0.metrics()
    }
    fn history(&self) -> http::HistoryView {
        self.0.history()
    }
    fn retrain(&self, req: http::RetrainRequest) -> Result<http::RetrainTicket, RetrainError> {
        self.0.retrain(req)
    }
}

#[tokio::test]
async fn a_view_without_a_dataflow_serves_an_empty_graph() {
    let fake = FakeView::new();
    *fake.dataflow.lock().unwrap() = observed_dataflow(2_000);
    let view: Arc<dyn http::EngineView> = Arc::new(NoDataflow(fake));
    let (app, _monitor) = http::app(view, http::HttpUiConfig::default());
    let resp = app
        .oneshot(Request::get("/api/dataflow").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"workers": 0, "interval_ms": null, "operators": [], "edges": [], "untracked_events": 0})
    );
}
