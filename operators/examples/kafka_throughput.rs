//! Measures the Kafka layer against a running broker: replay-producer throughput (msgs/s,
//! MB/s) and Kafka-source read throughput with 1 and 2 timely workers.
//!
//! ```text
//! addr=$(scripts/kafka-up.sh --state-dir /tmp/kbench --port 19092 | tail -1)
//! cargo run --release -p complaintflow-operators --example kafka_throughput -- $addr 200000
//! ```
//!
//! The load is N resampled copies of the bundled real sample (synthetic ids, see
//! `complaintflow_datasets::replay::Resampler`), written to a fresh topic `bench-<pid>`
//! that must exist (created with `tansu topic create` by this example when `TANSU` names the
//! tansu binary; otherwise pass an existing topic as the third argument).

use std::time::{Duration, Instant};

use complaintflow_operators::kafka::{
    kafka_source, produce_file, KafkaConfig, KafkaSourceHandle, KafkaSourceSpec, ProduceOptions,
    ReadMode,
};
use complaintflow_operators::source::SourcePolicy;
use timely::dataflow::operators::Probe;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let brokers = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let topic = match args.get(3) {
        Some(t) => t.clone(),
        None => {
            let t = format!("bench-{}", std::process::id());
            let tansu =
                std::env::var("TANSU").map_err(|_| "set TANSU=/path/to/tansu or pass a topic")?;
            let ok = std::process::Command::new(tansu)
                .args([
                    "topic",
                    "create",
                    "--broker",
                    &format!("tcp://{brokers}"),
                    "--partitions",
                    "4",
                    &t,
                ])
                .status()?
                .success();
            if !ok {
                return Err("topic creation failed".into());
            }
            t
        }
    };
    let mut cfg = KafkaConfig::with_brokers(&brokers);
    // Extra librdkafka properties: KAFKA_EXTRA="fetch.wait.max.ms=10,queued.min.messages=500000".
    for kv in std::env::var("KAFKA_EXTRA").unwrap_or_default().split(',') {
        if let Some((k, v)) = kv.split_once('=') {
            cfg.extra.insert(k.trim().into(), v.trim().into());
        }
    }
    let produce_n = std::env::var("PRODUCE").map_or(true, |v| v != "0");
    let mut opts = ProduceOptions::new(&topic, complaintflow_datasets::bundled_sample_path());
    opts.resample = Some(n);
    if produce_n {
        let s = produce_file(&cfg, &opts, |_| {})?;
        println!(
            "produce: {} msgs, {:.1} MB in {:.2} s: {:.0} msgs/s, {:.1} MB/s (errors {})",
            s.acked,
            s.bytes as f64 / 1e6,
            s.elapsed_s,
            s.rate_per_s,
            s.mb_per_s,
            s.errors
        );
    }
    for workers in [1usize, 2] {
        let handle = KafkaSourceHandle::new(&topic);
        let (cfg2, h2, t2) = (cfg.clone(), handle.clone(), topic.clone());
        let start = Instant::now();
        let guards = timely::execute(timely::Config::process(workers), move |worker| {
            let mut spec = KafkaSourceSpec::new(t2.clone());
            spec.mode = ReadMode::Bounded;
            spec.policy = SourcePolicy {
                max_records_per_epoch: 100_000,
                trigger_interval: Duration::from_secs(1),
                batch: 4096,
                ..SourcePolicy::default()
            };
            let probe = worker.dataflow::<u64, _, _>(|scope| {
                let s = kafka_source(scope, &cfg2, spec, h2.clone());
                s.probe().0
            });
            while !probe.done() {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
        })?;
        for g in guards.join() {
            g?;
        }
        let secs = start.elapsed().as_secs_f64();
        let read = handle.records();
        println!(
            "source, {workers} worker(s): {read} records in {secs:.2} s: {:.0} records/s (incl. start-up)",
            read as f64 / secs
        );
    }
    Ok(())
}
