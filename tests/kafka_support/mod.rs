//! Helpers of the end-to-end Kafka tests: a tansu broker per test (started and stopped with
//! `scripts/kafka-up.sh` / `kafka-down.sh`), the real binary, and JSON Lines from
//! `complaintflow consume`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// The Kafka tests run one at a time (each has a broker and an engine; the machine has 2
/// cores).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fast training configuration (the model is not what these tests check).
pub const FAST: &str = "[train]\nfolds = 2\nalphas = [1.0]\n[train.features]\ntext = false\n";

#[allow(unused_imports)]
pub use complaintflow_testkit::{free_port, Broker};

pub fn bin(dir: &Path, state_dir: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_complaintflow"));
    c.current_dir(dir)
        .env_remove("COMPLAINTFLOW_CONFIG")
        .env_remove("COMPLAINTFLOW_BROKERS")
        .env(
            "RUST_LOG",
            "warn,complaintflow=info,complaintflow_pipelines=info",
        );
    c.args(["--config", "fast.toml", "--state-dir", state_dir]);
    c
}

/// Longest a test waits for one command or engine run before killing it.
pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs a command to completion (at most [`LIMIT`]); panics with its stderr when it fails.
/// Returns its stdout.
pub fn ok(c: Command) -> Vec<u8> {
    complaintflow_testkit::run_within(c, LIMIT)
}

/// A temp dir with `fast.toml` and a promoted model (trained on the bundled sample) in
/// `<dir>/state/registry`.
pub fn workdir() -> tempfile::TempDir {
    workdir_with("")
}

/// [`workdir`] with more TOML in `fast.toml`.
pub fn workdir_with(extra_toml: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("fast.toml"), format!("{FAST}{extra_toml}")).unwrap();
    let sample = complaintflow_datasets::bundled_sample_path();
    let mut c = bin(tmp.path(), "state");
    c.args(["train", "--data", sample.to_str().unwrap(), "--promote"]);
    ok(c);
    tmp
}

/// Copies `<dir>/<from>/registry` to `<dir>/<to>/registry` (the same model for two runs).
pub fn copy_registry(dir: &Path, from: &str, to: &str) {
    fn copy(a: &Path, b: &Path) {
        std::fs::create_dir_all(b).unwrap();
        for e in std::fs::read_dir(a).unwrap() {
            let e = e.unwrap();
            let target = b.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    copy(
        &dir.join(from).join("registry"),
        &dir.join(to).join("registry"),
    );
}

/// `complaintflow produce … ARGS`; returns its JSON summary.
pub fn produce(dir: &Path, broker: &str, args: &[&str]) -> serde_json::Value {
    let mut c = bin(dir, "state");
    c.args(["produce", "--brokers", broker, "--no-progress"])
        .args(args);
    serde_json::from_slice(&ok(c)).unwrap()
}

/// `complaintflow produce` in the background.
pub fn produce_spawn(dir: &Path, broker: &str, args: &[&str]) -> Child {
    bin(dir, "state")
        .args(["produce", "--brokers", broker, "--no-progress"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One consumed message.
#[derive(Clone, Debug)]
pub struct Msg {
    pub partition: i64,
    pub offset: i64,
    pub key: Option<String>,
    pub timestamp: Option<i64>,
    pub value: serde_json::Value,
}

/// Every message of `topic` (`complaintflow consume --from-beginning --until-idle 3s`).
pub fn consume(dir: &Path, broker: &str, topic: &str) -> Vec<Msg> {
    let mut c = bin(dir, "state");
    c.args(["consume", "--brokers", broker, "--topic", topic])
        .args(["--from-beginning", "--until-idle", "3s"]);
    String::from_utf8(ok(c))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Msg {
                partition: v["partition"].as_i64().unwrap(),
                offset: v["offset"].as_i64().unwrap(),
                key: v["key"].as_str().map(String::from),
                timestamp: v["timestamp"].as_i64(),
                value: v["value"].clone(),
            }
        })
        .collect()
}

/// Messages by key, the last one of each key winning (what a compacted topic keeps; keyed
/// de-duplication of at-least-once outputs). Also returns how many messages repeated a key.
pub fn by_key(msgs: &[Msg]) -> (BTreeMap<String, Msg>, usize) {
    let mut out = BTreeMap::new();
    let mut repeats = 0;
    for m in msgs {
        let key = m.key.clone().expect("every output message has a key");
        if out.insert(key, m.clone()).is_some() {
            repeats += 1;
        }
    }
    (out, repeats)
}

/// `complaintflow run` from Kafka with `args` (HTTP off; epochs of 2,000 unless `args`
/// say otherwise), in the background.
pub fn engine(dir: &Path, state_dir: &str, broker: &str, args: &[&str]) -> Child {
    let mut c = bin(dir, state_dir);
    c.args([
        "run",
        "--brokers",
        broker,
        "--source",
        "kafka:complaints-input",
    ])
    .args(["--http-addr", "off"]);
    if !args.contains(&"--max-records-per-epoch") {
        c.args(["--max-records-per-epoch", "2000"]);
    }
    c.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child (at most [`LIMIT`]: then it is killed); returns its stderr; panics when
/// it failed.
pub fn wait_ok(c: Child, what: &str) -> String {
    let end = complaintflow_testkit::wait_within(c, LIMIT);
    assert!(
        !end.timed_out,
        "{what} still running after {LIMIT:?} (killed):\n{}",
        end.stderr
    );
    assert!(
        end.status.success(),
        "{what} failed ({}):\n{}",
        end.status,
        end.stderr
    );
    end.stderr
}

/// The newest checkpoint in `<state_dir>/checkpoints` (epoch, total next offsets), if any.
pub fn latest_checkpoint(state_dir: &Path) -> Option<(u64, i64)> {
    let dir = state_dir.join("checkpoints");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-") && n.ends_with(".json"))
        .collect();
    names.sort();
    let last = names.pop()?;
    let text = std::fs::read_to_string(state_dir.join("checkpoints").join(last)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let total = v["offsets"]["complaints-input"]
        .as_object()
        .map(|m| m.values().filter_map(|o| o.as_i64()).sum())
        .unwrap_or(0);
    Some((v["epoch"].as_u64()?, total))
}

/// `--aggregates-out` rows: dimension → key → (count, escalations, mean score to 1e-9).
pub type Aggregates = BTreeMap<String, BTreeMap<String, (i64, i64, String)>>;

pub fn read_aggregates(path: &Path) -> Aggregates {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Aggregates::new();
    for (dim, answer) in v.as_object().unwrap() {
        let rows = out.entry(dim.clone()).or_default();
        for r in answer["rows"].as_array().unwrap() {
            rows.insert(
                r["key"].as_str().unwrap().to_string(),
                (
                    r["count"].as_i64().unwrap(),
                    r["escalations"].as_i64().unwrap(),
                    format!("{:.9}", r["mean_score"].as_f64().unwrap()),
                ),
            );
        }
    }
    out
}

/// The newest checkpoint file of `<state_dir>/checkpoints`, parsed.
pub fn read_latest_checkpoint(state_dir: &Path) -> serde_json::Value {
    let dir = state_dir.join("checkpoints");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-") && n.ends_with(".json"))
        .collect();
    names.sort();
    let last = names.pop().expect("a checkpoint");
    serde_json::from_str(&std::fs::read_to_string(dir.join(last)).unwrap()).unwrap()
}

/// Waits (up to 300 s) until the newest checkpoint of `state_dir` covers at least `min_read`
/// input messages, while every process in `running` still runs (one that ended first is a
/// failure: it could not be killed mid-stream). Returns the checkpoint's (epoch, read).
pub fn wait_for_checkpoint(
    running: &mut [&mut Child],
    state_dir: &Path,
    min_read: usize,
) -> (u64, i64) {
    let t0 = std::time::Instant::now();
    loop {
        for (i, c) in running.iter_mut().enumerate() {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("process {i} ended ({status}) before the checkpoint covered {min_read} messages");
            }
        }
        if let Some((epoch, read)) = latest_checkpoint(state_dir) {
            if read as usize >= min_read {
                return (epoch, read);
            }
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(300),
            "no checkpoint covering {min_read} messages in {} after 300 s",
            state_dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs the engine from Kafka until idle (3 s) with `--aggregates-out`, waits for success and
/// returns the final aggregates.
pub fn drain_with_aggregates(dir: &Path, state_dir: &str, broker: &str, what: &str) -> Aggregates {
    let out = dir.join(format!("{state_dir}-agg.json"));
    let e = engine(
        dir,
        state_dir,
        broker,
        &[
            "--until-idle",
            "3s",
            "--aggregates-out",
            out.to_str().unwrap(),
        ],
    );
    wait_ok(e, what);
    read_aggregates(&out)
}

/// `complaintflow produce --resample N --seed SEED` (+ `extra`): N resampled copies of the
/// bundled real sample with fresh ids; asserts that all N were acknowledged.
pub fn produce_resampled(dir: &Path, broker: &str, n: usize, seed: u64, extra: &[&str]) {
    let (n_s, seed_s) = (n.to_string(), seed.to_string());
    let mut args = vec!["--resample", n_s.as_str(), "--seed", seed_s.as_str()];
    args.extend_from_slice(extra);
    let summary = produce(dir, broker, &args);
    assert_eq!(summary["acked"].as_u64(), Some(n as u64), "{summary}");
}
