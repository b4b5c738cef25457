//! `complaintflow data profile | validate | split`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use complaintflow_datasets::split::{HashSplit, TemporalSplit, Window};
use complaintflow_datasets::{plots, quality::Profile, read_path, Complaint, Format, LabelPolicy};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{
    DataCommand, InputArgs, ProfileArgs, ReportFormat, SplitArgs, SplitKind, ValidateArgs,
};
use crate::config::Config;

/// Runs a `data` subcommand.
pub fn run(cmd: DataCommand, config: &Config) -> Result<ExitCode> {
    match cmd {
        DataCommand::Profile(a) => profile(a, config),
        DataCommand::Validate(a) => validate(a, config),
        DataCommand::Split(a) => split(a, config),
    }
}

/// Parses `--input-format`.
pub fn input_format(input: &InputArgs) -> Result<Format> {
    input.input_format.parse::<Format>().map_err(|e| {
        anyhow::anyhow!(
            "--input-format {:?}: {e} (use auto, json, jsonl, api or csv)",
            input.input_format
        )
    })
}

/// A spinner counting records, hidden when stderr is not a terminal.
pub fn record_spinner(what: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} records ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(what.to_string());
    pb
}

/// Reads every valid complaint of a file (rejected records are counted and logged).
pub fn read_all(input: &InputArgs, config: &Config) -> Result<(Vec<Complaint>, u64)> {
    let format = input_format(input)?;
    let reader = read_path(&input.file, format, &config.data)
        .with_context(|| format!("cannot read {}", input.file.display()))?;
    let pb = record_spinner(&format!("reading {}", input.file.display()));
    let mut out = Vec::new();
    let mut rejected = 0u64;
    for r in reader {
        pb.inc(1);
        match r {
            Ok(c) => out.push(c),
            Err(e) => {
                rejected += 1;
                tracing::warn!(kind = e.kind.as_str(), "rejected record: {e}");
            }
        }
    }
    pb.finish_and_clear();
    Ok((out, rejected))
}

fn profile(a: ProfileArgs, config: &Config) -> Result<ExitCode> {
    let format = input_format(&a.input)?;
    let reader = read_path(&a.input.file, format, &config.data)
        .with_context(|| format!("cannot read {}", a.input.file.display()))?;
    let pb = record_spinner(&format!("profiling {}", a.input.file.display()));
    let mut p = Profile::new();
    for r in reader {
        pb.inc(1);
        p.add(&r);
    }
    pb.finish_and_clear();
    match a.format {
        ReportFormat::Md => out!("{}", p.to_markdown()),
        ReportFormat::Json => outln!("{}", p.to_json()),
    }
    if let Some(dir) = &a.plots {
        let files = plots::write_all(&p, dir, LabelPolicy::Relief)
            .with_context(|| format!("cannot write plots into {}", dir.display()))?;
        for f in files {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(a: ValidateArgs, config: &Config) -> Result<ExitCode> {
    let format = input_format(&a.input)?;
    let reader = read_path(&a.input.file, format, &config.data)
        .with_context(|| format!("cannot read {}", a.input.file.display()))?;
    let (mut valid, mut rejected) = (0u64, 0u64);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for r in reader {
        match r {
            Ok(_) => valid += 1,
            Err(e) => {
                rejected += 1;
                if rejected <= a.max_errors as u64 {
                    writeln!(out, "{}: [{}] {e}", a.input.file.display(), e.kind.as_str())?;
                }
            }
        }
    }
    if rejected > a.max_errors as u64 {
        writeln!(
            out,
            "… {} more rejected records not shown (--max-errors)",
            rejected - a.max_errors as u64
        )?;
    }
    writeln!(out, "{valid} valid, {rejected} rejected")?;
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Parses `--windows T,V,T,O`.
fn parse_windows(s: &str) -> Result<TemporalSplit> {
    let parts: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--windows {s:?}: expected four month counts like 12,3,2,1"))?;
    let [train_months, validation_months, test_months, out_of_time_months] = parts[..] else {
        bail!("--windows {s:?}: expected four month counts (train,validation,test,out-of-time) like 12,3,2,1");
    };
    if parts.contains(&0) {
        bail!("--windows {s:?}: every window needs at least one month");
    }
    Ok(TemporalSplit {
        train_months,
        validation_months,
        test_months,
        out_of_time_months,
        end: None,
    })
}

fn jsonl_writer(path: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path).with_context(|| {
        format!("cannot create {}", path.display())
    })?))
}

fn split(a: SplitArgs, config: &Config) -> Result<ExitCode> {
    if !(a.train_fraction > 0.0 && a.train_fraction < 1.0) {
        bail!(
            "--train-fraction {}: must be between 0 and 1 (exclusive), e.g. 0.75",
            a.train_fraction
        );
    }
    let temporal = match a.by {
        SplitKind::Temporal => Some(parse_windows(&a.windows)?),
        SplitKind::Hash => None,
    };
    let (complaints, rejected) = read_all(&a.input, config)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut counts: Vec<(String, u64)> = Vec::new();
    match temporal {
        None => {
            let s = HashSplit {
                train_fraction: a.train_fraction,
            };
            let mut train = jsonl_writer(&a.out.join("train.jsonl"))?;
            let mut test = jsonl_writer(&a.out.join("test.jsonl"))?;
            let (mut n_train, mut n_test) = (0, 0);
            for c in &complaints {
                if s.is_train(c.complaint_id) {
                    serde_json::to_writer(&mut train, c)?;
                    train.write_all(b"\n")?;
                    n_train += 1;
                } else {
                    serde_json::to_writer(&mut test, c)?;
                    test.write_all(b"\n")?;
                    n_test += 1;
                }
            }
            train.flush()?;
            test.flush()?;
            counts.push(("train.jsonl".into(), n_train));
            counts.push(("test.jsonl".into(), n_test));
        }
        Some(t) => {
            let Some(b) = t.fit(complaints.iter().map(|c| c.date_received)) else {
                bail!(
                    "{} has no valid complaints to split",
                    a.input.file.display()
                );
            };
            let b = b?;
            let windows = [
                Window::Train,
                Window::Validation,
                Window::Test,
                Window::OutOfTime,
            ];
            let mut writers = windows
                .iter()
                .map(|w| jsonl_writer(&a.out.join(format!("{}.jsonl", w.as_str()))))
                .collect::<Result<Vec<_>>>()?;
            let mut n = [0u64; 4];
            let mut outside = 0u64;
            for c in &complaints {
                match b.window(c.date_received) {
                    Some(w) => {
                        let i = windows.iter().position(|x| *x == w).unwrap_or(0);
                        serde_json::to_writer(&mut writers[i], c)?;
                        writers[i].write_all(b"\n")?;
                        n[i] += 1;
                    }
                    None => outside += 1,
                }
            }
            for (i, w) in windows.iter().enumerate() {
                writers[i].flush()?;
                counts.push((format!("{}.jsonl", w.as_str()), n[i]));
            }
            outln!(
                "windows: train from {}, validation from {}, test from {}, out-of-time from {} to {}",
                b.train_start, b.validation_start, b.test_start, b.out_of_time_start, b.end
            );
            outln!("{outside} complaints before the training window were not written");
        }
    }
    for (f, n) in &counts {
        outln!("{:>8}  {}", n, a.out.join(f).display());
    }
    if rejected > 0 {
        outln!("{rejected} rejected records were skipped (see `complaintflow data validate`)");
    }
    Ok(ExitCode::SUCCESS)
}
