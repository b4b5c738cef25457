//! `complaintflow train` and `complaintflow models …`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use complaintflow_datasets::Complaint;
use complaintflow_models::metrics::auc_roc;
use complaintflow_models::{
    compare, promotion_gate, temporal_assignment, train, DataInfo, GateDecision, Model, Registry,
    SparseFeatures, TrainConfig, TrainProgress, TrainStage, VersionMetadata,
};
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
    if let Some(f) = a.family {
        cfg.family = f.into();
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
        let gate = gate_against_production(&registry, &meta, &complaints, &cfg)?;
        outln!("promotion gate: {}", gate.reason);
        if gate.promote || a.force {
            let m = registry.promote(&meta.version)?;
            outln!(
                "promoted {} to production{}",
                m.version,
                if gate.promote { "" } else { " (--force)" }
            );
        } else {
            outln!(
                "{} stays a candidate: `complaintflow models promote {}` overrides the gate",
                meta.version,
                meta.version
            );
        }
    } else {
        outln!(
            "make it the serving model with `complaintflow models promote {}`",
            meta.version
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The gate of `train --promote`: the challenger's out-of-time AUC against the production
/// model's on the same window. When the production model was trained on the same file (same
/// SHA-256) its own recorded out-of-time AUC is the comparable figure (scoring it on rows it
/// was fitted on would flatter it); otherwise it is scored on this file's out-of-time window.
fn gate_against_production(
    registry: &Registry,
    challenger: &VersionMetadata,
    complaints: &[Complaint],
    cfg: &TrainConfig,
) -> Result<GateDecision> {
    let Some(champion) = registry.production()? else {
        return Ok(promotion_gate(
            challenger.out_of_time_auc,
            None,
            cfg.promotion_margin,
        ));
    };
    let same_data = champion.data.sha256.is_some()
        && champion.data.sha256 == challenger.data.sha256
        && champion.label_policy == challenger.label_policy;
    let champion_auc = if same_data {
        champion.out_of_time_auc
    } else {
        match registry.load_model(&champion.version) {
            Ok(model) => out_of_time_auc(&model, complaints, cfg),
            Err(e) => {
                tracing::warn!(version = %champion.version, error = %e, "production model does not load; gate ignores it");
                None
            }
        }
    };
    let mut gate = promotion_gate(
        challenger.out_of_time_auc,
        champion_auc,
        cfg.promotion_margin,
    );
    gate.reason = format!(
        "{} vs production {}: {}",
        challenger.version, champion.version, gate.reason
    );
    Ok(gate)
}

/// AUC of `model` on the out-of-time window of `complaints` (as `train` cuts it).
fn out_of_time_auc(model: &Model, complaints: &[Complaint], cfg: &TrainConfig) -> Option<f64> {
    let labelled: Vec<&Complaint> = complaints
        .iter()
        .filter(|c| cfg.label_policy.label(c).is_some())
        .collect();
    let (windows, _) = temporal_assignment(&labelled, cfg)?;
    let mut buf = SparseFeatures::new();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for (c, w) in labelled.iter().zip(windows) {
        if w == 3 {
            scores.push(model.score(c, &mut buf));
            labels.push(cfg.label_policy.label(c).unwrap_or(false));
        }
    }
    auc_roc(&scores, &labels)
}

fn resolve_version(registry: &Registry, v: &str) -> Result<String> {
    if v == "production" {
        return registry
            .production()?
            .map(|m| m.version)
            .ok_or_else(|| anyhow::anyhow!("no production model in {}", registry.dir().display()));
    }
    Ok(v.to_string())
}

/// `complaintflow models list | show | promote | rollback | compare`.
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
        ModelsCommand::Compare {
            a,
            b,
            data,
            input_format,
            resamples,
            json,
        } => {
            let (va, vb) = (
                resolve_version(&registry, &a)?,
                resolve_version(&registry, &b)?,
            );
            let ma = registry
                .load_model(&va)
                .with_context(|| format!("cannot load {va}"))?;
            let mb = registry
                .load_model(&vb)
                .with_context(|| format!("cannot load {vb}"))?;
            if ma.label_policy != mb.label_policy {
                anyhow::bail!(
                    "{va} predicts label policy {} and {vb} {}: compare models of one policy",
                    ma.label_policy,
                    mb.label_policy
                );
            }
            let input = InputArgs {
                file: data,
                input_format,
            };
            let (complaints, _) = read_all(&input, config)?;
            let c = compare(&[&ma, &mb], &complaints, ma.label_policy, resamples)
                .with_context(|| format!("cannot compare on {}", input.file.display()))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                out!("{c}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
