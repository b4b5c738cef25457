//! The table of plug-ins by URI scheme: what `--source` and `--sink` accept.
//!
//! | URI | plug-in |
//! |---|---|
//! | `file:PATH` (source) | [`FileSource`]: any supported format, paced by `--rate` if given |
//! | `replay:PATH` (source) | [`ReplaySource`]: the file's records (or `--resample N` copies) at `--rate` |
//! | `kafka:TOPIC` (source) | [`KafkaSource`]: resumable, checkpointed |
//! | `jsonl:PATH` (sink) | [`JsonlFiles`]: decisions as JSON Lines |
//! | `kafka:TOPIC` (sink) | [`KafkaSinks`]: decisions to `TOPIC` (plus the dead-letter and aggregate topics of [`PluginEnv`]) |
//! | `postgres://USER@HOST:PORT/DB` (sink; also `postgresql://`) | [`PostgresSink`]: predictions, dead letters, aggregates and models, settings from [`PluginEnv::postgres`], password from its `password_env` |
//!
//! A library user registers more schemes with [`PluginTable::register_source`] /
//! [`PluginTable::register_sink`] and passes the table to the `run` command, or hands plug-in
//! instances straight to [`EngineBuilder`](crate::EngineBuilder).
//!
//! ```
//! use complaintflow_pipelines::{PluginEnv, PluginTable};
//! let table = PluginTable::builtin();
//! let env = PluginEnv::default();
//! let s = table.source("file:datasets/data/complaints-sample.json", &env).unwrap();
//! assert!(s.describe().starts_with("file:"));
//! let err = table.sink("carrier-pigeon:x", &env).unwrap_err();
//! assert!(err.contains("jsonl:PATH"), "{err}");
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use complaintflow_datasets::replay::Rate;
use complaintflow_datasets::Format;
use complaintflow_operators::kafka::{KafkaConfig, ReadMode};

use crate::files::JsonlFiles;
use crate::kafka::{KafkaSinkTopics, KafkaSinks, KafkaSource};
use crate::plugin::{Sink, Source};
use crate::sinks::postgres::{PostgresConfig, PostgresSink};
use crate::sources::{FileSource, ReplaySource};

/// What plug-in constructors may need besides their URI (from the configuration and flags).
#[derive(Clone, Debug)]
pub struct PluginEnv {
    /// Input format of file sources (`Auto` detects).
    pub format: Format,
    /// Kafka client settings (brokers, security, extra librdkafka options).
    pub kafka: KafkaConfig,
    /// `run --once`: bounded sources (a Kafka topic up to its end at start).
    pub once: bool,
    /// Replay rate (`replay:` sources; `None` = as fast as possible).
    pub rate: Option<Rate>,
    /// `replay:` sources: emit this many resampled copies instead of the file.
    pub resample: Option<u64>,
    /// Resampler seed.
    pub seed: u64,
    /// Kafka sink: the dead-letter topic (`None`: off).
    pub kafka_dead_letters: Option<String>,
    /// Kafka sink: the aggregate-changes topic (`None`: off).
    pub kafka_aggregates: Option<String>,
    /// Kafka sink: the prefix of the transactional id, when the broker supports transactions.
    pub kafka_group: String,
    /// PostgreSQL sink: `[postgres]` of the configuration.
    pub postgres: PostgresConfig,
    /// PostgreSQL sink: the model registry mirrored into the `models` table (`None`: none,
    /// unless `[postgres] registry_dir` names one).
    pub registry_dir: Option<PathBuf>,
}

impl Default for PluginEnv {
    fn default() -> Self {
        let kafka = KafkaConfig::default();
        PluginEnv {
            format: Format::Auto,
            kafka_group: kafka.group_id.clone(),
            kafka,
            once: false,
            rate: None,
            resample: None,
            seed: 1,
            kafka_dead_letters: None,
            kafka_aggregates: None,
            postgres: PostgresConfig::default(),
            registry_dir: None,
        }
    }
}

/// Builds a source from the rest of its URI (after `scheme:`).
pub type SourceCtor = fn(&str, &PluginEnv) -> Result<Arc<dyn Source>, String>;
/// Builds a sink from the rest of its URI (after `scheme:`; for URL-like schemes the whole URI).
pub type SinkCtor = fn(&str, &PluginEnv) -> Result<Arc<dyn Sink>, String>;

struct Entry<C> {
    scheme: &'static str,
    usage: &'static str,
    ctor: C,
    whole_uri: bool,
}

/// Plug-ins by URI scheme.
pub struct PluginTable {
    sources: Vec<Entry<SourceCtor>>,
    sinks: Vec<Entry<SinkCtor>>,
}

impl std::fmt::Debug for PluginTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginTable")
            .field(
                "sources",
                &self.sources.iter().map(|e| e.usage).collect::<Vec<_>>(),
            )
            .field(
                "sinks",
                &self.sinks.iter().map(|e| e.usage).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn nonempty<'a>(what: &str, rest: &'a str) -> Result<&'a str, String> {
    if rest.is_empty() {
        Err(format!("{what}: the URI has nothing after the scheme"))
    } else {
        Ok(rest)
    }
}

impl PluginTable {
    /// The built-in plug-ins (the table in the [module docs](self)).
    pub fn builtin() -> PluginTable {
        let mut t = PluginTable {
            sources: Vec::new(),
            sinks: Vec::new(),
        };
        t.register_source("file", "file:PATH", |rest, env| {
            Ok(Arc::new(FileSource {
                path: PathBuf::from(nonempty("file:PATH", rest)?),
                format: env.format,
            }))
        });
        t.register_source("replay", "replay:PATH", |rest, env| {
            Ok(Arc::new(ReplaySource {
                path: PathBuf::from(nonempty("replay:PATH", rest)?),
                format: env.format,
                rate: env.rate.unwrap_or(Rate::Unlimited),
                resample: env.resample,
                seed: env.seed,
            }))
        });
        t.register_source("kafka", "kafka:TOPIC", |rest, env| {
            let mode = if env.once {
                ReadMode::Bounded
            } else {
                ReadMode::Continuous
            };
            Ok(Arc::new(KafkaSource::new(
                env.kafka.clone(),
                nonempty("kafka:TOPIC", rest)?,
                mode,
            )))
        });
        t.register_sink("jsonl", "jsonl:PATH", |rest, _env| {
            Ok(Arc::new(JsonlFiles {
                predictions: Some(PathBuf::from(nonempty("jsonl:PATH", rest)?)),
                dead_letters: None,
            }))
        });
        t.register_sink("kafka", "kafka:TOPIC", |rest, env| {
            let topics = KafkaSinkTopics {
                predictions: Some(nonempty("kafka:TOPIC", rest)?.to_string()),
                dead_letters: env.kafka_dead_letters.clone(),
                aggregates: env.kafka_aggregates.clone(),
            };
            Ok(Arc::new(KafkaSinks::connect(
                env.kafka.clone(),
                topics,
                &env.kafka_group,
            )?))
        });
        for scheme in ["postgres", "postgresql"] {
            t.register_sink_uri(scheme, "postgres://USER@HOST:PORT/DB", true, postgres_sink);
        }
        t
    }

    /// Registers (or replaces) a source scheme; `usage` is shown in errors (`name:ARG`).
    pub fn register_source(&mut self, scheme: &'static str, usage: &'static str, ctor: SourceCtor) {
        self.sources.retain(|e| e.scheme != scheme);
        self.sources.push(Entry {
            scheme,
            usage,
            ctor,
            whole_uri: false,
        });
    }

    /// Registers (or replaces) a sink scheme. `whole_uri`: the constructor gets the whole URI
    /// (for URLs such as `postgres://…`), otherwise what follows `scheme:`.
    pub fn register_sink_uri(
        &mut self,
        scheme: &'static str,
        usage: &'static str,
        whole_uri: bool,
        ctor: SinkCtor,
    ) {
        self.sinks.retain(|e| e.scheme != scheme);
        self.sinks.push(Entry {
            scheme,
            usage,
            ctor,
            whole_uri,
        });
    }

    /// Registers (or replaces) a sink scheme (`scheme:REST`).
    pub fn register_sink(&mut self, scheme: &'static str, usage: &'static str, ctor: SinkCtor) {
        self.register_sink_uri(scheme, usage, false, ctor);
    }

    /// The source for `uri`, or an error that lists the schemes.
    pub fn source(&self, uri: &str, env: &PluginEnv) -> Result<Arc<dyn Source>, String> {
        let e = find(&self.sources, uri)
            .ok_or_else(|| format!("--source {uri:?}: use one of {}", usages(&self.sources)))?;
        (e.ctor)(rest_of(e, uri), env).map_err(|m| format!("--source {uri}: {m}"))
    }

    /// The sink for `uri`, or an error that lists the schemes.
    pub fn sink(&self, uri: &str, env: &PluginEnv) -> Result<Arc<dyn Sink>, String> {
        let e = find(&self.sinks, uri)
            .ok_or_else(|| format!("--sink {uri:?}: use one of {}", usages(&self.sinks)))?;
        (e.ctor)(rest_of(e, uri), env).map_err(|m| format!("--sink {}: {m}", redact(uri)))
    }

    /// The scheme of `uri` if it names a registered source.
    pub fn source_scheme(&self, uri: &str) -> Option<&'static str> {
        find(&self.sources, uri).map(|e| e.scheme)
    }
}

/// `postgres://…` (the whole URI): the URL is parsed here (a typo fails before anything
/// starts); the server is reached by [`Sink::check`].
fn postgres_sink(uri: &str, env: &PluginEnv) -> Result<Arc<dyn Sink>, String> {
    let mut sink = PostgresSink::new(uri, env.postgres.clone());
    if let Some(dir) = &env.registry_dir {
        sink = sink.with_registry(dir);
    }
    sink.connector().map_err(|e| e.to_string())?;
    Ok(Arc::new(sink))
}

fn find<'a, C>(entries: &'a [Entry<C>], uri: &str) -> Option<&'a Entry<C>> {
    let (scheme, _) = uri.split_once(':')?;
    entries.iter().find(|e| e.scheme == scheme)
}

fn rest_of<'a, C>(e: &Entry<C>, uri: &'a str) -> &'a str {
    if e.whole_uri {
        uri
    } else {
        uri.split_once(':').map_or("", |(_, r)| r)
    }
}

fn usages<C>(entries: &[Entry<C>]) -> String {
    entries
        .iter()
        .map(|e| e.usage)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A URI with its password removed (never log a password): the `:password` of
/// `user:password@`, and the value of a `password=` parameter (URL query or
/// `key=value` connection string), which becomes `password=***`.
///
/// ```
/// use complaintflow_pipelines::plugins::redact;
/// assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u@h/db");
/// assert_eq!(redact("postgres://u@h/db?password=secret&x=1"), "postgres://u@h/db?password=***&x=1");
/// assert_eq!(redact("host=h user=u password=secret"), "host=h user=u password=***");
/// ```
pub fn redact(uri: &str) -> String {
    let mut out = uri.to_string();
    if let Some((scheme, rest)) = uri.split_once("://") {
        // The authority ends at the first '/', '?' or '#'; only an '@' inside it is userinfo.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some((auth, host)) = rest[..end].rsplit_once('@') {
            let user = auth.split(':').next().unwrap_or("");
            out = format!("{scheme}://{user}@{host}{}", &rest[end..]);
        }
    }
    redact_password_params(&out)
}

fn redact_password_params(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password=") {
        let start = i + found;
        let boundary = start == 0 || matches!(s.as_bytes()[start - 1], b'?' | b'&' | b' ' | b'\t');
        let value = start + "password=".len();
        out.push_str(&s[i..value]);
        if boundary {
            let len = s[value..].find(['&', ' ', '#']).unwrap_or(s.len() - value);
            out.push_str("***");
            i = value + len;
        } else {
            i = value;
        }
    }
    out.push_str(&s[i..]);
    out
}
