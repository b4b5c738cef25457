//! [`Stash`]: state held per epoch until a frontier has passed it — the one helper every
//! operator that "holds data until the epoch is complete" is written on.
//!
//! An operator that must see a whole epoch before it answers (dedup, score waiting for the
//! model stream, per-epoch sums, a user's per-epoch report) keeps, for each open time, the
//! capabilities it will answer with and some state; once its input frontier (or another
//! frontier, e.g. the model stream's) has passed a time, the time is complete: the operator
//! takes the state out and answers under the kept capabilities. [`Stash`] is that map,
//! written once, in the manner of timely's `vec/count.rs` on top of `unary_notify`.
//!
//! Cost: one `BTreeMap` entry per open epoch (a handful at a time); the per-record work is
//! whatever the operator does with `&mut S`.
//!
//! ```
//! use complaintflow_operators::stash::Stash;
//! use timely::dataflow::channels::pact::Pipeline;
//! use timely::dataflow::operators::generic::Operator;
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Extract;
//!
//! // Sum of each epoch, emitted once the epoch is complete.
//! let out = timely::example(|scope| {
//!     (0..10u64).to_stream(scope).container::<Vec<_>>()
//!         .unary_frontier(Pipeline, "EpochSum", |_cap, _info| {
//!             let mut stash: Stash<u64, u64> = Stash::new(&[0]);
//!             move |(input, frontier), output| {
//!                 input.for_each_stamp(|cap, data| {
//!                     if let Some(sum) = stash.at(&cap) {
//!                         *sum += data.flat_map(|b| b.iter()).sum::<u64>();
//!                     }
//!                 });
//!                 while let Some((_t, caps, sum)) = stash.pop_complete(frontier.frontier()) {
//!                     output.session(&caps[0]).give(sum);
//!                 }
//!             }
//!         })
//!         .capture()
//! });
//! assert_eq!(out.extract(), vec![(0, vec![45])]);
//! ```

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};
use timely::order::TotalOrder;
use timely::progress::frontier::AntichainRef;
use timely::progress::Timestamp;

/// Per-epoch state `S` with the capabilities (one per listed output port) to answer it with.
#[derive(Debug)]
pub struct Stash<T: Timestamp, S> {
    outputs: Vec<usize>,
    epochs: BTreeMap<T, (Vec<Capability<T>>, S)>,
}

impl<T: Timestamp + TotalOrder, S: Default> Stash<T, S> {
    /// A stash that keeps a capability for each of the output ports `outputs`.
    pub fn new(outputs: &[usize]) -> Stash<T, S> {
        Stash {
            outputs: outputs.to_vec(),
            epochs: BTreeMap::new(),
        }
    }

    /// The state of the message's epoch (its least time), created with its capabilities if
    /// new. `None` for a message without a time (it makes no progress claim).
    pub fn at(&mut self, cap: &InputCapability<T>) -> Option<&mut S> {
        let t = cap.least()?.clone();
        self.at_time(cap, t)
    }

    /// The state of epoch `time` (at or after the message's time: differential batches carry
    /// a lower bound as their capability and each update its own time).
    pub fn at_time(&mut self, cap: &InputCapability<T>, time: T) -> Option<&mut S> {
        if !self.epochs.contains_key(&time) {
            let caps = self
                .outputs
                .iter()
                .map(|&o| cap.delayed(&time, o))
                .collect();
            self.epochs.insert(time.clone(), (caps, S::default()));
        }
        self.epochs.get_mut(&time).map(|(_, s)| s)
    }

    /// Takes out the earliest epoch that `frontier` has passed (no more input can arrive for
    /// it), with its capabilities; `None` when there is none.
    pub fn pop_complete(
        &mut self,
        frontier: AntichainRef<T>,
    ) -> Option<(T, Vec<Capability<T>>, S)> {
        let entry = self.epochs.first_entry()?;
        if frontier.less_equal(entry.key()) {
            return None;
        }
        let t = entry.key().clone();
        let (caps, s) = entry.remove();
        Some((t, caps, s))
    }

    /// The earliest open epoch.
    pub fn first(&self) -> Option<&T> {
        self.epochs.keys().next()
    }

    /// The earliest open epoch's state, with its time, without taking it out.
    pub fn first_mut(&mut self) -> Option<(&T, &mut S)> {
        self.epochs.iter_mut().next().map(|(t, (_, s))| (t, s))
    }

    /// Open epochs.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Whether no epoch is open.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }
}

impl<T: Timestamp + TotalOrder, D> Stash<T, Vec<Vec<D>>> {
    /// Keeps a message's batches as they are (moved, never concatenated or copied) under the
    /// message's epoch: the stash of an operator that answers an epoch with its records.
    ///
    /// ```
    /// use complaintflow_operators::stash::Stash;
    /// use timely::dataflow::channels::pact::Pipeline;
    /// use timely::dataflow::operators::generic::Operator;
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    ///
    /// // Each epoch's batches, counted once the epoch is complete.
    /// let out = timely::example(|scope| {
    ///     (0..10u64).to_stream(scope).container::<Vec<_>>()
    ///         .unary_frontier(Pipeline, "EpochCount", |_cap, _info| {
    ///             let mut stash: Stash<u64, Vec<Vec<u64>>> = Stash::new(&[0]);
    ///             move |(input, frontier), output| {
    ///                 input.for_each_stamp(|cap, data| stash.keep_batches(&cap, data));
    ///                 while let Some((_t, caps, batches)) = stash.pop_complete(frontier.frontier()) {
    ///                     output.session(&caps[0]).give(batches.iter().map(Vec::len).sum::<usize>());
    ///                 }
    ///             }
    ///         })
    ///         .capture()
    /// });
    /// assert_eq!(out.extract(), vec![(0, vec![10])]);
    /// ```
    pub fn keep_batches<'a>(
        &mut self,
        cap: &InputCapability<T>,
        data: impl Iterator<Item = &'a mut Vec<D>>,
    ) where
        D: 'a,
    {
        if let Some(batches) = self.at(cap) {
            batches.extend(data.filter(|b| !b.is_empty()).map(std::mem::take));
        }
    }
}
