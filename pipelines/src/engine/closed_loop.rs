//! The closed retraining loop (`[monitoring] auto_retrain = true`), run by global worker 0's
//! driver: when the production version's live action is `RETRAIN`, retrain on the labelled
//! history (`retrain_data` plus the complaints whose outcomes were joined), A/B-test the
//! challenger on `challenger_fraction` of the traffic, and once it has `promote_after`
//! labelled outcomes promote it if its AUC beats the champion's over the same period (the
//! champion's outcomes counted since the challenger started), else roll back to the champion.
//!
//! ```text
//! Watching ──RETRAIN──► Writing (thread) ──file──► Training ──challenger──► Testing ──► Cooling ──► Watching
//! ```
//!
//! Every step is a line of the retraining log (`/api/models`, the dashboard) and an `info`
//! event. After a loop, the champion must gather `promote_after` further outcomes before
//! `RETRAIN` can fire again (no retraining storm on a model that stays weak).

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use complaintflow_datasets::{Format, RawRecords};
use complaintflow_models::{Model, Registry};
use complaintflow_operators::{ModelRole, ModelUpdate};

use super::{EngineConfig, RetrainRequest};
use crate::quality::{QualityCounts, QualityScope};
use crate::state::{lock, EngineState};

/// What the driver must do for the loop.
pub(crate) enum LoopAction {
    /// Retrain (the request's `ab_fraction` makes the new version a challenger).
    Retrain(Box<RetrainRequest>),
    /// Send a model update to the graph (promotion or roll-back).
    Send(Box<ModelUpdate>),
}

enum Phase {
    Watching,
    Writing {
        champion: String,
        done: Receiver<Result<(PathBuf, usize, usize), String>>,
    },
    Training {
        champion: String,
    },
    Testing {
        champion: String,
        challenger: Box<Model>,
        base: QualityCounts,
    },
    Cooling {
        champion: String,
        until: u64,
    },
}

/// The loop's state on global worker 0.
pub(crate) struct ClosedLoop {
    phase: Phase,
    last: Instant,
    loops: u64,
}

fn production(state: &EngineState) -> Option<String> {
    lock(&state.models)
        .iter()
        .rev()
        .find(|m| m.role == "production")
        .map(|m| m.version.clone())
}

fn counts(state: &EngineState, version: &str) -> QualityCounts {
    lock(&state.quality)
        .counts
        .get(&(Arc::from(version), QualityScope::All))
        .cloned()
        .unwrap_or_default()
}

/// `now − base`, count by count.
fn since(now: &QualityCounts, base: &QualityCounts) -> QualityCounts {
    let mut d = now.clone();
    for (bin, [n, p]) in &base.bins {
        let e = d.bins.entry(*bin).or_insert([0, 0]);
        e[0] -= n;
        e[1] -= p;
        if *e == [0, 0] {
            d.bins.remove(bin);
        }
    }
    for (row, base_row) in d.confusion.iter_mut().zip(base.confusion) {
        for (v, b) in row.iter_mut().zip(base_row) {
            *v -= b;
        }
    }
    d
}

fn log(state: &EngineState, msg: String) {
    tracing::info!(target: "complaintflow::closed_loop", "{msg}");
    lock(&state.retrain_log).push(format!("closed loop: {msg}"));
}

impl ClosedLoop {
    pub(crate) fn new() -> ClosedLoop {
        ClosedLoop {
            phase: Phase::Watching,
            last: Instant::now(),
            loops: 0,
        }
    }

    /// Checks the live quality (every 250 ms) and moves the loop on.
    pub(crate) fn poll(&mut self, cfg: &EngineConfig, state: &EngineState) -> Option<LoopAction> {
        if self.last.elapsed() < Duration::from_millis(250) {
            return None;
        }
        self.last = Instant::now();
        let m = &cfg.monitoring;
        match &mut self.phase {
            Phase::Watching => {
                let champion = production(state)?;
                // The champion's overall counts only (not the report of every scope).
                let q = m.action(&counts(state, &champion).metrics());
                if q.action != "RETRAIN" {
                    return None;
                }
                let history: Vec<Vec<u8>> =
                    lock(&state.labelled_history).values().cloned().collect();
                log(
                    state,
                    format!(
                        "{champion}: {} → retraining on {} joined outcomes{}",
                        q.reason,
                        history.len(),
                        m.retrain_data
                            .as_ref()
                            .map(|p| format!(" and {}", p.display()))
                            .unwrap_or_default()
                    ),
                );
                self.loops += 1;
                let out = cfg
                    .registry_dir
                    .parent()
                    .map_or_else(|| cfg.registry_dir.clone(), PathBuf::from)
                    .join(format!("closed-loop-{}.jsonl", self.loops));
                let data = m.retrain_data.clone();
                let max = cfg.validation.max_record_bytes;
                let (tx, rx) = channel();
                std::thread::spawn(move || {
                    let _ = tx.send(write_history(&out, data.as_deref(), &history, max));
                });
                self.phase = Phase::Writing { champion, done: rx };
                None
            }
            Phase::Writing { champion, done } => {
                let r = done.try_recv().ok()?;
                let champion = champion.clone();
                match r {
                    Ok((path, rows, skipped)) => {
                        log(
                            state,
                            format!(
                                "training file {} ({rows} records; {skipped} unreadable records of retrain_data left out)",
                                path.display()
                            ),
                        );
                        self.phase = Phase::Training { champion };
                        Some(LoopAction::Retrain(Box::new(RetrainRequest {
                            path,
                            format: Format::JsonLines,
                            train_config: None,
                            ab_fraction: Some(m.challenger_fraction),
                        })))
                    }
                    Err(e) => {
                        log(state, format!("cannot write the training file: {e}"));
                        self.cool(state, champion, m.promote_after);
                        None
                    }
                }
            }
            Phase::Training { .. } => None,
            Phase::Testing {
                champion,
                challenger,
                base,
            } => {
                let c = counts(state, &challenger.version).metrics();
                if c.labelled < m.promote_after {
                    return None;
                }
                let champ = since(&counts(state, champion), base).metrics();
                let champion = champion.clone();
                let challenger = challenger.clone();
                let (ca, pa) = (c.auc.unwrap_or(0.0), champ.auc.unwrap_or(0.0));
                if ca > pa {
                    if let Err(e) = Registry::open(&cfg.registry_dir)
                        .and_then(|r| r.promote(&challenger.version))
                    {
                        log(
                            state,
                            format!("cannot promote {} in the registry: {e}", challenger.version),
                        );
                    }
                    log(
                        state,
                        format!(
                            "promoted {}: AUC {ca:.4} over {} outcomes beats {champion}'s {pa:.4} over {} in the same period",
                            challenger.version, c.labelled, champ.labelled
                        ),
                    );
                    let version = challenger.version.clone();
                    self.cool(state, version, m.promote_after);
                    Some(LoopAction::Send(Box::new(ModelUpdate {
                        model: *challenger,
                        role: ModelRole::Production,
                    })))
                } else {
                    log(
                        state,
                        format!(
                            "rolled back to {champion}: {} AUC {ca:.4} over {} outcomes does not beat {pa:.4} over {}",
                            challenger.version, c.labelled, champ.labelled
                        ),
                    );
                    let model =
                        Registry::open(&cfg.registry_dir).and_then(|r| r.load_model(&champion));
                    self.cool(state, champion.clone(), m.promote_after);
                    match model {
                        Ok(model) => Some(LoopAction::Send(Box::new(ModelUpdate {
                            model,
                            role: ModelRole::Production,
                        }))),
                        Err(e) => {
                            log(state, format!("cannot load {champion} to roll back: {e}"));
                            None
                        }
                    }
                }
            }
            Phase::Cooling { champion, until } => {
                if counts(state, champion).metrics().labelled >= *until {
                    self.phase = Phase::Watching;
                }
                None
            }
        }
    }

    fn cool(&mut self, state: &EngineState, champion: String, wait: u64) {
        let until = counts(state, &champion).metrics().labelled + wait;
        self.phase = Phase::Cooling { champion, until };
    }

    /// A retraining finished: `Ok(challenger)` starts its A/B test; `Err` ends the loop.
    pub(crate) fn trained(
        &mut self,
        state: &EngineState,
        result: Result<&Model, &str>,
        promote_after: u64,
    ) {
        let Phase::Training { champion } = &self.phase else {
            return;
        };
        let champion = champion.clone();
        match result {
            Ok(model) => {
                log(
                    state,
                    format!(
                        "A/B test: challenger {} against {champion}, decided after {promote_after} of its outcomes",
                        model.version
                    ),
                );
                self.phase = Phase::Testing {
                    base: counts(state, &champion),
                    champion,
                    challenger: Box::new(model.clone()),
                };
            }
            Err(e) => {
                log(state, format!("retraining failed: {e}"));
                self.cool(state, champion, promote_after);
            }
        }
    }

    /// Whether the loop is retraining (the driver reports a request that is its own).
    pub(crate) fn training(&self) -> bool {
        matches!(self.phase, Phase::Training { .. })
    }
}

/// Writes `retrain_data`'s records (any format) and then the labelled history as JSON Lines
/// into `out`; returns the number of records written and of `retrain_data` records that could
/// not be read (left out, counted in the log line).
fn write_history(
    out: &std::path::Path,
    data: Option<&std::path::Path>,
    history: &[Vec<u8>],
    max_record_bytes: usize,
) -> Result<(PathBuf, usize, usize), String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let (mut rows, mut skipped) = (0usize, 0usize);
    // One record per line: a raw newline in JSON text is always white space between tokens
    // (inside strings it is escaped), so a pretty-printed record becomes one line as a space.
    let line = |w: &mut std::io::BufWriter<std::fs::File>, b: &[u8]| -> Result<(), String> {
        let flat: Vec<u8> = b
            .iter()
            .map(|&c| if c == b'\n' || c == b'\r' { b' ' } else { c })
            .collect();
        w.write_all(&flat)
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| format!("{}: {e}", out.display()))
    };
    if let Some(p) = data {
        let records = RawRecords::from_path(p, Format::Auto, max_record_bytes)
            .map_err(|e| format!("[monitoring] retrain_data {}: {e}", p.display()))?;
        for r in records {
            match r {
                Ok(r) => {
                    line(&mut w, &r.bytes)?;
                    rows += 1;
                }
                Err(_) => skipped += 1,
            }
        }
    }
    for b in history {
        line(&mut w, b)?;
        rows += 1;
    }
    w.flush().map_err(|e| format!("{}: {e}", out.display()))?;
    Ok((out.to_path_buf(), rows, skipped))
}
