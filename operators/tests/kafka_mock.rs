//! Fault injection with librdkafka's mock cluster: request errors and a broker going down
//! are retried, never fatal, and lose nothing.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kafka_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use complaintflow_operators::kafka::{
    consume_topic, detect_transactions, produce_file, ConsumeOptions, DeliveryMode, KafkaConfig,
    KafkaSourceHandle, ProduceOptions, ReadMode, TxnSupport,
};
use kafka_common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

fn cluster(
    brokers: i32,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    KafkaConfig,
) {
    let mock = MockCluster::new(brokers).unwrap();
    let cfg = KafkaConfig {
        connect_timeout_ms: 10_000,
        ..KafkaConfig::with_brokers(mock.bootstrap_servers())
    };
    (mock, cfg)
}

fn produce_sample(cfg: &KafkaConfig, topic: &str) -> u64 {
    let s = produce_file(
        cfg,
        &ProduceOptions::new(topic, complaintflow_datasets::bundled_sample_path()),
        |_| {},
    )
    .unwrap();
    assert_eq!(s.errors, 0);
    s.acked
}

#[test]
fn produce_errors_are_retried_and_nothing_is_duplicated() {
    let (mock, cfg) = cluster(1);
    mock.create_topic("in", 3, 1).unwrap();
    // Retriable errors on the first produce requests, and one dropped connection.
    let mut errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 4];
    errors.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
    errors.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT);
    errors.extend([RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE; 3]);
    mock.request_errors(RDKafkaApiKey::Produce, &errors);
    let acked = produce_sample(&cfg, "in");
    let ids = sample_ids();
    assert_eq!(acked, ids.len() as u64);
    // Idempotent producer: each record is in the topic exactly once.
    let mut keys = Vec::new();
    consume_topic(
        &cfg,
        &ConsumeOptions::from_beginning("in", Duration::from_secs(3)),
        |m| {
            keys.push(m.key.unwrap());
            Ok(())
        },
    )
    .unwrap();
    let unique: BTreeSet<_> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), ids.len(), "no duplicates, nothing lost");
    assert_eq!(unique, ids.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn fetch_errors_are_retried_by_the_source() {
    let (mock, cfg) = cluster(1);
    mock.create_topic("in", 4, 1).unwrap();
    produce_sample(&cfg, "in");
    let end = high_watermarks(&cfg, "in");
    let mut errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 6];
    errors.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT);
    errors.extend([RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 3]);
    mock.request_errors(RDKafkaApiKey::Fetch, &errors);
    let handle = KafkaSourceHandle::new("in");
    let recs = run_source(
        &cfg,
        spec("in", ReadMode::Bounded, 400),
        2,
        handle.clone(),
        |_, _| {},
    );
    assert!(handle.fatal().is_none());
    check_exactly_once(&recs, &BTreeMap::new(), &end, &handle);
    let ids: BTreeSet<String> = recs.iter().map(|r| id_of(&r.bytes).unwrap()).collect();
    assert_eq!(ids, sample_ids().into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn a_broker_going_down_is_survived_by_the_source() {
    let (mock, cfg) = cluster(1);
    let cfg = small_fetches(&cfg);
    mock.create_topic("in", 2, 1).unwrap();
    produce_sample(&cfg, "in");
    let end = high_watermarks(&cfg, "in");
    let handle = KafkaSourceHandle::new("in");
    // Small fetches, so that most records are fetched after the broker comes back.
    let c2 = cfg.clone();
    let h2 = handle.clone();
    let mut s = spec("in", ReadMode::Bounded, 300);
    s.policy.batch = 16;
    let reader = std::thread::spawn(move || run_source(&c2, s, 1, h2, |_, _| {}));
    // As soon as the source has its partitions, take the broker down for 2 s.
    let t0 = Instant::now();
    while handle.assignment().is_empty() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(1));
    }
    mock.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let during = handle.records();
    mock.broker_up(1).unwrap();
    let recs = reader.join().unwrap();
    assert!(handle.fatal().is_none());
    assert!(
        during < recs.len() as u64,
        "the broker went down before the end of the topic"
    );
    check_exactly_once(&recs, &BTreeMap::new(), &end, &handle);
}

#[test]
fn sink_retries_produce_errors_and_a_broker_outage() {
    let (mock, cfg) = cluster(1);
    mock.create_topic("out", 2, 1).unwrap();
    let mut errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5];
    errors.push(RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT);
    mock.request_errors(RDKafkaApiKey::Produce, &errors);
    let n = 3_000;
    let (acks, stats) = run_sink(&cfg, "out", DeliveryMode::AtLeastOnce, n, 5, 2);
    assert_eq!(
        acks.values().sum::<u64>(),
        n,
        "every record acknowledged: {acks:?}"
    );
    assert_eq!(acks.len(), 5, "one acknowledgement batch per epoch");
    assert_eq!((stats.failed, stats.delivered), (0, n));
    let mut keys = BTreeSet::new();
    let mut count = 0;
    consume_topic(
        &cfg,
        &ConsumeOptions::from_beginning("out", Duration::from_secs(3)),
        |m| {
            let v: Out = serde_json::from_value(m.value).unwrap();
            assert_eq!(m.key.as_deref(), Some(v.id.to_string().as_str()));
            keys.insert(v.id);
            count += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(keys, (0..n).collect::<BTreeSet<_>>());
    assert_eq!(count, n, "the idempotent producer wrote no duplicates");

    // A broker outage while the sink writes: it waits, then everything arrives.
    mock.create_topic("out2", 1, 1).unwrap();
    let c2 = cfg.clone();
    let writer =
        std::thread::spawn(move || run_sink(&c2, "out2", DeliveryMode::AtLeastOnce, 2_000, 4, 1));
    mock.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    mock.broker_up(1).unwrap();
    let (acks, stats) = writer.join().unwrap();
    assert_eq!(acks.values().sum::<u64>(), 2_000);
    assert_eq!(stats.failed, 0);
}

#[test]
fn transactions_are_detected_and_used_on_the_mock_cluster() {
    let (mock, cfg) = cluster(3);
    mock.create_topic("out", 2, 3).unwrap();
    let support = detect_transactions(&cfg, "out", Duration::from_secs(10));
    assert_eq!(support, TxnSupport::Supported);
    let mode = support.mode(true, "cf-test");
    assert!(matches!(mode, DeliveryMode::Transactional { .. }));
    let (acks, stats) = run_sink(&cfg, "out", mode, 1_000, 4, 2);
    assert_eq!(acks.values().sum::<u64>(), 1_000);
    assert!(
        stats.transactions >= 4,
        "one transaction per worker and epoch with data: {stats:?}"
    );
    let mut read = KafkaConfig { ..cfg.clone() };
    read.extra
        .insert("isolation.level".into(), "read_committed".into());
    let mut n = 0;
    consume_topic(
        &read,
        &ConsumeOptions::from_beginning("out", Duration::from_secs(3)),
        |_| {
            n += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(n, 1_000, "every record committed");
}
