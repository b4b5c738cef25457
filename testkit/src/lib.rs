//! Test and bench helpers shared by every crate of the workspace (dev-dependency only).
//!
//! [`Broker`] is a real Kafka-protocol broker (tansu) per test or bench, on a free loopback
//! port with its own state directory, started and stopped by the project's
//! `scripts/kafka-up.sh` / `kafka-down.sh` (the same scripts a user runs). It is the one
//! copy of the harness the operator tests, the end-to-end tests and the Kafka bench use.
//!
//! [`fast_train_config`], [`bench_train_config`], [`real_records`] and [`train_model`] are the one copy of "a small model
//! trained on real complaints" that the engine tests and benches score with (the model is not
//! what they measure; a 2-fold, single-alpha fit on the bundled sample takes about a second).
//!
//! Contract: when the tansu binary is missing, [`Broker::start`] returns `None` and prints a
//! loud SKIPPED banner — unless `COMPLAINTFLOW_REQUIRE_KAFKA` is set (CI sets it), in which
//! case it panics, so a missing install step fails the run instead of hiding it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::path::{Path, PathBuf};
use std::process::Command;

use complaintflow_datasets::{read_path, Complaint, Format, ValidationOptions};
use complaintflow_models::{train, FamilyChoice, Model, TrainConfig};

/// The training configuration of bench models: 2 folds, one alpha, 60 iterations, the
/// default features (so featurizing costs what it costs in production) and logistic
/// regression, so that engine figures compare across model work; `CF_BENCH_FAMILY`
/// (`lr`, `gbdt`, `blend`, `auto`) picks another family.
pub fn bench_train_config() -> TrainConfig {
    let family = std::env::var("CF_BENCH_FAMILY")
        .ok()
        .and_then(|f| serde_json::from_value(serde_json::Value::String(f)).ok())
        .unwrap_or(FamilyChoice::Lr);
    TrainConfig {
        folds: 2,
        alphas: vec![3.0],
        max_iterations: 60,
        family,
        ..TrainConfig::default()
    }
}

/// The training configuration of test models: [`bench_train_config`] with at most 500 text
/// features.
pub fn fast_train_config() -> TrainConfig {
    let mut cfg = bench_train_config();
    cfg.features.max_features = 500;
    cfg
}

/// The valid complaints of a file (any format), in file order.
pub fn real_records(path: &Path) -> Vec<Complaint> {
    read_path(path, Format::Auto, &ValidationOptions::default())
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .filter_map(Result::ok)
        .collect()
}

/// The held-out quarter of the bundled sample (the 25 % hash split that `train` and
/// [`fast_model`] hold out), written to `dir/held-out.jsonl` as JSON Lines in the sample's own
/// field names; returns the file and its complaints, in file order.
pub fn write_held_out(dir: &Path) -> (PathBuf, Vec<Complaint>) {
    use std::io::Write;
    let sample = complaintflow_datasets::bundled_sample_path();
    let text = std::fs::read_to_string(&sample).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let complaints = real_records(&sample);
    assert_eq!(
        records.len(),
        complaints.len(),
        "every sample record is valid"
    );
    let path = dir.join("held-out.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut kept = Vec::new();
    for (r, c) in records.iter().zip(complaints) {
        if !complaintflow_datasets::split::is_train(c.complaint_id, 0.75) {
            writeln!(f, "{}", serde_json::to_string(r).unwrap()).unwrap();
            kept.push(c);
        }
    }
    f.flush().unwrap();
    (path, kept)
}

/// A model trained with `cfg` on `records`, named `version`.
pub fn train_model(records: &[Complaint], cfg: &TrainConfig, version: &str) -> Model {
    let mut m = train(records, cfg, &mut |_| {})
        .unwrap_or_else(|e| panic!("training the test model: {e}"))
        .model;
    m.version = version.into();
    m
}

/// A model trained with [`fast_train_config`] on `records`, named `version`.
pub fn fast_model(records: &[Complaint], version: &str) -> Model {
    train_model(records, &fast_train_config(), version)
}

/// The workspace root (where `scripts/` lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The project's `scripts/` folder.
pub fn scripts() -> PathBuf {
    root().join("scripts")
}

/// Where `scripts/install-tansu.sh` puts the broker: `$COMPLAINTFLOW_TOOLS/bin/tansu`
/// (default `~/.cache/complaintflow/tools`).
pub fn tansu_bin() -> PathBuf {
    let tools = std::env::var_os("COMPLAINTFLOW_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/complaintflow/tools")
        });
    tools.join("bin/tansu")
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests run one at a time).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A tansu broker of one test, on a free port with its own state directory; stopped on drop.
pub struct Broker {
    /// The broker's state directory (its data, `tansu.pid`, its log).
    pub state: tempfile::TempDir,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// `127.0.0.1:PORT`, as `kafka-up.sh` printed it.
    pub addr: String,
}

impl Broker {
    /// Starts one, or `None` (the test is skipped, loudly) when tansu is not installed and
    /// `COMPLAINTFLOW_REQUIRE_KAFKA` is not set.
    pub fn start() -> Option<Broker> {
        if !tansu_bin().exists() {
            assert!(
                std::env::var_os("COMPLAINTFLOW_REQUIRE_KAFKA").is_none(),
                "COMPLAINTFLOW_REQUIRE_KAFKA is set but tansu is not installed at {}: run scripts/install-tansu.sh",
                tansu_bin().display()
            );
            eprintln!(
                "\n*** SKIPPED: the tansu broker is not installed ({}).\n*** Run scripts/install-tansu.sh, or set COMPLAINTFLOW_REQUIRE_KAFKA=1 to make this a failure.\n",
                tansu_bin().display()
            );
            return None;
        }
        let mut b = Broker {
            state: tempfile::tempdir().expect("a temporary directory"),
            port: free_port(),
            addr: String::new(),
        };
        b.up();
        Some(b)
    }

    /// Like [`Broker::start`], but a missing broker is a panic (benches have no skip).
    pub fn start_required() -> Broker {
        Broker::start().unwrap_or_else(|| {
            panic!(
                "tansu is not installed at {}: run scripts/install-tansu.sh",
                tansu_bin().display()
            )
        })
    }

    /// `scripts/kafka-up.sh` with this broker's state directory and port (also restarts a
    /// broker stopped by [`Broker::down`], keeping its data).
    pub fn up(&mut self) {
        let out = Command::new("bash")
            .arg(scripts().join("kafka-up.sh"))
            .arg("--state-dir")
            .arg(self.state.path())
            .args(["--port", &self.port.to_string()])
            .output()
            .expect("bash runs scripts/kafka-up.sh");
        assert!(
            out.status.success(),
            "kafka-up.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        self.addr = stdout.lines().last().unwrap_or_default().trim().to_string();
        assert_eq!(self.addr, format!("127.0.0.1:{}", self.port));
    }

    /// `scripts/kafka-down.sh` (the state directory is kept).
    pub fn down(&self) {
        let out = Command::new("bash")
            .arg(scripts().join("kafka-down.sh"))
            .arg("--state-dir")
            .arg(self.state.path())
            .output()
            .expect("bash runs scripts/kafka-down.sh");
        assert!(
            out.status.success(),
            "kafka-down.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The broker's process id (from `tansu.pid`), e.g. to sample its CPU time.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.state.path().join("tansu.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu_bin())
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://{}", self.addr))
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .expect("the tansu binary runs");
        assert!(
            out.status.success(),
            "topic create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(scripts().join("kafka-down.sh"))
            .arg("--state-dir")
            .arg(self.state.path())
            .output();
    }
}

/// The PostgreSQL server of the tests: `COMPLAINTFLOW_POSTGRES_URL` (from
/// `scripts/postgres-up.sh`; `.ci/run` sets it and `PGPASSWORD`), or `None` — the test is
/// skipped, loudly — unless `COMPLAINTFLOW_REQUIRE_POSTGRES=1`, when a missing server fails.
pub fn postgres_url() -> Option<String> {
    match std::env::var("COMPLAINTFLOW_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("COMPLAINTFLOW_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "COMPLAINTFLOW_REQUIRE_POSTGRES=1 but COMPLAINTFLOW_POSTGRES_URL is not set: \
                 start a server with scripts/postgres-up.sh and export its URL (and PGPASSWORD)"
            );
            eprintln!("skipped: COMPLAINTFLOW_POSTGRES_URL is not set (scripts/postgres-up.sh)");
            None
        }
    }
}

/// How a child process ended under [`wait_within`].
#[derive(Debug)]
pub struct Ended {
    /// Its exit status (after the kill, when it ran past the deadline).
    pub status: std::process::ExitStatus,
    /// Everything it wrote to stdout (when stdout was piped).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (when stderr was piped).
    pub stderr: String,
    /// True when it was still running at the deadline and was killed.
    pub timed_out: bool,
}

/// Waits for `child` at most `limit`, reading its piped stdout and stderr meanwhile; a child
/// still running at the deadline is killed (SIGKILL), so a hung engine fails its test with its
/// log instead of hanging the whole test run.
pub fn wait_within(mut child: std::process::Child, limit: std::time::Duration) -> Ended {
    fn drain<R: std::io::Read + Send + 'static>(
        r: Option<R>,
    ) -> Option<std::thread::JoinHandle<Vec<u8>>> {
        r.map(|mut r| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                buf
            })
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let t0 = std::time::Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if t0.elapsed() >= limit => {
                timed_out = true;
                let _ = child.kill();
                match child.wait() {
                    Ok(s) => break s,
                    Err(e) => panic!("cannot reap a killed child: {e}"),
                }
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => panic!("cannot wait for a child: {e}"),
        }
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Ended {
        status,
        stdout: join(out),
        stderr: String::from_utf8_lossy(&join(err)).into_owned(),
        timed_out,
    }
}

/// Runs `cmd` (stdout and stderr captured) for at most `limit`; panics, with its stderr, when
/// it fails or runs past the deadline. Returns its stdout.
pub fn run_within(mut cmd: Command, limit: std::time::Duration) -> Vec<u8> {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let end = wait_within(child, limit);
    assert!(
        !end.timed_out && end.status.success(),
        "{cmd:?} {}:\n{}",
        if end.timed_out {
            format!("still running after {limit:?} (killed)")
        } else {
            format!("failed ({})", end.status)
        },
        end.stderr
    );
    end.stdout
}
