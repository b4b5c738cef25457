//! Everything that crosses workers and processes must survive timely's wire format (serde +
//! bincode), not only JSON: a serializer that writes a different shape than its
//! deserializer reads works in one process and crashes a cluster.
#![allow(clippy::unwrap_used)]

use complaintflow_datasets::{Format, RawRecords, ValidationOptions};
use complaintflow_models::Model;
use complaintflow_operators::prelude::*;
use complaintflow_operators::record::Origin;
use complaintflow_operators::rules::decide;

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    x: &T,
) {
    let bytes = bincode::serialize(x).unwrap();
    let back: T = bincode::deserialize(&bytes).unwrap();
    assert_eq!(&back, x);
}

#[test]
fn every_exchanged_record_roundtrips_through_bincode() {
    let opts = ValidationOptions::default();
    let rules = DecisionRules::default();
    let mut n = 0;
    for (i, r) in RawRecords::from_path(
        complaintflow_datasets::bundled_sample_path(),
        Format::Auto,
        1 << 20,
    )
    .unwrap()
    .enumerate()
    {
        let raw = RawInput::new(r.unwrap().bytes, Origin::file("sample", i as i64));
        roundtrip(&raw);
        let mut parsed = complaintflow_operators::parse::parse_raw(raw, &opts).unwrap();
        // The original bytes stay in their process (`serde(skip)`): they do not cross.
        assert!(!parsed.raw.is_empty());
        let back: Parsed = bincode::deserialize(&bincode::serialize(&parsed).unwrap()).unwrap();
        assert!(back.raw.is_empty());
        parsed.raw.clear();
        roundtrip(&parsed);
        let d = decide(&parsed.complaint, 0.07, false, "v1", &rules);
        roundtrip(&d);
        roundtrip(&std::sync::Arc::new(Published::new(d)));
        n += 1;
    }
    assert_eq!(n, 4303);
    let bad = RawInput::new(b"{oops".to_vec(), Origin::file("x", 1));
    roundtrip(&complaintflow_operators::parse::parse_raw(bad, &opts).unwrap_err());
    let model: Model = serde_json::from_str(include_str!("fixtures/tiny-model.json")).unwrap();
    roundtrip(&ModelUpdate {
        model,
        role: ModelRole::Candidate { fraction: 0.25 },
    });
}
