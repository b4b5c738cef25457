//! `tap`: a pass-through that also emits a summary of every batch (counts, positions), so
//! counting and position tracking cost no copy of the data.
//!
//! A second consumer of a stream makes timely's `Tee` deep-clone every batch for it. `tap`
//! instead moves each batch on unchanged and hands a reference to the batch to `summarize`,
//! whose answer (if any) goes out on a second stream at the batch's time: a few bytes per
//! batch instead of a copy of every record.
//!
//! ```
//! use complaintflow_operators::tap::Tap;
//! use timely::dataflow::operators::{Capture, ToStream};
//! use timely::dataflow::operators::capture::Extract;
//! let (data, counts) = timely::example(|scope| {
//!     let (data, counts) = (0..5u32).to_stream(scope).container::<Vec<_>>()
//!         .tap("Count", |batch: &[u32]| Some(batch.len() as u64));
//!     (data.capture(), counts.capture())
//! });
//! assert_eq!(data.extract(), vec![(0, vec![0, 1, 2, 3, 4])]);
//! assert_eq!(counts.extract().into_iter().flat_map(|(_, v)| v).sum::<u64>(), 5);
//! ```

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Stream;
use timely::progress::Timestamp;

/// `tap`: pass-through with a per-batch summary.
pub trait Tap<'s, T: Timestamp, D> {
    /// Moves every batch on unchanged (first stream) and emits `summarize(batch)` when it is
    /// `Some` (second stream), at the batch's time. Data-parallel.
    fn tap<S, F>(self, name: &str, summarize: F) -> (Stream<'s, T, Vec<D>>, Stream<'s, T, Vec<S>>)
    where
        S: Clone + 'static,
        F: FnMut(&[D]) -> Option<S> + 'static;
}

impl<'s, T: Timestamp, D: Clone + 'static> Tap<'s, T, D> for Stream<'s, T, Vec<D>> {
    fn tap<S, F>(
        self,
        name: &str,
        mut summarize: F,
    ) -> (Stream<'s, T, Vec<D>>, Stream<'s, T, Vec<S>>)
    where
        S: Clone + 'static,
        F: FnMut(&[D]) -> Option<S> + 'static,
    {
        let mut builder = OperatorBuilder::new(name.to_owned(), self.scope());
        let mut input = builder.new_input(self, Pipeline);
        let (data_out, data_stream) = builder.new_output::<Vec<D>>();
        let (sum_out, sum_stream) = builder.new_output::<Vec<S>>();
        let mut data_out = OutputBuilder::<T, CapacityContainerBuilder<Vec<D>>>::from(data_out);
        let mut sum_out = OutputBuilder::<T, CapacityContainerBuilder<Vec<S>>>::from(sum_out);
        builder.build(move |_caps| {
            move |_frontiers| {
                let mut data = data_out.activate();
                let mut sums = sum_out.activate();
                input.for_each_stamp(|cap, batches| {
                    let (Some(c0), Some(c1)) =
                        (cap.retain_least_or_stamp(0), cap.retain_least_or_stamp(1))
                    else {
                        return;
                    };
                    let mut d = data.session(&c0);
                    let mut s = sums.session(&c1);
                    for batch in batches {
                        if let Some(x) = summarize(&batch[..]) {
                            s.give(x);
                        }
                        d.give_container(batch);
                    }
                });
            }
        });
        (data_stream, sum_stream)
    }
}

/// The capability of a message for an output port, for any timestamp: its stamp's first time.
trait RetainFirst<T: Timestamp> {
    fn retain_least_or_stamp(
        &self,
        port: usize,
    ) -> Option<timely::dataflow::operators::Capability<T>>;
}

impl<T: Timestamp> RetainFirst<T> for timely::dataflow::operators::InputCapability<T> {
    fn retain_least_or_stamp(
        &self,
        port: usize,
    ) -> Option<timely::dataflow::operators::Capability<T>> {
        self.stamp().iter().next().map(|t| self.delayed(t, port))
    }
}
