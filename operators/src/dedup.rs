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
use crate::seen_log::{SeenLog, SeenWindow};

/// `dedup_by_id`: the second and later complaints with the same id become dead letters.
pub trait DedupById<'s, T: Timestamp + TotalOrder> {
    /// Exchanges complaints by (a hash of) their id, holds each epoch until it is complete,
    /// and within it keeps the occurrence with the smallest [`Origin`](crate::record::Origin)
    /// — so the result does not depend on the number of workers. Later occurrences (in this
    /// epoch or any later one) become [`DeadLetter`]s of kind `duplicate_id` with the bytes
    /// that were read (re-serialized only for a duplicate that crossed processes). The kept
    /// records leave without their bytes ([`Parsed::raw`] emptied).
    ///
    /// Memory: one `u64` per distinct id seen (≈ 10 MB per million ids, spread over workers),
    /// without bound; [`dedup_by_id_logged`](DedupById::dedup_by_id_logged) takes a bounded
    /// [`SeenWindow`]. See the [module example](self).
    fn dedup_by_id(self) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>);

    /// [`dedup_by_id`](DedupById::dedup_by_id) remembering ids in the window `seen` (bounded
    /// memory: it forgets the oldest generation when the current one is full) and, with a
    /// `log`, appending every epoch's admitted ids to it before the epoch's output is released
    /// (a restart from a checkpoint loads them back: [`crate::seen_log`]).
    fn dedup_by_id_logged(
        self,
        seen: SeenWindow,
        log: Option<SeenLog>,
    ) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>)
    where
        T: AsEpoch;
}

impl<'s, T: Timestamp + TotalOrder> DedupById<'s, T> for Stream<'s, T, Vec<Parsed>> {
    fn dedup_by_id(self) -> (Stream<'s, T, Vec<Parsed>>, Stream<'s, T, Vec<DeadLetter>>) {
        dedup(
            self,
            SeenWindow::unbounded(),
            None::<(SeenLog, fn(&T) -> u64)>,
        )
    }

    fn dedup_by_id_logged(
        self,
        seen: SeenWindow,
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
    mut seen: SeenWindow,
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
                    if seen.admit(id) {
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
                let rotated = seen.end_epoch();
                if let Some((l, epoch_of)) = log.as_mut() {
                    l.append(epoch_of(&t), &admitted);
                    admitted.clear();
                    let _ = l.flush();
                    if let Some(g) = rotated {
                        l.rotate(g);
                    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::record::{Origin, RawInput};
    use crate::ParseComplaints;
    use complaintflow_datasets::ValidationOptions;
    use timely::dataflow::operators::capture::Event;
    use timely::dataflow::operators::{Capture, Input};

    /// `ids` one per epoch through a window of generations of 2 ids; the ids kept.
    fn kept(ids: &[u64], epochs: bool) -> Vec<u64> {
        let ids = ids.to_vec();
        let (ok, _dups) = timely::example(move |scope| {
            let (mut raw, raw_stream) = scope.new_input::<Vec<RawInput>>();
            let (parsed, _) = raw_stream.parse_complaints(&ValidationOptions::default());
            let (ok, dups) = parsed.dedup_by_id_logged(SeenWindow::new(2), None);
            for (i, id) in ids.iter().enumerate() {
                raw.send(RawInput::new(
                    format!(r#"{{"complaint_id":"{id}","date_received":"2020-01-02"}}"#)
                        .into_bytes(),
                    Origin::file("x", i as i64),
                ));
                if epochs {
                    raw.advance_to(i as u64 + 1);
                }
            }
            (ok.capture(), dups.capture())
        });
        let mut kept: Vec<(i64, u64)> = ok
            .try_iter()
            .flat_map(|e| match e {
                Event::Messages(_, v) => v,
                _ => Vec::new(),
            })
            .map(|p| (p.origin.offset, p.complaint.complaint_id.0))
            .collect();
        kept.sort();
        kept.into_iter().map(|(_, id)| id).collect()
    }

    #[test]
    fn a_bounded_window_forgets_old_ids_and_remembers_recent_ones() {
        // One id per epoch, generations of 2: after 1 2 | 3 4 | 5, id 1 is forgotten (two
        // rotations ago), id 3 is still in the previous generation.
        assert_eq!(kept(&[1, 2, 3, 4, 5, 3, 1], true), [1, 2, 3, 4, 5, 1]);
        // Within one epoch the window does not rotate: every repeat is a duplicate.
        assert_eq!(kept(&[1, 2, 3, 4, 5, 3, 1], false), [1, 2, 3, 4, 5]);
    }
}
