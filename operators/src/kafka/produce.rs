//! The replay producer behind `complaintflow produce`: sends the records of a file (each
//! record's original JSON bytes, key = its `complaint_id`) at a rate, optionally looping,
//! for a duration, with deterministic synthetic malformed records mixed in, and with a
//! bounded number of messages in flight (it waits when the broker falls behind).
//!
//! Malformed records are **synthetic** and marked so: their key starts with
//! [`MALFORMED_KEY_PREFIX`], they are logged as synthetic, and they are sent *in addition*
//! to the real records (every real record still arrives). Which records get one, and of
//! which kind, depends only on the seed:
//!
//! ```
//! use complaintflow_operators::kafka::{Malformed, MalformedInjector};
//! let record = br#"{"complaint_id":"42","date_received":"2020-01-02","product":"Mortgage"}"#;
//! let mut a = MalformedInjector::new(0.5, 7);
//! let mut b = MalformedInjector::new(0.5, 7);
//! let xs: Vec<_> = (0..100).map(|_| a.next_for(record)).collect();
//! let ys: Vec<_> = (0..100).map(|_| b.next_for(record)).collect();
//! assert_eq!(xs, ys); // deterministic
//! let injected: Vec<_> = xs.into_iter().flatten().collect();
//! assert!(injected.len() > 30 && injected.len() < 70);
//! for (key, bytes, kind) in &injected {
//!     assert!(key.starts_with("synthetic-malformed-"));
//!     let parsed = complaintflow_datasets::parse_json_record(bytes, &Default::default());
//!     assert!(parsed.is_err(), "{kind:?} must not parse");
//! }
//! assert!(injected.iter().any(|(_, _, k)| *k == Malformed::BadDate));
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use complaintflow_datasets::replay::{Rate, Resampler};
use complaintflow_datasets::{read_path, Format, RawRecords, ValidationOptions};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::Serialize;

use super::config::{KafkaConfig, KafkaError};
use super::context::{lock, TracingContext};
use super::sink::permanent;

/// Key prefix of synthetic malformed records.
pub const MALFORMED_KEY_PREFIX: &str = "synthetic-malformed-";

/// Complaint ids given to synthetic bad-date records (`MALFORMED_ID_BASE + n`): far above
/// real CFPB ids and below the resampler's range.
pub const MALFORMED_ID_BASE: u64 = 800_000_000_000;

/// The kinds of synthetic malformed records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    /// The first half of a real record's JSON.
    TruncatedJson,
    /// Random bytes, not UTF-8.
    Garbage,
    /// A real record with `date_received` = `2019-13-45` and a synthetic id.
    BadDate,
}

/// Decides, deterministically from a seed, which records are followed by a synthetic
/// malformed one, and builds it.
#[derive(Clone, Debug)]
pub struct MalformedInjector {
    /// Probability per record, as a threshold on a u64 draw.
    threshold: u64,
    state: u64,
    count: u64,
}

impl MalformedInjector {
    /// Injects after a share `fraction` (0–1) of the records.
    pub fn new(fraction: f64, seed: u64) -> MalformedInjector {
        let f = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        MalformedInjector {
            threshold: (f * u64::MAX as f64) as u64,
            state: seed ^ 0x0005_EED0_FBAD_DA7A,
            count: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// How many were injected so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// After sending `record`: `Some((key, bytes, kind))` if a malformed record follows it.
    pub fn next_for(&mut self, record: &[u8]) -> Option<(String, Vec<u8>, Malformed)> {
        if self.threshold == 0 || self.next_u64() > self.threshold {
            return None;
        }
        let n = self.count;
        self.count += 1;
        let kind = match self.next_u64() % 3 {
            0 => Malformed::TruncatedJson,
            1 => Malformed::Garbage,
            _ => Malformed::BadDate,
        };
        let bytes = match kind {
            Malformed::TruncatedJson => {
                let cut = (record.len() / 2).max(1).min(record.len());
                record.get(..cut).unwrap_or(b"{").to_vec()
            }
            Malformed::Garbage => {
                let len = 16 + (self.next_u64() % 48) as usize;
                let mut b = vec![0xFF, 0xFE];
                while b.len() < len {
                    b.extend_from_slice(&self.next_u64().to_le_bytes());
                }
                b.truncate(len);
                b
            }
            Malformed::BadDate => {
                let mut v: serde_json::Value =
                    serde_json::from_slice(record).unwrap_or_else(|_| serde_json::json!({}));
                if !v.is_object() {
                    v = serde_json::json!({});
                }
                v["complaint_id"] = serde_json::json!((MALFORMED_ID_BASE + n).to_string());
                v["date_received"] = serde_json::json!("2019-13-45");
                serde_json::to_vec(&v)
                    .unwrap_or_else(|_| b"{\"date_received\":\"2019-13-45\"}".to_vec())
            }
        };
        Some((format!("{MALFORMED_KEY_PREFIX}{n}"), bytes, kind))
    }
}

/// What to produce.
#[derive(Clone, Debug)]
pub struct ProduceOptions {
    /// Target topic.
    pub topic: String,
    /// The input file (JSON array, JSON Lines, API envelope, CSV).
    pub file: PathBuf,
    /// Its format (`Auto` to detect).
    pub format: Format,
    /// Messages per second (real records + synthetic malformed ones).
    pub rate: Rate,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Start the file again when it ends (until `duration` or the stop flag).
    pub looped: bool,
    /// `Some(n)`: send `n` resampled copies of the file's valid complaints (synthetic ids
    /// from `RESAMPLED_ID_BASE`) instead of the file's records.
    pub resample: Option<u64>,
    /// Share of records followed by a synthetic malformed record (0–1).
    pub inject_malformed: f64,
    /// Seed of the malformed injector and the resampler.
    pub seed: u64,
    /// At most this many messages unacknowledged (backpressure). Default 50,000.
    pub max_in_flight: usize,
    /// Records longer than this in the file are reported and skipped. Default 1 MiB.
    pub max_record_bytes: usize,
    /// Progress is logged this often. Default 5 s.
    pub progress_every: Duration,
    /// Stops the producer (then it flushes what is in flight).
    pub stop: Arc<AtomicBool>,
}

impl ProduceOptions {
    /// Sends `file` once to `topic`, as fast as possible.
    pub fn new(topic: impl Into<String>, file: impl Into<PathBuf>) -> ProduceOptions {
        ProduceOptions {
            topic: topic.into(),
            file: file.into(),
            format: Format::Auto,
            rate: Rate::Unlimited,
            duration: None,
            looped: false,
            resample: None,
            inject_malformed: 0.0,
            seed: 1,
            max_in_flight: 50_000,
            max_record_bytes: 1 << 20,
            progress_every: Duration::from_secs(5),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Progress so far (passed to the progress callback after every message).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProduceProgress {
    /// Messages handed to the producer.
    pub sent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Synthetic malformed messages among `sent`.
    pub malformed: u64,
    /// Messages that could not be delivered.
    pub errors: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProduceSummary {
    /// Messages sent (real + synthetic malformed).
    pub sent: u64,
    /// Messages acknowledged by the broker.
    pub acked: u64,
    /// Synthetic malformed messages sent.
    pub malformed_injected: u64,
    /// Messages that could not be delivered.
    pub errors: u64,
    /// The first delivery error.
    pub first_error: Option<String>,
    /// Messages sent again after a retriable delivery error (e.g. a broker that answers
    /// `UNKNOWN_SERVER_ERROR` while it shuts down).
    pub retried: u64,
    /// Records of the file that could not be framed (reported, not sent).
    pub unreadable: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Seconds from the first send to the last acknowledgement.
    pub elapsed_s: f64,
    /// Acknowledged messages per second.
    pub rate_per_s: f64,
    /// Acknowledged payload MB (10^6 bytes) per second.
    pub mb_per_s: f64,
}

/// A message that failed with a retriable error: key, payload, attempts so far, when to
/// send it again.
type Retry = (Option<Vec<u8>>, Vec<u8>, u32, Instant);

/// Sends of one message at most (librdkafka retries each send internally too).
const MAX_ATTEMPTS: u32 = 30;

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    errors: AtomicU64,
    retried: AtomicU64,
    first_error: Mutex<Option<String>>,
    retry: Mutex<Vec<Retry>>,
}

impl Counters {
    fn failed(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = lock(&self.first_error);
        if first.is_none() {
            tracing::error!("delivery failed: {e}");
            *first = Some(e);
        }
    }
}

struct CountingContext {
    counters: Arc<Counters>,
    inner: TracingContext,
}

impl ClientContext for CountingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }
    fn error(&self, error: RdError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ProducerContext for CountingContext {
    /// Sends of the message so far.
    type DeliveryOpaque = Box<u32>;
    fn delivery(&self, result: &DeliveryResult<'_>, attempts: Box<u32>) {
        match result {
            Ok(_) => {
                self.counters.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                if permanent(e.rdkafka_error_code()) || *attempts >= MAX_ATTEMPTS {
                    self.counters.failed(e.to_string());
                } else {
                    // E.g. tansu answers UNKNOWN_SERVER_ERROR while it shuts down.
                    let backoff = Duration::from_millis(200 * u64::from((*attempts).min(25)));
                    lock(&self.counters.retry).push((
                        msg.key().map(<[u8]>::to_vec),
                        msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        *attempts,
                        Instant::now() + backoff,
                    ));
                    if self.counters.retried.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!("delivery failed, sending again: {e}");
                    }
                }
            }
        }
    }
}

/// Sends again the failed messages whose backoff has passed.
fn resend_due(producer: &BaseProducer<CountingContext>, topic: &str, counters: &Counters) {
    let now = Instant::now();
    let due: Vec<Retry> = {
        let mut r = lock(&counters.retry);
        if r.iter().all(|x| x.3 > now) {
            return;
        }
        let (due, later) = r.drain(..).partition(|x| x.3 <= now);
        *r = later;
        due
    };
    for (key, payload, attempts, _) in due {
        let mut rec = BaseRecord::with_opaque_to(topic, Box::new(attempts + 1)).payload(&payload);
        if let Some(k) = &key {
            rec = rec.key(k);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    counters.failed(e.to_string());
                    break;
                }
            }
        }
    }
}

/// Extracts `complaint_id` from a JSON record without building the whole value.
fn complaint_key(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        complaint_id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Id>(bytes).ok()?.complaint_id? {
        serde_json::Value::String(s) => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Where records come from.
enum Records {
    File(RawRecords<std::io::BufReader<std::fs::File>>),
    Resampled(Resampler, u64),
}

/// Produces `opts.file` to `opts.topic` (see the [module docs](self)); `on_progress` is
/// called after every message (cheap: for a progress bar). Returns the summary; delivery
/// failures are counted in it (and make it an error only if nothing was delivered).
pub fn produce_file(
    cfg: &KafkaConfig,
    opts: &ProduceOptions,
    mut on_progress: impl FnMut(&ProduceProgress),
) -> Result<ProduceSummary, KafkaError> {
    cfg.check_reachable()?;
    cfg.partitions(&opts.topic)?;
    let counters = Arc::new(Counters::default());
    let ctx = CountingContext {
        counters: Arc::clone(&counters),
        inner: TracingContext::default(),
    };
    let queue_max = opts.max_in_flight.clamp(1, 10_000_000);
    let producer: BaseProducer<CountingContext> = cfg
        .producer_config()
        .set(
            "queue.buffering.max.messages",
            queue_max.max(1000).to_string(),
        )
        .create_with_context(ctx)
        .map_err(|e| KafkaError::Config(format!("cannot create a Kafka producer: {e}")))?;

    let open = || -> Result<Records, KafkaError> {
        match opts.resample {
            None => Ok(Records::File(RawRecords::from_path(
                &opts.file,
                opts.format,
                opts.max_record_bytes,
            )?)),
            Some(n) => {
                let pool: Vec<_> =
                    read_path(&opts.file, opts.format, &ValidationOptions::default())?
                        .filter_map(Result::ok)
                        .collect();
                Ok(Records::Resampled(Resampler::new(pool, opts.seed)?, n))
            }
        }
    };
    let mut records = open()?;
    let mut injector = MalformedInjector::new(opts.inject_malformed, opts.seed);
    let per_sec = opts.rate.per_second();
    let start = Instant::now();
    let mut last_log = start;
    let mut progress = ProduceProgress::default();
    let mut unreadable = 0u64;
    let mut resampled_sent = 0u64;
    tracing::info!(topic = %opts.topic, file = %opts.file.display(), rate = %opts.rate,
        inject_malformed = opts.inject_malformed, looped = opts.looped, "producing");

    let send = |key: &str, payload: &[u8], progress: &mut ProduceProgress| {
        // Pace.
        if let Some(r) = per_sec {
            let due = start + Duration::from_secs_f64(progress.sent as f64 / r);
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                producer.poll((due - now).min(Duration::from_millis(50)));
            }
        }
        // Bound what is in flight.
        loop {
            let done =
                counters.acked.load(Ordering::Relaxed) + counters.errors.load(Ordering::Relaxed);
            if progress.sent.saturating_sub(done) < queue_max as u64 {
                break;
            }
            producer.poll(Duration::from_millis(5));
        }
        resend_due(&producer, &opts.topic, &counters);
        let mut rec = BaseRecord::with_opaque_to(&opts.topic, Box::new(1u32))
            .key(key)
            .payload(payload);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    counters.failed(e.to_string());
                    break;
                }
            }
        }
        progress.sent += 1;
        progress.bytes += payload.len() as u64;
        if progress.sent.is_multiple_of(256) {
            producer.poll(Duration::ZERO);
        }
    };

    'outer: loop {
        let next: Option<(String, Vec<u8>)> = match &mut records {
            Records::File(it) => match it.next() {
                None => None,
                Some(Err(e)) => {
                    unreadable += 1;
                    tracing::warn!(file = %opts.file.display(), "record not sent, cannot be framed: {e}");
                    continue;
                }
                Some(Ok(raw)) => {
                    let key = complaint_key(&raw.bytes)
                        .unwrap_or_else(|| format!("no-id-{}", raw.location.record));
                    Some((key, raw.bytes))
                }
            },
            Records::Resampled(sampler, n) => {
                if resampled_sent >= *n && !opts.looped {
                    None
                } else {
                    resampled_sent += 1;
                    sampler.next().and_then(|c| {
                        serde_json::to_vec(&c)
                            .ok()
                            .map(|b| (c.complaint_id.0.to_string(), b))
                    })
                }
            }
        };
        let Some((key, bytes)) = next else {
            if opts.looped && opts.resample.is_none() {
                records = open()?;
                continue;
            }
            break;
        };
        if opts.stop.load(Ordering::Relaxed) || opts.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        send(&key, &bytes, &mut progress);
        if let Some((mkey, mbytes, kind)) = injector.next_for(&bytes) {
            tracing::debug!(key = %mkey, ?kind, "sending a synthetic malformed record");
            send(&mkey, &mbytes, &mut progress);
            progress.malformed += 1;
        }
        progress.acked = counters.acked.load(Ordering::Relaxed);
        progress.errors = counters.errors.load(Ordering::Relaxed);
        progress.elapsed = start.elapsed();
        on_progress(&progress);
        if last_log.elapsed() >= opts.progress_every {
            last_log = Instant::now();
            let secs = progress.elapsed.as_secs_f64().max(1e-9);
            tracing::info!(
                sent = progress.sent,
                acked = progress.acked,
                errors = progress.errors,
                synthetic_malformed = progress.malformed,
                "producing: {:.0} msg/s, {:.1} MB/s",
                progress.acked as f64 / secs,
                progress.bytes as f64 / secs / 1e6
            );
        }
        if opts.stop.load(Ordering::Relaxed) {
            break 'outer;
        }
    }
    // Wait for every acknowledgement (librdkafka retries within message.timeout.ms; retriable
    // failures are sent again, at most MAX_ATTEMPTS times).
    while counters.acked.load(Ordering::Relaxed) + counters.errors.load(Ordering::Relaxed)
        < progress.sent
    {
        resend_due(&producer, &opts.topic, &counters);
        if let Err(e) = producer.flush(Duration::from_millis(100)) {
            tracing::debug!("flush: {e}");
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let acked = counters.acked.load(Ordering::Relaxed);
    let summary = ProduceSummary {
        sent: progress.sent,
        acked,
        malformed_injected: injector.count(),
        errors: counters.errors.load(Ordering::Relaxed),
        first_error: lock(&counters.first_error).clone(),
        retried: counters.retried.load(Ordering::Relaxed),
        unreadable,
        bytes: progress.bytes,
        elapsed_s: elapsed,
        rate_per_s: acked as f64 / elapsed,
        mb_per_s: progress.bytes as f64 / elapsed / 1e6,
    };
    progress.acked = acked;
    progress.elapsed = start.elapsed();
    on_progress(&progress);
    tracing::info!(
        sent = summary.sent,
        acked = summary.acked,
        errors = summary.errors,
        synthetic_malformed = summary.malformed_injected,
        unreadable = summary.unreadable,
        "produced: {:.0} msg/s, {:.1} MB/s over {:.1} s",
        summary.rate_per_s,
        summary.mb_per_s,
        elapsed
    );
    if summary.acked == 0 && summary.errors > 0 {
        return Err(KafkaError::Delivery {
            topic: opts.topic.clone(),
            failed: summary.errors,
            first_error: summary.first_error.unwrap_or_default(),
        });
    }
    Ok(summary)
}
