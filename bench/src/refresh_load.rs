//! `refresh-load`: how many OAuth refresh grants a second the authorization server answers with
//! its store in SQLite and in PostgreSQL, measured in one run.
//!
//! Each row is this crate's authorization server (`OAuthServer`, mounted on a stateless
//! mcp-gatekeeper as `Gatekeeper::oauth` mounts it, on `127.0.0.1:0`) on a fresh store:
//!
//! - `sqlite`: `SqliteStore` in a new file under the temporary directory (WAL,
//!   `synchronous = FULL`, one connection behind a mutex, run on Tokio's blocking pool), removed
//!   afterwards;
//! - `postgres`: `PostgresStore` on `DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`) in a new schema `refresh_load_<pid>_<random>`
//!   (`PostgresOptions::schema`; pool of `PG_CONNECTIONS`, default 16 as the store's default),
//!   dropped afterwards with everything in it.
//!
//! A row written `STORE:N` (`postgres:32`) runs `N` chains instead of `CHAINS`.
//!
//! The server knows one user and one confidential client (`client_secret_basic`, grant types
//! `authorization_code` and `refresh_token`). Before anything is timed, each of the `CHAINS`
//! chains gets a grant of its own: an authorization code (with its PKCE challenge) is written to
//! the store directly, as the consent page would have (`Store::put_code`, an `AuthCodeRecord`
//! holding `hash_secret(code)`), and redeemed at `/oauth/token` (`grant_type=authorization_code`)
//! for an access token and the chain's first refresh token. Then every chain, on its own
//! keep-alive HTTP/1.1 connection, sends `grant_type=refresh_token` with its current refresh
//! token back to back: each answer rotates the token (the old one is used up, the new one is the
//! only one that works), so a chain is sequential, and `CHAINS` chains are the concurrency.
//! Every answer must be `200` with a new access token and refresh token; anything else stops the
//! run with the reply. Each refresh makes the server read the client, the refresh token and the
//! user from the store, rotate the token in one write transaction (lock the old row, check its
//! family is not revoked, mark it rotated, insert the successor, link the two), sign an ES256
//! access token and write an audit record (to `tracing`, no subscriber: off).
//!
//! Each round runs every row in turn, starting one row later than the round before (as
//! `run.sh` and `tls-load` do: this machine's speed drifts, and no row should always go first):
//! `WARMUP` of grants, then `DURATION` measured. Reported per row (medians over the rounds):
//! grants/s (answers that arrived in the measured window), their p50 and p99 latency, CPU per
//! grant of the server's runtime threads (the SQLite store's blocking-pool threads included), of
//! the PostgreSQL server's processes (every process named `postgres` on the machine, from
//! `/proc/<pid>/stat`: its backends, WAL writer and the rest; other users of that server are
//! counted too, so this figure is only as clean as the machine is quiet) and of the client; and
//! for `postgres` rows, per grant over the whole row (every grant answered, warm-up and the
//! codes' redemption included, counters read a moment after the load so that PostgreSQL has
//! published them), the WAL flushes to disk (`pg_stat_wal.wal_sync`, the whole cluster) and the
//! transactions committed in the database (`pg_stat_database.xact_commit`: each statement sent
//! outside `BEGIN` ... `COMMIT` is one, so is each empty query the pool sends to check a
//! connection before handing it out). "vs sqlite" is the median of the same-round ratios
//! against the `sqlite` row with the same number of chains.
//!
//! **Two runtimes, one process**, as in `tls-load`: the server on one Tokio runtime (threads
//! `load-server`, one worker per core), the client on another (`CLIENT_THREADS` workers
//! `load-client`, default 2), so the wake-ups cross threads as with a client in another process,
//! and each side's CPU time can be read per thread. The client, the server and PostgreSQL share
//! the machine's cores.
//!
//! ```text
//! cargo run --release -p mcp-gatekeeper-bench --bin refresh-load
//! ROWS="sqlite postgres sqlite:32 postgres:32" ROUNDS=3 cargo run --release -p mcp-gatekeeper-bench --bin refresh-load
//! ```
//!
//! Settings (environment): `ROWS="sqlite postgres" CHAINS=16 WARMUP=2s DURATION=5s ROUNDS=3
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test PG_CONNECTIONS=16 CLIENT_THREADS=2
//! SERVER_THREADS=<cores>`. Per-round results go to stderr, the table to stdout.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, StatusCode,
    body::Bytes,
    client::conn::http1::{self, SendRequest},
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use mcp_gatekeeper::{
    RunningServer,
    oauth::{AuthorizationServer, OAuthClient, OAuthServer, User},
    prelude::*,
    store::{AuthCodeRecord, PostgresOptions, PostgresStore, SqliteStore, Store, hash_secret},
};
use sha2::{Digest as _, Sha256};
use tokio::{net::TcpStream, runtime::Runtime, task::JoinSet};

/// Any error of this tool; it ends the run.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The benchmark's one role.
#[derive(Roles, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// May call `echo`.
    Viewer,
}

/// The MCP server the tokens are for: `bench-server`'s tool, declared again so that this
/// binary stands alone. No request of this tool calls it; it gives the authorization server
/// its resource.
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

/// The confidential client every chain authenticates as.
const CLIENT_ID: &str = "refresh-load";
/// Its redirect URI (never visited: the codes are written to the store directly).
const CALLBACK: &str = "https://refresh-load.example/callback";
/// The user whose grants the chains refresh.
const USER: &str = "bench-user";
/// The one scope granted.
const SCOPE: &str = "echo";
/// The longest any one exchange may take before the run is called broken.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a row keeps the authorization server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// `SqliteStore` in a temporary file.
    Sqlite,
    /// `PostgresStore` in a fresh schema.
    Postgres,
}

/// One configuration measured: a store, and how many chains refresh at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    backend: Backend,
    chains: usize,
}

impl Row {
    /// The name `ROWS` knows it by (with the chains, always).
    fn name(self) -> String {
        let backend = match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        format!("{backend}:{}", self.chains)
    }

    /// The table's label.
    fn label(self) -> String {
        let backend = match self.backend {
            Backend::Sqlite => "SqliteStore (temp file, WAL, synchronous=FULL)",
            Backend::Postgres => "PostgresStore (loopback TCP)",
        };
        format!("{backend}, {} chains", self.chains)
    }

    /// Parses `sqlite`, `postgres`, optionally with `:N` chains (else `chains`).
    fn parse(s: &str, chains: usize) -> Result<Self, String> {
        let (backend, chains) = match s.split_once(':') {
            Some((backend, n)) => (backend, count(n)?),
            None => (s, chains),
        };
        let backend = match backend {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            _ => {
                return Err(format!(
                    "unknown row `{s}` (sqlite or postgres, optionally :CHAINS)"
                ));
            }
        };
        Ok(Self { backend, chains })
    }
}

/// The settings, from the environment.
#[derive(Debug)]
struct Settings {
    /// `ROWS`, in order.
    rows: Vec<Row>,
    /// `WARMUP`: grants before the measured window.
    warmup: Duration,
    /// `DURATION`: the measured window.
    duration: Duration,
    /// `ROUNDS`: how many times every row runs.
    rounds: usize,
    /// `DATABASE_URL`: the PostgreSQL server of the `postgres` rows.
    database_url: String,
    /// `PG_CONNECTIONS`: the `postgres` rows' pool size.
    pg_connections: usize,
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

/// `url` without its password, for messages.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let chains = setting("CHAINS", 16, count)?;
        let rows: Vec<Row> = setting("ROWS", "sqlite postgres".to_owned(), |v| Ok(v.to_owned()))?
            .split_whitespace()
            .map(|row| Row::parse(row, chains))
            .collect::<Result<_, _>>()?;
        if rows.is_empty() {
            return Err("ROWS names no row".into());
        }
        Ok(Self {
            rows,
            warmup: setting("WARMUP", Duration::from_secs(2), parse_duration)?,
            duration: setting("DURATION", Duration::from_secs(5), parse_duration)?,
            rounds: setting("ROUNDS", 3, count)?,
            database_url: setting(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/test".to_owned(),
                |v| Ok(v.to_owned()),
            )?,
            pg_connections: setting("PG_CONNECTIONS", 16, count)?,
            client_threads: setting("CLIENT_THREADS", 2, count)?,
            server_threads: setting("SERVER_THREADS", cores, count)?,
        })
    }

    /// The settings in one line, for the log and the table's heading.
    fn summary(&self) -> String {
        format!(
            "{} rounds of {}; {:?} warm-up + {:?} measured; PostgreSQL {} (pool {}); server: {} \
             threads; client: {} threads; {} cores",
            self.rounds,
            self.rows
                .iter()
                .map(|row| row.name())
                .collect::<Vec<_>>()
                .join(" "),
            self.warmup,
            self.duration,
            without_password(&self.database_url),
            self.pg_connections,
            self.server_threads,
            self.client_threads,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        )
    }
}

// ---------------------------------------------------------------------------------- servers

/// A row's store, and what removes it afterwards.
enum Made {
    /// The directory holding the SQLite file (and its `-wal`, `-shm`).
    Sqlite(PathBuf),
    /// The PostgreSQL schema.
    Postgres(String),
}

/// A running authorization server on a fresh store.
struct Server {
    oauth: OAuthServer,
    running: RunningServer,
    addr: SocketAddr,
    /// The issuer, `http://127.0.0.1:PORT`.
    base: String,
    /// The resource, `<base>/mcp`.
    resource: String,
    made: Made,
}

/// A fresh store for `backend`, made on the server runtime (the pool's connections are driven
/// there).
fn make_store(
    runtime: &Runtime,
    backend: Backend,
    settings: &Settings,
) -> Result<(Arc<dyn Store>, Made), BoxError> {
    let unique = format!("{}_{}", std::process::id(), rand::random::<u32>());
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("refresh-load-{unique}"));
            let store = SqliteStore::open(dir.join("oauth.db"))?;
            Ok((Arc::new(store), Made::Sqlite(dir)))
        }
        Backend::Postgres => {
            let schema = format!("refresh_load_{unique}");
            let options = PostgresOptions::new()
                .schema(&schema)
                .max_connections(settings.pg_connections);
            let store = runtime
                .block_on(PostgresStore::connect_with(&settings.database_url, options))
                .map_err(|e| {
                    format!(
                        "PostgreSQL at {}: {e}",
                        without_password(&settings.database_url)
                    )
                })?;
            Ok((Arc::new(store), Made::Postgres(schema)))
        }
    }
}

/// Starts the authorization server on a fresh store of `backend`.
fn start_server(
    runtime: &Runtime,
    backend: Backend,
    settings: &Settings,
    secret: &str,
) -> Result<Server, BoxError> {
    let (store, made) = make_store(runtime, backend, settings)?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let resource = format!("{base}/mcp");
    let password = format!("pw-{}", hex::encode(rand::random::<[u8; 12]>()));
    let oauth = runtime.block_on(
        AuthorizationServer::new(&base)
            .resource(&resource)
            .scopes([SCOPE])
            .user(User::new(USER, password).role("viewer"))
            .client(
                OAuthClient::confidential(CLIENT_ID, secret)
                    .name("refresh-load")
                    .redirect_uris([CALLBACK])
                    .scopes([SCOPE]),
            )
            .store(store)
            .build(),
    )?;
    // `serve_on` spawns the accept loop on the runtime it is called in: the server's.
    let running = runtime.block_on(async {
        Gatekeeper::new(EchoTools)
            .oauth(&oauth, &resource)
            .stateless()
            .serve_on(listener)
    })?;
    Ok(Server {
        oauth,
        running,
        addr,
        base,
        resource,
        made,
    })
}

/// Stops the server; its store (and the pool's connections) go with the last handle. What
/// removes the store is handed back.
fn stop_server(runtime: &Runtime, server: Server) -> Result<Made, BoxError> {
    let Server {
        oauth,
        running,
        made,
        ..
    } = server;
    runtime.block_on(running.shutdown())?;
    drop(oauth);
    Ok(made)
}

/// Removes a stopped server's store: the SQLite directory, or the schema.
fn remove_store(runtime: &Runtime, made: Made, settings: &Settings) -> Result<(), BoxError> {
    match made {
        Made::Sqlite(dir) => std::fs::remove_dir_all(&dir)?,
        Made::Postgres(schema) => runtime.block_on(async {
            let admin = admin(&settings.database_url).await?;
            admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await?;
            Ok::<_, BoxError>(())
        })?,
    }
    Ok(())
}

/// A connection of this tool's own to the PostgreSQL server (schema drop, statistics).
async fn admin(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("PostgreSQL at {}: {e}", without_password(url)))?;
    tokio::spawn(connection);
    Ok(client)
}

// ----------------------------------------------------------------------------------- client

/// Where the chains send their requests, and as whom.
struct Target {
    addr: SocketAddr,
    /// The `Host` header.
    host: String,
    /// `Authorization: Basic ...` of the confidential client.
    basic: String,
}

/// A chain: its keep-alive connection and its current refresh token.
type Chain = (SendRequest<Full<Bytes>>, String);

/// What a chain keeps of a token response: the refresh token (the access token is checked,
/// then dropped).
struct Tokens {
    refresh: String,
}

impl Target {
    /// A new keep-alive HTTP/1.1 connection (`TCP_NODELAY`, as `tls-load`'s client), its
    /// driver spawned on the current runtime.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, BoxError> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            // Errors reach the sender's next request.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// POSTs `form` to `/oauth/token` as the client; the tokens of a `200` answer, else an
    /// error with the reply.
    async fn token(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        form: String,
    ) -> Result<Tokens, BoxError> {
        let exchange = async {
            sender.ready().await?;
            let request = Request::post("/oauth/token")
                .header(HOST, &self.host)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .header(AUTHORIZATION, &self.basic)
                .body(Full::new(Bytes::from(form)))?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            check(status, &body)
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer in {EXCHANGE_TIMEOUT:?}"))?
    }
}

/// The tokens of a good answer: `200`, a bearer access token, a refresh token.
fn check(status: StatusCode, body: &[u8]) -> Result<Tokens, BoxError> {
    let bad = || {
        let sample: String = String::from_utf8_lossy(body).chars().take(400).collect();
        format!("bad answer: {status} {sample}")
    };
    if status != StatusCode::OK {
        return Err(bad().into());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let access = value["access_token"].as_str().unwrap_or_default();
    let refresh = value["refresh_token"].as_str().unwrap_or_default();
    if access.is_empty() || refresh.is_empty() || value["token_type"] != "Bearer" {
        return Err(bad().into());
    }
    Ok(Tokens {
        refresh: refresh.to_owned(),
    })
}

/// A random base64url string of 32 bytes (codes, PKCE verifiers).
fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Gives each of `chains` chains a grant and its first refresh token: a code written to the
/// store (on the server runtime, where the store's connections live), then redeemed over HTTP
/// (on the client runtime) on the chain's own connection, which it keeps.
fn open_chains(
    server_runtime: &Runtime,
    client_runtime: &Runtime,
    server: &Server,
    target: &Arc<Target>,
    chains: usize,
) -> Result<Vec<Chain>, BoxError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let mut exchanges = Vec::with_capacity(chains);
    for _ in 0..chains {
        let code = random_secret();
        let verifier = random_secret();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let record = AuthCodeRecord {
            code_hash: hash_secret(&code),
            client_id: CLIENT_ID.into(),
            subject: USER.into(),
            redirect_uri: CALLBACK.into(),
            code_challenge: challenge,
            scope: SCOPE.into(),
            resource: Some(server.resource.clone()),
            family_id: hex::encode(rand::random::<[u8; 16]>()),
            expires_at: now + 300,
        };
        server_runtime.block_on(server.oauth.store().put_code(record))?;
        exchanges.push(format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
            CALLBACK.replace(':', "%3A").replace('/', "%2F"),
        ));
    }
    client_runtime.block_on(async {
        let mut opened = Vec::with_capacity(chains);
        for form in exchanges {
            let mut sender = target.connect().await?;
            let tokens = target.token(&mut sender, form).await?;
            opened.push((sender, tokens.refresh));
        }
        Ok(opened)
    })
}

// ------------------------------------------------------------------------------ measurement

/// Whose CPU time a thread or process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    /// A thread of the server's runtime (workers and blocking pool).
    Server,
    /// A thread of the client's runtime.
    Client,
    /// A process named `postgres`.
    Postgres,
}

/// CPU time used so far by each thread of the server's and the client's runtimes and each
/// PostgreSQL process, by thread or process id. Threads come and go (the blocking pool's after
/// 10 s idle, the pool's backends with its connections): a sum over those alive at two moments
/// would lose the whole time of any that ended in between, so [`Cpu::used`] adds up each one's
/// own difference instead.
#[derive(Debug, Clone, Default)]
struct Cpu(HashMap<(Side, u64), Duration>);

/// CPU time used between two [`Cpu`] readings, by side.
#[derive(Debug, Clone, Copy, Default)]
struct Used {
    server: Duration,
    client: Duration,
    postgres: Duration,
}

impl Cpu {
    /// Reads every thread's time on CPU (`/proc/self/task/*/schedstat`, nanoseconds; the
    /// runtime told apart by thread name) and the user + system time of every process named
    /// `postgres` (`/proc/*/stat`, clock ticks of 10 ms); `None` where `/proc` does not say.
    fn now() -> Option<Self> {
        let mut cpu = HashMap::new();
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let task = task.ok()?;
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let dir = task.path();
            let (Ok(name), Ok(schedstat)) = (
                std::fs::read_to_string(dir.join("comm")),
                std::fs::read_to_string(dir.join("schedstat")),
            ) else {
                // The thread ended since the directory was listed.
                continue;
            };
            let side = match name.trim() {
                "load-server" => Side::Server,
                "load-client" => Side::Client,
                _ => continue,
            };
            let nanos: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
            cpu.insert((side, tid), Duration::from_nanos(nanos));
        }
        for process in std::fs::read_dir("/proc").ok()? {
            let Ok(process) = process else { continue };
            let Some(pid) = process
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u64>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(process.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ...`: the name may hold spaces, so split at the last `)`.
            let Some((head, tail)) = stat.rsplit_once(')') else {
                continue;
            };
            if !head.ends_with("(postgres") {
                continue;
            }
            // After the `)`: field 3 (state) first, so utime (14) and stime (15) are 11, 12.
            let fields: Vec<&str> = tail.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
                cpu.insert(
                    (Side::Postgres, pid),
                    Duration::from_millis((user + system) * 10),
                );
            }
        }
        Some(Self(cpu))
    }

    /// The time each side used from `before` to `after`: every thread or process alive at
    /// `after`, less what it had used at `before` (nothing if it started since).
    fn used(before: &Self, after: &Self) -> Used {
        let mut used = Used::default();
        for (key, time) in &after.0 {
            let spent = time.saturating_sub(before.0.get(key).copied().unwrap_or_default());
            match key.0 {
                Side::Server => used.server += spent,
                Side::Client => used.client += spent,
                Side::Postgres => used.postgres += spent,
            }
        }
        used
    }
}

/// Latency percentiles of a set of samples, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    p50: f64,
    p99: f64,
}

impl Latency {
    /// The median and 99th percentile of `samples` (zeros when there are none).
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
            p50: rank(0.50),
            p99: rank(0.99),
        }
    }
}

/// One row's results in one round.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    /// Grants answered in the measured window.
    grants: usize,
    /// The same per second.
    grants_per_s: f64,
    /// Their latencies.
    latency: Latency,
    /// CPU per grant in microseconds: the server's runtime, PostgreSQL, the client.
    server_us: Option<f64>,
    postgres_us: Option<f64>,
    client_us: Option<f64>,
    /// `postgres` rows: the cluster's WAL flushes and the database's committed transactions
    /// per grant, over the whole row.
    counters: Option<PgCounters>,
}

/// PostgreSQL's own counters, per grant over a whole row.
#[derive(Debug, Clone, Copy, Default)]
struct PgCounters {
    /// `pg_stat_wal.wal_sync`: WAL flushes to disk (the whole cluster).
    wal_syncs: f64,
    /// `pg_stat_database.xact_commit` of the database: committed transactions, a
    /// single-statement one for each statement outside `BEGIN` ... `COMMIT`.
    commits: f64,
}

/// PostgreSQL's cumulative statistics: WAL flushes of the cluster, commits of this database.
async fn pg_counters(admin: &tokio_postgres::Client) -> Result<(i64, i64), BoxError> {
    let row = admin
        .query_one(
            "SELECT (SELECT wal_sync FROM pg_stat_wal), \
             (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())",
            &[],
        )
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// A connection for reading PostgreSQL's counters, and what [`pg_counters`] read first.
type Counted = (tokio_postgres::Client, (i64, i64));

/// How long PostgreSQL may take to publish a backend's statistics: a busy backend reports
/// them at most once a second (PostgreSQL 15), an idle one within a second.
const STATS_DELAY: Duration = Duration::from_millis(1_200);

/// What the chains did: the grants answered in the measured window (with their latencies and
/// the CPU used in it), and how many grants were answered in all, warm-up included.
struct Load {
    measured: Measured,
    answered: usize,
}

/// Runs every chain for `WARMUP` + `DURATION`.
async fn refresh_chains(
    target: Arc<Target>,
    chains: Vec<Chain>,
    settings: &Settings,
) -> Result<Load, BoxError> {
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let until = measure_from + settings.duration;
    let mut workers = JoinSet::new();
    for (mut sender, mut refresh) in chains {
        let target = target.clone();
        workers.spawn(async move {
            let mut samples = Vec::with_capacity(1 << 12);
            let mut answered = 0;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                let form = format!("grant_type=refresh_token&refresh_token={refresh}");
                refresh = target.token(&mut sender, form).await?.refresh;
                answered += 1;
                // A grant counts when its answer arrives inside the measured window.
                let done = Instant::now();
                if done >= measure_from && done < until {
                    samples.push(done - sent);
                }
            }
            Ok::<_, BoxError>((samples, answered))
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = Cpu::now();
    tokio::time::sleep_until(until.into()).await;
    let cpu_after = Cpu::now();
    let mut samples = Vec::new();
    let mut answered = 0;
    while let Some(joined) = workers.join_next().await {
        let (chain, count) = joined??;
        samples.extend(chain);
        answered += count;
    }
    let grants = samples.len();
    let used = match (&cpu_before, &cpu_after) {
        (Some(before), Some(after)) if grants > 0 => Some(Cpu::used(before, after)),
        _ => None,
    };
    let per = |f: fn(&Used) -> Duration| {
        used.as_ref()
            .map(|used| f(used).as_secs_f64() * 1e6 / grants as f64)
    };
    Ok(Load {
        measured: Measured {
            grants,
            grants_per_s: grants as f64 / settings.duration.as_secs_f64(),
            latency: Latency::of(samples),
            server_us: per(|c| c.server),
            postgres_us: per(|c| c.postgres),
            client_us: per(|c| c.client),
            counters: None,
        },
        answered,
    })
}

/// Measures one row: a fresh store and server, the chains' grants, the load; then removes it
/// all. For `postgres` rows PostgreSQL's counters are read before the chains get their grants
/// and after the server stopped (its connections closed), each time once the statistics have
/// settled, so they cover every grant of the row: the codes redeemed and every refresh,
/// warm-up included.
fn measure_row(
    server_runtime: &Runtime,
    client_runtime: &Runtime,
    row: Row,
    settings: &Settings,
) -> Result<Measured, BoxError> {
    let secret = format!("secret-{}", hex::encode(rand::random::<[u8; 16]>()));
    let server = start_server(server_runtime, row.backend, settings, &secret)?;
    let target = Arc::new(Target {
        addr: server.addr,
        host: server.base.trim_start_matches("http://").to_owned(),
        basic: format!(
            "Basic {}",
            STANDARD.encode(format!("{CLIENT_ID}:{secret}").as_bytes())
        ),
    });
    // The counters are read over a connection on the client runtime: its few statements are
    // the client's, not the server's.
    let counted = |runtime: &Runtime| -> Result<Option<Counted>, BoxError> {
        if row.backend != Backend::Postgres {
            return Ok(None);
        }
        runtime.block_on(async {
            tokio::time::sleep(STATS_DELAY).await;
            let admin = admin(&settings.database_url).await?;
            let counters = pg_counters(&admin).await?;
            Ok(Some((admin, counters)))
        })
    };
    let result = (|| {
        let before = counted(client_runtime)?;
        let chains = open_chains(server_runtime, client_runtime, &server, &target, row.chains)?;
        let load = client_runtime.block_on(refresh_chains(target.clone(), chains, settings))?;
        Ok::<_, BoxError>((before, load))
    })();
    let made = stop_server(server_runtime, server)?;
    let measured = result.and_then(|(before, load)| {
        let mut measured = load.measured;
        if let Some((admin, (wal_before, commits_before))) = before {
            let grants = (row.chains + load.answered) as f64;
            let (wal_after, commits_after) = client_runtime.block_on(async {
                tokio::time::sleep(STATS_DELAY).await;
                pg_counters(&admin).await
            })?;
            measured.counters = Some(PgCounters {
                wal_syncs: (wal_after - wal_before) as f64 / grants,
                commits: (commits_after - commits_before) as f64 / grants,
            });
        }
        Ok(measured)
    });
    remove_store(server_runtime, made, settings)?;
    measured
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

/// The table: per row, the medians over the rounds; against the `sqlite` row with as many
/// chains, the median of the same-round ratios.
fn report(settings: &Settings, results: &[(Row, Vec<Measured>)]) -> String {
    let sqlite_for = |row: Row| {
        results
            .iter()
            .find(|(other, _)| other.backend == Backend::Sqlite && other.chains == row.chains)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| row | grants/s | vs sqlite | p50 | p99 | server CPU / grant | PostgreSQL CPU / grant | client CPU / grant | WAL flushes / grant | commits / grant |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for (row, rounds) in results {
        let med = |field: fn(&Measured) -> f64| median(rounds.iter().map(field).collect());
        let versus = match sqlite_for(*row) {
            Some((_, base)) => format!(
                "{:.2}x",
                median(
                    rounds
                        .iter()
                        .zip(base)
                        .map(|(r, b)| r.grants_per_s / b.grants_per_s)
                        .collect()
                )
            ),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.label(),
            med(|m| m.grants_per_s),
            versus,
            ms(med(|m| m.latency.p50)),
            ms(med(|m| m.latency.p99)),
            cpu(median_of(rounds, |m| m.server_us)),
            cpu(median_of(rounds, |m| m.postgres_us)),
            cpu(median_of(rounds, |m| m.client_us)),
            median_of(rounds, |m| m.counters.map(|c| c.wal_syncs))
                .map_or("-".into(), |w| format!("{w:.2}")),
            median_of(rounds, |m| m.counters.map(|c| c.commits))
                .map_or("-".into(), |c| format!("{c:.2}")),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "per round (grants/s; p99), {} rounds:",
        settings.rounds
    );
    for (row, rounds) in results {
        let list = |field: fn(&Measured) -> String| {
            rounds.iter().map(field).collect::<Vec<_>>().join(" / ")
        };
        let _ = writeln!(
            out,
            "  {:<12} {}; {}",
            row.name(),
            list(|m| format!("{:.0}", m.grants_per_s)),
            list(|m| ms(m.latency.p99)),
        );
    }
    out
}

/// Prints one row's results of one round on stderr.
fn log_round(round: usize, row: Row, m: &Measured) {
    eprintln!(
        "  round {round} {:<12} {:>7.0} grants/s ({} grants), p50 {}, p99 {}, CPU / grant: server {}, PostgreSQL {}, client {}; per grant: WAL flushes {}, commits {}",
        row.name(),
        m.grants_per_s,
        m.grants,
        ms(m.latency.p50),
        ms(m.latency.p99),
        cpu(m.server_us),
        cpu(m.postgres_us),
        cpu(m.client_us),
        m.counters
            .map_or("-".into(), |c| format!("{:.2}", c.wal_syncs)),
        m.counters
            .map_or("-".into(), |c| format!("{:.2}", c.commits)),
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
    eprintln!("refresh-load: {}", settings.summary());
    let mut results: Vec<(Row, Vec<Measured>)> = settings
        .rows
        .iter()
        .map(|row| (*row, Vec::with_capacity(settings.rounds)))
        .collect();
    for round in 0..settings.rounds {
        for offset in 0..settings.rows.len() {
            // Each round starts one row later than the one before.
            let index = (offset + round) % settings.rows.len();
            let row = settings.rows[index];
            let measured = measure_row(&server_runtime, &client_runtime, row, &settings)
                .map_err(|e| format!("round {} row {}: {e}", round + 1, row.name()))?;
            log_round(round + 1, row, &measured);
            results[index].1.push(measured);
        }
    }
    println!("refresh-load: {}", settings.summary());
    println!(
        "medians of the rounds; \"vs sqlite\": the median of the same-round ratios; CPU: time on \
         CPU per grant of the server's runtime threads, of every `postgres` process, of the \
         client's runtime threads (measured window); WAL flushes (pg_stat_wal.wal_sync) and \
         commits (pg_stat_database.xact_commit) per grant over the whole row, cluster-wide"
    );
    println!();
    print!("{}", report(&settings, &results));
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("refresh-load: {error}");
            ExitCode::FAILURE
        }
    }
}
