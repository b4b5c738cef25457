//! Scoring cost per complaint measured in on-CPU time of the scoring thread (Linux
//! `/proc/thread-self/schedstat`), so that the figure holds on a loaded shared machine where
//! criterion's wall-clock figures (`benches/featurize_score.rs`) are inflated by waiting.
//!
//! Trains the default configuration forced to the blend on FILE (so the model carries both
//! parts), views it as each family, and scores N complaints RESAMPLED from FILE with fresh
//! complaint ids (synthetic replication of real records, not new real data).
//!
//! `cargo run --release -p complaintflow-models --example score_cpu -- [FILE] [N] [FAMILIES]`
//! (FAMILIES: comma-separated subset of `lr,gbdt,blend`, all by default; handy for profiling
//! one family with `perf record`).

use std::hint::black_box;
use std::time::Instant;

use complaintflow_datasets::{read_path, ComplaintId, Format, ValidationOptions};
use complaintflow_models::{train, FamilyChoice, ModelFamily, SparseFeatures, TrainConfig};

/// Nanoseconds this thread has spent on a CPU (first field of schedstat).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/work/shared/datasets/cfpb/complaints-dev.json".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(500_000);
    let families = args.next().unwrap_or_else(|| "lr,gbdt,blend".into());
    let real: Vec<_> = read_path(&path, Format::Auto, &ValidationOptions::default())?
        .filter_map(Result::ok)
        .collect();
    if real.is_empty() {
        return Err(format!("{path} holds no complaints").into());
    }
    let cfg = TrainConfig {
        family: FamilyChoice::Blend,
        ..TrainConfig::default()
    };
    let blend = train(&real, &cfg, &mut |_| {})?.model;
    let trees = blend.trees.as_ref().map_or(0, |t| t.ensemble.roots.len());
    eprintln!(
        "model: {trees} trees, LR dim {}, blend LR weight {:.2}",
        blend.pipeline.dim(),
        blend.lr_weight
    );
    if let Some(t) = &blend.trees {
        let mut used: Vec<u32> = t
            .ensemble
            .nodes
            .iter()
            .map(|n| n.feature)
            .filter(|&f| f != complaintflow_models::gbdt::LEAF)
            .collect();
        used.sort_unstable();
        used.dedup();
        let names: Vec<String> = used
            .iter()
            .map(|&f| {
                t.encoder
                    .column_name(f as usize, |k| blend.pipeline.feature_name(k))
            })
            .collect();
        eprintln!(
            "trees read {} of {} columns: {}",
            used.len(),
            t.encoder.width(),
            names.join(", ")
        );
    }
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<_> = (0..n)
        .map(|i| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let k = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) % real.len() as u64) as usize;
            let mut c = real[k].clone();
            c.complaint_id = ComplaintId(100_000_000 + i as u64);
            c
        })
        .collect();
    let mut lr = blend.clone();
    lr.family = ModelFamily::Lr;
    lr.trees = None;
    let mut gbdt = blend.clone();
    gbdt.family = ModelFamily::Gbdt;
    println!("family  records  on-CPU µs/complaint  wall µs/complaint");
    for (name, model) in [("lr", &lr), ("gbdt", &gbdt), ("blend", &blend)] {
        if !families.split(',').any(|f| f.trim() == name) {
            continue;
        }
        let mut buf = SparseFeatures::new();
        // Warm-up pass (caches, stemmer tables).
        for c in data.iter().take(20_000) {
            black_box(model.score(c, &mut buf));
        }
        let cpu0 = thread_cpu_ns();
        let t0 = Instant::now();
        let mut positives = 0usize;
        for c in &data {
            let p = model.score(c, &mut buf);
            positives += usize::from(model.predict(p));
        }
        let wall = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
        let cpu = match (cpu0, thread_cpu_ns()) {
            (Some(a), Some(b)) => format!("{:.3}", (b - a) as f64 / 1e3 / n as f64),
            _ => "n/a".into(),
        };
        black_box(positives);
        println!("{name:<7} {n:>8}  {cpu:>19}  {wall:>17.3}");
    }
    Ok(())
}
