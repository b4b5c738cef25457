//! End-to-end engine throughput and epoch latency, in process: JSON Lines file (bytes) →
//! parse → dedup → featurize + score → decide → predictions + dead-letter JSON Lines files,
//! differential aggregates, counters, recent ring — the whole `complaintflow_pipelines`
//! graph, with 1 and 2 worker threads.
//!
//! Data: the 5,370 real complaints of `complaints-dev.json` (or the bundled 4,303-record
//! sample when `../shared` is absent), RESAMPLED with replacement (seed 1) to 300,000
//! records with fresh synthetic ids (`RESAMPLED_ID_BASE`+), written to a temp file named
//! `synthetic-resampled-N.jsonl` — synthetic replication of real records, not new real
//! data. `CF_BENCH_RECORDS` overrides the count. The model is trained first on the real file
//! with the default feature families (2 folds, one penalty: weights do not change the cost).
//!
//! Besides the criterion figures (complaints/s), each configuration prints its epoch
//! latency p50/p99, and a stage profile prints the throughput of growing prefixes of the
//! chain (source only, + parse, + dedup, + score, + decide, + sinks) so the time per
//! operator is the difference between consecutive lines.
//!
//! `cargo bench --bench engine`

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use complaintflow_datasets::replay::{Resampler, SystemClock};
use complaintflow_datasets::{Format, ValidationOptions};
use complaintflow_models::Model;
use complaintflow_operators::prelude::*;
use complaintflow_pipelines::{start, EngineConfig, RunSummary, SourceSpec};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

/// The allocator of the `complaintflow` binary, so the bench measures what `run` delivers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEV: &str = "/work/shared/datasets/cfpb/complaints-dev.json";

struct Setup {
    _dir: tempfile::TempDir,
    input: PathBuf,
    out: PathBuf,
    model: Model,
    n: u64,
}

fn setup() -> Setup {
    let real_path = if Path::new(DEV).is_file() {
        PathBuf::from(DEV)
    } else {
        complaintflow_datasets::bundled_sample_path()
    };
    let real = complaintflow_testkit::real_records(&real_path);
    let n: u64 = std::env::var("CF_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let t = Instant::now();
    let model = complaintflow_testkit::train_model(
        &real,
        &complaintflow_testkit::bench_train_config(),
        "bench",
    );
    eprintln!(
        "engine bench: model trained on {} real complaints in {:.1?} (dim {})",
        real.len(),
        t.elapsed(),
        model.pipeline.dim()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join(format!("synthetic-resampled-{n}.jsonl"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&input).expect("create input"));
    let mut with_narrative = 0u64;
    for c in Resampler::new(real.clone(), 1)
        .expect("pool")
        .take(n as usize)
    {
        with_narrative += u64::from(c.narrative().is_some());
        serde_json::to_writer(&mut w, &c).expect("write");
        std::io::Write::write_all(&mut w, b"\n").expect("write");
    }
    drop(w);
    let bytes = std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "engine bench: {} = {n} records, {:.0} MB, {with_narrative} with a narrative",
        input.display(),
        bytes as f64 / 1e6
    );
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    Setup {
        _dir: dir,
        input,
        out,
        model,
        n,
    }
}

fn engine_config(s: &Setup, workers: usize, epoch: usize, files: bool) -> EngineConfig {
    let mut cfg = EngineConfig::new(s.out.join("registry"));
    cfg.workers = workers;
    cfg.once = true;
    cfg.policy.max_records_per_epoch = epoch;
    if files {
        cfg.predictions_path = Some(s.out.join("predictions.jsonl"));
        cfg.dead_letters_path = Some(s.out.join("dead-letters.jsonl"));
    }
    cfg
}

fn run_once(s: &Setup, cfg: EngineConfig) -> (Duration, RunSummary) {
    let source = SourceSpec::File {
        path: s.input.clone(),
        format: Format::JsonLines,
    };
    let t = Instant::now();
    let engine = start(cfg, source, s.model.clone()).expect("start");
    let summary = engine.join().expect("run");
    let elapsed = t.elapsed();
    assert_eq!(summary.predictions, s.n, "every record predicted");
    (elapsed, summary)
}

/// How far a partial chain goes.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Stage {
    Source,
    Parse,
    Dedup,
    Score,
    Decide,
    Publish,
}

/// Runs source → … → `stage` → probe on `workers` threads; returns complaints/s.
fn stage_rate(s: &Setup, workers: usize, stage: Stage) -> f64 {
    let input = s.input.clone();
    let model = s.model.clone();
    let config = if workers == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    };
    let t = Instant::now();
    timely::execute(config, move |worker| {
        let mut models: InputHandle<u64, _> = InputHandle::new();
        let probe = ProbeHandle::new();
        let stop = Arc::new(AtomicBool::new(false));
        worker.dataflow::<u64, _, _>(|scope| {
            let policy = SourcePolicy::default();
            let raw = file_source(
                scope,
                input.clone(),
                Format::JsonLines,
                1 << 20,
                policy,
                SystemClock::default(),
                Arc::clone(&stop),
            );
            let model_stream = scope.input_from(&mut models);
            if stage == Stage::Source {
                raw.probe_with(&probe);
                return;
            }
            let (parsed, _dead) = raw.parse_complaints(&ValidationOptions::default());
            let parsed = if stage >= Stage::Dedup {
                parsed.dedup_by_id().0
            } else {
                parsed
            };
            if stage <= Stage::Dedup {
                parsed.probe_with(&probe);
                return;
            }
            let predictions = parsed.score(model_stream);
            if stage == Stage::Score {
                predictions.probe_with(&probe);
                return;
            }
            let decisions = predictions.decide(&DecisionRules::default());
            let out = if stage == Stage::Publish {
                decisions.publish().probe_with(&probe);
                return;
            } else {
                decisions
            };
            out.sink(
                timely::dataflow::channels::pact::Pipeline,
                "Drop",
                |(input, _)| input.for_each_stamp(|_, data| data.for_each(|b| b.clear())),
            );
        });
        if worker.index() == 0 {
            models.send(ModelUpdate {
                model: model.clone(),
                role: ModelRole::Production,
            });
        }
        // The model stream is complete from the start: every epoch may be scored at once.
        drop(models);
        while worker.step_or_park(Some(Duration::from_millis(1))) {}
        let _ = &stop.load(Ordering::Relaxed);
    })
    .expect("timely")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker"));
    s.n as f64 / t.elapsed().as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let n = s.n;

    // Stage profile (one timed run each): differences between lines = cost of an operator.
    for workers in [1, 2] {
        let mut prev: Option<f64> = None;
        for stage in [
            Stage::Source,
            Stage::Parse,
            Stage::Dedup,
            Stage::Score,
            Stage::Decide,
            Stage::Publish,
        ] {
            let rate = stage_rate(&s, workers, stage);
            let per = 1e6 / rate;
            let delta = prev.map_or(String::new(), |p| {
                format!("  (+{:.2} µs/record)", per - 1e6 / p)
            });
            eprintln!("profile {workers}w up to {stage:?}: {rate:>10.0} complaints/s, {per:.2} µs/record{delta}");
            prev = Some(rate);
        }
        for (label, files) in [
            ("+ all sinks, aggregates (engine, no files)", false),
            ("+ output files (full engine)", true),
        ] {
            let (d, _) = run_once(&s, engine_config(&s, workers, 10_000, files));
            let rate = n as f64 / d.as_secs_f64();
            eprintln!(
                "profile {workers}w {label}: {rate:>10.0} complaints/s, {:.2} µs/record",
                1e6 / rate
            );
        }
    }

    let mut group = c.benchmark_group("engine_end_to_end");
    group.throughput(Throughput::Elements(n));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    for (name, workers, epoch) in [
        ("1_worker_epoch_10k", 1, 10_000),
        ("2_workers_epoch_10k", 2, 10_000),
        ("2_workers_epoch_100k", 2, 100_000),
    ] {
        let mut last: Option<RunSummary> = None;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (d, summary) = run_once(&s, engine_config(&s, workers, epoch, true));
                    total += d;
                    last = Some(summary);
                }
                total
            })
        });
        if let Some(m) = last {
            eprintln!(
                "{name}: {} epochs, epoch latency p50 {:.1} ms, p99 {:.1} ms (first record read → epoch written)",
                m.epochs,
                m.epoch_latency_p50_seconds.unwrap_or(0.0) * 1e3,
                m.epoch_latency_p99_seconds.unwrap_or(0.0) * 1e3
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
