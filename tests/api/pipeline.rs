//! The flush and retention steps and the Redis buffer, driven directly.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, DurationRound, Utc};
use monitor::{
    buffer::{Buffer, MemoryBuffer, RedisBuffer},
    flush::{FlushSettings, Flusher, store_results},
    prober::ProbeResult,
    store::statuses,
};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryOrder, Set};

use crate::helpers::{Backend, spawn_app, test_redis_url};

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
    let left: Vec<DateTime<Utc>> = statuses::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.due_at)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|t| *t > at(48)));
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

/// A day's partition, once the day is over (and an hour of grace for late
/// writes), gets its index rebuilt full, once; its rows stay, today's
/// partition is left alone, and SQLite has nothing to compact.
async fn closed_days_are_compacted_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.user().await;
    let url = app.add_url(&token, "https://example.com/").await;
    let now = Utc::now();
    let two_days_ago = (now - chrono::Duration::days(2)).timestamp_millis();
    let batch: Vec<_> = (0..500)
        .map(|i| result(url.id, two_days_ago + i * 1000))
        .collect();
    assert_eq!(store_results(&app.db, &batch).await.unwrap().0, 500);
    let first = statuses::compact_closed_days(&app.db, now).await.unwrap();
    assert_eq!(
        statuses::compact_closed_days(&app.db, now).await.unwrap(),
        0
    );
    assert_eq!(statuses::Entity::find().count(&app.db).await.unwrap(), 500);
    if backend == Backend::Sqlite {
        assert_eq!(first, 0);
        return;
    }
    assert!(first >= 1, "{first}");
    let day = |t: DateTime<Utc>| format!("statuses_{}_pkey", t.format("%Y%m%d"));
    let compacted = |index: String| {
        let db = app.db.clone();
        async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!(
                        "SELECT coalesce(obj_description('{index}'::regclass, 'pg_class'), '') || \
                         coalesce(array_to_string(reloptions, ','), '') AS marks \
                         FROM pg_class WHERE relname = '{index}'"
                    ),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<String>("", "marks").unwrap()
        }
    };
    assert_eq!(
        compacted(day(now - chrono::Duration::days(2))).await,
        "monitor: compactedfillfactor=100"
    );
    assert_eq!(compacted(day(now)).await, "", "today is still written");
}

crate::on_both_backends!(
    a_batch_row_equals_an_entity_row_for_the_same_probe,
    closed_days_are_compacted_once,
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
