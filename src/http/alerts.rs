//! Alert rules evaluated inside the engine: processing rate too low while input waits,
//! consumer lag too high, too many dead letters, score drift (population stability index).
//!
//! [`AlertEvaluator`] is pure: it is fed [`AlertInputs`] (values the monitor derives from
//! successive [`MetricsSnapshot`](super::view::MetricsSnapshot)s) with an explicit time, and
//! returns the [`AlertEvent`]s of that step. The server's monitor task calls it every sample
//! and logs the events with `tracing`.
//!
//! Each rule is a small state machine:
//!
//! ```text
//!  ok ──violated──► pending ──violated for for_secs──► firing ──good for clear_for_secs──► ok
//!  ▲                   │                                  ▲   │
//!  └───not violated────┘                                  └───┘ back in the hysteresis band
//! ```
//!
//! A firing rule clears only when its value is on the good side of the *clear level*: the
//! threshold moved toward the good side by `hysteresis` (10 % by default), so a value that
//! hovers around the threshold does not flap. A rule whose value is unknown (`None`: no Kafka
//! lag, input not waiting, too few scores) counts as not violated.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::view::{HistogramSnapshot, SCORE_BINS};

/// The alert rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertName {
    /// Records processed per minute below `min_rate_per_min` while input is waiting.
    ProcessingRateLow,
    /// Consumer lag above `max_lag`.
    ConsumerLagHigh,
    /// Dead letters above `max_dead_letter_pct` of the records processed in the window.
    DeadLetterRateHigh,
    /// PSI of live scores against training scores above `max_psi`.
    ScoreDrift,
}

impl AlertName {
    /// Every rule.
    pub const ALL: [AlertName; 4] = [
        AlertName::ProcessingRateLow,
        AlertName::ConsumerLagHigh,
        AlertName::DeadLetterRateHigh,
        AlertName::ScoreDrift,
    ];

    /// Snake-case name, as in JSON, logs and the `alert` label of `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::ProcessingRateLow => "processing_rate_low",
            AlertName::ConsumerLagHigh => "consumer_lag_high",
            AlertName::DeadLetterRateHigh => "dead_letter_rate_high",
            AlertName::ScoreDrift => "score_drift",
        }
    }

    /// Whether a value *below* the threshold is the bad side.
    fn low_is_bad(self) -> bool {
        matches!(self, AlertName::ProcessingRateLow)
    }

    /// Unit of the value, for messages.
    fn unit(self) -> &'static str {
        match self {
            AlertName::ProcessingRateLow => "records/min",
            AlertName::ConsumerLagHigh => "records",
            AlertName::DeadLetterRateHigh => "%",
            AlertName::ScoreDrift => "PSI",
        }
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[alerts]` table of `complaintflow.toml`. Every key is optional; the defaults are
/// documented on each field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate the rules at all. Default `true`.
    pub enabled: bool,
    /// Rules switched off, by name (`processing_rate_low`, `consumer_lag_high`,
    /// `dead_letter_rate_high`, `score_drift`). Default: none.
    pub disabled: Vec<AlertName>,
    /// A rule must be violated continuously this long before it fires, seconds. Default `30`.
    pub for_secs: f64,
    /// A firing rule clears after its value has stayed on the good side of its clear level this
    /// long, seconds. Default `10`.
    pub clear_for_secs: f64,
    /// Hysteresis: the clear level is the threshold moved this fraction toward the good side
    /// (a rate floor of 10,000/min clears at 11,000/min; a lag ceiling of 100,000 at 90,000).
    /// Default `0.1`.
    pub hysteresis: f64,
    /// Window over which the processing rate and the dead-letter percentage are measured,
    /// seconds. Default `60`.
    pub window_secs: f64,
    /// Processing-rate floor, records per minute, applied while input is waiting. Default
    /// `10000`.
    pub min_rate_per_min: f64,
    /// Consumer-lag ceiling, records (Kafka sources only). Default `100000`.
    pub max_lag: f64,
    /// Dead-letter ceiling, percent of the records processed in the window. Default `5.0`.
    pub max_dead_letter_pct: f64,
    /// Ceiling of the population stability index of the production model's live scores against
    /// its training scores, over [`SCORE_BINS`] equal-width bins (0.1 = moderate shift,
    /// 0.25 = significant). Default `0.25`.
    pub max_psi: f64,
    /// Live scores needed before the drift rule is evaluated. Default `500`.
    pub psi_min_samples: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            disabled: Vec::new(),
            for_secs: 30.0,
            clear_for_secs: 10.0,
            hysteresis: 0.1,
            window_secs: 60.0,
            min_rate_per_min: 10_000.0,
            max_lag: 100_000.0,
            max_dead_letter_pct: 5.0,
            max_psi: 0.25,
            psi_min_samples: 500,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("alerts.{key} = {value}: {why}")]
pub struct AlertsConfigError {
    /// The key.
    pub key: &'static str,
    /// Its value.
    pub value: f64,
    /// What is wrong.
    pub why: &'static str,
}

impl AlertsConfig {
    /// Checks ranges: durations and thresholds non-negative and finite, `hysteresis` in `[0, 1)`,
    /// `window_secs` positive.
    pub fn validate(&self) -> Result<(), AlertsConfigError> {
        let checks: [(&'static str, f64); 8] = [
            ("for_secs", self.for_secs),
            ("clear_for_secs", self.clear_for_secs),
            ("hysteresis", self.hysteresis),
            ("window_secs", self.window_secs),
            ("min_rate_per_min", self.min_rate_per_min),
            ("max_lag", self.max_lag),
            ("max_dead_letter_pct", self.max_dead_letter_pct),
            ("max_psi", self.max_psi),
        ];
        for (key, value) in checks {
            if !value.is_finite() || value < 0.0 {
                return Err(AlertsConfigError {
                    key,
                    value,
                    why: "must be a finite number ≥ 0",
                });
            }
        }
        if self.hysteresis >= 1.0 {
            return Err(AlertsConfigError {
                key: "hysteresis",
                value: self.hysteresis,
                why: "must be below 1",
            });
        }
        if self.window_secs == 0.0 {
            return Err(AlertsConfigError {
                key: "window_secs",
                value: 0.0,
                why: "must be positive",
            });
        }
        Ok(())
    }

    /// The threshold of a rule.
    pub fn threshold(&self, rule: AlertName) -> f64 {
        match rule {
            AlertName::ProcessingRateLow => self.min_rate_per_min,
            AlertName::ConsumerLagHigh => self.max_lag,
            AlertName::DeadLetterRateHigh => self.max_dead_letter_pct,
            AlertName::ScoreDrift => self.max_psi,
        }
    }

    /// The level a firing rule must get back past to clear.
    pub fn clear_level(&self, rule: AlertName) -> f64 {
        let t = self.threshold(rule);
        if rule.low_is_bad() {
            t * (1.0 + self.hysteresis)
        } else {
            t * (1.0 - self.hysteresis)
        }
    }

    /// Whether a rule is evaluated.
    pub fn is_enabled(&self, rule: AlertName) -> bool {
        self.enabled && !self.disabled.contains(&rule)
    }
}

/// The values the rules look at, at one instant. `None` = not applicable now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertInputs {
    /// Records processed per minute over the window, only while input is waiting.
    pub rate_per_min: Option<f64>,
    /// Consumer lag, records.
    pub lag: Option<f64>,
    /// Dead letters as a percentage of records processed in the window (when any were).
    pub dead_letter_pct: Option<f64>,
    /// PSI of live vs training scores (when enough live scores exist).
    pub psi: Option<f64>,
}

impl AlertInputs {
    /// The value a rule looks at.
    pub fn value(&self, rule: AlertName) -> Option<f64> {
        match rule {
            AlertName::ProcessingRateLow => self.rate_per_min,
            AlertName::ConsumerLagHigh => self.lag,
            AlertName::DeadLetterRateHigh => self.dead_letter_pct,
            AlertName::ScoreDrift => self.psi,
        }
    }
}

/// Where a rule stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Not violated.
    Ok,
    /// Violated for less than `for_secs`.
    Pending,
    /// Firing.
    Firing,
}

/// A rule that is pending or firing (`GET /api/alerts`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Rule.
    pub name: AlertName,
    /// `pending` or `firing`.
    pub state: AlertState,
    /// When the violation started (pending) — the start of the alert, ms since the Unix epoch.
    pub since_ms: i64,
    /// When it fired, ms since the Unix epoch (`null` while pending).
    pub fired_ms: Option<i64>,
    /// The latest value (`null` when it became unknown while firing).
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// The level the value must get back past to clear.
    pub clear_level: f64,
    /// Human-readable description.
    pub message: String,
}

/// A transition worth logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AlertEvent {
    /// A rule started firing.
    Fired {
        /// Rule.
        name: AlertName,
        /// Value at firing.
        value: f64,
        /// Threshold.
        threshold: f64,
        /// When the violation began, ms since the Unix epoch.
        since_ms: i64,
        /// Now, ms since the Unix epoch.
        at_ms: i64,
    },
    /// A firing rule cleared.
    Cleared {
        /// Rule.
        name: AlertName,
        /// Latest value (`null` when unknown).
        value: Option<f64>,
        /// Threshold.
        threshold: f64,
        /// When it had started, ms since the Unix epoch.
        since_ms: i64,
        /// Now, ms since the Unix epoch.
        at_ms: i64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum RuleState {
    Ok,
    Pending {
        since_ms: i64,
    },
    Firing {
        since_ms: i64,
        fired_ms: i64,
        good_since_ms: Option<i64>,
    },
}

#[derive(Clone, Debug)]
struct Rule {
    name: AlertName,
    state: RuleState,
    value: Option<f64>,
}

/// Evaluates the rules step by step. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AlertEvaluator {
    cfg: AlertsConfig,
    rules: Vec<Rule>,
}

impl AlertEvaluator {
    /// A fresh evaluator: every rule ok.
    pub fn new(cfg: AlertsConfig) -> AlertEvaluator {
        let rules = AlertName::ALL
            .into_iter()
            .map(|name| Rule {
                name,
                state: RuleState::Ok,
                value: None,
            })
            .collect();
        AlertEvaluator { cfg, rules }
    }

    /// The configuration.
    pub fn config(&self) -> &AlertsConfig {
        &self.cfg
    }

    /// Feeds the values at `now_ms` (ms since the Unix epoch, non-decreasing); returns what
    /// fired or cleared.
    pub fn step(&mut self, now_ms: i64, inputs: &AlertInputs) -> Vec<AlertEvent> {
        let for_ms = secs_to_ms(self.cfg.for_secs);
        let clear_ms = secs_to_ms(self.cfg.clear_for_secs);
        let mut events = Vec::new();
        for rule in &mut self.rules {
            let name = rule.name;
            let enabled = self.cfg.is_enabled(name);
            let value = if enabled {
                inputs.value(name).filter(|v| v.is_finite())
            } else {
                None
            };
            rule.value = value;
            let threshold = self.cfg.threshold(name);
            let clear_level = self.cfg.clear_level(name);
            let violated = value.is_some_and(|v| {
                if name.low_is_bad() {
                    v < threshold
                } else {
                    v > threshold
                }
            });
            let good = value.is_none_or(|v| {
                if name.low_is_bad() {
                    v >= clear_level
                } else {
                    v <= clear_level
                }
            });
            rule.state = match rule.state {
                RuleState::Ok | RuleState::Pending { .. } if !violated => RuleState::Ok,
                RuleState::Ok => {
                    if for_ms == 0 {
                        events.push(fired(name, value, threshold, now_ms, now_ms));
                        RuleState::Firing {
                            since_ms: now_ms,
                            fired_ms: now_ms,
                            good_since_ms: None,
                        }
                    } else {
                        RuleState::Pending { since_ms: now_ms }
                    }
                }
                RuleState::Pending { since_ms } => {
                    if now_ms - since_ms >= for_ms {
                        events.push(fired(name, value, threshold, since_ms, now_ms));
                        RuleState::Firing {
                            since_ms,
                            fired_ms: now_ms,
                            good_since_ms: None,
                        }
                    } else {
                        RuleState::Pending { since_ms }
                    }
                }
                RuleState::Firing {
                    since_ms,
                    fired_ms,
                    good_since_ms,
                } => {
                    if !good {
                        RuleState::Firing {
                            since_ms,
                            fired_ms,
                            good_since_ms: None,
                        }
                    } else {
                        let good_from = good_since_ms.unwrap_or(now_ms);
                        if now_ms - good_from >= clear_ms {
                            events.push(AlertEvent::Cleared {
                                name,
                                value,
                                threshold,
                                since_ms,
                                at_ms: now_ms,
                            });
                            RuleState::Ok
                        } else {
                            RuleState::Firing {
                                since_ms,
                                fired_ms,
                                good_since_ms: Some(good_from),
                            }
                        }
                    }
                }
            };
        }
        events
    }

    /// The state of one rule.
    pub fn state(&self, rule: AlertName) -> AlertState {
        match self.rules.iter().find(|r| r.name == rule).map(|r| r.state) {
            Some(RuleState::Pending { .. }) => AlertState::Pending,
            Some(RuleState::Firing { .. }) => AlertState::Firing,
            _ => AlertState::Ok,
        }
    }

    /// Rules pending or firing.
    pub fn active(&self) -> Vec<ActiveAlert> {
        self.rules
            .iter()
            .filter_map(|r| {
                let (state, since_ms, fired_ms) = match r.state {
                    RuleState::Ok => return None,
                    RuleState::Pending { since_ms } => (AlertState::Pending, since_ms, None),
                    RuleState::Firing {
                        since_ms, fired_ms, ..
                    } => (AlertState::Firing, since_ms, Some(fired_ms)),
                };
                let threshold = self.cfg.threshold(r.name);
                Some(ActiveAlert {
                    name: r.name,
                    state,
                    since_ms,
                    fired_ms,
                    value: r.value,
                    threshold,
                    clear_level: self.cfg.clear_level(r.name),
                    message: message(r.name, r.value, threshold),
                })
            })
            .collect()
    }

    /// Every rule with its latest value, for `/api/alerts` (`rules`).
    pub fn rules(&self) -> Vec<RuleStatus> {
        self.rules
            .iter()
            .map(|r| RuleStatus {
                name: r.name,
                enabled: self.cfg.is_enabled(r.name),
                state: self.state(r.name),
                value: r.value,
                threshold: self.cfg.threshold(r.name),
                clear_level: self.cfg.clear_level(r.name),
            })
            .collect()
    }
}

/// One rule as `/api/alerts` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleStatus {
    /// Rule.
    pub name: AlertName,
    /// Evaluated at all.
    pub enabled: bool,
    /// Current state.
    pub state: AlertState,
    /// Latest value (`null` = not applicable now).
    pub value: Option<f64>,
    /// Threshold.
    pub threshold: f64,
    /// Clear level.
    pub clear_level: f64,
}

fn fired(
    name: AlertName,
    value: Option<f64>,
    threshold: f64,
    since_ms: i64,
    at_ms: i64,
) -> AlertEvent {
    AlertEvent::Fired {
        name,
        value: value.unwrap_or(f64::NAN),
        threshold,
        since_ms,
        at_ms,
    }
}

fn secs_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

fn message(name: AlertName, value: Option<f64>, threshold: f64) -> String {
    let Some(v) = value else {
        return format!(
            "{name}: no longer measured (threshold {threshold} {}); clears after clear_for_secs",
            name.unit()
        );
    };
    let v = format!("{v:.3}");
    let unit = name.unit();
    match name {
        AlertName::ProcessingRateLow => {
            format!("processing rate {v} {unit} is below {threshold} {unit} while input is waiting")
        }
        AlertName::ConsumerLagHigh => format!("consumer lag {v} {unit} is above {threshold}"),
        AlertName::DeadLetterRateHigh => {
            format!("dead letters are {v}{unit} of records processed, above {threshold}{unit}")
        }
        AlertName::ScoreDrift => {
            format!("live score distribution drifted: PSI {v} above {threshold}")
        }
    }
}

/// Population stability index of `actual` against `expected`, two histograms with the same
/// bins: `Σ (a − e) · ln(a / e)` over the bins' proportions, each proportion floored at
/// `1e-4` so an empty bin does not make it infinite. `None` when the bins differ or either
/// histogram is empty.
///
/// ```text
/// psi(x, x) = 0;  ≥ 0.1 moderate shift;  ≥ 0.25 significant shift
/// ```
pub fn psi(expected: &HistogramSnapshot, actual: &HistogramSnapshot) -> Option<f64> {
    if expected.bounds != actual.bounds || expected.counts.len() != actual.counts.len() {
        return None;
    }
    let (ne, na) = (expected.count(), actual.count());
    if ne == 0 || na == 0 {
        return None;
    }
    Some(psi_of(
        expected
            .counts
            .iter()
            .zip(&actual.counts)
            .map(|(e, a)| (*e, *a)),
        ne,
        na,
    ))
}

/// PSI of paired counts `(expected, actual)` with totals `ne`, `na` (both > 0); a share is
/// floored at 1e-4 so that an empty bin on one side stays finite.
fn psi_of(pairs: impl Iterator<Item = (u64, u64)>, ne: u64, na: u64) -> f64 {
    const FLOOR: f64 = 1e-4;
    pairs
        .map(|(e, a)| {
            let pe = (e as f64 / ne as f64).max(FLOOR);
            let pa = (a as f64 / na as f64).max(FLOOR);
            (pa - pe) * (pa / pe).ln()
        })
        .sum()
}

/// PSI of a categorical mix (e.g. complaints by product) against the training mix, over the
/// union of the categories (a category absent on one side counts at the floor share 1e-4).
/// `None` when either side is empty.
///
/// ```
/// use std::collections::BTreeMap;
/// use complaintflow::http::alerts::categorical_psi;
/// let a: BTreeMap<String, u64> = [("x".into(), 50), ("y".into(), 50)].into();
/// let b: BTreeMap<String, u64> = [("x".into(), 90), ("y".into(), 10)].into();
/// assert_eq!(categorical_psi(&a, &a), Some(0.0));
/// assert!(categorical_psi(&a, &b).unwrap() > 0.25); // a large shift
/// ```
pub fn categorical_psi(
    expected: &std::collections::BTreeMap<String, u64>,
    actual: &std::collections::BTreeMap<String, u64>,
) -> Option<f64> {
    let (ne, na): (u64, u64) = (expected.values().sum(), actual.values().sum());
    if ne == 0 || na == 0 {
        return None;
    }
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    let count =
        |m: &std::collections::BTreeMap<String, u64>, k: &String| m.get(k).copied().unwrap_or(0);
    Some(psi_of(
        keys.into_iter()
            .map(|k| (count(expected, k), count(actual, k))),
        ne,
        na,
    ))
}

/// PSI of live scores against training scores when the live histogram has at least
/// `min_samples` scores and both use [`SCORE_BINS`] bins.
pub fn score_psi(
    training: &HistogramSnapshot,
    live: &HistogramSnapshot,
    min_samples: u64,
) -> Option<f64> {
    if live.count() < min_samples.max(1) || live.counts.len() != SCORE_BINS {
        return None;
    }
    psi(training, live)
}
