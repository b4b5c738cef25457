//! `parse_outcomes`: outcome records (a complaint's response, days later) → labels, errors →
//! dead letters.
//!
//! An outcome record is any JSON object with `complaint_id` and at least one of
//! `company_response`, `timely`, `consumer_disputed` (under any accepted field name), so every
//! complaint record is also an outcome record. Its label follows the [`LabelPolicy`]: `Some`
//! for a final outcome, `None` while the company has not answered (`In progress`) — a `None`
//! after a `Some` withdraws the earlier label downstream.
//!
//! ```
//! use complaintflow_operators::outcome::{LabelledOutcome, ParseOutcomes};
//! use complaintflow_operators::record::{Origin, RawInput};
//! use complaintflow_datasets::{LabelPolicy, ValidationOptions};
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Extract;
//!
//! let (ok, dead) = timely::example(|scope| {
//!     let raw = vec![
//!         RawInput::new(br#"{"complaint_id":"1","company_response":"In progress"}"#.to_vec(), Origin::file("o", 0)),
//!         RawInput::new(br#"{"complaint_id":"1","company_response":"Closed with monetary relief","timely":"Yes"}"#.to_vec(), Origin::file("o", 1)),
//!         RawInput::new(br#"{"complaint_id":"2"}"#.to_vec(), Origin::file("o", 2)),
//!     ];
//!     let (ok, dead) = raw.to_stream(scope).container::<Vec<_>>()
//!         .parse_outcomes(&ValidationOptions::default(), LabelPolicy::Relief);
//!     (ok.capture(), dead.capture())
//! });
//! let ok: Vec<LabelledOutcome> = ok.extract().into_iter().flat_map(|(_, v)| v).collect();
//! assert_eq!(ok.iter().map(|o| o.label).collect::<Vec<_>>(), [None, Some(true)]);
//! let dead: Vec<_> = dead.extract().into_iter().flat_map(|(_, v)| v).collect();
//! assert_eq!((dead[0].kind.as_str(), dead[0].complaint_id.as_deref()), ("missing_field", Some("2")));
//! ```

use complaintflow_datasets::parse::parse_outcome_record;
use complaintflow_datasets::{LabelPolicy, ValidationOptions};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::Stream;
use timely::progress::Timestamp;

use crate::record::{DeadLetter, RawInput};

/// A complaint's outcome, labelled.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LabelledOutcome {
    /// The complaint.
    pub complaint_id: u64,
    /// `Some(true)`: resolved successfully; `Some(false)`: any other final outcome; `None`:
    /// no final outcome yet (withdraws an earlier label of the same complaint).
    pub label: Option<bool>,
    /// Where it was read, `(partition, offset)`: of two outcomes of one complaint in one
    /// partition, the one read later (larger offset) wins.
    pub offset: (i32, i64),
}

/// Reads one outcome record (the logic of [`ParseOutcomes`]).
///
/// ```
/// use complaintflow_operators::outcome::parse_outcome;
/// use complaintflow_operators::record::{Origin, RawInput};
/// use complaintflow_datasets::LabelPolicy;
/// let raw = RawInput::new(br#"{"complaint_id":"9","timely":"No"}"#.to_vec(), Origin::file("o", 4));
/// let o = parse_outcome(raw, &Default::default(), LabelPolicy::Relief).unwrap();
/// assert_eq!((o.complaint_id, o.label), (9, None)); // no response yet
/// ```
#[allow(clippy::result_large_err)]
pub fn parse_outcome(
    raw: RawInput,
    opts: &ValidationOptions,
    policy: LabelPolicy,
) -> Result<LabelledOutcome, DeadLetter> {
    if let Some((kind, message)) = &raw.framing_error {
        return Err(DeadLetter::from_raw(
            &raw,
            kind,
            format!("outcome record: {message}"),
            None,
        ));
    }
    match parse_outcome_record(&raw.bytes, opts) {
        Ok(o) => Ok(LabelledOutcome {
            complaint_id: o.complaint_id.0,
            label: policy.outcome_label(&o),
            offset: (raw.origin.partition, raw.origin.offset),
        }),
        Err(e) => Err(DeadLetter::from_raw(
            &raw,
            e.kind.as_str(),
            format!("outcome record: {}", e.message),
            e.complaint_id,
        )),
    }
}

/// `parse_outcomes`: raw outcome records → [`LabelledOutcome`]s and [`DeadLetter`]s.
pub trait ParseOutcomes<'s, T: Timestamp> {
    /// Reads outcome records with `policy`; a record that is not one becomes a dead letter
    /// of its typed kind, its message starting `outcome record:`. Data-parallel: no
    /// exchange. See the [module example](self).
    fn parse_outcomes(
        self,
        opts: &ValidationOptions,
        policy: LabelPolicy,
    ) -> (
        Stream<'s, T, Vec<LabelledOutcome>>,
        Stream<'s, T, Vec<DeadLetter>>,
    );
}

impl<'s, T: Timestamp> ParseOutcomes<'s, T> for Stream<'s, T, Vec<RawInput>> {
    fn parse_outcomes(
        self,
        opts: &ValidationOptions,
        policy: LabelPolicy,
    ) -> (
        Stream<'s, T, Vec<LabelledOutcome>>,
        Stream<'s, T, Vec<DeadLetter>>,
    ) {
        let opts = opts.clone();
        #[allow(clippy::result_large_err)]
        self.ok_err(move |raw: RawInput| parse_outcome(raw, &opts, policy))
    }
}
