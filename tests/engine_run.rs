//! The real binary: `complaintflow run` with 1 worker, 2 workers and 2 processes gives the
//! same predictions; malformed records go to dead letters; the HTTP aggregates match a
//! recount of the predictions file; a model swap mid-stream loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use complaintflow_datasets::bundled_sample_path;

const FAST: &str = "[train]\nfolds = 2\nalphas = [1.0]\n[train.features]\ntext = false\n";

fn bin(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_complaintflow"));
    c.current_dir(dir)
        .env_remove("COMPLAINTFLOW_CONFIG")
        .env("RUST_LOG", "warn");
    c.args(["--config", "fast.toml", "--state-dir", "state"]);
    c
}

/// The bundled sample as JSON Lines plus three malformed lines (synthetic, labelled here).
fn input_with_malformed(dir: &Path) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(bundled_sample_path()).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut out = String::new();
    for (i, r) in records.iter().enumerate() {
        out.push_str(&serde_json::to_string(r).unwrap());
        out.push('\n');
        if i == 10 {
            out.push_str("{\"complaint_id\": \"1\", \"date_received\": \"2019-02-30\"}\n");
            // no such day
        }
        if i == 20 {
            out.push_str("{\"complaint_id\": \"2\", \"date_rec\n"); // truncated
        }
        if i == 30 {
            out.push_str(
                "{\"complaint_id\": \"3\", \"date_received\": \"2019-01-01\", \"state\": \"QQ\"}\n",
            );
        }
    }
    let p = dir.join("input.jsonl");
    std::fs::write(&p, out).unwrap();
    (p, records.len())
}

fn setup() -> (tempfile::TempDir, PathBuf, usize) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("fast.toml"), FAST).unwrap();
    let o = bin(tmp.path())
        .args([
            "train",
            "--data",
            bundled_sample_path().to_str().unwrap(),
            "--promote",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (input, n) = input_with_malformed(tmp.path());
    (tmp, input, n)
}

type Key = (String, String, String, bool, String, String);

fn predictions(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn keys(preds: &[serde_json::Value]) -> BTreeSet<Key> {
    preds
        .iter()
        .map(|p| {
            (
                p["complaint_id"].as_str().unwrap().to_string(),
                p["model_version"].as_str().unwrap().to_string(),
                format!("{:.9}", p["score"].as_f64().unwrap()),
                p["escalate"].as_bool().unwrap(),
                p["priority"].as_str().unwrap().to_string(),
                p["queue"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn run_once(dir: &Path, input: &Path, tag: &str, extra: &[&str]) -> Child {
    bin(dir)
        .args([
            "run",
            "--once",
            "--http-addr",
            "off",
            "--max-records-per-epoch",
            "500",
        ])
        .args(["--source", &format!("file:{}", input.display())])
        .args([
            "--predictions",
            &format!("{tag}-pred.jsonl"),
            "--dead-letters",
            &format!("{tag}-dl.jsonl"),
            "--aggregates-out",
            &format!("{tag}-agg.json"),
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 10 minutes: a hung run is killed and fails with its log).
fn wait_ok(c: Child) {
    let end = complaintflow_testkit::wait_within(c, Duration::from_secs(600));
    assert!(
        end.status.success() && !end.timed_out,
        "run failed ({}{}): {}",
        end.status,
        if end.timed_out {
            ", killed after 600 s"
        } else {
            ""
        },
        end.stderr
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hostfile of two free loopback ports in `dir`.
fn hostfile(dir: &Path) -> PathBuf {
    let hosts = dir.join("hosts.txt");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    hosts
}

#[test]
fn one_worker_two_workers_and_two_processes_agree() {
    let (tmp, input, n) = setup();
    let dir = tmp.path();
    wait_ok(run_once(dir, &input, "w1", &["--workers", "1"]));
    wait_ok(run_once(dir, &input, "w2", &["--workers", "2"]));
    let hosts = hostfile(dir);
    let h = hosts.to_str().unwrap();
    let p0 = run_once(
        dir,
        &input,
        "p2",
        &[
            "--workers",
            "1",
            "--processes",
            "2",
            "--process",
            "0",
            "--hostfile",
            h,
        ],
    );
    let p1 = run_once(
        dir,
        &input,
        "p2x",
        &[
            "--workers",
            "1",
            "--processes",
            "2",
            "--process",
            "1",
            "--hostfile",
            h,
        ],
    );
    wait_ok(p0);
    wait_ok(p1);

    let w1 = predictions(&dir.join("w1-pred.jsonl"));
    assert_eq!(w1.len(), n, "one prediction per valid input");
    let k1 = keys(&w1);
    assert_eq!(k1.len(), n, "no complaint predicted twice");
    assert_eq!(
        k1,
        keys(&predictions(&dir.join("w2-pred.jsonl"))),
        "1 vs 2 workers"
    );
    assert_eq!(
        k1,
        keys(&predictions(&dir.join("p2-pred.jsonl"))),
        "1 worker vs 2 processes"
    );

    // Aggregates: identical in every dimension except `hour` (the wall-clock hour of the
    // decision, which depends on when each run happened); their totals must still agree.
    let agg = |tag: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(format!("{tag}-agg.json"))).unwrap())
            .unwrap()
    };
    let (a1, a2, ap) = (agg("w1"), agg("w2"), agg("p2"));
    for dim in ["product", "state", "company", "issue", "month"] {
        let rows = &a1[dim]["rows"];
        assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{dim}");
        assert_eq!(rows, &a2[dim]["rows"], "{dim}: 1 vs 2 workers");
        assert_eq!(rows, &ap[dim]["rows"], "{dim}: 1 worker vs 2 processes");
        let total: u64 = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, n as u64, "{dim}: every prediction counted once");
    }
    for a in [&a1, &a2, &ap] {
        let total: u64 = a["hour"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, n as u64, "hour: every prediction counted once");
    }

    for tag in ["w1", "w2", "p2"] {
        let dl = predictions(&dir.join(format!("{tag}-dl.jsonl")));
        let kinds: BTreeSet<&str> = dl.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(dl.len(), 3, "{tag}: {dl:?}");
        assert!(
            kinds.contains("unparseable_date") && kinds.contains("unknown_state"),
            "{kinds:?}"
        );
        assert!(dl
            .iter()
            .all(|d| !d["message"].as_str().unwrap().is_empty()));
    }
}

fn http_get(addr: &str, path: &str) -> Option<serde_json::Value> {
    http(addr, "GET", path, None)
}

fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (_, b) = resp.split_once("\r\n\r\n")?;
    serde_json::from_str(b).ok()
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cluster_process_whose_peer_never_starts_stops_with_an_error() {
    let (tmp, input, _) = setup();
    let dir = tmp.path();
    let hosts = hostfile(dir);
    let h = hosts.to_str().unwrap();
    // Process 0 alone: process 1 never connects.
    let p0 = run_once(
        dir,
        &input,
        "alone",
        &[
            "--processes",
            "2",
            "--process",
            "0",
            "--hostfile",
            h,
            "--join-timeout",
            "2s",
        ],
    );
    let end = complaintflow_testkit::wait_within(p0, Duration::from_secs(120));
    assert!(
        !end.timed_out,
        "process 0 still waiting after 120 s (killed)"
    );
    assert_eq!(end.status.code(), Some(70), "{}", end.stderr);
    assert!(
        end.stderr.contains("waited 2s for its peers") && end.stderr.contains("--join-timeout"),
        "{}",
        end.stderr
    );
}

#[test]
fn http_aggregates_match_a_recount_of_the_predictions_file() {
    let (tmp, input, n) = setup();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = bin(dir)
        .args([
            "run",
            "--http-addr",
            &addr,
            "--source",
            &format!("file:{}", input.display()),
        ])
        .args(["--predictions", "pred.jsonl", "--dead-letters", "dl.jsonl"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        || {
            http_get(&addr, "/api/metrics")
                .is_some_and(|m| m["predictions"].as_u64() == Some(n as u64))
                && http_get(&addr, "/health").is_some_and(|h| !h["epoch"].is_null())
        },
        "all predictions",
    );
    // The view is published when the last epoch completes; poll until it covers everything.
    let mut agg = serde_json::Value::Null;
    wait_for(
        || {
            agg = http_get(&addr, "/api/aggregates?by=product").unwrap_or_default();
            agg["rows"].as_array().is_some_and(|r| {
                r.iter().map(|x| x["count"].as_i64().unwrap()).sum::<i64>() == n as i64
            })
        },
        "complete aggregates",
    );
    // The same answer as a table from the CLI client: one row per state, counts summing to
    // every prediction.
    let by_state = http_get(&addr, "/api/aggregates?by=state").unwrap();
    let o = bin(dir)
        .args(["query", "aggregates", "--by", "state", "--addr", &addr])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<&str> = table.lines().skip(2).collect();
    assert_eq!(
        rows.len(),
        by_state["rows"].as_array().unwrap().len(),
        "{table}"
    );
    let counted: u64 = rows
        .iter()
        .map(|l| {
            l.split_whitespace()
                .rev()
                .nth(3)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, n as u64, "{table}");
    assert!(
        table.contains(&format!("as of epoch {}", by_state["as_of"])),
        "{table}"
    );

    let bad = http(&addr, "GET", "/api/aggregates?by=colour", None).unwrap();
    assert!(bad["error"].as_str().unwrap().contains("colour"));
    let recent = http_get(&addr, "/api/predictions/recent?limit=5").unwrap();
    assert_eq!(recent.as_array().unwrap().len(), 5);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success(), "clean exit on SIGINT");

    let mut recount: BTreeMap<String, (i64, i64, f64)> = BTreeMap::new();
    for p in predictions(&dir.join("pred.jsonl")) {
        let e = recount
            .entry(p["product"].as_str().unwrap_or("(missing)").to_string())
            .or_default();
        e.0 += 1;
        e.1 += i64::from(p["escalate"].as_bool().unwrap());
        e.2 += p["score"].as_f64().unwrap();
    }
    let rows = agg["rows"].as_array().unwrap();
    assert_eq!(rows.len(), recount.len());
    for r in rows {
        let (c, e, s) = recount[r["key"].as_str().unwrap()];
        assert_eq!(r["count"].as_i64().unwrap(), c);
        assert_eq!(r["escalations"].as_i64().unwrap(), e);
        assert!((r["escalation_rate"].as_f64().unwrap() - e as f64 / c as f64).abs() < 1e-12);
        assert!((r["mean_score"].as_f64().unwrap() - s / c as f64).abs() < 1e-5);
    }
}

#[test]
fn retraining_mid_stream_swaps_the_model_and_loses_nothing() {
    let (tmp, input, n) = setup();
    let dir = tmp.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = bin(dir)
        .args(["--api-token", "engine-run-test-token-0123"])
        .args([
            "run",
            "--once",
            "--http-addr",
            &addr,
            "--rate",
            "400/s",
            "--trigger-ms",
            "200",
        ])
        .args([
            "--source",
            &format!("file:{}", input.display()),
            "--predictions",
            "pred.jsonl",
            "--dead-letters",
            "dl.jsonl",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        || {
            http_get(&addr, "/api/metrics")
                .is_some_and(|m| m["predictions"].as_u64().unwrap_or(0) > 0)
        },
        "first predictions",
    );
    // `complaintflow retrain` against the running instance (it POSTs /api/retrain).
    let o = bin(dir)
        .args(["--api-token", "engine-run-test-token-0123"])
        .args([
            "retrain",
            "--data",
            bundled_sample_path().to_str().unwrap(),
            "--addr",
            &addr,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("retraining accepted"));
    assert!(child.wait().unwrap().success());

    let preds = predictions(&dir.join("pred.jsonl"));
    assert_eq!(preds.len(), n, "every valid input predicted exactly once");
    assert_eq!(
        keys(&preds)
            .iter()
            .map(|k| k.0.clone())
            .collect::<BTreeSet<_>>()
            .len(),
        n
    );
    let versions: BTreeMap<String, usize> = preds.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p["model_version"].as_str().unwrap().to_string())
            .or_default() += 1;
        m
    });
    assert_eq!(versions.len(), 2, "both versions appear: {versions:?}");
    // After the swap epoch every prediction carries the new version.
    let swap_epoch = preds
        .iter()
        .filter(|p| p["model_version"] == "v0002")
        .map(|p| p["epoch"].as_u64().unwrap())
        .min()
        .unwrap();
    assert!(preds
        .iter()
        .filter(|p| p["epoch"].as_u64().unwrap() >= swap_epoch)
        .all(|p| p["model_version"] == "v0002"));
}
