//! `complaintflow`: real-time triage of consumer-finance complaints.
//!
//! A thin binary over the library crates: `complaintflow-datasets` (schema, readers, quality),
//! `complaintflow-models` (features, training, registry), `complaintflow-operators` and
//! `complaintflow-pipelines` (the timely/differential dataflow), and this package's library
//! (command line, configuration, HTTP layer).

fn main() -> std::process::ExitCode {
    complaintflow::main()
}
