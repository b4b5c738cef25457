//! # complaintflow-pipelines
//!
//! The complaintflow dataflow graph on timely + differential:
//!
//! ```text
//! source ─ parse_complaints ─ dedup_by_id ─ score(models) ─ decide ─┬─ predictions.jsonl  (global worker 0)
//!              │                   │            ▲                   ├─ recent decisions, counters
//!              └───── dead letters ┴─ dlq.jsonl │ model versions    └─ differential count_total per
//!                                               │                      (dimension, key) → AggregateView
//! retrain input ─ parse_complaints ─ gather on worker 0 ─ train (std::thread) ─ registry ─┘
//! ```
//!
//! [`start`] runs it on `workers` threads (and `processes` processes, timely cluster mode) on
//! a background thread and returns an [`EngineHandle`]: the live [`EngineState`] (aggregates
//! complete as of an epoch, recent decisions, counters, epoch latencies, serving models),
//! retraining, shutdown and join.
//!
//! Every output (predictions, dead letters, aggregate changes, counters) is routed to global
//! worker 0 (process 0, thread 0): one predictions file holds every prediction exactly once
//! and process 0's [`EngineState`] is complete. What crosses is already reduced where it
//! was made: predictions as JSON Lines bytes plus a summary per batch
//! ([`outputs::DecisionDigest`]), aggregates as per-epoch partial sums; the engine bench
//! measures the cost.
#![warn(missing_docs)]

pub mod aggregate;
pub mod checkpoint;
pub mod contract;
pub mod engine;
pub mod files;
pub mod introspect;
pub mod kafka;
pub mod live;
pub mod plugin;
pub mod plugins;
pub mod quality;
pub mod sinks;
pub mod sources;
pub mod state;

pub use checkpoint::CheckpointConfig;
pub use engine::{
    start, Control, Engine, EngineBuilder, EngineClient, EngineConfig, EngineError, EngineHandle,
    ModelFeed, RetrainRequest, RunSummary, SourceSpec,
};
pub use files::JsonlFiles;
pub use plugin::{DecisionOperator, EngineOutputs, Sink, Source, SourceContext};
pub use plugins::{PluginEnv, PluginTable};
pub use sources::{FileSource, ReplaySource};
pub use state::{
    AggregateAnswer, AggregateRow, AggregateView, Dimension, EngineState, MetricsSnapshot,
    ServingModel, Totals,
};
