//! The Kafka source operator.
//!
//! Each worker owns the partitions `p % peers == index` of the topic (manual assignment, no
//! auto-commit, no automatic offset store), starts each at its checkpointed offset (else at
//! `auto.offset.reset`), and per activation reads at most `policy.batch` messages with
//! `poll(0)`: it never blocks its worker. librdkafka wakes the operator when messages arrive
//! (a sync activator on the consumer queue); otherwise it looks again after a few ms.
//!
//! Epochs are cut as in the file source: a new one opens when this worker's share of
//! `max_records_per_epoch` is reached or `trigger_interval` has passed. When an epoch
//! closes, the worker records the next offset of each of its partitions for that epoch in
//! the shared [`KafkaSourceHandle`]; once a probe has passed epoch `e`,
//! [`KafkaSourceHandle::offsets_through`]`(e)` is what a checkpoint stores.
//!
//! Faults: a broker that goes away is retried by librdkafka (reconnect backoff ≤ 1 s); the
//! errors it reports through `poll` are counted and logged, never fatal.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use super::config::{KafkaConfig, KafkaError};
use super::context::{lock, HighWatermarks, TracingContext};
use crate::record::{now_ms, Origin, RawInput};
use crate::source::{EpochCutter, SourceControl, SourcePolicy};

/// When the source ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// Keep reading until the stop flag is set (a streaming job).
    #[default]
    Continuous,
    /// Stop once every assigned partition reached the high watermark it had at start
    /// (`--once` runs, tests).
    Bounded,
}

/// What one worker's Kafka source reads and how it cuts epochs.
#[derive(Clone, Debug)]
pub struct KafkaSourceSpec {
    /// The topic.
    pub topic: String,
    /// Next offset per partition to resume from (a checkpoint); partitions not listed start
    /// at `auto.offset.reset`.
    pub start_offsets: BTreeMap<i32, i64>,
    /// Epoch cutting (`max_records_per_epoch` over all workers, `trigger_interval`) and
    /// messages per activation (`batch`). `rate` is not applied (the broker is the pace).
    pub policy: SourcePolicy,
    /// Continuous or bounded.
    pub mode: ReadMode,
    /// The first epoch (resume after checkpoint `e` with `e + 1`, so epochs keep growing
    /// across restarts). Default 0.
    pub first_epoch: u64,
    /// Set to stop: the source closes its open epoch and drops its capability at its next
    /// activation.
    pub stop: Arc<AtomicBool>,
}

impl KafkaSourceSpec {
    /// A continuous source of `topic` from `auto.offset.reset`, default policy.
    pub fn new(topic: impl Into<String>) -> KafkaSourceSpec {
        KafkaSourceSpec {
            topic: topic.into(),
            start_offsets: BTreeMap::new(),
            policy: SourcePolicy::default(),
            mode: ReadMode::Continuous,
            first_epoch: 0,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

#[derive(Debug, Default)]
struct PartitionState {
    /// The next offset to read as known at start (checkpoint), if any.
    start: Option<i64>,
    /// Next offset after each closed epoch (only epochs where it was recorded).
    ends: BTreeMap<u64, i64>,
    /// Next offset to read now.
    position: Option<i64>,
    /// Worker that owns it.
    worker: usize,
}

#[derive(Debug, Default)]
struct Inner {
    topic: String,
    partitions: BTreeMap<i32, PartitionState>,
    /// Current epoch per worker (`None` once done).
    epochs: BTreeMap<usize, Option<u64>>,
    records: u64,
    errors: u64,
    last_error: Option<String>,
    fatal: Option<String>,
    commit_request: Option<u64>,
    commits_done: BTreeMap<usize, u64>,
}

/// Shared view of a Kafka source over all the workers of a process: the next offset per
/// partition for each closed epoch, lag, error counts, and group commits. Create one per
/// source and pass a clone to [`kafka_source`] on every worker. `Send + Sync`: metrics and
/// the checkpoint writer may read it from any thread.
#[derive(Clone, Debug)]
pub struct KafkaSourceHandle {
    inner: Arc<Mutex<Inner>>,
    high: HighWatermarks,
}

impl KafkaSourceHandle {
    /// A handle for a source of `topic`.
    pub fn new(topic: &str) -> KafkaSourceHandle {
        KafkaSourceHandle {
            inner: Arc::new(Mutex::new(Inner {
                topic: topic.to_string(),
                ..Inner::default()
            })),
            high: HighWatermarks::default(),
        }
    }

    /// The topic.
    pub fn topic(&self) -> String {
        lock(&self.inner).topic.clone()
    }

    /// Next offset of every partition after all records of epochs `<= epoch` (what a
    /// checkpoint of `epoch` stores). Only meaningful once every worker's source has passed
    /// `epoch` (a probe tells). Partitions not read yet keep their start offset; partitions
    /// with neither are left out (they start at `auto.offset.reset` again).
    pub fn offsets_through(&self, epoch: u64) -> BTreeMap<i32, i64> {
        let inner = lock(&self.inner);
        inner
            .partitions
            .iter()
            .filter_map(|(p, s)| {
                s.ends
                    .range(..=epoch)
                    .next_back()
                    .map(|(_, o)| *o)
                    .or(s.start)
                    .map(|o| (*p, o))
            })
            .collect()
    }

    /// Forgets per-epoch offsets of epochs `<= epoch` (after a checkpoint of `epoch`),
    /// keeping the offsets they imply as the new start.
    pub fn release_through(&self, epoch: u64) {
        let mut inner = lock(&self.inner);
        for s in inner.partitions.values_mut() {
            if let Some((_, o)) = s.ends.range(..=epoch).next_back() {
                s.start = Some(*o);
            }
            s.ends = s.ends.split_off(&(epoch + 1));
        }
    }

    /// Asks every worker to commit `offsets_through(epoch)` of its partitions to the
    /// consumer group (asynchronously, at its next activation, and at most once per
    /// [`GROUP_COMMIT_INTERVAL`] per worker): for monitoring tools; the checkpoint stays the
    /// source of truth for recovery.
    pub fn commit_through(&self, epoch: u64) {
        lock(&self.inner).commit_request = Some(epoch);
    }

    /// The epoch of the latest group commit done by every worker that owns partitions.
    pub fn committed_through(&self) -> Option<u64> {
        let inner = lock(&self.inner);
        let owners: std::collections::BTreeSet<usize> =
            inner.partitions.values().map(|s| s.worker).collect();
        owners
            .iter()
            .map(|w| inner.commits_done.get(w).copied())
            .min()
            .flatten()
    }

    /// Records behind the head of the topic over all partitions read by this process (from
    /// librdkafka's statistics, refreshed every `statistics_interval_ms`); `None` until the
    /// first statistics arrived.
    pub fn lag(&self) -> Option<i64> {
        let inner = lock(&self.inner);
        let high = lock(&self.high);
        let mut total = None;
        for (p, s) in &inner.partitions {
            let (Some(h), Some(pos)) = (high.get(&(inner.topic.clone(), *p)), s.position) else {
                continue;
            };
            *total.get_or_insert(0) += (h - pos).max(0);
        }
        total
    }

    /// The current epoch of each worker's source (`None` once it ended).
    pub fn epochs(&self) -> BTreeMap<usize, Option<u64>> {
        lock(&self.inner).epochs.clone()
    }

    /// Whether every worker's source has ended.
    pub fn finished(&self) -> bool {
        let inner = lock(&self.inner);
        !inner.epochs.is_empty() && inner.epochs.values().all(Option::is_none)
    }

    /// Messages read so far.
    pub fn records(&self) -> u64 {
        lock(&self.inner).records
    }

    /// Consumer errors seen so far (retried by librdkafka), and the last one.
    pub fn errors(&self) -> (u64, Option<String>) {
        let inner = lock(&self.inner);
        (inner.errors, inner.last_error.clone())
    }

    /// A configuration error that ended a worker's source (the consumer could not be
    /// created, the topic does not exist); `None` while healthy.
    pub fn fatal(&self) -> Option<String> {
        lock(&self.inner).fatal.clone()
    }

    /// Whether every partition read by this process has been read up to the high watermark
    /// it has **now** (asked from the broker, not from the statistics): what `run
    /// --until-idle` waits for. `false` before the sources have started. A partition not
    /// read at all counts as caught up when it is empty. An error when the broker does not
    /// answer within `connect_timeout_ms`.
    pub fn caught_up(&self, cfg: &KafkaConfig) -> Result<bool, KafkaError> {
        let (topic, parts, started) = {
            let inner = lock(&self.inner);
            let parts: Vec<(i32, Option<i64>)> = inner
                .partitions
                .iter()
                .map(|(p, s)| (*p, s.position.or(s.start)))
                .collect();
            (inner.topic.clone(), parts, !inner.epochs.is_empty())
        };
        if !started {
            return Ok(false);
        }
        if parts.is_empty() {
            return Ok(true);
        }
        let mut client = cfg.consumer_config();
        client.set("statistics.interval.ms", "0");
        let consumer: BaseConsumer<TracingContext> = client
            .create_with_context(TracingContext::default())
            .map_err(|e| KafkaError::Config(format!("cannot create a Kafka consumer: {e}")))?;
        for (p, pos) in parts {
            let (low, high) = consumer.fetch_watermarks(&topic, p, cfg.connect_timeout())?;
            let done = match pos {
                Some(pos) => pos >= high,
                None => low >= high,
            };
            if !done {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Partitions assigned to workers of this process, with their owner.
    pub fn assignment(&self) -> BTreeMap<i32, usize> {
        lock(&self.inner)
            .partitions
            .iter()
            .map(|(p, s)| (*p, s.worker))
            .collect()
    }
}

/// Reads `spec.topic` on this worker (see the [module docs](self)). Returns the stream of
/// raw records (origin = topic, partition, offset; `ingest_ms` = the message timestamp), cut
/// into epochs by [`EpochCutter`] as the other sources do.
///
/// Set-up failures (the consumer cannot be created, the topic is unknown, the broker does
/// not answer within `connect_timeout_ms`) are logged, recorded in
/// [`KafkaSourceHandle::fatal`], and end this worker's source at once: check
/// [`KafkaConfig::check_reachable`] before starting the workers for a clear early error.
pub fn kafka_source<'s>(
    scope: Scope<'s, u64>,
    cfg: &KafkaConfig,
    spec: KafkaSourceSpec,
    handle: KafkaSourceHandle,
) -> Stream<'s, u64, Vec<RawInput>> {
    kafka_source_with(scope, cfg, spec, handle, None)
}

/// [`kafka_source`] with the engine's completion probe: epochs grow while the graph is
/// behind (see [`EpochCutter`]).
pub fn kafka_source_with<'s>(
    scope: Scope<'s, u64>,
    cfg: &KafkaConfig,
    spec: KafkaSourceSpec,
    handle: KafkaSourceHandle,
    progress: Option<ProbeHandle<u64>>,
) -> Stream<'s, u64, Vec<RawInput>> {
    let index = scope.index();
    let peers = scope.peers().max(1);
    lock(&handle.inner)
        .epochs
        .insert(index, Some(spec.first_epoch));

    let reader = Reader::new(cfg, &spec, &handle, index, peers);
    let mut reader = match reader {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(topic = %spec.topic, worker = index, "Kafka source cannot start: {e}");
            lock(&handle.inner).fatal = Some(e);
            None
        }
    };
    let worker = scope.worker();
    source(scope, "KafkaSource", move |mut cap, info| {
        let activator = scope.activator_for(Rc::clone(&info.address));
        let sync = worker.sync_activator_for(info.address.to_vec());
        if let Some(r) = reader.as_mut() {
            r.on_nonempty(sync);
        }
        // A resumed source starts at the epoch after its checkpoint: records must never be
        // stamped with an earlier epoch than the one the source reports.
        if *cap.time() < spec.first_epoch {
            cap.downgrade(&spec.first_epoch);
        }
        let mut cap = Some(cap);
        let mut cap_epoch = spec.first_epoch;
        let started = Instant::now();
        let mut cut = EpochCutter::new(&spec.policy, peers, Duration::ZERO);
        let batch = spec.policy.batch.max(1);
        let mut buf: Vec<RawInput> = Vec::with_capacity(batch);
        let control = SourceControl {
            stop: Arc::clone(&spec.stop),
            progress,
        };
        let handle = handle.clone();
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            if cap_epoch < *c.time() {
                cap_epoch = *c.time();
            }
            let finish = |reader: Option<&mut Reader>, epoch: u64| {
                if let Some(r) = reader {
                    r.close_epoch(epoch, &handle);
                }
                lock(&handle.inner).epochs.insert(index, None);
            };
            let Some(r) = reader.as_mut() else {
                finish(None, cap_epoch);
                cap = None;
                return;
            };
            if control.stopping() {
                finish(Some(r), cap_epoch);
                cap = None;
                return;
            }
            r.serve_commit(&handle);
            let now = started.elapsed();
            let mut read = 0usize;
            // Back-pressure: completion is far behind (a sink cannot write); the records wait
            // in the broker.
            let mut idle = cut.paused(control.in_flight(cap_epoch));
            while read < batch && !idle {
                if cut.full() {
                    if !buf.is_empty() {
                        output.session(&*c).give_container(&mut buf);
                        buf.clear();
                    }
                    r.close_epoch(cap_epoch, &handle);
                    cut.closed(now, cap_epoch);
                    cap_epoch = cut.next_epoch(cap_epoch);
                    c.downgrade(&cap_epoch);
                }
                match r.poll() {
                    Polled::Record(raw) => {
                        buf.push(raw);
                        cut.record();
                        read += 1;
                    }
                    Polled::Error(e) => r.error(e, &handle),
                    Polled::Nothing => {
                        idle = true;
                        break;
                    }
                }
            }
            if !buf.is_empty() {
                output.session(&*c).give_container(&mut buf);
                buf.clear();
            }
            r.publish(read as u64, &handle);
            if r.done() {
                finish(Some(r), cap_epoch);
                cap = None;
                return;
            }
            if cut.should_close(now, idle, control.completed_below()) {
                r.close_epoch(cap_epoch, &handle);
                cut.closed(now, cap_epoch);
                cap_epoch = cut.next_epoch(cap_epoch);
                c.downgrade(&cap_epoch);
            } else if let Some(next) = cut.advance_empty(cap_epoch).filter(|_| idle) {
                r.close_epoch(cap_epoch, &handle);
                cut.closed(now, cap_epoch);
                cap_epoch = next;
                c.downgrade(&cap_epoch);
            }
            lock(&handle.inner).epochs.insert(index, Some(cap_epoch));
            if read >= batch {
                activator.activate();
            } else {
                // librdkafka's non-empty callback wakes us earlier when messages arrive.
                activator.activate_after(cut.wait(now).min(Duration::from_millis(10)));
            }
        }
    })
}

enum Polled {
    Record(RawInput),
    Error(String),
    Nothing,
}

/// One worker's consumer and its partitions.
struct Reader {
    consumer: Option<BaseConsumer<TracingContext>>,
    topic: String,
    /// The topic as every record's origin (one shared string).
    source: Arc<str>,
    /// Partition → next offset to read (None until known).
    positions: BTreeMap<i32, Option<i64>>,
    /// Bounded mode: partition → high watermark at start.
    targets: Option<BTreeMap<i32, i64>>,
    index: usize,
    last_commit: Option<u64>,
    last_commit_at: Option<Instant>,
    last_error_log: Option<Instant>,
}

/// How often a worker commits its offsets to the consumer group at most (librdkafka's own
/// `auto.commit.interval.ms` is 5 s). Light traffic completes an epoch every few
/// milliseconds; committing each one made the broker (tansu on SQLite) run a transaction per
/// epoch and worker, the largest part of its CPU at 10,000 complaints/min.
pub const GROUP_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

impl Reader {
    fn new(
        cfg: &KafkaConfig,
        spec: &KafkaSourceSpec,
        handle: &KafkaSourceHandle,
        index: usize,
        peers: usize,
    ) -> Result<Reader, String> {
        let all = cfg.partitions(&spec.topic).map_err(|e| e.to_string())?;
        let mine: Vec<i32> = all
            .iter()
            .copied()
            .filter(|p| usize::try_from(*p).unwrap_or(0) % peers == index)
            .collect();
        let mut reader = Reader {
            consumer: None,
            topic: spec.topic.clone(),
            source: Arc::from(spec.topic.as_str()),
            positions: mine
                .iter()
                .map(|p| (*p, spec.start_offsets.get(p).copied()))
                .collect(),
            targets: None,
            index,
            last_commit: None,
            last_commit_at: None,
            last_error_log: None,
        };
        if mine.is_empty() {
            tracing::info!(topic = %spec.topic, worker = index, "no partitions for this worker");
            if spec.mode == ReadMode::Bounded {
                reader.targets = Some(BTreeMap::new());
            }
            return Ok(reader);
        }
        let ctx = TracingContext {
            high: Arc::clone(&handle.high),
        };
        let consumer: BaseConsumer<TracingContext> = cfg
            .consumer_config()
            .create_with_context(ctx)
            .map_err(|e| format!("cannot create a Kafka consumer: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        for p in &mine {
            let offset = match spec.start_offsets.get(p) {
                Some(o) => Offset::Offset(*o),
                None => match cfg.auto_offset_reset {
                    super::OffsetReset::Earliest => Offset::Beginning,
                    super::OffsetReset::Latest => Offset::End,
                },
            };
            tpl.add_partition_offset(&spec.topic, *p, offset)
                .map_err(|e| e.to_string())?;
        }
        if spec.mode == ReadMode::Bounded {
            let mut targets = BTreeMap::new();
            for p in &mine {
                let (low, high) = consumer
                    .fetch_watermarks(&spec.topic, *p, cfg.connect_timeout())
                    .map_err(|e| {
                        format!(
                            "cannot read the watermarks of {}/{p} from {}: {e}",
                            spec.topic, cfg.brokers
                        )
                    })?;
                targets.insert(*p, high);
                // A partition read from the beginning starts at its low watermark.
                let pos = reader.positions.entry(*p).or_insert(None);
                if pos.is_none() {
                    *pos = Some(match cfg.auto_offset_reset {
                        super::OffsetReset::Earliest => low,
                        super::OffsetReset::Latest => high,
                    });
                }
            }
            reader.targets = Some(targets);
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot assign partitions of {}: {e}", spec.topic))?;
        {
            let mut inner = lock(&handle.inner);
            for p in &mine {
                let st = inner.partitions.entry(*p).or_default();
                st.worker = index;
                st.start = spec.start_offsets.get(p).copied();
                st.position = reader.positions.get(p).copied().flatten();
            }
        }
        tracing::info!(topic = %spec.topic, worker = index, partitions = ?mine, start = ?spec.start_offsets,
            "Kafka source assigned");
        reader.consumer = Some(consumer);
        Ok(reader)
    }

    fn on_nonempty(&mut self, sync: timely::scheduling::SyncActivator) {
        if let Some(c) = self.consumer.as_mut() {
            c.set_nonempty_callback(move || {
                let _ = sync.activate();
            });
        }
    }

    fn poll(&mut self) -> Polled {
        let Some(consumer) = self.consumer.as_ref() else {
            return Polled::Nothing;
        };
        match consumer.poll(Duration::ZERO) {
            None => Polled::Nothing,
            Some(Err(e)) => Polled::Error(e.to_string()),
            Some(Ok(m)) => {
                let origin = Origin {
                    source: Arc::clone(&self.source),
                    partition: m.partition(),
                    offset: m.offset(),
                };
                self.positions.insert(m.partition(), Some(m.offset() + 1));
                let raw = RawInput {
                    bytes: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    origin,
                    ingest_ms: m.timestamp().to_millis().unwrap_or_else(now_ms),
                    framing_error: None,
                };
                Polled::Record(raw)
            }
        }
    }

    fn error(&mut self, e: String, handle: &KafkaSourceHandle) {
        {
            let mut inner = lock(&handle.inner);
            inner.errors += 1;
            inner.last_error = Some(e.clone());
        }
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(5))
        {
            tracing::warn!(topic = %self.topic, worker = self.index, "Kafka consumer error (retrying): {e}");
            self.last_error_log = Some(now);
        }
    }

    /// Records the positions reached as the end of `epoch`.
    fn close_epoch(&mut self, epoch: u64, handle: &KafkaSourceHandle) {
        let mut inner = lock(&handle.inner);
        for (p, pos) in &self.positions {
            if let (Some(pos), Some(st)) = (pos, inner.partitions.get_mut(p)) {
                let implied = st.ends.values().next_back().copied().or(st.start);
                if implied != Some(*pos) {
                    st.ends.insert(epoch, *pos);
                }
            }
        }
    }

    fn publish(&mut self, read: u64, handle: &KafkaSourceHandle) {
        let mut inner = lock(&handle.inner);
        inner.records += read;
        if read > 0 {
            for (p, pos) in &self.positions {
                if let (Some(pos), Some(st)) = (pos, inner.partitions.get_mut(p)) {
                    st.position = Some(*pos);
                }
            }
        }
    }

    fn serve_commit(&mut self, handle: &KafkaSourceHandle) {
        let request = lock(&handle.inner).commit_request;
        let (Some(epoch), Some(consumer)) = (request, self.consumer.as_ref()) else {
            return;
        };
        if self.last_commit == Some(epoch)
            || self
                .last_commit_at
                .is_some_and(|t| t.elapsed() < GROUP_COMMIT_INTERVAL)
        {
            return;
        }
        self.last_commit = Some(epoch);
        self.last_commit_at = Some(Instant::now());
        let offsets = handle.offsets_through(epoch);
        let mut tpl = TopicPartitionList::new();
        for p in self.positions.keys() {
            if let Some(o) = offsets.get(p) {
                let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => {
                lock(&handle.inner).commits_done.insert(self.index, epoch);
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, "group offset commit failed (monitoring only): {e}")
            }
        }
    }

    fn done(&self) -> bool {
        let Some(targets) = &self.targets else {
            return false;
        };
        targets.iter().all(|(p, t)| {
            self.positions
                .get(p)
                .copied()
                .flatten()
                .is_some_and(|pos| pos >= *t)
        })
    }
}
