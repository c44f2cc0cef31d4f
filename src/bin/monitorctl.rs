//! monitorctl: the command-line client, built on the library's generated
//! gRPC client.
//!
//! `login` keeps the token (mode 0600) under the user's config directory, and
//! the other commands send it. Output is a table, or with `--json` the
//! responses in canonical proto3 JSON for scripts. Exit codes say what kind
//! of failure it was (see `--help`).

use std::{
    io::{BufRead, IsTerminal},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use comfy_table::{Table, presets::NOTHING};
use monitor::proto::monitor::v1 as pb;
use serde::{Deserialize, Serialize};
use tonic::{Code, Request};

#[path = "monitorctl/apply.rs"]
mod apply;
#[path = "monitorctl/maintenance.rs"]
mod maintenance;

const EXIT_CODES: &str = "\
Assertions (--assert, on add and update; prefix one with `degraded:` to make
its failure DEGRADED instead of DOWN):
  status=200-299,301      the status is one of these (replaces the 200-399 rule)
  latency<500ms           the response head arrives within this
  body~TEXT / body!~TEXT  the body read (first 64 KiB by default) has / lacks TEXT
  header:NAME=VALUE       a NAME header equals VALUE (header:NAME~VALUE: contains it)
  json:/POINTER=VALUE     the JSON body has VALUE (JSON; else a string) at POINTER
  tls-days>=14            https: the certificate is valid 14 more days at least

Exit codes:
  0  done
  1  the server failed (internal error)
  2  bad usage (see --help)
  3  not logged in, or the token expired: run `monitorctl login EMAIL`
  4  the server refused the request (invalid input, not found, already exists, quota)
  5  the server cannot be reached or is unavailable: check --server and retry
  6  `channel test --wait`: the test event was given up, or still pending at --timeout";

#[derive(Debug, Parser)]
#[command(name = "monitorctl", version, about = "Command-line client for the monitor service", after_help = EXIT_CODES)]
struct Cli {
    /// The server's gRPC address.
    #[arg(
        long,
        global = true,
        env = "MONITOR_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Where the login token is kept (default: the user's config directory, `monitor/`).
    #[arg(long, global = true, env = "MONITORCTL_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Print responses as JSON (canonical proto3 JSON) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account. The password is read from MONITOR_PASSWORD or stdin.
    Register { email: String },
    /// Log in and keep the token for the other commands.
    Login { email: String },
    /// Forget the kept token.
    Logout,
    /// Monitor a URL.
    Add {
        url: String,
        /// How often to probe it (e.g. 30s, 2m); the server's default is 1m.
        #[arg(long, value_parser = humantime::parse_duration)]
        period: Option<Duration>,
        /// What its probes must find; repeat for more (see ASSERTIONS below).
        #[arg(long = "assert", value_name = "ASSERTION", value_parser = parse_assertion)]
        assertions: Vec<pb::Assertion>,
    },
    /// List your URLs.
    List,
    /// Show one URL: its settings and its state.
    Get { id: i64 },
    /// Change a URL: only what the flags name.
    #[command(group(clap::ArgGroup::new("change").multiple(true).required(true)))]
    Update {
        id: i64,
        /// A label for it; "" to show the URL itself again.
        #[arg(long, group = "change")]
        name: Option<String>,
        /// How often to probe it (e.g. 30s, 2m).
        #[arg(long, group = "change", value_parser = humantime::parse_duration)]
        period: Option<Duration>,
        /// Stop probing it until --resume.
        #[arg(long, group = "change", conflicts_with = "resume")]
        pause: bool,
        /// Probe it again.
        #[arg(long, group = "change")]
        resume: bool,
        /// Failing probes in a row that turn it DOWN and open an incident (1 to 100).
        #[arg(long, group = "change")]
        failure_threshold: Option<i32>,
        /// Succeeding probes in a row that turn it UP again (1 to 100).
        #[arg(long, group = "change")]
        success_threshold: Option<i32>,
        /// Replace its assertions with these; repeat for more (see ASSERTIONS below).
        #[arg(long = "assert", value_name = "ASSERTION", group = "change", value_parser = parse_assertion)]
        assertions: Vec<pb::Assertion>,
        /// Remove all its assertions.
        #[arg(long, group = "change", conflicts_with = "assertions")]
        no_assertions: bool,
        /// The id of another of your URLs it depends on (0: none): while that
        /// one is DOWN, this one's incidents are part of its incident.
        #[arg(long, group = "change", value_name = "URL_ID")]
        depends_on: Option<i64>,
    },
    /// Stop monitoring a URL.
    Delete { id: i64 },
    /// Show a URL's recent statuses, newest first.
    Statuses {
        url_id: i64,
        /// How many to show (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// Show a URL's uptime and latency over time, in buckets.
    Stats {
        url_id: i64,
        /// How far back (e.g. 24h, 30d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// minute, hour or day (default: the finest with at most 1,000 buckets).
        #[arg(long, value_parser = ["minute", "hour", "day"])]
        granularity: Option<String>,
    },
    /// Print your URLs' statuses as their probes end, until interrupted
    /// (with --json: each event, bookmarks too, as a JSON line).
    Watch {
        /// Only this URL's (default: all of yours).
        url_id: Option<i64>,
        /// Go on after this event (an event's resume_token, as --json prints it).
        #[arg(long, value_name = "TOKEN")]
        resume: Option<String>,
    },
    /// Show incidents (runs of failures that turned a URL DOWN), newest first.
    Incidents {
        /// Only this URL's.
        #[arg(long = "url", value_name = "ID")]
        url_id: Option<i64>,
        /// How many to show (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// Notification channels: where your incident events go.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Maintenance windows: when your URLs are probed but page no one.
    Maintenance {
        #[command(subcommand)]
        command: maintenance::MaintenanceCommand,
    },
    /// Make your URLs and channels what a monitors file says (see "Monitors as
    /// code" in the README): prints the plan, then applies it; a second run
    /// prints "no changes".
    Apply {
        /// The monitors file (as `export` writes it), or with --from gatus a Gatus config.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Read the file as another tool's config: `gatus` (its endpoints).
        #[arg(long, value_parser = ["gatus"])]
        from: Option<String>,
        /// Also delete your URLs (and, if the file has `channels:`, channels) the
        /// file does not name.
        #[arg(long)]
        prune: bool,
        /// Print the plan only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print your URLs and channels as a monitors file (YAML) that `apply -f`
    /// takes back.
    Export,
    /// Show a channel's deliveries (events sent or being sent), newest first.
    Deliveries {
        channel_id: i64,
        /// How many to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Add a channel: exactly one of --webhook, --slack, --email, --pagerduty.
    #[command(group(clap::ArgGroup::new("target").required(true)))]
    Add {
        /// Your label for it.
        name: String,
        /// POST signed JSON events to this http(s) URL (Standard Webhooks).
        #[arg(long, value_name = "URL", group = "target")]
        webhook: Option<String>,
        /// Post to this Slack incoming webhook.
        #[arg(long, value_name = "WEBHOOK_URL", group = "target")]
        slack: Option<String>,
        /// Email this address.
        #[arg(long, value_name = "ADDRESS", group = "target")]
        email: Option<String>,
        /// Send to PagerDuty (Events API v2) with this integration's routing key.
        #[arg(long, value_name = "ROUTING_KEY", group = "target")]
        pagerduty: Option<String>,
        /// With --pagerduty: another Events API endpoint than PagerDuty's.
        // The conflicts too: clap takes `requires` as met when the required
        // flag conflicts with one given (the group makes them conflict).
        #[arg(long, value_name = "URL", requires = "pagerduty", conflicts_with_all = ["webhook", "slack", "email"])]
        events_url: Option<String>,
        /// Only this URL's incidents; repeat for more (none: all your URLs, present and future).
        #[arg(long = "url", value_name = "ID")]
        url_ids: Vec<i64>,
        /// Send DEGRADED incidents too (default: DOWN ones only).
        #[arg(long)]
        notify_degraded: bool,
        /// Send an incident still open again this often (e.g. 30m; default: never).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        remind_every: Option<Duration>,
    },
    /// List your channels.
    List,
    /// Delete a channel and its deliveries.
    Delete { id: i64 },
    /// Send a `test` event to a channel.
    Test {
        id: i64,
        /// Wait until it is delivered or given up (exit 6 if it is not delivered).
        #[arg(long)]
        wait: bool,
        /// With --wait: how long to wait at most (e.g. 30s, 2m).
        #[arg(long, default_value = "30s", requires = "wait", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// What `login` keeps on disk.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    server: String,
    email: String,
    token: String,
}

/// A failure with the message to print and the exit code.
#[derive(Debug)]
struct Failure(String, u8);

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            Code::Unauthenticated => 3,
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied => 4,
            Code::Unavailable | Code::DeadlineExceeded => 5,
            _ => 1,
        };
        let mut message = status.message().to_owned();
        if code == 3 {
            message.push_str("\nhint: run `monitorctl login EMAIL`");
        }
        Self(message, code)
    }
}

fn token_path(cli: &Cli) -> Result<PathBuf, Failure> {
    let dir = match &cli.config_dir {
        Some(dir) => dir.clone(),
        None => dirs::config_dir()
            .ok_or_else(|| Failure("no config directory; pass --config-dir".into(), 2))?
            .join("monitor"),
    };
    Ok(dir.join("token.json"))
}

fn read_password() -> Result<String, Failure> {
    if let Ok(p) = std::env::var("MONITOR_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure(format!("reading the password from stdin: {e}"), 2))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn save(path: &PathBuf, saved: &Saved) -> Result<(), Failure> {
    let fail =
        |e: std::io::Error| Failure(format!("saving the token to {}: {e}", path.display()), 1);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(fail)?;
    serde_json::to_writer(file, saved).map_err(|e| fail(e.into()))
}

fn load(path: &PathBuf) -> Result<Saved, Failure> {
    let text = std::fs::read_to_string(path).map_err(|_| {
        Failure(
            "not logged in\nhint: run `monitorctl login EMAIL`".into(),
            3,
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Failure(
            format!(
                "{} is damaged ({e}); run `monitorctl login EMAIL` again",
                path.display()
            ),
            3,
        )
    })
}

fn authed<T>(msg: T, saved: &Saved) -> Result<Request<T>, Failure> {
    let mut req = Request::new(msg);
    let value = format!("Bearer {}", saved.token)
        .parse()
        .map_err(|_| Failure("the kept token is damaged; log in again".into(), 3))?;
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure(format!("encoding JSON: {e}"), 1))?;
    println!("{text}");
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.to_vec());
    t
}

fn duration_text(d: Option<&pbjson_types::Duration>) -> String {
    d.map_or_else(String::new, |d| {
        let std = Duration::new(
            u64::try_from(d.seconds).unwrap_or(0),
            u32::try_from(d.nanos).unwrap_or(0),
        );
        if std.subsec_nanos() == 0 {
            humantime::format_duration(std).to_string()
        } else {
            format!("{:.1}ms", std.as_secs_f64() * 1000.0)
        }
    })
}

fn time_text(t: Option<&monitor::proto::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map_or_else(String::new, |t| {
            t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
        })
}

fn url_rows(t: &mut Table, urls: &[pb::Url]) {
    for u in urls {
        t.add_row(vec![
            u.id.to_string(),
            u.url.clone(),
            duration_text(u.period.as_ref()),
            time_text(u.created_at.as_ref()),
        ]);
    }
}

/// `URL_STATE_DOWN` → `DOWN`.
fn state_text(state: i32) -> String {
    pb::UrlState::try_from(state)
        .unwrap_or(pb::UrlState::Unspecified)
        .as_str_name()
        .trim_start_matches("URL_STATE_")
        .to_owned()
}

/// One URL, a field a line.
fn url_details(u: &pb::Url) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    let since = u
        .state_since
        .as_ref()
        .map_or_else(String::new, |t| format!(" since {}", time_text(Some(t))));
    for (key, value) in [
        ("id", u.id.to_string()),
        ("name", u.name.clone()),
        ("url", u.url.clone()),
        ("period", duration_text(u.period.as_ref())),
        ("state", format!("{}{since}", state_text(u.state))),
        ("paused", if u.paused { "yes" } else { "no" }.to_owned()),
        (
            "thresholds",
            format!(
                "DOWN after {} failures, UP after {} successes",
                u.failure_threshold, u.success_threshold
            ),
        ),
        ("created", time_text(u.created_at.as_ref())),
    ] {
        t.add_row(vec![key.to_owned(), value]);
    }
    if let Some(expires) = &u.tls_not_after {
        t.add_row(vec![
            "certificate".to_owned(),
            format!("expires {}", time_text(Some(expires))),
        ]);
    }
    for (i, a) in u.assertions.iter().enumerate() {
        let key = if i == 0 { "assertions" } else { "" };
        t.add_row(vec![key.to_owned(), format!("#{i} {}", assertion_text(a))]);
    }
    t
}

/// An `--assert` value as the request's assertion (the server checks the rest).
fn parse_assertion(raw: &str) -> Result<pb::Assertion, String> {
    use pb::assertion::Check;
    let (severity, spec) = match raw.strip_prefix("degraded:") {
        Some(rest) => (pb::AssertionSeverity::Degraded, rest),
        None => (pb::AssertionSeverity::Unspecified, raw),
    };
    let check = if let Some(codes) = spec.strip_prefix("status=") {
        Check::Status(pb::StatusAssertion {
            codes: codes.split(',').map(|c| c.trim().to_owned()).collect(),
        })
    } else if let Some(max) = spec.strip_prefix("latency<") {
        let max =
            humantime::parse_duration(max.trim()).map_err(|e| format!("latency<{max}: {e}"))?;
        Check::MaxLatency(max.into())
    } else if let Some(text) = spec.strip_prefix("body!~") {
        Check::BodyNotContains(text.to_owned())
    } else if let Some(text) = spec.strip_prefix("body~") {
        Check::BodyContains(text.to_owned())
    } else if let Some(header) = spec.strip_prefix("header:") {
        use pb::header_assertion::Expect;
        let at = header
            .find(['=', '~'])
            .ok_or("header:NAME=VALUE or header:NAME~VALUE")?;
        let (name, value) = (header[..at].to_owned(), header[at + 1..].to_owned());
        let expect = if header[at..].starts_with('=') {
            Expect::Equals(value)
        } else {
            Expect::Contains(value)
        };
        Check::Header(pb::HeaderAssertion {
            name,
            expect: Some(expect),
        })
    } else if let Some(json) = spec.strip_prefix("json:") {
        let (pointer, value) = json.split_once('=').ok_or("json:/POINTER=VALUE")?;
        let value = serde_json::from_str::<serde_json::Value>(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        Check::Json(pb::JsonAssertion {
            pointer: pointer.to_owned(),
            value: serde_json::from_value(value).ok(),
        })
    } else if let Some(days) = spec.strip_prefix("tls-days>=") {
        Check::TlsDaysLeft(
            days.trim()
                .parse()
                .map_err(|_| format!("tls-days>={days}: not a number of days"))?,
        )
    } else {
        return Err(format!(
            "{raw:?} is not an assertion: status=200-299, latency<500ms, body~TEXT, body!~TEXT, \
             header:NAME=VALUE, header:NAME~VALUE, json:/POINTER=VALUE or tls-days>=14, \
             optionally after degraded:"
        ));
    };
    Ok(pb::Assertion {
        severity: severity as i32,
        check: Some(check),
    })
}

/// An assertion written as `--assert` takes it.
fn assertion_text(a: &pb::Assertion) -> String {
    use pb::{assertion::Check, header_assertion::Expect};
    let check = match &a.check {
        None => String::new(),
        Some(Check::Status(s)) => format!("status={}", s.codes.join(",")),
        Some(Check::MaxLatency(d)) => format!(
            "latency<{}",
            Duration::try_from(*d).map_or_else(
                |_| String::new(),
                |d| humantime::format_duration(d).to_string()
            )
        ),
        Some(Check::BodyContains(t)) => format!("body~{t}"),
        Some(Check::BodyNotContains(t)) => format!("body!~{t}"),
        Some(Check::Header(h)) => match &h.expect {
            Some(Expect::Equals(v)) => format!("header:{}={v}", h.name),
            Some(Expect::Contains(v)) => format!("header:{}~{v}", h.name),
            None => format!("header:{}", h.name),
        },
        Some(Check::Json(j)) => format!(
            "json:{}={}",
            j.pointer,
            j.value
                .as_ref()
                .and_then(|v| serde_json::to_string(v).ok())
                .unwrap_or_default()
        ),
        Some(Check::TlsDaysLeft(d)) => format!("tls-days>={d}"),
    };
    if a.severity == pb::AssertionSeverity::Degraded as i32 {
        format!("degraded:{check}")
    } else {
        check
    }
}

/// One URL, as JSON or a field a line.
fn print_url(json: bool, url: &pb::Url) -> Result<(), Failure> {
    if json {
        print_json(url)
    } else {
        println!("{}", url_details(url));
        Ok(())
    }
}

/// The request `monitorctl update` sends: the flags given, and a mask naming them.
fn update_request(
    id: i64,
    name: Option<&String>,
    period: Option<Duration>,
    paused: Option<bool>,
    thresholds: (Option<i32>, Option<i32>),
    assertions: Option<Vec<pb::Assertion>>,
) -> pb::UpdateUrlRequest {
    let mut paths = Vec::new();
    let mut url = pb::Url {
        id,
        ..Default::default()
    };
    if let Some(name) = name {
        url.name.clone_from(name);
        paths.push("name");
    }
    if let Some(period) = period {
        url.period = Some(period.into());
        paths.push("period");
    }
    if let Some(paused) = paused {
        url.paused = paused;
        paths.push("paused");
    }
    if let Some(n) = thresholds.0 {
        url.failure_threshold = n;
        paths.push("failure_threshold");
    }
    if let Some(n) = thresholds.1 {
        url.success_threshold = n;
        paths.push("success_threshold");
    }
    if let Some(assertions) = assertions {
        url.assertions = assertions;
        paths.push("assertions");
    }
    pb::UpdateUrlRequest {
        url: Some(url),
        update_mask: Some(pbjson_types::FieldMask {
            paths: paths.into_iter().map(str::to_owned).collect(),
        }),
    }
}

/// Why a status failed: its error, and its failed assertions.
fn status_why(s: &pb::Status) -> String {
    let error = pb::ErrorKind::try_from(s.error_kind)
        .ok()
        .filter(|k| *k != pb::ErrorKind::Unspecified)
        .map_or_else(String::new, |k| {
            let kind = k
                .as_str_name()
                .trim_start_matches("ERROR_KIND_")
                .to_lowercase();
            format!("{kind}: {}", s.error_message)
        });
    let failed = s
        .failed_assertions
        .iter()
        .map(|f| format!("#{}: {}", f.index, f.message));
    std::iter::once(error)
        .filter(|e| !e.is_empty())
        .chain(failed)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A channel's kind and where it sends, for the table. Slack and PagerDuty
/// targets are secrets in themselves: only enough of them to tell them apart.
fn channel_target(c: &pb::Channel) -> (&'static str, String) {
    use pb::channel::Target;
    match &c.target {
        Some(Target::Webhook(w)) => ("webhook", w.url.clone()),
        Some(Target::Slack(s)) => (
            "slack",
            s.webhook_url
                .rsplit_once('/')
                .map_or_else(|| "…".to_owned(), |(head, _)| format!("{head}/…")),
        ),
        Some(Target::Email(e)) => ("email", e.to.clone()),
        Some(Target::Pagerduty(p)) => {
            let chars = p.routing_key.chars().count();
            let tail: String = p
                .routing_key
                .chars()
                .skip(chars.saturating_sub(4))
                .collect();
            let via = if p.events_url.is_empty() {
                String::new()
            } else {
                format!(" via {}", p.events_url)
            };
            ("pagerduty", format!("key …{tail}{via}"))
        }
        None => ("?", String::new()),
    }
}

fn channel_rows(t: &mut Table, channels: &[pb::Channel]) {
    for c in channels {
        let (kind, target) = channel_target(c);
        let urls = if c.url_ids.is_empty() {
            "all".to_owned()
        } else {
            c.url_ids
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        t.add_row(vec![
            c.id.to_string(),
            c.name.clone(),
            kind.to_owned(),
            target,
            urls,
            if c.notify_degraded { "yes" } else { "no" }.to_owned(),
        ]);
    }
}

const CHANNEL_HEADER: [&str; 6] = ["ID", "NAME", "KIND", "TARGET", "URLS", "DEGRADED"];

/// The channel `monitorctl channel add` asks for.
fn channel_to_create(add: &ChannelCommand) -> Result<pb::Channel, Failure> {
    use pb::channel::Target;
    let ChannelCommand::Add {
        name,
        webhook,
        slack,
        email,
        pagerduty,
        events_url,
        url_ids,
        notify_degraded,
        remind_every,
    } = add
    else {
        unreachable!("only called for `channel add`")
    };
    let target = match (webhook, slack, email, pagerduty) {
        (Some(url), ..) => Target::Webhook(pb::WebhookTarget {
            url: url.clone(),
            secret: String::new(),
        }),
        (_, Some(webhook_url), ..) => Target::Slack(pb::SlackTarget {
            webhook_url: webhook_url.clone(),
        }),
        (_, _, Some(to), _) => Target::Email(pb::EmailTarget { to: to.clone() }),
        (.., Some(routing_key)) => Target::Pagerduty(pb::PagerDutyTarget {
            routing_key: routing_key.clone(),
            events_url: events_url.clone().unwrap_or_default(),
        }),
        _ => {
            return Err(Failure(
                "one of --webhook, --slack, --email or --pagerduty is needed".into(),
                2,
            ));
        }
    };
    Ok(pb::Channel {
        name: name.clone(),
        target: Some(target),
        url_ids: url_ids.clone(),
        notify_degraded: *notify_degraded,
        remind_every: remind_every.map(pbjson_types::Duration::from),
        ..Default::default()
    })
}

/// `DELIVERY_STATE_GAVE_UP` → `GAVE_UP`.
fn delivery_state_text(state: i32) -> &'static str {
    pb::DeliveryState::try_from(state)
        .unwrap_or(pb::DeliveryState::Unspecified)
        .as_str_name()
        .trim_start_matches("DELIVERY_STATE_")
}

fn delivery_rows(t: &mut Table, deliveries: &[pb::Delivery]) {
    for d in deliveries {
        let when = match (&d.delivered_at, &d.next_attempt_at) {
            (Some(at), _) => format!("delivered {}", time_text(Some(at))),
            (None, Some(next)) => format!("next try {}", time_text(Some(next))),
            (None, None) => String::new(),
        };
        t.add_row(vec![
            d.id.to_string(),
            d.event.clone(),
            if d.incident_id == 0 {
                "-".to_owned()
            } else {
                d.incident_id.to_string()
            },
            delivery_state_text(d.state).to_owned(),
            d.attempts.to_string(),
            d.last_error.clone(),
            when,
        ]);
    }
}

const DELIVERY_HEADER: [&str; 7] = [
    "ID",
    "EVENT",
    "INCIDENT",
    "STATE",
    "ATTEMPTS",
    "LAST ERROR",
    "DELIVERED OR NEXT TRY",
];

/// Up to `limit` of a channel's deliveries, newest first, page after page;
/// the token is the last page's (empty when there are no more).
async fn list_deliveries(
    client: &mut monitor::client::Client,
    saved: &Saved,
    channel_id: i64,
    limit: u32,
) -> Result<pb::ListDeliveriesResponse, Failure> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut deliveries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page_size = i32::try_from((limit - deliveries.len()).min(1000)).unwrap_or(1000);
        let page = client
            .list_deliveries(authed(
                pb::ListDeliveriesRequest {
                    channel_id,
                    page_size,
                    page_token,
                },
                saved,
            )?)
            .await?
            .into_inner();
        deliveries.extend(page.deliveries);
        page_token = page.next_page_token;
        if page_token.is_empty() || deliveries.len() >= limit {
            deliveries.truncate(limit);
            return Ok(pb::ListDeliveriesResponse {
                deliveries,
                next_page_token: page_token,
            });
        }
    }
}

/// One delivery of a channel as it is now, if it is still listed.
async fn find_delivery(
    client: &mut monitor::client::Client,
    saved: &Saved,
    channel_id: i64,
    id: i64,
) -> Result<Option<pb::Delivery>, Failure> {
    let mut page_token = String::new();
    loop {
        let page = client
            .list_deliveries(authed(
                pb::ListDeliveriesRequest {
                    channel_id,
                    page_size: 100,
                    page_token,
                },
                saved,
            )?)
            .await?
            .into_inner();
        if let Some(found) = page.deliveries.iter().find(|d| d.id == id) {
            return Ok(Some(found.clone()));
        }
        // Newest first, by id: once past it, it is not there.
        if page.next_page_token.is_empty() || page.deliveries.last().is_some_and(|d| d.id < id) {
            return Ok(None);
        }
        page_token = page.next_page_token;
    }
}

/// Polls a channel's test delivery until it is no longer PENDING or
/// `timeout` has passed; returns it as last seen.
async fn wait_for_delivery(
    client: &mut monitor::client::Client,
    saved: &Saved,
    queued: pb::Delivery,
    timeout: Duration,
) -> Result<pb::Delivery, Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = queued;
    while last.state() == pb::DeliveryState::Pending {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(250))).await;
        last = find_delivery(client, saved, last.channel_id, last.id)
            .await?
            .ok_or_else(|| Failure(format!("delivery {} is no longer listed", last.id), 1))?;
    }
    Ok(last)
}

/// How a waited-for delivery went: a line to print when it was delivered,
/// else the failure (exit 6) saying why.
fn waited_outcome(last: &pb::Delivery, timeout: Duration) -> Result<String, Failure> {
    let (id, attempts) = (last.id, last.attempts);
    match last.state() {
        pb::DeliveryState::Delivered => Ok(format!(
            "delivery {id}: DELIVERED after {attempts} attempt(s)"
        )),
        pb::DeliveryState::Pending => Err(Failure(
            format!(
                "delivery {id} is still PENDING after {} ({attempts} attempt(s); last error: {})",
                humantime::format_duration(timeout),
                if last.last_error.is_empty() {
                    "none"
                } else {
                    &last.last_error
                },
            ),
            6,
        )),
        state => Err(Failure(
            format!(
                "delivery {id}: {} after {attempts} attempt(s): {}",
                delivery_state_text(state as i32),
                last.last_error
            ),
            6,
        )),
    }
}

/// `monitorctl channel …`.
async fn run_channel(
    client: &mut monitor::client::Client,
    json: bool,
    saved: &Saved,
    command: &ChannelCommand,
) -> Result<(), Failure> {
    match command {
        ChannelCommand::Add { .. } => {
            let channel = channel_to_create(command)?;
            let res = client
                .create_channel(authed(
                    pb::CreateChannelRequest {
                        channel: Some(channel),
                    },
                    saved,
                )?)
                .await?
                .into_inner();
            if json {
                return print_json(&res);
            }
            let mut t = table(&CHANNEL_HEADER);
            channel_rows(&mut t, std::slice::from_ref(&res));
            println!("{t}");
            if let Some(pb::channel::Target::Webhook(w)) = &res.target {
                println!("secret: {}", w.secret);
                println!(
                    "the secret is shown only now: keep it to check the webhook-signature header"
                );
            }
        }
        ChannelCommand::List => {
            let res = client
                .list_channels(authed(pb::ListChannelsRequest {}, saved)?)
                .await?
                .into_inner();
            if json {
                print_json(&res)?;
            } else if res.channels.is_empty() {
                println!(
                    "no channels yet; add one with `monitorctl channel add NAME --webhook URL`"
                );
            } else {
                let mut t = table(&CHANNEL_HEADER);
                channel_rows(&mut t, &res.channels);
                println!("{t}");
            }
        }
        ChannelCommand::Delete { id } => {
            let res = client
                .delete_channel(authed(pb::DeleteChannelRequest { id: *id }, saved)?)
                .await?
                .into_inner();
            if json {
                print_json(&res)?;
            } else {
                println!("deleted channel {id}");
            }
        }
        ChannelCommand::Test { id, wait, timeout } => {
            let queued = client
                .test_channel(authed(pb::TestChannelRequest { id: *id }, saved)?)
                .await?
                .into_inner();
            if !json {
                println!(
                    "test event queued for channel {id}: delivery {}, {}",
                    queued.id,
                    delivery_state_text(queued.state)
                );
            }
            if !*wait {
                return if json { print_json(&queued) } else { Ok(()) };
            }
            let last = wait_for_delivery(client, saved, queued, *timeout).await?;
            if json {
                print_json(&last)?;
            }
            let line = waited_outcome(&last, *timeout)?;
            if !json {
                println!("{line}");
            }
        }
    }
    Ok(())
}

async fn connect(server: &str) -> Result<monitor::client::Client, Failure> {
    monitor::client::connect(server.to_owned())
        .await
        .map_err(|e| Failure(format!("cannot reach {server}: {e}"), 5))
}

#[allow(clippy::too_many_lines)] // one arm per subcommand
async fn run(cli: Cli) -> Result<(), Failure> {
    let path = token_path(&cli)?;
    if let Command::Logout = cli.command {
        if path.exists() {
            std::fs::remove_file(&path)
                .map_err(|e| Failure(format!("removing {}: {e}", path.display()), 1))?;
        }
        println!("logged out");
        return Ok(());
    }
    // A monitors file is checked before the server is called.
    let desired = match &cli.command {
        Command::Apply { file, from, .. } => Some(if from.is_some() {
            apply::load_gatus(file)?
        } else {
            apply::load(file)?
        }),
        _ => None,
    };
    let mut client = connect(&cli.server).await?;
    match &cli.command {
        Command::Apply { prune, dry_run, .. } => {
            let saved = load(&path)?;
            let desired = desired.expect("loaded above");
            apply::apply(&mut client, &saved, &desired, *prune, *dry_run).await?;
        }
        Command::Export => {
            let saved = load(&path)?;
            let urls = client
                .list_urls(authed(pb::ListUrlsRequest {}, &saved)?)
                .await?
                .into_inner()
                .urls;
            let channels = client
                .list_channels(authed(pb::ListChannelsRequest {}, &saved)?)
                .await?
                .into_inner()
                .channels;
            let (text, variables) = apply::export(&urls, &channels)?;
            print!("{text}");
            for var in variables {
                eprintln!(
                    "note: the server shows a channel's secret masked; set {var} to it \
                     before applying this file"
                );
            }
        }
        Command::Logout => unreachable!("handled above"),
        Command::Register { email } => {
            let password = read_password()?;
            let res = client
                .register(pb::RegisterRequest {
                    email: email.clone(),
                    password,
                })
                .await?
                .into_inner();
            if cli.json {
                print_json(&res)?;
            } else {
                println!(
                    "registered {} (id {}); now run `monitorctl login {}`",
                    res.email, res.id, res.email
                );
            }
        }
        Command::Login { email } => {
            let password = read_password()?;
            let res = client
                .login(pb::LoginRequest {
                    email: email.clone(),
                    password,
                })
                .await
                .map_err(|status| match status.code() {
                    // Not the generic "run `monitorctl login`": that is what
                    // was just run. Which of the two was wrong is not said.
                    Code::Unauthenticated => Failure(
                        format!(
                            "{}\nhint: check the email and the password (MONITOR_PASSWORD or stdin); \
                             no account yet? `monitorctl register EMAIL`",
                            status.message()
                        ),
                        3,
                    ),
                    _ => Failure::from(status),
                })?
                .into_inner();
            save(
                &path,
                &Saved {
                    server: cli.server.clone(),
                    email: email.clone(),
                    token: res.token.clone(),
                },
            )?;
            if cli.json {
                print_json(&res)?;
            } else {
                println!(
                    "logged in as {email} until {}; token kept in {}",
                    time_text(res.expires_at.as_ref()),
                    path.display()
                );
            }
        }
        Command::Add {
            url,
            period,
            assertions,
        } => {
            let saved = load(&path)?;
            let period = period.map(pbjson_types::Duration::from);
            let res = client
                .add_url(authed(
                    pb::AddUrlRequest {
                        url: url.clone(),
                        period,
                        assertions: assertions.clone(),
                    },
                    &saved,
                )?)
                .await?
                .into_inner();
            if cli.json {
                print_json(&res)?;
            } else {
                let mut t = table(&["ID", "URL", "PERIOD", "CREATED"]);
                url_rows(&mut t, res.url.as_slice());
                println!("{t}");
            }
        }
        Command::List => {
            let saved = load(&path)?;
            let res = client
                .list_urls(authed(pb::ListUrlsRequest {}, &saved)?)
                .await?
                .into_inner();
            if cli.json {
                print_json(&res)?;
            } else if res.urls.is_empty() {
                println!("no URLs yet; add one with `monitorctl add URL`");
            } else {
                let mut t = table(&["ID", "URL", "PERIOD", "CREATED"]);
                url_rows(&mut t, &res.urls);
                println!("{t}");
            }
        }
        Command::Get { id } => {
            let saved = load(&path)?;
            let res = client
                .get_url(authed(pb::GetUrlRequest { id: *id }, &saved)?)
                .await?
                .into_inner();
            print_url(cli.json, &res)?;
        }
        Command::Update {
            id,
            name,
            period,
            pause,
            resume,
            failure_threshold,
            success_threshold,
            assertions,
            no_assertions,
            depends_on,
        } => {
            let saved = load(&path)?;
            let paused = (*pause || *resume).then_some(*pause);
            let assertions = (*no_assertions || !assertions.is_empty()).then(|| assertions.clone());
            let mut request = update_request(
                *id,
                name.as_ref(),
                *period,
                paused,
                (*failure_threshold, *success_threshold),
                assertions,
            );
            if let (Some(parent), Some(url), Some(mask)) = (
                depends_on,
                request.url.as_mut(),
                request.update_mask.as_mut(),
            ) {
                url.depends_on = *parent;
                mask.paths.push("depends_on".into());
            }
            let res = client
                .update_url(authed(request, &saved)?)
                .await?
                .into_inner();
            print_url(cli.json, &res)?;
        }
        Command::Delete { id } => {
            let saved = load(&path)?;
            let res = client
                .delete_url(authed(pb::DeleteUrlRequest { id: *id }, &saved)?)
                .await?
                .into_inner();
            if cli.json {
                print_json(&res)?;
            } else {
                println!("deleted URL {id}");
            }
        }
        Command::Statuses { url_id, limit } => {
            let saved = load(&path)?;
            let res = client
                .list_statuses(authed(
                    pb::ListStatusesRequest {
                        url_id: *url_id,
                        page_size: *limit,
                        ..Default::default()
                    },
                    &saved,
                )?)
                .await?
                .into_inner();
            if cli.json {
                print_json(&res)?;
            } else if res.statuses.is_empty() {
                println!("no statuses yet for URL {url_id}");
            } else {
                let mut t = table(&[
                    "PROBED AT",
                    "CODE",
                    "LATENCY",
                    "VERDICT",
                    "ERROR OR FAILED ASSERTIONS",
                ]);
                for s in &res.statuses {
                    let why = status_why(s);
                    t.add_row(vec![
                        time_text(s.probed_at.as_ref()),
                        s.status_code.to_string(),
                        duration_text(s.latency.as_ref()),
                        state_text(s.verdict),
                        why,
                    ]);
                }
                println!("{t}");
            }
        }
        Command::Watch { url_id, resume } => {
            let saved = load(&path)?;
            let mut stream = client
                .watch_events(authed(
                    pb::WatchEventsRequest {
                        url_id: url_id.unwrap_or(0),
                        resume_token: resume.clone().unwrap_or_default(),
                    },
                    &saved,
                )?)
                .await?
                .into_inner();
            while let Some(event) = stream.message().await? {
                if cli.json {
                    let line = serde_json::to_string(&event)
                        .map_err(|e| Failure(format!("encoding JSON: {e}"), 1))?;
                    println!("{line}");
                } else if let Some(pb::event::Kind::Status(s)) = &event.kind {
                    println!(
                        "{}  url {}  {}  {}  {}  {}",
                        time_text(s.probed_at.as_ref()),
                        s.url_id,
                        s.status_code,
                        duration_text(s.latency.as_ref()),
                        state_text(s.verdict),
                        status_why(s)
                    );
                }
                let _ = std::io::Write::flush(&mut std::io::stdout());
            }
        }
        Command::Stats {
            url_id,
            since,
            granularity,
        } => {
            let saved = load(&path)?;
            let granularity = match granularity.as_deref() {
                Some("minute") => pb::Granularity::Minute,
                Some("hour") => pb::Granularity::Hour,
                Some("day") => pb::Granularity::Day,
                _ => pb::Granularity::Unspecified,
            };
            let start = chrono::Duration::from_std(*since)
                .ok()
                .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
                .ok_or_else(|| Failure(format!("--since {since:?} is too far back"), 2))?;
            let res = client
                .get_url_stats(authed(
                    pb::GetUrlStatsRequest {
                        url_id: *url_id,
                        start_time: Some(start.into()),
                        end_time: None,
                        granularity: granularity as i32,
                    },
                    &saved,
                )?)
                .await?
                .into_inner();
            if cli.json {
                print_json(&res)?;
            } else {
                let mut t = table(&[
                    "FROM", "EXPECTED", "UP", "DOWN", "MISSED", "UPTIME", "P50", "P95", "P99",
                    "MAX",
                ]);
                for b in &res.buckets {
                    t.add_row(stats_row(b, time_text(b.start_time.as_ref())));
                }
                println!("{t}");
                if let Some(total) = &res.total {
                    println!(
                        "uptime {} over {} probes ({} missed), p95 {}",
                        total
                            .uptime
                            .map_or_else(|| "-".to_owned(), |u| format!("{:.3}%", u * 100.0)),
                        total.up + total.degraded + total.down,
                        total.missed,
                        duration_text(total.p95.as_ref()),
                    );
                }
            }
        }
        Command::Incidents { url_id, limit } => {
            let saved = load(&path)?;
            let res = client
                .list_incidents(authed(
                    pb::ListIncidentsRequest {
                        url_id: url_id.unwrap_or(0),
                        page_size: *limit,
                        ..Default::default()
                    },
                    &saved,
                )?)
                .await?
                .into_inner();
            if cli.json {
                print_json(&res)?;
            } else if res.incidents.is_empty() {
                println!("no incidents");
            } else {
                // The URLs' names, for the table.
                let urls = client
                    .list_urls(authed(pb::ListUrlsRequest {}, &saved)?)
                    .await?
                    .into_inner()
                    .urls;
                let name = |id: i64| {
                    urls.iter()
                        .find(|u| u.id == id)
                        .map_or_else(|| id.to_string(), |u| u.name.clone())
                };
                let mut t = table(&["ID", "URL", "STATE", "OPENED", "RESOLVED", "FAILED PROBES"]);
                for i in &res.incidents {
                    t.add_row(vec![
                        i.id.to_string(),
                        name(i.url_id),
                        state_text(i.state),
                        time_text(i.opened_at.as_ref()),
                        i.resolved_at
                            .as_ref()
                            .map_or_else(|| "open".to_owned(), |t| time_text(Some(t))),
                        i.failed_probes.to_string(),
                    ]);
                }
                println!("{t}");
            }
        }
        Command::Channel { command } => {
            let saved = load(&path)?;
            run_channel(&mut client, cli.json, &saved, command).await?;
        }
        Command::Maintenance { command } => {
            let saved = load(&path)?;
            maintenance::run(&mut client, cli.json, &saved, command).await?;
        }
        Command::Deliveries { channel_id, limit } => {
            let saved = load(&path)?;
            let res = list_deliveries(&mut client, &saved, *channel_id, *limit).await?;
            if cli.json {
                print_json(&res)?;
            } else if res.deliveries.is_empty() {
                println!("no deliveries yet for channel {channel_id}");
            } else {
                let mut t = table(&DELIVERY_HEADER);
                delivery_rows(&mut t, &res.deliveries);
                println!("{t}");
            }
        }
    }
    Ok(())
}

/// One line of the stats table.
fn stats_row(b: &pb::StatsBucket, from: String) -> Vec<String> {
    vec![
        from,
        b.expected.to_string(),
        (b.up + b.degraded).to_string(),
        b.down.to_string(),
        b.missed.to_string(),
        b.uptime
            .map_or_else(|| "-".to_owned(), |u| format!("{:.2}%", u * 100.0)),
        duration_text(b.p50.as_ref()),
        duration_text(b.p95.as_ref()),
        duration_text(b.p99.as_ref()),
        duration_text(b.max.as_ref()),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("monitorctl: {message}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use pb::channel::Target;

    use super::*;

    /// The channel `monitorctl channel add ARGS…` would send.
    fn channel_added(args: &[&str]) -> pb::Channel {
        let cli = Cli::try_parse_from(["monitorctl", "channel", "add"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Channel { command } = &cli.command else {
            panic!("not a channel command")
        };
        channel_to_create(command).unwrap()
    }

    #[test]
    fn channel_add_sends_each_kind_of_target_with_its_fields() {
        let webhook = channel_added(&["ops", "--webhook", "https://h.invalid/x"]);
        assert_eq!(webhook.name, "ops");
        assert_eq!(
            webhook.target,
            Some(Target::Webhook(pb::WebhookTarget {
                url: "https://h.invalid/x".into(),
                secret: String::new(),
            }))
        );
        assert!(webhook.url_ids.is_empty() && !webhook.notify_degraded);
        assert_eq!(
            channel_added(&["s", "--slack", "https://hooks.slack.invalid/T/B/C"]).target,
            Some(Target::Slack(pb::SlackTarget {
                webhook_url: "https://hooks.slack.invalid/T/B/C".into(),
            }))
        );
        assert_eq!(
            channel_added(&["e", "--email", "ops@example.com"]).target,
            Some(Target::Email(pb::EmailTarget {
                to: "ops@example.com".into(),
            }))
        );
        assert_eq!(
            channel_added(&["p", "--pagerduty", "R0UTING"]).target,
            Some(Target::Pagerduty(pb::PagerDutyTarget {
                routing_key: "R0UTING".into(),
                events_url: String::new(),
            }))
        );
        let pd = channel_added(&[
            "p",
            "--pagerduty",
            "R0UTING",
            "--events-url",
            "https://events.invalid/v2/enqueue",
            "--url",
            "3",
            "--url",
            "5",
            "--notify-degraded",
        ]);
        assert_eq!(
            pd.target,
            Some(Target::Pagerduty(pb::PagerDutyTarget {
                routing_key: "R0UTING".into(),
                events_url: "https://events.invalid/v2/enqueue".into(),
            }))
        );
        assert_eq!(pd.url_ids, [3, 5]);
        assert!(pd.notify_degraded);
    }

    #[test]
    fn channel_list_shows_no_slack_or_pagerduty_secret() {
        let slack = channel_added(&["s", "--slack", "https://hooks.slack.invalid/T1/B2/s3cr3t"]);
        let pd = channel_added(&["p", "--pagerduty", "abcdefgh1234"]);
        assert_eq!(
            channel_target(&slack),
            ("slack", "https://hooks.slack.invalid/T1/B2/…".to_owned())
        );
        assert_eq!(channel_target(&pd), ("pagerduty", "key …1234".to_owned()));
        let mut t = table(&CHANNEL_HEADER);
        channel_rows(&mut t, &[slack, pd]);
        let text = t.to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains("abcdefgh"),
            "{text}"
        );
        assert!(text.contains(" all "), "{text}");
    }
}
