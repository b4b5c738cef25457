//! Sources: a file (any format the datasets readers know) and a replay (a file, or resampled
//! copies of its complaints, paced to a rate), cut into epochs.
//!
//! **Epochs** ([`EpochCutter`], one policy for every source, Kafka's too). Each worker's
//! source closes its epoch when its share of `max_records_per_epoch` is reached (the original
//! design's `maxOffsetsPerTrigger`), when `trigger_interval` has passed (a heartbeat, also
//! with no record), or — the latency rule — when it has nothing more to read right now, has
//! held a record for `linger` (default 5 ms) and fewer than `max_in_flight` of the epochs it
//! closed with records are incomplete; a graph that falls behind therefore gets larger
//! epochs, like Flink's buffer timeout. With `clock_epochs` (the engine's default) an epoch is
//! the Unix millisecond it opened at, so sources on different workers and processes close the
//! same epochs.
//!
//! **Never blocking.** A source emits at most `batch` records per activation, then asks to
//! be scheduled again (at once, or when the next record is due under a rate).
//!
//! **Splitting a file over workers** ([`FileSplit`]): JSON Lines files are cut into one byte
//! range per worker (each range starts after a newline), so each worker frames only its
//! share; other formats are framed by every worker, which keeps the records whose index
//! modulo the number of workers is its own. Measured on this machine (2 cores, 1M records,
//! 1 GB of JSON Lines): see the engine bench; byte ranges avoid framing the file twice.
//!
//! ```
//! use std::sync::{atomic::AtomicBool, Arc};
//! use complaintflow_datasets::{replay::SystemClock, Format};
//! use complaintflow_operators::source::{file_source, SourcePolicy};
//! use timely::dataflow::operators::{Capture, capture::Extract};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("in.jsonl");
//! std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
//! let policy = SourcePolicy { max_records_per_epoch: 2, ..SourcePolicy::default() };
//! let p = path.clone();
//! let out = timely::example(move |scope| {
//!     let stream = file_source(scope, p, Format::Auto, 1 << 20, policy,
//!                                        SystemClock::default(), Arc::new(AtomicBool::new(false)));
//!     stream.capture()
//! });
//! let epochs: Vec<(u64, usize)> = out.extract().into_iter().map(|(t, v)| (t, v.len())).collect();
//! assert_eq!(epochs, [(0, 2), (1, 1)]);
//! ```

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use complaintflow_datasets::reader::READ_BUFFER_BYTES;
use complaintflow_datasets::replay::{Clock, Resampler, RESAMPLED_ID_BASE};
use complaintflow_datasets::{read_path, ComplaintId, Format, RawRecords, ValidationOptions};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use crate::rate_limit::Pacer;
use crate::record::{Origin, RawInput};

/// How a source cuts its input into epochs and paces it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourcePolicy {
    /// At most this many records per epoch, over all workers (each worker takes an equal
    /// share). Default 10,000.
    pub max_records_per_epoch: usize,
    /// An epoch closes at the latest this long after it opened (a heartbeat, also when no
    /// record arrives). Default 1 s.
    pub trigger_interval: Duration,
    /// An epoch that holds records closes as soon as the source has nothing more to read
    /// and it has been open this long (see [`EpochCutter`]). Default 5 ms.
    pub linger: Duration,
    /// Early closing (on idle) happens only while fewer than this many of the epochs this
    /// source closed with records are incomplete in the graph; beyond, epochs grow.
    /// Default 2.
    pub max_in_flight: u64,
    /// Epoch numbers from the wall clock (milliseconds since the Unix epoch) instead of
    /// 0, 1, 2, …: a new epoch is numbered at least `now`, and an idle source with an empty
    /// epoch moves it to `now` every `linger`. Workers and processes that read at different
    /// paces then agree on what "epoch t" means, so an idle worker never holds back a busy
    /// one's epochs for longer than `linger`. Default `false`; the engine turns it on.
    pub clock_epochs: bool,
    /// Records per second over all workers; `None` (default) = as fast as possible.
    pub rate: Option<f64>,
    /// Records read per activation (bounds how long a source holds its worker). Default 1,024.
    pub batch: usize,
    /// How a file is shared among workers. Default [`FileSplit::Auto`].
    pub split: FileSplit,
    /// Back-pressure: a source stops reading while the graph's completion is this far behind
    /// it (a sink that cannot write — a database or broker outage — holds completion back),
    /// so records wait in the input, not in memory. Measured in milliseconds with clock
    /// epochs, else in trigger intervals' worth of epochs. Default 30 s.
    pub max_behind: Duration,
}

impl Default for SourcePolicy {
    fn default() -> Self {
        SourcePolicy {
            max_records_per_epoch: 10_000,
            trigger_interval: Duration::from_secs(1),
            linger: Duration::from_millis(5),
            max_in_flight: 2,
            clock_epochs: false,
            rate: None,
            batch: 1_024,
            split: FileSplit::Auto,
            max_behind: Duration::from_secs(30),
        }
    }
}

/// What a source is told from outside: when to stop, and (optionally) how far the rest of the
/// graph has got, so that it can grow its epochs when the graph falls behind.
#[derive(Clone, Debug, Default)]
pub struct SourceControl {
    /// Set to stop: the source emits what it has read, closes its epoch and drops its
    /// capability at its next activation.
    pub stop: Arc<AtomicBool>,
    /// The engine's completion probe: epochs before its frontier are complete everywhere.
    /// With it, a source closes an epoch early (on idle, after the linger time) only while
    /// fewer than [`SourcePolicy::max_in_flight`] of the epochs it closed with records are
    /// incomplete.
    pub progress: Option<ProbeHandle<u64>>,
}

impl From<Arc<AtomicBool>> for SourceControl {
    fn from(stop: Arc<AtomicBool>) -> SourceControl {
        SourceControl {
            stop,
            progress: None,
        }
    }
}

impl SourceControl {
    /// Whether the source must stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// How far the completion frontier is behind epoch `current`: in epochs, or with clock
    /// epochs in milliseconds (0 without a probe, or before anything completed).
    pub fn in_flight(&self, current: u64) -> u64 {
        self.progress.as_ref().map_or(0, |p| {
            p.with_frontier(|f| match f.first() {
                Some(0) | None => 0,
                Some(done) => current.saturating_sub(*done),
            })
        })
    }

    /// The completion frontier: every epoch before it is complete everywhere (`u64::MAX`
    /// when everything is, or without a probe).
    pub fn completed_below(&self) -> u64 {
        self.progress.as_ref().map_or(u64::MAX, |p| {
            p.with_frontier(|f| f.first().copied().unwrap_or(u64::MAX))
        })
    }
}

/// When a source closes its epoch: the one policy of every source (file, replay, Kafka).
///
/// An epoch closes when
/// 1. it holds this worker's share of `max_records_per_epoch` (throughput: a backlog runs in
///    large epochs), or
/// 2. it has been open `trigger_interval` (a heartbeat, also with no record), or
/// 3. the source has nothing more to read right now, the epoch holds a record, it has been
///    open at least `linger`, and fewer than `max_in_flight` of the epochs this cutter
///    closed with records are incomplete (latency: light traffic is decided within
///    milliseconds; a graph that falls behind gets larger epochs, like Flink's buffer
///    timeout). Counting epochs, not milliseconds, keeps the rule independent of how long
///    a sink takes to acknowledge: a broker round trip of 30 ms does not hold light traffic
///    to the heartbeat.
///
/// ```
/// use std::time::Duration;
/// use complaintflow_operators::source::{EpochCutter, SourcePolicy};
/// let policy = SourcePolicy { max_records_per_epoch: 3, linger: Duration::from_millis(5), ..SourcePolicy::default() };
/// let mut cut = EpochCutter::new(&policy, 1, Duration::ZERO);
/// assert!(!cut.full());
/// cut.record(); cut.record(); cut.record();
/// assert!(cut.full());
/// cut.closed(Duration::from_millis(1), 0);   // epoch 0 closed with 3 records
/// cut.record();
/// // The third argument is the completion frontier: epochs before it are complete.
/// assert!(!cut.should_close(Duration::from_millis(3), true, 0)); // lingering
/// assert!(cut.should_close(Duration::from_millis(6), true, 0));  // idle after the linger time
/// assert!(!cut.should_close(Duration::from_millis(6), false, 0)); // more is ready: keep going
/// cut.closed(Duration::from_millis(6), 1);   // epoch 1 closed with 1 record
/// cut.record();
/// // Epochs 0 and 1 incomplete (frontier 0): max_in_flight (2) reached, the epoch grows.
/// assert!(!cut.should_close(Duration::from_millis(12), true, 0));
/// assert!(cut.should_close(Duration::from_millis(12), true, 1)); // epoch 0 completed
/// ```
#[derive(Clone, Debug)]
pub struct EpochCutter {
    clock: bool,
    per_epoch: usize,
    max_open: Duration,
    linger: Duration,
    max_in_flight: u64,
    in_epoch: usize,
    opened: Duration,
    max_behind: u64,
    /// Epochs closed with records that were not yet complete when last looked at (oldest
    /// first; at most `max_in_flight`: when the newest of them completes, so have the rest).
    unfinished: VecDeque<u64>,
}

impl EpochCutter {
    /// A cutter for one of `peers` workers, its first epoch opened at `now`.
    pub fn new(policy: &SourcePolicy, peers: usize, now: Duration) -> EpochCutter {
        EpochCutter {
            clock: policy.clock_epochs,
            per_epoch: policy.max_records_per_epoch.max(1).div_ceil(peers.max(1)),
            max_open: policy.trigger_interval.max(Duration::from_micros(100)),
            linger: policy.linger,
            max_in_flight: policy.max_in_flight.max(1),
            in_epoch: 0,
            opened: now,
            unfinished: VecDeque::new(),
            max_behind: {
                let ms = u64::try_from(policy.max_behind.as_millis()).unwrap_or(u64::MAX);
                if policy.clock_epochs {
                    ms.max(1)
                } else {
                    let trigger = u64::try_from(policy.trigger_interval.as_millis()).unwrap_or(1);
                    (ms / trigger.max(1)).max(1)
                }
            },
        }
    }

    /// Back-pressure: whether to stop reading because completion is more than
    /// [`SourcePolicy::max_behind`] behind (`in_flight` from [`SourceControl::in_flight`]:
    /// epochs, or milliseconds with clock epochs).
    ///
    /// ```
    /// use std::time::Duration;
    /// use complaintflow_operators::source::{EpochCutter, SourcePolicy};
    /// let policy = SourcePolicy { clock_epochs: true, max_behind: Duration::from_secs(30), ..SourcePolicy::default() };
    /// let cut = EpochCutter::new(&policy, 1, Duration::ZERO);
    /// assert!(!cut.paused(1_000) && cut.paused(30_001));
    /// ```
    pub fn paused(&self, in_flight: u64) -> bool {
        in_flight > self.max_behind
    }

    /// Whether the epoch is full (close it before the next record).
    pub fn full(&self) -> bool {
        self.in_epoch >= self.per_epoch
    }

    /// One more record in the epoch.
    pub fn record(&mut self) {
        self.in_epoch += 1;
    }

    /// Records in the open epoch.
    pub fn in_epoch(&self) -> usize {
        self.in_epoch
    }

    /// Whether to close the epoch now: `idle` = nothing more to read at the moment,
    /// `completed_below` = the completion frontier ([`SourceControl::completed_below`]):
    /// epochs before it are complete everywhere.
    pub fn should_close(&mut self, now: Duration, idle: bool, completed_below: u64) -> bool {
        let open = now.saturating_sub(self.opened);
        if open >= self.max_open {
            return true;
        }
        if !(idle && self.in_epoch > 0 && open >= self.linger) {
            return false;
        }
        while self
            .unfinished
            .front()
            .is_some_and(|e| *e < completed_below)
        {
            self.unfinished.pop_front();
        }
        (self.unfinished.len() as u64) < self.max_in_flight
    }

    /// Epoch `epoch` was closed at `now`; a new one is open.
    pub fn closed(&mut self, now: Duration, epoch: u64) {
        if self.in_epoch > 0 {
            self.unfinished.push_back(epoch);
            // Bounded: only the early-close rule reads it, and it needs `max_in_flight`.
            let cap = usize::try_from(self.max_in_flight).unwrap_or(usize::MAX);
            while self.unfinished.len() > cap {
                self.unfinished.pop_front();
            }
        }
        self.in_epoch = 0;
        self.opened = now;
    }

    /// The number of the epoch after `current`: `current + 1`, or with clock epochs at least
    /// the current Unix time in milliseconds.
    pub fn next_epoch(&self, current: u64) -> u64 {
        if self.clock {
            (current + 1).max(unix_ms())
        } else {
            current + 1
        }
    }

    /// With clock epochs: the epoch an empty, idle epoch `current` may move to now (the
    /// clock has passed it), else `None`.
    pub fn advance_empty(&self, current: u64) -> Option<u64> {
        if !self.clock || self.in_epoch > 0 {
            return None;
        }
        let now = unix_ms();
        (now > current).then_some(now)
    }

    /// How long until [`should_close`](Self::should_close) (or, with clock epochs,
    /// [`advance_empty`](Self::advance_empty)) can turn true without a new record.
    pub fn wait(&self, now: Duration) -> Duration {
        let open = now.saturating_sub(self.opened);
        let heartbeat = self.max_open.saturating_sub(open);
        if self.in_epoch > 0 {
            heartbeat.min(
                self.linger
                    .saturating_sub(open)
                    .max(Duration::from_micros(200)),
            )
        } else if self.clock {
            heartbeat.min(self.linger.max(Duration::from_millis(1)))
        } else {
            heartbeat
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How the records of a file are shared among workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileSplit {
    /// Byte ranges for JSON Lines, record index modulo workers otherwise.
    #[default]
    Auto,
    /// Every worker frames the whole file and keeps records `i % workers == index`.
    Modulo,
}

/// The generic source: emits the records of a per-worker iterator, cut into epochs and paced
/// by `policy`. `records(index, peers)` builds this worker's iterator (called once, on the
/// worker, when the dataflow is built). `stop` ends the source at its next activation.
///
/// ```
/// use std::sync::{atomic::AtomicBool, Arc};
/// use complaintflow_datasets::replay::SystemClock;
/// use complaintflow_operators::record::{Origin, RawInput};
/// use complaintflow_operators::source::{iter_source, SourcePolicy};
/// use timely::dataflow::operators::{Capture, capture::Extract};
/// let out = timely::example(|scope| {
///     let s = iter_source(scope, |_index, _peers| {
///         (0..5).map(|i| RawInput::new(b"{}".to_vec(), Origin::file("gen", i)))
///     }, SourcePolicy::default(), SystemClock::default(), Arc::new(AtomicBool::new(false)));
///     s.capture()
/// });
/// assert_eq!(out.extract().into_iter().map(|(_, v)| v.len()).sum::<usize>(), 5);
/// ```
pub fn iter_source<'s, I, F, C>(
    scope: Scope<'s, u64>,
    records: F,
    policy: SourcePolicy,
    clock: C,
    control: impl Into<SourceControl>,
) -> Stream<'s, u64, Vec<RawInput>>
where
    F: FnOnce(usize, usize) -> I,
    I: Iterator<Item = RawInput> + 'static,
    C: Clock + 'static,
{
    let control = control.into();
    let peers = scope.peers().max(1);
    let mut iter = records(scope.index(), peers);
    source(scope, "Source", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut pacer = Pacer::new(policy.rate.map(|r| r / peers as f64), clock);
        let mut cut = EpochCutter::new(&policy, peers, pacer.now());
        let mut buf: Vec<RawInput> = Vec::new();
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            if control.stopping() {
                cap = None;
                return;
            }
            let now = pacer.now();
            let (allowed, wait) = pacer.allowed();
            let paused = cut.paused(control.in_flight(*c.time()));
            let budget = if paused {
                0
            } else {
                usize::try_from(allowed)
                    .unwrap_or(usize::MAX)
                    .min(policy.batch.max(1))
            };
            let wait = if paused {
                Some(Duration::from_millis(10))
            } else {
                wait
            };
            let mut emitted = 0usize;
            let mut exhausted = false;
            while emitted < budget {
                if cut.full() {
                    if !buf.is_empty() {
                        output.session(&*c).give_container(&mut buf);
                        buf.clear();
                    }
                    let (closing, next) = (*c.time(), cut.next_epoch(*c.time()));
                    c.downgrade(&next);
                    cut.closed(now, closing);
                }
                let Some(r) = iter.next() else {
                    exhausted = true;
                    break;
                };
                buf.push(r);
                cut.record();
                emitted += 1;
            }
            if !buf.is_empty() {
                output.session(&*c).give_container(&mut buf);
                buf.clear();
            }
            pacer.consumed(emitted as u64);
            if exhausted {
                cap = None;
                return;
            }
            // Idle: the rate holds the rest back (a backlog is never idle).
            let idle = budget == 0 || (pacer.is_limited() && emitted < policy.batch.max(1));
            if cut.should_close(now, idle, control.completed_below()) {
                let (closing, next) = (*c.time(), cut.next_epoch(*c.time()));
                c.downgrade(&next);
                cut.closed(now, closing);
            } else if let Some(next) = cut.advance_empty(*c.time()).filter(|_| idle) {
                let closing = *c.time();
                c.downgrade(&next);
                cut.closed(now, closing);
            }
            let to_cut = cut.wait(now);
            match wait {
                Some(w) => activator.activate_after(w.min(to_cut)),
                None if budget == 0 => activator.activate_after(to_cut),
                None => activator.activate(),
            }
        }
    })
}

/// Reads `path` as [`RawInput`] records (framing errors become records that
/// `parse_complaints` turns into dead letters; an unreadable file becomes one dead letter of
/// kind `io`). See the [module docs](self) for epochs and splitting.
pub fn file_source<'s, C: Clock + 'static>(
    scope: Scope<'s, u64>,
    path: PathBuf,
    format: Format,
    max_record_bytes: usize,
    policy: SourcePolicy,
    clock: C,
    control: impl Into<SourceControl>,
) -> Stream<'s, u64, Vec<RawInput>> {
    let split = policy.split;
    iter_source(
        scope,
        move |index, peers| file_records(&path, format, max_record_bytes, split, index, peers),
        policy,
        clock,
        control,
    )
}

/// What a replay source emits.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaySpec {
    /// The file of real complaints.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// `None`: replay the file's records once. `Some(n)`: emit `n` resampled copies of its
    /// valid complaints (drawn with replacement, fresh ids from `RESAMPLED_ID_BASE`: clearly
    /// synthetic load, never mistaken for real records).
    pub resample: Option<u64>,
    /// Seed of the resampler.
    pub seed: u64,
}

/// A replay source: the file's records (or `resample` resampled copies), paced to
/// `policy.rate` on `clock`. With resampling, worker `w` of `p` draws its share with seed
/// `seed + w` and numbers its copies `RESAMPLED_ID_BASE + k·p + w`, so ids never collide.
///
/// ```
/// use std::sync::{atomic::AtomicBool, Arc};
/// use complaintflow_datasets::{replay::SystemClock, Format};
/// use complaintflow_operators::source::{replay_source, ReplaySpec, SourcePolicy};
/// use timely::dataflow::operators::{Capture, capture::Extract};
/// let spec = ReplaySpec { path: complaintflow_datasets::bundled_sample_path(), format: Format::Auto,
///                         resample: Some(50), seed: 7 };
/// let policy = SourcePolicy { rate: Some(1000.0), ..SourcePolicy::default() };
/// let out = timely::example(move |scope| {
///     let s = replay_source(scope, spec, 1 << 20, &Default::default(), policy,
///                                SystemClock::default(), Arc::new(AtomicBool::new(false)));
///     s.capture()
/// });
/// assert_eq!(out.extract().into_iter().map(|(_, v)| v.len()).sum::<usize>(), 50);
/// ```
pub fn replay_source<'s, C: Clock + 'static>(
    scope: Scope<'s, u64>,
    spec: ReplaySpec,
    max_record_bytes: usize,
    validation: &ValidationOptions,
    policy: SourcePolicy,
    clock: C,
    control: impl Into<SourceControl>,
) -> Stream<'s, u64, Vec<RawInput>> {
    let opts = validation.clone();
    let policy_split = policy.split;
    iter_source(
        scope,
        move |index, peers| -> Box<dyn Iterator<Item = RawInput>> {
            match spec.resample {
                None => file_records(
                    &spec.path,
                    spec.format,
                    max_record_bytes,
                    policy_split,
                    index,
                    peers,
                ),
                Some(n) => resampled(&spec, &opts, n, index, peers),
            }
        },
        policy,
        clock,
        control,
    )
}

fn resampled(
    spec: &ReplaySpec,
    opts: &ValidationOptions,
    n: u64,
    index: usize,
    peers: usize,
) -> Box<dyn Iterator<Item = RawInput>> {
    let name: Arc<str> = Arc::from(format!("resampled:{}", spec.path.display()));
    let pool: Vec<_> = match read_path(&spec.path, spec.format, opts) {
        Ok(it) => it.filter_map(Result::ok).collect(),
        Err(e) => return Box::new(std::iter::once(io_error(&name, &e.to_string()))),
    };
    let share = n / peers as u64 + u64::from((index as u64) < n % peers as u64);
    let sampler = match Resampler::new(pool, spec.seed.wrapping_add(index as u64)) {
        Ok(s) => s,
        Err(e) => return Box::new(std::iter::once(io_error(&name, &e.to_string()))),
    };
    let (index, peers) = (index as u64, peers as u64);
    Box::new(sampler.take(share as usize).map(move |mut c| {
        let k = c.complaint_id.0.saturating_sub(RESAMPLED_ID_BASE);
        c.complaint_id = ComplaintId(RESAMPLED_ID_BASE + k * peers + index);
        let origin = Origin {
            source: Arc::clone(&name),
            partition: 0,
            offset: i64::try_from(k * peers + index).unwrap_or(i64::MAX),
        };
        match serde_json::to_vec(&c) {
            Ok(bytes) => RawInput::new(bytes, origin),
            Err(e) => RawInput::framing_error(Vec::new(), origin, "io", e.to_string()),
        }
    }))
}

fn io_error(source: &str, message: &str) -> RawInput {
    RawInput::framing_error(
        Vec::new(),
        Origin::file(source, 0),
        "io",
        format!("cannot read {source}: {message}"),
    )
}

/// Resolves [`Format::Auto`] the way the readers do (extension, then content).
fn resolve_format(path: &Path, format: Format) -> Format {
    if format != Format::Auto {
        return format;
    }
    if let Some(f) = Format::from_extension(path) {
        return f;
    }
    let mut head = vec![0u8; 64 * 1024];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head.truncate(n);
    Format::sniff(&head).unwrap_or(Format::JsonArray)
}

/// Start of the line containing byte `pos` or following it: the first byte after a newline
/// at or after `pos - 1`.
fn line_start_at_or_after(f: &mut File, pos: u64, len: u64) -> std::io::Result<u64> {
    if pos == 0 || pos >= len {
        return Ok(pos.min(len));
    }
    f.seek(SeekFrom::Start(pos - 1))?;
    let mut r = BufReader::with_capacity(64 * 1024, f);
    let mut skipped = Vec::new();
    let n = r.read_until(b'\n', &mut skipped)?;
    Ok((pos - 1 + n as u64).min(len))
}

/// This worker's records of a file.
fn file_records(
    path: &Path,
    format: Format,
    max_record_bytes: usize,
    split: FileSplit,
    index: usize,
    peers: usize,
) -> Box<dyn Iterator<Item = RawInput>> {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let format = resolve_format(path, format);
    if format == Format::JsonLines && split == FileSplit::Auto {
        let range = (|| -> std::io::Result<(File, u64, u64)> {
            let mut f = File::open(path)?;
            let len = f.metadata()?.len();
            let a = line_start_at_or_after(&mut f, len * index as u64 / peers as u64, len)?;
            let b = line_start_at_or_after(&mut f, len * (index as u64 + 1) / peers as u64, len)?;
            f.seek(SeekFrom::Start(a))?;
            Ok((f, a, b.max(a)))
        })();
        let (f, start, end) = match range {
            Ok(r) => r,
            Err(e) => {
                return if index == 0 {
                    Box::new(std::iter::once(io_error(&name, &e.to_string())))
                } else {
                    Box::new(std::iter::empty())
                }
            }
        };
        let reader = BufReader::with_capacity(READ_BUFFER_BYTES, f.take(end - start));
        let records = RawRecords::new(reader, Format::JsonLines, max_record_bytes);
        return Box::new(
            records.map(move |item| {
                framed(item, &name, |loc| loc.byte_offset.map_or(0, |o| start + o))
            }),
        );
    }
    let records = match RawRecords::from_path(path, format, max_record_bytes) {
        Ok(r) => r,
        Err(e) => {
            return if index == 0 {
                Box::new(std::iter::once(io_error(&name, &e.to_string())))
            } else {
                Box::new(std::iter::empty())
            }
        }
    };
    let (me, peers) = (index as u64, peers as u64);
    Box::new(
        records
            .enumerate()
            .filter(move |(i, _)| *i as u64 % peers == me)
            .map(move |(i, item)| framed(item, &name, |_| i as u64)),
    )
}

fn framed(
    item: Result<complaintflow_datasets::RawRecord, complaintflow_datasets::RecordError>,
    name: &Arc<str>,
    offset: impl Fn(&complaintflow_datasets::Location) -> u64,
) -> RawInput {
    match item {
        Ok(r) => {
            let o = i64::try_from(offset(&r.location)).unwrap_or(i64::MAX);
            RawInput::new(r.bytes, Origin::file(Arc::clone(name), o))
        }
        Err(e) => {
            let o = i64::try_from(offset(&e.location)).unwrap_or(i64::MAX);
            RawInput::framing_error(
                Vec::new(),
                Origin::file(Arc::clone(name), o),
                e.kind.as_str(),
                e.message,
            )
        }
    }
}
