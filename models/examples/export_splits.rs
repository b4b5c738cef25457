//! Writes the labelled complaints of a file as JSON Lines with the exact splits `train` uses,
//! for reference scripts (`scripts/baselines.py`): the fields as the readers normalised them,
//! `label` (policy `relief` unless CONFIG_JSON says otherwise), `hash_train` (the shared
//! stable hash split at `train_fraction`) and `window` (`train` / `validation` / `test` /
//! `out_of_time`, the temporal evaluation windows).
//!
//! `cargo run --release -p complaintflow-models --example export_splits -- FILE OUT.jsonl [CONFIG_JSON]`

use std::io::Write;

use complaintflow_datasets::split::is_train;
use complaintflow_datasets::{read_path, Format, ValidationOptions};
use complaintflow_models::{temporal_assignment, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: export_splits FILE OUT.jsonl [CONFIG_JSON]".into());
    };
    let cfg: TrainConfig = match args.next() {
        Some(json) => serde_json::from_str(&json)?,
        None => TrainConfig::default(),
    };
    let all: Vec<_> = read_path(&path, Format::Auto, &ValidationOptions::default())?
        .filter_map(Result::ok)
        .collect();
    let labelled: Vec<_> = all
        .iter()
        .filter(|c| cfg.label_policy.label(c).is_some())
        .collect();
    let (windows, infos) =
        temporal_assignment(&labelled, &cfg).ok_or("too few rows for temporal windows")?;
    for w in &infos {
        eprintln!("{:<12} {} .. {} {} rows", w.window, w.start, w.end, w.rows);
    }
    let names = ["train", "validation", "test", "out_of_time"];
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for (c, w) in labelled.iter().zip(&windows) {
        let v = serde_json::json!({
            "complaint_id": c.complaint_id.0,
            "date_received": c.date_received.to_string(),
            "product": c.product,
            "sub_product": c.sub_product,
            "issue": c.issue,
            "sub_issue": c.sub_issue,
            "company": c.company,
            "state": c.state.map(|s| s.code()),
            "zip_code": c.zip_code,
            "tags": c.tags.as_cfpb(),
            "consumer_consent_provided": c.consumer_consent_provided,
            "submitted_via": c.submitted_via,
            "date_sent_to_company": c.date_sent_to_company.map(|d| d.to_string()),
            "narrative": c.narrative(),
            "label": cfg.label_policy.label(c),
            "hash_train": is_train(c.complaint_id, cfg.train_fraction),
            "window": names[*w as usize],
        });
        serde_json::to_writer(&mut f, &v)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    eprintln!("wrote {} labelled complaints to {out}", labelled.len());
    Ok(())
}
