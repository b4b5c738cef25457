//! The bundled sample: present, small, real (a subset of the dev set), selected by the
//! documented rule.

#![allow(clippy::unwrap_used)]

use complaintflow_datasets::split::{fmix64, fnv1a64, hash_unit};
use complaintflow_datasets::{
    bundled_sample_path, read_path, Format, LabelPolicy, ValidationOptions, SAMPLE_FRACTION,
    SAMPLE_SALT,
};

#[test]
fn bundled_sample_reads_cleanly_and_matches_its_readme() {
    let path = bundled_sample_path();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 4_500_000, "{size}");
    let cs: Vec<_> = read_path(&path, Format::Auto, &ValidationOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Figures from data/README.md (computed there with an independent Python script).
    assert_eq!(cs.len(), 4303);
    let labels: Vec<bool> = cs
        .iter()
        .filter_map(|c| LabelPolicy::Relief.label(c))
        .collect();
    assert_eq!(labels.len(), 4282);
    assert_eq!(labels.iter().filter(|x| **x).count(), 655);
    // The selection rule, spelled out with the raw hash.
    for c in &cs {
        let h = fmix64(fnv1a64(
            format!("{SAMPLE_SALT}{}", c.complaint_id).as_bytes(),
        ));
        assert!(((h >> 11) as f64 / (1u64 << 53) as f64) < SAMPLE_FRACTION);
        assert!(hash_unit(SAMPLE_SALT, c.complaint_id) < SAMPLE_FRACTION);
    }
}

#[test]
fn sample_is_exactly_the_selected_dev_records() {
    let dev = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/datasets/cfpb/complaints-dev.json");
    if !dev.exists() {
        eprintln!("note: {} absent; test skipped", dev.display());
        return;
    }
    let opts = ValidationOptions::default();
    let selected: Vec<_> = read_path(&dev, Format::Auto, &opts)
        .unwrap()
        .map(Result::unwrap)
        .filter(|c| hash_unit(SAMPLE_SALT, c.complaint_id) < SAMPLE_FRACTION)
        .collect();
    let sample: Vec<_> = read_path(bundled_sample_path(), Format::Auto, &opts)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(selected, sample);
}
