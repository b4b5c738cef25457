//! `SyntheticView`: a **synthetic** engine for developing and testing the dashboard without
//! the dataflow. Everything it returns is generated from a seeded pseudo-random stream: the
//! companies are named `Synthetic Lender NN`, the source says `synthetic`, and nothing here is
//! a real complaint. Product, issue and state *names* are the CFPB's category labels, used so
//! the page looks like what it will show.
//!
//! It behaves like a small engine: records "arrive" at `per_sec` (or all at once), are grouped
//! in epochs, decided with the default rules (escalate below 0.10, P1 below 0.05, P2 below
//! 0.15), and aggregated; a fixed share become dead letters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use complaintflow_pipelines::contract::Totals;

use crate::http::view::{
    AggregateAnswer, AggregateRow, Dimension, EngineView, Health, HealthStatus, HistogramSnapshot,
    HistoryView, LiveModel, MetricsSnapshot, ModelVersion, ModelsView, RetrainError,
    RetrainRequest, RetrainTicket, VolumePoint,
};

/// How the synthetic stream behaves.
#[derive(Clone, Debug)]
pub struct SyntheticConfig {
    /// Records in all.
    pub total: u64,
    /// Records per second; `None` = all of them in the first epoch.
    pub per_sec: Option<f64>,
    /// Seed of the generator.
    pub seed: u64,
    /// One record in this many is a dead letter (0 = none).
    pub dead_letter_every: u64,
    /// Serve two model versions in an 80/20 A/B split.
    pub ab_split: bool,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            total: 5_000,
            per_sec: None,
            seed: 7,
            dead_letter_every: 97,
            ab_split: true,
        }
    }
}

const PRODUCTS: [(&str, &str, u32); 7] = [
    (
        "Credit reporting, credit repair services, or other personal consumer reports",
        "credit-reporting",
        40,
    ),
    ("Debt collection", "collections", 20),
    ("Mortgage", "mortgage", 10),
    ("Credit card or prepaid card", "cards", 10),
    ("Checking or savings account", "banking", 9),
    ("Student loan", "lending", 6),
    (
        "Money transfer, virtual currency, or money service",
        "payments",
        5,
    ),
];
const ISSUES: [&str; 8] = [
    "Incorrect information on your report",
    "Problem with a credit reporting company's investigation into an existing problem",
    "Attempts to collect debt not owed",
    "Trouble during payment process",
    "Managing an account",
    "Problem with a purchase shown on your statement",
    "Dealing with your lender or servicer",
    "Written notification about debt",
];
const STATES: [&str; 30] = [
    "CA", "TX", "FL", "NY", "GA", "IL", "PA", "NC", "OH", "NJ", "VA", "MI", "MD", "AZ", "WA", "TN",
    "MA", "CO", "SC", "NV", "LA", "AL", "MO", "IN", "MN", "OR", "CT", "KY", "PR", "DC",
];
const REASONS_DL: [&str; 3] = ["malformed_json", "missing_field", "record_too_large"];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Index into a list with Zipf-like weights 1/(i+1).
    fn zipf(&mut self, n: usize) -> usize {
        let h: f64 = (1..=n).map(|i| 1.0 / i as f64).sum();
        let mut u = self.unit() * h;
        for i in 0..n {
            u -= 1.0 / (i + 1) as f64;
            if u <= 0.0 {
                return i;
            }
        }
        n - 1
    }
    fn weighted(&mut self, w: &[u32]) -> usize {
        let total: u32 = w.iter().sum();
        let mut u = (self.unit() * total as f64) as u32;
        for (i, x) in w.iter().enumerate() {
            if u < *x {
                return i;
            }
            u -= x;
        }
        w.len() - 1
    }
    /// A score: logistic of a normal-ish variate around `mu`.
    fn score(&mut self, mu: f64) -> f64 {
        let z = (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 1.7;
        1.0 / (1.0 + (-(mu + z)).exp())
    }
}

struct Sim {
    rng: Rng,
    produced: u64,
    epoch: Option<u64>,
    recent: VecDeque<serde_json::Value>,
    totals: BTreeMap<Dimension, BTreeMap<String, Totals>>,
    live_volume: BTreeMap<(String, String), u64>,
    metrics: MetricsSnapshot,
    live: BTreeMap<String, (f64, HistogramSnapshot)>,
    retraining: Vec<String>,
}

/// The synthetic engine. See the [module docs](self).
pub struct SyntheticView {
    cfg: SyntheticConfig,
    started: Instant,
    sim: Mutex<Sim>,
    history: HistoryView,
    training_scores: HistogramSnapshot,
}

impl SyntheticView {
    /// A synthetic engine; with `per_sec = None` every record is produced at once.
    pub fn new(cfg: SyntheticConfig) -> SyntheticView {
        let mut rng = Rng(cfg.seed.max(1));
        // Synthetic training volume: 2019-01 .. 2023-12.
        let mut training = Vec::new();
        for y in 2019..=2023 {
            for m in 1..=12 {
                for (p, _, w) in PRODUCTS {
                    let count = (f64::from(w) * (0.6 + 0.8 * rng.unit()) * 3.0).round() as u64;
                    training.push(VolumePoint {
                        month: format!("{y}-{m:02}"),
                        product: p.to_string(),
                        count,
                    });
                }
            }
        }
        let mut training_scores = HistogramSnapshot::scores();
        for _ in 0..20_000 {
            let s = rng.score(-1.6);
            training_scores.observe(s);
        }
        let mut live = BTreeMap::new();
        if cfg.ab_split {
            live.insert("v0001".to_string(), (0.8, HistogramSnapshot::scores()));
            live.insert("v0002".to_string(), (0.2, HistogramSnapshot::scores()));
        } else {
            live.insert("v0001".to_string(), (1.0, HistogramSnapshot::scores()));
        }
        let sim = Sim {
            rng,
            produced: 0,
            epoch: None,
            recent: VecDeque::new(),
            totals: BTreeMap::new(),
            live_volume: BTreeMap::new(),
            metrics: MetricsSnapshot {
                input_waiting: true,
                ..MetricsSnapshot::default()
            },
            live,
            retraining: Vec::new(),
        };
        let view = SyntheticView {
            cfg,
            started: Instant::now(),
            sim: Mutex::new(sim),
            history: HistoryView {
                training_source: Some("synthetic training volume (not real data)".to_string()),
                training,
                live: Vec::new(),
                as_of: None,
            },
            training_scores,
        };
        view.advance();
        view
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Produces the records due by now, as one epoch.
    fn advance(&self) {
        let due = match self.cfg.per_sec {
            None => self.cfg.total,
            Some(r) => ((self.started.elapsed().as_secs_f64() * r) as u64).min(self.cfg.total),
        };
        let mut s = self.lock();
        if due <= s.produced {
            s.metrics.input_waiting = s.produced < self.cfg.total;
            return;
        }
        let t0 = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let hour = chrono::Utc::now().format("%Y-%m-%dT%H").to_string();
        for _ in s.produced..due {
            s.produced += 1;
            s.metrics.records_in += 1;
            s.metrics.records_processed += 1;
            let n = s.produced;
            if self.cfg.dead_letter_every > 0 && n.is_multiple_of(self.cfg.dead_letter_every) {
                let reason =
                    REASONS_DL[(n / self.cfg.dead_letter_every) as usize % REASONS_DL.len()];
                *s.metrics
                    .dead_letters
                    .entry(reason.to_string())
                    .or_insert(0) += 1;
                continue;
            }
            s.metrics.parsed += 1;
            let weights: Vec<u32> = PRODUCTS.iter().map(|p| p.2).collect();
            let pi = s.rng.weighted(&weights);
            let (product, queue, _) = PRODUCTS[pi];
            let issue = ISSUES[(pi + s.rng.below(3)) % ISSUES.len()];
            let state = STATES[s.rng.zipf(STATES.len())];
            let company = format!("Synthetic Lender {:02}", s.rng.zipf(25) + 1);
            let version = if self.cfg.ab_split && s.rng.unit() < 0.2 {
                "v0002"
            } else {
                "v0001"
            };
            let mu = if version == "v0002" { -1.4 } else { -1.6 } - 0.3 * (pi as f64 % 3.0);
            let score = s.rng.score(mu);
            let escalate = score < 0.10;
            let mut priority = if score < 0.05 {
                1
            } else if score < 0.15 {
                2
            } else {
                3
            };
            let mut reasons = Vec::new();
            if escalate {
                reasons.push(format!("P(success) {score:.3} < 0.10: escalate"));
            }
            if s.rng.unit() < 0.05 && priority > 1 {
                priority -= 1;
                reasons.push("tag Servicemember: priority raised".to_string());
            }
            let queue = if s.rng.unit() < 0.03 {
                reasons.push("narrative threatens legal action: legal review".to_string());
                "legal-review"
            } else {
                queue
            };
            reasons.push(format!("priority P{priority}; product routed to {queue}"));
            let month = format!("{}-{:02}", 2022 + s.rng.below(3), 1 + s.rng.below(12));
            let day = 1 + s.rng.below(28);
            let decision = serde_json::json!({
                "complaint_id": format!("SYN-{n:06}"),
                "model_version": version,
                "score": score,
                "predicted_success": score >= 0.3,
                "escalate": escalate,
                "priority": format!("P{priority}"),
                "queue": queue,
                "reasons": reasons,
                "product": product,
                "issue": issue,
                "state": state,
                "company": company,
                "date_received": format!("{month}-{day:02}"),
                "decided_ms": now_ms,
                "synthetic": true,
            });
            s.metrics.predictions += 1;
            if escalate {
                s.metrics.escalations += 1;
            }
            for (dim, key) in [
                (Dimension::Product, product.to_string()),
                (Dimension::Issue, issue.to_string()),
                (Dimension::State, state.to_string()),
                (Dimension::Company, company.clone()),
                (Dimension::Hour, hour.clone()),
                (Dimension::Month, month.clone()),
                (Dimension::MonthProduct, format!("{month}|{product}")),
            ] {
                let t = s.totals.entry(dim).or_default().entry(key).or_default();
                t.count += 1;
                t.escalations += i64::from(escalate);
                t.score_sum_micro += (score * 1e6).round() as i64;
            }
            *s.live_volume
                .entry((month, product.to_string()))
                .or_insert(0) += 1;
            if let Some((_, h)) = s.live.get_mut(version) {
                h.observe(score);
            }
            if s.recent.len() >= 500 {
                s.recent.pop_front();
            }
            s.recent.push_back(decision);
        }
        s.epoch = Some(s.epoch.map_or(0, |e| e + 1));
        s.metrics.epochs_completed += 1;
        // Epoch latency: the generation time plus a synthetic 5–40 ms of "dataflow".
        let lat = t0.elapsed().as_secs_f64() + 0.005 + 0.035 * s.rng.unit();
        s.metrics.epoch_latency_seconds.observe(lat);
        s.metrics.input_waiting = s.produced < self.cfg.total;
    }
}

impl EngineView for SyntheticView {
    fn health(&self) -> Health {
        self.advance();
        let s = self.lock();
        Health {
            status: if s.metrics.input_waiting {
                HealthStatus::Running
            } else {
                HealthStatus::Finished
            },
            uptime_secs: self.started.elapsed().as_secs_f64(),
            workers: 1,
            processes: 1,
            source: "synthetic (demo data, not real complaints)".to_string(),
            epoch: s.epoch,
            message: None,
        }
    }

    fn aggregates(&self, by: Dimension, top: Option<usize>) -> AggregateAnswer {
        self.advance();
        let s = self.lock();
        let mut rows: Vec<AggregateRow> = s
            .totals
            .get(&by)
            .map(|m| m.iter().filter_map(|(k, t)| t.row(k)).collect())
            .unwrap_or_default();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        if let Some(n) = top {
            rows.truncate(n);
        }
        AggregateAnswer {
            by,
            as_of: s.epoch,
            rows,
        }
    }

    fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        self.advance();
        self.lock()
            .recent
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    fn models(&self) -> ModelsView {
        self.advance();
        let s = self.lock();
        let versions = vec![
            ModelVersion {
                version: "v0001".into(),
                stage: "production".into(),
                test_auc: Some(0.742),
                created_at: Some("2026-01-01T00:00:00Z".into()),
            },
            ModelVersion {
                version: "v0002".into(),
                stage: "staging".into(),
                test_auc: Some(0.751),
                created_at: Some("2026-01-02T00:00:00Z".into()),
            },
        ];
        ModelsView {
            production: Some("v0001".into()),
            versions: if self.cfg.ab_split {
                versions
            } else {
                versions.into_iter().take(1).collect()
            },
            live: s
                .live
                .iter()
                .map(|(v, (share, h))| LiveModel {
                    version: v.clone(),
                    share: *share,
                    predictions: h.count(),
                    scores: h.clone(),
                })
                .collect(),
            training_scores: Some(self.training_scores.clone()),
            retraining: s.retraining.clone(),
        }
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.advance();
        self.lock().metrics.clone()
    }

    fn history(&self) -> HistoryView {
        self.advance();
        let s = self.lock();
        HistoryView {
            live: s
                .live_volume
                .iter()
                .map(|((m, p), c)| VolumePoint {
                    month: m.clone(),
                    product: p.clone(),
                    count: *c,
                })
                .collect(),
            as_of: s.epoch,
            ..self.history.clone()
        }
    }

    fn retrain(&self, req: RetrainRequest) -> Result<RetrainTicket, RetrainError> {
        let mut s = self.lock();
        s.retraining.push(format!(
            "synthetic engine: retraining on {} is not implemented in the demo",
            req.path
        ));
        Err(RetrainError::Busy(
            "the synthetic demo engine does not retrain".to_string(),
        ))
    }
}
