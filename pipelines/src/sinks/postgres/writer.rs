//! [`PgWriter`]: one connection that writes whole epochs, each batch of epochs in one
//! transaction (COPY into session-local staging tables, then `INSERT … ON CONFLICT` into
//! the real tables, then the `epochs` rows, then COMMIT).
//!
//! The writer is synchronous and blocking: the sink runs it on a background thread, and the
//! bench and tests call it directly. It knows nothing about timely.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use complaintflow_models::Registry;
use complaintflow_operators::publish::SharedDecision;
use complaintflow_operators::record::DeadLetter;
use complaintflow_operators::Decision;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement, Transaction};

use super::schema::{aggregate_table, migrate, quote_schema};
use super::{PostgresConfig, PostgresSinkError};
use crate::aggregate::AggregateChange;
use crate::state::{split_month_product, Dimension};

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Everything one epoch sends to the database.
#[derive(Clone, Debug, Default)]
pub struct EpochBatch {
    /// The epoch.
    pub epoch: u64,
    /// Its decisions (upserted into `predictions` by `complaint_id`).
    pub decisions: Vec<SharedDecision>,
    /// Its dead letters (upserted into `dead_letters` by origin).
    pub dead_letters: Vec<DeadLetter>,
    /// The aggregate keys whose totals changed in it (the new totals; all zero = gone).
    pub aggregate_changes: Vec<AggregateChange>,
}

impl EpochBatch {
    /// An empty batch of `epoch`.
    pub fn new(epoch: u64) -> EpochBatch {
        EpochBatch {
            epoch,
            ..EpochBatch::default()
        }
    }

    /// Records in the batch (decisions + dead letters + aggregate changes).
    pub fn rows(&self) -> usize {
        self.decisions.len() + self.dead_letters.len() + self.aggregate_changes.len()
    }
}

/// What one [`PgWriter::write`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Epochs committed (the batches given).
    pub epochs: usize,
    /// Rows upserted into `predictions` (after folding repeated ids).
    pub predictions: u64,
    /// Rows upserted into `dead_letters`.
    pub dead_letters: u64,
    /// Aggregate rows upserted or deleted.
    pub aggregate_rows: u64,
    /// Rows upserted into `models`.
    pub models: u64,
    /// Time in the binary COPYs into the staging tables (client encoding included), µs.
    pub copy_micros: u64,
    /// Time in the `INSERT … ON CONFLICT` / `DELETE` statements (and `models`, `epochs`), µs.
    pub upsert_micros: u64,
    /// Time in COMMIT (the WAL flush), µs.
    pub commit_micros: u64,
}

/// How to reach the database: the parsed URL with the password from the environment, the
/// schema, and a printable target that never holds the password.
#[derive(Clone)]
pub struct Connector {
    config: postgres::Config,
    target: String,
    schema: String,
    quoted: String,
    registry: Option<PathBuf>,
    models_refresh: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// `postgres://user@host:port/db` of a parsed configuration: no password, ever.
fn describe(c: &postgres::Config) -> String {
    let host = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(s) => s.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        c.get_user().unwrap_or(""),
        c.get_dbname().or(c.get_user()).unwrap_or("")
    )
}

impl Connector {
    /// Parses `url` (`postgres://user@host:port/db?…` or `host=… user=…`) and applies
    /// `cfg`: the password comes from the URL or, when the URL has none, from the
    /// environment variable `cfg.password_env`. `registry`: the model registry directory to
    /// mirror into `models` (`cfg.registry_dir` wins when set).
    pub fn new(
        url: &str,
        cfg: &PostgresConfig,
        registry: Option<PathBuf>,
    ) -> Result<Connector, PostgresSinkError> {
        let redacted = crate::plugins::redact(url);
        let mut config: postgres::Config =
            url.parse()
                .map_err(|e: postgres::Error| PostgresSinkError::Url {
                    target: redacted.clone(),
                    message: e.to_string(),
                })?;
        if config.get_user().is_none() {
            return Err(PostgresSinkError::Url {
                target: redacted,
                message: "no user: use postgres://USER@HOST:PORT/DB".into(),
            });
        }
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_password().is_none() && !cfg.password_env.is_empty() {
            if let Ok(pw) = std::env::var(&cfg.password_env) {
                if !pw.is_empty() {
                    config.password(pw);
                }
            }
        }
        if config.get_application_name().is_none() {
            config.application_name(&cfg.application_name);
        }
        config.connect_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(1)));
        if cfg.tcp_user_timeout_ms > 0 {
            config.tcp_user_timeout(Duration::from_millis(cfg.tcp_user_timeout_ms));
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let quoted = quote_schema(&cfg.schema).map_err(PostgresSinkError::Config)?;
        let registry = if cfg.registry_dir.is_empty() {
            registry
        } else {
            Some(PathBuf::from(&cfg.registry_dir))
        };
        Ok(Connector {
            target: describe(&config),
            config,
            schema: cfg.schema.clone(),
            quoted,
            registry,
            models_refresh: Duration::from_millis(cfg.models_refresh_ms),
        })
    }

    /// `postgres://user@host:port/db` (never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The registry directory mirrored into `models`, if any.
    pub fn registry(&self) -> Option<&PathBuf> {
        self.registry.as_ref()
    }

    /// A plain client (no migration, no staging tables), e.g. for queries in tests.
    pub fn client(&self) -> Result<Client, PostgresSinkError> {
        self.config
            .connect(NoTls)
            .map_err(|source| PostgresSinkError::Connect {
                target: self.target.clone(),
                hint: connect_hint(&source, self.config.get_password().is_some()),
                source,
            })
    }
}

fn connect_hint(e: &postgres::Error, have_password: bool) -> String {
    let text = super::chain(e);
    if text.contains("password") || text.contains("authentication") {
        if have_password {
            " (the password was refused: check the password environment variable, [postgres] password_env)".into()
        } else {
            " (no password given: set the variable named by [postgres] password_env, PGPASSWORD by default)".into()
        }
    } else if text.contains("refused")
        || text.contains("timed out")
        || text.contains("resolve")
        || text.contains("connecting to server")
    {
        " (is the server running? scripts/postgres-up.sh starts a local one and prints its URL)"
            .into()
    } else {
        String::new()
    }
}

/// The prepared statements of one connection.
struct Statements {
    upsert_predictions: Statement,
    upsert_dead_letters: Statement,
    /// Per dimension: (upsert rows with count > 0, delete rows whose count fell to 0).
    aggregates: Vec<(Dimension, Statement, Statement)>,
    upsert_model: Statement,
    epochs: Statement,
}

const PREDICTION_COLUMNS: &str =
    "complaint_id, model_version, score, predicted_success, escalate, \
     priority, queue, reasons, product, issue, state, company, date_received, epoch, ingested_at, \
     decided_at";

const PREDICTION_TYPES: [Type; 16] = [
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT8,
    Type::BOOL,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::DATE,
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
];

const DEAD_LETTER_COLUMNS: &str =
    "origin_source, origin_partition, origin_offset, kind, message, complaint_id, raw, epoch";

const DEAD_LETTER_TYPES: [Type; 8] = [
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::INT8,
];

const AGGREGATE_TYPES: [Type; 7] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
];

fn excluded_set(columns: &str, key: &[&str]) -> String {
    columns
        .split(',')
        .map(str::trim)
        .filter(|c| !key.contains(c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Statements {
    fn prepare(client: &mut Client, s: &str) -> Result<Statements, postgres::Error> {
        let upsert_predictions = client.prepare(&format!(
            "INSERT INTO {s}.predictions ({PREDICTION_COLUMNS}) \
             SELECT {PREDICTION_COLUMNS} FROM cf_stage_predictions \
             ON CONFLICT (complaint_id) DO UPDATE SET {}",
            excluded_set(PREDICTION_COLUMNS, &["complaint_id"])
        ))?;
        let upsert_dead_letters = client.prepare(&format!(
            "INSERT INTO {s}.dead_letters ({DEAD_LETTER_COLUMNS}) \
             SELECT {DEAD_LETTER_COLUMNS} FROM cf_stage_dead_letters \
             ON CONFLICT (origin_source, origin_partition, origin_offset) DO UPDATE SET {}",
            excluded_set(
                DEAD_LETTER_COLUMNS,
                &["origin_source", "origin_partition", "origin_offset"]
            )
        ))?;
        let mut aggregates = Vec::new();
        for d in Dimension::ALL {
            let (table, keys) = aggregate_table(d);
            let key_cols = keys.join(", ");
            let key_src = ["key1", "key2"][..keys.len()].join(", ");
            let upsert = client.prepare(&format!(
                "INSERT INTO {s}.{table} ({key_cols}, count, escalations, escalation_rate, \
                     mean_score, score_sum_micro, as_of) \
                 SELECT {key_src}, count, escalations, escalations::float8 / count, \
                     score_sum_micro::float8 / 1e6 / count, score_sum_micro, epoch \
                 FROM cf_stage_aggregates WHERE dimension = '{dim}' AND count > 0 \
                 ON CONFLICT ({key_cols}) DO UPDATE SET count = EXCLUDED.count, \
                     escalations = EXCLUDED.escalations, \
                     escalation_rate = EXCLUDED.escalation_rate, \
                     mean_score = EXCLUDED.mean_score, \
                     score_sum_micro = EXCLUDED.score_sum_micro, as_of = EXCLUDED.as_of",
                dim = d.as_str()
            ))?;
            let on = keys
                .iter()
                .zip(["key1", "key2"])
                .map(|(k, src)| format!("t.{k} = a.{src}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let delete = client.prepare(&format!(
                "DELETE FROM {s}.{table} t USING cf_stage_aggregates a \
                 WHERE a.dimension = '{dim}' AND a.count <= 0 AND {on}",
                dim = d.as_str()
            ))?;
            aggregates.push((d, upsert, delete));
        }
        let model_cols = "version, stage, created_at, label_policy, train_rows, test_rows, \
             test_positives, threshold, auc_roc, auc_pr, log_loss, brier, accuracy, precision, \
             recall, f1, dim, data_path, data_sha256, code_version, metadata";
        let upsert_model = client.prepare(&format!(
            "INSERT INTO {s}.models ({model_cols}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
              $19, $20, $21) \
             ON CONFLICT (version) DO UPDATE SET {}, updated_at = now()",
            excluded_set(model_cols, &["version"])
        ))?;
        let epochs = client.prepare(&format!(
            "INSERT INTO {s}.epochs (epoch, predictions, dead_letters, aggregate_changes) \
             SELECT * FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[]) \
             ON CONFLICT (epoch) DO UPDATE SET predictions = EXCLUDED.predictions, \
                 dead_letters = EXCLUDED.dead_letters, \
                 aggregate_changes = EXCLUDED.aggregate_changes, committed_at = now()"
        ))?;
        Ok(Statements {
            upsert_predictions,
            upsert_dead_letters,
            aggregates,
            upsert_model,
            epochs,
        })
    }
}

/// One connection to the database, migrated, with its staging tables and statements.
pub struct PgWriter {
    client: Client,
    target: String,
    statements: Statements,
    registry: Option<PathBuf>,
    models_refresh: Duration,
    models_seen: std::collections::HashSet<String>,
    models_written: Option<Instant>,
}

impl std::fmt::Debug for PgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWriter")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Replaces NUL characters, which PostgreSQL's `text` cannot hold, by U+FFFD. Borrowed
/// (no copy) in the usual case.
fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn clean_opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(clean)
}

fn timestamp(ms: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(ms)
}

fn epoch_i64(e: u64) -> i64 {
    i64::try_from(e).unwrap_or(i64::MAX)
}

fn count_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl PgWriter {
    /// Connects, applies the missing migrations and prepares the staging tables and
    /// statements.
    pub fn connect(c: &Connector) -> Result<PgWriter, PostgresSinkError> {
        let mut client = c.client()?;
        let target = c.target.clone();
        let sql = |what: &'static str| {
            let target = target.clone();
            move |source| PostgresSinkError::Sql {
                target,
                what: what.to_string(),
                source,
            }
        };
        migrate(&mut client, &c.quoted, &c.target)?;
        let s = &c.quoted;
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS cf_stage_predictions \
                     (LIKE {s}.predictions) ON COMMIT DELETE ROWS;
                 CREATE TEMP TABLE IF NOT EXISTS cf_stage_dead_letters \
                     (LIKE {s}.dead_letters) ON COMMIT DELETE ROWS;
                 CREATE TEMP TABLE IF NOT EXISTS cf_stage_aggregates (
                     dimension text NOT NULL, key1 text NOT NULL, key2 text NOT NULL,
                     count bigint NOT NULL, escalations bigint NOT NULL,
                     score_sum_micro bigint NOT NULL, epoch bigint NOT NULL
                 ) ON COMMIT DELETE ROWS;"
            ))
            .map_err(sql("creating the staging tables"))?;
        let statements =
            Statements::prepare(&mut client, s).map_err(sql("preparing statements"))?;
        Ok(PgWriter {
            client,
            target: c.target.clone(),
            statements,
            registry: c.registry.clone(),
            models_refresh: c.models_refresh,
            models_seen: Default::default(),
            models_written: None,
        })
    }

    /// `postgres://user@host:port/db`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The connection (for queries; do not leave a transaction open).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Whether the connection is known to be closed (reconnect).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Writes `batches` (growing epochs) in ONE transaction: either every row of every
    /// epoch in it is committed, with its `epochs` row, or none is. A complaint id (or dead
    /// letter origin, or aggregate key) repeated across the batches keeps its latest value.
    pub fn write(&mut self, batches: &[EpochBatch]) -> Result<WriteReport, PostgresSinkError> {
        let target = self.target.clone();
        let sql = |what: &'static str| {
            let target = target.clone();
            move |source| PostgresSinkError::Sql {
                target,
                what: what.to_string(),
                source,
            }
        };
        let mut report = WriteReport {
            epochs: batches.len(),
            ..WriteReport::default()
        };
        let models = self.models_due(batches);
        let micros = |t: Instant| t.elapsed().as_micros() as u64;
        let st = &self.statements;
        let mut tx = self.client.transaction().map_err(sql("BEGIN"))?;

        // Predictions: the last decision of each complaint id.
        let n: usize = batches.iter().map(|b| b.decisions.len()).sum();
        if n > 0 {
            let mut at: HashMap<&str, usize> = HashMap::default();
            at.reserve(n);
            let mut rows: Vec<&Decision> = Vec::with_capacity(n);
            for d in batches.iter().flat_map(|b| b.decisions.iter()) {
                let d = &d.decision;
                match at.get(d.complaint_id.as_str()) {
                    Some(&i) => rows[i] = d,
                    None => {
                        at.insert(d.complaint_id.as_str(), rows.len());
                        rows.push(d);
                    }
                }
            }
            let t = Instant::now();
            copy_predictions(&mut tx, &rows).map_err(sql("COPY predictions"))?;
            report.copy_micros += micros(t);
            let t = Instant::now();
            report.predictions = tx
                .execute(&st.upsert_predictions, &[])
                .map_err(sql("upserting predictions"))?;
            report.upsert_micros += micros(t);
        }

        // Dead letters: the last of each origin.
        let n: usize = batches.iter().map(|b| b.dead_letters.len()).sum();
        if n > 0 {
            let mut at: HashMap<(&str, i32, i64), usize> = HashMap::default();
            let mut rows: Vec<(&DeadLetter, u64)> = Vec::with_capacity(n);
            for b in batches {
                for d in &b.dead_letters {
                    let k = (&*d.origin.source, d.origin.partition, d.origin.offset);
                    match at.get(&k) {
                        Some(&i) => rows[i] = (d, b.epoch),
                        None => {
                            at.insert(k, rows.len());
                            rows.push((d, b.epoch));
                        }
                    }
                }
            }
            let t = Instant::now();
            copy_dead_letters(&mut tx, &rows).map_err(sql("COPY dead letters"))?;
            report.copy_micros += micros(t);
            let t = Instant::now();
            report.dead_letters = tx
                .execute(&st.upsert_dead_letters, &[])
                .map_err(sql("upserting dead letters"))?;
            report.upsert_micros += micros(t);
        }

        // Aggregates: the latest totals of each key.
        let mut latest: BTreeMap<(Dimension, &str), &AggregateChange> = BTreeMap::new();
        for c in batches.iter().flat_map(|b| b.aggregate_changes.iter()) {
            let slot = latest.entry((c.dimension, c.key.as_str())).or_insert(c);
            if c.epoch >= slot.epoch {
                *slot = c;
            }
        }
        let t = Instant::now();
        if !latest.is_empty() {
            copy_aggregates(&mut tx, latest.values().copied()).map_err(sql("COPY aggregates"))?;
            let dims: std::collections::BTreeSet<Dimension> =
                latest.keys().map(|(d, _)| *d).collect();
            for (d, upsert, delete) in &st.aggregates {
                if dims.contains(d) {
                    report.aggregate_rows += tx
                        .execute(upsert, &[])
                        .map_err(sql("upserting aggregates"))?;
                    report.aggregate_rows += tx
                        .execute(delete, &[])
                        .map_err(sql("deleting aggregates"))?;
                }
            }
        }

        // Models: the registry's versions, when a new version shows up or the refresh is due.
        if let Some(list) = &models {
            for m in list {
                report.models +=
                    write_model(&mut tx, &st.upsert_model, m).map_err(sql("upserting models"))?;
            }
        }

        let epochs: Vec<i64> = batches.iter().map(|b| epoch_i64(b.epoch)).collect();
        let preds: Vec<i32> = batches
            .iter()
            .map(|b| count_i32(b.decisions.len()))
            .collect();
        let dead: Vec<i32> = batches
            .iter()
            .map(|b| count_i32(b.dead_letters.len()))
            .collect();
        let aggs: Vec<i32> = batches
            .iter()
            .map(|b| count_i32(b.aggregate_changes.len()))
            .collect();
        tx.execute(&st.epochs, &[&epochs, &preds, &dead, &aggs])
            .map_err(sql("recording the epochs"))?;
        report.upsert_micros += micros(t);
        let t = Instant::now();
        tx.commit().map_err(sql("COMMIT"))?;
        report.commit_micros = micros(t);

        if let Some(list) = models {
            self.models_written = Some(Instant::now());
            self.models_seen.extend(list.into_iter().map(|m| m.version));
        }
        Ok(report)
    }

    /// The registry's versions when they should be written in this transaction: at the first
    /// write, when a decision names a version not written yet, or every `models_refresh`.
    fn models_due(
        &mut self,
        batches: &[EpochBatch],
    ) -> Option<Vec<complaintflow_models::VersionMetadata>> {
        let dir = self.registry.as_ref()?;
        let due = match self.models_written {
            None => true,
            Some(t) => {
                t.elapsed() >= self.models_refresh
                    || batches
                        .iter()
                        .flat_map(|b| b.decisions.iter())
                        .any(|d| !self.models_seen.contains(&*d.decision.model_version))
            }
        };
        if !due {
            return None;
        }
        if !dir.join("registry.json").is_file() && !dir.join("versions").is_dir() {
            self.models_written = Some(Instant::now());
            return None;
        }
        match Registry::open(dir).and_then(|r| r.list()) {
            Ok(list) => Some(list),
            Err(e) => {
                tracing::warn!(registry = %dir.display(), "models table not refreshed: {e}");
                self.models_written = Some(Instant::now());
                None
            }
        }
    }
}

fn copy_predictions(tx: &mut Transaction<'_>, rows: &[&Decision]) -> Result<u64, postgres::Error> {
    let sink = tx.copy_in(&format!(
        "COPY cf_stage_predictions ({PREDICTION_COLUMNS}) FROM STDIN (FORMAT binary)"
    ))?;
    let mut w = BinaryCopyInWriter::new(sink, &PREDICTION_TYPES);
    let mut reasons: Vec<Cow<'_, str>> = Vec::new();
    for d in rows {
        reasons.clear();
        reasons.extend(d.reasons.iter().map(|r| clean(r)));
        let epoch = epoch_i64(d.epoch);
        let values: [&(dyn ToSql + Sync); 16] = [
            &clean(&d.complaint_id),
            &clean(&d.model_version),
            &d.score,
            &d.predicted_success,
            &d.escalate,
            &clean(&d.priority),
            &clean(&d.queue),
            &reasons,
            &clean_opt(&d.product),
            &clean_opt(&d.issue),
            &clean_opt(&d.state),
            &clean_opt(&d.company),
            &d.date_received,
            &epoch,
            &timestamp(d.ingest_ms),
            &timestamp(d.decided_ms),
        ];
        w.write(&values)?;
    }
    w.finish()
}

fn copy_dead_letters(
    tx: &mut Transaction<'_>,
    rows: &[(&DeadLetter, u64)],
) -> Result<u64, postgres::Error> {
    let sink = tx.copy_in(&format!(
        "COPY cf_stage_dead_letters ({DEAD_LETTER_COLUMNS}) FROM STDIN (FORMAT binary)"
    ))?;
    let mut w = BinaryCopyInWriter::new(sink, &DEAD_LETTER_TYPES);
    for (d, epoch) in rows {
        let epoch = epoch_i64(*epoch);
        let raw: &[u8] = d.raw.as_bytes();
        let values: [&(dyn ToSql + Sync); 8] = [
            &clean(&d.origin.source),
            &d.origin.partition,
            &d.origin.offset,
            &clean(&d.kind),
            &clean(&d.message),
            &d.complaint_id.as_deref().map(clean),
            &raw,
            &epoch,
        ];
        w.write(&values)?;
    }
    w.finish()
}

fn copy_aggregates<'a>(
    tx: &mut Transaction<'_>,
    rows: impl Iterator<Item = &'a AggregateChange>,
) -> Result<u64, postgres::Error> {
    let sink = tx.copy_in(
        "COPY cf_stage_aggregates (dimension, key1, key2, count, escalations, score_sum_micro, \
         epoch) FROM STDIN (FORMAT binary)",
    )?;
    let mut w = BinaryCopyInWriter::new(sink, &AGGREGATE_TYPES);
    for c in rows {
        let (k1, k2) = match c.dimension {
            Dimension::MonthProduct => split_month_product(&c.key).unwrap_or((&c.key, "")),
            _ => (c.key.as_str(), ""),
        };
        let epoch = epoch_i64(c.epoch);
        let values: [&(dyn ToSql + Sync); 7] = [
            &c.dimension.as_str(),
            &clean(k1),
            &clean(k2),
            &c.count,
            &c.escalations,
            &c.score_sum_micro,
            &epoch,
        ];
        w.write(&values)?;
    }
    w.finish()
}

fn write_model(
    tx: &mut Transaction<'_>,
    st: &Statement,
    m: &complaintflow_models::VersionMetadata,
) -> Result<u64, postgres::Error> {
    let created = chrono::DateTime::parse_from_rfc3339(&m.created_at)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc));
    let i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let t = &m.test_metrics;
    let metadata = serde_json::to_value(m).unwrap_or(serde_json::Value::Null);
    let stage = m.stage.to_string();
    let label = m.label_policy.name();
    let dim = i64::try_from(m.dim).unwrap_or(i64::MAX);
    tx.execute(
        st,
        &[
            &m.version,
            &stage,
            &created,
            &label,
            &i(m.rows.train),
            &i(m.rows.test),
            &i(m.rows.test_positives),
            &t.threshold,
            &t.auc_roc,
            &t.auc_pr,
            &t.log_loss,
            &t.brier,
            &t.accuracy,
            &t.precision,
            &t.recall,
            &t.f1,
            &dim,
            &m.data.path,
            &m.data.sha256,
            &m.code_version,
            &metadata,
        ],
    )
}
