//! A URL's state and its incidents, from its probe results in due-time order.
//!
//! A probe *fails* when there was no response or the status is outside
//! 200–399. Results come in runs of equal outcomes. `failure_threshold`
//! consecutive failures turn `PENDING` or `UP` into `DOWN` and open an
//! incident; `success_threshold` consecutive successes turn `DOWN` into `UP`
//! and resolve it; the first success of a URL with no result yet makes it
//! `UP`. A transition is dated by the due time of the first probe of the run
//! that caused it: an incident is opened at its first failing probe (whose
//! status it keeps) and resolved at the first success of the run that ended
//! it, and `state_since` is that same time.
//!
//! [`Tracker::apply`] is pure: the flush feeds it only rows it really
//! inserted (a result delivered twice is stored once and applied once), in
//! due-time order per URL, under a lock on the URL's state row. A result
//! older than the newest one applied does not move the state (it arrived
//! late, from another flusher); it is stored all the same.

use serde::{Deserialize, Serialize};

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
}

impl UrlState {
    /// The state stored as `n`; unknown numbers read as `Pending`.
    pub fn from_stored(n: i16) -> Self {
        match n {
            2 => Self::Up,
            3 => Self::Degraded,
            4 => Self::Down,
            5 => Self::Paused,
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

/// The part of a status an incident keeps: its first failing probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedProbe {
    pub status_id: i64,
    pub due_ms: i64,
    pub probed_us: i64,
    pub status_code: i32,
    pub latency_us: i64,
    pub error_kind: Option<i16>,
    pub error_message: Option<String>,
}

/// One stored result, as the state machine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub due_ms: i64,
    pub ok: bool,
    pub probe: FailedProbe,
}

impl Outcome {
    /// Whether a probe with this status code succeeded: a response with a
    /// status in 200–399.
    pub fn succeeded(status_code: i32) -> bool {
        (200..=399).contains(&status_code)
    }

    /// Whether a stored probe succeeded: no error, and a status in 200–399.
    pub fn probe_ok(status_code: i32, error_kind: Option<i16>) -> bool {
        error_kind.is_none() && Self::succeeded(status_code)
    }
}

/// The state kept per URL between batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    pub state: UrlState,
    pub state_since_ms: Option<i64>,
    /// The newest due time applied.
    pub last_applied_ms: Option<i64>,
    /// The current run: its outcome, length, first due time, and (a failing
    /// run) its first probe.
    pub run_ok: bool,
    pub run_len: u32,
    pub run_start_ms: Option<i64>,
    pub run_first: Option<FailedProbe>,
    pub open_incident: Option<i64>,
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
            open_incident: None,
        }
    }
}

/// An incident opened by [`Tracker::apply`] (it has no id yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
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
}

/// What applying results changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// New incidents, oldest first; only the last may still be open.
    pub opened: Vec<NewIncident>,
    /// The incident open before, if it saw failures or was resolved.
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
        for o in outcomes {
            if self.last_applied_ms.is_some_and(|last| o.due_ms <= last) {
                continue;
            }
            self.last_applied_ms = Some(o.due_ms);
            out.applied += 1;
            if o.ok == self.run_ok && self.run_len > 0 {
                self.run_len += 1;
            } else {
                self.run_ok = o.ok;
                self.run_len = 1;
                self.run_start_ms = Some(o.due_ms);
                self.run_first = (!o.ok).then(|| o.probe.clone());
            }
            let run_start = self.run_start_ms.unwrap_or(o.due_ms);
            if o.ok {
                match self.state {
                    UrlState::Pending => self.enter(UrlState::Up, run_start),
                    UrlState::Down | UrlState::Degraded
                        if self.run_len >= thresholds.success.max(1) =>
                    {
                        self.enter(UrlState::Up, run_start);
                        self.resolve(&mut out, run_start);
                    }
                    _ => {}
                }
            } else if self.state == UrlState::Down {
                Self::count_failure(&mut out);
            } else if self.run_len >= thresholds.failure.max(1) {
                self.enter(UrlState::Down, run_start);
                out.opened.push(NewIncident {
                    state: UrlState::Down,
                    opened_ms: run_start,
                    first: self.run_first.clone().unwrap_or_else(|| o.probe.clone()),
                    failed_probes: self.run_len,
                    resolved_ms: None,
                });
            }
        }
        out.changed = *self != before;
        out
    }

    fn enter(&mut self, state: UrlState, since_ms: i64) {
        self.state = state;
        self.state_since_ms = Some(since_ms);
    }

    /// One more failure of the open incident (opened now or before).
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
    }

    /// Pausing: nothing moves until [`Self::resume`]; an open incident stays
    /// open.
    pub fn pause(&mut self, now_ms: i64) {
        self.enter(UrlState::Paused, now_ms);
    }

    /// Resuming: the runs start again; the state is `DOWN` while an
    /// incident is open, else `PENDING`.
    pub fn resume(&mut self, now_ms: i64) {
        let state = if self.open_incident.is_some() {
            UrlState::Down
        } else {
            UrlState::Pending
        };
        self.enter(state, now_ms);
        self.run_ok = true;
        self.run_len = 0;
        self.run_start_ms = None;
        self.run_first = None;
        // Results of probes due while paused (in flight then) do not count.
        self.last_applied_ms = Some(self.last_applied_ms.unwrap_or(now_ms).max(now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(due_ms: i64, ok: bool) -> Outcome {
        Outcome {
            due_ms,
            ok,
            probe: FailedProbe {
                status_id: due_ms,
                due_ms,
                probed_us: due_ms * 1000,
                status_code: if ok { 200 } else { 500 },
                latency_us: 1_000,
                error_kind: None,
                error_message: None,
            },
        }
    }

    fn run(pattern: &str) -> Vec<Outcome> {
        pattern
            .chars()
            .enumerate()
            .map(|(i, c)| outcome(i64::try_from(i).unwrap() * 1_000, c == '+'))
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
                resolved_ms: None
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
}
