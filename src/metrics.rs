//! Prometheus metrics of one running instance, served at `/metrics`.
//!
//! One [`Metrics`] value per [`crate::app::App`], with its own registry
//! (prometheus-client), handed to the parts that record: the prober, the
//! flush task, the RPC layers. Nothing is global, so two instances in one
//! process (the tests) keep separate counts. Gauges that describe state
//! elsewhere — the buffer backlog, the database pool — are sampled when
//! `/metrics` is scraped.
//!
//! Names follow the Prometheus conventions: base units in the name
//! (`_seconds`), `_total` on counters (added by the encoder).

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `response` (any status code) or `error` (no response).
    pub outcome: &'static str,
    /// For errors: `dns`, `connect`, `tls`, `timeout`, `body`, `blocked`,
    /// `redirect`, `other`; empty for responses.
    pub error_kind: String,
    /// `2xx` … `5xx` for responses; empty for errors.
    pub status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `grpc` or `http`.
    pub transport: &'static str,
    /// `/monitor.v1.MonitorService/AddUrl`, or the HTTP route template.
    pub method: String,
    /// The gRPC code name (`OK`, `INVALID_ARGUMENT`, …) or the HTTP status.
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub transport: &'static str,
    pub method: String,
}

/// A notification attempt: the channel's kind (`webhook`) and how it
/// ended (`delivered`, `retried`, `gave_up`). Both come from fixed sets.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

/// Why the prober doubts its own network: `canary` or `mass_failure`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// The prober's doubt about its own network (`prober::doubt`).
#[derive(Debug, Default)]
pub struct DoubtMetrics {
    /// 1 while it doubts, by reason.
    pub degraded: Family<ReasonLabels, Gauge>,
    /// Failures recorded `UNKNOWN`.
    pub unknown: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// `in_use` or `idle`.
    pub state: &'static str,
}

fn histogram_seconds() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

fn histogram_latency() -> Histogram {
    // 10 ms .. ~11 h: a delivery after retries can take hours.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 2.0, 22,
    ))
}

fn histogram_lateness() -> Histogram {
    // 0.1 ms .. ~3 s: lateness is normally a few milliseconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 16,
    ))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub probes: Family<ProbeLabels, Counter>,
    pub probe_duration: Histogram,
    pub schedule_lateness: Histogram,
    pub probes_skipped_late: Counter,
    pub probes_from_memory: Counter,
    pub doubt: DoubtMetrics,
    pub buffer_backlog: Gauge,
    pub flush_batches: Counter,
    pub flush_rows: Counter,
    pub flush_duration: Histogram,
    pub flush_failures: Counter,
    pub retention_deleted: Counter,
    pub retention_dropped_days: Counter,
    pub rollup_statuses: Counter,
    pub rpcs: Family<RpcLabels, Counter>,
    pub rpc_duration: Family<MethodLabels, Histogram>,
    pub db_pool: Family<PoolLabels, Gauge>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub delivery_duration: Histogram,
    pub delivery_latency: Histogram,
    pub deliveries_pending: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            probes: Family::default(),
            probe_duration: histogram_seconds(),
            schedule_lateness: histogram_lateness(),
            probes_skipped_late: Counter::default(),
            probes_from_memory: Counter::default(),
            doubt: DoubtMetrics::default(),
            buffer_backlog: Gauge::default(),
            flush_batches: Counter::default(),
            flush_rows: Counter::default(),
            flush_duration: histogram_seconds(),
            flush_failures: Counter::default(),
            retention_deleted: Counter::default(),
            retention_dropped_days: Counter::default(),
            rollup_statuses: Counter::default(),
            rpcs: Family::default(),
            rpc_duration: Family::new_with_constructor(histogram_seconds),
            db_pool: Family::default(),
            deliveries: Family::default(),
            delivery_duration: histogram_seconds(),
            delivery_latency: histogram_latency(),
            deliveries_pending: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "monitor_probes",
            "Probes made, by outcome, error kind and status class",
            m.probes.clone(),
        );
        r.register_with_unit(
            "monitor_probe_duration",
            "Time from sending a probe to its outcome",
            Unit::Seconds,
            m.probe_duration.clone(),
        );
        r.register_with_unit(
            "monitor_schedule_lateness",
            "Probe start minus its due time",
            Unit::Seconds,
            m.schedule_lateness.clone(),
        );
        r.register(
            "monitor_probes_skipped_late",
            "Due times skipped because they were missed by more than the allowed lateness (downtime)",
            m.probes_skipped_late.clone(),
        );
        r.register(
            "monitor_probes_from_memory",
            "Due times probed from the prober's memory because claiming from the database failed (outage)",
            m.probes_from_memory.clone(),
        );
        r.register(
            "monitor_buffer_backlog",
            "Probe results waiting to be flushed (in process; in Redis, its entries times the results per entry lately)",
            m.buffer_backlog.clone(),
        );
        r.register(
            "monitor_rpcs",
            "RPCs and JSON requests answered, by transport, method and code",
            m.rpcs.clone(),
        );
        r.register_with_unit(
            "monitor_rpc_duration",
            "Time to answer an RPC or JSON request",
            Unit::Seconds,
            m.rpc_duration.clone(),
        );
        r.register(
            "monitor_db_pool_connections",
            "Database pool connections by state",
            m.db_pool.clone(),
        );
        m.register_flush();
        m.register_deliveries();
        m.register_doubt();
        m
    }

    /// The flush and retention (`flush`).
    fn register_flush(&mut self) {
        let r = &mut self.registry;
        r.register(
            "monitor_flush_batches",
            "Batches written to the database",
            self.flush_batches.clone(),
        );
        r.register(
            "monitor_flush_rows",
            "Status rows inserted by the flush",
            self.flush_rows.clone(),
        );
        r.register_with_unit(
            "monitor_flush_duration",
            "Time to read, write and acknowledge one batch",
            Unit::Seconds,
            self.flush_duration.clone(),
        );
        r.register(
            "monitor_flush_failures",
            "Flushes that failed (database or buffer unreachable); retried",
            self.flush_failures.clone(),
        );
        r.register(
            "monitor_retention_deleted_rows",
            "Statuses deleted by retention (SQLite; Postgres drops whole days)",
            self.retention_deleted.clone(),
        );
        r.register(
            "monitor_retention_dropped_days",
            "Days of statuses (Postgres partitions) dropped by retention",
            self.retention_dropped_days.clone(),
        );
        r.register(
            "monitor_rollup_statuses",
            "Statuses the roll pass added to the hour and day rollup buckets",
            self.rollup_statuses.clone(),
        );
    }

    /// The prober's doubt about its own network (`prober::doubt`).
    fn register_doubt(&mut self) {
        let r = &mut self.registry;
        r.register(
            "monitor_prober_degraded",
            "1 while the prober doubts its own network, by reason (canary: every canary failed; mass_failure: most probes of the last window failed across many hosts)",
            self.doubt.degraded.clone(),
        );
        r.register(
            "monitor_probes_unknown",
            "Failed probes recorded UNKNOWN (error kind PROBER_DEGRADED) because the prober doubted its own network",
            self.doubt.unknown.clone(),
        );
    }

    /// The delivery worker's metrics.
    fn register_deliveries(&mut self) {
        let r = &mut self.registry;
        r.register(
            "monitor_deliveries",
            "Notification attempts, by channel kind and outcome (delivered, retried, gave_up)",
            self.deliveries.clone(),
        );
        r.register_with_unit(
            "monitor_delivery_duration",
            "Time of one notification attempt, from send to answer or failure",
            Unit::Seconds,
            self.delivery_duration.clone(),
        );
        r.register_with_unit(
            "monitor_delivery_latency",
            "Time from the event's commit (the flush that opened or resolved the incident) to its delivery",
            Unit::Seconds,
            self.delivery_latency.clone(),
        );
        r.register(
            "monitor_deliveries_pending",
            "Notifications in the outbox not delivered nor given up yet (all instances)",
            self.deliveries_pending.clone(),
        );
    }

    /// Records one answered request.
    pub fn rpc(&self, transport: &'static str, method: &str, code: String, took: Duration) {
        self.rpcs
            .get_or_create(&RpcLabels {
                transport,
                method: method.to_owned(),
                code,
            })
            .inc();
        self.rpc_duration
            .get_or_create(&MethodLabels {
                transport,
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new();
        m.probes
            .get_or_create(&ProbeLabels {
                outcome: "response",
                error_kind: String::new(),
                status_class: "2xx",
            })
            .inc();
        m.rpc(
            "grpc",
            "/monitor.v1.MonitorService/AddUrl",
            "OK".into(),
            Duration::from_millis(3),
        );
        let text = m.encode();
        for name in [
            "monitor_probes_total{outcome=\"response\",error_kind=\"\",status_class=\"2xx\"} 1",
            "monitor_probe_duration_seconds_bucket",
            "monitor_schedule_lateness_seconds_bucket",
            "monitor_flush_rows_total 0",
            "monitor_retention_deleted_rows_total 0",
            "monitor_rollup_statuses_total 0",
            "monitor_rpcs_total{transport=\"grpc\",method=\"/monitor.v1.MonitorService/AddUrl\",code=\"OK\"} 1",
            "monitor_rpc_duration_seconds_count{transport=\"grpc\",method=\"/monitor.v1.MonitorService/AddUrl\"} 1",
            "# TYPE monitor_buffer_backlog gauge",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
