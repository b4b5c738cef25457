//! Reading a topic as JSON Lines (`complaintflow consume`): for people and tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::config::{KafkaConfig, KafkaError};
use super::context::TracingContext;

/// Where a consumer starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest retained message of each partition.
    Beginning,
    /// The group's committed offsets (else `auto.offset.reset`); the new positions are
    /// committed at the end.
    #[default]
    Committed,
    /// Only messages produced from now on.
    End,
}

/// What to read.
#[derive(Clone, Debug)]
pub struct ConsumeOptions {
    /// The topic.
    pub topic: String,
    /// Where to start.
    pub start: StartFrom,
    /// Stop when no message arrived for this long (`None`: run until `stop`).
    pub until_idle: Option<Duration>,
    /// Stop after this many messages.
    pub max_messages: Option<u64>,
    /// Stop when set.
    pub stop: Arc<AtomicBool>,
}

impl ConsumeOptions {
    /// Reads `topic` from the beginning until it has been idle for `idle`.
    pub fn from_beginning(topic: impl Into<String>, idle: Duration) -> ConsumeOptions {
        ConsumeOptions {
            topic: topic.into(),
            start: StartFrom::Beginning,
            until_idle: Some(idle),
            max_messages: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One message, as printed by `complaintflow consume` (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsumedMessage {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (lossy UTF-8), if any.
    pub key: Option<String>,
    /// Message timestamp, ms since the Unix epoch, if any.
    pub timestamp: Option<i64>,
    /// The value: parsed JSON when it is JSON, else the bytes as a (lossy UTF-8) string.
    pub value: serde_json::Value,
}

/// What a consume run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConsumeSummary {
    /// Messages read.
    pub messages: u64,
    /// Of which with a value that is not JSON.
    pub not_json: u64,
    /// Next offset per partition at the end.
    pub positions: BTreeMap<i32, i64>,
}

/// Reads `opts.topic` (all partitions, manual assignment) and calls `on_message` for every
/// message in order per partition. Stops on idle, count or the stop flag; an error from
/// `on_message` stops it and is returned as [`KafkaError::Output`].
pub fn consume_topic<F>(
    cfg: &KafkaConfig,
    opts: &ConsumeOptions,
    mut on_message: F,
) -> Result<ConsumeSummary, KafkaError>
where
    F: FnMut(ConsumedMessage) -> Result<(), String>,
{
    cfg.check_reachable()?;
    let partitions = cfg.partitions(&opts.topic)?;
    let mut client = cfg.consumer_config();
    client.set("statistics.interval.ms", "0");
    let consumer: BaseConsumer<TracingContext> = client
        .create_with_context(TracingContext::default())
        .map_err(|e| KafkaError::Config(format!("cannot create a Kafka consumer: {e}")))?;
    let mut tpl = TopicPartitionList::new();
    let committed = if opts.start == StartFrom::Committed {
        let mut q = TopicPartitionList::new();
        for p in &partitions {
            q.add_partition(&opts.topic, *p);
        }
        Some(consumer.committed_offsets(q, cfg.connect_timeout())?)
    } else {
        None
    };
    for p in &partitions {
        let offset = match opts.start {
            StartFrom::Beginning => Offset::Beginning,
            StartFrom::End => Offset::End,
            StartFrom::Committed => match committed
                .as_ref()
                .and_then(|c| c.find_partition(&opts.topic, *p))
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => Offset::Offset(o),
                _ => match cfg.auto_offset_reset {
                    super::OffsetReset::Earliest => Offset::Beginning,
                    super::OffsetReset::Latest => Offset::End,
                },
            },
        };
        tpl.add_partition_offset(&opts.topic, *p, offset)?;
    }
    consumer.assign(&tpl)?;
    let mut summary = ConsumeSummary::default();
    let mut last = Instant::now();
    loop {
        if opts.stop.load(Ordering::Relaxed)
            || opts.max_messages.is_some_and(|m| summary.messages >= m)
            || opts.until_idle.is_some_and(|d| last.elapsed() >= d)
        {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => tracing::warn!(topic = %opts.topic, "consumer error (retrying): {e}"),
            Some(Ok(m)) => {
                last = Instant::now();
                let value = match m.payload() {
                    None => serde_json::Value::Null,
                    Some(b) => serde_json::from_slice(b).unwrap_or_else(|_| {
                        summary.not_json += 1;
                        serde_json::Value::String(String::from_utf8_lossy(b).into_owned())
                    }),
                };
                let msg = ConsumedMessage {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    timestamp: match m.timestamp() {
                        Timestamp::NotAvailable => None,
                        t => t.to_millis(),
                    },
                    value,
                };
                summary.positions.insert(m.partition(), m.offset() + 1);
                summary.messages += 1;
                if let Err(e) = on_message(msg) {
                    return Err(KafkaError::Output(e));
                }
            }
        }
    }
    if opts.start == StartFrom::Committed && !summary.positions.is_empty() {
        let mut c = TopicPartitionList::new();
        for (p, o) in &summary.positions {
            c.add_partition_offset(&opts.topic, *p, Offset::Offset(*o))?;
        }
        if let Err(e) = consumer.commit(&c, CommitMode::Sync) {
            tracing::warn!(topic = %opts.topic, "cannot commit the consumed offsets: {e}");
        }
    }
    Ok(summary)
}
