//! `complaintflow run`: the main job, and its HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use complaintflow::engine_view::LiveView;
use complaintflow::http::{self, EngineView, HealthStatus, HttpUiConfig};
use complaintflow_datasets::replay::Rate;
use complaintflow_datasets::split::is_train;
use complaintflow_datasets::{bundled_sample_path, read_path, Format};
use complaintflow_models::{DataInfo, Model, Registry};
use complaintflow_operators::kafka::{
    detect_transactions, DeliveryMode, KafkaConfig, KafkaSourceHandle, ReadMode,
};
use complaintflow_operators::SourcePolicy;
use complaintflow_pipelines::kafka::{KafkaSinkHandles, KafkaSinkTopics, KafkaSinks, KafkaSource};
use complaintflow_pipelines::{
    CheckpointConfig, Dimension, EngineConfig, SinkFactory, SourceFactory, SourceSpec,
};

use crate::cli::RunArgs;
use crate::config::Config;

/// Runs the engine until the source is exhausted (`--once`) or Ctrl-C.
pub fn run(a: RunArgs, config: &Config) -> Result<ExitCode> {
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            config.state_dir.display()
        )
    })?;
    let registry = Registry::open(config.registry_dir()).with_context(|| {
        format!(
            "cannot open the model registry at {}",
            config.registry_dir().display()
        )
    })?;
    let kafka_topic = match a.source.as_deref().map(|s| s.split_once(':')) {
        Some(Some(("kafka", t))) if !t.is_empty() => Some(t.to_string()),
        Some(Some(("file", _))) | None => None,
        _ => bail!(
            "--source {:?}: use file:PATH or kafka:TOPIC (with --brokers HOST:PORT)",
            a.source.as_deref().unwrap_or_default()
        ),
    };
    let kafka_cfg = {
        let mut k = config.kafka.clone();
        if let Some(b) = &a.brokers {
            k.brokers = b.clone();
        }
        k.extra.extend(a.kafka_opt.iter().cloned());
        k
    };
    if kafka_topic.is_none() && a.until_idle.is_some() {
        bail!("--until-idle needs a Kafka source (--source kafka:TOPIC); a file source ends with --once");
    }
    let (source_path, format) = match a.source.as_deref().and_then(|s| s.strip_prefix("file:")) {
        Some(p) => (
            PathBuf::from(p),
            a.input_format
                .parse::<Format>()
                .map_err(|e| anyhow::anyhow!("--input-format: {e}"))?,
        ),
        None => (bundled_sample_path(), Format::Auto),
    };
    if kafka_topic.is_none() && !source_path.is_file() {
        bail!(
            "source file {} not found: pass --source file:PATH",
            source_path.display()
        );
    }
    let default_job = a.source.is_none();
    let model = production_model(&registry, config, default_job)?;
    // The default job replays the part of the bundled sample the model did not train on.
    let source_path = if default_job && a.source.is_none() {
        let out = config.state_dir.join("sample-replay.jsonl");
        write_test_split(&source_path, &out, config)?;
        out
    } else {
        source_path
    };
    let kafka = kafka_wiring(&a, kafka_topic.as_deref(), &kafka_cfg)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = a.workers.unwrap_or(cores).max(1);
    if workers > cores {
        tracing::warn!(
            workers,
            cores,
            "more worker threads than cores: timely slows down sharply when oversubscribed"
        );
    }
    let addresses = match &a.hostfile {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read hostfile {}", f.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect(),
        None => Vec::new(),
    };
    let rate = match &a.rate {
        Some(r) => Some(
            r.parse::<Rate>()
                .map_err(|e| anyhow::anyhow!("--rate {r:?}: {e} (e.g. 10000/min or 500/s)"))?
                .per_second()
                .context("--rate must be positive")?,
        ),
        None => None,
    };
    let state_file =
        |p: &Option<PathBuf>, name: &str| p.clone().unwrap_or_else(|| config.state_dir.join(name));
    let mut cfg = EngineConfig {
        workers,
        processes: a.processes.max(1),
        process: a.process,
        addresses,
        policy: SourcePolicy {
            max_records_per_epoch: a.max_records_per_epoch,
            trigger_interval: Duration::from_millis(a.trigger_ms.max(1)),
            rate,
            ..SourcePolicy::default()
        },
        validation: config.data.clone(),
        decision: config.decision.clone(),
        predictions_path: Some(state_file(&a.predictions, "predictions.jsonl")),
        dead_letters_path: Some(state_file(&a.dead_letters, "dead-letters.jsonl")),
        recent_capacity: 500,
        once: a.once,
        registry_dir: config.registry_dir(),
        train: config.train.clone(),
        sinks: None,
        checkpoints: None,
    };
    if let Some(s) = &kafka.sinks {
        let s: Arc<dyn SinkFactory> = s.clone();
        cfg.sinks = Some(s);
    }
    let (source_spec, source_desc) = match &kafka.source {
        Some(src) => {
            let mut cp = CheckpointConfig::new(&config.state_dir);
            cp.interval = Duration::from_millis(a.checkpoint_ms.max(1));
            cfg.checkpoints = Some(cp);
            let desc = src.describe();
            let src: Arc<dyn SourceFactory> = src.clone();
            (SourceSpec::Custom(src), desc)
        }
        None => (
            SourceSpec::File {
                path: source_path.clone(),
                format,
            },
            format!("file:{}", source_path.display()),
        ),
    };
    let (pred, dl) = (cfg.predictions_path.clone(), cfg.dead_letters_path.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let http_addr = a
        .http_addr
        .clone()
        .unwrap_or_else(|| config.http.addr.clone());
    let serve_http = http_addr != "off" && a.process == 0;
    let ui = HttpUiConfig {
        dashboard: config.dashboard.clone(),
        alerts: config.alerts.clone(),
    };
    ui.validate()?;
    // Bind before starting the engine: a busy port fails fast, with the fix in the message.
    let listener = if serve_http {
        Some(rt.block_on(http::bind(&http_addr))?)
    } else {
        None
    };
    tracing::info!(source = %source_desc, workers, processes = cfg.processes, model = %model.version, "starting engine");
    let engine = complaintflow_pipelines::start(cfg, source_spec, model)?;
    if let Some(e) = engine.resumed_from() {
        eprintln!(
            "resuming from the checkpoint of epoch {e} in {}",
            config.state_dir.join("checkpoints").display()
        );
    }
    let idle = Arc::new(AtomicBool::new(false));
    let watcher = match (&kafka.source, a.until_idle) {
        (Some(src), Some(d)) => Some(watch_idle(
            src.handle(),
            kafka_cfg.clone(),
            d,
            Arc::clone(&idle),
        )?),
        _ => None,
    };
    let view = Arc::new(
        LiveView::new(engine.client(), registry.clone(), source_desc)
            .with_validation(config.data.clone())
            .with_train_fraction(config.train.train_fraction),
    );
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.block_on(async {
        let server = if let Some(listener) = listener {
            let v: Arc<dyn EngineView> = view.clone();
            Some(tokio::spawn(http::serve_on(listener, v, ui, async {
                let _ = stopped.await;
            })))
        } else {
            None
        };
        let mut interrupted = false;
        let mut signals = ShutdownSignals::register();
        while !engine.is_finished() {
            tokio::select! {
                r = signals.next(), if !interrupted => {
                    interrupted = true;
                    tracing::info!("{r}: finishing the open epoch, flushing outputs, exiting");
                    view.set_status(HealthStatus::Draining, Some(format!("{r} received")));
                    engine.shutdown();
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if !interrupted && idle.load(Ordering::SeqCst) {
                        interrupted = true;
                        view.set_status(HealthStatus::Draining, Some("input idle (--until-idle)".into()));
                        engine.shutdown();
                    }
                }
            }
        }
        view.set_status(HealthStatus::Finished, None);
        let _ = stop_http.send(());
        if let Some(s) = server {
            s.await??;
        }
        anyhow::Ok(())
    })?;
    let state = engine.state();
    let joined = engine.join();
    if let Some(w) = watcher {
        idle.store(true, Ordering::SeqCst);
        let _ = w.join();
    }
    if let Some(h) = &kafka.sink_handles {
        report_sinks(h, kafka.sinks.as_deref().map(KafkaSinks::topics));
    }
    let summary = joined?;
    if let (Some(path), 0) = (&a.aggregates_out, a.process) {
        let all: serde_json::Map<String, serde_json::Value> = Dimension::ALL
            .iter()
            .map(|d| {
                Ok((
                    d.as_str().to_string(),
                    serde_json::to_value(state.aggregates(*d, None))?,
                ))
            })
            .collect::<Result<_>>()?;
        std::fs::write(path, serde_json::to_vec_pretty(&all)?)
            .with_context(|| format!("cannot write --aggregates-out {}", path.display()))?;
    }
    if a.process == 0 {
        eprintln!(
            "{} predictions ({} escalated), {} dead letters, {} epochs in {:.1} s; by model: {:?}",
            summary.predictions,
            summary.escalations,
            summary.dead_letters,
            summary.epochs,
            summary.elapsed_secs,
            summary.by_model
        );
        if let Some(p) = pred {
            eprintln!("predictions: {}", p.display());
        }
        if let Some(p) = dl {
            eprintln!("dead letters: {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The Kafka pieces of a run: source, sinks and their counters (all `None` without Kafka).
struct KafkaWiring {
    source: Option<Arc<KafkaSource>>,
    sinks: Option<Arc<KafkaSinks>>,
    sink_handles: Option<KafkaSinkHandles>,
}

/// `kafka:TOPIC`, `none`, or a bare topic name, as a topic.
fn topic_flag(flag: &str, value: Option<&str>, default: Option<&str>) -> Result<Option<String>> {
    match value {
        None => Ok(default.map(String::from)),
        Some("none" | "off") => Ok(None),
        Some(v) => {
            let t = v.strip_prefix("kafka:").unwrap_or(v);
            if t.is_empty() || t.contains(':') {
                bail!("{flag} {v:?}: use kafka:TOPIC or none");
            }
            Ok(Some(t.to_string()))
        }
    }
}

/// Builds the Kafka source and sinks from the flags, checking the broker and the topics
/// first (clear errors before any worker starts).
fn kafka_wiring(a: &RunArgs, topic: Option<&str>, cfg: &KafkaConfig) -> Result<KafkaWiring> {
    let defaults = KafkaSinkTopics::default();
    let on_kafka = topic.is_some();
    let topics = KafkaSinkTopics {
        predictions: topic_flag(
            "--sink",
            a.sink.as_deref(),
            on_kafka.then_some("complaints-predictions"),
        )?,
        dead_letters: topic_flag(
            "--dlq-topic",
            a.dlq_topic.as_deref(),
            defaults.dead_letters.as_deref().filter(|_| on_kafka),
        )?,
        aggregates: topic_flag(
            "--aggregates-topic",
            a.aggregates_topic.as_deref(),
            defaults.aggregates.as_deref().filter(|_| on_kafka),
        )?,
    };
    if !on_kafka && topics.all().is_empty() {
        return Ok(KafkaWiring {
            source: None,
            sinks: None,
            sink_handles: None,
        });
    }
    cfg.check_reachable()
        .with_context(|| format!("Kafka at {}", cfg.brokers))?;
    let source = match topic {
        Some(t) => {
            let mode = if a.once {
                ReadMode::Bounded
            } else {
                ReadMode::Continuous
            };
            let src = KafkaSource::new(cfg.clone(), t, mode);
            let partitions = src.check().with_context(|| format!("--source kafka:{t}"))?;
            tracing::info!(topic = t, partitions, brokers = %cfg.brokers, ?mode, "Kafka source");
            Some(Arc::new(src))
        }
        None => None,
    };
    let (sinks, sink_handles) = if topics.all().is_empty() {
        (None, None)
    } else {
        for t in topics.all() {
            cfg.partitions(t)
                .with_context(|| format!("Kafka output topic {t}"))?;
        }
        let probe_topic = topic
            .or(topics.predictions.as_deref())
            .unwrap_or("complaints-input");
        let support = detect_transactions(
            cfg,
            probe_topic,
            cfg.connect_timeout().min(Duration::from_secs(10)),
        );
        let mode = support.mode(true, &format!("{}-engine", cfg.group_id));
        tracing::info!(brokers = %cfg.brokers, topics = ?topics.all(), delivery = %mode, "Kafka sinks");
        let idempotent = matches!(mode, DeliveryMode::Transactional { .. }) || cfg.idempotence;
        eprintln!(
            "Kafka outputs {:?}: {mode}, idempotent producers: {}",
            topics.all(),
            if idempotent { "yes" } else { "no" }
        );
        let sinks = KafkaSinks::new(cfg.clone(), mode, topics);
        let handles = sinks.handles();
        (Some(Arc::new(sinks)), Some(handles))
    };
    Ok(KafkaWiring {
        source,
        sinks,
        sink_handles,
    })
}

/// `--until-idle`: sets `idle` once no record has arrived for `idle_for` and every partition
/// is read to its current end (checked with the broker). Runs on its own thread; stops when
/// `idle` is set by anyone.
fn watch_idle(
    handle: KafkaSourceHandle,
    cfg: KafkaConfig,
    idle_for: Duration,
    idle: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let t = std::thread::Builder::new()
        .name("until-idle".into())
        .spawn(move || {
            let mut records = handle.records();
            let mut since = Instant::now();
            while !idle.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let now = handle.records();
                if now != records {
                    records = now;
                    since = Instant::now();
                    continue;
                }
                if since.elapsed() < idle_for {
                    continue;
                }
                match handle.caught_up(&cfg) {
                    Ok(true) => {
                        tracing::info!(records, "no input for {idle_for:?} and every partition read to its end: stopping (--until-idle)");
                        idle.store(true, Ordering::SeqCst);
                    }
                    Ok(false) => {
                        tracing::debug!("idle but not caught up yet");
                        since = recheck_in_a_second(idle_for);
                    }
                    Err(e) => {
                        tracing::warn!("--until-idle: cannot check the partitions' ends yet: {e}");
                        since = recheck_in_a_second(idle_for);
                    }
                }
            }
        })
        .context("cannot start the --until-idle thread")?;
    Ok(t)
}

/// An idle start time such that the next idle check comes in about a second.
fn recheck_in_a_second(idle_for: Duration) -> Instant {
    let now = Instant::now();
    now.checked_sub(idle_for.saturating_sub(Duration::from_secs(1)))
        .unwrap_or(now)
}

/// Prints what the Kafka sinks did.
fn report_sinks(h: &KafkaSinkHandles, topics: Option<&KafkaSinkTopics>) {
    let Some(topics) = topics else { return };
    for (topic, handle) in [
        (&topics.predictions, &h.predictions),
        (&topics.dead_letters, &h.dead_letters),
        (&topics.aggregates, &h.aggregates),
    ] {
        let Some(topic) = topic else { continue };
        let s = handle.stats();
        eprintln!(
            "kafka:{topic}: {} delivered, {} sent again after errors, {} failed{}",
            s.delivered,
            s.retried,
            s.failed,
            s.last_error
                .filter(|_| s.failed > 0)
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
}

/// The production model; with an empty registry on the default job, trains one on the
/// training split of the bundled sample first.
fn production_model(registry: &Registry, config: &Config, default_job: bool) -> Result<Model> {
    if registry.production()?.is_some() {
        return Ok(registry.load_production()?);
    }
    if registry.list()?.is_empty() || default_job {
        if !default_job && !registry.list()?.is_empty() {
            bail!("no production model: promote one with `complaintflow models promote VERSION`");
        }
        let sample = bundled_sample_path();
        tracing::info!(
            "no production model yet: training one on the bundled sample's training split"
        );
        let (train_rows, test_rows): (Vec<_>, Vec<_>) =
            read_path(&sample, Format::Auto, &config.data)?
                .filter_map(|r| r.ok())
                .partition(|c| is_train(c.complaint_id, 0.75));
        let outcome = complaintflow_models::train_on_split(
            &train_rows,
            &test_rows,
            &config.train,
            &mut |_| {},
        )?;
        let meta = registry.register(
            &outcome,
            DataInfo::from_file(&sample, train_rows.len() as u64)?,
        )?;
        registry.promote(&meta.version)?;
        tracing::info!(version = %meta.version, "trained and promoted");
        return Ok(registry.load_model(&meta.version)?);
    }
    bail!(
        "no production model in {}: promote one with `complaintflow models promote VERSION` or train with `complaintflow train --data FILE --promote`",
        registry.dir().display()
    )
}

fn write_test_split(
    sample: &std::path::Path,
    out: &std::path::Path,
    config: &Config,
) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    for c in read_path(sample, Format::Auto, &config.data)?.filter_map(|r| r.ok()) {
        if !is_train(c.complaint_id, 0.75) {
            serde_json::to_writer(&mut w, &c)?;
            w.write_all(b"\n")?;
        }
    }
    w.flush()?;
    Ok(())
}

/// SIGINT / SIGTERM listeners, registered once for the whole run: a listener created anew
/// for every wait would miss a signal delivered between two waits (the handler is installed,
/// so the default action no longer applies, and the signal would be lost).
struct ShutdownSignals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Registers the listeners (inside the Tokio runtime).
    fn register() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let int = signal(SignalKind::interrupt())
                .map_err(|e| tracing::warn!("cannot listen for SIGINT: {e}"))
                .ok();
            let term = signal(SignalKind::terminate())
                .map_err(|e| tracing::warn!("cannot listen for SIGTERM: {e}"))
                .ok();
            ShutdownSignals { int, term }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// Resolves on the next SIGINT (Ctrl-C) or SIGTERM, naming the signal.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.int) => "interrupt",
                _ = recv(&mut self.term) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupt"
        }
    }
}
