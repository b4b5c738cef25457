//! The 18-field CFPB complaint schema, typed.
//!
//! [`Complaint`] is the validated, typed form of one record. Its serde representation is the
//! CFPB JSON export (field names `date_received`, …, `complaint_id`; dates as `YYYY-MM-DD`;
//! missing values as `null`), so a `Complaint` serialized with `serde_json` reads back as the
//! same `Complaint`. Lenient parsing of records as found in the wild (CSV headers, other date
//! formats, `true`/`false`, `None`, …) lives in the readers, which produce `Complaint`s.
//!
//! ```
//! use complaintflow_datasets::schema::{Complaint, YesNo, CompanyResponse, UsState};
//! let json = r#"{"date_received":"2019-09-24","product":"Debt collection","sub_product":null,
//!   "issue":"Attempts to collect debt not owed","sub_issue":null,"complaint_what_happened":null,
//!   "company_public_response":null,"company":"TRANSWORLD SYSTEMS INC","state":"FL",
//!   "zip_code":"335XX","tags":"Servicemember","consumer_consent_provided":"N/A",
//!   "submitted_via":"Web","date_sent_to_company":"2019-09-24",
//!   "company_response":"Closed with explanation","timely":"Yes","consumer_disputed":"N/A",
//!   "complaint_id":"3384392"}"#;
//! let c: Complaint = serde_json::from_str(json).unwrap();
//! assert_eq!(c.complaint_id.0, 3384392);
//! assert_eq!(c.timely, Some(YesNo::Yes));
//! assert_eq!(c.consumer_disputed, Some(YesNo::NotApplicable));
//! assert_eq!(c.company_response, Some(CompanyResponse::ClosedWithExplanation));
//! assert_eq!(c.state, UsState::parse("FL"));
//! assert!(c.tags.servicemember());
//! let back: Complaint = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
//! assert_eq!(back, c);
//! ```

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The JSON field names of the CFPB export, in export order.
pub const JSON_FIELDS: [&str; 18] = [
    "date_received",
    "product",
    "sub_product",
    "issue",
    "sub_issue",
    "complaint_what_happened",
    "company_public_response",
    "company",
    "state",
    "zip_code",
    "tags",
    "consumer_consent_provided",
    "submitted_via",
    "date_sent_to_company",
    "company_response",
    "timely",
    "consumer_disputed",
    "complaint_id",
];

/// The CSV export's column headers, in the same order as [`JSON_FIELDS`].
pub const CSV_HEADERS: [&str; 18] = [
    "Date received",
    "Product",
    "Sub-product",
    "Issue",
    "Sub-issue",
    "Consumer complaint narrative",
    "Company public response",
    "Company",
    "State",
    "ZIP code",
    "Tags",
    "Consumer consent provided?",
    "Submitted via",
    "Date sent to company",
    "Company response to consumer",
    "Timely response?",
    "Consumer disputed?",
    "Complaint ID",
];

/// A CFPB complaint id (numeric in every CFPB export; written as a string in the JSON export).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ComplaintId(pub u64);

impl fmt::Display for ComplaintId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for ComplaintId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse::<u64>().map(ComplaintId)
    }
}

impl Serialize for ComplaintId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ComplaintId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ComplaintId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a complaint id (digits, as a string or a number)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ComplaintId, E> {
                Ok(ComplaintId(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ComplaintId, E> {
                u64::try_from(v)
                    .map(ComplaintId)
                    .map_err(|_| E::custom(format!("negative complaint id {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ComplaintId, E> {
                v.parse()
                    .map_err(|_| E::custom(format!("complaint id {v:?} is not a number")))
            }
        }
        // Self-describing formats (JSON) may hold a string or a number; binary formats
        // (bincode, between timely workers) hold exactly what `serialize` wrote: a string.
        if d.is_human_readable() {
            d.deserialize_any(V)
        } else {
            d.deserialize_str(V)
        }
    }
}

/// `Yes` / `No` / `N/A` answers (`timely`, `consumer_disputed`). A missing value is `None` in
/// the [`Complaint`], which keeps `N/A` (the CFPB's "not collected") distinct from missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum YesNo {
    /// `Yes` (also read from `true`, `Y`).
    Yes,
    /// `No` (also read from `false`, `N`).
    No,
    /// `N/A`: the question did not apply or was not collected.
    #[serde(rename = "N/A")]
    NotApplicable,
}

impl YesNo {
    /// Parses the spellings found in CFPB exports and their re-saved copies. Empty strings and
    /// `None`/`null` mean missing and give `Ok(None)`; anything else unknown is an error.
    #[allow(clippy::result_unit_err)] // public shape kept: the caller names the field
    pub fn parse(s: &str) -> Result<Option<YesNo>, ()> {
        let t = s.trim();
        if is_missing(t) {
            return Ok(None);
        }
        match t.to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "1" => Ok(Some(YesNo::Yes)),
            "no" | "n" | "false" | "0" => Ok(Some(YesNo::No)),
            "n/a" | "na" | "not applicable" => Ok(Some(YesNo::NotApplicable)),
            _ => Err(()),
        }
    }

    /// The CFPB spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            YesNo::Yes => "Yes",
            YesNo::No => "No",
            YesNo::NotApplicable => "N/A",
        }
    }
}

/// `company_response` (Company response to consumer).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CompanyResponse {
    /// Closed with explanation
    ClosedWithExplanation,
    /// Closed with monetary relief
    ClosedWithMonetaryRelief,
    /// Closed with non-monetary relief
    ClosedWithNonMonetaryRelief,
    /// Closed with relief (pre-2015 wording)
    ClosedWithRelief,
    /// Closed without relief (pre-2015 wording)
    ClosedWithoutRelief,
    /// Closed
    Closed,
    /// In progress (not final: no label)
    InProgress,
    /// Untimely response
    UntimelyResponse,
    /// Any other wording, kept verbatim.
    Other(String),
}

impl CompanyResponse {
    /// Parses a response; empty strings mean missing (`None`). Matching ignores case and
    /// surrounding white space; unknown wordings become [`CompanyResponse::Other`].
    pub fn parse(s: &str) -> Option<CompanyResponse> {
        let t = s.trim();
        if is_missing(t) {
            return None;
        }
        Some(match t.to_ascii_lowercase().as_str() {
            "closed with explanation" => CompanyResponse::ClosedWithExplanation,
            "closed with monetary relief" => CompanyResponse::ClosedWithMonetaryRelief,
            "closed with non-monetary relief" => CompanyResponse::ClosedWithNonMonetaryRelief,
            "closed with relief" => CompanyResponse::ClosedWithRelief,
            "closed without relief" => CompanyResponse::ClosedWithoutRelief,
            "closed" => CompanyResponse::Closed,
            "in progress" => CompanyResponse::InProgress,
            "untimely response" => CompanyResponse::UntimelyResponse,
            _ => CompanyResponse::Other(t.to_string()),
        })
    }

    /// The CFPB wording.
    pub fn as_str(&self) -> &str {
        match self {
            CompanyResponse::ClosedWithExplanation => "Closed with explanation",
            CompanyResponse::ClosedWithMonetaryRelief => "Closed with monetary relief",
            CompanyResponse::ClosedWithNonMonetaryRelief => "Closed with non-monetary relief",
            CompanyResponse::ClosedWithRelief => "Closed with relief",
            CompanyResponse::ClosedWithoutRelief => "Closed without relief",
            CompanyResponse::Closed => "Closed",
            CompanyResponse::InProgress => "In progress",
            CompanyResponse::UntimelyResponse => "Untimely response",
            CompanyResponse::Other(s) => s,
        }
    }

    /// True for the responses that grant relief (monetary, non-monetary, or the old "relief").
    pub fn is_relief(&self) -> bool {
        matches!(
            self,
            CompanyResponse::ClosedWithMonetaryRelief
                | CompanyResponse::ClosedWithNonMonetaryRelief
                | CompanyResponse::ClosedWithRelief
        )
    }

    /// True when the company has not answered yet (no label can be derived).
    pub fn is_pending(&self) -> bool {
        matches!(self, CompanyResponse::InProgress)
    }
}

impl Serialize for CompanyResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CompanyResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CompanyResponse::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("empty company_response: use null"))
    }
}

/// US states, DC, territories, freely associated states and military post codes, as the CFPB
/// uses them.
pub const US_STATE_CODES: [&str; 63] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", // 50 states
    "DC", // district
    "PR", "GU", "VI", "AS", "MP", "UM", // territories
    "FM", "MH", "PW", // freely associated states
    "AA", "AE", "AP", // armed forces
];

/// A validated two-letter state / territory / military code (one of [`US_STATE_CODES`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsState(u8);

impl UsState {
    /// Parses a code (case-insensitive, trimmed). `None` when it is not a known code.
    pub fn parse(s: &str) -> Option<UsState> {
        let t = s.trim();
        if t.len() != 2 {
            return None;
        }
        US_STATE_CODES
            .iter()
            .position(|c| c.eq_ignore_ascii_case(t))
            .map(|i| UsState(i as u8))
    }

    /// The two-letter code.
    pub fn code(self) -> &'static str {
        US_STATE_CODES[self.0 as usize]
    }
}

impl fmt::Debug for UsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for UsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for UsState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for UsState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UsState::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown US state code {s:?}")))
    }
}

/// The CFPB `tags` field: a small set of `Servicemember` and `Older American`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tags(u8);

impl Tags {
    const SERVICEMEMBER: u8 = 1;
    const OLDER_AMERICAN: u8 = 2;

    /// No tags.
    pub const NONE: Tags = Tags(0);

    /// Builds a set from its two flags.
    pub fn new(servicemember: bool, older_american: bool) -> Tags {
        Tags(
            if servicemember {
                Self::SERVICEMEMBER
            } else {
                0
            } | if older_american {
                Self::OLDER_AMERICAN
            } else {
                0
            },
        )
    }

    /// Parses `"Servicemember"`, `"Older American"`, `"Older American, Servicemember"` (any
    /// order, case-insensitive); empty means no tags. Unknown tags are an error naming the tag.
    pub fn parse(s: &str) -> Result<Tags, String> {
        let mut t = Tags::NONE;
        let s = s.trim();
        if is_missing(s) {
            return Ok(t);
        }
        for part in s.split([',', ';']) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            if p.eq_ignore_ascii_case("servicemember") {
                t.0 |= Self::SERVICEMEMBER;
            } else if p.eq_ignore_ascii_case("older american") {
                t.0 |= Self::OLDER_AMERICAN;
            } else {
                return Err(p.to_string());
            }
        }
        Ok(t)
    }

    /// The complaint was filed by or for a servicemember, veteran or military family.
    pub fn servicemember(self) -> bool {
        self.0 & Self::SERVICEMEMBER != 0
    }

    /// The consumer is 62 or older.
    pub fn older_american(self) -> bool {
        self.0 & Self::OLDER_AMERICAN != 0
    }

    /// True when no tag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The CFPB spelling (`None` for the empty set).
    pub fn as_cfpb(self) -> Option<&'static str> {
        match (self.older_american(), self.servicemember()) {
            (false, false) => None,
            (false, true) => Some("Servicemember"),
            (true, false) => Some("Older American"),
            (true, true) => Some("Older American, Servicemember"),
        }
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `serialize_some`, not `serialize_str`: the same JSON, and binary formats (bincode
        // between timely processes) need the Option tag that `deserialize` reads.
        match self.as_cfpb() {
            Some(v) => s.serialize_some(v),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s {
            None => Ok(Tags::NONE),
            Some(s) => {
                Tags::parse(&s).map_err(|t| serde::de::Error::custom(format!("unknown tag {t:?}")))
            }
        }
    }
}

/// One CFPB consumer complaint, validated and typed.
///
/// Every field but `complaint_id` and `date_received` may be missing (`None`). The serde names
/// are the CFPB JSON export names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Complaint {
    /// Date the CFPB received the complaint.
    pub date_received: NaiveDate,
    /// Product, e.g. `Debt collection`.
    pub product: Option<String>,
    /// Sub-product.
    pub sub_product: Option<String>,
    /// Issue.
    pub issue: Option<String>,
    /// Sub-issue.
    pub sub_issue: Option<String>,
    /// Consumer complaint narrative (published only with consent; redacted with `XXXX`).
    pub complaint_what_happened: Option<String>,
    /// Company public response. Known only after the company answers: never a feature.
    pub company_public_response: Option<String>,
    /// Company name.
    pub company: Option<String>,
    /// State, territory or military code.
    pub state: Option<UsState>,
    /// ZIP code as text (the CFPB masks it as `335XX`).
    pub zip_code: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Consumer consent provided?
    pub consumer_consent_provided: Option<String>,
    /// Submitted via (Web, Referral, Phone, …).
    pub submitted_via: Option<String>,
    /// Date the CFPB sent the complaint to the company.
    pub date_sent_to_company: Option<NaiveDate>,
    /// Company response to consumer. Part of the label: never a feature.
    pub company_response: Option<CompanyResponse>,
    /// Timely response? Part of the label: never a feature.
    pub timely: Option<YesNo>,
    /// Consumer disputed? Part of the label: never a feature.
    pub consumer_disputed: Option<YesNo>,
    /// Complaint id.
    pub complaint_id: ComplaintId,
}

impl Complaint {
    /// A complaint with only its two required fields set (every other field missing).
    ///
    /// ```
    /// use complaintflow_datasets::{Complaint, ComplaintId};
    /// let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
    /// assert!(c.product.is_none());
    /// ```
    pub fn new(complaint_id: ComplaintId, date_received: NaiveDate) -> Complaint {
        Complaint {
            date_received,
            product: None,
            sub_product: None,
            issue: None,
            sub_issue: None,
            complaint_what_happened: None,
            company_public_response: None,
            company: None,
            state: None,
            zip_code: None,
            tags: Tags::NONE,
            consumer_consent_provided: None,
            submitted_via: None,
            date_sent_to_company: None,
            company_response: None,
            timely: None,
            consumer_disputed: None,
            complaint_id,
        }
    }

    /// The narrative if present and non-empty.
    pub fn narrative(&self) -> Option<&str> {
        self.complaint_what_happened
            .as_deref()
            .filter(|s| !s.trim().is_empty())
    }

    /// A minimal complaint with only the required fields set; handy for tests and examples.
    /// Same as [`Complaint::new`] with a raw id.
    pub fn minimal(complaint_id: u64, date_received: NaiveDate) -> Complaint {
        Complaint::new(ComplaintId(complaint_id), date_received)
    }
}

/// True for the spellings of "no value" found in CFPB files and their re-saved copies
/// (empty, `None`, `null`, `NaN`). `N/A` is a value, not missing.
pub fn is_missing(s: &str) -> bool {
    // Fast path (most values): longer than every missing spelling and nothing to trim.
    if let (Some(first), Some(last)) = (s.as_bytes().first(), s.as_bytes().last()) {
        if s.len() > 4 && first.is_ascii_graphic() && last.is_ascii_graphic() {
            return false;
        }
    }
    let t = s.trim();
    t.is_empty()
        || t.eq_ignore_ascii_case("none")
        || t.eq_ignore_ascii_case("null")
        || t.eq_ignore_ascii_case("nan")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no_keeps_na_distinct_from_missing() {
        assert_eq!(YesNo::parse("N/A"), Ok(Some(YesNo::NotApplicable)));
        assert_eq!(YesNo::parse(""), Ok(None));
        assert_eq!(YesNo::parse("None"), Ok(None));
        assert_eq!(YesNo::parse("true"), Ok(Some(YesNo::Yes)));
        assert_eq!(YesNo::parse(" No "), Ok(Some(YesNo::No)));
        assert_eq!(YesNo::parse("maybe"), Err(()));
    }

    #[test]
    fn states_validate() {
        assert_eq!(UsState::parse("ca").map(UsState::code), Some("CA"));
        assert_eq!(UsState::parse("AE").map(UsState::code), Some("AE"));
        assert_eq!(UsState::parse("ZZ"), None);
        assert_eq!(UsState::parse("CAL"), None);
    }

    #[test]
    fn tags_round_trip_and_reject_unknown() {
        let t = Tags::parse("Servicemember, Older American").unwrap();
        assert!(t.servicemember() && t.older_american());
        assert_eq!(t.as_cfpb(), Some("Older American, Servicemember"));
        assert_eq!(Tags::parse("VIP"), Err("VIP".to_string()));
        assert!(Tags::parse("").unwrap().is_empty());
    }

    #[test]
    fn company_response_other_is_kept() {
        assert_eq!(
            CompanyResponse::parse("closed with relief"),
            Some(CompanyResponse::ClosedWithRelief)
        );
        assert_eq!(
            CompanyResponse::parse("Settled"),
            Some(CompanyResponse::Other("Settled".into()))
        );
        assert_eq!(CompanyResponse::parse("  "), None);
    }
}
