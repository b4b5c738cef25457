//! The engine: builds the dataflow on every worker, runs it on background threads, and
//! exposes the live [`EngineState`] and a control channel (retrain, shutdown).
//!
//! Three dataflows run on every worker (timely requires the same dataflows, in the same
//! order, everywhere):
//!
//! 1. **control** — an input fed by global worker 0 and broadcast to every worker of every
//!    process: `Stop` makes every source stop at its next activation (cluster-wide shutdown).
//! 2. **main** — source → `parse_complaints` → `dedup_by_id` → `score(models)` → `decide` →
//!    predictions JSON Lines, dead letters JSON Lines, differential aggregates, counters.
//!    The `models` input is fed by global worker 0 (the initial model, A/B candidates,
//!    retrained versions) and advanced by every worker to its source's epoch.
//! 3. **retrain** — global worker 0 reads a historical file into an input, the same
//!    `parse_complaints` operator validates it, complaints are gathered on worker 0, and once
//!    the request's epoch is complete a `std::thread` trains (`complaintflow_models::train`),
//!    registers the version and hands it back through a channel the worker polls between
//!    steps; the worker sends it into the `models` input at its current epoch, so `score`
//!    switches at that epoch on every worker. Nothing restarts; no record is lost.
//!
//! **Sinks and checkpoints.** [`EngineConfig::sinks`] attaches extra sinks (e.g. Kafka
//! topics, [`crate::kafka::KafkaSinks`]) to the decisions, dead letters and aggregate
//! changes on every worker; the engine probes their acknowledgement streams, so an epoch is
//! complete only once every sink has written it durably. With a
//! [`resumable`](SourceFactory::resumable) source (Kafka) and [`EngineConfig::checkpoints`],
//! global worker 0 checkpoints the next offset of every partition and the aggregate totals
//! of the newest complete epoch (see [`crate::checkpoint`]), and [`start`] resumes from the
//! newest checkpoint: sources start at its offsets, its totals seed the aggregates.
//!
//! A worker never blocks: it runs `step_or_park(1 ms)` and polls channels with `try_recv`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use complaintflow_datasets::replay::{Rate, SystemClock};
use complaintflow_datasets::{Complaint, Format, RawRecords, ValidationOptions};
use complaintflow_models::{DataInfo, Model, Registry, TrainConfig};
use complaintflow_operators::kafka::CheckpointStore;
use complaintflow_operators::prelude::*;
use complaintflow_operators::source::{file_source, replay_source, SourceEpoch};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Concat, Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle, Scope, Stream};
use timely::CommunicationConfig;

use crate::aggregate::{
    aggregate_decisions, totals_from_json, AggregateChange, AggregateLedger, Seed,
};
use crate::checkpoint::{track_positions, CheckpointConfig, Checkpointer, PositionLedger};
use crate::outputs::sink_predictions;
use crate::state::{lock, EngineState, ServingModel};

/// Engine configuration. [`EngineConfig::new`] gives the documented defaults.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads in this process. Default 1. Use at most one per core: timely slows
    /// down ×30 with more busy threads than cores (`start` logs a warning).
    pub workers: usize,
    /// Processes in the cluster (1 = this process alone). Default 1.
    pub processes: usize,
    /// This process's index, `0..processes`. Default 0.
    pub process: usize,
    /// `host:port` of every process, entry i = process i (a hostfile's lines). Empty
    /// (default): `127.0.0.1:2101+i`.
    pub addresses: Vec<String>,
    /// Epochs (`max_records_per_epoch`, `trigger_interval`), rate, read batch and file
    /// split of the source.
    pub policy: SourcePolicy,
    /// Record validation.
    pub validation: ValidationOptions,
    /// Decision rules.
    pub decision: DecisionRules,
    /// Predictions JSON Lines file (written by global worker 0), or none.
    pub predictions_path: Option<PathBuf>,
    /// Dead letters JSON Lines file (written by global worker 0), or none.
    pub dead_letters_path: Option<PathBuf>,
    /// Decisions kept for `/api/predictions/recent`. Default 1,000.
    pub recent_capacity: usize,
    /// Exit when the source is exhausted (and no retraining is running); otherwise keep
    /// running until [`EngineHandle::shutdown`]. Default `false`.
    pub once: bool,
    /// Model registry (retrained versions are registered there; A/B candidates loaded).
    pub registry_dir: PathBuf,
    /// Default training configuration of retraining requests.
    pub train: TrainConfig,
    /// Sinks attached to the decisions, dead letters and aggregate changes (e.g. Kafka
    /// topics), besides the JSON Lines files. Their acknowledgement streams are probed: an
    /// epoch counts as complete (and may be checkpointed) only once every sink has written
    /// it durably. Default none.
    pub sinks: Option<Arc<dyn SinkFactory>>,
    /// Checkpoints and resume (only with a source that is
    /// [`resumable`](SourceFactory::resumable)). Default none.
    pub checkpoints: Option<CheckpointConfig>,
}

impl EngineConfig {
    /// Defaults, with the registry at `registry_dir`.
    ///
    /// ```
    /// let cfg = complaintflow_pipelines::EngineConfig::new("state/registry");
    /// assert_eq!((cfg.workers, cfg.processes, cfg.policy.max_records_per_epoch), (1, 1, 10_000));
    /// ```
    pub fn new(registry_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            workers: 1,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
            policy: SourcePolicy::default(),
            validation: ValidationOptions::default(),
            decision: DecisionRules::default(),
            predictions_path: None,
            dead_letters_path: None,
            recent_capacity: 1_000,
            once: false,
            registry_dir: registry_dir.into(),
            train: TrainConfig::default(),
            sinks: None,
            checkpoints: None,
        }
    }
}

/// What a custom source gets when it is built on a worker.
pub struct SourceContext {
    /// Epoch cutting and pacing (from the engine configuration).
    pub policy: SourcePolicy,
    /// Record validation options (e.g. `max_record_bytes`).
    pub validation: ValidationOptions,
    /// Set when the engine stops: the source must drop its capability at its next
    /// activation.
    pub stop: Arc<AtomicBool>,
    /// The lowest epoch not yet complete at every output (predictions, dead letters,
    /// aggregates) on every worker: everything below is durably written. A Kafka source
    /// commits the offsets of epochs below it. Updated by the worker between steps.
    pub completed_below: Rc<Cell<u64>>,
    /// The first epoch to use: 0, or the resumed checkpoint's epoch + 1 (epochs keep growing
    /// across restarts).
    pub first_epoch: u64,
    /// Where to resume (from the checkpoint): source → partition → next offset to read;
    /// empty without a checkpoint.
    pub start_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// A source the engine does not know (e.g. Kafka): builds this worker's part of it.
pub trait SourceFactory: Send + Sync + 'static {
    /// A short description for logs (`kafka:complaints@localhost:9092`).
    fn describe(&self) -> String;
    /// Builds the source on one worker: the stream of raw records and the cell through
    /// which it reports its current epoch (`None` once exhausted).
    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        ctx: &SourceContext,
    ) -> (Stream<'s, u64, Vec<RawInput>>, SourceEpoch);

    /// Whether the source can resume from positions: every record's
    /// [`Origin`](complaintflow_operators::record::Origin) is `(source, partition, offset)`
    /// with offsets growing per partition, and it starts each partition at
    /// [`SourceContext::start_offsets`]. Only then does the engine checkpoint. Default `false`.
    fn resumable(&self) -> bool {
        false
    }

    /// Called on the first worker of every process, between steps, when every output of
    /// every epoch `<= epoch` is durable (e.g. commit offsets to a consumer group). Default:
    /// nothing.
    fn on_durable(&self, epoch: u64) {
        let _ = epoch;
    }

    /// Records behind the head of the input, for the metrics (`None`: unknown or no such
    /// notion). Default `None`.
    fn lag(&self) -> Option<i64> {
        None
    }

    /// A failure that ended the source (e.g. the topic does not exist); the engine stops and
    /// [`EngineHandle::join`] returns it. Default `None`.
    fn fatal(&self) -> Option<String> {
        None
    }
}

/// The output streams of the main dataflow on one worker, for a [`SinkFactory`].
pub struct EngineOutputs<'s> {
    /// Every decision (data-parallel: each worker holds its share).
    pub decisions: Stream<'s, u64, Vec<Decision>>,
    /// Every dead letter (parse and validation errors, duplicates).
    pub dead_letters: Stream<'s, u64, Vec<DeadLetter>>,
    /// The new totals of every aggregate key that changed, per complete epoch.
    pub aggregate_changes: Stream<'s, u64, Vec<AggregateChange>>,
}

/// Extra sinks (e.g. Kafka topics) the engine attaches to its outputs on every worker.
pub trait SinkFactory: Send + Sync + 'static {
    /// A short description for logs (`kafka:complaints-predictions,…@localhost:9092`).
    fn describe(&self) -> String;
    /// Checks the configuration before the workers start (e.g. that the producers can be
    /// created), so that [`build`](SinkFactory::build) does not fail on some workers only:
    /// every worker must build the same operators. Default: nothing to check.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
    /// Attaches the sinks on one worker and returns their acknowledgement streams: the
    /// frontier of each must pass an epoch only once everything of that epoch is durable.
    /// The engine probes them. An error stops the engine (no checkpoint is written after).
    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        outputs: EngineOutputs<'s>,
    ) -> Result<Vec<Stream<'s, u64, Vec<u64>>>, String>;
}

impl std::fmt::Debug for dyn SinkFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Where complaints come from.
#[derive(Clone)]
pub enum SourceSpec {
    /// A file in any supported format, as fast as allowed by `EngineConfig::rate`.
    File {
        /// Path.
        path: PathBuf,
        /// Format (`Auto` to detect).
        format: Format,
    },
    /// A replay of a file's records, or of `resample` resampled copies of its complaints,
    /// at `rate`.
    Replay {
        /// Path.
        path: PathBuf,
        /// Format.
        format: Format,
        /// Rate over all workers.
        rate: Rate,
        /// `Some(n)`: emit `n` resampled copies (fresh synthetic ids) instead of the file.
        resample: Option<u64>,
        /// Resampler seed.
        seed: u64,
    },
    /// A source plugged in from outside this crate.
    Custom(Arc<dyn SourceFactory>),
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::File { path, format } => write!(f, "file:{} ({format})", path.display()),
            SourceSpec::Replay {
                path,
                rate,
                resample,
                ..
            } => write!(
                f,
                "replay:{} at {rate} (resample {resample:?})",
                path.display()
            ),
            SourceSpec::Custom(c) => write!(f, "{}", c.describe()),
        }
    }
}

/// A request to retrain from a historical file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrainRequest {
    /// The file (read by process 0).
    pub path: PathBuf,
    /// Its format.
    #[serde(default)]
    pub format: Format,
    /// Training configuration; `None` = the engine's.
    #[serde(default)]
    pub train_config: Option<TrainConfig>,
    /// `None`: the new version is promoted and replaces production. `Some(f)`: it stays a
    /// candidate and scores the share `f` of complaints (A/B).
    #[serde(default)]
    pub ab_fraction: Option<f64>,
}

/// Messages to a running engine (through [`EngineHandle::control`]).
#[derive(Debug)]
pub enum Control {
    /// Retrain; the new version is registered and swapped in.
    Retrain(RetrainRequest),
    /// Start an A/B test: registry version `version` scores the share `fraction` of
    /// complaints from the current epoch on (until a new production model).
    AbTest {
        /// Registry version of the candidate.
        version: String,
        /// Share of complaints, 0–1.
        fraction: f64,
    },
    /// Stop every process: finish the open epoch, flush, exit.
    Shutdown,
}

/// Engine errors.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad configuration.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// Timely could not start (e.g. cluster peers unreachable).
    #[error("the dataflow could not start: {0}")]
    Start(String),
    /// A worker failed.
    #[error("a dataflow worker failed: {0}")]
    Worker(String),
    /// The engine has stopped (or this is not process 0).
    #[error("the engine cannot take this request: {0}")]
    Unavailable(String),
    /// The source failed (e.g. its topic does not exist).
    #[error("the source failed: {0}")]
    Source(String),
    /// A sink could not be set up.
    #[error("an output sink failed: {0}")]
    Sink(String),
}

/// What a finished run did (process 0 sees every output; other processes see none).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunSummary {
    /// Records read by the sources.
    pub records_in: u64,
    /// Records that parsed and validated.
    pub parsed: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Dead letters by kind.
    pub dead_letters_by_kind: BTreeMap<String, u64>,
    /// Decisions written.
    pub predictions: u64,
    /// Escalations.
    pub escalations: u64,
    /// Decisions by model version.
    pub by_model: BTreeMap<String, u64>,
    /// Epochs completed.
    pub epochs: u64,
    /// Median epoch latency, seconds.
    pub epoch_latency_p50_seconds: Option<f64>,
    /// 99th percentile epoch latency, seconds.
    pub epoch_latency_p99_seconds: Option<f64>,
    /// Wall time, seconds.
    pub elapsed_secs: f64,
    /// Worker threads per process actually used.
    pub workers: usize,
}

/// A running engine.
pub struct EngineHandle {
    state: Arc<EngineState>,
    control: Mutex<Sender<Control>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), EngineError>>,
    process: usize,
    fatal: Fatal,
    resumed: Option<u64>,
}

impl EngineHandle {
    /// The live state (aggregates, recent decisions, counters, models).
    pub fn state(&self) -> Arc<EngineState> {
        Arc::clone(&self.state)
    }

    /// A clonable, `Send + Sync` client of this engine (state, retraining, A/B tests,
    /// shutdown) for the HTTP layer and other threads; [`join`](Self::join) stays with the
    /// handle.
    pub fn client(&self) -> EngineClient {
        EngineClient {
            state: Arc::clone(&self.state),
            control: Arc::new(Mutex::new(self.control())),
            stop: Arc::clone(&self.stop),
            process: self.process,
        }
    }

    /// Asks the engine to retrain from `path` with the engine's training configuration and
    /// promote the result (process 0 only). See [`request_retrain`](Self::request_retrain).
    pub fn retrain(&self, path: PathBuf, format: Format) -> Result<(), EngineError> {
        self.request_retrain(RetrainRequest {
            path,
            format,
            train_config: None,
            ab_fraction: None,
        })
    }

    /// Starts an A/B test with registry version `version` on the share `fraction` of
    /// complaints (process 0 only), from the epoch being read when the message arrives.
    pub fn start_ab_test(&self, version: &str, fraction: f64) -> Result<(), EngineError> {
        validate_ab(self.process, fraction)?;
        self.send(Control::AbTest {
            version: version.to_string(),
            fraction,
        })
    }

    /// Asks the engine to retrain (process 0 only). Returns once the request is queued;
    /// progress shows in [`EngineState::retrain_log`] and [`EngineState::models`].
    pub fn request_retrain(&self, req: RetrainRequest) -> Result<(), EngineError> {
        validate_retrain(self.process, &req)?;
        self.send(Control::Retrain(req))
    }

    /// A clonable sender for control messages.
    pub fn control(&self) -> Sender<Control> {
        lock(&self.control).clone()
    }

    fn send(&self, msg: Control) -> Result<(), EngineError> {
        send(&self.control, msg)
    }

    /// Stops reading (on every process when called on process 0); the open epoch is
    /// finished and flushed, then the workers exit. Returns at once: call [`join`](Self::join).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.send(Control::Shutdown);
    }

    /// Whether the workers have exited.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// The epoch of the checkpoint this run resumed from, if any.
    pub fn resumed_from(&self) -> Option<u64> {
        self.resumed
    }

    /// A failure that is stopping the engine (source or sink), if any.
    pub fn failure(&self) -> Option<EngineError> {
        lock(&self.fatal).clone().map(FatalError::into_error)
    }

    /// Waits for the workers to exit (source exhausted with `once`, or after
    /// [`shutdown`](Self::shutdown)).
    pub fn join(self) -> Result<RunSummary, EngineError> {
        match self.thread.join() {
            Ok(r) => r?,
            Err(_) => return Err(EngineError::Worker("the engine thread panicked".into())),
        }
        if let Some(f) = lock(&self.fatal).clone() {
            return Err(f.into_error());
        }
        let m = self.state.snapshot();
        Ok(RunSummary {
            records_in: m.records_in,
            parsed: m.parsed,
            dead_letters: m.dead_letters,
            dead_letters_by_kind: m.dead_letters_by_kind,
            predictions: m.predictions,
            escalations: m.escalations,
            by_model: m.predictions_by_model,
            epochs: m.epochs,
            epoch_latency_p50_seconds: m.epoch_latency_p50_seconds,
            epoch_latency_p99_seconds: m.epoch_latency_p99_seconds,
            elapsed_secs: m.uptime_seconds,
            workers: m.workers,
        })
    }
}

/// A clonable client of a running engine: everything of [`EngineHandle`] but `join`.
#[derive(Clone)]
pub struct EngineClient {
    state: Arc<EngineState>,
    control: Arc<Mutex<Sender<Control>>>,
    stop: Arc<AtomicBool>,
    process: usize,
}

impl std::fmt::Debug for EngineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClient")
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl EngineClient {
    /// The live state.
    pub fn state(&self) -> Arc<EngineState> {
        Arc::clone(&self.state)
    }

    /// This process's index in the cluster.
    pub fn process(&self) -> usize {
        self.process
    }

    /// See [`EngineHandle::request_retrain`].
    pub fn request_retrain(&self, req: RetrainRequest) -> Result<(), EngineError> {
        validate_retrain(self.process, &req)?;
        send(&self.control, Control::Retrain(req))
    }

    /// See [`EngineHandle::start_ab_test`].
    pub fn start_ab_test(&self, version: &str, fraction: f64) -> Result<(), EngineError> {
        validate_ab(self.process, fraction)?;
        send(
            &self.control,
            Control::AbTest {
                version: version.to_string(),
                fraction,
            },
        )
    }

    /// See [`EngineHandle::shutdown`].
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = send(&self.control, Control::Shutdown);
    }
}

fn send(control: &Mutex<Sender<Control>>, msg: Control) -> Result<(), EngineError> {
    lock(control)
        .send(msg)
        .map_err(|_| EngineError::Unavailable("the engine has stopped".into()))
}

fn validate_ab(process: usize, fraction: f64) -> Result<(), EngineError> {
    if process != 0 {
        return Err(EngineError::Unavailable(
            "A/B tests are started on process 0".into(),
        ));
    }
    if !(0.0..=1.0).contains(&fraction) {
        return Err(EngineError::Config(format!(
            "A/B fraction {fraction}: must be in [0, 1]"
        )));
    }
    Ok(())
}

fn validate_retrain(process: usize, req: &RetrainRequest) -> Result<(), EngineError> {
    if process != 0 {
        return Err(EngineError::Unavailable(
            "retraining is requested on process 0".into(),
        ));
    }
    if !req.path.is_file() {
        return Err(EngineError::Config(format!(
            "retraining data {} is not a readable file",
            req.path.display()
        )));
    }
    if let Some(f) = req.ab_fraction {
        if !(0.0..=1.0).contains(&f) {
            return Err(EngineError::Config(format!(
                "ab_fraction = {f}: must be in [0, 1]"
            )));
        }
    }
    if let Some(c) = &req.train_config {
        c.validate()
            .map_err(|e| EngineError::Config(e.to_string()))?;
    }
    Ok(())
}

fn communication(cfg: &EngineConfig, workers: usize) -> Result<CommunicationConfig, EngineError> {
    if cfg.processes <= 1 {
        return Ok(if workers == 1 {
            CommunicationConfig::Thread
        } else {
            CommunicationConfig::Process(workers)
        });
    }
    if cfg.process >= cfg.processes {
        return Err(EngineError::Config(format!(
            "process {} is out of range for {} processes (use 0..{})",
            cfg.process,
            cfg.processes,
            cfg.processes - 1
        )));
    }
    let addresses = if cfg.addresses.is_empty() {
        (0..cfg.processes)
            .map(|i| format!("127.0.0.1:{}", 2101 + i))
            .collect()
    } else {
        cfg.addresses.clone()
    };
    if addresses.len() != cfg.processes {
        return Err(EngineError::Config(format!(
            "the host list has {} addresses but there are {} processes: give one host:port per process",
            addresses.len(),
            cfg.processes
        )));
    }
    Ok(CommunicationConfig::Cluster {
        threads: workers,
        process: cfg.process,
        addresses,
        report: false,
        zerocopy: false,
    })
}

/// Starts the engine on background threads with `initial_model` as the production model
/// (process 0's is used; other processes may pass the same).
///
/// ```no_run
/// use complaintflow_pipelines::{start, EngineConfig, SourceSpec};
/// let registry = complaintflow_models::Registry::open("state/registry")?;
/// let model = registry.load_production()?;
/// let mut cfg = EngineConfig::new("state/registry");
/// cfg.once = true;
/// cfg.predictions_path = Some("state/predictions.jsonl".into());
/// let source = SourceSpec::File { path: complaintflow_datasets::bundled_sample_path(), format: Default::default() };
/// let engine = start(cfg, source, model)?;
/// let summary = engine.join()?;
/// println!("{} predictions", summary.predictions);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start(
    cfg: EngineConfig,
    source: SourceSpec,
    initial_model: Model,
) -> Result<EngineHandle, EngineError> {
    cfg.decision
        .validate()
        .map_err(|e| EngineError::Config(e.to_string()))?;
    initial_model
        .validate()
        .map_err(|e| EngineError::Config(format!("initial model: {e}")))?;
    match &source {
        SourceSpec::File { path, .. } | SourceSpec::Replay { path, .. } if !path.is_file() => {
            return Err(EngineError::Config(format!(
                "source file {} does not exist or is not a file",
                path.display()
            )));
        }
        _ => {}
    }
    if cfg.policy.max_records_per_epoch == 0 {
        return Err(EngineError::Config(
            "max_records_per_epoch must be at least 1".into(),
        ));
    }
    let workers = cfg.workers.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers > cores {
        tracing::warn!(
            workers,
            cores,
            "more worker threads than cores: timely slows down sharply when oversubscribed"
        );
    }
    let initial = vec![ModelUpdate {
        model: initial_model,
        role: ModelRole::Production,
    }];
    let communication = communication(&cfg, workers)?;
    let mut cfg = cfg;
    let resumable = matches!(&source, SourceSpec::Custom(f) if f.resumable());
    if cfg.checkpoints.is_some() && !resumable {
        tracing::warn!(source = ?source, "checkpoints are off: this source cannot resume from positions");
        cfg.checkpoints = None;
    }
    if let Some(s) = &cfg.sinks {
        s.check().map_err(EngineError::Sink)?;
    }
    let resume = Arc::new(read_resume(cfg.checkpoints.as_ref())?);
    let resumed = resume.epoch;
    let mut state = EngineState::new(cfg.recent_capacity);
    state.workers = workers;
    state.processes = cfg.processes.max(1);
    let state = Arc::new(state);
    if cfg.process == 0 {
        for u in &initial {
            state.note_model(serving(u, 0));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel::<Control>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let config = timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    };
    let process = cfg.process;
    let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
    let fatal: Fatal = Arc::new(Mutex::new(None));
    let fa = Arc::clone(&fatal);
    tracing::info!(source = ?source, sinks = ?cfg.sinks, workers, processes = cfg.processes, process,
        resumed_from = ?resumed, "engine starting");
    let thread = std::thread::Builder::new()
        .name("complaintflow-engine".into())
        .spawn(move || -> Result<(), EngineError> {
            let guards = timely::execute(config, move |worker| {
                let shared = Shared {
                    state: &st,
                    stop: &sp,
                    control: &rx,
                    resume: &resume,
                    fatal: &fa,
                };
                run_worker(worker, &cfg, &source, &initial, &shared);
            })
            .map_err(EngineError::Start)?;
            for r in guards.join() {
                r.map_err(EngineError::Worker)?;
            }
            Ok(())
        })
        .map_err(|e| EngineError::Start(e.to_string()))?;
    Ok(EngineHandle {
        state,
        control: Mutex::new(tx),
        stop,
        thread,
        process,
        fatal,
        resumed,
    })
}

/// Reads the newest complete checkpoint (when checkpoints and resume are on).
fn read_resume(cfg: Option<&CheckpointConfig>) -> Result<Resume, EngineError> {
    let Some(cfg) = cfg.filter(|c| c.resume) else {
        return Ok(Resume::default());
    };
    let store = CheckpointStore::open(&cfg.state_dir, cfg.keep)
        .map_err(|e| EngineError::Config(e.to_string()))?;
    let Some(cp) = store
        .latest()
        .map_err(|e| EngineError::Config(e.to_string()))?
    else {
        tracing::info!(dir = %store.dir().display(), "no checkpoint: starting fresh");
        return Ok(Resume::default());
    };
    let (seeds, warnings) = totals_from_json(&cp.aggregate_state, cp.epoch).map_err(|e| {
        EngineError::Config(format!(
            "checkpoint of epoch {} in {}: aggregate state: {e} (move the file away to resume from an older one)",
            cp.epoch,
            store.dir().display()
        ))
    })?;
    for w in warnings {
        tracing::warn!(epoch = cp.epoch, "checkpoint: {w}");
    }
    tracing::info!(epoch = cp.epoch, offsets = ?cp.offsets, aggregate_keys = seeds.len(),
        age_s = cp.age_ms() / 1000, "resuming from checkpoint");
    Ok(Resume {
        epoch: Some(cp.epoch),
        offsets: cp.offsets,
        seeds,
    })
}

/// What every worker of a process shares.
struct Shared<'a> {
    state: &'a Arc<EngineState>,
    stop: &'a Arc<AtomicBool>,
    control: &'a Arc<Mutex<Option<Receiver<Control>>>>,
    resume: &'a Arc<Resume>,
    fatal: &'a Fatal,
}

fn serving(u: &ModelUpdate, since_epoch: u64) -> ServingModel {
    let (role, fraction) = match u.role {
        ModelRole::Production => ("production", None),
        ModelRole::Candidate { fraction } => ("candidate", Some(fraction)),
    };
    ServingModel {
        version: u.model.version.clone(),
        role: role.to_string(),
        fraction,
        since_epoch,
        threshold: u.model.threshold,
    }
}

/// A failure that stops the engine, shared by its workers.
#[derive(Clone, Debug)]
enum FatalError {
    Source(String),
    Sink(String),
    Checkpoint(String),
}

impl FatalError {
    fn into_error(self) -> EngineError {
        match self {
            FatalError::Source(m) => EngineError::Source(m),
            FatalError::Sink(m) => EngineError::Sink(m),
            FatalError::Checkpoint(m) => EngineError::Config(m),
        }
    }
}

type Fatal = Arc<Mutex<Option<FatalError>>>;

/// Where a run resumes: read from the newest checkpoint by [`start`].
#[derive(Debug, Default)]
struct Resume {
    /// The checkpoint's epoch (`None`: no checkpoint, start fresh).
    epoch: Option<u64>,
    offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    seeds: Vec<Seed>,
}

/// Control messages broadcast to every worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Broadcasted {
    Stop,
}

type TrainResult = Result<(Model, Option<f64>), String>;

/// Sums batch lengths per worker and adds them, on global worker 0, to a counter.
fn count_into<'s, D: 'static>(stream: Stream<'s, u64, Vec<D>>, counter: impl Fn(u64) + 'static) {
    let counts: Stream<'s, u64, Vec<u64>> = stream.unary(Pipeline, "CountBatch", |_cap, _info| {
        move |input, output| {
            input.for_each_stamp(|cap, data| {
                let n: usize = data.map(|b| b.len()).sum();
                if n > 0 {
                    output.session(&cap).give(n as u64);
                }
            });
        }
    });
    counts.sink(Exchange::new(|_: &u64| 0u64), "Count", move |(input, _)| {
        input.for_each_stamp(|_cap, data| {
            for batch in data {
                for n in batch.drain(..) {
                    counter(n);
                }
            }
        });
    });
}

#[allow(clippy::too_many_lines)]
fn run_worker(
    worker: &mut timely::worker::Worker,
    cfg: &EngineConfig,
    source: &SourceSpec,
    initial: &[ModelUpdate],
    shared: &Shared<'_>,
) {
    let Shared {
        state,
        stop,
        control,
        resume,
        fatal,
    } = *shared;
    let leader = worker.index() == 0; // global worker 0 = process 0, thread 0
    let process_first = worker.index().is_multiple_of(cfg.workers.max(1)); // thread 0 of each process
    let first_epoch = resume.epoch.map_or(0, |e| e + 1);
    let checkpointing = cfg.checkpoints.is_some();
    let custom = match source {
        SourceSpec::Custom(f) => Some(Arc::clone(f)),
        _ => None,
    };
    let mut seed_in: InputHandle<u64, CapacityContainerBuilder<Vec<Seed>>> = InputHandle::new();
    let agg_ledger = Rc::new(RefCell::new(AggregateLedger::new(checkpointing && leader)));
    let pos_ledger = Rc::new(RefCell::new(PositionLedger::new(resume.offsets.clone())));
    let (train_tx, train_rx) = channel::<TrainResult>();
    let mut control_in: InputHandle<u64, CapacityContainerBuilder<Vec<Broadcasted>>> =
        InputHandle::new();
    let mut model_in: InputHandle<u64, CapacityContainerBuilder<Vec<ModelUpdate>>> =
        InputHandle::new();
    let mut retrain_in: InputHandle<u64, CapacityContainerBuilder<Vec<RawInput>>> =
        InputHandle::new();
    let probe = ProbeHandle::new();
    let completed_below = Rc::new(Cell::new(0u64));

    // 1. Control: Stop from global worker 0 reaches every worker of every process.
    worker.dataflow::<u64, _, _>(|scope| {
        let stop = Arc::clone(stop);
        scope.input_from(&mut control_in).broadcast().sink(
            Pipeline,
            "Control",
            move |(input, _)| {
                input.for_each_stamp(|_cap, data| {
                    for batch in data {
                        for msg in batch.drain(..) {
                            match msg {
                                Broadcasted::Stop => stop.store(true, Ordering::SeqCst),
                            }
                        }
                    }
                });
            },
        );
    });

    // 2. Main dataflow.
    let src_epoch = worker.dataflow::<u64, _, _>(|scope| {
        let ctx = SourceContext {
            policy: cfg.policy.clone(),
            validation: cfg.validation.clone(),
            stop: Arc::clone(stop),
            completed_below: Rc::clone(&completed_below),
            first_epoch,
            start_offsets: resume.offsets.clone(),
        };
        let max_bytes = cfg.validation.max_record_bytes;
        let (raw, src_epoch) = match source {
            SourceSpec::File { path, format } => file_source(
                scope,
                path.clone(),
                *format,
                max_bytes,
                ctx.policy.clone(),
                SystemClock::default(),
                Arc::clone(stop),
            ),
            SourceSpec::Replay {
                path,
                format,
                rate,
                resample,
                seed,
            } => replay_source(
                scope,
                ReplaySpec {
                    path: path.clone(),
                    format: *format,
                    resample: *resample,
                    seed: *seed,
                },
                max_bytes,
                &cfg.validation,
                SourcePolicy {
                    rate: rate.per_second(),
                    ..cfg.policy.clone()
                },
                SystemClock::default(),
                Arc::clone(stop),
            ),
            SourceSpec::Custom(factory) => factory.build(scope, &ctx),
        };
        let models = scope.input_from(&mut model_in);
        if checkpointing {
            track_positions(raw.clone(), &pos_ledger, &probe);
        }
        let s = Arc::clone(state);
        count_into(raw.clone(), move |n| {
            s.records_in.fetch_add(n, Ordering::Relaxed);
        });
        let (parsed, dead) = raw.parse_complaints(&cfg.validation);
        let s = Arc::clone(state);
        count_into(parsed.clone(), move |n| {
            s.parsed.fetch_add(n, Ordering::Relaxed);
        });
        let (parsed, dups) = parsed.dedup_by_id();
        let dead = dead.concat(dups);
        let decisions = parsed.score(models).decide(&cfg.decision);

        // Predictions: every worker serializes and summarises its decisions; global worker 0
        // appends the bytes, merges the summaries and measures each epoch's latency.
        sink_predictions(
            decisions.clone().probe_with(&probe),
            cfg.predictions_path.clone(),
            state,
        );
        let s3 = Arc::clone(state);
        dead.clone().probe_with(&probe).sink_jsonl(
            cfg.dead_letters_path.clone(),
            move |batch: &[DeadLetter]| {
                for d in batch {
                    s3.observe_dead_letter(&d.kind)
                }
            },
            |_| {},
        );
        let seeds = scope.input_from(&mut seed_in);
        let changes =
            aggregate_decisions(decisions.clone(), Some(seeds), state, &agg_ledger, &probe);
        if let Some(sinks) = &cfg.sinks {
            let outputs = EngineOutputs {
                decisions,
                dead_letters: dead,
                aggregate_changes: changes,
            };
            match sinks.build(scope, outputs) {
                Ok(acks) => {
                    for a in acks {
                        a.probe_with(&probe);
                    }
                }
                Err(e) => {
                    tracing::error!(sinks = %sinks.describe(), "cannot start the output sinks: {e}");
                    lock(fatal).get_or_insert(FatalError::Sink(e));
                    stop.store(true, Ordering::SeqCst);
                }
            }
        }
        src_epoch
    });

    // 3. Retraining: the same parse operator, gathered on worker 0, trained off-thread.
    let requests: Rc<RefCell<BTreeMap<u64, RetrainRequest>>> =
        Rc::new(RefCell::new(BTreeMap::new()));
    worker.dataflow::<u64, _, _>(|scope| {
        let raw = scope.input_from(&mut retrain_in);
        let (parsed, dead) = raw.parse_complaints(&cfg.validation);
        let mut gathered: BTreeMap<u64, Vec<Complaint>> = BTreeMap::new();
        let default_train = cfg.train.clone();
        let registry_dir = cfg.registry_dir.clone();
        let st = Arc::clone(state);
        let tx = train_tx.clone();
        let reqs = Rc::clone(&requests);
        parsed.sink(
            Exchange::new(|_: &Parsed| 0u64),
            "Trainer",
            move |(input, frontier)| {
                input.for_each_stamp(|cap, data| {
                    let Some(t) = cap.least().copied() else {
                        return;
                    };
                    let rows = gathered.entry(t).or_default();
                    for batch in data {
                        rows.extend(batch.drain(..).map(|p| p.complaint));
                    }
                });
                let ready: Vec<u64> = reqs
                    .borrow()
                    .keys()
                    .copied()
                    .filter(|t| !frontier.less_equal(t))
                    .collect();
                for t in ready {
                    let Some(req) = reqs.borrow_mut().remove(&t) else {
                        continue;
                    };
                    let rows = gathered.remove(&t).unwrap_or_default();
                    let cfg = req
                        .train_config
                        .clone()
                        .unwrap_or_else(|| default_train.clone());
                    let (dir, tx, st) = (registry_dir.clone(), tx.clone(), Arc::clone(&st));
                    let msg = format!(
                        "training on {} valid complaints from {}",
                        rows.len(),
                        req.path.display()
                    );
                    tracing::info!("{msg}");
                    lock(&st.retrain_log).push(msg);
                    let spawned = std::thread::Builder::new()
                        .name("complaintflow-train".into())
                        .spawn(move || {
                            let r = train_and_register(&rows, &cfg, &dir, &req);
                            let _ = tx.send(r);
                        });
                    if let Err(e) = spawned {
                        lock(&st.retrain_log).push(format!("cannot start training: {e}"));
                    }
                }
            },
        );
        let st = Arc::clone(state);
        dead.sink(
            Exchange::new(|_: &DeadLetter| 0u64),
            "RetrainRejected",
            move |(input, _)| {
                let mut n = 0usize;
                input.for_each_stamp(|_cap, data| {
                    for batch in data {
                        n += batch.len();
                        batch.clear();
                    }
                });
                if n > 0 {
                    lock(&st.retrain_log).push(format!(
                        "{n} records of the retraining data were rejected by validation"
                    ));
                }
            },
        );
    });

    // Only global worker 0 feeds the control and retraining inputs: the others close theirs
    // at once (an open input would hold those dataflows' frontiers back). Every worker keeps
    // its model input and advances it with its source, so `score` can release each epoch.
    let mut control_in = leader.then_some(control_in);
    let mut model_in = Some(model_in);
    let mut retrain_in = leader.then_some(retrain_in);
    let control = if leader { lock(control).take() } else { None };
    if leader {
        if let Some(m) = model_in.as_mut() {
            for u in initial {
                m.send(u.clone());
            }
        }
    }
    // A resumed run's aggregate totals enter at the checkpoint's epoch (global worker 0).
    if leader {
        if let Some(e) = resume.epoch {
            seed_in.advance_to(e);
            for s in &resume.seeds {
                seed_in.send(s.clone());
            }
        }
    }
    drop(seed_in);
    let mut checkpointer = match (&cfg.checkpoints, leader) {
        (Some(c), true) => match Checkpointer::start(c, resume.epoch, state) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!("{e}");
                lock(fatal).get_or_insert(FatalError::Checkpoint(e));
                stop.store(true, Ordering::SeqCst);
                None
            }
        },
        _ => None,
    };
    let mut last_durable = 0u64;
    let mut last_poll = std::time::Instant::now();
    let mut last_epoch = first_epoch;
    let mut reader: Option<(RawRecords<std::io::BufReader<std::fs::File>>, String, i64)> = None;
    let mut training = 0usize;
    loop {
        let active = worker.step_or_park(Some(Duration::from_millis(1)));
        probe.with_frontier(|f| {
            completed_below.set(f.first().copied().unwrap_or(u64::MAX));
        });
        let source_done = src_epoch.is_done();
        if leader && source_done {
            state.input_waiting.store(false, Ordering::Relaxed);
        }
        let done_below = completed_below.get();
        if let Some(c) = checkpointer.as_mut() {
            if lock(fatal).is_none() {
                c.maybe_write(done_below, &pos_ledger, &agg_ledger);
            }
        }
        if let (true, Some(f)) = (process_first, custom.as_ref()) {
            if last_poll.elapsed() >= Duration::from_millis(200) {
                last_poll = std::time::Instant::now();
                if done_below != last_durable && done_below > 0 && done_below != u64::MAX {
                    last_durable = done_below;
                    f.on_durable(done_below - 1);
                }
                if leader {
                    let lag = f.lag();
                    *lock(&state.consumer_lag) = lag;
                    if let (Some(l), false) = (lag, source_done) {
                        state.input_waiting.store(l > 0, Ordering::Relaxed);
                    }
                }
                if let Some(e) = f.fatal() {
                    if lock(fatal).is_none() {
                        tracing::error!(source = %f.describe(), "the source failed, stopping: {e}");
                        *lock(fatal) = Some(FatalError::Source(e));
                        stop.store(true, Ordering::SeqCst);
                        if let Some(c) = control_in.as_mut() {
                            c.send(Broadcasted::Stop);
                            let t = *c.time() + 1;
                            c.advance_to(t);
                        }
                    }
                }
            }
        }
        // The source's epoch, or its last one once it has finished (it may open several
        // epochs and finish within one step, unseen by this loop).
        last_epoch = last_epoch.max(src_epoch.last());
        // Keep the model input at the source's epoch so `score` can release each epoch.
        if let Some(m) = model_in.as_mut() {
            let target = if source_done {
                last_epoch + 1
            } else {
                last_epoch
            };
            if target > *m.time() {
                m.advance_to(target);
            }
        }
        if let Some(rx) = control.as_ref() {
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Control::Shutdown => {
                        stop.store(true, Ordering::SeqCst);
                        if let Some(c) = control_in.as_mut() {
                            c.send(Broadcasted::Stop);
                            let t = *c.time() + 1;
                            c.advance_to(t);
                        }
                    }
                    Control::AbTest { version, fraction } => {
                        let loaded =
                            Registry::open(&cfg.registry_dir).and_then(|r| r.load_model(&version));
                        match (loaded, model_in.as_mut()) {
                            (Ok(model), Some(m)) => {
                                let at = *m.time();
                                let u = ModelUpdate {
                                    model,
                                    role: ModelRole::Candidate { fraction },
                                };
                                lock(&state.retrain_log).push(format!(
                                    "A/B test: {version} scores {:.1}% of complaints from epoch {at}",
                                    fraction * 100.0
                                ));
                                state.note_model(serving(&u, at));
                                m.send(u);
                            }
                            (Err(e), _) => lock(&state.retrain_log)
                                .push(format!("A/B test with {version} refused: {e}")),
                            (_, None) => lock(&state.retrain_log)
                                .push("A/B test refused: the engine is stopping".into()),
                        }
                    }
                    Control::Retrain(req) => {
                        if retrain_in.is_none() {
                            lock(&state.retrain_log)
                                .push("retraining refused: the engine is stopping".into());
                            continue;
                        }
                        match RawRecords::from_path(&req.path, req.format, cfg.validation.max_record_bytes) {
                            Ok(r) if reader.is_none() => {
                                let t = retrain_in.as_ref().map_or(0, |i| *i.time());
                                tracing::info!(path = %req.path.display(), "retraining requested");
                                reader = Some((r, req.path.display().to_string(), 0));
                                requests.borrow_mut().insert(t, req);
                                training += 1;
                            }
                            Ok(_) => lock(&state.retrain_log).push(format!(
                                "retraining from {} refused: another retraining file is still being read",
                                req.path.display()
                            )),
                            Err(e) => lock(&state.retrain_log).push(format!(
                                "retraining from {} failed: {e}",
                                req.path.display()
                            )),
                        }
                    }
                }
            }
        }
        // Feed a bounded batch of the retraining file per step (never block the worker).
        if let (Some((records, name, next)), Some(input)) = (reader.as_mut(), retrain_in.as_mut()) {
            let mut exhausted = false;
            for _ in 0..2_000 {
                let origin = Origin::file(name.clone(), *next);
                match records.next() {
                    Some(Ok(r)) => input.send(RawInput::new(r.bytes, origin)),
                    Some(Err(e)) => input.send(RawInput::framing_error(
                        Vec::new(),
                        origin,
                        e.kind.as_str(),
                        e.message,
                    )),
                    None => {
                        exhausted = true;
                        break;
                    }
                }
                *next += 1;
            }
            if exhausted {
                let t = *input.time() + 1;
                input.advance_to(t);
                reader = None;
            }
        }
        while let Ok(result) = train_rx.try_recv() {
            training = training.saturating_sub(1);
            match result {
                Ok((model, ab)) => {
                    let role = match ab {
                        Some(fraction) => ModelRole::Candidate { fraction },
                        None => ModelRole::Production,
                    };
                    if let Some(m) = model_in.as_mut() {
                        let at = *m.time();
                        let u = ModelUpdate { model, role };
                        let msg =
                            format!("{} ({:?}) scores from epoch {at}", u.model.version, u.role);
                        tracing::info!("{msg}");
                        lock(&state.retrain_log).push(msg);
                        state.note_model(serving(&u, at));
                        m.send(u);
                    }
                }
                Err(e) => {
                    tracing::error!("retraining failed: {e}");
                    lock(&state.retrain_log).push(format!("retraining failed: {e}"));
                }
            }
        }
        let stopping = stop.load(Ordering::Relaxed);
        let idle_done = cfg.once && source_done && (training == 0 || !leader);
        if source_done && (stopping || idle_done) {
            model_in = None;
            retrain_in = None;
            control_in = None;
            reader = None;
        }
        if model_in.is_none() && !active {
            break;
        }
    }
    // Everything is durable now (the dataflows have completed): the final checkpoint.
    if let Some(c) = checkpointer {
        if lock(fatal).is_none() {
            c.finish(last_epoch, &pos_ledger, &agg_ledger);
        }
    }
}

fn train_and_register(
    rows: &[Complaint],
    cfg: &TrainConfig,
    dir: &std::path::Path,
    req: &RetrainRequest,
) -> TrainResult {
    let outcome = complaintflow_models::train(rows, cfg, &mut |_| {}).map_err(|e| e.to_string())?;
    let registry = Registry::open(dir).map_err(|e| e.to_string())?;
    let data = DataInfo::from_file(&req.path, rows.len() as u64).unwrap_or(DataInfo {
        path: Some(req.path.display().to_string()),
        sha256: None,
        records: Some(rows.len() as u64),
    });
    let meta = registry
        .register(&outcome, data)
        .map_err(|e| e.to_string())?;
    if req.ab_fraction.is_none() {
        registry.promote(&meta.version).map_err(|e| e.to_string())?;
    }
    let model = registry
        .load_model(&meta.version)
        .map_err(|e| e.to_string())?;
    Ok((model, req.ab_fraction))
}
