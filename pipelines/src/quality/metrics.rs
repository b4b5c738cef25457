//! Quality metrics from joined (prediction, outcome) counts, and the monitoring actions.
//!
//! **Counts.** For one model version and one scope (everything, a product, a month received,
//! an ingest hour), [`QualityCounts`] holds how many labelled complaints fell in each of
//! [`FINE_BINS`] score bins, by label, and the confusion counts of the escalation decision.
//! Both are sums of diffs, so an outcome that changes (`In progress` → closed, a dispute
//! recorded later) retracts its old contribution exactly.
//!
//! **Metrics** ([`QualityCounts::metrics`]). The positive class is the model's target, a
//! successful resolution; the score is P(success). A complaint that is *not escalated* is
//! predicted positive (the decision at the escalation threshold):
//! - `auc`: from the fine bins, ties within a bin counted half (1/10,000-wide bins: within
//!   0.001 of the exact rank AUC on the sets measured, far inside the 0.005 asked for);
//! - `pr_auc`: average precision, stepping through the bins from the highest score down;
//! - `precision`, `recall`, `f1`, `accuracy`: of "not escalated" against the label;
//! - `ece`: expected calibration error over 10 equal-width score bins.
//!
//! **Actions** ([`MonitoringConfig::action`], in the style of the loan-default seed's
//! thresholds): fewer than `min_labelled` outcomes → `MONITOR` (collecting); P0 AUC under
//! `retrain_below_auc` → `RETRAIN`; P1 accuracy under `investigate_below_accuracy` →
//! `INVESTIGATE`; P2 F1 under `monitor_below_f1` → `MONITOR` with priority P2; otherwise
//! `MONITOR` with no priority (healthy: keep watching).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use complaintflow_operators::rules::{fine_bin, FINE_BINS};

/// Labelled counts of one model version in one scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QualityCounts {
    /// Fine bin → `[negatives, positives]`.
    pub bins: BTreeMap<u16, [i64; 2]>,
    /// `[escalated][label]` counts.
    pub confusion: [[i64; 2]; 2],
}

/// The metrics of one version in one scope (`None` where undefined: no positive or no
/// negative yet, nothing predicted positive, …).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityMetrics {
    /// Complaints with a final outcome joined to a prediction.
    pub labelled: u64,
    /// Among them, successful resolutions.
    pub positives: u64,
    /// Area under the ROC curve of the score.
    pub auc: Option<f64>,
    /// Average precision of the score (area under the precision-recall curve).
    pub pr_auc: Option<f64>,
    /// Precision of "not escalated" as the prediction of a successful resolution.
    pub precision: Option<f64>,
    /// Recall of the same.
    pub recall: Option<f64>,
    /// F1 of the same.
    pub f1: Option<f64>,
    /// Share of complaints whose escalation agreed with the outcome.
    pub accuracy: Option<f64>,
    /// Expected calibration error (10 equal-width bins).
    pub ece: Option<f64>,
}

impl QualityCounts {
    /// Adds `diff` labelled complaints in fine bin `bin` (`escalated` = the decision).
    pub fn add(&mut self, bin: u16, escalated: bool, label: bool, diff: i64) {
        let e = self.bins.entry(bin).or_insert([0, 0]);
        e[usize::from(label)] += diff;
        if *e == [0, 0] {
            self.bins.remove(&bin);
        }
        self.confusion[usize::from(escalated)][usize::from(label)] += diff;
    }

    /// The metrics of these counts.
    ///
    /// ```
    /// use complaintflow_pipelines::quality::{fine_bin, QualityCounts};
    /// let mut q = QualityCounts::default();
    /// // (score, escalated, label): a perfect ranking, one escalation wrong.
    /// for (s, esc, y) in [(0.1, true, false), (0.2, true, false), (0.7, true, true), (0.9, false, true)] {
    ///     q.add(fine_bin(s), esc, y, 1);
    /// }
    /// let m = q.metrics();
    /// assert_eq!((m.labelled, m.positives, m.auc), (4, 2, Some(1.0)));
    /// assert_eq!((m.precision, m.recall, m.accuracy), (Some(1.0), Some(0.5), Some(0.75)));
    /// q.add(fine_bin(0.7), true, true, -1); // the outcome of the 0.7 complaint changed …
    /// q.add(fine_bin(0.7), true, false, 1); // … to unsuccessful
    /// assert_eq!(q.metrics().positives, 1);
    /// ```
    pub fn metrics(&self) -> QualityMetrics {
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        let (mut neg, mut pos) = (0i64, 0i64);
        for [n, p] in self.bins.values() {
            neg += n;
            pos += p;
        }
        let (n_f, p_f) = (neg.max(0) as f64, pos.max(0) as f64);
        let auc = (neg > 0 && pos > 0).then(|| {
            let mut below = 0.0f64;
            let mut sum = 0.0f64;
            for [n, p] in self.bins.values() {
                sum += *p as f64 * (below + 0.5 * *n as f64);
                below += *n as f64;
            }
            sum / (n_f * p_f)
        });
        let pr_auc = (pos > 0).then(|| {
            let (mut tp, mut fp, mut ap) = (0.0f64, 0.0f64, 0.0f64);
            for [n, p] in self.bins.values().rev() {
                if *p == 0 && *n == 0 {
                    continue;
                }
                tp += *p as f64;
                fp += *n as f64;
                if *p > 0 && tp + fp > 0.0 {
                    ap += (*p as f64 / p_f) * (tp / (tp + fp));
                }
            }
            ap
        });
        let ece = (neg + pos > 0).then(|| {
            let mut coarse = [(0.0f64, 0.0f64, 0.0f64); 10]; // (n, positives, score sum)
            for (b, [n, p]) in &self.bins {
                let centre = (f64::from(*b) + 0.5) / f64::from(FINE_BINS);
                let c = &mut coarse[((centre * 10.0) as usize).min(9)];
                let k = (*n + *p) as f64;
                c.0 += k;
                c.1 += *p as f64;
                c.2 += centre * k;
            }
            let total = n_f + p_f;
            coarse
                .iter()
                .filter(|c| c.0 > 0.0)
                .map(|(k, p, s)| (s / k - p / k).abs() * k / total)
                .sum()
        });
        let [[kept_neg, kept_pos], [esc_neg, esc_pos]] = self.confusion;
        let (tp, fp, fn_) = (kept_pos as f64, kept_neg as f64, esc_pos as f64);
        let precision = (tp + fp > 0.0).then(|| tp / (tp + fp));
        let recall = (tp + fn_ > 0.0).then(|| tp / (tp + fn_));
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        let all = (kept_neg + kept_pos + esc_neg + esc_pos) as f64;
        let accuracy = (all > 0.0).then(|| (kept_pos + esc_neg) as f64 / all);
        QualityMetrics {
            labelled: count(neg + pos),
            positives: count(pos),
            auc,
            pr_auc,
            precision,
            recall,
            f1,
            accuracy,
            ece,
        }
    }
}

/// `[monitoring]`: thresholds of the monitoring actions and the closed retraining loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// No action before this many labelled outcomes of a version. Default 200.
    pub min_labelled: u64,
    /// P0: AUC under this → `RETRAIN`. Default 0.70.
    pub retrain_below_auc: f64,
    /// P1: accuracy of the escalation decision under this → `INVESTIGATE`. Default 0.55.
    pub investigate_below_accuracy: f64,
    /// P2: F1 under this → `MONITOR` (priority P2). Default 0.50.
    pub monitor_below_f1: f64,
    /// When `RETRAIN` fires for the production version: retrain on the labelled history
    /// ([`retrain_data`](Self::retrain_data) plus the outcomes joined so far), A/B-test the
    /// challenger, promote or roll back. Default `false`.
    pub auto_retrain: bool,
    /// Historical JSON the closed loop trains on besides the joined outcomes. Default none
    /// (the joined outcomes alone).
    pub retrain_data: Option<PathBuf>,
    /// Share of complaints the challenger scores during its A/B test. Default 0.5.
    pub challenger_fraction: f64,
    /// Labelled outcomes of the challenger before it is promoted (its AUC beats the
    /// champion's over the same period) or rolled back. Default 500.
    pub promote_after: u64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            min_labelled: 200,
            retrain_below_auc: 0.70,
            investigate_below_accuracy: 0.55,
            monitor_below_f1: 0.50,
            auto_retrain: false,
            retrain_data: None,
            challenger_fraction: 0.5,
            promote_after: 500,
        }
    }
}

/// A monitoring action and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// `MONITOR`, `RETRAIN` or `INVESTIGATE`.
    pub action: &'static str,
    /// `P0`, `P1`, `P2`, or `None` (healthy or still collecting).
    pub priority: Option<&'static str>,
    /// One line: the metric against its threshold.
    pub reason: String,
}

impl MonitoringConfig {
    /// Checks the thresholds (each in [0, 1], fraction in (0, 1)), naming the key and the fix.
    ///
    /// ```
    /// let mut m = complaintflow_pipelines::quality::MonitoringConfig::default();
    /// assert!(m.validate().is_ok());
    /// m.retrain_below_auc = 1.5;
    /// assert!(m.validate().unwrap_err().contains("retrain_below_auc"));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("retrain_below_auc", self.retrain_below_auc),
            (
                "investigate_below_accuracy",
                self.investigate_below_accuracy,
            ),
            ("monitor_below_f1", self.monitor_below_f1),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "[monitoring] {key} = {v}: must be in [0, 1] (a metric threshold)"
                ));
            }
        }
        if !(self.challenger_fraction > 0.0 && self.challenger_fraction < 1.0) {
            return Err(format!(
                "[monitoring] challenger_fraction = {}: must be in (0, 1), e.g. 0.5",
                self.challenger_fraction
            ));
        }
        if self.promote_after == 0 {
            return Err("[monitoring] promote_after = 0: must be at least 1".into());
        }
        Ok(())
    }

    /// The action for metrics `m`.
    ///
    /// ```
    /// use complaintflow_pipelines::quality::{MonitoringConfig, QualityMetrics};
    /// let cfg = MonitoringConfig { min_labelled: 10, ..MonitoringConfig::default() };
    /// let mut m = QualityMetrics { labelled: 50, auc: Some(0.65), accuracy: Some(0.9), f1: Some(0.9), ..Default::default() };
    /// assert_eq!(cfg.action(&m).action, "RETRAIN");
    /// m.auc = Some(0.8);
    /// assert_eq!(cfg.action(&m).action, "MONITOR");
    /// m.labelled = 5;
    /// assert!(cfg.action(&m).reason.contains("collecting"));
    /// ```
    pub fn action(&self, m: &QualityMetrics) -> Action {
        if m.labelled < self.min_labelled {
            return Action {
                action: "MONITOR",
                priority: None,
                reason: format!(
                    "collecting: {} of min_labelled = {} outcomes",
                    m.labelled, self.min_labelled
                ),
            };
        }
        let under = |v: Option<f64>, t: f64| v.is_some_and(|v| v < t);
        let (action, priority, what, v, t) = if under(m.auc, self.retrain_below_auc) {
            ("RETRAIN", "P0", "auc", m.auc, self.retrain_below_auc)
        } else if under(m.accuracy, self.investigate_below_accuracy) {
            (
                "INVESTIGATE",
                "P1",
                "accuracy",
                m.accuracy,
                self.investigate_below_accuracy,
            )
        } else if under(m.f1, self.monitor_below_f1) {
            ("MONITOR", "P2", "f1", m.f1, self.monitor_below_f1)
        } else {
            return Action {
                action: "MONITOR",
                priority: None,
                reason: "every metric at or above its threshold".into(),
            };
        };
        Action {
            action,
            priority: Some(priority),
            reason: format!("{what} {:.4} < {t}", v.unwrap_or(f64::NAN)),
        }
    }
}
