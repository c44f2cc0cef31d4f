//! The plain HTTP probe: an `http://` URL with no credentials in it, when
//! no redirect is to be followed, is probed over one hyper HTTP/1.1
//! connection of its own instead of through reqwest's client (its pool,
//! its layers and its second URL parse). Against reqwest, alternated at
//! 100,000 URLs a minute on local nginx, the probe thread took 0.70–0.82×
//! the CPU (README, "Performance, round two"). https, redirects and URLs with
//! credentials go through reqwest, which has the TLS and redirect handling.
//!
//! Same behaviour as reqwest's path, which `probe::tests` checks case by
//! case over real sockets: the guard's resolver ([`ssrf::resolve`]) or the
//! literal address checked before; each address tried in turn with an
//! equal share of the time left (as hyper-util's connector); `TCP_NODELAY`;
//! `Host`, `User-Agent` and `Accept: */*`; one deadline for the head and
//! the body; failures before the head are `CONNECT` (or `TIMEOUT`,
//! `DNS`, `BLOCKED`), failures in the body `BODY` (or `TIMEOUT`), each
//! with its deepest cause's message.

use std::{net::SocketAddr, pin::Pin};

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::Instant};
use url::{Host, Position, Url};

use super::{
    failure::{TIMED_OUT, deepest, short},
    ssrf::{self, Blocked},
};
use crate::proto::monitor::v1::ErrorKind;

/// The `User-Agent` of every probe, on either path.
pub(super) const USER_AGENT: &str = concat!("monitor/", env!("CARGO_PKG_VERSION"));

/// A failure: its kind and a message a person can act on.
pub(super) type Failure = (ErrorKind, String);

/// Whether `url` takes the plain path.
pub(super) fn eligible(url: &Url, follow_redirects: usize) -> bool {
    url.scheme() == "http"
        && follow_redirects == 0
        && url.username().is_empty()
        && url.password().is_none()
}

/// A response's body as it is read, and its connection.
pub(super) struct Body {
    incoming: Incoming,
    deadline: Instant,
    /// Dropped with the body, it closes the connection.
    connection: Driver,
}

impl Body {
    /// The next piece of the body; `None` at its end.
    pub(super) async fn chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        let Self {
            incoming,
            deadline,
            connection,
        } = self;
        loop {
            match tokio::time::timeout_at(*deadline, connection.drive(incoming.frame())).await {
                Err(_) => return Err((ErrorKind::Timeout, TIMED_OUT.to_owned())),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err((ErrorKind::Body, short(&deepest(&e)))),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Ok(Some(data)),
                    _ => {} // an empty piece, or trailers
                },
            }
        }
    }
}

type Connection = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>;

/// A connection driven by the probe's own task while it waits for the
/// response (no task of its own: a spawn and a wake-up across tasks per
/// probe saved); `None` once it has ended. Dropped, it closes the socket
/// (a probe done with its body, or cancelled, leaves nothing behind).
struct Driver(Option<Pin<Box<Connection>>>);

impl Driver {
    /// Waits for `work` (the response's head, a piece of its body) while
    /// driving the connection that produces it.
    async fn drive<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        loop {
            let Some(connection) = self.0.as_mut() else {
                return work.await;
            };
            tokio::select! {
                biased;
                // Its failure reaches the request or the body, which
                // report it.
                _ = connection.as_mut() => self.0 = None,
                out = &mut work => return out,
            }
        }
    }
}

/// Connects, sends the GET and reads the response's head, all by
/// `deadline`.
pub(super) async fn head(
    url: &Url,
    allow_private: bool,
    deadline: Instant,
) -> Result<(http::response::Parts, Body), Failure> {
    match tokio::time::timeout_at(deadline, exchange(url, allow_private, deadline)).await {
        Ok(done) => done,
        Err(_) => Err((ErrorKind::Timeout, TIMED_OUT.to_owned())),
    }
}

async fn exchange(
    url: &Url,
    allow_private: bool,
    deadline: Instant,
) -> Result<(http::response::Parts, Body), Failure> {
    let stream = connect(&addresses(url, allow_private).await?, deadline).await?;
    let request = http::Request::get(&url[Position::BeforePath..Position::AfterQuery])
        .header(
            header::HOST,
            &url[Position::BeforeHost..Position::AfterPort],
        )
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| (ErrorKind::Other, short(&e.to_string())))?;
    let failed = |e: hyper::Error| (ErrorKind::Connect, short(&deepest(&e)));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    let mut connection = Driver(Some(Box::pin(connection)));
    let (parts, body) = connection
        .drive(sender.send_request(request))
        .await
        .map_err(failed)?
        .into_parts();
    Ok((
        parts,
        Body {
            incoming: body,
            deadline,
            connection,
        },
    ))
}

/// The addresses to try: the literal one (checked by the caller), or what
/// the guard's resolver lets through.
async fn addresses(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, Failure> {
    let port = url.port_or_known_default().unwrap_or(80);
    match url.host() {
        Some(Host::Ipv4(ip)) => Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Ipv6(ip)) => Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Domain(name)) => match ssrf::resolve(name, allow_private).await {
            Ok(found) => Ok(found
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect()),
            Err(e) if e.downcast_ref::<Blocked>().is_some() => {
                Err((ErrorKind::Blocked, short(&e.to_string())))
            }
            Err(e) => Err((ErrorKind::Dns, short(&e.to_string()))),
        },
        None => Err((ErrorKind::Other, "the URL has no host".to_owned())),
    }
}

/// The first address that accepts, each given an equal share of the time
/// left; the last failure if none does.
async fn connect(addresses: &[SocketAddr], deadline: Instant) -> Result<TcpStream, Failure> {
    let mut failure = (ErrorKind::Connect, "no address to connect to".to_owned());
    for (tried, addr) in addresses.iter().enumerate() {
        let left = u32::try_from(addresses.len() - tried).unwrap_or(u32::MAX);
        let share = deadline.saturating_duration_since(Instant::now()) / left;
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // As reqwest's connector: the request is one write anyway.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => failure = (ErrorKind::Connect, short(&e.to_string())),
            Err(_) => failure = (ErrorKind::Timeout, TIMED_OUT.to_owned()),
        }
    }
    Err(failure)
}
