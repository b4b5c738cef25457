//! Alert rules: each one driven over its threshold and back through [`Monitor::record`] with
//! explicit times (fires after `for_secs`, holds inside the hysteresis band, clears after
//! `clear_for_secs`), seen at `/api/alerts` and in the logs; and a real-engine case where the
//! processing-rate and dead-letter rules fire and clear on a real run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use complaintflow::http;
use http::alerts::{AlertEvent, AlertName, AlertState, AlertsConfig};
use http::view::{HistogramSnapshot, LiveModel, MetricsSnapshot, ModelsView};
use http::Monitor;

#[allow(dead_code)]
#[path = "support/engine.rs"]
mod engine;
#[allow(dead_code)]
#[path = "support/fake_view.rs"]
mod fake_view;

const T0: i64 = 1_800_000_000_000;
const SEC: i64 = 1000;

/// A sampled engine whose counters the test moves by hand.
struct Driver {
    monitor: Monitor,
    now: i64,
    m: MetricsSnapshot,
    models: ModelsView,
    events: Vec<AlertEvent>,
}

impl Driver {
    fn new(cfg: AlertsConfig) -> Driver {
        Driver {
            monitor: Monitor::new(1000, 900, cfg),
            now: T0,
            m: MetricsSnapshot::default(),
            models: ModelsView::default(),
            events: Vec::new(),
        }
    }

    /// `secs` samples one second apart, each adding `per_sec` processed records of which
    /// `dead_per_sec` are dead letters.
    fn run(&mut self, secs: u32, per_sec: u64, dead_per_sec: u64) {
        for _ in 0..secs {
            self.now += SEC;
            self.m.records_processed += per_sec;
            self.m.predictions += per_sec - dead_per_sec;
            *self
                .m
                .dead_letters
                .entry("malformed_json".into())
                .or_default() += dead_per_sec;
            let ev = self.monitor.record(self.now, &self.m, &self.models);
            self.events.extend(ev);
        }
    }

    fn state(&self, rule: AlertName) -> AlertState {
        self.monitor
            .alerts()
            .rules
            .iter()
            .find(|r| r.name == rule)
            .map(|r| r.state)
            .unwrap()
    }

    fn fired(&self, rule: AlertName) -> Vec<&AlertEvent> {
        self.events
            .iter()
            .filter(|e| matches!(e, AlertEvent::Fired { name, .. } if *name == rule))
            .collect()
    }

    fn cleared(&self, rule: AlertName) -> Vec<&AlertEvent> {
        self.events
            .iter()
            .filter(|e| matches!(e, AlertEvent::Cleared { name, .. } if *name == rule))
            .collect()
    }
}

fn cfg() -> AlertsConfig {
    AlertsConfig {
        for_secs: 30.0,
        clear_for_secs: 10.0,
        hysteresis: 0.1,
        window_secs: 60.0,
        ..AlertsConfig::default()
    }
}

#[test]
fn processing_rate_fires_while_input_waits_and_clears() {
    let c = cfg();
    let mut d = Driver::new(c.clone());
    let slow = (c.min_rate_per_min / 60.0 / 2.0) as u64; // half the floor, per second
    let fast = (c.min_rate_per_min / 60.0 * 2.0) as u64;
    // Slow but no input waiting: not applicable, never fires.
    d.m.input_waiting = false;
    d.run(90, slow, 0);
    assert_eq!(d.state(AlertName::ProcessingRateLow), AlertState::Ok);
    // Input waiting: pending first, firing after for_secs.
    d.m.input_waiting = true;
    let start = d.now + SEC;
    d.run(5, slow, 0);
    assert_eq!(d.state(AlertName::ProcessingRateLow), AlertState::Pending);
    d.run(30, slow, 0);
    assert_eq!(d.state(AlertName::ProcessingRateLow), AlertState::Firing);
    let fired = d.fired(AlertName::ProcessingRateLow);
    assert_eq!(fired.len(), 1);
    let AlertEvent::Fired {
        value,
        threshold,
        since_ms,
        at_ms,
        ..
    } = fired[0]
    else {
        unreachable!()
    };
    assert!(*value < *threshold, "{value} < {threshold}");
    assert_eq!(*since_ms, start, "the alert starts when the violation did");
    assert!(at_ms - since_ms >= 30 * SEC);
    let active = d.monitor.alerts().active;
    let a = active
        .iter()
        .find(|a| a.name == AlertName::ProcessingRateLow)
        .unwrap();
    assert_eq!(a.since_ms, start);
    assert!(a.value.unwrap() < c.min_rate_per_min);
    // Faster: the windowed rate climbs past the clear level, and it clears.
    d.run(120, fast, 0);
    assert_eq!(d.state(AlertName::ProcessingRateLow), AlertState::Ok);
    let cleared = d.cleared(AlertName::ProcessingRateLow);
    assert_eq!(cleared.len(), 1);
    let AlertEvent::Cleared {
        value, since_ms, ..
    } = cleared[0]
    else {
        unreachable!()
    };
    assert!(value.unwrap() >= c.clear_level(AlertName::ProcessingRateLow));
    assert_eq!(*since_ms, start);
    assert!(d.monitor.alerts().active.is_empty());
}

#[test]
fn consumer_lag_fires_holds_in_the_hysteresis_band_and_clears() {
    let c = cfg();
    let mut d = Driver::new(c.clone());
    d.m.consumer_lag = None;
    d.run(40, 100, 0);
    assert_eq!(
        d.state(AlertName::ConsumerLagHigh),
        AlertState::Ok,
        "no lag: not applicable"
    );
    d.m.consumer_lag = Some((c.max_lag * 1.5) as i64);
    d.run(31, 100, 0);
    assert_eq!(d.state(AlertName::ConsumerLagHigh), AlertState::Firing);
    assert_eq!(d.fired(AlertName::ConsumerLagHigh).len(), 1);
    // Below the threshold but above the clear level: still firing, however long.
    let band = (c.max_lag + c.clear_level(AlertName::ConsumerLagHigh)) / 2.0;
    d.m.consumer_lag = Some(band as i64);
    d.run(60, 100, 0);
    assert_eq!(d.state(AlertName::ConsumerLagHigh), AlertState::Firing);
    // Past the clear level for clear_for_secs: cleared.
    d.m.consumer_lag = Some((c.max_lag * 0.5) as i64);
    d.run(9, 100, 0);
    assert_eq!(
        d.state(AlertName::ConsumerLagHigh),
        AlertState::Firing,
        "not yet clear_for_secs"
    );
    d.run(2, 100, 0);
    assert_eq!(d.state(AlertName::ConsumerLagHigh), AlertState::Ok);
    assert_eq!(d.cleared(AlertName::ConsumerLagHigh).len(), 1);
    // A short spike shorter than for_secs never fires.
    d.m.consumer_lag = Some((c.max_lag * 2.0) as i64);
    d.run(10, 100, 0);
    d.m.consumer_lag = Some(0);
    d.run(5, 100, 0);
    assert_eq!(d.fired(AlertName::ConsumerLagHigh).len(), 1);
}

#[test]
fn dead_letter_rate_fires_and_clears() {
    let c = cfg();
    let mut d = Driver::new(c.clone());
    let per_sec = 1000u64;
    // 1 % dead letters: fine.
    d.run(40, per_sec, per_sec / 100);
    assert_eq!(d.state(AlertName::DeadLetterRateHigh), AlertState::Ok);
    // 4 × the ceiling.
    let bad = (per_sec as f64 * c.max_dead_letter_pct * 4.0 / 100.0) as u64;
    d.run(100, per_sec, bad);
    assert_eq!(d.state(AlertName::DeadLetterRateHigh), AlertState::Firing);
    let f = d.fired(AlertName::DeadLetterRateHigh);
    assert_eq!(f.len(), 1);
    let AlertEvent::Fired { value, .. } = f[0] else {
        unreachable!()
    };
    assert!(*value > c.max_dead_letter_pct);
    // Clean again: the windowed percentage falls under the clear level and it clears.
    d.run(100, per_sec, 0);
    assert_eq!(d.state(AlertName::DeadLetterRateHigh), AlertState::Ok);
    let cl = d.cleared(AlertName::DeadLetterRateHigh);
    assert_eq!(cl.len(), 1);
    let AlertEvent::Cleared { value, .. } = cl[0] else {
        unreachable!()
    };
    assert!(value.is_none_or(|v| v <= c.clear_level(AlertName::DeadLetterRateHigh)));
}

fn hist(counts: [u64; 10]) -> HistogramSnapshot {
    let mut h = HistogramSnapshot::scores();
    h.counts = counts.to_vec();
    h.sum = counts
        .iter()
        .enumerate()
        .map(|(i, c)| (i as f64 + 0.5) / 10.0 * *c as f64)
        .sum();
    h
}

#[test]
fn score_drift_fires_and_clears() {
    let c = cfg();
    let mut d = Driver::new(c.clone());
    let training = hist([400, 200, 120, 80, 60, 50, 40, 30, 15, 5]);
    let same_shape = hist([800, 400, 240, 160, 120, 100, 80, 60, 30, 10]);
    let shifted = hist([10, 20, 40, 80, 120, 200, 300, 400, 500, 330]);
    let too_few = hist([0, 0, 0, 0, 0, 0, 0, 0, 0, (c.psi_min_samples - 1).max(1)]);
    let live = |h: &HistogramSnapshot| LiveModel {
        version: "v0001".into(),
        share: 1.0,
        predictions: h.count(),
        scores: h.clone(),
    };
    d.models = ModelsView {
        production: Some("v0001".into()),
        training_scores: Some(training.clone()),
        live: vec![live(&too_few)],
        ..ModelsView::default()
    };
    d.run(40, 100, 0);
    assert_eq!(
        d.state(AlertName::ScoreDrift),
        AlertState::Ok,
        "too few live scores"
    );
    let psi_rule = |d: &Driver| {
        d.monitor
            .alerts()
            .rules
            .iter()
            .find(|r| r.name == AlertName::ScoreDrift)
            .unwrap()
            .value
    };
    assert_eq!(psi_rule(&d), None);
    d.models.live = vec![live(&same_shape)];
    d.run(40, 100, 0);
    assert!(psi_rule(&d).unwrap() < 1e-9, "same distribution: PSI 0");
    assert_eq!(d.state(AlertName::ScoreDrift), AlertState::Ok);
    d.models.live = vec![live(&shifted)];
    d.run(31, 100, 0);
    assert_eq!(d.state(AlertName::ScoreDrift), AlertState::Firing);
    let want = http::alerts::psi(&training, &shifted).unwrap();
    assert!(want > c.max_psi);
    let f = d.fired(AlertName::ScoreDrift);
    let AlertEvent::Fired { value, .. } = f[0] else {
        unreachable!()
    };
    assert!((value - want).abs() < 1e-12);
    d.models.live = vec![live(&same_shape)];
    d.run(11, 100, 0);
    assert_eq!(d.state(AlertName::ScoreDrift), AlertState::Ok);
    assert_eq!(d.cleared(AlertName::ScoreDrift).len(), 1);
}

#[test]
fn disabled_rules_never_fire() {
    let mut c = cfg();
    c.disabled = vec![AlertName::ConsumerLagHigh];
    let mut d = Driver::new(c.clone());
    d.m.consumer_lag = Some((c.max_lag * 10.0) as i64);
    d.run(60, 100, 0);
    assert_eq!(d.state(AlertName::ConsumerLagHigh), AlertState::Ok);
    assert!(d.fired(AlertName::ConsumerLagHigh).is_empty());
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn alerts_show_at_the_api_and_in_the_logs() {
    use tower::ServiceExt;
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let view = Arc::new(fake_view::FakeView::new());
    let ui = http::HttpUiConfig {
        alerts: cfg(),
        ..http::HttpUiConfig::default()
    };
    let max_lag = ui.alerts.max_lag;
    let (app, monitor) = http::app(view.clone(), ui);
    let mut m = view.metrics.lock().unwrap().clone();
    let models = view.models.clone();
    let mut now = T0;
    m.consumer_lag = Some((max_lag * 3.0) as i64);
    for _ in 0..31 {
        now += SEC;
        m.records_processed += 100;
        m.predictions += 100;
        monitor.record(now, &m, &models);
    }
    let get = |uri: &'static str| {
        let app = app.clone();
        async move {
            let r = app
                .oneshot(
                    axum::http::Request::get(uri)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()
        }
    };
    let a = get("/api/alerts").await;
    let active = a["active"].as_array().unwrap();
    let lag = active
        .iter()
        .find(|x| x["name"] == "consumer_lag_high")
        .unwrap();
    assert_eq!(lag["state"], "firing");
    assert_eq!(lag["since_ms"], T0 + SEC);
    assert_eq!(lag["value"].as_f64().unwrap(), max_lag * 3.0);
    assert!(lag["message"].as_str().unwrap().contains("consumer lag"));
    let metrics = {
        let r = app
            .clone()
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    };
    assert!(
        metrics.contains("complaintflow_alerts_active{alert=\"consumer_lag_high\"} 1"),
        "{metrics}"
    );
    m.consumer_lag = Some(0);
    for _ in 0..11 {
        now += SEC;
        m.records_processed += 100;
        m.predictions += 100;
        monitor.record(now, &m, &models);
    }
    let a = get("/api/alerts").await;
    assert!(a["active"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["name"] != "consumer_lag_high"));
    let events = a["events"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["name"].as_str().unwrap()))
        .filter(|(_, n)| *n == "consumer_lag_high")
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("fired", "consumer_lag_high"),
            ("cleared", "consumer_lag_high")
        ]
    );
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let fire_line = log
        .lines()
        .find(|l| l.contains("alert firing"))
        .expect(&log);
    assert!(
        fire_line.contains("WARN") && fire_line.contains("consumer_lag_high"),
        "{fire_line}"
    );
    assert!(
        fire_line.contains(&format!("since_ms={}", T0 + SEC)),
        "{fire_line}"
    );
    let clear_line = log
        .lines()
        .find(|l| l.contains("alert cleared"))
        .expect(&log);
    assert!(
        clear_line.contains("INFO") && clear_line.contains("consumer_lag_high"),
        "{clear_line}"
    );
}

/// The real engine: a slow rate-limited replay with 5 % malformed lines fires the
/// processing-rate rule (floor set far above what `--rate` allows) and the dead-letter rule;
/// both clear once the file is exhausted (the rate rule applies only while input waits, the
/// dead-letter percentage has no records left in its window).
#[test]
fn a_real_run_fires_and_clears_the_rate_and_dead_letter_rules() {
    let extra = "[dashboard]\nsample_interval_ms = 200\n[alerts]\nfor_secs = 0.4\nclear_for_secs = 0.4\nwindow_secs = 1.0\nmin_rate_per_min = 1000000000\nmax_dead_letter_pct = 1.0\n";
    let tmp = engine::workdir(extra);
    let dir = tmp.path();
    engine::train_and_promote(dir);
    let (input, n) = engine::sample_with_malformed(dir, Some(380), 20);
    assert_eq!(n, 380);
    let log = dir.join("engine.log");
    // `info` for the monitor's "alert cleared" lines.
    let addr = format!("127.0.0.1:{}", engine::free_port());
    let child = engine::bin(dir)
        .env("RUST_LOG", "complaintflow=info,warn")
        .args(["run", "--http-addr", &addr])
        .args(["--source", &format!("file:{}", input.display())])
        .args(["--rate", "100/s", "--trigger-ms", "100"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let e = engine::Engine {
        child,
        addr: addr.clone(),
    };
    let names = |a: &serde_json::Value, event: &str| -> Vec<String> {
        a["events"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|e| e["event"] == event)
                    .filter_map(|e| e["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Rules seen firing at /api/alerts with a measured value.
    let mut seen_active = std::collections::BTreeSet::new();
    let mut last = serde_json::Value::Null;
    engine::wait_for(
        Duration::from_secs(180),
        "both rules fired and cleared",
        || {
            let Some(a) = engine::get_json(&addr, "/api/alerts") else {
                return false;
            };
            for x in a["active"].as_array().into_iter().flatten() {
                if x["state"] == "firing" {
                    assert!(
                        x["since_ms"].as_i64().is_some() && x["fired_ms"].as_i64().is_some(),
                        "{x}"
                    );
                    // The value is `null` once the rule no longer applies (input exhausted) and
                    // it waits clear_for_secs to clear.
                    if x["value"].is_number() {
                        seen_active.insert(x["name"].as_str().unwrap().to_string());
                    }
                }
            }
            let fired = names(&a, "fired");
            let cleared = names(&a, "cleared");
            last = a;
            ["processing_rate_low", "dead_letter_rate_high"]
                .iter()
                .all(|r| fired.iter().any(|f| f == r) && cleared.iter().any(|c| c == r))
        },
    );
    let m = engine::get_json(&addr, "/api/metrics").unwrap();
    assert_eq!(
        m["records_in"].as_u64(),
        Some(400),
        "the whole file was read: {m}"
    );
    assert_eq!(m["input_waiting"], false);
    e.stop();
    for r in ["processing_rate_low", "dead_letter_rate_high"] {
        assert!(
            seen_active.contains(r),
            "{r} seen firing at /api/alerts: {last}"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    for r in ["processing_rate_low", "dead_letter_rate_high"] {
        assert!(
            text.lines()
                .any(|l| l.contains("WARN") && l.contains("alert firing") && l.contains(r)),
            "{r} firing in the log:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("INFO") && l.contains("alert cleared") && l.contains(r)),
            "{r} cleared in the log:\n{text}"
        );
    }
}
