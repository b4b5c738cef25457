//! [`SeenLog`]: the dedup seen-set on disk, so that a restart from a checkpoint does not
//! re-admit a complaint id the stream had already decided.
//!
//! **Window.** A [`SeenWindow`] bounds the set: a worker remembers its ids in two generations
//! of at most `capacity` ids each (the current one and the previous one); when the current one
//! is full at the end of an epoch it becomes the previous one and the oldest is forgotten. So
//! an id is remembered for at least the next `capacity` admitted ids of its worker and
//! memory stays under `2 × capacity` ids per worker, however long the run.
//!
//! **Format.** Append-only files per worker and generation, `<dir>/seen-<worker>-<gen>.log`,
//! of 16-byte records `(epoch: u64 LE, complaint_id: u64 LE)`: the ids a worker's
//! `dedup_by_id` admitted, with the epoch that admitted them. When the window rotates, the log
//! starts the next generation's file and deletes the files of forgotten generations, so the
//! logs stay as bounded as the set. A worker appends an epoch's ids (one `write`) before it
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
//! After a restart every loaded id counts as the previous generation (forgotten at the next
//! rotation): the window after a restart can be shorter by what was admitted after the
//! checkpoint, which the source reads again anyway.
//!
//! **Cost.** 16 bytes per remembered id on disk, ≈ 10 bytes in memory; one buffered `write`
//! per epoch per worker; a rotation is one file created and one deleted.
//!
//! ```
//! use complaintflow_operators::seen_log::{load, prepare, SeenLog};
//! let dir = tempfile::tempdir().unwrap();
//! let mut log = SeenLog::open(dir.path(), 0, 0).unwrap();
//! log.append(1, &[10, 11]);
//! log.append(2, &[12]);
//! log.flush().unwrap();
//! drop(log);
//! prepare(dir.path(), Some(1)).unwrap(); // resume from the checkpoint of epoch 1
//! let (seen, next_generation) = load(dir.path()).unwrap();
//! assert!(seen.contains(&10) && seen.contains(&11) && !seen.contains(&12));
//! assert_eq!(next_generation, 1);
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The ids a dedup worker has admitted (fast non-cryptographic hashing: ids are mixed).
pub type SeenSet = std::collections::HashSet<u64, foldhash::fast::RandomState>;

/// The ids a dedup worker remembers: two generations of at most `capacity` ids (see the
/// [module docs](self)).
///
/// ```
/// use complaintflow_operators::seen_log::SeenWindow;
/// let mut w = SeenWindow::new(2);
/// assert!(w.admit(1) && w.admit(2) && !w.admit(1));
/// assert_eq!(w.end_epoch(), Some(1)); // the current generation is full: rotate
/// assert!(w.admit(3) && !w.admit(2)); // 1 and 2 are still remembered (previous generation)
/// w.admit(4);
/// w.end_epoch();
/// assert!(w.admit(1)); // forgotten after two generations
/// ```
#[derive(Debug, Default)]
pub struct SeenWindow {
    current: SeenSet,
    previous: SeenSet,
    capacity: usize,
    generation: u64,
}

impl SeenWindow {
    /// An empty window of generations of `capacity` ids (`usize::MAX`: unbounded).
    pub fn new(capacity: usize) -> SeenWindow {
        SeenWindow {
            capacity: capacity.max(1),
            ..SeenWindow::default()
        }
    }

    /// A window that never forgets.
    pub fn unbounded() -> SeenWindow {
        SeenWindow::new(usize::MAX)
    }

    /// A window holding `loaded` (ids of an earlier run) as its previous generation, starting
    /// at `generation`.
    pub fn resumed(capacity: usize, loaded: SeenSet, generation: u64) -> SeenWindow {
        SeenWindow {
            previous: loaded,
            generation,
            ..SeenWindow::new(capacity)
        }
    }

    /// Admits `id`: `true` the first time (within the window), `false` for a duplicate.
    pub fn admit(&mut self, id: u64) -> bool {
        if self.previous.contains(&id) {
            return false;
        }
        self.current.insert(id)
    }

    /// At the end of an epoch: when the current generation is full it becomes the previous
    /// one (the oldest is forgotten); returns the new generation number then.
    pub fn end_epoch(&mut self) -> Option<u64> {
        if self.current.len() < self.capacity {
            return None;
        }
        // Free the forgotten generation first, then allocate the next one at the size the
        // full one reached: the allocator reuses the freed block and the table never grows by
        // doubling again, so resident memory stays put from one generation to the next.
        let size = self.current.len();
        self.previous = SeenSet::default();
        let next = SeenSet::with_capacity_and_hasher(size, Default::default());
        self.previous = std::mem::replace(&mut self.current, next);
        self.generation += 1;
        Some(self.generation)
    }

    /// The current generation number.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// No id remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

const RECORD: usize = 16;

/// One worker's append-only log of admitted ids.
#[derive(Debug)]
pub struct SeenLog {
    dir: PathBuf,
    worker: usize,
    path: PathBuf,
    /// This worker's files, oldest first (the last one is `path`).
    files: Vec<PathBuf>,
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

/// Every id in the logs of `dir` (after [`prepare`]), and the next free generation number.
pub fn load(dir: &Path) -> io::Result<(SeenSet, u64)> {
    let mut seen = SeenSet::default();
    let mut next = 0;
    for path in log_files(dir)? {
        seen.extend(records(&path)?.into_iter().map(|(_, id)| id));
        if let Some((_, g)) = name_parts(&path) {
            next = next.max(g + 1);
        }
    }
    Ok((seen, next))
}

/// `fsync`s every log of `dir` (the checkpoint writer, before a checkpoint file). A log that a
/// rotation deleted meanwhile is skipped: its ids were forgotten anyway.
pub fn sync(dir: &Path) -> io::Result<()> {
    for path in log_files(dir)? {
        match File::open(&path) {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// (worker, generation) of `seen-WWWW-GGGGGGGG.log`; `seen-WWWW.log` (an older layout) is
/// generation 0.
fn name_parts(path: &Path) -> Option<(usize, u64)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_prefix("seen-")?.strip_suffix(".log")?;
    match stem.split_once('-') {
        Some((w, g)) => Some((w.parse().ok()?, g.parse().ok()?)),
        None => Some((stem.parse().ok()?, 0)),
    }
}

impl SeenLog {
    /// Opens (creates) `<dir>/seen-<worker>-<generation>.log` for appending; this worker's
    /// older files stay until the window forgets them ([`SeenLog::rotate`]).
    pub fn open(dir: &Path, worker: usize, generation: u64) -> io::Result<SeenLog> {
        fs::create_dir_all(dir)?;
        let mut files: Vec<(u64, PathBuf)> = log_files(dir)?
            .into_iter()
            .filter_map(|p| match name_parts(&p) {
                Some((w, g)) if w == worker && g < generation => Some((g, p)),
                _ => None,
            })
            .collect();
        files.sort();
        let mut files: Vec<PathBuf> = files.into_iter().map(|(_, p)| p).collect();
        let path = Self::file(dir, worker, generation);
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        files.push(path.clone());
        Ok(SeenLog {
            dir: dir.to_path_buf(),
            worker,
            path,
            files,
            out: BufWriter::with_capacity(64 << 10, f),
            failed: false,
        })
    }

    fn file(dir: &Path, worker: usize, generation: u64) -> PathBuf {
        dir.join(format!("seen-{worker:04}-{generation:08}.log"))
    }

    /// The window rotated to `generation`: later ids go to that generation's file, and the
    /// files of generations the window no longer holds (all but the last two) are deleted.
    pub fn rotate(&mut self, generation: u64) {
        if self.failed {
            return;
        }
        if let Err(e) = self.out.flush() {
            self.fail(&e);
            return;
        }
        let path = Self::file(&self.dir, self.worker, generation);
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => {
                self.out = BufWriter::with_capacity(64 << 10, f);
                self.path = path.clone();
                self.files.push(path);
            }
            Err(e) => {
                self.fail(&e);
                return;
            }
        }
        while self.files.len() > 2 {
            let old = self.files.remove(0);
            if let Err(e) = fs::remove_file(&old) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %old.display(), "cannot delete a forgotten dedup log: {e}");
                }
            }
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        log_files(dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn rotation_keeps_two_generations_on_disk_and_a_restart_resumes_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SeenLog::open(dir.path(), 3, 0).unwrap();
        log.append(1, &[1, 2]);
        log.rotate(1);
        log.append(2, &[3]);
        log.rotate(2);
        log.append(3, &[4]);
        log.flush().unwrap();
        assert_eq!(
            names(dir.path()),
            ["seen-0003-00000001.log", "seen-0003-00000002.log"]
        );
        drop(log);
        sync(dir.path()).unwrap();
        prepare(dir.path(), Some(2)).unwrap(); // epoch 3 came after the checkpoint
        let (seen, next) = load(dir.path()).unwrap();
        assert_eq!(
            (seen.contains(&3), seen.contains(&4), seen.contains(&1)),
            (true, false, false)
        );
        assert_eq!(next, 3);
        // The next run's first rotation forgets the loaded generations' files.
        let mut log = SeenLog::open(dir.path(), 3, next).unwrap();
        log.rotate(next + 1);
        assert_eq!(
            names(dir.path()),
            ["seen-0003-00000003.log", "seen-0003-00000004.log"]
        );
    }

    #[test]
    fn the_older_single_file_layout_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Vec::new();
        rec.extend(5u64.to_le_bytes());
        rec.extend(77u64.to_le_bytes());
        fs::write(dir.path().join("seen-0000.log"), rec).unwrap();
        let (seen, next) = load(dir.path()).unwrap();
        assert!(seen.contains(&77));
        assert_eq!(next, 1);
    }
}
