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
//! One operator per module, each an extension trait with a runnable example (as in timely's
//! `dataflow/operators/core/`):
//!
//! | module | what |
//! |---|---|
//! | [`record`] | the records between operators: [`RawInput`], [`Parsed`], [`Prediction`], [`DeadLetter`] |
//! | [`parse`] | [`ParseComplaints`]: bytes → complaints, typed dead letters |
//! | [`outcome`] | [`ParseOutcomes`](outcome::ParseOutcomes): outcome records → labels, typed dead letters |
//! | [`dedup`] | [`DedupById`]: repeated ids → dead letters with the original bytes |
//! | [`featurize`] | [`Featurize`]: complaints → sparse features |
//! | [`score`] | [`Score`] with [`ModelUpdate`] / [`ModelRole`]: model stream, A/B split |
//! | [`rules`] | [`DecisionRules`], [`CompiledRules`], [`decide`](rules::decide), the [`Decision`] output contract |
//! | [`decide`] | [`Decide`]: predictions → decisions |
//! | [`publish`] | [`Publish`]: decisions → [`SharedDecision`]s, serialized once for every sink |
//! | [`rate_limit`] | [`RateLimit`], [`Pacer`](rate_limit::Pacer) |
//! | [`tap`] | [`Tap`]: pass-through with a per-batch summary (counting, positions) |
//! | [`seen_log`] | [`SeenLog`](seen_log::SeenLog): the dedup seen-set on disk, for restarts from a checkpoint |
//! | [`stash`] | [`Stash`]: per-epoch state until a frontier passes (used by every holding operator) |
//! | [`source`] | [`file_source`], [`replay_source`], [`iter_source`], [`EpochCutter`] with [`SourcePolicy`] |
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
//!     let raw = file_source(scope, complaintflow_datasets::bundled_sample_path(), Format::Auto,
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
//! See `operators/examples/custom_operator.rs` for adding your own operator to the graph
//! that `complaintflow run` builds.
//!
//! [`Stream`]: timely::dataflow::Stream
#![warn(missing_docs)]

pub mod batches;
pub mod decide;
pub mod dedup;
pub mod featurize;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod outcome;
pub mod parse;
pub mod publish;
pub mod rate_limit;
pub mod record;
pub mod rules;
pub mod score;
pub mod seen_log;
pub mod sink;
pub mod source;
pub mod stash;
pub mod tap;

pub use decide::{AsEpoch, Decide};
pub use dedup::DedupById;
pub use featurize::{Features, Featurize};
pub use parse::ParseComplaints;
pub use publish::{Publish, Published, SharedDecision};
pub use rate_limit::RateLimit;
pub use record::{DeadLetter, Origin, Parsed, Prediction, RawInput};
pub use rules::{CompiledRules, Decision, DecisionRules, InvalidRules};
pub use score::{ModelRole, ModelUpdate, Score};
pub use sink::SinkJsonl;
pub use source::{
    file_source, iter_source, replay_source, EpochCutter, FileSplit, ReplaySpec, SourceControl,
    SourcePolicy,
};
pub use stash::Stash;
pub use tap::Tap;

/// Everything needed to write a complaint dataflow: `use complaintflow_operators::prelude::*;`.
pub mod prelude {
    pub use crate::decide::{AsEpoch, Decide};
    pub use crate::dedup::DedupById;
    pub use crate::featurize::{Features, Featurize};
    pub use crate::outcome::{LabelledOutcome, ParseOutcomes};
    pub use crate::parse::ParseComplaints;
    pub use crate::publish::{Publish, Published, SharedDecision};
    pub use crate::rate_limit::RateLimit;
    pub use crate::record::{DeadLetter, Origin, Parsed, Prediction, RawInput};
    pub use crate::rules::{Decision, DecisionRules};
    pub use crate::score::{ModelRole, ModelUpdate, Score};
    pub use crate::sink::SinkJsonl;
    pub use crate::source::{
        file_source, iter_source, replay_source, FileSplit, ReplaySpec, SourceControl, SourcePolicy,
    };
    pub use crate::stash::Stash;
    pub use crate::tap::Tap;
}
