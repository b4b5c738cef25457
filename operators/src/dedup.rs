//! `dedup_by_id`: the second and later complaints with the same id become dead letters
//! `duplicate_id`, holding the bytes that were read.
//!
//! ```
//! use complaintflow_operators::prelude::*;
//! use complaintflow_operators::record::Origin;
//! use complaintflow_datasets::ValidationOptions;
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::{Event, Extract};
//!
//! let (ok, dups) = timely::example(|scope| {
//!     let raw = vec![
//!         RawInput::new(br#"{"complaint_id":"1","date_received":"2020-01-02"}"#.to_vec(), Origin::file("x", 0)),
//!         RawInput::new(br#"{"complaint_id":1, "date_received":"2020-01-03"}"#.to_vec(), Origin::file("x", 1)),
//!     ];
//!     let (ok, _dead) = raw.to_stream(scope).container::<Vec<_>>().parse_complaints(&ValidationOptions::default());
//!     let (ok, dups) = ok.dedup_by_id();
//!     (ok.capture(), dups.capture())
//! });
//! let ok: Vec<Parsed> = ok.try_iter().flat_map(|e| match e { Event::Messages(_, v) => v, _ => vec![] }).collect();
//! let dups: Vec<DeadLetter> = dups.extract().into_iter().flat_map(|(_, v)| v).collect();
//! assert_eq!((ok.len(), ok[0].origin.offset), (1, 0)); // the first occurrence is kept
//! assert_eq!(dups[0].kind, "duplicate_id");
//! assert_eq!(dups[0].raw, r#"{"complaint_id":1, "date_received":"2020-01-03"}"#); // as read
//! ```

use complaintflow_datasets::split::fmix64;
use complaintflow_datasets::ErrorKind;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::record::{DeadLetter, Parsed};
use crate::stash::Stash;

use crate::decide::AsEpoch;
use crate::seen_log::{SeenLog, SeenSet};

/// `dedup_by_id`: the second and later complaints with the same id become dead letters.
pub trait DedupById<'s, T: Timestamp + TotalOrder> {
    /// Exchanges complaints by (a hash of) their id, holds each epoch until it is complete,
    /// and within it keeps the occurrence with the smallest [`Origin`](crate::record::Origin)
    /// — so the result does not depend on the number of workers. Later occurrences (in this
    /// epoch or any later one) become [`DeadLetter`]s of kind `duplicate_id` with the bytes
    /// that were read (re-serialized only for a duplicate that crossed processes). The kept
    /// records leave without their bytes ([`Parsed::raw`] emptied).
    ///
    /// Memory: one `u64` per distinct id seen (≈ 16 MB per million ids, spread over workers).
    /// See the [module example](self).
    fn dedup_by_id(self) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>);

    /// [`dedup_by_id`](DedupById::dedup_by_id) starting from the ids in `seen` and, with a
    /// `log`, appending every epoch's admitted ids to it before the epoch's output is released
    /// (a restart from a checkpoint loads them back: [`crate::seen_log`]).
    fn dedup_by_id_logged(
        self,
        seen: SeenSet,
        log: Option<SeenLog>,
    ) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>)
    where
        T: AsEpoch;
}

impl<'s, T: Timestamp + TotalOrder> DedupById<'s, T> for Stream<'s, T, Vec<Parsed>> {
    fn dedup_by_id(self) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>) {
        dedup(self, SeenSet::default(), None::<(SeenLog, fn(&T) -> u64)>)
    }

    fn dedup_by_id_logged(
        self,
        seen: SeenSet,
        log: Option<SeenLog>,
    ) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>)
    where
        T: AsEpoch,
    {
        dedup(self, seen, log.map(|l| (l, |t: &T| t.as_epoch())))
    }
}

fn dedup<'s, T: Timestamp + TotalOrder, E: Fn(&T) -> u64 + 'static>(
    stream: Stream<'s, T, Vec<Parsed>>,
    mut seen: SeenSet,
    mut log: Option<(SeenLog, E)>,
) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>) {
    let this = stream;
    let mut builder = OperatorBuilder::new("DedupById".to_owned(), this.scope());
    let mut input = builder.new_input(
        this,
        Exchange::new(|p: &Parsed| fmix64(p.complaint.complaint_id.0)),
    );
    let (ok_out, ok_stream) = builder.new_output::<Vec<Parsed>>();
    let (dup_out, dup_stream) = builder.new_output::<Vec<DeadLetter>>();
    let mut ok_out = OutputBuilder::<T, CapacityContainerBuilder<Vec<Parsed>>>::from(ok_out);
    let mut dup_out = OutputBuilder::<T, CapacityContainerBuilder<Vec<DeadLetter>>>::from(dup_out);
    builder.build(move |_caps| {
        let mut admitted: Vec<u64> = Vec::new();
        let mut stash: Stash<T, Vec<Parsed>> = Stash::new(&[0, 1]);
        move |frontiers| {
            input.for_each_stamp(|cap, data| {
                if let Some(recs) = stash.at(&cap) {
                    for batch in data {
                        recs.append(batch);
                    }
                }
            });
            let Some(frontier) = frontiers.first() else {
                return;
            };
            let mut ok = ok_out.activate();
            let mut dup = dup_out.activate();
            while let Some((t, caps, mut recs)) = stash.pop_complete(frontier.frontier()) {
                let (Some(c0), Some(c1)) = (caps.first(), caps.get(1)) else {
                    continue;
                };
                // Records of one source arrive in order: sort only when they do not.
                if !recs.is_sorted_by(|a, b| a.origin <= b.origin) {
                    recs.sort_by(|a, b| a.origin.cmp(&b.origin));
                }
                let mut ok_session = ok.session(c0);
                let mut dup_session = dup.session(c1);
                for mut p in recs {
                    let id = p.complaint.complaint_id.0;
                    if seen.insert(id) {
                        if log.is_some() {
                            admitted.push(id);
                        }
                        p.raw = Vec::new();
                        ok_session.give(p);
                    } else {
                        dup_session.give(duplicate(p));
                    }
                }
                // The log holds the epoch before its output's capabilities drop.
                if let Some((l, epoch_of)) = log.as_mut() {
                    l.append(epoch_of(&t), &admitted);
                    admitted.clear();
                    let _ = l.flush();
                }
            }
        }
    });
    (ok_stream, dup_stream)
}

fn duplicate(p: Parsed) -> DeadLetter {
    let id = p.complaint.complaint_id.0;
    let message = format!(
        "complaint_id {id} was already seen earlier in the stream; this copy at {}#{} is not scored",
        p.origin.source, p.origin.offset
    );
    let bytes = if p.raw.is_empty() {
        serde_json::to_vec(&p.complaint).unwrap_or_default()
    } else {
        p.raw
    };
    DeadLetter::from_bytes(
        &bytes,
        p.origin,
        ErrorKind::DuplicateId.as_str(),
        message,
        Some(id.to_string()),
    )
}
