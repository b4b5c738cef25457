//! `complaintflow query …` and `complaintflow retrain`: clients of a running engine's HTTP API.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::http::{AggregateAnswer, ModelsView, RetrainRequest, RetrainTicket};
use anyhow::{bail, Context, Result};

use crate::cli::{EngineAddr, QueryCommand, RetrainArgs};
use crate::config::Config;

fn base(engine: &EngineAddr, config: &Config) -> String {
    let addr = engine
        .addr
        .clone()
        .unwrap_or_else(|| config.http.addr.clone());
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Reads an answer: JSON on 2xx, the server's `{"error": …}` otherwise.
fn answer(
    url: &str,
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<serde_json::Value> {
    let mut resp = resp.map_err(|e| match e {
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => anyhow::anyhow!(
            "no complaintflow engine answers at {url} ({e}): start one with `complaintflow run`, or pass --addr HOST:PORT"
        ),
        e => anyhow::anyhow!("request to {url} failed: {e}"),
    })?;
    let status = resp.status();
    let body: serde_json::Value = resp.body_mut().read_json().with_context(|| {
        format!(
            "{url} answered {status} with a body that is not JSON: is this a complaintflow engine?"
        )
    })?;
    if !status.is_success() {
        let msg = body["error"].as_str().unwrap_or("no message");
        bail!("{url} answered {status}: {msg}");
    }
    Ok(body)
}

fn get(url: &str) -> Result<serde_json::Value> {
    answer(url, agent().get(url).call())
}

/// `complaintflow query …`
pub fn query(q: QueryCommand, config: &Config) -> Result<ExitCode> {
    match q {
        QueryCommand::Aggregates {
            by,
            top,
            json,
            engine,
        } => {
            let mut url = format!("{}/api/aggregates?by={by}", base(&engine, config));
            if let Some(n) = top {
                url.push_str(&format!("&top={n}"));
            }
            let v = get(&url)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let a: AggregateAnswer =
                serde_json::from_value(v).context("unexpected aggregate answer")?;
            print_table(&a)?;
        }
        QueryCommand::Recent { limit, engine } => {
            let v = get(&format!(
                "{}/api/predictions/recent?limit={limit}",
                base(&engine, config)
            ))?;
            for d in v.as_array().into_iter().flatten() {
                outln!("{d}");
            }
        }
        QueryCommand::Models { engine } => {
            let v = get(&format!("{}/api/models", base(&engine, config)))?;
            let m: ModelsView = serde_json::from_value(v).context("unexpected models answer")?;
            outln!(
                "production: {}",
                m.production.as_deref().unwrap_or("(none)")
            );
            outln!(
                "{:<8} {:<11} {:>8}  created",
                "version",
                "stage",
                "test AUC"
            );
            for v in &m.versions {
                outln!(
                    "{:<8} {:<11} {:>8}  {}",
                    v.version,
                    v.stage,
                    v.test_auc.map_or("-".to_string(), |a| format!("{a:.4}")),
                    v.created_at.as_deref().unwrap_or("-")
                );
            }
            for l in &m.live {
                outln!(
                    "serving {} on {:.0}% of traffic: {} predictions",
                    l.version,
                    l.share * 100.0,
                    l.predictions
                );
            }
        }
        QueryCommand::Quality { json, engine } => {
            let v = get(&format!("{}/api/model/quality", base(&engine, config)))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let q: crate::http::view::QualityReport =
                serde_json::from_value(v).context("unexpected quality answer")?;
            print_quality(&q)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_quality(q: &crate::http::view::QualityReport) -> Result<()> {
    if !q.enabled {
        outln!(
            "the engine reads no outcomes: start it with `run --outcomes file:PATH | kafka:TOPIC`"
        );
        return Ok(());
    }
    let as_of = q.as_of.map_or("no epoch complete yet".to_string(), |e| {
        format!("as of epoch {e}")
    });
    outln!(
        "model quality ({as_of}; {} outcome records read, {} label changes)",
        q.outcomes_read,
        q.label_changes
    );
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
    outln!(
        "drift (PSI against the training data): score {}, product {}, state {}",
        f(q.drift.score_psi),
        f(q.drift.product_psi),
        f(q.drift.state_psi)
    );
    outln!(
        "{:<10} {:>9} {:>9} {:>7} {:>7} {:>9} {:>7} {:>7} {:>8} {:>7}  action",
        "version",
        "labelled",
        "positive",
        "auc",
        "pr_auc",
        "precision",
        "recall",
        "f1",
        "accuracy",
        "ece"
    );
    for (v, m) in &q.versions {
        let o = &m.overall;
        outln!(
            "{:<10} {:>9} {:>9} {:>7} {:>7} {:>9} {:>7} {:>7} {:>8} {:>7}  {}{} ({})",
            v,
            o.labelled,
            o.positives,
            f(o.auc),
            f(o.pr_auc),
            f(o.precision),
            f(o.recall),
            f(o.f1),
            f(o.accuracy),
            f(o.ece),
            m.action,
            m.priority
                .as_deref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default(),
            m.reason
        );
    }
    Ok(())
}

fn print_table(a: &AggregateAnswer) -> Result<()> {
    let as_of = a.as_of.map_or("no epoch complete yet".to_string(), |e| {
        format!("as of epoch {e}")
    });
    outln!("by {} ({as_of}, {} rows)", a.by, a.rows.len());
    let width = a
        .rows
        .iter()
        .map(|r| r.key.chars().count())
        .max()
        .unwrap_or(3)
        .clamp(3, 60);
    outln!(
        "{:<width$}  {:>9}  {:>11}  {:>9}  {:>10}",
        "key",
        "count",
        "escalations",
        "esc. rate",
        "mean score"
    );
    for r in &a.rows {
        let key: String = r.key.chars().take(width).collect();
        outln!(
            "{key:<width$}  {:>9}  {:>11}  {:>8.2}%  {:>10.4}",
            r.count,
            r.escalations,
            r.escalation_rate * 100.0,
            r.mean_score
        );
    }
    Ok(())
}

/// `complaintflow retrain`
pub fn retrain(a: RetrainArgs, config: &Config) -> Result<ExitCode> {
    let base = base(&a.engine, config);
    let path = std::fs::canonicalize(&a.data).with_context(|| {
        format!(
            "retraining data {} not found: pass --data FILE",
            a.data.display()
        )
    })?;
    let before: ModelsView = serde_json::from_value(get(&format!("{base}/api/models"))?)?;
    let req = RetrainRequest {
        path: path.display().to_string(),
        format: Some(a.input_format.clone()),
    };
    let url = format!("{base}/api/retrain");
    let mut post = agent().post(&url);
    // The engine refuses mutating requests without its API token (403 when it has none).
    if let Some(t) = config.http.api_token_secret() {
        post = post.header("Authorization", format!("Bearer {t}"));
    }
    let v = answer(&url, post.send_json(&req))?;
    let ticket: RetrainTicket = serde_json::from_value(v).context("unexpected retrain answer")?;
    outln!("retraining accepted ({}): {}", ticket.id, ticket.path);
    if !a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let t0 = Instant::now();
    let mut seen = before.retraining.len();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let m: ModelsView = serde_json::from_value(get(&format!("{base}/api/models"))?)?;
        for line in m.retraining.iter().skip(seen) {
            outln!("  {line}");
            if line.contains("failed") || line.contains("refused") {
                return Ok(ExitCode::from(1));
            }
        }
        seen = m.retraining.len().max(seen);
        if m.versions.len() > before.versions.len()
            && m.live
                .iter()
                .any(|l| !before.live.iter().any(|b| b.version == l.version))
        {
            let new: Vec<&str> = m.live.iter().map(|l| l.version.as_str()).collect();
            outln!(
                "serving {} after {:.1} s",
                new.join(", "),
                t0.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
}
