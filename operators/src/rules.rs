//! The decision rules: a score becomes escalate / priority / queue, with reasons (the rule matcher).
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
//! {"complaint_id":"3385573","model_version":"v0002","score":0.0112,"predicted_success":false,
//!  "escalate":true,"priority":"P1","queue":"collections",
//!  "reasons":["predicted success 0.011 below escalation threshold 0.030","score band P1"],
//!  "product":"Debt collection","issue":"Attempts to collect debt not owed","state":"TX",
//!  "company":"…","date_received":"2019-09-24","epoch":12,"ingest_ms":1763862000123,
//!  "decided_ms":1763862000131}
//! ```
//!
//! ```
//! use complaintflow_operators::rules::{decide, DecisionRules};
//! use complaintflow_datasets::{Complaint, ComplaintId, Tags};
//! let rules = DecisionRules::default();
//! let mut c = Complaint::new(ComplaintId(7), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
//! c.product = Some("Debt collection".into());
//! c.tags = Tags::new(true, false);
//! c.complaint_what_happened = Some("I will contact my attorney".into());
//! let d = decide(&c, 0.01, false, "v0001", &rules);
//! assert!(d.escalate);
//! assert_eq!(d.priority, "P1");
//! assert_eq!(&*d.queue, "legal-review");
//! assert!(d.reasons.iter().any(|r| r.contains("Servicemember")));
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use complaintflow_datasets::Complaint;
use serde::{Deserialize, Serialize};

use crate::record::Prediction;

/// Invalid decision rules; the message names the `decision.*` key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid decision rules: {0}")]
pub struct InvalidRules(pub String);

/// The decision rules (`[decision]` in `complaintflow.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionRules {
    /// Escalate when P(success) is below this. Default `0.03`.
    ///
    /// Under the default `relief` label policy only 15 % of complaints end in relief, so
    /// scores are low: on the bundled sample's held-out quarter (1,108 complaints) the median
    /// is 0.078, and `0.03` escalates the least likely 22 % (0.10 would escalate 57 %).
    pub escalate_below: f64,
    /// Escalation by capacity: escalate the complaints whose score is in the lowest
    /// `escalate_top_percent` % of the live scores (a quantile over the scores this worker has
    /// decided so far), instead of below the fixed `escalate_below`, which escalated 22–59 %
    /// of the complaints on the sets measured. Until [`CAPACITY_WARMUP`] scores have been
    /// seen, `escalate_below` applies. Default none (the fixed threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_top_percent: Option<f64>,
    /// Priority P1 when P(success) is below this. Default `0.015` (about 8 %).
    pub p1_below: f64,
    /// Priority P2 when P(success) is below this (and not P1). Default `0.03`: every
    /// escalated complaint is P1 or P2. Others are P3.
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
            escalate_below: 0.03,
            escalate_top_percent: None,
            p1_below: 0.015,
            p2_below: 0.03,
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
        if let Some(p) = self.escalate_top_percent {
            if !(p > 0.0 && p < 100.0) {
                return Err(InvalidRules(format!(
                    "decision.escalate_top_percent = {p}: must be a percentage in (0, 100), e.g. 10"
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
    /// Model version that produced `score` (shared by all its decisions).
    pub model_version: Arc<str>,
    /// P(successful resolution).
    pub score: f64,
    /// The model predicts a successful resolution (`score` ≥ its decision threshold).
    pub predicted_success: bool,
    /// Whether the complaint is escalated.
    pub escalate: bool,
    /// `P1`, `P2` or `P3`.
    pub priority: Cow<'static, str>,
    /// Routing queue (shared with the rules).
    pub queue: Arc<str>,
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

/// [`DecisionRules`] prepared for fast application: the legal terms compiled into one
/// case-insensitive Aho-Corasick automaton (one pass over the narrative, whatever the number
/// of terms). The `decide` operator builds one per worker; build one yourself when calling
/// [`CompiledRules::decide`] in a loop.
///
/// ```
/// use complaintflow_operators::rules::{CompiledRules, DecisionRules};
/// use complaintflow_datasets::{Complaint, ComplaintId};
/// let rules = CompiledRules::new(&DecisionRules::default());
/// let mut c = Complaint::new(ComplaintId(3), chrono::NaiveDate::from_ymd_opt(2021, 5, 4).unwrap());
/// c.complaint_what_happened = Some("My LAWYER says this is illegal".into());
/// assert_eq!(rules.decide(&c, 0.5, true, "v1").queue.as_ref(), "legal-review");
/// c.complaint_what_happened = Some("The lawyers' office issue".into()); // not whole words
/// assert_eq!(rules.decide(&c, 0.5, true, "v1").queue.as_ref(), "general");
/// ```
#[derive(Clone, Debug)]
pub struct CompiledRules {
    rules: DecisionRules,
    /// Product → queue, the queue names shared by every decision routed there.
    routes: BTreeMap<String, Arc<str>>,
    default_queue: Arc<str>,
    legal_queue: Arc<str>,
    /// Legal terms; `None` when legal review is off or there are no terms.
    legal: Option<LegalMatcher>,
    /// `" below escalation threshold {escalate_below:.3}"`, formatted once.
    below_fixed: String,
}

/// Appends `x` as `format!("{x:.3}")` would. For scores whose thousandths are unambiguous
/// (all but a vanishing few, within 1e-9 of a rounding tie) it writes the rounded integer
/// of thousandths directly; otherwise, and for values outside [0, 1000), it formats.
///
/// ```
/// # use complaintflow_operators::rules::push_3_decimals;
/// for x in [0.0, 0.0155242, 0.0305, 0.9999, 0.0625, 1.0, 12.3456, -0.25, f64::NAN] {
///     let mut s = String::new();
///     push_3_decimals(&mut s, x);
///     assert_eq!(s, format!("{x:.3}"));
/// }
/// ```
pub fn push_3_decimals(out: &mut String, x: f64) {
    let t = x * 1000.0;
    let k = t.round();
    if (0.0..1_000_000.0).contains(&t) && ((t - k).abs() - 0.5).abs() > 1e-9 {
        let k = k as u64;
        let mut ints = itoa::Buffer::new();
        out.push_str(ints.format(k / 1000));
        out.push('.');
        let frac = k % 1000;
        if frac < 100 {
            out.push('0');
        }
        if frac < 10 {
            out.push('0');
        }
        out.push_str(ints.format(frac));
    } else {
        use std::fmt::Write;
        let _ = write!(out, "{x:.3}");
    }
}

#[derive(Clone, Debug)]
struct LegalMatcher {
    automaton: aho_corasick::AhoCorasick,
    /// Non-ASCII terms: match on the Unicode-lowercased narrative instead of ASCII folding.
    unicode: bool,
}

/// Scores seen before `escalate_top_percent` replaces the fixed threshold.
pub const CAPACITY_WARMUP: u64 = 200;

/// Which escalation rule applies to a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum EscalationRule {
    /// `score < escalate_below`.
    Fixed,
    /// `score < threshold`, the live `percent` quantile over `scores` scores.
    Capacity {
        /// `escalate_top_percent`.
        percent: f64,
        /// The quantile now.
        threshold: f64,
        /// Scores it was computed over.
        scores: u64,
    },
}

impl EscalationRule {
    fn threshold(&self, r: &DecisionRules) -> f64 {
        match self {
            EscalationRule::Fixed => r.escalate_below,
            EscalationRule::Capacity { threshold, .. } => *threshold,
        }
    }
}

/// Fine score bins: 10,000, each 0.0001 wide (the live quantile of `escalate_top_percent`,
/// the live quality counts of the pipelines).
pub const FINE_BINS: u16 = 10_000;

/// The fine bin of a score in [0, 1] (NaN and out-of-range scores clamp to the ends).
///
/// ```
/// use complaintflow_operators::rules::{fine_bin, FINE_BINS};
/// assert_eq!((fine_bin(0.0), fine_bin(0.12345), fine_bin(1.0)), (0, 1234, FINE_BINS - 1));
/// ```
pub fn fine_bin(score: f64) -> u16 {
    if score.is_nan() {
        return 0;
    }
    let b = (score.clamp(0.0, 1.0) * f64::from(FINE_BINS)) as u32;
    u16::try_from(b.min(u32::from(FINE_BINS) - 1)).unwrap_or(FINE_BINS - 1)
}

/// The live distribution of scores behind `escalate_top_percent`, in [`FINE_BINS`] bins.
///
/// ```
/// use complaintflow_operators::rules::{CapacityQuantile, EscalationRule};
/// let mut q = CapacityQuantile::new(10.0);
/// assert_eq!(q.rule(), EscalationRule::Fixed); // warming up
/// for i in 0..1000 { q.observe(f64::from(i) / 1000.0); }
/// let EscalationRule::Capacity { threshold, scores, .. } = q.rule() else { panic!() };
/// assert!((threshold - 0.1).abs() < 0.002 && scores == 1000);
/// ```
#[derive(Clone, Debug)]
pub struct CapacityQuantile {
    percent: f64,
    counts: Vec<u64>,
    total: u64,
}

impl CapacityQuantile {
    /// An empty distribution for `escalate_top_percent = percent`.
    pub fn new(percent: f64) -> CapacityQuantile {
        CapacityQuantile {
            percent,
            counts: vec![0; usize::from(FINE_BINS)],
            total: 0,
        }
    }

    /// One more score.
    pub fn observe(&mut self, score: f64) {
        self.counts[usize::from(fine_bin(score))] += 1;
        self.total += 1;
    }

    /// The rule to apply now: the fixed threshold while warming up, then the quantile.
    pub fn rule(&self) -> EscalationRule {
        if self.total < CAPACITY_WARMUP {
            return EscalationRule::Fixed;
        }
        // The upper edge of the bin holding the `percent` quantile.
        let want = (self.total as f64 * self.percent / 100.0).ceil() as u64;
        let mut seen = 0u64;
        let mut threshold = 1.0;
        for (b, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                threshold = (b + 1) as f64 / f64::from(FINE_BINS);
                break;
            }
        }
        EscalationRule::Capacity {
            percent: self.percent,
            threshold,
            scores: self.total,
        }
    }
}

/// What the rules say about one scored complaint, before the record is built.
struct Verdict {
    escalate: bool,
    band: u8,
    legal_term: Option<usize>,
}

impl CompiledRules {
    /// Compiles `rules` (call [`DecisionRules::validate`] first for a clear error).
    pub fn new(rules: &DecisionRules) -> CompiledRules {
        let legal = if rules.legal_review && !rules.legal_terms.is_empty() {
            let unicode = rules.legal_terms.iter().any(|t| !t.is_ascii());
            let terms: Vec<String> = if unicode {
                rules.legal_terms.iter().map(|t| t.to_lowercase()).collect()
            } else {
                rules.legal_terms.clone()
            };
            aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(!unicode)
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&terms)
                .map_err(|e| {
                    tracing::error!(
                        "decision.legal_terms cannot be compiled ({e}); legal review is off"
                    )
                })
                .ok()
                .map(|automaton| LegalMatcher { automaton, unicode })
        } else {
            None
        };
        CompiledRules {
            rules: rules.clone(),
            routes: rules
                .routes
                .iter()
                .map(|(p, q)| (p.clone(), Arc::from(q.as_str())))
                .collect(),
            default_queue: Arc::from(rules.default_queue.as_str()),
            legal_queue: Arc::from(rules.legal_queue.as_str()),
            legal,
            below_fixed: format!(" below escalation threshold {:.3}", rules.escalate_below),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &DecisionRules {
        &self.rules
    }

    /// The index of the first legal term the narrative mentions as a whole word.
    fn legal_term(&self, text: &str) -> Option<usize> {
        let m = self.legal.as_ref()?;
        let lowered;
        let hay = if m.unicode {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        let bytes = hay.as_bytes();
        // A term inside a longer word ("sue" in "issue") is not a mention; the search then
        // resumes one byte after that hit, so it cannot hide a real mention overlapping it.
        let mut from = 0;
        while let Some(hit) = m
            .automaton
            .find(aho_corasick::Input::new(hay).span(from..hay.len()))
        {
            let (start, end) = (hit.start(), hit.end());
            let before_ok = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
            let after_ok = end >= bytes.len() || !bytes[end].is_ascii_alphanumeric();
            if before_ok && after_ok {
                return Some(hit.pattern().as_usize());
            }
            from = start + 1;
        }
        None
    }

    fn verdict(&self, c: &Complaint, score: f64, rule: &EscalationRule) -> Verdict {
        let r = &self.rules;
        let mut band: u8 = if score < r.p1_below {
            1
        } else if score < r.p2_below {
            2
        } else {
            3
        };
        if r.servicemember_raises_priority && c.tags.servicemember() {
            band = band.saturating_sub(1).max(1);
        }
        if r.older_american_raises_priority && c.tags.older_american() {
            band = band.saturating_sub(1).max(1);
        }
        Verdict {
            escalate: score < rule.threshold(r),
            band,
            legal_term: c
                .complaint_what_happened
                .as_deref()
                .and_then(|t| self.legal_term(t)),
        }
    }

    /// The reasons of a verdict, in the order the rules are applied.
    fn reasons(
        &self,
        c: &Complaint,
        score: f64,
        v: &Verdict,
        rule: &EscalationRule,
    ) -> Vec<String> {
        let r = &self.rules;
        let mut reasons = Vec::new();
        if v.escalate {
            reasons.push(match rule {
                EscalationRule::Fixed => {
                    let mut s = String::with_capacity(64);
                    s.push_str("predicted success ");
                    push_3_decimals(&mut s, score);
                    s.push_str(&self.below_fixed);
                    s
                }
                EscalationRule::Capacity {
                    percent,
                    threshold,
                    scores,
                } => format!(
                    "predicted success {score:.3} in the lowest {percent}% of live scores (threshold {threshold:.3} over {scores} scores)"
                ),
            });
        }
        let base_band = if score < r.p1_below {
            1
        } else if score < r.p2_below {
            2
        } else {
            3
        };
        match base_band {
            1 => reasons.push("score band P1".to_string()),
            2 => reasons.push("score band P2".to_string()),
            _ => {}
        }
        if r.servicemember_raises_priority && c.tags.servicemember() {
            reasons.push("tagged Servicemember: priority raised".to_string());
        }
        if r.older_american_raises_priority && c.tags.older_american() {
            reasons.push("tagged Older American: priority raised".to_string());
        }
        if let Some(t) = v.legal_term.and_then(|i| r.legal_terms.get(i)) {
            reasons.push(format!("narrative threatens legal action (\"{t}\")"));
        }
        reasons
    }

    fn queue(&self, c: &Complaint, v: &Verdict) -> Arc<str> {
        if v.legal_term.is_some() {
            return Arc::clone(&self.legal_queue);
        }
        Arc::clone(
            c.product
                .as_deref()
                .and_then(|p| self.routes.get(p))
                .unwrap_or(&self.default_queue),
        )
    }

    /// Applies the rules to a scored complaint (see [`decide`]).
    pub fn decide(
        &self,
        c: &Complaint,
        score: f64,
        predicted_success: bool,
        model_version: &str,
    ) -> Decision {
        let v = self.verdict(c, score, &EscalationRule::Fixed);
        Decision {
            complaint_id: itoa::Buffer::new().format(c.complaint_id.0).to_owned(),
            model_version: Arc::from(model_version),
            score,
            predicted_success,
            escalate: v.escalate,
            priority: priority_name(v.band),
            queue: self.queue(c, &v),
            reasons: self.reasons(c, score, &v, &EscalationRule::Fixed),
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

    /// [`decide`](Self::decide) on a prediction it consumes: the complaint's fields move
    /// into the decision instead of being copied.
    pub fn decide_owned(&self, p: Prediction) -> Decision {
        self.decide_owned_with(p, &EscalationRule::Fixed)
    }

    /// [`decide_owned`](Self::decide_owned) with the escalation rule `rule` (the `decide`
    /// operator passes the live capacity threshold under `escalate_top_percent`).
    pub fn decide_owned_with(&self, p: Prediction, rule: &EscalationRule) -> Decision {
        let Prediction {
            parsed,
            score,
            predicted_success,
            model_version,
        } = p;
        let v = self.verdict(&parsed.complaint, score, rule);
        let queue = self.queue(&parsed.complaint, &v);
        let reasons = self.reasons(&parsed.complaint, score, &v, rule);
        let c = parsed.complaint;
        Decision {
            complaint_id: itoa::Buffer::new().format(c.complaint_id.0).to_owned(),
            model_version,
            score,
            predicted_success,
            escalate: v.escalate,
            priority: priority_name(v.band),
            queue,
            reasons,
            product: c.product,
            issue: c.issue,
            state: c.state.map(|s| s.code().to_string()),
            company: c.company,
            date_received: c.date_received,
            epoch: 0,
            ingest_ms: parsed.ingest_ms,
            decided_ms: 0,
        }
    }
}

fn priority_name(band: u8) -> Cow<'static, str> {
    Cow::Borrowed(match band {
        1 => "P1",
        2 => "P2",
        _ => "P3",
    })
}

/// Applies the rules to a scored complaint. `epoch`, `ingest_ms` and `decided_ms` are left 0
/// for the caller (the `decide` operator) to fill in. This compiles the rules on every call:
/// in a loop, build a [`CompiledRules`] once and call its `decide`.
///
/// ```
/// use complaintflow_operators::rules::{decide, DecisionRules};
/// use complaintflow_datasets::{Complaint, ComplaintId};
/// let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
/// let d = decide(&c, 0.5, true, "v1", &DecisionRules::default());
/// assert!(!d.escalate && d.priority == "P3" && &*d.queue == "general" && d.reasons.is_empty());
/// ```
pub fn decide(
    c: &Complaint,
    score: f64,
    predicted_success: bool,
    model_version: &str,
    rules: &DecisionRules,
) -> Decision {
    CompiledRules::new(rules).decide(c, score, predicted_success, model_version)
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
        let below = |x: f64| x - 1e-9;
        assert_eq!(decide(&c, below(r.p1_below), false, "v", &r).priority, "P1");
        assert_eq!(decide(&c, r.p1_below, false, "v", &r).priority, "P2");
        assert_eq!(decide(&c, below(r.p2_below), false, "v", &r).priority, "P2");
        assert_eq!(decide(&c, r.p2_below, false, "v", &r).priority, "P3");
        assert!(!decide(&c, r.escalate_below, false, "v", &r).escalate);
        assert!(decide(&c, below(r.escalate_below), false, "v", &r).escalate);
        let d = decide(&c, 0.5, false, "v", &r);
        assert_eq!((d.priority.as_ref(), d.queue.as_ref()), ("P3", "general"));
        assert!(d.reasons.is_empty());
    }

    #[test]
    fn legal_terms_match_whole_words_only() {
        let r = DecisionRules::default();
        let mut c = complaint();
        c.product = Some("Mortgage".into());
        c.complaint_what_happened = Some("The courtesy call was pursued".into());
        assert_eq!(decide(&c, 0.5, false, "v", &r).queue.as_ref(), "mortgage");
        c.complaint_what_happened = Some("I will take legal action in COURT.".into());
        let d = decide(&c, 0.5, false, "v", &r);
        assert_eq!(&*d.queue, "legal-review");
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
