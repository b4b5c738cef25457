//! Trains on a complaint file (any format the readers take: the extended set's messy values
//! included) and prints the report.
//!
//! `cargo run --release -p complaintflow-models --example train_dev -- [FILE] [CONFIG_JSON]`
//! (FILE defaults to `/work/shared/datasets/cfpb/complaints-dev.json`; CONFIG_JSON is a
//! `TrainConfig` in JSON, e.g. `'{"family":"lr","gbdt":{"max_rounds":200}}'`).

use complaintflow_datasets::{read_path, Format, ValidationOptions};
use complaintflow_models::{train, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/work/shared/datasets/cfpb/complaints-dev.json".into());
    let cfg: TrainConfig = match args.next() {
        Some(json) => serde_json::from_str(&json)?,
        None => TrainConfig::default(),
    };
    let t = std::time::Instant::now();
    let mut rejected = 0usize;
    let complaints: Vec<_> = read_path(&path, Format::Auto, &ValidationOptions::default())?
        .filter_map(|r| r.map_err(|_| rejected += 1).ok())
        .collect();
    eprintln!(
        "read {} complaints ({rejected} rejected) in {:.2} s",
        complaints.len(),
        t.elapsed().as_secs_f64()
    );
    let t = std::time::Instant::now();
    let outcome = train(&complaints, &cfg, &mut |p| {
        if p.done == p.total {
            eprintln!(
                "[{:6.2}s] {:?} {}/{} {}",
                t.elapsed().as_secs_f64(),
                p.stage,
                p.done,
                p.total,
                p.message
            )
        }
    })?;
    println!("{}", outcome.report);
    println!("training wall clock: {:.2} s", t.elapsed().as_secs_f64());
    if let Ok(out) = std::env::var("CF_REPORT_JSON") {
        std::fs::write(out, serde_json::to_vec_pretty(&outcome.report)?)?;
    }
    Ok(())
}
