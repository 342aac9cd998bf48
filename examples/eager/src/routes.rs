//! The HTTP routes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use matroska_core::{Error, Origin};
use serde_json::{Value, json};

use crate::App;

pub(crate) fn router(app: App) -> axum::Router {
    axum::Router::new()
        .route("/data/{kind}", get(data))
        .route("/stats", get(stats))
        .with_state(app)
}

fn rfc3339(time: Option<SystemTime>) -> Value {
    time.map_or(Value::Null, |t| {
        Value::from(DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true))
    })
}

async fn data(
    State(app): State<App>,
    Path(kind): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let query = Value::Object(
        query
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect(),
    );
    match app.fetchers.fetch_json(&kind, query).await {
        Ok(fetched) => {
            let status = match fetched.origin {
                Origin::Cache => "hit",
                Origin::Stale => "stale",
                Origin::Shared => "shared",
                _ => "miss",
            };
            let body = json!({
                "data": fetched.value,
                "last_retrieved": rfc3339(fetched.last_retrieved),
                "last_modified": rfc3339(fetched.last_modified),
            });
            let mut response = Json(body).into_response();
            response
                .headers_mut()
                .insert("x-cache", HeaderValue::from_static(status));
            response
        }
        Err(err) => {
            let status = match &err {
                Error::UnknownFetcher { .. } => StatusCode::NOT_FOUND,
                Error::InvalidQuery { .. } | Error::InvalidKey { .. } => StatusCode::BAD_REQUEST,
                Error::Loader(_) => StatusCode::BAD_GATEWAY,
                Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status.is_server_error() {
                tracing::warn!(error = %err, kind, "request failed");
            }
            (status, Json(json!({ "error": err.to_string() }))).into_response()
        }
    }
}

async fn stats(State(app): State<App>) -> Json<Value> {
    let s = app.stats();
    Json(json!({
        "hits": s.hits,
        "misses": s.misses,
        "loads": s.loads,
        "fills": s.fills,
        "fills_rejected": s.fills_rejected,
        "refreshes": s.refreshes,
        "refreshes_failed": s.refreshes_failed,
        "refreshes_skipped": s.refreshes_skipped,
        "stale_served": s.stale_served,
    }))
}
