//! Training: split, feature-pipeline fit, k-fold cross-validation over the L2 grid with
//! `linfa-logistic`, decision-threshold tuning, final fit on the whole training split and
//! evaluation on the test split.
//!
//! Cross-validation refits the feature pipeline inside each fold (vocabulary, IDF, category
//! indexes and scalers never see the fold's validation rows). Folds are assigned by a salted
//! hash of the complaint id. Fold × penalty jobs run on `threads` worker threads; progress is
//! reported from the calling thread.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use complaintflow_datasets::split::{is_train, stable_hash};
use complaintflow_datasets::{Complaint, LabelPolicy};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, ShapeBuilder};
use serde::{Deserialize, Serialize};

use crate::config::{ClassBalance, FeatureConfig, SplitMethod, TrainConfig};
use crate::metrics::{auc_roc, best_f1_threshold, Metrics};
use crate::model::{sigmoid, Model};
use crate::pipeline::{FeaturePipeline, FittedPipeline, SparseFeatures, SparseRows};
use crate::ModelError;

/// The phase a progress report refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainStage {
    /// Labelling and splitting.
    Split,
    /// Cross-validation: `done` of `total` fold × penalty fits finished.
    CrossValidation,
    /// Fitting the pipeline and the model on the whole training split.
    FinalFit,
    /// Scoring the test split.
    Evaluate,
    /// Finished.
    Done,
}

/// A progress report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainProgress {
    /// Phase.
    pub stage: TrainStage,
    /// Units done in this phase.
    pub done: usize,
    /// Units in this phase.
    pub total: usize,
    /// What just happened.
    pub message: String,
}

/// Cross-validation result of one penalty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvPoint {
    /// L2 penalty (`alpha`).
    pub alpha: f64,
    /// Validation AUC per fold.
    pub fold_auc: Vec<f64>,
    /// Mean of `fold_auc`.
    pub mean_auc: f64,
    /// Standard deviation of `fold_auc`.
    pub std_auc: f64,
    /// AUC of the pooled out-of-fold predictions.
    pub oof_auc: f64,
}

/// A model weight with its feature's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureWeight {
    /// Human-readable feature name (`text:credit report`, `company=…`).
    pub name: String,
    /// Weight (on the standardized / TF-IDF scale of the feature).
    pub weight: f64,
}

/// Row counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Complaints given.
    pub total: u64,
    /// With a label under the policy.
    pub labelled: u64,
    /// Training rows.
    pub train: u64,
    /// Positives among them.
    pub train_positives: u64,
    /// Test rows.
    pub test: u64,
    /// Positives among them.
    pub test_positives: u64,
}

/// Wall-clock seconds per phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Cross-validation (pipeline fits, transforms, all grid fits).
    pub cv_s: f64,
    /// Final pipeline fit + model fit.
    pub final_fit_s: f64,
    /// Test scoring and metrics.
    pub evaluate_s: f64,
    /// Everything.
    pub total_s: f64,
}

/// Everything about a training run, for the CLI table and `metadata.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Label policy.
    pub label_policy: LabelPolicy,
    /// Split method (`None` when the caller gave the split).
    pub split: Option<SplitMethod>,
    /// Row counts.
    pub rows: RowCounts,
    /// Feature configuration.
    pub features: FeatureConfig,
    /// Total number of columns.
    pub dim: usize,
    /// Text columns among them.
    pub text_dim: usize,
    /// Folds.
    pub folds: usize,
    /// Class balance strategy.
    pub class_balance: ClassBalance,
    /// L-BFGS iterations per fit.
    pub max_iterations: u64,
    /// Cross-validation per penalty.
    pub cv: Vec<CvPoint>,
    /// Chosen penalty.
    pub best_alpha: f64,
    /// Decision threshold.
    pub threshold: f64,
    /// Out-of-fold F1 at that threshold (when tuned).
    pub cv_f1_at_threshold: Option<f64>,
    /// Test-split metrics.
    pub test: Metrics,
    /// Largest positive weights.
    pub top_positive: Vec<FeatureWeight>,
    /// Largest negative weights.
    pub top_negative: Vec<FeatureWeight>,
    /// Timings.
    pub timings: Timings,
}

impl TrainReport {
    /// The report as a plain-text table (the `Display` form).
    pub fn to_table(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.rows;
        writeln!(
            f,
            "label policy {}  split {}  rows {} (labelled {})",
            self.label_policy,
            self.split.map_or("given", |s| match s {
                SplitMethod::Hash => "hash",
                SplitMethod::Temporal => "temporal",
            }),
            r.total,
            r.labelled
        )?;
        writeln!(
            f,
            "train {} ({} positive)  test {} ({} positive)",
            r.train, r.train_positives, r.test, r.test_positives
        )?;
        writeln!(
            f,
            "features {} (text {})  folds {}  class balance {:?}",
            self.dim, self.text_dim, self.folds, self.class_balance
        )?;
        writeln!(f, "cross-validation   alpha   mean AUC    std    OOF AUC")?;
        for p in &self.cv {
            let mark = if p.alpha == self.best_alpha { "*" } else { " " };
            writeln!(
                f,
                "                 {mark}{:>7}   {:.4}   {:.4}   {:.4}",
                p.alpha, p.mean_auc, p.std_auc, p.oof_auc
            )?;
        }
        writeln!(
            f,
            "chosen alpha {}  threshold {:.4}{}",
            self.best_alpha,
            self.threshold,
            self.cv_f1_at_threshold
                .map_or(String::new(), |x| format!(" (CV F1 {x:.4})"))
        )?;
        writeln!(f, "test metrics")?;
        write!(f, "{}", self.test)?;
        writeln!(f, "top positive weights")?;
        for w in &self.top_positive {
            writeln!(f, "  {:+.4}  {}", w.weight, w.name)?;
        }
        writeln!(f, "top negative weights")?;
        for w in &self.top_negative {
            writeln!(f, "  {:+.4}  {}", w.weight, w.name)?;
        }
        let t = &self.timings;
        writeln!(
            f,
            "time: CV {:.1} s, final fit {:.1} s, evaluation {:.2} s, total {:.1} s",
            t.cv_s, t.final_fit_s, t.evaluate_s, t.total_s
        )
    }
}

/// A trained model and its report. Register it with [`crate::Registry::register`].
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// The model (version `unregistered` until registered).
    pub model: Model,
    /// The report.
    pub report: TrainReport,
}

/// Rows transformed once by the public batch path.
struct Csr(SparseRows);

impl Csr {
    fn build(p: &FittedPipeline, rows: &[&Complaint]) -> Csr {
        Csr(p.transform_batch(rows.iter().copied()))
    }

    fn row(&self, r: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let (i, v) = self.0.row(r).unwrap_or((&[], &[]));
        i.iter().zip(v).map(|(&i, &v)| (i as usize, f64::from(v)))
    }
    /// Dense design matrix; positive rows repeated `dup` times in total.
    fn dense(&self, dim: usize, labels: &[bool], dup: usize) -> (Array2<f32>, Array1<bool>) {
        let n_rows: usize = labels.iter().map(|&y| if y { dup } else { 1 }).sum();
        // Column-major: linfa's gradient computes `xᵀ·r`, which is then a contiguous pass
        // (row-major made it a strided walk, ~10× slower); `x·w` goes through gemm either way.
        let mut x = Array2::<f32>::zeros((n_rows, dim).f());
        let mut y = Array1::from_elem(n_rows, false);
        let mut out = 0;
        for (r, &label) in labels.iter().enumerate() {
            let times = if label { dup } else { 1 };
            for _ in 0..times {
                for (i, v) in self.row(r) {
                    if i < dim {
                        x[[out, i]] = v as f32;
                    }
                }
                y[out] = label;
                out += 1;
            }
        }
        (x, y)
    }

    fn margins(&self, w: &[f32], b: f64) -> Vec<f64> {
        (0..self.0.len())
            .map(|r| {
                self.row(r)
                    .map(|(i, v)| f64::from(w.get(i).copied().unwrap_or(0.0)) * v)
                    .sum::<f64>()
                    + b
            })
            .collect()
    }
}

fn duplication(cfg: &TrainConfig, labels: &[bool]) -> usize {
    match cfg.class_balance {
        ClassBalance::Threshold => 1,
        ClassBalance::Duplicate => {
            let pos = labels.iter().filter(|&&y| y).count().max(1);
            let neg = labels.len() - labels.iter().filter(|&&y| y).count();
            ((neg as f64 / pos as f64).round() as usize).max(1)
        }
    }
}

/// Fits a logistic regression; returns weights and intercept (P(true) = σ(w·x + b)).
fn fit_lr(
    x: &Array2<f32>,
    y: &Array1<bool>,
    alpha: f64,
    cfg: &TrainConfig,
) -> Result<(Vec<f32>, f64), ModelError> {
    let pos = y.iter().filter(|&&v| v).count();
    if pos == 0 || pos == y.len() {
        return Err(ModelError::NotEnoughData(format!(
            "{} training rows of a single class: need both outcomes",
            y.len()
        )));
    }
    let ds = DatasetBase::new(x.view(), y.view());
    let fitted = LogisticRegression::<f32>::default()
        .alpha(alpha as f32)
        .max_iterations(cfg.max_iterations)
        .gradient_tolerance(cfg.gradient_tolerance as f32)
        .with_intercept(true)
        .fit(&ds)
        .map_err(|e| ModelError::Solver(e.to_string()))?;
    // linfa models P(labels.pos.class) where `pos` is the *more frequent* class: flip the
    // sign when that is `false` so the weights always give P(true).
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let w = fitted.params().iter().map(|&v| sign * v).collect();
    Ok((w, f64::from(sign * fitted.intercept())))
}

fn labels_of(rows: &[&Complaint], policy: LabelPolicy) -> Vec<bool> {
    rows.iter()
        .map(|c| policy.label(c).unwrap_or(false))
        .collect()
}

/// Trains on `complaints`: keeps those with a label under `cfg.label_policy`, splits them by
/// `cfg.split` (`train_fraction` for training), then runs [`train_on_split`].
pub fn train(
    complaints: &[Complaint],
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<TrainOutcome, ModelError> {
    cfg.validate()?;
    let labelled: Vec<&Complaint> = complaints
        .iter()
        .filter(|c| cfg.label_policy.label(c).is_some())
        .collect();
    let (train_rows, test_rows): (Vec<&Complaint>, Vec<&Complaint>) = match cfg.split {
        SplitMethod::Hash => labelled
            .iter()
            .partition(|c| is_train(c.complaint_id, cfg.train_fraction)),
        SplitMethod::Temporal => {
            let mut sorted = labelled.clone();
            sorted.sort_by_key(|c| (c.date_received, c.complaint_id));
            let cut = ((sorted.len() as f64) * cfg.train_fraction).round() as usize;
            let test = sorted.split_off(cut.min(sorted.len()));
            (sorted, test)
        }
    };
    progress(TrainProgress {
        stage: TrainStage::Split,
        done: 1,
        total: 1,
        message: format!(
            "{} labelled of {}: {} train, {} test",
            labelled.len(),
            complaints.len(),
            train_rows.len(),
            test_rows.len()
        ),
    });
    let mut outcome = train_refs(&train_rows, &test_rows, cfg, progress)?;
    outcome.report.split = Some(cfg.split);
    outcome.report.rows.total = complaints.len() as u64;
    outcome.report.rows.labelled = labelled.len() as u64;
    Ok(outcome)
}

/// Trains on a given split. Complaints without a label under the policy are skipped.
pub fn train_on_split(
    train: &[Complaint],
    test: &[Complaint],
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<TrainOutcome, ModelError> {
    cfg.validate()?;
    let keep = |c: &&Complaint| cfg.label_policy.label(c).is_some();
    let tr: Vec<&Complaint> = train.iter().filter(keep).collect();
    let te: Vec<&Complaint> = test.iter().filter(keep).collect();
    let mut outcome = train_refs(&tr, &te, cfg, progress)?;
    outcome.report.rows.total = (train.len() + test.len()) as u64;
    outcome.report.rows.labelled = (tr.len() + te.len()) as u64;
    Ok(outcome)
}

struct FoldData {
    dim: usize,
    x: Array2<f32>,
    y: Array1<bool>,
    valid: Csr,
    valid_rows: Vec<usize>,
}

fn train_refs(
    train: &[&Complaint],
    test: &[&Complaint],
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<TrainOutcome, ModelError> {
    cfg.validate()?;
    let t0 = Instant::now();
    let y_train = labels_of(train, cfg.label_policy);
    let y_test = labels_of(test, cfg.label_policy);
    if train.len() < cfg.folds * 2 {
        return Err(ModelError::NotEnoughData(format!(
            "{} labelled training complaints for {} folds",
            train.len(),
            cfg.folds
        )));
    }
    if test.is_empty() {
        return Err(ModelError::NotEnoughData(
            "the test split is empty: lower train_fraction or give more data".into(),
        ));
    }

    // --- Cross-validation -------------------------------------------------------------
    let folds = cfg.folds;
    let fold_of: Vec<usize> = train
        .iter()
        .map(|c| (stable_hash("cv-fold", c.complaint_id) % folds as u64) as usize)
        .collect();
    let mut fold_data = Vec::with_capacity(folds);
    for f in 0..folds {
        let fit_idx: Vec<usize> = (0..train.len()).filter(|&i| fold_of[i] != f).collect();
        let valid_rows: Vec<usize> = (0..train.len()).filter(|&i| fold_of[i] == f).collect();
        let fit_rows: Vec<Complaint> = fit_idx.iter().map(|&i| train[i].clone()).collect();
        let p = FeaturePipeline::fit(&cfg.features, &fit_rows)?;
        let fit_refs: Vec<&Complaint> = fit_rows.iter().collect();
        let fit_labels: Vec<bool> = fit_idx.iter().map(|&i| y_train[i]).collect();
        let (x, y) =
            Csr::build(&p, &fit_refs).dense(p.dim(), &fit_labels, duplication(cfg, &fit_labels));
        let valid_refs: Vec<&Complaint> = valid_rows.iter().map(|&i| train[i]).collect();
        let valid = Csr::build(&p, &valid_refs);
        fold_data.push(FoldData {
            dim: p.dim(),
            x,
            y,
            valid,
            valid_rows,
        });
    }
    let alphas = &cfg.alphas;
    let jobs: Vec<(usize, usize)> = (0..folds)
        .flat_map(|f| (0..alphas.len()).map(move |a| (f, a)))
        .collect();
    let total_jobs = jobs.len();
    progress(TrainProgress {
        stage: TrainStage::CrossValidation,
        done: 0,
        total: total_jobs,
        message: format!("{folds} folds × {} penalties", alphas.len()),
    });
    // oof[a][row] = out-of-fold probability under penalty a.
    let mut oof = vec![vec![0.0f64; train.len()]; alphas.len()];
    let mut fold_auc = vec![vec![0.0f64; folds]; alphas.len()];
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, usize, Result<Vec<f64>, ModelError>)>();
    let threads = cfg.threads.min(total_jobs).max(1);
    let mut first_error = None;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (jobs, fold_data, next) = (&jobs, &fold_data, &next);
            s.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(f, a)) = jobs.get(k) else { break };
                let d = &fold_data[f];
                let res = fit_lr(&d.x, &d.y, alphas[a], cfg).map(|(w, b)| {
                    let _ = d.dim;
                    d.valid.margins(&w, b).into_iter().map(sigmoid).collect()
                });
                if tx.send((f, a, res)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (done, (f, a, res)) in rx.iter().enumerate() {
            match res {
                Ok(p) => {
                    let d = &fold_data[f];
                    let labels: Vec<bool> = d.valid_rows.iter().map(|&i| y_train[i]).collect();
                    fold_auc[a][f] = auc_roc(&p, &labels).unwrap_or(0.5);
                    for (&row, &prob) in d.valid_rows.iter().zip(&p) {
                        oof[a][row] = prob;
                    }
                }
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                }
            }
            progress(TrainProgress {
                stage: TrainStage::CrossValidation,
                done: done + 1,
                total: total_jobs,
                message: format!("fold {} alpha {}", f + 1, alphas[a]),
            });
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    drop(fold_data);
    let cv: Vec<CvPoint> = alphas
        .iter()
        .enumerate()
        .map(|(a, &alpha)| {
            let v = &fold_auc[a];
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
            CvPoint {
                alpha,
                fold_auc: v.clone(),
                mean_auc: mean,
                std_auc: var.sqrt(),
                oof_auc: auc_roc(&oof[a], &y_train).unwrap_or(0.5),
            }
        })
        .collect();
    // Best mean AUC; ties go to the stronger penalty.
    let best = (0..cv.len())
        .max_by(|&i, &j| {
            cv[i]
                .mean_auc
                .total_cmp(&cv[j].mean_auc)
                .then(cv[i].alpha.total_cmp(&cv[j].alpha))
        })
        .unwrap_or(0);
    let best_alpha = cv.get(best).map_or(1.0, |p| p.alpha);
    let (threshold, cv_f1) = match cfg.threshold {
        Some(t) => (t, None),
        None => {
            let (t, f1) = best_f1_threshold(&oof[best], &y_train);
            (t, Some(f1))
        }
    };
    let cv_s = t0.elapsed().as_secs_f64();

    // --- Final fit ----------------------------------------------------------------------
    progress(TrainProgress {
        stage: TrainStage::FinalFit,
        done: 0,
        total: 1,
        message: format!("alpha {best_alpha} on {} rows", train.len()),
    });
    let t1 = Instant::now();
    let owned: Vec<Complaint> = train.iter().map(|&c| c.clone()).collect();
    let pipeline = FeaturePipeline::fit(&cfg.features, &owned)?;
    drop(owned);
    let (x, y) =
        Csr::build(&pipeline, train).dense(pipeline.dim(), &y_train, duplication(cfg, &y_train));
    let (weights, intercept) = fit_lr(&x, &y, best_alpha, cfg)?;
    drop(x);
    let model = Model {
        version: "unregistered".into(),
        label_policy: cfg.label_policy,
        pipeline,
        weights,
        intercept,
        threshold,
    };
    let final_fit_s = t1.elapsed().as_secs_f64();
    progress(TrainProgress {
        stage: TrainStage::FinalFit,
        done: 1,
        total: 1,
        message: format!("{} features", model.pipeline.dim()),
    });

    // --- Evaluation ---------------------------------------------------------------------
    let t2 = Instant::now();
    let mut buf = SparseFeatures::new();
    let scores: Vec<f64> = test.iter().map(|c| model.score(c, &mut buf)).collect();
    let metrics = Metrics::compute(&scores, &y_test, threshold, cfg.calibration_bins);
    let evaluate_s = t2.elapsed().as_secs_f64();
    progress(TrainProgress {
        stage: TrainStage::Evaluate,
        done: test.len(),
        total: test.len(),
        message: format!("test AUC {:?}", metrics.auc_roc),
    });

    let (top_positive, top_negative) = importance(&model, cfg.importance_top_n);
    let report = TrainReport {
        label_policy: cfg.label_policy,
        split: None,
        rows: RowCounts {
            total: (train.len() + test.len()) as u64,
            labelled: (train.len() + test.len()) as u64,
            train: train.len() as u64,
            train_positives: y_train.iter().filter(|&&y| y).count() as u64,
            test: test.len() as u64,
            test_positives: y_test.iter().filter(|&&y| y).count() as u64,
        },
        features: cfg.features.clone(),
        dim: model.pipeline.dim(),
        text_dim: model.pipeline.text_dim(),
        folds,
        class_balance: cfg.class_balance,
        max_iterations: cfg.max_iterations,
        cv,
        best_alpha,
        threshold,
        cv_f1_at_threshold: cv_f1,
        test: metrics,
        top_positive,
        top_negative,
        timings: Timings {
            cv_s,
            final_fit_s,
            evaluate_s,
            total_s: t0.elapsed().as_secs_f64(),
        },
    };
    progress(TrainProgress {
        stage: TrainStage::Done,
        done: 1,
        total: 1,
        message: "done".into(),
    });
    tracing::info!(auc = ?report.test.auc_roc, alpha = best_alpha, "trained model");
    Ok(TrainOutcome { model, report })
}

/// The `n` largest positive and `n` most negative weights, with feature names.
pub fn importance(model: &Model, n: usize) -> (Vec<FeatureWeight>, Vec<FeatureWeight>) {
    let mut idx: Vec<usize> = (0..model.weights.len()).collect();
    idx.sort_by(|&a, &b| model.weights[b].total_cmp(&model.weights[a]));
    let fw = |i: usize| FeatureWeight {
        name: model.pipeline.feature_name(i),
        weight: f64::from(model.weights[i]),
    };
    let pos = idx
        .iter()
        .take(n)
        .filter(|&&i| model.weights[i] > 0.0)
        .map(|&i| fw(i))
        .collect();
    let neg = idx
        .iter()
        .rev()
        .take(n)
        .filter(|&&i| model.weights[i] < 0.0)
        .map(|&i| fw(i))
        .collect();
    (pos, neg)
}
