//! Sinks that live outside the engine core, each a [`Sink`](crate::plugin::Sink) plug-in:
//!
//! | module | sink |
//! |---|---|
//! | [`postgres`] | [`PostgresSink`](postgres::PostgresSink): predictions, dead letters, aggregates and models in PostgreSQL (`--sink postgres://…`) |

pub mod postgres;
