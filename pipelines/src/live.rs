//! The engine's live state: every worker summarises each batch of its published decisions
//! (counts, escalations, scores by model version, the newest few decisions, the earliest
//! ingest time) and only these digests go to global worker 0, which merges them into
//! process 0's [`EngineState`] and measures each epoch's latency once the epoch is complete.
//! Dead letters are counted by kind the same way.
//!
//! Cost: one pass over each batch on the worker that made it, reading fields of the shared
//! decisions (no copy, no serialization); a few hundred bytes per batch cross to worker 0.
//! The recent list holds the shared decisions themselves.

use std::collections::BTreeMap;
use std::sync::Arc;

use complaintflow_operators::publish::SharedDecision;
use complaintflow_operators::record::{now_ms, DeadLetter};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::state::EngineState;
use crate::state::ScoreStats;

/// One batch of decisions, summarised on the worker that made them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DecisionDigest {
    /// Decisions in the batch.
    pub count: u64,
    /// Escalated decisions among them.
    pub escalations: u64,
    /// Score statistics by model version (each version's count is its histogram's total).
    pub by_model: Vec<(Arc<str>, ScoreStats)>,
    /// The newest decisions of the batch (at most the recent list's capacity), oldest first.
    pub recent: Vec<SharedDecision>,
    /// The earliest ingest time in the batch, ms since the Unix epoch.
    pub first_ingest_ms: i64,
}

impl DecisionDigest {
    /// Summarises `batch`, keeping its newest `recent` decisions.
    ///
    /// ```
    /// use complaintflow_operators::publish::Published;
    /// use complaintflow_operators::rules::{decide, DecisionRules};
    /// use complaintflow_datasets::{Complaint, ComplaintId};
    /// use complaintflow_pipelines::live::DecisionDigest;
    /// use std::sync::Arc;
    /// let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
    /// let rules = DecisionRules::default();
    /// let batch: Vec<_> = [0.01, 0.5].iter().map(|s| Arc::new(Published::new(decide(&c, *s, false, "v1", &rules)))).collect();
    /// let d = DecisionDigest::of(&batch, 1);
    /// assert_eq!((d.count, d.escalations, d.recent.len()), (2, 1, 1));
    /// assert_eq!(d.by_model[0].1.count(), 2);
    /// ```
    pub fn of(batch: &[SharedDecision], recent: usize) -> DecisionDigest {
        let mut d = DecisionDigest {
            count: batch.len() as u64,
            first_ingest_ms: i64::MAX,
            ..DecisionDigest::default()
        };
        for p in batch {
            let x = &p.decision;
            d.escalations += u64::from(x.escalate);
            d.first_ingest_ms = d.first_ingest_ms.min(x.ingest_ms);
            match d
                .by_model
                .iter_mut()
                .find(|(v, _)| Arc::ptr_eq(v, &x.model_version) || *v == x.model_version)
            {
                Some((_, s)) => s.observe(x.score),
                None => {
                    let mut s = ScoreStats::default();
                    s.observe(x.score);
                    d.by_model.push((Arc::clone(&x.model_version), s));
                }
            }
        }
        d.recent = batch[batch.len().saturating_sub(recent.max(1))..].to_vec();
        d
    }
}

/// Keeps process 0's live state from the published decisions and the dead letters; returns
/// the acknowledgement stream (its frontier passes an epoch once the state holds all of it).
pub(crate) fn live_state<'s>(
    decisions: Stream<'s, u64, Vec<SharedDecision>>,
    dead_letters: Stream<'s, u64, Vec<DeadLetter>>,
    state: &Arc<EngineState>,
) -> Vec<Stream<'s, u64, Vec<u64>>> {
    let recent = state.recent_capacity;
    let digests = decisions.unary::<CapacityContainerBuilder<Vec<DecisionDigest>>, _, _, _>(
        Pipeline,
        "DigestDecisions",
        move |_cap, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        if !batch.is_empty() {
                            session.give(DecisionDigest::of(batch, recent));
                        }
                    }
                });
            }
        },
    );
    let st = Arc::clone(state);
    // Epoch → earliest ingest time of its decisions, until the epoch is complete here.
    let mut first_ingest: BTreeMap<u64, i64> = BTreeMap::new();
    let mut last_done = 0u64;
    let digest_ack = digests.unary_frontier::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
        Exchange::new(|_: &DecisionDigest| 0u64),
        "LiveState",
        move |_cap, _info| {
            move |(input, frontier), _output| {
                input.for_each_stamp(|cap, data| {
                    let Some(t) = cap.least().copied() else {
                        return;
                    };
                    for batch in data {
                        for d in batch.drain(..) {
                            let e = first_ingest.entry(t).or_insert(d.first_ingest_ms);
                            *e = (*e).min(d.first_ingest_ms);
                            st.observe_digest(d);
                        }
                    }
                });
                let done_below = frontier.frontier().first().copied().unwrap_or(u64::MAX);
                if done_below != last_done {
                    last_done = done_below;
                    let now = now_ms();
                    let pending = first_ingest.split_off(&done_below);
                    for t0 in std::mem::replace(&mut first_ingest, pending).into_values() {
                        st.observe_epoch((now - t0).max(0) as f64 / 1000.0);
                    }
                }
            }
        },
    );
    let st = Arc::clone(state);
    let dead_ack = dead_letters
        .unary::<CapacityContainerBuilder<Vec<(String, u64)>>, _, _, _>(
            Pipeline,
            "CountDeadLetters",
            |_cap, _info| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let mut kinds: Vec<(String, u64)> = Vec::new();
                        for batch in data {
                            for d in batch.iter() {
                                match kinds.iter_mut().find(|(k, _)| *k == d.kind) {
                                    Some(e) => e.1 += 1,
                                    None => kinds.push((d.kind.clone(), 1)),
                                }
                            }
                        }
                        output.session(&cap).give_iterator(kinds.into_iter());
                    });
                }
            },
        )
        .unary::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
            Exchange::new(|_: &(String, u64)| 0u64),
            "LiveDeadLetters",
            move |_cap, _info| {
                move |input, _output| {
                    input.for_each_stamp(|_cap, data| {
                        for batch in data {
                            for (kind, n) in batch.drain(..) {
                                st.observe_dead_letters(&kind, n);
                            }
                        }
                    });
                }
            },
        );
    vec![digest_ack, dead_ack]
}
