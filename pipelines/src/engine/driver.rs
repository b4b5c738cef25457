//! The worker: builds the three dataflows and steps them, serving the control channel
//! between steps (never blocking: `step_or_park` for at most [`IDLE_PARK`], `try_recv`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use complaintflow_datasets::{Complaint, RawRecords};
use complaintflow_models::{DataInfo, Registry, TrainConfig};
use complaintflow_operators::prelude::*;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use super::graph::{build_main, Main};
use super::{
    serving, Broadcasted, Control, EngineConfig, FatalError, Resume, RetrainRequest, Shared,
    TrainResult,
};
use crate::checkpoint::{Checkpointer, Mirror};
use crate::plugin::Source;
use crate::state::lock;
use complaintflow_operators::seen_log::SeenSet;

/// One worker: the control, main and retraining dataflows, then the step loop.
pub(crate) fn run_worker(
    worker: &mut timely::worker::Worker,
    cfg: &EngineConfig,
    source: &Arc<dyn Source>,
    initial: &[ModelUpdate],
    shared: &Shared<'_>,
) {
    crate::introspect::install(worker, &shared.state.dataflow);
    let leader = worker.index() == 0;
    let process_first = worker.index().is_multiple_of(cfg.workers.max(1));
    // 0. Where to resume: the newest checkpoint every process has.
    let resume = match agree_on_resume(worker, shared, process_first, cfg.processes.max(1)) {
        Ok(r) => r,
        Err(e) => {
            // Every worker of every process sees the same reports and stops here.
            if leader {
                tracing::error!("{e}");
            }
            lock(shared.fatal).get_or_insert(FatalError::Checkpoint(e));
            shared.stop.store(true, Ordering::SeqCst);
            return;
        }
    };
    if leader && resume.epoch != shared.candidates.last().and_then(|r| r.epoch) {
        tracing::warn!(epoch = ?resume.epoch,
            "resuming from an older checkpoint than this process's newest: it is the newest every process of the cluster has");
    }
    let seen = load_seen_set(cfg, shared, process_first, resume.epoch);
    let shared = &Shared {
        resume: &resume,
        ..*shared
    };
    let mirror: Option<Mirror> =
        (cfg.checkpoints.is_some() && cfg.processes > 1 && leader).then(Mirror::default);
    let mut mirror_writer = match (&cfg.checkpoints, process_first && !leader) {
        (Some(c), true) => match Checkpointer::start(c, resume.epoch, shared.state, None) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        },
        _ => None,
    };
    let mut control_in: InputHandle<u64, CapacityContainerBuilder<Vec<Broadcasted>>> =
        InputHandle::new();
    // 1. Control: Stop (and checkpoints) from global worker 0 reach every worker of every
    // process; in a cluster the first worker of every process also sends heartbeats.
    let heard: Rc<RefCell<Liveness>> = Rc::default();
    worker.dataflow::<u64, _, _>(|scope| {
        let stop = Arc::clone(shared.stop);
        let heard = Rc::clone(&heard);
        scope.input_from(&mut control_in).broadcast().sink(
            Pipeline,
            "Control",
            move |(input, _)| {
                input.for_each_stamp(|_cap, data| {
                    for batch in data {
                        for msg in batch.drain(..) {
                            match msg {
                                Broadcasted::Stop => stop.store(true, Ordering::SeqCst),
                                Broadcasted::Checkpoint { epoch, json } => {
                                    if let Some(w) = mirror_writer.as_mut() {
                                        w.store_mirrored(epoch, json);
                                    }
                                }
                                Broadcasted::Heartbeat { process } => {
                                    heard.borrow_mut().heard.insert(process, Instant::now());
                                }
                                Broadcasted::Leaving { process } => {
                                    heard.borrow_mut().left.insert(process);
                                }
                            }
                        }
                    }
                });
            },
        );
    });
    // 2. Main dataflow.
    let main = build_main(worker, cfg, source, initial, shared, seen, mirror.clone());
    // 3. Retraining.
    let (train_tx, train_rx) = channel::<TrainResult>();
    let requests: Rc<RefCell<BTreeMap<u64, RetrainRequest>>> = Rc::default();
    let mut retrain_in: InputHandle<u64, CapacityContainerBuilder<Vec<RawInput>>> =
        InputHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        let raw = scope.input_from(&mut retrain_in);
        let (parsed, dead) = raw.parse_complaints(&cfg.validation);
        let mut gathered: BTreeMap<u64, Vec<Complaint>> = BTreeMap::new();
        let default_train = cfg.train.clone();
        let registry_dir = cfg.registry_dir.clone();
        let st = Arc::clone(shared.state);
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
                    let (dir, tx, st) = (registry_dir.clone(), train_tx.clone(), Arc::clone(&st));
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
        let st = Arc::clone(shared.state);
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
    // at once (an open input would hold those dataflows' frontiers back).
    let driver = Driver {
        cfg,
        source,
        shared,
        leader,
        process_first,
        main,
        // Global worker 0 sends Stop and checkpoints; in a cluster the first worker of every
        // process sends heartbeats.
        control_in: (leader || (process_first && cfg.processes > 1)).then_some(control_in),
        heard,
        last_beat: None,
        started: Instant::now(),
        mirror,
        retrain_in: leader.then_some(retrain_in),
        control: if leader {
            lock(shared.control).take()
        } else {
            None
        },
        requests,
        train_rx,
        reader: None,
        training: 0,
        last_poll: Instant::now(),
        closed_loop: (leader && cfg.monitoring.auto_retrain && cfg.outcomes.is_some())
            .then(super::closed_loop::ClosedLoop::new),
    };
    driver.run(worker);
}

/// The step loop's state on one worker.
struct Driver<'a> {
    cfg: &'a EngineConfig,
    source: &'a Arc<dyn Source>,
    shared: &'a Shared<'a>,
    leader: bool,
    process_first: bool,
    main: Main,
    control_in: Option<InputHandle<u64, CapacityContainerBuilder<Vec<Broadcasted>>>>,
    /// Global worker 0 of a cluster: its checkpoints, to broadcast to the other processes.
    mirror: Option<Mirror>,
    /// When this process last heard from every other process of the cluster.
    heard: Rc<RefCell<Liveness>>,
    last_beat: Option<Instant>,
    started: Instant,
    retrain_in: Option<InputHandle<u64, CapacityContainerBuilder<Vec<RawInput>>>>,
    control: Option<std::sync::mpsc::Receiver<Control>>,
    requests: Rc<RefCell<BTreeMap<u64, RetrainRequest>>>,
    train_rx: std::sync::mpsc::Receiver<TrainResult>,
    reader: Option<(RawRecords<std::io::BufReader<std::fs::File>>, Arc<str>, i64)>,
    training: usize,
    last_poll: Instant,
    /// Global worker 0 with `[monitoring] auto_retrain` and outcomes: the closed loop.
    closed_loop: Option<super::closed_loop::ClosedLoop>,
}

/// How long an idle worker parks between two rounds of the driver's chores (control requests,
/// trained models, lag, heartbeats): they wait at most this long. Operators are not affected:
/// timely wakes the worker for their activations, timers (`activate_after`) and messages from
/// other workers. It was 1 ms, up to 1,000 rounds a second per idle worker. Measured at
/// 10,000 complaints/min through tansu (Kafka bench), the process's CPU time did not change
/// measurably (21–22 CPU s per 40 s either way): the operators' own wake-ups dominate.
const IDLE_PARK: Duration = Duration::from_millis(10);

impl Driver<'_> {
    fn run(mut self, worker: &mut timely::worker::Worker) {
        loop {
            // Feeding a retraining file is the driver's own work: no long park meanwhile.
            let park = if self.reader.is_some() {
                Duration::from_millis(1)
            } else {
                IDLE_PARK
            };
            let active = worker.step_or_park(Some(park));
            let source_done = self.main.source_done.done();
            if self.leader && source_done {
                self.shared
                    .state
                    .input_waiting
                    .store(false, Ordering::Relaxed);
            }
            self.poll_source(source_done);
            self.heartbeat(source_done);
            self.broadcast_checkpoints();
            self.serve_control();
            self.feed_retraining();
            self.collect_trained();
            self.run_closed_loop();
            let stopping = self.shared.stop.load(Ordering::Relaxed);
            let idle_done = self.cfg.once && (self.training == 0 || !self.leader);
            if source_done && (stopping || idle_done) {
                self.retrain_in = None;
                if let Some(mut c) = self.control_in.take() {
                    if self.cfg.processes > 1 && self.process_first {
                        c.send(Broadcasted::Leaving {
                            process: self.cfg.process,
                        });
                    }
                }
                self.reader = None;
            }
            if !active {
                break;
            }
        }
    }

    /// Lag and failures of the source, every 200 ms, on the first worker of each process.
    fn poll_source(&mut self, source_done: bool) {
        if !self.process_first || self.last_poll.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last_poll = Instant::now();
        let state = self.shared.state;
        if self.leader {
            let lag = self.source.lag();
            *lock(&state.consumer_lag) = lag;
            if let (Some(l), false) = (lag, source_done) {
                state.input_waiting.store(l > 0, Ordering::Relaxed);
            }
        }
        if let Some(e) = self.source.fatal() {
            let fatal = self.shared.fatal;
            if lock(fatal).is_none() {
                tracing::error!(source = %self.source.describe(), "the source failed, stopping: {e}");
                *lock(fatal) = Some(FatalError::Source(e));
                self.stop_everything();
            }
        }
    }

    /// In a cluster (first worker of each process): a heartbeat to every process each
    /// [`HEARTBEAT`], and a check that every other process was heard from within
    /// [`PEER_TIMEOUT`]. A silent peer (its process hung, or the link cut without a reset,
    /// which TCP may not notice for minutes) ends this process with an error naming it (exit
    /// code 70), as a broken connection does ([`super::install_lost_peer_hook`]): the workers
    /// could never finish the epochs that peer holds.
    fn heartbeat(&mut self, source_done: bool) {
        let processes = self.cfg.processes;
        if processes <= 1 || !self.process_first {
            return;
        }
        let Some(c) = self.control_in.as_mut() else {
            return;
        };
        if self.last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
            c.send(Broadcasted::Heartbeat {
                process: self.cfg.process,
            });
            let t = *c.time() + 1;
            c.advance_to(t);
            self.last_beat = Some(Instant::now());
        }
        if source_done {
            return;
        }
        let heard = self.heard.borrow();
        for p in (0..processes).filter(|p| *p != self.cfg.process && !heard.left.contains(p)) {
            let since = heard.heard.get(&p).copied().unwrap_or(self.started);
            if since.elapsed() > PEER_TIMEOUT {
                let addr = self
                    .cfg
                    .addresses
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| format!("127.0.0.1:{}", 2101 + p));
                tracing::error!(process = self.cfg.process, lost_peer = p, peer_addr = %addr,
                    "no heartbeat from a peer process; stopping this process");
                eprintln!(
                    "error: process {} lost its connection to process {p} ({addr}): no heartbeat for {:?}. \
                     Stopping. Restart every process of the cluster: it resumes from the newest \
                     checkpoint all of them have.",
                    self.cfg.process,
                    since.elapsed()
                );
                std::process::exit(70);
            }
        }
    }

    /// Sends the checkpoints global worker 0 wrote to every other process.
    fn broadcast_checkpoints(&mut self) {
        let (Some(m), Some(c)) = (self.mirror.as_ref(), self.control_in.as_mut()) else {
            return;
        };
        let made: Vec<(u64, Vec<u8>)> = m.borrow_mut().drain(..).collect();
        if made.is_empty() {
            return;
        }
        for (epoch, json) in made {
            c.send(Broadcasted::Checkpoint { epoch, json });
        }
        let t = *c.time() + 1;
        c.advance_to(t);
    }

    fn stop_everything(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(c) = self.control_in.as_mut() {
            c.send(Broadcasted::Stop);
            let t = *c.time() + 1;
            c.advance_to(t);
        }
    }

    fn serve_control(&mut self) {
        let state = self.shared.state;
        let mut msgs = Vec::new();
        if let Some(rx) = self.control.as_ref() {
            while let Ok(msg) = rx.try_recv() {
                msgs.push(msg);
            }
        }
        for msg in msgs {
            match msg {
                Control::Shutdown => self.stop_everything(),
                Control::AbTest { version, fraction } => {
                    let loaded =
                        Registry::open(&self.cfg.registry_dir).and_then(|r| r.load_model(&version));
                    match loaded {
                        Ok(model) => {
                            let u = ModelUpdate {
                                model,
                                role: ModelRole::Candidate { fraction },
                            };
                            let serving_now = serving(&u, self.main.feed.epoch());
                            match self.main.feed.send(u) {
                                Some(at) => {
                                    lock(&state.retrain_log).push(format!(
                                        "A/B test: {version} scores {:.1}% of complaints from epoch {at}",
                                        fraction * 100.0
                                    ));
                                    state.note_model(serving_now);
                                }
                                None => lock(&state.retrain_log).push(format!(
                                    "A/B test with {version} refused: the source has finished"
                                )),
                            }
                        }
                        Err(e) => lock(&state.retrain_log)
                            .push(format!("A/B test with {version} refused: {e}")),
                    }
                }
                Control::Retrain(req) => {
                    self.start_retrain(*req);
                }
            }
        }
    }

    /// Starts reading a retraining file (the retraining dataflow trains on it once read).
    /// Returns whether it started.
    fn start_retrain(&mut self, req: RetrainRequest) -> bool {
        let state = self.shared.state;
        let Some(input) = self.retrain_in.as_ref() else {
            lock(&state.retrain_log).push("retraining refused: the engine is stopping".into());
            return false;
        };
        match RawRecords::from_path(&req.path, req.format, self.cfg.validation.max_record_bytes) {
            Ok(r) if self.reader.is_none() => {
                let t = *input.time();
                tracing::info!(path = %req.path.display(), "retraining requested");
                self.reader = Some((r, Arc::from(req.path.display().to_string()), 0));
                self.requests.borrow_mut().insert(t, req);
                self.training += 1;
                true
            }
            Ok(_) => {
                lock(&state.retrain_log).push(format!(
                    "retraining from {} refused: another retraining file is still being read",
                    req.path.display()
                ));
                false
            }
            Err(e) => {
                lock(&state.retrain_log).push(format!(
                    "retraining from {} failed: {e}",
                    req.path.display()
                ));
                false
            }
        }
    }

    /// The closed retraining loop's step (global worker 0 with `auto_retrain`).
    fn run_closed_loop(&mut self) {
        let Some(mut cl) = self.closed_loop.take() else {
            return;
        };
        let state = self.shared.state;
        match cl.poll(self.cfg, state) {
            Some(super::closed_loop::LoopAction::Retrain(req)) => {
                let started = self.start_retrain(*req);
                if !started {
                    cl.trained(
                        state,
                        Err("the retraining could not start"),
                        self.cfg.monitoring.promote_after,
                    );
                }
            }
            None => {}
            Some(super::closed_loop::LoopAction::Send(u)) => {
                let serving_now = serving(&u, self.main.feed.epoch());
                if self.main.feed.send(*u).is_some() {
                    state.note_model(serving_now);
                }
            }
        }
        self.closed_loop = Some(cl);
    }

    /// Feeds a bounded batch of the retraining file per step (never blocks the worker).
    fn feed_retraining(&mut self) {
        let (Some((records, name, next)), Some(input)) =
            (self.reader.as_mut(), self.retrain_in.as_mut())
        else {
            return;
        };
        let mut exhausted = false;
        for _ in 0..2_000 {
            let origin = Origin::file(Arc::clone(name), *next);
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
            self.reader = None;
        }
    }

    /// Hands trained versions to the model feed.
    fn collect_trained(&mut self) {
        let state = self.shared.state;
        while let Ok(result) = self.train_rx.try_recv() {
            self.training = self.training.saturating_sub(1);
            match result {
                Ok((model, ab)) => {
                    if let Some(cl) = self
                        .closed_loop
                        .as_mut()
                        .filter(|c| c.training() && ab.is_some())
                    {
                        cl.trained(state, Ok(&model), self.cfg.monitoring.promote_after);
                    }
                    let role = match ab {
                        Some(fraction) => ModelRole::Candidate { fraction },
                        None => ModelRole::Production,
                    };
                    let u = ModelUpdate { model, role };
                    let serving_now = serving(&u, self.main.feed.epoch());
                    let version = u.model.version.clone();
                    let role = u.role.clone();
                    match self.main.feed.send(u) {
                        Some(at) => {
                            let msg = format!("{version} ({role:?}) scores from epoch {at}");
                            tracing::info!("{msg}");
                            lock(&state.retrain_log).push(msg);
                            state.note_model(serving_now);
                        }
                        None => lock(&state.retrain_log).push(format!(
                            "{version} registered; the source has finished, so it scores nothing in this run"
                        )),
                    }
                }
                Err(e) => {
                    if let Some(cl) = self.closed_loop.as_mut().filter(|c| c.training()) {
                        cl.trained(state, Err(&e), self.cfg.monitoring.promote_after);
                    }
                    tracing::error!("retraining failed: {e}");
                    lock(&state.retrain_log).push(format!("retraining failed: {e}"));
                }
            }
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

/// How often the first worker of each process of a cluster sends a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A peer not heard from for this long is lost (the cluster cannot make progress without it).
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Heartbeats heard, by process, and the processes that said they are leaving (finished).
#[derive(Debug, Default)]
struct Liveness {
    heard: BTreeMap<usize, Instant>,
    left: BTreeSet<usize>,
}

/// A process's checkpoint epochs, for the resume agreement: (process, epochs).
type EpochReport = (usize, Vec<u64>);

/// The resume agreement of a cluster: the first worker of every process reports the epochs
/// of the checkpoints in its own state directory, every worker hears every report
/// (broadcast), and all pick the newest epoch that every process has. `Err` when the
/// processes have checkpoints but none in common (say which, and how to start fresh).
fn agree_on_resume(
    worker: &mut timely::worker::Worker,
    shared: &Shared<'_>,
    process_first: bool,
    processes: usize,
) -> Result<Arc<Resume>, String> {
    let local: Vec<u64> = shared.candidates.iter().filter_map(|r| r.epoch).collect();
    let reports: Rc<RefCell<BTreeMap<usize, Vec<u64>>>> = Rc::default();
    let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<EpochReport>>> =
        InputHandle::new();
    let probe = ProbeHandle::new();
    let r = Rc::clone(&reports);
    worker.dataflow::<u64, _, _>(|scope| {
        scope
            .input_from(&mut input)
            .broadcast()
            .inspect(move |(p, epochs)| {
                r.borrow_mut().insert(*p, epochs.clone());
            })
            .probe_with(&probe);
    });
    if process_first {
        input.send((worker.index() / (worker.peers() / processes).max(1), local));
    }
    drop(input);
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(1)));
    }
    let reports = reports.borrow();
    let mut common: Option<BTreeSet<u64>> = None;
    for epochs in reports.values() {
        let e: BTreeSet<u64> = epochs.iter().copied().collect();
        common = Some(match common {
            None => e,
            Some(c) => c.intersection(&e).copied().collect(),
        });
    }
    let chosen = common.and_then(|c| c.last().copied());
    match chosen {
        Some(epoch) => shared
            .candidates
            .iter()
            .find(|r| r.epoch == Some(epoch))
            .cloned()
            .ok_or_else(|| format!("the checkpoint of epoch {epoch} vanished while starting")),
        None if reports.values().all(Vec::is_empty) => Ok(Arc::new(Resume::default())),
        None => Err(format!(
            "the processes of the cluster have no checkpoint in common (epochs by process: {:?}); \
             restart every process with the state directory it ran with, or move every process's \
             <state-dir>/checkpoints and <state-dir>/dedup away to start fresh",
            *reports
        )),
    }
}

/// With checkpoints: the first worker of the process trims the dedup seen-set logs to the
/// agreed checkpoint (or removes them for a fresh start), then every worker loads them.
fn load_seen_set(
    cfg: &EngineConfig,
    shared: &Shared<'_>,
    process_first: bool,
    through: Option<u64>,
) -> Option<(SeenSet, u64)> {
    let dir = cfg.checkpoints.as_ref()?.seen_dir();
    let fail = |e: String| {
        tracing::error!("{e}");
        lock(shared.fatal).get_or_insert(FatalError::Checkpoint(e));
        shared.stop.store(true, Ordering::SeqCst);
    };
    if process_first {
        if let Err(e) = complaintflow_operators::seen_log::prepare(&dir, through) {
            fail(format!("the dedup seen-set logs in {}: {e}", dir.display()));
        }
    }
    shared.barrier.wait();
    match complaintflow_operators::seen_log::load(&dir) {
        Ok((s, generation)) => {
            if process_first && !s.is_empty() {
                tracing::info!(ids = s.len(), generation, dir = %dir.display(), "dedup seen-set loaded");
            }
            Some((s, generation))
        }
        Err(e) => {
            fail(format!(
                "cannot read the dedup seen-set logs in {}: {e}",
                dir.display()
            ));
            Some((SeenSet::default(), 0))
        }
    }
}
