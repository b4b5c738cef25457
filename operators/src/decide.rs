//! `decide`: predictions → decisions, by the [rules](crate::rules).
//!
//! ```
//! use complaintflow_operators::prelude::*;
//! use complaintflow_operators::record::{Origin, Parsed, Prediction};
//! use complaintflow_datasets::{Complaint, ComplaintId};
//! use timely::dataflow::operators::{ToStream, Inspect};
//! timely::example(|scope| {
//!     let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
//!     let p = Prediction { parsed: Parsed::new(c, Origin::file("x", 0), 5),
//!                          score: 0.01, predicted_success: false, model_version: "v1".into() };
//!     vec![p].to_stream(scope).container::<Vec<_>>()
//!         .decide(&DecisionRules::default())
//!         .inspect(|d| assert!(d.escalate && d.priority == "P1" && d.ingest_ms == 5));
//! });
//! ```

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::record::{now_ms, Prediction};
use crate::rules::{CapacityQuantile, CompiledRules, Decision, DecisionRules, EscalationRule};

/// A timestamp that names an epoch (the number written in [`Decision::epoch`]).
pub trait AsEpoch {
    /// The epoch number.
    ///
    /// ```
    /// use complaintflow_operators::decide::AsEpoch;
    /// assert_eq!(7u64.as_epoch(), 7);
    /// ```
    fn as_epoch(&self) -> u64;
}

impl AsEpoch for u64 {
    fn as_epoch(&self) -> u64 {
        *self
    }
}

impl AsEpoch for u32 {
    fn as_epoch(&self) -> u64 {
        u64::from(*self)
    }
}

impl AsEpoch for usize {
    fn as_epoch(&self) -> u64 {
        *self as u64
    }
}

/// `decide`: predictions → decisions.
pub trait Decide<'s, T: Timestamp + TotalOrder + AsEpoch> {
    /// Applies the rules ([`decide`]) to every prediction and stamps `epoch`, `ingest_ms` and
    /// `decided_ms`. Data-parallel: no exchange.
    ///
    /// ```
    /// use complaintflow_operators::prelude::*;
    /// use complaintflow_operators::record::{Origin, Parsed, Prediction};
    /// use complaintflow_datasets::{Complaint, ComplaintId};
    /// use timely::dataflow::operators::{ToStream, Inspect};
    /// timely::example(|scope| {
    ///     let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
    ///     let p = Prediction { parsed: Parsed::new(c, Origin::file("x", 0), 5),
    ///                          score: 0.01, predicted_success: false, model_version: "v1".into() };
    ///     vec![p].to_stream(scope).container::<Vec<_>>()
    ///         .decide(&DecisionRules::default())
    ///         .inspect(|d| assert!(d.escalate && d.priority == "P1" && d.ingest_ms == 5));
    /// });
    /// ```
    fn decide(self, rules: &DecisionRules) -> Stream<'s, T, Vec<Decision>>;
}

impl<'s, T: Timestamp + TotalOrder + AsEpoch> Decide<'s, T> for Stream<'s, T, Vec<Prediction>> {
    fn decide(self, rules: &DecisionRules) -> Stream<'s, T, Vec<Decision>> {
        // Under `escalate_top_percent`: the live distribution of this worker's scores.
        let mut live = rules.escalate_top_percent.map(CapacityQuantile::new);
        let rules = CompiledRules::new(rules);
        self.unary(Pipeline, "Decide", move |_cap, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let epoch = cap.least().map_or(0, AsEpoch::as_epoch);
                    let now = now_ms();
                    let mut session = output.session(&cap);
                    for batch in data {
                        // One threshold per batch, from the scores decided before it.
                        let rule = match live.as_mut() {
                            Some(q) => {
                                let rule = q.rule();
                                for p in batch.iter() {
                                    q.observe(p.score);
                                }
                                rule
                            }
                            None => EscalationRule::Fixed,
                        };
                        // One output batch per input batch.
                        let mut decided: Vec<Decision> = batch
                            .drain(..)
                            .map(|p| {
                                let mut d = rules.decide_owned_with(p, &rule);
                                d.epoch = epoch;
                                d.decided_ms = now;
                                d
                            })
                            .collect();
                        session.give_container(&mut decided);
                    }
                });
            }
        })
    }
}
