//! The timely side of the sink: an operator on global worker 0 that gathers each epoch and
//! holds a capability for it until the background writer thread has committed it.
//!
//! ```text
//! decisions ─────┐ exchange        ┌──────────────────────────┐  mpsc   ┌───────────────────┐
//! dead letters ──┼──── to ────────►│ PostgresSink (worker 0)  │────────►│ writer thread     │
//! agg. changes ──┘ worker 0        │ epoch t: rows + cap(t)   │◄────────│ BEGIN…COPY…COMMIT │
//!                                  └──────────┬───────────────┘ commit  └───────────────────┘
//!                                             │ ack: t, cap(t) dropped    (SyncActivator)
//! ```
//!
//! Contract: the ack stream's frontier passes epoch `t` only after every row of every epoch
//! `<= t` is committed. The operator never blocks its worker: it moves `Arc` pointers into
//! the epoch's batch, hands complete epochs to the thread over a channel, and polls the
//! committed epoch (a mutex read) when activated.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use complaintflow_operators::publish::SharedDecision;
use complaintflow_operators::record::DeadLetter;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, Stream};
use timely::scheduling::SyncActivator;

use super::writer::{Connector, EpochBatch, PgWriter};
use super::StatsHandle;
use crate::aggregate::AggregateChange;
use crate::plugin::EngineOutputs;

/// Limits and pacing of the writer thread.
#[derive(Clone, Debug)]
pub(crate) struct WriterSettings {
    pub max_epochs_per_transaction: usize,
    pub max_rows_per_transaction: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// Builds the sink's operator on this worker; returns its acknowledgement stream. Only the
/// worker with global index 0 starts a writer thread and ever holds data.
pub(crate) fn build<'s>(
    scope: Scope<'s, u64>,
    outputs: &EngineOutputs<'s>,
    connector: &Connector,
    settings: &WriterSettings,
    stats: &StatsHandle,
) -> Result<Stream<'s, u64, Vec<u64>>, String> {
    let owner = scope.index() == 0;
    let mut builder = OperatorBuilder::new("PostgresSink".to_owned(), scope);
    let info = builder.operator_info();
    let mut decisions = builder.new_input(
        outputs.decisions.clone(),
        Exchange::new(|_: &SharedDecision| 0u64),
    );
    let mut dead = builder.new_input(
        outputs.dead_letters.clone(),
        Exchange::new(|_: &DeadLetter| 0u64),
    );
    let mut aggs = builder.new_input(
        outputs.aggregate_changes.clone(),
        Exchange::new(|_: &AggregateChange| 0u64),
    );
    let (out, ack) = builder.new_output::<Vec<u64>>();
    let mut out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<u64>>>::from(out);

    let link = if owner {
        let activator = scope.worker().sync_activator_for(info.address.to_vec());
        Some(Link::spawn(
            connector.clone(),
            settings.clone(),
            stats.clone(),
            activator,
        )?)
    } else {
        None
    };

    builder.build_reschedule(move |caps| {
        drop(caps); // nothing is emitted before data arrives
        let mut open: BTreeMap<u64, (Capability<u64>, EpochBatch)> = BTreeMap::new();
        let mut sent: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
        let mut warned_stranger = false;
        move |frontiers| {
            let mut stranger = false;
            decisions.for_each_stamp(|cap, data| {
                let Some(&t) = cap.least() else { return };
                let slot = open
                    .entry(t)
                    .or_insert_with(|| (cap.delayed(&t, 0), EpochBatch::new(t)));
                for batch in data {
                    slot.1.decisions.append(batch);
                }
            });
            dead.for_each_stamp(|cap, data| {
                let Some(&t) = cap.least() else { return };
                let slot = open
                    .entry(t)
                    .or_insert_with(|| (cap.delayed(&t, 0), EpochBatch::new(t)));
                for batch in data {
                    slot.1.dead_letters.append(batch);
                }
            });
            aggs.for_each_stamp(|cap, data| {
                let Some(&t) = cap.least() else { return };
                let slot = open
                    .entry(t)
                    .or_insert_with(|| (cap.delayed(&t, 0), EpochBatch::new(t)));
                for batch in data {
                    slot.1.aggregate_changes.append(batch);
                }
            });
            let Some(link) = &link else {
                // Every record is exchanged to worker 0: another worker holding data would
                // be a bug in the exchange; never hold its epoch forever.
                if !open.is_empty() {
                    stranger = true;
                    open.clear();
                }
                if stranger && !warned_stranger {
                    warned_stranger = true;
                    tracing::error!("PostgresSink: records reached a worker other than 0; dropped");
                }
                return false;
            };
            // Epochs every input has passed are complete: hand them to the writer.
            while let Some((&t, _)) = open.first_key_value() {
                if frontiers.iter().any(|f| f.less_equal(&t)) {
                    break;
                }
                let Some((t, (cap, batch))) = open.pop_first() else {
                    break;
                };
                link.send(batch);
                sent.insert(t, cap);
            }
            // Committed epochs: acknowledge and release.
            if let Some(done) = link.committed() {
                let mut o = out.activate();
                while let Some(entry) = sent.first_entry() {
                    if *entry.key() > done {
                        break;
                    }
                    let (t, cap) = entry.remove_entry();
                    o.session(&cap).give(t);
                }
            }
            link.publish_pending(&open, &sent);
            // Incomplete while anything is held: the commits still have to come back.
            !open.is_empty() || !sent.is_empty()
        }
    });
    Ok(ack)
}

/// A warning each time the rows waiting for the database cross a multiple of this.
const BACKLOG_WARN_ROWS: u64 = 1_000_000;

/// The operator's end of the writer thread.
struct Link {
    tx: Sender<EpochBatch>,
    stats: StatsHandle,
}

impl Link {
    fn spawn(
        connector: Connector,
        settings: WriterSettings,
        stats: StatsHandle,
        activator: SyncActivator,
    ) -> Result<Link, String> {
        let (tx, rx) = mpsc::channel();
        let st = stats.clone();
        // Detached: when the operator goes, the channel closes and the thread ends after
        // its current transaction. It is never joined from a worker (a database that is down
        // at shutdown would block the worker); what it had not committed was never
        // acknowledged, so the next run replays it.
        std::thread::Builder::new()
            .name("postgres-sink".into())
            .spawn(move || writer_loop(rx, connector, settings, st, activator))
            .map_err(|e| format!("cannot start the PostgreSQL writer thread: {e}"))?;
        Ok(Link { tx, stats })
    }

    fn send(&self, batch: EpochBatch) {
        let rows = batch.rows() as u64;
        let (before, after, error) = {
            let mut seen = (0, 0, None);
            self.stats.update(|s| {
                seen.0 = s.queued_rows;
                s.queued_epochs += 1;
                s.queued_rows += rows;
                seen.1 = s.queued_rows;
                seen.2 = s.last_error.clone();
            });
            seen
        };
        // The source does not pause while the database is behind (the engine has no such
        // hook): the epochs wait here, in memory. Say so each time the backlog crosses
        // another million rows.
        if after / BACKLOG_WARN_ROWS > before / BACKLOG_WARN_ROWS {
            tracing::warn!(
                queued_rows = after,
                last_error = error.as_deref().unwrap_or("none"),
                "PostgreSQL sink is behind: epochs wait in memory until they are committed"
            );
        }
        if self.tx.send(batch).is_err() {
            // The thread only ends when the channel closes or it panicked: the epoch can
            // never be acknowledged, so the engine holds its checkpoint (no data loss).
            self.stats.update(|s| {
                s.last_error = Some("the PostgreSQL writer thread has stopped".into());
            });
            tracing::error!("PostgreSQL writer thread has stopped; epochs are held");
        }
    }

    fn committed(&self) -> Option<u64> {
        self.stats.read(|s| s.committed_through)
    }

    fn publish_pending(
        &self,
        open: &BTreeMap<u64, (Capability<u64>, EpochBatch)>,
        sent: &BTreeMap<u64, Capability<u64>>,
    ) {
        let held = open.len() + sent.len();
        self.stats.update(|s| s.held_epochs = held as u64);
    }
}

fn writer_loop(
    rx: Receiver<EpochBatch>,
    connector: Connector,
    settings: WriterSettings,
    stats: StatsHandle,
    activator: SyncActivator,
) {
    let target = connector.target().to_string();
    let mut writer: Option<PgWriter> = None;
    let mut pending: Vec<EpochBatch> = Vec::new();
    loop {
        if pending.is_empty() {
            match rx.recv() {
                Ok(b) => pending.push(b),
                Err(_) => return, // channel closed: the operator is gone
            }
        }
        // Merge what else is already waiting, within the limits (each epoch stays whole).
        let mut rows: usize = pending.iter().map(EpochBatch::rows).sum();
        while pending.len() < settings.max_epochs_per_transaction.max(1)
            && rows < settings.max_rows_per_transaction
        {
            match rx.try_recv() {
                Ok(b) => {
                    rows += b.rows();
                    pending.push(b);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut backoff = settings.retry_initial;
        loop {
            if writer.as_ref().is_none_or(PgWriter::is_closed) {
                match PgWriter::connect(&connector) {
                    Ok(w) => {
                        if stats.read(|s| s.last_error.is_some()) {
                            tracing::info!(target_db = %target, "PostgreSQL connection re-established");
                        }
                        writer = Some(w);
                    }
                    Err(e) => {
                        fail(&stats, &target, &e.to_string(), backoff);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(settings.retry_max);
                        continue;
                    }
                }
            }
            let Some(w) = writer.as_mut() else { continue };
            let started = Instant::now();
            match w.write(&pending) {
                Ok(r) => {
                    let last = pending.last().map(|b| b.epoch);
                    let micros = started.elapsed().as_micros() as u64;
                    stats.update(|s| {
                        s.transactions += 1;
                        s.epochs += r.epochs as u64;
                        s.predictions += r.predictions;
                        s.dead_letters += r.dead_letters;
                        s.aggregate_rows += r.aggregate_rows;
                        s.models += r.models;
                        s.queued_epochs = s.queued_epochs.saturating_sub(r.epochs as u64);
                        s.queued_rows = s.queued_rows.saturating_sub(rows as u64);
                        s.committed_through = last.max(s.committed_through);
                        s.last_error = None;
                        s.commit_micros_total += micros;
                    });
                    break;
                }
                Err(e) => {
                    // Whatever failed, the transaction was rolled back: start over on a
                    // fresh connection (a broken one, or a session in an unknown state).
                    writer = None;
                    fail(&stats, &target, &e.to_string(), backoff);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(settings.retry_max);
                }
            }
        }
        pending.clear();
        let _ = activator.activate();
    }
}

fn fail(stats: &StatsHandle, target: &str, error: &str, backoff: Duration) {
    tracing::warn!(
        target_db = %target,
        retry_in_ms = backoff.as_millis() as u64,
        "PostgreSQL write failed, the epochs are held and retried: {error}"
    );
    stats.update(|s| {
        s.retries += 1;
        s.last_error = Some(error.to_string());
    });
}
