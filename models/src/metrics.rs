//! Binary-classification metrics: AUC-ROC, AUC-PR (average precision), threshold metrics,
//! confusion matrix and a calibration table.
//!
//! ```
//! use complaintflow_models::metrics::{auc_roc, average_precision};
//! // Positives at ranks 1 and 3 of 4 (by score): 3 of the 4 (pos, neg) pairs are ordered
//! // correctly → AUC = 0.75; AP = (1/1 + 2/3) / 2.
//! let scores = [0.9, 0.8, 0.7, 0.1];
//! let labels = [true, false, true, false];
//! assert_eq!(auc_roc(&scores, &labels), Some(0.75));
//! assert!((average_precision(&scores, &labels).unwrap() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Counts at a threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Predicted positive, actually positive.
    pub tp: u64,
    /// Predicted positive, actually negative.
    pub fp: u64,
    /// Predicted negative, actually negative.
    pub tn: u64,
    /// Predicted negative, actually positive.
    pub fn_: u64,
}

impl ConfusionMatrix {
    /// Counts the decisions `score >= threshold`.
    pub fn at(scores: &[f64], labels: &[bool], threshold: f64) -> Self {
        let mut m = ConfusionMatrix::default();
        for (&s, &y) in scores.iter().zip(labels) {
            match (s >= threshold, y) {
                (true, true) => m.tp += 1,
                (true, false) => m.fp += 1,
                (false, false) => m.tn += 1,
                (false, true) => m.fn_ += 1,
            }
        }
        m
    }

    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 {
            0.0
        } else {
            a as f64 / b as f64
        }
    }

    /// (tp + tn) / n.
    pub fn accuracy(&self) -> f64 {
        Self::ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }
    /// tp / (tp + fp); 0 when nothing is predicted positive.
    pub fn precision(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fp)
    }
    /// tp / (tp + fn); 0 when there are no positives.
    pub fn recall(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fn_)
    }
    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        Self::ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// One row of the calibration table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge of the predicted-probability bin.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Complaints in the bin.
    pub count: u64,
    /// Mean predicted probability in the bin (0 when empty).
    pub mean_predicted: f64,
    /// Observed positive rate in the bin (0 when empty).
    pub observed_rate: f64,
}

/// Area under the ROC curve (Mann–Whitney U with average ranks for ties). `None` when a
/// class is absent or the slices differ in length.
pub fn auc_roc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let pos = labels.iter().filter(|&&y| y).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum_pos += avg;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

/// Average precision (area under the precision–recall curve, step-wise as scikit-learn's
/// `average_precision_score`; tied scores form one step). `None` without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let pos = labels.iter().filter(|&&y| y).count();
    if pos == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if labels[order[j]] {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j;
    }
    Some(ap)
}

/// The threshold (one of the scores) that maximises F1, and that F1.
pub fn best_f1_threshold(scores: &[f64], labels: &[bool]) -> (f64, f64) {
    let pos = labels.iter().filter(|&&y| y).count();
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut best_t, mut best_f1) = (0.5, 0.0);
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let t = scores[order[i]];
        while i < order.len() && scores[order[i]] == t {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let f1 = 2.0 * tp as f64 / (tp + fp + pos) as f64;
        if f1 > best_f1 {
            best_f1 = f1;
            best_t = t;
        }
    }
    (best_t, best_f1)
}

/// Equal-width calibration bins over [0, 1].
pub fn calibration_table(scores: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    let mut count = vec![0u64; bins];
    let mut sum_p = vec![0.0f64; bins];
    let mut sum_y = vec![0u64; bins];
    for (&s, &y) in scores.iter().zip(labels) {
        let b = ((s.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        sum_p[b] += s;
        sum_y[b] += u64::from(y);
    }
    (0..bins)
        .map(|b| CalibrationBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count: count[b],
            mean_predicted: if count[b] > 0 {
                sum_p[b] / count[b] as f64
            } else {
                0.0
            },
            observed_rate: if count[b] > 0 {
                sum_y[b] as f64 / count[b] as f64
            } else {
                0.0
            },
        })
        .collect()
}

/// Expected calibration error: Σ over `bins` equal-width probability bins of
/// (bin share × |mean predicted − observed rate|).
pub fn expected_calibration_error(scores: &[f64], labels: &[bool], bins: usize) -> f64 {
    let n = scores.len().min(labels.len());
    if n == 0 {
        return 0.0;
    }
    calibration_table(&scores[..n], &labels[..n], bins)
        .iter()
        .map(|b| b.count as f64 / n as f64 * (b.mean_predicted - b.observed_rate).abs())
        .sum()
}

/// A percentile bootstrap interval of the AUC: `(low, high)` at `level` (e.g. 0.95) from
/// `resamples` resamples with a fixed seed (deterministic). `None` when the AUC is undefined.
pub fn auc_bootstrap_ci(
    scores: &[f64],
    labels: &[bool],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    auc_roc(scores, labels)?;
    let n = scores.len().min(labels.len());
    let mut s = seed | 1;
    let mut aucs = Vec::with_capacity(resamples);
    let mut bs = vec![0.0; n];
    let mut bl = vec![false; n];
    for _ in 0..resamples.max(1) {
        for k in 0..n {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let i = (s % n as u64) as usize;
            bs[k] = scores[i];
            bl[k] = labels[i];
        }
        if let Some(a) = auc_roc(&bs, &bl) {
            aucs.push(a);
        }
    }
    if aucs.is_empty() {
        return None;
    }
    aucs.sort_by(f64::total_cmp);
    let q = |p: f64| aucs[((p * (aucs.len() - 1) as f64).round() as usize).min(aucs.len() - 1)];
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
    Some((q(tail), q(1.0 - tail)))
}

/// Evaluation of scores against labels at a threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of complaints.
    pub n: u64,
    /// Positives among them.
    pub positives: u64,
    /// Area under the ROC curve (`None` when a class is absent).
    pub auc_roc: Option<f64>,
    /// Average precision (`None` without positives).
    pub auc_pr: Option<f64>,
    /// Mean log-loss.
    pub log_loss: f64,
    /// Brier score.
    pub brier: f64,
    /// The decision threshold used below.
    pub threshold: f64,
    /// Accuracy at the threshold.
    pub accuracy: f64,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
    /// F1 at the threshold.
    pub f1: f64,
    /// Confusion matrix at the threshold.
    pub confusion: ConfusionMatrix,
    /// Calibration table.
    pub calibration: Vec<CalibrationBin>,
    /// Expected calibration error over the calibration table's bins (0 in metadata written
    /// before it was recorded).
    #[serde(default)]
    pub ece: f64,
}

impl Metrics {
    /// Computes every metric. `scores` are probabilities.
    pub fn compute(scores: &[f64], labels: &[bool], threshold: f64, bins: usize) -> Metrics {
        let n = scores.len().min(labels.len());
        let (scores, labels) = (&scores[..n], &labels[..n]);
        let confusion = ConfusionMatrix::at(scores, labels, threshold);
        let mut log_loss = 0.0;
        let mut brier = 0.0;
        for (&p, &y) in scores.iter().zip(labels) {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            log_loss -= if y { p.ln() } else { (1.0 - p).ln() };
            brier += (p - f64::from(u8::from(y))).powi(2);
        }
        let nf = (n as f64).max(1.0);
        Metrics {
            n: n as u64,
            positives: labels.iter().filter(|&&y| y).count() as u64,
            auc_roc: auc_roc(scores, labels),
            auc_pr: average_precision(scores, labels),
            log_loss: log_loss / nf,
            brier: brier / nf,
            threshold,
            accuracy: confusion.accuracy(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            confusion,
            calibration: calibration_table(scores, labels, bins),
            ece: expected_calibration_error(scores, labels, bins),
        }
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.4}"))
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  complaints      {:>8}   positives {} ({:.1}%)",
            self.n,
            self.positives,
            100.0 * self.positives as f64 / (self.n as f64).max(1.0)
        )?;
        writeln!(f, "  AUC-ROC         {:>8}", opt(self.auc_roc))?;
        writeln!(f, "  AUC-PR          {:>8}", opt(self.auc_pr))?;
        writeln!(f, "  ECE             {:>8.4}", self.ece)?;
        writeln!(
            f,
            "  log-loss        {:>8.4}   Brier {:.4}",
            self.log_loss, self.brier
        )?;
        writeln!(f, "  threshold       {:>8.4}", self.threshold)?;
        writeln!(f, "  accuracy        {:>8.4}", self.accuracy)?;
        writeln!(f, "  precision       {:>8.4}", self.precision)?;
        writeln!(f, "  recall          {:>8.4}", self.recall)?;
        writeln!(f, "  F1              {:>8.4}", self.f1)?;
        let c = &self.confusion;
        writeln!(f, "  confusion       predicted+  predicted-")?;
        writeln!(f, "    actual+       {:>10}  {:>10}", c.tp, c.fn_)?;
        writeln!(f, "    actual-       {:>10}  {:>10}", c.fp, c.tn)?;
        writeln!(f, "  calibration     bin          n   mean p  observed")?;
        for b in &self.calibration {
            if b.count > 0 {
                writeln!(
                    f,
                    "                  {:.1}-{:.1} {:>7}   {:.3}    {:.3}",
                    b.lower, b.upper, b.count, b.mean_predicted, b.observed_rate
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn auc_perfect_inverted_and_ties() {
        let l = [false, false, true, true];
        assert_eq!(auc_roc(&[0.1, 0.2, 0.8, 0.9], &l), Some(1.0));
        assert_eq!(auc_roc(&[0.9, 0.8, 0.2, 0.1], &l), Some(0.0));
        // All tied: every pair counts one half.
        assert_eq!(auc_roc(&[0.5; 4], &l), Some(0.5));
        // One tie between a positive and a negative out of 4 pairs: (3 + 0.5) / 4.
        assert_eq!(auc_roc(&[0.1, 0.5, 0.5, 0.9], &l), Some(0.875));
        assert_eq!(auc_roc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn confusion_and_threshold_metrics_by_hand() {
        let s = [0.9, 0.7, 0.6, 0.4, 0.2];
        let l = [true, false, true, true, false];
        let m = ConfusionMatrix::at(&s, &l, 0.5);
        assert_eq!(
            m,
            ConfusionMatrix {
                tp: 2,
                fp: 1,
                tn: 1,
                fn_: 1
            }
        );
        assert!((m.precision() - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall() - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.accuracy() - 0.6).abs() < 1e-12);
        assert!((m.f1() - 2.0 / 3.0).abs() < 1e-12);
        // Best F1: threshold 0.4 → tp 3, fp 1 → F1 = 6/7.
        let (t, f1) = best_f1_threshold(&s, &l);
        assert_eq!(t, 0.4);
        assert!((f1 - 6.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_bins_by_hand() {
        let t = calibration_table(&[0.05, 0.15, 0.95, 1.0], &[false, true, true, true], 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].count, 2);
        assert!((t[0].mean_predicted - 0.1).abs() < 1e-12);
        assert!((t[0].observed_rate - 0.5).abs() < 1e-12);
        assert_eq!(t[1].count, 2);
        assert!((t[1].observed_rate - 1.0).abs() < 1e-12);
    }
}
