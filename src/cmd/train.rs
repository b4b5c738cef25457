//! `complaintflow train` and `complaintflow models …`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use complaintflow_models::{train, DataInfo, Registry, TrainProgress, TrainStage};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{InputArgs, ModelsCommand, TrainArgs};
use crate::cmd::data::read_all;
use crate::config::Config;

/// `complaintflow train`: read, train with cross-validation, print the report, register.
pub fn run_train(a: TrainArgs, config: &Config) -> Result<ExitCode> {
    let mut cfg = config.train.clone();
    if let Some(p) = a.label_policy {
        cfg.label_policy = p
            .parse()
            .map_err(|e| anyhow::anyhow!("--label-policy: {e}"))?;
    }
    if let Some(s) = a.split {
        cfg.split = s.into();
    }
    if let Some(f) = a.folds {
        cfg.folds = f;
    }
    if let Some(f) = a.train_fraction {
        cfg.train_fraction = f;
    }
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("training configuration: {e}"))?;
    let registry = Registry::open(config.registry_dir()).with_context(|| {
        format!(
            "cannot open the model registry at {}",
            config.registry_dir().display()
        )
    })?;

    let input = InputArgs {
        file: a.input_file.clone(),
        input_format: a.input_format.clone(),
    };
    let (complaints, rejected) = read_all(&input, config)?;
    if complaints.is_empty() {
        anyhow::bail!(
            "{} holds no valid complaints ({rejected} rejected): check the file with `complaintflow data validate`",
            input.file.display()
        );
    }
    tracing::info!(valid = complaints.len(), rejected, "read training data");

    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut on_progress = |p: TrainProgress| {
        let stage = match p.stage {
            TrainStage::Split => "split",
            TrainStage::CrossValidation => "cross-validation",
            TrainStage::FinalFit => "final fit",
            TrainStage::Evaluate => "evaluate",
            TrainStage::Done => "done",
        };
        bar.set_prefix(stage);
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(p.message.clone());
        tracing::debug!(stage, done = p.done, total = p.total, "{}", p.message);
    };
    let outcome = train(&complaints, &cfg, &mut on_progress).context("training failed")?;
    bar.finish_and_clear();

    out!("{}", outcome.report);
    let data = DataInfo::from_file(&input.file, complaints.len() as u64)
        .with_context(|| format!("cannot hash {}", input.file.display()))?;
    let meta = registry
        .register(&outcome, data)
        .context("cannot register the model")?;
    outln!(
        "registered {} as candidate in {}",
        meta.version,
        registry.dir().display()
    );
    if a.promote {
        let m = registry.promote(&meta.version)?;
        outln!("promoted {} to production", m.version);
    } else {
        outln!(
            "make it the serving model with `complaintflow models promote {}`",
            meta.version
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `complaintflow models list | show | promote | rollback`.
pub fn run_models(cmd: ModelsCommand, config: &Config) -> Result<ExitCode> {
    let dir = config.registry_dir();
    let registry = Registry::open(&dir)
        .with_context(|| format!("cannot open the model registry at {}", dir.display()))?;
    match cmd {
        ModelsCommand::List => {
            let all = registry.list()?;
            if all.is_empty() {
                outln!(
                    "no models in {} yet: train one with `complaintflow train --data FILE`",
                    dir.display()
                );
            }
            for m in all {
                outln!("{}", m.summary_line());
            }
        }
        ModelsCommand::Show { id: version } => {
            let m = registry.get(&version).with_context(|| {
                format!(
                    "no version {version} in {} (see `complaintflow models list`)",
                    dir.display()
                )
            })?;
            out!("{m}");
        }
        ModelsCommand::Promote { id: version } => {
            let m = registry.promote(&version)?;
            outln!("{} is now production", m.version);
        }
        ModelsCommand::Rollback => {
            let m = registry.rollback()?;
            outln!("rolled back: {} is production again", m.version);
        }
    }
    Ok(ExitCode::SUCCESS)
}
