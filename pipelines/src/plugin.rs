//! Plug-ins: the interfaces every source, sink and user operator of the engine implements.
//!
//! The engine's graph is fixed in the middle (`parse → dedup → score → decide → publish →
//! aggregates`) and open at both ends and after `decide`:
//!
//! ```text
//! Source ─► parse ─► dedup ─► score ─► decide ─► [DecisionOperator …] ─► publish ─┬─► Sink …
//!                                                                                  └─► aggregates ─► Sink …
//! ```
//!
//! - a [`Source`] builds this worker's part of the input (file, replay, Kafka, yours);
//! - a [`DecisionOperator`] rewrites or watches the decisions before they are published;
//! - a [`Sink`] attaches to the published [`EngineOutputs`] and returns acknowledgement
//!   streams: the engine counts an epoch complete (checkpoints it, commits source offsets)
//!   only once every sink's acknowledgement frontier has passed it.
//!
//! The built-in plug-ins are registered by URI scheme in [`crate::registry`]; a library user
//! passes their own to [`EngineBuilder`](crate::EngineBuilder) without editing any engine file.
//!
//! Contract for every `build`: it runs on every worker, in the same order everywhere (timely
//! requires the same dataflow on every worker); it must not block; what cannot work must be
//! found by `check`, which runs once before any worker starts.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use complaintflow_datasets::ValidationOptions;
use complaintflow_operators::publish::SharedDecision;
use complaintflow_operators::record::{DeadLetter, RawInput};
use complaintflow_operators::{Decision, SourcePolicy};
use timely::dataflow::{ProbeHandle, Scope, Stream};

use crate::aggregate::AggregateChange;

/// What a source gets when it is built on a worker.
#[derive(Clone)]
pub struct SourceContext {
    /// Epoch cutting and pacing (from the engine configuration).
    pub policy: SourcePolicy,
    /// Record validation options (e.g. `max_record_bytes`).
    pub validation: ValidationOptions,
    /// Set when the engine stops: the source must drop its capability at its next
    /// activation (after emitting what it has read).
    pub stop: Arc<AtomicBool>,
    /// The first epoch to use: 0, or the resumed checkpoint's epoch + 1 (epochs keep growing
    /// across restarts).
    pub first_epoch: u64,
    /// Where to resume (from the checkpoint): source → partition → next offset to read;
    /// empty without a checkpoint.
    pub start_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The engine's completion probe (epochs before its frontier are complete at every
    /// output): a source may grow its epochs while the graph is behind
    /// ([`SourceControl::progress`](complaintflow_operators::SourceControl)).
    pub progress: ProbeHandle<u64>,
}

/// A source of raw records. The engine learns everything else from the stream itself: its
/// frontier says which epochs are closed and when the source has finished (empty frontier).
pub trait Source: Send + Sync + 'static {
    /// A short description for logs (`kafka:complaints@localhost:9092`).
    fn describe(&self) -> String;

    /// Checks the source before any worker starts (the file exists, the topic exists), with
    /// an error that names the thing and the fix. Default: nothing to check.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Builds this worker's part of the source.
    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        ctx: &SourceContext,
    ) -> Stream<'s, u64, Vec<RawInput>>;

    /// Whether the source can resume from positions: every record's
    /// [`Origin`](complaintflow_operators::record::Origin) is `(source, partition, offset)`
    /// with offsets growing per partition, and it starts each partition at
    /// [`SourceContext::start_offsets`]. Only then does the engine checkpoint. Default `false`.
    fn resumable(&self) -> bool {
        false
    }

    /// Called on the first worker of every process when every output of every epoch
    /// `<= epoch` is durable (e.g. commit offsets to a consumer group). Default: nothing.
    fn on_durable(&self, epoch: u64) {
        let _ = epoch;
    }

    /// Records behind the head of the input, for the metrics (`None`: unknown). Default `None`.
    fn lag(&self) -> Option<i64> {
        None
    }

    /// A failure that ended the source (e.g. the topic was deleted); the engine stops and
    /// `join` returns it. Default `None`.
    fn fatal(&self) -> Option<String> {
        None
    }

    /// Whether everything the source can read now has been read (`run --until-idle`):
    /// `None` for a source without the notion (files end by themselves). May block briefly
    /// (it is called from a watcher thread, never from a worker). Default `None`.
    fn caught_up(&self) -> Option<Result<bool, String>> {
        None
    }
}

/// The output streams of the engine on one worker, for a [`Sink`]. Cloning a stream (to use
/// it in several operators) is cheap, and so is the fan-out of `decisions`: its records are
/// shared pointers.
pub struct EngineOutputs<'s> {
    /// Every decision, serialized once (data-parallel: each worker holds its share).
    pub decisions: Stream<'s, u64, Vec<SharedDecision>>,
    /// Every dead letter (parse and validation errors, duplicates), with the original bytes.
    pub dead_letters: Stream<'s, u64, Vec<DeadLetter>>,
    /// The new totals of every aggregate key that changed, per complete epoch
    /// (data-parallel: each worker emits the keys it owns).
    pub aggregate_changes: Stream<'s, u64, Vec<AggregateChange>>,
}

/// A sink of the engine's outputs.
pub trait Sink: Send + Sync + 'static {
    /// A short description for logs (`kafka:complaints-predictions@localhost:9092`).
    fn describe(&self) -> String;

    /// Checks the sink before any worker starts (the broker is reachable, the database
    /// accepts the connection), so that `build` does not fail on some workers only. Default:
    /// nothing to check.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Attaches the sink on one worker and returns its acknowledgement streams: the frontier
    /// of each must pass an epoch only once everything of that epoch is durable. Return no
    /// stream for a sink without durability (it then never holds back a checkpoint). An
    /// error stops the engine (no checkpoint is written after it).
    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        outputs: &EngineOutputs<'s>,
    ) -> Result<Vec<Stream<'s, u64, Vec<u64>>>, String>;

    /// What the sink did, one line per output, for the end of a run (`kafka:complaints-predictions:
    /// 1000 delivered, …`). Default: nothing.
    fn report(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A user operator on the decision stream, between `decide` and `publish`: it may rewrite
/// decisions (raise a priority, add a reason, route to another queue), drop none of them
/// silently, and start branches of its own (alerts, side outputs).
pub trait DecisionOperator: Send + Sync + 'static {
    /// A short description for logs.
    fn describe(&self) -> String;

    /// Builds the operator on one worker: decisions in, decisions out.
    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        decisions: Stream<'s, u64, Vec<Decision>>,
    ) -> Stream<'s, u64, Vec<Decision>>;
}

macro_rules! describe_debug {
    ($($t:ident),*) => {$(
        impl std::fmt::Debug for dyn $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.describe())
            }
        }
    )*};
}
describe_debug!(Source, Sink, DecisionOperator);
