//! `/metrics` of the real binary on the bundled sample (plus three malformed lines): it parses
//! with a Prometheus text-format parser, and its counters and histograms match what the run
//! wrote (the predictions and dead-letter files).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

#[allow(dead_code)]
#[path = "support/engine.rs"]
mod engine;

use engine::{get_json, request, wait_for, Engine};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn metrics_parse_and_match_the_records_processed() {
    let tmp = engine::workdir("");
    let dir = tmp.path();
    engine::train_and_promote(dir);
    let (input, n) = engine::sample_with_malformed(dir, None, 3);
    let total = (n + 3) as u64;
    let e = Engine::start(
        dir,
        &[
            "--source",
            &format!("file:{}", input.display()),
            // One epoch for the whole file: see tests/dashboard_e2e.rs.
            "--trigger-ms",
            "60000",
            "--predictions",
            "pred.jsonl",
            "--dead-letters",
            "dl.jsonl",
        ],
        None,
    );
    let addr = e.addr.clone();
    wait_for(Duration::from_secs(180), "every record processed", || {
        get_json(&addr, "/api/metrics").is_some_and(|m| {
            m["records_processed"].as_u64() == Some(total) && m["input_waiting"] == false
        })
    });
    // Every epoch complete: the aggregates cover every prediction.
    wait_for(Duration::from_secs(60), "complete aggregates", || {
        get_json(&addr, "/api/aggregates?by=product").is_some_and(|a| {
            a["rows"].as_array().is_some_and(|r| {
                r.iter().filter_map(|x| x["count"].as_u64()).sum::<u64>() == n as u64
            })
        })
    });

    let t0 = Instant::now();
    let resp = request(&addr, "GET", "/metrics", None).unwrap();
    let scrape_time = t0.elapsed();
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        resp.header("content-type")
    );
    let text = resp.body;
    eprintln!(
        "/metrics: {} bytes, {} lines, fetched in {:.1} ms",
        text.len(),
        text.lines().count(),
        scrape_time.as_secs_f64() * 1000.0
    );
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let api = get_json(&addr, "/api/metrics").unwrap();
    e.stop();

    let find = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {name} {label:?} in\n{text}"))
    };
    let counter = |name: &str, label: Option<(&str, &str)>| match find(name, label).value {
        Value::Counter(v) => v as u64,
        ref v => panic!("{name} is not a counter: {v:?}"),
    };
    let gauge = |name: &str| match find(name, None).value {
        Value::Gauge(v) => v,
        ref v => panic!("{name} is not a gauge: {v:?}"),
    };
    let histogram = |name: &str, label: Option<(&str, &str)>| match &find(name, label).value {
        Value::Histogram(b) => b.clone(),
        v => panic!("{name} is not a histogram: {v:?}"),
    };

    // Counters = what the run wrote.
    let preds = lines(&dir.join("pred.jsonl"));
    let dead = lines(&dir.join("dl.jsonl"));
    assert_eq!(preds.len(), n, "one prediction per valid record");
    assert_eq!(dead.len(), 3);
    assert_eq!(
        counter("complaintflow_records_processed_total", None),
        total
    );
    assert_eq!(counter("complaintflow_records_read_total", None), total);
    assert_eq!(
        counter("complaintflow_predictions_total", None),
        preds.len() as u64
    );
    let escalated = preds.iter().filter(|p| p["escalate"] == true).count() as u64;
    assert_eq!(counter("complaintflow_escalations_total", None), escalated);
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for d in &dead {
        *by_reason
            .entry(d["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for (reason, c) in &by_reason {
        assert_eq!(
            counter("complaintflow_dead_letters_total", Some(("reason", reason))),
            *c,
            "{reason}"
        );
    }
    let reasons_exposed = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "complaintflow_dead_letters_total")
        .count();
    assert_eq!(reasons_exposed, by_reason.len());
    // The same numbers as the JSON API.
    assert_eq!(api["records_processed"].as_u64(), Some(total));
    assert_eq!(gauge("complaintflow_input_waiting"), 0.0);
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.metric == "complaintflow_consumer_lag"),
        "a file source has no consumer lag"
    );

    // Epoch latency: a cumulative histogram with one observation per completed epoch.
    let epochs = counter("complaintflow_epochs_completed_total", None);
    assert!(epochs >= 1, "{epochs} epochs");
    let lat = histogram("complaintflow_epoch_latency_seconds", None);
    assert!(lat
        .windows(2)
        .all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count));
    let inf = lat.last().unwrap();
    assert!(inf.less_than.is_infinite());
    assert_eq!(inf.count as u64, epochs);
    let lat_count = find("complaintflow_epoch_latency_seconds_count", None);
    assert!(matches!(lat_count.value, Value::Untyped(v) if v as u64 == epochs));

    // Model scores by version: buckets and sum equal a recount of the predictions file.
    let version = preds[0]["model_version"].as_str().unwrap().to_string();
    assert!(preds.iter().all(|p| p["model_version"] == version.as_str()));
    let buckets = histogram("complaintflow_model_score", Some(("version", &version)));
    let scores: Vec<f64> = preds.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    for b in &buckets {
        let want = scores.iter().filter(|s| **s <= b.less_than).count();
        assert_eq!(b.count as usize, want, "le={}", b.less_than);
    }
    let sum = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "complaintflow_model_score_sum" && s.labels.get("version") == Some(&version)
        })
        .unwrap();
    let Value::Untyped(sum) = sum.value else {
        panic!("{:?}", sum.value)
    };
    let want: f64 = scores.iter().sum();
    assert!(
        (sum - want).abs() < 1e-6 * want.max(1.0),
        "score sum {sum} vs {want}"
    );
    assert_eq!(gauge("complaintflow_workers"), api_workers(&text));
}

/// `complaintflow_workers` as written in the text (a second reading, to check the parser
/// agrees with the raw line).
fn api_workers(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix("complaintflow_workers "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}
