//! End-to-end tests of the engine on the bundled real CFPB sample (4,303 complaints) plus
//! malformed lines appended in a temp file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use complaintflow_datasets::replay::Rate;
use complaintflow_datasets::{Format, RawRecords};
use complaintflow_models::Model;
use complaintflow_operators::{DeadLetter, Decision};
use complaintflow_pipelines::{
    start, Dimension, EngineConfig, RetrainRequest, RunSummary, SourceSpec, Totals,
};

use complaintflow_testkit::fast_train_config;

/// The model used by every test of this binary: trained once on the bundled sample.
fn model() -> Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let t = Instant::now();
            let rows =
                complaintflow_testkit::real_records(&complaintflow_datasets::bundled_sample_path());
            let m = complaintflow_testkit::fast_model(&rows, "test-v1");
            eprintln!("test model trained in {:?}", t.elapsed());
            m
        })
        .clone()
}

/// Malformed lines appended to the sample, with the dead-letter kind each must produce.
fn malformed() -> Vec<(Vec<u8>, &'static str)> {
    let mut big =
        br#"{"complaint_id":"77","date_received":"2020-01-01","complaint_what_happened":""#
            .to_vec();
    big.extend(std::iter::repeat_n(b'a', 1_100_000));
    big.extend(br#""}"#);
    vec![
        (b"{this is not json".to_vec(), "malformed_json"),
        (br#"{"complaint_id":"900000000001","date_received":"2020-13-45"}"#.to_vec(), "unparseable_date"),
        (br#"{"complaint_id":"900000000002","date_received":"2020-01-01","product":17}"#.to_vec(), "wrong_type"),
        (br#"{"date_received":"2020-01-01","product":"Mortgage"}"#.to_vec(), "missing_field"),
        (b"{\"complaint_id\":\"900000000003\",\"date_received\":\"2020-01-01\",\"product\":\"\xff\xfe\"}".to_vec(), "invalid_utf8"),
        (br#"{"complaint_id":"900000000004","date_received":"2020-01-01","state":"ZZ"}"#.to_vec(), "unknown_state"),
        (big, "record_too_large"),
    ]
}

/// The sample as JSON Lines, then the malformed lines, then a duplicate of the first record.
/// Returns (path, number of valid distinct complaints).
fn input_file(dir: &Path) -> (PathBuf, usize) {
    let path = dir.join("input.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut first: Option<Vec<u8>> = None;
    let mut valid = 0;
    let opts = Default::default();
    for r in RawRecords::from_path(
        complaintflow_datasets::bundled_sample_path(),
        Format::Auto,
        1 << 20,
    )
    .unwrap()
    {
        let r = r.unwrap();
        if r.parse(&opts).is_ok() {
            valid += 1;
        }
        // The sample is a pretty-printed JSON array: one compact object per line.
        let v: serde_json::Value = serde_json::from_slice(&r.bytes).unwrap();
        let line = serde_json::to_vec(&v).unwrap();
        f.write_all(&line).unwrap();
        f.write_all(b"\n").unwrap();
        first.get_or_insert(line);
    }
    for (line, _) in malformed() {
        f.write_all(&line).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.write_all(&first.unwrap()).unwrap();
    f.write_all(b"\n").unwrap();
    (path, valid)
}

fn config(dir: &Path, workers: usize) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir.join("registry"));
    cfg.workers = workers;
    cfg.once = true;
    cfg.policy.max_records_per_epoch = 500;
    cfg.predictions_path = Some(dir.join("predictions.jsonl"));
    cfg.dead_letters_path = Some(dir.join("dead.jsonl"));
    cfg.train = fast_train_config();
    cfg
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct Run {
    summary: RunSummary,
    decisions: Vec<Decision>,
    dead: Vec<DeadLetter>,
    aggregates: BTreeMap<Dimension, BTreeMap<String, Totals>>,
    as_of: Option<u64>,
}

fn run(dir: &Path, cfg: EngineConfig, source: SourceSpec) -> Run {
    let engine = start(cfg.clone(), source, model()).unwrap();
    let state = engine.state();
    let summary = engine.join().unwrap();
    let view = state.aggregates.read().unwrap().clone();
    let _ = dir;
    Run {
        summary,
        decisions: read_jsonl(cfg.predictions_path.as_ref().unwrap()),
        dead: read_jsonl(cfg.dead_letters_path.as_ref().unwrap()),
        aggregates: view.totals,
        as_of: view.as_of,
    }
}

/// A decision without its run-dependent fields (epoch, times), scores compared bit for bit.
type Key = (String, String, u64, bool, String, String, Vec<String>);
fn key(d: &Decision) -> Key {
    (
        d.complaint_id.clone(),
        d.model_version.to_string(),
        d.score.to_bits(),
        d.escalate,
        d.priority.to_string(),
        d.queue.to_string(),
        d.reasons.clone(),
    )
}

fn recount(decisions: &[Decision]) -> BTreeMap<Dimension, BTreeMap<String, (i64, i64, f64)>> {
    let mut out: BTreeMap<Dimension, BTreeMap<String, (i64, i64, f64)>> = BTreeMap::new();
    for d in decisions {
        for dim in Dimension::ALL {
            let e = out
                .entry(dim)
                .or_default()
                .entry(dim.key_of(d))
                .or_default();
            e.0 += 1;
            e.1 += i64::from(d.escalate);
            e.2 += d.score;
        }
    }
    out
}

fn without_hour(
    a: &BTreeMap<Dimension, BTreeMap<String, Totals>>,
) -> BTreeMap<Dimension, BTreeMap<String, Totals>> {
    a.iter()
        .filter(|(d, _)| **d != Dimension::Hour)
        .map(|(d, m)| (*d, m.clone()))
        .collect()
}

#[test]
fn one_and_two_workers_agree_and_aggregates_match_the_predictions_file() {
    let dir1 = tempfile::tempdir().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let (input, valid) = input_file(dir1.path());
    let source = SourceSpec::File {
        path: input.clone(),
        format: Format::Auto,
    };
    let one = run(dir1.path(), config(dir1.path(), 1), source.clone());
    let two = run(dir2.path(), config(dir2.path(), 2), source);

    // Every valid distinct complaint is predicted exactly once; everything else is a dead
    // letter; nothing is lost.
    for r in [&one, &two] {
        assert_eq!(
            r.decisions.len(),
            valid,
            "one prediction per valid complaint"
        );
        let ids: BTreeSet<&str> = r
            .decisions
            .iter()
            .map(|d| d.complaint_id.as_str())
            .collect();
        assert_eq!(ids.len(), valid, "no complaint predicted twice");
        assert_eq!(r.summary.predictions as usize, valid);
        assert_eq!(
            r.summary.records_in,
            r.summary.predictions + r.summary.dead_letters,
            "every record read is a prediction or a dead letter"
        );
        assert_eq!(r.dead.len() as u64, r.summary.dead_letters);
    }
    // Identical predictions (as sets) and aggregates with 1 and 2 workers.
    let set1: BTreeSet<Key> = one.decisions.iter().map(key).collect();
    let set2: BTreeSet<Key> = two.decisions.iter().map(key).collect();
    assert_eq!(set1, set2);
    assert_eq!(without_hour(&one.aggregates), without_hour(&two.aggregates));
    let dead1: BTreeSet<_> = one
        .dead
        .iter()
        .map(|d| (d.kind.clone(), d.origin.clone()))
        .collect();
    let dead2: BTreeSet<_> = two
        .dead
        .iter()
        .map(|d| (d.kind.clone(), d.origin.clone()))
        .collect();
    assert_eq!(dead1, dead2);

    // Aggregates equal a recount from the predictions file, in every dimension, and are
    // complete through the last epoch.
    for r in [&one, &two] {
        let recounted = recount(&r.decisions);
        for dim in Dimension::ALL {
            let got = r.aggregates.get(&dim).cloned().unwrap_or_default();
            let want = recounted.get(&dim).cloned().unwrap_or_default();
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{dim:?} keys"
            );
            for (k, (n, e, s)) in want {
                let t = got[&k];
                assert_eq!((t.count, t.escalations), (n, e), "{dim:?} {k}");
                assert!(
                    (t.score_sum_micro as f64 / 1e6 - s).abs() < 1e-6 * n as f64 + 1e-6,
                    "{dim:?} {k} score sum"
                );
            }
        }
        let last_epoch = r.decisions.iter().map(|d| d.epoch).max().unwrap();
        assert!(
            r.as_of >= Some(last_epoch),
            "as_of {:?} < {last_epoch}",
            r.as_of
        );
    }
}

#[test]
fn malformed_records_become_dead_letters_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (input, valid) = input_file(dir.path());
    let r = run(
        dir.path(),
        config(dir.path(), 2),
        SourceSpec::File {
            path: input,
            format: Format::JsonLines,
        },
    );
    let mut want: Vec<&str> = malformed().into_iter().map(|(_, k)| k).collect();
    want.push("duplicate_id");
    want.sort();
    // The sample itself is clean: the only dead letters are the appended lines.
    let mut got: Vec<&str> = r.dead.iter().map(|d| d.kind.as_str()).collect();
    got.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "dead letters: {:?}",
        &got[..got.len().min(20)]
    );
    assert_eq!(got, want);
    for d in &r.dead {
        assert!(!d.message.is_empty(), "{d:?} has no reason");
        assert!(d.origin.source.ends_with("input.jsonl"));
    }
    let dup = r.dead.iter().find(|d| d.kind == "duplicate_id").unwrap();
    let first = r
        .decisions
        .iter()
        .find(|d| Some(&d.complaint_id) == dup.complaint_id.as_ref());
    assert!(
        first.is_some(),
        "the first occurrence of a duplicated id is still predicted"
    );
    assert_eq!(
        r.decisions.len(),
        valid,
        "the job kept going after the bad records"
    );
    assert_eq!(
        r.summary.dead_letters_by_kind.values().sum::<u64>(),
        want.len() as u64
    );
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn retrain_while_streaming_swaps_the_model_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 2);
    cfg.once = false;
    cfg.policy.max_records_per_epoch = 200;
    cfg.policy.trigger_interval = Duration::from_millis(200);
    let sample = complaintflow_datasets::bundled_sample_path();
    // Resampled copies of the real sample (synthetic ids), paced, so the stream is still
    // running when the new model arrives.
    let source = SourceSpec::Replay {
        path: sample.clone(),
        format: Format::Auto,
        rate: Rate::PerSecond(2_000.0),
        resample: Some(1_000_000),
        seed: 42,
    };
    let engine = start(cfg.clone(), source, model()).unwrap();
    let state = engine.state();
    wait_until("first predictions", Duration::from_secs(60), || {
        state.predictions.load(std::sync::atomic::Ordering::Relaxed) > 500
    });
    engine
        .request_retrain(RetrainRequest {
            path: sample,
            format: Format::Auto,
            train_config: Some(fast_train_config()),
            ab_fraction: None,
        })
        .unwrap();
    wait_until("the new model to score", Duration::from_secs(180), || {
        state
            .snapshot()
            .predictions_by_model
            .iter()
            .any(|(v, n)| v != "test-v1" && *n >= 500)
    });
    engine.shutdown();
    let summary = engine.join().unwrap();

    let decisions: Vec<Decision> = read_jsonl(cfg.predictions_path.as_ref().unwrap());
    let versions: BTreeSet<&str> = decisions.iter().map(|d| &*d.model_version).collect();
    assert_eq!(versions.len(), 2, "both versions appear: {versions:?}");
    let new = *versions.iter().find(|v| **v != "test-v1").unwrap();
    // Nothing lost: every record read was predicted (the resampled sample has no bad record).
    assert_eq!(summary.dead_letters, 0);
    assert_eq!(decisions.len() as u64, summary.records_in);
    assert_eq!(summary.parsed, summary.records_in);
    let ids: BTreeSet<&str> = decisions.iter().map(|d| d.complaint_id.as_str()).collect();
    assert_eq!(ids.len(), decisions.len(), "no record predicted twice");
    // The swap happens at one epoch on every worker: before it the old model, from it the new.
    let swap = decisions
        .iter()
        .filter(|d| &*d.model_version == new)
        .map(|d| d.epoch)
        .min()
        .unwrap();
    assert!(swap > 0, "the swap happened mid-stream");
    for d in &decisions {
        let want = if d.epoch < swap { "test-v1" } else { new };
        assert_eq!(
            &*d.model_version, want,
            "epoch {} (swap at {swap})",
            d.epoch
        );
    }
    // The new version is registered and promoted; the state lists both.
    let registry = complaintflow_models::Registry::open(&cfg.registry_dir).unwrap();
    assert_eq!(registry.production().unwrap().unwrap().version, new);
    let models: Vec<String> = state.models().into_iter().map(|m| m.version).collect();
    assert_eq!(models, ["test-v1".to_string(), new.to_string()]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_processes_in_cluster_mode_agree_with_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (input, valid) = input_file(dir.path());
    let source = SourceSpec::File {
        path: input,
        format: Format::Auto,
    };
    let single_dir = tempfile::tempdir().unwrap();
    let single = run(
        single_dir.path(),
        config(single_dir.path(), 1),
        source.clone(),
    );

    let hosts = vec![
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let cluster_dir = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..2)
        .map(|p| {
            let mut cfg = config(cluster_dir.path(), 1);
            cfg.processes = 2;
            cfg.process = p;
            cfg.addresses = hosts.clone();
            let source = source.clone();
            std::thread::spawn(move || {
                let engine = start(cfg, source, model()).unwrap();
                let state = engine.state();
                (engine.join().unwrap(), state)
            })
        })
        .collect();
    let mut results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (summary1, _) = results.pop().unwrap();
    let (summary0, state0) = results.pop().unwrap();
    // Process 0 holds every output; process 1 none.
    assert_eq!(summary0.predictions as usize, valid);
    assert_eq!(summary1.predictions, 0);
    let cfg0 = config(cluster_dir.path(), 1);
    let decisions: Vec<Decision> = read_jsonl(cfg0.predictions_path.as_ref().unwrap());
    let set: BTreeSet<Key> = decisions.iter().map(key).collect();
    let want: BTreeSet<Key> = single.decisions.iter().map(key).collect();
    assert_eq!(set, want);
    let view = state0.aggregates.read().unwrap().clone();
    assert_eq!(without_hour(&view.totals), without_hour(&single.aggregates));
}
