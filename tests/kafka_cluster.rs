//! A cluster losing a process, through a real broker (tansu): two processes of one worker
//! each, each with its own state directory (as on two machines), read resampled complaints
//! from Kafka; process 1 is killed with SIGKILL once a tenth of them is checkpointed.
//!
//! - process 0 stops by itself within seconds, with an error naming the lost peer (no hang);
//! - both state directories hold the same checkpoints (worker 0 broadcasts them);
//! - the restarted cluster resumes from the newest checkpoint both have and drains the topic:
//!   every complaint is in the predictions topic (distinct by id) and the product aggregates
//!   total exactly the number of complaints (nothing counted twice).
//!
//! And the dedup seen-set across a restart (one process): ids decided before a `kill -9`
//! that arrive again after the restart are dead-lettered as duplicates, not decided twice.
//!
//! `CF_CLUSTER_RECORDS` scales the first test (default 20,000; the run is 200,000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kafka_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use kafka_support::*;

/// One process of a two-process cluster, reading the input topic.
fn cluster_process(
    dir: &Path,
    process: usize,
    hosts: &Path,
    broker: &str,
    extra: &[&str],
) -> Child {
    let state = format!("state{process}");
    let mut c = bin(dir, &state);
    c.args([
        "run",
        "--brokers",
        broker,
        "--source",
        "kafka:complaints-input",
    ])
    .args(["--http-addr", "off", "--workers", "1", "--processes", "2"])
    .args(["--process", &process.to_string()])
    .arg("--hostfile")
    .arg(hosts)
    .args(["--max-records-per-epoch", "2000", "--until-idle", "3s"])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

fn checkpoint_epochs(state: &Path) -> BTreeSet<u64> {
    std::fs::read_dir(state.join("checkpoints"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("checkpoint-")?
                        .strip_suffix(".json")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Exit status and stderr of a process (killed, and the test failed, after
/// [`kafka_support::LIMIT`]).
fn stderr_of(c: Child) -> (std::process::ExitStatus, String) {
    let end = complaintflow_testkit::wait_within(c, kafka_support::LIMIT);
    assert!(!end.timed_out, "still running (killed):\n{}", end.stderr);
    (end.status, end.stderr)
}

#[test]
fn losing_a_process_stops_the_cluster_and_a_restart_counts_each_complaint_once() {
    let _serial = serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    let n: usize = std::env::var("CF_CLUSTER_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let work = workdir();
    let dir = work.path();
    let b = broker.addr.as_str();
    produce_resampled(dir, b, n, 5, &["--rate", "50000/min"]);
    copy_registry(dir, "state", "state0");
    copy_registry(dir, "state", "state1");
    let hosts = dir.join("hosts.txt");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();

    // Paced, so that the kill lands mid-stream on a fast machine too.
    let pace = ["--kafka-opt", "max.partition.fetch.bytes=65536"];
    let mut p0 = cluster_process(dir, 0, &hosts, b, &pace);
    let mut p1 = cluster_process(dir, 1, &hosts, b, &pace);
    let at_kill = wait_for_checkpoint(&mut [&mut p0, &mut p1], &dir.join("state0"), n / 10);
    p1.kill().unwrap(); // SIGKILL
    let _ = p1.wait();
    eprintln!(
        "killed process 1 after the checkpoint of epoch {} ({} read)",
        at_kill.0, at_kill.1
    );

    // Process 0 notices and stops by itself, naming the lost peer.
    let killed_at = Instant::now();
    loop {
        if p0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "process 0 still runs 30 s after losing process 1 (a hang)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, err) = stderr_of(p0);
    eprintln!(
        "process 0 stopped {:?} after the kill: {status}",
        killed_at.elapsed()
    );
    assert!(
        !status.success(),
        "losing a peer is a failure: {status}\n{err}"
    );
    assert!(err.contains("lost its connection to process 1"), "{err}");

    // Both processes keep the checkpoints, each in its own state directory.
    let (e0, e1) = (
        checkpoint_epochs(&dir.join("state0")),
        checkpoint_epochs(&dir.join("state1")),
    );
    assert!(
        e0.intersection(&e1).next().is_some(),
        "no common checkpoint: {e0:?} vs {e1:?}"
    );

    // The restarted cluster drains the topic.
    let out = dir.join("agg.json");
    let p0 = cluster_process(
        dir,
        0,
        &hosts,
        b,
        &["--aggregates-out", out.to_str().unwrap()],
    );
    let p1 = cluster_process(dir, 1, &hosts, b, &[]);
    let log0 = wait_ok(p0, "restarted process 0");
    wait_ok(p1, "restarted process 1");
    assert!(
        log0.contains("resuming from the checkpoint of epoch"),
        "{log0}"
    );

    let input = consume(dir, b, "complaints-input");
    let ids: BTreeSet<String> = input.iter().map(|m| m.key.clone().unwrap()).collect();
    assert_eq!(ids.len(), n, "resampled ids are distinct");
    let preds = consume(dir, b, "complaints-predictions");
    let (by_id, repeats) = by_key(&preds);
    eprintln!(
        "{} prediction messages for {} ids ({repeats} replayed)",
        preds.len(),
        by_id.len()
    );
    assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), ids);
    let agg = read_aggregates(&out);
    let products: i64 = agg["product"].values().map(|r| r.0).sum();
    assert_eq!(products as usize, n, "each complaint counted exactly once");
}

#[test]
fn ids_seen_before_a_kill_are_duplicates_after_the_restart() {
    let _serial = serial();
    let Some(broker) = Broker::start() else {
        return;
    };
    let work = workdir();
    let dir = work.path();
    let b = broker.addr.as_str();
    const N: usize = 20_000;
    produce_resampled(dir, b, N, 7, &[]);
    let mut e = engine(dir, "state", b, &["--until-idle", "3s"]);
    wait_for_checkpoint(&mut [&mut e], &dir.join("state"), N / 2);
    e.kill().unwrap();
    let _ = e.wait();
    let (_, covered) = latest_checkpoint(&dir.join("state")).unwrap();
    // The same ids again (same seed): every one of them was admitted before the restart
    // or will be read again after it; either way each must be decided once.
    produce_resampled(dir, b, N, 7, &[]);
    let agg = drain_with_aggregates(dir, "state", b, "the restarted engine");
    let products: i64 = agg["product"].values().map(|r| r.0).sum();
    assert_eq!(
        products as usize, N,
        "each id counted once (checkpoint covered {covered})"
    );
    let dlq = consume(dir, b, "complaints-dlq");
    let dups = dlq
        .iter()
        .filter(|m| m.value["kind"] == "duplicate_id")
        .count();
    assert!(
        dups >= N,
        "{dups} duplicate_id dead letters for {N} repeated ids"
    );
}
