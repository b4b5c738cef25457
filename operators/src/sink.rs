//! JSON Lines sinks.
//!
//! A sink routes every record to worker 0 (of process 0), so one file holds every record
//! exactly once whatever the number of workers and processes, and flushes whenever the
//! input frontier advances (an epoch is complete in the file before it counts as done).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Serialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::progress::{Antichain, Timestamp};
use timely::ExchangeData;

/// Creates (truncates) an output file and its directory, buffered; logs and returns `None`
/// when it cannot (an output that cannot be written never stops the dataflow).
pub fn create_output(path: &std::path::Path) -> Option<BufWriter<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    match File::create(path) {
        Ok(f) => Some(BufWriter::with_capacity(1 << 20, f)),
        Err(e) => {
            tracing::error!(path = %path.display(), "cannot create output file: {e}");
            None
        }
    }
}

/// Writes each record of a stream as one JSON line.
pub trait SinkJsonl<'s, T: Timestamp, D> {
    /// Writes records to `path` (created, truncated) on worker 0; `observe` sees each batch
    /// of records there before it is written (metrics, live views: take a lock once per
    /// batch, not once per record), and `on_complete` is called with the new frontier each
    /// time it advances, after the file was flushed.
    ///
    /// ```
    /// use complaintflow_operators::sink::SinkJsonl;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let dir = std::env::temp_dir().join(format!("cf-sink-doc-{}", std::process::id()));
    /// let path = dir.join("out.jsonl");
    /// let p = path.clone();
    /// timely::example(move |scope| {
    ///     (1..=3u32).to_stream(scope).sink_jsonl(Some(p), |batch: &[u32]| assert!(!batch.is_empty()), |_| {});
    /// });
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n2\n3\n");
    /// # std::fs::remove_dir_all(dir).ok();
    /// ```
    fn sink_jsonl<F, G>(self, path: Option<PathBuf>, observe: F, on_complete: G)
    where
        F: FnMut(&[D]) + 'static,
        G: FnMut(&[T]) + 'static;
}

impl<'s, T: Timestamp, D: ExchangeData + Serialize> SinkJsonl<'s, T, D> for Stream<'s, T, Vec<D>> {
    fn sink_jsonl<F, G>(self, path: Option<PathBuf>, mut observe: F, mut on_complete: G)
    where
        F: FnMut(&[D]) + 'static,
        G: FnMut(&[T]) + 'static,
    {
        let is_first = self.scope().index() == 0;
        let mut writer = if is_first {
            path.as_deref().and_then(create_output)
        } else {
            None
        };
        let mut last = Antichain::from_elem(T::minimum());
        let mut line = Vec::with_capacity(1024);
        self.sink(
            Exchange::new(|_: &D| 0u64),
            "SinkJsonl",
            move |(input, frontier)| {
                input.for_each_stamp(|_cap, data| {
                    for batch in data {
                        observe(&batch[..]);
                        for d in batch.drain(..) {
                            if let Some(w) = writer.as_mut() {
                                line.clear();
                                match serde_json::to_writer(&mut line, &d) {
                                    Ok(()) => {
                                        line.push(b'\n');
                                        if let Err(e) = w.write_all(&line) {
                                            tracing::error!("output write failed: {e}");
                                        }
                                    }
                                    Err(e) => {
                                        tracing::error!("output record not serializable: {e}")
                                    }
                                }
                            }
                        }
                    }
                });
                let now = frontier.frontier().to_owned();
                if now != last {
                    if let Some(w) = writer.as_mut() {
                        if let Err(e) = w.flush() {
                            tracing::error!("output flush failed: {e}");
                        }
                    }
                    on_complete(now.elements());
                    last = now;
                }
            },
        );
    }
}
