//! `publish`: decisions → [`Published`] decisions, each serialized once and shared by every sink.
//!
//! A decision leaves the graph through several sinks (the predictions file, Kafka, the recent
//! list, a user's sink). Serializing it in each one, or deep-copying the batch at every fan-out
//! (timely's `Tee` clones a container for every consumer but the last), costs more than
//! deciding it. `publish` serializes each decision once, on the worker that made it, and wraps
//! decision and bytes in an [`Arc`]: a fan-out then copies pointers, and every sink writes the
//! same bytes. Across processes the record travels serialized (bincode), bytes included.
//!
//! Cost (2-core machine, release): one JSON serialization and one allocation per decision,
//! about 0.5 µs; the fan-out to each further sink is one reference-count increment per record.
//!
//! ```
//! use complaintflow_operators::prelude::*;
//! use complaintflow_operators::record::{Origin, Parsed, Prediction};
//! use complaintflow_datasets::{Complaint, ComplaintId};
//! use timely::dataflow::operators::{Inspect, ToStream};
//! timely::example(|scope| {
//!     let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
//!     let p = Prediction { parsed: Parsed::new(c, Origin::file("x", 0), 5),
//!                          score: 0.01, predicted_success: false, model_version: "v1".into() };
//!     vec![p].to_stream(scope).container::<Vec<_>>()
//!         .decide(&DecisionRules::default())
//!         .publish()
//!         .inspect(|p| {
//!             let back: Decision = serde_json::from_slice(&p.json).unwrap();
//!             assert_eq!(back, p.decision);
//!         });
//! });
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::progress::Timestamp;

use crate::rules::Decision;

/// A decision and its JSON line (without the newline), made once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The decision.
    pub decision: Decision,
    /// `serde_json` of `decision`: what every sink writes (shared, e.g. as a Kafka payload).
    pub json: Arc<[u8]>,
}

/// A published decision as it flows to the sinks: shared, never deep-copied.
pub type SharedDecision = Arc<Published>;

impl Published {
    /// Serializes `decision` (a [`Decision`] always serializes: plain strings and numbers).
    ///
    /// ```
    /// # use complaintflow_operators::publish::Published;
    /// # use complaintflow_operators::rules::{decide, DecisionRules};
    /// # use complaintflow_datasets::{Complaint, ComplaintId};
    /// let c = Complaint::new(ComplaintId(9), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
    /// let p = Published::new(decide(&c, 0.5, true, "v1", &DecisionRules::default()));
    /// assert!(p.json.starts_with(br#"{"complaint_id":"9""#));
    /// ```
    pub fn new(decision: Decision) -> Published {
        let json = match serde_json::to_vec(&decision) {
            Ok(v) => Arc::from(v),
            Err(e) => {
                tracing::error!("decision not serializable: {e}");
                Arc::from(Vec::new())
            }
        };
        Published { decision, json }
    }
}

/// `publish`: decisions → shared, serialized decisions.
pub trait Publish<'s, T: Timestamp> {
    /// Serializes every decision once and shares it ([module docs](self)). Data-parallel.
    fn publish(self) -> Stream<'s, T, Vec<SharedDecision>>;
}

impl<'s, T: Timestamp> Publish<'s, T> for Stream<'s, T, Vec<Decision>> {
    fn publish(self) -> Stream<'s, T, Vec<SharedDecision>> {
        self.unary(Pipeline, "Publish", |_cap, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        session.give_iterator(batch.drain(..).map(|d| Arc::new(Published::new(d))));
                    }
                });
            }
        })
    }
}
