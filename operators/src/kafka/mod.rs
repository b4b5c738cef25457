//! Kafka: a timely source, sinks with delivery tracking, checkpoints, and the replay
//! producer / consumer behind `complaintflow produce` and `complaintflow consume`.
//!
//! Built on `rdkafka` with its bundled librdkafka (Debian's 2.0.2 cannot talk to the tansu
//! broker used for tests). Enabled by the `kafka` cargo feature of this crate.
//!
//! | item | what |
//! |---|---|
//! | [`KafkaConfig`] | the `[kafka]` section of `complaintflow.toml`: brokers, group, librdkafka extras; [`KafkaConfig::check_reachable`] fails early with a clear message |
//! | [`kafka_source`] | each worker owns partitions `p % peers == index` (manual assignment, no auto-commit), reads bounded batches with `poll(0)`, cuts epochs like the file source; [`KafkaSourceHandle`] tracks the next offset per partition per epoch, lag, group commits |
//! | [`KafkaSink`] | `stream.kafka_sink(..)`: idempotent producer, per-epoch delivery tracking: its output frontier passes an epoch only once every record of it is acknowledged (probe it before checkpointing); dead letters and JSON helpers |
//! | [`detect_transactions`] | does the broker support transactions? (tansu does not: EndTxn is rejected) → [`DeliveryMode`] |
//! | [`CheckpointStore`] | atomic (temp + fsync + rename) checkpoints of offsets and opaque aggregate state, keep last N, [`CheckpointStore::latest`] skips corrupt files |
//! | [`produce_file`] / [`consume_topic`] | replay producer (rate, loop, duration, deterministic synthetic malformed records, bounded in-flight, failed messages sent again) and a JSON Lines consumer |
//! | [`MockKafka`] | librdkafka's in-process mock cluster (transactions, injected request errors, brokers down) for tests |
//!
//! The engine (`complaintflow_pipelines::kafka::{KafkaSource, KafkaSinks}`, `complaintflow
//! run --source kafka:TOPIC`) wires them up; docs/KAFKA.md describes the whole path. How a
//! dataflow of your own uses the pieces (one process; see each item for details):
//!
//! ```text
//! let cfg: KafkaConfig = ..;  cfg.check_reachable()?;          // before starting workers
//! let store = CheckpointStore::open(state_dir, 5)?;
//! let resume = store.latest()?;                                 // Option<Checkpoint>
//! let handle = KafkaSourceHandle::new(&topic);                  // shared by all workers
//! // on every worker:
//! let spec = KafkaSourceSpec { start_offsets: resume.offsets_for(&topic), first_epoch: resume.epoch + 1, .. };
//! let raw = kafka_source(scope, &cfg, spec, handle.clone());
//! let (acks, sink) = decisions.kafka_sink_json(&cfg, "complaints-predictions", key_fn, mode)?;
//! acks.probe_with(&mut probe);                                   // + DLQ / aggregate sinks
//! // worker 0, between steps: once the probe has passed epoch e:
//! store.write(&Checkpoint::new(e, [(topic, handle.offsets_through(e))], aggregates))?;
//! handle.commit_through(e); handle.release_through(e);
//! ```
//!
//! A configuration round trip (the `[kafka]` TOML section):
//!
//! ```
//! use complaintflow_operators::kafka::{KafkaConfig, OffsetReset};
//! let cfg: KafkaConfig = serde_json::from_str(r#"{"brokers": "127.0.0.1:19092",
//!     "auto_offset_reset": "latest", "extra": {"fetch.min.bytes": "1"}}"#).unwrap();
//! assert_eq!(cfg.auto_offset_reset, OffsetReset::Latest);
//! assert_eq!(cfg.group_id, "complaintflow"); // defaults fill the rest
//! let client = cfg.consumer_config();
//! assert_eq!(client.get("enable.auto.commit"), Some("false"));
//! assert_eq!(client.get("fetch.min.bytes"), Some("1"));
//! ```

mod checkpoint;
mod config;
mod consume;
mod context;
mod mock;
mod produce;
mod sink;
mod source;
mod txn;

pub use checkpoint::{Checkpoint, CheckpointStore};
pub use config::{BrokerInfo, KafkaConfig, KafkaError, OffsetReset};
pub use consume::{consume_topic, ConsumeOptions, ConsumeSummary, ConsumedMessage, StartFrom};
pub use mock::{MockKafka, MockRequest};
pub use produce::{
    produce_file, Malformed, MalformedInjector, ProduceOptions, ProduceProgress, ProduceSummary,
    MALFORMED_ID_BASE, MALFORMED_KEY_PREFIX,
};
pub use sink::{dead_letter_payload, KafkaSink, KafkaSinkHandle, SinkStats};
pub use source::{
    kafka_source, kafka_source_with, KafkaSourceHandle, KafkaSourceSpec, ReadMode,
    GROUP_COMMIT_INTERVAL,
};
pub use txn::{detect_transactions, DeliveryMode, TxnSupport};

/// The topics `scripts/kafka-up.sh` creates, with their partition counts.
pub const DEFAULT_TOPICS: [(&str, i32); 4] = [
    ("complaints-input", 4),
    ("complaints-predictions", 4),
    ("complaints-dlq", 1),
    ("complaints-aggregates", 1),
];
