//! Kafka → engine → Kafka on a real local broker (tansu 0.6, SQLite storage, started by
//! `scripts/kafka-up.sh` on a free port in a temp directory): throughput and end-to-end
//! latency. Not a criterion bench: each phase runs once for tens of seconds and prints its
//! figures (run it a few times and take medians; the machine is shared and noisy).
//!
//! `cargo bench --bench kafka`
//!
//! Data: the real complaints of `complaints-dev.json` (or the bundled sample when
//! `../shared` is absent) **resampled** by `complaintflow produce`'s resampler into
//! synthetic messages with fresh ids (900,000,000,000+); the model is trained on the real
//! file with the default feature families (narrative TF-IDF included).
//!
//! Phases (each with its own topics):
//!
//! 1. **drain**: `CF_KAFKA_RECORDS` (default 300,000) messages are produced first, then the
//!    engine (2 workers, epochs of 10,000, checkpoints on, JSON Lines files off) reads them
//!    all and writes predictions, dead letters and aggregate changes to Kafka: complaints/min
//!    end to end, with the CPU seconds of the broker and of this process (producer +
//!    engine) over the phase — where the time goes. A second run without Kafka sinks
//!    separates reading from writing.
//! 2. **latency at 10,000/min**: the producer runs at 10,000/min for `CF_KAFKA_LAT_SECS`
//!    (default 60 s) while the engine runs continuously; latency = the prediction message's
//!    timestamp (set when the sink hands it to the producer) − the input message's
//!    timestamp (set by the producer), p50/p99 over every complaint, the engine's share
//!    (`decided_ms − ingest_ms`), and the steady state (complaints produced 2 s or more
//!    after the engine started: before that the bench's own producer is still starting).
//!    Epoch trigger 1 s (the default; `CF_KAFKA_TRIGGER_MS`), linger and in-flight bound from
//!    `CF_KAFKA_LINGER_US` / `CF_KAFKA_MAX_IN_FLIGHT`; `CF_KAFKA_DUMP=FILE` writes
//!    `ingest decided sent partition epoch` (ms) per complaint.
//! 3. **latency at a high rate**: the same at `CF_KAFKA_HIGH_RATE` complaints/min (default
//!    85 % of the drain throughput), with the consumer lag sampled: sustainable when the lag
//!    stays bounded and the achieved rate matches.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use complaintflow_datasets::replay::Rate;
use complaintflow_models::Model;
use complaintflow_operators::kafka::{
    consume_topic, produce_file, ConsumeOptions, DeliveryMode, KafkaConfig, ProduceOptions,
    ReadMode,
};
use complaintflow_pipelines::kafka::{KafkaSinkTopics, KafkaSinks, KafkaSource};
use complaintflow_pipelines::{start, CheckpointConfig, EngineConfig, SourceSpec};
use complaintflow_testkit::{tansu_bin as tansu, Broker};

/// The allocator of the `complaintflow` binary, so the bench measures what `run` delivers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEV: &str = "/work/shared/datasets/cfpb/complaints-dev.json";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of a process so far, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based) of stat; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

struct Cpu {
    broker: f64,
    me: f64,
}

fn cpu_now(broker: &Broker) -> Cpu {
    Cpu {
        broker: broker.pid().map_or(0.0, |p| cpu_seconds(&p.to_string())),
        me: cpu_seconds("self"),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Bench {
    broker: Broker,
    kafka: KafkaConfig,
    model: Model,
    data: PathBuf,
    state: tempfile::TempDir,
}

impl Bench {
    fn topics(&self, tag: &str) -> (String, KafkaSinkTopics) {
        let input = format!("in-{tag}");
        self.broker.create_topic(&input, 4);
        let topics = KafkaSinkTopics {
            predictions: Some(format!("pred-{tag}")),
            dead_letters: Some(format!("dlq-{tag}")),
            aggregates: Some(format!("agg-{tag}")),
        };
        self.broker.create_topic(&format!("pred-{tag}"), 4);
        self.broker.create_topic(&format!("dlq-{tag}"), 1);
        self.broker.create_topic(&format!("agg-{tag}"), 1);
        (input, topics)
    }

    fn engine_config(
        &self,
        tag: &str,
        sinks: Option<KafkaSinks>,
        trigger: Duration,
    ) -> EngineConfig {
        let mut cfg = EngineConfig::new(self.state.path().join("registry"));
        cfg.workers = env_or("CF_KAFKA_WORKERS", 2);
        cfg.policy.max_records_per_epoch = 10_000;
        cfg.policy.trigger_interval = trigger;
        cfg.policy.max_in_flight = env_or("CF_KAFKA_MAX_IN_FLIGHT", cfg.policy.max_in_flight);
        cfg.policy.linger = Duration::from_micros(env_or(
            "CF_KAFKA_LINGER_US",
            u64::try_from(cfg.policy.linger.as_micros()).unwrap_or(u64::MAX),
        ));
        cfg.sinks = sinks
            .map(|s| Arc::new(s) as Arc<dyn complaintflow_pipelines::Sink>)
            .into_iter()
            .collect();
        cfg.checkpoints = Some(CheckpointConfig::new(self.state.path().join(tag)));
        cfg
    }

    fn produce(
        &self,
        topic: &str,
        n: Option<u64>,
        rate: Rate,
        duration: Option<Duration>,
    ) -> (u64, f64) {
        let mut opts = ProduceOptions::new(topic, &self.data);
        opts.resample = Some(n.unwrap_or(u64::MAX / 2));
        opts.rate = rate;
        opts.duration = duration;
        opts.seed = 11;
        let s = produce_file(&self.kafka, &opts, |_| {}).expect("produce");
        assert_eq!(s.errors, 0, "{s:?}");
        (s.acked, s.rate_per_s)
    }

    /// Drain `n` pre-produced messages; returns complaints/min.
    fn drain(&self, n: u64, with_sinks: bool) -> f64 {
        let tag = if with_sinks { "drain" } else { "drain-nosink" };
        let (input, topics) = self.topics(tag);
        let t = Instant::now();
        let (acked, rate) = self.produce(&input, Some(n), Rate::Unlimited, None);
        eprintln!(
            "[{tag}] produced {acked} synthetic messages in {:.1?} ({:.0}/s from one client)",
            t.elapsed(),
            rate
        );
        let source = Arc::new(KafkaSource::new(
            self.kafka.clone(),
            &input,
            ReadMode::Bounded,
        ));
        let sinks = with_sinks.then(|| {
            KafkaSinks::new(
                self.kafka.clone(),
                DeliveryMode::AtLeastOnce,
                topics.clone(),
            )
        });
        let handles = sinks.as_ref().map(KafkaSinks::handles);
        let mut cfg = self.engine_config(tag, sinks, Duration::from_secs(1));
        cfg.once = true; // exit when the bounded source is done
        let c0 = cpu_now(&self.broker);
        let t = Instant::now();
        let engine = start(cfg, SourceSpec::Custom(source), self.model.clone()).expect("start");
        let state = engine.state();
        while !engine.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            if t.elapsed().as_millis() % 5_000 < 100 {
                let m = state.snapshot();
                tracing::info!(
                    records_in = m.records_in,
                    predictions = m.predictions,
                    epochs = m.epochs,
                    sinks = ?handles.as_ref().map(|h| (h.predictions.stats(), h.aggregates.stats())),
                    "[{tag}] progress"
                );
            }
        }
        let summary = engine.join().expect("run");
        let secs = t.elapsed().as_secs_f64();
        let c1 = cpu_now(&self.broker);
        assert_eq!(summary.predictions + summary.dead_letters, acked);
        if let Some(h) = handles {
            let s = h.predictions.stats();
            assert_eq!((s.delivered, s.failed), (summary.predictions, 0));
        }
        let per_min = acked as f64 / secs * 60.0;
        eprintln!(
            "[{tag}] {acked} complaints Kafka → engine{} in {secs:.1} s: {per_min:.0}/min ({:.0}/s); \
             {} epochs, epoch latency p50 {:.2} s p99 {:.2} s; CPU s: broker {:.1}, engine {:.1} (of {:.1} wall × 2 cores)",
            if with_sinks { " → Kafka" } else { " (no Kafka sinks)" },
            acked as f64 / secs,
            summary.epochs,
            summary.epoch_latency_p50_seconds.unwrap_or(f64::NAN),
            summary.epoch_latency_p99_seconds.unwrap_or(f64::NAN),
            c1.broker - c0.broker,
            c1.me - c0.me,
            secs,
        );
        per_min
    }

    /// Producer at `per_min` for `secs` while the engine runs; latency of every complaint.
    fn latency(&self, tag: &str, per_min: f64, secs: u64, trigger: Duration) {
        let (input, topics) = self.topics(tag);
        let pred_topic = topics.predictions.clone().unwrap_or_default();
        let source = Arc::new(KafkaSource::new(
            self.kafka.clone(),
            &input,
            ReadMode::Continuous,
        ));
        let handle = source.handle();
        let sinks = KafkaSinks::new(self.kafka.clone(), DeliveryMode::AtLeastOnce, topics);
        let cfg = self.engine_config(tag, Some(sinks), trigger);
        let started_ms = complaintflow_operators::record::now_ms();
        let engine = start(cfg, SourceSpec::Custom(source), self.model.clone()).expect("start");
        // Sample the lag while the producer runs.
        let done = Arc::new(AtomicBool::new(false));
        let (d2, h2) = (Arc::clone(&done), handle.clone());
        let sampler = std::thread::spawn(move || {
            let mut lags = Vec::new();
            while !d2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                if let Some(l) = h2.lag() {
                    lags.push(l);
                }
            }
            lags
        });
        let c0 = cpu_now(&self.broker);
        let t = Instant::now();
        let rate = Rate::PerSecond(per_min / 60.0);
        let (acked, achieved) = self.produce(&input, None, rate, Some(Duration::from_secs(secs)));
        let produce_secs = t.elapsed().as_secs_f64();
        // Let the engine catch up, then stop it gracefully.
        let t1 = Instant::now();
        while handle.records() < acked && t1.elapsed() < Duration::from_secs(600) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let catch_up = t1.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(1500));
        engine.shutdown();
        let summary = engine.join().expect("run");
        let c1 = cpu_now(&self.broker);
        done.store(true, Ordering::Relaxed);
        let lags = sampler.join().unwrap_or_default();
        // Latencies from the predictions topic.
        let mut lat = Vec::with_capacity(acked as usize);
        // The engine's share: decided − ingest (the rest is the sink's hand-off).
        let mut engine_lat = Vec::with_capacity(acked as usize);
        // Per-complaint timings, only when asked for.
        let dump_path = std::env::var("CF_KAFKA_DUMP").ok();
        let mut dump = Vec::new();
        // Steady state: complaints produced 2 s or more after the engine started. Before that
        // the bench's producer is still starting: a new idempotent producer waits for its
        // producer id from the broker (~1 s from tansu here; the engine's consumer was
        // assigned 0.1 s after the start), which the figure over every complaint includes.
        let mut steady = Vec::with_capacity(acked as usize);
        let mut seen = std::collections::HashSet::new();
        consume_topic(
            &self.kafka,
            &ConsumeOptions::from_beginning(&pred_topic, Duration::from_secs(3)),
            |m| {
                let id = m.value["complaint_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let (Some(ts), Some(ingest)) = (m.timestamp, m.value["ingest_ms"].as_i64()) {
                    if seen.insert(id) {
                        lat.push((ts - ingest) as f64 / 1000.0);
                        if ingest >= started_ms + 2_000 {
                            steady.push((ts - ingest) as f64 / 1000.0);
                        }
                        if let Some(decided) = m.value["decided_ms"].as_i64() {
                            engine_lat.push((decided - ingest) as f64 / 1000.0);
                            if dump_path.is_some() {
                                dump.push(format!(
                                    "{ingest} {decided} {ts} {} {}",
                                    m.partition, m.value["epoch"]
                                ));
                            }
                        }
                    }
                }
                Ok(())
            },
        )
        .expect("consume predictions");
        if let Some(path) = dump_path {
            if let Err(e) = std::fs::write(&path, dump.join("\n")) {
                eprintln!("kafka bench: cannot write CF_KAFKA_DUMP={path}: {e}");
            }
        }
        lat.sort_by(f64::total_cmp);
        engine_lat.sort_by(f64::total_cmp);
        steady.sort_by(f64::total_cmp);
        let max_lag = lags.iter().copied().max().unwrap_or(0);
        let mean_lag = lags.iter().sum::<i64>() as f64 / lags.len().max(1) as f64;
        eprintln!(
            "[{tag}] target {per_min:.0}/min, achieved {:.0}/min for {produce_secs:.0} s ({acked} complaints, {} predicted); \
             latency p50 {:.3} s, p99 {:.3} s, max {:.3} s (decided − ingest: p50 {:.3} s, p99 {:.3} s; \
             steady state, from 2 s after the start: p50 {:.3} s, p99 {:.3} s, max {:.3} s over {}); lag mean {mean_lag:.0}, max {max_lag}; caught up {catch_up:.1} s after the producer; \
             trigger {trigger:?}; CPU s: broker {:.1}, engine+producer {:.1}",
            achieved * 60.0,
            summary.predictions,
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            quantile(&engine_lat, 0.5),
            quantile(&engine_lat, 0.99),
            quantile(&steady, 0.5),
            quantile(&steady, 0.99),
            steady.last().copied().unwrap_or(f64::NAN),
            steady.len(),
            c1.broker - c0.broker,
            c1.me - c0.me,
        );
    }
}

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kafka=info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if std::env::args().any(|a| a == "--list") {
        println!("kafka: bench");
        return;
    }
    if !tansu().exists() {
        eprintln!(
            "kafka bench: tansu is not installed at {}: run scripts/install-tansu.sh",
            tansu().display()
        );
        return;
    }
    let data = if Path::new(DEV).is_file() {
        PathBuf::from(DEV)
    } else {
        complaintflow_datasets::bundled_sample_path()
    };
    let real = complaintflow_testkit::real_records(&data);
    let t = Instant::now();
    let model = complaintflow_testkit::train_model(
        &real,
        &complaintflow_testkit::bench_train_config(),
        "bench",
    );
    eprintln!(
        "kafka bench: model trained on {} real complaints of {} in {:.1?} (dim {})",
        real.len(),
        data.display(),
        t.elapsed(),
        model.pipeline.dim()
    );
    let broker = Broker::start_required();
    eprintln!("kafka bench: tansu at {}", broker.addr);
    let mut kafka = KafkaConfig::with_brokers(&broker.addr);
    // CF_KAFKA_OPTS="linger.ms=20,enable.idempotence=false": librdkafka properties.
    for kv in std::env::var("CF_KAFKA_OPTS")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((k, v)) = kv.split_once('=') {
            kafka
                .extra
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    if !kafka.extra.is_empty() {
        eprintln!("kafka bench: librdkafka extra properties {:?}", kafka.extra);
    }
    let bench = Bench {
        broker,
        kafka,
        model,
        data,
        state: tempfile::tempdir().expect("temp dir"),
    };
    let n: u64 = env_or("CF_KAFKA_RECORDS", 300_000);
    let lat_secs: u64 = env_or("CF_KAFKA_LAT_SECS", 60);
    let phases: String = env_or("CF_KAFKA_PHASES", "drain,low,high".to_string());
    let mut drain = f64::NAN;
    if phases.contains("drain") {
        drain = bench.drain(n, true);
        bench.drain(n, false);
    }
    if phases.contains("low") {
        // Default epoch policy: closes on idle after the 5 ms linger, 1 s at the longest.
        let trigger = Duration::from_millis(env_or("CF_KAFKA_TRIGGER_MS", 1_000));
        bench.latency("low", 10_000.0, lat_secs, trigger);
    }
    if phases.contains("high") {
        let default_high = if drain.is_finite() {
            drain * 0.85
        } else {
            600_000.0
        };
        let high: f64 = env_or("CF_KAFKA_HIGH_RATE", default_high);
        bench.latency("high", high, lat_secs, Duration::from_secs(1));
    }
}
