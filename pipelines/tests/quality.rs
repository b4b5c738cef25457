//! Live model quality: predictions joined with outcomes, on the held-out part of the bundled
//! real sample (the complaints the test model did not train on, by the 75/25 hash split).
//! The labels and the exact AUC are recounted here from the file and the predictions file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use complaintflow_datasets::{Complaint, LabelPolicy};
use complaintflow_models::metrics::auc_roc;
use complaintflow_models::Model;
use complaintflow_operators::record::RawInput;
use complaintflow_operators::Decision;
use complaintflow_pipelines::quality::QualityReport;
use complaintflow_pipelines::{Engine, EngineConfig, Source, SourceContext, SourceSpec};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{Scope, Stream};

fn model(version: &str) -> Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    let mut m = MODEL
        .get_or_init(|| {
            // `train` holds out the same 25 % hash split that `held_out` writes.
            let rows: Vec<Complaint> =
                complaintflow_testkit::real_records(&complaintflow_datasets::bundled_sample_path());
            complaintflow_testkit::fast_model(&rows, "test-v1")
        })
        .clone();
    m.version = version.to_string();
    m
}

/// The held-out complaints (JSON Lines, as in the sample) and their labels.
fn held_out(dir: &Path) -> (PathBuf, BTreeMap<u64, Option<bool>>) {
    let (path, complaints) = complaintflow_testkit::write_held_out(dir);
    let labels = complaints
        .iter()
        .map(|c| (c.complaint_id.0, LabelPolicy::Relief.label(c)))
        .collect();
    (path, labels)
}

fn config(dir: &Path, workers: usize) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir.join("registry"));
    cfg.workers = workers;
    cfg.once = true;
    cfg.policy.max_records_per_epoch = 300;
    cfg.predictions_path = Some(dir.join("predictions.jsonl"));
    cfg.dead_letters_path = Some(dir.join("dead.jsonl"));
    cfg.monitoring.min_labelled = 50;
    cfg
}

fn file(path: &Path) -> Arc<dyn Source> {
    SourceSpec::File {
        path: path.to_path_buf(),
        format: Default::default(),
    }
    .into_source()
}

/// A source whose records are moved `by` epochs later (clock epochs: milliseconds), so that
/// the join sees them after the other input's.
struct Later {
    inner: Arc<dyn Source>,
    by: u64,
}

impl Source for Later {
    fn describe(&self) -> String {
        format!("{} (+{} ms)", self.inner.describe(), self.by)
    }
    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        ctx: &SourceContext,
    ) -> Stream<'s, u64, Vec<RawInput>> {
        let by = self.by;
        self.inner
            .build(scope, ctx)
            .unary::<CapacityContainerBuilder<Vec<RawInput>>, _, _, _>(
                Pipeline,
                "Later",
                move |_cap, _info| {
                    move |input, output| {
                        input.for_each_stamp(|cap, data| {
                            let Some(t) = cap.least().copied() else {
                                return;
                            };
                            let later = cap.delayed(&(t + by), 0);
                            let mut session = output.session(&later);
                            for batch in data {
                                session.give_iterator(batch.drain(..));
                            }
                        });
                    }
                },
            )
    }
}

struct Run {
    report: QualityReport,
    decisions: Vec<Decision>,
    dead: Vec<serde_json::Value>,
}

fn run(
    dir: &Path,
    cfg: EngineConfig,
    source: Arc<dyn Source>,
    outcomes: Arc<dyn Source>,
    candidate: Option<(Model, f64)>,
) -> Run {
    let mut cfg = cfg;
    cfg.outcomes = Some(outcomes);
    let mut b = Engine::builder(cfg.clone()).source(source);
    if let Some((m, f)) = candidate {
        b = b.candidate(m, f);
    }
    let engine = b.start(model("test-v1")).unwrap();
    let state = engine.state();
    engine.join().unwrap();
    let read = |p: &Option<PathBuf>| -> Vec<String> {
        std::fs::read_to_string(p.as_ref().unwrap())
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    };
    let _ = dir;
    Run {
        report: state.quality_report(),
        decisions: read(&cfg.predictions_path)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        dead: read(&cfg.dead_letters_path)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

/// (labelled, positives, exact AUC) of `version`'s decisions against `labels`.
fn recount(
    decisions: &[Decision],
    labels: &BTreeMap<u64, Option<bool>>,
    version: &str,
) -> (u64, u64, f64) {
    let (mut scores, mut ys) = (Vec::new(), Vec::new());
    for d in decisions.iter().filter(|d| &*d.model_version == version) {
        if let Some(Some(y)) = labels.get(&d.complaint_id.parse::<u64>().unwrap()) {
            scores.push(d.score);
            ys.push(*y);
        }
    }
    let pos = ys.iter().filter(|y| **y).count() as u64;
    (ys.len() as u64, pos, auc_roc(&scores, &ys).unwrap())
}

#[test]
fn outcomes_joined_in_either_order_match_an_offline_recount() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, labels) = held_out(tmp.path());
    let want_labelled = labels.values().filter(|l| l.is_some()).count() as u64;
    assert!(
        want_labelled > 500,
        "the held-out set has {want_labelled} labelled complaints"
    );
    let mut seen = Vec::new();
    for (name, workers, source, outcomes) in [
        ("together", 1, file(&h), file(&h)),
        (
            "outcomes first",
            2,
            Arc::new(Later {
                inner: file(&h),
                by: 3_000,
            }) as Arc<dyn Source>,
            file(&h),
        ),
        (
            "predictions first",
            2,
            file(&h),
            Arc::new(Later {
                inner: file(&h),
                by: 3_000,
            }) as Arc<dyn Source>,
        ),
    ] {
        let dir = tmp.path().join(name.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let r = run(&dir, config(&dir, workers), source, outcomes, None);
        let q = &r.report.versions["test-v1"];
        let (labelled, positives, auc) = recount(&r.decisions, &labels, "test-v1");
        assert_eq!(q.overall.labelled, want_labelled, "{name}");
        assert_eq!(
            (q.overall.labelled, q.overall.positives),
            (labelled, positives),
            "{name}"
        );
        let live = q.overall.auc.unwrap();
        assert!(
            (live - auc).abs() <= 0.005,
            "{name}: live AUC {live} vs exact {auc}"
        );
        assert!(
            ["MONITOR", "RETRAIN", "INVESTIGATE"].contains(&q.action.as_str()),
            "{name}: {}",
            q.action
        );
        // The scopes add up to the total.
        let by_product: u64 = q.by_product.values().map(|m| m.labelled).sum();
        let by_month: u64 = q.by_month.values().map(|m| m.labelled).sum();
        assert_eq!(
            (by_product, by_month),
            (want_labelled, want_labelled),
            "{name}"
        );
        assert_eq!(r.report.outcomes_read, labels.len() as u64, "{name}");
        eprintln!(
            "{name}: labelled {labelled}, live AUC {live:.5}, exact {auc:.5}, action {}",
            q.action
        );
        seen.push(q.overall.clone());
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "the order of arrival changed the metrics: {seen:?}"
    );
}

#[test]
fn an_outcome_that_changes_retracts_the_old_label() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, _) = held_out(tmp.path());
    let ids: Vec<u64> = std::fs::read_to_string(&h)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["complaint_id"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    // Outcome records (response fields only): every complaint first "In progress"; then the
    // first third closed with relief on time; the second third closed with relief, then
    // disputed; the last third stays in progress. Plus two records that are not outcomes.
    let o = tmp.path().join("outcomes.jsonl");
    let mut f = std::fs::File::create(&o).unwrap();
    let line = |f: &mut std::fs::File, id: u64, resp: &str, disputed: &str| {
        writeln!(f, r#"{{"complaint_id":"{id}","company_response":"{resp}","timely":"Yes","consumer_disputed":"{disputed}"}}"#).unwrap();
    };
    for id in &ids {
        line(&mut f, *id, "In progress", "N/A");
    }
    let third = ids.len() / 3;
    for id in &ids[..2 * third] {
        line(&mut f, *id, "Closed with monetary relief", "No");
    }
    for id in &ids[third..2 * third] {
        line(&mut f, *id, "Closed with monetary relief", "Yes");
    }
    writeln!(f, "{{not json").unwrap();
    writeln!(f, r#"{{"complaint_id":"5"}}"#).unwrap();
    drop(f);
    let r = run(tmp.path(), config(tmp.path(), 2), file(&h), file(&o), None);
    let q = &r.report.versions["test-v1"];
    assert_eq!(
        (q.overall.labelled, q.overall.positives),
        ((2 * third) as u64, third as u64)
    );
    // Changes: first third 2 (pending → relief), second third 3 (… → disputed).
    assert_eq!(r.report.label_changes, (2 * third + third) as u64);
    let kinds: Vec<&str> = r.dead.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&"malformed_json") && kinds.contains(&"missing_field"));
    assert!(r.dead.iter().all(|d| d["message"]
        .as_str()
        .unwrap()
        .starts_with("outcome record:")));
    let labels: BTreeMap<u64, Option<bool>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, (i < 2 * third).then_some(i < third)))
        .collect();
    let (_, _, auc) = recount(&r.decisions, &labels, "test-v1");
    assert!((q.overall.auc.unwrap() - auc).abs() <= 0.005);
}

#[test]
fn two_versions_under_ab_have_separate_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, labels) = held_out(tmp.path());
    let r = run(
        tmp.path(),
        config(tmp.path(), 2),
        file(&h),
        file(&h),
        Some((model("test-v2"), 0.5)),
    );
    let mut total = 0;
    for v in ["test-v1", "test-v2"] {
        let q = &r.report.versions[v];
        let (labelled, positives, auc) = recount(&r.decisions, &labels, v);
        assert!(labelled > 100, "{v}: {labelled}");
        assert_eq!(
            (q.overall.labelled, q.overall.positives),
            (labelled, positives),
            "{v}"
        );
        assert!((q.overall.auc.unwrap() - auc).abs() <= 0.005, "{v}");
        total += q.overall.labelled;
    }
    assert_eq!(
        total,
        labels.values().filter(|l| l.is_some()).count() as u64
    );
}

#[test]
fn escalation_by_capacity_escalates_the_configured_share() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, _) = held_out(tmp.path());
    let fixed = run(tmp.path(), config(tmp.path(), 1), file(&h), file(&h), None);
    let mut cfg = config(tmp.path(), 1);
    cfg.decision.escalate_top_percent = Some(10.0);
    let r = run(tmp.path(), cfg, file(&h), file(&h), None);
    let share = |ds: &[Decision]| ds.iter().filter(|d| d.escalate).count() as f64 / ds.len() as f64;
    let (before, after) = (share(&fixed.decisions), share(&r.decisions));
    eprintln!(
        "escalated: fixed threshold {:.1} %, top 10 % {:.1} %",
        100.0 * before,
        100.0 * after
    );
    assert!(before > 0.15, "{before}");
    // The first 200 decisions use the fixed threshold; after them the live 10 % quantile.
    assert!((0.07..0.15).contains(&after), "{after}");
    let capacity = r
        .decisions
        .iter()
        .filter(|d| {
            d.reasons
                .iter()
                .any(|x| x.contains("in the lowest 10% of live scores"))
        })
        .count();
    assert!(capacity > 50, "{capacity}");
    assert!(r
        .decisions
        .iter()
        .filter(|d| d.escalate)
        .all(|d| !d.reasons.is_empty()));
}

/// The sample sorted by date received (older complaints first), as JSON Lines.
fn by_date(dir: &Path) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(complaintflow_datasets::bundled_sample_path()).unwrap();
    let mut records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    records.sort_by(|a, b| {
        (a["date_received"].as_str(), a["complaint_id"].as_str())
            .cmp(&(b["date_received"].as_str(), b["complaint_id"].as_str()))
    });
    let path = dir.join("by-date.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for r in &records {
        writeln!(f, "{}", serde_json::to_string(r).unwrap()).unwrap();
    }
    f.flush().unwrap();
    (path, records.len())
}

#[test]
fn the_closed_loop_retrains_ab_tests_and_promotes_or_rolls_back() {
    use complaintflow_datasets::replay::Rate;
    let tmp = tempfile::tempdir().unwrap();
    let (s, n) = by_date(tmp.path());
    // The champion, registered and promoted as `complaintflow train --promote` does.
    let rows = complaintflow_testkit::real_records(&complaintflow_datasets::bundled_sample_path());
    let registry = complaintflow_models::Registry::open(tmp.path().join("registry")).unwrap();
    let outcome = complaintflow_models::train(
        &rows,
        &complaintflow_testkit::fast_train_config(),
        &mut |_| {},
    )
    .unwrap();
    let meta = registry
        .register(
            &outcome,
            complaintflow_models::registry::DataInfo {
                path: None,
                sha256: None,
                records: Some(rows.len() as u64),
            },
        )
        .unwrap();
    registry.promote(&meta.version).unwrap();
    let champion = registry.load_model(&meta.version).unwrap();

    let mut cfg = config(tmp.path(), 2);
    cfg.train = complaintflow_testkit::fast_train_config();
    cfg.monitoring.auto_retrain = true;
    // A bar no model clears, so that RETRAIN fires once 200 outcomes are in.
    cfg.monitoring.retrain_below_auc = 0.99;
    cfg.monitoring.min_labelled = 200;
    cfg.monitoring.promote_after = 150;
    cfg.monitoring.retrain_data = Some(complaintflow_datasets::bundled_sample_path());
    let replay = |path: &Path| {
        SourceSpec::Replay {
            path: path.to_path_buf(),
            format: Default::default(),
            rate: "400/s".parse::<Rate>().unwrap(),
            resample: None,
            seed: 1,
        }
        .into_source()
    };
    cfg.policy.rate = "400/s".parse::<Rate>().unwrap().per_second();
    cfg.outcomes = Some(replay(&s));
    let engine = Engine::builder(cfg.clone())
        .source(replay(&s))
        .start(champion)
        .unwrap();
    let state = engine.state();
    engine.join().unwrap();
    let log = state.retrain_log();
    eprintln!("{}", log.join("\n"));
    let has = |what: &str| {
        log.iter()
            .any(|l| l.starts_with("closed loop:") && l.contains(what))
    };
    assert!(has("→ retraining on"), "{log:?}");
    assert!(has("A/B test: challenger"), "{log:?}");
    assert!(has("promoted ") || has("rolled back to "), "{log:?}");
    let decisions: Vec<Decision> = std::fs::read_to_string(cfg.predictions_path.as_ref().unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Nothing lost: every complaint decided exactly once, by the champion or the challenger.
    let ids: std::collections::BTreeSet<&str> =
        decisions.iter().map(|d| d.complaint_id.as_str()).collect();
    assert_eq!((decisions.len(), ids.len()), (n, n));
    let mut by_version: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &decisions {
        *by_version.entry(&d.model_version).or_default() += 1;
    }
    // The champion and at least one challenger, which was decided on 150+ outcomes (a later
    // loop may still be testing when the replay ends).
    assert!(by_version.len() >= 2, "{by_version:?}");
    let report = state.quality_report();
    let first = by_version.keys().find(|v| **v != meta.version).unwrap();
    assert!(
        report.versions[*first].overall.labelled >= 150,
        "{report:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("rejected by validation")),
        "{log:?}"
    );
}
