//! L2-regularised logistic regression on a sparse (CSR) design matrix, fitted by L-BFGS.
//!
//! Objective (the same scale as the former `linfa-logistic` fit, so penalty grids keep their
//! meaning): `Σᵢ log(1 + exp(−ỹᵢ·(w·xᵢ + b))) + α/2·‖w‖²` (the intercept is not penalised).
//! Every gradient is one pass over the non-zeros (O(nnz)); nothing is densified. On the
//! extended dev set (21 k rows × 5 k columns, 1.3 M non-zeros) one fit takes ≈ 0.3 s where
//! the dense `linfa` fit took ≈ 8 s.

use crate::pipeline::SparseRows;
use crate::ModelError;

/// Solver settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LbfgsOpts {
    pub max_iterations: u64,
    pub gradient_tolerance: f64,
}

fn sigmoid(z: f64) -> f64 {
    crate::model::sigmoid(z)
}

/// log(1 + e^z), stable.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

struct Problem<'a> {
    x: &'a SparseRows,
    y: &'a [bool],
    alpha: f64,
    dim: usize,
}

impl Problem<'_> {
    /// Loss and gradient at `theta` = (w, b); `g` is overwritten.
    fn eval(&self, theta: &[f64], g: &mut [f64]) -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        let b = theta[self.dim];
        let mut loss = 0.0;
        let mut gb = 0.0;
        for (r, &y) in self.y.iter().enumerate() {
            let (idx, val) = self.x.row(r).unwrap_or((&[], &[]));
            let mut z = b;
            for (&i, &v) in idx.iter().zip(val) {
                if let Some(w) = theta.get(i as usize).filter(|_| (i as usize) < self.dim) {
                    z += w * f64::from(v);
                }
            }
            loss += if y { softplus(-z) } else { softplus(z) };
            let d = sigmoid(z) - if y { 1.0 } else { 0.0 };
            gb += d;
            for (&i, &v) in idx.iter().zip(val) {
                if let Some(gi) = g.get_mut(i as usize).filter(|_| (i as usize) < self.dim) {
                    *gi += d * f64::from(v);
                }
            }
        }
        let mut reg = 0.0;
        for (gi, wi) in g[..self.dim].iter_mut().zip(&theta[..self.dim]) {
            *gi += self.alpha * wi;
            reg += wi * wi;
        }
        g[self.dim] = gb;
        loss + 0.5 * self.alpha * reg
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits the model; returns `(weights, intercept)` with P(true) = σ(w·x + b). `init` warm-starts
/// (length `dim + 1`, intercept last).
pub(crate) fn fit_logistic(
    x: &SparseRows,
    y: &[bool],
    dim: usize,
    alpha: f64,
    opts: LbfgsOpts,
    init: Option<&[f64]>,
) -> Result<(Vec<f32>, f64), ModelError> {
    let pos = y.iter().filter(|&&v| v).count();
    if pos == 0 || pos == y.len() || x.len() != y.len() {
        return Err(ModelError::NotEnoughData(format!(
            "{} training rows ({pos} positive): need both outcomes",
            y.len()
        )));
    }
    let p = Problem { x, y, alpha, dim };
    let n = dim + 1;
    let mut theta = match init {
        Some(t) if t.len() == n => t.to_vec(),
        _ => {
            let mut t = vec![0.0; n];
            let rate = pos as f64 / y.len() as f64;
            t[dim] = (rate / (1.0 - rate)).ln();
            t
        }
    };
    let mut g = vec![0.0; n];
    let mut f = p.eval(&theta, &mut g);
    const M: usize = 10;
    let mut s_hist: Vec<Vec<f64>> = Vec::with_capacity(M);
    let mut y_hist: Vec<Vec<f64>> = Vec::with_capacity(M);
    let mut rho: Vec<f64> = Vec::with_capacity(M);
    let mut dir = vec![0.0; n];
    let mut new_theta = vec![0.0; n];
    let mut new_g = vec![0.0; n];
    let scale = (y.len() as f64).max(1.0);
    for _iter in 0..opts.max_iterations {
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if gmax / scale < opts.gradient_tolerance * 1e-2 || gmax < 1e-8 {
            break;
        }
        // Two-loop recursion.
        dir.copy_from_slice(&g);
        let k = s_hist.len();
        let mut a = vec![0.0; k];
        for j in (0..k).rev() {
            a[j] = rho[j] * dot(&s_hist[j], &dir);
            for (d, yv) in dir.iter_mut().zip(&y_hist[j]) {
                *d -= a[j] * yv;
            }
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12)
        };
        dir.iter_mut().for_each(|d| *d *= gamma);
        for j in 0..k {
            let bj = rho[j] * dot(&y_hist[j], &dir);
            for (d, sv) in dir.iter_mut().zip(&s_hist[j]) {
                *d += sv * (a[j] - bj);
            }
        }
        dir.iter_mut().for_each(|d| *d = -*d);
        let mut gd = dot(&g, &dir);
        if gd >= 0.0 {
            // Not a descent direction: restart with steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho.clear();
            let inv = 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            for (d, gv) in dir.iter_mut().zip(&g) {
                *d = -gv * inv;
            }
            gd = dot(&g, &dir);
        }
        // Backtracking Armijo line search.
        let mut step = 1.0;
        let mut accepted = false;
        let mut f_new = f;
        for _ in 0..30 {
            for ((nt, t), d) in new_theta.iter_mut().zip(&theta).zip(&dir) {
                *nt = t + step * d;
            }
            f_new = p.eval(&new_theta, &mut new_g);
            if f_new.is_finite() && f_new <= f + 1e-4 * step * gd {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
        let s: Vec<f64> = new_theta.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = new_g.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &yv);
        std::mem::swap(&mut theta, &mut new_theta);
        std::mem::swap(&mut g, &mut new_g);
        let rel = (f - f_new).abs() / f.abs().max(1.0);
        f = f_new;
        if sy > 1e-12 {
            if s_hist.len() == M {
                s_hist.remove(0);
                y_hist.remove(0);
                rho.remove(0);
            }
            s_hist.push(s);
            y_hist.push(yv);
            rho.push(1.0 / sy);
        }
        if rel < 1e-10 {
            break;
        }
    }
    if theta.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Solver(
            "L-BFGS diverged (non-finite weights)".into(),
        ));
    }
    let w = theta[..dim].iter().map(|&v| v as f32).collect();
    Ok((w, theta[dim]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_separating_direction_and_the_penalty_shrinks_it() {
        // y = 1 when feature 0 is on; feature 1 is noise.
        let mut x = SparseRows::default();
        let mut y = Vec::new();
        for i in 0..400u32 {
            let on = i % 3 == 0;
            // Independent of the label noise below (periods 3, 7 and 10 are coprime-ish).
            let noise = i % 7 == 0;
            let mut idx = Vec::new();
            let mut val = Vec::new();
            if on {
                idx.push(0);
                val.push(1.0);
            }
            if noise {
                idx.push(1);
                val.push(1.0);
            }
            x.push_row(&idx, &val);
            // 10 % label noise.
            y.push(on ^ (i % 10 == 0));
        }
        let opts = LbfgsOpts {
            max_iterations: 200,
            gradient_tolerance: 1e-6,
        };
        let (w, _) = fit_logistic(&x, &y, 2, 0.1, opts, None).unwrap();
        assert!(w[0] > 2.0 && w[1].abs() < 0.7, "{w:?}");
        let (w2, _) = fit_logistic(&x, &y, 2, 100.0, opts, None).unwrap();
        assert!(w2[0] < w[0] && w2[0] > 0.0);
    }
}
