//! `complaintflow run`: the main job, and its HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use complaintflow_datasets::replay::Rate;
use complaintflow_datasets::split::is_train;
use complaintflow_datasets::{bundled_sample_path, read_path, Format};
use complaintflow_models::{DataInfo, Model, Registry};
use complaintflow_operators::SourcePolicy;
use complaintflow_pipelines::kafka::{KafkaSinkTopics, KafkaSinks};
use complaintflow_pipelines::{
    CheckpointConfig, DecisionOperator, Dimension, Engine, EngineConfig, EngineState, PluginEnv,
    PluginTable, Sink, Source,
};

use crate::engine_view::LiveView;
use crate::http::{self, EngineView, HealthStatus, HttpUiConfig};

use crate::cli::RunArgs;
use crate::config::Config;

/// What a program adds to the graph `complaintflow run` builds (see [`crate::main_with`]):
/// sinks and decision operators always attached, and URI schemes for `--source` / `--sink`.
pub struct Extensions {
    /// The plug-in table (`--source` / `--sink` schemes); the built-ins by default.
    pub table: PluginTable,
    /// Sinks attached to every run.
    pub sinks: Vec<Arc<dyn Sink>>,
    /// Decision operators, in order, after `decide`.
    pub operators: Vec<Arc<dyn DecisionOperator>>,
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            table: PluginTable::builtin(),
            sinks: Vec::new(),
            operators: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("table", &self.table)
            .field("sinks", &self.sinks)
            .field("operators", &self.operators)
            .finish()
    }
}

impl Extensions {
    /// Adds a sink to every run.
    pub fn sink(mut self, sink: Arc<dyn Sink>) -> Extensions {
        self.sinks.push(sink);
        self
    }

    /// Adds a decision operator (after those added before).
    pub fn operator(mut self, op: Arc<dyn DecisionOperator>) -> Extensions {
        self.operators.push(op);
        self
    }
}

/// `complaintflow rescore`: `run --once --model VERSION --source file:FILE --outcomes …` with
/// no HTTP server, its predictions in their own file.
pub fn rescore(a: crate::cli::RescoreArgs, config: &Config, ext: Extensions) -> Result<ExitCode> {
    use clap::{Args as _, FromArgMatches as _};
    let predictions = a
        .predictions
        .clone()
        .unwrap_or_else(|| config.state_dir.join(format!("rescore-{}.jsonl", a.model)));
    let source = format!("file:{}", a.data.display());
    let mut argv: Vec<String> = vec![
        "rescore".into(),
        "--once".into(),
        "--http-addr".into(),
        "off".into(),
        "--model".into(),
        a.model.clone(),
        "--source".into(),
        source.clone(),
        "--outcomes".into(),
        a.outcomes.clone().unwrap_or(source),
        "--predictions".into(),
        predictions.display().to_string(),
        "--dead-letters".into(),
        config
            .state_dir
            .join(format!("rescore-{}-dead-letters.jsonl", a.model))
            .display()
            .to_string(),
    ];
    if let Some(p) = &a.aggregates_out {
        argv.extend(["--aggregates-out".into(), p.display().to_string()]);
    }
    if let Some(w) = a.workers {
        argv.extend(["--workers".into(), w.to_string()]);
    }
    let matches =
        RunArgs::augment_args(clap::Command::new("rescore")).try_get_matches_from(argv)?;
    let run_args = RunArgs::from_arg_matches(&matches)?;
    run(run_args, config, ext)
}

/// Runs the engine until the source is exhausted (`--once`) or Ctrl-C.
pub fn run(a: RunArgs, config: &Config, ext: Extensions) -> Result<ExitCode> {
    // A non-loopback address without an API token fails before anything else (training).
    let http_addr = a.http_addr.as_deref().unwrap_or(&config.http.addr);
    if http_addr != "off" && a.process == 0 {
        http::security::check_exposure(http_addr, config.http.api_token()?.as_ref())?;
    }
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
    let kafka_cfg = {
        let mut k = config.kafka.clone();
        if let Some(b) = &a.brokers {
            k.brokers = b.clone();
        }
        k.extra.extend(a.kafka_opt.iter().cloned());
        k
    };
    let format = a
        .input_format
        .parse::<Format>()
        .map_err(|e| anyhow::anyhow!("--input-format: {e}"))?;
    let rate = match &a.rate {
        Some(r) => Some(
            r.parse::<Rate>()
                .map_err(|e| anyhow::anyhow!("--rate {r:?}: {e} (e.g. 10000/min or 500/s)"))?,
        ),
        None => None,
    };
    let default_job = a.source.is_none();
    let source_uri = a.source.clone().unwrap_or_else(|| {
        format!(
            "file:{}",
            config.state_dir.join("sample-replay.jsonl").display()
        )
    });
    let on_kafka = ext.table.source_scheme(&source_uri) == Some("kafka");
    if !on_kafka && a.until_idle.is_some() {
        bail!("--until-idle needs a Kafka source (--source kafka:TOPIC); a file source ends with --once");
    }
    let defaults = KafkaSinkTopics::default();
    let env = PluginEnv {
        format: if default_job { Format::Auto } else { format },
        kafka: kafka_cfg.clone(),
        once: a.once,
        rate,
        resample: a.resample,
        seed: a.seed,
        kafka_dead_letters: topic_flag(
            "--dlq-topic",
            a.dlq_topic.as_deref(),
            defaults.dead_letters.as_deref().filter(|_| on_kafka),
        )?,
        kafka_aggregates: topic_flag(
            "--aggregates-topic",
            a.aggregates_topic.as_deref(),
            defaults.aggregates.as_deref().filter(|_| on_kafka),
        )?,
        kafka_group: kafka_cfg.group_id.clone(),
        postgres: config.postgres.clone(),
        registry_dir: Some(config.registry_dir()),
    };
    let model = match &a.model {
        Some(v) => registry.load_model(v).with_context(|| {
            format!(
                "--model {v}: no such version in {} (list them with `complaintflow models list`)",
                registry.dir().display()
            )
        })?,
        None => production_model(&registry, config, default_job)?,
    };
    // The default job replays the part of the bundled sample the model did not train on.
    if default_job {
        let out = config.state_dir.join("sample-replay.jsonl");
        write_test_split(&bundled_sample_path(), &out, config)?;
    }
    let source = ext
        .table
        .source(&source_uri, &env)
        .map_err(|e| anyhow::anyhow!(e))?;
    source.check().map_err(|e| anyhow::anyhow!(e))?;
    // The default job replays complaints whose outcomes are known: it reads them back as
    // its outcomes, so the live quality panel has data. `--outcomes none` turns that off.
    let outcomes_uri = match a.outcomes.as_deref() {
        Some("none" | "off") => None,
        Some(u) => Some(u.to_string()),
        None => default_job.then(|| source_uri.clone()),
    };
    let outcomes = match &outcomes_uri {
        Some(uri) => {
            let o = ext
                .table
                .source(uri, &env)
                .map_err(|e| anyhow::anyhow!("--outcomes: {e}"))?;
            o.check()
                .map_err(|e| anyhow::anyhow!("--outcomes {uri}: {e}"))?;
            Some(o)
        }
        None => None,
    };
    // Sinks: the `--sink` URIs; with a Kafka source and no `--sink`, the predictions topic.
    let sink_uris: Vec<String> = if a.sink.is_empty() {
        if on_kafka {
            vec!["kafka:complaints-predictions".into()]
        } else {
            Vec::new()
        }
    } else {
        a.sink
            .iter()
            .filter(|s| !matches!(s.as_str(), "none" | "off"))
            .cloned()
            .collect()
    };
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    for uri in &sink_uris {
        sinks.push(ext.table.sink(uri, &env).map_err(|e| anyhow::anyhow!(e))?);
    }
    // Dead-letter / aggregate topics without a Kafka predictions sink (`--sink none`).
    if !sink_uris.iter().any(|u| u.starts_with("kafka:"))
        && (env.kafka_dead_letters.is_some() || env.kafka_aggregates.is_some())
    {
        let topics = KafkaSinkTopics {
            predictions: None,
            dead_letters: env.kafka_dead_letters.clone(),
            aggregates: env.kafka_aggregates.clone(),
        };
        sinks.push(Arc::new(
            KafkaSinks::connect(kafka_cfg.clone(), topics, &env.kafka_group)
                .map_err(|e| anyhow::anyhow!(e))?,
        ));
    }
    sinks.extend(ext.sinks.iter().cloned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = a.workers.unwrap_or(cores).max(1);
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
    let state_file =
        |p: &Option<PathBuf>, name: &str| p.clone().unwrap_or_else(|| config.state_dir.join(name));
    let cfg = EngineConfig {
        workers,
        processes: a.processes.max(1),
        process: a.process,
        addresses,
        join_timeout: a.join_timeout,
        dedup_window: usize::try_from(a.dedup_window).unwrap_or(usize::MAX),
        policy: SourcePolicy {
            max_records_per_epoch: a.max_records_per_epoch,
            trigger_interval: Duration::from_millis(a.trigger_ms.max(1)),
            linger: Duration::from_micros((a.linger_ms * 1000.0).max(0.0) as u64),
            rate: rate.and_then(Rate::per_second),
            clock_epochs: true,
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
        sinks: sinks.clone(),
        operators: ext.operators.clone(),
        checkpoints: source.resumable().then(|| {
            let mut cp = CheckpointConfig::new(&config.state_dir);
            cp.interval = Duration::from_millis(a.checkpoint_ms.max(1));
            cp
        }),
        outcomes: outcomes.clone(),
        label_policy: model.label_policy,
        monitoring: config.monitoring.clone(),
    };
    let outcomes_src = outcomes;
    let source_desc = source.describe();
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
        api: if serve_http {
            config.api_security()?
        } else {
            http::ApiSecurity::default()
        },
    };
    ui.validate()?;
    // Bind before starting the engine: a busy port fails fast, with the fix in the message.
    let listener = if serve_http {
        Some(rt.block_on(http::bind(&http_addr))?)
    } else {
        None
    };
    tracing::info!(source = %source_desc, workers, processes = cfg.processes, model = %model.version, "starting engine");
    let engine = Engine::builder(cfg)
        .source(Arc::clone(&source))
        .start(model)?;
    if let Some(e) = engine.resumed_from() {
        eprintln!(
            "resuming from the checkpoint of epoch {e} in {}",
            config.state_dir.join("checkpoints").display()
        );
    }
    let idle = Arc::new(AtomicBool::new(false));
    let watcher = match a.until_idle {
        Some(d) => Some(watch_idle(
            std::iter::once(Arc::clone(&source))
                .chain(outcomes_src.clone())
                .collect(),
            engine.state(),
            d,
            Arc::clone(&idle),
        )?),
        None => None,
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
    for s in &sinks {
        for line in s.report() {
            eprintln!("{line}");
        }
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
        let mut all = all;
        if outcomes_uri.is_some() {
            all.insert(
                "model_accuracy".into(),
                model_accuracy(&state.quality_report()),
            );
        }
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

/// `model_accuracy` of `--aggregates-out`: per version `{labelled, positives, auc, pr_auc,
/// precision, recall, f1, accuracy, ece, action, priority}`.
fn model_accuracy(r: &complaintflow_pipelines::quality::QualityReport) -> serde_json::Value {
    r.versions
        .iter()
        .map(|(v, q)| {
            let m = &q.overall;
            (
                v.clone(),
                serde_json::json!({
                    "labelled": m.labelled, "positives": m.positives, "auc": m.auc,
                    "pr_auc": m.pr_auc, "precision": m.precision, "recall": m.recall,
                    "f1": m.f1, "accuracy": m.accuracy, "ece": m.ece,
                    "action": q.action, "priority": q.priority,
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
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

/// `--until-idle`: sets `idle` once no record has arrived for `idle_for` and the source says
/// it has read everything there is. Runs on its own thread; stops when `idle` is set by anyone.
fn watch_idle(
    sources: Vec<Arc<dyn Source>>,
    state: Arc<EngineState>,
    idle_for: Duration,
    idle: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let t = std::thread::Builder::new()
        .name("until-idle".into())
        .spawn(move || {
            // Complaints and outcome records read.
            let read = || {
                state.records_in.load(Ordering::Relaxed)
                    + state
                        .quality
                        .lock()
                        .map_or(0, |q| q.outcomes_read)
            };
            let mut records = read();
            let mut since = Instant::now();
            while !idle.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let now = read();
                if now != records {
                    records = now;
                    since = Instant::now();
                    continue;
                }
                if since.elapsed() < idle_for {
                    continue;
                }
                // Every source (the complaints' and the outcomes') read to its end.
                let caught_up = sources.iter().map(|s| s.caught_up()).try_fold(
                    true,
                    |all, c| match c {
                        Some(Ok(b)) => Ok(all && b),
                        None => Ok(all),
                        Some(Err(e)) => Err(e),
                    },
                );
                match caught_up {
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
