//! Faults with real processes: Postgres made slow (a lock holds every
//! insert) while the flush runs, and the service killed with -9 in the
//! middle of that flush, then restarted. Probes made at the target are
//! counted against rows stored: none lost, none twice.

use std::time::Duration;

use monitor::proto::monitor::v1::{self as pb, monitor_service_client::MonitorServiceClient};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

use crate::{
    helpers::{
        Backend, PASSWORD, TestDatabase, authed, count, redis_cli, restartable_port,
        results_in_stream, test_redis_url,
    },
    scaleout::Instance,
    target::Target,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, start to end
async fn kill_9_during_a_slow_flush_loses_and_duplicates_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let target = Target::start().await;
    let database = TestDatabase::create(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("monitor-test-{}", uuid::Uuid::new_v4().simple());
    let redis = test_redis_url();
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut service = Instance {
        name: "faulty",
        grpc: restartable_port(),
        http: restartable_port(),
        env: [
            ("DATABASE_URL", database.url.as_str()),
            ("REDIS_URL", redis.as_str()),
            ("MONITOR_REDIS_PREFIX", prefix.as_str()),
            ("MONITOR_TOKEN_KEY", key.as_str()),
            ("MONITOR_ALLOW_PRIVATE_TARGETS", "true"),
            ("MONITOR_MIN_PERIOD", "1s"),
            ("MONITOR_MAX_HOST_RATE", "100"),
            ("MONITOR_SCHEDULE_TICK", "50ms"),
            ("MONITOR_FLUSH_INTERVAL", "200ms"),
            // No retention pass during the test: the lock below must stall
            // the flush's insert, not a delete.
            ("MONITOR_RETENTION_INTERVAL", "1h"),
            ("MONITOR_LOG_FORMAT", "json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        log: dir.path().join("faulty.log"),
        child: None,
    };
    service.start();
    service.wait_ready().await;

    // Postgres made slow: a lock holds every insert into statuses.
    let db = Database::connect(&database.url).await.unwrap();
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE statuses IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let mut client = MonitorServiceClient::connect(format!("http://127.0.0.1:{}", service.grpc))
        .await
        .unwrap();
    let email = "faults@example.com".to_owned();
    client
        .register(pb::RegisterRequest {
            email: email.clone(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap();
    let token = client
        .login(pb::LoginRequest {
            email,
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    // Each probed once now, not again for 5 minutes.
    for i in 0..10 {
        client
            .add_url(authed(
                pb::AddUrlRequest {
                    url: target.url(&format!("/ok?f={i}")),
                    period: Some(pbjson_types::Duration {
                        seconds: 600,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap();
    }
    // And one failing every second: its results pile up behind the stalled
    // flush and are written (with the incident they open) after the restart.
    client
        .add_url(authed(
            pb::AddUrlRequest {
                url: target.url("/fail?f=down"),
                period: Some(pbjson_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();
    let ok_hits = || {
        (0..10)
            .map(|i| target.hits(&format!("/ok?f={i}")).len())
            .sum::<usize>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ok_hits() < 10 || target.hits("/fail?f=down").len() < 4 {
        assert!(std::time::Instant::now() < deadline, "probes not made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every result is in the stream, and the flush has read a batch of them
    // and waits on the lock: that batch is pending in the consumer group, not
    // acknowledged. (The first batch may hold only some of the ten; the rest
    // wait unread behind the stalled flush.)
    let stream = format!("{prefix}:results");
    let redis_number = |args: &[&str]| {
        redis_cli(args)
            .lines()
            .next()
            .unwrap_or("0")
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let pending = || redis_number(&["XPENDING", &stream, "flushers"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while results_in_stream(&stream) < 14 || pending() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the results never reached the stream, or the flush never read them"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    service.kill9();
    lock.rollback().await.unwrap();
    service.start();
    service.wait_ready().await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(&db, "SELECT count(*) FROM statuses").await < 14 {
        assert!(
            std::time::Instant::now() < deadline,
            "results were not stored after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    service.stop();

    let ok_urls = "url_id IN (SELECT id FROM urls WHERE url LIKE '%/ok?%')";
    let rows = count(
        &db,
        &format!("SELECT count(*) FROM statuses WHERE {ok_urls}"),
    )
    .await;
    let distinct = count(
        &db,
        &format!("SELECT count(DISTINCT (url_id, due_at)) FROM statuses WHERE {ok_urls}"),
    )
    .await;
    assert_eq!(ok_hits(), 10, "each URL probed once");
    assert_eq!(
        rows, 10,
        "probes made 10, rows stored {rows}: nothing lost, nothing twice"
    );
    assert_eq!(distinct, rows);
    assert_eq!(pending(), 0, "every result acknowledged");
    // The failing URL: its batch was read, stalled, the reader killed, the
    // batch read again: one incident, each stored failure counted once.
    let failures = count(
        &db,
        "SELECT count(*) FROM statuses WHERE url_id IN (SELECT id FROM urls WHERE url LIKE '%/fail?%')",
    )
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM incidents").await, 1);
    assert_eq!(
        count(&db, "SELECT failed_probes::int8 FROM incidents").await,
        failures
    );
    db.close().await.ok();
}
