//! What an instance keeps probing while it cannot reach the database.
//!
//! Each due time is claimed in the database by exactly one instance
//! (`store::schedule`). The instance that claimed a URL's latest due time
//! *holds* the URL: it remembers the URL, its period and its next due time.
//! When claims fail (the database is down, or unreachable from here), each
//! instance goes on probing the URLs it holds on their grid, from memory. So
//! through an outage every URL is still probed, once, by the last instance
//! that claimed it, and the results wait in the buffer for the database.
//!
//! When claims succeed again the database's due times are stale (where the
//! outage began), so a claim may hand back a due time already probed from
//! memory: it is skipped, and the claim moves the database's schedule past
//! it. The database takes over again from there. Only due times memory
//! handed out are skipped so: a claim earlier than the held next due time
//! for another reason (UpdateUrl moved the URL to a new grid) is probed.
//!
//! An instance lets go of a URL when a complete claim (one not cut short by
//! its limit) that covered the URL's next due time did not return it:
//! another instance claimed it, or it was deleted. So the URLs held across a
//! fleet are each held by one instance, and an instance holds no more than
//! it probes.
//!
//! Invariants (unit tests below): a due time is handed out at most once by
//! one instance, whether it came from a claim or from memory; the due times
//! handed out from memory are the URL's grid, those missed by more than the
//! allowed lateness skipped, not made up.

use std::{collections::HashMap, sync::Arc};

use crate::domain::{Assertions, Claim};

#[derive(Debug)]
struct Held {
    url: Arc<str>,
    assertions: Option<Arc<Assertions>>,
    period_ms: i64,
    /// The next due time not handed out yet.
    next_ms: i64,
    /// Due times before this were handed out from memory, or skipped there
    /// (`i64::MIN`: none).
    memory_until_ms: i64,
    /// The claim round that last returned this URL.
    round: u64,
}

/// The URLs this instance holds, by id.
#[derive(Debug, Default)]
pub struct Holdings {
    urls: HashMap<i64, Held>,
    round: u64,
}

/// Due times handed out from memory by [`Holdings::due`].
#[derive(Debug, Default)]
pub struct FromMemory {
    pub claims: Vec<Claim>,
    /// Due times missed by more than the allowed lateness.
    pub skipped_late: usize,
}

impl Holdings {
    /// URLs held.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Records a successful claim that covered due times up to `horizon_ms`
    /// and returns the claims still to probe: those whose due time was
    /// already handed out from memory are dropped. `complete` says the claim
    /// was not cut short by its limit; then a held URL due within the
    /// horizon that it did not return is let go.
    pub fn claimed(&mut self, claims: Vec<Claim>, horizon_ms: i64, complete: bool) -> Vec<Claim> {
        self.round += 1;
        let round = self.round;
        let mut fresh = Vec::with_capacity(claims.len());
        for mut claim in claims {
            let held = self.urls.entry(claim.url_id).or_insert_with(|| Held {
                url: claim.url.clone(),
                assertions: None,
                period_ms: claim.period_ms,
                next_ms: claim.due_ms,
                memory_until_ms: i64::MIN,
                round,
            });
            held.round = round;
            held.period_ms = claim.period_ms;
            if held.url == claim.url {
                // One copy of the URL, shared by the claim and the holding.
                claim.url = held.url.clone();
            } else {
                held.url = claim.url.clone();
            }
            held.assertions.clone_from(&claim.assertions);
            let already = claim.due_ms < held.memory_until_ms;
            held.next_ms = claim.next_ms.max(held.memory_until_ms);
            if !already {
                fresh.push(claim);
            }
        }
        if complete {
            self.urls
                .retain(|_, held| held.round == round || held.next_ms > horizon_ms);
        }
        fresh
    }

    /// The held URLs' due times up to `horizon_ms`, at most `limit`, handed
    /// out from memory while claims fail. A due time more than
    /// `max_late_ms` before `now_ms` is skipped.
    pub fn due(
        &mut self,
        now_ms: i64,
        horizon_ms: i64,
        max_late_ms: i64,
        limit: usize,
    ) -> FromMemory {
        let mut out = FromMemory::default();
        for (&url_id, held) in &mut self.urls {
            let p = held.period_ms.max(1);
            if now_ms - held.next_ms > max_late_ms {
                // Skip whole periods: from the newest grid point at or before now.
                let missed = (now_ms - held.next_ms) / p;
                held.next_ms += missed * p;
                out.skipped_late += usize::try_from(missed).unwrap_or(usize::MAX);
                if now_ms - held.next_ms > max_late_ms {
                    held.next_ms += p;
                    out.skipped_late += 1;
                }
            }
            while held.next_ms <= horizon_ms && out.claims.len() < limit {
                out.claims.push(Claim {
                    url_id,
                    url: held.url.clone(),
                    assertions: held.assertions.clone(),
                    period_ms: p,
                    due_ms: held.next_ms,
                    next_ms: held.next_ms + p,
                });
                held.next_ms += p;
            }
            held.memory_until_ms = held.next_ms;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(url_id: i64, due_ms: i64, period_ms: i64) -> Claim {
        Claim {
            url_id,
            url: Arc::from(format!("http://example.test/{url_id}")),
            assertions: None,
            period_ms,
            due_ms,
            next_ms: due_ms + period_ms,
        }
    }

    fn dues(claims: &[Claim]) -> Vec<(i64, i64)> {
        let mut v: Vec<_> = claims.iter().map(|c| (c.url_id, c.due_ms)).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn claims_pass_through_and_are_remembered() {
        let mut h = Holdings::default();
        let fresh = h.claimed(
            vec![claim(1, 1_000, 1_000), claim(2, 1_500, 1_000)],
            1_500,
            true,
        );
        assert_eq!(dues(&fresh), [(1, 1_000), (2, 1_500)]);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn from_memory_the_grid_goes_on_each_due_time_once() {
        let mut h = Holdings::default();
        h.claimed(
            vec![claim(1, 1_000, 1_000), claim(2, 1_500, 1_000)],
            1_500,
            true,
        );
        // Claims fail from here; ticks every 200 ms schedule 500 ms ahead.
        let mut handed = Vec::new();
        let mut now = 1_600;
        while now <= 5_000 {
            handed.extend(h.due(now, now + 500, 5_000, usize::MAX).claims);
            now += 200;
        }
        assert_eq!(
            dues(&handed),
            [
                (1, 2_000),
                (1, 3_000),
                (1, 4_000),
                (1, 5_000),
                (2, 2_500),
                (2, 3_500),
                (2, 4_500),
                (2, 5_500)
            ]
        );
    }

    #[test]
    fn due_times_already_probed_from_memory_are_not_probed_again() {
        let mut h = Holdings::default();
        h.claimed(vec![claim(1, 1_000, 1_000)], 1_000, true);
        let memory = h.due(3_100, 4_100, 5_000, usize::MAX).claims;
        assert_eq!(dues(&memory), [(1, 2_000), (1, 3_000), (1, 4_000)]);
        // The database is back with the URL still at 2 000 (it claims the
        // newest grid point within the lateness, 3 000) and the next tick at 4 000.
        let stale = Claim {
            next_ms: 4_000,
            ..claim(1, 3_000, 1_000)
        };
        assert!(h.claimed(vec![stale], 3_600, true).is_empty());
        let fresh = h.claimed(vec![claim(1, 4_000, 1_000)], 4_200, true);
        assert!(fresh.is_empty(), "4 000 was handed out from memory");
        let fresh = h.claimed(vec![claim(1, 5_000, 1_000)], 5_200, true);
        assert_eq!(dues(&fresh), [(1, 5_000)]);
    }

    #[test]
    fn a_claim_moved_to_a_new_grid_is_probed_though_earlier_than_the_held_next() {
        let mut h = Holdings::default();
        h.claimed(vec![claim(1, 21_000, 10_000)], 21_000, true);
        // UpdateUrl at 23 500: every 4 s, next at 25 000 (before 31 000).
        let fresh = h.claimed(vec![claim(1, 25_000, 4_000)], 25_200, true);
        assert_eq!(dues(&fresh), [(1, 25_000)]);
        let fresh = h.claimed(vec![claim(1, 29_000, 4_000)], 29_200, true);
        assert_eq!(dues(&fresh), [(1, 29_000)]);
        // From memory, on the new grid.
        assert_eq!(
            dues(&h.due(32_000, 33_000, 5_000, usize::MAX).claims),
            [(1, 33_000)]
        );
    }

    #[test]
    fn a_url_claimed_elsewhere_or_deleted_is_let_go() {
        let mut h = Holdings::default();
        h.claimed(
            vec![claim(1, 1_000, 1_000), claim(2, 1_000, 5_000)],
            1_000,
            true,
        );
        // URL 1 is due at 2 000 and this complete claim did not return it:
        // another instance has it. URL 2 is not due yet: still held.
        h.claimed(vec![], 2_100, true);
        assert_eq!(h.len(), 1);
        assert_eq!(
            dues(&h.due(2_200, 7_000, 5_000, usize::MAX).claims),
            [(2, 6_000)]
        );
    }

    #[test]
    fn a_claim_cut_short_by_its_limit_lets_nothing_go() {
        let mut h = Holdings::default();
        h.claimed(
            vec![claim(1, 1_000, 1_000), claim(2, 1_000, 1_000)],
            1_000,
            true,
        );
        h.claimed(vec![claim(1, 2_000, 1_000)], 2_100, false);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn due_times_missed_by_more_than_the_lateness_are_skipped_not_made_up() {
        let mut h = Holdings::default();
        h.claimed(vec![claim(1, 1_000, 1_000)], 1_000, true);
        // Nothing ran for a minute.
        let memory = h.due(61_500, 62_000, 5_000, usize::MAX);
        // From the newest grid point at or before now, as a claim does.
        assert_eq!(dues(&memory.claims), [(1, 61_000), (1, 62_000)]);
        assert_eq!(memory.skipped_late, 59);
        // With a period longer than the lateness, a late grid point is skipped whole.
        let mut h = Holdings::default();
        h.claimed(vec![claim(1, 0, 60_000)], 0, true);
        let memory = h.due(130_000, 130_500, 5_000, usize::MAX);
        assert!(memory.claims.is_empty());
        assert_eq!(memory.skipped_late, 2);
        assert_eq!(
            dues(&h.due(180_000, 180_500, 5_000, usize::MAX).claims),
            [(1, 180_000)]
        );
    }

    #[test]
    fn at_most_limit_due_times_are_handed_out() {
        let mut h = Holdings::default();
        h.claimed(
            (0..10).map(|id| claim(id, 1_000, 1_000)).collect(),
            1_000,
            true,
        );
        assert_eq!(h.due(2_000, 2_000, 5_000, 4).claims.len(), 4);
        assert_eq!(h.due(2_000, 2_000, 5_000, 100).claims.len(), 6);
    }

    #[test]
    fn memory_probes_a_url_with_the_assertions_of_its_latest_claim() {
        use crate::domain::assertion::{Assertion, Check, Severity};
        let mut h = Holdings::default();
        let assertions = Arc::new(
            Assertions::new(
                "",
                vec![Assertion::new(
                    Severity::Degraded,
                    Check::MaxLatencyUs(500_000),
                )],
            )
            .unwrap(),
        );
        let with = Claim {
            assertions: Some(assertions.clone()),
            ..claim(1, 1_000, 1_000)
        };
        h.claimed(vec![with], 1_000, true);
        let memory = h.due(2_000, 2_000, 5_000, usize::MAX).claims;
        assert_eq!(memory[0].assertions.as_deref(), Some(&*assertions));
        // Removed by UpdateUrl: the next claim says so, and memory follows.
        h.claimed(vec![claim(1, 3_000, 1_000)], 3_000, true);
        assert_eq!(
            h.due(4_000, 4_000, 5_000, usize::MAX).claims[0].assertions,
            None
        );
    }
}
