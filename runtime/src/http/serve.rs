//! Serving on TCP: our own accept loop over hyper-util's HTTP/1 + HTTP/2 connection builder,
//! with connection timeouts, caps on connections in total and per address, and a deadline on
//! graceful shutdown (DESIGN.md, decision 26).
//!
//! `axum::serve` has none of these: a client that never finishes its request line, dribbles a
//! body or keeps an idle connection holds a file descriptor for ever, enough of them starve
//! everyone else, and one of them keeps a graceful shutdown from ever completing.

mod connection;
mod table;

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto::Builder,
};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{ConfigError, Gatekeeper, McpTools};

use self::{
    connection::{ConnectionService, ConnectionState, Timeouts},
    table::ConnectionTable,
};

/// Decides whether a peer address is exempt from the per-address connection cap: the trusted
/// proxies, whose one address carries many clients. Called only for a connection that would
/// exceed the cap, with the connection table locked, so it must be quick and must not block.
pub(crate) type CapExempt = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// The longest any timeout may be: far beyond any use, and small enough that adding it to the
/// clock can never overflow (hyper adds the header timeout to `Instant::now()` unchecked).
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How long a refused connection or an accept error stays unlogged after one was logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The first pause after an accept error (file descriptors or memory exhausted); it doubles
/// while the errors go on, up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The longest pause between accept attempts while accepting fails.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Timeouts and caps that keep a server answering while some clients misbehave: set with
/// [`Gatekeeper::connection_limits`]. The defaults suit a public server; every value can be
/// changed with the builder methods.
///
/// | setting | default |
/// |---|---|
/// | [`header_read_timeout`](Self::header_read_timeout) | 10 s |
/// | [`body_timeout`](Self::body_timeout) | 30 s |
/// | [`idle_timeout`](Self::idle_timeout) | 60 s |
/// | [`http2_keep_alive`](Self::http2_keep_alive) | a ping every 30 s, answered within 20 s |
/// | [`http2_max_concurrent_streams`](Self::http2_max_concurrent_streams) | 100 |
/// | [`max_connections`](Self::max_connections) | 10,000 |
/// | [`max_connections_per_address`](Self::max_connections_per_address) | 256 |
/// | [`shutdown_timeout`](Self::shutdown_timeout) | 10 s |
///
/// ```
/// use std::time::Duration;
/// use mcp_gatekeeper::ConnectionLimits;
///
/// let limits = ConnectionLimits::new()
///     .max_connections(50_000)
///     .shutdown_timeout(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ConnectionLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) http2_keep_alive_interval: Duration,
    pub(crate) http2_keep_alive_timeout: Duration,
    pub(crate) http2_max_concurrent_streams: u32,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_address: usize,
    pub(crate) shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionLimits {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_max_concurrent_streams: 100,
            max_connections: 10_000,
            max_connections_per_address: 256,
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    /// How long a client has to send a request's headers (default 10 s), counted from the
    /// moment the connection opens or the previous response ended; then the connection is
    /// closed without an answer. Over HTTP/1 this is also how long an idle keep-alive
    /// connection stays open, since hyper runs the same timer while it waits for the next
    /// request. Real clients send their headers in one packet: 10 s only matters to a client
    /// that dribbles them, which is an attack (Slowloris), not a slow network.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// How long a request's whole body may take to arrive (default 30 s), counted from the
    /// first moment the server waits for body bytes, which is right after the headers; a
    /// client that sends a byte now and then cannot stretch it. A request whose body is late
    /// is answered `408 Request Timeout` and its connection is closed. 30 s carries the
    /// largest default body (1 MiB) at 35 KB/s; raise it for very slow links or a larger
    /// [`max_body_bytes`](Gatekeeper::max_body_bytes).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// How long a connection may stay open with no request in flight (default 60 s); it is
    /// then closed gracefully (HTTP/2: `GOAWAY`). A response still being sent, such as a
    /// session's SSE stream, is a request in flight: it is never cut by this timeout. Over
    /// HTTP/1 the shorter [`header_read_timeout`](Self::header_read_timeout) closes idle
    /// connections first.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// HTTP/2 keep-alive: a `PING` every `interval` (default 30 s), and the connection is
    /// closed when one is not answered within `timeout` (default 20 s). Finds peers that went
    /// away without closing (a laptop put to sleep) while their SSE streams are open, and keeps
    /// NAT mappings alive.
    pub fn http2_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.http2_keep_alive_interval = interval.min(MAX_TIMEOUT);
        self.http2_keep_alive_timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// The most requests one HTTP/2 connection may have in flight at once (default 100, the
    /// least RFC 9113 recommends): one connection cannot hold more of the server than that.
    pub fn http2_max_concurrent_streams(mut self, streams: u32) -> Self {
        self.http2_max_concurrent_streams = streams;
        self
    }

    /// The most connections open at once (default 10,000); one more is accepted and closed at
    /// once rather than left in the kernel's queue. Keep the process's file-descriptor limit
    /// (`ulimit -n`) above this plus what the server needs besides (log files, the OAuth store,
    /// outgoing requests), or accepting fails before the cap is reached.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// The most connections open at once from one address (default 256; IPv6 addresses count
    /// per /64, which one host usually owns whole). One more is accepted and closed at once.
    /// Generous for many clients behind one NAT, and small enough that no single address can
    /// take all of [`max_connections`](Self::max_connections). Trusted proxies are exempt.
    pub fn max_connections_per_address(mut self, connections: usize) -> Self {
        self.max_connections_per_address = connections;
        self
    }

    /// How long a shutdown waits for open connections to finish (default 10 s): accepting
    /// stops at once, every connection is asked to close after its current request (sessions'
    /// SSE streams end), and whatever is still open when this time is up is dropped. The same
    /// grace applies to a connection closed for being idle or for a late body.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// Refuses values that would make the server unusable: a zero timeout closes every
    /// connection at once, a zero cap refuses them all.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let timeouts = [
            ("header_read_timeout", self.header_read_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
            ("http2_keep_alive interval", self.http2_keep_alive_interval),
            ("http2_keep_alive timeout", self.http2_keep_alive_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ];
        if let Some((name, _)) = timeouts.iter().find(|(_, t)| t.is_zero()) {
            return Err(ConfigError::invalid(format!(
                "connection limits: {name} must be longer than zero"
            )));
        }
        let caps = [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            (
                "http2_max_concurrent_streams",
                self.http2_max_concurrent_streams as usize,
            ),
        ];
        if let Some((name, _)) = caps.iter().find(|(_, c)| *c == 0) {
            return Err(ConfigError::invalid(format!(
                "connection limits: {name} must be at least 1"
            )));
        }
        Ok(())
    }

    /// The per-connection timeouts, in the form the connection task uses.
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            // Before its first request a connection may be in hyper-util's protocol detection,
            // which has no timer of its own, or be an HTTP/2 connection, whose requests have no
            // header timer: the watchdog gives it the header timeout (or the idle timeout if
            // shorter) to start one.
            first_request: self.header_read_timeout.min(self.idle_timeout),
            idle: self.idle_timeout,
            close_grace: self.shutdown_timeout,
            body: self.body_timeout,
            // hyper's header timer also runs while an HTTP/1 connection waits for its next
            // request, so when it is the shorter one it already enforces idleness there.
            http1_idle_by_hyper: self.header_read_timeout <= self.idle_timeout,
        }
    }

    /// hyper-util's HTTP/1 + HTTP/2 (prior knowledge) builder with these limits.
    fn http_builder(&self) -> Builder<TokioExecutor> {
        let mut builder = Builder::new(TokioExecutor::new());
        // Checked in hyper 1.12's source (`proto/h1/conn.rs`): the header timer starts in
        // `poll_read_head`, and `State::idle` sets `notify_read` when a header timeout is
        // configured "so we can close the connection if another header isn't received in a
        // timely manner" — so it also runs while a keep-alive connection waits for its next
        // request, never while a response (an SSE stream) is being written. hyper drops the
        // timer once the headers are in and boxes a new one for the next request.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_keep_alive_interval)
            .keep_alive_timeout(self.http2_keep_alive_timeout)
            .max_concurrent_streams(self.http2_max_concurrent_streams);
        builder
    }
}

impl<T: McpTools> Gatekeeper<T> {
    /// Timeouts, connection caps and the shutdown deadline of the server started by
    /// [`serve`](Self::serve), [`bind`](Self::bind) or [`serve_on`](Self::serve_on) (default:
    /// [`ConnectionLimits::new`]). A value of zero fails [`serve_on`](Self::serve_on) with a
    /// configuration error. Not used by [`into_router`](Self::into_router), whose caller serves
    /// the router.
    pub fn connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.connection_limits = limits;
        self
    }
}

/// What the accept loop needs besides the router.
pub(crate) struct ServeSettings {
    /// `TCP_NODELAY` on accepted connections.
    pub(crate) nodelay: bool,
    /// Timeouts and caps.
    pub(crate) limits: ConnectionLimits,
    /// Peers exempt from the per-address cap.
    pub(crate) cap_exempt: Option<CapExempt>,
    /// HTTPS: every connection starts with a TLS handshake.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<crate::tls::TlsAcceptor>>,
}

/// Accepts connections on `listener` and serves `router` on them until `shutdown` is
/// cancelled, then closes them gracefully within the shutdown deadline. Never fails: accept
/// errors are logged and retried.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let limits = &settings.limits;
    let builder = Arc::new(limits.http_builder());
    let timeouts = limits.timeouts();
    let table = Arc::new(ConnectionTable::new(
        limits.max_connections,
        limits.max_connections_per_address,
        settings.cap_exempt.clone(),
    ));
    let mut tasks = JoinSet::new();
    // Each live connection's state, to ask it to close at shutdown; removed when its task is
    // reaped, so this holds exactly the open connections.
    let mut open = HashMap::new();
    let mut refused = Throttled::default();
    let mut failing = Throttled::default();
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => error.id(),
                };
                open.remove(&id);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // The peer gave up before we took the connection: nothing is wrong here.
            Err(error) if is_per_connection(&error) => continue,
            Err(error) => {
                // Out of file descriptors or memory: the connection stays queued in the kernel
                // and accepting again at once would spin. Pause, a little longer each time.
                if let Some(count) = failing.hit() {
                    tracing::warn!(%error, count, "accepting connections fails; retrying");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        backoff = MIN_ACCEPT_BACKOFF;
        let permit = match table.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                // Accepted and dropped at once: a connection left in the kernel's queue would
                // hold its slot there and time out at the client much later.
                drop(stream);
                if let Some(count) = refused.hit() {
                    tracing::warn!(
                        peer = %peer.ip(),
                        cap = refusal.cap_name(),
                        count,
                        "refusing connections over the cap"
                    );
                }
                continue;
            }
        };
        if settings.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let state = Arc::new(ConnectionState::default());
        let service = ConnectionService::new(router.clone(), peer, state.clone(), &timeouts);
        #[cfg(feature = "tls")]
        if let Some(tls) = &settings.tls {
            let handle = tasks.spawn(handshake_then_run(
                stream,
                tls.clone(),
                service,
                builder.clone(),
                timeouts,
                permit,
            ));
            open.insert(handle.id(), state);
            continue;
        }
        let handle = tasks.spawn(connection::run(
            stream,
            service,
            builder.clone(),
            timeouts,
            permit,
        ));
        open.insert(handle.id(), state);
    }

    // Stop accepting at once: from here on the kernel refuses new connections.
    drop(listener);
    for state in open.values() {
        state.request_shutdown();
    }
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "connections still open at the shutdown deadline; dropping them"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Completes the TLS handshake of an accepted connection within the handshake timeout, reads
/// the client certificate it verified (once, for all the connection's requests), and serves
/// the connection. A failed or late handshake ends this connection only; it holds its permit
/// (counted against the caps) while it lasts.
#[cfg(feature = "tls")]
async fn handshake_then_run(
    stream: tokio::net::TcpStream,
    tls: Arc<crate::tls::TlsAcceptor>,
    mut service: ConnectionService,
    builder: Arc<Builder<TokioExecutor>>,
    timeouts: Timeouts,
    permit: table::Permit,
) {
    use crate::auth::{CertificateSource, ClientCertificate};

    let peer = service.peer();
    let (acceptor, self_signed) = tls.acceptor_with_check();
    let handshake = acceptor.accept(stream);
    let stream = match tokio::time::timeout(tls.handshake_timeout(), handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not completed in time");
            return;
        }
    };
    let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
    let certificate = match chain.first() {
        None => None,
        Some(der) => match ClientCertificate::from_der(der, CertificateSource::Tls) {
            // With self-signed certificates accepted, the handshake does not say which kind
            // this one is: ask the client CAs again, so a self-signed one is marked.
            Ok(certificate) => Some(Arc::new(match &self_signed {
                Some(check) if !check.chains_to_client_ca(chain) => certificate.not_ca_verified(),
                _ => certificate,
            })),
            Err(error) => {
                // Verified by webpki yet unreadable here: refuse rather than serve the
                // connection as if it had no certificate.
                tracing::warn!(%peer, %error, "client certificate verified but unreadable");
                return;
            }
        },
    };
    service.set_tls(connection::TlsConnection {
        certificate,
        hsts: tls.hsts().cloned(),
    });
    connection::run(stream, service, builder, timeouts, permit).await;
}

/// An accept error that concerns only the connection being accepted.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Counts a recurring event and says when to log it: the first time, then at most once per
/// [`LOG_INTERVAL`], so a flood of refused connections or accept errors is one line per
/// interval (with how many there were) instead of one per event.
#[derive(Debug, Default)]
struct Throttled {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Throttled {
    /// Counts one event; `Some(events since the last log line)` when it should be logged.
    fn hit(&mut self) -> Option<u64> {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_values_are_refused() {
        assert!(ConnectionLimits::new().check().is_ok());
        let bad = [
            ConnectionLimits::new().header_read_timeout(Duration::ZERO),
            ConnectionLimits::new().body_timeout(Duration::ZERO),
            ConnectionLimits::new().idle_timeout(Duration::ZERO),
            ConnectionLimits::new().http2_keep_alive(Duration::ZERO, Duration::from_secs(1)),
            ConnectionLimits::new().shutdown_timeout(Duration::ZERO),
            ConnectionLimits::new().max_connections(0),
            ConnectionLimits::new().max_connections_per_address(0),
            ConnectionLimits::new().http2_max_concurrent_streams(0),
        ];
        for limits in bad {
            assert!(limits.check().is_err(), "{limits:?}");
        }
    }

    #[test]
    fn huge_timeouts_are_clamped_so_the_clock_never_overflows() {
        let limits = ConnectionLimits::new()
            .header_read_timeout(Duration::MAX)
            .idle_timeout(Duration::MAX);
        assert_eq!(limits.header_read_timeout, MAX_TIMEOUT);
        assert!(
            tokio::time::Instant::now()
                .checked_add(MAX_TIMEOUT)
                .is_some()
        );
        let timeouts = limits.timeouts();
        assert!(timeouts.http1_idle_by_hyper);
        assert_eq!(timeouts.first_request, MAX_TIMEOUT);
    }

    #[test]
    fn repeated_events_are_logged_once_per_interval() {
        let mut throttled = Throttled::default();
        assert_eq!(throttled.hit(), Some(1));
        assert_eq!(throttled.hit(), None);
        assert_eq!(throttled.hit(), None);
        throttled.last_logged = Instant::now().checked_sub(LOG_INTERVAL);
        assert_eq!(throttled.hit(), Some(3));
    }
}
