//! The predictions output: every worker serializes and summarises its own decisions, and
//! global worker 0 only appends bytes and merges summaries.
//!
//! Routing raw decisions to worker 0 made it serialize every prediction and update every
//! live counter alone, so a second worker added little throughput. Here each worker turns
//! each batch of decisions into a [`DecisionDigest`] — the JSON Lines bytes (when there is a
//! predictions file), counts by model version with their score histograms, the newest few
//! decisions for the recent list, and the earliest ingest time — and only digests cross to
//! worker 0. The file still holds every prediction once, and process 0's
//! [`EngineState`] stays complete.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use complaintflow_operators::record::now_ms;
use complaintflow_operators::sink::create_output;
use complaintflow_operators::Decision;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::progress::Antichain;

use crate::state::{EngineState, ScoreStats};

/// One batch of decisions, summarised on the worker that made them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DecisionDigest {
    /// The decisions as JSON Lines (empty without a predictions file).
    pub lines: Vec<u8>,
    /// Decisions in the batch.
    pub count: u64,
    /// Escalated decisions among them.
    pub escalations: u64,
    /// Score statistics by model version (each version's count is its histogram's total).
    pub by_model: Vec<(String, ScoreStats)>,
    /// The newest decisions of the batch (at most the recent list's capacity), oldest first.
    pub recent: Vec<Decision>,
    /// The earliest ingest time in the batch, ms since the Unix epoch.
    pub first_ingest_ms: i64,
}

impl DecisionDigest {
    /// Summarises `batch`; serializes it as JSON Lines when `lines` is set. A decision that
    /// cannot be serialized (it always can: plain strings and numbers) is logged, not lost
    /// from the counts.
    pub fn of(batch: &[Decision], lines: bool, recent: usize) -> DecisionDigest {
        let mut d = DecisionDigest {
            count: batch.len() as u64,
            first_ingest_ms: i64::MAX,
            ..DecisionDigest::default()
        };
        if lines {
            d.lines.reserve(batch.len() * 700);
        }
        for x in batch {
            d.escalations += u64::from(x.escalate);
            d.first_ingest_ms = d.first_ingest_ms.min(x.ingest_ms);
            match d.by_model.iter_mut().find(|(v, _)| *v == x.model_version) {
                Some((_, s)) => s.observe(x.score),
                None => {
                    let mut s = ScoreStats::default();
                    s.observe(x.score);
                    d.by_model.push((x.model_version.clone(), s));
                }
            }
            if lines {
                match serde_json::to_writer(&mut d.lines, x) {
                    Ok(()) => d.lines.push(b'\n'),
                    Err(e) => tracing::error!("prediction not serializable: {e}"),
                }
            }
        }
        d.recent = batch[batch.len().saturating_sub(recent.max(1))..].to_vec();
        d
    }
}

/// Writes the decisions to `path` (created, truncated) on global worker 0 and keeps process
/// 0's live state: counters, scores by version, the recent list, and each epoch's latency
/// (first record ingested → the epoch is flushed to the file).
pub(crate) fn sink_predictions<'s>(
    decisions: Stream<'s, u64, Vec<Decision>>,
    path: Option<PathBuf>,
    state: &Arc<EngineState>,
) {
    let serialize = path.is_some();
    let recent = state.recent_capacity;
    let digests = decisions
        .unary::<timely::container::CapacityContainerBuilder<Vec<DecisionDigest>>, _, _, _>(
            Pipeline,
            "DigestDecisions",
            move |_cap, _info| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        for batch in data {
                            if !batch.is_empty() {
                                session.give(DecisionDigest::of(batch, serialize, recent));
                                batch.clear();
                            }
                        }
                    });
                }
            },
        );
    let is_first = digests.scope().index() == 0;
    let mut writer = if is_first {
        path.as_deref().and_then(create_output)
    } else {
        None
    };
    let state = Arc::clone(state);
    // Epoch → earliest ingest time of its decisions, until the epoch is flushed.
    let mut first_ingest: BTreeMap<u64, i64> = BTreeMap::new();
    let mut last = Antichain::from_elem(0u64);
    digests.sink(
        Exchange::new(|_: &DecisionDigest| 0u64),
        "SinkPredictions",
        move |(input, frontier)| {
            input.for_each_stamp(|cap, data| {
                let Some(t) = cap.least().copied() else {
                    return;
                };
                for batch in data {
                    for d in batch.drain(..) {
                        if let Some(w) = writer.as_mut() {
                            if let Err(e) = w.write_all(&d.lines) {
                                tracing::error!("predictions write failed: {e}");
                            }
                        }
                        let e = first_ingest.entry(t).or_insert(d.first_ingest_ms);
                        *e = (*e).min(d.first_ingest_ms);
                        state.observe_digest(d);
                    }
                }
            });
            let now = frontier.frontier().to_owned();
            if now != last {
                if let Some(w) = writer.as_mut() {
                    if let Err(e) = w.flush() {
                        tracing::error!("predictions flush failed: {e}");
                    }
                }
                let done_below = now.elements().first().copied().unwrap_or(u64::MAX);
                let now_ms = now_ms();
                let pending = first_ingest.split_off(&done_below);
                for t0 in std::mem::replace(&mut first_ingest, pending).into_values() {
                    state.observe_epoch((now_ms - t0).max(0) as f64 / 1000.0);
                }
                last = now;
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(id: u32, version: &str, score: f64, ingest: i64) -> Decision {
        Decision {
            complaint_id: id.to_string(),
            model_version: version.into(),
            score,
            predicted_success: false,
            escalate: score < 0.03,
            priority: "P3".into(),
            queue: "general".into(),
            reasons: vec![],
            product: None,
            issue: None,
            state: None,
            company: None,
            date_received: chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default(),
            epoch: 0,
            ingest_ms: ingest,
            decided_ms: ingest,
        }
    }

    #[test]
    fn a_digest_counts_serializes_and_keeps_the_newest() {
        let batch = vec![
            decision(1, "v1", 0.01, 30),
            decision(2, "v2", 0.5, 10),
            decision(3, "v1", 0.2, 20),
        ];
        let d = DecisionDigest::of(&batch, true, 2);
        assert_eq!((d.count, d.escalations, d.first_ingest_ms), (3, 1, 10));
        let counts: Vec<(String, u64)> = d
            .by_model
            .iter()
            .map(|(v, s)| (v.clone(), s.count()))
            .collect();
        assert_eq!(counts, vec![("v1".into(), 2), ("v2".into(), 1)]);
        let ids: Vec<&str> = d.recent.iter().map(|x| x.complaint_id.as_str()).collect();
        assert_eq!(ids, ["2", "3"]);
        let text = String::from_utf8(d.lines).unwrap_or_default();
        let back: Vec<Decision> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(back, batch);
        assert!(DecisionDigest::of(&batch, false, 2).lines.is_empty());
    }
}
