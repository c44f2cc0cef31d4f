//! `/metrics` counts what happened, request ids travel both ways, and health
//! follows the dependencies (our own Postgres and Redis, stopped and started).

use std::time::Duration;

use monitor::{proto::monitor::v1 as pb, store::statuses};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    helpers::{Backend, TestApp, authed, prober_settings, spawn_app, spawn_app_with, use_redis},
    services::{OwnPostgres, OwnRedis},
    target::Target,
};

async fn scrape(app: &TestApp) -> String {
    let res = reqwest::get(app.http_url("/metrics")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    res.text().await.unwrap()
}

/// The sum of every sample of `name` whose labels contain all of `labels`
/// (counts and gauges here are whole numbers).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn value(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| v.parse::<f64>().unwrap() as u64)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_probes_flushes_and_calls_exactly() {
    let target = Target::start().await;
    let app = spawn_app_with(Backend::Sqlite, prober_settings).await;
    let (_, token) = app.user().await;
    // A new URL is probed at once, then not for half a period: one probe
    // each within this test.
    let ok = app.add_url_every(&token, &target.url("/ok"), 600).await;
    let fail = app.add_url_every(&token, &target.url("/fail"), 600).await;
    // Nothing listens on port 1: a connect error.
    let refused = app.add_url_every(&token, "http://127.0.1:1/", 600).await;
    let bad = app
        .client
        .clone()
        .add_url(authed(
            pb::AddUrlRequest {
                url: "ftp://x".into(),
                period: None,
                ..Default::default()
            },
            &token,
        ))
        .await;
    assert!(bad.is_err());
    let (s, _) = app.get_json("/v1/urls", Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
    for url in [&ok, &fail, &refused] {
        app.wait_for_statuses(&token, url.id, 1, Duration::from_secs(10))
            .await;
    }
    let text = scrape(&app).await;
    let stored = statuses::Entity::find().count(&app.db).await.unwrap();
    assert_eq!(stored, 3);
    assert_eq!(target.total_hits(), 2);

    let probes = |labels: &[&str]| value(&text, "monitor_probes_total", labels);
    assert_eq!(probes(&["status_class=\"2xx\""]), 1, "{text}");
    assert_eq!(probes(&["status_class=\"5xx\""]), 1, "{text}");
    assert_eq!(
        probes(&["outcome=\"error\"", "error_kind=\"connect\""]),
        1,
        "{text}"
    );
    assert_eq!(probes(&[]), 3, "{text}");
    assert_eq!(value(&text, "monitor_probe_duration_seconds_count", &[]), 3);
    assert_eq!(
        value(&text, "monitor_schedule_lateness_seconds_count", &[]),
        3
    );
    assert_eq!(value(&text, "monitor_flush_rows_total", &[]), 3, "{text}");
    let batches = value(&text, "monitor_flush_batches_total", &[]);
    assert!((1..=3).contains(&batches), "{text}");
    assert_eq!(
        value(&text, "monitor_flush_duration_seconds_count", &[]),
        batches
    );
    assert_eq!(value(&text, "monitor_buffer_backlog", &[]), 0);
    assert_eq!(value(&text, "monitor_retention_deleted_rows_total", &[]), 0);

    // Calls by transport, method and code.
    let add = "method=\"/monitor.v1.MonitorService/AddUrl\"";
    let rpcs = |labels: &[&str]| value(&text, "monitor_rpcs_total", labels);
    assert_eq!(rpcs(&[add, "code=\"OK\""]), 3, "{text}");
    assert_eq!(rpcs(&[add, "code=\"INVALID_ARGUMENT\""]), 1, "{text}");
    assert_eq!(
        value(&text, "monitor_rpc_duration_seconds_count", &[add]),
        4
    );
    assert_eq!(
        rpcs(&[
            "transport=\"http\"",
            "method=\"GET /v1/urls\"",
            "code=\"200\""
        ]),
        1,
        "{text}"
    );
    assert!(
        value(&text, "monitor_db_pool_connections", &[]) >= 1,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_returned_and_kept_when_sent() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut req = tonic::Request::new(pb::LoginRequest {
        email: "who@example.com".into(),
        password: "x".into(),
    });
    req.metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let err = app.client.clone().login(req).await.unwrap_err();
    assert_eq!(err.metadata().get("x-request-id").unwrap(), "trace-me-42");

    let (_, token) = app.user().await;
    let res = app
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &token))
        .await
        .unwrap();
    let generated = res
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    let res = reqwest::Client::new()
        .get(app.http_url("/v1/urls"))
        .header("x-request-id", "curl-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["x-request-id"], "curl-1");

    // An id that is too long, or not printable, is replaced by a new one.
    for bad in ["x".repeat(129), "two words".to_owned()] {
        let res = reqwest::Client::new()
            .get(app.http_url("/healthz"))
            .header("x-request-id", &bad)
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "{bad:?} replaced by a UUID, not {id:?}");
    }
}

pub(crate) async fn grpc_health(app: &TestApp, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(app.channel().await);
    let res = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(res.status).unwrap()
}

async fn wait_health(app: &TestApp, want: ServingStatus, ready: StatusCode) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let overall = grpc_health(app, "").await;
        let api = grpc_health(app, "monitor.v1.MonitorService").await;
        let (status, body) = app.get_json("/readyz", None).await;
        if overall == want && api == want && status == ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health stayed {overall:?}/{api:?}, /readyz {status} {body}; wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_postgres_and_redis_down_and_back() {
    let pg = OwnPostgres::start();
    let mut redis = OwnRedis::start();
    let (pg_url, redis_url) = (pg.url(), redis.url());
    let mut app = spawn_app_with(Backend::Sqlite, |s| {
        use_redis(s);
        s.redis_url = Some(redis_url);
        s.database_url = Some(pg_url);
        s.health_interval = Duration::from_millis(200);
    })
    .await;
    wait_health(&app, ServingStatus::Serving, StatusCode::OK).await;
    let (s, live) = app.get_json("/healthz", None).await;
    assert_eq!((s, live["status"].as_str()), (StatusCode::OK, Some("ok")));

    pg.stop();
    wait_health(
        &app,
        ServingStatus::NotServing,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let (_, body) = app.get_json("/readyz", None).await;
    assert_eq!(body["database"], "unreachable", "{body}");
    // Liveness does not depend on the database.
    assert_eq!(app.get_json("/healthz", None).await.0, StatusCode::OK);
    pg.restart();
    wait_health(&app, ServingStatus::Serving, StatusCode::OK).await;

    redis.kill();
    wait_health(
        &app,
        ServingStatus::NotServing,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let (_, body) = app.get_json("/readyz", None).await;
    assert_eq!(body["redis"], "unreachable", "{body}");
    redis.restart();
    wait_health(&app, ServingStatus::Serving, StatusCode::OK).await;
    app.stop().await;
}

/// A database that answers but refuses writes is not ready: a ping alone
/// said "ok" while Register and AddUrl failed (issue 13, item 6). SQLite:
/// the database file opened read-only; Postgres: the test database set
/// `default_transaction_read_only` and the server's connections renewed,
/// then set back.
async fn a_database_that_refuses_writes_is_not_ready(backend: Backend) {
    use sea_orm::{ConnectionTrait, Database};
    let tmp = tempfile::tempdir().unwrap();
    let sqlite_file = tmp.path().join("ro.db");
    if backend == Backend::Sqlite {
        // Created and migrated while writable, then served read-only.
        let url = format!("sqlite://{}?mode=rwc", sqlite_file.display());
        monitor::store::connect(&url, 1)
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
    }
    let mut app = spawn_app_with(backend, |s| {
        s.health_interval = Duration::from_millis(200);
        if backend == Backend::Sqlite {
            s.database_url = Some(format!("sqlite://{}?mode=ro", sqlite_file.display()));
        }
    })
    .await;
    let admin = Database::connect(crate::helpers::postgres_admin_url()).await;
    let name = app.database.url.rsplit('/').next().unwrap().to_owned();
    let renew_connections = async |admin: &sea_orm::DatabaseConnection| {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .unwrap();
    };
    if backend == Backend::Postgres {
        wait_health(&app, ServingStatus::Serving, StatusCode::OK).await;
        let admin = admin.as_ref().unwrap();
        admin
            .execute_unprepared(&format!(
                "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
            ))
            .await
            .unwrap();
        renew_connections(admin).await;
    }
    wait_health(
        &app,
        ServingStatus::NotServing,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let (_, body) = app.get_json("/readyz", None).await;
    assert_eq!(body["database"], "refuses writes", "{body}");
    let refused = app
        .client
        .register(pb::RegisterRequest {
            email: "ro@example.com".into(),
            password: crate::helpers::PASSWORD.into(),
        })
        .await;
    eprintln!(
        "/readyz {body}; Register: {:?}",
        refused.as_ref().map_err(tonic::Status::code)
    );
    assert!(refused.is_err(), "the database really refuses writes");
    if backend == Backend::Postgres {
        let admin = admin.as_ref().unwrap();
        admin
            .execute_unprepared(&format!(
                "ALTER DATABASE \"{name}\" RESET default_transaction_read_only"
            ))
            .await
            .unwrap();
        renew_connections(admin).await;
        wait_health(&app, ServingStatus::Serving, StatusCode::OK).await;
    }
    app.stop().await;
}

crate::on_both_backends!(a_database_that_refuses_writes_is_not_ready);

/// Made-up gRPC paths and HTTP methods, as an unauthenticated stranger can
/// send them, add no metric series: each is counted under one `unknown` /
/// `OTHER` label. Measured on the binary, in its own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_paths_and_methods_cannot_grow_the_metrics() {
    use futures_util::{StreamExt, stream};
    // reqwest is used here before any App installs the TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = crate::binary::Running::start(crate::binary::monitor_command(tmp.path()));
    let (grpc, http) = server.addrs();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let h1 = reqwest::Client::new();
    let junk = |n: usize| {
        let mut s = uuid::Uuid::new_v4().simple().to_string();
        s.truncate(n);
        s
    };
    let send = |count: usize| {
        let (h2, h1, grpc, http) = (h2.clone(), h1.clone(), grpc.clone(), http.clone());
        async move {
            stream::iter(0..count)
                .map(|i| {
                    let (h2, h1) = (h2.clone(), h1.clone());
                    let (grpc, http) = (grpc.clone(), http.clone());
                    async move {
                        if i % 2 == 0 {
                            let path = format!("/{}.{}/{}", junk(8), junk(12), junk(10));
                            let _ = h2
                                .post(format!("http://{grpc}{path}"))
                                .header("content-type", "application/grpc")
                                .header("te", "trailers")
                                .body(vec![0u8, 0, 0, 0, 0])
                                .send()
                                .await;
                        } else {
                            let verb = junk(10).to_uppercase().replace(char::is_numeric, "X");
                            let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
                            let _ = h1
                                .request(method, format!("http://{http}/v1/urls/{}", junk(6)))
                                .send()
                                .await;
                        }
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await;
        }
    };
    send(1_000).await;
    let before = server.resident_mib();
    send(10_000).await;
    let after = server.resident_mib();
    let metrics = h1
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.len() < 200 * 1024,
        "/metrics is {} bytes after 10,000 made-up calls",
        metrics.len()
    );
    assert!(metrics.contains("method=\"unknown\""), "{metrics}");
    assert!(metrics.contains("method=\"OTHER "), "{metrics}");
    assert!(
        after - before < 20.0,
        "resident memory grew {:.1} MiB ({before:.1} -> {after:.1})",
        after - before
    );
    println!(
        "/metrics {} bytes; RSS {before:.1} -> {after:.1} MiB",
        metrics.len()
    );
    let (status, _) = server.stop().await;
    assert!(status.success());
}
