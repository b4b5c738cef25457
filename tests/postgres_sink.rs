//! The real binary into a real PostgreSQL server: `complaintflow run --once --source file:H
//! --sink postgres://URL` leaves every complaint of H in `predictions` exactly once, every
//! malformed record in `dead_letters`, and `aggregates_by_product` equal to a `GROUP BY
//! product` recount of `predictions`; a second run over the same file (a replay) changes
//! nothing; an unreachable server is a clear start-up error that never shows the password;
//! over Kafka, a `kill -9` of the engine mid-stream and a restart leave the tables equal to
//! those of an uninterrupted run (also needs tansu: `scripts/kafka-up.sh`).
//!
//! Server: `COMPLAINTFLOW_POSTGRES_URL` (password in `PGPASSWORD`), e.g. from
//! `scripts/postgres-up.sh`. Without it the tests say so and pass, unless
//! `COMPLAINTFLOW_REQUIRE_POSTGRES=1` (`.ci/run`), where they fail. Each test uses a schema
//! of its own (`[postgres] schema`), dropped first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use complaintflow_pipelines::sinks::postgres::client::Client;
use complaintflow_pipelines::sinks::postgres::{Connector, PostgresConfig};

#[allow(dead_code)]
#[path = "support/engine.rs"]
mod engine;
mod kafka_support;

use complaintflow_testkit::postgres_url as server;

fn fresh_schema(url: &str, name: &str) -> (String, Client) {
    let schema = format!("cfe2e_{name}_{}", std::process::id());
    let cfg = PostgresConfig {
        schema: schema.clone(),
        ..PostgresConfig::default()
    };
    let mut db = Connector::new(url, &cfg, None).unwrap().client().unwrap();
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    (schema, db)
}

/// The complaint ids of the bundled sample (the real records of the test's input).
fn sample_ids() -> BTreeSet<String> {
    let text = std::fs::read_to_string(complaintflow_datasets::bundled_sample_path()).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    records
        .iter()
        .filter_map(|v| match &v["complaint_id"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

fn run_once(dir: &std::path::Path, input: &std::path::Path, url: &str) -> std::process::Output {
    engine::bin(dir)
        .args([
            "run",
            "--once",
            "--http-addr",
            "off",
            "--max-records-per-epoch",
            "500",
        ])
        .args(["--source", &format!("file:{}", input.display())])
        .args(["--sink", url])
        .output()
        .unwrap()
}

fn scalar(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

/// Rows of `aggregates_by_product` that differ from a recount of `predictions` (both ways).
fn aggregate_mismatches(db: &mut Client, s: &str) -> Vec<String> {
    let sql = format!(
        "WITH recount AS (
             SELECT coalesce(product, '(missing)') AS product, count(*)::bigint AS count,
                    (count(*) FILTER (WHERE escalate))::bigint AS escalations
             FROM {s}.predictions GROUP BY 1),
         agg AS (SELECT product, count, escalations FROM {s}.aggregates_by_product)
         (SELECT 'table only: ' || product || ' ' || count || ' ' || escalations
              FROM (SELECT * FROM agg EXCEPT SELECT * FROM recount) a)
         UNION ALL
         (SELECT 'recount only: ' || product || ' ' || count || ' ' || escalations
              FROM (SELECT * FROM recount EXCEPT SELECT * FROM agg) r)"
    );
    db.query(&sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn run_once_file_to_postgres_then_replay_changes_nothing() {
    let Some(url) = server() else { return };
    let (s, mut db) = fresh_schema(&url, "once");
    let dir = engine::workdir(&format!("[postgres]\nschema = \"{s}\"\n"));
    engine::train_and_promote(dir.path());
    let (input, n) = engine::sample_with_malformed(dir.path(), None, 3);
    let want = sample_ids();
    assert_eq!(want.len(), n, "the sample's complaint ids are distinct");

    let o = run_once(dir.path(), &input, &url);
    assert!(
        o.status.success(),
        "run failed (is `run --sink postgres://…` wired?): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        assert!(
            pw.is_empty() || !stderr.contains(&pw),
            "the password was logged"
        );
    }

    let have: Vec<String> = db
        .query(&format!("SELECT complaint_id FROM {s}.predictions"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(have.len(), n, "one row per complaint");
    assert_eq!(
        have.into_iter().collect::<BTreeSet<_>>(),
        want,
        "every complaint of the file"
    );
    assert_eq!(
        scalar(&mut db, &format!("SELECT count(*) FROM {s}.dead_letters")),
        3
    );
    let mismatches = aggregate_mismatches(&mut db, &s);
    assert!(
        mismatches.is_empty(),
        "aggregates_by_product vs recount: {mismatches:?}"
    );
    assert!(
        scalar(
            &mut db,
            &format!("SELECT count(*) FROM {s}.aggregates_by_product")
        ) > 1
    );
    let epochs = scalar(&mut db, &format!("SELECT count(*) FROM {s}.epochs"));
    assert!(
        epochs >= (n / 500) as i64,
        "{epochs} epochs recorded for {n} records at 500 per epoch"
    );
    assert_eq!(
        scalar(
            &mut db,
            &format!("SELECT count(*) FROM {s}.models WHERE stage = 'production'")
        ),
        1
    );
    // Every prediction's model version is in the registry mirror.
    assert_eq!(
        scalar(
            &mut db,
            &format!("SELECT count(*) FROM {s}.predictions p LEFT JOIN {s}.models m ON m.version = p.model_version WHERE m.version IS NULL")
        ),
        0
    );
    let month_total = scalar(
        &mut db,
        &format!("SELECT sum(complaints)::bigint FROM {s}.volume_by_month"),
    );
    assert_eq!(month_total, n as i64);

    // The same file again: rows are overwritten, never duplicated.
    let o = run_once(dir.path(), &input, &url);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        scalar(&mut db, &format!("SELECT count(*) FROM {s}.predictions")),
        n as i64
    );
    assert_eq!(
        scalar(&mut db, &format!("SELECT count(*) FROM {s}.dead_letters")),
        3
    );
    let mismatches = aggregate_mismatches(&mut db, &s);
    assert!(mismatches.is_empty(), "after the replay: {mismatches:?}");
}

#[test]
fn unreachable_database_is_a_clear_start_up_error() {
    let dir = engine::workdir("");
    engine::train_and_promote(dir.path());
    let (input, _) = engine::sample_with_malformed(dir.path(), Some(20), 0);
    let port = engine::free_port();
    let url = format!("postgres://cf:hunter2-secret@127.0.0.1:{port}/cf");
    let o = engine::bin(dir.path())
        .env("PGPASSWORD", "another-secret")
        .args(["run", "--once", "--http-addr", "off"])
        .args(["--source", &format!("file:{}", input.display())])
        .args(["--sink", &url])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains("another-secret"),
        "{err}"
    );
}

/// The columns of each table that do not depend on when or in which epoch a row was written.
const STABLE: [(&str, &str); 8] = [
    (
        "predictions",
        "complaint_id, model_version, score, predicted_success, escalate, priority, queue, \
         reasons, product, issue, state, company, date_received",
    ),
    (
        "dead_letters",
        "origin_source, origin_partition, origin_offset, kind, message, complaint_id, raw",
    ),
    (
        "aggregates_by_product",
        "product, count, escalations, score_sum_micro",
    ),
    (
        "aggregates_by_state",
        "state, count, escalations, score_sum_micro",
    ),
    (
        "aggregates_by_company",
        "company, count, escalations, score_sum_micro",
    ),
    (
        "aggregates_by_issue",
        "issue, count, escalations, score_sum_micro",
    ),
    (
        "aggregates_by_month",
        "month, count, escalations, score_sum_micro",
    ),
    (
        "aggregates_by_month_product",
        "month, product, count, escalations, score_sum_micro",
    ),
];

/// Rows of `table` in one schema and not the other (both ways), on the stable columns.
fn differences(db: &mut Client, a: &str, b: &str, table: &str, cols: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT (SELECT count(*) FROM (SELECT {cols} FROM {a}.{table} EXCEPT SELECT {cols} FROM {b}.{table}) x)
                  + (SELECT count(*) FROM (SELECT {cols} FROM {b}.{table} EXCEPT SELECT {cols} FROM {a}.{table}) y)"
        ),
    )
}

#[test]
fn kill_9_over_kafka_and_restart_leave_the_tables_of_an_uninterrupted_run() {
    use kafka_support::{engine as kafka_engine, latest_checkpoint, produce, wait_ok, Broker};
    use std::time::{Duration, Instant};
    let Some(url) = server() else { return };
    let _serial = kafka_support::serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    let (reference, mut db) = fresh_schema(&url, "kref");
    let (crashed, _) = fresh_schema(&url, "kcrash");
    let work = kafka_support::workdir_with(&format!("[postgres]\nschema = \"{reference}\"\n"));
    let dir = work.path();
    let b = broker.addr.as_str();
    const N: usize = 60_000;
    let summary = produce(dir, b, &["--resample", &N.to_string(), "--seed", "5"]);
    assert_eq!(summary["acked"].as_u64(), Some(N as u64));
    let pg_only = [
        "--sink",
        url.as_str(),
        "--dlq-topic",
        "none",
        "--aggregates-topic",
        "none",
    ];

    // The reference: one uninterrupted run into its own schema.
    kafka_support::copy_registry(dir, "state", "ref");
    // Frequent checkpoints: the whole backlog can be read within one default interval (1 s),
    // and the kill must land mid-stream.
    let mut args = vec!["--until-idle", "3s", "--checkpoint-ms", "50"];
    args.extend(pg_only);
    wait_ok(kafka_engine(dir, "ref", b, &args), "the reference run");
    assert_eq!(
        scalar(
            &mut db,
            &format!("SELECT count(*) FROM {reference}.predictions")
        ),
        N as i64
    );

    // The run under test, into the other schema: kill -9 once a checkpoint covers 15,000.
    let toml = std::fs::read_to_string(dir.join("fast.toml")).unwrap();
    std::fs::write(dir.join("fast.toml"), toml.replace(&reference, &crashed)).unwrap();
    let mut e = kafka_engine(dir, "state", b, &args);
    let t0 = Instant::now();
    let at_kill = loop {
        if let Some(status) = e.try_wait().unwrap() {
            panic!("the engine ended ({status}) before it could be killed");
        }
        match latest_checkpoint(&dir.join("state")) {
            Some((epoch, n)) if n >= 15_000 => break (epoch, n),
            _ => {}
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    };
    e.kill().unwrap(); // SIGKILL
    let _ = e.wait();
    assert!(
        (at_kill.1 as usize) < N,
        "killed mid-stream: the checkpoint covers {}",
        at_kill.1
    );
    // The database holds at least what the checkpoint covers (acknowledged = committed).
    let written = scalar(
        &mut db,
        &format!("SELECT count(*) FROM {crashed}.predictions"),
    );
    assert!(
        written >= at_kill.1,
        "checkpoint covers {} but only {written} rows are committed",
        at_kill.1
    );
    let epochs_at_kill = scalar(&mut db, &format!("SELECT count(*) FROM {crashed}.epochs"));
    eprintln!(
        "killed after the checkpoint of epoch {} ({} messages); {written} predictions and \
         {epochs_at_kill} epochs committed at the kill",
        at_kill.0, at_kill.1
    );
    let log = wait_ok(kafka_engine(dir, "state", b, &args), "the restarted engine");
    assert!(
        log.contains("resuming from the checkpoint of epoch"),
        "the restart did not resume from the checkpoint:\n{log}"
    );
    // The restart re-sent only what the checkpoint did not cover: fewer than N predictions
    // were written by it (the sink's report line), so the test really crossed a restart.
    let rewritten: Option<u64> = log.lines().find_map(|l| {
        let rest = l.strip_prefix("postgres://")?;
        let (_, after) = rest.split_once(": ")?;
        after.split_once(" predictions")?.0.trim().parse().ok()
    });
    eprintln!("the restarted engine wrote {rewritten:?} predictions");
    assert!(
        rewritten.is_some_and(|r| r < N as u64),
        "the restarted engine's report: {rewritten:?} (of {N})\n{log}"
    );

    for (table, cols) in STABLE {
        assert_eq!(
            differences(&mut db, &reference, &crashed, table, cols),
            0,
            "{table} differs"
        );
    }
    assert_eq!(
        scalar(
            &mut db,
            &format!("SELECT count(*) FROM {crashed}.predictions")
        ),
        N as i64
    );
    // `hour` is when the engine decided: only its totals must agree.
    let total = |db: &mut Client, s: &str| {
        scalar(
            db,
            &format!("SELECT coalesce(sum(count), 0)::bigint FROM {s}.aggregates_by_hour"),
        )
    };
    assert_eq!(total(&mut db, &reference), total(&mut db, &crashed));
    assert_eq!(total(&mut db, &crashed), N as i64);
}
