//! Decision rules: a score becomes escalate / priority / queue, with reasons.
//!
//! [`DecisionRules`] is the `[decision]` table of `complaintflow.toml`; [`decide`] is a pure
//! function so the same rules run in the `decide` operator, in tests and in user code.
//!
//! The [`Decision`] record is the engine's output contract (predictions JSON Lines file,
//! Kafka topic `complaints-predictions`, `/api/predictions/recent`):
//!
//! | field | meaning |
//! |---|---|
//! | `complaint_id` | CFPB id, as a string |
//! | `model_version` | registry version that scored it |
//! | `score` | P(successful resolution), 0–1 |
//! | `predicted_success` | `score` ≥ the model's own decision threshold |
//! | `escalate` | `score < escalate_below` |
//! | `priority` | `P1` (most urgent) … `P3` |
//! | `queue` | routing queue (product table, or `legal-review`) |
//! | `reasons` | every rule that fired, human-readable |
//! | `product`, `issue`, `state`, `company`, `date_received` | copied from the complaint |
//! | `epoch` | dataflow epoch it was processed in |
//! | `ingest_ms`, `decided_ms` | entry and decision time, ms since the Unix epoch |
//!
//! Field names are snake_case, absent optional fields are `null`, `date_received` is
//! `YYYY-MM-DD`. The key (for Kafka, for de-duplication on replay) is `complaint_id`.
//! One line of the predictions file:
//!
//! ```json
//! {"complaint_id":"3385573","model_version":"v0002","score":0.0412,"predicted_success":false,
//!  "escalate":true,"priority":"P1","queue":"collections",
//!  "reasons":["predicted success 0.041 below escalation threshold 0.100","score band P1"],
//!  "product":"Debt collection","issue":"Attempts to collect debt not owed","state":"TX",
//!  "company":"…","date_received":"2019-09-24","epoch":12,"ingest_ms":1763862000123,
//!  "decided_ms":1763862000131}
//! ```
//!
//! ```
//! use complaintflow_operators::decision::{decide, DecisionRules};
//! use complaintflow_datasets::{Complaint, ComplaintId, Tags};
//! let rules = DecisionRules::default();
//! let mut c = Complaint::new(ComplaintId(7), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
//! c.product = Some("Debt collection".into());
//! c.tags = Tags::new(true, false);
//! c.complaint_what_happened = Some("I will contact my attorney".into());
//! let d = decide(&c, 0.04, false, "v0001", &rules);
//! assert!(d.escalate);
//! assert_eq!(d.priority, "P1");
//! assert_eq!(d.queue, "legal-review");
//! assert!(d.reasons.iter().any(|r| r.contains("Servicemember")));
//! ```

use std::collections::BTreeMap;

use complaintflow_datasets::Complaint;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::record::{now_ms, Prediction};

/// Invalid decision rules; the message names the `decision.*` key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid decision rules: {0}")]
pub struct InvalidRules(pub String);

/// The decision rules (`[decision]` in `complaintflow.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionRules {
    /// Escalate when P(success) is below this. Default `0.10`.
    pub escalate_below: f64,
    /// Priority P1 when P(success) is below this. Default `0.05`.
    pub p1_below: f64,
    /// Priority P2 when P(success) is below this (and not P1). Default `0.15`. Others are P3.
    pub p2_below: f64,
    /// Raise the priority one band for complaints tagged `Servicemember`. Default `true`.
    pub servicemember_raises_priority: bool,
    /// Raise the priority one band for complaints tagged `Older American`. Default `true`.
    pub older_american_raises_priority: bool,
    /// Route to `legal_queue` when the narrative threatens legal action. Default `true`.
    pub legal_review: bool,
    /// The legal-review queue name. Default `legal-review`.
    pub legal_queue: String,
    /// Words and phrases that count as a threat of legal action (matched on whole words,
    /// case-insensitive). Default: lawsuit, sue, suing, attorney, lawyer, legal action, court,
    /// litigation, class action.
    pub legal_terms: Vec<String>,
    /// Product → queue routing table. Default: one queue per product family.
    pub routes: BTreeMap<String, String>,
    /// Queue for products not in `routes`. Default `general`.
    pub default_queue: String,
}

impl Default for DecisionRules {
    fn default() -> Self {
        let routes = [
            (
                "Credit reporting, credit repair services, or other personal consumer reports",
                "credit-reporting",
            ),
            ("Credit reporting", "credit-reporting"),
            ("Debt collection", "collections"),
            ("Mortgage", "mortgage"),
            ("Credit card or prepaid card", "cards"),
            ("Credit card", "cards"),
            ("Prepaid card", "cards"),
            ("Checking or savings account", "banking"),
            ("Bank account or service", "banking"),
            ("Student loan", "lending"),
            ("Vehicle loan or lease", "lending"),
            ("Consumer Loan", "lending"),
            ("Payday loan, title loan, or personal loan", "lending"),
            (
                "Money transfer, virtual currency, or money service",
                "payments",
            ),
            ("Money transfers", "payments"),
        ]
        .into_iter()
        .map(|(p, q)| (p.to_string(), q.to_string()))
        .collect();
        DecisionRules {
            escalate_below: 0.10,
            p1_below: 0.05,
            p2_below: 0.15,
            servicemember_raises_priority: true,
            older_american_raises_priority: true,
            legal_review: true,
            legal_queue: "legal-review".to_string(),
            legal_terms: [
                "lawsuit",
                "sue",
                "suing",
                "attorney",
                "lawyer",
                "legal action",
                "court",
                "litigation",
                "class action",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            routes,
            default_queue: "general".to_string(),
        }
    }
}

impl DecisionRules {
    /// Checks the thresholds and queue names; the error names the key.
    ///
    /// ```
    /// use complaintflow_operators::DecisionRules;
    /// assert!(DecisionRules::default().validate().is_ok());
    /// let bad = DecisionRules { p1_below: 0.5, p2_below: 0.2, ..DecisionRules::default() };
    /// assert!(bad.validate().unwrap_err().to_string().contains("p1_below"));
    /// ```
    pub fn validate(&self) -> Result<(), InvalidRules> {
        for (k, v) in [
            ("escalate_below", self.escalate_below),
            ("p1_below", self.p1_below),
            ("p2_below", self.p2_below),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(InvalidRules(format!(
                    "decision.{k} = {v}: must be a probability in [0, 1]"
                )));
            }
        }
        if self.p1_below > self.p2_below {
            return Err(InvalidRules(format!(
                "decision.p1_below ({}) must not exceed decision.p2_below ({})",
                self.p1_below, self.p2_below
            )));
        }
        if self.default_queue.trim().is_empty() || self.legal_queue.trim().is_empty() {
            return Err(InvalidRules(
                "decision.default_queue and decision.legal_queue must not be empty".into(),
            ));
        }
        if let Some(t) = self.legal_terms.iter().find(|t| t.trim().is_empty()) {
            return Err(InvalidRules(format!(
                "decision.legal_terms contains an empty term {t:?}"
            )));
        }
        Ok(())
    }
}

/// The decision for one complaint. See the [module docs](self) for the field contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// CFPB complaint id.
    pub complaint_id: String,
    /// Model version that produced `score`.
    pub model_version: String,
    /// P(successful resolution).
    pub score: f64,
    /// The model predicts a successful resolution (`score` ≥ its decision threshold).
    pub predicted_success: bool,
    /// Whether the complaint is escalated.
    pub escalate: bool,
    /// `P1`, `P2` or `P3`.
    pub priority: String,
    /// Routing queue.
    pub queue: String,
    /// Every rule that fired.
    pub reasons: Vec<String>,
    /// Product.
    pub product: Option<String>,
    /// Issue.
    pub issue: Option<String>,
    /// Two-letter state code.
    pub state: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// Date the CFPB received it.
    pub date_received: chrono::NaiveDate,
    /// Dataflow epoch.
    pub epoch: u64,
    /// Entry time (ms since the Unix epoch).
    pub ingest_ms: i64,
    /// Decision time (ms since the Unix epoch).
    pub decided_ms: i64,
}

fn mentions(haystack_lower: &str, term: &str) -> bool {
    let term = term.to_lowercase();
    let bytes = haystack_lower.as_bytes();
    let mut from = 0;
    while let Some(pos) = haystack_lower[from..].find(&term) {
        let start = from + pos;
        let end = start + term.len();
        let before_ok = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        let after_ok = end >= bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if before_ok && after_ok {
            return true;
        }
        from = end;
    }
    false
}

/// Applies the rules to a scored complaint. `epoch`, `ingest_ms` and `decided_ms` are left 0
/// for the caller (the `decide` operator) to fill in.
///
/// ```
/// use complaintflow_operators::decision::{decide, DecisionRules};
/// use complaintflow_datasets::{Complaint, ComplaintId};
/// let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
/// let d = decide(&c, 0.5, true, "v1", &DecisionRules::default());
/// assert!(!d.escalate && d.priority == "P3" && d.queue == "general" && d.reasons.is_empty());
/// ```
pub fn decide(
    c: &Complaint,
    score: f64,
    predicted_success: bool,
    model_version: &str,
    rules: &DecisionRules,
) -> Decision {
    let mut reasons = Vec::new();
    let escalate = score < rules.escalate_below;
    if escalate {
        reasons.push(format!(
            "predicted success {score:.3} below escalation threshold {:.3}",
            rules.escalate_below
        ));
    }
    let mut band: u8 = if score < rules.p1_below {
        1
    } else if score < rules.p2_below {
        2
    } else {
        3
    };
    if band < 3 {
        reasons.push(format!("score band P{band}"));
    }
    if rules.servicemember_raises_priority && c.tags.servicemember() {
        band = band.saturating_sub(1).max(1);
        reasons.push("tagged Servicemember: priority raised".to_string());
    }
    if rules.older_american_raises_priority && c.tags.older_american() {
        band = band.saturating_sub(1).max(1);
        reasons.push("tagged Older American: priority raised".to_string());
    }
    let product_queue = c
        .product
        .as_deref()
        .and_then(|p| rules.routes.get(p))
        .unwrap_or(&rules.default_queue)
        .clone();
    let mut queue = product_queue;
    if rules.legal_review {
        if let Some(text) = c.complaint_what_happened.as_deref() {
            let lower = text.to_lowercase();
            if let Some(t) = rules.legal_terms.iter().find(|t| mentions(&lower, t)) {
                queue = rules.legal_queue.clone();
                reasons.push(format!("narrative threatens legal action (\"{t}\")"));
            }
        }
    }
    Decision {
        complaint_id: c.complaint_id.0.to_string(),
        model_version: model_version.to_string(),
        score,
        predicted_success,
        escalate,
        priority: format!("P{band}"),
        queue,
        reasons,
        product: c.product.clone(),
        issue: c.issue.clone(),
        state: c.state.map(|s| s.code().to_string()),
        company: c.company.clone(),
        date_received: c.date_received,
        epoch: 0,
        ingest_ms: 0,
        decided_ms: 0,
    }
}

/// A timestamp that names an epoch (the number written in [`Decision::epoch`]).
pub trait AsEpoch {
    /// The epoch number.
    ///
    /// ```
    /// use complaintflow_operators::decision::AsEpoch;
    /// assert_eq!(7u64.as_epoch(), 7);
    /// ```
    fn as_epoch(&self) -> u64;
}

impl AsEpoch for u64 {
    fn as_epoch(&self) -> u64 {
        *self
    }
}

impl AsEpoch for u32 {
    fn as_epoch(&self) -> u64 {
        u64::from(*self)
    }
}

impl AsEpoch for usize {
    fn as_epoch(&self) -> u64 {
        *self as u64
    }
}

/// `decide`: predictions → decisions.
pub trait Decide<'s, T: Timestamp + TotalOrder + AsEpoch> {
    /// Applies the rules ([`decide`]) to every prediction and stamps `epoch`, `ingest_ms` and
    /// `decided_ms`. Data-parallel: no exchange.
    ///
    /// ```
    /// use complaintflow_operators::prelude::*;
    /// use complaintflow_operators::record::{Origin, Parsed, Prediction};
    /// use complaintflow_datasets::{Complaint, ComplaintId};
    /// use timely::dataflow::operators::{ToStream, Inspect};
    /// timely::example(|scope| {
    ///     let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
    ///     let p = Prediction { parsed: Parsed { complaint: c, origin: Origin::file("x", 0), ingest_ms: 5 },
    ///                          score: 0.02, predicted_success: false, model_version: "v1".into() };
    ///     vec![p].to_stream(scope).container::<Vec<_>>()
    ///         .decide(&DecisionRules::default())
    ///         .inspect(|d| assert!(d.escalate && d.priority == "P1" && d.ingest_ms == 5));
    /// });
    /// ```
    fn decide(self, rules: &DecisionRules) -> Stream<'s, T, Vec<Decision>>;
}

impl<'s, T: Timestamp + TotalOrder + AsEpoch> Decide<'s, T> for Stream<'s, T, Vec<Prediction>> {
    fn decide(self, rules: &DecisionRules) -> Stream<'s, T, Vec<Decision>> {
        let rules = rules.clone();
        self.unary(Pipeline, "Decide", move |_cap, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let epoch = cap.least().map_or(0, AsEpoch::as_epoch);
                    let now = now_ms();
                    let mut session = output.session(&cap);
                    for batch in data {
                        for p in batch.drain(..) {
                            let mut d = decide(
                                &p.parsed.complaint,
                                p.score,
                                p.predicted_success,
                                &p.model_version,
                                &rules,
                            );
                            d.epoch = epoch;
                            d.ingest_ms = p.parsed.ingest_ms;
                            d.decided_ms = now;
                            session.give(d);
                        }
                    }
                });
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use complaintflow_datasets::{ComplaintId, Tags};

    fn complaint() -> Complaint {
        Complaint::new(
            ComplaintId(1),
            chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(),
        )
    }

    #[test]
    fn bands_and_escalation_follow_thresholds() {
        let r = DecisionRules::default();
        let c = complaint();
        assert_eq!(decide(&c, 0.01, false, "v", &r).priority, "P1");
        assert_eq!(decide(&c, 0.10, false, "v", &r).priority, "P2");
        assert!(!decide(&c, 0.10, false, "v", &r).escalate);
        assert!(decide(&c, 0.0999, false, "v", &r).escalate);
        let d = decide(&c, 0.5, false, "v", &r);
        assert_eq!((d.priority.as_str(), d.queue.as_str()), ("P3", "general"));
        assert!(d.reasons.is_empty());
    }

    #[test]
    fn legal_terms_match_whole_words_only() {
        let r = DecisionRules::default();
        let mut c = complaint();
        c.product = Some("Mortgage".into());
        c.complaint_what_happened = Some("The courtesy call was pursued".into());
        assert_eq!(decide(&c, 0.5, false, "v", &r).queue, "mortgage");
        c.complaint_what_happened = Some("I will take legal action in COURT.".into());
        let d = decide(&c, 0.5, false, "v", &r);
        assert_eq!(d.queue, "legal-review");
        assert!(d.reasons[0].contains("legal action"));
    }

    #[test]
    fn tags_raise_priority_but_not_above_p1() {
        let r = DecisionRules::default();
        let mut c = complaint();
        c.tags = Tags::new(true, false);
        assert_eq!(decide(&c, 0.5, false, "v", &r).priority, "P2");
        assert_eq!(decide(&c, 0.01, false, "v", &r).priority, "P1");
    }

    #[test]
    fn validation_names_the_key() {
        let r = DecisionRules {
            p1_below: 1.5,
            ..DecisionRules::default()
        };
        assert!(r.validate().unwrap_err().to_string().contains("p1_below"));
    }
}
