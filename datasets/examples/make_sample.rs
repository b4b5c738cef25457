//! Regenerates the bundled sample `datasets/data/complaints-sample.json` from the shared
//! development set: every record of `complaints-dev.json` whose complaint id falls below
//! `SAMPLE_FRACTION` under the salted stable hash (`split::hash_unit(SAMPLE_SALT, id)`), in
//! input order, each element copied byte for byte (same JSON array layout as the source).
//!
//! `cargo run -p complaintflow-datasets --example make_sample -- [SOURCE] [OUTPUT]`
//! (see `scripts/make-sample.sh`).

use std::io::Write;
use std::path::PathBuf;

use complaintflow_datasets::reader::{Format, RawRecords};
use complaintflow_datasets::split::hash_unit;
use complaintflow_datasets::{
    bundled_sample_path, parse_json_record, DatasetError, ValidationOptions, SAMPLE_FRACTION,
    SAMPLE_SALT,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let source = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/datasets/cfpb/complaints-dev.json")
    });
    let output = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(bundled_sample_path);
    let opts = ValidationOptions::default();
    let mut out = Vec::new();
    let (mut read, mut kept) = (0u64, 0u64);
    out.extend_from_slice(b"[\n");
    for raw in RawRecords::from_path(&source, Format::JsonArray, opts.max_record_bytes)? {
        let raw = raw?;
        let c = parse_json_record(&raw.bytes, &opts)?;
        read += 1;
        if hash_unit(SAMPLE_SALT, c.complaint_id) < SAMPLE_FRACTION {
            if kept > 0 {
                out.extend_from_slice(b",\n");
            }
            out.push(b' ');
            out.extend_from_slice(&raw.bytes);
            kept += 1;
        }
    }
    out.extend_from_slice(b"\n]\n");
    let mut f = std::fs::File::create(&output).map_err(|e| DatasetError::io(&output, e))?;
    f.write_all(&out)
        .map_err(|e| DatasetError::io(&output, e))?;
    eprintln!(
        "{}: kept {kept} of {read} records ({} bytes)",
        output.display(),
        out.len()
    );
    Ok(())
}
