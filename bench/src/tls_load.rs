//! `tls-load`: what HTTPS and mutual TLS cost next to plain HTTP, measured in one run.
//!
//! wrk cannot present a client certificate, so this binary is both the servers and the load
//! client. At start it makes a throw-away PKI with rcgen (ECDSA P-256 keys, rcgen's default):
//! a CA, a server certificate for `localhost` and `127.0.0.1`, and a client certificate whose
//! SAN URI is `spiffe://bench/viewer`. Then, for each of `ROUNDS` rounds, it runs every row in
//! turn (each round starting one row later, as `run.sh` does, since this machine's speed drifts
//! over seconds and no row should always go first):
//!
//! - `plain`: HTTP, `X-API-Key`;
//! - `tls`: HTTPS (TLS 1.3, ALPN `http/1.1`), `X-API-Key`;
//! - `mtls`: HTTPS with a client certificate required (`Tls::client_ca_pem`) and the
//!   `ClientCertificates` authenticator: the certificate is the caller, no header credential.
//!
//! Every row is a stateless mcp-gatekeeper serving one `echo` tool behind the `viewer` role and
//! a rate limit that never triggers (as `bench-server`'s), bound to `127.0.0.1:0`, audit
//! records to `tracing` only (no subscriber: the JSON-lines file of `run.sh` is left out, as it
//! costs every row the same). Against each it measures:
//!
//! - **keep-alive**: `CONNECTIONS` HTTP/1.1 connections, opened first (handshakes not timed),
//!   each sending `tools/call echo` back to back for `WARMUP`, then `DURATION` measured:
//!   requests/s and latency percentiles of the requests completed in the measured window;
//! - **new connections**: `HANDSHAKES` connections (a tenth more first, not counted), at most
//!   `CONNECTIONS` at a time, each doing TCP connect, the TLS handshake (none for `plain`), one
//!   `tools/call`, then closing; connections/s and time per connection (connect to the end of
//!   the reply). The `plain` row pays everything but the handshake, so the difference to it is
//!   the handshake. The client never resumes a TLS session (a fresh client each time, the worst
//!   case); the server still issues its TLS 1.3 session tickets, as it would for any client.
//!
//! Every reply must be status 200 with a JSON-RPC result holding the echoed text; anything else
//! stops the run with the reply (a benchmark that counts errors as work measures nothing).
//!
//! **Two runtimes, one process.** The servers run on one Tokio runtime (worker threads
//! `load-server`, one per core, as `#[tokio::main]` in `bench-server` has), the client on
//! another (`CLIENT_THREADS` threads `load-client`, 2 by default like `run.sh`'s wrk `-t2`).
//! With one shared runtime a client task and the server task it wakes could run on the same
//! worker, handed over through Tokio's LIFO slot: a cheaper path than a client in another
//! process ever gets. Separate runtimes keep the wake-ups across threads, as with wrk, and let
//! the CPU time of each side be read per thread (`/proc/self/task/*/schedstat`): the server's
//! CPU per request or per connection moves less with the load of other tenants than
//! requests/s does (though on a shared VM it grows too when the host is busy: the rows of one
//! run compare, runs on different days less so). Client and server share the machine's cores,
//! so the client's own TLS work (its key exchange, verifying the server's chain, signing for
//! mTLS) is taken from the server's throughput too: the connections/s of the TLS rows
//! understate what a server with remote clients achieves, and the server CPU columns are the
//! handshake's cost to a server.
//!
//! ```text
//! cargo run --release -p mcp-gatekeeper-bench --bin tls-load
//! ```
//!
//! Settings (environment, as `run.sh`): `CONNECTIONS=32 WARMUP=2s DURATION=5s ROUNDS=5
//! HANDSHAKES=2000 ROWS="plain tls mtls" CLIENT_THREADS=2 SERVER_THREADS=<cores>`.
//! A row written `ROW+nodelay` (`tls+nodelay`) has its server set `TCP_NODELAY` on accepted
//! connections, which `Gatekeeper` leaves off for stateless plain HTTP (it is on over TLS by
//! default since the 40 ms stall this tool found); `TCP_NODELAY=1` does so for
//! every row (as in `run.sh`). Such rows are set against `plain+nodelay` when it runs too.
//! Per-round results go to stderr, the table (medians over the rounds) to stdout.
//! `bench/tls-callgrind.sh` runs this binary under callgrind to count the instructions per new
//! connection and per request of each row, which the machine's load does not move.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    process::ExitCode,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, StatusCode,
    body::Bytes,
    client::conn::http1::{self, SendRequest},
    header::{ACCEPT, CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use mcp_gatekeeper::{RunningServer, Tls, auth::ClientCertificates, prelude::*};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::{
    ClientConfig, RootCertStore,
    client::Resumption,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    runtime::Runtime,
    task::JoinSet,
};
use tokio_rustls::TlsConnector;

/// Any error of this tool; it ends the run.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The benchmark's one role.
#[derive(Roles, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// May call `echo`.
    Viewer,
}

/// The benchmark's tool set: the same tool, guard and rate as `bench-server`'s (`gate.rs`),
/// declared again so that this binary stands alone.
pub(crate) struct EchoTools;

#[mcp_tools(roles = Role)]
impl EchoTools {
    /// Echo the text back.
    ///
    /// # Arguments
    /// * `text` - The text to echo.
    #[mcp_tool(role = "viewer", rate = "1000000000/s")]
    async fn echo(&self, text: String) -> String {
        text
    }
}

/// The protocol version sent in `MCP-Protocol-Version`, as `run.sh` sends it.
const PROTOCOL: &str = "2025-06-18";
/// The request every exchange sends: byte for byte `mcp.lua`'s.
const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;
/// What a good reply holds: the echoed text as the tool's text content.
const EXPECTED: &str = r#""text":"hello""#;
/// The identity in the client certificate, which the `mtls` row's rule makes a `viewer`.
const CLIENT_URI: &str = "spiffe://bench/viewer";
/// The longest any one exchange may take before the run is called broken.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a row's client reaches the server and authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// HTTP and an API key.
    Plain,
    /// HTTPS and an API key.
    Tls,
    /// HTTPS, a client certificate required and used as the caller.
    Mtls,
}

/// One server configuration measured: a transport, and whether the server sets `TCP_NODELAY`
/// (`tls+nodelay`), which `Gatekeeper` leaves off in stateless mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    transport: Transport,
    nodelay: bool,
}

impl Row {
    /// The name `ROWS` knows it by.
    fn name(self) -> String {
        let transport = match self.transport {
            Transport::Plain => "plain",
            Transport::Tls => "tls",
            Transport::Mtls => "mtls",
        };
        if self.nodelay {
            format!("{transport}+nodelay")
        } else {
            transport.to_owned()
        }
    }

    /// The table's label.
    fn label(self) -> String {
        let transport = match self.transport {
            Transport::Plain => "plain HTTP, API key",
            Transport::Tls => "HTTPS, API key",
            Transport::Mtls => "HTTPS, client certificate (mTLS)",
        };
        if self.nodelay {
            format!("{transport}, server TCP_NODELAY")
        } else {
            transport.to_owned()
        }
    }
}

impl FromStr for Row {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (transport, nodelay) = match s.strip_suffix("+nodelay") {
            Some(transport) => (transport, true),
            None => (s, false),
        };
        let transport = match transport {
            "plain" => Transport::Plain,
            "tls" => Transport::Tls,
            "mtls" => Transport::Mtls,
            _ => {
                return Err(format!(
                    "unknown row `{s}` (plain, tls, mtls, each optionally with +nodelay)"
                ));
            }
        };
        Ok(Self { transport, nodelay })
    }
}

/// The settings, from the environment.
#[derive(Debug)]
struct Settings {
    /// `CONNECTIONS`: keep-alive connections, and new connections at a time.
    connections: usize,
    /// `WARMUP`: keep-alive load before the measured window.
    warmup: Duration,
    /// `DURATION`: the measured keep-alive window.
    duration: Duration,
    /// `ROUNDS`: how many times every row runs.
    rounds: usize,
    /// `HANDSHAKES`: new connections timed per row and round.
    handshakes: usize,
    /// `ROWS`, in order.
    rows: Vec<Row>,
    /// `CLIENT_THREADS`: the client runtime's workers.
    client_threads: usize,
    /// `SERVER_THREADS`: the server runtime's workers.
    server_threads: usize,
}

/// `value` as a duration: `5s`, `500ms`, `1m`, or a number of seconds.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let bad = || format!("`{value}` is not a duration (5s, 500ms, 1m)");
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => value.split_at(at),
        None => (value, "s"),
    };
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// The environment variable `name`, parsed, or `default` when unset or empty.
fn setting<T>(
    name: &str,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            parse(value.trim()).map_err(|e| format!("{name}: {e}"))
        }
        _ => Ok(default),
    }
}

/// A positive count.
fn count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("`{value}` is not a positive number")),
        Ok(n) => Ok(n),
    }
}

impl Settings {
    /// The settings in one line, for the log and the table's heading.
    fn summary(&self) -> String {
        format!(
            "{} rounds of {}; keep-alive: {} connections, {:?} warm-up + {:?} measured; new \
             connections: {} (after {} not counted), {} at a time; server: {} threads; client: \
             {} threads; {} cores",
            self.rounds,
            self.rows
                .iter()
                .map(|row| row.name())
                .collect::<Vec<_>>()
                .join(" "),
            self.connections,
            self.warmup,
            self.duration,
            self.handshakes,
            self.handshakes / 10,
            self.connections,
            self.server_threads,
            self.client_threads,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        )
    }

    fn from_env() -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let rows: Vec<Row> = setting("ROWS", "plain tls mtls".to_owned(), |v| Ok(v.to_owned()))?
            .split_whitespace()
            .map(Row::from_str)
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Err("ROWS names no row".into());
        }
        let tcp_nodelay = setting("TCP_NODELAY", false, |v| match v {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(format!("`{other}` is neither 0 nor 1")),
        })?;
        // TCP_NODELAY=1 turns it on for every row, as in run.sh.
        let rows = rows
            .into_iter()
            .map(|row| Row {
                nodelay: row.nodelay || tcp_nodelay,
                ..row
            })
            .collect();
        Ok(Self {
            connections: setting("CONNECTIONS", 32, count)?,
            warmup: setting("WARMUP", Duration::from_secs(2), parse_duration)?,
            duration: setting("DURATION", Duration::from_secs(5), parse_duration)?,
            rounds: setting("ROUNDS", 5, count)?,
            handshakes: setting("HANDSHAKES", 2000, count)?,
            rows,
            client_threads: setting("CLIENT_THREADS", 2, count)?,
            server_threads: setting("SERVER_THREADS", cores, count)?,
        })
    }
}

// ------------------------------------------------------------------------------ certificates

/// The throw-away PKI: PEM for the servers, DER for the client.
struct Pki {
    /// The CA certificate: the `mtls` servers' trusted client CA.
    ca_pem: String,
    /// The server's certificate (leaf only: clients know the CA).
    server_cert_pem: String,
    /// The server's private key.
    server_key_pem: String,
    /// The CA certificate: the client's only root.
    ca_der: CertificateDer<'static>,
    /// The client certificate, presented in the `mtls` rows.
    client_cert_der: CertificateDer<'static>,
    /// Its private key, PKCS#8.
    client_key_der: Vec<u8>,
}

impl Pki {
    /// A CA, a server certificate for `localhost` and `127.0.0.1`, a client certificate for
    /// [`CLIENT_URI`]; ECDSA P-256 keys, valid for a day.
    fn generate() -> Result<Self, BoxError> {
        let now = time::OffsetDateTime::now_utc();
        let validity = |params: &mut CertificateParams| {
            params.not_before = now - time::Duration::hours(1);
            params.not_after = now + time::Duration::days(1);
        };
        let named = |params: &mut CertificateParams, name: &str| {
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, name);
        };

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        named(&mut ca, "tls-load CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut ca);
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
        named(&mut server, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut server);
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::default();
        named(&mut client, "tls-load viewer");
        client.subject_alt_names = vec![SanType::URI(CLIENT_URI.try_into()?)];
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut client);
        let client_cert = client.signed_by(&client_key, &issuer)?;

        Ok(Self {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            ca_der: ca_cert.der().clone(),
            client_cert_der: client_cert.der().clone(),
            client_key_der: client_key.serialize_der(),
        })
    }

    /// The client's TLS configuration: trusts the CA only, offers HTTP/1.1 only (the rows
    /// compare HTTP/1.1 keep-alive with wrk's), never resumes a session (every handshake in
    /// full), and presents the client certificate if `with_certificate`.
    fn client_config(&self, with_certificate: bool) -> Result<ClientConfig, BoxError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let builder = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let mut config = if with_certificate {
            builder.with_client_auth_cert(
                vec![self.client_cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.client_key_der.clone())),
            )?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = Resumption::disabled();
        Ok(config)
    }
}

// ---------------------------------------------------------------------------------- servers

/// Starts `row`'s server on the server runtime; `api_key` is the key the API-key rows accept.
fn start_server(
    runtime: &Runtime,
    row: Row,
    pki: &Pki,
    api_key: &str,
) -> Result<RunningServer, BoxError> {
    let keys = || ApiKeys::new().with_key(ApiKey::new("bench", api_key).role("viewer"));
    let https = || Tls::from_pem(pki.server_cert_pem.clone(), pki.server_key_pem.clone());
    let server = Gatekeeper::new(EchoTools);
    let server = match row.transport {
        Transport::Plain => server.authenticate(keys()),
        Transport::Tls => server.authenticate(keys()).tls(https()),
        Transport::Mtls => server
            .authenticate(ClientCertificates::new().role(CLIENT_URI, "viewer"))
            .tls(https().client_ca_pem(pki.ca_pem.clone())),
    }
    .stateless();
    // `+nodelay` rows turn it on; the others keep `Gatekeeper`'s default (off for stateless
    // plain HTTP, on over TLS).
    let server = if row.nodelay {
        server.tcp_nodelay(true)
    } else {
        server
    };
    // `bind` spawns the accept loop on the runtime it is called in: the server's.
    Ok(runtime.block_on(server.bind("127.0.0.1:0"))?)
}

// ----------------------------------------------------------------------------------- client

/// A connection's byte stream, plain or TLS; boxed so that every row takes the same path.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and how the client connects for one row.
struct Target {
    /// The server's address.
    addr: SocketAddr,
    /// The TLS connector and the name the server's certificate must hold; `None` for HTTP.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The `Host` header.
    host: String,
    /// `X-API-Key`, for the rows that authenticate with it.
    api_key: Option<String>,
}

/// What the TLS session of a probe connection negotiated.
struct Negotiated(String);

impl Target {
    /// Opens a connection: TCP (with `TCP_NODELAY`, so that no client-side Nagle delay ever
    /// lands in a row's latency), then the TLS handshake if the row has one.
    async fn open(&self) -> Result<(Box<dyn Io>, Option<Negotiated>), BoxError> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok((Box::new(tcp), None)),
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), tcp).await?;
                let session = stream.get_ref().1;
                let negotiated = Negotiated(format!(
                    "{:?}, {:?}, key exchange {:?}, ALPN {}",
                    session.protocol_version(),
                    session.negotiated_cipher_suite().map(|s| s.suite()),
                    session.negotiated_key_exchange_group().map(|g| g.name()),
                    session
                        .alpn_protocol()
                        .map_or("none".into(), |p| String::from_utf8_lossy(p).into_owned()),
                ));
                Ok((Box::new(stream), Some(negotiated)))
            }
        }
    }

    /// HTTP/1.1 over a new connection; the connection's driver is handed back to run.
    async fn http1(
        &self,
    ) -> Result<
        (
            SendRequest<Full<Bytes>>,
            http1::Connection<TokioIo<Box<dyn Io>>, Full<Bytes>>,
            Option<Negotiated>,
        ),
        BoxError,
    > {
        let (io, negotiated) = self.open().await?;
        let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
        Ok((sender, connection, negotiated))
    }

    /// The `tools/call echo` request, with the headers `mcp.lua` sends.
    fn request(&self) -> Result<Request<Full<Bytes>>, BoxError> {
        let mut request = Request::post("/mcp")
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL);
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key);
        }
        Ok(request.body(Full::new(Bytes::from_static(BODY.as_bytes())))?)
    }

    /// One request and its whole reply on `sender`'s connection; an error unless the reply is
    /// status 200 with a JSON-RPC result holding the echoed text.
    async fn exchange(&self, sender: &mut SendRequest<Full<Bytes>>) -> Result<(), BoxError> {
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(self.request()?).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            check(status, &body)
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no reply in {EXCHANGE_TIMEOUT:?}"))?
    }

    /// A new connection, its handshake, one exchange, then the close; returns the time from
    /// before the connect to the end of the reply (the close is not timed, but done before the
    /// next connection starts).
    async fn one_connection(&self) -> Result<Duration, BoxError> {
        let start = Instant::now();
        let (mut sender, connection, _) = self.http1().await?;
        let exchange = async move {
            let result = self.exchange(&mut sender).await;
            let done = Instant::now();
            // Dropping the only sender ends the connection: hyper closes it (for TLS with a
            // close_notify), and `connection` resolves.
            drop(sender);
            result.map(|()| done)
        };
        let (closed, done) = tokio::join!(connection, exchange);
        let done = done?;
        closed?;
        Ok(done - start)
    }
}

/// Checks a reply as `mcp.lua` does.
fn check(status: StatusCode, body: &[u8]) -> Result<(), BoxError> {
    let text = String::from_utf8_lossy(body);
    if status == StatusCode::OK
        && text.contains(r#""result""#)
        && text.contains(EXPECTED)
        && !text.contains(r#""isError":true"#)
    {
        return Ok(());
    }
    let sample: String = text.chars().take(400).collect();
    Err(format!("bad reply: {status} {sample}").into())
}

// ------------------------------------------------------------------------------ measurement

/// CPU time used so far by the server's and the client's runtime threads.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: Duration,
    client: Duration,
}

impl Cpu {
    /// Reads every thread's time on CPU (`/proc/self/task/*/schedstat`, nanoseconds) and adds
    /// it up by runtime, told apart by thread name; `None` where `/proc` does not say.
    fn now() -> Option<Self> {
        let mut cpu = Self::default();
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let dir = task.ok()?.path();
            let (Ok(name), Ok(schedstat)) = (
                std::fs::read_to_string(dir.join("comm")),
                std::fs::read_to_string(dir.join("schedstat")),
            ) else {
                // The thread ended since the directory was listed.
                continue;
            };
            let nanos: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
            let time = Duration::from_nanos(nanos);
            match name.trim() {
                "load-server" => cpu.server += time,
                "load-client" => cpu.client += time,
                _ => {}
            }
        }
        Some(cpu)
    }

    /// Microseconds of each side (server, client) per unit of work between `before` and `after`.
    fn per(before: Option<Self>, after: Option<Self>, units: usize) -> (Option<f64>, Option<f64>) {
        match (before, after) {
            (Some(before), Some(after)) if units > 0 => {
                let per = |a: Duration, b: Duration| {
                    Some(a.saturating_sub(b).as_secs_f64() * 1e6 / units as f64)
                };
                (
                    per(after.server, before.server),
                    per(after.client, before.client),
                )
            }
            _ => (None, None),
        }
    }
}

/// Latency percentiles of a set of samples, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    mean: f64,
    p50: f64,
    p99: f64,
}

impl Latency {
    /// The mean, median and 99th percentile of `samples` (zeros when there are none).
    fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        // Nearest rank: the smallest sample with at least q of them at or below it.
        let rank = |q: f64| {
            let index = (q * samples.len() as f64).ceil() as usize;
            us(samples[index.clamp(1, samples.len()) - 1])
        };
        Self {
            mean: samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64,
            p50: rank(0.50),
            p99: rank(0.99),
        }
    }
}

/// One row's results in one round.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    /// Keep-alive requests completed in the measured window.
    requests: usize,
    /// The same per second.
    requests_per_s: f64,
    /// Their latencies.
    request: Latency,
    /// Server and client CPU per keep-alive request, in microseconds.
    server_us_per_request: Option<f64>,
    client_us_per_request: Option<f64>,
    /// New connections (each with one request) per second.
    connections_per_s: f64,
    /// Their times, connect to the end of the reply.
    connection: Latency,
    /// Server and client CPU per new connection, in microseconds.
    server_us_per_connection: Option<f64>,
    client_us_per_connection: Option<f64>,
}

/// The keep-alive phase: requests/s, latencies and CPU per request over the measured window.
async fn keep_alive(
    target: Arc<Target>,
    settings: &Settings,
    measured: &mut Measured,
) -> Result<(), BoxError> {
    let mut senders = Vec::with_capacity(settings.connections);
    for _ in 0..settings.connections {
        let (sender, connection, _) = target.http1().await?;
        // Errors of the connection reach its sender's next request; nothing to report here.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        senders.push(sender);
    }
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let until = measure_from + settings.duration;
    let mut workers = JoinSet::new();
    for mut sender in senders {
        let target = target.clone();
        workers.spawn(async move {
            let mut samples = Vec::with_capacity(1 << 14);
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                target.exchange(&mut sender).await?;
                // A request counts when its reply arrives inside the measured window.
                let done = Instant::now();
                if done >= measure_from && done < until {
                    samples.push(done - sent);
                }
            }
            Ok::<_, BoxError>(samples)
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = Cpu::now();
    tokio::time::sleep_until(until.into()).await;
    let cpu_after = Cpu::now();
    let mut samples = Vec::new();
    while let Some(joined) = workers.join_next().await {
        samples.extend(joined??);
    }
    let requests = samples.len();
    measured.requests = requests;
    // `DURATION=0` (as `tls-callgrind.sh` runs it) measures no keep-alive load at all.
    measured.requests_per_s = if settings.duration.is_zero() {
        0.0
    } else {
        requests as f64 / settings.duration.as_secs_f64()
    };
    (
        measured.server_us_per_request,
        measured.client_us_per_request,
    ) = Cpu::per(cpu_before, cpu_after, requests);
    measured.request = Latency::of(samples);
    Ok(())
}

/// `count` new connections, at most `concurrency` at a time; their times and the wall time.
async fn connections(
    target: &Arc<Target>,
    concurrency: usize,
    count: usize,
) -> Result<(Vec<Duration>, Duration), BoxError> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (target, next) = (target.clone(), next.clone());
        workers.spawn(async move {
            let mut samples = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                samples.push(target.one_connection().await?);
            }
            Ok::<_, BoxError>(samples)
        });
    }
    let mut samples = Vec::with_capacity(count);
    while let Some(joined) = workers.join_next().await {
        samples.extend(joined??);
    }
    Ok((samples, start.elapsed()))
}

/// The new-connections phase: a tenth of `HANDSHAKES` to warm up, then `HANDSHAKES` timed.
async fn new_connections(
    target: Arc<Target>,
    settings: &Settings,
    measured: &mut Measured,
) -> Result<(), BoxError> {
    connections(&target, settings.connections, settings.handshakes / 10).await?;
    let cpu_before = Cpu::now();
    let (samples, wall) = connections(&target, settings.connections, settings.handshakes).await?;
    let cpu_after = Cpu::now();
    measured.connections_per_s = samples.len() as f64 / wall.as_secs_f64();
    (
        measured.server_us_per_connection,
        measured.client_us_per_connection,
    ) = Cpu::per(cpu_before, cpu_after, samples.len());
    measured.connection = Latency::of(samples);
    Ok(())
}

/// Measures one row: starts its server, checks one exchange, runs both phases, stops it.
/// Returns the results and, for TLS rows, what the session negotiated.
fn measure_row(
    server_runtime: &Runtime,
    client_runtime: &Runtime,
    row: Row,
    pki: &Pki,
    settings: &Settings,
) -> Result<(Measured, Option<Negotiated>), BoxError> {
    let api_key = format!("bench-{}", hex::encode(rand::random::<[u8; 16]>()));
    let running = start_server(server_runtime, row, pki, &api_key)?;
    let addr = running.local_addr();
    let tls = match row.transport {
        Transport::Plain => None,
        Transport::Tls | Transport::Mtls => Some((
            TlsConnector::from(Arc::new(
                pki.client_config(row.transport == Transport::Mtls)?,
            )),
            ServerName::try_from("localhost")?,
        )),
    };
    let target = Arc::new(Target {
        addr,
        host: match row.transport {
            Transport::Plain => format!("127.0.0.1:{}", addr.port()),
            Transport::Tls | Transport::Mtls => format!("localhost:{}", addr.port()),
        },
        tls,
        api_key: (row.transport != Transport::Mtls).then_some(api_key),
    });
    let result = client_runtime.block_on(async {
        // The server answers before anything is timed, and the session is what it should be.
        let (mut sender, connection, negotiated) = target.http1().await?;
        tokio::spawn(connection);
        target.exchange(&mut sender).await?;
        drop(sender);
        let mut measured = Measured::default();
        keep_alive(target.clone(), settings, &mut measured).await?;
        new_connections(target.clone(), settings, &mut measured).await?;
        Ok::<_, BoxError>((measured, negotiated))
    });
    server_runtime.block_on(running.shutdown())?;
    result
}

// ----------------------------------------------------------------------------------- report

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// `value` in milliseconds with two decimals.
fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

/// A CPU figure in microseconds, or `-` when it could not be read.
fn cpu(us: Option<f64>) -> String {
    us.map_or("-".into(), |us| format!("{us:.0} µs"))
}

/// The median over the rounds of an optional field, `None` if any round lacks it.
fn median_of(rounds: &[Measured], field: impl Fn(&Measured) -> Option<f64>) -> Option<f64> {
    rounds
        .iter()
        .map(&field)
        .collect::<Option<Vec<f64>>>()
        .map(median)
}

/// The table: per row, the medians over the rounds; against plain, the median of the
/// same-round ratios (a row and plain run seconds apart, so slow drifts cancel out).
fn report(settings: &Settings, results: &[(Row, Vec<Measured>)]) -> String {
    // A row is set against the plain row with its own TCP_NODELAY setting, or any plain row.
    let plain_for = |row: Row| {
        let plain = |nodelay: Option<bool>| {
            results.iter().find(|(other, _)| {
                other.transport == Transport::Plain
                    && nodelay.is_none_or(|nodelay| nodelay == other.nodelay)
            })
        };
        plain(Some(row.nodelay)).or_else(|| plain(None))
    };
    let ratio = |row: Row, rounds: &[Measured], field: fn(&Measured) -> f64| match plain_for(row) {
        Some((_, base)) => format!(
            "{:.2}x",
            median(
                rounds
                    .iter()
                    .zip(base)
                    .map(|(r, b)| field(r) / field(b))
                    .collect()
            )
        ),
        None => "-".into(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| row | keep-alive req/s | vs plain | p50 | p99 | server CPU / req | new conn/s | vs plain | mean | p50 | p99 | server CPU / conn | client CPU / conn |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (row, rounds) in results {
        let med = |field: fn(&Measured) -> f64| median(rounds.iter().map(field).collect());
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            row.label(),
            med(|m| m.requests_per_s),
            ratio(*row, rounds, |m| m.requests_per_s),
            ms(med(|m| m.request.p50)),
            ms(med(|m| m.request.p99)),
            cpu(median_of(rounds, |m| m.server_us_per_request)),
            med(|m| m.connections_per_s),
            ratio(*row, rounds, |m| m.connections_per_s),
            ms(med(|m| m.connection.mean)),
            ms(med(|m| m.connection.p50)),
            ms(med(|m| m.connection.p99)),
            cpu(median_of(rounds, |m| m.server_us_per_connection)),
            cpu(median_of(rounds, |m| m.client_us_per_connection)),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "per round (req/s keep-alive; new conn/s), {} rounds:",
        settings.rounds
    );
    for (row, rounds) in results {
        let list = |field: fn(&Measured) -> f64| {
            rounds
                .iter()
                .map(|m| format!("{:.0}", field(m)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let _ = writeln!(
            out,
            "  {:<13} {}; {}",
            row.name(),
            list(|m| m.requests_per_s),
            list(|m| m.connections_per_s)
        );
    }
    out
}

/// Prints one row's results of one round on stderr.
fn log_round(round: usize, row: Row, m: &Measured) {
    eprintln!(
        "  round {round} {:<13} keep-alive {:>7.0} req/s ({} requests), p50 {}, p99 {}, server CPU {} / req, client CPU {} / req",
        row.name(),
        m.requests_per_s,
        m.requests,
        ms(m.request.p50),
        ms(m.request.p99),
        cpu(m.server_us_per_request),
        cpu(m.client_us_per_request),
    );
    eprintln!(
        "  round {round} {:<13} new conns  {:>7.0} /s,    mean {}, p50 {}, p99 {}, server CPU {} / conn, client CPU {} / conn",
        row.name(),
        m.connections_per_s,
        ms(m.connection.mean),
        ms(m.connection.p50),
        ms(m.connection.p99),
        cpu(m.server_us_per_connection),
        cpu(m.client_us_per_connection),
    );
}

/// A runtime of `threads` workers named `name`, all drivers on.
fn runtime(name: &str, threads: usize) -> Result<Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()?)
}

fn run() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    let server_runtime = runtime("load-server", settings.server_threads)?;
    let client_runtime = runtime("load-client", settings.client_threads)?;
    let pki = Pki::generate()?;
    eprintln!("tls-load: {}", settings.summary());
    let mut results: Vec<(Row, Vec<Measured>)> = settings
        .rows
        .iter()
        .map(|row| (*row, Vec::with_capacity(settings.rounds)))
        .collect();
    let mut negotiated = Vec::new();
    for round in 0..settings.rounds {
        for offset in 0..settings.rows.len() {
            // Each round starts one row later than the one before.
            let index = (offset + round) % settings.rows.len();
            let row = settings.rows[index];
            let (measured, session) =
                measure_row(&server_runtime, &client_runtime, row, &pki, &settings)
                    .map_err(|e| format!("round {} row {}: {e}", round + 1, row.name()))?;
            log_round(round + 1, row, &measured);
            if round == 0
                && let Some(Negotiated(session)) = session
            {
                negotiated.push(format!("{}: {session}", row.name()));
            }
            results[index].1.push(measured);
        }
    }
    println!("tls-load: {}", settings.summary());
    println!(
        "medians of the rounds; \"vs plain\": the median of the same-round ratios; CPU: time on \
         CPU of the server's / the client's runtime threads per request or connection"
    );
    for line in negotiated {
        println!("TLS {line}");
    }
    println!();
    print!("{}", report(&settings, &results));
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tls-load: {error}");
            ExitCode::FAILURE
        }
    }
}
