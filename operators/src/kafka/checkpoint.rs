//! Checkpoints: the next offset per input partition and the aggregate state at the end of
//! an epoch, written atomically into `<state>/checkpoints/`.
//!
//! A checkpoint file is written to a temporary name, `fsync`ed, renamed into place, and the
//! directory `fsync`ed, so a crash leaves either the old set of checkpoints or the new one,
//! never half a file under a checkpoint name. [`CheckpointStore::latest`] returns the newest
//! file that parses, skipping (with a warning) any that does not.
//!
//! ```
//! use complaintflow_operators::kafka::{Checkpoint, CheckpointStore};
//! let dir = tempfile::tempdir().unwrap();
//! let store = CheckpointStore::open(dir.path(), 2).unwrap();
//! assert!(store.latest().unwrap().is_none());
//! for epoch in 1..=3 {
//!     let offsets = [(0, 10 * epoch as i64), (1, 7)].into_iter().collect();
//!     let cp = Checkpoint::new(epoch, [("complaints-input".to_string(), offsets)], serde_json::json!({"n": epoch}));
//!     store.write(&cp).unwrap();
//! }
//! let latest = store.latest().unwrap().unwrap();
//! assert_eq!(latest.epoch, 3);
//! assert_eq!(latest.offsets_for("complaints-input").get(&0), Some(&30));
//! assert_eq!(store.list().unwrap().len(), 2); // keeps the last 2
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::KafkaError;

/// The checkpoint format version written by this code.
const FORMAT: u32 = 1;

/// What a job needs to resume after epoch `epoch` without losing or double-counting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version (1).
    pub format: u32,
    /// Every record of epochs `<= epoch` is reflected in the outputs and `aggregate_state`.
    pub epoch: u64,
    /// topic → partition → next offset to read.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The engine's aggregate state at the end of `epoch` (opaque here).
    pub aggregate_state: serde_json::Value,
    /// When it was written (ms since the Unix epoch).
    pub written_ms: i64,
}

impl Checkpoint {
    /// A checkpoint of `epoch`, stamped now.
    pub fn new(
        epoch: u64,
        offsets: impl IntoIterator<Item = (String, BTreeMap<i32, i64>)>,
        aggregate_state: serde_json::Value,
    ) -> Checkpoint {
        Checkpoint {
            format: FORMAT,
            epoch,
            offsets: offsets.into_iter().collect(),
            aggregate_state,
            written_ms: crate::record::now_ms(),
        }
    }

    /// The offsets of `topic` (empty if it has none).
    pub fn offsets_for(&self, topic: &str) -> BTreeMap<i32, i64> {
        self.offsets.get(topic).cloned().unwrap_or_default()
    }

    /// Age in ms (for the checkpoint-age metric).
    pub fn age_ms(&self) -> i64 {
        crate::record::now_ms() - self.written_ms
    }
}

/// The checkpoints of a state directory.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    keep: usize,
}

fn err(path: &Path, e: impl std::fmt::Display) -> KafkaError {
    KafkaError::Checkpoint {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl CheckpointStore {
    /// The store in `<state_dir>/checkpoints/` (created), keeping the newest `keep` (≥ 1).
    pub fn open(state_dir: impl AsRef<Path>, keep: usize) -> Result<CheckpointStore, KafkaError> {
        let dir = state_dir.as_ref().join("checkpoints");
        fs::create_dir_all(&dir).map_err(|e| err(&dir, format!("cannot create: {e}")))?;
        // Temporary files of writes a crash interrupted (never read: not checkpoint names).
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".checkpoint-") && name.contains(".tmp-") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(CheckpointStore {
            dir,
            keep: keep.max(1),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn name(epoch: u64) -> String {
        format!("checkpoint-{epoch:020}.json")
    }

    /// Writes `cp` atomically and removes all but the newest `keep` checkpoints. Returns
    /// the file's path.
    pub fn write(&self, cp: &Checkpoint) -> Result<PathBuf, KafkaError> {
        let bytes = serde_json::to_vec(cp).map_err(|e| err(&self.dir, e))?;
        self.write_bytes(cp.epoch, &bytes)
    }

    /// Writes the serialized checkpoint of `epoch` (its JSON, as [`CheckpointStore::write`] makes it,
    /// e.g. on another process of a cluster) atomically: temp file, `fsync`, rename, `fsync`
    /// of the directory; then prunes to the newest `keep`. Returns the file's path.
    pub fn write_bytes(&self, epoch: u64, bytes: &[u8]) -> Result<PathBuf, KafkaError> {
        let path = self.dir.join(Self::name(epoch));
        let tmp = self
            .dir
            .join(format!(".{}.tmp-{}", Self::name(epoch), std::process::id()));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| err(&tmp, e))?;
            f.write_all(bytes).map_err(|e| err(&tmp, e))?;
            f.sync_all().map_err(|e| err(&tmp, e))?;
        }
        fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.prune()?;
        Ok(path)
    }

    /// Checkpoint files, oldest first (by epoch).
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, KafkaError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| err(&self.dir, e))? {
            let entry = entry.map_err(|e| err(&self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(epoch) = name
                .strip_prefix("checkpoint-")
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            out.push((epoch, entry.path()));
        }
        out.sort();
        Ok(out)
    }

    fn prune(&self) -> Result<(), KafkaError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep);
        for (_, p) in all.into_iter().take(excess) {
            if let Err(e) = fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), "cannot remove an old checkpoint: {e}");
            }
        }
        Ok(())
    }

    /// The newest checkpoint that reads and parses; incomplete or corrupt files are skipped
    /// with a warning. `None` if there is none.
    pub fn latest(&self) -> Result<Option<Checkpoint>, KafkaError> {
        Ok(self.all_valid()?.pop())
    }

    /// Every checkpoint that reads and parses, oldest first; incomplete or corrupt files are
    /// skipped with a warning (a cluster restart picks the newest epoch every process has).
    pub fn all_valid(&self) -> Result<Vec<Checkpoint>, KafkaError> {
        let mut out = Vec::new();
        for (epoch, path) in self.list()? {
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).map_err(|e| e.to_string()))
                .and_then(|cp| {
                    if cp.epoch != epoch {
                        Err(format!(
                            "holds epoch {} but is named for epoch {epoch}",
                            cp.epoch
                        ))
                    } else if cp.format != FORMAT {
                        Err(format!("format {} is not {FORMAT}", cp.format))
                    } else {
                        Ok(cp)
                    }
                });
            match parsed {
                Ok(cp) => out.push(cp),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "skipping an unreadable checkpoint: {e}")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cp(epoch: u64) -> Checkpoint {
        let offsets = [(0, epoch as i64 * 100)].into_iter().collect();
        Checkpoint::new(
            epoch,
            [("t".to_string(), offsets)],
            serde_json::json!([epoch]),
        )
    }

    #[test]
    fn latest_skips_corrupt_and_misnamed_files_and_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 10).unwrap();
        store.write(&cp(4)).unwrap();
        store.write(&cp(5)).unwrap();
        // A newer file cut short by a crash (only possible if written without the store),
        // one that lies about its epoch, and a leftover temporary file.
        let bytes = serde_json::to_vec(&cp(6)).unwrap();
        fs::write(
            store.dir().join(CheckpointStore::name(6)),
            &bytes[..bytes.len() / 2],
        )
        .unwrap();
        fs::write(
            store.dir().join(CheckpointStore::name(7)),
            serde_json::to_vec(&cp(3)).unwrap(),
        )
        .unwrap();
        fs::write(
            store
                .dir()
                .join(".checkpoint-00000000000000000008.json.tmp-1"),
            &bytes,
        )
        .unwrap();
        let latest = store.latest().unwrap().unwrap();
        assert_eq!(latest.epoch, 5);
        assert_eq!(latest.offsets_for("t").get(&0), Some(&500));
        assert_eq!(latest.aggregate_state, serde_json::json!([5]));
    }

    #[test]
    fn only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 3).unwrap();
        for e in [1, 2, 10, 3, 11] {
            store.write(&cp(e)).unwrap();
        }
        let epochs: Vec<u64> = store.list().unwrap().into_iter().map(|(e, _)| e).collect();
        assert_eq!(epochs, [3, 10, 11]);
    }
}
