//! `GET /metrics`: the engine's counters in the Prometheus text formats, encoded with the
//! `prometheus-client` crate.
//!
//! Two formats, by content negotiation as the official Prometheus clients do: a scraper whose
//! `Accept` header names `application/openmetrics-text` (Prometheus itself, Grafana Agent) gets
//! OpenMetrics 1.0 ([`CONTENT_TYPE`]); anything else (curl, older scrapers, text-format
//! parsers) gets the classic text format 0.0.4 ([`TEXT_CONTENT_TYPE`], see [`to_text_004`]).
//! Sample names and values are the same in both.
//!
//! The values are not instrumented in place: the engine keeps its own counters and the HTTP
//! layer reads a [`MetricsSnapshot`] per scrape, so a [`Collector`] encodes that snapshot.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `complaintflow_records_read_total` | counter | |
//! | `complaintflow_records_parsed_total` | counter | |
//! | `complaintflow_records_processed_total` | counter | |
//! | `complaintflow_predictions_total` | counter | |
//! | `complaintflow_escalations_total` | counter | |
//! | `complaintflow_dead_letters_total` | counter | `reason` |
//! | `complaintflow_epochs_completed_total` | counter | |
//! | `complaintflow_epoch_latency_seconds` | histogram | |
//! | `complaintflow_consumer_lag` | gauge (records; absent without a lag) | |
//! | `complaintflow_input_waiting` | gauge 0/1 | |
//! | `complaintflow_checkpoint_age_seconds` | gauge (absent without checkpoints) | |
//! | `complaintflow_model_score` | histogram | `version` |
//! | `complaintflow_model_traffic_share` | gauge | `version` |
//! | `complaintflow_score_psi` | gauge (absent until enough scores) | |
//! | `complaintflow_model_labelled_total` | counter | `version` (with `run --outcomes`) |
//! | `complaintflow_model_quality` | gauge | `version`, `metric` (`auc`, `pr_auc`, `precision`, `recall`, `f1`, `accuracy`, `ece`) |
//! | `complaintflow_model_action` | gauge 1 | `version`, `action` (`MONITOR`, `RETRAIN`, `INVESTIGATE`) |
//! | `complaintflow_input_psi` | gauge (absent until the training profile is known) | `input` (`product`, `state`) |
//! | `complaintflow_alerts_active` | gauge 0/1 | `alert` |
//! | `complaintflow_aggregates_as_of_epoch` | gauge (absent before the first epoch) | |
//! | `complaintflow_uptime_seconds` | gauge | |
//! | `complaintflow_workers` | gauge | |

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::alerts::AlertName;
use super::view::{Health, HistogramSnapshot, MetricsSnapshot, ModelsView};

/// Content type of the OpenMetrics exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Rewrites an OpenMetrics exposition (as [`encode`] writes it) into the classic text format
/// 0.0.4: counter families are named with their `_total` suffix in `# HELP`/`# TYPE` (their
/// samples already carry it), and the OpenMetrics-only `# UNIT` and `# EOF` lines go.
///
/// ```
/// let om = "# HELP a_records Records.\n# TYPE a_records counter\na_records_total 3\n# TYPE a_lat histogram\n# UNIT a_lat seconds\na_lat_count 1\n# EOF\n";
/// let text = complaintflow::http::prom::to_text_004(om);
/// assert_eq!(text, "# HELP a_records_total Records.\n# TYPE a_records_total counter\na_records_total 3\n# TYPE a_lat histogram\na_lat_count 1\n");
/// ```
pub fn to_text_004(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, "counter")) = rest.split_once(' ') {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Everything one scrape encodes.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Health (uptime, workers).
    pub health: Health,
    /// Counters.
    pub metrics: MetricsSnapshot,
    /// Live models and their score histograms.
    pub models: ModelsView,
    /// Epoch the aggregates are complete as of.
    pub as_of: Option<u64>,
    /// Each rule and whether it fires.
    pub alerts: Vec<(AlertName, bool)>,
    /// Latest PSI.
    pub psi: Option<f64>,
    /// Live model quality (empty without outcomes).
    pub quality: super::view::QualityReport,
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        let counters: [(&str, &str, u64); 6] = [
            (
                "complaintflow_records_read",
                "Records read from the source.",
                m.records_in,
            ),
            (
                "complaintflow_records_parsed",
                "Records parsed into complaints.",
                m.parsed,
            ),
            (
                "complaintflow_records_processed",
                "Records that reached an outcome: a prediction or a dead letter.",
                m.records_processed,
            ),
            (
                "complaintflow_predictions",
                "Decisions written.",
                m.predictions,
            ),
            (
                "complaintflow_escalations",
                "Escalated decisions.",
                m.escalations,
            ),
            (
                "complaintflow_epochs_completed",
                "Epochs complete at every output.",
                m.epochs_completed,
            ),
        ];
        for (name, help, v) in counters {
            ConstCounter::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }

        let mut fam = enc.encode_descriptor(
            "complaintflow_dead_letters",
            "Records sent to the dead-letter sink, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, v) in &m.dead_letters {
            ConstCounter::new(*v).encode(fam.encode_family(&[("reason", reason.as_str())])?)?;
        }

        let lat = enc.encode_descriptor(
            "complaintflow_epoch_latency",
            "Epoch latency: first record ingested to epoch complete everywhere.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        encode_histogram(lat, &m.epoch_latency_seconds)?;

        if let Some(lag) = m.consumer_lag {
            let e = enc.encode_descriptor(
                "complaintflow_consumer_lag",
                "Records behind the head of the input.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(lag).encode(e)?;
        }
        let e = enc.encode_descriptor(
            "complaintflow_input_waiting",
            "1 while the source has input not read yet.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(m.input_waiting)).encode(e)?;
        if let Some(age) = m.checkpoint_age_secs {
            let e = enc.encode_descriptor(
                "complaintflow_checkpoint_age",
                "Time since the last checkpoint.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            ConstGauge::new(age).encode(e)?;
        }

        let mut fam = enc.encode_descriptor(
            "complaintflow_model_score",
            "Predicted P(successful resolution) of live decisions, by model version.",
            None,
            MetricType::Histogram,
        )?;
        for l in &self.models.live {
            encode_histogram(
                fam.encode_family(&[("version", l.version.as_str())])?,
                &l.scores,
            )?;
        }
        let mut fam = enc.encode_descriptor(
            "complaintflow_model_traffic_share",
            "Share of new traffic routed to each live model version.",
            None,
            MetricType::Gauge,
        )?;
        for l in &self.models.live {
            ConstGauge::new(l.share)
                .encode(fam.encode_family(&[("version", l.version.as_str())])?)?;
        }
        if let Some(psi) = self.psi {
            let e = enc.encode_descriptor(
                "complaintflow_score_psi",
                "Population stability index of live scores against training scores.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(psi).encode(e)?;
        }

        if self.quality.enabled {
            let q = &self.quality.versions;
            let mut fam = enc.encode_descriptor(
                "complaintflow_model_labelled",
                "Predictions joined with a final outcome, by model version.",
                None,
                MetricType::Counter,
            )?;
            for (v, m) in q {
                ConstCounter::new(m.overall.labelled)
                    .encode(fam.encode_family(&[("version", v.as_str())])?)?;
            }
            let mut fam = enc.encode_descriptor(
                "complaintflow_model_quality",
                "Live quality of a model version against the outcomes joined so far.",
                None,
                MetricType::Gauge,
            )?;
            for (v, m) in q {
                let o = &m.overall;
                for (name, value) in [
                    ("auc", o.auc),
                    ("pr_auc", o.pr_auc),
                    ("precision", o.precision),
                    ("recall", o.recall),
                    ("f1", o.f1),
                    ("accuracy", o.accuracy),
                    ("ece", o.ece),
                ] {
                    if let Some(x) = value {
                        ConstGauge::new(x).encode(
                            fam.encode_family(&[("version", v.as_str()), ("metric", name)])?,
                        )?;
                    }
                }
            }
            let mut fam = enc.encode_descriptor(
                "complaintflow_model_action",
                "The monitoring action of a model version (1 on its current action).",
                None,
                MetricType::Gauge,
            )?;
            for (v, m) in q {
                ConstGauge::new(1i64).encode(
                    fam.encode_family(&[("version", v.as_str()), ("action", m.action.as_str())])?,
                )?;
            }
        }

        let d = &self.quality.drift;
        if d.product_psi.is_some() || d.state_psi.is_some() {
            let mut fam = enc.encode_descriptor(
                "complaintflow_input_psi",
                "Population stability index of a live input mix against the production model's training data.",
                None,
                MetricType::Gauge,
            )?;
            for (input, v) in [("product", d.product_psi), ("state", d.state_psi)] {
                if let Some(x) = v {
                    ConstGauge::new(x).encode(fam.encode_family(&[("input", input)])?)?;
                }
            }
        }

        let mut fam = enc.encode_descriptor(
            "complaintflow_alerts_active",
            "1 while an alert rule fires.",
            None,
            MetricType::Gauge,
        )?;
        for (name, on) in &self.alerts {
            ConstGauge::new(i64::from(*on))
                .encode(fam.encode_family(&[("alert", name.as_str())])?)?;
        }

        if let Some(as_of) = self.as_of {
            let e = enc.encode_descriptor(
                "complaintflow_aggregates_as_of_epoch",
                "Last epoch fully reflected in the aggregates.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(as_of as f64).encode(e)?;
        }
        let e = enc.encode_descriptor(
            "complaintflow_uptime",
            "Time since the engine started.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.health.uptime_secs).encode(e)?;
        let e = enc.encode_descriptor(
            "complaintflow_workers",
            "Worker threads per process.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.health.workers as i64).encode(e)?;
        Ok(())
    }
}

fn encode_histogram(
    mut e: prometheus_client::encoding::MetricEncoder<'_>,
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    if !h.is_well_formed() {
        // A malformed snapshot is an engine bug; expose what is certain rather than nonsense.
        return e.encode_histogram::<NoLabelSet>(
            h.sum,
            h.count(),
            &[(f64::INFINITY, h.count())],
            None,
        );
    }
    let buckets: Vec<(f64, u64)> = h
        .bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .zip(h.counts.iter().copied())
        .collect();
    e.encode_histogram::<NoLabelSet>(h.sum, h.count(), &buckets, None)
}

/// Encodes one scrape.
pub fn encode(scrape: Scrape) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
