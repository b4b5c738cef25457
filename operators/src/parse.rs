//! `parse_complaints`: bytes → complaints, errors → dead letters with their typed kind.
//!
//! Data-parallel, one pass: the record's bytes are parsed in place and then *moved* into the
//! [`Parsed`] record (for `dedup_by_id`'s dead letters), never copied. Each input batch
//! becomes one output batch of the same size (not timely's default of 8 KB of records, which
//! is about 16 complaints).
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
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Stream;
use timely::progress::operate::FrontierInterest;
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
        let mut builder = OperatorBuilder::new("ParseComplaints".to_owned(), self.scope());
        let mut input = builder.new_input(self, Pipeline);
        builder.set_notify_for(0, FrontierInterest::Never);
        let (ok_out, ok_stream) = builder.new_output::<Vec<Parsed>>();
        let (dead_out, dead_stream) = builder.new_output::<Vec<DeadLetter>>();
        let mut ok_out = OutputBuilder::<T, CapacityContainerBuilder<Vec<Parsed>>>::from(ok_out);
        let mut dead_out =
            OutputBuilder::<T, CapacityContainerBuilder<Vec<DeadLetter>>>::from(dead_out);
        builder.build(move |_caps| {
            move |_frontiers| {
                let mut ok = ok_out.activate();
                let mut dead = dead_out.activate();
                input.for_each_stamp(|cap, data| {
                    let mut ok = ok.session(&cap);
                    let mut dead = dead.session(&cap);
                    for batch in data {
                        // One output batch per input batch (timely's default buffer would cut
                        // a stream of complaints, ~0.5 KB each, into batches of ~16).
                        let mut parsed = Vec::with_capacity(batch.len());
                        for raw in batch.drain(..) {
                            match parse_raw(raw, &opts) {
                                Ok(p) => parsed.push(p),
                                Err(d) => dead.give(d),
                            }
                        }
                        if !parsed.is_empty() {
                            ok.give_container(&mut parsed);
                        }
                    }
                });
            }
        });
        (ok_stream, dead_stream)
    }
}
