//! `score` (complaints + a broadcast stream of model versions → predictions) and `featurize`.
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
//!     .map(|p| (p.complaint_id(), p.model_version)).collect();
//! by_version.sort();
//! assert_eq!(by_version, [(1, "v1".to_string()), (2, "v2".to_string())]);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use complaintflow_datasets::split::hash_unit;
use complaintflow_models::{FittedPipeline, Model, SparseFeatures};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::record::{Parsed, Prediction};

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
    role: ModelRole,
}

type Pick<'a> = (Option<&'a Arc<Model>>, Option<(&'a Arc<Model>, f64)>);

/// (production, candidate) for time `t`: the newest production model with time ≤ t, and the
/// newest candidate at or after it.
fn models_at<'a, T: Timestamp + TotalOrder>(live: &'a [Live<T>], t: &T) -> Pick<'a> {
    let mut prod = None;
    let mut cand = None;
    for m in live.iter().filter(|m| m.time <= *t) {
        match m.role {
            ModelRole::Production => {
                prod = Some(&m.model);
                cand = None;
            }
            ModelRole::Candidate { fraction } => cand = Some((&m.model, fraction)),
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
            let mut stash: BTreeMap<T, (Capability<T>, Vec<Parsed>)> = BTreeMap::new();
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
                                model: Arc::new(u.model),
                                role: u.role,
                            });
                        }
                    }
                });
                live.sort_by(|a, b| a.time.cmp(&b.time));
                complaints.for_each_stamp(|cap, data| {
                    let Some(t) = cap.least().cloned() else { return };
                    if !stash.contains_key(&t) {
                        let Some(c) = cap.retain_least(0) else { return };
                        stash.insert(t.clone(), (c, Vec::new()));
                    }
                    if let Some((_, recs)) = stash.get_mut(&t) {
                        for batch in data {
                            recs.append(batch);
                        }
                    }
                });
                while let Some(entry) = stash.first_entry() {
                    if model_frontier.less_equal(entry.key()) {
                        break; // a model for this epoch may still arrive
                    }
                    let (prod, cand) = models_at(&live, entry.key());
                    let Some(prod) = prod else {
                        if !warned_no_model {
                            tracing::error!(time = ?entry.key(), "score: no production model yet; complaints are held");
                            warned_no_model = true;
                        }
                        break;
                    };
                    let (cap, recs) = entry.remove();
                    let mut session = output.session(&cap);
                    for p in recs {
                        let m = match cand {
                            Some((c, f)) if ab_bucket(p.complaint.complaint_id) < f => c,
                            _ => prod,
                        };
                        let score = m.score(&p.complaint, &mut buf);
                        session.give(Prediction {
                            parsed: p,
                            score,
                            predicted_success: m.predict(score),
                            model_version: m.version.clone(),
                        });
                    }
                }
                // Forget models that no pending or future complaint can use: everything before
                // the newest production model at or below the lowest time still possible.
                let lowest = [
                    stash.keys().next().cloned(),
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

/// A complaint's feature vector (for user operators; `score` featurizes internally with each
/// model's own pipeline, so that a model swap also swaps the pipeline).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// The complaint id.
    pub complaint_id: u64,
    /// Sorted feature indices.
    pub indices: Vec<u32>,
    /// Values, aligned with `indices`.
    pub values: Vec<f32>,
}

/// `featurize`: complaints → sparse feature vectors with one fitted pipeline.
pub trait Featurize<'s, T: Timestamp> {
    /// Transforms each complaint with `pipeline` (the same code as batch training).
    ///
    /// ```
    /// use complaintflow_operators::prelude::*;
    /// use complaintflow_operators::record::Origin;
    /// use complaintflow_datasets::ValidationOptions;
    /// use complaintflow_models::Model;
    /// use timely::dataflow::operators::{ToStream, Inspect};
    /// let model: Model = serde_json::from_str(include_str!("../tests/fixtures/tiny-model.json")).unwrap();
    /// timely::example(move |scope| {
    ///     let raw = vec![RawInput::new(br#"{"complaint_id":"3","date_received":"2020-01-02"}"#.to_vec(), Origin::file("x", 0))];
    ///     let (parsed, _) = raw.to_stream(scope).container::<Vec<_>>().parse_complaints(&ValidationOptions::default());
    ///     parsed.featurize(&model.pipeline).inspect(|f| assert_eq!(f.complaint_id, 3));
    /// });
    /// ```
    fn featurize(self, pipeline: &FittedPipeline) -> Stream<'s, T, Vec<Features>>;
}

impl<'s, T: Timestamp> Featurize<'s, T> for Stream<'s, T, Vec<Parsed>> {
    fn featurize(self, pipeline: &FittedPipeline) -> Stream<'s, T, Vec<Features>> {
        let p = pipeline.clone();
        let mut buf = SparseFeatures::new();
        self.map(move |x: Parsed| {
            p.transform(&x.complaint, &mut buf);
            Features {
                complaint_id: x.complaint.complaint_id.0,
                indices: buf.indices().to_vec(),
                values: buf.values().to_vec(),
            }
        })
    }
}
