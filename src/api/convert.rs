//! Conversions between proto messages and domain types, with validation:
//! every proto value a service needs is parsed here, and every record a
//! service returns is turned into its message here.

use chrono::{DateTime, Utc};

use crate::{
    domain::{
        Assertions, ChannelRecord, ChannelTarget, ChannelUpdate, Email, IncidentRecord, NewChannel,
        PAGERDUTY_EVENTS_URL, Period, PeriodBounds, RoutingKey, SlackWebhook, StatusRecord,
        TargetUrl, UrlRecord, UrlUpdate, WebhookSecret,
        assertion::{Assertion, Check, HeaderMatch, Place, Severity, check_count, range_text},
        channel,
        notification::{DeliveryRecord, DeliveryState, LiveNotice},
        rollup::Tier,
        state::UrlState,
        status_page::{Slug, StatusPageRecord, StatusPageUpdate, parse_title, parse_url_ids},
        url_update::{parse_name, parse_threshold},
        verdict::{FailedAssertion, Verdict},
    },
    error::Error,
    proto::monitor::v1 as pb,
    service::StatsRow,
    service::events::{Item, Watched},
};

/// Converts a proto Timestamp, rejecting values outside what proto3 allows
/// (years 1 to 9999, nanos within a second).
pub fn time_from_proto(
    field: &'static str,
    ts: crate::proto::Timestamp,
) -> Result<DateTime<Utc>, Error> {
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000);
    nanos
        .and_then(|n| DateTime::from_timestamp(ts.seconds, n))
        .filter(|t| t.timestamp() >= -62_135_596_800 && t.timestamp() <= 253_402_300_799)
        .ok_or_else(|| {
            Error::invalid(
                field,
                "is not a valid timestamp (seconds from 0001-01-01 to 9999-12-31, nanos below 1e9)",
            )
        })
}

pub fn time_to_proto(t: DateTime<Utc>) -> crate::proto::Timestamp {
    crate::proto::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A request's period; unset means the default of one minute.
pub fn period_from_proto(
    field: &'static str,
    raw: Option<pbjson_types::Duration>,
    bounds: PeriodBounds,
) -> Result<Period, Error> {
    let requested = match raw {
        None => None,
        Some(d) if d.nanos != 0 => {
            return Err(Error::invalid(field, "must be a whole number of seconds"));
        }
        // A negative period is as far out of range as one too long.
        Some(d) => Some(u64::try_from(d.seconds).unwrap_or(u64::MAX)),
    };
    Period::parse(field, requested, bounds)
}

/// A request's assertions (`prefix`: `""` in AddUrl, `"url."` in
/// UpdateUrl), each parsed by the domain, which names the field path of the
/// first it refuses (`assertions[2].json.pointer`).
pub fn assertions_from_proto(prefix: &str, raw: Vec<pb::Assertion>) -> Result<Assertions, Error> {
    use pb::assertion::Check as C;
    // Too many is refused before any is parsed.
    check_count(prefix, raw.len())?;
    let mut list = Vec::with_capacity(raw.len());
    for (index, a) in raw.into_iter().enumerate() {
        let at = Place { prefix, index };
        let severity = match pb::AssertionSeverity::try_from(a.severity) {
            Ok(pb::AssertionSeverity::Unspecified | pb::AssertionSeverity::Down) => Severity::Down,
            Ok(pb::AssertionSeverity::Degraded) => Severity::Degraded,
            Err(_) => {
                return Err(Error::invalid(
                    at.field(".severity"),
                    "must be DOWN (the default) or DEGRADED",
                ));
            }
        };
        let check = match a.check {
            None => {
                return Err(Error::invalid(
                    at.field(""),
                    "must set one check: status, max_latency, body_contains, body_not_contains, \
                     header, json or tls_days_left",
                ));
            }
            Some(C::Status(s)) => Check::status(at, &s.codes)?,
            Some(C::MaxLatency(d)) => {
                Check::max_latency(at, std::time::Duration::try_from(d).ok())?
            }
            Some(C::BodyContains(t)) => Check::body_contains(at, t)?,
            Some(C::BodyNotContains(t)) => Check::body_not_contains(at, t)?,
            Some(C::Header(h)) => {
                use pb::header_assertion::Expect;
                let (equals, contains) = match h.expect {
                    Some(Expect::Equals(v)) => (Some(v), None),
                    Some(Expect::Contains(v)) => (None, Some(v)),
                    None => (None, None),
                };
                Check::header(at, h.name, equals, contains)?
            }
            Some(C::Json(j)) => {
                let value = j
                    .value
                    .map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null));
                Check::json(at, j.pointer, value)?
            }
            Some(C::TlsDaysLeft(days)) => Check::tls_days_left(at, days)?,
        };
        list.push(Assertion::new(severity, check));
    }
    Assertions::new(prefix, list)
}

pub fn assertions_to_proto(list: &Assertions) -> Vec<pb::Assertion> {
    use pb::assertion::Check as C;
    list.as_slice()
        .iter()
        .map(|a| pb::Assertion {
            severity: match a.severity {
                Severity::Down => pb::AssertionSeverity::Down,
                Severity::Degraded => pb::AssertionSeverity::Degraded,
            } as i32,
            check: Some(match &a.check {
                Check::Status(ranges) => C::Status(pb::StatusAssertion {
                    codes: ranges.iter().copied().map(range_text).collect(),
                }),
                Check::MaxLatencyUs(us) => {
                    C::MaxLatency(std::time::Duration::from_micros(*us).into())
                }
                Check::BodyContains(t) => C::BodyContains(t.clone()),
                Check::BodyNotContains(t) => C::BodyNotContains(t.clone()),
                Check::Header { name, expect } => C::Header(pb::HeaderAssertion {
                    name: name.clone(),
                    expect: Some(match expect {
                        HeaderMatch::Equals(v) => pb::header_assertion::Expect::Equals(v.clone()),
                        HeaderMatch::Contains(v) => {
                            pb::header_assertion::Expect::Contains(v.clone())
                        }
                    }),
                }),
                Check::Json { pointer, value } => C::Json(pb::JsonAssertion {
                    pointer: pointer.clone(),
                    value: serde_json::from_value(value.clone()).ok(),
                }),
                Check::TlsDaysLeft(days) => {
                    C::TlsDaysLeft(i32::try_from(*days).unwrap_or(i32::MAX))
                }
            }),
        })
        .collect()
}

fn failed_to_proto(failed: Vec<FailedAssertion>) -> Vec<pb::FailedAssertion> {
    failed
        .into_iter()
        .map(|f| pb::FailedAssertion {
            index: i32::try_from(f.index).unwrap_or(i32::MAX),
            message: f.message,
        })
        .collect()
}

/// The fields of `Url` UpdateUrl changes, as `update_mask` names them.
pub const UPDATABLE_URL_FIELDS: [&str; 7] = [
    "name",
    "period",
    "paused",
    "failure_threshold",
    "success_threshold",
    "assertions",
    "depends_on",
];

/// An UpdateUrl request: the URL's id and its changes (AIP-134). The mask's
/// paths are field names, snake_case or lowerCamelCase; an empty mask means
/// every changeable field set (non-default) in `url`.
pub fn url_update_from_proto(
    req: pb::UpdateUrlRequest,
    bounds: PeriodBounds,
) -> Result<(i64, UrlUpdate), Error> {
    let url = req
        .url
        .ok_or_else(|| Error::invalid("url", "is required"))?;
    let set = [
        !url.name.is_empty(),
        url.period.is_some(),
        url.paused,
        url.failure_threshold != 0,
        url.success_threshold != 0,
        !url.assertions.is_empty(),
        url.depends_on != 0,
    ];
    let masked = masked_fields(
        req.update_mask,
        "UpdateUrl",
        &UPDATABLE_URL_FIELDS,
        |_| None,
        |field| match field {
            "id" | "url" => "cannot be changed (add the new URL and delete this one)",
            "created_at" | "state" | "state_since" | "tls_not_after" => "is output only",
            _ => "is not a field of Url",
        },
    )?
    .unwrap_or_else(|| set_fields(&UPDATABLE_URL_FIELDS, &set));
    let mut update = UrlUpdate::default();
    let mut assertions = Some(url.assertions);
    for field in masked {
        match field {
            "name" => update.name = Some(parse_name("url.name", &url.name)?),
            "period" => update.period = Some(period_from_proto("url.period", url.period, bounds)?),
            "paused" => update.paused = Some(url.paused),
            "failure_threshold" => {
                update.failure_threshold = Some(parse_threshold(
                    "url.failure_threshold",
                    url.failure_threshold,
                )?);
            }
            "success_threshold" => {
                update.success_threshold = Some(parse_threshold(
                    "url.success_threshold",
                    url.success_threshold,
                )?);
            }
            "assertions" => {
                update.assertions = Some(assertions_from_proto(
                    "url.",
                    assertions.take().unwrap_or_default(),
                )?);
            }
            "depends_on" => {
                update.depends_on = Some(match url.depends_on {
                    0 => None,
                    parent if parent < 0 => {
                        return Err(Error::invalid(
                            "url.depends_on",
                            "must be the id of another of your URLs, or 0 for none",
                        ));
                    }
                    parent if parent == url.id => {
                        return Err(Error::invalid(
                            "url.depends_on",
                            "must be another URL: a URL cannot depend on itself",
                        ));
                    }
                    parent => Some(parent),
                });
            }
            // Only UPDATABLE_URL_FIELDS are masked.
            _ => {}
        }
    }
    Ok((url.id, update))
}

/// The fields whose value is `set` (non-default): what an empty mask
/// changes.
fn set_fields(fields: &[&'static str], set: &[bool]) -> Vec<&'static str> {
    fields
        .iter()
        .zip(set)
        .filter_map(|(f, set)| set.then_some(*f))
        .collect()
}

/// The fields an Update RPC's `update_mask` names: each path in
/// snake_case or lowerCamelCase, mapped by `alias` to one of `fields`;
/// `None` for an empty mask. A path that is none of them is
/// INVALID_ARGUMENT `update_mask`, with `why_not(field)` and the RPC's
/// changeable fields.
fn masked_fields(
    mask: Option<pbjson_types::FieldMask>,
    rpc: &str,
    fields: &[&'static str],
    alias: impl Fn(&str) -> Option<&'static str>,
    why_not: impl Fn(&str) -> &'static str,
) -> Result<Option<Vec<&'static str>>, Error> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Ok(None);
    }
    let mut masked = Vec::new();
    for path in &paths {
        let field = snake_case(path.trim());
        let field = alias(&field).unwrap_or(&field).to_owned();
        let Some(known) = fields.iter().find(|f| **f == field) else {
            return Err(Error::invalid(
                "update_mask",
                format!(
                    "\"{path}\" {}; {rpc} changes {}",
                    why_not(&field),
                    fields.join(", ")
                ),
            ));
        };
        masked.push(*known);
    }
    Ok(Some(masked))
}

/// `failureThreshold` → `failure_threshold`; snake_case stays as it is.
fn snake_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn url_to_proto(u: UrlRecord) -> pb::Url {
    pb::Url {
        assertions: assertions_to_proto(&u.assertions),
        tls_not_after: u.tls_not_after.map(time_to_proto),
        depends_on: u.depends_on.unwrap_or(0),
        id: u.id,
        name: u.name.unwrap_or_else(|| u.url.clone()),
        url: u.url,
        period: Some(pbjson_types::Duration {
            seconds: i64::from(u.period.seconds()),
            nanos: 0,
        }),
        created_at: Some(time_to_proto(u.created_at)),
        paused: u.paused,
        failure_threshold: i32::try_from(u.thresholds.failure).unwrap_or(i32::MAX),
        success_threshold: i32::try_from(u.thresholds.success).unwrap_or(i32::MAX),
        state: state_to_proto(u.state) as i32,
        state_since: u.state_since.map(time_to_proto),
    }
}

pub fn state_to_proto(state: UrlState) -> pb::UrlState {
    match state {
        UrlState::Pending => pb::UrlState::Pending,
        UrlState::Up => pb::UrlState::Up,
        UrlState::Degraded => pb::UrlState::Degraded,
        UrlState::Down => pb::UrlState::Down,
        UrlState::Paused => pb::UrlState::Paused,
        UrlState::Maintenance => pb::UrlState::Maintenance,
    }
}

/// A probe's verdict as the `UrlState` of the same name (`UNKNOWN` is a
/// verdict only, never a URL's state).
pub fn verdict_to_proto(verdict: Verdict) -> pb::UrlState {
    match verdict {
        Verdict::Unknown => pb::UrlState::Unknown,
        v => state_to_proto(v.into()),
    }
}

/// A duration of `us` microseconds (rounded from a sketch's estimate).
fn micros(us: f64) -> pbjson_types::Duration {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let us = us.round().max(0.0) as u64;
    std::time::Duration::from_micros(us).into()
}

pub fn stats_row_to_proto(r: &StatsRow) -> pb::StatsBucket {
    let b = &r.bucket;
    let q = |q: f64| b.latency.quantile(q).map(micros);
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    pb::StatsBucket {
        start_time: Some(time_to_proto(r.start)),
        expected: count(r.expected),
        up: count(b.up),
        degraded: count(b.degraded),
        down: count(b.down),
        maintenance: count(b.maintenance),
        missed: count(r.missed()),
        uptime: b.uptime(),
        p50: q(0.5),
        p95: q(0.95),
        p99: q(0.99),
        #[allow(clippy::cast_precision_loss)]
        max: b.max_us.map(|m| micros(m as f64)),
    }
}

pub fn tier_to_proto(t: Tier) -> pb::Granularity {
    match t {
        Tier::Minute => pb::Granularity::Minute,
        Tier::Hour => pb::Granularity::Hour,
        Tier::Day => pb::Granularity::Day,
    }
}

pub fn tier_from_proto(g: i32) -> Result<Option<Tier>, Error> {
    match pb::Granularity::try_from(g) {
        Ok(pb::Granularity::Unspecified) => Ok(None),
        Ok(pb::Granularity::Minute) => Ok(Some(Tier::Minute)),
        Ok(pb::Granularity::Hour) => Ok(Some(Tier::Hour)),
        Ok(pb::Granularity::Day) => Ok(Some(Tier::Day)),
        Err(_) => Err(Error::invalid(
            "granularity",
            "must be MINUTE, HOUR, DAY or unset",
        )),
    }
}

pub fn incident_to_proto(i: IncidentRecord) -> pb::Incident {
    let first = i.first_failure;
    let time = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    pb::Incident {
        id: i.id,
        url_id: i.url_id,
        state: state_to_proto(i.state) as i32,
        opened_at: Some(time_to_proto(i.opened_at)),
        resolved_at: i.resolved_at.map(time_to_proto),
        first_failure: Some(status_to_proto(StatusRecord {
            url_id: i.url_id,
            due_at: time(first.due_ms * 1000),
            probed_at: time(first.probed_us),
            status_code: first.status_code,
            latency: std::time::Duration::from_micros(u64::try_from(first.latency_us).unwrap_or(0)),
            verdict: first
                .verdict
                .unwrap_or_else(|| Verdict::by_default(first.status_code, first.error_kind)),
            failed_assertions: first.failed_assertions,
            tls_not_after: first.tls_not_after_ms.map(|ms| time(ms * 1000)),
            error_kind: first.error_kind,
            error_message: first.error_message,
        })),
        failed_probes: i32::try_from(i.failed_probes).unwrap_or(i32::MAX),
        parent_id: i.parent_id.unwrap_or(0),
    }
}

pub fn status_to_proto(s: StatusRecord) -> pb::Status {
    pb::Status {
        id: 0,
        url_id: s.url_id,
        due_at: Some(time_to_proto(s.due_at)),
        probed_at: Some(time_to_proto(s.probed_at)),
        status_code: s.status_code,
        latency: Some(s.latency.into()),
        error_kind: s
            .error_kind
            .map_or(pb::ErrorKind::Unspecified as i32, i32::from),
        error_message: s.error_message.unwrap_or_default(),
        failed_assertions: failed_to_proto(s.failed_assertions),
        tls_not_after: s.tls_not_after.map(time_to_proto),
        verdict: verdict_to_proto(s.verdict) as i32,
    }
}

fn notice_to_proto(notice: &LiveNotice) -> pb::event::Kind {
    use pb::event::Kind;
    let time = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    match notice {
        LiveNotice::StateChange {
            url_id,
            from,
            to,
            at_ms,
        } => Kind::StateChange(pb::StateChange {
            url_id: *url_id,
            from: state_to_proto(UrlState::from_stored(*from)) as i32,
            to: state_to_proto(UrlState::from_stored(*to)) as i32,
            at: Some(time_to_proto(time(*at_ms))),
        }),
        LiveNotice::Incident {
            url_id,
            id,
            state,
            opened_ms,
            resolved_ms,
            failed_probes,
            first,
        } => Kind::Incident(incident_to_proto(IncidentRecord {
            id: *id,
            url_id: *url_id,
            state: UrlState::from_stored(*state),
            opened_at: time(*opened_ms),
            resolved_at: resolved_ms.map(time),
            first_failure: first.clone(),
            failed_probes: *failed_probes,
            parent_id: None,
        })),
    }
}

/// A live event as streamed.
pub fn event_to_proto(w: Watched) -> pb::Event {
    use pb::event::Kind;
    let kind = match w.item {
        Item::Status(result) => Kind::Status(status_to_proto(result.to_record())),
        Item::Bookmark => Kind::Bookmark(pb::Bookmark {}),
        Item::Notice(notice) => notice_to_proto(&notice),
    };
    pb::Event {
        resume_token: w.resume_token,
        kind: Some(kind),
    }
}

/// A CreateChannel request's channel, checked; the names of the fields are
/// their paths in the request (`channel.webhook.url`). Returns the path of
/// the target's URL field too (for the service's address check).
pub fn new_channel_from_proto(
    channel: Option<pb::Channel>,
    min_remind: std::time::Duration,
) -> Result<(NewChannel, &'static str), Error> {
    let channel = channel.ok_or_else(|| Error::invalid("channel", "is required"))?;
    let name = channel::parse_name("channel.name", &channel.name)?;
    let (target, url_field) = target_from_proto(channel.target)?;
    let new = NewChannel {
        name,
        target,
        url_ids: channel::parse_url_ids("channel.url_ids", channel.url_ids)?,
        notify_degraded: channel.notify_degraded,
        remind_every: remind_every_from_proto(channel.remind_every, min_remind)?,
    };
    Ok((new, url_field))
}

/// A channel's reminder interval (unset: none).
fn remind_every_from_proto(
    every: Option<pbjson_types::Duration>,
    min: std::time::Duration,
) -> Result<Option<std::time::Duration>, Error> {
    let field = "channel.remind_every";
    every
        .map(|d| {
            let d = std::time::Duration::try_from(d)
                .map_err(|_| Error::invalid(field, "must not be negative"))?;
            channel::parse_remind_every(field, d, min)
        })
        .transpose()
}

/// The fields of `Channel` UpdateChannel changes, as `update_mask` names them.
const UPDATABLE_CHANNEL_FIELDS: [&str; 5] = [
    "name",
    "target",
    "url_ids",
    "notify_degraded",
    "remind_every",
];

/// An UpdateChannel request: the channel's id, its changes (AIP-134) and
/// the field naming the new target's URL (for a refused address). The
/// target's kinds are paths too (`webhook`, `slack`...): each means `target`.
pub fn channel_update_from_proto(
    req: pb::UpdateChannelRequest,
    min_remind: std::time::Duration,
) -> Result<(i64, ChannelUpdate, &'static str), Error> {
    let channel = req
        .channel
        .ok_or_else(|| Error::invalid("channel", "is required"))?;
    let set = [
        !channel.name.is_empty(),
        channel.target.is_some(),
        !channel.url_ids.is_empty(),
        channel.notify_degraded,
        channel.remind_every.is_some(),
    ];
    let masked = masked_fields(
        req.update_mask,
        "UpdateChannel",
        &UPDATABLE_CHANNEL_FIELDS,
        |field| matches!(field, "webhook" | "slack" | "email" | "pagerduty").then_some("target"),
        |field| match field {
            "id" => "cannot be changed",
            "created_at" | "target_digest" => "is output only",
            _ => "is not a field of Channel",
        },
    )?
    .unwrap_or_else(|| set_fields(&UPDATABLE_CHANNEL_FIELDS, &set));
    let mut update = ChannelUpdate::default();
    let mut url_field = "channel.target";
    let (mut target, mut url_ids) = (Some(channel.target), Some(channel.url_ids));
    for field in masked {
        match field {
            "name" => update.name = Some(channel::parse_name("channel.name", &channel.name)?),
            "target" => {
                let (t, field) = target_from_proto(target.take().flatten())?;
                update.target = Some(t);
                url_field = field;
            }
            "url_ids" => {
                update.url_ids = Some(channel::parse_url_ids(
                    "channel.url_ids",
                    url_ids.take().unwrap_or_default(),
                )?);
            }
            "notify_degraded" => update.notify_degraded = Some(channel.notify_degraded),
            "remind_every" => {
                update.remind_every =
                    Some(remind_every_from_proto(channel.remind_every, min_remind)?);
            }
            // Only UPDATABLE_CHANNEL_FIELDS are masked.
            _ => {}
        }
    }
    Ok((channel.id, update, url_field))
}

/// The `target_digest` the server will show for a channel with this target
/// (`monitorctl apply` compares it), or why the target is refused.
pub fn target_digest(target: pb::channel::Target) -> Result<String, Error> {
    Ok(target_from_proto(Some(target))?.0.digest())
}

/// A channel's target as sent, and the field naming its URL. A webhook
/// gets a new secret (kept only where one is needed).
fn target_from_proto(
    target: Option<pb::channel::Target>,
) -> Result<(ChannelTarget, &'static str), Error> {
    use pb::channel::Target;
    let (target, url_field) = match target {
        None => {
            return Err(Error::invalid(
                "channel.target",
                "is required: set one of webhook, slack, email or pagerduty",
            ));
        }
        Some(Target::Webhook(w)) => {
            if !w.secret.is_empty() {
                return Err(Error::invalid(
                    "channel.webhook.secret",
                    "is generated by the server; leave it empty",
                ));
            }
            let field = "channel.webhook.url";
            let target = ChannelTarget::Webhook {
                url: TargetUrl::parse(field, &w.url)?,
                secret: WebhookSecret::generate(),
            };
            (target, field)
        }
        Some(Target::Slack(slack)) => {
            let field = "channel.slack.webhook_url";
            let webhook = SlackWebhook::new(TargetUrl::parse(field, &slack.webhook_url)?);
            (ChannelTarget::Slack { webhook }, field)
        }
        Some(Target::Email(email)) => {
            let to = Email::parse("channel.email.to", &email.to)?;
            (ChannelTarget::Email { to }, "channel.email.to")
        }
        Some(Target::Pagerduty(pd)) => {
            let field = "channel.pagerduty.events_url";
            let events_url = if pd.events_url.trim().is_empty() {
                PAGERDUTY_EVENTS_URL
            } else {
                &pd.events_url
            };
            let target = ChannelTarget::PagerDuty {
                routing_key: RoutingKey::parse("channel.pagerduty.routing_key", &pd.routing_key)?,
                events_url: TargetUrl::parse(field, events_url)?,
            };
            (target, field)
        }
    };
    Ok((target, url_field))
}

/// A channel as shown. `in_full` only in CreateChannel's answer: a
/// webhook's secret, a Slack webhook's path and a PagerDuty routing key
/// are credentials, listed masked (or not at all, the secret).
pub fn channel_to_proto(c: ChannelRecord, in_full: bool) -> pb::Channel {
    use pb::channel::Target;
    let target_digest = c.target.digest();
    let target = match c.target {
        ChannelTarget::Webhook { url, secret } => Target::Webhook(pb::WebhookTarget {
            url: url.as_str().to_owned(),
            secret: if in_full {
                secret.expose().to_owned()
            } else {
                String::new()
            },
        }),
        ChannelTarget::Slack { webhook } => Target::Slack(pb::SlackTarget {
            webhook_url: if in_full {
                webhook.url().as_str().to_owned()
            } else {
                webhook.masked()
            },
        }),
        ChannelTarget::Email { to } => Target::Email(pb::EmailTarget {
            to: to.as_str().to_owned(),
        }),
        ChannelTarget::PagerDuty {
            routing_key,
            events_url,
        } => Target::Pagerduty(pb::PagerDutyTarget {
            routing_key: if in_full {
                routing_key.expose().to_owned()
            } else {
                routing_key.masked()
            },
            events_url: events_url.as_str().to_owned(),
        }),
    };
    pb::Channel {
        id: c.id,
        name: c.name,
        target: Some(target),
        url_ids: c.url_ids,
        notify_degraded: c.notify_degraded,
        created_at: Some(time_to_proto(c.created_at)),
        target_digest,
        remind_every: c.remind_every.map(pbjson_types::Duration::from),
    }
}

/// A delivery as listed.
pub fn delivery_to_proto(d: DeliveryRecord) -> pb::Delivery {
    let state = match d.state {
        DeliveryState::Pending => pb::DeliveryState::Pending,
        DeliveryState::Delivered => pb::DeliveryState::Delivered,
        DeliveryState::GaveUp => pb::DeliveryState::GaveUp,
    };
    pb::Delivery {
        id: d.id,
        channel_id: d.channel_id,
        incident_id: d.incident_id.unwrap_or(0),
        event: d.event.as_str().to_owned(),
        state: state as i32,
        attempts: i32::try_from(d.attempts).unwrap_or(i32::MAX),
        last_error: d.last_error.unwrap_or_default(),
        next_attempt_at: (d.state == DeliveryState::Pending)
            .then(|| time_to_proto(d.next_attempt_at)),
        created_at: Some(time_to_proto(d.created_at)),
        delivered_at: d.delivered_at.map(time_to_proto),
        reminder: d
            .reminder
            .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)),
    }
}

/// The fields UpdateStatusPage changes (`update_mask` paths).
const STATUS_PAGE_FIELDS: [&str; 5] = ["slug", "title", "url_ids", "public", "show_urls"];

/// An UpdateStatusPage request as the change it asks for: an empty mask
/// changes every field (the page is replaced).
pub fn status_page_update_from_proto(
    req: pb::UpdateStatusPageRequest,
) -> Result<StatusPageUpdate, Error> {
    let page = req
        .page
        .ok_or_else(|| Error::invalid("page", "is required"))?;
    let masked = masked_fields(
        req.update_mask,
        "UpdateStatusPage",
        &STATUS_PAGE_FIELDS,
        |_| None,
        |field| {
            if field == "update_time" {
                "is output only"
            } else {
                "is not a field of StatusPage"
            }
        },
    )?
    .unwrap_or_else(|| STATUS_PAGE_FIELDS.to_vec());
    let mut update = StatusPageUpdate::default();
    for field in masked {
        match field {
            "slug" => update.slug = Some(Slug::parse("page.slug", &page.slug)?),
            "title" => update.title = Some(parse_title("page.title", &page.title)?),
            "url_ids" => update.url_ids = Some(parse_url_ids("page.url_ids", &page.url_ids)?),
            "public" => update.public = Some(page.public),
            "show_urls" => update.show_urls = Some(page.show_urls),
            // Only STATUS_PAGE_FIELDS are masked.
            _ => {}
        }
    }
    Ok(update)
}

pub fn status_page_to_proto(page: StatusPageRecord) -> pb::StatusPage {
    pb::StatusPage {
        slug: page.slug.as_str().to_owned(),
        title: page.title,
        url_ids: page.url_ids,
        public: page.public,
        show_urls: page.show_urls,
        update_time: Some(time_to_proto(page.updated_at)),
    }
}

/// A CreateMaintenanceWindow request's window, parsed.
pub fn new_window_from_proto(
    window: Option<pb::MaintenanceWindow>,
) -> Result<crate::domain::maintenance::NewWindow, Error> {
    let w = window.ok_or_else(|| Error::invalid("window", "is required"))?;
    let ms = |field: &'static str, t: Option<crate::proto::Timestamp>| {
        t.map(|t| time_from_proto(field, t).map(|t| t.timestamp_millis()))
            .transpose()
    };
    let duration_ms = match w.duration {
        None => None,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            return Err(Error::invalid("window.duration", "must be positive"));
        }
        Some(d) => Some(
            d.seconds
                .saturating_mul(1_000)
                .saturating_add(i64::from(d.nanos) / 1_000_000),
        ),
    };
    crate::domain::maintenance::NewWindow::parse(
        w.url_ids,
        ms("window.start_time", w.start_time)?,
        ms("window.end_time", w.end_time)?,
        &w.recurrence,
        duration_ms,
        &w.time_zone,
    )
    .map_err(|e| Error::invalid(e.field, e.message))
}

pub fn window_to_proto(w: crate::domain::maintenance::MaintenanceWindow) -> pb::MaintenanceWindow {
    use crate::domain::maintenance::WindowSchedule;
    let time = |ms: i64| DateTime::from_timestamp_millis(ms).map(time_to_proto);
    let (start_ms, end_time, recurrence, duration) = match w.schedule {
        WindowSchedule::Once { start_ms, end_ms } => (start_ms, time(end_ms), String::new(), None),
        WindowSchedule::Recurring {
            start_ms,
            rrule,
            duration_ms,
        } => (
            start_ms,
            None,
            rrule,
            Some(std::time::Duration::from_millis(u64::try_from(duration_ms).unwrap_or(0)).into()),
        ),
    };
    pb::MaintenanceWindow {
        id: w.id,
        url_ids: w.url_ids,
        start_time: time(start_ms),
        end_time,
        recurrence,
        duration,
        time_zone: w.time_zone,
        create_time: time(w.created_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::truncate_to_micros;

    #[test]
    fn times_round_trip_and_out_of_range_ones_are_refused() {
        let t = truncate_to_micros(Utc::now());
        assert_eq!(time_from_proto("t", time_to_proto(t)).unwrap(), t);
        let bad_nanos = crate::proto::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(time_from_proto("t", bad_nanos).is_err());
        let too_late = crate::proto::Timestamp {
            seconds: 253_402_300_800,
            nanos: 0,
        };
        assert!(time_from_proto("t", too_late).is_err());
    }

    fn update(url: pb::Url, paths: &[&str]) -> Result<(i64, UrlUpdate), Error> {
        let bounds = PeriodBounds {
            min: std::time::Duration::from_secs(10),
            max: std::time::Duration::from_secs(6000),
        };
        let update_mask = (!paths.is_empty()).then(|| pbjson_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        });
        url_update_from_proto(
            pb::UpdateUrlRequest {
                url: Some(url),
                update_mask,
            },
            bounds,
        )
    }

    fn field(result: Result<(i64, UrlUpdate), Error>) -> (String, String) {
        match result {
            Err(Error::InvalidArgument { field, message }) => (field.into_owned(), message),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_mask_means_the_changeable_fields_that_are_set() {
        let url = pb::Url {
            id: 7,
            name: "shop".into(),
            failure_threshold: 5,
            state: pb::UrlState::Up as i32,
            ..Default::default()
        };
        let (id, u) = update(url, &[]).unwrap();
        assert_eq!(id, 7);
        assert_eq!(u.name, Some(Some("shop".into())));
        assert_eq!(u.failure_threshold, Some(5));
        assert_eq!(
            (u.period, u.paused, u.success_threshold),
            (None, None, None)
        );
    }

    #[test]
    fn a_mask_sets_what_it_names_even_to_defaults_in_either_spelling() {
        let (_, u) = update(pb::Url::default(), &["name", "paused", "period"]).unwrap();
        assert_eq!(u.name, Some(None), "an empty name resets it");
        assert_eq!(u.paused, Some(false));
        assert_eq!(u.period.unwrap().seconds(), 60, "unset period: one minute");
        let url = pb::Url {
            success_threshold: 4,
            ..Default::default()
        };
        assert_eq!(
            update(url, &["successThreshold"])
                .unwrap()
                .1
                .success_threshold,
            Some(4)
        );
    }

    #[test]
    fn unknown_output_only_and_immutable_paths_are_refused_by_name() {
        for (path, says) in [
            ("state", "is output only"),
            ("createdAt", "is output only"),
            ("id", "cannot be changed"),
            ("url", "cannot be changed"),
            ("colour", "is not a field"),
        ] {
            let (f, message) = field(update(pb::Url::default(), &["name", path]));
            assert_eq!(f, "update_mask");
            assert!(message.contains(&format!("\"{path}\" {says}")), "{message}");
        }
    }

    #[test]
    fn values_are_checked_naming_the_field() {
        let bad = |url: pb::Url, path: &str| field(update(url, &[path])).0;
        let name = pb::Url {
            name: "x".repeat(201),
            ..Default::default()
        };
        assert_eq!(bad(name, "name"), "url.name");
        assert_eq!(
            bad(pb::Url::default(), "failure_threshold"),
            "url.failure_threshold"
        );
        let period = pb::Url {
            period: Some(pbjson_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert_eq!(bad(period, "period"), "url.period");
        let missing = url_update_from_proto(
            pb::UpdateUrlRequest::default(),
            PeriodBounds {
                min: std::time::Duration::from_secs(1),
                max: std::time::Duration::from_secs(60),
            },
        );
        assert_eq!(field(missing).0, "url");
    }

    #[test]
    fn periods_negative_fractional_and_huge_are_refused() {
        let bounds = PeriodBounds {
            min: std::time::Duration::from_secs(10),
            max: std::time::Duration::from_secs(6000),
        };
        let dur = |seconds, nanos| Some(pbjson_types::Duration { seconds, nanos });
        assert_eq!(
            period_from_proto("period", dur(60, 0), bounds)
                .unwrap()
                .seconds(),
            60
        );
        assert!(period_from_proto("period", dur(-60, 0), bounds).is_err());
        assert!(period_from_proto("period", dur(60, 500), bounds).is_err());
        assert!(period_from_proto("period", dur(i64::MAX, 0), bounds).is_err());
    }
}
