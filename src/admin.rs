//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, `/status`.
//!
//! Loopback by default (`[admin] listen = "127.0.0.1:9187"`): `/status` names slots,
//! databases and errors, so exposing it is a decision. With `[admin] token` every endpoint
//! but `/healthz` wants `Authorization: Bearer <token>` (liveness probes carry no secrets).
//!
//! - `/healthz`: 200 while the process runs.
//! - `/readyz`: 200 while the pipeline streams and no critical alert concerns walrus's slot;
//!   503 with the reason otherwise.
//! - `/metrics`: Prometheus text format, rendered from the process's recorder (the
//!   exporter's own HTTP listener is not used).
//! - `/status`: JSON: state, slot, LSNs, lag, per-table event counts, sink progress, every
//!   watched slot, firing alerts.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use walrus_core::config::Secret;
use walrus_core::status::Status;
use walrus_core::telemetry;

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    token: Option<Secret>,
}

/// Binds the listener (so a taken port fails `walrus run` at once) and returns the server
/// future, which ends when `shutdown` turns true.
pub async fn bind(
    listen: SocketAddr,
    token: Option<Secret>,
    metrics: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let state = AppState { metrics, token };
    let app = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state);
    tracing::info!(listen = %local, "admin server listening");
    Ok(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    })
}

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.as_bytes(), token.expose().as_bytes()));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readyz() -> Response {
    let (ready, reason) = Status::global().ready();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{reason}\n")).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Response {
    let snapshot = Status::global().snapshot();
    let mut value = serde_json::to_value(&snapshot).unwrap_or_default();
    value["tables"] =
        serde_json::to_value(table_counts(&state.metrics.render())).unwrap_or_default();
    Json(value).into_response()
}

/// Per-table, per-op event counts, read back from the `walrus_events_total` counter (the
/// counter is the one place they are counted; the hot path pays for no second count).
pub fn table_counts(rendered: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let prefix = format!("{}{{", telemetry::EVENTS_TOTAL);
    for line in rendered.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
            let end = labels[start..].find('"')? + start;
            Some(labels[start..end].to_string())
        };
        if let (Some(table), Some(op), Ok(n)) =
            (label("table"), label("op"), value.trim().parse::<f64>())
        {
            *out.entry(table).or_default().entry(op).or_default() += n as u64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_counts_from_prometheus_text() {
        let text =
            "# HELP walrus_events_total Change events.\n# TYPE walrus_events_total counter\n\
walrus_events_total{table=\"public.orders\",op=\"c\"} 3\n\
walrus_events_total{op=\"u\",table=\"public.orders\"} 2\n\
walrus_events_total_other 5\n";
        let c = table_counts(text);
        assert_eq!(c["public.orders"]["c"], 3);
        assert_eq!(c["public.orders"]["u"], 2);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
