//! The flush and retention steps and the Redis buffer, driven directly.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, DurationRound, Utc};
use monitor::{
    buffer::{Buffer, MemoryBuffer, RedisBuffer},
    flush::{FlushSettings, Flusher, store_results},
    prober::ProbeResult,
    store::{rollups, statuses},
};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryOrder, Set};

use crate::helpers::{
    Backend, TestApp, count, redis_cli, results_in_stream, spawn_app, test_redis_url,
};

fn result(url_id: i64, due_ms: i64) -> ProbeResult {
    ProbeResult {
        url_id,
        due_ms,
        started_us: due_ms * 1000 + 1_500,
        status_code: 200,
        latency_us: 2_000,
        error_kind: None,
        error_message: None,
        ..Default::default()
    }
}

fn settings() -> FlushSettings {
    FlushSettings {
        interval: Duration::from_secs(1),
        batch: 10_000,
        ..monitor::config::Settings::for_tests("unused").flush
    }
}

async fn a_large_batch_is_stored_in_chunks_and_a_second_delivery_adds_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let base = Utc::now().timestamp_millis();
    // More rows than one statement may bind on either database.
    let batch: Vec<_> = (0..10_000)
        .map(|i| result(url.id, base + i * 1000))
        .collect();
    let (inserted, dropped) = store_results(&app.db, &batch).await.unwrap();
    assert_eq!((inserted, dropped), (10_000, 0));
    let (again, _) = store_results(&app.db, &batch).await.unwrap();
    assert_eq!(again, 0, "a batch delivered twice adds no rows");
    assert_eq!(
        statuses::Entity::find().count(&app.db).await.unwrap(),
        10_000
    );
}

async fn results_of_deleted_urls_are_dropped(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let now = Utc::now().timestamp_millis();
    let batch = vec![result(url.id, now), result(url.id + 999, now)];
    let (inserted, dropped) = store_results(&app.db, &batch).await.unwrap();
    assert_eq!((inserted, dropped), (1, 1));
}

async fn the_flusher_moves_the_memory_buffer_into_the_store(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let buffer = Arc::new(MemoryBuffer::new(100, 10));
    let now = Utc::now().timestamp_millis();
    for i in 0..25 {
        buffer.push(result(url.id, now + i)).await;
    }
    let flusher = Flusher::new(
        app.db.clone(),
        buffer.clone(),
        FlushSettings {
            batch: 10,
            ..settings()
        },
    );
    let first = flusher.flush_once().await.unwrap();
    assert_eq!((first.read, first.inserted), (10, 10));
    assert_eq!(buffer.backlog().await.unwrap(), 15);
    assert_eq!(flusher.drain().await.unwrap(), 15);
    assert_eq!(buffer.backlog().await.unwrap(), 0);
    assert_eq!(statuses::Entity::find().count(&app.db).await.unwrap(), 25);
}

/// Retention at midnight (UTC): statuses due more than two days before go.
/// Postgres drops them by whole day partitions, so at midnight a day's
/// cut is the same as SQLite's row by row; it also creates the partitions
/// of the days ahead.
async fn retention_deletes_only_statuses_older_than_two_days(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let now = Utc::now()
        .duration_trunc(chrono::Duration::days(1))
        .unwrap();
    let at = |hours: i64| now - chrono::Duration::hours(hours);
    statuses::ensure_days(&app.db, &statuses::days_spanning(at(200), now))
        .await
        .unwrap();
    let rows: Vec<_> = [1, 47, 49, 72, 200]
        .into_iter()
        .map(|h| statuses::ActiveModel {
            url_id: Set(url.id),
            due_at: Set(at(h)),
            probed_after_us: Set(1_000),
            status_code: Set(200),
            latency_micros: Set(1),
            error_kind: Set(None),
            error_message: Set(None),
            ..Default::default()
        })
        .collect();
    statuses::Entity::insert_many(rows)
        .exec(&app.db)
        .await
        .unwrap();
    let flusher = Flusher::new(
        app.db.clone(),
        Arc::new(MemoryBuffer::new(10, 10)),
        settings(),
    );
    let gone = flusher.retention_once(now).await.unwrap();
    match backend {
        Backend::Sqlite => assert_eq!((gone.deleted, gone.dropped_days), (3, 0)),
        // The days of the 49 and 72 hour rows (one day) and of the 200 hour
        // row, and any empty day before the cut.
        Backend::Postgres => assert!(gone.dropped_days >= 2 && gone.deleted == 0, "{gone:?}"),
    }
    // (Read through ListStatuses: the pass also packs closed days, beside it.)
    let left: Vec<i64> = app
        .statuses(&token, url.id)
        .await
        .into_iter()
        .map(|s| s.due_at.unwrap().seconds)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|t| *t > at(48).timestamp()));
    // Later statuses have their days ready: one due two days on is stored.
    let ahead = result(url.id, (now + chrono::Duration::days(2)).timestamp_millis());
    assert_eq!(store_results(&app.db, &[ahead]).await.unwrap().0, 1);
    if backend == Backend::Postgres {
        assert_eq!(flusher.retention_once(now).await.unwrap().dropped_days, 0);
    }
}

/// A row the batch insert writes is the same row, key included, as one
/// written through the entity (the way rows were written before): a result
/// stored either way is not stored twice, and reads back unchanged.
async fn a_batch_row_equals_an_entity_row_for_the_same_probe(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    // Whole seconds, milliseconds and microseconds: each is its own text form.
    let base = Utc::now().timestamp_millis() / 1000 * 1000;
    let results = [result(url.id, base), result(url.id, base + 250)];
    let mut third = result(url.id, base + 500);
    third.started_us += 7;
    third.error_kind = Some(3);
    third.error_message = Some("connection refused".into());
    for r in results.iter().chain([&third]) {
        statuses::ActiveModel {
            url_id: Set(r.url_id),
            due_at: Set(DateTime::from_timestamp_millis(r.due_ms).unwrap()),
            probed_after_us: Set(i32::try_from(r.started_us - r.due_ms * 1000).unwrap()),
            status_code: Set(i16::try_from(r.status_code).unwrap()),
            latency_micros: Set(i32::try_from(r.latency_us).unwrap()),
            error_kind: Set(r.error_kind),
            error_message: Set(r.error_message.clone()),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .unwrap();
    }
    let by_id = || statuses::Entity::find().order_by_asc(statuses::Column::DueAt);
    let before = by_id().all(&app.db).await.unwrap();
    let batch = [results[0].clone(), results[1].clone(), third.clone()];
    let (inserted, _) = store_results(&app.db, &batch).await.unwrap();
    assert_eq!(
        inserted, 0,
        "the same (url_id, due_at) in the batch insert's form"
    );

    // And the batch insert's rows read back as the results they came from.
    let fresh: Vec<ProbeResult> = batch
        .iter()
        .map(|r| ProbeResult {
            due_ms: r.due_ms + 10_000,
            ..r.clone()
        })
        .collect();
    assert_eq!(store_results(&app.db, &fresh).await.unwrap().0, 3);
    let after = by_id().all(&app.db).await.unwrap();
    for (old, new) in before.iter().zip(&after[3..]) {
        assert_eq!(new.due_at, old.due_at + chrono::Duration::seconds(10));
        // The same probe time, 10 s less after a due time 10 s later.
        assert_eq!(new.probed_after_us, old.probed_after_us - 10_000_000);
        assert_eq!(
            (
                new.status_code,
                new.latency_micros,
                new.error_kind,
                &new.error_message
            ),
            (
                old.status_code,
                old.latency_micros,
                old.error_kind,
                &old.error_message
            )
        );
    }
}

/// A batch due on a day with no partition yet (Postgres) is stored: the
/// flush creates the day's partition first, and flushers doing so at once
/// (here eight) all succeed.
async fn a_batch_for_a_day_without_a_partition_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let long_ago = Utc::now() - chrono::Duration::days(40);
    let writers = (0..8_i64).map(|i| {
        let db = app.db.clone();
        let r = result(url.id, long_ago.timestamp_millis() + i * 1000);
        tokio::spawn(async move { store_results(&db, &[r]).await })
    });
    for w in writers {
        assert_eq!(w.await.unwrap().unwrap(), (1, 0));
    }
    let days = statuses::days_spanning(long_ago, long_ago);
    statuses::ensure_days(&app.db, &days).await.unwrap();
    assert_eq!(statuses::Entity::find().count(&app.db).await.unwrap(), 8);
}

/// The start of the UTC day two days back (over, and packable, at any
/// time of day), and 300 statuses of `url_id` a minute apart from an hour
/// into it, with every kind of field.
fn a_closed_day(url_id: i64, now: DateTime<Utc>) -> (DateTime<Utc>, Vec<ProbeResult>) {
    use monitor::domain::verdict::{FailedAssertion, Verdict};
    let day_start = (now - chrono::Duration::days(2))
        .duration_trunc(chrono::Duration::days(1))
        .unwrap();
    let first = (day_start + chrono::Duration::hours(1)).timestamp_millis();
    let batch = (0..300_i64)
        .map(|i| {
            let mut r = result(url_id, first + i * 60_000);
            r.started_us += i * 13;
            r.latency_us = 1_000 + i * 37;
            if i % 7 == 0 {
                r.status_code = 0;
                r.error_kind = Some(3);
                r.error_message = Some(format!("connection refused #{i}"));
                r.verdict = Some(Verdict::Down);
            } else if i % 5 == 0 {
                r.verdict = Some(Verdict::Degraded);
                r.failed_assertions = vec![FailedAssertion {
                    index: 1,
                    message: format!("latency {i} ms over 1 ms"),
                }];
            }
            if i % 3 == 0 {
                r.tls_not_after_ms = Some(first + 86_400_000 * 30 + i);
            }
            r
        })
        .collect();
    (day_start, batch)
}

/// A user's URL with [`a_closed_day`] of statuses and two of today's
/// (which stay in today's partition): the app, token, URL id, now, and
/// the closed day's start and statuses.
async fn a_closed_and_an_open_day(
    backend: Backend,
) -> (
    TestApp,
    String,
    i64,
    DateTime<Utc>,
    (DateTime<Utc>, Vec<ProbeResult>),
) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let now = Utc::now();
    let (day_start, batch) = a_closed_day(url.id, now);
    assert_eq!(store_results(&app.db, &batch).await.unwrap().0, 300);
    let ms = now.timestamp_millis();
    let today = [result(url.id, ms - 1_000), result(url.id, ms)];
    assert_eq!(store_results(&app.db, &today).await.unwrap().0, 2);
    // Rolled: a day is packed only once its statuses are in the buckets.
    rollups::roll(&app.db, ms - 60_000).await.unwrap();
    (app, token, url.id, now, (day_start, batch))
}

/// Every page of a URL's statuses of `size`, newest first, with optional
/// `[start, end)` bounds.
async fn list_pages(
    app: &TestApp,
    token: &str,
    url_id: i64,
    size: i32,
    bounds: Option<(i64, i64)>,
) -> Vec<monitor::proto::monitor::v1::ListStatusesResponse> {
    let ts = |ms: i64| monitor::proto::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: 0,
    };
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_statuses(crate::helpers::authed(
                monitor::proto::monitor::v1::ListStatusesRequest {
                    url_id,
                    page_size: size,
                    page_token: page_token.clone(),
                    start_time: bounds.map(|b| ts(b.0)),
                    end_time: bounds.map(|b| ts(b.1)),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner();
        page_token.clone_from(&page.next_page_token);
        pages.push(page);
        if page_token.is_empty() {
            return pages;
        }
    }
}

/// A day, once over (and an hour of grace for late writes), is packed into
/// one row per URL, once (Postgres; SQLite has nothing to pack), and every
/// status reads back the same through ListStatuses (pages of 100, of 7
/// across the packed day's edge, and bounded) and the minute buckets'
/// read, field for field and page for page.
async fn closed_days_are_packed_and_read_the_same(backend: Backend) {
    let (app, token, url_id, now, (day_start, batch)) = a_closed_and_an_open_day(backend).await;
    let ms = now.timestamp_millis();

    let first = batch[0].due_ms;
    let inside = Some((first + 100 * 60_000, first + 120 * 60_000));
    let read = || async {
        (
            list_pages(&app, &token, url_id, 100, None).await,
            list_pages(&app, &token, url_id, 7, None).await,
            list_pages(&app, &token, url_id, 50, inside).await,
            statuses::due_between(&app.db, url_id, first - 60_000, ms + 1)
                .await
                .unwrap(),
        )
    };
    let before = read().await;
    assert_eq!(
        before.0.iter().map(|p| p.statuses.len()).sum::<usize>(),
        302
    );
    assert_eq!(before.2[0].statuses.len(), 20, "[start, end) of the day");
    assert_eq!(before.3.len(), 302);

    // A pass that finds another packer at work (here a transaction that
    // holds its lock) leaves every day to it.
    if backend == Backend::Postgres {
        let pool = app.db.get_postgres_connection_pool();
        let mut other_packer = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('monitor.statuses_pack'))")
            .execute(&mut *other_packer)
            .await
            .unwrap();
        assert_eq!(statuses::pack_closed_days(&app.db, now).await.unwrap(), 0);
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM statuses_packed_days").await,
            0
        );
        other_packer.rollback().await.unwrap();
    }

    // Two instances' passes at once: each day is packed by one of them,
    // none is left by both (each finding the other at work on another).
    // Reads meanwhile see each status once (a day packed between a
    // reader's two statements is read from both places).
    let done = std::sync::atomic::AtomicBool::new(false);
    let packing = async {
        let passes = tokio::join!(
            statuses::pack_closed_days(&app.db, now),
            statuses::pack_closed_days(&app.db, now)
        );
        done.store(true, std::sync::atomic::Ordering::Release);
        passes
    };
    let reading = async {
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            assert_eq!(read().await, before, "read while packing");
        }
    };
    let ((one, other), ()) = tokio::join!(packing, reading);
    let packed = one.unwrap() + other.unwrap();
    assert_eq!(
        statuses::pack_closed_days(&app.db, now).await.unwrap(),
        0,
        "packed once"
    );
    if backend == Backend::Sqlite {
        assert_eq!(packed, 0);
        assert_eq!(read().await, before);
        return;
    }
    assert!(packed >= 1, "{packed}");
    let partition = format!(
        "SELECT count(*) FROM statuses_{}",
        day_start.format("%Y%m%d")
    );
    assert_eq!(
        count(&app.db, &partition).await,
        0,
        "the day's partition is empty"
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM statuses_packed").await,
        1,
        "one row for the URL's day"
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM statuses").await,
        2,
        "today's stay"
    );
    assert_eq!(read().await, before);
}

/// A redelivery of a packed day's statuses is not stored again; a late
/// new status of that day is (in the emptied partition), once, and read
/// in its place; retention drops the day, packed and late rows alike;
/// DeleteUrl deletes a URL's packed rows.
async fn a_packed_day_takes_late_statuses_once_and_goes_whole(backend: Backend) {
    let (app, token, url_id, now, (day_start, batch)) = a_closed_and_an_open_day(backend).await;
    statuses::pack_closed_days(&app.db, now).await.unwrap();

    assert_eq!(store_results(&app.db, &batch[10..20]).await.unwrap().0, 0);
    let late = result(url_id, batch[0].due_ms + 30_000);
    let once = std::slice::from_ref(&late);
    assert_eq!(store_results(&app.db, once).await.unwrap().0, 1);
    assert_eq!(
        store_results(&app.db, once).await.unwrap().0,
        0,
        "only once"
    );
    let due: Vec<i64> = app
        .statuses(&token, url_id)
        .await
        .iter()
        .map(|s| s.due_at.unwrap().seconds)
        .collect();
    assert_eq!(due.len(), 303);
    assert!(due.windows(2).all(|w| w[0] < w[1]), "in due order");
    assert_eq!(due[1], late.due_ms / 1000);
    if backend == Backend::Sqlite {
        return;
    }

    let dropped = statuses::drop_days_before(&app.db, day_start + chrono::Duration::days(1))
        .await
        .unwrap();
    assert!(dropped >= 1, "{dropped}");
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM statuses_packed").await,
        0
    );
    let marked = format!(
        "SELECT count(*) FROM statuses_packed_days WHERE day = '{}'",
        day_start.format("%Y-%m-%d")
    );
    assert_eq!(count(&app.db, &marked).await, 0);
    assert_eq!(app.statuses(&token, url_id).await.len(), 2);

    let other = app.add_url(&token, "https://example.com/other").await;
    let (_, other_day) = a_closed_day(other.id, now);
    // Its mark before the closed day (as a restored URL's: AddUrl's is its
    // creation), so that day's statuses wait for the roll pass.
    app.db
        .execute_unprepared(&format!(
            "UPDATE url_states SET rolled_to_ms = 0 WHERE url_id = {}",
            other.id
        ))
        .await
        .unwrap();
    assert_eq!(store_results(&app.db, &other_day[..3]).await.unwrap().0, 3);
    assert_eq!(
        statuses::pack_closed_days(&app.db, now).await.unwrap(),
        0,
        "not packed before its statuses are rolled (the URL's mark holds it)"
    );
    rollups::roll(&app.db, now.timestamp_millis() - 60_000)
        .await
        .unwrap();
    assert_eq!(statuses::pack_closed_days(&app.db, now).await.unwrap(), 1);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM statuses_packed").await,
        1
    );
    app.client
        .clone()
        .delete_url(crate::helpers::authed(
            monitor::proto::monitor::v1::DeleteUrlRequest { id: other.id },
            &token,
        ))
        .await
        .unwrap();
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM statuses_packed").await,
        0
    );
}

/// A URL deleted while its day is being packed is deleted, packed rows
/// and all, once the packing ends: the packer holds the day's partition
/// and DeleteUrl waits for it (a packer that then dropped the partition
/// waited for all of `statuses`, which DeleteUrl held: a deadlock, and
/// DeleteUrl failed with INTERNAL).
async fn a_url_deleted_while_its_day_is_packed_is_deleted(backend: Backend) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if backend == Backend::Sqlite {
        return;
    }
    let (app, token, url_id, _, (day_start, _)) = a_closed_and_an_open_day(backend).await;
    let packer = app.db.begin().await.unwrap();
    let day = day_start.format("%Y-%m-%d");
    packer
        .execute_unprepared(&format!(
            "LOCK TABLE statuses_{} IN SHARE MODE",
            day_start.format("%Y%m%d")
        ))
        .await
        .unwrap();
    let mut client = app.client.clone();
    let delete = tokio::spawn(async move {
        client
            .delete_url(crate::helpers::authed(
                monitor::proto::monitor::v1::DeleteUrlRequest { id: url_id },
                &token,
            ))
            .await
    });
    // DeleteUrl now waits for the day's partition.
    tokio::time::sleep(Duration::from_millis(500)).await;
    packer
        .execute_unprepared(&format!("SELECT statuses_pack('{day}')"))
        .await
        .unwrap();
    packer.commit().await.unwrap();
    delete.await.unwrap().unwrap();
    let left = format!(
        "SELECT (SELECT count(*) FROM statuses WHERE url_id = {url_id}) \
              + (SELECT count(*) FROM statuses_packed WHERE url_id = {url_id})"
    );
    assert_eq!(count(&app.db, &left).await, 0);
}

crate::on_both_backends!(
    a_batch_row_equals_an_entity_row_for_the_same_probe,
    closed_days_are_packed_and_read_the_same,
    a_packed_day_takes_late_statuses_once_and_goes_whole,
    a_url_deleted_while_its_day_is_packed_is_deleted,
    a_batch_for_a_day_without_a_partition_is_stored,
    a_large_batch_is_stored_in_chunks_and_a_second_delivery_adds_nothing,
    results_of_deleted_urls_are_dropped,
    the_flusher_moves_the_memory_buffer_into_the_store,
    retention_deletes_only_statuses_older_than_two_days,
);

/// A batch read but never acknowledged (the instance died mid-flush) is read
/// again by the instance that comes back under the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_redis_batch_is_delivered_again() {
    let prefix = format!("monitor-test-{}", uuid::Uuid::new_v4().simple());
    let url = test_redis_url();
    let first = RedisBuffer::connect(&url, &prefix, "instance-a".into(), 100, 100)
        .await
        .unwrap();
    for i in 0..3 {
        first.push(result(1, i)).await;
    }
    assert_eq!(first.backlog().await.unwrap(), 3);
    let batch = first.read(10).await.unwrap();
    assert_eq!(batch.results.len(), 3);
    drop(batch); // "crash" before the acknowledgement
    drop(first);

    let again = RedisBuffer::connect(&url, &prefix, "instance-a".into(), 100, 100)
        .await
        .unwrap();
    let batch = again.read(10).await.unwrap();
    let dues: Vec<i64> = batch.results.iter().map(|r| r.due_ms).collect();
    assert_eq!(dues, vec![0, 1, 2]);
    again.ack(batch).await.unwrap();
    assert_eq!(again.backlog().await.unwrap(), 0);
    assert!(again.read(10).await.unwrap().results.is_empty());
}

/// Results pushed together go to Redis packed, many to a stream entry. A
/// read takes whole entries up to its batch size and leaves the rest
/// pending for the next read; every result comes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redis_pushes_are_packed_and_each_read_once() {
    let prefix = format!("monitor-test-{}", uuid::Uuid::new_v4().simple());
    let stream = format!("{prefix}:results");
    let buffer = Arc::new(
        RedisBuffer::connect(&test_redis_url(), &prefix, "instance-a".into(), 10, 100_000)
            .await
            .unwrap(),
    );
    let n: i64 = 3_000;
    let pushes: Vec<_> = (0..n)
        .map(|i| {
            let buffer = buffer.clone();
            tokio::spawn(async move { buffer.push(result(1, i)).await })
        })
        .collect();
    for p in pushes {
        p.await.unwrap();
    }
    let entries: i64 = redis_cli(&["XLEN", &stream]).trim().parse().unwrap();
    assert!(
        entries * 10 <= n,
        "{n} concurrent pushes made {entries} stream entries: not packed"
    );
    assert_eq!(results_in_stream(&stream), 3_000);

    let mut seen = Vec::new();
    let mut reads = 0;
    loop {
        let batch = buffer.read(300).await.unwrap();
        if batch.results.is_empty() {
            assert!(!batch.more);
            break;
        }
        // Whole entries of up to 128 results: 300 holds two full ones.
        assert!(batch.results.len() <= 300, "{}", batch.results.len());
        seen.extend(batch.results.iter().map(|r| r.due_ms));
        buffer.ack(batch).await.unwrap();
        reads += 1;
        assert!(reads < 100, "reads never end");
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "each result once");
    assert_eq!(redis_cli(&["XLEN", &stream]).trim(), "0");
    assert_eq!(buffer.backlog().await.unwrap(), 0);
}

/// An entry of one result, as written before results were packed (an
/// older instance during an upgrade), is read beside packed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_entry_of_one_result_from_an_older_writer_is_still_read() {
    let prefix = format!("monitor-test-{}", uuid::Uuid::new_v4().simple());
    let stream = format!("{prefix}:results");
    let buffer = RedisBuffer::connect(&test_redis_url(), &prefix, "instance-a".into(), 10, 100)
        .await
        .unwrap();
    let old = serde_json::to_string(&result(1, 7)).unwrap();
    redis_cli(&["XADD", &stream, "*", "r", &old]);
    buffer.push(result(1, 8)).await;
    let batch = buffer.read(10).await.unwrap();
    let dues: Vec<i64> = batch.results.iter().map(|r| r.due_ms).collect();
    assert_eq!(dues, vec![7, 8]);
    buffer.ack(batch).await.unwrap();
    assert!(buffer.read(10).await.unwrap().results.is_empty());
}
