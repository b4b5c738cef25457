//! Trains on a CFPB JSON array file and prints the report.
//!
//! `cargo run --release -p complaintflow-models --example train_dev -- [FILE] [CONFIG_JSON]`
//! (FILE defaults to `/work/shared/datasets/cfpb/complaints-dev.json`; CONFIG_JSON is a
//! `TrainConfig` in JSON, e.g. `'{"features":{"sentiment":false}}'`).

use complaintflow_datasets::Complaint;
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
    let complaints: Vec<Complaint> = serde_json::from_slice(&std::fs::read(&path)?)?;
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
    println!(
        "wall clock incl. parsing: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
