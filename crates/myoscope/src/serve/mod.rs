//! `myoscope serve`: the clinic's local web app and JSON API.
//!
//! One process beside the microscope PC: it loads a trained ensemble (or one run) once, listens
//! on loopback by default, serves a page that works offline (its HTML, script and style are
//! compiled into the binary), and answers `POST /v1/diagnose`, `/v1/explain`, `/v1/segment`,
//! `GET /v1/models` and `GET /healthz` (described in `openapi.json`, served at `/openapi.json`).
//!
//! - [`config`]: the limits (upload bytes, pixels, photos, queue, timeouts).
//! - [`upload`]: content sniffing, header-only size checks, channel and stain checks, decoding.
//! - [`worker`]: the bounded queue (503 + Retry-After when full) and the inference threads.
//! - [`classifier`], [`segmenter`]: what a worker computes, reusing `diagnose`, `explain` and
//!   `segmentation`.
//! - [`routes`]: the HTTP handlers; [`model_info`]: what `/v1/models` says about the model.
pub mod classifier;
pub mod config;
pub mod error;
pub mod memfile;
pub mod model_info;
pub mod pictures;
pub mod routes;
pub mod segmenter;
pub mod upload;
pub mod worker;

use anyhow::{Context, Result};
use config::ServeConfig;
use model_info::{ModelInfo, ModelSource};
use std::io::Write;
use std::sync::Arc;

/// Loads the models, binds, prints `listening on http://ADDR` and serves until Ctrl-C.
pub fn run(config: ServeConfig) -> Result<()> {
    let info = ModelInfo::describe(&config.model, &ModelSource::resolve(&config.model)?)?;
    let opened = worker::Queue::start(&config)?;
    let segment_model = config.segment_model.as_ref().map(|dir| {
        serde_json::json!({
            "name": dir
                .canonicalize()
                .unwrap_or_else(|_| dir.clone())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
            "channel": opened.segment_channel,
        })
    });
    let state = Arc::new(routes::AppState {
        info,
        segment_model,
        queue: opened.queue,
        limits: config.limits.clone(),
        token: config.token.clone(),
        min_side: opened.min_side,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        let addr = listener.local_addr()?;
        println!(
            "myoscope serve: model {} (version {}, engine {}), listening on http://{addr}",
            state.info.name,
            state.info.version,
            config.engine.name()
        );
        if !addr.ip().is_loopback() && config.token.is_none() {
            println!("warning: listening beyond this computer without --token-file: anyone on the network can use the API");
        }
        std::io::stdout().flush().ok();
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the HTTP server stopped")
    })
}
