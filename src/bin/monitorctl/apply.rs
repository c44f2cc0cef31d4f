//! `monitorctl apply` and `monitorctl export`: the account's URLs as a YAML
//! file, keyed by name (see README "Monitors as code").
//!
//! The file is checked whole before the server is called: YAML syntax, key
//! names, types and values (period, url scheme, assertions) all fail with
//! the file, the line and the key path, exit 2.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Duration};

use monitor::{
    api::convert::target_digest, domain::PAGERDUTY_EVENTS_URL, proto::monitor::v1 as pb,
};
use serde::{Deserialize, Serialize};

use super::{Failure, assertion_text, parse_assertion};

/// The file: `urls:`, a list of entries, and `channels:` (left out: the
/// account's channels are left as they are).
#[derive(Debug, Serialize)]
pub struct File {
    pub urls: Vec<Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<ChannelEntry>>,
}

/// The file as read: values checked after parsing, so that a message can
/// name the line of the key (serde's own errors name the entry's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    urls: Vec<RawEntry>,
    #[serde(default)]
    channels: Option<Vec<RawChannel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: String,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    slack: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    pagerduty: Option<String>,
    #[serde(default)]
    events_url: Option<String>,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    notify_degraded: Option<bool>,
    #[serde(default)]
    remind_every: Option<String>,
}

/// One notification channel, keyed by name: exactly one target (as
/// `monitorctl channel add` takes it), the names of its URLs (`[]`: all of
/// the account's; left out: as they are, all for a new channel) and
/// `notify_degraded` (left out: as it is, off for a new channel). Target
/// values may name environment variables as `${NAME}`, to keep secrets (a
/// Slack URL, a PagerDuty key) out of the file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_degraded: Option<bool>,
    /// `off`: no reminders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind_every: Option<Reminders>,
}

/// A channel's reminders: every so long (`30m`), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reminders(pub Option<Duration>);

impl Serialize for Reminders {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) => s.serialize_str(&humantime::format_duration(d).to_string()),
            None => s.serialize_str("off"),
        }
    }
}

/// A channel of the file, checked: its target with `${NAME}`s expanded, the
/// digest the server shows for that target, and its line.
#[derive(Debug, Clone)]
pub struct DesiredChannel {
    pub entry: ChannelEntry,
    target: pb::channel::Target,
    digest: String,
    line: Option<usize>,
    /// The line of its `urls:`, for a name found on neither side.
    urls_line: usize,
}

/// `raw` with each `${NAME}` replaced by the environment variable's value.
fn expand(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{raw:?}: \"${{\" without its \"}}\""))?;
        let name = &after[..end];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("${{{name}}} is not an environment variable's name"));
        }
        let value = std::env::var(name).map_err(|_| {
            format!("the environment variable {name} (named as ${{{name}}}) is not set")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The file's `field:` of a channel, from the server's field path.
fn channel_field(path: &str) -> &'static str {
    match path {
        "channel.webhook.url" => "webhook",
        "channel.slack.webhook_url" => "slack",
        "channel.email.to" => "email",
        "channel.pagerduty.routing_key" => "pagerduty",
        "channel.pagerduty.events_url" => "events_url",
        "channel.url_ids" => "urls",
        "channel.notify_degraded" => "notify_degraded",
        "channel.remind_every" => "remind_every",
        _ => "name",
    }
}

fn checked_channel(
    file: &str,
    text: &str,
    i: usize,
    from: usize,
    raw: RawChannel,
) -> Result<DesiredChannel, Failure> {
    use pb::channel::Target;
    let fail = |field: &str, msg: String| {
        Failure(
            format!(
                "{file}:{}: channels[{i}].{field}: {msg}",
                field_line(text, from, field)
            ),
            2,
        )
    };
    if raw.name.trim().is_empty() {
        return Err(fail("name", "must not be empty".into()));
    }
    let given = [&raw.webhook, &raw.slack, &raw.email, &raw.pagerduty]
        .iter()
        .filter(|t| t.is_some())
        .count();
    if given != 1 {
        return Err(fail(
            "name",
            format!("set exactly one of webhook, slack, email or pagerduty (found {given})"),
        ));
    }
    if raw.events_url.is_some() && raw.pagerduty.is_none() {
        return Err(fail("events_url", "goes with pagerduty only".into()));
    }
    let value = |field: &str, v: &Option<String>| -> Result<String, Failure> {
        expand(v.as_deref().unwrap_or_default()).map_err(|e| fail(field, e))
    };
    let target = if raw.webhook.is_some() {
        Target::Webhook(pb::WebhookTarget {
            url: value("webhook", &raw.webhook)?,
            secret: String::new(),
        })
    } else if raw.slack.is_some() {
        Target::Slack(pb::SlackTarget {
            webhook_url: value("slack", &raw.slack)?,
        })
    } else if raw.email.is_some() {
        Target::Email(pb::EmailTarget {
            to: value("email", &raw.email)?,
        })
    } else {
        Target::Pagerduty(pb::PagerDutyTarget {
            routing_key: value("pagerduty", &raw.pagerduty)?,
            events_url: value("events_url", &raw.events_url)?,
        })
    };
    let remind_every = match raw.remind_every.as_deref() {
        None => None,
        Some("off") => Some(Reminders(None)),
        Some(text) => Some(Reminders(Some(
            humantime::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero() && d.subsec_nanos() == 0)
                .ok_or_else(|| {
                    fail(
                        "remind_every",
                        format!("{text:?} is not a duration like 30m or 1h, nor off"),
                    )
                })?,
        ))),
    };
    let digest = target_digest(target.clone()).map_err(|e| match e {
        monitor::error::Error::InvalidArgument { field, message } => {
            fail(channel_field(&field), message)
        }
        other => fail("name", other.to_string()),
    })?;
    Ok(DesiredChannel {
        entry: ChannelEntry {
            name: raw.name,
            webhook: raw.webhook,
            slack: raw.slack,
            email: raw.email,
            pagerduty: raw.pagerduty,
            events_url: raw.events_url,
            urls: raw.urls,
            notify_degraded: raw.notify_degraded,
            remind_every,
        },
        target,
        digest,
        line: Some(from),
        urls_line: field_line(text, from, "urls"),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    url: String,
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    paused: Option<bool>,
    #[serde(default)]
    failure_threshold: Option<i32>,
    #[serde(default)]
    success_threshold: Option<i32>,
    #[serde(default)]
    assertions: Option<Vec<String>>,
    #[serde(default)]
    depends_on: Option<String>,
}

/// The line of `field:` in the entry that starts at `from` (1-based).
fn field_line(text: &str, from: usize, field: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            l.trim_start()
                .trim_start_matches("- ")
                .trim_start()
                .starts_with(&format!("{field}:"))
        })
        .map_or(from, |(i, _)| i + 1)
}

fn checked(file: &str, text: &str, i: usize, from: usize, raw: RawEntry) -> Result<Entry, Failure> {
    let fail = |field: &str, msg: String| {
        Failure(
            format!(
                "{file}:{}: urls[{i}].{field}: {msg}",
                field_line(text, from, field)
            ),
            2,
        )
    };
    if raw.name.trim().is_empty() {
        return Err(fail("name", "must not be empty".into()));
    }
    if !(raw.url.starts_with("http://") || raw.url.starts_with("https://")) {
        return Err(fail(
            "url",
            format!("{:?} is not an http:// or https:// URL", raw.url),
        ));
    }
    let period = match raw.period {
        None => None,
        Some(s) => {
            let p = humantime::parse_duration(&s).map_err(|e| {
                fail(
                    "period",
                    format!("{s:?} is not a duration like 30s or 5m ({e})"),
                )
            })?;
            if p.is_zero() || p.subsec_nanos() != 0 {
                return Err(fail(
                    "period",
                    format!("{s:?}: a period is a whole number of seconds, more than 0"),
                ));
            }
            Some(Period(p))
        }
    };
    let assertions = match raw.assertions {
        None => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(n, a)| {
                    parse_assertion(a)
                        .map(Assert)
                        .map_err(|e| fail("assertions", format!("[{n}]: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Entry {
        name: raw.name,
        url: raw.url,
        period,
        paused: raw.paused,
        failure_threshold: raw.failure_threshold,
        success_threshold: raw.success_threshold,
        assertions,
        depends_on: raw.depends_on,
    })
}

/// One URL. A field left out is left as it is on the server (a new URL
/// gets the server's default); `name` is the key and `url` is required.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertions: Option<Vec<Assert>>,
    /// The name of the URL it depends on (`""`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<String>,
}

/// A period written as humantime writes it (`30s`, `5m`, `1h 30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Duration);

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// An assertion written as `--assert` takes it (`status=200-299`, `latency<500ms`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Assert(pub pb::Assertion);

impl Serialize for Assert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&assertion_text(&self.0))
    }
}

/// A serde_yaml_ng error as `FILE:LINE: PATH: message`.
fn yaml_failure(file: &str, e: &serde_yaml_ng::Error) -> Failure {
    let text = e.to_string();
    // The location goes in front; drop its copy at the end.
    let text = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    let line = e
        .location()
        .map_or_else(String::new, |l| format!("{}:", l.line()));
    Failure(format!("{file}:{line} {text}"), 2)
}

/// The line of the `n`-th (from 0) `name: NAME` in the text, for messages
/// about an entry found after parsing (duplicates, the server's refusals).
fn line_of(text: &str, name: &str, n: usize) -> Option<usize> {
    line_after(text, 0, name, n)
}

/// The line of the top-level key `key:` (1-based), if the text has it.
fn section_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.starts_with(&format!("{key}:")))
        .map(|i| i + 1)
}

/// As [`line_of`], counting only from line `after` on (1-based; 0: all).
fn line_after(text: &str, after: usize, name: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(after.saturating_sub(1))
        .filter(|(_, l)| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            l.strip_prefix("name:").is_some_and(|v| {
                let v = v.trim();
                v.trim_matches(['"', '\'']) == name
            })
        })
        .nth(n)
        .map(|(i, _)| i + 1)
}

/// The desired URLs, each with the line that names it, and channels.
#[derive(Debug)]
pub struct Desired {
    pub file: String,
    pub entries: Vec<(Entry, Option<usize>)>,
    /// `None`: the file has no `channels:`, so channels are left alone.
    pub channels: Option<Vec<DesiredChannel>>,
    /// Gatus conditions that have no assertion here, as `name: condition (why)`.
    pub skipped: Vec<String>,
}

impl Desired {
    fn at(&self, i: usize) -> String {
        match self.entries[i].1 {
            Some(line) => format!("{}:{line}: urls[{i}]", self.file),
            None => format!("{}: urls[{i}]", self.file),
        }
    }

    fn channel_at(&self, i: usize) -> String {
        let line = self.channels.as_ref().and_then(|c| c[i].line);
        match line {
            Some(line) => format!("{}:{line}: channels[{i}]", self.file),
            None => format!("{}: channels[{i}]", self.file),
        }
    }
}

fn read(path: &Path) -> Result<(String, String), Failure> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure(format!("{file}: cannot read it: {e}"), 2))?;
    Ok((file, text))
}

/// Reads and checks a monitors file.
pub fn load(path: &Path) -> Result<Desired, Failure> {
    let (file, text) = read(path)?;
    let parsed: RawFile = serde_yaml_ng::from_str(&text).map_err(|e| yaml_failure(&file, &e))?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut urls = Vec::new();
    for (i, raw) in parsed.urls.into_iter().enumerate() {
        let n = seen.entry(raw.name.clone()).or_default();
        let from = line_of(&text, &raw.name, *n).unwrap_or(1);
        *n += 1;
        urls.push(checked(&file, &text, i, from, raw)?);
    }
    let mut desired = finish(file, &text, &urls, Vec::new())?;
    if let Some(raw) = parsed.channels {
        let start = section_line(&text, "channels").unwrap_or(1);
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut channels: Vec<DesiredChannel> = Vec::new();
        for (i, raw) in raw.into_iter().enumerate() {
            let n = seen.entry(raw.name.clone()).or_default();
            let from = line_after(&text, start, &raw.name, *n).unwrap_or(start);
            *n += 1;
            if *n > 1 {
                return Err(Failure(
                    format!(
                        "{}:{from}: channels[{i}].name: {:?} is named twice (names are the key)",
                        desired.file, raw.name
                    ),
                    2,
                ));
            }
            channels.push(checked_channel(&desired.file, &text, i, from, raw)?);
        }
        desired.channels = Some(channels);
    }
    Ok(desired)
}

fn finish(
    file: String,
    text: &str,
    urls: &[Entry],
    skipped: Vec<String>,
) -> Result<Desired, Failure> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut entries = Vec::new();
    for e in urls {
        let n = seen.entry(&e.name).or_default();
        let line = line_of(text, &e.name, *n);
        if *n > 0 {
            let at = line.map_or_else(String::new, |l| format!("{l}:"));
            return Err(Failure(
                format!(
                    "{file}:{at} urls[{}].name: {:?} is named twice (names are the key)",
                    entries.len(),
                    e.name
                ),
                2,
            ));
        }
        *n += 1;
        entries.push((e.clone(), line));
    }
    Ok(Desired {
        file,
        entries,
        channels: None,
        skipped,
    })
}

/// A Gatus config file: its endpoints.
#[derive(Debug, Deserialize)]
struct Gatus {
    #[serde(default)]
    endpoints: Vec<GatusEndpoint>,
}

#[derive(Debug, Deserialize)]
struct GatusEndpoint {
    name: String,
    #[serde(default)]
    group: Option<String>,
    url: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    conditions: Vec<String>,
}

/// Reads a Gatus config's endpoints as URLs: name (`group/name` when in a
/// group), url, interval (Gatus's default: 60s), `enabled: false` as paused,
/// and the conditions that have an assertion here; the others are skipped.
pub fn load_gatus(path: &Path) -> Result<Desired, Failure> {
    let (file, text) = read(path)?;
    let parsed: Gatus = serde_yaml_ng::from_str(&text).map_err(|e| yaml_failure(&file, &e))?;
    let mut urls = Vec::new();
    let mut skipped = Vec::new();
    for (i, ep) in parsed.endpoints.into_iter().enumerate() {
        let name = match &ep.group {
            Some(g) if !g.is_empty() => format!("{g}/{}", ep.name),
            _ => ep.name.clone(),
        };
        if !(ep.url.starts_with("http://") || ep.url.starts_with("https://")) {
            skipped.push(format!(
                "{name}: the whole endpoint ({}: not http or https)",
                ep.url
            ));
            continue;
        }
        let interval = ep.interval.as_deref().unwrap_or("60s");
        let period = humantime::parse_duration(interval).map_err(|e| {
            let line = line_of(&text, &ep.name, 0).map_or_else(String::new, |l| format!("{l}:"));
            Failure(
                format!(
                    "{file}:{line} endpoints[{i}].interval: {interval:?} is not a duration ({e})"
                ),
                2,
            )
        })?;
        let mut assertions = Vec::new();
        for c in &ep.conditions {
            match gatus_condition(c) {
                Ok(Some(a)) => assertions.push(Assert(a)),
                Ok(None) => {}
                Err(why) => skipped.push(format!("{name}: {c} ({why})")),
            }
        }
        urls.push(Entry {
            name,
            url: ep.url,
            period: Some(Period(period)),
            paused: Some(ep.enabled == Some(false)),
            failure_threshold: None,
            success_threshold: None,
            assertions: Some(assertions),
            depends_on: None,
        });
    }
    finish(file, &text, &urls, skipped)
}

/// A Gatus condition as an assertion: `Ok(None)` when it needs none (every
/// probe checks it already), `Err(why)` when there is no such assertion.
fn gatus_condition(c: &str) -> Result<Option<pb::Assertion>, String> {
    let c = c.trim();
    let ops = ["==", "!=", "<=", ">=", "<", ">"];
    let Some((at, op)) = ops
        .iter()
        .filter_map(|op| c.find(op).map(|at| (at, *op)))
        .min_by_key(|(at, op)| (*at, std::cmp::Reverse(op.len())))
    else {
        return Err("not a comparison".into());
    };
    let (left, right) = (c[..at].trim(), c[at + op.len()..].trim());
    let assert = |spec: String| parse_assertion(&spec).map(Some);
    match (left, op) {
        ("[STATUS]", "==") => {
            let codes = right
                .strip_prefix("any(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or(right);
            assert(format!("status={}", codes.replace(' ', "")))
        }
        ("[STATUS]", "<" | "<=" | ">" | ">=") => {
            let n: u16 = right
                .parse()
                .map_err(|_| format!("{right:?} is not a status code"))?;
            let range = match op {
                "<" => format!("100-{}", n - 1),
                "<=" => format!("100-{n}"),
                ">" => format!("{}-599", n + 1),
                _ => format!("{n}-599"),
            };
            assert(format!("status={range}"))
        }
        ("[RESPONSE_TIME]", "<") => assert(format!("latency<{right}ms")),
        ("[CONNECTED]", "==") if right == "true" => Ok(None),
        ("[CERTIFICATE_EXPIRATION]", ">" | ">=") => {
            let d = humantime::parse_duration(right)
                .map_err(|e| format!("{right:?} is not a duration ({e})"))?;
            assert(format!("tls-days>={}", d.as_secs().div_ceil(86_400)))
        }
        ("[BODY]", "==") => match right
            .strip_prefix("pat(*")
            .and_then(|r| r.strip_suffix("*)"))
        {
            Some(text) if !text.contains('*') => assert(format!("body~{text}")),
            _ => Err("only pat(*TEXT*) has an assertion here (body~TEXT)".into()),
        },
        (body, "==") if body.starts_with("[BODY].") => {
            if right.contains('(') {
                return Err(
                    "functions (pat, any, len, has) on a JSON path have no assertion here".into(),
                );
            }
            let mut pointer = String::new();
            for part in body["[BODY].".len()..].split('.') {
                // `items[0]` → /items/0
                let mut pieces = part.split('[');
                let key = pieces.next().unwrap_or_default();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                for index in pieces {
                    let _ = write!(pointer, "/{}", index.trim_end_matches(']'));
                }
            }
            assert(format!("json:{pointer}={right}"))
        }
        _ => Err("no matching assertion".into()),
    }
}

/// The environment variable an exported channel's secret is left to:
/// `MONITOR_CHANNEL_<NAME>_<WHAT>`, the name in capitals, other
/// characters as `_`.
fn secret_variable(name: &str, what: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("MONITOR_CHANNEL_{name}_{what}")
}

/// A channel as the file writes it, and the variable its secret is left
/// to, if it has one (the server shows a Slack URL and a PagerDuty key
/// masked, so `export` cannot write them).
fn channel_entry(c: &pb::Channel, names: &BTreeMap<i64, &str>) -> (ChannelEntry, Option<String>) {
    use pb::channel::Target;
    let mut entry = ChannelEntry {
        name: c.name.clone(),
        webhook: None,
        slack: None,
        email: None,
        pagerduty: None,
        events_url: None,
        urls: Some(url_names(&c.url_ids, names)),
        notify_degraded: Some(c.notify_degraded),
        remind_every: Some(Reminders(remind_every(c))),
    };
    let mut secret = None;
    match &c.target {
        Some(Target::Webhook(w)) => entry.webhook = Some(w.url.clone()),
        Some(Target::Email(e)) => entry.email = Some(e.to.clone()),
        Some(Target::Slack(_)) => {
            let var = secret_variable(&c.name, "SLACK_URL");
            entry.slack = Some(format!("${{{var}}}"));
            secret = Some(var);
        }
        Some(Target::Pagerduty(p)) => {
            let var = secret_variable(&c.name, "PAGERDUTY_KEY");
            entry.pagerduty = Some(format!("${{{var}}}"));
            if p.events_url != PAGERDUTY_EVENTS_URL {
                entry.events_url = Some(p.events_url.clone());
            }
            secret = Some(var);
        }
        None => {}
    }
    (entry, secret)
}

/// A channel's reminder interval, as the server shows it.
fn remind_every(c: &pb::Channel) -> Option<Duration> {
    c.remind_every.and_then(|d| Duration::try_from(d).ok())
}

/// The names of URLs by id (`#ID` for one not listed).
fn url_names(ids: &[i64], names: &BTreeMap<i64, &str>) -> Vec<String> {
    let mut out: Vec<String> = ids
        .iter()
        .map(|id| {
            names
                .get(id)
                .map_or_else(|| format!("#{id}"), |n| (*n).to_owned())
        })
        .collect();
    out.sort();
    out
}

/// What `export` writes: every URL and channel with every field, so
/// applying it back changes nothing; and the environment variables to set
/// first (one per Slack or PagerDuty channel: their secrets are not shown).
pub fn export(
    urls: &[pb::Url],
    channels: &[pb::Channel],
) -> Result<(String, Vec<String>), Failure> {
    let names: BTreeMap<i64, &str> = urls.iter().map(|u| (u.id, key(u))).collect();
    let mut variables = Vec::new();
    let mut channels: Vec<&pb::Channel> = channels.iter().collect();
    channels.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let channels: Vec<ChannelEntry> = channels
        .into_iter()
        .map(|c| {
            let (entry, secret) = channel_entry(c, &names);
            variables.extend(secret);
            entry
        })
        .collect();
    let mut urls: Vec<&pb::Url> = urls.iter().collect();
    urls.sort_by(|a, b| key(a).cmp(key(b)).then(a.id.cmp(&b.id)));
    let parent = |u: &pb::Url| names.get(&u.depends_on).map(|n| (*n).to_owned());
    let file = File {
        urls: urls
            .into_iter()
            .map(|u| Entry {
                name: key(u).to_owned(),
                url: u.url.clone(),
                period: u
                    .period
                    .and_then(|p| Duration::try_from(p).ok())
                    .map(Period),
                paused: Some(u.paused),
                failure_threshold: Some(u.failure_threshold),
                success_threshold: Some(u.success_threshold),
                assertions: Some(u.assertions.iter().cloned().map(Assert).collect()),
                depends_on: parent(u),
            })
            .collect(),
        channels: Some(channels),
    };
    let text =
        serde_yaml_ng::to_string(&file).map_err(|e| Failure(format!("writing YAML: {e}"), 1))?;
    Ok((text, variables))
}

/// A URL's key: its name, or the URL itself when it has none (as the
/// tables show it).
fn key(u: &pb::Url) -> &str {
    if u.name.is_empty() { &u.url } else { &u.name }
}

/// One step of the plan.
#[derive(Debug)]
enum Step {
    Add(usize),
    /// The entry, the server's URL, the changed fields as `field a -> b`.
    Update(usize, pb::Url, Vec<String>),
    /// The URL changed: delete the old one, add the new one.
    Replace(usize, pb::Url),
    Delete(pb::Url),
}

fn period_text(p: Option<Duration>) -> String {
    p.map_or_else(
        || "unset".into(),
        |p| humantime::format_duration(p).to_string(),
    )
}

fn list_text(a: &[pb::Assertion]) -> String {
    format!(
        "[{}]",
        a.iter().map(assertion_text).collect::<Vec<_>>().join(", ")
    )
}

/// The fields of `have` that `want` changes.
fn changes(want: &Entry, have: &pb::Url, names: &BTreeMap<i64, &str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(parent) = &want.depends_on {
        let now = names.get(&have.depends_on).copied().unwrap_or_default();
        if now != parent {
            let text = |n: &str| {
                if n.is_empty() {
                    "none".to_owned()
                } else {
                    n.to_owned()
                }
            };
            out.push(format!("depends_on {} -> {}", text(now), text(parent)));
        }
    }
    let have_period = have.period.and_then(|p| Duration::try_from(p).ok());
    if let Some(Period(p)) = want.period
        && have_period != Some(p)
    {
        out.push(format!(
            "period {} -> {}",
            period_text(have_period),
            period_text(Some(p))
        ));
    }
    if let Some(p) = want.paused
        && p != have.paused
    {
        out.push(format!("paused {} -> {p}", have.paused));
    }
    if let Some(n) = want.failure_threshold
        && n != have.failure_threshold
    {
        out.push(format!(
            "failure_threshold {} -> {n}",
            have.failure_threshold
        ));
    }
    if let Some(n) = want.success_threshold
        && n != have.success_threshold
    {
        out.push(format!(
            "success_threshold {} -> {n}",
            have.success_threshold
        ));
    }
    if let Some(a) = &want.assertions {
        let a: Vec<pb::Assertion> = a.iter().map(|a| a.0.clone()).collect();
        // As written: the server fills in defaults (a severity, say).
        if list_text(&a) != list_text(&have.assertions) {
            out.push(format!(
                "assertions {} -> {}",
                list_text(&have.assertions),
                list_text(&a)
            ));
        }
    }
    out
}

/// Plans `desired` against the account's URLs; refuses (exit 2) when two
/// of them share a name, since names are the key.
fn plan(desired: &Desired, have: &[pb::Url], prune: bool) -> Result<Vec<Step>, Failure> {
    let mut by_name: BTreeMap<&str, Vec<&pb::Url>> = BTreeMap::new();
    for u in have {
        by_name.entry(key(u)).or_default().push(u);
    }
    let twice: Vec<String> = by_name
        .iter()
        .filter(|(_, us)| us.len() > 1)
        .map(|(name, us)| {
            let ids: Vec<String> = us.iter().map(|u| u.id.to_string()).collect();
            format!("{name:?} (ids {})", ids.join(", "))
        })
        .collect();
    if !twice.is_empty() {
        return Err(Failure(
            format!(
                "the account has more than one URL named {}; names are the key, so rename or \
                 delete all but one (`monitorctl update ID --name NEW`) and apply again",
                twice.join(", ")
            ),
            2,
        ));
    }
    let names: BTreeMap<i64, &str> = have.iter().map(|u| (u.id, key(u))).collect();
    let mut order: Vec<usize> = (0..desired.entries.len()).collect();
    order.sort_by(|a, b| desired.entries[*a].0.name.cmp(&desired.entries[*b].0.name));
    let mut steps = Vec::new();
    for i in order {
        let want = &desired.entries[i].0;
        if let Some(parent) = want.depends_on.as_deref().filter(|p| !p.is_empty())
            && !desired.entries.iter().any(|(e, _)| e.name == parent)
            && (prune || !by_name.contains_key(parent))
        {
            return Err(Failure(
                format!(
                    "{}.depends_on: no URL named {parent:?} in the file{}",
                    desired.at(i),
                    if prune { "" } else { " or the account" }
                ),
                2,
            ));
        }
        match by_name.get(want.name.as_str()).and_then(|us| us.first()) {
            None => steps.push(Step::Add(i)),
            Some(u) if u.url != want.url => steps.push(Step::Replace(i, (*u).clone())),
            Some(u) => {
                let c = changes(want, u, &names);
                if !c.is_empty() {
                    steps.push(Step::Update(i, (*u).clone(), c));
                }
            }
        }
    }
    if prune {
        for (name, us) in &by_name {
            if !desired.entries.iter().any(|(e, _)| e.name == *name) {
                steps.push(Step::Delete((*us[0]).clone()));
            }
        }
    }
    Ok(steps)
}

/// One step of the channels' plan.
#[derive(Debug)]
enum ChannelStep {
    Add(usize),
    /// The file's channel, the server's, the changes as `field a -> b`, and
    /// the update mask.
    Update(usize, pb::Channel, Vec<String>, Vec<&'static str>),
    Delete(pb::Channel),
}

/// A channel's target as the plan shows it (secrets masked).
fn target_text(target: Option<&pb::channel::Target>) -> String {
    let (kind, shown) = super::channel_target(&pb::Channel {
        target: target.cloned(),
        ..Default::default()
    });
    format!("{kind} {shown}")
}

fn names_text(names: &[String]) -> String {
    if names.is_empty() {
        "all".into()
    } else {
        format!("[{}]", names.join(", "))
    }
}

/// Plans the file's channels against the account's (nothing when the file
/// has no `channels:`). `replaced`: names of URLs the plan replaces (their
/// channels are linked to the new URL).
fn plan_channels(
    desired: &Desired,
    urls: &[pb::Url],
    have: &[pb::Channel],
    replaced: &[&str],
    prune: bool,
) -> Result<Vec<ChannelStep>, Failure> {
    let Some(want) = &desired.channels else {
        return Ok(Vec::new());
    };
    let mut by_name: BTreeMap<&str, Vec<&pb::Channel>> = BTreeMap::new();
    for c in have {
        by_name.entry(&c.name).or_default().push(c);
    }
    if let Some((name, cs)) = by_name.iter().find(|(_, cs)| cs.len() > 1) {
        let ids: Vec<String> = cs.iter().map(|c| c.id.to_string()).collect();
        return Err(Failure(
            format!(
                "the account has more than one channel named {name:?} (ids {}); names are the \
                 key, so delete all but one (`monitorctl channel delete ID`) and apply again",
                ids.join(", ")
            ),
            2,
        ));
    }
    let names: BTreeMap<i64, &str> = urls.iter().map(|u| (u.id, key(u))).collect();
    let in_file = |n: &str| desired.entries.iter().any(|(e, _)| e.name == n);
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|a, b| want[*a].entry.name.cmp(&want[*b].entry.name));
    let mut steps = Vec::new();
    for i in order {
        let d = &want[i];
        let mut wanted_urls = d.entry.urls.clone();
        if let Some(list) = &mut wanted_urls {
            list.sort();
            list.dedup();
            if let Some(unknown) = list
                .iter()
                .find(|n| !in_file(n) && (prune || !names.values().any(|have| have == n)))
            {
                return Err(Failure(
                    format!(
                        "{}:{}: channels[{i}].urls: no URL named {unknown:?} in the file{}",
                        desired.file,
                        d.urls_line,
                        if prune { "" } else { " or the account" }
                    ),
                    2,
                ));
            }
        }
        let Some(c) = by_name.get(d.entry.name.as_str()).map(|cs| cs[0]) else {
            steps.push(ChannelStep::Add(i));
            continue;
        };
        let (changes, mask) = channel_changes(d, c, wanted_urls.as_deref(), &names, replaced);
        if !mask.is_empty() {
            steps.push(ChannelStep::Update(i, c.clone(), changes, mask));
        }
    }
    if prune {
        for (name, cs) in &by_name {
            if !want.iter().any(|d| d.entry.name == *name) {
                steps.push(ChannelStep::Delete(cs[0].clone()));
            }
        }
    }
    Ok(steps)
}

/// What the file's channel `d` changes in the server's `c`: the changes as
/// `field a -> b`, and the update mask.
fn channel_changes(
    d: &DesiredChannel,
    c: &pb::Channel,
    wanted_urls: Option<&[String]>,
    names: &BTreeMap<i64, &str>,
    replaced: &[&str],
) -> (Vec<String>, Vec<&'static str>) {
    let (mut changes, mut mask) = (Vec::new(), Vec::new());
    if c.target_digest != d.digest {
        changes.push(format!(
            "target {} -> {}",
            target_text(c.target.as_ref()),
            target_text(Some(&d.target))
        ));
        mask.push("target");
    }
    if let Some(list) = wanted_urls {
        let now = url_names(&c.url_ids, names);
        if now != list {
            changes.push(format!("urls {} -> {}", names_text(&now), names_text(list)));
            mask.push("url_ids");
        } else if let Some(r) = list.iter().find(|n| replaced.contains(&n.as_str())) {
            changes.push(format!("urls: {r} is replaced, linked anew"));
            mask.push("url_ids");
        }
    }
    if let Some(on) = d.entry.notify_degraded
        && on != c.notify_degraded
    {
        changes.push(format!("notify_degraded {} -> {on}", c.notify_degraded));
        mask.push("notify_degraded");
    }
    if let Some(Reminders(every)) = d.entry.remind_every
        && every != remind_every(c)
    {
        let text = |d: Option<Duration>| {
            d.map_or_else(
                || "off".into(),
                |d| humantime::format_duration(d).to_string(),
            )
        };
        changes.push(format!(
            "remind_every {} -> {}",
            text(remind_every(c)),
            text(every)
        ));
        mask.push("remind_every");
    }
    (changes, mask)
}

fn channel_step_text(desired: &Desired, step: &ChannelStep) -> String {
    let want = |i: &usize| &desired.channels.as_ref().expect("planned from them")[*i];
    match step {
        ChannelStep::Add(i) => {
            let d = want(i);
            format!(
                "+ add channel {}: {}",
                d.entry.name,
                target_text(Some(&d.target))
            )
        }
        ChannelStep::Update(i, _, changes, _) => {
            format!(
                "~ update channel {}: {}",
                want(i).entry.name,
                changes.join(", ")
            )
        }
        ChannelStep::Delete(c) => {
            format!(
                "- delete channel {}: {} (id {})",
                c.name,
                target_text(c.target.as_ref()),
                c.id
            )
        }
    }
}

fn step_text(desired: &Desired, step: &Step) -> String {
    match step {
        Step::Add(i) => {
            let e = &desired.entries[*i].0;
            format!("+ add {}: {}", e.name, e.url)
        }
        Step::Update(i, _, c) => {
            format!("~ update {}: {}", desired.entries[*i].0.name, c.join(", "))
        }
        Step::Replace(i, u) => {
            let e = &desired.entries[*i].0;
            format!(
                "-/+ replace {}: url {} -> {} (a new URL, its history starts again)",
                e.name, u.url, e.url
            )
        }
        Step::Delete(u) => format!("- delete {}: {} (id {})", key(u), u.url, u.id),
    }
}

/// The update that sets `want`'s fields on URL `id` (`name` too when asked).
fn update_for(id: i64, want: &Entry, with_name: bool) -> Option<pb::UpdateUrlRequest> {
    let req = super::update_request(
        id,
        with_name.then_some(&want.name),
        want.period.map(|p| p.0),
        want.paused,
        (want.failure_threshold, want.success_threshold),
        want.assertions
            .as_ref()
            .map(|a| a.iter().map(|a| a.0.clone()).collect()),
    );
    let empty = req.update_mask.as_ref().is_none_or(|m| m.paths.is_empty());
    (!empty).then_some(req)
}

type Client = monitor::client::Client;

/// Plans and (unless `dry_run`) applies; prints the plan, then each step done.
pub async fn apply(
    client: &mut Client,
    saved: &super::Saved,
    desired: &Desired,
    prune: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    for s in &desired.skipped {
        println!("skipped {s}");
    }
    let have = client
        .list_urls(super::authed(pb::ListUrlsRequest {}, saved)?)
        .await?
        .into_inner()
        .urls;
    let steps = plan(desired, &have, prune)?;
    let have_channels = if desired.channels.is_some() {
        client
            .list_channels(super::authed(pb::ListChannelsRequest {}, saved)?)
            .await?
            .into_inner()
            .channels
    } else {
        Vec::new()
    };
    let replaced: Vec<&str> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Replace(i, _) => Some(desired.entries[*i].0.name.as_str()),
            _ => None,
        })
        .collect();
    let channel_steps = plan_channels(desired, &have, &have_channels, &replaced, prune)?;
    if steps.is_empty() && channel_steps.is_empty() {
        println!("no changes");
        return Ok(());
    }
    for s in &steps {
        println!("{}", step_text(desired, s));
    }
    for s in &channel_steps {
        println!("{}", channel_step_text(desired, s));
    }
    if dry_run {
        println!("dry run: nothing changed");
        return Ok(());
    }
    let (added, updated, deleted) = apply_urls(client, saved, desired, &steps).await?;
    apply_dependencies(client, saved, desired).await?;
    let (a, u, d) = apply_channels(client, saved, desired, &channel_steps).await?;
    println!(
        "applied: {} added, {} updated, {} deleted",
        added + a,
        updated + u,
        deleted + d
    );
    Ok(())
}

/// Sets each URL's `depends_on` to the URL the file names, once every URL
/// is added (a parent may be new, or replaced, in the same run).
async fn apply_dependencies(
    client: &mut Client,
    saved: &super::Saved,
    desired: &Desired,
) -> Result<(), Failure> {
    if desired.entries.iter().all(|(e, _)| e.depends_on.is_none()) {
        return Ok(());
    }
    let urls = client
        .list_urls(super::authed(pb::ListUrlsRequest {}, saved)?)
        .await?
        .into_inner()
        .urls;
    for (i, (want, _)) in desired.entries.iter().enumerate() {
        let (Some(parent), Some(url)) =
            (&want.depends_on, urls.iter().find(|u| key(u) == want.name))
        else {
            continue;
        };
        let parent_id = urls.iter().find(|u| key(u) == parent).map_or(0, |u| u.id);
        if parent_id == url.depends_on {
            continue;
        }
        let req = pb::UpdateUrlRequest {
            url: Some(pb::Url {
                id: url.id,
                depends_on: parent_id,
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["depends_on".into()],
            }),
        };
        client
            .update_url(super::authed(req, saved)?)
            .await
            .map_err(|e| Failure(format!("{}.depends_on: {}", desired.at(i), e.message()), 2))?;
    }
    Ok(())
}

/// Carries out the URLs' steps.
async fn apply_urls(
    client: &mut Client,
    saved: &super::Saved,
    desired: &Desired,
    steps: &[Step],
) -> Result<(u32, u32, u32), Failure> {
    let refused = |i: usize, status: tonic::Status| -> Failure {
        if status.code() == tonic::Code::InvalidArgument {
            let m = status.message();
            match m.strip_prefix("url.") {
                Some(field) => Failure(format!("{}.{field}", desired.at(i)), 2),
                None => Failure(format!("{}: {m}", desired.at(i)), 2),
            }
        } else {
            Failure::from(status)
        }
    };
    let (mut added, mut updated, mut deleted) = (0, 0, 0);
    for s in steps {
        match s {
            Step::Add(i) | Step::Replace(i, _) => {
                let want = &desired.entries[*i].0;
                let url = client
                    .add_url(super::authed(
                        pb::AddUrlRequest {
                            url: want.url.clone(),
                            period: want.period.map(|p| p.0.into()),
                            assertions: want
                                .assertions
                                .as_ref()
                                .map(|a| a.iter().map(|a| a.0.clone()).collect())
                                .unwrap_or_default(),
                        },
                        saved,
                    )?)
                    .await
                    .map_err(|e| refused(*i, e))?
                    .into_inner()
                    .url
                    .unwrap_or_default();
                let mut only_rest = want.clone();
                only_rest.period = None;
                only_rest.assertions = None;
                if let Some(req) = update_for(url.id, &only_rest, true)
                    && let Err(e) = client.update_url(super::authed(req, saved)?).await
                {
                    // No half-made URL: take the new one back.
                    let _ = client
                        .delete_url(super::authed(pb::DeleteUrlRequest { id: url.id }, saved)?)
                        .await;
                    return Err(refused(*i, e));
                }
                if let Step::Replace(_, old) = s {
                    client
                        .delete_url(super::authed(pb::DeleteUrlRequest { id: old.id }, saved)?)
                        .await?;
                    println!("replaced {} (id {} -> {})", want.name, old.id, url.id);
                    updated += 1;
                } else {
                    println!("added {} (id {})", want.name, url.id);
                    added += 1;
                }
            }
            Step::Update(i, u, _) => {
                let want = &desired.entries[*i].0;
                if let Some(req) = update_for(u.id, want, false) {
                    client
                        .update_url(super::authed(req, saved)?)
                        .await
                        .map_err(|e| refused(*i, e))?;
                }
                println!("updated {} (id {})", want.name, u.id);
                updated += 1;
            }
            Step::Delete(u) => {
                client
                    .delete_url(super::authed(pb::DeleteUrlRequest { id: u.id }, saved)?)
                    .await?;
                println!("deleted {} (id {})", key(u), u.id);
                deleted += 1;
            }
        }
    }
    Ok((added, updated, deleted))
}

/// The channel `d` as CreateChannel and UpdateChannel take it (`id` 0: a new one).
fn channel_body(id: i64, d: &DesiredChannel, url_ids: Vec<i64>) -> pb::Channel {
    pb::Channel {
        id,
        name: d.entry.name.clone(),
        target: Some(d.target.clone()),
        url_ids,
        notify_degraded: d.entry.notify_degraded.unwrap_or(false),
        remind_every: d
            .entry
            .remind_every
            .and_then(|r| r.0)
            .map(pbjson_types::Duration::from),
        ..Default::default()
    }
}

/// Carries out the channels' steps, after the URLs' (a channel's URLs are
/// looked up by name again, so new and replaced URLs are found).
async fn apply_channels(
    client: &mut Client,
    saved: &super::Saved,
    desired: &Desired,
    steps: &[ChannelStep],
) -> Result<(u32, u32, u32), Failure> {
    let (mut added, mut updated, mut deleted) = (0, 0, 0);
    if steps.is_empty() {
        return Ok((added, updated, deleted));
    }
    let urls = client
        .list_urls(super::authed(pb::ListUrlsRequest {}, saved)?)
        .await?
        .into_inner()
        .urls;
    let ids = |list: &Option<Vec<String>>| -> Vec<i64> {
        list.iter()
            .flatten()
            .filter_map(|n| urls.iter().find(|u| key(u) == n).map(|u| u.id))
            .collect()
    };
    let refused = |i: usize, status: tonic::Status| -> Failure {
        if status.code() == tonic::Code::InvalidArgument {
            let m = status.message();
            match m.split_once(": ") {
                Some((path, why)) if path.starts_with("channel.") => Failure(
                    format!("{}.{}: {why}", desired.channel_at(i), channel_field(path)),
                    2,
                ),
                _ => Failure(format!("{}: {m}", desired.channel_at(i)), 2),
            }
        } else {
            Failure::from(status)
        }
    };
    let want = desired.channels.as_deref().unwrap_or_default();
    for step in steps {
        match step {
            ChannelStep::Add(i) => {
                let d = &want[*i];
                let c = client
                    .create_channel(super::authed(
                        pb::CreateChannelRequest {
                            channel: Some(channel_body(0, d, ids(&d.entry.urls))),
                        },
                        saved,
                    )?)
                    .await
                    .map_err(|e| refused(*i, e))?
                    .into_inner();
                match &c.target {
                    Some(pb::channel::Target::Webhook(w)) => println!(
                        "added channel {} (id {}); its webhook signing secret, shown once: {}",
                        c.name, c.id, w.secret
                    ),
                    _ => println!("added channel {} (id {})", c.name, c.id),
                }
                added += 1;
            }
            ChannelStep::Update(i, c, _, mask) => {
                let d = &want[*i];
                client
                    .update_channel(super::authed(
                        pb::UpdateChannelRequest {
                            channel: Some(channel_body(c.id, d, ids(&d.entry.urls))),
                            update_mask: Some(pbjson_types::FieldMask {
                                paths: mask.iter().map(|p| (*p).to_owned()).collect(),
                            }),
                        },
                        saved,
                    )?)
                    .await
                    .map_err(|e| refused(*i, e))?;
                println!("updated channel {} (id {})", d.entry.name, c.id);
                updated += 1;
            }
            ChannelStep::Delete(c) => {
                client
                    .delete_channel(super::authed(pb::DeleteChannelRequest { id: c.id }, saved)?)
                    .await?;
                println!("deleted channel {} (id {})", c.name, c.id);
                deleted += 1;
            }
        }
    }
    Ok((added, updated, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gatus_conditions_map_to_assertions_or_say_why_not() {
        let text = |c: &str| gatus_condition(c).map(|a| a.map(|a| assertion_text(&a)));
        assert_eq!(text("[STATUS] == 200"), Ok(Some("status=200".into())));
        assert_eq!(
            text("[STATUS] == any(200, 201)"),
            Ok(Some("status=200,201".into()))
        );
        assert_eq!(text("[STATUS] < 300"), Ok(Some("status=100-299".into())));
        assert_eq!(
            text("[RESPONSE_TIME] < 500"),
            Ok(Some("latency<500ms".into()))
        );
        assert_eq!(
            text("[BODY].status == UP"),
            Ok(Some("json:/status=\"UP\"".into()))
        );
        assert_eq!(
            text("[BODY].data.items[0].ok == true"),
            Ok(Some("json:/data/items/0/ok=true".into()))
        );
        assert_eq!(
            text("[CERTIFICATE_EXPIRATION] > 48h"),
            Ok(Some("tls-days>=2".into()))
        );
        assert_eq!(text("[BODY] == pat(*ok*)"), Ok(Some("body~ok".into())));
        assert_eq!(text("[CONNECTED] == true"), Ok(None));
        assert!(text("len([BODY].items) == 3").is_err());
        assert!(text("[DNS_RCODE] == NOERROR").is_err());
    }
}
