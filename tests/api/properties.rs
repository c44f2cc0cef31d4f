//! Property tests of the flush's derived data (issue 14): for random
//! results per URL (runs of successes and failures, gaps, responses and
//! errors) delivered in random batches, shuffled within a batch and with
//! redeliveries, on a real database:
//! - every stored tier's rollups (hour, day) equal a brute-force recompute
//!   from the raw rows (minute buckets are built from the raw rows on read);
//! - the incidents and the final state equal a reference state machine run
//!   over the results sorted by due time.

use std::collections::BTreeMap;

use chrono::Utc;
use monitor::{
    config::Settings,
    domain::{Email, Period, ProbeResult, TargetUrl, rollup::Tier, sketch::Sketch},
    store::{self, incidents, outcomes, rollups, statuses, urls},
};
use proptest::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};

use crate::helpers::{Backend, TestDatabase};

const PERIOD_MS: i64 = 600_000;
/// Just before a UTC midnight, so buckets of every tier are crossed.
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 - 3 * 3_600_000;

/// One URL's results: (slot index, status code, error, latency µs).
type Script = Vec<(i64, i32, bool, i64)>;

fn script() -> impl Strategy<Value = Script> {
    // Runs of one outcome, with gaps between some slots.
    prop::collection::vec(
        (
            any::<bool>(),
            1_usize..6,
            prop::collection::vec((0_i64..3, 0_i64..2_000_000, any::<bool>()), 6),
        ),
        1..10,
    )
    .prop_map(|runs| {
        let mut out = Vec::new();
        let mut slot = 0;
        for (ok, len, details) in runs {
            for (gap, latency, error) in details.into_iter().take(len) {
                slot += 1 + i64::from(gap == 0);
                let (code, err) = match (ok, error) {
                    (true, _) => (200, false),
                    (false, true) => (0, true),
                    (false, false) => (503, false),
                };
                out.push((slot, code, err, latency));
            }
        }
        out
    })
}

/// Delivery: chunk sizes, a shuffle seed, redeliveries.
fn delivery() -> impl Strategy<Value = (Vec<usize>, u64, Vec<(usize, usize)>)> {
    (
        prop::collection::vec(1_usize..8, 1..20),
        any::<u64>(),
        prop::collection::vec((0_usize..100, 0_usize..20), 0..6),
    )
}

fn result(url_id: i64, (slot, code, error, latency): (i64, i32, bool, i64)) -> ProbeResult {
    let due_ms = T0 + slot * PERIOD_MS;
    ProbeResult {
        url_id,
        due_ms,
        started_us: due_ms * 1000 + 1_000,
        status_code: code,
        latency_us: latency,
        error_kind: error.then_some(4),
        error_message: error.then(|| "timed out".into()),
        ..Default::default()
    }
}

/// The reference state machine (thresholds 3 and 2), written apart from
/// `domain::state`: (opened, resolved, failed probes) per incident, and the
/// final state's number.
fn reference(sorted: &[&ProbeResult]) -> (Vec<(i64, Option<i64>, i32)>, i16) {
    let (mut state, mut incidents) = (1_i16, Vec::<(i64, Option<i64>, i32)>::new());
    let (mut ok_run, mut fail_run, mut ok_start, mut fail_start) = (0, 0, 0, 0);
    for r in sorted {
        let ok = r.error_kind.is_none() && (200..400).contains(&r.status_code);
        if ok {
            if ok_run == 0 {
                ok_start = r.due_ms;
            }
            ok_run += 1;
            fail_run = 0;
            if state == 1 {
                state = 2;
            } else if state == 4 && ok_run >= 2 {
                state = 2;
                incidents.last_mut().unwrap().1 = Some(ok_start);
            }
        } else {
            if fail_run == 0 {
                fail_start = r.due_ms;
            }
            fail_run += 1;
            ok_run = 0;
            if state == 4 {
                incidents.last_mut().unwrap().2 += 1;
            } else if fail_run >= 3 {
                state = 4;
                incidents.push((fail_start, None, fail_run));
            }
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

/// A bucket's key (URL, tier, start) and what it holds (up, down, max,
/// sketch bytes), as compared.
type Buckets = BTreeMap<(i64, i16, i64), (u64, u64, Option<u64>, Vec<u8>)>;

/// Every tier's buckets recomputed from the stored statuses.
async fn recompute(db: &DatabaseConnection) -> Buckets {
    type Sums = (u64, u64, Option<u64>, Sketch);
    let mut buckets: BTreeMap<(i64, i16, i64), Sums> = BTreeMap::new();
    for s in statuses::Entity::find().all(db).await.unwrap() {
        let due = s.due_at.timestamp_millis();
        let ok = s.error_kind.is_none() && (200..400).contains(&s.status_code);
        for tier in Tier::STORED {
            let b = buckets
                .entry((s.url_id, tier as i16, tier.bucket_of(due)))
                .or_default();
            if ok {
                b.0 += 1;
            } else {
                b.1 += 1;
            }
            if s.status_code > 0 {
                let us = u64::try_from(s.latency_micros).unwrap();
                b.2 = Some(b.2.map_or(us, |m| m.max(us)));
                b.3.add(us);
            }
        }
    }
    buckets
        .into_iter()
        .map(|(k, (up, down, max, sketch))| (k, (up, down, max, sketch.encode())))
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
                assert_eq!(b.degraded, 0);
                out.insert(
                    (*id, tier as i16, start),
                    (b.up, b.down, b.max_us, b.latency.encode()),
                );
            }
        }
    }
    out
}

#[allow(clippy::too_many_lines)]
async fn check(
    backend: Backend,
    scripts: Vec<Script>,
    (chunks, seed, redeliver): (Vec<usize>, u64, Vec<(usize, usize)>),
) {
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
    for b in &batches {
        outcomes::write_batch(&db, &b.iter().collect::<Vec<_>>())
            .await
            .unwrap();
    }

    // Rollups: stored = recomputed from the raw rows.
    assert_eq!(stored_rollups(&db, &ids).await, recompute(&db).await);

    // State and incidents: as the reference over the results by due time.
    let stored: Vec<incidents::Model> = incidents::Entity::find().all(&db).await.unwrap();
    for id in &ids {
        let mine: Vec<&ProbeResult> = all.iter().filter(|r| r.url_id == *id).collect();
        let (want, want_state) = reference(&mine);
        let mut got: Vec<(i64, Option<i64>, i32)> = stored
            .iter()
            .filter(|i| i.url_id == *id)
            .map(|i| {
                (
                    i.opened_at.timestamp_millis(),
                    i.resolved_at.map(|t| t.timestamp_millis()),
                    i.failed_probes,
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

fn run(backend: Backend, scripts: Vec<Script>, d: (Vec<usize>, u64, Vec<(usize, usize)>)) {
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
