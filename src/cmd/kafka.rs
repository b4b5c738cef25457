//! `complaintflow produce` and `complaintflow consume`: the replay producer and a JSON Lines
//! consumer over the library functions in `complaintflow_operators::kafka`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use complaintflow_datasets::replay::Rate;
use complaintflow_datasets::Format;
use complaintflow_operators::kafka::{
    consume_topic, produce_file, ConsumeOptions, KafkaConfig, ProduceOptions, StartFrom,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Kafka connection flags shared by `produce` and `consume`.
#[derive(Debug, Clone, Args)]
pub struct KafkaConnArgs {
    /// Bootstrap brokers HOST:PORT[,HOST:PORT…] [default: [kafka] brokers = 127.0.0.1:9092].
    /// `scripts/kafka-up.sh` starts a local broker and prints its address.
    #[arg(long, value_name = "HOST:PORT", env = "COMPLAINTFLOW_BROKERS")]
    pub brokers: Option<String>,
    /// Extra librdkafka property KEY=VALUE (repeatable), e.g. `--kafka-opt linger.ms=20`.
    #[arg(long = "kafka-opt", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub kafka_opt: Vec<(String, String)>,
}

impl KafkaConnArgs {
    /// `base` with these flags applied.
    pub fn apply(&self, mut base: KafkaConfig) -> KafkaConfig {
        if let Some(b) = &self.brokers {
            base.brokers = b.clone();
        }
        let extra: BTreeMap<String, String> = self.kafka_opt.iter().cloned().collect();
        base.extra.extend(extra);
        base
    }
}

/// `complaintflow produce`: replay a complaints file into a Kafka topic.
///
/// Each record's original JSON bytes are sent as one message keyed by its complaint_id.
/// At most --max-in-flight messages wait for acknowledgement (the producer slows down when
/// the broker does); the achieved rate is logged every few seconds, and a summary is printed
/// as JSON on stdout at the end. Exit code 1 if any message could not be delivered.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub conn: KafkaConnArgs,
    /// Target topic.
    #[arg(long, default_value = "complaints-input")]
    pub topic: String,
    /// Complaints file (JSON array, JSON Lines, CFPB API envelope, CSV) [default: the bundled
    /// real sample of 4,303 complaints].
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Format of --file.
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    pub format: String,
    /// Messages per second, minute or hour: `10000/min`, `500/s`, `unlimited`.
    #[arg(long, default_value = "unlimited", value_parser = parse_rate)]
    pub rate: Rate,
    /// Stop after this long: `90s`, `10m`, `1h`, `250ms`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Start the file again when it ends (until --duration or Ctrl-C).
    #[arg(long = "loop")]
    pub looped: bool,
    /// Send N resampled copies of the file's valid complaints instead of its records
    /// (synthetic load: fresh ids from 900,000,000,000 up, never mistaken for real ones).
    #[arg(long, value_name = "N")]
    pub resample: Option<u64>,
    /// Follow this share of records with a synthetic malformed message (truncated JSON,
    /// garbage bytes, or a bad date), keyed `synthetic-malformed-N`: `1%` or `0.01`.
    #[arg(long, value_name = "SHARE", default_value = "0", value_parser = parse_share)]
    pub inject_malformed: f64,
    /// Seed of the malformed injector and the resampler (same seed, same messages).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Most messages awaiting acknowledgement before the producer waits.
    #[arg(long, default_value_t = 50_000)]
    pub max_in_flight: usize,
    /// No progress bar (logs only).
    #[arg(long)]
    pub no_progress: bool,
}

/// `complaintflow consume`: print a topic's messages as JSON Lines on stdout.
///
/// One object per message: {topic, partition, offset, key, timestamp, value}, value parsed
/// as JSON when it is JSON, else a string.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub conn: KafkaConnArgs,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// Start at the oldest message (default: the group's committed offsets, then commit).
    #[arg(long)]
    pub from_beginning: bool,
    /// Consumer group for committed offsets [default: [kafka] group_id + `-consume`].
    #[arg(long)]
    pub group: Option<String>,
    /// Exit once no message arrived for this long: `5s` (default: run until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    pub until_idle: Option<Duration>,
    /// Exit after N messages.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
}

/// Runs `produce` on top of a `[kafka]` configuration.
pub fn produce_with(args: ProduceArgs, base: KafkaConfig) -> Result<ExitCode> {
    let cfg = args.conn.apply(base);
    let file = args
        .file
        .clone()
        .unwrap_or_else(complaintflow_datasets::bundled_sample_path);
    let format: Format = args
        .format
        .parse()
        .map_err(|e| anyhow::anyhow!("--format {:?}: {e}", args.format))?;
    if !file.exists() {
        bail!("--file {}: no such file", file.display());
    }
    let mut opts = ProduceOptions::new(&args.topic, &file);
    opts.format = format;
    opts.rate = args.rate;
    opts.duration = args.duration;
    opts.looped = args.looped;
    opts.resample = args.resample;
    opts.inject_malformed = args.inject_malformed;
    opts.seed = args.seed;
    opts.max_in_flight = args.max_in_flight.max(1);

    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(
            args.resample.filter(|_| !args.looped),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos} sent, {msg} [{elapsed_precise}] {per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b
    };
    let summary = produce_file(&cfg, &opts, |p| {
        if p.sent.is_multiple_of(512) {
            bar.set_position(p.sent);
            bar.set_message(format!(
                "{} acked, {} synthetic malformed, {} errors",
                p.acked, p.malformed, p.errors
            ));
        }
    })
    .with_context(|| format!("producing {} to {}", file.display(), args.topic))?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &summary)?;
    writeln!(out)?;
    if summary.errors > 0 {
        eprintln!(
            "{} of {} messages could not be delivered: {}",
            summary.errors,
            summary.sent,
            summary.first_error.as_deref().unwrap_or("?")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `consume` on top of a `[kafka]` configuration.
pub fn consume_with(args: ConsumeArgs, base: KafkaConfig) -> Result<ExitCode> {
    let mut cfg = args.conn.apply(base);
    cfg.group_id = args
        .group
        .clone()
        .unwrap_or_else(|| format!("{}-consume", cfg.group_id));
    let mut opts = ConsumeOptions::from_beginning(&args.topic, Duration::from_secs(5));
    opts.start = if args.from_beginning {
        StartFrom::Beginning
    } else {
        StartFrom::Committed
    };
    opts.until_idle = args.until_idle;
    opts.max_messages = args.max_messages;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = consume_topic(&cfg, &opts, |m| {
        serde_json::to_writer(&mut out, &m).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())
    })
    .with_context(|| format!("consuming {}", args.topic))?;
    out.flush()?;
    tracing::info!(topic = %args.topic, messages = summary.messages, not_json = summary.not_json,
        "consumed");
    Ok(ExitCode::SUCCESS)
}

/// `KEY=VALUE` of `--kafka-opt`.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    s.parse()
}

/// `250ms`, `90s`, `10m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("duration {s:?}: {num:?} is not a number"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => {
            return Err(format!(
                "duration {s:?}: unknown unit {u:?} (use ms, s, m or h)"
            ))
        }
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `1%`, `0.5 %` or a fraction `0.01`, within 0–1.
fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?}: expected a share such as 1% or 0.01"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?}: the share must be within 0% and 100%"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_shares_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_share("1%"), Ok(0.01));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert!(parse_share("150%").is_err());
        assert_eq!(
            parse_kv("linger.ms=20"),
            Ok(("linger.ms".into(), "20".into()))
        );
    }
}
