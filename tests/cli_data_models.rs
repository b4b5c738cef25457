//! Runs the real `complaintflow` binary: data profile / validate / split, config, train and
//! the model registry commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use complaintflow_datasets::split::is_train;
use complaintflow_datasets::{
    bundled_sample_path, read_path, Complaint, Format, ValidationOptions,
};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_complaintflow"));
    // Never pick up the repository's complaintflow.toml or the caller's environment by accident.
    c.env_remove("COMPLAINTFLOW_CONFIG").env("RUST_LOG", "warn");
    c
}

fn run(args: &[&str], dir: &Path) -> Output {
    bin()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("spawn complaintflow")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sample() -> String {
    bundled_sample_path().display().to_string()
}

fn library_count(path: &Path) -> (usize, usize) {
    let (mut ok, mut bad) = (0, 0);
    for r in read_path(path, Format::Auto, &ValidationOptions::default()).unwrap() {
        match r {
            Ok(_) => ok += 1,
            Err(_) => bad += 1,
        }
    }
    (ok, bad)
}

fn read_jsonl(path: &Path) -> Vec<Complaint> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Complaint>(l).unwrap())
        .collect()
}

#[test]
fn profile_json_agrees_with_the_library_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "data",
            "profile",
            &sample(),
            "--format",
            "json",
            "--plots",
            "plots",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (ok, bad) = library_count(&bundled_sample_path());
    assert_eq!(v["valid"].as_u64().unwrap() as usize, ok);
    assert_eq!(v["rejected"].as_u64().unwrap() as usize, bad);
    for f in [
        "volume_by_month.svg",
        "volume_by_product.svg",
        "resolution_by_product.svg",
        "resolution_by_state.svg",
    ] {
        let svg = std::fs::read_to_string(tmp.path().join("plots").join(f)).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.contains("<svg"),
            "{f} is not an SVG"
        );
    }
}

#[test]
fn validate_reports_each_bad_record_with_its_kind_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let good = r#"{"complaint_id":"1","date_received":"2019-09-24","product":"Mortgage"}"#;
    let bad_date = r#"{"complaint_id":"2","date_received":"2019-13-45","product":"Mortgage"}"#;
    let bad_state = r#"{"complaint_id":"3","date_received":"2019-09-24","state":"ZZ"}"#;
    let truncated = r#"{"complaint_id":"4","date_rec"#;
    let file = tmp.path().join("mixed.jsonl");
    std::fs::write(
        &file,
        format!("{good}\n{bad_date}\n{bad_state}\n{truncated}\n"),
    )
    .unwrap();
    let o = run(
        &[
            "data",
            "validate",
            file.to_str().unwrap(),
            "--input-format",
            "jsonl",
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("[unparseable_date]"), "{out}");
    assert!(out.contains("[unknown_state]"), "{out}");
    assert!(out.contains("line 4") || out.contains("record 4"), "{out}");
    assert!(out.contains("1 valid, 3 rejected"), "{out}");

    let o = run(&["data", "validate", &sample()], tmp.path());
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn hash_split_is_complete_disjoint_and_stable() {
    let tmp = tempfile::tempdir().unwrap();
    for out in ["a", "b"] {
        let o = run(&["data", "split", &sample(), "--out", out], tmp.path());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let train = read_jsonl(&tmp.path().join("a/train.jsonl"));
    let test = read_jsonl(&tmp.path().join("a/test.jsonl"));
    let (ok, _) = library_count(&bundled_sample_path());
    assert_eq!(train.len() + test.len(), ok);
    assert!(train.iter().all(|c| is_train(c.complaint_id, 0.75)));
    assert!(test.iter().all(|c| !is_train(c.complaint_id, 0.75)));
    let share = train.len() as f64 / ok as f64;
    assert!((0.72..0.78).contains(&share), "train share {share}");
    for f in ["train.jsonl", "test.jsonl"] {
        assert_eq!(
            std::fs::read(tmp.path().join("a").join(f)).unwrap(),
            std::fs::read(tmp.path().join("b").join(f)).unwrap(),
            "{f} differs between two runs"
        );
    }
    // The JSON Lines written round-trip through the reader unchanged.
    let again: Vec<Complaint> = read_path(
        tmp.path().join("a/test.jsonl"),
        Format::Auto,
        &ValidationOptions::default(),
    )
    .unwrap()
    .map(|r| r.unwrap())
    .collect();
    assert_eq!(again, test);
}

#[test]
fn temporal_split_windows_are_ordered_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "data",
            "split",
            &sample(),
            "--out",
            "t",
            "--by",
            "temporal",
            "--windows",
            "12,3,2,1",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let w: Vec<Vec<Complaint>> = ["train", "validation", "test", "out_of_time"]
        .iter()
        .map(|n| read_jsonl(&tmp.path().join(format!("t/{n}.jsonl"))))
        .collect();
    for pair in w.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if let (Some(amax), Some(bmin)) = (
            a.iter().map(|c| c.date_received).max(),
            b.iter().map(|c| c.date_received).min(),
        ) {
            assert!(amax < bmin, "windows overlap: {amax} >= {bmin}");
        }
    }
    assert!(!w[3].is_empty(), "out-of-time window is empty");
    let o = run(
        &[
            "data",
            "split",
            &sample(),
            "--out",
            "t2",
            "--by",
            "temporal",
            "--windows",
            "12,3",
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--windows"), "{}", stderr(&o));
}

#[test]
fn config_errors_name_the_key_and_env_overrides_apply() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.toml"),
        "[http]\nadress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let o = run(&["--config", "bad.toml", "config", "validate"], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("adress"), "{}", stderr(&o));

    let o = run(
        &["--config", "missing.toml", "config", "validate"],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.toml"), "{}", stderr(&o));

    let o = bin()
        .current_dir(tmp.path())
        .env("COMPLAINTFLOW_HTTP__ADDR", "127.0.0.1:9999")
        .args(["--state-dir", "elsewhere", "config", "show"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: toml::Value = toml::from_str(&stdout(&o)).unwrap();
    assert_eq!(shown["http"]["addr"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(shown["state_dir"].as_str(), Some("elsewhere"));

    let o = bin()
        .current_dir(tmp.path())
        .env("COMPLAINTFLOW_HTTP__ADDR", "not-an-address")
        .args(["config", "validate"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("http.addr"), "{}", stderr(&o));
}

/// A fast training configuration for tests (the defaults are exercised by `examples/` and
/// the issue note's commands).
const FAST: &str = "[train]\nfolds = 2\nalphas = [1.0]\n[train.features]\ntext = false\n";

fn versions(dir: &Path) -> Vec<(String, String)> {
    let o = run(&["--config", "fast.toml", "models", "list"], dir);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .filter(|l| l.starts_with('v'))
        .map(|l| {
            let mut f = l.split_whitespace();
            (f.next().unwrap().to_string(), f.next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn train_registers_versions_and_promote_rollback_move_production() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("fast.toml"), FAST).unwrap();

    let o = run(
        &["--config", "fast.toml", "train", "--data", &sample()],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report = stdout(&o);
    let auc: f64 = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("AUC-ROC"))
        .map(|v| v.trim().parse().unwrap())
        .expect("report has an AUC-ROC line");
    assert!(auc > 0.6 && auc <= 1.0, "AUC {auc}");
    assert_eq!(versions(dir), vec![("v0001".into(), "candidate".into())]);

    let o = run(
        &[
            "--config",
            "fast.toml",
            "train",
            "--data",
            &sample(),
            "--promote",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        versions(dir),
        vec![
            ("v0001".into(), "candidate".into()),
            ("v0002".into(), "production".into())
        ]
    );
    let o = run(
        &["--config", "fast.toml", "models", "promote", "v0001"],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = versions(dir);
    assert_eq!(v[0], ("v0001".into(), "production".into()));
    assert_eq!(v[1], ("v0002".into(), "archived".into()));
    let o = run(&["--config", "fast.toml", "models", "rollback"], dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(versions(dir)[1], ("v0002".into(), "production".into()));

    let o = run(&["--config", "fast.toml", "models", "show", "v0002"], dir);
    assert!(stdout(&o).contains("AUC-ROC"), "{}", stdout(&o));
    let o = run(&["--config", "fast.toml", "models", "show", "v0042"], dir);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("v0042"), "{}", stderr(&o));
}

#[test]
fn train_on_a_missing_file_says_which_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = PathBuf::from("no/such/complaints.json");
    let o = run(&["train", "--data", missing.to_str().unwrap()], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no/such/complaints.json"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn promotion_gate_needs_the_margin_and_models_compare_reports_both() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Same data and configuration twice: equal out-of-time AUC, so a positive margin keeps
    // the challenger a candidate.
    let cfg = FAST.replacen("[train]\n", "[train]\npromotion_margin = 0.01\n", 1);
    std::fs::write(dir.join("fast.toml"), cfg).unwrap();
    let data = sample();
    let train = |extra: &[&str]| {
        let mut args = vec!["--config", "fast.toml", "train", "--data", data.as_str()];
        args.extend_from_slice(extra);
        run(&args, dir)
    };
    let o = train(&["--promote"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("promoted v0001"), "{}", stdout(&o));
    let o = train(&["--promote"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("v0002 stays a candidate"), "{out}");
    assert!(out.contains("+ margin 0.01"), "{out}");
    assert_eq!(versions(dir)[0], ("v0001".into(), "production".into()));
    assert_eq!(versions(dir)[1], ("v0002".into(), "candidate".into()));
    // --force overrides the gate.
    let o = train(&["--promote", "--force", "--family", "lr"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(--force)"), "{}", stdout(&o));
    assert_eq!(versions(dir)[2], ("v0003".into(), "production".into()));

    let o = run(
        &[
            "--config",
            "fast.toml",
            "models",
            "compare",
            "v0001",
            "production",
            "--data",
            &sample(),
            "--resamples",
            "100",
            "--json",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let c: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let models = c["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["version"], "v0001");
    assert_eq!(models[1]["version"], "v0003");
    assert_eq!(models[1]["family"], "lr");
    for m in models {
        let auc = m["metrics"]["auc_roc"].as_f64().unwrap();
        let ci = m["auc_ci"].as_array().unwrap();
        assert!(ci[0].as_f64().unwrap() <= auc && auc <= ci[1].as_f64().unwrap());
        assert!(!m["per_product"].as_array().unwrap().is_empty());
    }
    let diff = c["auc_diff"].as_f64().unwrap();
    let want = models[1]["metrics"]["auc_roc"].as_f64().unwrap()
        - models[0]["metrics"]["auc_roc"].as_f64().unwrap();
    assert!((diff - want).abs() < 1e-12);
}
