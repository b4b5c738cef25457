//! Client configuration (`[kafka]` in `complaintflow.toml`) and errors.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::metadata::Metadata;
use serde::{Deserialize, Serialize};

use super::context::TracingContext;

/// Errors of the Kafka layer. Each names what failed and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// No broker answered.
    #[error("cannot reach Kafka broker at {brokers} ({reason}): start one with scripts/kafka-up.sh or pass --brokers HOST:PORT")]
    Unreachable {
        /// The bootstrap list tried.
        brokers: String,
        /// What went wrong (connection refused, timeout, …).
        reason: String,
    },
    /// The topic does not exist on the broker.
    #[error("Kafka topic {topic:?} does not exist on {brokers}: create it (scripts/kafka-up.sh creates the complaintflow topics) or check --topic")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The bootstrap list.
        brokers: String,
    },
    /// A client could not be created from the configuration.
    #[error("invalid Kafka client configuration: {0}")]
    Config(String),
    /// An error from librdkafka.
    #[error("Kafka client error: {0}")]
    Client(#[from] RdError),
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file or directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An input file could not be read.
    #[error(transparent)]
    Dataset(#[from] complaintflow_datasets::DatasetError),
    /// Consumed messages could not be written out (e.g. stdout closed).
    #[error("cannot write a consumed message: {0}")]
    Output(String),
    /// Messages could not be delivered.
    #[error("{failed} message(s) could not be delivered to {topic}: {first_error}")]
    Delivery {
        /// The topic.
        topic: String,
        /// How many.
        failed: u64,
        /// The first error seen.
        first_error: String,
    },
}

/// Where a consumer starts on a partition that has no checkpointed offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// The oldest retained message (default).
    #[default]
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

impl OffsetReset {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// Kafka client settings: the `[kafka]` section of `complaintflow.toml`. Every field has a
/// default (see [`KafkaConfig::default`]); `extra` passes any librdkafka property through
/// (and wins over the settings derived here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Consumer group (offsets are committed there for monitoring). Default `complaintflow`.
    pub group_id: String,
    /// Client id shown in broker logs. Default `complaintflow`.
    pub client_id: String,
    /// Where to start on partitions without a checkpointed offset. Default `earliest`.
    pub auto_offset_reset: OffsetReset,
    /// Timeout of start-up checks (metadata, watermarks), ms. Default 10,000.
    pub connect_timeout_ms: u64,
    /// librdkafka statistics interval (feeds consumer lag), ms; 0 disables. Default 1,000.
    pub statistics_interval_ms: u64,
    /// Idempotent producers (`enable.idempotence`; forced on for transactions). Default
    /// `true`. Set `false` against tansu 0.6 if the broker may restart while producers are
    /// connected: an idempotent producer that bumps its epoch after errors makes tansu's
    /// storage panic ("more or less than one row" in `idempotent_message_check`) and the
    /// broker then fails every request until it is restarted. The sinks and the replay
    /// producer send failed messages again either way (at-least-once, keyed outputs).
    pub idempotence: bool,
    /// Extra librdkafka properties, e.g. `"fetch.max.bytes" = "52428800"`.
    pub extra: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "complaintflow".into(),
            client_id: "complaintflow".into(),
            auto_offset_reset: OffsetReset::Earliest,
            connect_timeout_ms: 10_000,
            statistics_interval_ms: 1_000,
            idempotence: true,
            extra: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Defaults with `brokers`.
    ///
    /// ```
    /// let cfg = complaintflow_operators::kafka::KafkaConfig::with_brokers("10.0.0.5:9092");
    /// assert_eq!(cfg.producer_config().get("bootstrap.servers"), Some("10.0.0.5:9092"));
    /// ```
    pub fn with_brokers(brokers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            ..KafkaConfig::default()
        }
    }

    /// The start-up timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Come back quickly after a broker restart.
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "1000");
        c
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// Settings of the source's consumer: manual assignment, no auto-commit, no automatic
    /// offset store (offsets are checkpointed and committed explicitly), and fetches the
    /// broker answers after at most 10 ms when little data is waiting (librdkafka's 500 ms
    /// default: tansu holds a fetch that long, which was most of the end-to-end latency at
    /// 10,000/min; an idle consumer then sends ~100 small fetches a second per broker).
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", &self.group_id)
            .set("fetch.wait.max.ms", "10")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", self.auto_offset_reset.as_str());
        if self.statistics_interval_ms > 0 {
            c.set(
                "statistics.interval.ms",
                self.statistics_interval_ms.to_string(),
            );
        }
        self.finish(c)
    }

    /// Settings of the sinks' and the replay producer's producer: idempotent unless
    /// [`idempotence`](Self::idempotence) is off, `acks=all`, retries within
    /// `message.timeout.ms`, a 2 ms linger (batches under load, ~1 ms of latency when light), one request in flight per broker
    /// connection (measured against tansu with librdkafka 2.12: with idempotence and up to
    /// 5 requests in flight, librdkafka's broker threads busy-poll — 4× the CPU of the whole
    /// engine — and the engine's Kafka → Kafka throughput drops from 630,000 to 500,000
    /// complaints/min; `extra` can raise it again for a high-latency link).
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", self.idempotence.to_string())
            .set("max.in.flight.requests.per.connection", "1")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("retry.backoff.ms", "100")
            .set("message.timeout.ms", "120000");
        self.finish(c)
    }

    /// Checks that a broker answers a metadata request within [`connect_timeout`]: the
    /// error names the broker and the fix.
    ///
    /// ```
    /// use complaintflow_operators::kafka::{KafkaConfig, KafkaError};
    /// let cfg = KafkaConfig { connect_timeout_ms: 500, ..KafkaConfig::with_brokers("127.0.0.1:1") };
    /// let err = cfg.check_reachable().unwrap_err();
    /// assert!(matches!(err, KafkaError::Unreachable { .. }));
    /// assert!(err.to_string().contains("scripts/kafka-up.sh"));
    /// ```
    ///
    /// [`connect_timeout`]: KafkaConfig::connect_timeout
    pub fn check_reachable(&self) -> Result<BrokerInfo, KafkaError> {
        let unreachable = |reason: String| KafkaError::Unreachable {
            brokers: self.brokers.clone(),
            reason,
        };
        // A plain TCP connect first: it gives the clearest reason ("connection refused").
        let mut last = None;
        let mut any = false;
        for b in self
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            let addrs = match b.to_socket_addrs() {
                Ok(a) => a.collect::<Vec<_>>(),
                Err(e) => {
                    last = Some(format!("{b}: {e}"));
                    continue;
                }
            };
            for a in addrs {
                match TcpStream::connect_timeout(&a, self.connect_timeout()) {
                    Ok(_) => any = true,
                    Err(e) => last = Some(format!("{a}: {e}")),
                }
            }
        }
        if !any {
            return Err(unreachable(
                last.unwrap_or_else(|| "no broker address given".into()),
            ));
        }
        let md = self
            .metadata(None)
            .map_err(|e| unreachable(format!("metadata request failed: {e}")))?;
        Ok(BrokerInfo {
            brokers: md.brokers().len(),
            topics: md
                .topics()
                .iter()
                .map(|t| (t.name().to_string(), t.partitions().len()))
                .collect(),
        })
    }

    /// Checks that a producer can be created from [`producer_config`](Self::producer_config)
    /// (e.g. no misspelt `extra` property), so sinks do not fail inside the workers.
    pub fn check_producer(&self) -> Result<(), KafkaError> {
        let _p: rdkafka::producer::BaseProducer<TracingContext> = self
            .producer_config()
            .create_with_context(TracingContext::default())
            .map_err(|e| KafkaError::Config(format!("cannot create a Kafka producer: {e}")))?;
        Ok(())
    }

    fn metadata(&self, topic: Option<&str>) -> Result<Metadata, KafkaError> {
        let consumer: BaseConsumer<TracingContext> = self
            .base()
            .set("group.id", &self.group_id)
            .create_with_context(TracingContext::default())
            .map_err(|e| KafkaError::Config(e.to_string()))?;
        Ok(consumer.fetch_metadata(topic, self.connect_timeout())?)
    }

    /// The partitions of `topic`, sorted; [`KafkaError::UnknownTopic`] if it does not exist.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaError> {
        let md = self.metadata(Some(topic)).map_err(|e| match e {
            KafkaError::Client(e) => KafkaError::Unreachable {
                brokers: self.brokers.clone(),
                reason: format!("metadata request failed: {e}"),
            },
            e => e,
        })?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Err(self.unknown(topic));
        };
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(self.unknown(topic));
        }
        let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ps.sort_unstable();
        Ok(ps)
    }

    fn unknown(&self, topic: &str) -> KafkaError {
        KafkaError::UnknownTopic {
            topic: topic.to_string(),
            brokers: self.brokers.clone(),
        }
    }
}

/// What [`KafkaConfig::check_reachable`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Brokers in the cluster.
    pub brokers: usize,
    /// Topics and their partition counts.
    pub topics: BTreeMap<String, usize>,
}
