//! Engine checkpoints: the next input position of every source partition and the aggregate
//! totals at the end of an epoch whose every output is durable, written by global worker 0
//! through a background thread (a worker never waits for `fsync`).
//!
//! **What is stored** ([`Checkpoint`] of `complaintflow_operators::kafka`, one JSON file per
//! checkpoint in `<state_dir>/checkpoints/`, written to a temporary name, `fsync`ed and
//! renamed): `epoch`; `offsets` = source → partition → next offset to read (the largest
//! offset read in epochs `<= epoch`, plus one — derived from the records' [`Origin`]s, so it
//! works for every worker and process); `aggregate_state` = the totals of every dimension at
//! the end of `epoch` ([`totals_to_json`](crate::aggregate::totals_to_json)).
//!
//! **When.** Once the engine's completion operator — on the acknowledgement streams of every
//! sink, the aggregate view, the live state and the position ledger — sees its frontier pass
//! epoch `e`, at most once per [`CheckpointConfig::interval`], and once more when the
//! dataflow ends (a graceful shutdown). All of it runs inside the graph, on global worker 0.
//!
//! **Resume.** [`start`](crate::start) reads the newest complete checkpoint: sources start at
//! its offsets with epochs from `epoch + 1`, and its totals enter the aggregate collection at
//! `epoch` (so the view shows them `as_of` that epoch), so nothing is lost or counted twice.
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
    /// Resume from the newest checkpoint at start. Default `true`.
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
                match marks
                    .iter_mut()
                    .find(|(s, p, _)| *p == o.partition && (Arc::ptr_eq(s, &o.source) || *s == o.source))
                {
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

/// Global worker 0's checkpoint writer: decides when to checkpoint and hands the files to
/// a background thread.
pub(crate) struct Checkpointer {
    tx: Option<Sender<Checkpoint>>,
    thread: Option<JoinHandle<()>>,
    interval: Duration,
    last_sent: Option<Instant>,
    /// The epoch of the newest checkpoint handed to the writer (or resumed from).
    pub(crate) last_epoch: Option<u64>,
}

impl Checkpointer {
    pub(crate) fn start(
        cfg: &CheckpointConfig,
        resumed_epoch: Option<u64>,
        state: &Arc<EngineState>,
    ) -> Result<Checkpointer, String> {
        let store = CheckpointStore::open(&cfg.state_dir, cfg.keep).map_err(|e| e.to_string())?;
        let (tx, rx) = channel::<Checkpoint>();
        let state = Arc::clone(state);
        let thread = std::thread::Builder::new()
            .name("complaintflow-checkpoint".into())
            .spawn(move || {
                let mut failures = 0u64;
                while let Ok(mut cp) = rx.recv() {
                    // Only the newest matters when several queued up.
                    while let Ok(newer) = rx.try_recv() {
                        cp = newer;
                    }
                    match store.write(&cp) {
                        Ok(path) => {
                            *lock(&state.last_checkpoint) = Some(Instant::now());
                            tracing::debug!(epoch = cp.epoch, path = %path.display(), "checkpoint written");
                        }
                        Err(e) => {
                            failures += 1;
                            if failures == 1 || failures.is_power_of_two() {
                                tracing::error!(epoch = cp.epoch, failures,
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
        })
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
        if let Some(tx) = &self.tx {
            if tx.send(cp).is_err() {
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
