//! Serving accepted connections, on both ports, within bounds.
//!
//! One accept loop ([`serve`]) runs the gRPC port and the JSON port on
//! hyper's connection builder, so that no client can hold the process's
//! file descriptors:
//! - at most `max_connections` are open per port; past it a new connection
//!   is accepted and closed at once, so descriptors stay bounded and the
//!   connections already open, and the other port, keep working;
//! - a client must send its first bytes within `header_read_timeout`, and
//!   each HTTP/1 request head too (hyper's header-read timeout, which also
//!   times the wait for the next request on a kept-alive connection: it is
//!   the HTTP/1 keep-alive idle timeout);
//! - a connection with no call in flight for `idle_timeout` is closed
//!   (HTTP/2 with a GOAWAY first, so a call racing the close is refused
//!   cleanly rather than cut), and dropped if it is still open one
//!   `header_read_timeout` later;
//! - HTTP/2 peers are pinged every `http2_keepalive_interval` and dropped
//!   when a ping goes unanswered for `http2_keepalive_timeout`.
//!
//! Each connection gets TCP_NODELAY, and its requests carry the peer
//! address the way tonic (`TcpConnectInfo`, for `remote_addr`) and axum
//! (`ConnectInfo`) expect it. On shutdown the listener is closed, every
//! connection is asked to finish (GOAWAY, or close after the current
//! response) and [`serve`] returns once they all have; `App::run` bounds
//! that with the grace period, and dropping the future drops them all.
//!
//! The soft open-file limit is raised to the hard one at start-up
//! ([`raise_open_file_limit`]) and the per-port cap is kept under a quarter
//! of it, leaving the rest to the database pool, Redis and the prober.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpConnectInfo;
use tower::{Service, ServiceExt};

use super::protocol_errors::JsonProtocolErrors;
use crate::error::{SettingsError, check_setting};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits on the connections of both ports.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionSettings {
    /// Most connections open at once on each port; past it a new connection
    /// is closed at once. Lowered at start-up to a quarter of the open-file
    /// limit.
    #[arg(long, env = "MONITOR_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// How long a client has to send its first bytes after connecting, and
    /// each HTTP/1 request head (also the HTTP/1 keep-alive idle timeout).
    #[arg(long, env = "MONITOR_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection with no call in flight for this long is closed (HTTP/2
    /// with a GOAWAY; HTTP/1 waiting for a request closes sooner, at the
    /// header-read timeout).
    #[arg(long, env = "MONITOR_CONNECTION_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// How often an HTTP/2 peer is pinged.
    #[arg(long, env = "MONITOR_HTTP2_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// An HTTP/2 peer that does not answer a ping within this is dropped.
    #[arg(long, env = "MONITOR_HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,
}

impl ConnectionSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_setting(
            self.max_connections >= 1,
            "MONITOR_MAX_CONNECTIONS",
            "must be at least 1",
        )?;
        check_setting(
            (Duration::from_millis(100)..=Duration::from_secs(300))
                .contains(&self.header_read_timeout),
            "MONITOR_HEADER_READ_TIMEOUT",
            "must be between 100ms and 5m",
        )?;
        check_setting(
            self.idle_timeout >= Duration::from_millis(100),
            "MONITOR_CONNECTION_IDLE_TIMEOUT",
            "must be at least 100ms",
        )?;
        check_setting(
            self.http2_keepalive_interval >= Duration::from_secs(1),
            "MONITOR_HTTP2_KEEPALIVE_INTERVAL",
            "must be at least 1s",
        )?;
        check_setting(
            self.http2_keepalive_timeout >= Duration::from_millis(100),
            "MONITOR_HTTP2_KEEPALIVE_TIMEOUT",
            "must be at least 100ms",
        )
    }

    /// The cap per port under an open-file limit of `open_files`: the
    /// setting, or a quarter of the limit if that is lower (two ports, and
    /// room for the database, Redis, probes and files), at least 1.
    pub fn cap(&self, open_files: u64) -> usize {
        let quarter = usize::try_from(open_files / 4).unwrap_or(usize::MAX);
        self.max_connections.min(quarter).max(1)
    }
}

/// Raises the soft open-file limit to the hard limit; returns the limit now
/// in force (logged by the caller).
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
            tracing::warn!(error = %e, soft, "could not raise the open-file limit");
            soft
        }
    }
}

/// One port: what it is called in logs, its cap, whether it speaks HTTP/2
/// only or both versions (both ports do: gRPC-Web comes over HTTP/1.1 to the
/// gRPC port), and how hyper's own error answers are worded.
#[derive(Debug, Clone)]
pub struct Port {
    pub name: &'static str,
    pub max_connections: usize,
    pub http2_only: bool,
    /// hyper's own answers to requests it cannot parse get a JSON body
    /// ([`JsonProtocolErrors`]): the JSON port.
    pub json_protocol_errors: bool,
}

/// Serves `service` on every connection `listener` accepts until
/// `shutdown`, then waits for the open connections to finish.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    port: Port,
    settings: ConnectionSettings,
    shutdown: CancellationToken,
) where
    S: Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_timeout);
    if port.http2_only {
        builder = builder.http2_only();
    }
    let permits = Arc::new(Semaphore::new(port.max_connections));
    let mut connections = JoinSet::new();
    let mut at_cap = false;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors (the cap leaves room, but other
                    // things open files too): wait rather than spin.
                    tracing::error!(port = port.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if !at_cap {
                tracing::warn!(
                    port = port.name,
                    max_connections = port.max_connections,
                    "connection cap reached: new connections are closed until one ends"
                );
                at_cap = true;
            }
            drop(stream);
            continue;
        };
        at_cap = false;
        // A small response must not wait for the peer's delayed ACK
        // (Nagle), which costs ~40 ms per exchange.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let local = stream.local_addr().ok();
        let io = Watched::new(stream, permit);
        let activity = io.activity.clone();
        let limits = (settings.header_read_timeout, settings.idle_timeout);
        let (service, builder, shutdown) = (service.clone(), builder.clone(), shutdown.clone());
        if port.json_protocol_errors {
            connections.spawn(serve_connection(
                JsonProtocolErrors::new(io),
                activity,
                (local, peer),
                service,
                builder,
                limits,
                shutdown,
            ));
        } else {
            connections.spawn(serve_connection(
                io,
                activity,
                (local, peer),
                service,
                builder,
                limits,
                shutdown,
            ));
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Errors of one connection that did not make it through accept (the
/// listener itself is fine), as axum's `serve` tells them apart.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection<IO, S, B>(
    io: IO,
    activity: Arc<Activity>,
    (local, peer): (Option<SocketAddr>, SocketAddr),
    service: S,
    builder: auto::Builder<TokioExecutor>,
    (header_read_timeout, idle_timeout): (Duration, Duration),
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let calls = activity.clone();
    let hyper_service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(TcpConnectInfo {
            local_addr: local,
            remote_addr: Some(peer),
        });
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = calls.begin();
        let response = service.clone().oneshot(req);
        async move {
            let response = response.await?;
            // The call is in flight until its body is sent (or dropped).
            Ok::<_, Infallible>(response.map(move |body| {
                body.map_frame(move |frame| {
                    let _in_flight = &call;
                    frame
                })
            }))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), hyper_service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    // Once an idle connection is asked to close: when it is dropped anyway.
    let mut drop_at: Option<Instant> = None;
    loop {
        let check_at =
            drop_at.unwrap_or_else(|| activity.next_check(header_read_timeout, idle_timeout));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(check_at), if !shutting_down => {
                if drop_at.is_some() {
                    tracing::debug!(%peer, "idle connection did not close: dropped");
                    return;
                }
                match activity.state(header_read_timeout, idle_timeout) {
                    State::Silent => {
                        tracing::debug!(%peer, "nothing received within the header-read timeout: closed");
                        return;
                    }
                    State::Idle => {
                        tracing::debug!(%peer, "idle connection: closing");
                        conn.as_mut().graceful_shutdown();
                        drop_at = Some(Instant::now() + header_read_timeout);
                    }
                    State::Active => {}
                }
            }
        }
    }
}

/// What the watchdog found on a connection.
enum State {
    /// Nothing received since it was accepted, for the header-read timeout.
    Silent,
    /// No call in flight for the idle timeout.
    Idle,
    Active,
}

/// What a connection has done: whether it sent anything, its calls in
/// flight and when the last one ended (milliseconds since it was accepted).
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    received: AtomicBool,
    in_flight: AtomicUsize,
    last_call_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            received: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_call_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        CallGuard(self.clone())
    }

    fn idle_since(&self) -> Instant {
        self.accepted + Duration::from_millis(self.last_call_ms.load(Ordering::SeqCst))
    }

    fn next_check(&self, header_read_timeout: Duration, idle_timeout: Duration) -> Instant {
        if !self.received.load(Ordering::SeqCst) {
            (self.accepted + header_read_timeout).min(self.idle_since() + idle_timeout)
        } else if self.in_flight.load(Ordering::SeqCst) > 0 {
            Instant::now() + idle_timeout
        } else {
            self.idle_since() + idle_timeout
        }
    }

    fn state(&self, header_read_timeout: Duration, idle_timeout: Duration) -> State {
        let now = Instant::now();
        if !self.received.load(Ordering::SeqCst) && now >= self.accepted + header_read_timeout {
            State::Silent
        } else if self.in_flight.load(Ordering::SeqCst) == 0
            && now >= self.idle_since() + idle_timeout
        {
            State::Idle
        } else {
            State::Active
        }
    }
}

/// A call in flight; its end is the start of the connection's idle time.
#[derive(Debug)]
struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_call_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted stream holding its place under the cap (released when the
/// stream is dropped) and noting when the client first sends something.
#[derive(Debug)]
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl Watched {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            activity: Arc::new(Activity::new()),
            _permit: permit,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received.store(true, Ordering::SeqCst);
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_connections: usize) -> ConnectionSettings {
        ConnectionSettings {
            max_connections,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            http2_keepalive_interval: Duration::from_secs(60),
            http2_keepalive_timeout: Duration::from_secs(20),
        }
    }

    #[test]
    fn the_cap_fits_a_quarter_of_the_open_file_limit() {
        assert_eq!(settings(10_000).cap(1024), 256);
        assert_eq!(settings(100).cap(1_048_576), 100);
        assert_eq!(settings(100).cap(2), 1);
    }
}
