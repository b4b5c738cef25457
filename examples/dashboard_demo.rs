//! Serves the dashboard over a **synthetic** engine (generated data, not real complaints), to
//! develop the page without the dataflow:
//!
//! ```text
//! cargo run --example dashboard_demo -- [--addr 127.0.0.1:8080] [--rate 200] [--total 20000]
//! ```
//!
//! `--rate` is records per second (default 200; `0` = everything at once). Ctrl-C stops it.

use complaintflow::http;
#[allow(dead_code)]
#[path = "../tests/support/synthetic_view.rs"]
mod synthetic_view;

use std::sync::Arc;

use synthetic_view::{SyntheticConfig, SyntheticView};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let mut addr = "127.0.0.1:8080".to_string();
    let mut cfg = SyntheticConfig {
        per_sec: Some(200.0),
        total: 20_000,
        ..SyntheticConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match a.as_str() {
            "--addr" => addr = value("--addr")?,
            "--rate" => {
                let r: f64 = value("--rate")?.parse()?;
                cfg.per_sec = (r > 0.0).then_some(r);
            }
            "--total" => cfg.total = value("--total")?.parse()?,
            "-h" | "--help" => {
                println!("dashboard_demo [--addr HOST:PORT] [--rate RECORDS_PER_SEC] [--total N]  (synthetic data)");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let view = Arc::new(SyntheticView::new(cfg));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = http::bind(&addr).await?;
        eprintln!(
            "SYNTHETIC demo data (not real complaints): dashboard on http://{}/",
            listener.local_addr()?
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        http::serve_on(listener, view, http::HttpUiConfig::default(), shutdown).await?;
        anyhow::Ok(())
    })
}
