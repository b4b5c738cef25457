//! `parse_complaints`: bytes → complaints, errors → dead letters with their typed kind.
//!
//! Data-parallel, one pass: the record's bytes are parsed in place and then *moved* into the
//! [`Parsed`] record (for `dedup_by_id`'s dead letters), never copied.
//!
//! ```
//! use complaintflow_operators::prelude::*;
//! use complaintflow_operators::record::Origin;
//! use complaintflow_datasets::ValidationOptions;
//! use timely::dataflow::operators::{Capture, Concat, ToStream};
//! use timely::dataflow::operators::capture::{Event, Extract};
//!
//! let (ok, dead) = timely::example(|scope| {
//!     let raw = vec![
//!         RawInput::new(br#"{"complaint_id":"1","date_received":"2020-01-02"}"#.to_vec(), Origin::file("x", 0)),
//!         RawInput::new(b"{not json".to_vec(), Origin::file("x", 1)),
//!         RawInput::new(br#"{"complaint_id":1,"date_received":"2020-01-03"}"#.to_vec(), Origin::file("x", 2)),
//!     ];
//!     let (ok, dead) = raw.to_stream(scope).container::<Vec<_>>().parse_complaints(&ValidationOptions::default());
//!     let (ok, dups) = ok.dedup_by_id();
//!     (ok.capture(), dead.concat(dups).capture())
//! });
//! let ok: Vec<Parsed> = ok.try_iter().flat_map(|e| match e { Event::Messages(_, v) => v, _ => vec![] }).collect();
//! let mut kinds: Vec<String> = dead.extract().into_iter().flat_map(|(_, v)| v).map(|d| d.kind).collect();
//! kinds.sort();
//! assert_eq!(ok.len(), 1);
//! assert_eq!(ok[0].origin.offset, 0); // the first occurrence is kept
//! assert_eq!(kinds, ["duplicate_id", "malformed_json"]);
//! ```

use complaintflow_datasets::{parse_json_record, ValidationOptions};
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::Stream;
use timely::progress::Timestamp;

use crate::record::{DeadLetter, Parsed, RawInput};

/// Parses and validates one raw record (the logic of [`ParseComplaints`]).
///
/// ```
/// use complaintflow_operators::parse::parse_raw;
/// use complaintflow_operators::record::{Origin, RawInput};
/// let raw = RawInput::new(br#"{"complaint_id":"9","date_received":"2020-13-45"}"#.to_vec(), Origin::file("x", 0));
/// let dead = parse_raw(raw, &Default::default()).unwrap_err();
/// assert_eq!(dead.kind, "unparseable_date");
/// assert_eq!(dead.complaint_id.as_deref(), Some("9"));
/// ```
// Both variants are records moved on at once (the `Ok` side, a complaint, is larger still):
// boxing the error would add an allocation per bad record for nothing.
#[allow(clippy::result_large_err)]
pub fn parse_raw(raw: RawInput, opts: &ValidationOptions) -> Result<Parsed, DeadLetter> {
    if let Some((kind, message)) = &raw.framing_error {
        return Err(DeadLetter::from_raw(&raw, kind, message.clone(), None));
    }
    match parse_json_record(&raw.bytes, opts) {
        Ok(complaint) => Ok(Parsed {
            complaint,
            origin: raw.origin,
            ingest_ms: raw.ingest_ms,
            raw: raw.bytes,
        }),
        // The dead letter carries kind, origin and id as fields: the message is the reason.
        Err(e) => Err(DeadLetter::from_raw(
            &raw,
            e.kind.as_str(),
            e.message,
            e.complaint_id,
        )),
    }
}

/// `parse_complaints`: bytes → complaints, errors → dead letters.
pub trait ParseComplaints<'s, T: Timestamp> {
    /// Splits raw records into parsed complaints and [`DeadLetter`]s whose `kind` is the
    /// typed error of the datasets crate (`ErrorKind::as_str`). Data-parallel: no exchange.
    /// See the [module example](self).
    fn parse_complaints(
        self,
        opts: &ValidationOptions,
    ) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>);
}

impl<'s, T: Timestamp> ParseComplaints<'s, T> for Stream<'s, T, Vec<RawInput>> {
    fn parse_complaints(
        self,
        opts: &ValidationOptions,
    ) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>) {
        let opts = opts.clone();
        #[allow(clippy::result_large_err)]
        self.ok_err(move |raw: RawInput| parse_raw(raw, &opts))
    }
}
