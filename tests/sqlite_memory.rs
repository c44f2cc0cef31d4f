//! The embedded default's memory stays flat under flushes of every size.
//!
//! A process of its own (this file is its own test binary), so its resident
//! memory is this test's alone. Each distinct SQL text is prepared and kept
//! per pooled SQLite connection; a flush whose statement text depends on its
//! batch size (a multi-row VALUES list, an `IN (…)` list) leaves a new large
//! prepared statement in a connection's cache for every size it meets —
//! hundreds of MB across the pool. The flush must use statements whose text
//! is the same whatever the batch.

use chrono::Utc;
use monitor::{config::Settings, flush::store_results, prober::ProbeResult, store};
use sea_orm::{ActiveModelTrait, Set};

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_of_many_sizes_leave_sqlite_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_tests(dir.path());
    settings.database_url = None;
    let db = monitor::app::open_database(&settings).await.unwrap();
    let user = store::users::ActiveModel {
        email: Set("memory@example.com".into()),
        password_hash: Set("x".into()),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..500 {
        let url = store::urls::ActiveModel {
            user_id: Set(user.id),
            url: Set(format!("http://127.0.0.1/{i}")),
            period_seconds: Set(60),
            created_at: Set(Utc::now()),
            phase_ms: Set(0),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
        ids.push(url.id);
    }
    let mut due = 0i64;
    let mut batch = |rows: usize, urls: usize| -> Vec<ProbeResult> {
        (0..rows)
            .map(|i| {
                due += 1000;
                ProbeResult {
                    url_id: ids[i % urls],
                    due_ms: due,
                    started_us: due * 1000 + 1_500,
                    status_code: 200,
                    latency_us: 2_000,
                    error_kind: None,
                    error_message: None,
                    ..ProbeResult::default()
                }
            })
            .collect()
    };
    // Warm up: the pool's connections open, caches hold the steady shapes.
    for _ in 0..40 {
        store_results(&db, &batch(1_000, 500)).await.unwrap();
    }
    let before = resident_mib();
    // Batches of 160 different sizes over 1..=500 distinct URLs.
    let mut stored = 0;
    for n in 1..=160usize {
        let rows = n * 25;
        let (inserted, _) = store_results(&db, &batch(rows, n.min(500) * 3 % 500 + 1))
            .await
            .unwrap();
        stored += inserted;
    }
    let after = resident_mib();
    // The write-ahead log is truncated by the retention pass's checkpoint.
    let wal = dir.path().join("monitor.db-wal");
    let wal_before = std::fs::metadata(&wal).map_or(0, |m| m.len());
    let flusher = monitor::flush::Flusher::new(
        db.clone(),
        std::sync::Arc::new(monitor::buffer::MemoryBuffer::new(10, 10)),
        settings.flush.clone(),
    );
    flusher.retention_once(Utc::now()).await.unwrap();
    let wal_after = std::fs::metadata(&wal).map_or(0, |m| m.len());
    println!("WAL: {wal_before} bytes before the retention pass, {wal_after} after");
    assert!(wal_before > 0, "the flushes wrote to the WAL");
    assert_eq!(wal_after, 0, "the checkpoint truncates the WAL");
    assert_eq!(stored, (1..=160u64).map(|n| n * 25).sum::<u64>());
    println!("resident memory: {before:.1} MiB before, {after:.1} MiB after 160 batch sizes");
    assert!(
        after - before < 40.0,
        "resident memory grew {:.1} MiB over 160 batch sizes ({before:.1} -> {after:.1} MiB)",
        after - before
    );
}
