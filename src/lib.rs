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
#![warn(missing_docs)]

pub mod engine_view;
pub mod http;
