//! Keeping the server up under connection abuse, over real loopback TCP: timeouts for slow
//! headers, dribbled bodies and idle connections, the per-address and total caps, and the
//! shutdown deadline (also of the `hello` example under SIGTERM).
//!
//! Timeouts are set to 1 s and every bound below leaves seconds of slack, so a loaded 2-core
//! machine does not make these flaky.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_gatekeeper::ConnectionLimits;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::common::*;

/// Short timeouts, so the tests see them fire.
fn short_limits() -> ConnectionLimits {
    ConnectionLimits::new()
        .header_read_timeout(Duration::from_secs(1))
        .body_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(1))
}

/// The RBAC example server with `limits`.
async fn server_with(limits: ConnectionLimits, stateless: bool) -> Server {
    start(
        crate::rbac::gatekeeper(rbac_config(stateless))
            .unwrap()
            .connection_limits(limits),
    )
    .await
}

/// A connection to `server` from the loopback address `source` (any of 127/8 works on Linux).
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// How long until the server closes `stream` (end of stream or reset; anything it sends
/// before is read and dropped), or `None` if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Reads a response head (up to the blank line) and returns it.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("a response in time")
            .expect("readable");
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A `POST /mcp` head announcing a 1000-byte body, of which nothing is sent yet.
fn post_head(server: &Server) -> String {
    let host = server.running.local_addr();
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {VIEWER_KEY}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: 1000\r\n\r\n"
    )
}

#[tokio::test]
async fn slow_or_silent_clients_are_closed_within_the_header_timeout() {
    let server = server_with(short_limits(), true).await;
    let addr = server.running.local_addr();
    // Nothing at all (hyper-util's protocol detection has no timer: our watchdog's), half a
    // request line (hyper's header timer), and the start of the HTTP/2 preface.
    let starts: [&[u8]; 3] = [b"", b"GET /mc", b"PRI * HTTP/2.0\r\n"];
    let checks = starts.map(|start| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(start).await.unwrap();
        let closed = closed_within(&mut stream, Duration::from_secs(10)).await;
        (String::from_utf8_lossy(start).into_owned(), closed)
    });
    for (start, closed) in futures::future::join_all(checks).await {
        let closed = closed.unwrap_or_else(|| panic!("{start:?}: still open after 10 s"));
        assert!(
            closed >= Duration::from_millis(500) && closed < Duration::from_secs(4),
            "{start:?}: closed after {closed:?}, expected about 1 s"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_dribbled_body_gets_408_within_the_body_deadline() {
    let server = server_with(short_limits(), true).await;
    let stream = TcpStream::connect(server.running.local_addr())
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(post_head(&server).as_bytes())
        .await
        .unwrap();
    let start = Instant::now();
    // A byte every 200 ms: each arrives well within any per-read timeout, the whole 1000
    // would take 200 s.
    let dribble = tokio::spawn(async move {
        for _ in 0..1000 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut response = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut response));
    // The server may reset rather than close once it stops reading the body: the response is
    // in `response` either way.
    let _ = read_all.await.expect("the connection closes within 10 s");
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        elapsed < Duration::from_secs(4),
        "answered after {elapsed:?}, expected about 1 s"
    );
    dribble.abort();
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_http2_body_gets_408_and_the_connection_closes() {
    let server = server_with(short_limits(), true).await;
    let addr = server.running.local_addr();
    let (mut sender, connection) = http2(addr).await;
    let (mut chunks, body) = futures::channel::mpsc::channel::<
        Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
    >(4);
    chunks
        .try_send(Ok(hyper::body::Frame::data(Bytes::from_static(
            b"{\"jsonrpc\"",
        ))))
        .unwrap();
    let request = http::Request::post(format!("http://{addr}/mcp"))
        .header("x-api-key", VIEWER_KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(http_body_util::StreamBody::new(body))
        .unwrap();
    let start = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("answered within 10 s")
        .expect("a response");
    assert_eq!(response.status(), 408);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // The connection takes no more requests and goes.
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the connection closes within 10 s")
        .unwrap();
    drop(chunks);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = server_with(short_limits(), true).await;
    let addr = server.running.local_addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /nowhere HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 0"),
        "{head}"
    );
    // Kept alive for the next request, but not for ever.
    let closed = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("closed within 10 s");
    assert!(
        closed >= Duration::from_millis(500) && closed < Duration::from_secs(4),
        "closed after {closed:?}, expected about 1 s"
    );
    server.stop().await;
}

/// An HTTP/2 (prior knowledge) connection to `addr`; the task ends when the connection does.
async fn http2<B>(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<()>,
)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, task)
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let server = server_with(short_limits(), true).await;
    let addr = server.running.local_addr();
    let (mut sender, connection) = http2(addr).await;
    let request = http::Request::get(format!("http://{addr}/nowhere"))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("a response");
    assert_eq!(response.status(), 404);
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the server closes the idle connection within 10 s")
        .unwrap();
    let closed = start.elapsed();
    assert!(
        closed >= Duration::from_millis(500) && closed < Duration::from_secs(4),
        "closed after {closed:?}, expected about 1 s"
    );
    server.stop().await;
}

/// Opens a stateful session and returns its id (the key is a viewer's).
async fn open_session(server: &Server) -> String {
    let mcp = Mcp::connect(
        &server.url,
        Cred::ApiKey(VIEWER_KEY.into()),
        Version::V2025_06_18,
    )
    .await;
    mcp.session.expect("a stateful session")
}

#[tokio::test]
async fn an_sse_stream_outlives_the_idle_and_header_timeouts() {
    let server = server_with(short_limits(), false).await;
    let addr = server.running.local_addr();
    let session = open_session(&server).await;

    // HTTP/1.1: the session's GET stream.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {VIEWER_KEY}\r\n\
         Accept: text/event-stream\r\nMcp-Session-Id: {session}\r\n\
         Mcp-Protocol-Version: 2025-06-18\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // HTTP/2: the same kind of stream (a session has one standalone stream at a time, so a
    // second session).
    let session2 = open_session(&server).await;
    let (mut sender, connection) = http2(addr).await;
    let request = http::Request::get(format!("http://{addr}/mcp"))
        .header("x-api-key", VIEWER_KEY)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session2)
        .header("mcp-protocol-version", "2025-06-18")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("a response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();

    // Three times every timeout: both streams stay open.
    let h1_closed = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert_eq!(h1_closed, None, "the HTTP/1.1 SSE stream was cut");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break,
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the HTTP/2 SSE stream ended: {other:?}"),
        }
    }
    assert!(
        !connection.is_finished(),
        "the HTTP/2 connection was closed"
    );

    // A shutdown ends both (rmcp's cancellation token ends the streams).
    let start = Instant::now();
    server.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(
        closed_within(&mut stream, Duration::from_secs(5))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn the_per_address_cap_refuses_extra_connections_at_once_and_no_one_else() {
    let server = server_with(ConnectionLimits::new().max_connections_per_address(8), true).await;
    let addr = server.running.local_addr();
    let crowd = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from(crowd, addr).await);
    }
    let mut ninth = connect_from(crowd, addr).await;
    let closed = closed_within(&mut ninth, Duration::from_secs(5))
        .await
        .expect("the ninth connection is closed");
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
    // The eight stay open (the header timeout is the default 10 s).
    assert_eq!(
        closed_within(&mut held[0], Duration::from_millis(300)).await,
        None
    );

    // Another address is served as usual: a whole MCP `initialize`.
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(Ipv4Addr::new(127, 0, 0, 3)))
        .build()
        .unwrap();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": { "name": "t", "version": "0" } } });
    let response = http
        .post(&server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", VIEWER_KEY)
        .body(init.to_string())
        .send()
        .await
        .expect("served");
    let reply = read_reply(response, Some(json!(1))).await;
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!(reply.result()["protocolVersion"], "2025-06-18");

    // A closed connection gives its slot back.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from(crowd, addr).await;
        if closed_within(&mut again, Duration::from_millis(300))
            .await
            .is_none()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_is_exempt_from_the_per_address_cap() {
    let server = start(
        crate::rbac::gatekeeper(rbac_config(true))
            .unwrap()
            .trusted_proxies(["127.0.0.2"])
            .connection_limits(ConnectionLimits::new().max_connections_per_address(4)),
    )
    .await;
    let addr = server.running.local_addr();
    // Every client of a load balancer arrives through its connections.
    let mut proxy = Vec::new();
    for _ in 0..12 {
        proxy.push(connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).await);
    }
    for stream in &mut proxy {
        assert_eq!(
            closed_within(stream, Duration::from_millis(200)).await,
            None
        );
    }
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(connect_from(Ipv4Addr::new(127, 0, 0, 3), addr).await);
    }
    let mut fifth = connect_from(Ipv4Addr::new(127, 0, 0, 3), addr).await;
    assert!(
        closed_within(&mut fifth, Duration::from_secs(5))
            .await
            .is_some(),
        "an ordinary peer keeps its cap"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_total_cap_refuses_extra_connections_at_once() {
    let server = server_with(ConnectionLimits::new().max_connections(4), true).await;
    let addr = server.running.local_addr();
    let mut held = Vec::new();
    for n in 0..4 {
        held.push(connect_from(Ipv4Addr::new(127, 0, 1, n), addr).await);
    }
    let mut fifth = connect_from(Ipv4Addr::new(127, 0, 1, 9), addr).await;
    let closed = closed_within(&mut fifth, Duration::from_secs(5))
        .await
        .expect("the fifth connection is closed");
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
    assert_eq!(
        closed_within(&mut held[0], Duration::from_millis(300)).await,
        None
    );
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_returns_within_its_deadline_while_connections_hang() {
    // Long header and body timeouts: only the shutdown deadline can end these connections.
    let limits = ConnectionLimits::new()
        .header_read_timeout(Duration::from_secs(60))
        .body_timeout(Duration::from_secs(60))
        .shutdown_timeout(Duration::from_secs(1));
    let server = server_with(limits, true).await;
    let addr = server.running.local_addr();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET /mc").await.unwrap();
    // A request in flight whose handler waits for a body that never comes: a graceful close
    // waits for it.
    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    let mut head = post_head(&server).into_bytes();
    head.extend_from_slice(b"{\"jsonrpc\"");
    in_flight.write_all(&head).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.running.shutdown())
        .await
        .expect("shutdown returns")
        .expect("clean shutdown");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "shutdown took {took:?}, expected about the 1 s deadline"
    );
    for stream in [&mut partial, &mut in_flight] {
        assert!(
            closed_within(stream, Duration::from_secs(2))
                .await
                .is_some(),
            "a connection survived the shutdown"
        );
    }
}

/// Kills the child on the way out if the test failed before it exited.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_ends_the_hello_example_within_the_shutdown_deadline() {
    let hello = example_binary("hello");
    // A free port for `BIND` (the example prints its address before binding, so an ephemeral
    // port could not be learned from it).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let key = "hello-test-key-0123456789abcdef";
    let child = std::process::Command::new(hello)
        .env("MCP_API_KEYS", key)
        .env("BIND", addr.to_string())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("hello starts");
    let mut child = Reaper(child);
    let pid = child.0.id();

    let started = Instant::now();
    let mut partial = loop {
        if let Ok(stream) = TcpStream::connect(addr).await {
            break stream;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "hello exited before listening"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "hello never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Half a request line, and a request whose body stops after a few bytes: a graceful
    // close alone would wait for the rest for ever (the body for its 30 s timeout).
    partial.write_all(b"GET /mc").await.unwrap();
    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: 1000\r\n\r\n{{\"jsonrpc\""
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let signalled = Instant::now();
    // The default deadline is 10 s; 6 s of slack for a loaded machine.
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(16),
            "hello still running 16 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
