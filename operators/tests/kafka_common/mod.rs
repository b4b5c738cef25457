//! Shared helpers of the Kafka tests: run the timely Kafka source and collect what it read.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use complaintflow_operators::kafka::{
    kafka_source, DeliveryMode, KafkaConfig, KafkaSink, KafkaSinkHandle, KafkaSourceHandle,
    KafkaSourceSpec, ReadMode,
};
use complaintflow_operators::source::SourcePolicy;
use timely::dataflow::operators::{Input, Inspect, Probe};

/// One record read by the source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub epoch: u64,
    pub partition: i32,
    pub offset: i64,
    pub bytes: Vec<u8>,
}

/// A source spec with small epochs.
pub fn spec(topic: &str, mode: ReadMode, max_per_epoch: usize) -> KafkaSourceSpec {
    let mut s = KafkaSourceSpec::new(topic);
    s.mode = mode;
    s.policy = SourcePolicy {
        max_records_per_epoch: max_per_epoch,
        trigger_interval: Duration::from_millis(200),
        // Epochs by count (and the 200 ms heartbeat), as these tests count on: no early
        // closing when the consumer's queue runs dry for a moment.
        linger: Duration::from_millis(200),
        batch: 256,
        ..SourcePolicy::default()
    };
    s
}

/// Runs the source on `workers` workers until it ends (bounded mode, or `spec.stop`), with
/// `between_steps` called by worker 0 between steps (with the handle and the probe's
/// frontier, `None` when done). Returns what was read, in no particular order.
pub fn run_source<F>(
    cfg: &KafkaConfig,
    spec: KafkaSourceSpec,
    workers: usize,
    handle: KafkaSourceHandle,
    between_steps: F,
) -> Vec<Rec>
where
    F: Fn(&KafkaSourceHandle, Option<u64>) + Send + Sync + 'static,
{
    let out = Arc::new(Mutex::new(Vec::new()));
    let (cfg, o2, h2) = (cfg.clone(), Arc::clone(&out), handle.clone());
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let o = Arc::clone(&o2);
        let index = worker.index();
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let s = kafka_source(scope, &cfg, spec.clone(), h2.clone());
            let (probe, _) = s
                .inspect_core(move |ev| {
                    if let Ok((stamp, data)) = ev {
                        let t = *stamp.least().unwrap();
                        let mut o = o.lock().unwrap();
                        for r in data.iter() {
                            o.push(Rec {
                                epoch: t,
                                partition: r.origin.partition,
                                offset: r.origin.offset,
                                bytes: r.bytes.clone(),
                            });
                        }
                    }
                })
                .probe();
            probe
        });
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
            if index == 0 {
                let f = probe.with_frontier(|f| f.first().copied());
                between_steps(&h2, f);
            }
        }
    })
    .expect("timely starts");
    for r in guards.join() {
        r.expect("worker ok");
    }
    let v = std::mem::take(&mut *out.lock().unwrap());
    v
}

/// Checks that `recs` hold every offset `start[p]..end[p]` of every partition exactly once.
pub fn check_complete(recs: &[Rec], start: &BTreeMap<i32, i64>, end: &BTreeMap<i32, i64>) {
    let mut seen: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for r in recs {
        assert!(
            seen.entry(r.partition).or_default().insert(r.offset),
            "partition {} offset {} read twice",
            r.partition,
            r.offset
        );
    }
    for (p, e) in end {
        let s = start.get(p).copied().unwrap_or(0);
        let got = seen.remove(p).unwrap_or_default();
        let want: BTreeSet<i64> = (s..*e).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "partition {p}: read {} of {}",
            got.len(),
            want.len()
        );
        assert_eq!(got, want, "partition {p}: offsets differ");
    }
    assert!(
        seen.is_empty(),
        "records from unexpected partitions: {:?}",
        seen.keys()
    );
}

/// Checks that the handle's per-epoch offsets agree with the epochs the records carry: the
/// records of partition `p` with epoch `<= e` are exactly the offsets from `start[p]` below
/// `offsets_through(e)[p]`.
pub fn check_epoch_offsets(recs: &[Rec], start: &BTreeMap<i32, i64>, handle: &KafkaSourceHandle) {
    let epochs: BTreeSet<u64> = recs.iter().map(|r| r.epoch).collect();
    let partitions: BTreeSet<i32> = handle.assignment().keys().copied().collect();
    assert!(!partitions.is_empty());
    for e in &epochs {
        let through = handle.offsets_through(*e);
        for p in &partitions {
            let s = start.get(p).copied().unwrap_or(0);
            let n = recs
                .iter()
                .filter(|r| r.partition == *p && r.epoch <= *e)
                .count() as i64;
            let next = through.get(p).copied().unwrap_or(s);
            assert_eq!(
                next - s,
                n,
                "partition {p}, epoch {e}: offsets_through disagrees with the records"
            );
        }
    }
}

/// [`check_complete`] and [`check_epoch_offsets`].
pub fn check_exactly_once(
    recs: &[Rec],
    start: &BTreeMap<i32, i64>,
    end: &BTreeMap<i32, i64>,
    handle: &KafkaSourceHandle,
) {
    check_complete(recs, start, end);
    check_epoch_offsets(recs, start, handle);
}

/// High watermark of every partition of `topic`.
pub fn high_watermarks(cfg: &KafkaConfig, topic: &str) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = cfg.consumer_config().create().unwrap();
    cfg.partitions(topic)
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p,
                c.fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap()
                    .1,
            )
        })
        .collect()
}

/// The complaint id of a JSON record (as a string), if any.
pub fn id_of(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    match &v["complaint_id"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The complaint ids of the bundled sample, in file order.
pub fn sample_ids() -> Vec<String> {
    let raw = complaintflow_datasets::RawRecords::from_path(
        complaintflow_datasets::bundled_sample_path(),
        complaintflow_datasets::Format::Auto,
        1 << 20,
    )
    .unwrap();
    raw.map(|r| id_of(&r.unwrap().bytes).unwrap()).collect()
}

/// A small serializable output record for sink tests.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Out {
    pub id: u64,
    pub text: String,
}

/// Sends `n` records (`epochs` epochs) through `kafka_sink_json` to `topic`; returns the
/// acknowledgements per epoch summed over workers, and the sink's stats.
pub fn run_sink(
    cfg: &KafkaConfig,
    topic: &str,
    mode: DeliveryMode,
    n: u64,
    epochs: u64,
    workers: usize,
) -> (
    BTreeMap<u64, u64>,
    complaintflow_operators::kafka::SinkStats,
) {
    let acks = Arc::new(Mutex::new(BTreeMap::new()));
    let handle = KafkaSinkHandle::new();
    let (cfg, topic, a2, h2) = (
        cfg.clone(),
        topic.to_string(),
        Arc::clone(&acks),
        handle.clone(),
    );
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let a = Arc::clone(&a2);
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<Out>>();
            let acks = stream
                .kafka_sink_json(&cfg, &topic, &mode, &h2, |o: &Out| Some(o.id.to_string()))
                .expect("sink starts");
            let (probe, _) = acks
                .inspect_core(move |ev| {
                    if let Ok((stamp, data)) = ev {
                        let t = *stamp.least().unwrap();
                        *a.lock().unwrap().entry(t).or_insert(0) += data.iter().sum::<u64>();
                    }
                })
                .probe();
            (input, probe)
        });
        let per_epoch = n.div_ceil(epochs);
        for e in 0..epochs {
            input.advance_to(e);
            for id in (e * per_epoch..((e + 1) * per_epoch).min(n)).filter(|i| i % peers == index) {
                input.send(Out {
                    id,
                    text: format!("record {id}"),
                });
            }
        }
        input.advance_to(epochs);
        drop(input);
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    })
    .expect("timely starts");
    for r in guards.join() {
        r.expect("worker ok");
    }
    let a = acks.lock().unwrap().clone();
    (a, handle.stats())
}

/// A stop flag set after `after` elapsed, from a thread.
pub fn stop_after(flag: &Arc<AtomicBool>, after: Duration) {
    let f = Arc::clone(flag);
    std::thread::spawn(move || {
        std::thread::sleep(after);
        f.store(true, Ordering::Relaxed);
    });
}

/// `cfg` with small fetches (a consumer holds few records ahead of what it has read), and
/// small producer batches. tansu 0.6 returns nothing, rather than one oversized batch as
/// Kafka does, when the next record batch is larger than the partition fetch limit: so a
/// topic read with these settings must also be written with them (batches ≤ 20 KB, the
/// largest sample record is 16 KB).
pub fn small_fetches(cfg: &KafkaConfig) -> KafkaConfig {
    let mut c = cfg.clone();
    for (k, v) in [
        ("fetch.max.bytes", "65536"),
        ("message.max.bytes", "65536"),
        ("max.partition.fetch.bytes", "32768"),
        ("batch.size", "20000"),
        ("queued.min.messages", "1"),
        ("queued.max.messages.kbytes", "1"),
        // With a full queue librdkafka backs off fetching for 1 s by default.
        ("fetch.queue.backoff.ms", "5"),
    ] {
        c.extra.insert(k.into(), v.into());
    }
    c
}
