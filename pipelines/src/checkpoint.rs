//! Engine checkpoints: the next input position of every source partition and the aggregate
//! totals at the end of an epoch whose every output is durable, written by global worker 0
//! through a background thread (a worker never waits for `fsync`), and kept by every
//! process of a cluster in its own state directory.
//!
//! **What is stored** ([`Checkpoint`] of `complaintflow_operators::kafka`, one JSON file per
//! checkpoint in `<state_dir>/checkpoints/`, written to a temporary name, `fsync`ed and
//! renamed): `epoch`; `offsets` = source → partition → next offset to read (the largest
//! offset read in epochs `<= epoch`, plus one — derived from the records' [`Origin`]s, so it
//! works for every worker and process); `aggregate_state` = the totals of every dimension at
//! the end of `epoch` ([`totals_to_json`](crate::aggregate::totals_to_json)). Beside them,
//! `<state_dir>/dedup/` holds the dedup seen-set logs
//! ([`complaintflow_operators::seen_log`]): the thread `fsync`s them before each checkpoint
//! file, so a checkpoint never names ids that are not on disk.
//!
//! **When.** Once the engine's completion operator — on the acknowledgement streams of every
//! sink, the aggregate view, the live state and the position ledger — sees its frontier pass
//! epoch `e`, at most once per [`CheckpointConfig::interval`], and once more when the
//! dataflow ends (a graceful shutdown). All of it runs inside the graph, on global worker 0.
//!
//! **Clusters.** Worker 0 hands every checkpoint it makes (its bytes) to the driver, which
//! broadcasts it on the control dataflow; the first worker of every other process writes the
//! same file into its own state directory (as on separate machines: no shared disk).
//!
//! **Resume.** At start every process reads its complete checkpoints; the workers agree (a
//! small broadcast dataflow before the others) on the newest epoch that every process has,
//! so a process killed mid-write, whose newest file is older, does not make the others skip
//! ahead. Sources start at that checkpoint's offsets with epochs from `epoch + 1`; its
//! totals enter the aggregate collection at `epoch` (so the view shows them `as_of` that
//! epoch); the dedup logs are trimmed to it and loaded. Nothing is lost or counted twice.
//!
//! [`Origin`]: complaintflow_operators::record::Origin

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use complaintflow_operators::kafka::{Checkpoint, CheckpointStore};

use complaintflow_operators::record::RawInput;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::aggregate::{totals_to_json, AggregateLedger};
use crate::state::{lock, EngineState};

/// Where and how often the engine checkpoints (only with a source whose records can be
/// resumed from, see [`SourceFactory::resumable`](crate::SourceFactory::resumable)).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointConfig {
    /// The state directory; checkpoints go to `<state_dir>/checkpoints/`.
    pub state_dir: PathBuf,
    /// Checkpoints kept (the newest). Default 5.
    pub keep: usize,
    /// At most one checkpoint per this interval (the newest durable epoch). Default 1 s.
    pub interval: Duration,
    /// Resume from the newest checkpoint at start (in a cluster: the newest every process
    /// has). Default `true`.
    pub resume: bool,
}

impl CheckpointConfig {
    /// Defaults, in `state_dir`.
    ///
    /// ```
    /// let c = complaintflow_pipelines::CheckpointConfig::new("state");
    /// assert_eq!((c.keep, c.interval.as_millis(), c.resume), (5, 1000, true));
    /// ```
    pub fn new(state_dir: impl Into<PathBuf>) -> CheckpointConfig {
        CheckpointConfig {
            state_dir: state_dir.into(),
            keep: 5,
            interval: Duration::from_secs(1),
            resume: true,
        }
    }

    /// Where the dedup seen-set logs live: `<state_dir>/dedup/`
    /// ([`complaintflow_operators::seen_log`]).
    pub fn seen_dir(&self) -> PathBuf {
        self.state_dir.join("dedup")
    }
}

/// Next offset per `(source, partition)`: the checkpoint's, then the largest offset + 1 of
/// the records of each later epoch, folded in as epochs are checkpointed.
#[derive(Debug, Default)]
pub(crate) struct PositionLedger {
    base: BTreeMap<String, BTreeMap<i32, i64>>,
    pending: BTreeMap<u64, Vec<(Arc<str>, i32, i64)>>,
    max_epoch: Option<u64>,
}

impl PositionLedger {
    pub(crate) fn new(base: BTreeMap<String, BTreeMap<i32, i64>>) -> PositionLedger {
        PositionLedger {
            base,
            ..PositionLedger::default()
        }
    }

    fn record(&mut self, epoch: u64, marks: Vec<(Arc<str>, i32, i64)>) {
        self.max_epoch = self.max_epoch.max(Some(epoch));
        if !marks.is_empty() {
            self.pending.entry(epoch).or_default().extend(marks);
        }
    }

    pub(crate) fn max_epoch(&self) -> Option<u64> {
        self.max_epoch
    }

    /// Next offsets after every record of epochs `<= epoch`.
    pub(crate) fn through(&mut self, epoch: u64) -> &BTreeMap<String, BTreeMap<i32, i64>> {
        let later = self.pending.split_off(&(epoch + 1));
        for (_, marks) in std::mem::replace(&mut self.pending, later) {
            for (source, partition, next) in marks {
                let e = self
                    .base
                    .entry(source.to_string())
                    .or_default()
                    .entry(partition)
                    .or_insert(next);
                *e = (*e).max(next);
            }
        }
        &self.base
    }
}

/// What the sources read in one batch: the record count and, with checkpoints on, the next
/// offset of every `(source, partition)` in it. Made by a [`Tap`](complaintflow_operators::Tap)
/// on the raw stream (no copy of the records).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadSummary {
    /// Records in the batch.
    pub records: u64,
    /// `(source, partition, next offset)`.
    pub marks: Vec<(Arc<str>, i32, i64)>,
}

impl ReadSummary {
    /// Summarises a batch of raw records (`positions`: also their next offsets).
    pub fn of(batch: &[RawInput], positions: bool) -> ReadSummary {
        let mut marks: Vec<(Arc<str>, i32, i64)> = Vec::new();
        if positions {
            for r in batch {
                let o = &r.origin;
                match marks.iter_mut().find(|(s, p, _)| {
                    *p == o.partition && (Arc::ptr_eq(s, &o.source) || *s == o.source)
                }) {
                    Some(e) => e.2 = e.2.max(o.offset + 1),
                    None => marks.push((Arc::clone(&o.source), o.partition, o.offset + 1)),
                }
            }
        }
        ReadSummary {
            records: batch.len() as u64,
            marks,
        }
    }
}

/// Global worker 0: counts the records read into `state` and folds the positions into
/// `ledger`. Returns the acknowledgement stream (the ledger holds an epoch once its frontier
/// has passed it).
pub(crate) fn read_ledger<'s>(
    summaries: Stream<'s, u64, Vec<ReadSummary>>,
    state: &Arc<EngineState>,
    ledger: &Rc<RefCell<PositionLedger>>,
) -> Stream<'s, u64, Vec<u64>> {
    let ledger = Rc::clone(ledger);
    let state = Arc::clone(state);
    summaries.unary::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
        Exchange::new(|_: &ReadSummary| 0u64),
        "ReadLedger",
        move |_cap, _info| {
            move |input, _output| {
                input.for_each_stamp(|cap, data| {
                    let Some(t) = cap.least().copied() else {
                        return;
                    };
                    let mut l = ledger.borrow_mut();
                    for batch in data {
                        for s in batch.drain(..) {
                            state.records_in.fetch_add(s.records, Ordering::Relaxed);
                            l.record(t, s.marks);
                        }
                    }
                });
            }
        },
    )
}

/// The checkpoints global worker 0 made, serialized, for the other processes of a cluster
/// (the driver broadcasts them; every process keeps the same checkpoints in its own state
/// directory, so any process can be restarted from its own disk).
pub(crate) type Mirror = Rc<RefCell<Vec<(u64, Vec<u8>)>>>;

/// A checkpoint writer: global worker 0 decides when to checkpoint and hands the files to a
/// background thread; on the first worker of every other process the same writer stores the
/// checkpoints worker 0 broadcast. Before each file the thread `fsync`s the dedup seen-set
/// logs of [`CheckpointConfig::seen_dir`] (the checkpoint must not name ids a crash could
/// lose).
pub(crate) struct Checkpointer {
    tx: Option<Sender<(u64, Vec<u8>)>>,
    thread: Option<JoinHandle<()>>,
    interval: Duration,
    last_sent: Option<Instant>,
    /// The epoch of the newest checkpoint handed to the writer (or resumed from).
    pub(crate) last_epoch: Option<u64>,
    mirror: Option<Mirror>,
}

impl Checkpointer {
    pub(crate) fn start(
        cfg: &CheckpointConfig,
        resumed_epoch: Option<u64>,
        state: &Arc<EngineState>,
        mirror: Option<Mirror>,
    ) -> Result<Checkpointer, String> {
        let store = CheckpointStore::open(&cfg.state_dir, cfg.keep).map_err(|e| e.to_string())?;
        let (tx, rx) = channel::<(u64, Vec<u8>)>();
        let state = Arc::clone(state);
        let seen_dir = cfg.seen_dir();
        let thread = std::thread::Builder::new()
            .name("complaintflow-checkpoint".into())
            .spawn(move || {
                let mut failures = 0u64;
                while let Ok(mut cp) = rx.recv() {
                    // Only the newest matters when several queued up.
                    while let Ok(newer) = rx.try_recv() {
                        cp = newer;
                    }
                    let written = complaintflow_operators::seen_log::sync(&seen_dir)
                        .map_err(|e| format!("{}: {e}", seen_dir.display()))
                        .and_then(|()| store.write_bytes(cp.0, &cp.1).map_err(|e| e.to_string()));
                    match written {
                        Ok(path) => {
                            *lock(&state.last_checkpoint) = Some(Instant::now());
                            tracing::debug!(epoch = cp.0, path = %path.display(), "checkpoint written");
                        }
                        Err(e) => {
                            failures += 1;
                            if failures == 1 || failures.is_power_of_two() {
                                tracing::error!(epoch = cp.0, failures,
                                    "cannot write a checkpoint (a restart resumes from an older one): {e}");
                            }
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            tx: Some(tx),
            thread: Some(thread),
            interval: cfg.interval,
            last_sent: None,
            last_epoch: resumed_epoch,
            mirror,
        })
    }

    /// Stores a checkpoint another process made (its bytes as broadcast).
    pub(crate) fn store_mirrored(&mut self, epoch: u64, bytes: Vec<u8>) {
        if let Some(tx) = &self.tx {
            if tx.send((epoch, bytes)).is_err() {
                tracing::error!("the checkpoint thread has stopped; no more checkpoints");
                self.tx = None;
            }
        }
        self.last_epoch = Some(epoch);
    }

    /// Called between steps with `completed_below` (every epoch below it is durable at every
    /// output): checkpoints the newest such epoch when the interval has passed.
    pub(crate) fn maybe_write(
        &mut self,
        completed_below: u64,
        positions: &Rc<RefCell<PositionLedger>>,
        aggregates: &Rc<RefCell<AggregateLedger>>,
    ) {
        if completed_below == 0 || completed_below == u64::MAX {
            return;
        }
        let epoch = completed_below - 1;
        if self.last_epoch.is_some_and(|l| epoch <= l) {
            return;
        }
        if self.last_sent.is_some_and(|t| t.elapsed() < self.interval) {
            return;
        }
        self.write(epoch, positions, aggregates);
    }

    fn write(
        &mut self,
        epoch: u64,
        positions: &Rc<RefCell<PositionLedger>>,
        aggregates: &Rc<RefCell<AggregateLedger>>,
    ) {
        let offsets = positions.borrow_mut().through(epoch).clone();
        let totals = totals_to_json(aggregates.borrow_mut().totals_through(epoch));
        let cp = Checkpoint::new(epoch, offsets, totals);
        let bytes = match serde_json::to_vec(&cp) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(epoch, "cannot serialize a checkpoint: {e}");
                return;
            }
        };
        if let Some(m) = &self.mirror {
            m.borrow_mut().push((epoch, bytes.clone()));
        }
        if let Some(tx) = &self.tx {
            if tx.send((epoch, bytes)).is_err() {
                tracing::error!("the checkpoint thread has stopped; no more checkpoints");
                self.tx = None;
            }
        }
        self.last_sent = Some(Instant::now());
        self.last_epoch = Some(epoch);
    }

    /// After the dataflow ended (everything durable): one last checkpoint through the
    /// highest epoch seen, then waits for the writer.
    pub(crate) fn finish(
        mut self,
        last_source_epoch: u64,
        positions: &Rc<RefCell<PositionLedger>>,
        aggregates: &Rc<RefCell<AggregateLedger>>,
    ) {
        let seen = [
            Some(last_source_epoch),
            positions.borrow().max_epoch(),
            aggregates.borrow().max_epoch(),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        if self.last_epoch.is_none_or(|l| seen > l) {
            self.write(seen, positions, aggregates);
            tracing::info!(epoch = seen, "final checkpoint");
        }
        self.close();
    }

    /// Stops the writer thread after the queued checkpoints (no new checkpoint).
    pub(crate) fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.close();
    }
}
