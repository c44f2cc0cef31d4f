//! The prober doubts itself: when its own network seems to be at fault, its
//! failing probes say nothing of their URLs.
//!
//! Two signals, both per instance:
//!
//! - **Canaries** (`MONITOR_CANARY_URLS`): a few URLs the operator trusts,
//!   probed every `MONITOR_CANARY_INTERVAL`. When every canary of one round
//!   fails with a network kind (DNS, connect or timeout), the instance
//!   doubts itself from that round's start; the first round in which any
//!   canary is reached (any response, whatever its status, or a TLS error:
//!   the network carried it) ends the doubt.
//! - **Mass failure**: probes are grouped in windows of
//!   `MONITOR_MASS_FAILURE_WINDOW` by due time. A window in which more than
//!   `MONITOR_MASS_FAILURE_PERCENT` % of this instance's probes failed with a
//!   network kind, across at least `MONITOR_MASS_FAILURE_MIN_HOSTS` distinct
//!   host names, is a mass failure.
//!
//! Order of events: a window can only be judged once its results are in
//! (and, with canaries, once a canary round has finished after it), so
//! network failures are *held* ([`Doubt::observe`]) and released when their
//! window is judged ([`Doubt::judge`]): as they were (`DOWN`) when nothing
//! was wrong, else as `UNKNOWN` with error kind `PROBER_DEGRADED`, the
//! original error kept in the message. Other results (responses, TLS
//! errors, blocked addresses...) go on at once. A window is judged at its
//! end plus [`DoubtSettings::judge_delay`]; a result arriving after its
//! window was judged is judged alone, by the canaries' state then. Held
//! results are bounded: past `max_held`, the oldest windows are judged
//! early.
//!
//! A window is doubted when the canaries doubted at any moment from its
//! start to its judgement, or, without canaries, when it was a mass
//! failure. With canaries configured they decide alone: a canary reached is
//! direct evidence that the network works, so every target failing at once
//! while a canary answers is a real outage (incidents open as usual), and
//! the mass-failure rule, a guess from the pattern of failures, is the
//! fallback of an instance without canaries.
//!
//! [`Doubt`] is pure: the prober feeds it results, canary rounds and the
//! time, and pushes what it releases.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use super::ProbeResult;
use crate::{
    domain::verdict::Verdict,
    error::{SettingsError, check_setting},
    proto::monitor::v1::ErrorKind,
};

/// Canary and mass-failure settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DoubtSettings {
    /// URLs this instance trusts to answer, comma-separated (default none).
    /// When all of them fail with DNS/connect/timeout errors in one round,
    /// the instance doubts its own network. Each passes the SSRF guard like
    /// any probe.
    #[arg(
        long = "canary-urls",
        env = "MONITOR_CANARY_URLS",
        value_delimiter = ','
    )]
    pub canary_urls: Vec<String>,

    /// How often the canaries are probed.
    #[arg(long = "canary-interval", env = "MONITOR_CANARY_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub canary_interval: Duration,

    /// A window in which more than this share (%) of this instance's probes
    /// failed with DNS/connect/timeout errors, across enough hosts, is a
    /// mass failure (0: off). Used only without canaries.
    #[arg(
        long = "mass-failure-percent",
        env = "MONITOR_MASS_FAILURE_PERCENT",
        default_value_t = 80
    )]
    pub mass_failure_percent: u8,

    /// The fewest distinct host names failing in one window for a mass
    /// failure.
    #[arg(
        long = "mass-failure-min-hosts",
        env = "MONITOR_MASS_FAILURE_MIN_HOSTS",
        default_value_t = 10
    )]
    pub mass_failure_min_hosts: usize,

    /// The mass-failure rule's window (by due time). Network failures are
    /// held until their window is judged.
    #[arg(long = "mass-failure-window", env = "MONITOR_MASS_FAILURE_WINDOW", default_value = "10s", value_parser = humantime::parse_duration)]
    pub mass_failure_window: Duration,
}

impl DoubtSettings {
    pub fn validate(&self, allow_private: bool) -> Result<(), SettingsError> {
        check_setting(
            (Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.canary_interval),
            "MONITOR_CANARY_INTERVAL",
            "must be between 100ms and 5m",
        )?;
        check_setting(
            self.mass_failure_percent <= 100,
            "MONITOR_MASS_FAILURE_PERCENT",
            "must be between 0 (off) and 100",
        )?;
        check_setting(
            self.mass_failure_min_hosts >= 2,
            "MONITOR_MASS_FAILURE_MIN_HOSTS",
            "must be at least 2 (one failing host is that host's outage)",
        )?;
        check_setting(
            (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.mass_failure_window),
            "MONITOR_MASS_FAILURE_WINDOW",
            "must be between 1s and 10m",
        )?;
        check_setting(
            self.canary_urls.len() <= 16,
            "MONITOR_CANARY_URLS",
            "at most 16 URLs",
        )?;
        for url in &self.canary_urls {
            let ok = url::Url::parse(url).ok().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && super::ssrf::check_literal(&u, allow_private).is_ok()
            });
            check_setting(
                ok,
                "MONITOR_CANARY_URLS",
                "each must be an http(s) URL the SSRF guard allows",
            )?;
        }
        Ok(())
    }

    /// How long after a window's end it is judged: its probes have timed
    /// out by then, and, with canaries, a canary round started after it has
    /// finished.
    pub fn judge_delay(&self, probe_timeout: Duration) -> Duration {
        let canary = if self.canary_urls.is_empty() {
            Duration::ZERO
        } else {
            self.canary_interval + probe_timeout
        };
        probe_timeout + canary + Duration::from_millis(200)
    }
}

/// Why the prober doubts itself (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Canary,
    MassFailure,
}

impl Reason {
    pub const ALL: [Self; 2] = [Self::Canary, Self::MassFailure];

    pub fn label(self) -> &'static str {
        match self {
            Self::Canary => "canary",
            Self::MassFailure => "mass_failure",
        }
    }
}

/// Whether a failure is of a kind a broken local network causes.
pub fn is_network_failure(result: &ProbeResult) -> bool {
    result.status_code == 0
        && result.error_kind.is_some_and(|k| {
            k == ErrorKind::Dns as i16
                || k == ErrorKind::Connect as i16
                || k == ErrorKind::Timeout as i16
        })
}

/// The numbers [`Doubt`] judges by (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub window_ms: i64,
    pub judge_delay_ms: i64,
    /// 0: no mass-failure rule.
    pub percent: u8,
    pub min_hosts: usize,
    /// Whether canaries are configured: they then decide alone.
    pub canaries: bool,
    /// Most failures held at once.
    pub max_held: usize,
}

#[derive(Debug, Default)]
struct Window {
    total: u64,
    held: Vec<ProbeResult>,
    hosts: HashSet<String>,
}

/// The prober's doubt about itself: see the module's documentation.
#[derive(Debug)]
pub struct Doubt {
    rules: Rules,
    /// Windows by start (ms) not judged yet.
    windows: BTreeMap<i64, Window>,
    /// Windows starting before this are judged.
    judged_before: i64,
    held: usize,
    /// Since when the canaries doubt, while they do.
    canary_since: Option<i64>,
    /// When the canaries last stopped doubting.
    canary_ended: Option<i64>,
    /// Whether the last judged window with probes was a mass failure.
    mass_failure: bool,
}

/// What [`Doubt::judge`] released.
#[derive(Debug, Default)]
pub struct Released {
    /// Results to push, in due-time order.
    pub results: Vec<ProbeResult>,
    /// How many of them are `UNKNOWN`.
    pub unknown: usize,
}

impl Doubt {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            windows: BTreeMap::new(),
            judged_before: i64::MIN,
            held: 0,
            canary_since: None,
            canary_ended: None,
            mass_failure: false,
        }
    }

    /// Why the prober doubts itself now (empty: it trusts itself).
    pub fn reasons(&self) -> Vec<Reason> {
        let mut out = Vec::new();
        if self.canary_since.is_some() {
            out.push(Reason::Canary);
        }
        if self.mass_failure {
            out.push(Reason::MassFailure);
        }
        out
    }

    /// Failures held, waiting for their window's judgement.
    pub fn held(&self) -> usize {
        self.held
    }

    /// One round of canaries, started at `started_ms`: `reached` when any
    /// canary was reached.
    pub fn canary_round(&mut self, started_ms: i64, reached: bool) {
        match (reached, self.canary_since) {
            (false, None) => self.canary_since = Some(started_ms),
            (true, Some(_)) => {
                self.canary_since = None;
                self.canary_ended = Some(started_ms);
            }
            _ => {}
        }
    }

    /// A probe's result, from host `host`: `Some` to push now, `None` when
    /// held until its window is judged.
    pub fn observe(&mut self, mut result: ProbeResult, host: &str) -> Option<ProbeResult> {
        let start = result.due_ms - result.due_ms.rem_euclid(self.rules.window_ms);
        let network = is_network_failure(&result);
        if start < self.judged_before {
            // Its window was judged already: judged alone.
            if network && self.canary_since.is_some() {
                mark_unknown(&mut result, Reason::Canary);
            }
            return Some(result);
        }
        let window = self.windows.entry(start).or_default();
        window.total += 1;
        if !network {
            return Some(result);
        }
        if window.hosts.len() < self.rules.min_hosts {
            window.hosts.insert(host.to_owned());
        }
        window.held.push(result);
        self.held += 1;
        None
    }

    /// Judges the windows whose time has come (and the oldest ones past
    /// `max_held`), releasing their held failures.
    pub fn judge(&mut self, now_ms: i64) -> Released {
        let mut out = Released::default();
        while let Some((&start, _)) = self.windows.first_key_value() {
            let due = start + self.rules.window_ms + self.rules.judge_delay_ms <= now_ms;
            if !due && self.held <= self.rules.max_held {
                break;
            }
            let window = self.windows.remove(&start).unwrap_or_default();
            self.judged_before = start + self.rules.window_ms;
            self.judge_window(start, window, &mut out);
        }
        out
    }

    /// Judges every window now (shutdown).
    pub fn judge_all(&mut self) -> Released {
        self.judge(i64::MAX)
    }

    fn judge_window(&mut self, start: i64, window: Window, out: &mut Released) {
        let failed = window.held.len() as u64;
        self.held -= window.held.len();
        let mass = !self.rules.canaries
            && self.rules.percent > 0
            && failed * 100 > u64::from(self.rules.percent) * window.total
            && window.hosts.len() >= self.rules.min_hosts;
        if window.total > 0 {
            self.mass_failure = mass;
        }
        let canary = self.canary_since.is_some() || self.canary_ended.is_some_and(|e| e > start);
        let reason = if mass {
            Some(Reason::MassFailure)
        } else if canary {
            Some(Reason::Canary)
        } else {
            None
        };
        for mut r in window.held {
            if let Some(reason) = reason {
                mark_unknown(&mut r, reason);
                out.unknown += 1;
            }
            out.results.push(r);
        }
    }
}

/// Records `result` as `UNKNOWN`: the prober doubted itself.
fn mark_unknown(result: &mut ProbeResult, reason: Reason) {
    let kind = result
        .error_kind
        .and_then(|k| ErrorKind::try_from(i32::from(k)).ok())
        .map_or("error", |k| k.as_str_name())
        .trim_start_matches("ERROR_KIND_")
        .to_lowercase();
    let why = match reason {
        Reason::Canary => "its canaries failed",
        Reason::MassFailure => "most of its probes failed across many hosts",
    };
    result.error_message = Some(format!(
        "prober degraded ({why}): {kind}: {}",
        result.error_message.as_deref().unwrap_or("")
    ));
    result.error_kind = Some(ErrorKind::ProberDegraded as i16);
    result.verdict = Some(Verdict::Unknown);
    result.failed_assertions.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        window_ms: 10_000,
        judge_delay_ms: 2_000,
        percent: 80,
        min_hosts: 3,
        canaries: false,
        max_held: 100,
    };

    fn ok(due_ms: i64) -> ProbeResult {
        ProbeResult {
            due_ms,
            status_code: 200,
            verdict: Some(Verdict::Up),
            ..ProbeResult::default()
        }
    }

    fn refused(due_ms: i64) -> ProbeResult {
        ProbeResult {
            due_ms,
            error_kind: Some(ErrorKind::Connect as i16),
            error_message: Some("connection refused".into()),
            verdict: Some(Verdict::Down),
            ..ProbeResult::default()
        }
    }

    fn verdicts(r: &Released) -> Vec<Verdict> {
        r.results.iter().map(|r| r.verdict.unwrap()).collect()
    }

    #[test]
    fn responses_go_on_at_once_and_network_failures_wait_for_their_window() {
        let mut d = Doubt::new(RULES);
        assert!(d.observe(ok(1_000), "a").is_some());
        let tls = ProbeResult {
            error_kind: Some(ErrorKind::Tls as i16),
            ..refused(1_000)
        };
        assert!(d.observe(tls, "a").is_some());
        assert!(d.observe(refused(2_000), "a").is_none());
        assert_eq!(d.held(), 1);
        assert!(d.judge(11_999).results.is_empty());
        let released = d.judge(12_000);
        assert_eq!(verdicts(&released), [Verdict::Down]);
        assert_eq!((released.unknown, d.held()), (0, 0));
        assert!(d.reasons().is_empty());
    }

    #[test]
    fn most_probes_failing_across_many_hosts_is_a_mass_failure() {
        let mut d = Doubt::new(RULES);
        for (i, host) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert!(
                d.observe(refused(i64::try_from(i).unwrap()), host)
                    .is_none()
            );
        }
        assert!(d.observe(ok(5), "f").is_some());
        let released = d.judge(12_000);
        assert_eq!(verdicts(&released), [Verdict::Unknown; 5]);
        let first = &released.results[0];
        assert_eq!(first.error_kind, Some(ErrorKind::ProberDegraded as i16));
        assert!(
            first
                .error_message
                .as_deref()
                .unwrap()
                .contains("connect: connection refused")
        );
        assert_eq!(d.reasons(), [Reason::MassFailure]);
        // The next window is normal again.
        assert!(d.observe(ok(10_000), "a").is_some());
        d.judge(22_000);
        assert!(d.reasons().is_empty());
    }

    #[test]
    fn one_host_failing_or_too_small_a_share_is_not_a_mass_failure() {
        let mut d = Doubt::new(RULES);
        for i in 0..10 {
            d.observe(refused(i), "a");
        }
        assert_eq!(verdicts(&d.judge(12_000)), [Verdict::Down; 10]);
        // Three hosts, but only 75% of the probes.
        for (i, host) in ["a", "b", "c"].iter().enumerate() {
            d.observe(refused(10_000 + i64::try_from(i).unwrap()), host);
        }
        d.observe(ok(10_005), "d");
        assert_eq!(verdicts(&d.judge(22_000)), [Verdict::Down; 3]);
        assert!(d.reasons().is_empty());
    }

    #[test]
    fn failed_canaries_make_failures_unknown_until_a_round_reaches_one() {
        let mut d = Doubt::new(RULES);
        d.observe(refused(1_000), "a");
        d.canary_round(3_000, false);
        assert_eq!(d.reasons(), [Reason::Canary]);
        d.observe(refused(4_000), "a");
        let released = d.judge(12_000);
        assert_eq!(verdicts(&released), [Verdict::Unknown; 2]);
        assert_eq!(released.unknown, 2);
        // Its window judged, a late failure is judged alone.
        let late = d.observe(refused(9_000), "a").unwrap();
        assert_eq!(late.verdict, Some(Verdict::Unknown));
        d.canary_round(15_000, true);
        assert!(d.reasons().is_empty());
        // The window the doubt ended in is still doubted; the next is not.
        d.observe(refused(16_000), "a");
        d.observe(refused(21_000), "a");
        assert_eq!(verdicts(&d.judge(22_000)), [Verdict::Unknown]);
        assert_eq!(verdicts(&d.judge(32_000)), [Verdict::Down]);
        assert!(d.observe(refused(29_000), "a").unwrap().verdict == Some(Verdict::Down));
    }

    #[test]
    fn with_canaries_configured_a_reached_canary_outranks_the_mass_failure_rule() {
        let mut d = Doubt::new(Rules {
            canaries: true,
            ..RULES
        });
        d.canary_round(0, true);
        for (i, host) in ["a", "b", "c", "d"].iter().enumerate() {
            d.observe(refused(i64::try_from(i).unwrap()), host);
        }
        assert_eq!(verdicts(&d.judge(12_000)), [Verdict::Down; 4]);
        assert!(d.reasons().is_empty());
    }

    #[test]
    fn held_failures_are_bounded_by_judging_the_oldest_window_early() {
        let mut d = Doubt::new(Rules {
            max_held: 3,
            ..RULES
        });
        for i in 0..3 {
            d.observe(refused(i), "a");
        }
        d.observe(refused(10_000), "a");
        assert_eq!(d.held(), 4);
        let released = d.judge(0);
        assert_eq!(released.results.len(), 3);
        assert_eq!(d.held(), 1);
        assert_eq!(d.judge_all().results.len(), 1);
    }
}
