//! Fuzzing the configuration loader: the repository's documented `complaintflow.toml`
//! mutated line by line (values of other types and out of range, typos in keys, lines
//! dropped or repeated, tables moved) and byte by byte, loaded with `config::load`.
//!
//! Properties: no panic; an accepted file validates again after a round trip through
//! `config show`'s TOML; every rejection falls in exactly one class (unreadable: not UTF-8,
//! naming the file; syntax: "is not valid TOML" naming the file; schema: "invalid configuration" naming the key; value: the
//! message names the table or key at fault) — never a bare message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_support;

use std::path::Path;

use complaintflow::config::{load, FlagOverrides};
use fuzz_support::{apply_bytes, byte_op, cases, runner, Tally};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The documented file.
fn documented() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("complaintflow.toml"))
        .unwrap()
}

/// Values of every TOML type, in range and out.
const VALUES: &[&str] = &[
    "-1",
    "0",
    "1",
    "65535",
    "4294967296",
    "18446744073709551616",
    "-9223372036854775808",
    "1e309",
    "nan",
    "-inf",
    "0.5",
    "1.5",
    "-0.0",
    "true",
    "\"\"",
    "\"x\"",
    "\"0.0.0.0:8080\"",
    "\"127.0.0.1:0\"",
    "\"[::]:1\"",
    "\"off\"",
    "\"json\"",
    "\"../../etc\"",
    "\"short\"",
    "\"0123456789abcdef0123\"",
    "[]",
    "[1, \"a\"]",
    "[\"/no/such/dir\"]",
    "{}",
    "{ warn = 1, crit = 2 }",
    "1979-05-27T07:32:00Z",
    "'''multi\nline'''",
];

#[derive(Clone, Debug)]
enum LineOp {
    /// Replace the value of line `i` (a `key = value` line) with one of [`VALUES`].
    Value(usize, usize),
    /// Misspell the key of line `i`.
    Typo(usize, usize),
    /// Drop line `i`.
    Drop(usize),
    /// Repeat line `i` (duplicate key or table).
    Repeat(usize),
    /// Move line `i` to after line `j`.
    Move(usize, usize),
    /// Uncomment line `i`.
    Uncomment(usize),
}

fn line_op() -> impl Strategy<Value = LineOp> {
    prop_oneof![
        5 => (any::<usize>(), 0..VALUES.len()).prop_map(|(i, v)| LineOp::Value(i, v)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, k)| LineOp::Typo(i, k)),
        1 => any::<usize>().prop_map(LineOp::Drop),
        1 => any::<usize>().prop_map(LineOp::Repeat),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| LineOp::Move(i, j)),
        1 => any::<usize>().prop_map(LineOp::Uncomment),
    ]
}

fn apply_lines(text: &str, ops: &[LineOp]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Lines that set a key, so value and key changes hit something.
    for op in ops {
        let keyed: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#') && l.contains(" = "))
            .map(|(i, _)| i)
            .collect();
        if lines.is_empty() || keyed.is_empty() {
            break;
        }
        let n = lines.len();
        match op {
            LineOp::Value(i, v) => {
                let at = keyed[i % keyed.len()];
                if let Some((k, _)) = lines[at].split_once(" = ") {
                    lines[at] = format!("{k} = {}", VALUES[*v]);
                }
            }
            LineOp::Typo(i, k) => {
                let at = keyed[i % keyed.len()];
                let l = &lines[at];
                let p = k % l.find(" = ").unwrap_or(1).max(1);
                let mut chars: Vec<char> = l.chars().collect();
                if p < chars.len() {
                    chars[p] = if chars[p] == 'x' { 'y' } else { 'x' };
                }
                lines[at] = chars.into_iter().collect();
            }
            LineOp::Drop(i) => {
                lines.remove(i % n);
            }
            LineOp::Repeat(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            LineOp::Move(i, j) => {
                let l = lines.remove(i % n);
                let to = j % lines.len().max(1);
                lines.insert(to.min(lines.len()), l);
            }
            LineOp::Uncomment(i) => {
                let l = &mut lines[i % n];
                if let Some(rest) = l.strip_prefix("# ") {
                    *l = rest.to_string();
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

/// Tables and top-level keys of the configuration: a value error names one of them.
const NAMES: &[&str] = &[
    "state_dir",
    "log",
    "data",
    "http",
    "train",
    "decision",
    "kafka",
    "dashboard",
    "alerts",
    "postgres",
    "monitoring",
    "API token",
    "token",
];

fn class(msg: &str, file: &Path) -> Result<&'static str, TestCaseError> {
    if msg.starts_with("cannot read config file") {
        // Not text (e.g. not UTF-8): names the file and the reason.
        prop_assert!(msg.contains(&file.display().to_string()), "{}", msg);
        return Ok("unreadable");
    }
    let syntax = msg.contains("is not valid TOML");
    let schema = msg.starts_with("invalid configuration");
    let value = !syntax && !schema;
    if syntax {
        prop_assert!(msg.contains(&file.display().to_string()), "{}", msg);
        return Ok("syntax");
    }
    if schema {
        prop_assert!(msg.contains("fix the key named above"), "{}", msg);
        prop_assert!(msg.contains("\n  - "), "names the key: {}", msg);
        return Ok("schema");
    }
    prop_assert!(value);
    prop_assert!(
        NAMES.iter().any(|n| msg.contains(n)),
        "a value error that names no table or key: {}",
        msg
    );
    Ok("value")
}

fn check(text: &[u8], file: &Path, tally: &Tally) -> Result<(), TestCaseError> {
    std::fs::write(file, text).unwrap();
    match load(Some(file), &FlagOverrides::default()) {
        Ok(loaded) => {
            // What `config show` prints loads again to the same configuration.
            let shown = toml::to_string_pretty(&loaded.config).unwrap();
            std::fs::write(file, &shown).unwrap();
            let again = load(Some(file), &FlagOverrides::default());
            prop_assert!(again.is_ok(), "{:?}\n{}", again.err(), shown);
            prop_assert_eq!(again.unwrap().config, loaded.config);
            tally.ok();
        }
        Err(e) => {
            let msg = format!("{e:#}");
            tally.rejected(class(&msg, file)?);
        }
    }
    Ok(())
}

#[test]
fn fuzz_config_loader() {
    let base = documented();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzz.toml");
    let tally = Tally::new("config loader");
    let strategy = (
        prop::collection::vec(line_op(), 1..6),
        prop::collection::vec(byte_op(), 0..3),
    );
    runner(cases("config", 2_000))
        .run(&strategy, |(lops, bops)| {
            let mut text = apply_lines(&base, &lops).into_bytes();
            apply_bytes(&mut text, &bops);
            check(&text, &file, &tally)
        })
        .unwrap();
    assert!(tally.report() > 0);
}

#[test]
fn the_documented_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let tally = Tally::new("config (documented)");
    check(documented().as_bytes(), &file, &tally).unwrap();
}
