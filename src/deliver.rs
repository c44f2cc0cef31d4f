//! The delivery worker: sends the outbox (`store::deliveries`) on every
//! instance, never from inside the flush's transaction.
//!
//! [`Deliverer::run_once`] claims due rows, sends them concurrently, each
//! under the send timeout, and settles each: delivered on a 2xx; given up at
//! once on a 4xx other than 408 and 429 (the status in `last_error`); sent
//! again otherwise, after [`retry_delay`] or the receiver's `Retry-After`
//! (429, 503), until `MONITOR_DELIVERY_GIVE_UP` after the event, when it is
//! given up with its last error. The claim moves a row's due time past the
//! timeout, so a row whose instance died mid-send is sent again.
//!
//! Webhooks are signed per Standard Webhooks: `webhook-id` (the delivery
//! row's, the same on every attempt), `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
//! Every send goes through the prober's SSRF guard: the resolver that
//! drops refused addresses, and the literal check. Secrets are never
//! logged (their `Debug` is redacted).

mod mail;
pub mod render;

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sea_orm::DatabaseConnection;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

pub use mail::{Mailer, SmtpUrl};

use crate::{
    domain::{
        ChannelTarget, TargetUrl, WebhookSecret,
        notification::{parse_retry_after, retry_delay},
    },
    error::{SettingsError, check_setting},
    metrics::{DeliveryLabels, Metrics},
    prober::ssrf::{self, GuardedResolver},
    store::deliveries::{self, Claimed, Settled},
    telemetry::OutageLog,
};

/// How notifications are sent.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliverySettings {
    /// Give a notification up this long after its event, if it was not
    /// delivered by then.
    #[arg(id = "delivery_give_up", long = "delivery-give-up", env = "MONITOR_DELIVERY_GIVE_UP", default_value = "24h", value_parser = humantime::parse_duration)]
    pub give_up: Duration,

    /// Timeout of one send (connect and whole response).
    #[arg(id = "delivery_timeout", long = "delivery-timeout", env = "MONITOR_DELIVERY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// How often the outbox is looked at for due notifications.
    #[arg(id = "delivery_interval", long = "delivery-interval", env = "MONITOR_DELIVERY_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Most notifications one instance sends at once.
    #[arg(
        id = "delivery_batch",
        long = "delivery-batch",
        env = "MONITOR_DELIVERY_BATCH",
        default_value_t = 50
    )]
    pub batch: u32,

    /// The SMTP relay email notifications go through: `smtp://host:port`
    /// (plain, for a local relay), `smtp://user:password@host:587?tls=required`
    /// (STARTTLS; `tls=opportunistic` when offered), or
    /// `smtps://user:password@host` (implicit TLS). Unset: email channels
    /// are refused.
    #[arg(long = "smtp-url", env = "MONITOR_SMTP_URL", value_parser = SmtpUrl::parse)]
    pub smtp_url: Option<SmtpUrl>,

    /// The sender of notification emails.
    #[arg(
        long = "smtp-from",
        env = "MONITOR_SMTP_FROM",
        default_value = "monitor <monitor@localhost>",
        value_parser = mail::parse_from
    )]
    pub smtp_from: lettre::message::Mailbox,
}

impl DeliverySettings {
    /// Whether email channels can be sent (an SMTP relay is set).
    pub fn email_enabled(&self) -> bool {
        self.smtp_url.is_some()
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        check_setting(
            self.timeout >= Duration::from_millis(100) && self.timeout <= Duration::from_secs(300),
            "MONITOR_DELIVERY_TIMEOUT",
            "must be between 100ms and 5m",
        )?;
        check_setting(
            self.give_up >= self.timeout,
            "MONITOR_DELIVERY_GIVE_UP",
            "must be at least MONITOR_DELIVERY_TIMEOUT",
        )?;
        check_setting(
            self.interval >= Duration::from_millis(10),
            "MONITOR_DELIVERY_INTERVAL",
            "must be at least 10ms",
        )?;
        check_setting(
            (1..=1000).contains(&self.batch),
            "MONITOR_DELIVERY_BATCH",
            "must be between 1 and 1000",
        )
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub claimed: usize,
    pub delivered: usize,
    pub retried: usize,
    pub gave_up: usize,
}

/// How a send ended, before the retry rules judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// The receiver answered this status (with its `Retry-After`, if any).
    Status(u16, Option<String>),
    /// No answer: connect, TLS, timeout, or an address the guard refused.
    Failed(String),
    /// Refused for good without an HTTP status (an SMTP relay's 5xx, a
    /// recipient that cannot be written): given up at once.
    Refused(String),
}

/// The retry rules: what to record for attempt `attempts` of a delivery
/// created at `created_at`, ended `now` with `result`. `jitter` is 0 to 1.
pub fn decide(
    result: &SendResult,
    attempts: u32,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    give_up: Duration,
    jitter: f64,
) -> Settled {
    let (error, retry_after) = match result {
        SendResult::Status(code, _) if (200..300).contains(code) => {
            return Settled::Delivered { at: now };
        }
        SendResult::Status(code, _)
            if (400..500).contains(code) && *code != 408 && *code != 429 =>
        {
            return Settled::GaveUp {
                error: format!("HTTP {code}: the receiver refused it"),
            };
        }
        SendResult::Status(code, retry_after) => (
            format!("HTTP {code}"),
            retry_after
                .as_deref()
                .filter(|_| *code == 429 || *code == 503)
                .and_then(|v| parse_retry_after(v, now)),
        ),
        SendResult::Refused(why) => {
            return Settled::GaveUp { error: why.clone() };
        }
        SendResult::Failed(why) => (why.clone(), None),
    };
    let delay = retry_after.unwrap_or_else(|| retry_delay(attempts, jitter));
    let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    let horizon = created_at + chrono::Duration::from_std(give_up).unwrap_or(chrono::Duration::MAX);
    if at > horizon {
        Settled::GaveUp {
            error: format!("{error} (gave up after {attempts} attempts)"),
        }
    } else {
        Settled::Retry { at, error }
    }
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the
/// secret's bytes (Standard Webhooks).
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret.key()).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-id` of a delivery: the same on every attempt.
pub fn webhook_id(delivery_id: i64) -> String {
    format!("msg_{delivery_id}")
}

/// Sends the outbox.
#[derive(Debug, Clone)]
pub struct Deliverer {
    db: DatabaseConnection,
    client: reqwest::Client,
    settings: Arc<DeliverySettings>,
    allow_private: bool,
    metrics: Arc<Metrics>,
    /// None without `MONITOR_SMTP_URL`.
    mailer: Option<Mailer>,
    /// When the pending gauge was last sampled.
    pending_sampled: Arc<Sampled>,
    /// When reminders were last looked for.
    reminders_checked: Arc<Sampled>,
}

/// How often the pending-deliveries gauge is sampled.
const PENDING_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How often open incidents are looked at for reminders due: a reminder
/// goes out within this (and a pass's interval) of its time.
const REMINDERS_EVERY: Duration = Duration::from_secs(1);

/// A "was it done in the last `every`?" shared by clones.
#[derive(Debug)]
struct Sampled {
    every: Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Sampled {
    fn every(every: Duration) -> Arc<Self> {
        Arc::new(Self {
            every,
            last: std::sync::Mutex::default(),
        })
    }

    /// True (and remembered) when the last sample is older than the period.
    fn due(&self, now: std::time::Instant) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *last {
            Some(at) if now.duration_since(at) < self.every => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

impl Deliverer {
    /// `allow_private`: the prober's setting (tests and local demos only).
    pub fn new(
        db: DatabaseConnection,
        settings: DeliverySettings,
        allow_private: bool,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A redirect could lead past the guard's literal check.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mailer = match &settings.smtp_url {
            Some(url) => Some(Mailer::new(
                url,
                settings.smtp_from.clone(),
                settings.timeout,
            )?),
            None => None,
        };
        Ok(Self {
            db,
            client,
            settings: Arc::new(settings),
            allow_private,
            metrics: Arc::new(Metrics::new()),
            mailer,
            pending_sampled: Sampled::every(PENDING_SAMPLE_EVERY),
            reminders_checked: Sampled::every(REMINDERS_EVERY),
        })
    }

    /// Records attempts in `metrics` (the app's).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Claims due notifications, sends them and records how each went.
    pub async fn run_once(&self) -> anyhow::Result<DeliveryReport> {
        let now = Utc::now();
        // Reminders due go in the outbox first, to be claimed in this pass.
        if self.reminders_checked.due(std::time::Instant::now()) {
            deliveries::enqueue_reminders(&self.db, now).await?;
        }
        // The lease: past the send's timeout, with room to record it.
        let lease = now + self.settings.timeout + Duration::from_secs(5);
        let claimed = deliveries::claim(&self.db, now, lease, self.settings.batch).await?;
        let mut report = DeliveryReport {
            claimed: claimed.len(),
            ..DeliveryReport::default()
        };
        let mut sends = tokio::task::JoinSet::new();
        for delivery in claimed {
            let this = self.clone();
            sends.spawn(async move {
                let started = std::time::Instant::now();
                let result = this.send(&delivery).await;
                this.metrics
                    .delivery_duration
                    .observe(started.elapsed().as_secs_f64());
                let settled = decide(
                    &result,
                    delivery.attempts,
                    delivery.created_at,
                    Utc::now(),
                    this.settings.give_up,
                    rand::random(),
                );
                deliveries::settle(&this.db, delivery.id, &settled).await?;
                let outcome = match settled {
                    Settled::Delivered { at } => {
                        let latency = (at - delivery.created_at).to_std().unwrap_or_default();
                        this.metrics.delivery_latency.observe(latency.as_secs_f64());
                        "delivered"
                    }
                    Settled::Retry { .. } => "retried",
                    Settled::GaveUp { .. } => "gave_up",
                };
                this.metrics
                    .deliveries
                    .get_or_create(&DeliveryLabels {
                        kind: delivery.target.kind_name(),
                        outcome,
                    })
                    .inc();
                if let Settled::GaveUp { error } = &settled {
                    tracing::warn!(
                        delivery_id = delivery.id,
                        channel_id = delivery.channel_id,
                        error,
                        "notification given up"
                    );
                }
                anyhow::Ok(settled)
            });
        }
        while let Some(joined) = sends.join_next().await {
            match joined?? {
                Settled::Delivered { .. } => report.delivered += 1,
                Settled::Retry { .. } => report.retried += 1,
                Settled::GaveUp { .. } => report.gave_up += 1,
            }
        }
        // The gauge counts the whole outbox: sampled at most every few
        // seconds, not on every (sub-second) pass of every instance.
        if self.pending_sampled.due(std::time::Instant::now()) {
            self.metrics
                .deliveries_pending
                .set(deliveries::count_pending(&self.db).await?);
        }
        Ok(report)
    }

    /// One attempt of a delivery, in its channel's kind.
    async fn send(&self, delivery: &Claimed) -> SendResult {
        let url = delivery.url.as_ref();
        let message = || match render::Event::parse(&delivery.payload) {
            Some(event) => Ok((event.message(url), event)),
            None => Err(SendResult::Refused(
                "the stored event is not readable".into(),
            )),
        };
        match &delivery.target {
            ChannelTarget::Webhook { url: to, secret } => {
                let body = render::webhook_body(&delivery.payload, url);
                let id = webhook_id(delivery.id);
                let timestamp = Utc::now().timestamp();
                let signature = sign(secret, &id, timestamp, &body);
                let headers = [
                    ("webhook-id", id),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ];
                self.post(to, body, &headers).await
            }
            ChannelTarget::Slack { webhook } => match message() {
                Ok((message, _)) => {
                    self.post(webhook.url(), render::slack_body(&message), &[])
                        .await
                }
                Err(refused) => refused,
            },
            ChannelTarget::PagerDuty {
                routing_key,
                events_url,
            } => match message() {
                Ok((message, event)) => {
                    let body =
                        render::pagerduty_body(&event, &message, routing_key.expose(), delivery.id);
                    self.post(events_url, body, &[]).await
                }
                Err(refused) => refused,
            },
            ChannelTarget::Email { to } => {
                let Some(mailer) = &self.mailer else {
                    return SendResult::Failed(
                        "no SMTP relay is set on this server (MONITOR_SMTP_URL)".into(),
                    );
                };
                match message() {
                    Ok((message, _)) => {
                        mailer
                            .send(to.as_str(), &render::email(&message), delivery.id)
                            .await
                    }
                    Err(refused) => refused,
                }
            }
        }
    }

    /// A JSON POST through the SSRF guard: the literal check here, the
    /// resolver's after DNS. The error never holds the URL (a Slack
    /// webhook's path is its secret).
    async fn post(&self, to: &TargetUrl, body: String, headers: &[(&str, String)]) -> SendResult {
        if let Err(blocked) = ssrf::check_literal(to.as_url(), self.allow_private) {
            return SendResult::Failed(blocked.to_string());
        }
        let mut request = self
            .client
            .post(to.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => SendResult::Status(
                response.status().as_u16(),
                response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            ),
            Err(e) => SendResult::Failed(error_chain(&e.without_url())),
        }
    }

    /// Runs passes every interval until `shutdown` ([`run_passes`]).
    pub async fn run(self, shutdown: CancellationToken) {
        let (interval, batch) = (self.settings.interval, self.settings.batch);
        run_passes(interval, batch, shutdown, || self.run_once()).await;
    }
}

/// The worker's loop, apart from what a pass does (`pass`: one
/// [`Deliverer::run_once`]): every `interval`, passes until one claims less
/// than a full `batch` (a full one may have left more due) or fails. On
/// `shutdown` the wait between passes ends at once, and a pass in flight
/// is finished but not followed by another (a backlog does not hold the
/// shutdown: what is left is claimed by the next instance). A failure is
/// logged once per outage and retried at the next interval.
pub async fn run_passes<F, Fut>(
    interval: Duration,
    batch: u32,
    shutdown: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<DeliveryReport>>,
{
    let mut outage = OutageLog::new("delivery");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        let result = async {
            while pass().await?.claimed >= batch as usize && !shutdown.is_cancelled() {}
            anyhow::Ok(())
        }
        .await;
        outage.record(&result);
    }
}

/// An error with its causes, short enough for `last_error`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_pending_gauge_is_sampled_at_most_every_period() {
        let sampled = Sampled::every(PENDING_SAMPLE_EVERY);
        let t0 = std::time::Instant::now();
        assert!(sampled.due(t0));
        assert!(!sampled.due(t0 + Duration::from_secs(1)));
        assert!(sampled.due(t0 + PENDING_SAMPLE_EVERY));
    }

    #[test]
    fn the_retry_rules() {
        let created = at("2026-01-01T00:00:00Z");
        let now = at("2026-01-01T00:01:00Z");
        let day = Duration::from_secs(86_400);
        let d = |r: SendResult, attempts| decide(&r, attempts, created, now, day, 1.0);
        assert_eq!(
            d(SendResult::Status(204, None), 1),
            Settled::Delivered { at: now }
        );
        assert!(matches!(
            d(SendResult::Status(410, None), 1),
            Settled::GaveUp { error } if error.contains("410")
        ));
        for code in [408, 429, 500, 503] {
            assert_eq!(
                d(SendResult::Status(code, None), 3),
                Settled::Retry {
                    at: now + chrono::Duration::seconds(4),
                    error: format!("HTTP {code}")
                }
            );
        }
        // Retry-After on 429 and 503 only.
        let later = |code| d(SendResult::Status(code, Some("30".into())), 1);
        assert!(
            matches!(later(503), Settled::Retry { at, .. } if at == now + chrono::Duration::seconds(30))
        );
        assert!(
            matches!(later(429), Settled::Retry { at, .. } if at == now + chrono::Duration::seconds(30))
        );
        assert!(
            matches!(later(500), Settled::Retry { at, .. } if at == now + chrono::Duration::seconds(1))
        );
        assert!(matches!(
            d(SendResult::Failed("connection refused".into()), 20),
            Settled::Retry { at, .. } if at == now + chrono::Duration::minutes(10)
        ));
        // Past the give-up horizon.
        let late = at("2026-01-01T23:55:00Z");
        assert!(matches!(
            decide(&SendResult::Status(500, None), 30, created, late, day, 1.0),
            Settled::GaveUp { error } if error.starts_with("HTTP 500")
        ));
    }
}
