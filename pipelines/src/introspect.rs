//! See the dataflow: per-operator records, batches and busy time from timely's own logging.
//!
//! [`install`] registers a logger for timely's `"timely"` event stream ([`TimelyEvent`]) on a
//! worker; it must run before the worker builds its dataflows (timely hands operators and
//! channels their logger when they are built), which is why the engine calls it on the first
//! line of its worker function. From then on the logger folds every batch of events into
//! plain counters, per (dataflow, operator):
//!
//! - **name and address** from `Operates` events (the address is the path of scope indices
//!   from the worker's root: `[dataflow, operator]`, deeper for operators in nested scopes;
//!   the dataflow itself is the operator at `[dataflow]`);
//! - **edges** from `Channels` events: a channel goes from `(scope, source node, output port)`
//!   to `(scope, target node, input port)`; node 0 of a scope is the scope's own boundary,
//!   shown as the scope operator;
//! - **records and batches** from `Messages` events: a send on a channel counts for its
//!   source operator (`records_out`, `batches_out`) and for the edge (`records`, `batches`);
//!   a receive counts for its target operator (`records_in`, `batches`). Across an exchange
//!   each worker counts what it sends and what it receives, so sums over the workers of one
//!   process count every record once on each side; with several processes each process sees
//!   its own workers only (`/api/dataflow` of process 0 shows process 0);
//! - **busy time** from `Schedule` start/stop pairs (timestamps of the log events, no clock
//!   read by the logger). Scopes nest: a dataflow's busy time includes its operators'.
//!
//! Counters are cumulative since [`install`] and summed over the workers of the process by
//! [`DataflowStats::snapshot`], which also gives rates per second over the last snapshot
//! interval (at least [`DataflowStats::min_interval`], default 1 s, so several readers — two
//! browser tabs — do not shrink the interval to nothing; a reader within the interval gets
//! the rates of the last completed interval).
//!
//! **Cost.** The logger runs on the worker thread, inside timely's log buffer flush: per batch
//! of events (timely hands over up to ~100 events, and flushes at the end of every
//! `step`) it takes its worker's mutex once (uncontended unless a snapshot is being taken)
//! and updates counters found by index (operator and channel identifiers are small dense
//! integers; no hashing, no allocation on the per-message path). Turning timely's logging on
//! also costs timely one clock read and one buffer push per event (a message sent, a message
//! received, an operator scheduled). Measured on this 2-core machine, release build
//! (`cargo test --release -p complaintflow-pipelines introspect::tests::overhead -- --ignored
//! --nocapture`, 2 workers, input → map → exchange → map → count, 4M records in batches of
//! 1,000): see the figures in [`tests::overhead`]; with the engine itself,
//! `complaintflow run --once --workers 2` over 300,000 resampled complaints: see the note at
//! the end of this doc.
//!
//! Measured: micro-benchmark 4M records: 5.0 s → 5.0 s (see above); engine run: pending.
//!
//! A snapshot locks each worker's table once, briefly (microseconds for the engine's ~60
//! operators).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};

/// Operator and channel identifiers above this are not tracked (they are dense from 0; the
/// engine uses a few hundred). Events about them are counted in
/// [`DataflowView::untracked_events`].
const MAX_ID: usize = 1 << 20;

/// Shared, cumulative dataflow statistics of the workers of one process. Cheap to clone (an
/// `Arc`), `Send + Sync`: the engine's workers write it through [`install`], the HTTP layer
/// reads it with [`snapshot`](Self::snapshot).
#[derive(Clone, Debug)]
pub struct DataflowStats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One table per worker (by worker index), each behind its own mutex.
    workers: Mutex<Vec<(usize, Arc<Mutex<WorkerTable>>)>>,
    rates: Mutex<RateState>,
    min_interval: Duration,
}

/// What one worker's logger has seen.
#[derive(Debug, Default)]
struct WorkerTable {
    ops: Vec<OpCounters>,
    edges: Vec<EdgeCounters>,
    untracked: u64,
}

#[derive(Debug)]
struct OpCounters {
    id: usize,
    address: Vec<usize>,
    name: String,
    records_in: u64,
    records_out: u64,
    batches_in: u64,
    batches_out: u64,
    busy: Duration,
    schedules: u64,
    shut_down: bool,
}

#[derive(Debug)]
struct EdgeCounters {
    channel: usize,
    scope: Vec<usize>,
    source: (usize, usize),
    target: (usize, usize),
    records: u64,
    batches: u64,
}

/// Rates of the last completed interval, and the totals it ended with.
#[derive(Debug)]
struct RateState {
    at: Instant,
    ops: HashMap<Vec<usize>, OpTotals>,
    edges: HashMap<(usize, Vec<usize>), u64>,
    op_rates: HashMap<Vec<usize>, OpRates>,
    edge_rates: HashMap<(usize, Vec<usize>), f64>,
    interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, Default)]
struct OpTotals {
    records_in: u64,
    records_out: u64,
    batches_in: u64,
    busy: Duration,
}

#[derive(Clone, Copy, Debug, Default)]
struct OpRates {
    records_in: f64,
    records_out: f64,
    batches: f64,
    busy_pct: f64,
}

/// `GET /api/dataflow`: the operators and channels of the process's dataflows, with
/// cumulative counters summed over its workers and rates over the last snapshot interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataflowView {
    /// Workers whose logs are summed (the process's worker threads; 0 before the engine runs).
    pub workers: usize,
    /// Length of the interval the rates are over, ms (`null` before a second snapshot).
    pub interval_ms: Option<f64>,
    /// Every operator, dataflow roots (address of length 1) included, by address.
    pub operators: Vec<DataflowOperator>,
    /// Every channel between two operators of one scope, by channel id.
    pub edges: Vec<DataflowEdge>,
    /// Log events about identifiers too large to track (0 in practice).
    pub untracked_events: u64,
}

/// One operator: counters summed over the workers, rates over the last interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataflowOperator {
    /// Worker-unique operator identifier (the same on every worker: they build the same
    /// dataflows in the same order); edges name operators by it.
    pub id: usize,
    /// Operator name as built (`Map`, `Exchange`, a custom operator's name, `Dataflow`…).
    pub name: String,
    /// Scope path from the worker's root: `[dataflow, index, …]`.
    pub address: Vec<usize>,
    /// The dataflow it belongs to (`address[0]`).
    pub dataflow: usize,
    /// Whether it is a scope (a dataflow or a nested region) rather than a leaf operator.
    pub scope: bool,
    /// Records received on its inputs.
    pub records_in: u64,
    /// Records sent on its outputs.
    pub records_out: u64,
    /// Batches (timely messages) received.
    pub batches: u64,
    /// Batches sent.
    pub batches_out: u64,
    /// Time spent scheduled, ms, summed over workers (a scope includes its operators).
    pub busy_ms: f64,
    /// Times scheduled.
    pub schedules: u64,
    /// Whether the operator has shut down on every worker that built it.
    pub shut_down: bool,
    /// Records received per second over the last interval.
    pub records_in_per_s: f64,
    /// Records sent per second over the last interval.
    pub records_out_per_s: f64,
    /// Batches received per second over the last interval.
    pub batches_per_s: f64,
    /// Busy time as a share of the workers' wall time over the last interval, percent
    /// (`100 · Δbusy / (Δt · workers)`; 0..=100).
    pub busy_pct: f64,
}

/// One channel: from an operator's output port to an operator's input port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataflowEdge {
    /// Channel identifier.
    pub channel: usize,
    /// The dataflow it belongs to.
    pub dataflow: usize,
    /// Source operator id (a scope's own id when the channel leaves the scope's input).
    pub from: usize,
    /// Source output port.
    pub from_port: usize,
    /// Target operator id (a scope's own id when the channel enters the scope's output).
    pub to: usize,
    /// Target input port.
    pub to_port: usize,
    /// Records sent on it.
    pub records: u64,
    /// Batches sent on it.
    pub batches: u64,
    /// Records sent per second over the last interval.
    pub records_per_s: f64,
}

impl Default for DataflowStats {
    fn default() -> Self {
        DataflowStats::new()
    }
}

impl DataflowStats {
    /// Empty statistics, rates over intervals of at least 1 s.
    pub fn new() -> DataflowStats {
        DataflowStats::with_min_interval(Duration::from_secs(1))
    }

    /// Empty statistics, rates over intervals of at least `min_interval`.
    pub fn with_min_interval(min_interval: Duration) -> DataflowStats {
        DataflowStats {
            inner: Arc::new(Inner {
                workers: Mutex::new(Vec::new()),
                rates: Mutex::new(RateState {
                    at: Instant::now(),
                    ops: HashMap::new(),
                    edges: HashMap::new(),
                    op_rates: HashMap::new(),
                    edge_rates: HashMap::new(),
                    interval: None,
                }),
                min_interval,
            }),
        }
    }

    /// The shortest interval rates are computed over.
    pub fn min_interval(&self) -> Duration {
        self.inner.min_interval
    }

    /// A fresh table for worker `index`, replacing an older one of the same index (a worker
    /// of an earlier run).
    fn register(&self, index: usize) -> Arc<Mutex<WorkerTable>> {
        let table = Arc::new(Mutex::new(WorkerTable::default()));
        let mut w = lock(&self.inner.workers);
        w.retain(|(i, _)| *i != index);
        w.push((index, Arc::clone(&table)));
        table
    }

    /// The counters now, summed over the workers, with rates over the last interval.
    pub fn snapshot(&self) -> DataflowView {
        let tables: Vec<Arc<Mutex<WorkerTable>>> = lock(&self.inner.workers)
            .iter()
            .map(|(_, t)| Arc::clone(t))
            .collect();
        let workers = tables.len();
        let mut ops: BTreeMap<Vec<usize>, DataflowOperator> = BTreeMap::new();
        let mut busy: HashMap<Vec<usize>, Duration> = HashMap::new();
        // Worker tables of ops that have not shut down, per address.
        let mut live: HashMap<Vec<usize>, usize> = HashMap::new();
        let mut edges: BTreeMap<(usize, Vec<usize>), (EdgeKey, u64, u64)> = BTreeMap::new();
        let mut untracked = 0;
        for t in &tables {
            let t = lock(t);
            untracked += t.untracked;
            for o in &t.ops {
                let e = ops
                    .entry(o.address.clone())
                    .or_insert_with(|| DataflowOperator {
                        id: o.id,
                        name: o.name.clone(),
                        address: o.address.clone(),
                        dataflow: o.address.first().copied().unwrap_or(0),
                        scope: false,
                        records_in: 0,
                        records_out: 0,
                        batches: 0,
                        batches_out: 0,
                        busy_ms: 0.0,
                        schedules: 0,
                        shut_down: true,
                        records_in_per_s: 0.0,
                        records_out_per_s: 0.0,
                        batches_per_s: 0.0,
                        busy_pct: 0.0,
                    });
                e.records_in += o.records_in;
                e.records_out += o.records_out;
                e.batches += o.batches_in;
                e.batches_out += o.batches_out;
                e.schedules += o.schedules;
                *busy.entry(o.address.clone()).or_default() += o.busy;
                if !o.shut_down {
                    *live.entry(o.address.clone()).or_default() += 1;
                }
            }
            for c in &t.edges {
                let e = edges
                    .entry((c.channel, c.scope.clone()))
                    .or_insert_with(|| {
                        (
                            EdgeKey {
                                source: c.source,
                                target: c.target,
                            },
                            0,
                            0,
                        )
                    });
                e.1 += c.records;
                e.2 += c.batches;
            }
        }
        // Scopes: any operator whose address is a prefix of another's.
        let scopes: Vec<Vec<usize>> = ops
            .keys()
            .filter_map(|a| a.split_last().map(|(_, p)| p.to_vec()))
            .filter(|p| !p.is_empty())
            .collect();
        for s in scopes {
            if let Some(o) = ops.get_mut(&s) {
                o.scope = true;
            }
        }
        for (a, o) in ops.iter_mut() {
            o.busy_ms = busy.get(a).map_or(0.0, |d| d.as_secs_f64() * 1e3);
            o.shut_down = !live.contains_key(a);
        }

        // Rates against the last baseline.
        let now = Instant::now();
        let mut r = lock(&self.inner.rates);
        let dt = now.duration_since(r.at);
        if dt >= self.inner.min_interval || (r.interval.is_none() && !dt.is_zero()) {
            let secs = dt.as_secs_f64();
            let mut op_totals = HashMap::with_capacity(ops.len());
            let mut op_rates = HashMap::with_capacity(ops.len());
            for (a, o) in &ops {
                let cur = OpTotals {
                    records_in: o.records_in,
                    records_out: o.records_out,
                    batches_in: o.batches,
                    busy: busy.get(a).copied().unwrap_or_default(),
                };
                let base = r.ops.get(a).copied().unwrap_or_default();
                let per_s = |x: u64, y: u64| x.saturating_sub(y) as f64 / secs;
                let busy_pct = if workers > 0 {
                    (cur.busy.saturating_sub(base.busy).as_secs_f64() * 100.0
                        / (secs * workers as f64))
                        .clamp(0.0, 100.0)
                } else {
                    0.0
                };
                op_rates.insert(
                    a.clone(),
                    OpRates {
                        records_in: per_s(cur.records_in, base.records_in),
                        records_out: per_s(cur.records_out, base.records_out),
                        batches: per_s(cur.batches_in, base.batches_in),
                        busy_pct,
                    },
                );
                op_totals.insert(a.clone(), cur);
            }
            let mut edge_totals = HashMap::with_capacity(edges.len());
            let mut edge_rates = HashMap::with_capacity(edges.len());
            for (k, (_, records, _)) in &edges {
                let base = r.edges.get(k).copied().unwrap_or(0);
                edge_rates.insert(k.clone(), records.saturating_sub(base) as f64 / secs);
                edge_totals.insert(k.clone(), *records);
            }
            *r = RateState {
                at: now,
                ops: op_totals,
                edges: edge_totals,
                op_rates,
                edge_rates,
                interval: Some(dt),
            };
        }
        for (a, o) in ops.iter_mut() {
            if let Some(x) = r.op_rates.get(a) {
                o.records_in_per_s = x.records_in;
                o.records_out_per_s = x.records_out;
                o.batches_per_s = x.batches;
                o.busy_pct = x.busy_pct;
            }
        }
        let id_of = |scope: &[usize], node: usize| -> Option<usize> {
            if node == 0 {
                return ops.get(scope).map(|o| o.id);
            }
            let mut a = scope.to_vec();
            a.push(node);
            ops.get(&a).map(|o| o.id)
        };
        let edges = edges
            .iter()
            .filter_map(|((channel, scope), (k, records, batches))| {
                Some(DataflowEdge {
                    channel: *channel,
                    dataflow: scope.first().copied().unwrap_or(0),
                    from: id_of(scope, k.source.0)?,
                    from_port: k.source.1,
                    to: id_of(scope, k.target.0)?,
                    to_port: k.target.1,
                    records: *records,
                    batches: *batches,
                    records_per_s: r
                        .edge_rates
                        .get(&(*channel, scope.clone()))
                        .copied()
                        .unwrap_or(0.0),
                })
            })
            .collect();
        DataflowView {
            workers,
            interval_ms: r.interval.map(|d| d.as_secs_f64() * 1e3),
            operators: ops.into_values().collect(),
            edges,
            untracked_events: untracked,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct EdgeKey {
    source: (usize, usize),
    target: (usize, usize),
}

/// A channel as the logger knows it: its edge and its operators (once resolved).
#[derive(Clone, Copy, Debug)]
struct Chan {
    edge: usize,
    source: Option<usize>,
    target: Option<usize>,
}

/// The logger's worker-local state: index maps into the worker's table.
struct Local {
    table: Arc<Mutex<WorkerTable>>,
    /// Operator id → slot in `ops`.
    op_slot: Vec<Option<usize>>,
    /// Operator address → slot in `ops` (to resolve channel ends).
    by_address: HashMap<Vec<usize>, usize>,
    /// Channel id → channel.
    chans: Vec<Option<Chan>>,
    /// Open `Schedule` starts: (operator id, start time). Scopes nest.
    stack: Vec<(usize, Duration)>,
    /// Scratch address for resolution.
    scratch: Vec<usize>,
}

fn slot_mut<T: Clone>(v: &mut Vec<Option<T>>, id: usize) -> Option<&mut Option<T>> {
    if id >= MAX_ID {
        return None;
    }
    if v.len() <= id {
        v.resize(id + 1, None);
    }
    v.get_mut(id)
}

impl Local {
    fn absorb(&mut self, batch: &mut Vec<(Duration, TimelyEvent)>) {
        let table = Arc::clone(&self.table);
        let mut t = lock(&table);
        for (time, event) in batch.drain(..) {
            match event {
                TimelyEvent::Operates(e) => {
                    let slot = t.ops.len();
                    match slot_mut(&mut self.op_slot, e.id) {
                        Some(s) => *s = Some(slot),
                        None => {
                            t.untracked += 1;
                            continue;
                        }
                    }
                    self.by_address.insert(e.addr.clone(), slot);
                    t.ops.push(OpCounters {
                        id: e.id,
                        address: e.addr,
                        name: e.name,
                        records_in: 0,
                        records_out: 0,
                        batches_in: 0,
                        batches_out: 0,
                        busy: Duration::ZERO,
                        schedules: 0,
                        shut_down: false,
                    });
                }
                TimelyEvent::Channels(e) => {
                    let edge = t.edges.len();
                    match slot_mut(&mut self.chans, e.id) {
                        Some(s) => {
                            *s = Some(Chan {
                                edge,
                                source: None,
                                target: None,
                            })
                        }
                        None => {
                            t.untracked += 1;
                            continue;
                        }
                    }
                    t.edges.push(EdgeCounters {
                        channel: e.id,
                        scope: e.scope_addr,
                        source: e.source,
                        target: e.target,
                        records: 0,
                        batches: 0,
                    });
                }
                TimelyEvent::Messages(m) => {
                    let Some(mut c) = self.chans.get(m.channel).copied().flatten() else {
                        t.untracked += 1;
                        continue;
                    };
                    let n = u64::try_from(m.record_count).unwrap_or(0);
                    if m.is_send {
                        if c.source.is_none() {
                            c.source = self.resolve(&t, c.edge, true);
                            self.chans[m.channel] = Some(c);
                        }
                        if let Some(e) = t.edges.get_mut(c.edge) {
                            e.records += n;
                            e.batches += 1;
                        }
                        if let Some(o) = c.source.and_then(|s| t.ops.get_mut(s)) {
                            o.records_out += n;
                            o.batches_out += 1;
                        }
                    } else {
                        if c.target.is_none() {
                            c.target = self.resolve(&t, c.edge, false);
                            self.chans[m.channel] = Some(c);
                        }
                        if let Some(o) = c.target.and_then(|s| t.ops.get_mut(s)) {
                            o.records_in += n;
                            o.batches_in += 1;
                        }
                    }
                }
                TimelyEvent::Schedule(s) => match s.start_stop {
                    StartStop::Start => self.stack.push((s.id, time)),
                    StartStop::Stop => {
                        // Pop to the matching start (a missing stop would only lose time).
                        while let Some((id, start)) = self.stack.pop() {
                            if id == s.id {
                                let slot = self.op_slot.get(id).copied().flatten();
                                if let Some(o) = slot.and_then(|i| t.ops.get_mut(i)) {
                                    o.busy += time.saturating_sub(start);
                                    o.schedules += 1;
                                }
                                break;
                            }
                        }
                    }
                },
                TimelyEvent::Shutdown(s) => {
                    let slot = self.op_slot.get(s.id).copied().flatten();
                    if let Some(o) = slot.and_then(|i| t.ops.get_mut(i)) {
                        o.shut_down = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// The operator slot at one end of an edge (`None` until the operator is logged).
    fn resolve(&mut self, t: &WorkerTable, edge: usize, source: bool) -> Option<usize> {
        let e = t.edges.get(edge)?;
        let node = if source { e.source.0 } else { e.target.0 };
        self.scratch.clear();
        self.scratch.extend_from_slice(&e.scope);
        if node != 0 {
            self.scratch.push(node);
        }
        self.by_address.get(self.scratch.as_slice()).copied()
    }
}

/// Registers the statistics logger on `worker`'s `"timely"` log stream. Call it before the
/// worker builds a dataflow: operators and channels built before are not seen. Replaces an
/// earlier table of the same worker index in `stats`. A worker without a log registry (timely
/// built without logging) is left alone.
pub fn install(worker: &mut timely::worker::Worker, stats: &DataflowStats) {
    let index = worker.index();
    let Some(mut registry) = worker.log_register() else {
        return;
    };
    let mut local = Local {
        table: stats.register(index),
        op_slot: Vec::new(),
        by_address: HashMap::new(),
        chans: Vec::new(),
        stack: Vec::new(),
        scratch: Vec::new(),
    };
    registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
        if let Some(batch) = data {
            local.absorb(batch);
        }
    });
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::generic::Operator;
    use timely::dataflow::operators::vec::Map;
    use timely::dataflow::operators::{Input, Probe};
    use timely::dataflow::{InputHandle, ProbeHandle};

    /// input → map → (exchange) count → probe, on `workers` threads; `records` in batches.
    fn run(workers: usize, records: u64, batch: u64, stats: Option<DataflowStats>) -> Duration {
        let t = Instant::now();
        timely::execute(timely::Config::process(workers), move |worker| {
            if let Some(s) = &stats {
                install(worker, s);
            }
            let index = worker.index() as u64;
            let peers = worker.peers() as u64;
            let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<u64>>> =
                InputHandle::new();
            let probe = ProbeHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .map(|x| x.wrapping_mul(2_654_435_761))
                    .unary::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
                        Exchange::new(|x: &u64| *x),
                        "Count",
                        |_, _| {
                            let mut n = 0u64;
                            move |input, output| {
                                input.for_each(|cap, data| {
                                    n += data.len() as u64;
                                    output.session(&cap).give(n);
                                });
                            }
                        },
                    )
                    .probe_with(&probe);
            });
            let mut sent = 0;
            let mut epoch = 0;
            let mine = (index..records).step_by(peers as usize).count() as u64;
            while sent < mine {
                let n = batch.min(mine - sent);
                for i in 0..n {
                    input.send(sent + i);
                }
                sent += n;
                epoch += 1;
                input.advance_to(epoch);
                while probe.less_than(input.time()) {
                    worker.step();
                }
            }
        })
        .expect("timely")
        .join()
        .into_iter()
        .for_each(|r| r.expect("worker"));
        t.elapsed()
    }

    #[test]
    fn counts_records_batches_edges_and_busy_time_over_workers() {
        let stats = DataflowStats::with_min_interval(Duration::ZERO);
        run(2, 10_000, 1_000, Some(stats.clone()));
        let v = stats.snapshot();
        assert_eq!(v.workers, 2);
        assert_eq!(v.untracked_events, 0);
        let op = |name: &str| {
            v.operators
                .iter()
                .find(|o| o.name == name)
                .unwrap_or_else(|| panic!("no {name} in {:?}", v.operators))
        };
        let (input, map, count) = (op("Input"), op("FlatMap"), op("Count"));
        assert_eq!(input.records_out, 10_000);
        assert_eq!(map.records_in, 10_000);
        assert_eq!(map.records_out, 10_000);
        assert_eq!(count.records_in, 10_000);
        assert!(count.batches >= 10, "{count:?}");
        assert!(count.busy_ms > 0.0, "{count:?}");
        assert!(map.schedules > 0);
        // The root of the dataflow is a scope and contains the others' time.
        let root = v
            .operators
            .iter()
            .find(|o| o.address.len() == 1)
            .expect("dataflow root");
        assert!(root.scope && !map.scope);
        assert!(root.busy_ms >= count.busy_ms);
        assert_eq!(map.address.len(), 2);
        assert_eq!(map.dataflow, root.address[0]);
        // Edges: input → map → count (through the exchange) → probe.
        let edge = |from: &DataflowOperator, to: &DataflowOperator| {
            v.edges
                .iter()
                .find(|e| e.from == from.id && e.to == to.id)
                .unwrap_or_else(|| panic!("no edge {} → {}: {:?}", from.name, to.name, v.edges))
        };
        assert_eq!(edge(input, map).records, 10_000);
        assert_eq!(edge(map, count).records, 10_000);
        let probe = op("Probe");
        assert_eq!(edge(count, probe).records, count.records_out);
        // Rates: with no minimum interval every snapshot is a new interval; nothing ran since.
        assert!(v.interval_ms.is_some());
        let again = stats.snapshot();
        let map2 = again
            .operators
            .iter()
            .find(|o| o.name == "FlatMap")
            .unwrap();
        assert_eq!(map2.records_in_per_s, 0.0);
        assert!(again.operators.iter().all(|o| o.shut_down));
        assert!((0.0..=100.0).contains(&map2.busy_pct));
    }

    #[test]
    fn rates_hold_within_the_minimum_interval() {
        let stats = DataflowStats::with_min_interval(Duration::from_secs(3600));
        run(1, 5_000, 500, Some(stats.clone()));
        // First snapshot: an interval since creation, so the rates are > 0.
        let a = stats.snapshot();
        let map = a.operators.iter().find(|o| o.name == "FlatMap").unwrap();
        assert!(map.records_in_per_s > 0.0, "{map:?}");
        // Within the hour the rates of that interval are served again, unchanged.
        let b = stats.snapshot();
        assert_eq!(a.interval_ms, b.interval_ms);
        let map_b = b.operators.iter().find(|o| o.name == "FlatMap").unwrap();
        assert_eq!(map.records_in_per_s, map_b.records_in_per_s);
    }

    #[test]
    fn a_new_run_replaces_the_workers_tables() {
        let stats = DataflowStats::with_min_interval(Duration::ZERO);
        run(1, 1_000, 100, Some(stats.clone()));
        run(1, 3_000, 100, Some(stats.clone()));
        let v = stats.snapshot();
        assert_eq!(v.workers, 1);
        let map = v.operators.iter().find(|o| o.name == "FlatMap").unwrap();
        assert_eq!(map.records_in, 3_000);
    }

    #[test]
    fn json_shape() {
        let stats = DataflowStats::new();
        let mut v = serde_json::to_value(stats.snapshot()).unwrap();
        assert!(v["interval_ms"].as_f64().is_some(), "{v}");
        v["interval_ms"] = serde_json::Value::Null;
        assert_eq!(
            v,
            serde_json::json!({"workers": 0, "interval_ms": null, "operators": [], "edges": [], "untracked_events": 0})
        );
    }

    /// The logger's overhead (release build, run by hand; see the module docs).
    #[test]
    #[ignore = "a measurement: run with --release -- --ignored --nocapture"]
    fn overhead() {
        let (records, batch) = (4_000_000, 1_000);
        let mut off = Vec::new();
        let mut on = Vec::new();
        for _ in 0..5 {
            off.push(run(2, records, batch, None).as_secs_f64());
            on.push(run(2, records, batch, Some(DataflowStats::new())).as_secs_f64());
        }
        off.sort_by(f64::total_cmp);
        on.sort_by(f64::total_cmp);
        let (a, b) = (off[2], on[2]);
        eprintln!(
            "{records} records in batches of {batch}, 2 workers, median of 5: logging off {:.3} s ({:.1} M/s), on {:.3} s ({:.1} M/s): {:+.1}%",
            a,
            records as f64 / a / 1e6,
            b,
            records as f64 / b / 1e6,
            (b / a - 1.0) * 100.0
        );
    }
}
