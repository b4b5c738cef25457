//! Probability calibration of a raw margin: Platt scaling (`σ(a·z + b)`, fitted by Newton's
//! method on out-of-fold margins, rank-preserving so AUC is unchanged) or isotonic
//! regression (pool-adjacent-violators, interpolated linearly between block means).
//!
//! Contract: [`Calibration::apply`] is non-decreasing in `z` and returns a value in [0, 1].

use serde::{Deserialize, Serialize};

use crate::model::sigmoid;

/// How a raw model margin becomes P(success).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// `σ(z)` (models written before calibration existed).
    #[default]
    Identity,
    /// `σ(a·z + b)`.
    Platt {
        /// Slope.
        a: f64,
        /// Offset.
        b: f64,
    },
    /// Piecewise-linear map through `(x[k], y[k])`, constant outside.
    Isotonic {
        /// Margins, increasing.
        x: Vec<f64>,
        /// Probabilities, non-decreasing.
        y: Vec<f64>,
    },
}

impl Calibration {
    /// P(success) for a margin.
    #[inline]
    pub fn apply(&self, z: f64) -> f64 {
        match self {
            Calibration::Identity => sigmoid(z),
            Calibration::Platt { a, b } => sigmoid(a * z + b),
            Calibration::Isotonic { x, y } => {
                let k = x.partition_point(|&v| v < z);
                if k == 0 {
                    y.first().copied().unwrap_or(0.5)
                } else if k >= x.len() {
                    y.last().copied().unwrap_or(0.5)
                } else {
                    let (x0, x1, y0, y1) = (x[k - 1], x[k], y[k - 1], y[k]);
                    if x1 > x0 {
                        y0 + (y1 - y0) * (z - x0) / (x1 - x0)
                    } else {
                        y1
                    }
                }
            }
        }
    }

    /// Checks finiteness and monotonicity.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Calibration::Identity => Ok(()),
            Calibration::Platt { a, b } => {
                if a.is_finite() && b.is_finite() && *a >= 0.0 {
                    Ok(())
                } else {
                    Err(format!("invalid Platt calibration a={a} b={b}"))
                }
            }
            Calibration::Isotonic { x, y } => {
                let ok = !x.is_empty()
                    && x.len() == y.len()
                    && x.windows(2).all(|w| w[0] < w[1])
                    && y.windows(2).all(|w| w[0] <= w[1])
                    && y.iter().all(|v| (0.0..=1.0).contains(v));
                if ok {
                    Ok(())
                } else {
                    Err("invalid isotonic calibration table".into())
                }
            }
        }
    }

    /// Fits Platt scaling on margins and labels (Newton–Raphson with Platt's smoothed
    /// targets; falls back to the identity when a class is absent).
    pub fn fit_platt(z: &[f64], y: &[bool]) -> Calibration {
        let pos = y.iter().filter(|&&v| v).count() as f64;
        let neg = y.len() as f64 - pos;
        if pos == 0.0 || neg == 0.0 {
            return Calibration::Identity;
        }
        let t_pos = (pos + 1.0) / (pos + 2.0);
        let t_neg = 1.0 / (neg + 2.0);
        let target = |yi: bool| if yi { t_pos } else { t_neg };
        // Cross-entropy against the smoothed targets (the objective Newton minimises).
        let loss = |a: f64, b: f64| -> f64 {
            z.iter()
                .zip(y)
                .map(|(&zi, &yi)| {
                    let m = a * zi + b;
                    let t = target(yi);
                    // t·softplus(−m) + (1−t)·softplus(m)
                    let sp = |v: f64| {
                        if v > 0.0 {
                            v + (-v).exp().ln_1p()
                        } else {
                            v.exp().ln_1p()
                        }
                    };
                    t * sp(-m) + (1.0 - t) * sp(m)
                })
                .sum()
        };
        let (mut a, mut b) = (1.0f64, 0.0f64);
        let mut f = loss(a, b);
        for _ in 0..100 {
            let (mut g_a, mut g_b, mut h_aa, mut h_ab, mut h_bb) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (&zi, &yi) in z.iter().zip(y) {
                let p = sigmoid(a * zi + b);
                let d = p - target(yi);
                let w = (p * (1.0 - p)).max(1e-12);
                g_a += d * zi;
                g_b += d;
                h_aa += w * zi * zi;
                h_ab += w * zi;
                h_bb += w;
            }
            h_aa += 1e-9;
            h_bb += 1e-9;
            let det = h_aa * h_bb - h_ab * h_ab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (h_bb * g_a - h_ab * g_b) / det;
            let db = (h_aa * g_b - h_ab * g_a) / det;
            // Damped Newton: halve the step until the loss does not increase.
            let mut step = 1.0;
            let mut moved = false;
            for _ in 0..40 {
                let (na, nb) = (a - step * da, b - step * db);
                let nf = loss(na, nb);
                if nf.is_finite() && nf <= f {
                    a = na;
                    b = nb;
                    f = nf;
                    moved = true;
                    break;
                }
                step *= 0.5;
            }
            if !moved || (step * da).abs() < 1e-10 && (step * db).abs() < 1e-10 {
                break;
            }
        }
        if a.is_finite() && b.is_finite() && a > 0.0 {
            Calibration::Platt { a, b }
        } else {
            Calibration::Identity
        }
    }

    /// Fits isotonic regression (pool adjacent violators) on margins and labels.
    pub fn fit_isotonic(z: &[f64], y: &[bool]) -> Calibration {
        if z.is_empty() || z.len() != y.len() {
            return Calibration::Identity;
        }
        let mut order: Vec<usize> = (0..z.len()).collect();
        order.sort_by(|&a, &b| z[a].total_cmp(&z[b]));
        // Blocks: (sum z, sum y, count).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            let (mut sz, mut sy) = (0.0, 0.0);
            while j < order.len() && z[order[j]] == z[order[i]] {
                sz += z[order[j]];
                sy += f64::from(u8::from(y[order[j]]));
                j += 1;
            }
            blocks.push((sz, sy, (j - i) as f64));
            while blocks.len() >= 2 {
                let k = blocks.len();
                let (a, b) = (blocks[k - 2], blocks[k - 1]);
                if a.1 / a.2 >= b.1 / b.2 {
                    blocks.truncate(k - 2);
                    blocks.push((a.0 + b.0, a.1 + b.1, a.2 + b.2));
                } else {
                    break;
                }
            }
            i = j;
        }
        let x: Vec<f64> = blocks.iter().map(|b| b.0 / b.2).collect();
        let yv: Vec<f64> = blocks.iter().map(|b| b.1 / b.2).collect();
        let c = Calibration::Isotonic { x, y: yv };
        if c.validate().is_ok() {
            c
        } else {
            Calibration::Identity
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::expected_calibration_error;

    #[test]
    fn platt_and_isotonic_fix_an_overconfident_margin() {
        // True P = σ(z/3); the raw margin is 3× overconfident.
        let mut s = 99u64;
        let mut z = Vec::new();
        let mut y = Vec::new();
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s % 10_000) as f64 / 10_000.0;
            let zi = (u - 0.5) * 12.0;
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let r = (s % 10_000) as f64 / 10_000.0;
            z.push(zi);
            y.push(r < sigmoid(zi / 3.0));
        }
        let raw: Vec<f64> = z.iter().map(|&v| sigmoid(v)).collect();
        let before = expected_calibration_error(&raw, &y, 10);
        for c in [
            Calibration::fit_platt(&z, &y),
            Calibration::fit_isotonic(&z, &y),
        ] {
            c.validate().unwrap();
            let p: Vec<f64> = z.iter().map(|&v| c.apply(v)).collect();
            let after = expected_calibration_error(&p, &y, 10);
            assert!(before > 0.05 && after < 0.02, "{c:?}: {before} → {after}");
            let mut order: Vec<usize> = (0..z.len()).collect();
            order.sort_by(|&i, &j| z[i].total_cmp(&z[j]));
            assert!(
                order.windows(2).all(|w| p[w[0]] <= p[w[1]] + 1e-12),
                "{c:?} is not monotone"
            );
        }
        if let Calibration::Platt { a, .. } = Calibration::fit_platt(&z, &y) {
            assert!((a - 1.0 / 3.0).abs() < 0.05, "a = {a}");
        } else {
            panic!("expected Platt");
        }
    }
}
