//! A two-process cluster across (simulated) machines: each process in its own Linux network
//! namespace, the broker in a third, joined by veth pairs to a bridge
//! (`scripts/cluster-netns.sh`, subnet 10.77.0.0/24; nothing leaves those namespaces). The
//! link of process 1 is cut mid-stream (packets dropped, no reset, as a pulled cable): both
//! processes stop with an error naming the lost peer, the link is healed, the cluster is
//! restarted and drains: every complaint in the predictions topic (distinct by id), the
//! product aggregates total exactly the number of complaints.
//!
//! Needs root (network namespaces) and iproute2. Skipped, loudly, without them unless
//! `COMPLAINTFLOW_REQUIRE_NETNS` is set (CI sets it, and runs as root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kafka_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_support::{by_key, ok, read_aggregates, serial, workdir, Msg};

const N: usize = 20_000;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-netns.sh")
}

fn netns_usable() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let ip = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success());
    root && ip && complaintflow_testkit::tansu_bin().exists()
}

/// The namespaces of one test; removed on drop.
struct Net {
    prefix: String,
}

impl Net {
    fn up() -> Net {
        let prefix = format!("cf{}", std::process::id() % 100_000);
        let out = Command::new("bash")
            .arg(script())
            .args(["up", "--prefix", &prefix, "--processes", "2"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster-netns up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Net { prefix }
    }

    fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.prefix)
    }

    fn link(&self, verb: &str, member: &str) {
        let out = Command::new("bash")
            .arg(script())
            .args([verb, member, "--prefix", &self.prefix])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{verb} {member}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `complaintflow` inside `member`'s namespace, in `dir`, with `state_dir`.
    fn bin(&self, member: &str, dir: &Path, state_dir: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(member)])
            .arg(env!("CARGO_BIN_EXE_complaintflow"))
            .current_dir(dir)
            .env_remove("COMPLAINTFLOW_CONFIG")
            .env_remove("COMPLAINTFLOW_BROKERS")
            .env(
                "RUST_LOG",
                "warn,complaintflow=info,complaintflow_pipelines=info",
            )
            .args(["--config", "fast.toml", "--state-dir", state_dir]);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", "--prefix", &self.prefix, "--processes", "2"])
            .output();
    }
}

/// The broker, inside the broker namespace on 10.77.0.1:9092; stopped on drop.
struct NsBroker {
    state: tempfile::TempDir,
}

impl NsBroker {
    fn start(net: &Net) -> NsBroker {
        let state = tempfile::tempdir().unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &net.ns("broker"), "bash"])
            .arg(complaintflow_testkit::scripts().join("kafka-up.sh"))
            .arg("--state-dir")
            .arg(state.path())
            .args(["--port", "9092", "--host", "10.77.0.1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kafka-up in the namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        NsBroker { state }
    }
}

impl Drop for NsBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(complaintflow_testkit::scripts().join("kafka-down.sh"))
            .arg("--state-dir")
            .arg(self.state.path())
            .output();
    }
}

const BROKER: &str = "10.77.0.1:9092";

fn process(net: &Net, dir: &Path, i: usize, hosts: &Path, extra: &[&str]) -> Child {
    let mut c = net.bin(&format!("p{i}"), dir, &format!("state{i}"));
    c.args([
        "run",
        "--brokers",
        BROKER,
        "--source",
        "kafka:complaints-input",
    ])
    .args(["--http-addr", "off", "--workers", "1", "--processes", "2"])
    .args(["--process", &i.to_string()])
    .arg("--hostfile")
    .arg(hosts)
    .args(["--max-records-per-epoch", "2000", "--until-idle", "3s"])
    .args(["--kafka-opt", "max.partition.fetch.bytes=65536"])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// Waits for both cluster processes at once (at most 3 minutes: a hung process is killed and
/// fails the test with its log). Returns (status, stderr) of each.
fn finish(p0: Child, p1: Child, when: &str) -> [(std::process::ExitStatus, String); 2] {
    let limit = Duration::from_secs(180);
    let h1 = std::thread::spawn(move || complaintflow_testkit::wait_within(p1, limit));
    let e0 = complaintflow_testkit::wait_within(p0, limit);
    let e1 = h1.join().unwrap();
    assert!(
        !e0.timed_out && !e1.timed_out,
        "{when}: process 0 {}, process 1 {} after {limit:?}\n--- process 0:\n{}\n--- process 1:\n{}",
        if e0.timed_out { "still running (killed)" } else { "ended" },
        if e1.timed_out { "still running (killed)" } else { "ended" },
        e0.stderr,
        e1.stderr
    );
    [(e0.status, e0.stderr), (e1.status, e1.stderr)]
}

fn consume(net: &Net, dir: &Path, topic: &str) -> Vec<Msg> {
    let mut c = net.bin("broker", dir, "state");
    c.args([
        "consume",
        "--brokers",
        BROKER,
        "--topic",
        topic,
        "--from-beginning",
        "--until-idle",
        "3s",
    ]);
    String::from_utf8_lossy(&ok(c))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Msg {
                partition: v["partition"].as_i64().unwrap_or(0),
                offset: v["offset"].as_i64().unwrap_or(0),
                key: v["key"].as_str().map(str::to_string),
                timestamp: v["timestamp"].as_i64(),
                value: v["value"].clone(),
            }
        })
        .collect()
}

#[test]
fn a_cut_link_stops_the_cluster_and_a_restart_counts_each_complaint_once() {
    let _serial = serial();
    if !netns_usable() {
        assert!(
            std::env::var_os("COMPLAINTFLOW_REQUIRE_NETNS").is_none(),
            "COMPLAINTFLOW_REQUIRE_NETNS is set but network namespaces (root, iproute2) or tansu are missing"
        );
        eprintln!("\n*** SKIPPED: needs root, iproute2 and tansu (set COMPLAINTFLOW_REQUIRE_NETNS=1 to make this a failure).\n");
        return;
    }
    let net = Net::up();
    let _broker = NsBroker::start(&net);
    let work = workdir();
    let dir = work.path();
    let mut c = net.bin("broker", dir, "state");
    c.args([
        "produce",
        "--brokers",
        BROKER,
        "--no-progress",
        "--resample",
        &N.to_string(),
        "--seed",
        "9",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&ok(c)).unwrap();
    assert_eq!(summary["acked"].as_u64(), Some(N as u64));
    kafka_support::copy_registry(dir, "state", "state0");
    kafka_support::copy_registry(dir, "state", "state1");
    let hosts = dir.join("hosts.txt");
    std::fs::write(&hosts, "10.77.0.10:2101\n10.77.0.11:2101\n").unwrap();

    let mut p0 = process(&net, dir, 0, &hosts, &[]);
    let mut p1 = process(&net, dir, 1, &hosts, &[]);
    kafka_support::wait_for_checkpoint(&mut [&mut p0, &mut p1], &dir.join("state0"), N / 10);
    net.link("cut", "p1");
    let cut_at = Instant::now();
    let [(s0, e0), (s1, e1)] = finish(p0, p1, "after the cut");
    eprintln!(
        "both processes stopped {:?} after the cut ({s0}, {s1})",
        cut_at.elapsed()
    );
    assert!(
        cut_at.elapsed() < Duration::from_secs(90),
        "the processes took too long to notice"
    );
    assert!(
        !s0.success() && e0.contains("lost its connection to process 1"),
        "{s0}\n{e0}"
    );
    assert!(!s1.success(), "{s1}\n{e1}");
    net.link("heal", "p1");

    let out = dir.join("agg.json");
    let p0 = process(
        &net,
        dir,
        0,
        &hosts,
        &["--aggregates-out", out.to_str().unwrap()],
    );
    let p1 = process(&net, dir, 1, &hosts, &[]);
    let [(s0, e0), (s1, e1)] = finish(p0, p1, "after the restart");
    assert!(s0.success(), "restarted process 0: {e0}");
    assert!(s1.success(), "restarted process 1: {e1}");

    let ids: BTreeSet<String> = consume(&net, dir, "complaints-input")
        .iter()
        .map(|m| m.key.clone().unwrap())
        .collect();
    assert_eq!(ids.len(), N);
    let preds = consume(&net, dir, "complaints-predictions");
    let (by_id, _) = by_key(&preds);
    assert_eq!(by_id.keys().cloned().collect::<BTreeSet<_>>(), ids);
    let agg = read_aggregates(&out);
    let products: i64 = agg["product"].values().map(|r| r.0).sum();
    assert_eq!(products as usize, N);
}
