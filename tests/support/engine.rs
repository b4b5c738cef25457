//! Helpers for tests that run the real `complaintflow` binary: a temp state directory with a
//! fast training configuration, plain HTTP/1.1 requests, polling.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use complaintflow_datasets::bundled_sample_path;

/// Training settings that keep a test's training to seconds (no text features, 2 folds, one
/// penalty), plus whatever the test appends.
pub const FAST: &str = "[train]\nfolds = 2\nalphas = [1.0]\n[train.features]\ntext = false\n";

/// A temp directory with `fast.toml` = [`FAST`] + `extra`.
pub fn workdir(extra: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("fast.toml"), format!("{FAST}{extra}")).expect("fast.toml");
    tmp
}

/// The binary, in `dir`, with `--config fast.toml --state-dir state`.
pub fn bin(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_complaintflow"));
    c.current_dir(dir)
        .env_remove("COMPLAINTFLOW_CONFIG")
        .env("RUST_LOG", "warn");
    c.args(["--config", "fast.toml", "--state-dir", "state"]);
    c
}

/// Trains a model on the bundled sample and promotes it.
pub fn train_and_promote(dir: &Path) {
    let o = bin(dir)
        .args([
            "train",
            "--data",
            bundled_sample_path().to_str().expect("utf-8 path"),
            "--promote",
        ])
        .output()
        .expect("run train");
    assert!(
        o.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The bundled sample as JSON Lines (its first `take` records, all when `None`), with
/// `malformed` synthetic malformed lines (labelled here, not real complaints) spread through
/// it. Returns the file and the number of real records in it.
pub fn sample_with_malformed(
    dir: &Path,
    take: Option<usize>,
    malformed: usize,
) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(bundled_sample_path()).expect("bundled sample");
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&text).expect("sample is a JSON array");
    let records = &records[..take.unwrap_or(records.len()).min(records.len())];
    let every = (records.len() / (malformed + 1)).max(1);
    let bad = [
        "{\"complaint_id\": \"1\", \"date_received\": \"2019-02-30\"}", // no such day
        "{\"complaint_id\": \"2\", \"date_rec",                         // truncated JSON
        "{\"complaint_id\": \"3\", \"date_received\": \"2019-01-01\", \"state\": \"QQ\"}",
    ];
    let mut out = String::new();
    let mut written = 0;
    for (i, r) in records.iter().enumerate() {
        out.push_str(&serde_json::to_string(r).expect("record"));
        out.push('\n');
        if written < malformed && (i + 1) % every == 0 {
            out.push_str(bad[written % bad.len()]);
            out.push('\n');
            written += 1;
        }
    }
    while written < malformed {
        out.push_str(bad[written % bad.len()]);
        out.push('\n');
        written += 1;
    }
    let p = dir.join("input.jsonl");
    std::fs::write(&p, out).expect("write input");
    (p, records.len())
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An HTTP answer: status, headers (lower-case names), body.
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`Connection: close`); `None` when nothing answers.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> Option<Answer> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    // Read to the end of the body: EOF, or Content-Length bytes after the head (some servers,
    // chromedriver among them, keep the connection open despite `Connection: close`).
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| raw.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let raw = String::from_utf8(raw).ok()?;
    let (head, rest) = raw.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_string()
    };
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n + 2..)?;
    }
}

/// `GET path` as JSON (`None` when nothing answers or the body is not JSON).
pub fn get_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    let a = request(addr, "GET", path, None)?;
    let j = a.json();
    (!j.is_null()).then_some(j)
}

/// Polls `f` every 100 ms until it holds; panics naming `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed (SIGINT, then SIGKILL) when dropped, so a failing test leaves no
/// engine behind.
pub struct Engine {
    /// The process.
    pub child: Child,
    /// `HOST:PORT` of its HTTP server.
    pub addr: String,
}

impl Engine {
    /// Starts `run --http-addr 127.0.0.1:PORT` in `dir` with `args`, stderr to `stderr_to`.
    pub fn start(dir: &Path, args: &[&str], stderr_to: Option<&Path>) -> Engine {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut c = bin(dir);
        c.args(["run", "--http-addr", &addr]).args(args);
        match stderr_to {
            Some(p) => {
                c.stderr(std::fs::File::create(p).expect("log file"));
            }
            None => {
                c.stderr(Stdio::null());
            }
        }
        let child = c.stdout(Stdio::null()).spawn().expect("start engine");
        Engine { child, addr }
    }

    /// Stops it with SIGINT and checks it exits 0.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait engine");
        assert!(status.success(), "engine exit on SIGINT: {status}");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
