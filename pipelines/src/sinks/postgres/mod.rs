//! [`PostgresSink`]: predictions, dead letters, aggregates and the model registry in
//! PostgreSQL, for SQL and BI tools (Superset, Grafana; see `docs/SQL.md`).
//!
//! ```text
//! run --sink postgres://complaintflow@127.0.0.1:5432/complaintflow      (password: $PGPASSWORD)
//! ```
//!
//! **Tables** (created if missing; `schema_version` records the applied [`schema::MIGRATIONS`]):
//! `predictions` (one row per `complaint_id`, every [`Decision`](complaintflow_operators::Decision)
//! field, `reasons text[]`, `model_version`, `epoch`), `dead_letters` (kind, message,
//! complaint_id, origin source/partition/offset, raw bytes as `bytea`; keyed by origin),
//! `aggregates_by_{product,state,company,issue,month,month_product,hour}` (key column(s) named
//! after the dimension, `count`, `escalations`, `escalation_rate`, `mean_score`,
//! `score_sum_micro`, `as_of` = the epoch of the row's last change), `models` (the registry:
//! version, stage, test metrics, the whole metadata as `jsonb`), `epochs` (one row per
//! committed epoch that had data), and the views of `docs/SQL.md`.
//!
//! **Contract.**
//! - Every record reaches worker 0 (exchange), which keeps each epoch's rows until all three
//!   inputs (decisions, dead letters, aggregate changes) have passed the epoch, then hands the
//!   epoch to a background thread and keeps the epoch's capability.
//! - The thread writes an epoch in ONE transaction: binary `COPY` into session-local staging
//!   tables, `INSERT … ON CONFLICT DO UPDATE` into the tables, the `epochs` row, `COMMIT`.
//!   Epochs that queued up while a transaction ran are merged into the next one (each epoch
//!   stays whole), so a slow database gets fewer, larger transactions.
//! - Only after the commit returns does the operator release the epoch's capability: the
//!   acknowledgement frontier passes an epoch only once it is durable, so the engine never
//!   checkpoints (or commits source offsets) past what the database holds.
//! - Replays overwrite: a restart from a checkpoint re-sends epochs the database may already
//!   hold; `predictions` is keyed by complaint id, `dead_letters` by origin, aggregates by
//!   key (the totals are the engine's, restored from the checkpoint), so the tables end
//!   exactly-once by effect. `epoch` and the times of a replayed prediction are those of its
//!   last write.
//! - Connection loss or any write error: the transaction is rolled back, the thread
//!   reconnects with exponential backoff (`retry_initial_ms` doubling to `retry_max_ms`) and
//!   writes the same epochs again, forever: no data is dropped, and the held capabilities
//!   hold back the engine's checkpoints and source-offset commits. The source itself does
//!   not pause (the engine has no hook for it; the Kafka sink behaves the same): the epochs
//!   wait in memory meanwhile ([`PostgresStats::queued_rows`], a warning per million rows),
//!   so an outage is bounded by memory, not by the database.
//! - [`Sink::check`] (before any worker starts) connects, applies the migrations and fails
//!   with an error naming the URL — never the password — and a hint.
//! - The password comes from the URL or from the environment variable named by
//!   [`PostgresConfig::password_env`] (`PGPASSWORD`); it is never logged or shown
//!   ([`Connector::target`] is `postgres://user@host:port/db`).
//! - No TLS (the `postgres` crate with `NoTls`): meant for a server on the same host or a
//!   trusted network; `sslmode=require` in the URL fails at `check`.
//!
//! **Costs** (2-core machine, PostgreSQL 15 on the same host, `benches/postgres.rs`):
//! see the [throughput section](#throughput).
//!
//! ## Throughput
//!
//! Measured by `cargo bench --bench postgres` (new complaint ids, 20,000 decisions per
//! transaction, the server on the same 2 cores, 2026-12-03): new ids 104,849–118,829 rows/s
//! overall (median per transaction 116,000–125,000 rows/s, latency median 160–172 ms, of
//! which COMMIT ~20 ms); a replay (every row an update) 69,000–73,000 rows/s; through the
//! timely operator on 2 workers 108,000–116,000 rows/s end to end. Where the time goes:
//! `docs/SQL.md#throughput`.

mod operator;
pub mod schema;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::dataflow::{Scope, Stream};

pub use writer::{Connector, EpochBatch, PgWriter, WriteReport};

/// The `postgres` client crate, re-exported for tests and tools that query the tables
/// (`postgres::Client`, `postgres::Row`).
pub use ::postgres as client;

use crate::plugin::{EngineOutputs, Sink};

/// `[postgres]`: settings of the PostgreSQL sink (`run --sink postgres://…`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Environment variable holding the password when the URL has none. Default
    /// `PGPASSWORD`; `""` = never read one.
    pub password_env: String,
    /// Schema of the tables (created if missing; lower-case letters, digits, `_`). Default
    /// `public`.
    pub schema: String,
    /// Model registry mirrored into the `models` table; `""` (default) = the engine's
    /// registry (`<state_dir>/registry`).
    pub registry_dir: String,
    /// How often the `models` table is refreshed from the registry while running, ms (it is
    /// also refreshed as soon as a decision names a version not written yet). Default 10000.
    pub models_refresh_ms: u64,
    /// Connection timeout (start-up check and reconnects), ms. Default 10000.
    pub connect_timeout_ms: u64,
    /// TCP user timeout: a connection whose sent data stays unacknowledged this long counts
    /// as lost (then reconnect and retry), ms; 0 = the OS default. Default 30000.
    pub tcp_user_timeout_ms: u64,
    /// First wait before retrying after a failed write or connection, ms. Default 100.
    pub retry_initial_ms: u64,
    /// Longest wait between retries (the wait doubles up to it), ms. Default 5000.
    pub retry_max_ms: u64,
    /// Most epochs merged into one transaction when several are waiting. Default 64.
    pub max_epochs_per_transaction: usize,
    /// Stop merging waiting epochs into a transaction once it holds this many rows (an epoch
    /// is never split). Default 200000.
    pub max_rows_per_transaction: usize,
    /// `application_name` of the connection (shown in `pg_stat_activity`). Default
    /// `complaintflow`.
    pub application_name: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            password_env: "PGPASSWORD".into(),
            schema: "public".into(),
            registry_dir: String::new(),
            models_refresh_ms: 10_000,
            connect_timeout_ms: 10_000,
            tcp_user_timeout_ms: 30_000,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            max_epochs_per_transaction: 64,
            max_rows_per_transaction: 200_000,
            application_name: "complaintflow".into(),
        }
    }
}

/// Errors of the PostgreSQL sink. None of them contains the password.
#[derive(Debug, thiserror::Error)]
pub enum PostgresSinkError {
    /// The URL does not parse.
    #[error("PostgreSQL URL {target}: {message}")]
    Url {
        /// The URL without its password.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// A `[postgres]` setting is invalid.
    #[error("[postgres] {0}")]
    Config(String),
    /// The server cannot be reached or refuses the login.
    #[error("PostgreSQL at {target}: cannot connect: {}{hint}", chain(source))]
    Connect {
        /// `postgres://user@host:port/db`.
        target: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
        /// What to try.
        hint: String,
    },
    /// A statement failed.
    #[error("PostgreSQL at {target}: {what}: {}", chain(source))]
    Sql {
        /// `postgres://user@host:port/db`.
        target: String,
        /// What the sink was doing.
        what: String,
        /// The client's error (for a server error: severity, message, detail).
        #[source]
        source: postgres::Error,
    },
    /// The database was migrated by a newer build.
    #[error(
        "PostgreSQL at {target}: the tables are at schema version {found}, newer than this \
         build's {known}: upgrade complaintflow, or set [postgres] schema to another schema"
    )]
    SchemaTooNew {
        /// `postgres://user@host:port/db`.
        target: String,
        /// Version in the database.
        found: i32,
        /// Newest version this build knows.
        known: i32,
    },
}

/// An error with its causes (`postgres::Error`'s `Display` alone says only "db error" or
/// "error connecting to server").
pub(crate) fn chain(e: &postgres::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// Counters of a [`PostgresSink`] (this process).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostgresStats {
    /// Committed transactions.
    pub transactions: u64,
    /// Epochs committed.
    pub epochs: u64,
    /// The highest committed epoch.
    pub committed_through: Option<u64>,
    /// Prediction rows upserted.
    pub predictions: u64,
    /// Dead-letter rows upserted.
    pub dead_letters: u64,
    /// Aggregate rows upserted or deleted.
    pub aggregate_rows: u64,
    /// Model rows upserted.
    pub models: u64,
    /// Failed attempts (connection or write) that were retried.
    pub retries: u64,
    /// The last error, until the next commit succeeds.
    pub last_error: Option<String>,
    /// Epochs handed to the writer and not committed yet.
    pub queued_epochs: u64,
    /// Their rows.
    pub queued_rows: u64,
    /// Epochs held by the operator (gathering or waiting for their commit).
    pub held_epochs: u64,
    /// Time spent in committed transactions, µs.
    pub commit_micros_total: u64,
}

/// A shared view of a sink's [`PostgresStats`].
#[derive(Clone, Debug, Default)]
pub struct StatsHandle(Arc<Mutex<PostgresStats>>);

impl StatsHandle {
    /// A copy of the counters now.
    pub fn stats(&self) -> PostgresStats {
        self.read(Clone::clone)
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut PostgresStats)) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&PostgresStats) -> R) -> R {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&g)
    }
}

/// The PostgreSQL sink ([module docs](self)).
///
/// ```no_run
/// use std::sync::Arc;
/// use complaintflow_pipelines::sinks::postgres::{PostgresConfig, PostgresSink};
/// use complaintflow_pipelines::Sink;
/// let sink = PostgresSink::new("postgres://complaintflow@127.0.0.1:5432/complaintflow",
///                              PostgresConfig::default())
///     .with_registry("state/registry");
/// sink.check()?; // connects and creates the tables; names the URL when it cannot
/// let sink: Arc<dyn Sink> = Arc::new(sink); // EngineBuilder::sink(sink)
/// # Ok::<(), String>(())
/// ```
#[derive(Debug)]
pub struct PostgresSink {
    url: String,
    cfg: PostgresConfig,
    registry: Option<PathBuf>,
    stats: StatsHandle,
}

impl PostgresSink {
    /// A sink to the database at `url` (`postgres://USER@HOST:PORT/DB`; the password from
    /// `cfg.password_env` unless the URL carries one). Nothing is checked here: see
    /// [`Sink::check`].
    pub fn new(url: impl Into<String>, cfg: PostgresConfig) -> PostgresSink {
        PostgresSink {
            url: url.into(),
            cfg,
            registry: None,
            stats: StatsHandle::default(),
        }
    }

    /// Mirrors the model registry at `dir` into the `models` table (unless
    /// `[postgres] registry_dir` names another).
    pub fn with_registry(mut self, dir: impl Into<PathBuf>) -> PostgresSink {
        self.registry = Some(dir.into());
        self
    }

    /// The counters (shared with the running sink).
    pub fn handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// The connection settings: URL + configuration + registry.
    pub fn connector(&self) -> Result<Connector, PostgresSinkError> {
        Connector::new(&self.url, &self.cfg, self.registry.clone())
    }

    fn settings(&self) -> operator::WriterSettings {
        operator::WriterSettings {
            max_epochs_per_transaction: self.cfg.max_epochs_per_transaction,
            max_rows_per_transaction: self.cfg.max_rows_per_transaction,
            retry_initial: Duration::from_millis(self.cfg.retry_initial_ms.max(1)),
            retry_max: Duration::from_millis(
                self.cfg.retry_max_ms.max(self.cfg.retry_initial_ms).max(1),
            ),
        }
    }
}

impl Sink for PostgresSink {
    fn describe(&self) -> String {
        match self.connector() {
            Ok(c) => format!("{} (schema {})", c.target(), c.schema()),
            Err(_) => crate::plugins::redact(&self.url),
        }
    }

    fn check(&self) -> Result<(), String> {
        let c = self.connector().map_err(|e| e.to_string())?;
        let w = PgWriter::connect(&c).map_err(|e| e.to_string())?;
        tracing::info!(target_db = %w.target(), schema = %c.schema(), "PostgreSQL sink ready");
        Ok(())
    }

    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        outputs: &EngineOutputs<'s>,
    ) -> Result<Vec<Stream<'s, u64, Vec<u64>>>, String> {
        let c = self.connector().map_err(|e| e.to_string())?;
        let ack = operator::build(scope, outputs, &c, &self.settings(), &self.stats)?;
        Ok(vec![ack])
    }

    fn report(&self) -> Vec<String> {
        let s = self.stats.stats();
        let target = self
            .connector()
            .map(|c| c.target().to_string())
            .unwrap_or_else(|_| crate::plugins::redact(&self.url));
        let through = s
            .committed_through
            .map_or_else(|| "none".to_string(), |e| e.to_string());
        let mut line = format!(
            "{target}: {} predictions, {} dead letters, {} aggregate rows, {} models in {} transactions ({} epochs, through epoch {through}), {} retries",
            s.predictions, s.dead_letters, s.aggregate_rows, s.models, s.transactions, s.epochs, s.retries
        );
        if s.queued_epochs > 0 {
            line.push_str(&format!(", {} epochs not committed", s.queued_epochs));
        }
        if let Some(e) = s.last_error {
            line.push_str(&format!(" (last error: {e})"));
        }
        vec![line]
    }
}

#[cfg(test)]
mod tests;
