//! `complaintflow`: real-time triage of consumer-finance complaints.
//!
//! A thin binary over the library crates: `complaintflow-datasets` (schema, readers, quality),
//! `complaintflow-models` (features, training, registry), `complaintflow-operators` and
//! `complaintflow-pipelines` (the timely/differential dataflow), and this package's library
//! (command line, configuration, HTTP layer).

/// mimalloc instead of glibc's malloc: records are allocated on one worker and freed on
/// another (after an exchange), which glibc serialises on its arena locks (a third of the
/// engine's time in a profile of `run --workers 2`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    complaintflow::main()
}
