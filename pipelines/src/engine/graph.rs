//! The main dataflow, built on every worker from the engine's plug-ins.
//!
//! One pass per record: every fan-out carries shared pointers ([`SharedDecision`]) or small
//! summaries ([`Tap`]); nothing deep-copies a batch. The only per-record allocations after
//! parsing are the decision's own (its id, reasons when a rule fires) and the shared record
//! `publish` makes.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use complaintflow_operators::prelude::*;
use complaintflow_operators::Tap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Concat, Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use super::control::{feed_models, on_complete, ModelFeed};
use super::{EngineConfig, FatalError, Shared};
use crate::aggregate::{aggregate_decisions, AggregateLedger, Seed};
use crate::checkpoint::{read_ledger, Checkpointer, Mirror, PositionLedger, ReadSummary};
use crate::live::live_state;
use crate::plugin::{EngineOutputs, Source, SourceContext};
use crate::quality::quality_branch;
use crate::state::lock;
use complaintflow_operators::seen_log::{SeenLog, SeenSet, SeenWindow};

/// What the driver keeps of the main dataflow.
pub(crate) struct Main {
    /// Where retrained versions and A/B candidates enter.
    pub(crate) feed: ModelFeed,
    /// On the raw stream: done once the source has finished.
    pub(crate) source_done: ProbeHandle<u64>,
}

/// Builds the main dataflow on this worker.
#[allow(clippy::too_many_lines)]
pub(crate) fn build_main(
    worker: &mut timely::worker::Worker,
    cfg: &EngineConfig,
    source: &Arc<dyn Source>,
    initial: &[ModelUpdate],
    shared: &Shared<'_>,
    seen: Option<(SeenSet, u64)>,
    mirror: Option<Mirror>,
) -> Main {
    let Shared {
        state,
        stop,
        resume,
        fatal,
        ..
    } = *shared;
    let leader = worker.index() == 0; // global worker 0 = process 0, thread 0
    let process_first = worker.index().is_multiple_of(cfg.workers.max(1));
    let first_epoch = resume.epoch.map_or(0, |e| e + 1);
    let checkpointing = cfg.checkpoints.is_some();
    let feed = ModelFeed::default();
    let source_done = ProbeHandle::new();
    let progress = ProbeHandle::new();
    let mut seed_in: InputHandle<u64, CapacityContainerBuilder<Vec<Seed>>> = InputHandle::new();
    let agg_ledger = Rc::new(RefCell::new(AggregateLedger::new(checkpointing && leader)));
    let pos_ledger = Rc::new(RefCell::new(PositionLedger::new(resume.offsets.clone())));
    let mut checkpointer = match (&cfg.checkpoints, leader) {
        (Some(c), true) => match Checkpointer::start(c, resume.epoch, state, mirror) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!("{e}");
                lock(fatal).get_or_insert(FatalError::Checkpoint(e));
                stop.store(true, Ordering::SeqCst);
                None
            }
        },
        _ => None,
    };

    worker.dataflow::<u64, _, _>(|scope| {
        let ctx = SourceContext {
            policy: cfg.policy.clone(),
            validation: cfg.validation.clone(),
            stop: Arc::clone(stop),
            first_epoch,
            start_offsets: resume.offsets.clone(),
            progress: progress.clone(),
        };
        let raw = source.build(scope, &ctx).probe_with(&source_done);
        let (raw, read) = raw.tap("ReadSummary", move |b: &[RawInput]| {
            Some(ReadSummary::of(b, checkpointing))
        });
        let read_ack = read_ledger(read, state, &pos_ledger);
        let (raw, models) = feed_models(raw, &feed, first_epoch);
        let (parsed, dead) = raw.parse_complaints(&cfg.validation);
        let (parsed, parsed_counts) = parsed.tap("CountParsed", |b: &[Parsed]| {
            (!b.is_empty()).then_some(b.len() as u64)
        });
        let st = Arc::clone(state);
        let parsed_ack = parsed_counts.unary::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
            Exchange::new(|_: &u64| 0u64),
            "LiveParsed",
            move |_cap, _info| {
                move |input, _output| {
                    input.for_each_stamp(|_cap, data| {
                        for n in data.flat_map(|b| b.drain(..)) {
                            st.parsed.fetch_add(n, Ordering::Relaxed);
                        }
                    });
                }
            },
        );
        // The seen-set is a window of `dedup_window` ids over the cluster (two generations per
        // worker); with checkpoints it is logged, so a restart does not re-admit ids.
        let capacity = cfg.dedup_window.div_ceil(scope.peers().max(1)).max(1);
        let (window, seen_log) = match seen {
            Some((ids, generation)) => {
                let log = cfg.checkpoints.as_ref().and_then(|c| {
                    SeenLog::open(&c.seen_dir(), scope.index(), generation)
                        .map_err(|e| {
                            tracing::error!(dir = %c.seen_dir().display(),
                                "cannot open the dedup seen-set log (a restart may re-admit ids): {e}");
                        })
                        .ok()
                });
                (SeenWindow::resumed(capacity, ids, generation), log)
            }
            None => (SeenWindow::new(capacity), None),
        };
        let (parsed, dups) = parsed.dedup_by_id_logged(window, seen_log);
        let dead = dead.concat(dups);
        let mut decisions = parsed.score(models).decide(&cfg.decision);
        for op in &cfg.operators {
            decisions = op.build(scope, decisions);
        }
        let published = decisions.publish();
        let mut dead = dead;
        let mut acks = Vec::new();
        acks.push(read_ack);
        acks.push(parsed_ack);
        if let Some(o) = &cfg.outcomes {
            // Outcomes: their own source, back-pressured by the quality branch's progress
            // (not by the decisions'), and left out of the completion acknowledgements: a
            // checkpoint never waits for outcomes.
            let quality_done = ProbeHandle::new();
            let octx = SourceContext {
                progress: quality_done.clone(),
                start_offsets: Default::default(),
                ..ctx.clone()
            };
            let raw_outcomes = o.build(scope, &octx);
            if cfg.monitoring.auto_retrain {
                keep_labelled_history(raw_outcomes.clone(), cfg, state);
            }
            let (labels, bad) = raw_outcomes.parse_outcomes(&cfg.validation, cfg.label_policy);
            dead = dead.concat(bad);
            quality_branch(published.clone(), labels, state).probe_with(&quality_done);
        }
        acks.extend(live_state(published.clone(), dead.clone(), state));
        let seeds = scope.input_from(&mut seed_in);
        let (changes, view_ack) =
            aggregate_decisions(published.clone(), Some(seeds), state, &agg_ledger);
        acks.push(view_ack);
        let outputs = EngineOutputs {
            decisions: published,
            dead_letters: dead,
            aggregate_changes: changes,
        };
        for sink in &cfg.sinks {
            match sink.build(scope, &outputs) {
                Ok(a) => acks.extend(a),
                Err(e) => {
                    tracing::error!(sink = %sink.describe(), "cannot start the sink: {e}");
                    lock(fatal)
                        .get_or_insert(FatalError::Sink(format!("{}: {e}", sink.describe())));
                    stop.store(true, Ordering::SeqCst);
                }
            }
        }

        // Completion: checkpoints (global worker 0), source commits (first worker of each
        // process), the last complete epoch — when every acknowledgement has passed it.
        let st = Arc::clone(state);
        let src = Arc::clone(source);
        let fa = Arc::clone(fatal);
        let (pos, agg) = (Rc::clone(&pos_ledger), Rc::clone(&agg_ledger));
        let mut last_durable = 0u64;
        on_complete(acks, &progress, move |done_below| {
            if done_below == u64::MAX {
                if let Some(c) = checkpointer.take() {
                    if lock(&fa).is_none() {
                        c.finish(0, &pos, &agg);
                    }
                }
                return;
            }
            if let Some(c) = checkpointer.as_mut() {
                if lock(&fa).is_none() {
                    c.maybe_write(done_below, &pos, &agg);
                }
            }
            if process_first && done_below > 0 && done_below != last_durable {
                last_durable = done_below;
                src.on_durable(done_below - 1);
            }
            if leader {
                st.completed_below.store(done_below, Ordering::Relaxed);
            }
        });
    });

    // The initial model enters at the first epoch (global worker 0; broadcast by `score`).
    if leader {
        for u in initial {
            if feed.send(u.clone()).is_none() {
                tracing::error!("the model feed is closed before the first epoch");
            }
        }
    }
    // A resumed run's aggregate totals enter at the checkpoint's epoch (global worker 0).
    if leader {
        if let Some(e) = resume.epoch {
            seed_in.advance_to(e);
            for s in &resume.seeds {
                seed_in.send(s.clone());
            }
        }
    }
    drop(seed_in);
    Main { feed, source_done }
}

/// The closed loop's training data: the outcome records that are whole complaints with a
/// final label, gathered on global worker 0 (the latest record per complaint id; a record
/// that is no longer labelled, e.g. reopened, is removed).
fn keep_labelled_history<'s>(
    raw: timely::dataflow::Stream<'s, u64, Vec<RawInput>>,
    cfg: &EngineConfig,
    state: &Arc<crate::state::EngineState>,
) {
    let st = Arc::clone(state);
    let (opts, policy) = (cfg.validation.clone(), cfg.label_policy);
    raw.sink(
        Exchange::new(|_: &RawInput| 0u64),
        "LabelledHistory",
        move |(input, _frontier)| {
            input.for_each_stamp(|_cap, data| {
                let mut h = lock(&st.labelled_history);
                for batch in data {
                    for r in batch.drain(..) {
                        if r.framing_error.is_some() {
                            continue; // a dead letter of the outcome branch
                        }
                        let Ok(c) = complaintflow_datasets::parse_json_record(&r.bytes, &opts)
                        else {
                            continue; // a bare outcome record (or a bad one: a dead letter there)
                        };
                        match policy.label(&c) {
                            Some(_) => {
                                h.insert(c.complaint_id.0, r.bytes);
                            }
                            None => {
                                h.remove(&c.complaint_id.0);
                            }
                        }
                    }
                }
            });
        },
    );
}
