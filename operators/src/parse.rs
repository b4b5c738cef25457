//! `parse_complaints` (bytes → complaints, errors → dead letters) and `dedup_by_id`
//! (repeated complaint ids → dead letters `duplicate_id`).
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

use std::collections::{BTreeMap, HashSet};

use complaintflow_datasets::split::fmix64;
use complaintflow_datasets::{parse_json_record, ErrorKind, ValidationOptions};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
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

/// `dedup_by_id`: the second and later complaints with the same id become dead letters.
pub trait DedupById<'s, T: Timestamp + TotalOrder> {
    /// Exchanges complaints by (a hash of) their id, holds each epoch until it is complete,
    /// and within it keeps the occurrence with the smallest [`Origin`](crate::record::Origin)
    /// — so the result does not depend on the number of workers. Later occurrences (in this
    /// epoch or any later one) become [`DeadLetter`]s of kind `duplicate_id`.
    ///
    /// Memory: one `u64` per distinct id seen (≈ 16 MB per million ids, spread over workers).
    /// See the [module example](self).
    fn dedup_by_id(self) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>);
}

impl<'s, T: Timestamp + TotalOrder> DedupById<'s, T> for Stream<'s, T, Vec<Parsed>> {
    fn dedup_by_id(self) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>) {
        let mut builder = OperatorBuilder::new("DedupById".to_owned(), self.scope());
        let mut input = builder.new_input(
            self,
            Exchange::new(|p: &Parsed| fmix64(p.complaint.complaint_id.0)),
        );
        let (ok_out, ok_stream) = builder.new_output::<Vec<Parsed>>();
        let (dup_out, dup_stream) = builder.new_output::<Vec<DeadLetter>>();
        let mut ok_out = OutputBuilder::<T, CapacityContainerBuilder<Vec<Parsed>>>::from(ok_out);
        let mut dup_out =
            OutputBuilder::<T, CapacityContainerBuilder<Vec<DeadLetter>>>::from(dup_out);
        builder.build(move |_caps| {
            let mut seen: HashSet<u64> = HashSet::new();
            let mut stash: BTreeMap<T, (Vec<Capability<T>>, Vec<Parsed>)> = BTreeMap::new();
            move |frontiers| {
                input.for_each_stamp(|cap, data| {
                    let Some(t) = cap.least().cloned() else {
                        return;
                    };
                    let entry = stash.entry(t).or_insert_with(|| {
                        let caps = [cap.retain_least(0), cap.retain_least(1)];
                        (caps.into_iter().flatten().collect(), Vec::new())
                    });
                    for batch in data {
                        entry.1.append(batch);
                    }
                });
                let Some(frontier) = frontiers.first() else {
                    return;
                };
                let mut ok = ok_out.activate();
                let mut dup = dup_out.activate();
                while let Some(entry) = stash.first_entry() {
                    if frontier.frontier().less_equal(entry.key()) {
                        break;
                    }
                    let (caps, mut recs) = entry.remove();
                    let (Some(c0), Some(c1)) = (caps.first(), caps.get(1)) else {
                        continue;
                    };
                    recs.sort_by(|a, b| a.origin.cmp(&b.origin));
                    let mut ok_session = ok.session(c0);
                    let mut dup_session = dup.session(c1);
                    for p in recs {
                        let id = p.complaint.complaint_id.0;
                        if seen.insert(id) {
                            ok_session.give(p);
                        } else {
                            let bytes = serde_json::to_vec(&p.complaint).unwrap_or_default();
                            let raw = RawInput {
                                bytes,
                                origin: p.origin,
                                ingest_ms: p.ingest_ms,
                                framing_error: None,
                            };
                            dup_session.give(DeadLetter::from_raw(
                                &raw,
                                ErrorKind::DuplicateId.as_str(),
                                format!(
                                    "complaint_id {id} was already seen earlier in the stream; \
                                     this copy at {}#{} is not scored",
                                    raw.origin.source, raw.origin.offset
                                ),
                                Some(id.to_string()),
                            ));
                        }
                    }
                }
            }
        });
        (ok_stream, dup_stream)
    }
}
