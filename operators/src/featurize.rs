//! `featurize`: complaints → sparse feature vectors, with the same code as batch training.

use complaintflow_models::{FittedPipeline, SparseFeatures};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::Stream;
use timely::progress::Timestamp;

use crate::record::Parsed;

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
