//! `complaintflow`: real-time triage of consumer-finance complaints.
//!
//! A thin binary over the library crates: `complaintflow-datasets` (schema, readers, quality),
//! `complaintflow-models` (features, training, registry), `complaintflow-operators` and
//! `complaintflow-pipelines` (the timely/differential dataflow).

mod cli;
mod cmd;
mod config;
mod logging;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::dispatch(cli) {
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
