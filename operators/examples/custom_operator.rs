//! Adding your own operator and your own sink to the graph `complaintflow run` builds.
//!
//! Nothing in the engine is edited: this program is the whole `complaintflow` command line
//! ([`complaintflow::main_with`]) plus two plug-ins.
//!
//! - `CompanySpikes`, a [`DecisionOperator`]: decisions are exchanged by company, held until
//!   their epoch is complete (the [`Stash`] helper), and every escalated decision about a
//!   company with at least `threshold` escalations in that epoch gets one more reason,
//!   `company spike: N escalations this epoch`, before the decisions go on to the sinks.
//!   Data-parallel: each worker owns a disjoint set of companies, so the answer is the same
//!   with any number of workers and processes.
//! - `EscalationLog`, a [`Sink`]: one CSV line per escalated decision
//!   (`complaint_id,priority,queue`) in a file on global worker 0, flushed at each complete
//!   epoch — and acknowledged only then, so checkpoints wait for it.
//!
//! ```text
//! … → decide → company_spikes(3) → publish ─┬─► predictions.jsonl, Kafka, …
//!                                            └─► escalations.csv  (this sink)
//! ```
//!
//! Run it like `complaintflow run`, with every flag of it:
//!
//! ```text
//! cargo run --release -p complaintflow-operators --example custom_operator -- run --once --http-addr off
//! ```
//!
//! Options of the example itself come from the environment: `SPIKE_THRESHOLD` (default 3),
//! `ESCALATION_LOG` (default `state/escalations.csv`).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use complaintflow_operators::prelude::*;
use complaintflow_operators::sink::create_output;
use complaintflow_pipelines::{DecisionOperator, EngineOutputs, Sink};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{Scope, Stream};

/// Adds a reason to escalated decisions about companies with many escalations in an epoch.
pub struct CompanySpikes {
    /// Escalations of one company within one epoch that make a spike.
    pub threshold: usize,
}

fn company_hash(d: &Decision) -> u64 {
    // The same in every process (not RandomState): timely exchanges by this value.
    let mut h = DefaultHasher::new();
    d.company.hash(&mut h);
    h.finish()
}

impl DecisionOperator for CompanySpikes {
    fn describe(&self) -> String {
        format!("company_spikes(threshold {})", self.threshold)
    }

    fn build<'s>(
        &self,
        _scope: Scope<'s, u64>,
        decisions: Stream<'s, u64, Vec<Decision>>,
    ) -> Stream<'s, u64, Vec<Decision>> {
        let threshold = self.threshold.max(1);
        decisions.unary_frontier(
            Exchange::new(company_hash),
            "CompanySpikes",
            move |_c, _i| {
                let mut stash: Stash<u64, Vec<Decision>> = Stash::new(&[0]);
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        if let Some(held) = stash.at(&cap) {
                            for batch in data {
                                held.append(batch);
                            }
                        }
                    });
                    while let Some((_t, caps, mut held)) = stash.pop_complete(frontier.frontier()) {
                        let Some(cap) = caps.first() else { continue };
                        let mut escalations: HashMap<Option<String>, usize> = HashMap::new();
                        for d in held.iter().filter(|d| d.escalate) {
                            *escalations.entry(d.company.clone()).or_insert(0) += 1;
                        }
                        for d in held.iter_mut().filter(|d| d.escalate) {
                            let n = escalations.get(&d.company).copied().unwrap_or(0);
                            if n >= threshold {
                                d.reasons
                                    .push(format!("company spike: {n} escalations this epoch"));
                            }
                        }
                        output.session(cap).give_container(&mut held);
                    }
                }
            },
        )
    }
}

/// Writes `complaint_id,priority,queue` of every escalated decision to a CSV file.
pub struct EscalationLog {
    /// The file (created, truncated).
    pub path: PathBuf,
}

impl Sink for EscalationLog {
    fn describe(&self) -> String {
        format!("escalation-log:{}", self.path.display())
    }

    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        outputs: &EngineOutputs<'s>,
    ) -> Result<Vec<Stream<'s, u64, Vec<u64>>>, String> {
        let mut file = if scope.index() == 0 {
            Some(
                create_output(&self.path)
                    .ok_or_else(|| format!("cannot create {}", self.path.display()))?,
            )
        } else {
            None
        };
        let ack = outputs
            .decisions
            .clone()
            .unary_frontier::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
                Exchange::new(|_: &SharedDecision| 0u64),
                "EscalationLog",
                move |_c, _i| {
                    // Epochs written but not yet flushed hold their capability (the ack).
                    let mut unflushed: Stash<u64, ()> = Stash::new(&[0]);
                    move |(input, frontier), _output| {
                        input.for_each_stamp(|cap, data| {
                            let _ = unflushed.at(&cap);
                            for d in data.flat_map(|b| b.drain(..)) {
                                let d = &d.decision;
                                if let (true, Some(f)) = (d.escalate, file.as_mut()) {
                                    let _ = writeln!(
                                        f,
                                        "{},{},{}",
                                        d.complaint_id, d.priority, d.queue
                                    );
                                }
                            }
                        });
                        let mut any = false;
                        while unflushed.pop_complete(frontier.frontier()).is_some() {
                            any = true;
                        }
                        if let (true, Some(f)) = (any, file.as_mut()) {
                            let _ = f.flush();
                        }
                    }
                },
            );
        Ok(vec![ack])
    }
}

fn main() -> std::process::ExitCode {
    let threshold = std::env::var("SPIKE_THRESHOLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let log = std::env::var("ESCALATION_LOG").unwrap_or_else(|_| "state/escalations.csv".into());
    complaintflow::main_with(
        complaintflow::Extensions::default()
            .operator(Arc::new(CompanySpikes { threshold }))
            .sink(Arc::new(EscalationLog { path: log.into() })),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The real `complaintflow run` (bundled real sample, 2 workers, files, aggregates) with
    /// both plug-ins: the sink holds exactly the escalated decisions of the predictions
    /// file, and the operator's reason is on exactly the decisions it should be.
    #[test]
    fn plugs_an_operator_and_a_sink_into_complaintflow_run() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let log = dir.path().join("escalations.csv");
        let threshold = 2;
        let ext = complaintflow::Extensions::default()
            .operator(Arc::new(CompanySpikes { threshold }))
            .sink(Arc::new(EscalationLog { path: log.clone() }));
        let code = complaintflow::main_from(
            [
                "complaintflow",
                "--state-dir",
                state.to_str().unwrap(),
                "run",
                "--once",
                "--http-addr",
                "off",
                "--workers",
                "2",
                "--max-records-per-epoch",
                "200",
            ],
            ext,
        );
        assert_eq!(code, std::process::ExitCode::SUCCESS);
        let decisions: Vec<Decision> = std::fs::read_to_string(state.join("predictions.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            decisions.len() > 1000,
            "the held-out part of the sample: {}",
            decisions.len()
        );
        let escalated: BTreeSet<String> = decisions
            .iter()
            .filter(|d| d.escalate)
            .map(|d| d.complaint_id.clone())
            .collect();
        assert!(!escalated.is_empty());
        let logged: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        assert_eq!(logged.len(), escalated.len(), "one line per escalation");
        assert_eq!(logged.into_iter().collect::<BTreeSet<_>>(), escalated);
        // The reason is on an escalated decision exactly when its company had ≥ threshold
        // escalations in its epoch.
        let mut per_epoch: HashMap<(u64, Option<String>), usize> = HashMap::new();
        for d in decisions.iter().filter(|d| d.escalate) {
            *per_epoch.entry((d.epoch, d.company.clone())).or_insert(0) += 1;
        }
        let mut flagged = 0;
        for d in &decisions {
            let has = d.reasons.iter().any(|r| r.starts_with("company spike"));
            let n = per_epoch
                .get(&(d.epoch, d.company.clone()))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                has,
                d.escalate && n >= threshold,
                "{} {:?}",
                d.complaint_id,
                d.reasons
            );
            flagged += usize::from(has);
        }
        assert!(flagged > 0, "some company spiked");
    }
}
