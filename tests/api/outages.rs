//! Redis and Postgres go away and come back: nothing is lost, nothing is
//! stored twice. Each test counts the probes the target received against the
//! statuses stored.

use std::time::Duration;

use monitor::store::statuses;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::{
    helpers::{Backend, TestApp, prober_settings, spawn_app_with},
    services::{OwnPostgres, OwnRedis},
    target::Target,
};

const URLS: usize = 4;

async fn add_urls(app: &TestApp, token: &str, target: &Target, tag: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..URLS {
        ids.push(
            app.add_url_every(token, &target.url(&format!("/ok?{tag}={i}")), 1)
                .await
                .id,
        );
    }
    ids
}

/// Rows stored for each URL equal the hits the target saw for it.
async fn assert_nothing_lost(
    db: &sea_orm::DatabaseConnection,
    target: &Target,
    tag: &str,
    ids: &[i64],
) {
    let mut total = 0;
    for (i, id) in ids.iter().enumerate() {
        let rows = statuses::Entity::find()
            .filter(statuses::Column::UrlId.eq(*id))
            .count(db)
            .await
            .unwrap();
        let hits = target.hits(&format!("/ok?{tag}={i}")).len() as u64;
        assert_eq!(rows, hits, "url {i}: {hits} probes made, {rows} stored");
        total += rows;
    }
    assert!(total > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing() {
    if crate::helpers::postgres_skipped() {
        return;
    }
    let target = Target::start().await;
    let mut redis = OwnRedis::start();
    let redis_url = redis.url();
    let mut app = spawn_app_with(Backend::Postgres, |s| {
        prober_settings(s);
        s.redis_url = Some(redis_url);
    })
    .await;
    let (_, token) = app.user().await;
    let ids = add_urls(&app, &token, &target, "redis").await;
    app.wait_for_statuses(&token, ids[0], 2, Duration::from_secs(10))
        .await;

    redis.kill();
    let hits_before = target.total_hits();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        target.total_hits() > hits_before,
        "probing goes on while Redis is down"
    );
    redis.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.stop().await;
    assert_nothing_lost(&app.open_db().await, &target, "redis", &ids).await;
}

/// The app probing, on `pg` and the shared Redis.
async fn app_on(
    pg: &OwnPostgres,
    customize: impl FnOnce(&mut monitor::config::Settings),
) -> TestApp {
    let pg_url = pg.url();
    spawn_app_with(Backend::Sqlite, |s| {
        prober_settings(s);
        crate::helpers::use_redis(s);
        s.database_url = Some(pg_url);
        customize(s);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_loses_nothing() {
    let target = Target::start().await;
    let pg = OwnPostgres::start();
    // Results wait in Redis for a while before each flush.
    let mut app = app_on(&pg, |s| s.flush.interval = Duration::from_secs(2)).await;
    let (_, token) = app.user().await;
    let ids = add_urls(&app, &token, &target, "pg").await;
    app.wait_for_statuses(&token, ids[0], 2, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.restart();
    // Wait for flushing to resume, then for a few more probes.
    app.wait_for_statuses(&token, ids[0], 4, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.stop().await;
    assert_nothing_lost(&app.open_db().await, &target, "pg", &ids).await;
}

/// Issue 13: a monitor that goes blind while its own database is down
/// misses exactly the outages that matter. With Postgres stopped for a
/// minute, each URL is still probed on its grid (from the prober's memory of
/// what it holds), the results wait in Redis, and after the restart every hit
/// is a stored row: none lost, none probed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_goes_on_through_a_minute_without_postgres() {
    const N: usize = 20;
    const OUTAGE: Duration = Duration::from_secs(60);
    let target = Target::start().await;
    let pg = OwnPostgres::start();
    let mut app = app_on(&pg, |_| {}).await;
    let (_, token) = app.user().await;
    let mut ids = Vec::new();
    for i in 0..N {
        let url = target.url(&format!("/ok?blind={i}"));
        ids.push(app.add_url_every(&token, &url, 1).await.id);
    }
    for id in &ids {
        app.wait_for_statuses(&token, *id, 2, Duration::from_secs(10))
            .await;
    }

    pg.stop();
    let stopped = std::time::SystemTime::now();
    tokio::time::sleep(OUTAGE).await;
    let restarted = std::time::SystemTime::now();
    pg.restart();

    // Each URL (period 1 s) was due once a second of the outage.
    let due = N * usize::try_from(OUTAGE.as_secs()).unwrap();
    let during = (0..N)
        .map(|i| {
            target
                .hits(&format!("/ok?blind={i}"))
                .iter()
                .filter(|t| (stopped..restarted).contains(*t))
                .count()
        })
        .sum::<usize>();
    assert!(
        during * 100 >= due * 95,
        "{during} probes reached the target while Postgres was down, of {due} due"
    );
    eprintln!("{during} of {due} due probes made while Postgres was down");

    // The results waiting in Redis are flushed after the restart.
    let db = app.open_db().await;
    let want = target.total_hits() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while statuses::Entity::find().count(&db).await.unwrap_or(0) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the results of the outage were not stored within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
    assert_nothing_lost(&db, &target, "blind", &ids).await;
}
