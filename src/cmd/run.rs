//! `complaintflow run`: the main job, and its HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use complaintflow::engine_view::LiveView;
use complaintflow::http::{self, EngineView, HealthStatus, HttpUiConfig};
use complaintflow_datasets::replay::Rate;
use complaintflow_datasets::split::is_train;
use complaintflow_datasets::{bundled_sample_path, read_path, Format};
use complaintflow_models::{DataInfo, Model, Registry};
use complaintflow_operators::SourcePolicy;
use complaintflow_pipelines::{Dimension, EngineConfig, SourceSpec};

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
    let (source_path, format) = match &a.source {
        Some(s) => {
            let Some(p) = s.strip_prefix("file:") else {
                bail!("--source {s:?}: use file:PATH (Kafka sources come with --brokers, see the README)");
            };
            (
                PathBuf::from(p),
                a.input_format
                    .parse::<Format>()
                    .map_err(|e| anyhow::anyhow!("--input-format: {e}"))?,
            )
        }
        None => (bundled_sample_path(), Format::Auto),
    };
    if !source_path.is_file() {
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
    let cfg = EngineConfig {
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
    };
    let (pred, dl) = (cfg.predictions_path.clone(), cfg.dead_letters_path.clone());
    let source_desc = format!("file:{}", source_path.display());
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
    tracing::info!(source = %source_path.display(), workers, processes = cfg.processes, model = %model.version, "starting engine");
    let engine = complaintflow_pipelines::start(
        cfg,
        SourceSpec::File {
            path: source_path,
            format,
        },
        model,
    )?;
    let view = Arc::new(LiveView::new(
        engine.client(),
        registry.clone(),
        source_desc,
    ));
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
        while !engine.is_finished() {
            tokio::select! {
                r = shutdown_signal(), if !interrupted => {
                    interrupted = true;
                    tracing::info!("{r}: finishing the open epoch, flushing outputs, exiting");
                    view.set_status(HealthStatus::Draining, Some(format!("{r} received")));
                    engine.shutdown();
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
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
    let summary = engine.join()?;
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

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupt",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "interrupt"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupt"
    }
}
