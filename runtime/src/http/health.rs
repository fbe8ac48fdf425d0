//! Health endpoints for load balancers and orchestrators, served by [`Gatekeeper`] unless
//! turned off with [`Gatekeeper::health_checks`]:
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /healthz` | `200 {"status":"ok"}` while the process serves requests (liveness) |
//! | `GET /readyz` | `200 {"status":"ready"}` when every mounted authorization server's store answers and its signing keys are loaded; `503 {"status":"unavailable","reason":...}` otherwise (readiness) |
//!
//! Both are unauthenticated, answer any `Host`, carry `Cache-Control: no-store`, are never
//! audited and never count toward lockouts. `/readyz` asks the stores at most once a second,
//! whatever the request rate: a probe (or a flood of them) costs one small query per second.
//!
//! [`Gatekeeper`]: crate::Gatekeeper
//! [`Gatekeeper::health_checks`]: crate::Gatekeeper::health_checks

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// The liveness path.
pub const LIVENESS_PATH: &str = "/healthz";
/// The readiness path.
pub const READINESS_PATH: &str = "/readyz";

/// How long a readiness answer is reused.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Something `/readyz` asks whether the server can serve (an authorization server's store and
/// keys; later backends add their own).
pub(crate) trait ReadinessCheck: Send + Sync + 'static {
    /// `Err` says what is wrong (never a secret).
    fn ready(&self) -> futures::future::BoxFuture<'_, Result<(), String>>;
}

/// What `/readyz` checks, and its last answer.
struct Readiness {
    checks: Vec<Arc<dyn ReadinessCheck>>,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
    checking: AtomicBool,
}

impl Readiness {
    /// The last answer if it is recent (or another request is producing a new one), else a
    /// fresh one. The lock is never held across the store queries.
    async fn check(&self) -> Result<(), String> {
        let cached = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((at, result)) = &cached
            && (at.elapsed() < CHECK_EVERY || self.checking.load(Ordering::Acquire))
        {
            return result.clone();
        }
        if self.checking.swap(true, Ordering::AcqRel) {
            // Another request is checking right now and there is no answer yet: say so
            // rather than pile up queries.
            return cached.map_or_else(|| Err("starting".into()), |(_, r)| r);
        }
        let mut result = Ok(());
        for check in &self.checks {
            if let Err(error) = check.ready().await {
                result = Err(error);
                break;
            }
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), result.clone()));
        self.checking.store(false, Ordering::Release);
        result
    }
}

/// The health routes; `/readyz` asks `checks`.
pub(crate) fn routes(checks: Vec<Arc<dyn ReadinessCheck>>) -> Router {
    let readiness = Arc::new(Readiness {
        checks,
        last: Mutex::new(None),
        checking: AtomicBool::new(false),
    });
    Router::new()
        .route(
            LIVENESS_PATH,
            get(|| async { answer(StatusCode::OK, json!({"status": "ok"})) }),
        )
        .route(READINESS_PATH, get(ready))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> Response {
    match readiness.check().await {
        Ok(()) => answer(StatusCode::OK, json!({"status": "ready"})),
        Err(reason) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "reason": reason}),
        ),
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
