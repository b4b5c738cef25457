//! The engine against librdkafka's in-process mock cluster, which (unlike tansu) supports
//! transactions: Kafka source → engine → transactional Kafka sinks, with produce, fetch and
//! EndTxn request errors injected while it runs. Read with `isolation.level =
//! read_committed`, every complaint is in the predictions exactly once and every malformed
//! message once in the DLQ; a restart resumes from the final checkpoint and adds nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use complaintflow_models::Model;
use complaintflow_operators::kafka::{
    consume_topic, detect_transactions, produce_file, ConsumeOptions, DeliveryMode, KafkaConfig,
    MockKafka, MockRequest, ProduceOptions, ReadMode, TxnSupport, MALFORMED_KEY_PREFIX,
};
use complaintflow_pipelines::kafka::{KafkaSinkTopics, KafkaSinks, KafkaSource};
use complaintflow_pipelines::{
    start, CheckpointConfig, Dimension, EngineConfig, RunSummary, Sink, SourceSpec,
};

fn model() -> Model {
    let rows = complaintflow_testkit::real_records(&complaintflow_datasets::bundled_sample_path());
    complaintflow_testkit::train_model(
        &rows,
        &complaintflow_testkit::fast_train_config(),
        "mock-v1",
    )
}

fn run(
    kafka: &KafkaConfig,
    mode: &DeliveryMode,
    dir: &std::path::Path,
    model: &Model,
) -> (RunSummary, BTreeMap<Dimension, BTreeMap<String, i64>>, u64) {
    let mut cfg = EngineConfig::new(dir.join("registry"));
    cfg.workers = 2;
    cfg.once = true;
    cfg.policy.max_records_per_epoch = 500;
    cfg.policy.trigger_interval = Duration::from_millis(200);
    let sinks = KafkaSinks::new(kafka.clone(), mode.clone(), KafkaSinkTopics::default());
    let handles = sinks.handles();
    cfg.sinks = vec![Arc::new(sinks) as Arc<dyn Sink>];
    cfg.checkpoints = Some(CheckpointConfig::new(dir));
    let source = Arc::new(KafkaSource::new(
        kafka.clone(),
        "complaints-input",
        ReadMode::Bounded,
    ));
    let engine = start(cfg, SourceSpec::Custom(source), model.clone()).unwrap();
    let state = engine.state();
    let summary = engine.join().unwrap();
    let view = state.aggregates.read().unwrap().clone();
    let counts = view
        .totals
        .iter()
        .map(|(d, m)| (*d, m.iter().map(|(k, t)| (k.clone(), t.count)).collect()))
        .collect();
    let s = handles.predictions.stats();
    assert_eq!(s.failed, 0, "{s:?}");
    (summary, counts, s.transactions)
}

fn read_committed(kafka: &KafkaConfig, topic: &str) -> Vec<(Option<String>, serde_json::Value)> {
    let mut c = kafka.clone();
    c.extra
        .insert("isolation.level".into(), "read_committed".into());
    let mut out = Vec::new();
    consume_topic(
        &c,
        &ConsumeOptions::from_beginning(topic, Duration::from_secs(3)),
        |m| {
            out.push((m.key, m.value));
            Ok(())
        },
    )
    .unwrap();
    out
}

#[test]
fn transactional_sinks_write_every_output_once_despite_request_errors() {
    let mock = MockKafka::new(3).unwrap();
    for (t, p) in complaintflow_operators::kafka::DEFAULT_TOPICS {
        mock.create_topic(t, p).unwrap();
    }
    let kafka = KafkaConfig {
        connect_timeout_ms: 10_000,
        ..KafkaConfig::with_brokers(mock.bootstrap_servers())
    };
    let mut opts = ProduceOptions::new(
        "complaints-input",
        complaintflow_datasets::bundled_sample_path(),
    );
    opts.inject_malformed = 0.01;
    opts.seed = 9;
    let produced = produce_file(&kafka, &opts, |_| {}).unwrap();
    assert_eq!(produced.errors, 0);
    let support = detect_transactions(&kafka, "complaints-input", Duration::from_secs(10));
    assert_eq!(support, TxnSupport::Supported);
    let mode = support.mode(true, "cf-engine-test");
    let model = model();
    let dir = tempfile::tempdir().unwrap();

    mock.fail_next(MockRequest::Fetch, 12);
    mock.fail_next(MockRequest::Produce, 12);
    mock.fail_next(MockRequest::EndTxn, 3);
    let (summary, aggregates, transactions) = run(&kafka, &mode, dir.path(), &model);
    assert_eq!(
        summary.predictions + summary.dead_letters,
        produced.sent,
        "{summary:?}"
    );
    assert!(transactions >= 4, "one transaction per worker and epoch");

    // Exactly once, without de-duplication.
    let preds = read_committed(&kafka, "complaints-predictions");
    let ids: Vec<String> = preds.iter().map(|(k, _)| k.clone().unwrap()).collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), distinct.len(), "no prediction twice");
    assert_eq!(ids.len() as u64, summary.predictions);
    for (k, v) in &preds {
        assert_eq!(v["complaint_id"].as_str(), k.as_deref());
    }
    let dlq = read_committed(&kafka, "complaints-dlq");
    assert_eq!(dlq.len() as u64, produced.malformed_injected);
    assert!(dlq
        .iter()
        .all(|(_, v)| v["kind"].is_string() && v["origin"]["offset"].is_i64()));
    let input = read_committed(&kafka, "complaints-input");
    let synthetic = input
        .iter()
        .filter(|(k, _)| k.as_deref().unwrap().starts_with(MALFORMED_KEY_PREFIX))
        .count();
    assert_eq!(synthetic as u64, produced.malformed_injected);

    // A restart resumes from the final checkpoint: nothing is read again, the totals stay.
    let (again, aggregates2, _) = run(&kafka, &mode, dir.path(), &model);
    assert_eq!((again.records_in, again.predictions), (0, 0));
    assert_eq!(aggregates2, aggregates);
    let total: i64 = aggregates[&Dimension::Product].values().sum();
    assert_eq!(total as u64, summary.predictions);
}
