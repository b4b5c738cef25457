//! Training: selection by cross-validation on the training split, evaluation on the test
//! split and on temporal windows, then the served model fitted on every labelled complaint.
//!
//! 1. **Cross-validation** (folds by a salted hash of the complaint id) over the training
//!    split. Each fold refits the feature pipeline and the tree encoder on its own fitting
//!    rows (vocabulary, IDF, category indexes, scalers and target encodings never see the
//!    fold's validation rows); the fold's sparse matrix (LR) and binned dense matrix (trees)
//!    are built once and shared by every grid point. Jobs: fold × L2 penalty (LR) and
//!    fold × leaves (trees, scored at every `eval_every` rounds, so the rounds grid costs
//!    nothing extra). Best mean fold AUC wins; the blend weight maximises the pooled
//!    out-of-fold AUC; calibration (Platt or isotonic) is fitted on the out-of-fold margins;
//!    the threshold maximises out-of-fold F1 of the calibrated probability.
//! 2. **Hash test**: every family fitted on the whole training split, scored on the test split.
//! 3. **Temporal**: labelled complaints cut by `date_received` into train / validation / test /
//!    out-of-time windows ([`crate::TemporalConfig`]); families fitted on the train window with
//!    the selected hyperparameters, calibrated on the validation window, scored on test and
//!    out-of-time. `family = auto` serves the family with the best out-of-time AUC.
//! 4. **Served model**: fitted on train + test (`fit_on_all`), with the calibration and
//!    threshold from step 1.
//!
//! Jobs run on `threads` worker threads; progress is reported from the calling thread.
//! Measured (2-core machine shared with other builds, release, `threads = 2`): cfpb dev 5.3 k
//! rows 9 s, extended dev 28 k rows 33 s for the whole default grid (docs/MODELS.md).

use std::fmt;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use chrono::NaiveDate;
use complaintflow_datasets::split::{is_train, stable_hash};
use complaintflow_datasets::{Complaint, LabelPolicy};
use serde::{Deserialize, Serialize};

use crate::calibrate::Calibration;
use crate::config::{
    CalibrationMethod, ClassBalance, FamilyChoice, FeatureConfig, SplitMethod, TrainConfig,
};
use crate::encode::TreeEncoder;
use crate::gbdt::{staged_margins, Binned, GbdtParams, Trainer};
use crate::linear::{fit_logistic, LbfgsOpts};
use crate::metrics::{auc_roc, best_f1_threshold, Metrics};
use crate::model::{Model, ModelFamily, TreeModel};
use crate::pipeline::{FeaturePipeline, FittedPipeline, SparseRows};
use crate::ModelError;

/// The phase a progress report refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainStage {
    /// Labelling and splitting.
    Split,
    /// Cross-validation: `done` of `total` fold × grid-point fits finished.
    CrossValidation,
    /// Fitting on the training split, the temporal train window and all data.
    FinalFit,
    /// Scoring the test split and the temporal windows.
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

/// Cross-validation result of one tree configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GbdtCvPoint {
    /// Leaves per tree.
    pub max_leaves: usize,
    /// Boosting rounds.
    pub rounds: usize,
    /// Mean validation AUC over the folds.
    pub mean_auc: f64,
    /// Standard deviation over the folds.
    pub std_auc: f64,
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
    /// Training rows (selection and the test-metric model).
    pub train: u64,
    /// Positives among them.
    pub train_positives: u64,
    /// Test rows.
    pub test: u64,
    /// Positives among them.
    pub test_positives: u64,
    /// Rows the served model was fitted on (train + test with `fit_on_all`; 0 in metadata
    /// written before this was recorded).
    #[serde(default)]
    pub served_fit: u64,
}

/// Wall-clock seconds per phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Cross-validation (pipeline and encoder fits, transforms, all grid fits).
    pub cv_s: f64,
    /// Hash-split, temporal and served fits.
    pub final_fit_s: f64,
    /// Test scoring and metrics.
    pub evaluate_s: f64,
    /// Everything.
    pub total_s: f64,
}

/// One temporal window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowInfo {
    /// `train`, `validation`, `test` or `out_of_time`.
    pub window: String,
    /// First `date_received`.
    pub start: NaiveDate,
    /// Last `date_received`.
    pub end: NaiveDate,
    /// Labelled complaints.
    pub rows: u64,
    /// Positives among them.
    pub positives: u64,
}

/// Everything measured for one family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FamilyReport {
    /// Family.
    pub family: ModelFamily,
    /// AUC of the pooled out-of-fold margins (training split).
    pub oof_auc: f64,
    /// Hash test split (model fitted on the training split, calibrated out of fold).
    pub test: Metrics,
    /// Temporal test window.
    pub temporal_test: Option<Metrics>,
    /// Out-of-time window.
    pub out_of_time: Option<Metrics>,
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
    /// Tree cross-validation (every leaves × rounds point).
    pub gbdt_cv: Vec<GbdtCvPoint>,
    /// Chosen leaves per tree.
    pub gbdt_leaves: usize,
    /// Chosen rounds.
    pub gbdt_rounds: usize,
    /// Blend weight of the LR margin.
    pub blend_lr_weight: f64,
    /// Served family.
    pub family: ModelFamily,
    /// What was asked for.
    pub family_choice: FamilyChoice,
    /// Per-family figures.
    pub families: Vec<FamilyReport>,
    /// Temporal windows (empty when disabled or the data are too few).
    pub windows: Vec<WindowInfo>,
    /// Served calibration.
    pub calibration: Calibration,
    /// Decision threshold.
    pub threshold: f64,
    /// Out-of-fold F1 at that threshold (when tuned).
    pub cv_f1_at_threshold: Option<f64>,
    /// Test-split metrics of the served family.
    pub test: Metrics,
    /// Largest positive LR weights.
    pub top_positive: Vec<FeatureWeight>,
    /// Largest negative LR weights.
    pub top_negative: Vec<FeatureWeight>,
    /// Timings.
    pub timings: Timings,
}

impl TrainReport {
    /// The report as a plain-text table (the `Display` form).
    pub fn to_table(&self) -> String {
        self.to_string()
    }

    /// The served family's out-of-time AUC, if the temporal evaluation ran.
    pub fn out_of_time_auc(&self) -> Option<f64> {
        self.families
            .iter()
            .find(|f| f.family == self.family)
            .and_then(|f| f.out_of_time.as_ref())
            .and_then(|m| m.auc_roc)
    }
}

fn opt4(v: Option<f64>) -> String {
    v.map_or_else(|| "  n/a ".to_string(), |x| format!("{x:.4}"))
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
            "train {} ({} positive)  test {} ({} positive)  served model fitted on {}",
            r.train, r.train_positives, r.test, r.test_positives, r.served_fit
        )?;
        writeln!(
            f,
            "features {} (text {})  folds {}  class balance {:?}",
            self.dim, self.text_dim, self.folds, self.class_balance
        )?;
        writeln!(
            f,
            "LR cross-validation   alpha   mean AUC    std    OOF AUC"
        )?;
        for p in &self.cv {
            let mark = if p.alpha == self.best_alpha { "*" } else { " " };
            writeln!(
                f,
                "                    {mark}{:>7}   {:.4}   {:.4}   {:.4}",
                p.alpha, p.mean_auc, p.std_auc, p.oof_auc
            )?;
        }
        writeln!(f, "tree cross-validation (best rounds per leaves)")?;
        let mut leaves: Vec<usize> = self.gbdt_cv.iter().map(|p| p.max_leaves).collect();
        leaves.dedup();
        for l in leaves {
            if let Some(p) = self
                .gbdt_cv
                .iter()
                .filter(|p| p.max_leaves == l)
                .max_by(|a, b| a.mean_auc.total_cmp(&b.mean_auc))
            {
                let mark = if l == self.gbdt_leaves { "*" } else { " " };
                writeln!(
                    f,
                    "                    {mark}leaves {:>3} rounds {:>4}   {:.4} ± {:.4}",
                    p.max_leaves, p.rounds, p.mean_auc, p.std_auc
                )?;
            }
        }
        writeln!(
            f,
            "chosen: alpha {}, trees {} × {} leaves, blend LR weight {:.2}",
            self.best_alpha, self.gbdt_rounds, self.gbdt_leaves, self.blend_lr_weight
        )?;
        if !self.windows.is_empty() {
            writeln!(f, "temporal windows (by date_received)")?;
            for w in &self.windows {
                writeln!(
                    f,
                    "  {:<12} {} .. {}  {:>6} rows ({} positive)",
                    w.window, w.start, w.end, w.rows, w.positives
                )?;
            }
        }
        writeln!(
            f,
            "family   OOF AUC   test AUC  test PR-AUC  test ECE   temporal-test AUC  OOT AUC  OOT ECE"
        )?;
        for fr in &self.families {
            let mark = if fr.family == self.family { "*" } else { " " };
            writeln!(
                f,
                "{mark}{:<7}  {:.4}    {}    {}      {:.4}     {}             {}   {}",
                fr.family.name(),
                fr.oof_auc,
                opt4(fr.test.auc_roc),
                opt4(fr.test.auc_pr),
                fr.test.ece,
                opt4(fr.temporal_test.as_ref().and_then(|m| m.auc_roc)),
                opt4(fr.out_of_time.as_ref().and_then(|m| m.auc_roc)),
                opt4(fr.out_of_time.as_ref().map(|m| m.ece)),
            )?;
        }
        writeln!(
            f,
            "served family {} (asked: {:?})  calibration {}  threshold {:.4}{}",
            self.family,
            self.family_choice,
            match &self.calibration {
                Calibration::Identity => "none".to_string(),
                Calibration::Platt { a, b } => format!("platt a={a:.3} b={b:.3}"),
                Calibration::Isotonic { x, .. } => format!("isotonic ({} steps)", x.len()),
            },
            self.threshold,
            self.cv_f1_at_threshold
                .map_or(String::new(), |x| format!(" (CV F1 {x:.4})"))
        )?;
        writeln!(f, "test metrics ({})", self.family)?;
        write!(f, "{}", self.test)?;
        writeln!(f, "top positive LR weights")?;
        for w in &self.top_positive {
            writeln!(f, "  {:+.4}  {}", w.weight, w.name)?;
        }
        writeln!(f, "top negative LR weights")?;
        for w in &self.top_negative {
            writeln!(f, "  {:+.4}  {}", w.weight, w.name)?;
        }
        let t = &self.timings;
        writeln!(
            f,
            "time: CV {:.1} s, fits {:.1} s, evaluation {:.2} s, total {:.1} s",
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

/// Runs boxed jobs on `threads` threads; `on_done(finished, index)` on the calling thread.
fn run_jobs<'a, R: Send + 'a>(
    jobs: Vec<Box<dyn FnOnce() -> R + Send + 'a>>,
    threads: usize,
    mut on_done: impl FnMut(usize, usize, &R),
) -> Vec<R> {
    let n = jobs.len();
    let mut queue: Vec<(usize, Box<dyn FnOnce() -> R + Send + 'a>)> =
        jobs.into_iter().enumerate().collect();
    queue.reverse();
    let queue = Mutex::new(queue);
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(n).max(1) {
            let tx = tx.clone();
            let queue = &queue;
            s.spawn(move || loop {
                let job = match queue.lock() {
                    Ok(mut q) => q.pop(),
                    Err(_) => None,
                };
                let Some((i, f)) = job else { break };
                if tx.send((i, f())).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (k, (i, r)) in rx.iter().enumerate() {
            on_done(k + 1, i, &r);
            out[i] = Some(r);
        }
    });
    out.into_iter().flatten().collect()
}

/// The LR design of a set of rows under a fitted pipeline.
fn lr_design(p: &FittedPipeline, rows: &[&Complaint]) -> SparseRows {
    p.transform_batch(rows.iter().copied())
}

fn numeric_of(x: &SparseRows, r: usize, n: usize) -> &[f32] {
    x.row(r).map_or(&[][..], |(_, v)| &v[..n.min(v.len())])
}

/// The dense tree rows of `rows` (already transformed into `x`) under a fitted encoder.
fn tree_design(enc: &TreeEncoder, rows: &[&Complaint], x: &SparseRows) -> Vec<f32> {
    let w = enc.width();
    let n = enc.n_numeric as usize;
    let mut out = Vec::with_capacity(rows.len() * w);
    let mut row = Vec::with_capacity(w);
    for (r, c) in rows.iter().enumerate() {
        enc.encode(c, numeric_of(x, r, n), &mut row);
        out.extend_from_slice(&row);
    }
    out
}

fn lr_margins(w: &[f32], b: f64, x: &SparseRows) -> Vec<f64> {
    (0..x.len())
        .map(|r| {
            let (idx, val) = x.row(r).unwrap_or((&[], &[]));
            let mut z = 0.0f32;
            for (&i, &v) in idx.iter().zip(val) {
                z += w.get(i as usize).copied().unwrap_or(0.0) * v;
            }
            f64::from(z) + b
        })
        .collect()
}

fn gbdt_params(cfg: &TrainConfig, leaves: usize, rounds: usize) -> GbdtParams {
    let g = &cfg.gbdt;
    GbdtParams {
        rounds,
        learning_rate: g.learning_rate,
        max_leaves: leaves,
        max_depth: g.max_depth,
        min_leaf: g.min_leaf,
        min_hessian: 1e-3,
        lambda: g.lambda,
        subsample: g.subsample,
        feature_fraction: g.feature_fraction,
        max_bins: g.max_bins,
        seed: g.seed,
    }
}

fn lbfgs(cfg: &TrainConfig) -> LbfgsOpts {
    LbfgsOpts {
        max_iterations: cfg.max_iterations.max(1) * 3,
        gradient_tolerance: cfg.gradient_tolerance,
    }
}

/// Rows with positive rows repeated for [`ClassBalance::Duplicate`].
fn balanced(x: &SparseRows, y: &[bool], cfg: &TrainConfig) -> Option<(SparseRows, Vec<bool>)> {
    if cfg.class_balance != ClassBalance::Duplicate {
        return None;
    }
    let pos = y.iter().filter(|&&v| v).count().max(1);
    let dup = (((y.len() - pos) as f64 / pos as f64).round() as usize).max(1);
    let mut idx = Vec::new();
    let mut yy = Vec::new();
    for (i, &v) in y.iter().enumerate() {
        for _ in 0..if v { dup } else { 1 } {
            idx.push(i);
            yy.push(v);
        }
    }
    Some((x.select(&idx), yy))
}

fn fit_lr(
    x: &SparseRows,
    y: &[bool],
    dim: usize,
    alpha: f64,
    cfg: &TrainConfig,
) -> Result<(Vec<f32>, f64), ModelError> {
    match balanced(x, y, cfg) {
        Some((xb, yb)) => fit_logistic(&xb, &yb, dim, alpha, lbfgs(cfg), None),
        None => fit_logistic(x, y, dim, alpha, lbfgs(cfg), None),
    }
}

/// One fold's cached designs.
struct Fold {
    dim: usize,
    x_fit: SparseRows,
    y_fit: Vec<bool>,
    x_valid: SparseRows,
    valid_rows: Vec<usize>,
    y_valid: Vec<bool>,
    binned: Binned,
    tree_valid: Vec<f32>,
    tree_width: usize,
}

fn make_fold(
    rows: &[&Complaint],
    y: &[bool],
    fit_idx: &[usize],
    valid_rows: Vec<usize>,
    cfg: &TrainConfig,
) -> Result<Fold, ModelError> {
    let fit: Vec<&Complaint> = fit_idx.iter().map(|&i| rows[i]).collect();
    let y_fit: Vec<bool> = fit_idx.iter().map(|&i| y[i]).collect();
    let valid: Vec<&Complaint> = valid_rows.iter().map(|&i| rows[i]).collect();
    let y_valid: Vec<bool> = valid_rows.iter().map(|&i| y[i]).collect();
    let p = FeaturePipeline::fit_refs(&cfg.features, &fit)?;
    let x_fit = lr_design(&p, &fit);
    let x_valid = lr_design(&p, &valid);
    let n_num = p.numeric_len();
    let (enc, tree_fit) = TreeEncoder::fit(
        &fit,
        &y_fit,
        n_num,
        cfg.gbdt.target_smoothing,
        cfg.folds,
        |r| numeric_of(&x_fit, r, n_num),
    );
    let tree_width = enc.width();
    let binned = Binned::new(&tree_fit, fit.len(), tree_width, cfg.gbdt.max_bins);
    let tree_valid = tree_design(&enc, &valid, &x_valid);
    Ok(Fold {
        dim: p.dim(),
        x_fit,
        y_fit,
        x_valid,
        valid_rows,
        y_valid,
        binned,
        tree_valid,
        tree_width,
    })
}

/// Fitted parts of every family on one set of rows.
struct Parts {
    pipeline: FittedPipeline,
    weights: Vec<f32>,
    intercept: f64,
    trees: TreeModel,
}

impl Parts {
    /// (LR margins, tree margins) of `rows`.
    fn margins(&self, rows: &[&Complaint]) -> (Vec<f64>, Vec<f64>) {
        let x = lr_design(&self.pipeline, rows);
        let lr = lr_margins(&self.weights, self.intercept, &x);
        let d = tree_design(&self.trees.encoder, rows, &x);
        let w = self.trees.encoder.width();
        let tr = crate::gbdt::margins(&self.trees.ensemble, &d, w);
        (lr, tr)
    }
}

#[derive(Clone, Copy)]
struct Selection {
    alpha: f64,
    leaves: usize,
    rounds: usize,
}

fn fit_parts(
    rows: &[&Complaint],
    y: &[bool],
    sel: Selection,
    cfg: &TrainConfig,
) -> Result<Parts, ModelError> {
    let pipeline = FeaturePipeline::fit_refs(&cfg.features, rows)?;
    let x = lr_design(&pipeline, rows);
    let (weights, intercept) = fit_lr(&x, y, pipeline.dim(), sel.alpha, cfg)?;
    let n_num = pipeline.numeric_len();
    let (encoder, d) =
        TreeEncoder::fit(rows, y, n_num, cfg.gbdt.target_smoothing, cfg.folds, |r| {
            numeric_of(&x, r, n_num)
        });
    let binned = Binned::new(&d, rows.len(), encoder.width(), cfg.gbdt.max_bins);
    let ensemble = Trainer::new(&binned, gbdt_params(cfg, sel.leaves, sel.rounds)).fit(y)?;
    Ok(Parts {
        pipeline,
        weights,
        intercept,
        trees: TreeModel { encoder, ensemble },
    })
}

const FAMILIES: [ModelFamily; 3] = [ModelFamily::Lr, ModelFamily::Gbdt, ModelFamily::Blend];

fn mix(family: ModelFamily, u: f64, lr: &[f64], tr: &[f64]) -> Vec<f64> {
    match family {
        ModelFamily::Lr => lr.to_vec(),
        ModelFamily::Gbdt => tr.to_vec(),
        ModelFamily::Blend => lr
            .iter()
            .zip(tr)
            .map(|(a, b)| u * a + (1.0 - u) * b)
            .collect(),
    }
}

fn fit_calibration(method: CalibrationMethod, z: &[f64], y: &[bool]) -> Calibration {
    match method {
        CalibrationMethod::Platt => Calibration::fit_platt(z, y),
        CalibrationMethod::Isotonic => Calibration::fit_isotonic(z, y),
        CalibrationMethod::None => Calibration::Identity,
    }
}

/// Train / validation / test / out-of-time index sets of `rows` (by date, whole days).
fn temporal_windows(
    rows: &[&Complaint],
    y: &[bool],
    cfg: &TrainConfig,
) -> Option<([Vec<usize>; 4], Vec<WindowInfo>)> {
    let t = &cfg.temporal;
    if !t.enabled || rows.len() < 200 {
        return None;
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].date_received, rows[i].complaint_id));
    let n = order.len();
    // Cut positions from the end, moved back to the first row of that date.
    let cut_at = |share_after: f64| -> usize {
        let mut k = ((1.0 - share_after) * n as f64).round() as usize;
        k = k.min(n - 1);
        let d = rows[order[k]].date_received;
        while k > 0 && rows[order[k - 1]].date_received == d {
            k -= 1;
        }
        k
    };
    let (valid, test, oot) = match t.fixed_starts() {
        // First row on or after each fixed date.
        Some((v, te, o)) => {
            let first = |d: NaiveDate| order.partition_point(|&i| rows[i].date_received < d);
            (first(v), first(te), first(o))
        }
        None => (
            cut_at(t.out_of_time_fraction + t.test_fraction + t.validation_fraction),
            cut_at(t.out_of_time_fraction + t.test_fraction),
            cut_at(t.out_of_time_fraction),
        ),
    };
    if !(valid > 0 && valid < test && test < oot && oot < n) {
        return None;
    }
    let sets = [
        order[..valid].to_vec(),
        order[valid..test].to_vec(),
        order[test..oot].to_vec(),
        order[oot..].to_vec(),
    ];
    let names = ["train", "validation", "test", "out_of_time"];
    let mut infos = Vec::new();
    for (s, name) in sets.iter().zip(names) {
        let pos = s.iter().filter(|&&i| y[i]).count();
        if s.len() < 30 || pos == 0 || pos == s.len() {
            return None;
        }
        infos.push(WindowInfo {
            window: name.to_string(),
            start: rows[s[0]].date_received,
            end: rows[s[s.len() - 1]].date_received,
            rows: s.len() as u64,
            positives: pos as u64,
        });
    }
    Some((sets, infos))
}

/// The temporal windows `train` uses for the labelled complaints `rows` (as [`train`] labels
/// them under `cfg.label_policy`): per row 0 = train, 1 = validation, 2 = test,
/// 3 = out-of-time, and the windows' description. `None` when disabled or too few rows.
/// (For reference scripts that must evaluate on exactly the same windows.)
pub fn temporal_assignment(
    rows: &[&Complaint],
    cfg: &TrainConfig,
) -> Option<(Vec<u8>, Vec<WindowInfo>)> {
    let y = labels_of(rows, cfg.label_policy);
    let (sets, infos) = temporal_windows(rows, &y, cfg)?;
    let mut w = vec![0u8; rows.len()];
    for (k, s) in sets.iter().enumerate() {
        for &i in s {
            w[i] = k as u8;
        }
    }
    Some((w, infos))
}

enum CvResult {
    Lr {
        fold: usize,
        alpha: usize,
        margins: Result<Vec<f64>, ModelError>,
    },
    Gbdt {
        fold: usize,
        leaves: usize,
        staged: Result<Vec<(usize, Vec<f64>)>, ModelError>,
    },
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64;
    (m, var.sqrt())
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
    let pos = y_train.iter().filter(|&&v| v).count();
    if pos == 0 || pos == y_train.len() {
        return Err(ModelError::NotEnoughData(format!(
            "{} training rows of a single class: need both outcomes",
            y_train.len()
        )));
    }

    // --- Cross-validation -------------------------------------------------------------
    let folds = cfg.folds;
    let fold_of: Vec<usize> = train
        .iter()
        .map(|c| (stable_hash("cv-fold", c.complaint_id) % folds as u64) as usize)
        .collect();
    let fold_jobs: Vec<Box<dyn FnOnce() -> Result<Fold, ModelError> + Send + '_>> = (0..folds)
        .map(|f| {
            let fold_of = &fold_of;
            let y = &y_train;
            Box::new(move || {
                let fit_idx: Vec<usize> = (0..train.len()).filter(|&i| fold_of[i] != f).collect();
                let valid: Vec<usize> = (0..train.len()).filter(|&i| fold_of[i] == f).collect();
                make_fold(train, y, &fit_idx, valid, cfg)
            }) as Box<dyn FnOnce() -> _ + Send + '_>
        })
        .collect();
    progress(TrainProgress {
        stage: TrainStage::CrossValidation,
        done: 0,
        total: folds,
        message: format!("featurizing {folds} folds"),
    });
    let fold_data: Vec<Fold> = run_jobs(fold_jobs, cfg.threads, |_, _, _| {})
        .into_iter()
        .collect::<Result<_, _>>()?;
    let alphas = &cfg.alphas;
    let leaves_grid = &cfg.gbdt.max_leaves;
    let mut jobs: Vec<Box<dyn FnOnce() -> CvResult + Send + '_>> = Vec::new();
    for (f, d) in fold_data.iter().enumerate() {
        for (li, &leaves) in leaves_grid.iter().enumerate() {
            jobs.push(Box::new(move || {
                let staged = Trainer::new(&d.binned, gbdt_params(cfg, leaves, cfg.gbdt.max_rounds))
                    .fit(&d.y_fit)
                    .map(|e| staged_margins(&e, &d.tree_valid, d.tree_width, cfg.gbdt.eval_every));
                CvResult::Gbdt {
                    fold: f,
                    leaves: li,
                    staged,
                }
            }));
        }
    }
    for (f, d) in fold_data.iter().enumerate() {
        for (a, &alpha) in alphas.iter().enumerate() {
            jobs.push(Box::new(move || CvResult::Lr {
                fold: f,
                alpha: a,
                margins: fit_lr(&d.x_fit, &d.y_fit, d.dim, alpha, cfg)
                    .map(|(w, b)| lr_margins(&w, b, &d.x_valid)),
            }));
        }
    }
    let total_jobs = jobs.len();
    progress(TrainProgress {
        stage: TrainStage::CrossValidation,
        done: 0,
        total: total_jobs,
        message: format!(
            "{folds} folds × ({} penalties + {} tree configurations)",
            alphas.len(),
            leaves_grid.len()
        ),
    });
    let results = run_jobs(jobs, cfg.threads, |done, _, r| {
        let message = match r {
            CvResult::Lr { fold, alpha, .. } => {
                format!("fold {} LR alpha {}", fold + 1, alphas[*alpha])
            }
            CvResult::Gbdt { fold, leaves, .. } => {
                format!("fold {} trees {} leaves", fold + 1, leaves_grid[*leaves])
            }
        };
        progress(TrainProgress {
            stage: TrainStage::CrossValidation,
            done,
            total: total_jobs,
            message,
        });
    });
    let n = train.len();
    let mut lr_oof = vec![vec![0.0f64; n]; alphas.len()];
    let mut lr_fold_auc = vec![vec![0.0f64; folds]; alphas.len()];
    // (leaves index, rounds) → per-fold AUC and pooled margins.
    let n_stages = cfg.gbdt.max_rounds.div_ceil(cfg.gbdt.eval_every);
    let mut gb_rounds = vec![0usize; n_stages];
    let mut gb_auc = vec![vec![vec![0.0f64; folds]; n_stages]; leaves_grid.len()];
    let mut gb_oof = vec![vec![vec![0.0f64; n]; n_stages]; leaves_grid.len()];
    for r in results {
        match r {
            CvResult::Lr {
                fold,
                alpha,
                margins,
            } => {
                let m = margins?;
                let d = &fold_data[fold];
                lr_fold_auc[alpha][fold] = auc_roc(&m, &d.y_valid).unwrap_or(0.5);
                for (&row, &z) in d.valid_rows.iter().zip(&m) {
                    lr_oof[alpha][row] = z;
                }
            }
            CvResult::Gbdt {
                fold,
                leaves,
                staged,
            } => {
                let d = &fold_data[fold];
                for (s, (rounds, m)) in staged?.into_iter().enumerate().take(n_stages) {
                    gb_rounds[s] = rounds;
                    gb_auc[leaves][s][fold] = auc_roc(&m, &d.y_valid).unwrap_or(0.5);
                    for (&row, &z) in d.valid_rows.iter().zip(&m) {
                        gb_oof[leaves][s][row] = z;
                    }
                }
            }
        }
    }
    drop(fold_data);
    let cv: Vec<CvPoint> = alphas
        .iter()
        .enumerate()
        .map(|(a, &alpha)| {
            let (mean, std) = mean_std(&lr_fold_auc[a]);
            CvPoint {
                alpha,
                fold_auc: lr_fold_auc[a].clone(),
                mean_auc: mean,
                std_auc: std,
                oof_auc: auc_roc(&lr_oof[a], &y_train).unwrap_or(0.5),
            }
        })
        .collect();
    // Best mean AUC; ties go to the stronger penalty.
    let best_a = (0..cv.len())
        .max_by(|&i, &j| {
            cv[i]
                .mean_auc
                .total_cmp(&cv[j].mean_auc)
                .then(cv[i].alpha.total_cmp(&cv[j].alpha))
        })
        .unwrap_or(0);
    let best_alpha = cv.get(best_a).map_or(1.0, |p| p.alpha);
    let mut gbdt_cv = Vec::new();
    let mut best_g = (0usize, 0usize, f64::MIN);
    for (li, &leaves) in leaves_grid.iter().enumerate() {
        for s in 0..n_stages {
            let (mean, std) = mean_std(&gb_auc[li][s]);
            gbdt_cv.push(GbdtCvPoint {
                max_leaves: leaves,
                rounds: gb_rounds[s],
                mean_auc: mean,
                std_auc: std,
            });
            if mean > best_g.2 + 1e-12 {
                best_g = (li, s, mean);
            }
        }
    }
    let sel = Selection {
        alpha: best_alpha,
        leaves: leaves_grid.get(best_g.0).copied().unwrap_or(31),
        rounds: gb_rounds
            .get(best_g.1)
            .copied()
            .unwrap_or(cfg.gbdt.max_rounds)
            .max(1),
    };
    let oof_lr = lr_oof.swap_remove(best_a);
    let oof_gb = std::mem::take(&mut gb_oof[best_g.0][best_g.1]);
    drop(gb_oof);
    // Blend weight: best pooled OOF AUC on a 0.05 grid.
    let mut blend_u = 0.5;
    let mut best_blend = f64::MIN;
    for k in 0..=20 {
        let u = f64::from(k) / 20.0;
        let z = mix(ModelFamily::Blend, u, &oof_lr, &oof_gb);
        let auc = auc_roc(&z, &y_train).unwrap_or(0.5);
        if auc > best_blend + 1e-9 {
            best_blend = auc;
            blend_u = u;
        }
    }
    let oof: Vec<Vec<f64>> = FAMILIES
        .iter()
        .map(|&f| mix(f, blend_u, &oof_lr, &oof_gb))
        .collect();
    let calibrations: Vec<Calibration> = oof
        .iter()
        .map(|z| fit_calibration(cfg.calibration, z, &y_train))
        .collect();
    let cv_s = t0.elapsed().as_secs_f64();

    // --- Fits: hash training split, temporal train window, all labelled data ------------
    let t1 = Instant::now();
    let all: Vec<&Complaint> = train.iter().chain(test.iter()).copied().collect();
    let y_all: Vec<bool> = y_train.iter().chain(y_test.iter()).copied().collect();
    let windows = temporal_windows(&all, &y_all, cfg);
    let mut fit_jobs: Vec<Box<dyn FnOnce() -> Result<Parts, ModelError> + Send + '_>> =
        vec![Box::new(|| fit_parts(train, &y_train, sel, cfg))];
    if let Some((sets, _)) = &windows {
        let rows: Vec<&Complaint> = sets[0].iter().map(|&i| all[i]).collect();
        let y: Vec<bool> = sets[0].iter().map(|&i| y_all[i]).collect();
        fit_jobs.push(Box::new(move || fit_parts(&rows, &y, sel, cfg)));
    }
    if cfg.fit_on_all {
        let (rows, y) = (&all, &y_all);
        fit_jobs.push(Box::new(move || fit_parts(rows, y, sel, cfg)));
    }
    let n_fits = fit_jobs.len();
    progress(TrainProgress {
        stage: TrainStage::FinalFit,
        done: 0,
        total: n_fits,
        message: format!(
            "alpha {}, {} trees × {} leaves",
            sel.alpha, sel.rounds, sel.leaves
        ),
    });
    let mut fitted = run_jobs(fit_jobs, cfg.threads, |done, _, _| {
        progress(TrainProgress {
            stage: TrainStage::FinalFit,
            done,
            total: n_fits,
            message: "fitted".into(),
        });
    })
    .into_iter();
    let hash_parts = fitted
        .next()
        .ok_or_else(|| ModelError::NotEnoughData("no fit ran".into()))??;
    let temporal_parts = match &windows {
        Some(_) => Some(
            fitted
                .next()
                .ok_or_else(|| ModelError::NotEnoughData("no temporal fit ran".into()))??,
        ),
        None => None,
    };
    let all_parts = if cfg.fit_on_all {
        Some(
            fitted
                .next()
                .ok_or_else(|| ModelError::NotEnoughData("no final fit ran".into()))??,
        )
    } else {
        None
    };
    let final_fit_s = t1.elapsed().as_secs_f64();

    // --- Evaluation ---------------------------------------------------------------------
    let t2 = Instant::now();
    let bins = cfg.calibration_bins;
    let (test_lr, test_tr) = hash_parts.margins(test);
    let mut thresholds = Vec::new();
    for (k, &f) in FAMILIES.iter().enumerate() {
        let p: Vec<f64> = oof[k].iter().map(|&z| calibrations[k].apply(z)).collect();
        thresholds.push(match cfg.threshold {
            Some(t) => (t, None),
            None => {
                let (t, f1) = best_f1_threshold(&p, &y_train);
                (t, Some(f1))
            }
        });
        let _ = f;
    }
    let mut families: Vec<FamilyReport> = FAMILIES
        .iter()
        .enumerate()
        .map(|(k, &f)| {
            let z = mix(f, blend_u, &test_lr, &test_tr);
            let p: Vec<f64> = z.iter().map(|&v| calibrations[k].apply(v)).collect();
            FamilyReport {
                family: f,
                oof_auc: auc_roc(&oof[k], &y_train).unwrap_or(0.5),
                test: Metrics::compute(&p, &y_test, thresholds[k].0, bins),
                temporal_test: None,
                out_of_time: None,
            }
        })
        .collect();
    let mut window_infos = Vec::new();
    if let (Some((sets, infos)), Some(tp)) = (&windows, &temporal_parts) {
        window_infos = infos.clone();
        let pick = |s: &Vec<usize>| -> (Vec<&Complaint>, Vec<bool>) {
            (
                s.iter().map(|&i| all[i]).collect(),
                s.iter().map(|&i| y_all[i]).collect(),
            )
        };
        let (v_rows, v_y) = pick(&sets[1]);
        let (t_rows, t_y) = pick(&sets[2]);
        let (o_rows, o_y) = pick(&sets[3]);
        let (v_lr, v_tr) = tp.margins(&v_rows);
        let (t_lr, t_tr) = tp.margins(&t_rows);
        let (o_lr, o_tr) = tp.margins(&o_rows);
        for (k, &f) in FAMILIES.iter().enumerate() {
            let vz = mix(f, blend_u, &v_lr, &v_tr);
            let cal = fit_calibration(cfg.calibration, &vz, &v_y);
            let vp: Vec<f64> = vz.iter().map(|&z| cal.apply(z)).collect();
            let thr = match cfg.threshold {
                Some(t) => t,
                None => best_f1_threshold(&vp, &v_y).0,
            };
            let score = |lr: &[f64], tr: &[f64]| -> Vec<f64> {
                mix(f, blend_u, lr, tr)
                    .iter()
                    .map(|&z| cal.apply(z))
                    .collect()
            };
            families[k].temporal_test =
                Some(Metrics::compute(&score(&t_lr, &t_tr), &t_y, thr, bins));
            families[k].out_of_time = Some(Metrics::compute(&score(&o_lr, &o_tr), &o_y, thr, bins));
        }
    }
    let chosen = match cfg.family {
        FamilyChoice::Lr => ModelFamily::Lr,
        FamilyChoice::Gbdt => ModelFamily::Gbdt,
        FamilyChoice::Blend => ModelFamily::Blend,
        FamilyChoice::Auto => {
            let key = |fr: &FamilyReport| {
                fr.out_of_time
                    .as_ref()
                    .and_then(|m| m.auc_roc)
                    .unwrap_or(fr.oof_auc)
            };
            families
                .iter()
                .max_by(|a, b| key(a).total_cmp(&key(b)))
                .map_or(ModelFamily::Blend, |f| f.family)
        }
    };
    let k = FAMILIES.iter().position(|&f| f == chosen).unwrap_or(0);
    let served = all_parts.unwrap_or(hash_parts);
    let (threshold, cv_f1) = thresholds[k];
    let model = Model {
        version: "unregistered".into(),
        label_policy: cfg.label_policy,
        pipeline: served.pipeline,
        weights: served.weights,
        intercept: served.intercept,
        threshold,
        family: chosen,
        trees: if chosen == ModelFamily::Lr {
            None
        } else {
            Some(served.trees)
        },
        lr_weight: match chosen {
            ModelFamily::Lr => 1.0,
            ModelFamily::Gbdt => 0.0,
            ModelFamily::Blend => blend_u,
        },
        calibration: calibrations[k].clone(),
    };
    model
        .validate()
        .map_err(|reason| ModelError::Solver(format!("trained model is invalid: {reason}")))?;
    let evaluate_s = t2.elapsed().as_secs_f64();
    let test_metrics = families[k].test.clone();
    progress(TrainProgress {
        stage: TrainStage::Evaluate,
        done: test.len(),
        total: test.len(),
        message: format!("{chosen}: test AUC {:?}", test_metrics.auc_roc),
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
            served_fit: model.pipeline.training_rows(),
        },
        features: cfg.features.clone(),
        dim: model.pipeline.dim(),
        text_dim: model.pipeline.text_dim(),
        folds,
        class_balance: cfg.class_balance,
        max_iterations: cfg.max_iterations,
        cv,
        best_alpha,
        gbdt_cv,
        gbdt_leaves: sel.leaves,
        gbdt_rounds: sel.rounds,
        blend_lr_weight: blend_u,
        family: chosen,
        family_choice: cfg.family,
        families,
        windows: window_infos,
        calibration: model.calibration.clone(),
        threshold,
        cv_f1_at_threshold: cv_f1,
        test: test_metrics,
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
    tracing::info!(auc = ?report.test.auc_roc, family = %chosen, alpha = best_alpha, "trained model");
    Ok(TrainOutcome { model, report })
}

/// The `n` largest positive and `n` most negative LR weights, with feature names.
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
