//! Integration tests on the real CFPB dev file.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;

use complaintflow_datasets::{CompanyResponse, Complaint, LabelPolicy, YesNo};
use complaintflow_models::metrics::auc_roc;
use complaintflow_models::{
    compare, promotion_gate, train, Calibration, DataInfo, FamilyChoice, FeatureConfig,
    FeaturePipeline, GbdtConfig, Model, ModelError, ModelFamily, Registry, SparseFeatures, Stage,
    TextVectorizer, TrainConfig, MODEL_SCHEMA_VERSION,
};

const DEV: &str = "/work/shared/datasets/cfpb/complaints-dev.json";

fn dev() -> Vec<Complaint> {
    serde_json::from_slice(&std::fs::read(DEV).expect("dev file")).expect("dev file parses")
}

/// A small, fast configuration for tests (the defaults are exercised by the example/bench).
fn small_config() -> TrainConfig {
    TrainConfig {
        features: FeatureConfig {
            max_features: 400,
            ..FeatureConfig::default()
        },
        alphas: vec![1.0, 10.0],
        max_iterations: 40,
        gbdt: GbdtConfig {
            max_rounds: 60,
            eval_every: 20,
            max_leaves: vec![15],
            ..GbdtConfig::default()
        },
        ..TrainConfig::default()
    }
}

fn outcome_of(rows: &[Complaint], family: FamilyChoice) -> complaintflow_models::TrainOutcome {
    let cfg = TrainConfig {
        family,
        ..small_config()
    };
    train(rows, &cfg, &mut |_| {}).expect("training succeeds")
}

fn small_outcome() -> (Vec<Complaint>, complaintflow_models::TrainOutcome) {
    let all = dev();
    let subset: Vec<Complaint> = all.into_iter().take(2000).collect();
    let outcome = train(&subset, &small_config(), &mut |_| {}).expect("training succeeds");
    (subset, outcome)
}

#[test]
fn batch_and_stream_paths_give_identical_vectors() {
    let all = dev();
    let pipeline = FeaturePipeline::fit(&FeatureConfig::default(), &all[..3000]).unwrap();
    // Batch path: what training builds its design matrix from.
    let batch = pipeline.transform_batch(all.iter());
    assert_eq!(batch.len(), all.len());
    // Stream path: the pipeline broadcast through bincode, each complaint re-parsed from its
    // JSON message, one long-lived buffer per worker, records in another order.
    let bytes = bincode::serialize(&pipeline).unwrap();
    let streamed: complaintflow_models::FittedPipeline = bincode::deserialize(&bytes).unwrap();
    let mut buf = SparseFeatures::new();
    let mut with_text = 0;
    for (i, c) in all.iter().enumerate().rev() {
        let msg = serde_json::to_vec(c).unwrap();
        let parsed: Complaint = serde_json::from_slice(&msg).unwrap();
        streamed.transform(&parsed, &mut buf);
        let (idx, val) = batch.row(i).unwrap();
        assert_eq!(buf.indices(), idx, "complaint {}", c.complaint_id);
        let same_bits = buf
            .values()
            .iter()
            .zip(val)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same_bits, "values differ for complaint {}", c.complaint_id);
        with_text += usize::from(c.narrative().is_some());
    }
    assert!(with_text > 1000, "the comparison covered narratives");
}

#[test]
fn leakage_fields_never_change_the_vector_or_the_fit() {
    let all: Vec<Complaint> = dev().into_iter().take(1500).collect();
    let cfg = FeatureConfig::default();
    let pipeline = FeaturePipeline::fit(&cfg, &all).unwrap();
    let perturb = |c: &Complaint, k: usize| {
        let mut p = c.clone();
        let responses = [
            CompanyResponse::ClosedWithMonetaryRelief,
            CompanyResponse::ClosedWithExplanation,
            CompanyResponse::UntimelyResponse,
            CompanyResponse::Other("Credit report corrected, debt relief".into()),
        ];
        p.company_response = if k % 5 == 4 {
            None
        } else {
            Some(responses[k % 4].clone())
        };
        p.timely = [Some(YesNo::Yes), Some(YesNo::No), None][k % 3];
        p.consumer_disputed = [
            Some(YesNo::Yes),
            Some(YesNo::No),
            Some(YesNo::NotApplicable),
            None,
        ][k % 4];
        // Words that are in the vocabulary, so leaking this field would show.
        p.company_public_response =
            Some("Company believes the credit report debt was resolved".into());
        p
    };
    let (mut a, mut b) = (SparseFeatures::new(), SparseFeatures::new());
    for (k, c) in all.iter().enumerate() {
        pipeline.transform(c, &mut a);
        pipeline.transform(&perturb(c, k), &mut b);
        assert_eq!(a.indices(), b.indices());
        assert_eq!(a.values(), b.values());
    }
    // Fitting never reads them either.
    let perturbed: Vec<Complaint> = all
        .iter()
        .enumerate()
        .map(|(k, c)| perturb(c, k + 1))
        .collect();
    assert_eq!(FeaturePipeline::fit(&cfg, &perturbed).unwrap(), pipeline);
    // The tree model's encoder never reads them either (fitted and scored).
    let gb = outcome_of(&all, FamilyChoice::Gbdt).model;
    let (mut a2, mut b2) = (SparseFeatures::new(), SparseFeatures::new());
    for (k, c) in all.iter().enumerate().take(300) {
        let s = gb.score(c, &mut a2);
        assert_eq!(s.to_bits(), gb.score(&perturb(c, k), &mut b2).to_bits());
    }
    // And the vector of a perturbed complaint still depends on real fields.
    let mut c = all[0].clone();
    pipeline.transform(&c, &mut a);
    c.product = Some("Mortgage".into());
    pipeline.transform(&c, &mut b);
    assert_ne!(a.indices(), b.indices());
}

#[test]
fn training_save_load_and_bincode_round_trips_give_identical_scores() {
    let (subset, outcome) = small_outcome();
    let model = &outcome.model;
    let auc = outcome.report.test.auc_roc.unwrap();
    assert!(
        auc > 0.7,
        "test AUC {auc} on real data should be well above chance"
    );
    assert_eq!(model.weights.len(), model.pipeline.dim());

    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = Model::load(dir.path()).unwrap();
    assert_eq!(&loaded, model);
    let wire: Model = bincode::deserialize(&bincode::serialize(model).unwrap()).unwrap();
    let (mut b1, mut b2, mut b3) = (
        SparseFeatures::new(),
        SparseFeatures::new(),
        SparseFeatures::new(),
    );
    for c in &subset {
        let s = model.score(c, &mut b1);
        assert!((0.0..=1.0).contains(&s));
        assert_eq!(s.to_bits(), loaded.score(c, &mut b2).to_bits());
        assert_eq!(s.to_bits(), wire.score(c, &mut b3).to_bits());
    }

    // A corrupted file is refused, naming the file.
    let model_json = dir.path().join("model.json");
    let mut bytes = std::fs::read(&model_json).unwrap();
    let pos = bytes.iter().position(|&b| b == b'.').unwrap();
    bytes[pos + 1] = if bytes[pos + 1] == b'1' { b'2' } else { b'1' };
    std::fs::write(&model_json, &bytes).unwrap();
    match Model::load(dir.path()) {
        Err(e @ ModelError::Hash { .. }) => assert!(e.to_string().contains("model.json")),
        other => panic!("expected a hash error, got {other:?}"),
    }
    // A future schema version is refused.
    model.save(dir.path()).unwrap();
    let manifest = dir.path().join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            &format!("\"schema_version\": {MODEL_SCHEMA_VERSION}"),
            "\"schema_version\": 99",
        ),
    )
    .unwrap();
    assert!(matches!(
        Model::load(dir.path()),
        Err(ModelError::SchemaVersion {
            found: 99,
            expected: MODEL_SCHEMA_VERSION,
            ..
        })
    ));
}

fn assert_same_scores(a: &Model, b: &Model, rows: &[Complaint]) {
    let (mut b1, mut b2) = (SparseFeatures::new(), SparseFeatures::new());
    for c in rows {
        let s = a.score(c, &mut b1);
        assert!((0.0..=1.0).contains(&s));
        assert_eq!(s.to_bits(), b.score(c, &mut b2).to_bits());
    }
}

/// The hot scoring path (numeric-only narrative analysis without stems, precomputed
/// `[te, freq]` pairs, memoized level keys, compiled trees walked side by side) against the
/// straightforward computation (full transform, encoding from the level counts, one tree
/// after the other), bit for bit, on every dev complaint in two orders through one
/// long-lived buffer (cold and warm caches), for the trees and the blend.
#[test]
fn fast_scoring_path_is_bit_identical_to_the_reference_computation() {
    let all = dev();
    let blend = outcome_of(&all[..2500], FamilyChoice::Blend).model;
    for family in [ModelFamily::Gbdt, ModelFamily::Blend] {
        let mut m = blend.clone();
        m.family = family;
        let t = m.trees.clone().unwrap();
        let w = if family == ModelFamily::Gbdt {
            0.0
        } else {
            m.lr_weight
        };
        let (mut buf, mut full, mut row) =
            (SparseFeatures::new(), SparseFeatures::new(), Vec::new());
        for c in all.iter().chain(all.iter().rev()) {
            let p = m.score(c, &mut buf);
            m.pipeline.transform(c, &mut full);
            let n = (t.encoder.n_numeric as usize).min(full.len());
            t.encoder.encode_uncached(c, &full.values()[..n], &mut row);
            let trees = t.ensemble.margin_sequential(&row);
            assert_eq!(t.ensemble.margin(&row).to_bits(), trees.to_bits());
            let mut z = 0.0;
            if w != 0.0 {
                z += w * m.margin(&full);
            }
            z += (1.0 - w) * trees;
            assert_eq!(
                p.to_bits(),
                m.calibration.apply(z).to_bits(),
                "{family} complaint {}",
                c.complaint_id
            );
        }
    }
}

#[test]
fn registry_and_bincode_round_trip_every_family() {
    let rows: Vec<Complaint> = dev().into_iter().take(2500).collect();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    let mut lr_scores = Vec::new();
    for (family, want) in [
        (FamilyChoice::Lr, ModelFamily::Lr),
        (FamilyChoice::Gbdt, ModelFamily::Gbdt),
        (FamilyChoice::Blend, ModelFamily::Blend),
    ] {
        let out = outcome_of(&rows, family);
        let m = &out.model;
        assert_eq!(m.family, want);
        assert_eq!(m.trees.is_some(), want != ModelFamily::Lr);
        assert!(matches!(m.calibration, Calibration::Platt { .. }));
        // Served model is fitted on every labelled complaint.
        assert_eq!(out.report.rows.served_fit, out.report.rows.labelled);
        let meta = reg.register(&out, DataInfo::default()).unwrap();
        assert_eq!(meta.hyperparameters.family, want);
        assert_eq!(meta.families.len(), 3);
        let loaded = reg.load_model(&meta.version).unwrap();
        let mut expect = m.clone();
        expect.version = meta.version.clone();
        assert_eq!(loaded, expect);
        assert_same_scores(&expect, &loaded, &rows);
        // The wire format timely uses between processes.
        let wire: Model = bincode::deserialize(&bincode::serialize(&expect).unwrap()).unwrap();
        assert_eq!(wire, expect);
        assert_same_scores(&expect, &wire, &rows);
        let mut buf = SparseFeatures::new();
        let s: Vec<f64> = rows.iter().map(|c| loaded.score(c, &mut buf)).collect();
        // The scoring shortcut (trees: numeric block only) gives exactly the margin of the
        // full transform.
        let mut full = SparseFeatures::new();
        for (c, &p) in rows.iter().zip(&s) {
            let z = loaded.raw_margin(c, &mut full);
            assert_eq!(p.to_bits(), loaded.calibration.apply(z).to_bits(), "{want}");
        }
        if want == ModelFamily::Lr {
            lr_scores = s;
        } else {
            // A different scorer, not the LR in disguise.
            assert_ne!(s, lr_scores);
        }
        // Test-split AUC well above chance and a sane calibration.
        let t = &out.report.test;
        assert!(t.auc_roc.unwrap() > 0.75, "{want}: {:?}", t.auc_roc);
        assert!(t.ece < 0.08, "{want}: ECE {}", t.ece);
    }
    assert_eq!(reg.list().unwrap().len(), 3);
}

#[test]
fn schema_1_lr_directories_still_load() {
    let (_, outcome) = small_outcome();
    let dir = tempfile::tempdir().unwrap();
    let m = &outcome.model;
    // What a schema-1 build wrote: model.json without the family / tree / calibration keys.
    let v1 = serde_json::json!({
        "version": "v0001", "label_policy": "relief", "weights": m.weights,
        "intercept": m.intercept, "threshold": m.threshold,
    });
    let model_bytes = serde_json::to_vec(&v1).unwrap();
    let pipeline_bytes = serde_json::to_vec(&m.pipeline).unwrap();
    std::fs::write(dir.path().join("model.json"), &model_bytes).unwrap();
    std::fs::write(dir.path().join("pipeline.json"), &pipeline_bytes).unwrap();
    let sha = |b: &[u8]| complaintflow_models::model::sha256_hex(b);
    let manifest = serde_json::json!({
        "format": "complaintflow-model", "schema_version": 1,
        "files": [
            {"name": "pipeline.json", "sha256": sha(&pipeline_bytes), "bytes": pipeline_bytes.len()},
            {"name": "model.json", "sha256": sha(&model_bytes), "bytes": model_bytes.len()},
        ]
    });
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let loaded = Model::load(dir.path()).unwrap();
    assert_eq!(loaded.family, ModelFamily::Lr);
    assert_eq!(loaded.calibration, Calibration::Identity);
    assert_eq!(loaded.lr_weight, 1.0);
    assert!(loaded.trees.is_none());
}

#[test]
fn compare_reports_consistent_figures_and_the_gate_uses_them() {
    let all = dev();
    let rows: Vec<Complaint> = all.iter().take(2500).cloned().collect();
    let lr = outcome_of(&rows, FamilyChoice::Lr).model;
    let gb = outcome_of(&rows, FamilyChoice::Gbdt).model;
    let eval: Vec<Complaint> = all[2500..4000].to_vec();
    let c = compare(&[&lr, &gb], &eval, LabelPolicy::Relief, 200).unwrap();
    let labelled = eval
        .iter()
        .filter(|c| LabelPolicy::Relief.label(c).is_some())
        .count() as u64;
    assert_eq!(c.rows, labelled);
    assert_eq!(c.models.len(), 2);
    let mut buf = SparseFeatures::new();
    for (m, e) in [&lr, &gb].iter().zip(&c.models) {
        let (s, y): (Vec<f64>, Vec<bool>) = eval
            .iter()
            .filter_map(|x| {
                LabelPolicy::Relief
                    .label(x)
                    .map(|y| (m.score(x, &mut buf), y))
            })
            .unzip();
        let auc = auc_roc(&s, &y).unwrap();
        assert!((e.metrics.auc_roc.unwrap() - auc).abs() < 1e-12);
        let (lo, hi) = e.auc_ci.unwrap();
        assert!(lo < auc && auc < hi && hi - lo < 0.15, "{lo} {auc} {hi}");
        assert_eq!(e.per_product.iter().map(|p| p.n).sum::<u64>(), labelled);
        assert!(e.metrics.ece >= 0.0 && e.metrics.log_loss > 0.0);
    }
    let diff = c.auc_diff.unwrap();
    let want = c.models[1].metrics.auc_roc.unwrap() - c.models[0].metrics.auc_roc.unwrap();
    assert!((diff - want).abs() < 1e-12);
    let (lo, hi) = c.auc_diff_ci.unwrap();
    assert!(lo <= diff && diff <= hi);
    // A model against itself: no difference.
    let same = compare(&[&lr, &lr], &eval, LabelPolicy::Relief, 50).unwrap();
    assert_eq!(same.auc_diff, Some(0.0));
    // The gate: the better model passes against the worse one, not the reverse, and a
    // margin larger than the difference blocks it.
    let (a, b) = (
        c.models[0].metrics.auc_roc.unwrap(),
        c.models[1].metrics.auc_roc.unwrap(),
    );
    let (hi_auc, lo_auc) = if a > b { (a, b) } else { (b, a) };
    assert!(promotion_gate(Some(hi_auc), Some(lo_auc), 0.0).promote);
    assert!(!promotion_gate(Some(lo_auc), Some(hi_auc), 0.0).promote);
    assert!(!promotion_gate(Some(hi_auc), Some(lo_auc), hi_auc - lo_auc + 0.001).promote);
    assert!(c.to_string().contains("per product AUC"));
}

#[test]
fn registry_promote_and_rollback() {
    let (_, outcome) = small_outcome();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path().join("registry")).unwrap();
    assert!(reg.list().unwrap().is_empty());
    assert!(matches!(
        reg.load_production(),
        Err(ModelError::NoProduction { .. })
    ));

    let data = DataInfo::from_file(Path::new(DEV), 2000).unwrap();
    let v1 = reg.register(&outcome, data.clone()).unwrap();
    let v2 = reg.register(&outcome, data.clone()).unwrap();
    let v3 = reg.register(&outcome, data).unwrap();
    assert_eq!(
        (
            v1.version.as_str(),
            v2.version.as_str(),
            v3.version.as_str()
        ),
        ("v0001", "v0002", "v0003")
    );
    assert_eq!(v1.stage, Stage::Candidate);
    assert_eq!(v1.data.sha256.as_deref().map(str::len), Some(64));
    assert_eq!(v1.label_policy, LabelPolicy::Relief);
    assert_eq!(reg.load_model("v0002").unwrap().version, "v0002");

    reg.promote("v0001").unwrap();
    reg.promote("v0003").unwrap();
    let stages: Vec<(String, Stage)> = reg
        .list()
        .unwrap()
        .into_iter()
        .map(|m| (m.version, m.stage))
        .collect();
    assert_eq!(
        stages,
        vec![
            ("v0001".into(), Stage::Archived),
            ("v0002".into(), Stage::Candidate),
            ("v0003".into(), Stage::Production)
        ]
    );
    assert_eq!(reg.load_production().unwrap().version, "v0003");

    let back = reg.rollback().unwrap();
    assert_eq!(back.version, "v0001");
    assert_eq!(back.stage, Stage::Production);
    assert_eq!(reg.get("v0003").unwrap().stage, Stage::Archived);
    assert!(matches!(
        reg.rollback(),
        Err(ModelError::NothingToRollBack { .. })
    ));

    // A reopened registry sees the same state.
    let again = Registry::open(dir.path().join("registry")).unwrap();
    assert_eq!(
        again.production().unwrap().map(|m| m.version),
        Some("v0001".into())
    );
    match again.get("v0042") {
        Err(e @ ModelError::UnknownVersion { .. }) => {
            assert!(e.to_string().contains("models list"))
        }
        other => panic!("expected unknown version, got {other:?}"),
    }
    assert!(matches!(
        again.promote("../etc"),
        Err(ModelError::UnknownVersion { .. })
    ));
}

#[test]
fn auc_matches_brute_force_pair_count() {
    // Independent reference: count ordered pairs directly.
    let scores: Vec<f64> = (0..200).map(|i| ((i * 37) % 101) as f64 / 101.0).collect();
    let labels: Vec<bool> = (0..200).map(|i| (i * 13) % 7 < 2).collect();
    let mut good = 0.0;
    let mut pairs = 0.0;
    for i in 0..200 {
        for j in 0..200 {
            if labels[i] && !labels[j] {
                pairs += 1.0;
                if scores[i] > scores[j] {
                    good += 1.0;
                } else if scores[i] == scores[j] {
                    good += 0.5;
                }
            }
        }
    }
    let auc = auc_roc(&scores, &labels).unwrap();
    assert!((auc - good / pairs).abs() < 1e-12);
}

#[test]
fn hashing_vectorizer_and_family_switches() {
    let all: Vec<Complaint> = dev().into_iter().take(1000).collect();
    let hashing = FeatureConfig {
        vectorizer: TextVectorizer::Hashing,
        hashing_dim: 512,
        ..FeatureConfig::default()
    };
    let p = FeaturePipeline::fit(&hashing, &all).unwrap();
    assert_eq!(p.text_dim(), 512);
    let mut buf = SparseFeatures::new();
    for c in &all {
        p.transform(c, &mut buf);
        assert!(buf.indices().windows(2).all(|w| w[0] < w[1]));
        assert!(buf.indices().iter().all(|&i| (i as usize) < p.dim()));
        assert!(buf.values().iter().all(|v| v.is_finite()));
    }
    // Everything off but categoricals: exactly one column per categorical field (tags: 1+).
    let only_cats = FeatureConfig {
        text: false,
        text_stats: false,
        dates: false,
        sentiment: false,
        entities: false,
        ..FeatureConfig::default()
    };
    let p = FeaturePipeline::fit(&only_cats, &all).unwrap();
    p.transform(&all[0], &mut buf);
    assert!(buf.len() >= 9);
    assert!(buf.iter().all(|(_, v)| v == 1.0));
    let names: Vec<String> = buf
        .indices()
        .iter()
        .map(|&i| p.feature_name(i as usize))
        .collect();
    assert!(names.iter().any(|n| n.starts_with("company=")), "{names:?}");
    assert!(FeatureConfig {
        ngram_max: 3,
        ..FeatureConfig::default()
    }
    .validate()
    .is_err());
}

#[test]
fn model_is_broadcastable() {
    fn check<T>()
    where
        T: Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
    }
    check::<Model>();
    check::<complaintflow_models::FittedPipeline>();
    fn send<T: Send + Sync + Clone + Default + 'static>() {}
    send::<SparseFeatures>();
}

#[test]
fn temporal_windows_follow_the_configured_shares_and_auto_serves_the_best_out_of_time_family() {
    use complaintflow_models::{temporal_assignment, TemporalConfig};
    let all = dev();
    let labelled: Vec<&Complaint> = all
        .iter()
        .filter(|c| LabelPolicy::Relief.label(c).is_some())
        .collect();
    let cfg = TrainConfig {
        temporal: TemporalConfig {
            enabled: true,
            validation_fraction: 0.15,
            test_fraction: 0.1,
            out_of_time_fraction: 0.2,
            ..TemporalConfig::default()
        },
        ..small_config()
    };
    let (w, infos) = temporal_assignment(&labelled, &cfg).unwrap();
    assert_eq!(w.len(), labelled.len());
    assert_eq!(infos.len(), 4);
    // Windows are contiguous in date_received: no date falls in two windows, and each
    // window's rows lie between its reported start and end.
    for k in 0..4u8 {
        let dates: Vec<_> = labelled
            .iter()
            .zip(&w)
            .filter(|(_, &x)| x == k)
            .map(|(c, _)| c.date_received)
            .collect();
        let info = &infos[k as usize];
        assert_eq!(dates.len() as u64, info.rows);
        assert!(dates.iter().all(|d| *d >= info.start && *d <= info.end));
        if k > 0 {
            assert!(infos[k as usize - 1].end < info.start, "{infos:?}");
        }
    }
    // Shares as configured (cuts move to a date boundary, so allow a little slack).
    let n = labelled.len() as f64;
    let share = |k: usize| infos[k].rows as f64 / n;
    assert!((share(3) - 0.2).abs() < 0.03, "{infos:?}");
    assert!((share(2) - 0.1).abs() < 0.03, "{infos:?}");
    assert!((share(1) - 0.15).abs() < 0.03, "{infos:?}");
    // Disabled: no windows.
    let off = TrainConfig {
        temporal: TemporalConfig {
            enabled: false,
            ..cfg.temporal.clone()
        },
        ..cfg.clone()
    };
    assert!(temporal_assignment(&labelled, &off).is_none());
    // Fixed windows by date replace the shares.
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let starts = [day("2019-05-01"), day("2019-07-01"), day("2019-10-01")];
    let fixed = TrainConfig {
        temporal: TemporalConfig {
            validation_start: Some(starts[0]),
            test_start: Some(starts[1]),
            out_of_time_start: Some(starts[2]),
            ..cfg.temporal.clone()
        },
        ..cfg.clone()
    };
    fixed.validate().unwrap();
    let (wf, _) = temporal_assignment(&labelled, &fixed).unwrap();
    for (c, &k) in labelled.iter().zip(&wf) {
        let d = c.date_received;
        let lo = if k == 0 {
            None
        } else {
            Some(starts[k as usize - 1])
        };
        let hi = starts.get(k as usize).copied();
        assert!(
            lo.is_none_or(|lo| d >= lo) && hi.is_none_or(|hi| d < hi),
            "{d} in {k}"
        );
    }
    let mut bad = fixed.clone();
    bad.temporal.test_start = None;
    assert!(bad.validate().is_err());

    // `auto` serves the family with the best out-of-time AUC, and the report says so.
    let rows: Vec<Complaint> = all.into_iter().take(3000).collect();
    let out = train(
        &rows,
        &TrainConfig {
            family: FamilyChoice::Auto,
            ..cfg
        },
        &mut |_| {},
    )
    .unwrap();
    let r = &out.report;
    assert_eq!(r.windows.len(), 4);
    let best = r
        .families
        .iter()
        .max_by(|a, b| {
            let k = |f: &complaintflow_models::FamilyReport| {
                f.out_of_time.as_ref().and_then(|m| m.auc_roc).unwrap()
            };
            k(a).total_cmp(&k(b))
        })
        .unwrap();
    assert_eq!(out.model.family, best.family);
    assert_eq!(r.family, best.family);
    assert_eq!(
        r.out_of_time_auc(),
        best.out_of_time.as_ref().unwrap().auc_roc
    );
}
