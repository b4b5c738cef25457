//! The file sources as [`Source`] plug-ins: [`FileSource`] (a file in any format the readers
//! know, as fast as allowed) and [`ReplaySource`] (a file's records or resampled copies of
//! them, paced to a rate). Both wrap the operators of `complaintflow_operators::source`.

use std::path::PathBuf;

use complaintflow_datasets::replay::{Rate, SystemClock};
use complaintflow_datasets::Format;
use complaintflow_operators::record::RawInput;
use complaintflow_operators::source::{file_source, replay_source, ReplaySpec, SourceControl};
use complaintflow_operators::SourcePolicy;
use timely::dataflow::{Scope, Stream};

use crate::plugin::{Source, SourceContext};

fn control(ctx: &SourceContext, progress: &timely::dataflow::ProbeHandle<u64>) -> SourceControl {
    SourceControl {
        stop: ctx.stop.clone(),
        progress: Some(progress.clone()),
    }
}

fn check_file(path: &std::path::Path) -> Result<(), String> {
    if path.is_file() {
        Ok(())
    } else {
        Err(format!(
            "source file {} does not exist or is not a file: pass --source file:PATH",
            path.display()
        ))
    }
}

/// A file in any supported format (`file:PATH`), cut into epochs by the engine's policy and
/// paced by its `rate` (none: as fast as possible).
#[derive(Clone, Debug)]
pub struct FileSource {
    /// The file.
    pub path: PathBuf,
    /// Its format (`Auto` to detect).
    pub format: Format,
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file:{} ({})", self.path.display(), self.format)
    }

    fn check(&self) -> Result<(), String> {
        check_file(&self.path)
    }

    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        ctx: &SourceContext,
    ) -> Stream<'s, u64, Vec<RawInput>> {
        file_source(
            scope,
            self.path.clone(),
            self.format,
            ctx.validation.max_record_bytes,
            ctx.policy.clone(),
            SystemClock::default(),
            control(ctx, &ctx.progress),
        )
    }
}

/// A replay of a file's records, or of `resample` resampled copies of its complaints (fresh
/// synthetic ids, clearly not real records), at `rate` over all workers.
#[derive(Clone, Debug)]
pub struct ReplaySource {
    /// The file of real complaints.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Rate over all workers.
    pub rate: Rate,
    /// `Some(n)`: emit `n` resampled copies instead of the file.
    pub resample: Option<u64>,
    /// Resampler seed.
    pub seed: u64,
}

impl Source for ReplaySource {
    fn describe(&self) -> String {
        format!(
            "replay:{} at {} (resample {:?})",
            self.path.display(),
            self.rate,
            self.resample
        )
    }

    fn check(&self) -> Result<(), String> {
        check_file(&self.path)
    }

    fn build<'s>(
        &self,
        scope: Scope<'s, u64>,
        ctx: &SourceContext,
    ) -> Stream<'s, u64, Vec<RawInput>> {
        replay_source(
            scope,
            ReplaySpec {
                path: self.path.clone(),
                format: self.format,
                resample: self.resample,
                seed: self.seed,
            },
            ctx.validation.max_record_bytes,
            &ctx.validation,
            SourcePolicy {
                rate: self.rate.per_second(),
                ..ctx.policy.clone()
            },
            SystemClock::default(),
            control(ctx, &ctx.progress),
        )
    }
}
