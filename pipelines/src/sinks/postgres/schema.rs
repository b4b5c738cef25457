//! The sink's tables and views, and the migrations that create them.
//!
//! A database records the migrations it has applied in `schema_version` (one row per
//! version). [`migrate`] applies the missing ones, in order, in one transaction under an
//! advisory lock (two engines starting together do not race), and refuses a database whose
//! version is newer than this build knows. A later change to the schema is a new entry at
//! the end of [`MIGRATIONS`], never an edit of an old one.
//!
//! Every statement is written for the schema `{s}` (replaced by the quoted schema name of
//! [`PostgresConfig::schema`](super::PostgresConfig::schema)); `docs/SQL.md` shows the
//! result.

use postgres::Client;

use super::PostgresSinkError;
use crate::state::Dimension;

/// One migration: its version (1, 2, …), what it does, and its SQL.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Version number, growing by one.
    pub version: i32,
    /// A one-line description, stored in `schema_version`.
    pub description: &'static str,
    /// The statements (`{s}` = the schema).
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "predictions, dead letters, aggregates, models, epochs",
        sql: V1_TABLES,
    },
    Migration {
        version: 2,
        description: "views for BI tools (escalation rate, map, volume, live vs historical)",
        sql: V2_VIEWS,
    },
];

/// The newest schema version this build writes.
pub fn current_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const V1_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS {s}.predictions (
    complaint_id      text PRIMARY KEY,
    model_version     text NOT NULL,
    score             double precision NOT NULL,
    predicted_success boolean NOT NULL,
    escalate          boolean NOT NULL,
    priority          text NOT NULL,
    queue             text NOT NULL,
    reasons           text[] NOT NULL,
    product           text,
    issue             text,
    state             text,
    company           text,
    date_received     date NOT NULL,
    epoch             bigint NOT NULL,
    ingested_at       timestamptz,
    decided_at        timestamptz
);
CREATE TABLE IF NOT EXISTS {s}.dead_letters (
    origin_source    text NOT NULL,
    origin_partition integer NOT NULL,
    origin_offset    bigint NOT NULL,
    kind             text NOT NULL,
    message          text NOT NULL,
    complaint_id     text,
    raw              bytea NOT NULL,
    epoch            bigint NOT NULL,
    PRIMARY KEY (origin_source, origin_partition, origin_offset)
);
CREATE TABLE IF NOT EXISTS {s}.aggregates_by_product (
    product text PRIMARY KEY,
    count bigint NOT NULL, escalations bigint NOT NULL,
    escalation_rate double precision NOT NULL, mean_score double precision NOT NULL,
    score_sum_micro bigint NOT NULL, as_of bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.aggregates_by_state (
    state text PRIMARY KEY,
    count bigint NOT NULL, escalations bigint NOT NULL,
    escalation_rate double precision NOT NULL, mean_score double precision NOT NULL,
    score_sum_micro bigint NOT NULL, as_of bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.aggregates_by_company (
    company text PRIMARY KEY,
    count bigint NOT NULL, escalations bigint NOT NULL,
    escalation_rate double precision NOT NULL, mean_score double precision NOT NULL,
    score_sum_micro bigint NOT NULL, as_of bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.aggregates_by_issue (
    issue text PRIMARY KEY,
    count bigint NOT NULL, escalations bigint NOT NULL,
    escalation_rate double precision NOT NULL, mean_score double precision NOT NULL,
    score_sum_micro bigint NOT NULL, as_of bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.aggregates_by_month (
    month text PRIMARY KEY,
    count bigint NOT NULL, escalations bigint NOT NULL,
    escalation_rate double precision NOT NULL, mean_score double precision NOT NULL,
    score_sum_micro bigint NOT NULL, as_of bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.aggregates_by_month_product (
    month text NOT NULL, product text NOT NULL,
    count bigint NOT NULL, escalations bigint NOT NULL,
    escalation_rate double precision NOT NULL, mean_score double precision NOT NULL,
    score_sum_micro bigint NOT NULL, as_of bigint NOT NULL,
    PRIMARY KEY (month, product)
);
CREATE TABLE IF NOT EXISTS {s}.aggregates_by_hour (
    hour text PRIMARY KEY,
    count bigint NOT NULL, escalations bigint NOT NULL,
    escalation_rate double precision NOT NULL, mean_score double precision NOT NULL,
    score_sum_micro bigint NOT NULL, as_of bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.models (
    version        text PRIMARY KEY,
    stage          text NOT NULL,
    created_at     timestamptz,
    label_policy   text,
    train_rows     bigint,
    test_rows      bigint,
    test_positives bigint,
    threshold      double precision,
    auc_roc        double precision,
    auc_pr         double precision,
    log_loss       double precision,
    brier          double precision,
    accuracy       double precision,
    precision      double precision,
    recall         double precision,
    f1             double precision,
    dim            bigint,
    data_path      text,
    data_sha256    text,
    code_version   text,
    metadata       jsonb NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.epochs (
    epoch             bigint PRIMARY KEY,
    predictions       integer NOT NULL,
    dead_letters      integer NOT NULL,
    aggregate_changes integer NOT NULL,
    committed_at      timestamptz NOT NULL DEFAULT now()
);
"#;

const V2_VIEWS: &str = r#"
CREATE OR REPLACE VIEW {s}.escalation_rate_by_product AS
    SELECT product, count AS complaints, escalations, escalation_rate, mean_score, as_of
    FROM {s}.aggregates_by_product;
CREATE OR REPLACE VIEW {s}.escalation_rate_by_state AS
    SELECT state, count AS complaints, escalations, escalation_rate, mean_score, as_of
    FROM {s}.aggregates_by_state
    WHERE state ~ '^[A-Z]{2}$';
CREATE OR REPLACE VIEW {s}.volume_by_month AS
    SELECT to_date(month, 'YYYY-MM') AS month, count AS complaints, escalations,
           escalation_rate, mean_score, as_of
    FROM {s}.aggregates_by_month
    WHERE month ~ '^[0-9]{4}-[0-9]{2}$';
CREATE OR REPLACE VIEW {s}.volume_by_month_product AS
    SELECT to_date(month, 'YYYY-MM') AS month, product, count AS complaints, escalations,
           escalation_rate, mean_score, as_of
    FROM {s}.aggregates_by_month_product
    WHERE month ~ '^[0-9]{4}-[0-9]{2}$';
CREATE OR REPLACE VIEW {s}.live_vs_historical AS
    SELECT coalesce(product, '(missing)') AS product,
           CASE WHEN decided_at >= now() - interval '24 hours' THEN 'live' ELSE 'historical' END
               AS period,
           count(*) AS complaints,
           count(*) FILTER (WHERE escalate) AS escalations,
           avg(escalate::int)::double precision AS escalation_rate,
           avg(score) AS mean_score
    FROM {s}.predictions
    GROUP BY 1, 2;
CREATE OR REPLACE VIEW {s}.model_live_vs_training AS
    SELECT m.version, m.stage, m.created_at,
           m.auc_roc AS test_auc_roc,
           m.test_positives::double precision / nullif(m.test_rows, 0) AS training_success_rate,
           l.complaints AS live_complaints,
           l.predicted_success_rate AS live_predicted_success_rate,
           l.mean_score AS live_mean_score,
           l.escalation_rate AS live_escalation_rate
    FROM {s}.models m
    LEFT JOIN (
        SELECT model_version, count(*) AS complaints,
               avg(predicted_success::int)::double precision AS predicted_success_rate,
               avg(score) AS mean_score,
               avg(escalate::int)::double precision AS escalation_rate
        FROM {s}.predictions GROUP BY model_version
    ) l ON l.model_version = m.version;
CREATE OR REPLACE VIEW {s}.sink_progress AS
    SELECT max(epoch) AS committed_through, max(committed_at) AS last_commit,
           sum(predictions) AS predictions_written, count(*) AS epochs
    FROM {s}.epochs;
"#;

/// `"name"`: a schema name as an SQL identifier. Only `[a-z_][a-z0-9_]*` (at most 63 bytes)
/// is accepted, so quoting never has to escape.
pub fn quote_schema(schema: &str) -> Result<String, String> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(format!("\"{schema}\""))
    } else {
        Err(format!(
            "schema {schema:?}: use lower-case letters, digits and '_' (starting with a letter or '_'), at most 63"
        ))
    }
}

/// Brings the schema `quoted` (from [`quote_schema`]) to [`current_version`]; returns the
/// version found before. Creates the schema if it is missing.
pub fn migrate(client: &mut Client, quoted: &str, target: &str) -> Result<i32, PostgresSinkError> {
    let sql_err = |what: &str| {
        let what = what.to_string();
        let target = target.to_string();
        move |source| PostgresSinkError::Sql {
            target,
            what,
            source,
        }
    };
    let mut tx = client
        .transaction()
        .map_err(sql_err("starting the migration"))?;
    // One migrator at a time per database (the key is arbitrary but fixed).
    tx.execute("SELECT pg_advisory_xact_lock(7201515001)", &[])
        .map_err(sql_err("taking the migration lock"))?;
    let name = quoted.trim_matches('"');
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&name])
        .map_err(sql_err("looking up the schema"))?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {quoted}"))
            .map_err(sql_err(&format!("creating schema {quoted}")))?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {quoted}.schema_version (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .map_err(sql_err("creating schema_version"))?;
    let found: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {quoted}.schema_version"),
            &[],
        )
        .map_err(sql_err("reading schema_version"))?
        .try_get(0)
        .map_err(sql_err("reading schema_version"))?;
    let known = current_version();
    if found > known {
        return Err(PostgresSinkError::SchemaTooNew {
            target: target.to_string(),
            found,
            known,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(&m.sql.replace("{s}", quoted))
            .map_err(sql_err(&format!("applying migration {}", m.version)))?;
        tx.execute(
            &format!("INSERT INTO {quoted}.schema_version (version, description) VALUES ($1, $2)"),
            &[&m.version, &m.description],
        )
        .map_err(sql_err("recording the migration"))?;
        tracing::info!(target_db = %target, version = m.version, "applied schema migration: {}", m.description);
    }
    tx.commit().map_err(sql_err("committing the migration"))?;
    Ok(found)
}

/// The table of a dimension and its key columns (`month_product` has two: month, product).
pub fn aggregate_table(d: Dimension) -> (&'static str, &'static [&'static str]) {
    match d {
        Dimension::Product => ("aggregates_by_product", &["product"]),
        Dimension::State => ("aggregates_by_state", &["state"]),
        Dimension::Company => ("aggregates_by_company", &["company"]),
        Dimension::Issue => ("aggregates_by_issue", &["issue"]),
        Dimension::Hour => ("aggregates_by_hour", &["hour"]),
        Dimension::Month => ("aggregates_by_month", &["month"]),
        Dimension::MonthProduct => ("aggregates_by_month_product", &["month", "product"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked_and_quoted() {
        assert_eq!(quote_schema("public").as_deref(), Ok("\"public\""));
        assert_eq!(quote_schema("cf_2").as_deref(), Ok("\"cf_2\""));
        for bad in [
            "",
            "Public",
            "a-b",
            "x\"; DROP TABLE y; --",
            "9lives",
            &"a".repeat(64),
        ] {
            assert!(quote_schema(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn migrations_are_numbered_in_order_and_name_the_schema() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
            assert!(
                m.sql.contains("{s}."),
                "migration {} ignores the schema",
                m.version
            );
        }
        // Every dimension has its table in the first migration.
        for d in Dimension::ALL {
            let (table, keys) = aggregate_table(d);
            assert!(V1_TABLES.contains(&format!("{{s}}.{table} (")), "{table}");
            assert!(!keys.is_empty());
        }
    }
}
