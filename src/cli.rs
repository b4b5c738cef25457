//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::LogFormat;

/// Real-time triage of CFPB consumer-finance complaints on timely/differential dataflow.
///
/// Configuration is layered: built-in defaults, then the TOML file (`--config`, or
/// ./complaintflow.toml when present), then COMPLAINTFLOW_* environment variables
/// (COMPLAINTFLOW_HTTP__ADDR sets [http] addr), then these flags.
#[derive(Debug, Parser)]
#[command(name = "complaintflow", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file (default: ./complaintflow.toml if it exists).
    #[arg(long, global = true, value_name = "FILE", env = "COMPLAINTFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for run-time state: model registry, checkpoints, outputs [default: ./state].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log format on stderr (RUST_LOG sets the filter).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Bearer token of the HTTP API's mutating requests: `run` requires it on them,
    /// `retrain` sends it [default: [http] token, else $COMPLAINTFLOW_API_TOKEN]. Prefer the
    /// environment variable: a flag is visible to other users in the process list.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub api_token: Option<String>,
}

/// The subcommands.
// Parsed once per process: the size of the `run` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, validate and split complaint files.
    #[command(subcommand)]
    Data(DataCommand),
    /// Run the engine: stream complaints through parse → score → decide, write predictions
    /// and dead letters, keep live aggregates, serve the HTTP API. With no arguments: train a
    /// model on the bundled sample if the registry is empty, then replay the rest of it.
    Run(RunArgs),
    /// Replay a complaints file into a Kafka topic (rate, loop, duration, synthetic
    /// malformed records, bounded in-flight messages).
    Produce(crate::cmd::kafka::ProduceArgs),
    /// Print a Kafka topic's messages as JSON Lines.
    Consume(crate::cmd::kafka::ConsumeArgs),
    /// Ask a running engine for its live aggregates, recent decisions or models.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Score past complaints with one registry version through the same graph (`run --once
    /// --model VERSION`): its predictions, joined with the outcomes, compare with the
    /// production model's on the same complaints.
    Rescore(RescoreArgs),
    /// Ask a running engine to retrain from historical JSON and swap the new model in
    /// without a restart.
    Retrain(RetrainArgs),
    /// Train a model (cross-validated logistic regression, gradient-boosted trees and their
    /// blend; temporal out-of-time evaluation) and register it as a candidate.
    Train(TrainArgs),
    /// List, inspect, promote and roll back registered model versions.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Check or print the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `complaintflow rescore`
#[derive(Debug, Args)]
pub struct RescoreArgs {
    /// Registry version to score with.
    #[arg(long, value_name = "VERSION")]
    pub model: String,
    /// The past complaints (any supported format).
    #[arg(long = "data", value_name = "FILE")]
    pub data: PathBuf,
    /// Outcomes to join [default: FILE itself: a file of past complaints carries them].
    /// `none` for predictions only.
    #[arg(long, value_name = "SOURCE")]
    pub outcomes: Option<String>,
    /// Predictions file [default: <state_dir>/rescore-VERSION.jsonl].
    #[arg(long, value_name = "PATH")]
    pub predictions: Option<PathBuf>,
    /// Write the aggregates and `model_accuracy` here at the end.
    #[arg(long, value_name = "PATH")]
    pub aggregates_out: Option<PathBuf>,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

/// `complaintflow run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input: `file:PATH` (any supported format), `replay:PATH` (paced by --rate, or
    /// --resample N copies), `kafka:TOPIC` [default: the bundled real sample].
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// With `--source replay:PATH`: emit this many resampled copies of its complaints (fresh
    /// synthetic ids, clearly not real records) instead of the file.
    #[arg(long, value_name = "N")]
    pub resample: Option<u64>,
    /// Seed of `--resample`.
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,
    /// Format of a file source (auto-detected by default).
    #[arg(long = "input-format", value_name = "FORMAT", default_value = "auto")]
    pub input_format: String,
    /// Exit cleanly when the file source is exhausted (batch use and tests).
    #[arg(long)]
    pub once: bool,
    /// Predictions JSON Lines file [default: <state-dir>/predictions.jsonl].
    #[arg(long, value_name = "PATH")]
    pub predictions: Option<PathBuf>,
    /// Dead-letter JSON Lines file [default: <state-dir>/dead-letters.jsonl].
    #[arg(long, value_name = "PATH")]
    pub dead_letters: Option<PathBuf>,
    /// At exit, write the final aggregates of every dimension (as `/api/aggregates` answers
    /// them) to this JSON file.
    #[arg(long, value_name = "PATH")]
    pub aggregates_out: Option<PathBuf>,
    /// Outcome records, joined with the predictions by complaint id for the live quality
    /// metrics (`/api/model/quality`): `file:PATH`, `kafka:TOPIC` or `none`. Any complaint
    /// file is also an outcomes file [default: none; the default job reads its replay's].
    #[arg(long, value_name = "SOURCE")]
    pub outcomes: Option<String>,
    /// Score with this registry version only (no A/B candidates) instead of production.
    #[arg(long, value_name = "VERSION")]
    pub model: Option<String>,
    /// HTTP API address HOST:PORT, or `off` [default: [http] addr = 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// Replay rate over all workers, e.g. `10000/min` or `500/s` [default: as fast as possible].
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,
    /// Worker threads in this process [default: number of cores; more is much slower].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Processes in the cluster.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub processes: usize,
    /// This process's index (0-based); process 0 writes outputs and serves HTTP.
    #[arg(long, value_name = "I", default_value_t = 0)]
    pub process: usize,
    /// File with one host:port per process (line i = process i) [default: 127.0.0.1:2101+i].
    #[arg(long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
    /// In a cluster: how long to wait at start for every peer process to connect before
    /// stopping with an error, e.g. `60s`.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::cmd::kafka::parse_duration)]
    pub join_timeout: std::time::Duration,
    /// Complaint ids the duplicate check remembers (the latest N admitted over the cluster;
    /// memory about 20 bytes per id at most). A repeat of an id older than that is scored again.
    #[arg(long, value_name = "N", default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub dedup_window: u64,
    /// Longest an epoch stays open, ms (a heartbeat: the original `processingTime` trigger).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub trigger_ms: u64,
    /// An epoch that holds records closes once the source has nothing more to read and it
    /// has been open this long, ms (while the graph keeps up; under load epochs grow).
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    pub linger_ms: f64,
    /// Most records per epoch (the original `maxOffsetsPerTrigger`).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_records_per_epoch: usize,
    /// Kafka bootstrap brokers HOST:PORT[,…] for `--source kafka:TOPIC` and Kafka sinks
    /// [default: [kafka] brokers]. `scripts/kafka-up.sh` starts a local broker.
    #[arg(long, value_name = "HOST:PORT", env = "COMPLAINTFLOW_BROKERS")]
    pub brokers: Option<String>,
    /// Where decisions go besides the predictions file (repeatable): `kafka:TOPIC`,
    /// `jsonl:PATH`, `postgres://…`, or `none` [default with a Kafka source:
    /// kafka:complaints-predictions, dead letters to complaints-dlq, aggregate changes to
    /// complaints-aggregates].
    #[arg(long, value_name = "SINK")]
    pub sink: Vec<String>,
    /// Extra librdkafka property KEY=VALUE for the engine's Kafka clients (repeatable), e.g.
    /// `--kafka-opt fetch.wait.max.ms=20`.
    #[arg(long = "kafka-opt", value_name = "KEY=VALUE", value_parser = crate::cmd::kafka::parse_kv)]
    pub kafka_opt: Vec<(String, String)>,
    /// Kafka topic for dead letters, or `none` [default with a Kafka source: complaints-dlq].
    #[arg(long, value_name = "TOPIC")]
    pub dlq_topic: Option<String>,
    /// Kafka topic for aggregate changes, or `none` [default with a Kafka source:
    /// complaints-aggregates].
    #[arg(long, value_name = "TOPIC")]
    pub aggregates_topic: Option<String>,
    /// With a Kafka source: stop as on SIGTERM (finish the open epoch, checkpoint, flush, exit
    /// 0) once no message arrived for this long and every partition is read to its current
    /// end, e.g. `5s`. (`--once` instead stops at the end the topic had at start.)
    #[arg(long, value_name = "DURATION", value_parser = crate::cmd::kafka::parse_duration)]
    pub until_idle: Option<std::time::Duration>,
    /// With a Kafka source: checkpoint (offsets + aggregates, in <state-dir>/checkpoints) at
    /// most this often, ms. A restart resumes from the newest checkpoint.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub checkpoint_ms: u64,
}

/// Where a client command finds the running engine.
#[derive(Debug, Args)]
pub struct EngineAddr {
    /// HTTP address of the running engine [default: [http] addr = 127.0.0.1:8080].
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
}

/// `complaintflow query …`
#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Live aggregates by a dimension, as a table (or JSON), consistent as of one epoch.
    Aggregates {
        /// Dimension: product, state, company, issue or hour.
        #[arg(long, default_value = "product")]
        by: String,
        /// Only the N largest rows.
        #[arg(long, value_name = "N")]
        top: Option<usize>,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineAddr,
    },
    /// The latest decisions, newest first, as JSON Lines.
    Recent {
        /// How many (1–1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        engine: EngineAddr,
    },
    /// Registered and serving model versions.
    Models {
        #[command(flatten)]
        engine: EngineAddr,
    },
    /// Live model quality per version (predictions joined with outcomes, `run --outcomes`):
    /// labelled, AUC, PR-AUC, precision, recall, F1, calibration, the monitoring action.
    Quality {
        /// Print the JSON answer (with the metrics per product, month and ingest hour).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineAddr,
    },
}

/// `complaintflow retrain`
#[derive(Debug, Args)]
pub struct RetrainArgs {
    /// Historical complaints file, as the engine's host sees it (any supported format).
    #[arg(long = "data", value_name = "FILE")]
    pub data: PathBuf,
    /// Its format (auto-detected by default).
    #[arg(long = "input-format", value_name = "FORMAT", default_value = "auto")]
    pub input_format: String,
    /// Wait until the new version serves (or retraining fails), printing progress.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub engine: EngineAddr,
}

/// `complaintflow train`
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Historical complaints to learn from (any supported format).
    #[arg(long = "data", value_name = "FILE")]
    pub input_file: PathBuf,
    /// Input format (auto-detected by default).
    #[arg(long = "input-format", value_name = "FORMAT", default_value = "auto")]
    pub input_format: String,
    /// Label policy: `relief` (relief given, timely, not disputed) or `closed` (also closed
    /// with explanation) [default: [train] label_policy = relief].
    #[arg(long, value_name = "POLICY")]
    pub label_policy: Option<String>,
    /// Train/test split [default: [train] split = hash].
    #[arg(long, value_enum, value_name = "SPLIT")]
    pub split: Option<TrainSplit>,
    /// Cross-validation folds [default: [train] folds = 3].
    #[arg(long, value_name = "K")]
    pub folds: Option<usize>,
    /// Share of labelled complaints used for training [default: [train] train_fraction = 0.75].
    #[arg(long, value_name = "F")]
    pub train_fraction: Option<f64>,
    /// Model family served: `auto` picks the best out-of-time AUC [default: [train] family =
    /// auto].
    #[arg(long, value_enum, value_name = "FAMILY")]
    pub family: Option<TrainFamily>,
    /// Promote the new version to production if it passes the promotion gate: its
    /// out-of-time AUC must beat the production model's by [train] promotion_margin.
    #[arg(long)]
    pub promote: bool,
    /// With --promote: promote even if the gate says no.
    #[arg(long, requires = "promote")]
    pub force: bool,
}

/// Model family of `train --family`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TrainFamily {
    /// Logistic regression.
    Lr,
    /// Gradient-boosted trees.
    Gbdt,
    /// LR + trees blend.
    Blend,
    /// Best out-of-time AUC.
    Auto,
}

impl From<TrainFamily> for complaintflow_models::FamilyChoice {
    fn from(f: TrainFamily) -> Self {
        match f {
            TrainFamily::Lr => complaintflow_models::FamilyChoice::Lr,
            TrainFamily::Gbdt => complaintflow_models::FamilyChoice::Gbdt,
            TrainFamily::Blend => complaintflow_models::FamilyChoice::Blend,
            TrainFamily::Auto => complaintflow_models::FamilyChoice::Auto,
        }
    }
}

/// Train/test split of `train`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TrainSplit {
    /// Stable hash of complaint_id.
    Hash,
    /// Earliest complaints train, latest test.
    Temporal,
}

impl From<TrainSplit> for complaintflow_models::SplitMethod {
    fn from(s: TrainSplit) -> Self {
        match s {
            TrainSplit::Hash => complaintflow_models::SplitMethod::Hash,
            TrainSplit::Temporal => complaintflow_models::SplitMethod::Temporal,
        }
    }
}

/// `complaintflow models …`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List every version with its stage and test AUC.
    List,
    /// Show a version's metadata: data, hyperparameters, CV scores, test metrics.
    Show {
        /// Version id, e.g. v0001.
        #[arg(value_name = "VERSION")]
        id: String,
    },
    /// Make a version the production (serving) model; the previous one is archived.
    Promote {
        /// Version id, e.g. v0002.
        #[arg(value_name = "VERSION")]
        id: String,
    },
    /// Put the previous production version back.
    Rollback,
    /// Compare two versions on a labelled file: AUC with a bootstrap interval, PR-AUC,
    /// log-loss, ECE, F1 at each model's threshold, per product, and the AUC difference.
    Compare {
        /// First version (e.g. v0001, or `production`).
        #[arg(value_name = "A")]
        a: String,
        /// Second version.
        #[arg(value_name = "B")]
        b: String,
        /// Labelled complaints to score (any supported format).
        #[arg(long = "data", value_name = "FILE")]
        data: PathBuf,
        /// Input format (auto-detected by default).
        #[arg(long = "input-format", value_name = "FORMAT", default_value = "auto")]
        input_format: String,
        /// Bootstrap resamples of the intervals.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        resamples: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `complaintflow data …`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Data-quality profile of a complaint file: counts, missing values, domains, duplicates,
    /// distributions, resolution rates and label balance.
    Profile(ProfileArgs),
    /// Validate every record of a file; print each rejected record with its reason.
    /// Exits 1 when any record is rejected.
    Validate(ValidateArgs),
    /// Split a file into train/test (stable hash of complaint_id) or temporal
    /// train/validation/test/out-of-time windows, written as JSON Lines.
    Split(SplitArgs),
}

/// Input file and its format.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Complaint file: JSON array, JSON Lines, CFPB API envelope or CSV export.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Input format (auto-detected from the content and extension by default).
    #[arg(long = "input-format", value_name = "FORMAT", default_value = "auto")]
    pub input_format: String,
}

/// `data profile`
#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
    /// Also write SVG charts (volume over time, by product, resolution rate by product and
    /// by state) into this directory.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
}

/// Report formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    /// Markdown tables.
    Md,
    /// One JSON document.
    Json,
}

/// `data validate`
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Print at most this many rejected records (all are counted).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub max_errors: usize,
}

/// `data split`
#[derive(Debug, Args)]
pub struct SplitArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output directory (created): train.jsonl, test.jsonl — or train/validation/test/oot.jsonl.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Split kind.
    #[arg(long = "by", value_enum, default_value_t = SplitKind::Hash)]
    pub by: SplitKind,
    /// Fraction of complaints in the training set (hash split).
    #[arg(long, default_value_t = 0.75, value_name = "F")]
    pub train_fraction: f64,
    /// Months in the train/validation/test/out-of-time windows (temporal split), ending at
    /// the latest date_received in the data.
    #[arg(long, value_name = "T,V,T,O", default_value = "12,3,2,1")]
    pub windows: String,
}

/// Split kinds.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SplitKind {
    /// Stable hash of complaint_id: the same on every machine and run.
    Hash,
    /// Consecutive date windows by date_received.
    Temporal,
}

/// `complaintflow config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration (file, env, flags) and report whether it is valid.
    Validate,
    /// Print the effective configuration as TOML.
    Show,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
