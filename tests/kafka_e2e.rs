//! End to end through a real broker (tansu, started per test by `scripts/kafka-up.sh` on a
//! free port): `complaintflow produce` → `complaintflow run --source kafka:…` →
//! `complaintflow consume`, with the real binary.
//!
//! - round trip: the bundled sample plus 1 % synthetic malformed messages; every complaint
//!   in the predictions (after keyed de-duplication), every malformed message in the DLQ
//!   once with its reason, the aggregates topic agrees with `--aggregates-out`;
//! - crash recovery: 100,000 synthetic messages (resampled from the real sample, fresh ids
//!   from 900,000,000,000), `kill -9` mid-stream, restart: no complaint missing, final
//!   aggregates equal to those of an uninterrupted run;
//! - broker restart: the broker is stopped and started again mid-stream (same state
//!   directory); producer and engine reconnect, nothing is lost, the engine finishes.
//!
//! - SIGTERM mid-stream: exit code 0, the final checkpoint covers exactly what was read and
//!   counted; the restart reads the rest.
//!
//! An engine run ends with `--until-idle 3s`: no message for 3 s and every partition read
//! to its end, then a graceful stop (open epoch finished, checkpoint, producers flushed).
//!
//! Skipped, loudly, when tansu is not installed and `COMPLAINTFLOW_REQUIRE_KAFKA` is unset
//! (CI sets it). The tests run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_support::*;

const MALFORMED_PREFIX: &str = "synthetic-malformed-";

/// The ids of the bundled sample that parse and validate (they all do today, but the test
/// does not rely on it).
fn valid_sample_ids() -> BTreeSet<String> {
    complaintflow_datasets::read_path(
        complaintflow_datasets::bundled_sample_path(),
        complaintflow_datasets::Format::Auto,
        &Default::default(),
    )
    .unwrap()
    .filter_map(Result::ok)
    .map(|c| c.complaint_id.0.to_string())
    .collect()
}

#[test]
fn round_trip_predictions_and_dead_letters() {
    let _serial = serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    let work = workdir();
    let dir = work.path();
    let b = broker.addr.as_str();
    let summary = produce(dir, b, &["--inject-malformed", "1%", "--seed", "7"]);
    let injected = summary["malformed_injected"].as_u64().unwrap();
    assert!(injected > 10, "{summary}");
    let agg_out = dir.join("agg.json");
    let e = engine(
        dir,
        "state",
        b,
        &[
            "--until-idle",
            "3s",
            "--workers",
            "2",
            "--max-records-per-epoch",
            "500",
            "--aggregates-out",
            agg_out.to_str().unwrap(),
        ],
    );
    let log = wait_ok(e, "the engine");
    eprintln!("{log}");

    // The input: real complaints keyed by id, synthetic malformed ones by their prefix.
    let input = consume(dir, b, "complaints-input");
    assert_eq!(input.len() as u64, summary["sent"].as_u64().unwrap());
    let (real, synthetic): (Vec<&Msg>, Vec<&Msg>) = input
        .iter()
        .partition(|m| !m.key.as_deref().unwrap().starts_with(MALFORMED_PREFIX));
    assert_eq!(synthetic.len() as u64, injected);
    let valid = valid_sample_ids();
    let real_ids: BTreeSet<String> = real.iter().map(|m| m.key.clone().unwrap()).collect();
    assert_eq!(real_ids, valid, "the input holds the sample");

    // Predictions: every valid complaint exactly once after keyed de-duplication.
    let preds = consume(dir, b, "complaints-predictions");
    let (by_id, repeats) = by_key(&preds);
    eprintln!(
        "{} prediction messages, {} distinct ids, {repeats} repeats",
        preds.len(),
        by_id.len()
    );
    for (k, m) in &by_id {
        assert_eq!(
            m.value["complaint_id"].as_str(),
            Some(k.as_str()),
            "key = complaint_id"
        );
        assert!(m.value["score"].as_f64().is_some() && m.value["priority"].is_string());
    }
    assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), valid);

    // Dead letters: every malformed message once, with its reason, the original bytes and
    // its partition and offset.
    let dlq = consume(dir, b, "complaints-dlq");
    let (dead, _) = by_key(&dlq);
    let want: BTreeSet<String> = input
        .iter()
        .filter(|m| {
            let key = m.key.as_deref().unwrap();
            key.starts_with(MALFORMED_PREFIX) || !valid.contains(key)
        })
        .map(|m| format!("complaints-input/{}/{}", m.partition, m.offset))
        .collect();
    assert_eq!(dead.keys().cloned().collect::<BTreeSet<_>>(), want);
    let mut kinds = BTreeMap::new();
    for m in synthetic {
        let d = &dead[&format!("complaints-input/{}/{}", m.partition, m.offset)].value;
        let kind = d["kind"].as_str().unwrap();
        assert!(
            [
                "truncated_input",
                "malformed_json",
                "invalid_utf8",
                "unparseable_date"
            ]
            .contains(&kind),
            "unexpected kind {kind}: {d}"
        );
        assert!(d["message"].as_str().is_some_and(|s| s.len() > 5), "{d}");
        assert_eq!(d["origin"]["partition"].as_i64(), Some(m.partition));
        assert_eq!(d["origin"]["offset"].as_i64(), Some(m.offset));
        if let Some(text) = m.value.as_str() {
            // Not JSON: consume shows the bytes as a string, as the DLQ keeps them.
            if kind != "invalid_utf8" {
                assert_eq!(d["raw"].as_str(), Some(text));
            }
        } else {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(d["raw"].as_str().unwrap()).unwrap(),
                m.value
            );
        }
        *kinds.entry(kind.to_string()).or_insert(0) += 1;
    }
    eprintln!("dead letters by kind: {kinds:?}");

    // Aggregates topic: the newest totals per key equal the final view of the run.
    let aggs = consume(dir, b, "complaints-aggregates");
    let mut latest: BTreeMap<String, (u64, i64, i64)> = BTreeMap::new();
    for m in &aggs {
        let v = &m.value;
        let epoch = v["epoch"].as_u64().unwrap();
        let e = latest.entry(m.key.clone().unwrap()).or_insert((0, 0, 0));
        if epoch >= e.0 {
            *e = (
                epoch,
                v["count"].as_i64().unwrap(),
                v["escalations"].as_i64().unwrap(),
            );
        }
    }
    let view = read_aggregates(&agg_out);
    for (dim, rows) in &view {
        for (key, (count, esc, _)) in rows {
            let (_, c, e) = latest[&format!("{dim}|{key}")];
            assert_eq!((c, e), (*count, *esc), "{dim}|{key}");
        }
    }
    let products: i64 = view["product"].values().map(|r| r.0).sum();
    assert_eq!(products as usize, valid.len());
}

#[test]
fn kill_9_and_restart_loses_nothing_and_counts_nothing_twice() {
    let _serial = serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    let work = workdir();
    let dir = work.path();
    let b = broker.addr.as_str();
    const N: usize = 100_000;
    // Synthetic load: resampled copies of the real sample with fresh ids.
    produce_resampled(dir, b, N, 3, &[]);

    // The reference: one uninterrupted run (its own state directory, no Kafka outputs).
    copy_registry(dir, "state", "ref");
    let reference = dir.join("ref-agg.json");
    let e = engine(
        dir,
        "ref",
        b,
        &[
            "--until-idle",
            "3s",
            "--sink",
            "none",
            "--dlq-topic",
            "none",
            "--aggregates-topic",
            "none",
            "--aggregates-out",
            reference.to_str().unwrap(),
        ],
    );
    wait_ok(e, "the reference run");

    // The run under test: kill -9 once a checkpoint covers at least 20,000 messages.
    let mut e = engine(dir, "state", b, &["--until-idle", "3s"]);
    let at_kill = wait_for_checkpoint(&mut [&mut e], &dir.join("state"), 20_000);
    e.kill().unwrap(); // SIGKILL
    let _ = e.wait();
    eprintln!(
        "killed after the checkpoint of epoch {} ({} messages)",
        at_kill.0, at_kill.1
    );
    assert!(
        (at_kill.1 as usize) < N,
        "killed mid-stream: the checkpoint covers {} of {N}",
        at_kill.1
    );

    let out = dir.join("agg.json");
    let e = engine(
        dir,
        "state",
        b,
        &[
            "--until-idle",
            "3s",
            "--aggregates-out",
            out.to_str().unwrap(),
        ],
    );
    let log = wait_ok(e, "the restarted engine");
    assert!(
        log.contains(&format!(
            "resuming from the checkpoint of epoch {}",
            at_kill.0
        )) || log.contains("resuming from the checkpoint of epoch"),
        "{log}"
    );
    let (final_epoch, final_n) = latest_checkpoint(&dir.join("state")).unwrap();
    assert_eq!(
        final_n as usize, N,
        "the final checkpoint is at the end of the topic"
    );
    assert!(final_epoch > at_kill.0);

    // No complaint missing from the predictions (replays repeat some, under their key).
    let input = consume(dir, b, "complaints-input");
    let ids: BTreeSet<String> = input.iter().map(|m| m.key.clone().unwrap()).collect();
    assert_eq!(ids.len(), N, "resampled ids are distinct");
    let preds = consume(dir, b, "complaints-predictions");
    let (by_id, repeats) = by_key(&preds);
    eprintln!(
        "{} prediction messages for {} ids: {repeats} replayed after the crash",
        preds.len(),
        by_id.len()
    );
    assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), ids);

    // Aggregates equal the uninterrupted run's: nothing lost, nothing counted twice. The
    // `hour` dimension is when the engine decided, so only its total must agree.
    let (want, got) = (read_aggregates(&reference), read_aggregates(&out));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (dim, rows) in &want {
        if dim == "hour" {
            let total = |a: &BTreeMap<String, (i64, i64, String)>| -> (i64, i64) {
                a.values().fold((0, 0), |s, r| (s.0 + r.0, s.1 + r.1))
            };
            assert_eq!(total(rows), total(&got[dim]), "hour totals");
        } else {
            assert_eq!(rows, &got[dim], "dimension {dim}");
        }
    }
    let products: i64 = got["product"].values().map(|r| r.0).sum();
    assert_eq!(products as usize, N);
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    let _serial = serial();
    let Some(mut broker) = Broker::start() else {
        return;
    };
    // tansu 0.6's storage panics when an idempotent producer bumps its epoch after the
    // errors it answers while shutting down (see docs/KAFKA.md): producers here are plain
    // at-least-once ones that send failed messages again.
    let work = workdir_with("[kafka]\nidempotence = false\n");
    let dir = work.path();
    let b = broker.addr.clone();
    let e = engine(dir, "state", &b, &["--until-idle", "8s"]);
    // 20,000 synthetic messages at 2,000/s: the broker restarts while they flow.
    let p = produce_spawn(
        dir,
        &b,
        &["--resample", "20000", "--seed", "5", "--rate", "2000/s"],
    );
    let t0 = Instant::now();
    while latest_checkpoint(&dir.join("state")).is_none_or(|(_, n)| n < 3_000) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.down();
    let before = latest_checkpoint(&dir.join("state")).unwrap().1;
    std::thread::sleep(Duration::from_secs(2));
    broker.up();
    assert!(
        before < 20_000,
        "the broker went down mid-stream ({before} read)"
    );
    let produced = wait_ok(p, "the producer");
    eprintln!("producer: {produced}");
    let log = wait_ok(e, "the engine");
    eprintln!("{log}");

    let input = consume(dir, &b, "complaints-input");
    let ids: BTreeSet<String> = input.iter().map(|m| m.key.clone().unwrap()).collect();
    assert_eq!(ids.len(), 20_000, "every produced message is in the topic");
    let preds = consume(dir, &b, "complaints-predictions");
    let (by_id, repeats) = by_key(&preds);
    eprintln!("{} prediction messages, {repeats} repeats", preds.len());
    assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), ids);
    let (_, n) = latest_checkpoint(&dir.join("state")).unwrap();
    assert_eq!(
        n as usize,
        input.len(),
        "the final checkpoint is at the end"
    );
}

#[test]
fn sigterm_finishes_the_epoch_checkpoints_and_exits_0() {
    let _serial = serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    let work = workdir();
    let dir = work.path();
    let b = broker.addr.as_str();
    let e = engine(dir, "state", b, &[]);
    let p = produce_spawn(
        dir,
        b,
        &["--resample", "20000", "--seed", "8", "--rate", "2000/s"],
    );
    let t0 = Instant::now();
    while latest_checkpoint(&dir.join("state")).is_none_or(|(_, n)| n < 3_000) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &e.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let log = wait_ok(e, "the engine after SIGTERM"); // exit code 0
    assert!(log.contains("SIGTERM"), "{log}");
    wait_ok(p, "the producer");
    // The final checkpoint covers exactly what was read and counted before the stop.
    let cp = read_latest_checkpoint(&dir.join("state"));
    let read: i64 = cp["offsets"]["complaints-input"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    let counted: i64 = cp["aggregate_state"]["product"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["count"].as_i64().unwrap())
        .sum();
    eprintln!("stopped after {read} of 20000 messages");
    assert!(read < 20_000, "stopped mid-stream");
    assert_eq!(read, counted, "every message read is counted, none more");

    // The restart reads the rest: every complaint predicted, counted once.
    let agg = drain_with_aggregates(dir, "state", b, "the restarted engine");
    let total: i64 = agg["product"].values().map(|r| r.0).sum();
    assert_eq!(total, 20_000);
    let preds = consume(dir, b, "complaints-predictions");
    let (by_id, _) = by_key(&preds);
    assert_eq!(by_id.len(), 20_000);
}

/// `--outcomes kafka:TOPIC`: the sample's records produced again to an outcomes topic (every
/// complaint record is an outcome record) are joined with the predictions; `--until-idle`
/// waits for both topics.
#[test]
fn outcomes_from_a_kafka_topic_are_joined_with_the_predictions() {
    let _serial = serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    let work = workdir();
    let dir = work.path();
    let b = broker.addr.as_str();
    broker.create_topic("complaints-outcomes", 2);
    produce(dir, b, &[]);
    produce(dir, b, &["--topic", "complaints-outcomes"]);
    let agg_out = dir.join("agg.json");
    let e = engine(
        dir,
        "state",
        b,
        &[
            "--outcomes",
            "kafka:complaints-outcomes",
            "--until-idle",
            "3s",
            "--aggregates-out",
            agg_out.to_str().unwrap(),
        ],
    );
    let log = wait_ok(e, "the engine");
    let labelled =
        complaintflow_testkit::real_records(&complaintflow_datasets::bundled_sample_path())
            .iter()
            .filter(|c| {
                complaintflow_datasets::LabelPolicy::Relief
                    .label(c)
                    .is_some()
            })
            .count() as u64;
    let agg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&agg_out).unwrap()).unwrap();
    let acc = agg["model_accuracy"]
        .as_object()
        .unwrap_or_else(|| panic!("{agg}\n{log}"));
    assert_eq!(acc.len(), 1, "{acc:?}");
    let m = acc.values().next().unwrap();
    assert_eq!(m["labelled"].as_u64(), Some(labelled), "{m}\n{log}");
    assert!(m["auc"].as_f64().unwrap() > 0.6, "{m}");
}
