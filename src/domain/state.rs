//! A URL's state and its incidents, from its probe results in due-time order.
//!
//! Each probe is `UP`, `DEGRADED` or `DOWN` ([`Verdict`]): `DOWN` when there
//! was no response or a `DOWN` assertion failed (without a status
//! assertion, a status outside 200–399 is such a failure), `DEGRADED` when
//! only `DEGRADED` assertions failed. Results come in runs: of `UP` probes
//! and of probes that are not `UP`, and of `DOWN` probes and of probes that
//! are not `DOWN`. With `f` = `failure_threshold` and `s` = `success_threshold`:
//!
//! - `PENDING` becomes `UP` at its first `UP` probe.
//! - `PENDING` or `UP`: `f` probes in a row that are not `UP` open an
//!   incident; the URL becomes `DOWN` if those `f` were all `DOWN`, else
//!   `DEGRADED`.
//! - `DEGRADED`: `f` `DOWN` probes in a row make it `DOWN`; the incident
//!   stays the same one, and becomes `DOWN`.
//! - `DOWN`: `s` probes in a row that are not `DOWN` make it `DEGRADED`; the
//!   incident stays open, and stays `DOWN` (an incident is the worst its
//!   URL was while it lasted).
//! - `DEGRADED` or `DOWN`: `s` `UP` probes in a row make it `UP` and resolve
//!   the incident.
//!
//! So one outage is one incident, however long it lasts and however it
//! moves between `DEGRADED` and `DOWN` (a certificate expiring for weeks
//! opens one incident, resolved when it is renewed); its `failed_probes`
//! counts the probes that were not `UP`. Without assertions no probe is
//! `DEGRADED`, and this is the machine of before: `f` failures open an
//! incident (`DOWN`), `s` successes resolve it.
//!
//! An `UNKNOWN` probe (the prober doubted its own network when it failed)
//! is skipped: it neither extends nor breaks a run, never moves the state,
//! and never opens or resolves an incident.
//!
//! A transition is dated by the due time of the first probe of the run that
//! caused it: an incident is opened at its first probe that was not `UP`
//! (whose status it keeps) and resolved at the first `UP` probe of the run
//! that ended it, and `state_since` is that same time.
//!
//! [`Tracker::apply`] is pure: the flush feeds it only rows it really
//! inserted (a result delivered twice is stored once and applied once), in
//! due-time order per URL, under a lock on the URL's state row. A result
//! older than the newest one applied does not move the state (it arrived
//! late, from another flusher); it is stored all the same.

use serde::{Deserialize, Serialize};

use super::{
    ProbeResult,
    verdict::{FailedAssertion, Verdict},
};

/// What a URL is, as users see it. The numbers are the proto's `UrlState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum UrlState {
    /// No result yet (or a failing run still under the threshold).
    Pending = 1,
    Up = 2,
    Degraded = 3,
    Down = 4,
    Paused = 5,
    /// Inside a maintenance window: probes are stored, nothing moves.
    Maintenance = 6,
}

impl From<Verdict> for UrlState {
    fn from(v: Verdict) -> Self {
        Self::from_stored(v.stored())
    }
}

impl UrlState {
    /// The state stored as `n`; unknown numbers read as `Pending`.
    pub fn from_stored(n: i16) -> Self {
        match n {
            2 => Self::Up,
            3 => Self::Degraded,
            4 => Self::Down,
            5 => Self::Paused,
            6 => Self::Maintenance,
            _ => Self::Pending,
        }
    }
}

/// How many probes in a row change the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            failure: 3,
            success: 2,
        }
    }
}

/// The part of a status an incident keeps: its first probe that was not `UP`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedProbe {
    pub due_ms: i64,
    pub probed_us: i64,
    pub status_code: i32,
    pub latency_us: i64,
    pub error_kind: Option<i16>,
    pub error_message: Option<String>,
    /// `None` in incidents opened before verdicts were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_assertions: Vec<FailedAssertion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_not_after_ms: Option<i64>,
}

impl FailedProbe {
    /// What an incident keeps of `result`.
    pub fn of(result: &ProbeResult) -> Self {
        Self {
            due_ms: result.due_ms,
            probed_us: result.started_us,
            status_code: result.status_code,
            latency_us: result.latency_us,
            error_kind: result.error_kind,
            error_message: result.error_message.clone(),
            verdict: Some(result.verdict()),
            failed_assertions: result.failed_assertions.clone(),
            tls_not_after_ms: result.tls_not_after_ms,
        }
    }
}

/// One stored result, as the state machine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub due_ms: i64,
    pub verdict: Verdict,
    pub probe: FailedProbe,
}

/// The state kept per URL between batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    pub state: UrlState,
    pub state_since_ms: Option<i64>,
    /// The newest due time applied.
    pub last_applied_ms: Option<i64>,
    /// The current run of `UP` probes (`run_ok`) or of probes that were not
    /// `UP`: its length, first due time, and (not `UP`) its first probe.
    pub run_ok: bool,
    pub run_len: u32,
    pub run_start_ms: Option<i64>,
    pub run_first: Option<FailedProbe>,
    /// The current run of `DOWN` probes (`down_run` > 0, that many) or of
    /// probes that were not `DOWN` (< 0, minus that many), and its first
    /// due time; 0: none yet.
    pub down_run: i32,
    pub down_run_start_ms: Option<i64>,
    pub open_incident: Option<i64>,
    /// While an incident is open, the state it holds the URL in (`DEGRADED`
    /// or `DOWN`; `None` read as `DOWN`): what a resume goes back to.
    pub incident_state: Option<UrlState>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            state: UrlState::Pending,
            state_since_ms: None,
            last_applied_ms: None,
            run_ok: true,
            run_len: 0,
            run_start_ms: None,
            run_first: None,
            down_run: 0,
            down_run_start_ms: None,
            open_incident: None,
            incident_state: None,
        }
    }
}

/// An incident opened by [`Tracker::apply`] (it has no id yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    /// `DEGRADED` or `DOWN`: the worst its URL was while it lasted.
    pub state: UrlState,
    pub opened_ms: i64,
    pub first: FailedProbe,
    pub failed_probes: u32,
    /// Set when it was resolved within the same results.
    pub resolved_ms: Option<i64>,
}

/// A change to the incident that was open before [`Tracker::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenIncidentChange {
    pub more_failed_probes: u32,
    pub resolved_ms: Option<i64>,
    /// Set when it became worse (`DEGRADED` to `DOWN`).
    pub state: Option<UrlState>,
    /// Set when a maintenance window that held it ended with its URL still
    /// failing: it is notified again.
    pub renotify: bool,
}

/// What applying results changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// New incidents, oldest first; only the last may still be open.
    pub opened: Vec<NewIncident>,
    /// The incident open before, if it saw failures, got worse or was resolved.
    pub open_change: Option<OpenIncidentChange>,
    /// Results applied (others were older than the newest applied).
    pub applied: usize,
    /// Whether the tracker changed at all.
    pub changed: bool,
}

impl Tracker {
    /// Applies `outcomes` (sorted by due time, no two with the same due
    /// time) to the state. While the URL is paused nothing moves.
    pub fn apply(&mut self, thresholds: Thresholds, outcomes: &[Outcome]) -> Applied {
        let mut out = Applied::default();
        if self.state == UrlState::Paused {
            return out;
        }
        let before = self.clone();
        let failure = thresholds.failure.max(1);
        let success = thresholds.success.max(1);
        for o in outcomes {
            // The prober doubted itself: this says nothing of the URL.
            if o.verdict == Verdict::Unknown {
                continue;
            }
            if self.last_applied_ms.is_some_and(|last| o.due_ms <= last) {
                continue;
            }
            self.last_applied_ms = Some(o.due_ms);
            out.applied += 1;
            if o.verdict == Verdict::Maintenance {
                self.hold(o.due_ms);
                continue;
            }
            if self.state == UrlState::Maintenance {
                self.end_hold(&mut out, o);
            }
            self.extend_runs(o);
            let up = o.verdict == Verdict::Up;
            let run_start = self.run_start_ms.unwrap_or(o.due_ms);
            let down_start = self.down_run_start_ms.unwrap_or(o.due_ms);
            let downs = u32::try_from(self.down_run).unwrap_or(0);
            let not_downs = u32::try_from(-i64::from(self.down_run)).unwrap_or(0);
            match self.state {
                UrlState::Pending if up => self.enter(UrlState::Up, run_start),
                UrlState::Pending | UrlState::Up if !up && self.run_len >= failure => {
                    let (state, since) = if downs >= failure {
                        (UrlState::Down, down_start)
                    } else {
                        (UrlState::Degraded, run_start)
                    };
                    self.enter(state, since);
                    self.incident_state = Some(state);
                    out.opened.push(NewIncident {
                        state,
                        opened_ms: run_start,
                        first: self.run_first.clone().unwrap_or_else(|| o.probe.clone()),
                        failed_probes: self.run_len,
                        resolved_ms: None,
                    });
                }
                UrlState::Down | UrlState::Degraded if up && self.run_len >= success => {
                    self.enter(UrlState::Up, run_start);
                    self.resolve(&mut out, run_start);
                }
                UrlState::Down | UrlState::Degraded => {
                    if !up {
                        Self::count_failure(&mut out);
                    }
                    if self.state == UrlState::Down && not_downs >= success {
                        self.enter(UrlState::Degraded, down_start);
                        self.incident_state = Some(UrlState::Degraded);
                    } else if self.state == UrlState::Degraded && downs >= failure {
                        self.enter(UrlState::Down, down_start);
                        self.incident_state = Some(UrlState::Down);
                        Self::worsen(&mut out);
                    }
                }
                _ => {}
            }
        }
        out.changed = *self != before;
        out
    }

    /// Extends (or restarts) the two runs with `o`.
    fn extend_runs(&mut self, o: &Outcome) {
        let up = o.verdict == Verdict::Up;
        if up == self.run_ok && self.run_len > 0 {
            self.run_len += 1;
        } else {
            self.run_ok = up;
            self.run_len = 1;
            self.run_start_ms = Some(o.due_ms);
            self.run_first = (!up).then(|| o.probe.clone());
        }
        let down = o.verdict == Verdict::Down;
        self.down_run = match (down, self.down_run) {
            (true, n) if n > 0 => n.saturating_add(1),
            (false, n) if n < 0 => n.saturating_sub(1),
            (true, _) => {
                self.down_run_start_ms = Some(o.due_ms);
                1
            }
            (false, _) => {
                self.down_run_start_ms = Some(o.due_ms);
                -1
            }
        };
    }

    fn enter(&mut self, state: UrlState, since_ms: i64) {
        self.state = state;
        self.state_since_ms = Some(since_ms);
    }

    /// The open incident (opened now or before) on one more failing probe.
    fn count_failure(out: &mut Applied) {
        match out.opened.last_mut() {
            Some(new) if new.resolved_ms.is_none() => new.failed_probes += 1,
            _ => {
                out.open_change
                    .get_or_insert_with(OpenIncidentChange::default)
                    .more_failed_probes += 1;
            }
        }
    }

    /// The open incident (opened now or before) became `DOWN`.
    fn worsen(out: &mut Applied) {
        match out.opened.last_mut() {
            Some(new) if new.resolved_ms.is_none() => new.state = UrlState::Down,
            _ => {
                out.open_change
                    .get_or_insert_with(OpenIncidentChange::default)
                    .state = Some(UrlState::Down);
            }
        }
    }

    fn resolve(&mut self, out: &mut Applied, at_ms: i64) {
        match out.opened.last_mut() {
            Some(new) if new.resolved_ms.is_none() => new.resolved_ms = Some(at_ms),
            _ => {
                if self.open_incident.is_some() {
                    out.open_change
                        .get_or_insert_with(OpenIncidentChange::default)
                        .resolved_ms = Some(at_ms);
                }
            }
        }
        self.open_incident = None;
        self.incident_state = None;
    }

    /// A probe inside a maintenance window: the URL is `MAINTENANCE` and its
    /// runs start again, so that after the window the thresholds count only
    /// probes from after it. An open incident is held: it stays open and
    /// nothing resolves or notifies it meanwhile.
    fn hold(&mut self, due_ms: i64) {
        if self.state != UrlState::Maintenance {
            self.enter(UrlState::Maintenance, due_ms);
        }
        self.run_ok = true;
        self.run_len = 0;
        self.run_start_ms = None;
        self.run_first = None;
        self.down_run = 0;
        self.down_run_start_ms = None;
    }

    /// The first probe after a maintenance window: back to the state the
    /// held incident keeps the URL in (`DEGRADED` or `DOWN`), else
    /// `PENDING`. A held incident whose URL still fails at the end of the
    /// window is notified again (`open_change.renotify`); one whose URL is
    /// `UP` is resolved by the success threshold, as usual.
    fn end_hold(&mut self, out: &mut Applied, o: &Outcome) {
        let held = self.incident_state.is_some();
        let state = if held {
            self.incident_state.unwrap_or(UrlState::Down)
        } else {
            UrlState::Pending
        };
        self.enter(state, o.due_ms);
        if held && o.verdict != Verdict::Up {
            match out.opened.last_mut() {
                Some(new) if new.resolved_ms.is_none() => {}
                _ => {
                    out.open_change
                        .get_or_insert_with(OpenIncidentChange::default)
                        .renotify = true;
                }
            }
        }
    }

    /// Pausing: nothing moves until [`Self::resume`]; an open incident stays
    /// open.
    pub fn pause(&mut self, now_ms: i64) {
        self.enter(UrlState::Paused, now_ms);
    }

    /// Resuming: the runs start again; while an incident is open the state
    /// is the one it held the URL in (`DEGRADED` or `DOWN`), else `PENDING`.
    pub fn resume(&mut self, now_ms: i64) {
        let state = if self.open_incident.is_some() {
            self.incident_state.unwrap_or(UrlState::Down)
        } else {
            UrlState::Pending
        };
        self.enter(state, now_ms);
        self.run_ok = true;
        self.run_len = 0;
        self.run_start_ms = None;
        self.run_first = None;
        self.down_run = 0;
        self.down_run_start_ms = None;
        // Results of probes due while paused (in flight then) do not count.
        self.last_applied_ms = Some(self.last_applied_ms.unwrap_or(now_ms).max(now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(due_ms: i64, verdict: Verdict) -> Outcome {
        Outcome {
            due_ms,
            verdict,
            probe: FailedProbe {
                due_ms,
                probed_us: due_ms * 1000,
                status_code: if verdict == Verdict::Down { 500 } else { 200 },
                latency_us: 1_000,
                verdict: Some(verdict),
                ..FailedProbe::default()
            },
        }
    }

    fn outcome(due_ms: i64, ok: bool) -> Outcome {
        judged(due_ms, if ok { Verdict::Up } else { Verdict::Down })
    }

    /// `+` UP, `~` DEGRADED, `-` DOWN, `?` UNKNOWN, one a second from 0.
    fn run(pattern: &str) -> Vec<Outcome> {
        pattern
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let verdict = match c {
                    '+' => Verdict::Up,
                    '~' => Verdict::Degraded,
                    '?' => Verdict::Unknown,
                    _ => Verdict::Down,
                };
                judged(i64::try_from(i).unwrap() * 1_000, verdict)
            })
            .collect()
    }

    #[test]
    fn the_third_failure_opens_an_incident_at_the_first_and_the_second_success_resolves_it() {
        let mut t = Tracker::default();
        let applied = t.apply(Thresholds::default(), &run("++---++"));
        assert_eq!(applied.opened.len(), 1);
        let incident = &applied.opened[0];
        assert_eq!(incident.opened_ms, 2_000, "dated by the first failure");
        assert_eq!(incident.first.due_ms, 2_000);
        assert_eq!(incident.failed_probes, 3);
        assert_eq!(
            incident.resolved_ms,
            Some(5_000),
            "dated by the first success"
        );
        assert_eq!(t.state, UrlState::Up);
        assert_eq!(t.state_since_ms, Some(5_000));
    }

    #[test]
    fn unknown_probes_neither_extend_nor_break_a_run_nor_move_the_state() {
        let mut t = Tracker::default();
        let applied = t.apply(Thresholds::default(), &run("??????"));
        assert!(applied.opened.is_empty());
        assert_eq!((t.state, applied.applied), (UrlState::Pending, 0));
        // Failures around UNKNOWN ones still make one run of three.
        let applied = t.apply(Thresholds::default(), &run("+-??-??-"));
        assert_eq!(applied.opened.len(), 1);
        assert_eq!(applied.opened[0].opened_ms, 1_000);
        assert_eq!(t.state, UrlState::Down);
        t.open_incident = Some(7);
        // UNKNOWN ones between successes neither resolve nor break the run.
        let mut t2 = t.clone();
        let later: Vec<Outcome> = run("????????+??+")
            .into_iter()
            .map(|mut o| {
                o.due_ms += 10_000;
                o
            })
            .collect();
        let applied = t2.apply(Thresholds::default(), &later[..9]);
        assert_eq!(t2.state, UrlState::Down);
        assert!(applied.open_change.is_none());
        let applied = t.apply(Thresholds::default(), &later);
        assert_eq!(t.state, UrlState::Up);
        assert_eq!(applied.open_change.unwrap().resolved_ms, Some(18_000));
    }

    #[test]
    fn alternating_results_open_nothing() {
        let mut t = Tracker::default();
        let applied = t.apply(Thresholds::default(), &run("+-+-+-+-+-+-"));
        assert!(applied.opened.is_empty());
        assert_eq!(t.state, UrlState::Up);
    }

    #[test]
    fn a_url_failing_from_the_start_stays_pending_until_the_threshold() {
        let mut t = Tracker::default();
        t.apply(Thresholds::default(), &run("--"));
        assert_eq!(t.state, UrlState::Pending);
        let applied = t.apply(Thresholds::default(), &[outcome(2_000, false)]);
        assert_eq!(t.state, UrlState::Down);
        assert_eq!(applied.opened[0].opened_ms, 0);
        assert_eq!(applied.opened[0].failed_probes, 3);
    }

    #[test]
    fn across_batches_failures_are_counted_on_the_open_incident_and_it_resolves_once() {
        let mut t = Tracker::default();
        let first = t.apply(Thresholds::default(), &run("+---"));
        assert_eq!(first.opened.len(), 1);
        t.open_incident = Some(7);
        let more = t.apply(
            Thresholds::default(),
            &[
                outcome(4_000, false),
                outcome(5_000, false),
                outcome(6_000, true),
            ],
        );
        assert!(more.opened.is_empty());
        assert_eq!(
            more.open_change,
            Some(OpenIncidentChange {
                more_failed_probes: 2,
                resolved_ms: None,
                state: None,
                renotify: false,
            })
        );
        let resolved = t.apply(Thresholds::default(), &[outcome(7_000, true)]);
        assert_eq!(resolved.open_change.unwrap().resolved_ms, Some(6_000));
        assert_eq!(t.open_incident, None);
        assert_eq!(t.state, UrlState::Up);
    }

    #[test]
    fn results_older_than_the_newest_applied_do_not_move_the_state() {
        let mut t = Tracker::default();
        t.apply(Thresholds::default(), &[outcome(10_000, true)]);
        let late = t.apply(
            Thresholds::default(),
            &[
                outcome(7_000, false),
                outcome(8_000, false),
                outcome(9_000, false),
            ],
        );
        assert_eq!(late.applied, 0);
        assert!(!late.changed);
        assert_eq!(t.state, UrlState::Up);
    }

    #[test]
    fn thresholds_of_one_flip_at_once() {
        let mut t = Tracker::default();
        let th = Thresholds {
            failure: 1,
            success: 1,
        };
        let applied = t.apply(th, &run("+-+-"));
        assert_eq!(applied.opened.len(), 2);
        assert_eq!(applied.opened[0].resolved_ms, Some(2_000));
        assert_eq!(applied.opened[1].resolved_ms, None);
        assert_eq!(t.state, UrlState::Down);
    }

    #[test]
    fn a_paused_url_does_not_move_and_resumes_pending_or_down() {
        let mut t = Tracker::default();
        t.apply(Thresholds::default(), &run("+"));
        t.pause(5_000);
        assert!(
            !t.apply(Thresholds::default(), &[outcome(6_000, false)])
                .changed
        );
        t.resume(9_000);
        assert_eq!(t.state, UrlState::Pending);
        // A probe due while paused does not count.
        assert_eq!(
            t.apply(Thresholds::default(), &[outcome(8_000, false)])
                .applied,
            0
        );
        t.open_incident = Some(1);
        t.pause(10_000);
        t.resume(11_000);
        assert_eq!(t.state, UrlState::Down);
    }

    #[test]
    fn degraded_probes_open_a_degraded_incident_and_down_ones_worsen_it() {
        let mut t = Tracker::default();
        let applied = t.apply(Thresholds::default(), &run("+~~~"));
        assert_eq!(t.state, UrlState::Degraded);
        assert_eq!(t.state_since_ms, Some(1_000));
        let incident = &applied.opened[0];
        assert_eq!(
            (incident.state, incident.opened_ms, incident.failed_probes),
            (UrlState::Degraded, 1_000, 3)
        );
        t.open_incident = Some(9);
        // Two DOWN probes are not enough; the third in a row is.
        let more = t.apply(
            Thresholds::default(),
            &[judged(4_000, Verdict::Down), judged(5_000, Verdict::Down)],
        );
        assert_eq!(t.state, UrlState::Degraded);
        assert_eq!(more.open_change.unwrap().state, None);
        let worse = t.apply(Thresholds::default(), &[judged(6_000, Verdict::Down)]);
        assert_eq!(t.state, UrlState::Down);
        assert_eq!(
            t.state_since_ms,
            Some(4_000),
            "dated by the first DOWN of the run"
        );
        assert_eq!(
            worse.open_change,
            Some(OpenIncidentChange {
                more_failed_probes: 1,
                resolved_ms: None,
                state: Some(UrlState::Down),
                renotify: false,
            })
        );
        assert!(worse.opened.is_empty(), "one outage, one incident");
    }

    #[test]
    fn down_turns_degraded_after_the_success_threshold_and_up_resolves_it() {
        let mut t = Tracker::default();
        let applied = t.apply(Thresholds::default(), &run("---~~~++"));
        assert_eq!(applied.opened.len(), 1);
        let incident = &applied.opened[0];
        assert_eq!(incident.state, UrlState::Down, "the worst it was");
        assert_eq!(incident.failed_probes, 6);
        assert_eq!(incident.resolved_ms, Some(6_000));
        assert_eq!(t.state, UrlState::Up);
        // In between, two probes that were not DOWN made it DEGRADED.
        let mut t = Tracker::default();
        t.apply(Thresholds::default(), &run("---~~"));
        assert_eq!(
            (t.state, t.state_since_ms),
            (UrlState::Degraded, Some(3_000))
        );
        // An UP probe that is not yet a resolution counts as not DOWN.
        let mut t = Tracker::default();
        t.apply(Thresholds::default(), &run("---+~"));
        assert_eq!(t.state, UrlState::Degraded);
    }

    #[test]
    fn mixed_runs_are_degraded_unless_the_threshold_of_downs_is_met() {
        let mut t = Tracker::default();
        let applied = t.apply(Thresholds::default(), &run("-~-"));
        assert_eq!(applied.opened[0].state, UrlState::Degraded);
        assert_eq!(t.state, UrlState::Degraded);
        t.apply(Thresholds::default(), &run("-~---").split_off(3));
        assert_eq!(t.state, UrlState::Down);
        // Alternating UP and DEGRADED never opens anything.
        let mut t = Tracker::default();
        assert!(
            t.apply(Thresholds::default(), &run("+~+~+~+~"))
                .opened
                .is_empty()
        );
        assert_eq!(t.state, UrlState::Up);
    }

    #[test]
    fn weeks_of_degraded_probes_are_one_incident_resolved_at_the_renewal() {
        let mut t = Tracker::default();
        let th = Thresholds::default();
        let mut opened = 0;
        let mut resolved = Vec::new();
        for day in 0..2_000 {
            let verdict = if (10..1_500).contains(&day) {
                Verdict::Degraded
            } else {
                Verdict::Up
            };
            let applied = t.apply(th, &[judged(day * 1_000, verdict)]);
            opened += applied.opened.len();
            if !applied.opened.is_empty() {
                t.open_incident = Some(1);
            }
            resolved.extend(applied.open_change.and_then(|c| c.resolved_ms));
        }
        assert_eq!(opened, 1);
        assert_eq!(resolved, vec![1_500_000]);
    }

    fn held(due_ms: i64) -> Outcome {
        judged(due_ms, Verdict::Maintenance)
    }

    #[test]
    fn failures_in_a_window_open_nothing_and_after_it_the_threshold_counts_afresh() {
        let mut t = Tracker::default();
        let mut batch = run("++--");
        batch.extend((4..10).map(|i| held(i * 1_000)));
        let applied = t.apply(Thresholds::default(), &batch);
        assert!(applied.opened.is_empty());
        assert_eq!(t.state, UrlState::Maintenance);
        assert_eq!(t.state_since_ms, Some(4_000));
        let after = t.apply(
            Thresholds::default(),
            &[outcome(10_000, false), outcome(11_000, false)],
        );
        assert!(after.opened.is_empty(), "two failures after the window");
        assert_eq!(t.state, UrlState::Pending);
        let third = t.apply(Thresholds::default(), &[outcome(12_000, false)]);
        assert_eq!(third.opened.len(), 1);
        assert_eq!(third.opened[0].opened_ms, 10_000);
        assert_eq!(t.state, UrlState::Down);
    }

    #[test]
    fn an_incident_open_when_a_window_starts_is_held_then_resolved_or_notified_again() {
        for (after, renotify, resolved) in [("++", false, true), ("-", true, false)] {
            let mut t = Tracker::default();
            t.apply(Thresholds::default(), &run("+---"));
            t.open_incident = Some(7);
            let during: Vec<Outcome> = (4..8).map(|i| held(i * 1_000)).collect();
            let applied = t.apply(Thresholds::default(), &during);
            assert_eq!(
                applied.open_change, None,
                "held: nothing resolves or notifies"
            );
            assert_eq!((t.state, t.open_incident), (UrlState::Maintenance, Some(7)));
            let end: Vec<Outcome> = after
                .chars()
                .enumerate()
                .map(|(i, c)| outcome(8_000 + i64::try_from(i).unwrap() * 1_000, c == '+'))
                .collect();
            let change = t
                .apply(Thresholds::default(), &end)
                .open_change
                .unwrap_or_default();
            assert_eq!(change.renotify, renotify, "{after}");
            assert_eq!(change.resolved_ms.is_some(), resolved, "{after}");
            let want = if resolved {
                UrlState::Up
            } else {
                UrlState::Down
            };
            assert_eq!(t.state, want, "{after}");
        }
    }

    #[test]
    fn a_paused_degraded_url_resumes_degraded() {
        let mut t = Tracker::default();
        t.apply(Thresholds::default(), &run("~~~"));
        t.open_incident = Some(4);
        t.pause(10_000);
        t.resume(11_000);
        assert_eq!(t.state, UrlState::Degraded);
        // A row from before incident states were kept resumes DOWN.
        t.incident_state = None;
        t.pause(12_000);
        t.resume(13_000);
        assert_eq!(t.state, UrlState::Down);
    }
}
