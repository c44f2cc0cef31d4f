//! Builds the server from settings and runs it until shutdown.
//!
//! [`App::build`] does everything that can fail at start-up (validating
//! settings, connecting and migrating the database, loading the token key,
//! binding the listener) and returns the real bound address, so tests bind
//! port 0 and learn the port. [`App::run`] serves until the shutdown token is
//! cancelled, then drains in-flight calls for at most the grace period.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;

use tokio::sync::Notify;

use crate::{
    api::{
        client_faults::ClientFaultLayer,
        connections::{self, Port},
        deadline::DeadlineLayer,
        grpc::MonitorApi,
        grpc_web, http as json_api,
        observe::{self, GrpcObserveLayer},
        openapi,
    },
    auth::{AuthLayer, TokenKeys, parse_token_key, password},
    buffer::{Buffer, MemoryBuffer, RedisBuffer},
    config::{DatabaseKind, Settings},
    deliver::Deliverer,
    domain::rollup::Tier,
    flush::Flusher,
    health::Health,
    live::{Hub, LiveBuffer, Publisher, redis::RedisFeed},
    metrics::Metrics,
    prober::{Probe, ProbeRuntime, Prober},
    proto::{FILE_DESCRIPTOR_SET, monitor::v1::monitor_service_server::MonitorServiceServer},
    service::{
        AccountService, ChannelService, IncidentService, MaintenanceService, Services,
        StatsService, StatusPageService, StatusService, UrlService, events::EventService,
    },
    store,
};

#[derive(Debug)]
pub struct App {
    settings: Settings,
    db: DatabaseConnection,
    services: Services,
    keys: Arc<TokenKeys>,
    grpc_listener: TcpListener,
    grpc_addr: SocketAddr,
    metrics: Arc<Metrics>,
    http_listener: TcpListener,
    http_addr: SocketAddr,
    buffer: Arc<dyn Buffer>,
    prober: Prober,
    flusher: Flusher,
    deliverer: Deliverer,
    /// Ends every WatchEvents stream (at shutdown).
    watch_stop: CancellationToken,
    /// With Redis: the task that reads the shared events into the ring.
    live_feed: Option<(Arc<RedisFeed>, Arc<Hub>)>,
    /// The open-file limit in force (raised to the hard limit at build).
    open_files: u64,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let open_files = connections::raise_open_file_limit();
        tracing::info!(
            open_files,
            max_connections_per_port = settings.connections.cap(open_files),
            "open-file limit"
        );
        // reqwest and sqlx both use rustls with ring; pick the provider once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Both ports first: an address in use stops start-up before the
        // data directory, the database or the key file is written.
        let (grpc_listener, grpc_addr) = bind(settings.grpc_addr, "MONITOR_GRPC_ADDR").await?;
        let (http_listener, http_addr) = bind(settings.http_addr, "MONITOR_HTTP_ADDR").await?;
        let db = open_database(&settings).await?;
        let key = token_key(&settings)?;
        let mut token_keys = TokenKeys::new(&key, settings.auth.token_ttl);
        if let Some(previous) = &settings.auth.token_key_previous {
            token_keys = token_keys.with_previous(&parse_token_key(previous)?);
        }
        let keys = Arc::new(token_keys);

        let metrics = Arc::new(Metrics::new());
        let wake_scheduler = Arc::new(Notify::new());
        let urls = Arc::new(UrlService::new(
            db.clone(),
            &settings.urls,
            wake_scheduler.clone(),
        ));
        let retained = settings.events.events_retained;
        let (hub, feed) = match &settings.redis_url {
            // Shared by every instance through Redis: a token is good on any.
            Some(url) => (
                Arc::new(Hub::shared(retained)),
                Some(Arc::new(RedisFeed::connect(
                    url,
                    &settings.buffer.redis_prefix,
                    retained,
                )?)),
            ),
            None => (Arc::new(Hub::local(retained)), None),
        };
        let watch_stop = CancellationToken::new();
        let services = services(&settings, &db, &keys, urls, &hub, &watch_stop);

        // Every result pushed is a live event too (WatchEvents).
        let inner = buffer(&settings).await?;
        let publisher = match &feed {
            Some(feed) => Publisher::Shared(feed.clone()),
            None => Publisher::Local(hub.clone()),
        };
        let buffer: Arc<dyn Buffer> = Arc::new(LiveBuffer::new(inner, publisher.clone()));
        let live_feed = feed.map(|feed| (feed, hub));
        let probe =
            Probe::new(settings.prober.probe.clone()).context("building the probe HTTP client")?;
        let mut prober = Prober::new(
            db.clone(),
            probe,
            buffer.clone(),
            settings.prober.clone(),
            wake_scheduler,
            metrics.clone(),
        );
        let probe_threads = settings.prober.threads(settings.database_url.is_some());
        if settings.prober.enabled && probe_threads > 0 {
            let runtime =
                ProbeRuntime::start(probe_threads).context("starting the probes' runtime")?;
            prober = prober.with_runtime(runtime);
        }
        let flusher = Flusher::new(db.clone(), buffer.clone(), settings.flush.clone())
            .with_metrics(metrics.clone())
            .with_live(publisher);
        let deliverer = Deliverer::new(
            db.clone(),
            settings.delivery.clone(),
            settings.prober.probe.allow_private_targets,
        )
        .context("building the notification HTTP client")?
        .with_metrics(metrics.clone());

        tokio::task::spawn_blocking(password::warm_up);

        Ok(Self {
            settings,
            db,
            services,
            keys,
            grpc_listener,
            grpc_addr,
            metrics,
            http_listener,
            http_addr,
            buffer,
            prober,
            flusher,
            deliverer,
            watch_stop,
            live_feed,
            open_files,
        })
    }

    /// The buffer results wait in.
    pub fn buffer(&self) -> Arc<dyn Buffer> {
        self.buffer.clone()
    }

    /// The delivery worker's step function, for tools and tests.
    pub fn deliverer(&self) -> Deliverer {
        self.deliverer.clone()
    }

    /// The flush task's step functions, for tools and tests.
    pub fn flusher(&self) -> Flusher {
        self.flusher.clone()
    }

    /// The address the gRPC API is listening on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The address the HTTP side (JSON gateway) is listening on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The database connection, for tools and tests that seed data.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Serves until `shutdown` is cancelled, then drains.
    #[allow(clippy::too_many_lines)] // one sequence: start, serve, drain
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = Arc::new(Health::new(
            self.db.clone(),
            self.buffer.clone(),
            self.settings.redis_url.is_some(),
            reporter,
            self.metrics.clone(),
        ));
        health.check().await;
        tasks.spawn(
            health
                .clone()
                .watch(self.settings.health_interval, shutdown.clone()),
        );
        // Open event streams end when the shutdown starts, so that they do
        // not hold the drain for its whole grace.
        let (stop, watch_stop) = (shutdown.clone(), self.watch_stop.clone());
        tasks.spawn(async move {
            stop.cancelled().await;
            watch_stop.cancel();
        });
        if let Some((feed, hub)) = self.live_feed.clone() {
            tasks.spawn(feed.run(hub, shutdown.clone()));
        }
        // Every instance sends the outbox; claims keep them apart.
        tasks.spawn(self.deliverer.clone().run(shutdown.clone()));
        let accounts = self.services.accounts.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(60)) => accounts.prune_limits(),
                }
            }
        });

        // The prober stops first; the flusher then drains what it pushed.
        let stop_flusher = CancellationToken::new();
        let pipeline = self.settings.prober.enabled.then(|| {
            let prober = tokio::spawn(
                self.prober
                    .clone()
                    .run(shutdown.clone(), self.settings.shutdown_grace),
            );
            let flusher = tokio::spawn(self.flusher.clone().run(stop_flusher.clone()));
            (prober, flusher)
        });

        let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("building reflection v1alpha")?;

        tracing::info!(
            grpc_addr = %self.grpc_addr,
            http_addr = %self.http_addr,
            database = ?self.settings.database_kind(),
            "serving"
        );
        let api = MonitorApi::new(self.services.clone());
        let http_app = json_api::router(
            api.clone(),
            json_api::HttpParts {
                keys: self.keys.clone(),
                max_body: self.settings.http_max_body,
                metrics: self.metrics.clone(),
                health: health.clone(),
                openapi: Arc::new(openapi::document(self.services.urls.bounds())),
                status_page_cache: self.settings.status_pages.status_page_cache,
            },
        );
        // Both ports share one accept loop: a cap on connections, timeouts,
        // keepalive pings and TCP_NODELAY (see api::connections).
        let max_connections = self.settings.connections.cap(self.open_files);
        let http_server = tokio::spawn(connections::serve(
            self.http_listener,
            http_app,
            Port {
                name: "http",
                max_connections,
                http2_only: false,
                json_protocol_errors: true,
            },
            self.settings.connections.clone(),
            shutdown.clone(),
        ));

        // gRPC-Web for browsers (and CORS for MONITOR_CORS_ORIGINS) in front
        // of the same services (see api::grpc_web).
        let (refuse_origins, cors, grpc_web) = grpc_web::layers(&self.settings.cors);
        let grpc_service = ServiceBuilder::new()
            .layer(refuse_origins)
            .layer(cors)
            .layer(grpc_web)
            .layer(observe::request_id_layers())
            .layer(GrpcObserveLayer::new(self.metrics.clone()))
            .layer(ClientFaultLayer)
            .layer(DeadlineLayer)
            .layer(AuthLayer::new(self.keys.clone()))
            .service(
                Routes::new(health_service)
                    .add_service(reflection_v1)
                    .add_service(reflection_v1alpha)
                    .add_service(MonitorServiceServer::new(api))
                    .prepare(),
            );
        let server = tokio::spawn(connections::serve(
            self.grpc_listener,
            grpc_service,
            Port {
                name: "grpc",
                max_connections,
                // gRPC-Web comes over HTTP/1.1 too.
                http2_only: false,
                json_protocol_errors: false,
            },
            self.settings.connections.clone(),
            shutdown.clone(),
        ));

        let grace = self.settings.shutdown_grace;
        let aborts = [server.abort_handle(), http_server.abort_handle()];
        // Whichever server ends first (a failure) stops the other.
        let grpc = async {
            let r = server.await;
            shutdown.cancel();
            r.context("gRPC server task panicked")
        };
        let http = async {
            let r = http_server.await;
            shutdown.cancel();
            r.context("HTTP server task panicked")
        };
        let result = tokio::select! {
            (g, h) = async { tokio::join!(grpc, http) } => g.and(h),
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "in-flight calls did not finish within the grace period");
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
                Ok(())
            }
        };
        // Stop background tasks whatever ended the server.
        shutdown.cancel();
        health.set(ServingStatus::NotServing).await;
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("background tasks did not stop within the grace period");
        }
        if let Some((prober, flusher)) = pipeline {
            let _ = tokio::time::timeout(grace * 2, prober).await;
            stop_flusher.cancel();
            if tokio::time::timeout(grace, flusher).await.is_err() {
                tracing::warn!("the final flush did not finish within the grace period");
            }
        }
        self.db.close().await.ok();
        tracing::info!("stopped");
        result
    }
}

/// Binds one listener; an error names the setting and what to do.
async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "binding {setting} {addr} (stop what listens there, or set another address; port 0 picks a free one)"
        )
    })?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Creates the data directory readable by the owner only (0700); one that
/// exists already and others can read is reported, not changed.
fn ensure_data_dir(settings: &Settings) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = &settings.data_dir;
    let context = || format!("creating the data directory {}", dir.display());
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(context)?;
    }
    let mode = std::fs::metadata(dir)
        .with_context(context)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory is readable by other users; `chmod 700` it (it holds password hashes and the token key)"
        );
    }
    Ok(())
}

/// The embedded database's files (`monitor.db`, `-wal`, `-shm`) are the
/// owner's alone (0600): they hold password hashes. SQLite creates the
/// journal files with the database file's mode, so the database file is
/// created 0600 before SQLite opens it, and tightened if it was not.
fn protect_sqlite_files(settings: &Settings) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let db = settings.data_dir.join("monitor.db");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&db)
        .with_context(|| format!("creating {}", db.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let path = settings.data_dir.join(format!("monitor.db{suffix}"));
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private", path.display()))?;
        }
    }
    Ok(())
}

/// Opens the database the settings select (creating the data directory for
/// the embedded default) and applies pending migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    if settings.database_url.is_none() {
        ensure_data_dir(settings)?;
        protect_sqlite_files(settings)?;
    }
    store::connect(
        &settings.effective_database_url(),
        settings.db_max_connections,
    )
    .await
}

/// Reflection over every service this server has (ours, health, both
/// reflection versions) and the google.rpc error details it sends, so
/// grpcurl can list, describe and decode all of them.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// The buffer the settings select: Redis when `REDIS_URL` is set, else in process.
/// The services, over one database connection.
fn services(
    settings: &Settings,
    db: &DatabaseConnection,
    keys: &Arc<TokenKeys>,
    urls: Arc<UrlService>,
    hub: &Arc<Hub>,
    watch_stop: &CancellationToken,
) -> Services {
    let incidents = Arc::new(IncidentService::new(db.clone(), urls.clone()));
    let stats = Arc::new(StatsService::new(
        db.clone(),
        urls.clone(),
        Tier::ALL.map(|t| (t, settings.flush.rollup_setting(t).1)),
        // A result lands within a probe's timeout and a flush, a network
        // failure once its window is judged (`prober::doubt`).
        settings.prober.probe.timeout
            + settings.flush.interval
            + Duration::from_secs(5)
            + settings.prober.doubt.mass_failure_window
            + settings
                .prober
                .doubt
                .judge_delay(settings.prober.probe.timeout),
    ));
    Services {
        events: Arc::new(EventService::new(
            db.clone(),
            urls.clone(),
            hub.clone(),
            settings.events.clone(),
            watch_stop.clone(),
        )),
        accounts: Arc::new(AccountService::new(
            db.clone(),
            keys.clone(),
            settings.auth.login,
        )),
        statuses: Arc::new(StatusService::new(db.clone(), urls.clone())),
        status_pages: Arc::new(StatusPageService::new(db.clone(), urls.clone())),
        incidents,
        stats,
        channels: Arc::new(ChannelService::new(
            db.clone(),
            &settings.channels,
            settings.prober.probe.allow_private_targets,
            settings.delivery.email_enabled(),
        )),
        maintenance: Arc::new(MaintenanceService::new(db.clone())),
        urls,
    }
}

async fn buffer(settings: &Settings) -> anyhow::Result<Arc<dyn Buffer>> {
    Ok(match &settings.redis_url {
        Some(url) => Arc::new(
            RedisBuffer::connect(
                url,
                &settings.buffer.redis_prefix,
                settings.buffer.consumer(),
                settings.buffer.local_queue_capacity,
                settings.flush.batch,
            )
            .await?,
        ),
        None => Arc::new(MemoryBuffer::new(
            settings.buffer.local_queue_capacity,
            settings.flush.batch,
        )),
    })
}

/// The token key: from the setting, or for the embedded default, generated
/// once and kept in the data directory (readable by the owner only).
fn token_key(settings: &Settings) -> anyhow::Result<[u8; 32]> {
    if let Some(hex_key) = &settings.auth.token_key {
        return Ok(parse_token_key(hex_key)?);
    }
    anyhow::ensure!(
        settings.database_kind() == DatabaseKind::Sqlite,
        "MONITOR_TOKEN_KEY is required with Postgres"
    );
    let path = settings.data_dir.join("token.key");
    ensure_data_dir(settings)?;
    load_or_create_key(&path)
}

fn load_or_create_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the token key is readable by other users, who could forge tokens; `chmod 600` it"
        );
    }
    match std::fs::read_to_string(path) {
        Ok(text) => parse_token_key(&text)
            .with_context(|| format!("reading the token key in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating the token key file {}", path.display()))?;
            writeln!(file, "{}", hex::encode(key))
                .with_context(|| format!("writing the token key file {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a token key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading the token key file {}", path.display())),
    }
}
