//! Adding your own operator to a complaint dataflow.
//!
//! The operators of `complaintflow-operators` are extension traits on timely `Stream`s, so a
//! dataflow reads as a chain. This example writes a new one the same way — `company_spikes`,
//! which watches the decision stream and reports every company that collects at least
//! `threshold` escalations within one epoch — and puts it at the end of the standard chain:
//!
//! ```text
//! file_source → parse_complaints → score(models) → decide → company_spikes(3) → inspect
//! ```
//!
//! The operator is data-parallel: decisions are exchanged by a hash of the company, so each
//! worker counts a disjoint set of companies and the answer is the same with any number of
//! workers. It holds one capability per open epoch and reports an epoch only when its input
//! frontier has passed it (the epoch is complete on every worker).
//!
//! Run it on the bundled real sample, with a model trained on the sample's training split:
//!
//! ```text
//! cargo run --release --example custom_operator -- [--workers 2] [--threshold 3]
//! ```

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use complaintflow_datasets::replay::SystemClock;
use complaintflow_datasets::split::is_train;
use complaintflow_datasets::{bundled_sample_path, read_path, Format, ValidationOptions};
use complaintflow_models::TrainConfig;
use complaintflow_operators::prelude::*;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Input, Inspect, Probe};
use timely::dataflow::{ProbeHandle, Stream};

/// A company that collected `escalations` escalated complaints in one epoch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Spike {
    /// The epoch.
    pub epoch: u64,
    /// The company.
    pub company: String,
    /// Escalated decisions about it in that epoch.
    pub escalations: u64,
}

/// `company_spikes`: decisions → companies with many escalations in an epoch.
pub trait CompanySpikes<'s> {
    /// Reports, per epoch, each company with at least `threshold` escalated decisions.
    fn company_spikes(self, threshold: u64) -> Stream<'s, u64, Vec<Spike>>;
}

fn company_hash(d: &Decision) -> u64 {
    // The same in every process (not RandomState): timely exchanges by this value.
    let mut h = DefaultHasher::new();
    d.company.hash(&mut h);
    h.finish()
}

impl<'s> CompanySpikes<'s> for Stream<'s, u64, Vec<Decision>> {
    fn company_spikes(self, threshold: u64) -> Stream<'s, u64, Vec<Spike>> {
        self.unary_frontier(
            Exchange::new(company_hash),
            "CompanySpikes",
            |_cap, _info| {
                // Per open epoch: a capability to report it, and escalations per company.
                let mut open: BTreeMap<u64, (Capability<u64>, HashMap<String, u64>)> =
                    BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(t) = cap.least().copied() else {
                            return;
                        };
                        let counts = match open.entry(t) {
                            Entry::Occupied(e) => &mut e.into_mut().1,
                            Entry::Vacant(e) => {
                                let Some(c) = cap.retain_least(0) else { return };
                                &mut e.insert((c, HashMap::new())).1
                            }
                        };
                        for batch in data {
                            for d in batch.drain(..).filter(|d| d.escalate) {
                                let company = d.company.unwrap_or_else(|| "(missing)".into());
                                *counts.entry(company).or_insert(0) += 1;
                            }
                        }
                    });
                    // Report the epochs no more input can arrive for.
                    while let Some(entry) = open.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let epoch = *entry.key();
                        let (cap, counts) = entry.remove();
                        let mut session = output.session(&cap);
                        for (company, escalations) in counts {
                            if escalations >= threshold {
                                session.give(Spike {
                                    epoch,
                                    company,
                                    escalations,
                                });
                            }
                        }
                    }
                }
            },
        )
    }
}

fn main() -> anyhow::Result<()> {
    let mut workers = 1usize;
    let mut threshold = 3u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--workers" => workers = value("--workers")?.parse()?,
            "--threshold" => threshold = value("--threshold")?.parse()?,
            "-h" | "--help" => {
                println!("custom_operator [--workers N] [--threshold ESCALATIONS]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }

    // A model trained on the training split of the bundled real sample (fast settings).
    let sample = bundled_sample_path();
    let (train_rows, test_rows): (Vec<_>, Vec<_>) =
        read_path(&sample, Format::Auto, &ValidationOptions::default())?
            .filter_map(Result::ok)
            .partition(|c| is_train(c.complaint_id, 0.75));
    let cfg = TrainConfig {
        folds: 2,
        alphas: vec![3.0],
        ..TrainConfig::default()
    };
    let mut model =
        complaintflow_models::train_on_split(&train_rows, &test_rows, &cfg, &mut |_| {})?.model;
    model.version = "example".into();
    eprintln!("model trained on {} complaints", train_rows.len());

    let spikes = Arc::new(Mutex::new(Vec::<Spike>::new()));
    let found = Arc::clone(&spikes);
    let config = if workers <= 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    };
    timely::execute(config, move |worker| {
        let probe = ProbeHandle::new();
        let found = Arc::clone(&found);
        let (mut models, epoch) = worker.dataflow::<u64, _, _>(|scope| {
            let (models, model_stream) = scope.new_input::<Vec<ModelUpdate>>();
            let policy = SourcePolicy {
                max_records_per_epoch: 1_000,
                ..SourcePolicy::default()
            };
            let (raw, epoch) = file_source(
                scope,
                sample.clone(),
                Format::Auto,
                1 << 20,
                policy,
                SystemClock::default(),
                Arc::new(AtomicBool::new(false)),
            );
            let (parsed, _dead_letters) = raw.parse_complaints(&ValidationOptions::default());
            parsed
                .score(model_stream)
                .decide(&DecisionRules::default())
                .company_spikes(threshold)
                .inspect(move |s: &Spike| {
                    if let Ok(mut v) = found.lock() {
                        v.push(s.clone());
                    }
                })
                .probe_with(&probe);
            (models, epoch)
        });
        if worker.index() == 0 {
            models.send(ModelUpdate {
                model: model.clone(),
                role: ModelRole::Production,
            });
        }
        // Keep the model input at the source's epoch; close it when the source is done.
        let mut models = Some(models);
        loop {
            let active = worker.step_or_park(Some(Duration::from_millis(1)));
            match (epoch.get(), models.as_mut()) {
                (Some(e), Some(m)) if e > *m.time() => m.advance_to(e),
                (None, Some(_)) => models = None,
                _ => {}
            }
            if models.is_none() && !active && probe.done() {
                break;
            }
        }
    })
    .map_err(|e| anyhow::anyhow!("timely: {e}"))?
    .join()
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| anyhow::anyhow!("worker: {e}"))?;

    let mut spikes = spikes
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    spikes.sort_by(|a, b| (a.epoch, &a.company).cmp(&(b.epoch, &b.company)));
    println!("{:>5}  {:>11}  company", "epoch", "escalations");
    for s in &spikes {
        println!("{:>5}  {:>11}  {}", s.epoch, s.escalations, s.company);
    }
    eprintln!(
        "{} company spikes (≥ {threshold} escalations in one epoch of ≤ 1,000 complaints)",
        spikes.len()
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use complaintflow_datasets::{Complaint, ComplaintId};
    use timely::dataflow::operators::capture::{Capture, Extract};
    use timely::dataflow::operators::Input;

    fn decision(company: &str, score: f64) -> Decision {
        let mut c = Complaint::new(
            ComplaintId(1),
            chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(),
        );
        c.company = Some(company.into());
        complaintflow_operators::decision::decide(&c, score, false, "t", &DecisionRules::default())
    }

    /// Two workers, two epochs: a company is reported for an epoch only when it has at least
    /// `threshold` escalations in that epoch, wherever its decisions were produced.
    #[test]
    fn reports_companies_over_the_threshold_per_epoch() {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&captured);
        timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let (mut input, spikes) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Vec<Decision>>();
                (input, stream.company_spikes(2).capture())
            });
            // Epoch 0: "A" escalated once on each worker (2 in all), "B" once, "C" not
            // escalated at all. Epoch 1: "B" twice on worker 1.
            input.send(decision("A", 0.01));
            if index == 0 {
                input.send(decision("B", 0.02));
                input.send(decision("C", 0.9));
                input.send(decision("C", 0.9));
            }
            input.advance_to(1);
            if index == 1 {
                input.send(decision("B", 0.01));
                input.send(decision("B", 0.02));
            }
            drop(input);
            while worker.step() {}
            out.lock().unwrap().extend(spikes.extract());
        })
        .unwrap();
        let mut got: Vec<(u64, String, u64)> = captured
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, v)| {
                v.iter()
                    .map(|s| (s.epoch, s.company.clone(), s.escalations))
            })
            .collect();
        got.sort();
        assert_eq!(got, [(0, "A".to_string(), 2), (1, "B".to_string(), 2)]);
    }
}
