//! Health, reflection, start-up and shutdown of the real server and binary.

use std::time::Duration;

use monitor::proto::monitor::v1 as pb;
use sea_orm::{ConnectionTrait, Database};
use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    binary::{Running, monitor_command},
    helpers::{Backend, TestApp, authed, spawn_app, spawn_app_with},
};

async fn health_of(app: &TestApp, service: &str) -> ServingStatus {
    let mut health = HealthClient::new(app.channel().await);
    let resp = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(resp.status).unwrap()
}

async fn health_reports_serving_for_the_server_and_the_api(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(health_of(&app, "").await, ServingStatus::Serving);
    assert_eq!(
        health_of(&app, "monitor.v1.MonitorService").await,
        ServingStatus::Serving
    );
}

async fn reflection_v1_and_v1alpha_list_the_service(backend: Backend) {
    let app = spawn_app(backend).await;
    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(app.channel().await);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("unexpected reflection answer: {resp:?}");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"monitor.v1.MonitorService".to_owned()),
            "{names:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(app.channel().await);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "monitor.v1.MonitorService".into(),
            )),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.next().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else {
            panic!("unexpected reflection answer: {resp:?}");
        };
        // The google.api.http options survive into what reflection serves.
        let all: Vec<u8> = files.file_descriptor_proto.concat();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("/v1/urls/{url_id}/statuses"),
            "http annotations missing"
        );
    }
}

/// Postgres only: make the database refuse connections, watch health drop,
/// let it back in, watch health return.
async fn health_is_not_serving_while_the_database_is_unreachable(backend: Backend) {
    if backend == Backend::Sqlite {
        return;
    }
    let app = spawn_app_with(backend, |s| s.health_interval = Duration::from_millis(200)).await;
    let name = app.database.url.rsplit('/').next().unwrap().to_owned();
    let admin_url = app.database.url.replace(&name, "postgres");
    let admin = Database::connect(&admin_url).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    wait_for_health(&app, ServingStatus::NotServing).await;
    // RPCs that need the database answer UNAVAILABLE, not INTERNAL.
    let token = app_token(&app);
    let r = app
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &token))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::Unavailable);

    admin
        .execute_unprepared(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    wait_for_health(&app, ServingStatus::Serving).await;
    admin.close().await.ok();
}

/// A valid token without a database round trip (the database may be down).
fn app_token(app: &TestApp) -> String {
    use pasetors::{claims::Claims, keys::SymmetricKey, local, version4::V4};
    let key = SymmetricKey::<V4>::from(&app.token_key).unwrap();
    let mut claims = Claims::new().unwrap();
    claims.subject("1").unwrap();
    local::encrypt(&key, &claims, None, Some(b"monitor.v1")).unwrap()
}

async fn wait_for_health(app: &TestApp, want: ServingStatus) {
    for _ in 0..100 {
        if health_of(app, "").await == want
            && health_of(app, "monitor.v1.MonitorService").await == want
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health never became {want:?}");
}

/// SQLite only: the embedded default makes a key once and keeps it, so
/// tokens survive a restart.
async fn the_embedded_token_key_is_generated_once_and_kept(backend: Backend) {
    if backend == Backend::Postgres {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let mut first = spawn_app_with(backend, |s| {
        s.auth.token_key = None;
        s.data_dir.clone_from(&dir);
    })
    .await;
    let (_, token) = first.user().await;
    first.stop().await;
    drop(first);

    let key_file = dir.join("token.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the key file is readable by its owner only"
    );

    let second = spawn_app_with(backend, |s| {
        s.auth.token_key = None;
        s.data_dir.clone_from(&dir);
    })
    .await;
    second
        .client
        .clone()
        .list_urls(authed(pb::ListUrlsRequest {}, &token))
        .await
        .expect("a token from before the restart still works");
}

async fn run_returns_after_shutdown_is_signalled(backend: Backend) {
    let mut app = spawn_app(backend).await;
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops promptly");
    assert!(
        tokio::net::TcpStream::connect(app.addr).await.is_err(),
        "the listener is closed"
    );
}

crate::on_both_backends!(
    health_reports_serving_for_the_server_and_the_api,
    reflection_v1_and_v1alpha_list_the_service,
    health_is_not_serving_while_the_database_is_unreachable,
    the_embedded_token_key_is_generated_once_and_kept,
    run_returns_after_shutdown_is_signalled,
);

#[test]
fn postgres_without_a_token_key_fails_naming_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let out = monitor_command(tmp.path())
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MONITOR_TOKEN_KEY"), "{stderr}");
}

#[test]
fn a_bad_setting_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = monitor_command(tmp.path())
        .env("MONITOR_MAX_PERIOD", "3h")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MONITOR_MAX_PERIOD"));
    let out = monitor_command(tmp.path())
        .env("MONITOR_GRPC_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MONITOR_GRPC_ADDR")
            || String::from_utf8_lossy(&out.stderr).contains("--grpc-addr")
    );
}

/// The binary on its embedded default: serves, logs JSON with a span per
/// RPC, never logs a password or token, and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_on_the_embedded_default_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = monitor_command(tmp.path());
    cmd.env("RUST_LOG", "debug,h2=info,hyper=info,tower=info");
    let mut server = Running::start(cmd);
    let secret = "Sup3r-Secret-Passw0rd";
    let mut client = server.registered_client("logs@example.com", secret).await;
    assert!(
        tmp.path().join("monitor.db").exists(),
        "SQLite database under the data dir"
    );
    let token = client
        .login(pb::LoginRequest {
            email: "logs@example.com".into(),
            password: secret.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let _ = client
        .login(pb::LoginRequest {
            email: "logs@example.com".into(),
            password: "wrong-password-here".into(),
        })
        .await;
    client
        .add_url(authed(
            pb::AddUrlRequest {
                url: "https://example.com/".into(),
                period: None,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();

    let (exit, log) = server.stop().await;
    assert!(exit.success(), "exit status {exit:?}");
    let all = log.join("\n");
    assert!(
        all.contains("/monitor.v1.MonitorService/AddUrl"),
        "a span per RPC: {all}"
    );
    let add = log
        .iter()
        .find(|l| l.contains("/monitor.v1.MonitorService/AddUrl") && l.contains("call answered"))
        .unwrap_or_else(|| panic!("no answered AddUrl line: {all}"));
    for field in ["\"user_id\"", "\"request_id\"", "\"code\":\"OK\""] {
        assert!(add.contains(field), "{field} missing from {add}");
    }
    for leaked in [secret, "wrong-password-here", token.as_str()] {
        assert!(!all.contains(leaked), "{leaked:?} appeared in the logs");
    }
}

/// The embedded default's data directory is the owner's alone (0700), and
/// so are the files in it (0600): the database holds password hashes, the
/// key signs tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_defaults_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Running::start(monitor_command(&data));
    server
        .registered_client("private@example.com", "correct horse battery")
        .await;
    let mode = |name: &str| {
        std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "the data directory");
    for file in [
        "monitor.db",
        "monitor.db-wal",
        "monitor.db-shm",
        "token.key",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    let (status, _) = server.stop().await;
    assert!(status.success());
}
