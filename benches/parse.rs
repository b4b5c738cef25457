//! Reader/parser throughput on the real development set (`shared/datasets/cfpb`).
//!
//! `cargo bench --bench parse` (root package) or `cargo bench -p complaintflow-datasets --bench
//! parse` (the same file, declared by the datasets crate too). Groups: `parse_bytes` (MB/s of input) and `parse_records`
//! (records/s) for the dev file read as a JSON array, the same records as JSON Lines
//! (converted in memory), the raw CSV export, and `parse_json_record` alone on the JSON Lines
//! records (the streaming engine's per-message hot path).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use complaintflow_datasets::reader::{Complaints, Format};
use complaintflow_datasets::{parse_json_record, ValidationOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

struct Inputs {
    array: Vec<u8>,
    lines: Vec<u8>,
    records: Vec<Vec<u8>>,
    csv: Vec<u8>,
}

fn inputs() -> Option<Inputs> {
    // Run from the root package (`/work/main`) or the datasets package (`/work/main/datasets`).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = ["../shared/datasets/cfpb", "../../shared/datasets/cfpb"]
        .iter()
        .map(|rel| root.join(rel))
        .find(|d| d.exists())?;
    let array = std::fs::read(dir.join("complaints-dev.json")).ok()?;
    let csv = std::fs::read(dir.join("raw/complaints_sample_2015-2020.csv")).ok()?;
    let values: Vec<serde_json::Value> = serde_json::from_slice(&array).ok()?;
    let records: Vec<Vec<u8>> = values
        .iter()
        .map(|v| serde_json::to_vec(v).expect("serialize"))
        .collect();
    let mut lines = Vec::new();
    for r in &records {
        lines.extend_from_slice(r);
        lines.push(b'\n');
    }
    Some(Inputs {
        array,
        lines,
        records,
        csv,
    })
}

fn count(input: &[u8], format: Format, opts: &ValidationOptions) -> usize {
    Complaints::new(input, format, opts)
        .filter(|r| r.is_ok())
        .count()
}

fn bench(c: &mut Criterion) {
    let Some(inp) = inputs() else {
        eprintln!("shared/datasets/cfpb not found: parse bench skipped");
        return;
    };
    let opts = ValidationOptions::default();
    let n = inp.records.len() as u64;
    let rec_bytes: usize = inp.records.iter().map(Vec::len).sum();
    for (group, elements) in [("parse_bytes", false), ("parse_records", true)] {
        let mut g = c.benchmark_group(group);
        g.sample_size(20);
        let cases: [(&str, &[u8], Format); 3] = [
            ("json_array", &inp.array, Format::JsonArray),
            ("json_lines", &inp.lines, Format::JsonLines),
            ("csv", &inp.csv, Format::Csv),
        ];
        for (name, data, format) in cases {
            g.throughput(if elements {
                Throughput::Elements(n)
            } else {
                Throughput::Bytes(data.len() as u64)
            });
            g.bench_with_input(BenchmarkId::new("read", name), data, |b, d| {
                b.iter(|| assert_eq!(count(d, format, &opts), n as usize))
            });
        }
        g.throughput(if elements {
            Throughput::Elements(n)
        } else {
            Throughput::Bytes(rec_bytes as u64)
        });
        g.bench_function("parse_json_record", |b| {
            b.iter(|| {
                inp.records
                    .iter()
                    .filter(|r| parse_json_record(r, &opts).is_ok())
                    .count()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
