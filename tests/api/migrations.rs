//! Migrations applied over data an older schema holds.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::helpers::{Backend, TestDatabase};

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap();
}

/// The one user the tests' URLs belong to.
async fn insert_user(db: &DatabaseConnection) {
    exec(
        db,
        "INSERT INTO users (email, password_hash, created_at) VALUES
         ('a@example.com', 'x', '2026-11-20T00:00:00Z')",
    )
    .await;
}

/// The rows of a query, each a tuple of its columns.
async fn rows<T: sea_orm::TryGetableMany>(db: &DatabaseConnection, sql: &str) -> Vec<T> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_many_by_index().unwrap())
        .collect()
}

/// The rows of a two-column query.
async fn pairs<B: sea_orm::TryGetable>(db: &DatabaseConnection, sql: &str) -> Vec<(String, B)> {
    rows(db, sql).await
}

/// A fresh database of `backend` with the first `migrations` applied (the
/// directory and test database must outlive the connection).
async fn migrated_to(
    backend: Backend,
    migrations: u32,
) -> (DatabaseConnection, TestDatabase, tempfile::TempDir) {
    let database = TestDatabase::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display()),
        Backend::Postgres => database.url.clone(),
    };
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(migrations)).await.unwrap();
    (db, database, dir)
}

async fn the_quota_counter_starts_from_the_urls_users_already_have(backend: Backend) {
    // The schema before the counter, with users who already monitor URLs.
    let (db, _database, _dir) = migrated_to(backend, 2).await;
    exec(
        &db,
        "INSERT INTO users (email, password_hash, created_at) VALUES
         ('a@example.com', 'x', '2026-11-20T00:00:00Z'),
         ('b@example.com', 'x', '2026-11-20T00:00:00Z')",
    )
    .await;
    exec(
        &db,
        "INSERT INTO urls (user_id, url, period_seconds, created_at)
         SELECT id, 'https://example.com/' || n, 60, '2026-11-20T00:00:00Z'
         FROM users, (SELECT 1 AS n UNION SELECT 2 UNION SELECT 3) AS three
         WHERE email = 'a@example.com'",
    )
    .await;
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        pairs::<i32>(&db, "SELECT email, url_count FROM users ORDER BY email").await,
        vec![("a@example.com".into(), 3), ("b@example.com".into(), 0)]
    );
    db.close().await.ok();
}

async fn the_host_rates_start_from_the_urls_users_already_have(backend: Backend) {
    // The schema before the per-host rate, with URLs on two hosts.
    let (db, _database, _dir) = migrated_to(backend, 3).await;
    insert_user(&db).await;
    exec(
        &db,
        "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, next_due_ms)
         SELECT id, u, p, '2026-11-20T00:00:00Z', 0, 0 FROM users,
           (SELECT 'https://a.example/1' AS u, 10 AS p
            UNION SELECT 'https://a.example./2', 20
            UNION SELECT 'http://a.example:8080/3', 3
            UNION SELECT 'https://b.example/', 60) AS urls",
    )
    .await;
    Migrator::up(&db, None).await.unwrap();
    let rates: Vec<(String, i64)> = pairs(
        &db,
        "SELECT host, rate_micros FROM host_rates ORDER BY host",
    )
    .await;
    // a.example: 1/10 + 1/20 + 1/3 per second (a trailing dot and a port are the same host).
    assert_eq!(
        rates,
        vec![
            ("a.example".into(), 100_000 + 50_000 + 333_333),
            ("b.example".into(), 16_666)
        ]
    );
    db.close().await.ok();
}

async fn every_url_gets_a_state_row_and_kept_states_stay(backend: Backend) {
    // Before AddUrl created state rows: one URL with results (a state row
    // the flush made), one without.
    let (db, _database, _dir) = migrated_to(backend, 8).await;
    insert_user(&db).await;
    exec(
        &db,
        "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, next_due_ms)
         SELECT id, u, 60, '2026-11-20T00:00:00Z', 0, 0 FROM users,
           (SELECT 'https://a.example/up' AS u UNION SELECT 'https://a.example/new') AS urls",
    )
    .await;
    exec(
        &db,
        "INSERT INTO url_states (url_id, state, run_len)
         SELECT id, 2, 7 FROM urls WHERE url = 'https://a.example/up'",
    )
    .await;
    Migrator::up(&db, None).await.unwrap();
    // (url, state * 100 + run_len): UP with its run kept, the other PENDING.
    let states: Vec<(String, i64)> = pairs(
        &db,
        "SELECT u.url, CAST(s.state * 100 + s.run_len AS BIGINT) FROM urls u JOIN url_states s ON s.url_id = u.id
         ORDER BY u.url",
    )
    .await;
    assert_eq!(
        states,
        vec![
            ("https://a.example/new".into(), 100),
            ("https://a.example/up".into(), 207)
        ]
    );
    db.close().await.ok();
}

/// A running instance whose pooled connections prepared its statements
/// before another instance's migration added a column keeps working: no
/// statement of the store reads or returns `*`, whose column list a cached
/// prepared statement keeps from before the change (Postgres then refuses
/// it, "cached plan must not change result type"; sqlx keeps SQLite's old
/// column names, so a new column reads as missing).
async fn statements_prepared_before_a_migration_keep_working_after_it(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |s| s.db_max_connections = 1).await;
    let (_, token) = app.user().await;
    let first = app.add_url(&token, "https://example.com/before").await;
    let mut renamed = first.clone();
    renamed.name = "before".into();
    crate::update::update(&app, &token, renamed, &["name"])
        .await
        .expect("UpdateUrl before the migration");
    // Another instance's migration, through a connection of its own.
    let other = app.open_db().await;
    for table in ["urls", "users"] {
        other
            .execute_unprepared(&format!(
                "ALTER TABLE {table} ADD COLUMN later_feature INTEGER NOT NULL DEFAULT 7"
            ))
            .await
            .unwrap();
    }
    other.close().await.ok();
    // The same statements, on the one pooled connection that prepared them.
    let second = app.add_url(&token, "https://example.com/after").await;
    assert_eq!(second.url, "https://example.com/after");
    let mut renamed = second.clone();
    renamed.name = "after".into();
    let updated = crate::update::update(&app, &token, renamed, &["name"])
        .await
        .expect("UpdateUrl after the migration")
        .into_inner();
    assert_eq!(updated.name, "after");
    assert_eq!(app.get_url(&token, first.id).await.name, "before");
    let (_, other_token) = app.user().await;
    app.add_url(&other_token, "https://example.com/new-user")
        .await;
}

/// A user, a URL and three statuses in the layout before migration 18: a
/// success over https, a connect failure, and a failed assertion whose
/// probe crossed midnight.
async fn three_statuses_before_18(db: &DatabaseConnection, backend: Backend) {
    exec(
        db,
        "INSERT INTO users (email, password_hash, created_at) VALUES ('a@example.com', 'x', '2026-11-20T00:00:00Z')",
    )
    .await;
    exec(
        db,
        "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, next_due_ms)
         SELECT id, 'https://a.example/', 60, '2026-11-20T00:00:00Z', 0, 0 FROM users",
    )
    .await;
    // Postgres keeps microseconds; its text literals need a cast.
    let (sub_ms, ts) = match backend {
        Backend::Postgres => ("007", "::timestamptz"),
        Backend::Sqlite => ("", ""),
    };
    exec(
        db,
        &format!(
            "INSERT INTO statuses (url_id, due_at, probed_at, status_code, latency_micros, error_kind,
                                   error_message, verdict, failed_assertions, tls_not_after)
             SELECT u.id, v.due{ts}, v.probed{ts}, v.code, v.latency, v.kind, v.message, v.verdict, v.failed,
                    v.tls{ts}
             FROM urls u, (
               SELECT '2026-11-17T10:00:00+00:00' AS due, '2026-11-17T10:00:00.002{sub_ms}+00:00' AS probed,
                      200 AS code, 12345 AS latency, NULL AS kind, NULL AS message, 2 AS verdict,
                      NULL AS failed, '2027-01-01T00:00:00+00:00' AS tls
               UNION ALL
               SELECT '2026-11-20T10:00:00.25+00:00', '2026-11-20T10:00:00.251+00:00', 0, 3000000, 3,
                      'connection refused', 4, NULL, NULL
               UNION ALL
               SELECT '2026-11-26T23:59:59.999+00:00', '2026-11-27T00:00:00.499+00:00', 200, 7, NULL, NULL,
                      NULL, '[{{\"index\":0,\"message\":\"status 200, want 201\"}}]',
                      '2026-12-01T12:00:00+00:00'
             ) AS v"
        ),
    )
    .await;
}

/// Migration 18 narrows statuses (and partitions them by day on Postgres):
/// every row comes through with every field, a probe time to the
/// microsecond on Postgres (SQLite reads its text times to the
/// millisecond), and `down` gives the old table back with the same values.
/// Two days of [`three_statuses_before_18`] packed (migration 19), which
/// `down` then unpacks (Postgres).
async fn pack_two_days(db: &DatabaseConnection) {
    exec(
        db,
        "SELECT statuses_pack('2026-11-17'), statuses_pack('2026-11-20')",
    )
    .await;
    let packed: Vec<(String, i64)> = pairs(
        db,
        "SELECT day::text, cardinality(due_ms)::int8 FROM statuses_packed ORDER BY day",
    )
    .await;
    assert_eq!(
        packed,
        vec![("2026-11-17".into(), 1), ("2026-11-20".into(), 1)]
    );
}

async fn statuses_keep_every_row_and_field_when_narrowed(backend: Backend) {
    use chrono::{DateTime, Utc};
    use monitor::{domain::StatusRecord, store::statuses};
    use sea_orm::{EntityTrait, QueryOrder};

    let (db, _database, _dir) = migrated_to(backend, 16).await; // through migration 17
    three_statuses_before_18(&db, backend).await;
    Migrator::up(&db, None).await.unwrap();

    let time = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let rows = statuses::Entity::find()
        .order_by_asc(statuses::Column::DueAt)
        .all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let after_us = if backend == Backend::Postgres {
        2_007
    } else {
        2_000
    };
    assert_eq!(
        rows.iter()
            .map(|r| (
                r.probed_after_us,
                r.latency_micros,
                r.status_code,
                r.verdict,
                r.tls_remaining_s
            ))
            .collect::<Vec<_>>(),
        vec![
            (after_us, 12_345, 200, Some(2), Some(3_852_000)),
            (1_000, 3_000_000, 0, Some(4), None),
            (500_000, 7, 200, None, Some(4 * 86_400 + 12 * 3_600 + 1)),
        ]
    );
    let records: Vec<StatusRecord> = rows.into_iter().map(Into::into).collect();
    assert_eq!(records[0].due_at, time("2026-11-17T10:00:00Z"));
    assert_eq!(records[0].tls_not_after, Some(time("2027-01-01T00:00:00Z")));
    assert_eq!(records[1].probed_at, time("2026-11-20T10:00:00.251Z"));
    assert_eq!(
        (records[1].error_kind, records[1].error_message.as_deref()),
        (Some(3), Some("connection refused"))
    );
    assert_eq!(records[2].probed_at, time("2026-11-27T00:00:00.499Z"));
    assert_eq!(records[2].tls_not_after, Some(time("2026-12-01T12:00:00Z")));
    assert_eq!(records[2].failed_assertions.len(), 1);
    if backend == Backend::Postgres {
        let days: Vec<(String, i64)> = pairs(
            &db,
            "SELECT c.relname::text, (SELECT count(*) FROM statuses s WHERE s.tableoid = c.oid)
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'statuses'::regclass AND c.relname IN
               ('statuses_20261117', 'statuses_20261120', 'statuses_20261126', 'statuses_20261127')
             ORDER BY 1",
        )
        .await;
        assert_eq!(
            days,
            vec![
                ("statuses_20261117".into(), 1),
                ("statuses_20261120".into(), 1),
                ("statuses_20261126".into(), 1),
                ("statuses_20261127".into(), 0),
            ],
            "one partition a day, each row in its due day's"
        );
    }

    if backend == Backend::Postgres {
        pack_two_days(&db).await;
    }

    // And back (21, 20, 19, then 18): the old table, the same probe times.
    Migrator::down(&db, Some(4)).await.unwrap();
    let probed: Vec<(String, DateTime<Utc>)> = pairs(
        &db,
        "SELECT CAST(status_code AS TEXT), probed_at FROM statuses ORDER BY due_at",
    )
    .await;
    assert_eq!(
        probed.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        vec![
            records[0].probed_at,
            time("2026-11-20T10:00:00.251Z"),
            time("2026-11-27T00:00:00.499Z")
        ]
    );
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(statuses::Entity::find().all(&db).await.unwrap().len(), 3);
    db.close().await.ok();
}

/// Migration 20: a status the flush had merged into the rollups before
/// (every one, then) is not counted again by the roll pass: the marks
/// start at the migration's time.
async fn statuses_merged_before_the_roll_marks_are_not_rolled_again(backend: Backend) {
    use monitor::{domain::rollup::Tier, store::rollups};

    let (db, _database, _dir) = migrated_to(backend, 18).await; // through migration 19
    insert_user(&db).await;
    exec(
        &db,
        "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, next_due_ms)
         SELECT id, 'https://a.example/', 60, '2026-11-20T00:00:00Z', 0, 0 FROM users",
    )
    .await;
    exec(
        &db,
        "INSERT INTO url_states (url_id, state) SELECT id, 2 FROM urls",
    )
    .await;
    let due = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let (due_at, sketch) = if backend == Backend::Postgres {
        monitor::store::statuses::ensure_days(&db, &[due.date_naive()])
            .await
            .unwrap();
        ("'2026-11-20T10:00:00Z'", "''")
    } else {
        ("'2026-11-20T10:00:00+00:00'", "x''")
    };
    // What the flush of before wrote: the status, and it in its buckets.
    exec(
        &db,
        &format!(
            "INSERT INTO statuses (url_id, due_at, probed_after_us, latency_micros, status_code, verdict)
             SELECT id, {due_at}, 1000, 5000, 200, 2 FROM urls"
        ),
    )
    .await;
    for tier in Tier::STORED {
        exec(
            &db,
            &format!(
                "INSERT INTO rollups (url_id, tier, bucket_ms, up, degraded, down, latency_max_us, sketch)
                 SELECT id, {}, {}, 1, 0, 0, 5000, {sketch} FROM urls",
                tier as i16,
                tier.bucket_of(due.timestamp_millis())
            ),
        )
        .await;
    }
    Migrator::up(&db, None).await.unwrap();

    let url_id: i64 = pairs::<i64>(&db, "SELECT url, id FROM urls").await[0].1;
    let now = chrono::Utc::now().timestamp_millis();
    let marks: Vec<(String, i64)> = pairs(
        &db,
        "SELECT CAST(url_id AS TEXT), rolled_to_ms FROM url_states",
    )
    .await;
    assert!(
        marks.len() == 1 && marks[0].1 > due.timestamp_millis() && marks[0].1 <= now,
        "{marks:?}"
    );
    let rolled = rollups::roll(&db, now).await.unwrap();
    assert_eq!((rolled.urls, rolled.statuses), (1, 0), "{rolled:?}");
    for tier in Tier::STORED {
        let buckets = rollups::read(&db, url_id, tier, 0, now).await.unwrap();
        assert_eq!(
            buckets.iter().map(|(_, b)| b.up).collect::<Vec<_>>(),
            vec![1],
            "{tier:?}: counted once"
        );
    }
    db.close().await.ok();
}

/// (url, next due, last due, period in ms, phase in ms) of each row.
async fn schedules(
    db: &DatabaseConnection,
    sql: &str,
) -> Vec<(String, i64, Option<i64>, i64, i64)> {
    rows(db, sql).await
}

/// Migration 21: every URL's due times and grid move to `url_schedules`
/// as they were (a paused URL stays past any horizon), claims go on from
/// them on the same grid, and the way down puts them back on `urls`.
async fn due_times_move_to_their_own_table_and_claims_go_on(backend: Backend) {
    use monitor::store::schedule;

    let (db, _database, _dir) = migrated_to(backend, 19).await; // through migration 20
    insert_user(&db).await;
    let now = chrono::Utc::now().timestamp_millis();
    // Due now-ish on a minute grid of phase 5 s, claimed before.
    let due = now - (now - 5_000).rem_euclid(60_000);
    for (path, period, phase, next, last, paused) in [
        ("due", 60, 5_000, due, (due - 60_000).to_string(), false),
        ("later", 10, 0, now + 3_600_000, "NULL".into(), false),
        ("paused", 30, 7, i64::MAX, "42".into(), true),
    ] {
        exec(
            &db,
            &format!(
                "INSERT INTO urls (user_id, url, period_seconds, created_at, phase_ms, next_due_ms, last_due_ms, paused)
                 SELECT id, 'https://a.example/{path}', {period}, '2026-11-20T00:00:00Z', {phase}, {next}, {last}, {paused}
                 FROM users"
            ),
        )
        .await;
    }
    Migrator::up(&db, None).await.unwrap();

    let moved = "SELECT u.url, s.next_due_ms, s.last_due_ms, s.period_ms, s.phase_ms
                 FROM url_schedules s JOIN urls u ON u.id = s.url_id ORDER BY u.url";
    // The three rows, the due URL's due times as given.
    let expected = |next: i64, last: i64| {
        vec![
            (
                "https://a.example/due".to_string(),
                next,
                Some(last),
                60_000,
                5_000,
            ),
            (
                "https://a.example/later".into(),
                now + 3_600_000,
                None,
                10_000,
                0,
            ),
            (
                "https://a.example/paused".into(),
                i64::MAX,
                Some(42),
                30_000,
                7,
            ),
        ]
    };
    assert_eq!(schedules(&db, moved).await, expected(due, due - 60_000));
    assert!(
        db.execute_unprepared("SELECT next_due_ms FROM urls")
            .await
            .is_err(),
        "the column is gone from urls"
    );

    let claims = schedule::claim_due(&db, now, 500, 60_000, 100)
        .await
        .unwrap();
    assert_eq!(
        claims
            .iter()
            .map(|c| (c.url.to_string(), c.due_ms, c.next_ms, c.period_ms))
            .collect::<Vec<_>>(),
        vec![("https://a.example/due".into(), due, due + 60_000, 60_000)],
        "the due URL, once, on its grid"
    );
    assert!(
        schedule::claim_due(&db, now, 500, 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );

    Migrator::down(&db, Some(1)).await.unwrap();
    let back =
        "SELECT url, next_due_ms, last_due_ms, CAST(period_seconds AS BIGINT) * 1000, phase_ms
                FROM urls ORDER BY url";
    assert_eq!(
        schedules(&db, back).await,
        expected(due + 60_000, due),
        "the way down keeps the claim"
    );
    db.close().await.ok();
}

crate::on_both_backends!(
    due_times_move_to_their_own_table_and_claims_go_on,
    statuses_merged_before_the_roll_marks_are_not_rolled_again,
    statements_prepared_before_a_migration_keep_working_after_it,
    statuses_keep_every_row_and_field_when_narrowed,
    the_quota_counter_starts_from_the_urls_users_already_have,
    the_host_rates_start_from_the_urls_users_already_have,
    every_url_gets_a_state_row_and_kept_states_stay
);
