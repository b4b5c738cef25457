//! The locked-down API on the real binary: a non-loopback `--http-addr` without a token
//! fails to start (and `config validate` says so), with a token a POST without it is 401 and
//! `/etc/passwd` is refused; and no complaint narrative reaches the logs, at debug level, in
//! text and JSON formats, through the stream, the dead letters and a retraining request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use complaintflow_datasets::bundled_sample_path;

#[allow(dead_code)]
#[path = "support/engine.rs"]
mod engine;

#[allow(dead_code)]
#[path = "support/authed.rs"]
mod authed;

use authed::{post_retrain, send, TEST_TOKEN};
use engine::{bin, free_port, get_json, wait_for, workdir};

/// `bin` without any token in the environment.
fn clean(dir: &Path) -> Command {
    let mut c = bin(dir);
    c.env_remove("COMPLAINTFLOW_API_TOKEN")
        .env_remove("COMPLAINTFLOW_HTTP__TOKEN")
        .env_remove("COMPLAINTFLOW_HTTP__ADDR");
    c
}

#[test]
fn a_non_loopback_address_without_a_token_fails_to_start() {
    let tmp = workdir("");
    let port = free_port();
    let t = Instant::now();
    let o = clean(tmp.path())
        .args(["run", "--once", "--http-addr", &format!("0.0.0.0:{port}")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("0.0.0.0:{port}")), "{err}");
    assert!(
        err.contains("COMPLAINTFLOW_API_TOKEN="),
        "says how to set one: {err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "refused before training"
    );
    assert!(
        !tmp.path().join("state/registry").exists(),
        "nothing was trained or written"
    );
    // IPv6 any-address too; loopback is not refused (it trains and runs, so not run here).
    let o = clean(tmp.path())
        .args(["run", "--once", "--http-addr", &format!("[::]:{port}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn config_validate_reports_an_exposed_address_and_a_bad_token() {
    let tmp = workdir("");
    let validate = |env: &[(&str, &str)]| {
        let mut c = clean(tmp.path());
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.args(["config", "validate"]).output().unwrap();
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (code, out) = validate(&[("COMPLAINTFLOW_HTTP__ADDR", "0.0.0.0:8080")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("http.addr") && out.contains("COMPLAINTFLOW_API_TOKEN"),
        "{out}"
    );
    let (code, out) = validate(&[
        ("COMPLAINTFLOW_HTTP__ADDR", "0.0.0.0:8080"),
        ("COMPLAINTFLOW_API_TOKEN", "short"),
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("environment variable COMPLAINTFLOW_API_TOKEN"),
        "{out}"
    );
    assert!(!out.contains("short\""), "the token is not echoed: {out}");
    let (code, out) = validate(&[
        ("COMPLAINTFLOW_HTTP__ADDR", "0.0.0.0:8080"),
        ("COMPLAINTFLOW_API_TOKEN", TEST_TOKEN),
    ]);
    assert_eq!(code, Some(0), "{out}");
    // A configured data directory that does not exist is reported.
    let (code, out) = validate(&[("COMPLAINTFLOW_HTTP__DATA_DIRS", "[\"/no/such/dir\"]")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("/no/such/dir"), "{out}");
    // `config show` never prints the token.
    let o = clean(tmp.path())
        .args(["--api-token", TEST_TOKEN, "config", "show"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(
        shown.contains("<redacted>") && !shown.contains(TEST_TOKEN),
        "{shown}"
    );
}

/// A distinctive narrative: no real complaint, log line or message contains it.
const MARKER: &str = "QZXV-narrative-marker-7731";

/// The bundled sample's first `n` records with the marker in every narrative, plus bad
/// records (unknown state, narrative over the limit, malformed JSON) that carry it too.
fn marked_records(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(bundled_sample_path()).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut out = String::new();
    for (i, r) in records.iter().take(n).enumerate() {
        let mut r = r.clone();
        r["complaint_what_happened"] =
            format!("I was charged twice {MARKER} (record {i}) and nobody answered").into();
        if i % 50 == 7 {
            r["state"] = "QQ".into(); // unknown_state
        }
        if i % 50 == 9 {
            r["complaint_what_happened"] = format!("{MARKER} {}", "x".repeat(5000)).into();
        }
        out.push_str(&serde_json::to_string(&r).unwrap());
        out.push('\n');
    }
    out.push_str(&format!(
        "{{\"complaint_id\": \"99000001\", \"complaint_what_happened\": \"{MARKER} then cut\n"
    ));
    out.push_str(&format!(
        "{{\"complaint_id\": \"99000002\", \"date_received\": \"2020-02-31\", \"complaint_what_happened\": \"{MARKER}\"}}\n"
    ));
    let p = dir.join("state/marked.jsonl");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn an_exposed_engine_with_a_token_401s_without_it_and_logs_no_narrative() {
    // Narratives over 4,000 bytes are dead letters here (the marker record of 5,000 is one).
    let tmp = workdir("[data]\nmax_narrative_bytes = 4000\n");
    let dir = tmp.path();
    engine::train_and_promote(dir);
    let input = marked_records(dir, 400);
    let port = free_port();
    let log = dir.join("engine.log");
    let mut child = clean(dir)
        .env("COMPLAINTFLOW_API_TOKEN", TEST_TOKEN)
        .env("RUST_LOG", "debug")
        .args(["run", "--http-addr", &format!("0.0.0.0:{port}")])
        .args(["--source", &format!("file:{}", input.display())])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let guard = KillOnDrop(&mut child);
    wait_for(
        Duration::from_secs(120),
        "the engine to process its input",
        || {
            get_json(&addr, "/api/metrics")
                .is_some_and(|m| m["records_processed"].as_u64() == Some(402))
        },
    );
    // Without the token, with a wrong one: 401, and nothing starts.
    let a = post_retrain(&addr, None, "/etc/passwd").unwrap();
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.head.contains("www-authenticate: bearer"), "{}", a.head);
    assert!(a.error().contains("Authorization: Bearer"), "{}", a.body);
    let a = post_retrain(&addr, Some("not-the-token-not-the-token"), "/etc/passwd").unwrap();
    assert_eq!(a.status, 401, "{}", a.body);
    // With the token: /etc/passwd is outside the data directories.
    let a = post_retrain(&addr, Some(TEST_TOKEN), "/etc/passwd").unwrap();
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.error().contains("outside the data directories"),
        "{}",
        a.body
    );
    // A `..` escape from the state directory, and a symlink in it pointing out.
    let escape = format!("{}/state/../../../../../../etc/passwd", dir.display());
    assert_eq!(
        post_retrain(&addr, Some(TEST_TOKEN), &escape)
            .unwrap()
            .status,
        403
    );
    #[cfg(unix)]
    {
        let link = dir.join("state/passwd.json");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let a = post_retrain(&addr, Some(TEST_TOKEN), link.to_str().unwrap()).unwrap();
        assert_eq!(a.status, 403, "{}", a.body);
    }
    // A body over the limit.
    let big = format!("{{\"path\": \"{}\"}}", "a".repeat(100_000));
    let a = send(
        &addr,
        "POST",
        "/api/retrain",
        &[("Authorization", &format!("Bearer {TEST_TOKEN}"))],
        &big,
    )
    .unwrap();
    assert_eq!(a.status, 413, "{}", a.body);
    // The marked file in the state directory: accepted; retraining reads the narratives.
    let a = post_retrain(&addr, Some(TEST_TOKEN), input.to_str().unwrap()).unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    wait_for(Duration::from_secs(180), "the retraining to finish", || {
        get_json(&addr, "/api/models").is_some_and(|m| {
            m["versions"].as_array().is_some_and(|v| v.len() >= 2)
                || m["retraining"].as_array().is_some_and(|r| {
                    r.iter().any(|l| {
                        l.as_str()
                            .is_some_and(|l| l.contains("failed") || l.contains("refused"))
                    })
                })
        })
    });
    drop(guard);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("DEBUG") || logged.contains("debug"),
        "debug logging was on: {logged}"
    );
    assert!(logged.contains("retraining accepted"), "{logged}");
    assert!(
        !logged.contains(MARKER),
        "a narrative reached the log:\n{}",
        logged
            .lines()
            .filter(|l| l.contains(MARKER))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The records did go through: the dead letters keep their bytes (that file is data, not a log).
    let dead = std::fs::read_to_string(dir.join("state/dead-letters.jsonl")).unwrap();
    assert!(dead.contains(MARKER));
    assert!(dead.lines().count() >= 4, "{dead}");

    // A batch run with JSON logs at debug level: the same.
    let o = clean(dir)
        .env("RUST_LOG", "debug")
        .args([
            "--log-format",
            "json",
            "run",
            "--once",
            "--http-addr",
            "off",
        ])
        .args(["--source", &format!("file:{}", input.display())])
        .args(["--predictions", "p2.jsonl", "--dead-letters", "d2.jsonl"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("\"level\":\"DEBUG\"") || err.contains("\"level\":\"INFO\""),
        "{err}"
    );
    assert!(!err.contains(MARKER), "a narrative reached the JSON log");
    assert!(!String::from_utf8_lossy(&o.stdout).contains(MARKER));
}

/// Kills the child if the test fails before stopping it.
struct KillOnDrop<'a>(&'a mut std::process::Child);
impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
