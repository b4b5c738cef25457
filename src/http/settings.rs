//! Configuration of the HTTP layer: the `[dashboard]` table (and [`AlertsConfig`] for
//! `[alerts]`) and the access control ([`ApiSecurity`], from `[http]`), gathered in
//! [`HttpUiConfig`] for [`serve`](super::serve).

use serde::{Deserialize, Serialize};

use super::alerts::{AlertsConfig, AlertsConfigError};
use super::security::{ApiSecurity, SecurityError};

/// Everything [`serve`](super::serve) needs besides the address and the view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpUiConfig {
    /// `[dashboard]`.
    pub dashboard: DashboardConfig,
    /// `[alerts]`.
    pub alerts: AlertsConfig,
    /// Token, retraining data directories and limits (from `[http]`; never serialized). The
    /// default has no token, so mutating requests are refused.
    #[serde(skip)]
    pub api: ApiSecurity,
}

impl HttpUiConfig {
    /// Checks the tables and the limits.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.dashboard.validate()?;
        self.alerts.validate()?;
        self.api.validate()?;
        Ok(())
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// In `[dashboard]`.
    #[error("dashboard.{key}: {why}")]
    Dashboard {
        /// The key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
    /// In `[alerts]`.
    #[error(transparent)]
    Alerts(#[from] AlertsConfigError),
    /// In `[http]`.
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// The `[dashboard]` table of `complaintflow.toml`. Every key is optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Auto-refresh period of the page, seconds; `0` turns auto-refresh off (the page still has
    /// a selector). Default `5`.
    pub refresh_secs: f64,
    /// How often the server samples the engine's counters for the time series and evaluates
    /// the alert rules, milliseconds. Default `1000`.
    pub sample_interval_ms: u64,
    /// Samples kept per time series (raised to cover two alert windows). Default `900`
    /// (15 minutes at one sample a second).
    pub series_capacity: usize,
    /// Bars in each of the product / issue / company charts. Default `10`.
    pub top_n: usize,
    /// Rows of the latest high-priority decisions table. Default `20`.
    pub table_rows: usize,
    /// Priorities the table shows (escalated decisions are shown whatever their priority).
    /// Default `["P1", "P2"]`.
    pub high_priorities: Vec<String>,
    /// Colour bands of the KPI cards.
    pub kpi: KpiThresholds,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            refresh_secs: 5.0,
            sample_interval_ms: 1000,
            series_capacity: 900,
            top_n: 10,
            table_rows: 20,
            high_priorities: vec!["P1".to_string(), "P2".to_string()],
            kpi: KpiThresholds::default(),
        }
    }
}

impl DashboardConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key: &'static str, why: &str| {
            Err(SettingsError::Dashboard {
                key,
                why: why.to_string(),
            })
        };
        if !self.refresh_secs.is_finite() || self.refresh_secs < 0.0 {
            return bad("refresh_secs", "must be a number of seconds ≥ 0");
        }
        if self.sample_interval_ms < 100 {
            return bad("sample_interval_ms", "must be at least 100");
        }
        if self.series_capacity < 2 {
            return bad("series_capacity", "must be at least 2");
        }
        if self.top_n == 0 || self.table_rows == 0 {
            return bad(
                if self.top_n == 0 {
                    "top_n"
                } else {
                    "table_rows"
                },
                "must be at least 1",
            );
        }
        for (key, b) in [
            ("kpi.rate_per_min", &self.kpi.rate_per_min),
            ("kpi.escalation_pct", &self.kpi.escalation_pct),
            ("kpi.mean_score", &self.kpi.mean_score),
            ("kpi.dead_letter_pct", &self.kpi.dead_letter_pct),
        ] {
            if !b.warn.is_finite() || !b.crit.is_finite() {
                return bad(key, "warn and crit must be finite numbers");
            }
        }
        Ok(())
    }
}

/// Green / yellow / red bands of the KPI cards. In each band the direction follows from the
/// order of the two levels: `crit > warn` means high values are bad, `crit < warn` low ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiThresholds {
    /// Records processed per minute (low is bad; grey while no input is waiting). Default
    /// `{ warn = 10000, crit = 5000 }`.
    pub rate_per_min: Band,
    /// Escalations, percent of decisions. Default `{ warn = 30, crit = 50 }`.
    pub escalation_pct: Band,
    /// Mean predicted P(successful resolution). Default `{ warn = 0.10, crit = 0.05 }`.
    pub mean_score: Band,
    /// Dead letters, percent of records processed. Default `{ warn = 1, crit = 5 }`.
    pub dead_letter_pct: Band,
}

impl Default for KpiThresholds {
    fn default() -> Self {
        KpiThresholds {
            rate_per_min: Band {
                warn: 10_000.0,
                crit: 5_000.0,
            },
            escalation_pct: Band {
                warn: 30.0,
                crit: 50.0,
            },
            mean_score: Band {
                warn: 0.10,
                crit: 0.05,
            },
            dead_letter_pct: Band {
                warn: 1.0,
                crit: 5.0,
            },
        }
    }
}

/// Two levels: past `warn` a card turns yellow, past `crit` red.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Yellow from here.
    pub warn: f64,
    /// Red from here.
    pub crit: f64,
}

/// Colour of a KPI card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiStatus {
    /// Fine.
    Green,
    /// Past `warn`.
    Yellow,
    /// Past `crit`.
    Red,
    /// No value (no data yet, or no input waiting for the rate).
    Idle,
}

impl Band {
    /// The status of a value.
    pub fn status(&self, v: Option<f64>) -> KpiStatus {
        let Some(v) = v.filter(|v| v.is_finite()) else {
            return KpiStatus::Idle;
        };
        let high_is_bad = self.crit >= self.warn;
        let past = |level: f64| if high_is_bad { v >= level } else { v <= level };
        if past(self.crit) {
            KpiStatus::Red
        } else if past(self.warn) {
            KpiStatus::Yellow
        } else {
            KpiStatus::Green
        }
    }
}
