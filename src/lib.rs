//! # complaintflow
//!
//! The library side of the `complaintflow` binary: the HTTP layer (query API, dashboard,
//! Prometheus `/metrics`, alerts) and the adapter that shows a running engine to it. The
//! dataflow itself lives in the `complaintflow-operators` and `complaintflow-pipelines`
//! crates; the binary (`src/main.rs`) wires configuration, CLI and these together.
//!
//! | module | what |
//! |---|---|
//! | [`http`] | axum server over an [`http::EngineView`]: `/`, `/health`, `/api/*`, `/metrics` |
//! | [`engine_view`] | [`engine_view::LiveView`]: an [`http::EngineView`] over a running engine |
//! | [`cli`], [`config`], [`cmd`] | the command line (clap), the configuration (TOML + env + flags), the subcommands |
//!
//! The binary is [`main`]; a program of your own that adds sinks, operators or URI schemes to
//! the graph `complaintflow run` builds is [`main_with`] and an [`Extensions`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! # struct MySink;
//! # impl complaintflow_pipelines::Sink for MySink {
//! #     fn describe(&self) -> String { "mine".into() }
//! #     fn build<'s>(&self, _s: timely::dataflow::Scope<'s, u64>, _o: &complaintflow_pipelines::EngineOutputs<'s>)
//! #         -> Result<Vec<timely::dataflow::Stream<'s, u64, Vec<u64>>>, String> { Ok(vec![]) }
//! # }
//! fn main() -> std::process::ExitCode {
//!     complaintflow::main_with(complaintflow::Extensions::default().sink(Arc::new(MySink)))
//! }
//! ```
#![warn(missing_docs)]

#[allow(missing_docs)]
pub mod cli;
#[allow(missing_docs)]
pub mod cmd;
#[allow(missing_docs)]
pub mod config;
pub mod engine_view;
pub mod http;
mod logging;

use std::process::ExitCode;

pub use cmd::run::Extensions;

/// The `complaintflow` command line, as the binary runs it.
pub fn main() -> ExitCode {
    main_with(Extensions::default())
}

/// The `complaintflow` command line with extra plug-ins in `complaintflow run`'s graph.
pub fn main_with(ext: Extensions) -> ExitCode {
    main_from(std::env::args_os(), ext)
}

/// [`main_with`] on the given arguments (the first is the program name), e.g. in a test:
/// `main_from(["complaintflow", "run", "--once"], ext)`.
pub fn main_from<I, T>(args: I, ext: Extensions) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cmd::dispatch(cli, ext) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "what failed: because …".
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Stdout closed by the reader (`complaintflow … | head`): not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
