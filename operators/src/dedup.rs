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
use timely::dataflow::channels::pact::ExchangeCore;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::batches::LargeBatches;
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
    // Batches of 1,024 through the exchange (timely's default would ship ~16 complaints a
    // message).
    let mut input = builder.new_input(
        this,
        ExchangeCore::<LargeBatches<Parsed, OUT_BATCH>, _>::new_core(|p: &Parsed| {
            fmix64(p.complaint.complaint_id.0)
        }),
    );
    let (ok_out, ok_stream) = builder.new_output::<Vec<Parsed>>();
    let (dup_out, dup_stream) = builder.new_output::<Vec<DeadLetter>>();
    let mut ok_out = OutputBuilder::<T, CapacityContainerBuilder<Vec<Parsed>>>::from(ok_out);
    let mut dup_out = OutputBuilder::<T, CapacityContainerBuilder<Vec<DeadLetter>>>::from(dup_out);
    builder.build(move |_caps| {
        let mut admitted: Vec<u64> = Vec::new();
        // The epoch's batches as they arrived: never concatenated (no reallocation and copy of
        // a growing vector of complaints), never sorted (see `verdicts`).
        let mut stash: Stash<T, Vec<Vec<Parsed>>> = Stash::new(&[0, 1]);
        move |frontiers| {
            input.for_each_stamp(|cap, data| stash.keep_batches(&cap, data));
            let Some(frontier) = frontiers.first() else {
                return;
            };
            let mut ok = ok_out.activate();
            let mut dup = dup_out.activate();
            while let Some((t, caps, batches)) = stash.pop_complete(frontier.frontier()) {
                let (Some(c0), Some(c1)) = (caps.first(), caps.get(1)) else {
                    continue;
                };
                let keep = verdicts(&batches, &mut seen);
                let mut ok_session = ok.session(c0);
                let mut dup_session = dup.session(c1);
                let mut out: Vec<Parsed> = Vec::new();
                let mut from = 0;
                for mut batch in batches {
                    let n = batch.len();
                    let kept = &keep[from..from + n];
                    from += n;
                    if log.is_some() {
                        admitted.extend(
                            batch
                                .iter()
                                .zip(kept)
                                .filter(|(_, k)| **k)
                                .map(|(p, _)| p.complaint.complaint_id.0),
                        );
                    }
                    if n >= PASS_THROUGH && out.is_empty() && kept.iter().all(|k| *k) {
                        // A large batch with nothing to drop moves on as it is.
                        for p in &mut batch {
                            p.raw = Vec::new();
                        }
                        ok_session.give_container(&mut batch);
                        continue;
                    }
                    for (mut p, &k) in batch.into_iter().zip(kept) {
                        if k {
                            p.raw = Vec::new();
                            if out.capacity() == 0 {
                                out.reserve(OUT_BATCH);
                            }
                            out.push(p);
                            if out.len() >= OUT_BATCH {
                                ok_session.give_container(&mut out);
                                // The channel may hand back a used allocation: reuse it empty.
                                out.clear();
                            }
                        } else {
                            dup_session.give(duplicate(p));
                        }
                    }
                }
                if !out.is_empty() {
                    ok_session.give_container(&mut out);
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

/// Input batches of at least this many records, all kept, pass through unchanged; smaller
/// ones (the tail of an activation's share of the exchange) are gathered into batches of
/// [`OUT_BATCH`].
const PASS_THROUGH: usize = 256;
/// Records per batch through the exchange and per output batch when batches are gathered.
const OUT_BATCH: usize = 1024;

/// Which records of a complete epoch are kept, in arrival order: an id not seen in an earlier
/// epoch (nor earlier in the window) is kept once, in its occurrence with the smallest
/// [`Origin`](crate::record::Origin), so the answer does not depend on how the epoch's records
/// were interleaved by the exchange (nor on the number of workers).
///
/// One probe of the window per record; only when the epoch holds a repeat is a map built of
/// the ids admitted in it, to move the admission to the repeat if it came first in origin
/// order. No sort.
fn verdicts(batches: &[Vec<Parsed>], seen: &mut SeenWindow) -> Vec<bool> {
    let total = batches.iter().map(Vec::len).sum();
    let mut keep = Vec::with_capacity(total);
    // (batch, index, flat index) of every record that was not admitted.
    let mut repeats: Vec<(usize, usize, usize)> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        for (i, p) in batch.iter().enumerate() {
            let admitted = seen.admit(p.complaint.complaint_id.0);
            if !admitted {
                repeats.push((b, i, keep.len()));
            }
            keep.push(admitted);
        }
    }
    if repeats.is_empty() {
        return keep;
    }
    let id = |b: usize, i: usize| batches[b][i].complaint.complaint_id.0;
    let repeated: std::collections::HashSet<u64> =
        repeats.iter().map(|&(b, i, _)| id(b, i)).collect();
    // The occurrence of each repeated id admitted in this epoch (none: seen in an earlier one).
    let mut first: std::collections::HashMap<u64, (usize, usize, usize)> =
        std::collections::HashMap::new();
    let mut f = 0;
    for (b, batch) in batches.iter().enumerate() {
        for (i, p) in batch.iter().enumerate() {
            let pid = p.complaint.complaint_id.0;
            if keep[f] && repeated.contains(&pid) {
                first.insert(pid, (b, i, f));
            }
            f += 1;
        }
    }
    for (b, i, f) in repeats {
        if let Some(k) = first.get_mut(&id(b, i)) {
            if batches[b][i].origin < batches[k.0][k.1].origin {
                keep[k.2] = false;
                keep[f] = true;
                *k = (b, i, f);
            }
        }
    }
    keep
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

    /// The records of every message a `capture` received.
    fn messages<D>(captured: std::sync::mpsc::Receiver<Event<u64, Vec<D>>>) -> Vec<D> {
        captured
            .try_iter()
            .flat_map(|e| match e {
                Event::Messages(_, v) => v,
                _ => Vec::new(),
            })
            .collect()
    }

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
        let mut kept: Vec<(i64, u64)> = messages(ok)
            .into_iter()
            .map(|p| (p.origin.offset, p.complaint.complaint_id.0))
            .collect();
        kept.sort();
        kept.into_iter().map(|(_, id)| id).collect()
    }

    /// Within one epoch the occurrence with the smallest origin is kept, whatever the order
    /// the records arrive in (an exchange interleaves the workers' batches).
    #[test]
    fn within_an_epoch_the_smallest_origin_wins_in_any_arrival_order() {
        let (ok, dups) = timely::example(|scope| {
            let (mut raw, raw_stream) = scope.new_input::<Vec<RawInput>>();
            let (parsed, _) = raw_stream.parse_complaints(&ValidationOptions::default());
            let (ok, dups) = parsed.dedup_by_id();
            // id 7 at offsets 9, 3, 5 (kept: 3); id 8 once; id 9 at 4 then 1 (kept: 1).
            for (id, offset) in [(7, 9), (8, 2), (7, 3), (9, 4), (7, 5), (9, 1)] {
                raw.send(RawInput::new(
                    format!(r#"{{"complaint_id":"{id}","date_received":"2020-01-02"}}"#)
                        .into_bytes(),
                    Origin::file("x", offset),
                ));
            }
            raw.advance_to(1);
            // A later epoch: every occurrence of a known id is a duplicate.
            raw.send(RawInput::new(
                br#"{"complaint_id":"7","date_received":"2020-01-02"}"#.to_vec(),
                Origin::file("x", 0),
            ));
            (ok.capture(), dups.capture())
        });
        let mut kept: Vec<(u64, i64)> = messages(ok)
            .into_iter()
            .map(|p| (p.complaint.complaint_id.0, p.origin.offset))
            .collect();
        kept.sort();
        assert_eq!(kept, [(7, 3), (8, 2), (9, 1)]);
        let mut dropped: Vec<(String, i64)> = messages(dups)
            .into_iter()
            .map(|d| (d.complaint_id.unwrap_or_default(), d.origin.offset))
            .collect();
        dropped.sort();
        let want: Vec<(String, i64)> = [("7", 0), ("7", 5), ("7", 9), ("9", 4)]
            .into_iter()
            .map(|(i, o)| (i.to_string(), o))
            .collect();
        assert_eq!(dropped, want);
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
