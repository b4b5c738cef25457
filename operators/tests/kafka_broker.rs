//! Against a real broker: tansu, started by `scripts/kafka-up.sh` on a free port with a
//! temporary state directory (each test has its own broker).
//!
//! Skipped, loudly, only when the tansu binary is absent and `COMPLAINTFLOW_REQUIRE_KAFKA`
//! is not set (CI sets it: there a missing broker fails). Install it with
//! `scripts/install-tansu.sh`.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kafka_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use complaintflow_operators::kafka::{
    consume_topic, detect_transactions, produce_file, Checkpoint, CheckpointStore, ConsumeOptions,
    DeliveryMode, KafkaConfig, KafkaSourceHandle, ProduceOptions, ReadMode, TxnSupport,
    MALFORMED_KEY_PREFIX,
};
use kafka_common::*;

use complaintflow_testkit::Broker;

/// The operators' client configuration for a test broker.
trait BrokerConfig {
    fn cfg(&self) -> KafkaConfig;
}

impl BrokerConfig for Broker {
    fn cfg(&self) -> KafkaConfig {
        KafkaConfig::with_brokers(&self.addr)
    }
}

#[test]
fn the_sample_and_synthetic_malformed_records_are_read_exactly_once() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let cfg = broker.cfg();
    // The script created the complaintflow topics.
    assert_eq!(cfg.partitions("complaints-input").unwrap().len(), 4);
    let mut opts = ProduceOptions::new(
        "complaints-input",
        complaintflow_datasets::bundled_sample_path(),
    );
    opts.inject_malformed = 0.01;
    opts.seed = 7;
    let summary = produce_file(&cfg, &opts, |_| {}).unwrap();
    let ids = sample_ids();
    assert_eq!(summary.errors, 0);
    assert!(summary.malformed_injected > 10, "{summary:?}");
    assert_eq!(summary.sent, ids.len() as u64 + summary.malformed_injected);
    let end = high_watermarks(&cfg, "complaints-input");
    assert_eq!(end.values().sum::<i64>() as u64, summary.sent);

    for workers in [1, 2] {
        let handle = KafkaSourceHandle::new("complaints-input");
        let recs = run_source(
            &cfg,
            spec("complaints-input", ReadMode::Bounded, 500),
            workers,
            handle.clone(),
            |_, _| {},
        );
        assert!(handle.fatal().is_none());
        check_exactly_once(&recs, &BTreeMap::new(), &end, &handle);
        assert!(
            recs.iter().map(|r| r.epoch).max().unwrap() >= 8,
            "≥ 8 epochs of ≤ 500 records"
        );
        let real: BTreeSet<String> = ids.iter().cloned().collect();
        let mut seen_real = Vec::new();
        let mut other = 0;
        for r in &recs {
            match id_of(&r.bytes) {
                Some(id) if real.contains(&id) => seen_real.push(id),
                _ => other += 1,
            }
        }
        seen_real.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(
            seen_real, want,
            "{workers} worker(s): every real complaint exactly once"
        );
        assert_eq!(
            other, summary.malformed_injected,
            "{workers} worker(s): every synthetic malformed record once"
        );
    }
    // The keys mark the synthetic records.
    let mut synthetic = 0;
    consume_topic(
        &cfg,
        &ConsumeOptions::from_beginning("complaints-input", Duration::from_secs(3)),
        |m| {
            if m.key.unwrap_or_default().starts_with(MALFORMED_KEY_PREFIX) {
                synthetic += 1;
            }
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(synthetic, summary.malformed_injected);
}

#[test]
fn the_sink_round_trips_through_tansu() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let cfg = broker.cfg();
    let n = 5_000;
    let (acks, stats) = run_sink(
        &cfg,
        "complaints-predictions",
        DeliveryMode::AtLeastOnce,
        n,
        6,
        2,
    );
    assert_eq!(acks.values().sum::<u64>(), n);
    assert_eq!(acks.len(), 6);
    assert_eq!((stats.failed, stats.delivered, stats.in_flight), (0, n, 0));
    let mut got = BTreeMap::new();
    consume_topic(
        &cfg,
        &ConsumeOptions::from_beginning("complaints-predictions", Duration::from_secs(3)),
        |m| {
            let v: Out = serde_json::from_value(m.value).unwrap();
            assert_eq!(m.key, Some(v.id.to_string()));
            assert!(got.insert(v.id, v.text).is_none(), "duplicate");
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(got.len() as u64, n);
    assert_eq!(got.get(&1234).map(String::as_str), Some("record 1234"));
}

#[test]
fn tansu_rejects_transactions_so_the_sinks_fall_back_to_at_least_once() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let support = detect_transactions(&broker.cfg(), "complaints-input", Duration::from_secs(5));
    eprintln!("tansu transactions: {support:?}");
    assert!(
        matches!(support, TxnSupport::Unsupported { .. }),
        "{support:?}"
    );
    assert_eq!(support.mode(true, "cf"), DeliveryMode::AtLeastOnce);
}

#[test]
fn the_source_survives_a_broker_restart_and_loses_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(mut broker) = Broker::start() else {
        return;
    };
    let cfg = broker.cfg();
    broker.create_topic("restart", 2);
    let produce = |cfg: &KafkaConfig| {
        let s = produce_file(
            cfg,
            &ProduceOptions::new("restart", complaintflow_datasets::bundled_sample_path()),
            |_| {},
        )
        .unwrap();
        assert_eq!(s.errors, 0);
        s.acked
    };
    let cfg = small_fetches(&cfg);
    let first = produce(&cfg);
    let handle = KafkaSourceHandle::new("restart");
    let mut s = spec("restart", ReadMode::Continuous, 300);
    s.policy.batch = 8;
    let stop = Arc::clone(&s.stop);
    // Small fetches: most records are fetched after the restart.
    let (mut c2, h2) = (cfg.clone(), handle.clone());
    if let Ok(d) = std::env::var("KAFKA_DEBUG") {
        c2.extra.insert("debug".into(), d); // librdkafka debug contexts, e.g. fetch,broker
    }
    let reader = std::thread::spawn(move || run_source(&c2, s, 1, h2, |_, _| {}));
    let t0 = Instant::now();
    while handle.records() < 200 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    broker.down();
    let at_stop = handle.records();
    std::thread::sleep(Duration::from_secs(1));
    broker.up();
    assert!(
        at_stop < first,
        "the broker stopped mid-consume ({at_stop} of {first} read)"
    );
    // More records after the restart.
    let second = produce(&cfg);
    let t0 = Instant::now();
    while handle.records() < first + second && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "restart test: read {} of {}, errors {:?}, lag {:?}",
        handle.records(),
        first + second,
        handle.errors(),
        handle.lag()
    );
    stop.store(true, Ordering::Relaxed);
    let recs = reader.join().unwrap();
    assert!(handle.fatal().is_none());
    let end = high_watermarks(&cfg, "restart");
    assert_eq!(end.values().sum::<i64>() as u64, first + second);
    check_exactly_once(&recs, &BTreeMap::new(), &end, &handle);
}

#[test]
fn a_checkpoint_resumes_where_the_first_run_left_off() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let cfg = broker.cfg();
    broker.create_topic("ckpt", 3);
    let s = produce_file(
        &cfg,
        &ProduceOptions::new("ckpt", complaintflow_datasets::bundled_sample_path()),
        |_| {},
    )
    .unwrap();
    let end = high_watermarks(&cfg, "ckpt");
    let state = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(state.path(), 3).unwrap();

    // Run 1: checkpoint epoch 2 once the probe has passed it, then "crash" (stop).
    let handle1 = KafkaSourceHandle::new("ckpt");
    let mut spec1 = spec("ckpt", ReadMode::Continuous, 600);
    // Epochs close by count only: neither the heartbeat nor a consumer queue that runs dry
    // for a moment (a busy broker) may close one early.
    spec1.policy.trigger_interval = Duration::from_secs(30);
    spec1.policy.linger = Duration::from_secs(30);
    let stop = Arc::clone(&spec1.stop);
    let (st, written) = (store.clone(), Arc::new(Mutex::new(false)));
    let w2 = Arc::clone(&written);
    let run1 = run_source(&cfg, spec1, 1, handle1.clone(), move |h, frontier| {
        let mut w = w2.lock().unwrap();
        if !*w && frontier.is_none_or(|f| f > 2) {
            let cp = Checkpoint::new(
                2,
                [("ckpt".to_string(), h.offsets_through(2))],
                serde_json::json!({"run": 1}),
            );
            st.write(&cp).unwrap();
            h.commit_through(2);
            h.release_through(2);
            *w = true;
            stop.store(true, Ordering::Relaxed);
        }
    });
    assert!(*written.lock().unwrap());
    let kept: Vec<Rec> = run1.into_iter().filter(|r| r.epoch <= 2).collect();
    assert_eq!(
        kept.len(),
        3 * 600,
        "three full epochs before the checkpoint"
    );

    // Run 2 resumes from the latest checkpoint.
    let cp = store.latest().unwrap().expect("a checkpoint");
    assert_eq!(
        (cp.epoch, &cp.aggregate_state),
        (2, &serde_json::json!({"run": 1}))
    );
    let start = cp.offsets_for("ckpt");
    assert_eq!(start.values().sum::<i64>(), 3 * 600);
    let mut spec2 = spec("ckpt", ReadMode::Bounded, 600);
    spec2.start_offsets = start.clone();
    spec2.first_epoch = cp.epoch + 1;
    let handle2 = KafkaSourceHandle::new("ckpt");
    let run2 = run_source(&cfg, spec2, 2, handle2.clone(), |_, _| {});
    assert!(run2.iter().all(|r| r.epoch > 2));
    check_epoch_offsets(&run2, &start, &handle2);
    let mut all = kept;
    all.extend(run2);
    check_complete(&all, &BTreeMap::new(), &end);
    assert_eq!(all.len() as u64, s.acked);
}
