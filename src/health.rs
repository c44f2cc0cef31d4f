//! Dependency-aware health: the database and (when configured) Redis are
//! checked every `health_interval`; the outcome drives `grpc.health.v1`
//! (the server as a whole, `""`, and `monitor.v1.MonitorService`) and the
//! HTTP `/readyz`. `/healthz` only says the process serves.
//!
//! NOT_SERVING while either is unreachable, or while the database answers
//! but refuses writes (each check writes one row: a read-only file or
//! database would otherwise look ready while every Register and AddUrl
//! fails), SERVING again after: a load balancer then sends calls to
//! instances that can answer them. Each check also samples the buffer
//! backlog and the database pool for `/metrics`.
//!
//! A prober that doubts its own network (`prober::doubt`) shows in the
//! `/readyz` body (`"prober": {"degraded": ["canary"]}`), in
//! `monitor_prober_degraded` and as NOT_SERVING for the `grpc.health.v1`
//! service `monitor.prober` (refreshed at each check), but leaves readiness
//! alone: the API, served
//! from the database, is as good as ever, so Envoy (which checks
//! `grpc.health.v1` for the service) keeps routing calls to it. The probes
//! are what suffer, and they are recorded `UNKNOWN`, not `DOWN`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    buffer::Buffer,
    metrics::{Metrics, PoolLabels},
    proto::monitor::v1::monitor_service_server::SERVICE_NAME,
    store,
};

/// The `grpc.health.v1` service name saying whether the prober trusts its
/// own network: NOT_SERVING while it doubts. Envoy checks
/// `monitor.v1.MonitorService`, so it keeps routing API calls.
pub const PROBER_HEALTH_SERVICE: &str = "monitor.prober";

/// How long one dependency may take to answer a check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Health {
    db: DatabaseConnection,
    buffer: Arc<dyn Buffer>,
    redis_configured: bool,
    reporter: HealthReporter,
    metrics: Arc<Metrics>,
    db_ok: AtomicBool,
    db_writable: AtomicBool,
    redis_ok: AtomicBool,
}

impl Health {
    pub fn new(
        db: DatabaseConnection,
        buffer: Arc<dyn Buffer>,
        redis_configured: bool,
        reporter: HealthReporter,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            buffer,
            redis_configured,
            reporter,
            metrics,
            db_ok: AtomicBool::new(true),
            db_writable: AtomicBool::new(true),
            redis_ok: AtomicBool::new(true),
        }
    }

    /// Whether every dependency answered the last check.
    pub fn ready(&self) -> bool {
        self.db_ok.load(Ordering::Relaxed)
            && self.db_writable.load(Ordering::Relaxed)
            && self.redis_ok.load(Ordering::Relaxed)
    }

    /// The last check, for `/readyz`.
    pub fn report(&self) -> Value {
        let state = |ok: bool| if ok { "ok" } else { "unreachable" };
        json!({
            "ready": self.ready(),
            "database": if !self.db_ok.load(Ordering::Relaxed) {
                "unreachable"
            } else if !self.db_writable.load(Ordering::Relaxed) {
                "refuses writes"
            } else {
                "ok"
            },
            "redis": if self.redis_configured {
                state(self.redis_ok.load(Ordering::Relaxed))
            } else {
                "not configured (in-process buffer)"
            },
            "prober": self.prober_report(),
        })
    }

    /// The prober's trust in its own network, as the metrics say: `ok`, or
    /// `degraded` with why. It does not make the instance unready: the API
    /// answers all the same (see the module's documentation).
    fn prober_report(&self) -> Value {
        let reasons = self.prober_degraded();
        if reasons.is_empty() {
            json!("ok")
        } else {
            json!({ "degraded": reasons })
        }
    }

    /// Why the prober doubts its own network (empty: it does not).
    fn prober_degraded(&self) -> Vec<&'static str> {
        crate::prober::doubt::Reason::ALL
            .into_iter()
            .filter(|r| {
                self.metrics
                    .doubt
                    .degraded
                    .get_or_create(&crate::metrics::ReasonLabels { reason: r.label() })
                    .get()
                    > 0
            })
            .map(crate::prober::doubt::Reason::label)
            .collect()
    }

    /// Checks every dependency once, updates the health service, the
    /// readiness and the sampled gauges; returns whether all answered.
    pub async fn check(&self) -> bool {
        let db_ok = tokio::time::timeout(CHECK_TIMEOUT, self.db.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        let db_writable = if db_ok {
            let now_ms = chrono::Utc::now().timestamp_millis();
            match tokio::time::timeout(CHECK_TIMEOUT, store::check_writable(&self.db, now_ms)).await
            {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    if self.db_writable.load(Ordering::Relaxed) {
                        tracing::error!(error = %e, "the database refuses writes");
                    }
                    false
                }
                Err(_) => false,
            }
        } else {
            // Unreachable says more; whether it takes writes is unknown.
            true
        };
        let backlog = tokio::time::timeout(CHECK_TIMEOUT, self.buffer.backlog()).await;
        let redis_ok = match backlog {
            Ok(Ok(n)) => {
                self.metrics
                    .buffer_backlog
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
                true
            }
            _ => false,
        };
        self.sample_pool();
        let before = self.ready();
        self.db_ok.store(db_ok, Ordering::Relaxed);
        self.db_writable.store(db_writable, Ordering::Relaxed);
        self.redis_ok.store(redis_ok, Ordering::Relaxed);
        let ready = self.ready();
        let prober = if self.prober_degraded().is_empty() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter
            .set_service_status(PROBER_HEALTH_SERVICE, prober)
            .await;
        self.set(if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        })
        .await;
        if ready != before {
            if ready {
                tracing::info!("dependencies reachable again: SERVING");
            } else {
                tracing::error!(
                    database_ok = db_ok,
                    database_writable = db_writable,
                    redis_ok,
                    "a dependency is unreachable: NOT_SERVING"
                );
            }
        }
        ready
    }

    /// Reports `status` for the server and for MonitorService.
    pub async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(SERVICE_NAME, status).await;
    }

    fn sample_pool(&self) {
        let Some((size, idle)) = store::pool_usage(&self.db) else {
            return;
        };
        let gauge = |state| {
            self.metrics
                .db_pool
                .get_or_create(&PoolLabels { state })
                .clone()
        };
        gauge("in_use").set(i64::from(size.saturating_sub(idle)));
        gauge("idle").set(i64::from(idle));
    }

    /// Checks every `interval` until `shutdown`.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            self.check().await;
        }
    }
}
