//! Tests against a real server: `COMPLAINTFLOW_POSTGRES_URL` (e.g. the URL printed by
//! `scripts/postgres-up.sh`, password in `PGPASSWORD`). Without it the tests say so and pass,
//! unless `COMPLAINTFLOW_REQUIRE_POSTGRES=1` (CI), where they fail. Each test works in a
//! schema of its own, dropped first.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use complaintflow_operators::publish::{Published, SharedDecision};
use complaintflow_operators::record::{DeadLetter, Origin};
use complaintflow_operators::Decision;
use postgres::Client;
use timely::dataflow::operators::{Input, Inspect, Probe};

use super::*;
use crate::aggregate::AggregateChange;
use crate::state::Dimension;

use complaintflow_testkit::postgres_url as server;

/// A configuration on a fresh schema `cft_<name>_<pid>` and a client to inspect it.
fn fresh(url: &str, name: &str) -> (PostgresConfig, Client) {
    let schema = format!("cft_{name}_{}", std::process::id());
    let cfg = PostgresConfig {
        schema: schema.clone(),
        retry_initial_ms: 20,
        retry_max_ms: 200,
        ..PostgresConfig::default()
    };
    let mut client = Connector::new(url, &cfg, None).unwrap().client().unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    (cfg, client)
}

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn decision(
    id: u64,
    epoch: u64,
    product: Option<&str>,
    state: Option<&str>,
    escalate: bool,
) -> SharedDecision {
    Arc::new(Published::new(Decision {
        complaint_id: id.to_string(),
        model_version: Arc::from("v0001"),
        score: 0.001 * (id % 1000) as f64,
        predicted_success: !escalate,
        escalate,
        priority: Cow::Borrowed(if escalate { "P1" } else { "P3" }),
        queue: Arc::from("general"),
        reasons: vec![format!("score below {}", 0.03), "servicemember".into()],
        product: product.map(String::from),
        issue: Some("Incorrect information".into()),
        state: state.map(String::from),
        company: Some("ACME".into()),
        date_received: chrono::NaiveDate::from_ymd_opt(2023, 1 + (id % 12) as u32, 3).unwrap(),
        epoch,
        ingest_ms: 1_700_000_000_000,
        decided_ms: 1_700_000_000_005,
    }))
}

fn change(epoch: u64, dimension: Dimension, key: &str, count: i64, esc: i64) -> AggregateChange {
    AggregateChange {
        epoch,
        dimension,
        key: key.into(),
        count,
        escalations: esc,
        score_sum_micro: count * 500_000,
    }
}

fn dead(offset: i64, raw: &str) -> DeadLetter {
    DeadLetter::from_bytes(
        raw.as_bytes(),
        Origin::file("in.jsonl", offset),
        "malformed_json",
        "expected value at line 1".into(),
        None,
    )
}

#[test]
fn writer_upserts_epochs_and_replays_overwrite() {
    let Some(url) = server() else { return };
    let (cfg, mut db) = fresh(&url, "writer");
    let s = cfg.schema.clone();
    let c = Connector::new(&url, &cfg, None).unwrap();
    let mut w = PgWriter::connect(&c).unwrap();

    let mut nul = (*decision(3, 0, None, None, false)).clone();
    nul.decision.reasons.push("bad\0byte".into());
    nul.decision.company = Some("Nul\0Corp".into());
    let b0 = EpochBatch {
        epoch: 0,
        decisions: vec![
            decision(1, 0, Some("Mortgage"), Some("CA"), true),
            decision(2, 0, Some("Debt collection"), Some("NY"), false),
            Arc::new(nul),
        ],
        dead_letters: vec![dead(40, "{oops"), dead(41, "[1,")],
        aggregate_changes: vec![
            change(0, Dimension::Product, "Mortgage", 1, 1),
            change(0, Dimension::Product, "Debt collection", 1, 0),
            change(0, Dimension::Product, "(missing)", 1, 0),
            change(0, Dimension::MonthProduct, "2023-02|Mortgage", 1, 1),
        ],
    };
    let r = w.write(std::slice::from_ref(&b0)).unwrap();
    assert_eq!((r.predictions, r.dead_letters, r.aggregate_rows), (3, 2, 4));

    let row = db
        .query_one(
            &format!("SELECT reasons, escalate, priority, state, epoch, date_received, decided_at FROM {s}.predictions WHERE complaint_id = '1'"),
            &[],
        )
        .unwrap();
    let reasons: Vec<String> = row.get(0);
    assert_eq!(reasons, vec!["score below 0.03", "servicemember"]);
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, String>(2), "P1");
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("CA"));
    assert_eq!(row.get::<_, i64>(4), 0);
    assert_eq!(row.get::<_, chrono::NaiveDate>(5).to_string(), "2023-02-03");
    let decided: chrono::DateTime<chrono::Utc> = row.get(6);
    assert_eq!(decided.timestamp_millis(), 1_700_000_000_005);
    // NUL (not storable in text) replaced, not dropped or failing the epoch.
    let company: String = db
        .query_one(
            &format!("SELECT company FROM {s}.predictions WHERE complaint_id = '3'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(company, "Nul\u{FFFD}Corp");
    let raw: Vec<u8> = db
        .query_one(
            &format!("SELECT raw FROM {s}.dead_letters WHERE origin_offset = 40"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(raw, b"{oops");
    let (month, product): (String, String) = {
        let r = db
            .query_one(
                &format!("SELECT month, product FROM {s}.aggregates_by_month_product"),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((month.as_str(), product.as_str()), ("2023-02", "Mortgage"));

    // Epoch 1: complaint 2 decided again (a replay), Mortgage's totals fall to zero (key gone),
    // a dead letter replayed: no row is duplicated.
    let b1 = EpochBatch {
        epoch: 1,
        decisions: vec![decision(2, 1, Some("Debt collection"), Some("NY"), true)],
        dead_letters: vec![dead(40, "{oops")],
        aggregate_changes: vec![
            change(1, Dimension::Product, "Mortgage", 0, 0),
            change(1, Dimension::Product, "Debt collection", 2, 1),
        ],
    };
    w.write(std::slice::from_ref(&b1)).unwrap();
    assert_eq!(
        count(&mut db, &format!("SELECT count(*) FROM {s}.predictions")),
        3
    );
    assert_eq!(
        count(&mut db, &format!("SELECT count(*) FROM {s}.dead_letters")),
        2
    );
    let row = db
        .query_one(
            &format!("SELECT escalate, epoch FROM {s}.predictions WHERE complaint_id = '2'"),
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i64>(1), 1);
    let agg: Vec<(String, i64, i64, f64, f64, i64)> = db
        .query(
            &format!("SELECT product, count, escalations, escalation_rate, mean_score, as_of FROM {s}.aggregates_by_product ORDER BY product"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        agg,
        vec![
            ("(missing)".to_string(), 1, 0, 0.0, 0.5, 0),
            ("Debt collection".to_string(), 2, 1, 0.5, 0.5, 1),
        ]
    );
    assert_eq!(
        count(&mut db, &format!("SELECT count(*) FROM {s}.epochs")),
        2
    );
    // The views answer.
    assert_eq!(
        count(
            &mut db,
            &format!("SELECT count(*) FROM {s}.escalation_rate_by_product")
        ),
        2
    );
    assert_eq!(
        count(
            &mut db,
            &format!("SELECT count(*) FROM {s}.escalation_rate_by_state")
        ),
        0
    );
    assert_eq!(
        count(
            &mut db,
            &format!("SELECT max(committed_through) FROM {s}.sink_progress")
        ),
        1
    );
    let live: i64 = count(
        &mut db,
        &format!("SELECT sum(complaints)::bigint FROM {s}.live_vs_historical"),
    );
    assert_eq!(live, 3);
}

#[test]
fn merged_epochs_keep_the_latest_value_of_a_repeated_key() {
    let Some(url) = server() else { return };
    let (cfg, mut db) = fresh(&url, "merge");
    let s = cfg.schema.clone();
    let mut w = PgWriter::connect(&Connector::new(&url, &cfg, None).unwrap()).unwrap();
    let batches: Vec<EpochBatch> = (0..3u64)
        .map(|e| EpochBatch {
            epoch: e,
            decisions: vec![
                decision(7, e, Some("Mortgage"), None, e == 2),
                decision(100 + e, e, None, None, false),
            ],
            dead_letters: vec![dead(5, &format!("v{e}"))],
            aggregate_changes: vec![change(e, Dimension::State, "TX", e as i64 + 1, 0)],
        })
        .collect();
    let r = w.write(&batches).unwrap();
    assert_eq!((r.epochs, r.predictions, r.dead_letters), (3, 4, 1));
    let row = db
        .query_one(
            &format!("SELECT escalate, epoch FROM {s}.predictions WHERE complaint_id = '7'"),
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, i64>(1)), (true, 2));
    let raw: Vec<u8> = db
        .query_one(&format!("SELECT raw FROM {s}.dead_letters"), &[])
        .unwrap()
        .get(0);
    assert_eq!(raw, b"v2");
    assert_eq!(
        count(
            &mut db,
            &format!("SELECT count FROM {s}.aggregates_by_state WHERE state = 'TX'")
        ),
        3
    );
    let epochs: Vec<i64> = db
        .query(&format!("SELECT epoch FROM {s}.epochs ORDER BY epoch"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(epochs, vec![0, 1, 2]);
}

#[test]
fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
    let Some(url) = server() else { return };
    let (cfg, mut db) = fresh(&url, "migrate");
    let s = cfg.schema.clone();
    let c = Connector::new(&url, &cfg, None).unwrap();
    drop(PgWriter::connect(&c).unwrap());
    drop(PgWriter::connect(&c).unwrap());
    let versions: Vec<i32> = db
        .query(
            &format!("SELECT version FROM {s}.schema_version ORDER BY version"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=schema::current_version()).collect::<Vec<_>>()
    );
    db.execute(
        &format!("INSERT INTO {s}.schema_version (version, description) VALUES (999, 'future')"),
        &[],
    )
    .unwrap();
    let e = PgWriter::connect(&c).unwrap_err();
    assert!(
        matches!(e, PostgresSinkError::SchemaTooNew { found: 999, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("schema version 999"), "{e}");
}

#[test]
fn unreachable_server_is_named_without_the_password() {
    // No server needed: nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://cfuser:s3cr3t-pw@127.0.0.1:{port}/cfdb");
    let cfg = PostgresConfig {
        connect_timeout_ms: 2_000,
        ..PostgresConfig::default()
    };
    let sink = PostgresSink::new(&url, cfg);
    let e = sink.check().unwrap_err();
    assert!(
        e.contains(&format!("postgres://cfuser@127.0.0.1:{port}/cfdb")),
        "{e}"
    );
    assert!(e.contains("postgres-up.sh"), "{e}");
    assert!(!e.contains("s3cr3t"), "{e}");
    assert!(!sink.describe().contains("s3cr3t"));
    let bad = PostgresSink::new("postgres://u:pw@h:notaport/db", PostgresConfig::default());
    let e = bad.check().unwrap_err();
    assert!(!e.contains(":pw@"), "{e}");
    let schema = PostgresSink::new(
        "postgres://u@127.0.0.1/db",
        PostgresConfig {
            schema: "Robert'); DROP TABLE".into(),
            ..PostgresConfig::default()
        },
    );
    assert!(schema.check().unwrap_err().contains("schema"));
}

#[test]
fn models_table_mirrors_the_registry() {
    let Some(url) = server() else { return };
    let (cfg, mut db) = fresh(&url, "models");
    let s = cfg.schema.clone();
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<_> = complaintflow_datasets::read_path(
        complaintflow_datasets::bundled_sample_path(),
        complaintflow_datasets::Format::Auto,
        &Default::default(),
    )
    .unwrap()
    .filter_map(Result::ok)
    .collect();
    let mut tc = complaintflow_models::TrainConfig {
        folds: 2,
        alphas: vec![3.0],
        max_iterations: 60,
        ..Default::default()
    };
    tc.features.max_features = 500;
    let outcome = complaintflow_models::train(&rows, &tc, &mut |_| {}).unwrap();
    let reg = complaintflow_models::Registry::open(dir.path()).unwrap();
    let meta = reg.register(&outcome, Default::default()).unwrap();
    reg.promote(&meta.version).unwrap();
    let c = Connector::new(&url, &cfg, Some(dir.path().to_path_buf())).unwrap();
    let mut w = PgWriter::connect(&c).unwrap();
    let r = w
        .write(&[EpochBatch {
            epoch: 0,
            decisions: vec![decision(1, 0, None, None, false)],
            ..Default::default()
        }])
        .unwrap();
    assert_eq!(r.models, 1);
    let row = db
        .query_one(
            &format!(
                "SELECT version, stage, auc_roc, test_rows, metadata->>'version' FROM {s}.models"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), meta.version);
    assert_eq!(row.get::<_, String>(1), "production");
    assert_eq!(row.get::<_, Option<f64>>(2), meta.test_metrics.auc_roc);
    assert_eq!(row.get::<_, i64>(3), meta.rows.test as i64);
    assert_eq!(row.get::<_, String>(4), meta.version);
    // Known versions, refresh not due: not rewritten.
    let r = w
        .write(&[EpochBatch {
            epoch: 1,
            decisions: vec![decision(2, 1, None, None, false)],
            ..Default::default()
        }])
        .unwrap();
    assert_eq!(r.models, 0);
    let joined = count(
        &mut db,
        &format!("SELECT count(*) FROM {s}.model_live_vs_training"),
    );
    assert_eq!(joined, 1);
}

/// A TCP relay to the server that can be cut (every connection closed, new ones dropped)
/// and restored on the same port: a database outage without touching the shared server.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, cs) = (Arc::clone(&up), Arc::clone(&conns));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !u.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut g = cs.lock().unwrap();
                    g.push(client.try_clone().unwrap());
                    g.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn upstream_of(url: &str) -> (SocketAddr, String) {
    let c: postgres::Config = url.parse().unwrap();
    let host = match c.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .unwrap()
        .next()
        .unwrap();
    let rest = format!(
        "{}@127.0.0.1:{{port}}/{}",
        c.get_user().unwrap(),
        c.get_dbname().or(c.get_user()).unwrap()
    );
    (addr, rest)
}

/// Steps `worker` until `done()` or `limit`; true when `done()` became true.
fn step_until(
    worker: &mut timely::worker::Worker,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        worker.step_or_park(Some(Duration::from_millis(1)));
    }
    true
}

/// The engine's contract on two workers: the ack frontier passes an epoch only when its rows
/// are committed (checked from the worker the moment the probe passes), every epoch is
/// acknowledged, and the data of both workers arrives once.
#[test]
fn operator_acknowledges_an_epoch_only_after_its_commit() {
    let Some(url) = server() else { return };
    let (cfg, _db) = fresh(&url, "operator");
    let s = cfg.schema.clone();
    let sink = Arc::new(PostgresSink::new(&url, cfg.clone()));
    sink.check().unwrap();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (sink2, acked2, url2, cfg2) = (
        Arc::clone(&sink),
        Arc::clone(&acked),
        url.clone(),
        cfg.clone(),
    );
    const EPOCHS: u64 = 4;
    const PER_EPOCH: u64 = 500;
    let guards = timely::execute(timely::Config::process(2), move |worker| {
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let a = Arc::clone(&acked2);
        let (mut din, mut lin, mut ain, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (din, decisions) = scope.new_input::<Vec<SharedDecision>>();
            let (lin, dead_letters) = scope.new_input::<Vec<DeadLetter>>();
            let (ain, aggregate_changes) = scope.new_input::<Vec<AggregateChange>>();
            let outputs = EngineOutputs {
                decisions,
                dead_letters,
                aggregate_changes,
            };
            let mut acks = sink2.build(scope, &outputs).unwrap();
            assert_eq!(acks.len(), 1);
            let (probe, _) = acks
                .remove(0)
                .inspect(move |t| a.lock().unwrap().push(*t))
                .probe();
            (din, lin, ain, probe)
        });
        let mut check = (index == 0).then(|| {
            Connector::new(&url2, &cfg2, None)
                .unwrap()
                .client()
                .unwrap()
        });
        for e in 0..EPOCHS {
            for id in (e * PER_EPOCH..(e + 1) * PER_EPOCH).filter(|i| i % peers == index) {
                din.send(decision(
                    id,
                    e,
                    Some(["Mortgage", "Debt collection"][(id % 2) as usize]),
                    Some("CA"),
                    id % 3 == 0,
                ));
            }
            if index == 1 {
                lin.send(dead(e as i64, "{bad"));
            } else {
                ain.send(change(
                    e,
                    Dimension::Product,
                    "Mortgage",
                    ((e + 1) * PER_EPOCH / 2) as i64,
                    0,
                ));
            }
            din.advance_to(e + 1);
            lin.advance_to(e + 1);
            ain.advance_to(e + 1);
            assert!(
                step_until(worker, Duration::from_secs(60), || !probe.less_equal(&e)),
                "epoch {e} never acknowledged"
            );
            if let Some(db) = check.as_mut() {
                // The probe passed e: everything of epochs <= e must be in the database now.
                let n = count(db, &format!("SELECT count(*) FROM {s}.predictions"));
                assert_eq!(
                    n,
                    ((e + 1) * PER_EPOCH) as i64,
                    "acknowledged epoch {e} before its commit"
                );
                let d = count(db, &format!("SELECT count(*) FROM {s}.dead_letters"));
                assert_eq!(d, e as i64 + 1);
            }
        }
        drop((din, lin, ain));
        assert!(step_until(worker, Duration::from_secs(60), || probe.done()));
    })
    .unwrap();
    for r in guards.join() {
        r.unwrap();
    }
    let mut a = acked.lock().unwrap().clone();
    a.sort_unstable();
    assert_eq!(a, (0..EPOCHS).collect::<Vec<_>>());
    let st = sink.handle().stats();
    assert_eq!(st.predictions, EPOCHS * PER_EPOCH);
    assert_eq!(st.committed_through, Some(EPOCHS - 1));
    assert!(sink.report()[0].contains(&format!("{} predictions", EPOCHS * PER_EPOCH)));
}

/// A database outage mid-stream: the epoch is held (not acknowledged) while the server is
/// unreachable, retried with backoff, and written once the connection is back; nothing is
/// lost or duplicated.
#[test]
fn outage_holds_the_epoch_and_retries_until_the_database_is_back() {
    let Some(url) = server() else { return };
    let (cfg, mut db) = fresh(&url, "outage");
    let s = cfg.schema.clone();
    let (upstream, rest) = upstream_of(&url);
    let relay = Arc::new(Relay::start(upstream));
    let relayed = format!(
        "postgres://{}",
        rest.replace("{port}", &relay.port.to_string())
    );
    let sink = Arc::new(PostgresSink::new(&relayed, cfg.clone()));
    sink.check().unwrap();
    let (sink2, relay2) = (Arc::clone(&sink), Arc::clone(&relay));
    let handle = sink.handle();
    let guards = timely::execute(timely::Config::thread(), move |worker| {
        let (mut din, mut lin, mut ain, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (din, decisions) = scope.new_input::<Vec<SharedDecision>>();
            let (lin, dead_letters) = scope.new_input::<Vec<DeadLetter>>();
            let (ain, aggregate_changes) = scope.new_input::<Vec<AggregateChange>>();
            let outputs = EngineOutputs {
                decisions,
                dead_letters,
                aggregate_changes,
            };
            let (probe, _) = sink2.build(scope, &outputs).unwrap().remove(0).probe();
            (din, lin, ain, probe)
        });
        for id in 0..100 {
            din.send(decision(id, 0, None, None, false));
        }
        din.advance_to(1);
        lin.advance_to(1);
        ain.advance_to(1);
        assert!(step_until(worker, Duration::from_secs(60), || !probe.less_equal(&0)));
        relay2.cut();
        for id in 100..200 {
            din.send(decision(id, 1, None, None, false));
        }
        din.advance_to(2);
        lin.advance_to(2);
        ain.advance_to(2);
        // Down: epoch 1 stays held however long we step.
        assert!(
            !step_until(worker, Duration::from_millis(1500), || !probe
                .less_equal(&1)),
            "acknowledged while the database was unreachable"
        );
        relay2.restore();
        assert!(
            step_until(worker, Duration::from_secs(60), || !probe.less_equal(&1)),
            "not written after the database came back"
        );
        drop((din, lin, ain));
        assert!(step_until(worker, Duration::from_secs(60), || probe.done()));
    })
    .unwrap();
    for r in guards.join() {
        r.unwrap();
    }
    let st = handle.stats();
    assert!(st.retries > 0, "{st:?}");
    assert_eq!(st.last_error, None);
    assert_eq!(
        count(&mut db, &format!("SELECT count(*) FROM {s}.predictions")),
        200
    );
    assert_eq!(
        count(&mut db, &format!("SELECT count(*) FROM {s}.epochs")),
        2
    );
}

/// `--sink postgres://…` (and `postgresql://…`) resolve to this sink through the plug-in
/// table, with `[postgres]` from the environment of the table; a bad URL fails there, before
/// anything starts, without the password. Needs no server.
#[test]
fn the_plugin_table_builds_the_sink_from_a_postgres_url() {
    use crate::plugins::{PluginEnv, PluginTable};
    let table = PluginTable::builtin();
    let env = PluginEnv {
        postgres: PostgresConfig {
            schema: "cf_plugin".into(),
            ..PostgresConfig::default()
        },
        ..PluginEnv::default()
    };
    for url in [
        "postgres://cf:pw-in-url@127.0.0.1:1/cfdb",
        "postgresql://cf:pw-in-url@127.0.0.1:1/cfdb",
    ] {
        let sink = table.sink(url, &env).unwrap();
        let d = sink.describe();
        assert_eq!(d, "postgres://cf@127.0.0.1:1/cfdb (schema cf_plugin)");
    }
    let e = table
        .sink("postgres://cf:pw-in-url@127.0.0.1:notaport/cfdb", &env)
        .unwrap_err();
    assert!(
        e.starts_with("--sink postgres://cf@127.0.0.1:notaport/cfdb"),
        "{e}"
    );
    assert!(!e.contains("pw-in-url"), "{e}");
    let e = table
        .sink("postgres://127.0.0.1/cfdb?password=pw-in-query", &env)
        .unwrap_err();
    assert!(e.contains("no user"), "{e}");
    assert!(!e.contains("pw-in-query"), "{e}");
}
