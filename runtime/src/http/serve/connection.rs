//! One connection: the hyper service that hands its requests to the router, the deadline on
//! request bodies, and the watchdog that closes idle, misbehaving or shutting-down connections.
//!
//! Per request this costs what `axum::serve` cost (a router clone and the `ConnectInfo`
//! extension) plus two reference-count increments and a few uncontended atomic operations; the
//! body timer is allocated only for a request whose body is not already there.

use std::{
    convert::Infallible,
    error::Error,
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    BoxError, Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
    response::Response,
    routing::future::RouteFuture,
};
use futures::task::AtomicWaker;
use http::{HeaderValue, Request, StatusCode, Version, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, Sleep},
};

use super::table::Permit;

/// The timeouts a connection task enforces itself (hyper enforces the header timeout and the
/// HTTP/2 keep-alive).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Until the first request's headers are in.
    pub(super) first_request: Duration,
    /// With no request in flight.
    pub(super) idle: Duration,
    /// Between asking a connection to close and dropping it.
    pub(super) close_grace: Duration,
    /// For a request's whole body.
    pub(super) body: Duration,
    /// hyper's header timer already closes idle HTTP/1 connections.
    pub(super) http1_idle_by_hyper: bool,
}

/// What a connection's requests and its watchdog share.
#[derive(Default)]
pub(super) struct ConnectionState {
    /// The connection task, woken when the watchdog has something to look at.
    watchdog: AtomicWaker,
    /// The server is shutting down.
    shutdown: AtomicBool,
    /// A request body missed its deadline: the connection takes no more requests.
    late_body: AtomicBool,
    /// Requests counted for the idle timeout whose response is still being sent.
    in_flight: AtomicUsize,
    /// Counted requests that have ended, so the watchdog sees activity between two looks.
    finished: AtomicU64,
    /// An HTTP/1 request came and hyper's header timer handles idleness from now on.
    http1_seen: AtomicBool,
    /// Numbers the connection's requests, to match a late body with its response.
    next_request: AtomicU64,
    /// How many entries `late_requests` has: most requests only read this.
    late_count: AtomicUsize,
    /// Requests whose body missed its deadline and whose response has not been made yet.
    late_requests: Mutex<Vec<u64>>,
}

impl ConnectionState {
    /// Asks the connection to finish its requests and close (server shutdown).
    pub(super) fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.watchdog.wake();
    }

    /// Notes that request `id`'s body missed its deadline.
    fn body_timed_out(&self, id: u64) {
        let mut late = lock(&self.late_requests);
        late.push(id);
        self.late_count.store(late.len(), Ordering::Release);
        drop(late);
        self.late_body.store(true, Ordering::Release);
        self.watchdog.wake();
    }

    /// Whether request `id`'s body missed its deadline (forgetting it).
    fn take_late(&self, id: u64) -> bool {
        if self.late_count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut late = lock(&self.late_requests);
        let Some(index) = late.iter().position(|&late| late == id) else {
            return false;
        };
        late.swap_remove(index);
        self.late_count.store(late.len(), Ordering::Release);
        true
    }
}

fn lock(mutex: &Mutex<Vec<u64>>) -> std::sync::MutexGuard<'_, Vec<u64>> {
    // A push or a remove cannot be left half done: a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves one accepted connection until it ends, is closed by its watchdog, or is dropped at
/// the end of its grace period; `permit` keeps it counted against the caps until then.
pub(super) async fn run<S>(
    stream: S,
    service: ConnectionService,
    builder: Arc<Builder<TokioExecutor>>,
    timeouts: Timeouts,
    permit: Permit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _permit = permit;
    let peer = service.peer;
    let mut watch = Watch {
        state: service.state.clone(),
        idle: timeouts.idle,
        phase: Phase::Open,
        seen_finished: 0,
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let sleep = tokio::time::sleep(timeouts.first_request);
    let mut sleep = std::pin::pin!(sleep);
    // One hand-written poll instead of `select!`: every wake-up of the connection (each read
    // and write) polls hyper first, then the watchdog, which only reads a few atomics.
    let ended = std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(result.map_err(|e| e.to_string()));
            }
            match ready!(watch.poll(sleep.as_mut(), cx)) {
                Verdict::Close => {
                    // HTTP/1: close after the response in progress (at once when idle);
                    // HTTP/2: GOAWAY, finish the streams in flight; protocol detection:
                    // give up. Then poll again so hyper acts on it.
                    connection.as_mut().graceful_shutdown();
                    watch.phase = Phase::Closing;
                    sleep.as_mut().reset(Instant::now() + timeouts.close_grace);
                }
                Verdict::Drop => {
                    return Poll::Ready(Err("still open at the end of its grace period".into()));
                }
            }
        }
    })
    .await;
    if let Err(error) = ended {
        tracing::debug!(%peer, %error, "connection ended");
    }
}

/// What the watchdog decided.
enum Verdict {
    /// Ask the connection to close gracefully.
    Close,
    /// The connection did not close within its grace period: drop it.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Watching for idleness, late bodies and shutdown.
    Open,
    /// HTTP/1 with hyper's header timer in charge of idleness: watching for late bodies and
    /// shutdown only.
    Http1,
    /// Asked to close; the timer is the grace period.
    Closing,
}

/// Closes a connection that has no request in flight for the idle timeout (or none yet for
/// the first-request timeout), whose request body was late, or whose server shuts down.
struct Watch {
    state: Arc<ConnectionState>,
    idle: Duration,
    phase: Phase,
    seen_finished: u64,
}

impl Watch {
    fn poll(&mut self, mut timer: Pin<&mut Sleep>, cx: &mut Context<'_>) -> Poll<Verdict> {
        if self.phase == Phase::Closing {
            return timer.poll(cx).map(|()| Verdict::Drop);
        }
        self.state.watchdog.register(cx.waker());
        if self.state.shutdown.load(Ordering::Acquire)
            || self.state.late_body.load(Ordering::Acquire)
        {
            return Poll::Ready(Verdict::Close);
        }
        if self.phase == Phase::Http1 {
            return Poll::Pending;
        }
        if self.state.http1_seen.load(Ordering::Relaxed) {
            self.phase = Phase::Http1;
            return Poll::Pending;
        }
        // Busy: woken again when the last request in flight ends.
        if self.state.in_flight.load(Ordering::Acquire) > 0 {
            return Poll::Pending;
        }
        // Requests came and went since the last look: idle from now.
        let finished = self.state.finished.load(Ordering::Acquire);
        if finished != self.seen_finished {
            self.seen_finished = finished;
            timer.as_mut().reset(Instant::now() + self.idle);
        }
        ready!(timer.poll(cx));
        Poll::Ready(Verdict::Close)
    }
}

/// The hyper service of one connection: adds `ConnectInfo`, puts the body deadline on the
/// request, and calls the router.
pub(super) struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    state: Arc<ConnectionState>,
    body_timeout: Duration,
    /// HTTP/1 requests count for the idle timeout (hyper's header timer is the longer one).
    count_http1: bool,
    /// What the TLS handshake established, on a TLS connection.
    #[cfg(feature = "tls")]
    tls: Option<Arc<TlsConnection>>,
}

/// What a TLS connection's requests carry: the client certificate the handshake verified
/// (parsed once, here, for all of the connection's requests) and the HSTS header.
#[cfg(feature = "tls")]
#[derive(Debug)]
pub(super) struct TlsConnection {
    pub(super) certificate: Option<Arc<crate::auth::ClientCertificate>>,
    pub(super) hsts: Option<HeaderValue>,
}

impl ConnectionService {
    /// The service for a connection from `peer`.
    pub(super) fn new(
        router: Router,
        peer: SocketAddr,
        state: Arc<ConnectionState>,
        timeouts: &Timeouts,
    ) -> Self {
        Self {
            router,
            peer,
            state,
            body_timeout: timeouts.body,
            count_http1: !timeouts.http1_idle_by_hyper,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Marks the connection as TLS, with what its handshake established.
    #[cfg(feature = "tls")]
    pub(super) fn set_tls(&mut self, tls: TlsConnection) {
        self.tls = Some(Arc::new(tls));
    }

    /// The peer of the connection (for the TLS handshake's log lines).
    #[cfg(feature = "tls")]
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: Request<Incoming>) -> ResponseFuture {
        let http1 = request.version() != Version::HTTP_2;
        let counted = !http1 || self.count_http1;
        if counted {
            self.state.in_flight.fetch_add(1, Ordering::AcqRel);
        } else if !self.state.http1_seen.load(Ordering::Relaxed) {
            self.state.http1_seen.store(true, Ordering::Relaxed);
        }
        let id = self.state.next_request.fetch_add(1, Ordering::Relaxed);
        // What `into_make_service_with_connect_info::<SocketAddr>()` provided: the auth layer,
        // the lockout and the OAuth endpoints read the peer from here.
        request.extensions_mut().insert(ConnectInfo(self.peer));
        #[cfg(feature = "tls")]
        let hsts = self.tls.as_deref().and_then(|tls| {
            if let Some(certificate) = &tls.certificate {
                request.extensions_mut().insert(certificate.clone());
            }
            tls.hsts.clone()
        });
        let request = request.map(|body| DeadlineBody {
            inner: body,
            limit: self.body_timeout,
            timer: None,
            state: self.state.clone(),
            id,
            expired: false,
        });
        // `Router` is always ready (its `poll_ready` returns `Ready` unconditionally), and a
        // clone is one reference count, as `axum::serve` paid per request too.
        let mut router = self.router.clone();
        ResponseFuture {
            inner: tower::Service::call(&mut router, request),
            link: Some(Link {
                state: self.state.clone(),
                counted,
            }),
            id,
            http1,
            #[cfg(feature = "tls")]
            hsts,
        }
    }
}

/// A request's tie to its connection: counts it in flight (when `counted`) until dropped,
/// which is when its response body has been sent or abandoned.
struct Link {
    state: Arc<ConnectionState>,
    counted: bool,
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.counted {
            let state = &self.state;
            state.finished.fetch_add(1, Ordering::AcqRel);
            if state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                state.watchdog.wake();
            }
        }
    }
}

/// The router's future; turns the response into `408` when the request's body was late.
pub(super) struct ResponseFuture {
    inner: RouteFuture<Infallible>,
    link: Option<Link>,
    id: u64,
    http1: bool,
    /// `Strict-Transport-Security`, on a TLS connection.
    #[cfg(feature = "tls")]
    hsts: Option<HeaderValue>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let response = match ready!(Pin::new(&mut this.inner).poll(cx)) {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let link = this.link.take();
        let late = link.as_ref().is_some_and(|l| l.state.take_late(this.id));
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut response = if late {
            request_timeout(this.http1)
        } else {
            response
        };
        #[cfg(feature = "tls")]
        if let Some(hsts) = this.hsts.take() {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        // An uncounted request needs nothing more from its link: let it go now.
        let link = link.filter(|l| l.counted);
        Poll::Ready(Ok(response.map(|inner| ResponseBody { inner, _link: link })))
    }
}

/// `408 Request Timeout`; over HTTP/1 with `Connection: close`, since the rest of the body
/// may still be on its way and the next request could not be found after it.
fn request_timeout(http1: bool) -> Response {
    let mut response = Response::new(Body::from("request body not received in time\n"));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    if http1 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A response body that keeps its request counted in flight until it has been sent: an SSE
/// stream is a request in flight for as long as it is open.
pub(super) struct ResponseBody {
    inner: Body,
    _link: Option<Link>,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must arrive whole within its deadline. The timer starts (and is
/// allocated) the first time a read finds no data ready, which for every handler here is
/// right after the headers; a body that is already complete, as most MCP requests' are,
/// never allocates one.
pub(super) struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    state: Arc<ConnectionState>,
    id: u64,
    expired: bool,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        let limit = this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        this.expired = true;
        this.state.body_timed_out(this.id);
        Poll::Ready(Some(Err(Box::new(BodyTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error a late request body ends with.
#[derive(Debug)]
struct BodyTimeout;

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body not received in time")
    }
}

impl Error for BodyTimeout {}
