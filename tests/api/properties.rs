//! Property tests of the flush's derived data (issues 14 and 15): for
//! random results per URL (runs of UP, DEGRADED and DOWN probes, gaps,
//! responses and errors, results with a verdict and results from before
//! verdicts) delivered in random batches, shuffled within a batch and with
//! redeliveries, on a real database:
//! - every stored tier's rollups (hour, day) equal a brute-force recompute
//!   from the raw rows (minute buckets are built from the raw rows on read),
//!   with roll passes to random marks between the batches (statuses rolled
//!   by a pass, merged by the flush once a pass went by, or read from the
//!   tail), and again once a last pass has rolled everything;
//! - the incidents (with their state) and the final state equal a reference
//!   state machine run over the results sorted by due time.

use std::collections::BTreeMap;

use chrono::Utc;
use monitor::{
    config::Settings,
    domain::{Email, Period, ProbeResult, TargetUrl, Verdict, rollup::Tier, sketch::Sketch},
    store::{self, incidents, outcomes, rollups, statuses, urls},
};
use proptest::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};

use crate::helpers::{Backend, TestDatabase};

const PERIOD_MS: i64 = 600_000;
/// Just before a UTC midnight, so buckets of every tier are crossed.
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 - 3 * 3_600_000;

/// One URL's results: (slot index, status code, error, latency µs, the
/// verdict recorded; `None`: a result from before verdicts).
type Script = Vec<(i64, i32, bool, i64, Option<Verdict>)>;

fn script() -> impl Strategy<Value = Script> {
    // Runs of one kind (0 UP, 1 DEGRADED, 2 DOWN, 3 UNKNOWN), with gaps between some
    // slots; each result with its verdict recorded or not.
    prop::collection::vec(
        (
            0_u8..4,
            1_usize..6,
            prop::collection::vec((0_i64..3, 0_i64..2_000_000, 0_u8..3, any::<bool>()), 6),
        ),
        1..10,
    )
    .prop_map(|runs| {
        let mut out = Vec::new();
        let mut slot = 0;
        for (kind, len, details) in runs {
            for (gap, latency, how, recorded) in details.into_iter().take(len) {
                slot += 1 + i64::from(gap == 0);
                let (code, err, verdict) = match (kind, how) {
                    (0, _) => (200, false, recorded.then_some(Verdict::Up)),
                    (1, _) => (200 + i32::from(how), false, Some(Verdict::Degraded)),
                    // The prober doubted itself.
                    (3, _) => (0, true, Some(Verdict::Unknown)),
                    (_, 0) => (0, true, recorded.then_some(Verdict::Down)),
                    (_, 1) => (503, false, recorded.then_some(Verdict::Down)),
                    // A response a DOWN assertion failed.
                    _ => (200, false, Some(Verdict::Down)),
                };
                out.push((slot, code, err, latency, verdict));
            }
        }
        out
    })
}

/// Delivery: chunk sizes, a shuffle seed, redeliveries, roll passes (after
/// which batch, up to which 7-minute step from `T0`: not on an hour).
type Delivery = (Vec<usize>, u64, Vec<(usize, usize)>, Vec<(usize, i64)>);

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        prop::collection::vec(1_usize..8, 1..20),
        any::<u64>(),
        prop::collection::vec((0_usize..100, 0_usize..20), 0..6),
        prop::collection::vec((0_usize..100, -5_i64..200), 0..4),
    )
}

fn result(
    url_id: i64,
    (slot, code, error, latency, verdict): (i64, i32, bool, i64, Option<Verdict>),
) -> ProbeResult {
    let due_ms = T0 + slot * PERIOD_MS;
    ProbeResult {
        url_id,
        due_ms,
        started_us: due_ms * 1000 + 1_000,
        status_code: code,
        latency_us: latency,
        error_kind: error.then_some(4),
        error_message: error.then(|| "timed out".into()),
        verdict,
        ..Default::default()
    }
}

/// A result's verdict as the reference reads it: as recorded, else by the
/// rule before assertions (a response with a status in 200-399 is UP).
fn verdict_of(recorded: Option<i16>, code: i32, error: bool) -> i16 {
    recorded.unwrap_or(if !error && (200..400).contains(&code) {
        2
    } else {
        4
    })
}

/// An incident as compared: (opened, resolved, probes not UP, state).
type Incident = (i64, Option<i64>, i32, i16);

/// The reference state machine (thresholds 3 and 2), written apart from
/// `domain::state` from the rules in its documentation: 3 probes in a row
/// that are not UP open an incident, DOWN if they were all DOWN, else
/// DEGRADED; DEGRADED turns DOWN after 3 DOWN in a row, DOWN turns DEGRADED
/// after 2 in a row that are not DOWN; 2 UP in a row resolve it. An
/// incident's state is the worst it reached. States are `UrlState` numbers.
fn reference(sorted: &[&ProbeResult]) -> (Vec<Incident>, i16) {
    let (mut state, mut incidents) = (1_i16, Vec::<Incident>::new());
    let (mut up, mut not_up, mut up_start, mut not_up_start) = (0, 0, 0, 0);
    let (mut downs, mut not_downs) = (0, 0);
    for r in sorted {
        let v = verdict_of(
            r.verdict.map(Verdict::stored),
            r.status_code,
            r.error_kind.is_some(),
        );
        // UNKNOWN (the prober doubted itself) is skipped altogether.
        if v == 7 {
            continue;
        }
        if v == 2 {
            if up == 0 {
                up_start = r.due_ms;
            }
            (up, not_up) = (up + 1, 0);
        } else {
            if not_up == 0 {
                not_up_start = r.due_ms;
            }
            (up, not_up) = (0, not_up + 1);
        }
        (downs, not_downs) = if v == 4 {
            (downs + 1, 0)
        } else {
            (0, not_downs + 1)
        };
        match state {
            1 | 2 if v == 2 => state = 2,
            1 | 2 if not_up >= 3 => {
                state = if downs >= 3 { 4 } else { 3 };
                incidents.push((not_up_start, None, not_up, state));
            }
            3 | 4 if v == 2 && up >= 2 => {
                state = 2;
                incidents.last_mut().unwrap().1 = Some(up_start);
            }
            3 | 4 => {
                let open = incidents.last_mut().unwrap();
                if v != 2 {
                    open.2 += 1;
                }
                if state == 4 && not_downs >= 2 {
                    state = 3;
                } else if state == 3 && downs >= 3 {
                    state = 4;
                    open.3 = 4;
                }
            }
            _ => {}
        }
    }
    (incidents, state)
}

async fn database(backend: Backend, dir: &std::path::Path) -> (DatabaseConnection, TestDatabase) {
    let database = TestDatabase::create(backend).await;
    let mut settings = Settings::for_tests(dir);
    settings.database_url = (!database.url.is_empty()).then(|| database.url.clone());
    let db = monitor::app::open_database(&settings).await.unwrap();
    (db, database)
}

async fn add_url(db: &DatabaseConnection, user: monitor::domain::UserId, n: usize) -> i64 {
    let url = TargetUrl::parse("url", &format!("https://example.com/{n}")).unwrap();
    let bounds = Settings::for_tests("unused").urls.bounds();
    urls::insert_within_limits(
        db,
        urls::NewUrl {
            user,
            url: &url,
            period: Period::parse("period", Some(600), bounds).unwrap(),
            created_at: Utc::now(),
            phase_ms: 0,
            next_due_ms: i64::MAX,
            assertions: &monitor::domain::Assertions::default(),
        },
        urls::Limits {
            max_urls: 100,
            max_host_rate_micros: i64::MAX,
        },
    )
    .await
    .unwrap()
    .unwrap()
    .id
}

/// A bucket's key (URL, tier, start) and what it holds ([up, degraded,
/// down], max, sketch bytes), as compared.
type Buckets = BTreeMap<(i64, i16, i64), ([u64; 3], Option<u64>, Vec<u8>)>;

/// Every tier's buckets recomputed from the stored statuses.
async fn recompute(db: &DatabaseConnection) -> Buckets {
    type Sums = ([u64; 3], Option<u64>, Sketch);
    let mut buckets: BTreeMap<(i64, i16, i64), Sums> = BTreeMap::new();
    for s in statuses::Entity::find().all(db).await.unwrap() {
        let due = s.due_at.timestamp_millis();
        let verdict = verdict_of(s.verdict, i32::from(s.status_code), s.error_kind.is_some());
        // UNKNOWN counts nowhere: its slot is missed.
        if verdict == 7 {
            continue;
        }
        for tier in Tier::STORED {
            let b = buckets
                .entry((s.url_id, tier as i16, tier.bucket_of(due)))
                .or_default();
            b.0[usize::try_from(verdict - 2).unwrap()] += 1;
            if s.status_code > 0 {
                let us = u64::try_from(s.latency_micros).unwrap();
                b.1 = Some(b.1.map_or(us, |m| m.max(us)));
                b.2.add(us);
            }
        }
    }
    buckets
        .into_iter()
        .map(|(k, (counts, max, sketch))| (k, (counts, max, sketch.encode())))
        .collect()
}

async fn stored_rollups(db: &DatabaseConnection, url_ids: &[i64]) -> Buckets {
    let mut out = BTreeMap::new();
    for id in url_ids {
        for tier in Tier::STORED {
            for (start, b) in rollups::read(db, *id, tier, i64::MIN / 2, i64::MAX / 2)
                .await
                .unwrap()
            {
                out.insert(
                    (*id, tier as i16, start),
                    ([b.up, b.degraded, b.down], b.max_us, b.latency.encode()),
                );
            }
        }
    }
    out
}

#[allow(clippy::too_many_lines)]
async fn check(backend: Backend, scripts: Vec<Script>, (chunks, seed, redeliver, rolls): Delivery) {
    let dir = tempfile::tempdir().unwrap();
    let (db, _database) = database(backend, dir.path()).await;
    let email = Email::parse("email", "prop@example.com").unwrap();
    let user = store::users::insert(&db, &email, "x".into(), Utc::now())
        .await
        .unwrap()
        .id;
    let mut ids = Vec::new();
    let mut all = Vec::new();
    for (n, s) in scripts.iter().enumerate() {
        let id = add_url(&db, user, n).await;
        ids.push(id);
        all.extend(s.iter().map(|r| result(id, *r)));
    }
    // Delivered in due-time order across batches (as one prober's results
    // arrive), shuffled within each batch, some delivered again.
    all.sort_by_key(|r| (r.due_ms, r.url_id));
    let mut batches: Vec<Vec<ProbeResult>> = Vec::new();
    let mut rest = all.as_slice();
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).min(rest.len());
        let (head, tail) = rest.split_at(n);
        batches.push(head.to_vec());
        rest = tail;
    }
    let mut rng = seed;
    let mut next = || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        usize::try_from(rng >> 33).unwrap()
    };
    for b in &mut batches {
        for i in (1..b.len()).rev() {
            b.swap(i, next() % (i + 1));
        }
    }
    for (at, from) in redeliver {
        let (at, from) = (at % batches.len(), from % batches.len());
        if from <= at {
            let again = batches[from].clone();
            batches[at].extend(again);
        }
    }
    for (n, b) in batches.iter().enumerate() {
        outcomes::write_batch(&db, &b.iter().collect::<Vec<_>>())
            .await
            .unwrap();
        for (_, step) in rolls.iter().filter(|(at, _)| at % batches.len() == n) {
            rollups::roll(&db, T0 + step * 420_000).await.unwrap();
        }
    }

    // Rollups: stored (with each URL's tail) = recomputed from the raw rows.
    let want = recompute(&db).await;
    assert_eq!(stored_rollups(&db, &ids).await, want);
    // A last pass rolls every status into the buckets: the same answer.
    rollups::roll(&db, T0 + 30 * 86_400_000).await.unwrap();
    assert_eq!(stored_rollups(&db, &ids).await, want, "all rolled");
    let rows = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM rollups",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(
        usize::try_from(rows).unwrap(),
        want.len(),
        "every bucket a row once all is rolled"
    );

    // State and incidents: as the reference over the results by due time.
    let stored: Vec<incidents::Model> = incidents::Entity::find().all(&db).await.unwrap();
    for id in &ids {
        let mine: Vec<&ProbeResult> = all.iter().filter(|r| r.url_id == *id).collect();
        let (want, want_state) = reference(&mine);
        let mut got: Vec<Incident> = stored
            .iter()
            .filter(|i| i.url_id == *id)
            .map(|i| {
                (
                    i.opened_at.timestamp_millis(),
                    i.resolved_at.map(|t| t.timestamp_millis()),
                    i.failed_probes,
                    i.state,
                )
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, want, "url {id}");
        let state = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT state FROM url_states WHERE url_id = {id}"),
            ))
            .await
            .unwrap()
            .map_or(1, |r| r.try_get::<i16>("", "state").unwrap());
        assert_eq!(state, want_state, "url {id}");
    }
    db.close().await.ok();
}

fn run(backend: Backend, scripts: Vec<Script>, d: Delivery) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(check(backend, scripts, d));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_rollups_and_incidents_equal_a_recompute(
        scripts in prop::collection::vec(script(), 1..4),
        d in delivery(),
    ) {
        run(Backend::Sqlite, scripts, d);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn postgres_rollups_and_incidents_equal_a_recompute(
        scripts in prop::collection::vec(script(), 1..4),
        d in delivery(),
    ) {
        if !crate::helpers::postgres_skipped() {
            run(Backend::Postgres, scripts, d);
        }
    }
}
