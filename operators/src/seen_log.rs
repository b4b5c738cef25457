//! [`SeenLog`]: the dedup seen-set on disk, so that a restart from a checkpoint does not
//! re-admit a complaint id the stream had already decided.
//!
//! **Format.** One append-only file per worker, `<dir>/seen-<worker>.log`, of 16-byte
//! records `(epoch: u64 LE, complaint_id: u64 LE)`: the ids a worker's `dedup_by_id` admitted,
//! with the epoch that admitted them. A worker appends an epoch's ids (one `write`) before it
//! releases the epoch's output, so every output and checkpoint of epoch `e` is downstream of
//! the log holding `e`'s ids; the checkpoint writer [`sync`]s the logs before it writes a
//! checkpoint file, so a checkpoint never names ids a machine crash could lose.
//!
//! **Resume.** [`prepare`] runs once per process before the workers build their dataflows:
//! with a checkpoint of epoch `e` it rewrites every log to its records of epochs `<= e` (what
//! a killed run wrote after its last checkpoint is read again from the source, so it must not
//! count as seen), without one it removes the logs. [`load`] then reads every log of the
//! directory (a superset of a worker's own ids is harmless: an id only ever reaches the
//! worker its hash routes to), so a restart with another number of workers in the process
//! still de-duplicates.
//!
//! **Cost.** 16 bytes per distinct id on disk; one buffered `write` per epoch per worker; the
//! log is not compacted (a known limit: about 160 MB per 10 million ids).
//!
//! ```
//! use complaintflow_operators::seen_log::{load, prepare, SeenLog};
//! let dir = tempfile::tempdir().unwrap();
//! let mut log = SeenLog::open(dir.path(), 0).unwrap();
//! log.append(1, &[10, 11]);
//! log.append(2, &[12]);
//! log.flush().unwrap();
//! drop(log);
//! prepare(dir.path(), Some(1)).unwrap(); // resume from the checkpoint of epoch 1
//! let seen = load(dir.path()).unwrap();
//! assert!(seen.contains(&10) && seen.contains(&11) && !seen.contains(&12));
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The ids a dedup worker has admitted (fast non-cryptographic hashing: ids are mixed).
pub type SeenSet = std::collections::HashSet<u64, foldhash::fast::RandomState>;

const RECORD: usize = 16;

/// One worker's append-only log of admitted ids.
#[derive(Debug)]
pub struct SeenLog {
    path: PathBuf,
    out: BufWriter<File>,
    failed: bool,
}

fn log_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("seen-") && name.ends_with(".log") {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

fn records(path: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    // A torn last record (a crash mid-write) is ignored: its epoch was never checkpointed.
    Ok(bytes
        .chunks_exact(RECORD)
        .map(|c| {
            let mut e = [0u8; 8];
            let mut i = [0u8; 8];
            e.copy_from_slice(&c[..8]);
            i.copy_from_slice(&c[8..]);
            (u64::from_le_bytes(e), u64::from_le_bytes(i))
        })
        .collect())
}

/// Before the workers start: keeps the records of epochs `<= through` in every log of `dir`
/// (atomically: temp file, `fsync`, rename), or removes every log when `through` is `None`
/// (a fresh start).
pub fn prepare(dir: &Path, through: Option<u64>) -> io::Result<()> {
    for path in log_files(dir)? {
        let Some(through) = through else {
            fs::remove_file(&path)?;
            continue;
        };
        let keep: Vec<u8> = records(&path)?
            .into_iter()
            .filter(|(e, _)| *e <= through)
            .flat_map(|(e, i)| e.to_le_bytes().into_iter().chain(i.to_le_bytes()))
            .collect();
        let tmp = path.with_extension("log.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&keep)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// Every id in the logs of `dir` (after [`prepare`]).
pub fn load(dir: &Path) -> io::Result<SeenSet> {
    let mut seen = SeenSet::default();
    for path in log_files(dir)? {
        seen.extend(records(&path)?.into_iter().map(|(_, id)| id));
    }
    Ok(seen)
}

/// `fsync`s every log of `dir` (the checkpoint writer, before a checkpoint file).
pub fn sync(dir: &Path) -> io::Result<()> {
    for path in log_files(dir)? {
        File::open(&path)?.sync_all()?;
    }
    Ok(())
}

impl SeenLog {
    /// Opens (creates) `<dir>/seen-<worker>.log` for appending.
    pub fn open(dir: &Path, worker: usize) -> io::Result<SeenLog> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("seen-{worker:04}.log"));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(SeenLog {
            path,
            out: BufWriter::with_capacity(64 << 10, f),
            failed: false,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers the ids admitted at `epoch`.
    pub fn append(&mut self, epoch: u64, ids: &[u64]) {
        if self.failed {
            return;
        }
        for id in ids {
            let mut rec = [0u8; RECORD];
            rec[..8].copy_from_slice(&epoch.to_le_bytes());
            rec[8..].copy_from_slice(&id.to_le_bytes());
            if let Err(e) = self.out.write_all(&rec) {
                self.fail(&e);
                return;
            }
        }
    }

    /// Hands the buffered records to the file (no `fsync`; see [`sync`]).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Ok(());
        }
        self.out.flush().inspect_err(|e| self.fail(e))
    }

    fn fail(&mut self, e: &io::Error) {
        self.failed = true;
        tracing::error!(path = %self.path.display(),
            "cannot write the dedup seen-set log (a restart may re-admit ids of this run): {e}");
    }
}
