//! `score`: complaints + a broadcast stream of model versions → predictions.
//!
//! Models travel as data: a [`ModelUpdate`] sent into the model stream at time `t` applies to
//! every complaint of epoch `t` and later (until a newer production model). `score` is a
//! two-input operator: complaints of epoch `t` wait until the model stream's frontier has
//! passed `t`, so every worker switches at exactly the same epoch. Each worker receives each
//! version once (broadcast) and keeps it behind an `Arc`; nothing is cloned per record.
//!
//! ```
//! use complaintflow_operators::prelude::*;
//! use complaintflow_operators::record::Origin;
//! use complaintflow_datasets::ValidationOptions;
//! use complaintflow_models::Model;
//! use timely::dataflow::operators::{Capture, Input};
//! use timely::dataflow::operators::capture::Event;
//!
//! # fn tiny_model(version: &str) -> Model {
//! #     // A small real model (date features only, trained on the bundled sample).
//! #     let mut m: Model = serde_json::from_str(include_str!("../tests/fixtures/tiny-model.json")).unwrap();
//! #     m.version = version.into();
//! #     m
//! # }
//! let captured = timely::example(|scope| {
//!     let (mut models, model_stream) = scope.new_input::<Vec<ModelUpdate>>();
//!     let (mut raw, raw_stream) = scope.new_input::<Vec<RawInput>>();
//!     let (parsed, _dead) = raw_stream.parse_complaints(&ValidationOptions::default());
//!     let out = parsed.score(model_stream).capture();
//!     models.send(ModelUpdate { model: tiny_model("v1"), role: ModelRole::Production });
//!     raw.send(RawInput::new(br#"{"complaint_id":"1","date_received":"2020-01-02"}"#.to_vec(), Origin::file("x", 0)));
//!     models.advance_to(1);
//!     raw.advance_to(1);
//!     models.send(ModelUpdate { model: tiny_model("v2"), role: ModelRole::Production });
//!     raw.send(RawInput::new(br#"{"complaint_id":"2","date_received":"2020-01-02"}"#.to_vec(), Origin::file("x", 1)));
//!     out
//! });
//! let mut by_version: Vec<(u64, String)> = captured.try_iter()
//!     .flat_map(|e| match e { Event::Messages(_, v) => v, _ => Vec::new() })
//!     .map(|p| (p.complaint_id(), p.model_version.to_string())).collect();
//! by_version.sort();
//! assert_eq!(by_version, [(1, "v1".to_string()), (2, "v2".to_string())]);
//! ```

use std::sync::Arc;

use complaintflow_datasets::split::hash_unit;
use complaintflow_models::{Model, SparseFeatures};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::record::{Parsed, Prediction};
use crate::stash::Stash;

/// How a model version takes part in scoring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelRole {
    /// Scores every complaint not routed to a candidate. A new production model also ends
    /// any A/B test.
    Production,
    /// A/B candidate: scores the share `fraction` of complaints chosen by a stable hash of
    /// the complaint id ([`ab_bucket`]), until a newer production model arrives.
    Candidate {
        /// Share of complaints, 0–1.
        fraction: f64,
    },
}

/// A model version sent to the `score` operator. It applies from its timestamp on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelUpdate {
    /// The model (fitted pipeline + weights); its `version` labels every prediction it makes.
    pub model: Model,
    /// Production or A/B candidate.
    pub role: ModelRole,
}

/// Salt of the stable hash that routes complaints to an A/B candidate.
pub const AB_SALT: &str = "ab:";

/// The A/B bucket of a complaint id, uniform in [0, 1) and the same on every machine: a
/// complaint goes to the candidate when its bucket is below the candidate's fraction.
///
/// ```
/// use complaintflow_datasets::ComplaintId;
/// let b = complaintflow_operators::score::ab_bucket(ComplaintId(12345));
/// assert!((0.0..1.0).contains(&b));
/// assert_eq!(b, complaintflow_operators::score::ab_bucket(ComplaintId(12345)));
/// ```
pub fn ab_bucket(id: complaintflow_datasets::ComplaintId) -> f64 {
    hash_unit(AB_SALT, id)
}

struct Live<T> {
    time: T,
    model: Arc<Model>,
    /// The version, shared by every prediction the model makes.
    version: Arc<str>,
    role: ModelRole,
}

type Pick<'a, T> = (Option<&'a Live<T>>, Option<(&'a Live<T>, f64)>);

/// (production, candidate) for time `t`: the newest production model with time ≤ t, and the
/// newest candidate at or after it.
fn models_at<'a, T: Timestamp + TotalOrder>(live: &'a [Live<T>], t: &T) -> Pick<'a, T> {
    let mut prod = None;
    let mut cand = None;
    for m in live.iter().filter(|m| m.time <= *t) {
        match m.role {
            ModelRole::Production => {
                prod = Some(m);
                cand = None;
            }
            ModelRole::Candidate { fraction } => cand = Some((m, fraction)),
        }
    }
    (prod, cand)
}

/// `score`: complaints + a stream of model versions → predictions.
pub trait Score<'s, T: Timestamp + TotalOrder> {
    /// Scores each complaint with the newest production model whose time is ≤ the
    /// complaint's epoch, or with the live A/B candidate for the complaints whose
    /// [`ab_bucket`] is below its fraction. `models` may be fed on any worker (usually worker
    /// 0 only, every worker advancing its input): it is broadcast to all.
    ///
    /// Complaints of an epoch wait until the model stream's frontier has passed that epoch.
    /// Complaints for which no production model exists yet are held (logged), never dropped.
    fn score(self, models: Stream<'s, T, Vec<ModelUpdate>>) -> Stream<'s, T, Vec<Prediction>>;
}

impl<'s, T: Timestamp + TotalOrder> Score<'s, T> for Stream<'s, T, Vec<Parsed>> {
    fn score(self, models: Stream<'s, T, Vec<ModelUpdate>>) -> Stream<'s, T, Vec<Prediction>> {
        let models = models.broadcast();
        self.binary_frontier(models, Pipeline, Pipeline, "Score", move |_cap, _info| {
            // Each epoch's batches as they arrived (never concatenated: no reallocation and
            // copy of a growing vector of complaints).
            let mut stash: Stash<T, Vec<Vec<Parsed>>> = Stash::new(&[0]);
            let mut live: Vec<Live<T>> = Vec::new();
            let mut buf = SparseFeatures::new();
            let mut warned_no_model = false;
            move |(complaints, complaint_frontier), (model_input, model_frontier), output| {
                model_input.for_each_stamp(|cap, data| {
                    let Some(time) = cap.least().cloned() else { return };
                    for batch in data {
                        for u in batch.drain(..) {
                            tracing::info!(version = %u.model.version, role = ?u.role, time = ?time, "score: model version received");
                            live.push(Live {
                                time: time.clone(),
                                version: Arc::from(u.model.version.as_str()),
                                model: Arc::new(u.model),
                                role: u.role,
                            });
                        }
                    }
                });
                live.sort_by(|a, b| a.time.cmp(&b.time));
                complaints.for_each_stamp(|cap, data| stash.keep_batches(&cap, data));
                loop {
                    // The earliest epoch waits until no model for it can still arrive, and
                    // until a production model exists.
                    let Some(t) = stash.first().cloned() else { break };
                    if model_frontier.less_equal(&t) {
                        break;
                    }
                    let (prod, cand) = models_at(&live, &t);
                    let Some(prod) = prod else {
                        if !warned_no_model {
                            tracing::error!(time = ?t, "score: no production model yet; complaints are held");
                            warned_no_model = true;
                        }
                        break;
                    };
                    let Some((_, caps, batches)) = stash.pop_complete(model_frontier.frontier()) else { break };
                    let Some(cap) = caps.first() else { continue };
                    let mut session = output.session(cap);
                    for batch in batches {
                        // One output batch per input batch.
                        let mut scored: Vec<Prediction> = batch
                            .into_iter()
                            .map(|p| {
                                let m = match cand {
                                    Some((c, f)) if ab_bucket(p.complaint.complaint_id) < f => c,
                                    _ => prod,
                                };
                                let score = m.model.score(&p.complaint, &mut buf);
                                Prediction {
                                    parsed: p,
                                    score,
                                    predicted_success: m.model.predict(score),
                                    model_version: Arc::clone(&m.version),
                                }
                            })
                            .collect();
                        session.give_container(&mut scored);
                    }
                }
                // Forget models that no pending or future complaint can use: everything before
                // the newest production model at or below the lowest time still possible.
                let lowest = [
                    stash.first().cloned(),
                    complaint_frontier.frontier().first().cloned(),
                    model_frontier.frontier().first().cloned(),
                ]
                .into_iter()
                .flatten()
                .min();
                if let Some(low) = lowest {
                    if let Some(i) = live
                        .iter()
                        .rposition(|m| m.time <= low && m.role == ModelRole::Production)
                    {
                        live.drain(..i);
                    }
                }
            }
        })
    }
}
