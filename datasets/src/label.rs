//! Deriving the `SuccessfulResolution` label from a complaint's outcome fields.
//!
//! ```
//! use complaintflow_datasets::label::LabelPolicy;
//! use complaintflow_datasets::schema::{Complaint, CompanyResponse, YesNo};
//! let mut c = Complaint::minimal(1, chrono::NaiveDate::from_ymd_opt(2019, 9, 24).unwrap());
//! c.company_response = Some(CompanyResponse::ClosedWithMonetaryRelief);
//! c.timely = Some(YesNo::Yes);
//! c.consumer_disputed = Some(YesNo::NotApplicable);
//! assert_eq!(LabelPolicy::Relief.label(&c), Some(true));
//! c.company_response = Some(CompanyResponse::ClosedWithExplanation);
//! assert_eq!(LabelPolicy::Relief.label(&c), Some(false));
//! assert_eq!(LabelPolicy::Closed.label(&c), Some(true));
//! c.company_response = Some(CompanyResponse::InProgress);
//! assert_eq!(LabelPolicy::Relief.label(&c), None);
//! ```

use serde::{Deserialize, Serialize};

use crate::schema::{CompanyResponse, Complaint, ComplaintId, YesNo};

/// What an outcome record says about a complaint: its id and the response fields, which
/// arrive days after the complaint (`In progress` first, closed later, a dispute later still).
/// Read by [`crate::parse::parse_outcome_record`]; labelled by [`LabelPolicy::outcome_label`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Outcome {
    /// The complaint it is about.
    pub complaint_id: ComplaintId,
    /// Company response to consumer.
    pub company_response: Option<CompanyResponse>,
    /// Timely response?
    pub timely: Option<YesNo>,
    /// Consumer disputed?
    pub consumer_disputed: Option<YesNo>,
}

/// Which company responses count as a successful resolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelPolicy {
    /// Success = closed with (monetary / non-monetary) relief, on time, not disputed.
    #[default]
    Relief,
    /// Success = closed with relief *or an explanation*, on time, not disputed.
    Closed,
}

impl LabelPolicy {
    /// The policy's name as written in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LabelPolicy::Relief => "relief",
            LabelPolicy::Closed => "closed",
        }
    }

    /// `Some(true)` for a successful resolution, `Some(false)` for any other final outcome
    /// (other closed responses, untimely, `timely = No`, `consumer_disputed = Yes`), `None` when
    /// no final outcome is known yet (`In progress` or missing response).
    pub fn label(self, c: &Complaint) -> Option<bool> {
        self.label_of(c.company_response.as_ref(), c.timely, c.consumer_disputed)
    }

    /// The label of an [`Outcome`] (an outcome record: the response fields alone).
    ///
    /// ```
    /// use complaintflow_datasets::label::{LabelPolicy, Outcome};
    /// use complaintflow_datasets::{CompanyResponse, ComplaintId, YesNo};
    /// let mut o = Outcome { complaint_id: ComplaintId(1), company_response: Some(CompanyResponse::InProgress),
    ///                       timely: Some(YesNo::Yes), consumer_disputed: None };
    /// assert_eq!(LabelPolicy::Relief.outcome_label(&o), None);
    /// o.company_response = Some(CompanyResponse::ClosedWithMonetaryRelief);
    /// assert_eq!(LabelPolicy::Relief.outcome_label(&o), Some(true));
    /// o.consumer_disputed = Some(YesNo::Yes); // a dispute recorded later
    /// assert_eq!(LabelPolicy::Relief.outcome_label(&o), Some(false));
    /// ```
    pub fn outcome_label(self, o: &Outcome) -> Option<bool> {
        self.label_of(o.company_response.as_ref(), o.timely, o.consumer_disputed)
    }

    fn label_of(
        self,
        response: Option<&CompanyResponse>,
        timely: Option<YesNo>,
        disputed: Option<YesNo>,
    ) -> Option<bool> {
        let response = response?;
        if response.is_pending() {
            return None;
        }
        if timely == Some(YesNo::No) || disputed == Some(YesNo::Yes) {
            return Some(false);
        }
        let success_response = match self {
            LabelPolicy::Relief => response.is_relief(),
            LabelPolicy::Closed => {
                response.is_relief() || *response == CompanyResponse::ClosedWithExplanation
            }
        };
        Some(success_response && timely == Some(YesNo::Yes))
    }
}

impl std::str::FromStr for LabelPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "relief" => Ok(LabelPolicy::Relief),
            "closed" => Ok(LabelPolicy::Closed),
            other => Err(format!(
                "unknown label policy {other:?}: expected `relief` or `closed`"
            )),
        }
    }
}

impl std::fmt::Display for LabelPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
