//! Access control of the HTTP API ([`ApiSecurity`], part of [`HttpUiConfig`](super::HttpUiConfig)).
//!
//! - **Mutating requests** (every method but `GET`, `HEAD` and `OPTIONS`; today
//!   `POST /api/retrain`) need `Authorization: Bearer <token>`. The token is compared in
//!   constant time (SHA-256 digests compared with [`subtle`]), so neither its content nor its
//!   length leaks through timing. Without a configured token mutating requests are **disabled on
//!   every address, loopback included**: `403` with a message that says how to set one. A
//!   missing or wrong token is `401` with `WWW-Authenticate: Bearer`.
//! - **Exposure**: [`check_exposure`] refuses to serve on an address that is not loopback
//!   without a token ([`SecurityError::ExposedWithoutToken`]): `run --http-addr 0.0.0.0:PORT`
//!   fails to start, and `config validate` reports it for `[http] addr`.
//! - **Retraining data**: [`DataDirs::resolve`] accepts a file only when its canonical path
//!   (every `..` and symlink resolved) lies inside one of the canonicalized data directories;
//!   the engine is then given that canonical path, never the one the client sent.
//! - **Limits**: request bodies over [`ApiSecurity::max_body_bytes`] are `413` (the
//!   `Content-Length` is checked before the body is read; chunked bodies are cut at the limit);
//!   mutating requests are rate limited ([`RateLimiter`]): a token bucket for authorized
//!   requests and a separate one for failed authentications, so someone without the token can
//!   neither guess it quickly nor use up the operator's budget. Over the limit: `429` with
//!   `Retry-After`.
//!
//! Read-only endpoints (`GET`) stay open: they serve aggregates, decisions (never a narrative)
//! and metrics. Put the server behind a TLS-terminating proxy when it faces a network: the
//! token travels in clear over plain HTTP.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The environment variable read for the token when `[http] token_env` is not set.
pub const DEFAULT_TOKEN_ENV: &str = "COMPLAINTFLOW_API_TOKEN";
/// Shortest token accepted, characters.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token accepted, characters.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Default request body limit, bytes (a retraining request is a path and a format).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default budget of mutating requests per minute.
pub const DEFAULT_MUTATIONS_PER_MINUTE: u32 = 30;

/// How to set a token, for error messages.
pub const HOW_TO_SET_TOKEN: &str = "set one with the environment variable \
     COMPLAINTFLOW_API_TOKEN=<secret of at least 16 characters> (or `[http] token_env` naming \
     another variable, `[http] token`, or the flag --api-token), e.g. \
     COMPLAINTFLOW_API_TOKEN=$(openssl rand -hex 32)";

/// Why the API's security settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve the HTTP API on {addr} without an API token: that address is \
         reachable from other machines, and POST /api/retrain must not be open there: \
         {HOW_TO_SET_TOKEN}; or bind a loopback address (--http-addr 127.0.0.1:PORT)"
    )]
    ExposedWithoutToken {
        /// The address asked for.
        addr: String,
    },
    /// The token is unusable.
    #[error("API token from {origin} is not usable: {why}")]
    BadToken {
        /// Where it came from (`[http] token`, an environment variable, …).
        origin: String,
        /// What is wrong with it.
        why: String,
    },
    /// A configured data directory cannot be used.
    #[error("http.data_dirs: {path}: {why} (list existing directories that retraining may read)")]
    DataDir {
        /// The directory as configured.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A limit is out of range.
    #[error("http.{key}: {why}")]
    Limit {
        /// The key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// A bearer token, kept only as its SHA-256 digest. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// Checks a token (16 to 4096 visible ASCII characters, so it fits a header) from
    /// `origin` (named in the error).
    pub fn new(secret: &str, origin: &str) -> Result<ApiToken, SecurityError> {
        let bad = |why: String| SecurityError::BadToken {
            origin: origin.to_string(),
            why,
        };
        let n = secret.chars().count();
        if n < MIN_TOKEN_LEN {
            return Err(bad(format!(
                "it has {n} characters, use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)"
            )));
        }
        if n > MAX_TOKEN_LEN {
            return Err(bad(format!(
                "it has {n} characters, use at most {MAX_TOKEN_LEN}"
            )));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "use visible ASCII characters only (no spaces, control characters or non-ASCII)"
                    .to_string(),
            ));
        }
        Ok(ApiToken {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Whether `presented` is this token, in time independent of both values.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(presented).into();
        bool::from(self.digest.ct_eq(&d))
    }
}

/// Directories retraining may read from, canonicalized.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataDirs {
    dirs: Vec<PathBuf>,
}

/// Why a retraining path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataPathError {
    /// No data directory is configured.
    #[error("retraining is not possible: no data directory is configured (set [http] data_dirs)")]
    NoDataDirs,
    /// The path does not exist (or cannot be resolved).
    #[error(
        "path {path:?}: no such file on the engine's host (retraining reads files under {dirs})"
    )]
    NotFound {
        /// As requested.
        path: String,
        /// The allowed directories.
        dirs: String,
    },
    /// The path resolves outside every data directory.
    #[error(
        "path {path:?} is outside the data directories retraining may read ({dirs}): copy the \
         file into one of them or add its directory to [http] data_dirs"
    )]
    Outside {
        /// As requested.
        path: String,
        /// The allowed directories.
        dirs: String,
    },
    /// The path is a directory, a device, a FIFO…
    #[error("path {path:?} is not a regular file")]
    NotAFile {
        /// As requested.
        path: String,
    },
}

impl DataDirs {
    /// Canonicalizes `dirs` (relative ones against the working directory). A directory in
    /// `optional` that does not exist is skipped; any other that does not is an error.
    pub fn new(dirs: &[PathBuf], optional: &[PathBuf]) -> Result<DataDirs, SecurityError> {
        let mut out: Vec<PathBuf> = Vec::new();
        for d in dirs {
            match std::fs::canonicalize(d) {
                Ok(c) if c.is_dir() => {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
                Ok(_) => {
                    return Err(SecurityError::DataDir {
                        path: d.clone(),
                        why: "not a directory".into(),
                    })
                }
                Err(_) if optional.contains(d) => {}
                Err(e) => {
                    return Err(SecurityError::DataDir {
                        path: d.clone(),
                        why: e.to_string(),
                    })
                }
            }
        }
        Ok(DataDirs { dirs: out })
    }

    /// The canonical directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn list(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The canonical path of `requested` when it is a regular file inside a data directory.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, DataPathError> {
        if self.dirs.is_empty() {
            return Err(DataPathError::NoDataDirs);
        }
        let path = requested.to_string();
        let canon =
            std::fs::canonicalize(Path::new(requested)).map_err(|_| DataPathError::NotFound {
                path: path.clone(),
                dirs: self.list(),
            })?;
        // `Path::starts_with` compares whole components: /data2 is not inside /data.
        if !self.dirs.iter().any(|d| canon.starts_with(d)) {
            return Err(DataPathError::Outside {
                path,
                dirs: self.list(),
            });
        }
        if !canon.is_file() {
            return Err(DataPathError::NotAFile { path });
        }
        Ok(canon)
    }
}

/// The security settings of the server. The default has no token (mutating requests
/// disabled), no data directory (retraining refused), a 64 KiB body limit and 30 mutating
/// requests a minute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSecurity {
    /// The bearer token of mutating requests; `None` disables them.
    pub token: Option<ApiToken>,
    /// Where retraining may read.
    pub data_dirs: DataDirs,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Budget of mutating requests per minute (authorized ones; failed authentications have
    /// a budget of their own of the same size).
    pub mutations_per_minute: u32,
}

impl Default for ApiSecurity {
    fn default() -> Self {
        ApiSecurity {
            token: None,
            data_dirs: DataDirs::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            mutations_per_minute: DEFAULT_MUTATIONS_PER_MINUTE,
        }
    }
}

impl ApiSecurity {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), SecurityError> {
        if self.max_body_bytes < 1024 {
            return Err(SecurityError::Limit {
                key: "max_body_bytes",
                why: format!("{} is too small: use at least 1024", self.max_body_bytes),
            });
        }
        if self.mutations_per_minute == 0 {
            return Err(SecurityError::Limit {
                key: "mutations_per_minute",
                why: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Whether every address `addr` (`HOST:PORT`) resolves to is a loopback address. An address
/// that does not resolve counts as not loopback.
pub fn is_loopback(addr: &str) -> bool {
    match addr.to_socket_addrs() {
        Ok(mut it) => {
            let mut any = false;
            let all = it.all(|a| {
                any = true;
                a.ip().is_loopback()
            });
            any && all
        }
        Err(_) => false,
    }
}

/// Refuses a non-loopback `addr` without a token.
pub fn check_exposure(addr: &str, token: Option<&ApiToken>) -> Result<(), SecurityError> {
    if token.is_none() && !is_loopback(addr) {
        return Err(SecurityError::ExposedWithoutToken {
            addr: addr.to_string(),
        });
    }
    Ok(())
}

/// A token bucket: `per_minute` requests a minute, bursts of up to `per_minute`.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_minute: u32, now: Instant) -> TokenBucket {
        let capacity = f64::from(per_minute.max(1));
        TokenBucket {
            capacity,
            per_sec: capacity / 60.0,
            state: Mutex::new((capacity, now)),
        }
    }

    /// Takes one request at `now`: `Ok`, or `Err(wait)` until the next one is allowed.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.per_sec).min(self.capacity);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / self.per_sec))
        }
    }
}

/// The two buckets of mutating requests.
#[derive(Debug)]
pub struct RateLimiter {
    /// Authorized requests.
    pub authorized: TokenBucket,
    /// Failed authentications.
    pub failed: TokenBucket,
}

impl RateLimiter {
    /// Both buckets full.
    pub fn new(per_minute: u32) -> RateLimiter {
        let now = Instant::now();
        RateLimiter {
            authorized: TokenBucket::new(per_minute, now),
            failed: TokenBucket::new(per_minute, now),
        }
    }
}

/// What a mutating request's `Authorization` header amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No token is configured: mutating requests are disabled.
    Disabled,
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A header with another scheme or a wrong token.
    Wrong,
    /// The token matches.
    Ok,
}

/// Checks an `Authorization` header value against the configured token.
pub fn authorize(token: Option<&ApiToken>, header: Option<&[u8]>) -> AuthOutcome {
    let Some(token) = token else {
        return AuthOutcome::Disabled;
    };
    let Some(h) = header else {
        return AuthOutcome::Missing;
    };
    // `Bearer` is case-insensitive (RFC 7235); one or more spaces before the token.
    let Some((scheme, rest)) = h.split_at_checked(6) else {
        return AuthOutcome::Wrong;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return AuthOutcome::Wrong;
    }
    let presented = rest.trim_ascii();
    if token.matches(presented) {
        AuthOutcome::Ok
    } else {
        AuthOutcome::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0123456789abcdef-token";

    #[test]
    fn tokens_are_checked_and_compared_whole() {
        assert!(matches!(
            ApiToken::new("short", "test"),
            Err(SecurityError::BadToken { .. })
        ));
        assert!(matches!(
            ApiToken::new("0123456789abcdef 0123", "test"),
            Err(SecurityError::BadToken { .. })
        ));
        let t = ApiToken::new(T, "test").unwrap();
        assert!(format!("{t:?}").contains("redacted"));
        assert!(!format!("{t:?}").contains(T));
        assert!(t.matches(T.as_bytes()));
        assert!(!t.matches(&T.as_bytes()[..T.len() - 1]));
        assert!(!t.matches(format!("{T}x").as_bytes()));
        assert!(!t.matches(b""));
    }

    #[test]
    fn authorization_header_forms() {
        let t = ApiToken::new(T, "test").unwrap();
        let auth = |h: &str| authorize(Some(&t), Some(h.as_bytes()));
        assert_eq!(authorize(None, Some(b"Bearer x")), AuthOutcome::Disabled);
        assert_eq!(authorize(Some(&t), None), AuthOutcome::Missing);
        assert_eq!(auth(&format!("Bearer {T}")), AuthOutcome::Ok);
        assert_eq!(auth(&format!("bearer   {T} ")), AuthOutcome::Ok);
        assert_eq!(auth(&format!("Basic {T}")), AuthOutcome::Wrong);
        assert_eq!(auth(&format!("Bearer{T}")), AuthOutcome::Wrong);
        assert_eq!(
            auth("Bearer wrong-token-of-some-length"),
            AuthOutcome::Wrong
        );
        assert_eq!(auth("Bear"), AuthOutcome::Wrong);
        assert_eq!(auth(""), AuthOutcome::Wrong);
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1:8080"));
        assert!(is_loopback("127.5.6.7:1"));
        assert!(is_loopback("[::1]:8080"));
        assert!(!is_loopback("0.0.0.0:8080"));
        assert!(!is_loopback("[::]:8080"));
        assert!(!is_loopback("192.0.2.1:8080"));
        assert!(!is_loopback("not an address"));
        let t = ApiToken::new(T, "test").unwrap();
        assert!(check_exposure("0.0.0.0:1", Some(&t)).is_ok());
        let e = check_exposure("0.0.0.0:1", None).unwrap_err();
        assert!(e.to_string().contains("COMPLAINTFLOW_API_TOKEN"), "{e}");
    }

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let b = TokenBucket::new(2, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(29) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(b.take(t0 + Duration::from_secs(29)).is_err());
        assert!(b.take(t0 + Duration::from_secs(31)).is_ok());
        // Never more than the capacity, however long it waited.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(later).is_ok());
        assert!(b.take(later).is_ok());
        assert!(b.take(later).is_err());
    }
}
