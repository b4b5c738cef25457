//! Featurize + score throughput: parsed complaints in, probabilities out, one thread (= per
//! core figures).
//!
//! Data: the 5,370 real complaints of `complaints-dev.json`, RESAMPLED (uniformly with
//! replacement, fixed seed) to 1,000,000 records with fresh complaint ids — synthetic
//! replication of real records, not new real data. `CF_BENCH_RECORDS` overrides the count.
//! Each feature configuration trains an LR model on the real dev file first (2 folds, one
//! penalty: the weights' values do not affect throughput). The `family_*` entries score with
//! the model the default `train` configuration fits on the dev file (its selected tree count
//! and leaves), as LR only, trees only and blend: the served hot path.
//!
//! `cargo bench -p complaintflow-models --bench featurize_score`
//! (`CF_BENCH_RECORDS=200000` for a quicker run; per-complaint time = time / records).

use std::hint::black_box;

use complaintflow_datasets::{Complaint, ComplaintId};
use complaintflow_models::{
    train, FamilyChoice, FeatureConfig, GbdtConfig, Model, ModelFamily, SparseFeatures,
    TemporalConfig, TextVectorizer, TrainConfig,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const DEV: &str = "/work/shared/datasets/cfpb/complaints-dev.json";

fn resampled(real: &[Complaint], n: usize) -> Vec<Complaint> {
    // xorshift64*: deterministic resampling with replacement.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let k = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) % real.len() as u64) as usize;
            let mut c = real[k].clone();
            c.complaint_id = ComplaintId(100_000_000 + i as u64);
            c
        })
        .collect()
}

fn model_for(real: &[Complaint], features: FeatureConfig) -> Model {
    let cfg = TrainConfig {
        features,
        folds: 2,
        alphas: vec![3.0],
        max_iterations: 60,
        family: FamilyChoice::Lr,
        fit_on_all: false,
        gbdt: GbdtConfig {
            max_rounds: 20,
            max_leaves: vec![7],
            ..GbdtConfig::default()
        },
        temporal: TemporalConfig {
            enabled: false,
            ..TemporalConfig::default()
        },
        ..TrainConfig::default()
    };
    train(real, &cfg, &mut |_| {}).expect("training").model
}

/// The default configuration's model, forced to the blend so that it carries both parts,
/// then viewed as each family.
fn family_models(real: &[Complaint]) -> Vec<(&'static str, Model)> {
    let cfg = TrainConfig {
        family: FamilyChoice::Blend,
        ..TrainConfig::default()
    };
    let out = train(real, &cfg, &mut |_| {}).expect("training");
    let blend = out.model;
    let trees = blend.trees.as_ref().map_or(0, |t| t.ensemble.roots.len());
    eprintln!(
        "  default model: {trees} trees × ≤ {} leaves, blend LR weight {:.2}",
        out.report.gbdt_leaves, blend.lr_weight
    );
    let mut lr = blend.clone();
    lr.family = ModelFamily::Lr;
    lr.trees = None;
    let mut gbdt = blend.clone();
    gbdt.family = ModelFamily::Gbdt;
    vec![
        ("family_lr", lr),
        ("family_gbdt", gbdt),
        ("family_blend", blend),
    ]
}

fn bench(c: &mut Criterion) {
    let real: Vec<Complaint> =
        serde_json::from_slice(&std::fs::read(DEV).expect("dev file")).expect("parse dev file");
    let n: usize = std::env::var("CF_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let data = resampled(&real, n);
    let with_narrative = data.iter().filter(|c| c.narrative().is_some()).count();
    eprintln!(
        "featurize_score: {n} resampled records ({with_narrative} with a narrative) from {} real",
        real.len()
    );

    let off = FeatureConfig {
        text: false,
        text_stats: false,
        categoricals: false,
        dates: false,
        sentiment: false,
        entities: false,
        ..FeatureConfig::default()
    };
    let configs: Vec<(&str, FeatureConfig)> = vec![
        ("all_families", FeatureConfig::default()),
        (
            "hashing_text",
            FeatureConfig {
                vectorizer: TextVectorizer::Hashing,
                ..FeatureConfig::default()
            },
        ),
        (
            "no_sentiment_no_entities",
            FeatureConfig {
                sentiment: false,
                entities: false,
                ..FeatureConfig::default()
            },
        ),
        (
            "no_text_ngrams",
            FeatureConfig {
                text: false,
                ..FeatureConfig::default()
            },
        ),
        (
            "no_narrative_families",
            FeatureConfig {
                text: false,
                text_stats: false,
                sentiment: false,
                entities: false,
                ..FeatureConfig::default()
            },
        ),
        (
            "categoricals_only",
            FeatureConfig {
                categoricals: true,
                ..off.clone()
            },
        ),
    ];

    let mut group = c.benchmark_group("featurize_score");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(5));
    for (name, model) in family_models(&real) {
        let mut buf = SparseFeatures::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut positives = 0usize;
                for c in &data {
                    let p = model.score(c, &mut buf);
                    positives += usize::from(model.predict(p));
                }
                black_box(positives)
            })
        });
    }
    let mut default_model = None;
    for (name, features) in configs {
        let model = model_for(&real, features);
        eprintln!("  {name}: dim {}", model.pipeline.dim());
        let mut buf = SparseFeatures::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut positives = 0usize;
                for c in &data {
                    let p = model.score(c, &mut buf);
                    positives += usize::from(model.predict(p));
                }
                black_box(positives)
            })
        });
        if default_model.is_none() {
            default_model = Some(model);
        }
    }
    // Where the time goes: transform alone vs. the dot product alone (default model).
    if let Some(model) = default_model {
        let mut buf = SparseFeatures::new();
        group.bench_function("all_families_transform_only", |b| {
            b.iter(|| {
                let mut nnz = 0usize;
                for c in &data {
                    model.pipeline.transform(c, &mut buf);
                    nnz += buf.len();
                }
                black_box(nnz)
            })
        });
        let rows = model.pipeline.transform_batch(data.iter());
        let mut one = SparseFeatures::new();
        group.bench_function("all_families_dot_only", |b| {
            b.iter(|| {
                let mut sum = 0.0f64;
                for r in 0..rows.len() {
                    if let Some((idx, val)) = rows.row(r) {
                        let mut z = 0.0f32;
                        for (&i, &v) in idx.iter().zip(val) {
                            z += model.weights.get(i as usize).copied().unwrap_or(0.0) * v;
                        }
                        sum += complaintflow_models::model::sigmoid(f64::from(z) + model.intercept);
                    }
                }
                one.clear();
                black_box(sum)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
