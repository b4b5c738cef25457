//! # complaintflow-operators
//!
//! Timely-dataflow operators for complaint streams, as extension traits on [`Stream`]s so a
//! dataflow reads as a chain:
//!
//! ```text
//! file_source(scope, ..)                 // RawInput: bytes + origin, cut into epochs
//!     .parse_complaints(&validation)     // → (Parsed, DeadLetter)    typed error kinds
//!     .dedup_by_id()                     // → (Parsed, DeadLetter)    keyed by complaint_id
//!     .score(models)                     // → Prediction              model stream, A/B split
//!     .decide(&rules)                    // → Decision                escalate/priority/queue/reasons
//!     .sink_jsonl(path, ..)              // one JSON Lines file, flushed per epoch
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`record`] | the records between operators: [`RawInput`], [`Parsed`], [`Prediction`], [`DeadLetter`] |
//! | [`parse`] | [`ParseComplaints`], [`DedupById`] |
//! | [`score`] | [`Score`] with [`ModelUpdate`] / [`ModelRole`], [`Featurize`] |
//! | [`decision`] | [`DecisionRules`], [`decide`](decision::decide), [`Decide`], the [`Decision`] output contract |
//! | [`rate`] | [`RateLimit`], [`Pacer`](rate::Pacer) |
//! | [`source`] | [`file_source`], [`replay_source`], [`iter_source`] with [`SourcePolicy`] |
//! | [`sink`] | [`SinkJsonl`] |
//!
//! A full chain on a real sample (with a small real model):
//!
//! ```
//! use std::sync::{atomic::AtomicBool, Arc};
//! use complaintflow_operators::prelude::*;
//! use complaintflow_datasets::{replay::SystemClock, Format, ValidationOptions};
//! use complaintflow_models::Model;
//! use timely::dataflow::operators::{Capture, Input, capture::Event};
//!
//! let model: Model = serde_json::from_str(include_str!("../tests/fixtures/tiny-model.json")).unwrap();
//! let (decisions, dead) = timely::example(move |scope| {
//!     let (mut models, model_stream) = scope.new_input::<Vec<ModelUpdate>>();
//!     models.send(ModelUpdate { model, role: ModelRole::Production });
//!     let (raw, _epoch) = file_source(scope, complaintflow_datasets::bundled_sample_path(), Format::Auto,
//!         1 << 20, SourcePolicy::default(), SystemClock::default(),
//!         Arc::new(AtomicBool::new(false)));
//!     let (parsed, dead) = raw.parse_complaints(&ValidationOptions::default());
//!     let decisions = parsed.score(model_stream).decide(&DecisionRules::default());
//!     (decisions.capture(), dead.capture())
//! });
//! let count = |e: Event<u64, Vec<_>>| match e { Event::Messages(_, v) => v.len(), _ => 0 };
//! let n: usize = decisions.try_iter().map(count).sum();
//! let d: usize = dead.try_iter().map(|e| match e { Event::Messages(_, v) => v.len(), _ => 0 }).sum();
//! assert_eq!(n + d, 4303); // every record of the sample is decided or dead-lettered
//! ```
//!
//! See `examples/custom_operator.rs` for adding your own operator to the chain.
//!
//! [`Stream`]: timely::dataflow::Stream
#![warn(missing_docs)]

pub mod decision;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod parse;
pub mod rate;
pub mod record;
pub mod score;
pub mod sink;
pub mod source;

pub use decision::{AsEpoch, CompiledRules, Decide, Decision, DecisionRules, InvalidRules};
pub use parse::{DedupById, ParseComplaints};
pub use rate::RateLimit;
pub use record::{DeadLetter, Origin, Parsed, Prediction, RawInput};
pub use score::{Features, Featurize, ModelRole, ModelUpdate, Score};
pub use sink::SinkJsonl;
pub use source::{
    file_source, iter_source, replay_source, FileSplit, ReplaySpec, SourceEpoch, SourcePolicy,
};

/// Everything needed to write a complaint dataflow: `use complaintflow_operators::prelude::*;`.
pub mod prelude {
    pub use crate::decision::{AsEpoch, Decide, Decision, DecisionRules};
    pub use crate::parse::{DedupById, ParseComplaints};
    pub use crate::rate::RateLimit;
    pub use crate::record::{DeadLetter, Origin, Parsed, Prediction, RawInput};
    pub use crate::score::{Features, Featurize, ModelRole, ModelUpdate, Score};
    pub use crate::sink::SinkJsonl;
    pub use crate::source::{
        file_source, iter_source, replay_source, FileSplit, ReplaySpec, SourcePolicy,
    };
}
