//! Data-quality profile of a stream of read results, as Markdown or JSON.
//!
//! ```
//! use complaintflow_datasets::quality::Profile;
//! use complaintflow_datasets::reader::{Complaints, Format};
//! use complaintflow_datasets::ValidationOptions;
//! let input = br#"[{"complaint_id":"1","date_received":"2019-09-24","product":"Mortgage",
//!   "company_response":"Closed with monetary relief","timely":"Yes","state":"CA"},
//!   {"complaint_id":"2","date_received":"not a date"}]"#;
//! let p: Profile = Complaints::new(&input[..], Format::Auto, &ValidationOptions::default()).collect();
//! assert_eq!((p.records_read, p.valid, p.rejected), (2, 1, 1));
//! assert_eq!(p.rejected_by_kind["unparseable_date"], 1);
//! assert_eq!(p.labels["relief"].positive, 1);
//! assert!(p.to_markdown().contains("| Mortgage | 1 |"));
//! ```

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::RecordError;
use crate::label::LabelPolicy;
use crate::schema::{CompanyResponse, Complaint, JSON_FIELDS};

/// `submitted_via` values the CFPB uses.
pub const KNOWN_CHANNELS: [&str; 7] = [
    "Web",
    "Referral",
    "Phone",
    "Postal mail",
    "Fax",
    "Email",
    "Web Referral",
];

/// `consumer_consent_provided` values the CFPB uses.
pub const KNOWN_CONSENT: [&str; 5] = [
    "Consent provided",
    "Consent not provided",
    "Consent withdrawn",
    "N/A",
    "Other",
];

/// Counts of a label policy's outcomes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelBalance {
    /// Complaints with a final outcome.
    pub labelled: u64,
    /// Of those, successful resolutions.
    pub positive: u64,
    /// Complaints without a final outcome (in progress / no response).
    pub unlabelled: u64,
}

impl LabelBalance {
    /// `positive / labelled` (0 when nothing is labelled).
    pub fn positive_rate(&self) -> f64 {
        ratio(self.positive, self.labelled)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// A data-quality profile. Build it with `collect()` / [`Profile::add`] over read results.
/// Rates are computed from the counts on output, so the profile can keep growing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Records read (valid + rejected).
    pub records_read: u64,
    /// Records that passed validation.
    pub valid: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Rejections by [`crate::error::ErrorKind`] name.
    pub rejected_by_kind: BTreeMap<String, u64>,
    /// Duplicate complaint ids (also counted in `rejected_by_kind.duplicate_id`).
    pub duplicates: u64,
    /// Missing (null / empty) values per field among valid records.
    pub missing: BTreeMap<String, u64>,
    /// Earliest `date_received`.
    pub first_date: Option<NaiveDate>,
    /// Latest `date_received`.
    pub last_date: Option<NaiveDate>,
    /// Records whose `date_sent_to_company` is earlier than `date_received` (within the
    /// tolerated day; larger gaps are rejections).
    pub sent_before_received: u64,
    /// Values outside the known CFPB domain, by field (`company_response`, `submitted_via`,
    /// `consumer_consent_provided`) and value.
    pub domain_violations: BTreeMap<String, BTreeMap<String, u64>>,
    /// Valid records by product.
    pub by_product: BTreeMap<String, u64>,
    /// Valid records by state (`(missing)` for none).
    pub by_state: BTreeMap<String, u64>,
    /// Valid records by year received.
    pub by_year: BTreeMap<i32, u64>,
    /// Valid records by month received (`YYYY-MM`).
    pub by_month: BTreeMap<String, u64>,
    /// Valid records by `submitted_via`.
    pub by_channel: BTreeMap<String, u64>,
    /// Valid records by `company_response`.
    pub by_company_response: BTreeMap<String, u64>,
    /// Label balance per policy name (`relief`, `closed`).
    pub labels: BTreeMap<String, LabelBalance>,
    /// Label balance by product, per policy name.
    pub resolution_by_product: BTreeMap<String, BTreeMap<String, LabelBalance>>,
    /// Label balance by state, per policy name.
    pub resolution_by_state: BTreeMap<String, BTreeMap<String, LabelBalance>>,
}

const MISSING: &str = "(missing)";

fn bump<K: Ord>(m: &mut BTreeMap<K, u64>, k: K) {
    *m.entry(k).or_insert(0) += 1;
}

fn key(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| MISSING.to_string())
}

impl Profile {
    /// An empty profile.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one read result.
    pub fn add(&mut self, r: &Result<Complaint, RecordError>) {
        self.records_read += 1;
        match r {
            Err(e) => {
                self.rejected += 1;
                bump(&mut self.rejected_by_kind, e.kind.as_str().to_string());
                if e.kind == crate::error::ErrorKind::DuplicateId {
                    self.duplicates += 1;
                }
            }
            Ok(c) => self.add_valid(c),
        }
    }

    fn add_valid(&mut self, c: &Complaint) {
        self.valid += 1;
        let present = [
            true,
            c.product.is_some(),
            c.sub_product.is_some(),
            c.issue.is_some(),
            c.sub_issue.is_some(),
            c.narrative().is_some(),
            c.company_public_response.is_some(),
            c.company.is_some(),
            c.state.is_some(),
            c.zip_code.is_some(),
            !c.tags.is_empty(),
            c.consumer_consent_provided.is_some(),
            c.submitted_via.is_some(),
            c.date_sent_to_company.is_some(),
            c.company_response.is_some(),
            c.timely.is_some(),
            c.consumer_disputed.is_some(),
            true,
        ];
        for (name, p) in JSON_FIELDS.iter().zip(present) {
            let e = self.missing.entry((*name).to_string()).or_insert(0);
            if !p {
                *e += 1;
            }
        }
        let d = c.date_received;
        self.first_date = Some(self.first_date.map_or(d, |f| f.min(d)));
        self.last_date = Some(self.last_date.map_or(d, |l| l.max(d)));
        if c.date_sent_to_company.is_some_and(|s| s < d) {
            self.sent_before_received += 1;
        }
        if let Some(CompanyResponse::Other(v)) = &c.company_response {
            self.violation("company_response", v);
        }
        if let Some(v) = &c.submitted_via {
            if !KNOWN_CHANNELS.contains(&v.as_str()) {
                self.violation("submitted_via", v);
            }
        }
        if let Some(v) = &c.consumer_consent_provided {
            if !KNOWN_CONSENT.contains(&v.as_str()) {
                self.violation("consumer_consent_provided", v);
            }
        }
        let product = key(&c.product);
        let state = c
            .state
            .map(|s| s.code().to_string())
            .unwrap_or_else(|| MISSING.to_string());
        bump(&mut self.by_product, product.clone());
        bump(&mut self.by_state, state.clone());
        bump(&mut self.by_year, d.year());
        bump(
            &mut self.by_month,
            format!("{:04}-{:02}", d.year(), d.month()),
        );
        bump(&mut self.by_channel, key(&c.submitted_via));
        bump(
            &mut self.by_company_response,
            c.company_response
                .as_ref()
                .map(|r| r.as_str().to_string())
                .unwrap_or_else(|| MISSING.to_string()),
        );
        for policy in [LabelPolicy::Relief, LabelPolicy::Closed] {
            let label = policy.label(c);
            let name = policy.name().to_string();
            tally(self.labels.entry(name.clone()).or_default(), label);
            tally(
                self.resolution_by_product
                    .entry(name.clone())
                    .or_default()
                    .entry(product.clone())
                    .or_default(),
                label,
            );
            tally(
                self.resolution_by_state
                    .entry(name)
                    .or_default()
                    .entry(state.clone())
                    .or_default(),
                label,
            );
        }
    }

    fn violation(&mut self, field: &str, value: &str) {
        bump(
            self.domain_violations.entry(field.to_string()).or_default(),
            value.to_string(),
        );
    }

    /// Share of valid records missing each field.
    pub fn missing_rates(&self) -> BTreeMap<String, f64> {
        self.missing
            .iter()
            .map(|(k, v)| (k.clone(), ratio(*v, self.valid)))
            .collect()
    }

    /// The profile as pretty JSON, with the derived rates (`missing_rate`, `positive_rate`s)
    /// added.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "missing_rate".into(),
                serde_json::to_value(self.missing_rates()).unwrap_or_default(),
            );
            let rates: BTreeMap<&String, f64> = self
                .labels
                .iter()
                .map(|(k, b)| (k, b.positive_rate()))
                .collect();
            obj.insert(
                "positive_rate".into(),
                serde_json::to_value(rates).unwrap_or_default(),
            );
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// The profile as a Markdown report.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let pct = |a: u64, b: u64| format!("{:.1}%", 100.0 * ratio(a, b));
        let _ = writeln!(s, "# Data-quality report\n");
        let _ = writeln!(
            s,
            "- records read: {}; valid: {}; rejected: {} ({})",
            self.records_read,
            self.valid,
            self.rejected,
            pct(self.rejected, self.records_read)
        );
        let _ = writeln!(s, "- duplicate complaint ids: {}", self.duplicates);
        if let (Some(a), Some(b)) = (self.first_date, self.last_date) {
            let _ = writeln!(s, "- date_received from {a} to {b}");
        }
        let _ = writeln!(
            s,
            "- date_sent_to_company one day before date_received (tolerated): {}",
            self.sent_before_received
        );
        if !self.rejected_by_kind.is_empty() {
            let _ = writeln!(
                s,
                "\n## Rejected records by kind\n\n| kind | records |\n|---|---:|"
            );
            for (k, v) in &self.rejected_by_kind {
                let _ = writeln!(s, "| {k} | {v} |");
            }
        }
        let _ = writeln!(
            s,
            "\n## Missing values (valid records)\n\n| field | missing | rate |\n|---|---:|---:|"
        );
        for f in JSON_FIELDS {
            if let Some(m) = self.missing.get(f) {
                let _ = writeln!(s, "| {f} | {m} | {} |", pct(*m, self.valid));
            }
        }
        if !self.domain_violations.is_empty() {
            let _ = writeln!(s, "\n## Values outside the known CFPB domain\n\n| field | value | records |\n|---|---|---:|");
            for (f, vals) in &self.domain_violations {
                for (v, n) in vals {
                    let _ = writeln!(s, "| {f} | {} | {n} |", md(v));
                }
            }
        }
        let _ = writeln!(s, "\n## Label balance\n\n| policy | labelled | positive | rate | unlabelled |\n|---|---:|---:|---:|---:|");
        for (p, b) in &self.labels {
            let _ = writeln!(
                s,
                "| {p} | {} | {} | {} | {} |",
                b.labelled,
                b.positive,
                pct(b.positive, b.labelled),
                b.unlabelled
            );
        }
        table(
            &mut s,
            "Records by year",
            "year",
            self.by_year.iter().map(|(k, v)| (k.to_string(), *v)),
        );
        table(
            &mut s,
            "Records by product",
            "product",
            sorted(&self.by_product),
        );
        table(
            &mut s,
            "Records by channel (submitted_via)",
            "channel",
            sorted(&self.by_channel),
        );
        table(
            &mut s,
            "Records by company response",
            "company_response",
            sorted(&self.by_company_response),
        );
        table(&mut s, "Records by state", "state", sorted(&self.by_state));
        for (title, by) in [
            ("product", &self.resolution_by_product),
            ("state", &self.resolution_by_state),
        ] {
            for (policy, m) in by {
                let _ = writeln!(
                    s,
                    "\n## Resolution rate by {title} (policy `{policy}`)\n\n| {title} | labelled | positive | rate |\n|---|---:|---:|---:|"
                );
                let mut rows: Vec<_> = m.iter().collect();
                rows.sort_by(|a, b| b.1.labelled.cmp(&a.1.labelled).then(a.0.cmp(b.0)));
                for (k, b) in rows {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} |",
                        md(k),
                        b.labelled,
                        b.positive,
                        pct(b.positive, b.labelled)
                    );
                }
            }
        }
        s
    }
}

fn tally(b: &mut LabelBalance, label: Option<bool>) {
    match label {
        None => b.unlabelled += 1,
        Some(p) => {
            b.labelled += 1;
            if p {
                b.positive += 1;
            }
        }
    }
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn sorted(m: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn table(s: &mut String, title: &str, col: &str, rows: impl IntoIterator<Item = (String, u64)>) {
    use std::fmt::Write;
    let _ = writeln!(s, "\n## {title}\n\n| {col} | records |\n|---|---:|");
    for (k, v) in rows {
        let _ = writeln!(s, "| {} | {v} |", md(&k));
    }
}

impl<'a> FromIterator<&'a Result<Complaint, RecordError>> for Profile {
    fn from_iter<I: IntoIterator<Item = &'a Result<Complaint, RecordError>>>(it: I) -> Self {
        let mut p = Profile::new();
        for r in it {
            p.add(r);
        }
        p
    }
}

impl FromIterator<Result<Complaint, RecordError>> for Profile {
    fn from_iter<I: IntoIterator<Item = Result<Complaint, RecordError>>>(it: I) -> Self {
        let mut p = Profile::new();
        for r in it {
            p.add(&r);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, RecordError};
    use crate::schema::{UsState, YesNo};

    #[test]
    fn counts_by_hand() {
        let d = NaiveDate::from_ymd_opt(2019, 9, 24).unwrap();
        let mut a = Complaint::minimal(1, d);
        a.product = Some("Mortgage".into());
        a.state = UsState::parse("CA");
        a.company_response = Some(CompanyResponse::ClosedWithMonetaryRelief);
        a.timely = Some(YesNo::Yes);
        a.submitted_via = Some("Carrier pigeon".into());
        let mut b = Complaint::minimal(2, d.with_year(2020).unwrap());
        b.product = Some("Mortgage".into());
        b.company_response = Some(CompanyResponse::ClosedWithExplanation);
        b.timely = Some(YesNo::Yes);
        let mut c = Complaint::minimal(3, d);
        c.company_response = Some(CompanyResponse::InProgress);
        let results = [
            Ok(a),
            Ok(b),
            Ok(c),
            Err(RecordError::new(ErrorKind::DuplicateId, "dup")),
            Err(RecordError::new(ErrorKind::BadYesNo, "x")),
        ];
        let p: Profile = results.iter().collect();
        assert_eq!(
            (p.records_read, p.valid, p.rejected, p.duplicates),
            (5, 3, 2, 1)
        );
        assert_eq!(p.missing["product"], 1);
        assert_eq!(p.missing["state"], 2);
        assert_eq!(p.missing["complaint_id"], 0);
        assert_eq!(p.by_year[&2019], 2);
        assert_eq!(p.by_month["2020-09"], 1);
        assert_eq!(
            p.labels["relief"],
            LabelBalance {
                labelled: 2,
                positive: 1,
                unlabelled: 1
            }
        );
        assert_eq!(p.labels["closed"].positive, 2);
        assert_eq!(
            p.resolution_by_product["relief"]["Mortgage"].positive_rate(),
            0.5
        );
        assert_eq!(p.resolution_by_state["relief"]["CA"].positive, 1);
        assert_eq!(p.domain_violations["submitted_via"]["Carrier pigeon"], 1);
        let md = p.to_markdown();
        assert!(md.contains("| duplicate_id | 1 |"));
        assert!(md.contains("| relief | 2 | 1 | 50.0% | 1 |"));
        let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(json["missing_rate"]["state"], 2.0 / 3.0);
        assert_eq!(json["positive_rate"]["relief"], 0.5);
        let back: Profile = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
