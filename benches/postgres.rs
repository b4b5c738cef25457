//! The PostgreSQL sink's throughput into a local server (PostgreSQL 15 on the same 2 cores).
//! Not a criterion bench: each phase runs once and prints per-transaction figures (median,
//! p10, p90) and where the time goes; the machine is shared and noisy, so run it a few times.
//!
//! `cargo bench --bench postgres`
//!
//! Server: `COMPLAINTFLOW_POSTGRES_URL` (password in `PGPASSWORD`) when set, else a private
//! one started by `scripts/postgres-up.sh` in a temp directory on a free port, stopped at the
//! end. Tables: a fresh schema `cfbench_<pid>`, dropped at the end.
//!
//! Data: the bundled sample's complaints (real field lengths: product, issue, company,
//! state, reasons) decided by the default rules, resampled with fresh ids, `CF_PG_ROWS`
//! decisions in all (default 1,000,000), `CF_PG_EPOCH` per epoch (default 20,000).
//!
//! Phases:
//! 1. **insert**: new ids, one epoch per transaction, straight through [`PgWriter`] (COPY
//!    binary into the staging table + `INSERT … ON CONFLICT` + epochs row + COMMIT).
//! 2. **replay**: the same ids again (every row conflicts: the update path of a restart).
//! 3. **sink**: the timely operator on 2 workers (exchange to worker 0, epochs handed to the
//!    writer thread, merged while a transaction runs, acknowledged on commit), new ids:
//!    end-to-end rows/s from the first record to the last acknowledgement.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use complaintflow_operators::publish::{Published, SharedDecision};
use complaintflow_operators::record::DeadLetter;
use complaintflow_operators::{CompiledRules, DecisionRules};
use complaintflow_pipelines::aggregate::AggregateChange;
use complaintflow_pipelines::sinks::postgres::{
    Connector, EpochBatch, PgWriter, PostgresConfig, PostgresSink,
};
use complaintflow_pipelines::{EngineOutputs, Sink};
use timely::dataflow::operators::{Input, Probe};

/// The allocator of the `complaintflow` binary, so the bench measures what `run` delivers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A server for the bench: the given one, or a private one (stopped on drop).
struct Server {
    url: String,
    state: Option<PathBuf>,
}

impl Server {
    fn get() -> Server {
        if let Ok(url) = std::env::var("COMPLAINTFLOW_POSTGRES_URL") {
            if !url.is_empty() {
                return Server { url, state: None };
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let state = std::env::temp_dir().join(format!("cf-pg-bench-{}", std::process::id()));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-up.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--state-dir")
            .arg(&state)
            .arg("--port")
            .arg(port.to_string())
            .output()
            .expect("runs scripts/postgres-up.sh");
        assert!(
            out.status.success(),
            "postgres-up.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let url = stdout.lines().last().unwrap_or_default().to_string();
        let pw = std::fs::read_to_string(state.join("password")).expect("password file");
        // The bench is single-threaded here: setting the variable cannot race.
        std::env::set_var("PGPASSWORD", pw.trim());
        Server {
            url,
            state: Some(state),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-down.sh");
            let _ = Command::new("bash")
                .arg(script)
                .arg("--state-dir")
                .arg(state)
                .status();
            let _ = std::fs::remove_dir_all(state);
        }
    }
}

/// `n` decisions on the sample's complaints with fresh ids from `first_id`.
fn decisions(n: usize, first_id: u64, epoch_len: usize) -> Vec<SharedDecision> {
    let sample: Vec<_> = complaintflow_datasets::read_path(
        complaintflow_datasets::bundled_sample_path(),
        complaintflow_datasets::Format::Auto,
        &Default::default(),
    )
    .expect("bundled sample")
    .filter_map(Result::ok)
    .collect();
    let rules = CompiledRules::new(&DecisionRules::default());
    (0..n)
        .map(|i| {
            let mut c = sample[i % sample.len()].clone();
            c.complaint_id = complaintflow_datasets::ComplaintId(first_id + i as u64);
            let score = ((i * 7919) % 1000) as f64 / 4000.0;
            let mut d = rules.decide(&c, score, score > 0.1, "v0001");
            d.epoch = (i / epoch_len.max(1)) as u64;
            Arc::new(Published::new(d))
        })
        .collect()
}

fn batches(ds: &[SharedDecision], epoch_len: usize) -> Vec<EpochBatch> {
    ds.chunks(epoch_len.max(1))
        .enumerate()
        .map(|(e, chunk)| {
            let e = e as u64;
            let mut products: std::collections::BTreeMap<String, (i64, i64, i64)> =
                Default::default();
            for d in chunk {
                let p = products
                    .entry(
                        d.decision
                            .product
                            .clone()
                            .unwrap_or_else(|| "(missing)".into()),
                    )
                    .or_default();
                p.0 += 1;
                p.1 += i64::from(d.decision.escalate);
                p.2 += (d.decision.score * 1e6) as i64;
            }
            EpochBatch {
                epoch: e,
                decisions: chunk.to_vec(),
                dead_letters: Vec::new(),
                aggregate_changes: products
                    .into_iter()
                    .map(
                        |(key, (count, escalations, score_sum_micro))| AggregateChange {
                            epoch: e,
                            dimension: complaintflow_pipelines::Dimension::Product,
                            key,
                            count,
                            escalations,
                            score_sum_micro,
                        },
                    )
                    .collect(),
            }
        })
        .collect()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn phase(name: &str, w: &mut PgWriter, bs: &[EpochBatch]) {
    let mut rates = Vec::new();
    let (mut latencies, mut commits) = (Vec::new(), Vec::new());
    let (mut copy, mut upsert, mut commit) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut rows = 0usize;
    for b in bs {
        let t = Instant::now();
        let r = w.write(std::slice::from_ref(b)).expect("write");
        let secs = t.elapsed().as_secs_f64();
        rates.push(b.decisions.len() as f64 / secs);
        latencies.push(secs * 1000.0);
        commits.push(r.commit_micros as f64 / 1000.0);
        copy += r.copy_micros;
        upsert += r.upsert_micros;
        commit += r.commit_micros;
        rows += b.decisions.len();
    }
    let total = start.elapsed().as_secs_f64();
    rates.sort_by(f64::total_cmp);
    latencies.sort_by(f64::total_cmp);
    commits.sort_by(f64::total_cmp);
    let all = (copy + upsert + commit).max(1) as f64;
    println!(
        "{name:>7}: {rows} predictions in {} transactions, {total:.2} s: overall {:.0} rows/s; per transaction median {:.0} rows/s (p10 {:.0}, p90 {:.0}); transaction latency median {:.1} ms (p90 {:.1}), of which COMMIT median {:.1} ms; time: COPY {:.0} %, upsert {:.0} %, COMMIT {:.0} %",
        bs.len(),
        rows as f64 / total,
        pct(&rates, 0.5),
        pct(&rates, 0.1),
        pct(&rates, 0.9),
        pct(&latencies, 0.5),
        pct(&latencies, 0.9),
        pct(&commits, 0.5),
        100.0 * copy as f64 / all,
        100.0 * upsert as f64 / all,
        100.0 * commit as f64 / all,
    );
}

fn sink_phase(url: &str, cfg: &PostgresConfig, ds: Vec<SharedDecision>, epoch_len: usize) {
    let sink = Arc::new(PostgresSink::new(url, cfg.clone()));
    sink.check().expect("sink check");
    let n = ds.len();
    let ds = Arc::new(ds);
    let s2 = Arc::clone(&sink);
    let start = Instant::now();
    let guards = timely::execute(timely::Config::process(2), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut din, mut lin, mut ain, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (din, decisions) = scope.new_input::<Vec<SharedDecision>>();
            let (lin, dead_letters) = scope.new_input::<Vec<DeadLetter>>();
            let (ain, aggregate_changes) = scope.new_input::<Vec<AggregateChange>>();
            let outputs = EngineOutputs {
                decisions,
                dead_letters,
                aggregate_changes,
            };
            let (probe, _) = s2.build(scope, &outputs).expect("build").remove(0).probe();
            (din, lin, ain, probe)
        });
        for (e, chunk) in ds.chunks(epoch_len.max(1)).enumerate() {
            for d in chunk.iter().skip(index).step_by(peers) {
                din.send(Arc::clone(d));
            }
            let next = e as u64 + 1;
            din.advance_to(next);
            lin.advance_to(next);
            ain.advance_to(next);
            // Like the engine: do not run more than a few epochs ahead of the acks.
            while probe.less_than(&next.saturating_sub(4)) {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            worker.step();
        }
        drop((din, lin, ain));
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    })
    .expect("timely");
    for r in guards.join() {
        r.expect("worker");
    }
    let secs = start.elapsed().as_secs_f64();
    let st = sink.handle().stats();
    println!(
        "   sink: {n} predictions through the operator (2 workers) in {secs:.2} s: {:.0} rows/s end to end; {} transactions for {} epochs (merged while a commit ran), {:.1} ms per transaction",
        n as f64 / secs,
        st.transactions,
        st.epochs,
        st.commit_micros_total as f64 / 1000.0 / st.transactions.max(1) as f64
    );
}

fn main() {
    let rows: usize = env_or("CF_PG_ROWS", 1_000_000);
    let epoch_len: usize = env_or("CF_PG_EPOCH", 20_000);
    let server = Server::get();
    let schema = format!("cfbench_{}", std::process::id());
    let cfg = PostgresConfig {
        schema: schema.clone(),
        ..PostgresConfig::default()
    };
    let connector = Connector::new(&server.url, &cfg, None).expect("URL");
    println!(
        "PostgreSQL sink bench: {} (schema {schema}), {rows} decisions, {epoch_len} per epoch",
        connector.target()
    );
    let ds = decisions(rows, 900_000_000_000, epoch_len);
    let bs = batches(&ds, epoch_len);
    let mut w = PgWriter::connect(&connector).expect("connect");
    phase("insert", &mut w, &bs);
    phase("replay", &mut w, &bs);
    drop(bs);
    drop(ds);
    let ds = decisions(rows, 950_000_000_000, epoch_len);
    sink_phase(&server.url, &cfg, ds, epoch_len);
    let _ = w
        .client()
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}
