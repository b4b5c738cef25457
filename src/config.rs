//! Configuration: built-in defaults, then a TOML file, then `COMPLAINTFLOW_*` environment
//! variables, then command-line flags (each layer overrides the one before).
//!
//! Nested keys in the environment use a double underscore: `COMPLAINTFLOW_HTTP__ADDR=0.0.0.0:9090`
//! sets `[http] addr`. Every key and its default is documented in `complaintflow.toml` at the
//! root of the repository (a test checks that file parses to exactly these defaults).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The name of the config file picked up from the working directory when `--config` is absent.
pub const DEFAULT_CONFIG_FILE: &str = "complaintflow.toml";

/// The whole configuration of a complaintflow process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where run-time state lives: model registry, checkpoints, outputs.
    pub state_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// Record validation (readers and the streaming parser).
    pub data: complaintflow_datasets::ValidationOptions,
    /// The HTTP server of `complaintflow run`.
    pub http: HttpConfig,
    /// Model training (`complaintflow train`, the default model of `run`, retraining).
    pub train: complaintflow_models::TrainConfig,
    /// Decision rules of `run` (escalation, priority bands, routing).
    pub decision: complaintflow_operators::DecisionRules,
    /// Kafka client settings (`run --source kafka:…`, `produce`, `consume`).
    pub kafka: complaintflow_operators::kafka::KafkaConfig,
    /// The dashboard served by `run`.
    pub dashboard: crate::http::DashboardConfig,
    /// Alert rules evaluated inside `run`.
    pub alerts: crate::http::AlertsConfig,
    /// The PostgreSQL sink of `run --sink postgres://…`.
    #[serde(default)]
    pub postgres: complaintflow_pipelines::sinks::postgres::PostgresConfig,
    /// Live model quality of `run --outcomes`: action thresholds, the closed retraining loop.
    #[serde(default)]
    pub monitoring: complaintflow_pipelines::quality::MonitoringConfig,
}

impl Config {
    /// The model registry directory, `<state_dir>/registry`.
    pub fn registry_dir(&self) -> PathBuf {
        self.state_dir.join("registry")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("./state"),
            log: LogConfig::default(),
            data: complaintflow_datasets::ValidationOptions::default(),
            http: HttpConfig::default(),
            train: complaintflow_models::TrainConfig::default(),
            decision: complaintflow_operators::DecisionRules::default(),
            kafka: complaintflow_operators::kafka::KafkaConfig::default(),
            dashboard: crate::http::DashboardConfig::default(),
            alerts: crate::http::AlertsConfig::default(),
            postgres: complaintflow_pipelines::sinks::postgres::PostgresConfig::default(),
            monitoring: complaintflow_pipelines::quality::MonitoringConfig::default(),
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human) or `json` (one object per line).
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is not set, e.g. `info` or `complaintflow=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON objects, one per line.
    Json,
}

/// `[http]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the query API and dashboard, `HOST:PORT`, or `off`.
    pub addr: String,
    /// The bearer token of mutating requests (`POST /api/retrain`). Empty: read it from the
    /// environment variable named by `token_env`. The flag `--api-token` and
    /// `COMPLAINTFLOW_HTTP__TOKEN` set this key too.
    pub token: String,
    /// The environment variable that holds the token when `token` is empty.
    pub token_env: String,
    /// Directories retraining may read from (canonicalized; nothing outside them, no `..` or
    /// symlink escape). Empty: the state directory and the bundled sample's directory.
    pub data_dirs: Vec<PathBuf>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Mutating requests allowed per minute (failed authentications have a budget of their
    /// own of the same size).
    pub mutations_per_minute: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: "127.0.0.1:8080".to_string(),
            token: String::new(),
            token_env: crate::http::security::DEFAULT_TOKEN_ENV.to_string(),
            data_dirs: Vec::new(),
            max_body_bytes: crate::http::security::DEFAULT_MAX_BODY_BYTES,
            mutations_per_minute: crate::http::security::DEFAULT_MUTATIONS_PER_MINUTE,
        }
    }
}

impl HttpConfig {
    /// The API token: `token` when set, else the variable named by `token_env` (unset or
    /// empty: no token).
    pub fn api_token(&self) -> Result<Option<crate::http::ApiToken>> {
        use crate::http::ApiToken;
        if !self.token.is_empty() {
            return Ok(Some(ApiToken::new(&self.token, "[http] token")?));
        }
        if self.token_env.is_empty() {
            return Ok(None);
        }
        match std::env::var(&self.token_env) {
            Ok(v) if !v.is_empty() => Ok(Some(ApiToken::new(
                &v,
                &format!("the environment variable {}", self.token_env),
            )?)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => bail!(
                "the environment variable {} (the API token, [http] token_env) is not UTF-8",
                self.token_env
            ),
        }
    }

    /// The token as sent by clients: the same lookup, the secret itself.
    pub fn api_token_secret(&self) -> Option<String> {
        if !self.token.is_empty() {
            return Some(self.token.clone());
        }
        std::env::var(&self.token_env)
            .ok()
            .filter(|v| !v.is_empty())
    }
}

impl Config {
    /// The directories retraining may read: `[http] data_dirs`, or by default the state
    /// directory and the bundled sample's directory (those of them that exist).
    pub fn retrain_data_dirs(&self) -> Result<crate::http::DataDirs> {
        if self.http.data_dirs.is_empty() {
            let mut dirs = vec![self.state_dir.clone()];
            if let Some(d) = complaintflow_datasets::bundled_sample_path().parent() {
                dirs.push(d.to_path_buf());
            }
            // Defaults that do not exist (yet) are skipped.
            Ok(crate::http::DataDirs::new(&dirs, &dirs)?)
        } else {
            Ok(crate::http::DataDirs::new(&self.http.data_dirs, &[])?)
        }
    }

    /// The HTTP server's access control from `[http]`.
    pub fn api_security(&self) -> Result<crate::http::ApiSecurity> {
        Ok(crate::http::ApiSecurity {
            token: self.http.api_token()?,
            data_dirs: self.retrain_data_dirs()?,
            max_body_bytes: self.http.max_body_bytes,
            mutations_per_minute: self.http.mutations_per_minute,
        })
    }
}

/// Overrides given as command-line flags (the last layer).
#[derive(Debug, Default, Clone)]
pub struct FlagOverrides {
    /// `--state-dir`
    pub state_dir: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<LogFormat>,
    /// `--api-token` (sets `[http] token`)
    pub api_token: Option<String>,
}

/// Where the effective configuration came from, for `config show` and error messages.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged configuration.
    pub config: Config,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

/// Loads the configuration: defaults ← file ← env ← flags.
///
/// `explicit` is the `--config` flag; without it `./complaintflow.toml` is read when present.
pub fn load(explicit: Option<&Path>, flags: &FlagOverrides) -> Result<Loaded> {
    load_with_env(explicit, flags, config_env("COMPLAINTFLOW_"))
}

/// `COMPLAINTFLOW_*` variables that are not configuration keys: flags' environment
/// variables (`--config`, `--brokers`) and those of the scripts and tests.
const NON_CONFIG_ENV: [&str; 9] = [
    "config",
    "api_token",
    "brokers",
    "tools",
    "cache",
    "require_kafka",
    "require_postgres",
    "require_netns",
    "postgres_url",
];

/// The environment layer: `PREFIX*` variables, nested keys split at `__`, minus
/// [`NON_CONFIG_ENV`]. Any other unknown key is an error that names it.
fn config_env(prefix: &str) -> Env {
    Env::prefixed(prefix)
        .filter(|k| {
            !NON_CONFIG_ENV
                .iter()
                .any(|n| k.as_str().eq_ignore_ascii_case(n))
        })
        .split("__")
}

fn load_with_env(explicit: Option<&Path>, flags: &FlagOverrides, env: Env) -> Result<Loaded> {
    let file = match explicit {
        Some(p) => {
            if !p.is_file() {
                bail!(
                    "config file {} not found: pass an existing TOML file to --config \
                     (see complaintflow.toml in the repository for every key), or drop the flag \
                     to use the defaults",
                    p.display()
                );
            }
            Some(p.to_path_buf())
        }
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG_FILE);
            p.is_file().then_some(p)
        }
    };
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(f) = &file {
        // Read it ourselves so a syntax error names the file and line.
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read config file {}", f.display()))?;
        if let Err(e) = text.parse::<toml::Table>() {
            bail!("config file {} is not valid TOML: {e}", f.display());
        }
        fig = fig.merge(Toml::file(f));
    }
    fig = fig.merge(env);
    let mut config: Config = fig.extract().map_err(|e| {
        let mut msg = String::from("invalid configuration");
        for err in e {
            msg.push_str(&format!("\n  - {err}"));
            if let Some(md) = &err.metadata {
                msg.push_str(&format!(" (from {})", md.name));
            }
        }
        msg.push_str(
            "\nfix the key named above (every key and its default is listed in complaintflow.toml)",
        );
        anyhow::anyhow!(msg)
    })?;
    if let Some(s) = &flags.state_dir {
        config.state_dir = s.clone();
    }
    if let Some(f) = flags.log_format {
        config.log.format = f;
    }
    if let Some(t) = &flags.api_token {
        config.http.token = t.clone();
    }
    validate(&config)?;
    Ok(Loaded { config, file })
}

/// Checks values that parse but make no sense.
pub fn validate(config: &Config) -> Result<()> {
    if config.http.addr != "off" && config.http.addr.parse::<std::net::SocketAddr>().is_err() {
        bail!(
            "http.addr = {:?} is not HOST:PORT (e.g. 127.0.0.1:8080) nor `off`",
            config.http.addr
        );
    }
    // [http]: the token parses, the limits are in range, and a non-loopback address has a
    // token (configured data directories are checked where they are used: `run`).
    let api = crate::http::ApiSecurity {
        token: config.http.api_token()?,
        max_body_bytes: config.http.max_body_bytes,
        mutations_per_minute: config.http.mutations_per_minute,
        ..crate::http::ApiSecurity::default()
    };
    api.validate()?;
    if config.http.addr != "off" {
        crate::http::security::check_exposure(&config.http.addr, api.token.as_ref())
            .map_err(|e| anyhow::anyhow!("http.addr: {e}"))?;
    }
    if config.data.max_record_bytes == 0 || config.data.max_narrative_bytes == 0 {
        bail!("data.max_record_bytes and data.max_narrative_bytes must be positive");
    }
    crate::http::HttpUiConfig {
        dashboard: config.dashboard.clone(),
        alerts: config.alerts.clone(),
        ..crate::http::HttpUiConfig::default()
    }
    .validate()
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    config
        .decision
        .validate()
        .map_err(|e| anyhow::anyhow!("[decision]: {e}"))?;
    config
        .train
        .validate()
        .map_err(|e| anyhow::anyhow!("[train]: {e}"))?;
    config
        .monitoring
        .validate()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests {
    use super::*;

    fn no_env() -> Env {
        Env::prefixed("COMPLAINTFLOW_TEST_UNUSED_PREFIX_").split("__")
    }

    #[test]
    fn documented_config_file_is_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
        let loaded = load_with_env(Some(&path), &FlagOverrides::default(), no_env()).unwrap();
        assert_eq!(loaded.config, Config::default());
        // And it lists every key (not only "parses to the defaults"): each key path of the
        // serialized defaults appears in the file, uncommented.
        fn paths(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    // Maps keyed by data (routing table, extra client properties) are listed
                    // as a whole.
                    if matches!(v, toml::Value::Table(_))
                        && !p.ends_with("routes")
                        && !p.ends_with("extra")
                    {
                        paths(&p, v, out);
                    } else {
                        out.push(p);
                    }
                }
            }
        }
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let file: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (mut want, mut have) = (Vec::new(), Vec::new());
        paths("", &defaults, &mut want);
        paths("", &file, &mut have);
        let missing: Vec<&String> = want.iter().filter(|p| !have.contains(p)).collect();
        assert!(
            missing.is_empty(),
            "keys not documented in {DEFAULT_CONFIG_FILE}: {missing:?}"
        );
    }

    #[test]
    fn flag_and_script_variables_are_not_config_keys_but_typos_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CFTEST2_REQUIRE_KAFKA", "1");
            jail.set_env("CFTEST2_TOOLS", "/opt/tools");
            jail.set_env("CFTEST2_BROKERS", "10.0.0.1:9092");
            jail.set_env("CFTEST2_HTTP__ADDR", "127.0.0.1:9200");
            let l = load_with_env(None, &FlagOverrides::default(), config_env("CFTEST2_")).unwrap();
            assert_eq!(l.config.http.addr, "127.0.0.1:9200");
            jail.set_env("CFTEST2_HTPP__ADDR", "127.0.0.1:9300");
            let e =
                load_with_env(None, &FlagOverrides::default(), config_env("CFTEST2_")).unwrap_err();
            assert!(format!("{e:#}").contains("htpp"), "{e:#}");
            Ok(())
        });
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "state_dir = \"/from/file\"\n[http]\naddr = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("CFTEST_HTTP__ADDR", "127.0.0.1:9100");
            let env = Env::prefixed("CFTEST_").split("__");
            let l = load_with_env(Some(&f), &FlagOverrides::default(), env).unwrap();
            assert_eq!(l.config.state_dir, PathBuf::from("/from/file"));
            assert_eq!(l.config.http.addr, "127.0.0.1:9100");
            let flags = FlagOverrides {
                state_dir: Some("/from/flag".into()),
                log_format: Some(LogFormat::Json),
                api_token: None,
            };
            let env = Env::prefixed("CFTEST_").split("__");
            let l = load_with_env(Some(&f), &flags, env).unwrap();
            assert_eq!(l.config.state_dir, PathBuf::from("/from/flag"));
            assert_eq!(l.config.log.format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    fn unknown_key_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[http]\nadress = \"x\"\n").unwrap();
        let e = load_with_env(Some(&f), &FlagOverrides::default(), no_env()).unwrap_err();
        assert!(e.to_string().contains("adress"), "{e}");
        std::fs::write(&f, "[http]\naddr = \"nowhere\"\n").unwrap();
        let e = load_with_env(Some(&f), &FlagOverrides::default(), no_env()).unwrap_err();
        assert!(e.to_string().contains("http.addr"), "{e}");
        std::fs::write(&f, "[http\n").unwrap();
        let e = load_with_env(Some(&f), &FlagOverrides::default(), no_env()).unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
        let e = load_with_env(
            Some(&dir.path().join("missing.toml")),
            &FlagOverrides::default(),
            no_env(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
    }
}
