//! The HTTP layer of `complaintflow run`: query API, dashboard, Prometheus `/metrics`, alerts.
//!
//! The server reads the engine only through [`EngineView`]; `cmd::run` wires an adapter over
//! the pipelines' live state and calls [`serve`] (or [`bind`] then [`serve_on`] to fail fast on
//! a busy port before the engine starts).
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the dashboard (embedded HTML/JS/CSS, uPlot vendored) |
//! | `GET /assets/{path}` | its files |
//! | `GET /health` | [`Health`]; 503 when the job failed |
//! | `GET /api/aggregates?by=product\|state\|company\|issue\|hour\|month\|month_product&top=N` | [`AggregateAnswer`]; 400 on a bad `by`/`top` |
//! | `GET /api/predictions/recent?limit=N&priority=P1,P2&escalated=true` | latest decisions, newest first (`limit` 1..=1000, default 50) |
//! | `GET /api/models` | [`ModelsView`] |
//! | `GET /api/history` | [`HistoryView`] |
//! | `GET /api/metrics` | [`MetricsSnapshot`] |
//! | `GET /api/metrics/series` | [`SeriesView`] (sampled every `sample_interval_ms`) |
//! | `GET /api/summary` | [`Summary`]: the KPI cards' values and colours |
//! | `GET /api/alerts` | [`AlertsView`] |
//! | `GET /api/ui-config` | [`UiConfig`] |
//! | `GET /api/dataflow` | [`DataflowView`]: operators (records, batches, busy time, rates) and channels, from timely's logging |
//! | `GET /api/model/quality` | [`QualityReport`](view::QualityReport): live quality per model version (`run --outcomes`), with the monitoring action |
//! | `GET /metrics` | Prometheus text format 0.0.4, or OpenMetrics when `Accept` asks for it ([`prom`]) |
//! | `POST /api/retrain` | body [`RetrainRequest`]; 202 + [`RetrainTicket`], 400 bad request, 403 path outside the data directories, 409 busy |
//!
//! Errors are JSON: `{"error": "…"}`.
//!
//! Every mutating request (any method but `GET`/`HEAD`/`OPTIONS`) needs
//! `Authorization: Bearer <token>` ([`security`]): `401` without it or with a wrong one, `403`
//! when no token is configured (mutating requests are then disabled), `429` over the rate
//! limit; bodies over the size limit are `413`. [`serve_on`] refuses a non-loopback address
//! without a token. Every answer carries `Content-Security-Policy` (scripts and styles from
//! the server only, no inline script) and `X-Content-Type-Options: nosniff`.
//!
//! ```text
//! let listener = http::bind("127.0.0.1:8080").await?;          // ServeError::InUse → clear message
//! http::serve_on(listener, view, HttpUiConfig::default(), async { ctrl_c().await.ok(); }).await?;
//! ```

pub mod alerts;
pub mod assets;
pub mod monitor;
pub mod prom;
pub mod security;
pub mod settings;
pub mod view;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;

pub use alerts::{AlertName, AlertsConfig};
pub use monitor::{AlertsView, Monitor, SeriesView};
pub use security::{ApiSecurity, ApiToken, DataDirs, DataPathError, SecurityError};
pub use settings::{Band, DashboardConfig, HttpUiConfig, KpiStatus, KpiThresholds};
pub use view::{
    AggregateAnswer, AggregateRow, DataflowEdge, DataflowOperator, DataflowView, Dimension,
    EngineView, Health, HealthStatus, HistogramSnapshot, HistoryView, LiveModel, MetricsSnapshot,
    ModelVersion, ModelsView, RetrainError, RetrainRequest, RetrainTicket, VolumePoint,
};

/// Most decisions `/api/predictions/recent` returns.
pub const MAX_RECENT: usize = 1000;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process listens on the address.
    #[error("address {addr} is in use: pass --http-addr HOST:PORT or --http-addr off")]
    InUse {
        /// The address asked for.
        addr: String,
    },
    /// Any other failure to listen (bad address, no permission for a low port, …).
    #[error("cannot listen on {addr}: {source} (pass --http-addr HOST:PORT or --http-addr off)")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is out of range.
    #[error("invalid HTTP/dashboard configuration: {0}")]
    Config(#[from] settings::SettingsError),
    /// The security settings refuse to serve (non-loopback address without a token, …).
    #[error("{0}")]
    Security(#[from] SecurityError),
    /// The server failed while running.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Listens on `addr` (`HOST:PORT`; port 0 picks a free one).
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => ServeError::InUse {
                addr: addr.to_string(),
            },
            _ => ServeError::Bind {
                addr: addr.to_string(),
                source,
            },
        })
}

/// Binds `addr` and serves until `shutdown` completes. See [`serve_on`].
pub async fn serve(
    addr: &str,
    view: Arc<dyn EngineView>,
    cfg: HttpUiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    cfg.validate()?;
    let listener = bind(addr).await?;
    serve_on(listener, view, cfg, shutdown).await
}

/// Serves the API and dashboard on `listener` until `shutdown` completes, then finishes the
/// requests in flight. A sampler task inside reads [`EngineView::metrics`] and
/// [`EngineView::models`] every `dashboard.sample_interval_ms` for the time series and the
/// alert rules.
pub async fn serve_on(
    listener: TcpListener,
    view: Arc<dyn EngineView>,
    cfg: HttpUiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    cfg.validate()?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    security::check_exposure(&local.to_string(), cfg.api.token.as_ref())?;
    let interval = Duration::from_millis(cfg.dashboard.sample_interval_ms);
    let mutating = cfg.api.token.is_some();
    let (app, monitor) = app(Arc::clone(&view), cfg);
    tracing::info!("dashboard on http://{local}/ (API: /health, /api/aggregates?by=product, /api/predictions/recent, /api/models, /metrics)");
    if !mutating {
        tracing::info!(
            "POST /api/retrain is disabled (no API token): {}",
            security::HOW_TO_SET_TOKEN
        );
    }
    let sampler = tokio::spawn(sample_loop(view, monitor, interval));
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    sampler.abort();
    result.map_err(ServeError::Serve)
}

/// Samples the view forever (until aborted).
async fn sample_loop(view: Arc<dyn EngineView>, monitor: Arc<Monitor>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (m, models) = (view.metrics(), view.models());
        monitor.record(now_ms(), &m, &models);
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Clone)]
struct AppState {
    view: Arc<dyn EngineView>,
    cfg: Arc<HttpUiConfig>,
    monitor: Arc<Monitor>,
    limiter: Arc<security::RateLimiter>,
}

/// The router and its monitor, without a listener or sampler task (tests drive the monitor
/// with [`Monitor::record`] themselves).
pub fn app(view: Arc<dyn EngineView>, cfg: HttpUiConfig) -> (Router, Arc<Monitor>) {
    let monitor = Arc::new(Monitor::new(
        cfg.dashboard.sample_interval_ms,
        cfg.dashboard.series_capacity,
        cfg.alerts.clone(),
    ));
    let max_body = cfg.api.max_body_bytes;
    let state = AppState {
        view,
        limiter: Arc::new(security::RateLimiter::new(cfg.api.mutations_per_minute)),
        cfg: Arc::new(cfg),
        monitor: Arc::clone(&monitor),
    };
    let router = Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .route("/api/aggregates", get(aggregates))
        .route("/api/predictions/recent", get(recent))
        .route("/api/models", get(models))
        .route("/api/history", get(history))
        .route("/api/metrics", get(metrics_json))
        .route("/api/metrics/series", get(series))
        .route("/api/summary", get(summary))
        .route("/api/alerts", get(alerts_json))
        .route("/api/ui-config", get(ui_config))
        .route("/api/dataflow", get(dataflow))
        .route("/api/model/quality", get(quality))
        .route("/api/retrain", post(retrain))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outermost last: headers and JSON errors ← body limit ← authorization ← routes.
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), finish))
        .with_state(state);
    (router, monitor)
}

/// `Content-Security-Policy` of every answer: the dashboard loads its scripts, styles and
/// data from this server only, and runs no inline script (an injected `onerror=` would not
/// run even if a field escaped the page's text nodes).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Authorization and rate limit of mutating requests (every method but GET, HEAD, OPTIONS).
async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match security::authorize(s.cfg.api.token.as_ref(), auth) {
        security::AuthOutcome::Disabled => error(
            StatusCode::FORBIDDEN,
            format!(
                "{method} {path} changes the engine's state and is disabled because no API \
                 token is configured: {}; restart the engine and send \
                 `Authorization: Bearer <token>`",
                security::HOW_TO_SET_TOKEN
            ),
        ),
        outcome @ (security::AuthOutcome::Missing | security::AuthOutcome::Wrong) => {
            if let Err(wait) = s.limiter.failed.take(Instant::now()) {
                return too_many(wait, "failed authentications");
            }
            tracing::warn!(%method, %path, "refused a mutating request: {}", if outcome == security::AuthOutcome::Missing { "no bearer token" } else { "wrong bearer token" });
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{method} {path} needs `Authorization: Bearer <token>` with the engine's API \
                     token ({}): {}",
                    if outcome == security::AuthOutcome::Missing {
                        "the header is missing"
                    } else {
                        "the token sent is not it"
                    },
                    "`complaintflow retrain` sends the token it finds in COMPLAINTFLOW_API_TOKEN, [http] token_env, [http] token or --api-token"
                ),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"complaintflow\""),
            );
            r
        }
        security::AuthOutcome::Ok => {
            if let Err(wait) = s.limiter.authorized.take(Instant::now()) {
                return too_many(wait, "mutating requests");
            }
            next.run(req).await
        }
    }
}

fn too_many(wait: Duration, what: &str) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many {what}: retry in {secs} s (limit: [http] mutations_per_minute)"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Security headers on every answer; the body limit's plain-text `413` as a JSON error.
async fn finish(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        r = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body over {} bytes (limit: [http] max_body_bytes)",
                s.cfg.api.max_body_bytes
            ),
        );
    }
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route {method} {}: the dashboard is at /, the API under /api (see /api/ui-config), metrics at /metrics", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}: the API answers GET, and POST on /api/retrain",
            uri.path()
        ),
    )
}

async fn index() -> Response {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(assets::INDEX_HTML),
    )
        .into_response()
}

async fn asset(path: Result<Path<String>, PathRejection>) -> Response {
    let path = match path {
        Ok(Path(p)) => p,
        Err(e) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no such asset ({}): the dashboard's files are under /assets/",
                    e.body_text()
                ),
            )
        }
    };
    match assets::find(&path) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no asset {path:?}")),
    }
}

async fn health(State(s): State<AppState>) -> Response {
    let h = s.view.health();
    let code = if h.status == HealthStatus::Failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(h)).into_response()
}

/// A query string that does not decode (bad percent-encoding, not UTF-8): 400 as JSON.
fn bad_query(e: QueryRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "{}: send UTF-8, percent-encoded parameters such as ?by=product&top=10",
            e.body_text()
        ),
    )
}

/// Parses an optional non-negative integer query parameter.
fn parse_count(q: &HashMap<String, String>, key: &str) -> Result<Option<usize>, String> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("{key}={v:?} is not a non-negative integer")),
    }
}

async fn aggregates(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let by = match q.get("by").map(|b| b.trim().parse::<Dimension>()) {
        None => Dimension::Product,
        Some(Ok(d)) => d,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let top = match parse_count(&q, "top") {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    Json(s.view.aggregates(by, top)).into_response()
}

async fn recent(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let limit = match parse_count(&q, "limit") {
        Ok(None) => 50,
        Ok(Some(n)) if (1..=MAX_RECENT).contains(&n) => n,
        Ok(Some(n)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit={n}: use 1..={MAX_RECENT}"),
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let priorities: Option<Vec<&str>> = q.get("priority").map(|p| {
        p.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    });
    let escalated = match q.get("escalated").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(v) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("escalated={v:?}: use true or false"),
            )
        }
    };
    let filtered = priorities.is_some() || escalated.is_some();
    let rows = s.view.recent(if filtered { MAX_RECENT } else { limit });
    let out: Vec<serde_json::Value> = rows
        .into_iter()
        .filter(|d| {
            let pri_ok = priorities.as_ref().is_none_or(|ps| {
                d.get("priority")
                    .and_then(|p| p.as_str())
                    .is_some_and(|p| ps.contains(&p))
            });
            let esc_ok =
                escalated.is_none_or(|e| d.get("escalate").and_then(|v| v.as_bool()) == Some(e));
            pri_ok && esc_ok
        })
        .take(limit)
        .collect();
    Json(out).into_response()
}

async fn models(State(s): State<AppState>) -> Json<ModelsView> {
    Json(s.view.models())
}

async fn history(State(s): State<AppState>) -> Json<HistoryView> {
    Json(s.view.history())
}

async fn metrics_json(State(s): State<AppState>) -> Json<MetricsSnapshot> {
    Json(s.view.metrics())
}

async fn dataflow(State(s): State<AppState>) -> Json<DataflowView> {
    Json(s.view.dataflow())
}

async fn quality(State(s): State<AppState>) -> Json<view::QualityReport> {
    Json(s.view.quality())
}

async fn series(State(s): State<AppState>) -> Json<SeriesView> {
    Json(s.monitor.series())
}

async fn alerts_json(State(s): State<AppState>) -> Json<AlertsView> {
    Json(s.monitor.alerts())
}

/// `GET /api/summary`: the KPI cards.
///
/// `processed` and `dead_letters` are the engine's counters; `escalation_pct` and `mean_score`
/// come from the product aggregate, so they are consistent with `/api/aggregates` as of
/// `as_of`; rates come from the sampled series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Epoch of the aggregate-based values.
    pub as_of: Option<u64>,
    /// Records that reached a prediction or a dead letter.
    pub processed: u64,
    /// Decisions (sum of the product aggregate's counts).
    pub decisions: u64,
    /// Escalated decisions (from the product aggregate).
    pub escalations: u64,
    /// `100 · escalations / decisions`.
    pub escalation_pct: Option<f64>,
    /// Mean predicted P(successful resolution) over all decisions.
    pub mean_score: Option<f64>,
    /// Dead letters over all reasons.
    pub dead_letters: u64,
    /// `100 · dead_letters / processed`.
    pub dead_letter_pct: Option<f64>,
    /// Records processed per minute over the last alert window.
    pub rate_per_min: Option<f64>,
    /// The same over the window before.
    pub rate_prev_per_min: Option<f64>,
    /// Change of the rate against the previous window, percent.
    pub rate_change_pct: Option<f64>,
    /// Whether the source has input waiting.
    pub input_waiting: bool,
    /// Card colours.
    pub status: SummaryStatus,
}

/// Colours of the KPI cards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryStatus {
    /// Rate card.
    pub rate: KpiStatus,
    /// Escalation card.
    pub escalation: KpiStatus,
    /// Mean score card.
    pub mean_score: KpiStatus,
    /// Dead letters card.
    pub dead_letters: KpiStatus,
}

/// Computes the KPI summary from the view, the monitor's rates and the thresholds.
pub fn summarize(view: &dyn EngineView, monitor: &Monitor, kpi: &KpiThresholds) -> Summary {
    let m = view.metrics();
    let agg = view.aggregates(Dimension::Product, None);
    let decisions = agg.total_count();
    let escalations: u64 = agg.rows.iter().map(|r| r.escalations).sum();
    let escalation_pct = (decisions > 0).then(|| escalations as f64 * 100.0 / decisions as f64);
    let mean_score = agg.mean_score();
    let dead_letters = m.dead_letters_total();
    let dead_letter_pct =
        (m.records_processed > 0).then(|| dead_letters as f64 * 100.0 / m.records_processed as f64);
    let (rate, prev) = monitor.rates();
    let rate_change_pct = match (rate, prev) {
        (Some(r), Some(p)) if p > 0.0 => Some((r - p) * 100.0 / p),
        _ => None,
    };
    let status = SummaryStatus {
        rate: if m.input_waiting {
            kpi.rate_per_min.status(rate)
        } else {
            KpiStatus::Idle
        },
        escalation: kpi.escalation_pct.status(escalation_pct),
        mean_score: kpi.mean_score.status(mean_score),
        dead_letters: kpi.dead_letter_pct.status(dead_letter_pct.or(Some(0.0))),
    };
    Summary {
        as_of: agg.as_of,
        processed: m.records_processed,
        decisions,
        escalations,
        escalation_pct,
        mean_score,
        dead_letters,
        dead_letter_pct,
        rate_per_min: rate,
        rate_prev_per_min: prev,
        rate_change_pct,
        input_waiting: m.input_waiting,
        status,
    }
}

async fn summary(State(s): State<AppState>) -> Json<Summary> {
    Json(summarize(s.view.as_ref(), &s.monitor, &s.cfg.dashboard.kpi))
}

/// `GET /api/ui-config`: what the page needs to know about the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UiConfig {
    /// Auto-refresh period, ms (0 = off).
    pub refresh_ms: u64,
    /// Sampling period of the series, ms.
    pub sample_interval_ms: u64,
    /// Bars per chart.
    pub top_n: usize,
    /// Rows of the high-priority table.
    pub table_rows: usize,
    /// Priorities the table shows.
    pub high_priorities: Vec<String>,
    /// KPI colour bands.
    pub kpi: KpiThresholds,
    /// Alert rules' thresholds.
    pub alerts: AlertsConfig,
}

async fn ui_config(State(s): State<AppState>) -> Json<UiConfig> {
    let d = &s.cfg.dashboard;
    Json(UiConfig {
        refresh_ms: (d.refresh_secs * 1000.0).round() as u64,
        sample_interval_ms: d.sample_interval_ms,
        top_n: d.top_n,
        table_rows: d.table_rows,
        high_priorities: d.high_priorities.clone(),
        kpi: d.kpi.clone(),
        alerts: s.cfg.alerts.clone(),
    })
}

async fn prometheus(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let scrape = prom::Scrape {
        health: s.view.health(),
        metrics: s.view.metrics(),
        models: s.view.models(),
        as_of: s.view.aggregates(Dimension::Product, Some(0)).as_of,
        alerts: s.monitor.firing(),
        psi: s.monitor.last_psi(),
        quality: s.view.quality(),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match prom::encode(scrape) {
        Ok(text) if prom::wants_openmetrics(accept) => {
            ([(header::CONTENT_TYPE, prom::CONTENT_TYPE)], text).into_response()
        }
        Ok(text) => (
            [(header::CONTENT_TYPE, prom::TEXT_CONTENT_TYPE)],
            prom::to_text_004(&text),
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        ),
    }
}

async fn retrain(
    State(s): State<AppState>,
    body: Result<Json<RetrainRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            // 413 when the body is over the limit, 400 otherwise.
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body over {} bytes (limit: [http] max_body_bytes)",
                        s.cfg.api.max_body_bytes
                    ),
                );
            }
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}: send JSON {{\"path\": \"FILE\", \"format\": \"auto|json|jsonl|csv|api\"}}",
                    e.body_text()
                ),
            );
        }
    };
    if req.path.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "path is empty: send {\"path\": \"FILE\"}",
        );
    }
    // Only files inside the data directories, by their canonical path (no `..`, no symlink
    // out); the engine reads the canonical path, not the one sent.
    let path = match s.cfg.api.data_dirs.resolve(req.path.trim()) {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                DataPathError::NotFound { .. } | DataPathError::NotAFile { .. } => {
                    StatusCode::BAD_REQUEST
                }
                DataPathError::Outside { .. } | DataPathError::NoDataDirs => StatusCode::FORBIDDEN,
            };
            tracing::warn!("refused POST /api/retrain: {e}");
            return error(status, e.to_string());
        }
    };
    let Some(path) = path.to_str().map(String::from) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "path {:?} resolves to a name that is not UTF-8: rename the file",
                req.path
            ),
        );
    };
    let req = RetrainRequest {
        path,
        format: req.format,
    };
    match s.view.retrain(req) {
        Ok(ticket) => {
            tracing::info!(path = %ticket.path, id = %ticket.id, "retraining accepted");
            (StatusCode::ACCEPTED, Json(ticket)).into_response()
        }
        Err(e @ RetrainError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ RetrainError::Busy(_)) => error(StatusCode::CONFLICT, e.to_string()),
    }
}
