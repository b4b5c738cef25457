//! Control inside the graph: the model feed (models enter at the raw stream's frontier) and
//! completion (what to do when every output has acknowledged an epoch).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use complaintflow_operators::record::RawInput;
use complaintflow_operators::ModelUpdate;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::operators::{Concatenate, Probe};
use timely::dataflow::{ProbeHandle, Stream};
use timely::scheduling::Activator;

/// The worker's handle on the model feed operator: model versions put here enter the model
/// stream at the earliest epoch still open at any source, and apply from that epoch on.
#[derive(Clone, Default)]
pub struct ModelFeed {
    queue: Rc<RefCell<VecDeque<ModelUpdate>>>,
    activator: Rc<RefCell<Option<Activator>>>,
    at: Rc<Cell<u64>>,
    open: Rc<Cell<bool>>,
}

impl ModelFeed {
    /// Queues a model version and wakes the feed operator. Returns the epoch it will apply
    /// from (at the latest), or `None` when the sources have finished (nothing left to score).
    pub fn send(&self, update: ModelUpdate) -> Option<u64> {
        if !self.open.get() {
            return None;
        }
        self.queue.borrow_mut().push_back(update);
        if let Some(a) = self.activator.borrow().as_ref() {
            a.activate();
        }
        Some(self.at.get())
    }

    /// The epoch a model sent now would apply from.
    pub fn epoch(&self) -> u64 {
        self.at.get()
    }
}

/// A pass-through on the raw stream that owns the model stream: its model capability follows
/// the raw stream's frontier (the earliest epoch still open at any worker's source), so
/// `score` may release an epoch as soon as the sources have closed it, and a model queued in
/// `feed` applies from the epoch open now. Moves the raw batches on unchanged.
pub(crate) fn feed_models<'s>(
    raw: Stream<'s, u64, Vec<RawInput>>,
    feed: &ModelFeed,
    first_epoch: u64,
) -> (
    Stream<'s, u64, Vec<RawInput>>,
    Stream<'s, u64, Vec<ModelUpdate>>,
) {
    let scope = raw.scope();
    let mut builder = OperatorBuilder::new("ModelFeed".to_owned(), scope);
    let address = builder.operator_info().address;
    *feed.activator.borrow_mut() = Some(scope.activator_for(address));
    feed.at.set(first_epoch);
    feed.open.set(true);
    let mut input = builder.new_input(raw, Pipeline);
    let (raw_out, raw_stream) = builder.new_output::<Vec<RawInput>>();
    let (model_out, model_stream) = builder.new_output::<Vec<ModelUpdate>>();
    let mut raw_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<RawInput>>>::from(raw_out);
    let mut model_out =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<ModelUpdate>>>::from(model_out);
    let feed = feed.clone();
    builder.build(move |mut caps| {
        // caps[0] (raw output) is not needed: batches go on under their own capabilities.
        let mut model_cap = caps.pop();
        if let Some(c) = model_cap.as_mut() {
            c.downgrade(&first_epoch);
        }
        drop(caps);
        move |frontiers| {
            let mut raw = raw_out.activate();
            input.for_each_stamp(|cap, data| {
                let Some(c) = cap.retain_least(0) else { return };
                let mut session = raw.session(&c);
                for batch in data {
                    session.give_container(batch);
                }
            });
            let Some(cap) = model_cap.as_mut() else {
                return;
            };
            {
                let mut models = model_out.activate();
                let mut session = models.session(cap);
                let mut queue = feed.queue.borrow_mut();
                while let Some(u) = queue.pop_front() {
                    session.give(u);
                }
            }
            let frontier = frontiers.first().map(|f| f.frontier().first().copied());
            match frontier {
                Some(Some(t)) => {
                    if t > *cap.time() {
                        cap.downgrade(&t);
                    }
                    feed.at.set(*cap.time());
                }
                _ => {
                    // Every source has finished: no complaint is left to score.
                    model_cap = None;
                    feed.open.set(false);
                }
            }
        }
    });
    (raw_stream, model_stream)
}

/// Calls `on_complete(done_below)` each time the combined frontier of the acknowledgement
/// streams `acks` moves: every epoch below `done_below` is complete at every output;
/// `u64::MAX` once everything is (the dataflow is ending). `progress` is attached to the
/// same frontier (sources read it to size their epochs).
pub(crate) fn on_complete<'s>(
    acks: Vec<Stream<'s, u64, Vec<u64>>>,
    progress: &ProbeHandle<u64>,
    mut on_complete: impl FnMut(u64) + 'static,
) {
    let Some(first) = acks.first().cloned() else {
        return;
    };
    let scope = first.scope();
    let all = scope.concatenate(acks).probe_with(progress);
    let mut last = 0u64;
    all.sink(Pipeline, "Completion", move |(input, frontier)| {
        input.for_each_stamp(|_cap, data| data.for_each(|b| b.clear()));
        let done_below = frontier.frontier().first().copied().unwrap_or(u64::MAX);
        if done_below != last {
            last = done_below;
            on_complete(done_below);
        }
    });
}
