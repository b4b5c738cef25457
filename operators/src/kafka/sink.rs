//! Kafka sinks with per-epoch delivery tracking.
//!
//! `stream.kafka_sink(..)` writes every record of every worker to a topic with the worker's
//! own idempotent producer (`enable.idempotence=true`, `acks=all`; librdkafka retries
//! transient failures until `message.timeout.ms`, and messages that still fail with a
//! retriable error are sent again by the sink). It returns a stream whose **frontier passes
//! an epoch only once every record of that epoch was acknowledged by the broker**: probe it
//! (with the other outputs) and write a checkpoint only for epochs the probe has passed.
//! The stream carries, per worker and completed epoch, the number of records acknowledged.
//!
//! With [`DeliveryMode::Transactional`] each worker writes each epoch in one Kafka
//! transaction, committed when the epoch is complete at the sink (read them with
//! `isolation.level=read_committed`); with [`DeliveryMode::AtLeastOnce`] a replay after a
//! crash writes some records again under the same key (predictions are keyed by
//! `complaint_id`, dead letters by source partition/offset), so keyed de-duplication or a
//! compacted topic gives one answer per key.
//!
//! Records whose value cannot be serialized and messages rejected permanently by the broker
//! (e.g. too large) are counted in [`SinkStats::failed`] and logged; they do not hold back
//! their epoch.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::Serialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::scheduling::SyncActivator;

use super::config::{KafkaConfig, KafkaError};
use super::context::{lock, TracingContext};
use super::txn::DeliveryMode;
use crate::record::DeadLetter;

/// Counters of a sink (summed over the workers sharing a [`KafkaSinkHandle`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// Records handed to the producer.
    pub sent: u64,
    /// Records acknowledged by the broker.
    pub delivered: u64,
    /// Records sent again after a retriable delivery failure.
    pub retried: u64,
    /// Records lost: not serializable, or rejected permanently by the broker.
    pub failed: u64,
    /// Records sent and not yet acknowledged.
    pub in_flight: u64,
    /// Transactions committed (transactional mode).
    pub transactions: u64,
    /// The last delivery error seen.
    pub last_error: Option<String>,
    /// Every epoch below this is durable at every worker's sink.
    pub durable_below: Option<u64>,
}

/// Shared counters of a Kafka sink; create one per sink, pass a clone to every worker.
#[derive(Clone, Debug, Default)]
pub struct KafkaSinkHandle {
    stats: Arc<Mutex<SinkStats>>,
    durable: Arc<Mutex<BTreeMap<usize, Option<u64>>>>,
}

impl KafkaSinkHandle {
    /// A new handle.
    pub fn new() -> KafkaSinkHandle {
        KafkaSinkHandle::default()
    }

    /// The counters now.
    pub fn stats(&self) -> SinkStats {
        let mut s = lock(&self.stats).clone();
        let d = lock(&self.durable);
        s.durable_below = if d.is_empty() {
            None
        } else {
            d.values().map(|v| v.unwrap_or(u64::MAX)).min()
        };
        s
    }

    fn update(&self, f: impl FnOnce(&mut SinkStats)) {
        f(&mut lock(&self.stats));
    }
}

/// A message waiting to be sent.
#[derive(Clone)]
struct Out {
    key: Option<String>,
    payload: Arc<[u8]>,
}

#[derive(Default)]
struct Deliveries {
    /// Unacknowledged messages per epoch.
    pending: BTreeMap<u64, usize>,
    /// Acknowledged messages per epoch.
    acked: BTreeMap<u64, u64>,
    /// Retriable failures to send again, with their epoch and when (a short backoff, so a
    /// broker that rejects everything while it shuts down is not hammered).
    retry: Vec<(u64, Out, Instant)>,
    /// A delivery in the open transaction failed: abort it.
    txn_failed: bool,
}

struct SinkContext {
    deliveries: Arc<Mutex<Deliveries>>,
    handle: KafkaSinkHandle,
    activator: Arc<OnceLock<SyncActivator>>,
    inner: TracingContext,
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }
    fn error(&self, error: RdError, reason: &str) {
        self.inner.error(error, reason);
    }
}

/// How long a message that failed with a retriable error waits before it is sent again.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Errors a sink gives up on (everything else is sent again).
pub(crate) fn permanent(code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::InvalidTopic
                | C::InvalidArgument
                | C::UnknownTopic
        )
    )
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: Box<u64>) {
        let epoch = *epoch;
        let mut d = lock(&self.deliveries);
        let mut wake = false;
        match result {
            Ok(_) => {
                *d.acked.entry(epoch).or_default() += 1;
                self.handle.update(|s| {
                    s.delivered += 1;
                    s.in_flight = s.in_flight.saturating_sub(1);
                });
            }
            Err((e, msg)) => {
                d.txn_failed = true;
                if permanent(e.rdkafka_error_code()) {
                    tracing::error!(
                        topic = msg.topic(),
                        "message rejected permanently, not retried: {e}"
                    );
                    self.handle.update(|s| {
                        s.failed += 1;
                        s.in_flight = s.in_flight.saturating_sub(1);
                        s.last_error = Some(e.to_string());
                    });
                } else {
                    let out = Out {
                        key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: Arc::from(msg.payload().unwrap_or_default()),
                    };
                    d.retry.push((epoch, out, Instant::now() + RETRY_BACKOFF));
                    self.handle.update(|s| {
                        s.retried += 1;
                        s.in_flight = s.in_flight.saturating_sub(1);
                        s.last_error = Some(e.to_string());
                    });
                    tracing::warn!(topic = msg.topic(), "delivery failed, sending again: {e}");
                }
                wake = true;
            }
        }
        if let Some(p) = d.pending.get_mut(&epoch) {
            *p = p.saturating_sub(1);
            if *p == 0 {
                d.pending.remove(&epoch);
                wake = true;
            }
        }
        drop(d);
        if wake {
            if let Some(a) = self.activator.get() {
                let _ = a.activate();
            }
        }
    }
}

/// A JSON dead letter for `complaints-dlq`: `{kind, message, complaint_id, origin: {source,
/// partition, offset}, raw}` (raw = the original bytes, lossily UTF-8, at most
/// [`DEAD_LETTER_RAW_BYTES`](crate::record::DEAD_LETTER_RAW_BYTES)), and its key
/// `source/partition/offset` (the same on a replay, so replays overwrite).
///
/// ```
/// use complaintflow_operators::kafka::dead_letter_payload;
/// use complaintflow_operators::record::{DeadLetter, Origin, RawInput};
/// let raw = RawInput::new(b"{oops".to_vec(), Origin { source: "complaints-input".into(), partition: 2, offset: 7 });
/// let d = DeadLetter::from_raw(&raw, "malformed_json", "EOF".into(), None);
/// let (key, value) = dead_letter_payload(&d).unwrap();
/// assert_eq!(key, "complaints-input/2/7");
/// let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
/// assert_eq!((v["kind"].as_str(), v["raw"].as_str()), (Some("malformed_json"), Some("{oops")));
/// assert_eq!(v["origin"]["offset"], 7);
/// ```
pub fn dead_letter_payload(d: &DeadLetter) -> Result<(String, Vec<u8>), String> {
    let key = format!(
        "{}/{}/{}",
        d.origin.source, d.origin.partition, d.origin.offset
    );
    serde_json::to_vec(d)
        .map(|v| (key, v))
        .map_err(|e| e.to_string())
}

/// Writes a stream to a Kafka topic (see the [module docs](self)).
pub trait KafkaSink<'s, D> {
    /// Sends each record as one message: key `key_fn(&d)`, value `value_fn(&d)`. Returns the
    /// acknowledgement stream (its frontier = what is durable; per worker and epoch, the
    /// count of records acknowledged). An error if the producer cannot be created or, in
    /// transactional mode, the transactions cannot be initialised.
    fn kafka_sink<KF, VF>(
        self,
        cfg: &KafkaConfig,
        topic: &str,
        mode: &DeliveryMode,
        handle: &KafkaSinkHandle,
        key_fn: KF,
        value_fn: VF,
    ) -> Result<Stream<'s, u64, Vec<u64>>, KafkaError>
    where
        KF: Fn(&D) -> Option<String> + 'static,
        VF: Fn(&D) -> Result<Arc<[u8]>, String> + 'static;

    /// [`kafka_sink`](KafkaSink::kafka_sink) with the record serialized as JSON.
    fn kafka_sink_json<KF>(
        self,
        cfg: &KafkaConfig,
        topic: &str,
        mode: &DeliveryMode,
        handle: &KafkaSinkHandle,
        key_fn: KF,
    ) -> Result<Stream<'s, u64, Vec<u64>>, KafkaError>
    where
        D: Serialize,
        KF: Fn(&D) -> Option<String> + 'static,
        Self: Sized,
    {
        self.kafka_sink(cfg, topic, mode, handle, key_fn, |d: &D| {
            serde_json::to_vec(d)
                .map(Arc::from)
                .map_err(|e| e.to_string())
        })
    }
}

impl<'s, D: 'static> KafkaSink<'s, D> for Stream<'s, u64, Vec<D>> {
    fn kafka_sink<KF, VF>(
        self,
        cfg: &KafkaConfig,
        topic: &str,
        mode: &DeliveryMode,
        handle: &KafkaSinkHandle,
        key_fn: KF,
        value_fn: VF,
    ) -> Result<Stream<'s, u64, Vec<u64>>, KafkaError>
    where
        KF: Fn(&D) -> Option<String> + 'static,
        VF: Fn(&D) -> Result<Arc<[u8]>, String> + 'static,
    {
        let scope = self.scope();
        let index = scope.index();
        let deliveries = Arc::new(Mutex::new(Deliveries::default()));
        let activator = Arc::new(OnceLock::new());
        let ctx = SinkContext {
            deliveries: Arc::clone(&deliveries),
            handle: handle.clone(),
            activator: Arc::clone(&activator),
            inner: TracingContext::default(),
        };
        let mut client = cfg.producer_config();
        let txn = match mode {
            DeliveryMode::Transactional { transactional_id } => {
                client
                    .set(
                        "transactional.id",
                        format!("{transactional_id}-{topic}-{index}"),
                    )
                    .set("enable.idempotence", "true")
                    // Must be >= message.timeout.ms.
                    .set("transaction.timeout.ms", "120000");
                true
            }
            DeliveryMode::AtLeastOnce => false,
        };
        let producer: ThreadedProducer<SinkContext> = client
            .create_with_context(ctx)
            .map_err(|e| KafkaError::Config(format!("cannot create a Kafka producer: {e}")))?;
        if txn {
            producer.init_transactions(cfg.connect_timeout())?;
        }
        let txn_timeout = cfg.connect_timeout().max(Duration::from_secs(30));
        let topic = topic.to_string();
        let handle = handle.clone();
        lock(&handle.durable).insert(index, Some(0));
        let worker = scope.worker();
        let stream = self.unary_frontier::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
            Pipeline,
            "KafkaSink",
            move |_cap, info| {
                let _ = activator.set(worker.sync_activator_for(info.address.to_vec()));
                let self_activator = scope.activator_for(Rc::clone(&info.address));
                let mut caps: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
                let mut backlog: BTreeMap<u64, VecDeque<Out>> = BTreeMap::new();
                // Transactional mode: the epoch of the open transaction and copies of what
                // it holds (sent again if it must be aborted).
                let mut open_txn: Option<u64> = None;
                let mut in_txn: Vec<Out> = Vec::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(c) = cap.retain_least(output.output_index()) else {
                            return;
                        };
                        let t = *c.time();
                        caps.entry(t).or_insert(c);
                        let queue = backlog.entry(t).or_default();
                        for batch in data {
                            for d in batch.drain(..) {
                                match value_fn(&d) {
                                    Ok(payload) => queue.push_back(Out {
                                        key: key_fn(&d),
                                        payload,
                                    }),
                                    Err(e) => {
                                        tracing::error!(topic = %topic, "record not serializable, not sent: {e}");
                                        handle.update(|s| {
                                            s.failed += 1;
                                            s.last_error = Some(e);
                                        });
                                    }
                                }
                            }
                        }
                    });
                    // Retriable failures go back to the front of their epoch's queue.
                    let now = Instant::now();
                    let (due, next_retry) = {
                        let mut d = lock(&deliveries);
                        let (due, later): (Vec<_>, Vec<_>) =
                            d.retry.drain(..).partition(|r| txn || r.2 <= now);
                        let next = later.iter().map(|r| r.2).min();
                        d.retry = later;
                        (due, next)
                    };
                    for (t, out, _) in due {
                        if txn {
                            continue; // the whole transaction is sent again below
                        }
                        backlog.entry(t).or_default().push_front(out);
                    }
                    if txn && std::mem::take(&mut lock(&deliveries).txn_failed) {
                        if let Some(t) = open_txn.take() {
                            tracing::warn!(topic = %topic, epoch = t, "aborting a transaction after a delivery error; sending it again");
                            if let Err(e) = producer.abort_transaction(txn_timeout) {
                                tracing::error!(topic = %topic, "abort_transaction failed: {e}");
                            }
                            let q = backlog.entry(t).or_default();
                            for out in in_txn.drain(..).rev() {
                                q.push_front(out);
                            }
                            lock(&deliveries).pending.remove(&t);
                        }
                    }
                    // Send.
                    let mut queue_full = false;
                    for (t, queue) in backlog.iter_mut() {
                        if txn {
                            match open_txn {
                                Some(o) if o != *t => break,
                                Some(_) => {}
                                None => {
                                    if let Err(e) = producer.begin_transaction() {
                                        tracing::error!(topic = %topic, "begin_transaction failed: {e}");
                                        break;
                                    }
                                    open_txn = Some(*t);
                                }
                            }
                        }
                        while let Some(out) = queue.pop_front() {
                            *lock(&deliveries).pending.entry(*t).or_default() += 1;
                            let mut rec = BaseRecord::with_opaque_to(&topic, Box::new(*t))
                                .payload(&*out.payload);
                            if let Some(k) = &out.key {
                                rec = rec.key(k);
                            }
                            match producer.send(rec) {
                                Ok(()) => {
                                    handle.update(|s| {
                                        s.sent += 1;
                                        s.in_flight += 1;
                                    });
                                    if txn {
                                        in_txn.push(out);
                                    }
                                }
                                Err((e, _)) => {
                                    let mut d = lock(&deliveries);
                                    if let Some(p) = d.pending.get_mut(t) {
                                        *p = p.saturating_sub(1);
                                        if *p == 0 {
                                            d.pending.remove(t);
                                        }
                                    }
                                    drop(d);
                                    if matches!(e, RdError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                                        queue.push_front(out);
                                        queue_full = true;
                                        break;
                                    }
                                    tracing::error!(topic = %topic, "message not accepted by the producer: {e}");
                                    handle.update(|s| {
                                        s.failed += 1;
                                        s.last_error = Some(e.to_string());
                                    });
                                }
                            }
                        }
                        if queue_full || txn {
                            break;
                        }
                    }
                    backlog.retain(|_, q| !q.is_empty());
                    // Complete epochs the input has passed whose records are all durable.
                    let done: Vec<u64> = caps
                        .keys()
                        .copied()
                        .filter(|t| !frontier.less_equal(t) && !backlog.contains_key(t))
                        .collect();
                    for t in done {
                        if txn {
                            if open_txn == Some(t) {
                                match producer.commit_transaction(txn_timeout) {
                                    Ok(()) => {
                                        open_txn = None;
                                        in_txn.clear();
                                        handle.update(|s| s.transactions += 1);
                                    }
                                    Err(e) => {
                                        tracing::warn!(topic = %topic, epoch = t, "commit_transaction failed, retrying the epoch: {e}");
                                        lock(&deliveries).txn_failed = true;
                                        self_activator.activate();
                                        break;
                                    }
                                }
                            } else if open_txn.is_some() {
                                break;
                            }
                            lock(&deliveries).pending.remove(&t);
                        } else {
                            // Under one lock: the delivery callback moves a failed message
                            // from `pending` to `retry` atomically.
                            let d = lock(&deliveries);
                            if d.pending.contains_key(&t) || d.retry.iter().any(|r| r.0 == t) {
                                continue;
                            }
                        }
                        if let Some(cap) = caps.remove(&t) {
                            let acked = lock(&deliveries).acked.remove(&t).unwrap_or(0);
                            output.session(&cap).give(acked);
                        }
                    }
                    let durable = match (caps.keys().next(), frontier.frontier().first()) {
                        (Some(c), Some(f)) => Some((*c).min(*f)),
                        (Some(c), None) => Some(*c),
                        (None, f) => f.copied(),
                    };
                    lock(&handle.durable).insert(index, durable);
                    if queue_full {
                        self_activator.activate_after(Duration::from_millis(1));
                    } else if let Some(at) = next_retry {
                        self_activator.activate_after(at.saturating_duration_since(Instant::now()));
                    } else if !backlog.is_empty() {
                        self_activator.activate();
                    } else if !caps.is_empty() {
                        // Delivery callbacks wake us; this is the fallback.
                        self_activator.activate_after(Duration::from_millis(50));
                    }
                }
            },
        );
        Ok(stream)
    }
}
