//! Live model quality through the real binary: `run --once --outcomes` writes
//! `model_accuracy.<version>` in `--aggregates-out`, recounted here from the predictions file
//! and the labels of the held-out file (the bundled sample's 25 % hash split that `train`
//! holds out); `rescore` scores the same file with another registry version; a running engine
//! answers `query quality` and `/metrics` with the same figures as `/api/model/quality`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use complaintflow_datasets::{bundled_sample_path, LabelPolicy};
use complaintflow_models::metrics::auc_roc;

#[allow(dead_code)]
#[path = "support/engine.rs"]
mod engine;

use engine::{bin, get_json, request, train_and_promote, wait_for, workdir, Engine};

/// The held-out quarter of the sample as JSON Lines, and each complaint's label.
fn held_out(dir: &Path) -> (PathBuf, BTreeMap<String, Option<bool>>) {
    let (path, complaints) = complaintflow_testkit::write_held_out(dir);
    let labels = complaints
        .iter()
        .map(|c| (c.complaint_id.0.to_string(), LabelPolicy::Relief.label(c)))
        .collect();
    (path, labels)
}

/// (labelled, exact AUC) of the predictions in `path` against `labels`.
fn recount(path: &Path, labels: &BTreeMap<String, Option<bool>>) -> (u64, f64) {
    let (mut s, mut y) = (Vec::new(), Vec::new());
    for l in std::fs::read_to_string(path).unwrap().lines() {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        if let Some(Some(label)) = labels.get(d["complaint_id"].as_str().unwrap()) {
            s.push(d["score"].as_f64().unwrap());
            y.push(*label);
        }
    }
    (y.len() as u64, auc_roc(&s, &y).unwrap())
}

fn ok(c: &mut std::process::Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn run_once_with_outcomes_writes_model_accuracy_that_matches_a_recount() {
    let tmp = workdir("");
    let dir = tmp.path();
    train_and_promote(dir);
    let (h, labels) = held_out(dir);
    let want = labels.values().filter(|l| l.is_some()).count() as u64;
    let src = format!("file:{}", h.display());
    ok(bin(dir).args([
        "run",
        "--once",
        "--http-addr",
        "off",
        "--workers",
        "2",
        "--source",
        &src,
        "--outcomes",
        &src,
        "--aggregates-out",
        "agg.json",
        "--predictions",
        "pred.jsonl",
    ]));
    let agg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("agg.json")).unwrap()).unwrap();
    let acc = agg["model_accuracy"].as_object().unwrap();
    assert_eq!(acc.len(), 1, "{acc:?}");
    let (version, m) = acc.iter().next().unwrap();
    let (labelled, auc) = recount(&dir.join("pred.jsonl"), &labels);
    assert_eq!(m["labelled"].as_u64(), Some(want), "{m}");
    assert_eq!(labelled, want);
    let live = m["auc"].as_f64().unwrap();
    assert!((live - auc).abs() <= 0.005, "live {live} vs exact {auc}");
    for k in ["positives", "pr_auc", "precision", "recall", "f1", "ece"] {
        assert!(!m[k].is_null(), "{k}: {m}");
    }
    assert!(["MONITOR", "RETRAIN", "INVESTIGATE"].contains(&m["action"].as_str().unwrap()));
    eprintln!("{version}: labelled {want}, live AUC {live:.5}, exact {auc:.5}, {m}");

    // A second version (logistic regression only), rescored over the same file.
    ok(bin(dir).args([
        "train",
        "--family",
        "lr",
        "--data",
        bundled_sample_path().to_str().unwrap(),
    ]));
    let out = ok(bin(dir).args(["models", "list"]));
    let other = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|v| v.starts_with('v') && v != version)
        .unwrap_or_else(|| panic!("no second version in {out}"))
        .to_string();
    ok(bin(dir).args([
        "rescore",
        "--model",
        &other,
        "--data",
        h.to_str().unwrap(),
        "--aggregates-out",
        "agg2.json",
    ]));
    let agg2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("agg2.json")).unwrap()).unwrap();
    let m2 = &agg2["model_accuracy"][&other];
    let rescored = dir.join(format!("state/rescore-{other}.jsonl"));
    let (labelled2, auc2) = recount(&rescored, &labels);
    assert_eq!(
        (m2["labelled"].as_u64(), labelled2),
        (Some(want), want),
        "{agg2}"
    );
    assert!((m2["auc"].as_f64().unwrap() - auc2).abs() <= 0.005);
    assert_eq!(
        agg2["model_accuracy"].as_object().unwrap().len(),
        1,
        "{agg2}"
    );
    assert!(
        (auc2 - auc).abs() > 1e-9,
        "the rescore used {other}, a different model: {auc2} vs {auc}"
    );
    eprintln!("rescored with {other}: AUC {auc2:.5} against {version}'s {auc:.5}");
}

#[test]
fn a_running_engine_answers_query_quality_and_metrics() {
    let tmp = workdir("");
    let dir = tmp.path();
    // The default job: it replays the sample's held-out quarter and reads it back as outcomes.
    let e = Engine::start(dir, &[], None);
    wait_for(
        Duration::from_secs(180),
        "quality as of the whole replay",
        || {
            get_json(&e.addr, "/api/model/quality").is_some_and(|q| {
                q["versions"].as_object().is_some_and(|v| {
                    v.values()
                        .any(|m| m["labelled"].as_u64().unwrap_or(0) > 500)
                }) && q["drift"]["product_psi"].is_number()
                    && get_json(&e.addr, "/api/metrics")
                        .is_some_and(|m| m["input_waiting"] == false)
            })
        },
    );
    // Settled: the replay is over, nothing changes any more.
    std::thread::sleep(Duration::from_millis(500));
    let q = get_json(&e.addr, "/api/model/quality").unwrap();
    let (version, m) = q["versions"].as_object().unwrap().iter().next().unwrap();
    let table = ok(bin(dir).args(["query", "quality", "--addr", &e.addr]));
    let row = table
        .lines()
        .find(|l| l.starts_with(version.as_str()))
        .unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols[1],
        m["labelled"].as_u64().unwrap().to_string(),
        "{row}"
    );
    assert_eq!(
        cols[3],
        format!("{:.4}", m["auc"].as_f64().unwrap()),
        "{row}"
    );
    assert!(row.contains(m["action"].as_str().unwrap()), "{row}");
    let metrics = request(&e.addr, "GET", "/metrics", None).unwrap().body;
    let labelled_line = format!(
        "complaintflow_model_labelled_total{{version=\"{version}\"}} {}",
        m["labelled"]
    );
    assert!(
        metrics.contains(&labelled_line),
        "{labelled_line} not in /metrics"
    );
    assert!(
        metrics.contains(&format!(
            "complaintflow_model_quality{{version=\"{version}\",metric=\"auc\"}}"
        )),
        "{metrics}"
    );
    // The replay is the held-out quarter of the same sample the model trained on: its mix
    // of products and states is close to the training mix.
    let psi = q["drift"]["product_psi"].as_f64().unwrap();
    assert!((0.0..0.25).contains(&psi), "{psi}");
    assert!(
        metrics.contains("complaintflow_input_psi{input=\"product\"}"),
        "{metrics}"
    );
    assert!(
        table.contains("drift (PSI against the training data)"),
        "{table}"
    );
    e.stop();
}

#[test]
fn one_worker_and_two_processes_give_the_same_quality() {
    let tmp = workdir("");
    let dir = tmp.path();
    train_and_promote(dir);
    let (h, labels) = held_out(dir);
    let src = format!("file:{}", h.display());
    let run = |tag: &str, extra: &[&str]| {
        let mut c = bin(dir);
        c.args([
            "run",
            "--once",
            "--http-addr",
            "off",
            "--max-records-per-epoch",
            "200",
            "--source",
            &src,
            "--outcomes",
            &src,
        ])
        .args(["--aggregates-out", &format!("{tag}.json")])
        .args(["--predictions", &format!("{tag}.jsonl")])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let wait = |c: std::process::Child| {
        let end = complaintflow_testkit::wait_within(c, Duration::from_secs(600));
        assert!(end.status.success() && !end.timed_out, "{}", end.stderr);
    };
    wait(run("w1", &["--workers", "1"]));
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let hosts = dir.join("hosts.txt");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", port(0), port(1)),
    )
    .unwrap();
    let h = hosts.to_str().unwrap();
    let cluster = ["--workers", "1", "--processes", "2", "--hostfile", h];
    let p0 = run("p0", &[&cluster[..], &["--process", "0"]].concat());
    let p1 = run("p1", &[&cluster[..], &["--process", "1"]].concat());
    wait(p0);
    wait(p1);
    let acc = |tag: &str| -> serde_json::Value {
        let a: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{tag}.json"))).unwrap(),
        )
        .unwrap();
        a["model_accuracy"].clone()
    };
    let (one, two) = (acc("w1"), acc("p0"));
    assert_eq!(one, two, "1 worker vs 2 processes");
    let want = labels.values().filter(|l| l.is_some()).count() as u64;
    let m = one.as_object().unwrap().values().next().unwrap();
    assert_eq!(m["labelled"].as_u64(), Some(want));
    // Process 0 wrote every prediction, so the recount covers the whole cluster.
    let (labelled, auc) = recount(&dir.join("p0.jsonl"), &labels);
    assert_eq!(labelled, want);
    assert!((m["auc"].as_f64().unwrap() - auc).abs() <= 0.005);
}
