//! Test harness: the real server on port 0, a fresh database per test, and
//! the generated client talking to it over a real socket.
//!
//! Postgres comes from `MONITOR_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own
//! database there and drops it afterwards. An unreachable Postgres fails the
//! test; outside CI it may be skipped, loudly, with
//! `MONITOR_TEST_SKIP_POSTGRES=1`.

use std::{net::SocketAddr, time::Duration};

use monitor::{
    app::App,
    config::Settings,
    proto::monitor::v1::{self as pb, monitor_service_client::MonitorServiceClient},
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, transport::Channel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const PASSWORD: &str = "correct horse battery";

/// Generates one `#[tokio::test]` per backend for each named test function,
/// in modules `sqlite` and `postgres` of the calling module.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::helpers::postgres_skipped() {
                        return;
                    }
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}

pub fn postgres_admin_url() -> String {
    std::env::var("MONITOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether Postgres tests are skipped: only outside CI, only when asked.
pub fn postgres_skipped() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let asked = std::env::var("MONITOR_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1");
    if asked && !ci {
        eprintln!("SKIPPED: Postgres test (MONITOR_TEST_SKIP_POSTGRES=1)");
        return true;
    }
    false
}

/// A database made for one test, dropped when the test ends.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    name: Option<String>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: String::new(),
                name: None,
            },
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let admin = Database::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "Postgres is unreachable at {admin_url}: {e}. Start it (bash .ci/run \
                         installs and starts it) or set MONITOR_TEST_POSTGRES_URL."
                    )
                });
                let name = format!("monitor_test_{}", uuid::Uuid::new_v4().simple());
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("creating the test database");
                admin.close().await.ok();
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(b, _)| b);
                Self {
                    url: format!("{base}/{name}"),
                    name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else { return };
        // Drop runs outside async; a short-lived runtime on its own thread does the I/O.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(admin) = Database::connect(postgres_admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    admin.close().await.ok();
                }
            });
        })
        .join();
    }
}

/// A running server and a client connected to it.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    /// The HTTP side (JSON gateway).
    pub http_addr: SocketAddr,
    pub client: MonitorServiceClient<Channel>,
    pub db: DatabaseConnection,
    pub token_key: [u8; 32],
    pub database: TestDatabase,
    /// The settings this app runs with, to start siblings on the same stores.
    pub settings: Settings,
    /// The app's buffer (results pushed here are live events too).
    pub buffer: std::sync::Arc<dyn monitor::buffer::Buffer>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _tmp: TempDir,
}

/// Settings for a test: port 0, a temporary data directory, a random token
/// key, and nothing from the environment that could point elsewhere.
pub fn test_settings(
    data_dir: &std::path::Path,
    database: &TestDatabase,
    key: [u8; 32],
) -> Settings {
    let mut s = Settings::for_tests(data_dir);
    s.grpc_addr = "127.0.0.1:0".parse().unwrap();
    s.http_addr = "127.0.0.1:0".parse().unwrap();
    s.database_url = (!database.url.is_empty()).then(|| database.url.clone());
    s.redis_url = None;
    s.auth.token_key = Some(hex::encode(key));
    s.prober.probe.allow_private_targets = true;
    // API tests add URLs nobody should probe (example.com); the prober
    // tests turn it on and point it at their own local target.
    s.prober.enabled = false;
    // Tests register many users from one address; the limit has its own test.
    s.auth.login.register_per_peer = 1_000_000;
    // Prober tests probe one local target many times a second; the per-host
    // rate has its own tests.
    s.urls.max_host_rate = 1_000_000.0;
    s.db_max_connections = 5;
    s.shutdown_grace = Duration::from_secs(5);
    s
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, customize: impl FnOnce(&mut Settings)) -> TestApp {
    // Server errors (WARN and up) in the output of the test that failed.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(backend).await;
    let key: [u8; 32] = rand::random();
    let mut settings = test_settings(tmp.path(), &database, key);
    customize(&mut settings);
    TestApp::start(settings, database, key, tmp).await
}

/// The shared test Redis (`MONITOR_TEST_REDIS_URL`, default 127.0.0.1:6379).
pub fn test_redis_url() -> String {
    std::env::var("MONITOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// What `redis-cli --raw` prints for `args` against the test Redis.
pub fn redis_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["--raw", "-u", &test_redis_url()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many results a Redis results stream holds: each entry's count
/// field, or 1 for an entry of one result.
pub fn results_in_stream(stream: &str) -> u64 {
    let listed = redis_cli(&["XRANGE", stream, "-", "+"]);
    let lines: Vec<&str> = listed.lines().collect();
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| match *line {
            "n" => lines.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(0),
            "r" => 1,
            _ => 0,
        })
        .sum()
}

/// Points settings at the test Redis under a prefix no other test uses.
pub fn use_redis(s: &mut Settings) {
    s.redis_url = Some(test_redis_url());
    s.buffer.redis_prefix = format!("monitor-test-{}", uuid::Uuid::new_v4().simple());
}

/// Settings for a prober test: fast schedule and flush, short periods allowed.
pub fn prober_settings(s: &mut Settings) {
    s.prober.enabled = true;
    s.urls.min_period = Duration::from_secs(1);
    s.prober.probe.timeout = Duration::from_secs(1);
    s.prober.tick = Some(Duration::from_millis(50));
    s.flush.interval = Duration::from_millis(200);
    s.shutdown_grace = Duration::from_secs(5);
    // DNS/connect/timeout failures wait for their mass-failure window's
    // judgement (`prober::doubt`): a short window keeps that wait short.
    s.prober.doubt.mass_failure_window = Duration::from_secs(1);
}

impl TestApp {
    /// `http://<http_addr><path>`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// Sends `method path` to the JSON side with an optional JSON body and
    /// `authorization` value; returns the status and the parsed JSON body.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        authorization: Option<&str>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = reqwest::Client::new().request(method, self.http_url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(auth) = authorization {
            req = req.header("authorization", auth);
        }
        let res = req.send().await.expect("HTTP request");
        let status = res.status();
        let text = res.text().await.expect("HTTP body");
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, json)
    }

    /// POSTs a JSON body to the HTTP side.
    pub async fn post_json(
        &self,
        path: &str,
        body: serde_json::Value,
        authorization: Option<&str>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        self.json(reqwest::Method::POST, path, Some(body), authorization)
            .await
    }

    /// GETs a path of the HTTP side.
    pub async fn get_json(
        &self,
        path: &str,
        authorization: Option<&str>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        self.json(reqwest::Method::GET, path, None, authorization)
            .await
    }

    /// Builds and runs an app on these settings; its own data in `tmp`.
    async fn start(
        settings: Settings,
        database: TestDatabase,
        token_key: [u8; 32],
        tmp: TempDir,
    ) -> TestApp {
        let app = App::build(settings.clone())
            .await
            .expect("building the app");
        let addr = app.grpc_addr();
        let http_addr = app.http_addr();
        let db = app.db().clone();
        let buffer = app.buffer();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        let client = MonitorServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connecting to the server");
        TestApp {
            addr,
            http_addr,
            client,
            db,
            token_key,
            database,
            settings,
            buffer,
            shutdown,
            server: Some(server),
            _tmp: tmp,
        }
    }

    /// Another instance on the same database, Redis prefix and token key.
    pub async fn sibling(&self, customize: impl FnOnce(&mut Settings)) -> TestApp {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut settings = self.settings.clone();
        settings.data_dir = if self.settings.database_url.is_none() {
            self.settings.data_dir.clone()
        } else {
            tmp.path().to_owned()
        };
        customize(&mut settings);
        let database = TestDatabase {
            url: self.database.url.clone(),
            name: None,
        };
        TestApp::start(settings, database, self.token_key, tmp).await
    }

    /// Adds a URL with a period in seconds.
    pub async fn add_url_every(&self, token: &str, url: &str, seconds: i64) -> pb::Url {
        let period = pbjson_types::Duration { seconds, nanos: 0 };
        self.add_url_with(token, url, Some(period)).await
    }

    async fn add_url_with(
        &self,
        token: &str,
        url: &str,
        period: Option<pbjson_types::Duration>,
    ) -> pb::Url {
        self.client
            .clone()
            .add_url(authed(
                pb::AddUrlRequest {
                    url: url.into(),
                    period,
                    ..Default::default()
                },
                token,
            ))
            .await
            .expect("add url")
            .into_inner()
            .url
            .expect("url in response")
    }

    /// Every status of a URL, oldest first.
    pub async fn statuses(&self, token: &str, url_id: i64) -> Vec<pb::Status> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let resp = self
                .client
                .clone()
                .list_statuses(authed(
                    pb::ListStatusesRequest {
                        url_id,
                        page_size: 1000,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .expect("list statuses")
                .into_inner();
            all.extend(resp.statuses);
            if resp.next_page_token.is_empty() {
                break;
            }
            page_token = resp.next_page_token;
        }
        all.reverse();
        all
    }

    /// Waits until a URL has at least `n` statuses (at most `within`).
    pub async fn wait_for_statuses(
        &self,
        token: &str,
        url_id: i64,
        n: usize,
        within: Duration,
    ) -> Vec<pb::Status> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.statuses(token, url_id).await;
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "url {url_id}: {} statuses after {within:?}, wanted {n}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    /// A fresh client on its own connection.
    pub async fn new_client(&self) -> MonitorServiceClient<Channel> {
        MonitorServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connecting")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connecting")
    }

    /// Registers a user with a unique email and returns (id, email).
    pub async fn register(&self) -> (i64, String) {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let resp = self
            .client
            .clone()
            .register(pb::RegisterRequest {
                email: email.clone(),
                password: PASSWORD.into(),
            })
            .await
            .expect("register")
            .into_inner();
        (resp.id, email)
    }

    pub async fn login(&self, email: &str) -> String {
        self.client
            .clone()
            .login(pb::LoginRequest {
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await
            .expect("login")
            .into_inner()
            .token
    }

    /// Registers and logs in a new user: (id, token).
    pub async fn user(&self) -> (i64, String) {
        let (id, email) = self.register().await;
        (id, self.login(&email).await)
    }

    pub async fn add_url(&self, token: &str, url: &str) -> pb::Url {
        self.add_url_with(token, url, None).await
    }

    /// GetUrl of one of the user's URLs.
    pub async fn get_url(&self, token: &str, id: i64) -> pb::Url {
        self.client
            .clone()
            .get_url(authed(pb::GetUrlRequest { id }, token))
            .await
            .expect("get url")
            .into_inner()
    }

    /// ListIncidents of one of the user's URLs (0: all of them), newest first.
    pub async fn incidents(&self, token: &str, url_id: i64) -> Vec<pb::Incident> {
        self.client
            .clone()
            .list_incidents(authed(
                pb::ListIncidentsRequest {
                    url_id,
                    ..Default::default()
                },
                token,
            ))
            .await
            .expect("list incidents")
            .into_inner()
            .incidents
    }

    /// A new connection to the app's database (the app's own closes when it stops).
    pub async fn open_db(&self) -> DatabaseConnection {
        Database::connect(self.settings.effective_database_url())
            .await
            .expect("connecting to the app's database")
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task panicked")
                .expect("server failed");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A request carrying `authorization: Bearer <token>`.
/// The one number `sql` returns (an `int8`).
pub async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<i64>(0)
    .unwrap()
}

pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    with_authorization(msg, &format!("Bearer {token}"))
}

pub fn with_authorization<T>(msg: T, value: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", value.parse().expect("ascii metadata"));
    req
}

/// Asserts an RPC failed with `code` and returns the status for more checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: tonic::Code,
) -> tonic::Status {
    match result {
        Ok(resp) => panic!("expected {code:?}, got success: {resp:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// Asserts INVALID_ARGUMENT naming `field`, in the message and in the details.
#[track_caller]
pub fn expect_invalid<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    field: &str,
) -> tonic::Status {
    use tonic_types::StatusExt;
    let status = expect_code(result, tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with(&format!("{field}:")),
        "message should name {field}: {:?}",
        status.message()
    );
    let bad = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries google.rpc.BadRequest details");
    assert_eq!(bad.field_violations[0].field, field);
    status
}

/// A Python virtual environment under the repository's `.venv` with the
/// tools the tests drive (tests/requirements.txt: grpcurl, schemathesis,
/// grpcio-tools), created on first use. Returns its `bin` directory.
pub fn tools_venv() -> std::path::PathBuf {
    static VENV: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let venv = root.join(".venv");
        let bin = venv.join("bin");
        let requirements = root.join("tests/requirements.txt");
        let wanted = std::fs::read_to_string(&requirements).expect("tests/requirements.txt");
        let stamp = venv.join(".monitor-test-requirements");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            return bin;
        }
        let run = |cmd: &mut std::process::Command| {
            let out = cmd
                .output()
                .expect("running python3 (needed for tool tests)");
            assert!(
                out.status.success(),
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if !bin.join("pip").exists() {
            run(std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv));
        }
        run(std::process::Command::new(bin.join("pip"))
            .args(["install", "-q", "-r"])
            .arg(&requirements));
        std::fs::write(&stamp, wanted).expect("writing the venv stamp");
        bin
    })
    .clone()
}

/// A free port for a server the test stops and starts again on the same
/// port. It is taken below the kernel's ephemeral range, so while the server
/// is down no outgoing connection (of this or a parallel test) can be given
/// it as a source port and keep the restart from binding.
pub fn restartable_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (low.saturating_sub(12_000).max(1024), low.saturating_sub(1));
    loop {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), from..=to);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
