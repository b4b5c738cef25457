//! Subcommand implementations. Each returns the process exit code.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::config::{self, FlagOverrides, Loaded};

/// `println!` that returns an error instead of panicking when stdout is closed
/// (`complaintflow … | head`).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?;
    }};
}

/// `print!` counterpart of [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($t)*)?;
    }};
}

mod client;
mod data;
pub mod kafka;
pub mod run;
mod train;

/// Loads the configuration, installs logging and runs the subcommand (`run` with the
/// plug-ins of `ext` added to its graph).
pub fn dispatch(cli: Cli, ext: run::Extensions) -> Result<ExitCode> {
    let flags = FlagOverrides {
        state_dir: cli.global.state_dir.clone(),
        log_format: cli.global.log_format,
        api_token: cli.global.api_token.clone(),
    };
    let loaded = config::load(cli.global.config.as_deref(), &flags)?;
    crate::logging::init(&loaded.config.log);
    match cli.command {
        Command::Data(cmd) => data::run(cmd, &loaded.config),
        Command::Run(a) => run::run(a, &loaded.config, ext),
        Command::Rescore(a) => run::rescore(a, &loaded.config, ext),
        Command::Produce(a) => kafka::produce_with(a, loaded.config.kafka.clone()),
        Command::Consume(a) => kafka::consume_with(a, loaded.config.kafka.clone()),
        Command::Query(q) => client::query(q, &loaded.config),
        Command::Retrain(a) => client::retrain(a, &loaded.config),
        Command::Train(a) => train::run_train(a, &loaded.config),
        Command::Models(cmd) => train::run_models(cmd, &loaded.config),
        Command::Config(cmd) => config_cmd(cmd, &loaded),
    }
}

fn config_cmd(cmd: ConfigCommand, loaded: &Loaded) -> Result<ExitCode> {
    match cmd {
        ConfigCommand::Validate => {
            // `load` checked the values; the data directories must also exist.
            loaded.config.api_security()?;
            match &loaded.file {
                Some(f) => outln!("configuration OK ({} + environment + flags)", f.display()),
                None => outln!("configuration OK (defaults + environment + flags; no file)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Show => {
            let mut shown = loaded.config.clone();
            if !shown.http.token.is_empty() {
                shown.http.token = "<redacted>".to_string();
            }
            out!("{}", toml::to_string_pretty(&shown)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
