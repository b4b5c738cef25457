//! The engine's Kafka plug-ins: [`KafkaSource`] (a [`Source`] over
//! `complaintflow_operators::kafka::kafka_source`) and [`KafkaSinks`] (a [`Sink`] writing
//! decisions — the bytes `publish` made, unchanged —, dead letters and aggregate changes to
//! their topics).
//!
//! ```no_run
//! use std::sync::Arc;
//! use complaintflow_operators::kafka::{detect_transactions, KafkaConfig, ReadMode};
//! use complaintflow_pipelines::kafka::{KafkaSinkTopics, KafkaSinks, KafkaSource};
//! use complaintflow_pipelines::{Engine, CheckpointConfig, EngineConfig};
//! let kafka = KafkaConfig::with_brokers("127.0.0.1:9092");
//! let source = Arc::new(KafkaSource::new(kafka.clone(), "complaints-input", ReadMode::Continuous));
//! source.check()?; // a clear error for an unreachable broker or an unknown topic
//! let mode = detect_transactions(&kafka, "complaints-input", std::time::Duration::from_secs(5))
//!     .mode(true, "complaintflow");
//! let mut cfg = EngineConfig::new("state/registry");
//! cfg.checkpoints = Some(CheckpointConfig::new("state"));
//! let model = complaintflow_models::Registry::open("state/registry")?.load_production()?;
//! let engine = Engine::builder(cfg)
//!     .source(source)
//!     .sink(Arc::new(KafkaSinks::new(kafka, mode, KafkaSinkTopics::default())))
//!     .start(model)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use complaintflow_operators::kafka::{
    dead_letter_payload, detect_transactions, kafka_source_with, DeliveryMode, KafkaConfig,
    KafkaError, KafkaSink, KafkaSinkHandle, KafkaSourceHandle, KafkaSourceSpec, ReadMode,
};
use complaintflow_operators::publish::SharedDecision;
use complaintflow_operators::record::{DeadLetter, RawInput};
use timely::dataflow::{Scope, Stream};

use crate::aggregate::AggregateChange;
use crate::plugin::{EngineOutputs, Sink, Source, SourceContext};

/// A Kafka topic as the engine's source: each worker reads the partitions `p % peers ==
/// index`, resumes from the checkpoint's offsets (else `auto.offset.reset`), and cuts epochs
/// by the engine's policy. Resumable: the engine checkpoints it.
#[derive(Debug)]
pub struct KafkaSource {
    cfg: KafkaConfig,
    topic: String,
    mode: ReadMode,
    handle: KafkaSourceHandle,
}

impl KafkaSource {
    /// Reads `topic`: continuously (until the engine stops) or bounded (up to the high
    /// watermarks at start, `run --once`).
    pub fn new(cfg: KafkaConfig, topic: impl Into<String>, mode: ReadMode) -> KafkaSource {
        let topic = topic.into();
        KafkaSource {
            handle: KafkaSourceHandle::new(&topic),
            cfg,
            topic,
            mode,
        }
    }

    /// The shared handle (lag, records read, positions, errors) of this process's workers.
    pub fn handle(&self) -> KafkaSourceHandle {
        self.handle.clone()
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Checks that a broker answers and the topic exists; returns its partition count.
    pub fn check(&self) -> Result<usize, KafkaError> {
        self.cfg.check_reachable()?;
        Ok(self.cfg.partitions(&self.topic)?.len())
    }
}

impl Source for KafkaSource {
    fn describe(&self) -> String {
        format!("kafka:{}@{}", self.topic, self.cfg.brokers)
    }

    fn check(&self) -> Result<(), String> {
        KafkaSource::check(self)
            .map(|_| ())
            .map_err(|e| format!("--source kafka:{}: {e}", self.topic))
    }

    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        ctx: &SourceContext,
    ) -> Stream<'s, u64, Vec<RawInput>> {
        let mut spec = KafkaSourceSpec::new(&self.topic);
        spec.start_offsets = ctx
            .start_offsets
            .get(&self.topic)
            .cloned()
            .unwrap_or_default();
        spec.policy = ctx.policy.clone();
        spec.mode = self.mode;
        spec.first_epoch = ctx.first_epoch;
        spec.stop = Arc::clone(&ctx.stop);
        kafka_source_with(
            scope,
            &self.cfg,
            spec,
            self.handle.clone(),
            Some(ctx.progress.clone()),
        )
    }

    fn resumable(&self) -> bool {
        true
    }

    fn on_durable(&self, epoch: u64) {
        // Monitoring only: the checkpoint is what a restart resumes from.
        self.handle.commit_through(epoch);
        self.handle.release_through(epoch);
    }

    fn lag(&self) -> Option<i64> {
        self.handle.lag()
    }

    fn fatal(&self) -> Option<String> {
        self.handle.fatal()
    }

    fn caught_up(&self) -> Option<Result<bool, String>> {
        Some(self.handle.caught_up(&self.cfg).map_err(|e| e.to_string()))
    }
}

/// The topics [`KafkaSinks`] writes; `None` switches one off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSinkTopics {
    /// Decisions (JSON, key = complaint_id). Default `complaints-predictions`.
    pub predictions: Option<String>,
    /// Dead letters (JSON: kind, message, complaint_id, origin {source, partition, offset},
    /// raw; key = `source/partition/offset`). Default `complaints-dlq`.
    pub dead_letters: Option<String>,
    /// Aggregate changes ([`AggregateChange`] JSON, key = `dimension|key`). Default
    /// `complaints-aggregates`.
    pub aggregates: Option<String>,
}

impl Default for KafkaSinkTopics {
    fn default() -> Self {
        KafkaSinkTopics {
            predictions: Some("complaints-predictions".into()),
            dead_letters: Some("complaints-dlq".into()),
            aggregates: Some("complaints-aggregates".into()),
        }
    }
}

impl KafkaSinkTopics {
    /// The topics switched on.
    pub fn all(&self) -> Vec<&str> {
        [&self.predictions, &self.dead_letters, &self.aggregates]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

/// Counters of each Kafka sink, shared by this process's workers.
#[derive(Clone, Debug, Default)]
pub struct KafkaSinkHandles {
    /// Predictions.
    pub predictions: KafkaSinkHandle,
    /// Dead letters.
    pub dead_letters: KafkaSinkHandle,
    /// Aggregate changes.
    pub aggregates: KafkaSinkHandle,
}

/// Decisions, dead letters and aggregate changes to Kafka topics, with per-epoch delivery
/// tracking (the engine probes the acknowledgements, so a checkpoint never covers an epoch
/// that is not durably written) and the given [`DeliveryMode`].
#[derive(Debug)]
pub struct KafkaSinks {
    cfg: KafkaConfig,
    mode: DeliveryMode,
    topics: KafkaSinkTopics,
    handles: KafkaSinkHandles,
}

impl KafkaSinks {
    /// Sinks to `topics` on the brokers of `cfg`.
    pub fn new(cfg: KafkaConfig, mode: DeliveryMode, topics: KafkaSinkTopics) -> KafkaSinks {
        KafkaSinks {
            cfg,
            mode,
            topics,
            handles: KafkaSinkHandles::default(),
        }
    }

    /// The counters.
    pub fn handles(&self) -> KafkaSinkHandles {
        self.handles.clone()
    }

    /// The topics.
    pub fn topics(&self) -> &KafkaSinkTopics {
        &self.topics
    }

    /// The delivery mode.
    pub fn mode(&self) -> &DeliveryMode {
        &self.mode
    }
}

fn dead_letter_key(d: &DeadLetter) -> String {
    format!(
        "{}/{}/{}",
        d.origin.source, d.origin.partition, d.origin.offset
    )
}

impl KafkaSinks {
    /// Checks the broker and the topics, detects transaction support (transactional
    /// delivery when the broker has it, with ids prefixed `group`-engine; else at-least-once
    /// with keyed records) and builds the sinks.
    pub fn connect(
        cfg: KafkaConfig,
        topics: KafkaSinkTopics,
        group: &str,
    ) -> Result<KafkaSinks, String> {
        cfg.check_reachable()
            .map_err(|e| format!("Kafka at {}: {e}", cfg.brokers))?;
        for t in topics.all() {
            cfg.partitions(t)
                .map_err(|e| format!("Kafka output topic {t}: {e}"))?;
        }
        let probe_topic = topics
            .all()
            .first()
            .map_or("complaints-predictions", |t| *t)
            .to_string();
        let support = detect_transactions(
            &cfg,
            &probe_topic,
            cfg.connect_timeout()
                .min(std::time::Duration::from_secs(10)),
        );
        let mode = support.mode(true, &format!("{group}-engine"));
        tracing::info!(brokers = %cfg.brokers, topics = ?topics.all(), delivery = %mode, "Kafka sinks");
        Ok(KafkaSinks::new(cfg, mode, topics))
    }
}

impl Sink for KafkaSinks {
    fn report(&self) -> Vec<String> {
        let h = &self.handles;
        [
            (&self.topics.predictions, &h.predictions),
            (&self.topics.dead_letters, &h.dead_letters),
            (&self.topics.aggregates, &h.aggregates),
        ]
        .into_iter()
        .filter_map(|(topic, handle)| {
            let topic = topic.as_ref()?;
            let s = handle.stats();
            Some(format!(
                "kafka:{topic}: {} delivered, {} sent again after errors, {} failed{}",
                s.delivered,
                s.retried,
                s.failed,
                s.last_error
                    .filter(|_| s.failed > 0)
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ))
        })
        .collect()
    }

    fn describe(&self) -> String {
        format!(
            "kafka:{}@{} ({})",
            self.topics.all().join(","),
            self.cfg.brokers,
            self.mode
        )
    }

    fn check(&self) -> Result<(), String> {
        self.cfg.check_reachable().map_err(|e| e.to_string())?;
        for t in self.topics.all() {
            self.cfg.partitions(t).map_err(|e| e.to_string())?;
        }
        self.cfg.check_producer().map_err(|e| e.to_string())
    }

    fn build<'s>(
        &self,
        _scope: Scope<'s, u64>,
        outputs: &EngineOutputs<'s>,
    ) -> Result<Vec<Stream<'s, u64, Vec<u64>>>, String> {
        let mut acks = Vec::new();
        let (cfg, mode, h) = (&self.cfg, &self.mode, &self.handles);
        if let Some(t) = &self.topics.predictions {
            // The bytes `publish` made, shared: no serialization or copy here.
            acks.push(
                outputs
                    .decisions
                    .clone()
                    .kafka_sink(
                        cfg,
                        t,
                        mode,
                        &h.predictions,
                        |d: &SharedDecision| Some(d.decision.complaint_id.clone()),
                        |d: &SharedDecision| Ok(Arc::clone(&d.json)),
                    )
                    .map_err(|e| format!("{t}: {e}"))?,
            );
        }
        if let Some(t) = &self.topics.dead_letters {
            acks.push(
                outputs
                    .dead_letters
                    .clone()
                    .kafka_sink(
                        cfg,
                        t,
                        mode,
                        &h.dead_letters,
                        |d: &DeadLetter| Some(dead_letter_key(d)),
                        |d: &DeadLetter| dead_letter_payload(d).map(|(_, v)| Arc::from(v)),
                    )
                    .map_err(|e| format!("{t}: {e}"))?,
            );
        }
        if let Some(t) = &self.topics.aggregates {
            acks.push(
                outputs
                    .aggregate_changes
                    .clone()
                    .kafka_sink_json(cfg, t, mode, &h.aggregates, |c: &AggregateChange| {
                        Some(c.message_key())
                    })
                    .map_err(|e| format!("{t}: {e}"))?,
            );
        }
        Ok(acks)
    }
}
