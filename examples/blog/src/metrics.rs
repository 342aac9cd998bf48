//! `GET /metrics`: the cache's metrics in the Prometheus text format.
//!
//! The process installs one Prometheus recorder (`metrics-exporter-prometheus`) the first time an
//! [`App`](crate::App) connects, before it builds its cache; every cache of the process reports
//! to it (see `matroska_core`'s "Observability" docs for the metrics and their labels).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::App;

/// Buckets of the store latency histogram, in seconds: 50 µs to about 3 s, doubling.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025_6,
    0.051_2, 0.102_4, 0.204_8, 0.409_6, 0.819_2, 3.276_8,
];

/// The process's Prometheus recorder, installed on first use; `None` when another recorder was
/// installed first (the app then serves no metrics, and says so).
pub(crate) fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".to_owned()),
                    &LATENCY_BUCKETS,
                )
                .and_then(PrometheusBuilder::install_recorder);
            installed
                .inspect_err(|err| tracing::warn!(error = %err, "no /metrics: cannot install the Prometheus recorder"))
                .ok()
        })
        .as_ref()
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(app): State<App>) -> Response {
    let Some(handle) = app.metrics else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded\n",
        )
            .into_response();
    };
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
