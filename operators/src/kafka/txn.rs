//! Do Kafka transactions work on this broker? → the sinks' [`DeliveryMode`].
//!
//! A real Kafka cluster supports transactions; tansu 0.6 does not (its `EndTxn` is
//! rejected), and exactly-once through transactions is then impossible: the sinks fall back
//! to at-least-once with keyed, replay-safe outputs (see the `sink` module).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::config::KafkaConfig;
use super::context::TracingContext;

/// How sinks write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryMode {
    /// Idempotent producer, every record acknowledged before its epoch counts as durable; a
    /// replay after a crash may write a record again (under the same key).
    AtLeastOnce,
    /// One Kafka transaction per worker and epoch; each worker's producer uses
    /// `transactional.id = {transactional_id}-{topic}-{worker}`.
    Transactional {
        /// Prefix of the transactional ids (stable across restarts, so a restarted job
        /// fences its zombie predecessor).
        transactional_id: String,
    },
}

impl std::fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryMode::AtLeastOnce => f.write_str("at-least-once (keyed, replay-safe outputs)"),
            DeliveryMode::Transactional { transactional_id } => {
                write!(
                    f,
                    "transactional (exactly-once per epoch, ids {transactional_id}-*)"
                )
            }
        }
    }
}

/// The outcome of [`detect_transactions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnSupport {
    /// A transaction with an offset commit was begun and committed.
    Supported,
    /// A step failed: the step and the broker's answer.
    Unsupported {
        /// Which step failed (`init_transactions`, `send_offsets_to_transaction`,
        /// `commit_transaction` = EndTxn).
        step: String,
        /// The error.
        reason: String,
    },
}

impl TxnSupport {
    /// The delivery mode to use: transactional when supported and `wanted`.
    pub fn mode(&self, wanted: bool, transactional_id: &str) -> DeliveryMode {
        match self {
            TxnSupport::Supported if wanted => DeliveryMode::Transactional {
                transactional_id: transactional_id.to_string(),
            },
            _ => DeliveryMode::AtLeastOnce,
        }
    }
}

/// Probes the broker: `init_transactions`, `begin_transaction`, an offset commit in the
/// transaction (for group `{group_id}-txn-probe` on partition 0 of `probe_topic`, so no
/// message is written anywhere), and `commit_transaction` (the `EndTxn` request). Each step
/// has `timeout`. Logs and returns the outcome.
pub fn detect_transactions(cfg: &KafkaConfig, probe_topic: &str, timeout: Duration) -> TxnSupport {
    let fail = |step: &str, reason: String| {
        tracing::info!(brokers = %cfg.brokers, step, "Kafka transactions not available: {reason}");
        TxnSupport::Unsupported {
            step: step.to_string(),
            reason,
        }
    };
    let id = format!(
        "{}-txn-probe-{}-{}",
        cfg.client_id,
        std::process::id(),
        crate::record::now_ms()
    );
    let producer: BaseProducer<TracingContext> = match cfg
        .producer_config()
        .set("transactional.id", &id)
        .set("transaction.timeout.ms", "10000")
        .set("message.timeout.ms", "10000")
        .create_with_context(TracingContext::default())
    {
        Ok(p) => p,
        Err(e) => return fail("create producer", e.to_string()),
    };
    if let Err(e) = producer.init_transactions(timeout) {
        return fail("init_transactions", e.to_string());
    }
    if let Err(e) = producer.begin_transaction() {
        return fail("begin_transaction", e.to_string());
    }
    let consumer: BaseConsumer<TracingContext> = match cfg
        .consumer_config()
        .set("group.id", format!("{}-txn-probe", cfg.group_id))
        .create_with_context(TracingContext::default())
    {
        Ok(c) => c,
        Err(e) => return fail("create consumer", e.to_string()),
    };
    let Some(meta) = consumer.group_metadata() else {
        return fail(
            "group metadata",
            "the consumer has no group metadata".into(),
        );
    };
    let mut tpl = TopicPartitionList::new();
    if let Err(e) = tpl.add_partition_offset(probe_topic, 0, Offset::Offset(0)) {
        return fail("offsets", e.to_string());
    }
    if let Err(e) = producer.send_offsets_to_transaction(&tpl, &meta, timeout) {
        let _ = producer.abort_transaction(timeout);
        return fail("send_offsets_to_transaction", e.to_string());
    }
    if let Err(e) = producer.commit_transaction(timeout) {
        let _ = producer.abort_transaction(timeout);
        return fail("commit_transaction (EndTxn)", e.to_string());
    }
    tracing::info!(brokers = %cfg.brokers, "Kafka transactions supported");
    TxnSupport::Supported
}
