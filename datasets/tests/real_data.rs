//! Reads the shared real data sets (skipped with a note when `/work/shared` is absent).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use complaintflow_datasets::reader::{read_path, Format};
use complaintflow_datasets::{Complaint, LabelPolicy, RecordError, ValidationOptions};

fn shared(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/datasets")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("note: {} absent; test skipped", p.display());
        None
    }
}

fn read_all(path: &PathBuf, format: Format) -> (Vec<Complaint>, Vec<RecordError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for r in read_path(path, format, &ValidationOptions::default()).unwrap() {
        match r {
            Ok(c) => ok.push(c),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}

fn by_kind(errors: &[RecordError]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for e in errors {
        *m.entry(e.kind.as_str()).or_insert(0) += 1;
    }
    m
}

fn label_counts(cs: &[Complaint], p: LabelPolicy) -> (usize, usize) {
    let labels: Vec<bool> = cs.iter().filter_map(|c| p.label(c)).collect();
    (labels.len(), labels.iter().filter(|b| **b).count())
}

#[test]
fn dev_json_and_raw_csv_agree() {
    let (Some(json), Some(csv)) = (
        shared("cfpb/complaints-dev.json"),
        shared("cfpb/raw/complaints_sample_2015-2020.csv"),
    ) else {
        return;
    };
    let (j, jbad) = read_all(&json, Format::Auto);
    let (c, cbad) = read_all(&csv, Format::Auto);
    assert!(jbad.is_empty(), "{:?}", jbad.first());
    assert!(cbad.is_empty(), "{:?}", cbad.first());
    assert_eq!(j.len(), 5370);
    assert_eq!(c.len(), 5370);
    // Figures from the data set's README (computed independently of this crate).
    assert_eq!(label_counts(&j, LabelPolicy::Relief), (5343, 805));
    for p in [LabelPolicy::Relief, LabelPolicy::Closed] {
        assert_eq!(label_counts(&j, p), label_counts(&c, p), "{p}");
    }
    let narratives = j.iter().filter(|c| c.narrative().is_some()).count();
    assert_eq!(narratives, 1240);
    // Same records, same order, same content except ZIPs the CSV re-save damaged.
    let differing: Vec<_> = j
        .iter()
        .zip(&c)
        .filter(|(a, b)| {
            let mut b = (*b).clone();
            b.zip_code = a.zip_code.clone();
            b.company = a.company.clone();
            **a != b
        })
        .map(|(a, _)| a.complaint_id)
        .collect();
    assert!(
        differing.is_empty(),
        "{} differ, e.g. {:?}",
        differing.len(),
        differing.first()
    );
}

#[test]
fn extended_set_reads_with_only_genuine_rejections() {
    let Some(ext) = shared("cfpb-extended/complaints-dev-extended.json") else {
        return;
    };
    let (ok, bad) = read_all(&ext, Format::Auto);
    eprintln!(
        "extended: {} valid, {} rejected {:?}",
        ok.len(),
        bad.len(),
        by_kind(&bad)
    );
    for e in bad.iter().take(20) {
        eprintln!("  {e}");
    }
    assert_eq!(ok.len() + bad.len(), 28_214);
    assert!(
        bad.is_empty(),
        "every extended record is a real CFPB record"
    );
    // Value counts from the extended set's README (computed there from the raw values).
    use complaintflow_datasets::{CompanyResponse, YesNo};
    let count = |f: &dyn Fn(&Complaint) -> bool| ok.iter().filter(|c| f(c)).count();
    assert_eq!(count(&|c| c.timely == Some(YesNo::Yes)), 27_706 + 87);
    assert_eq!(count(&|c| c.timely == Some(YesNo::No)), 416 + 5);
    assert_eq!(
        count(&|c| c.consumer_disputed == Some(YesNo::NotApplicable)),
        10_633
    );
    assert_eq!(count(&|c| c.consumer_disputed.is_none()), 8_846);
    assert_eq!(count(&|c| c.consumer_disputed == Some(YesNo::Yes)), 2_689);
    assert_eq!(
        count(&|c| c.company_response == Some(CompanyResponse::InProgress)),
        5_105
    );
    assert_eq!(count(&|c| c.narrative().is_some()), 2_714);
    assert_eq!(
        count(&|c| c.date_received.format("%Y").to_string() == "2014"),
        9_308
    );
}

#[test]
fn every_raw_file_reads_without_panic() {
    let Some(dir) = shared("cfpb-extended/raw") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // "rows in raw/ copy" from the extended set's README, by file-name prefix.
    let expected = [
        ("CapitalPrince100", 812),
        ("PriyankDsilva", 7418),
        ("SeunnnA", 108),
        ("Shakespeared101", 232),
        ("Sravanbunny2002", 3180),
        ("aravindsriraj", 1648),
        ("bhishanpdl__Project_Consumer_Complaint__data_orig", 10),
        ("bhishanpdl__Project_Consumer_Complaint__data_small", 1592),
        ("bkreis84", 276),
        ("digital-public-ventures", 1),
        ("elvus", 219),
        ("jcruz", 635),
        ("lakshlk0310", 6597),
        ("mjmontine", 531),
        ("owain-nortal", 112),
        ("robelterfessa", 153),
        ("sabk18", 814),
    ];
    assert_eq!(files.len(), expected.len());
    for f in files {
        let (ok, bad) = read_all(&f, Format::Auto);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let want = expected
            .iter()
            .find(|(p, _)| name.starts_with(p))
            .map(|(_, n)| *n);
        assert_eq!(Some(ok.len() + bad.len()), want, "{name}");
        assert!(bad.is_empty(), "{name}: {:?}", bad.first());
        eprintln!(
            "{}: {} valid, {} rejected {:?}",
            f.file_name().unwrap().to_string_lossy(),
            ok.len(),
            bad.len(),
            by_kind(&bad)
        );
        for e in bad.iter().take(3) {
            eprintln!("    {e}");
        }
        assert!(!ok.is_empty(), "{}", f.display());
    }
}
