//! `bench-server`: the Rust servers of the side-by-side load benchmark (`bench/run.sh`).
//!
//! Every mode serves one trivial tool, `echo` (`{"text": "..."}` back as text), at
//! `http://ADDR/mcp`:
//!
//! - `--mode bare`: a plain rmcp 3.11 server (router built once and stored in a field), no
//!   authentication;
//! - `--mode apikey`: mcp-gatekeeper, `X-API-Key` authentication, a `viewer` role guard, a rate
//!   limit that never triggers (`1000000000/s`) and audit records to a JSON-lines file;
//! - `--mode hs256` / `--mode es256`: the same with an HS256 / ES256 JWT
//!   (`Authorization: Bearer ...`);
//! - `--mode oidc`: the same ES256 JWT, verified by the `Oidc` authenticator with the key from
//!   an identity provider's JWKS (discovery and key set served by this process on another
//!   loopback port before the server starts): the request path of a cached JWKS key, to set
//!   against `es256`'s static key;
//! - `--mode introspect`: an opaque token the same identity provider answers for at its
//!   RFC 7662 endpoint; after the first request every one is an introspection cache hit.
//!
//! ```text
//! bench-server --mode apikey [--stateful] [--bind 127.0.0.1:8801]
//!              [--credential-file FILE] [--audit-file FILE]
//!              [--es256-private PEM --es256-public PEM]
//!              [--redis-url redis://127.0.0.1:6379 [--redis-prefix PREFIX]]
//! ```
//!
//! `--redis-url URL` (any gatekeeper mode; `run.sh`'s `apikey-redis` row) keeps the tools' rate
//! limits in that Redis (`Gatekeeper::rate_limiter(RedisRateLimiter::new(URL))`, as replicas
//! behind one load balancer would) instead of in the process: every `tools/call echo` then runs
//! the GCRA script in Redis (one `EVALSHA` over the limiter's one multiplexed connection) before
//! the tool. The rate stays `1000000000/s`, so it still never triggers: each call moves the
//! caller's theoretical arrival time 1 µs ahead, within a tolerance of 1,000 s. The keys go
//! under `--redis-prefix` (default `mcp-gatekeeper-bench:<16 random hex digits>:`, new on every
//! start, so no run shares a budget with another or with anything else in that Redis; the one
//! key expires a millisecond after the last call). The limiter fails closed: with Redis away
//! every call is refused (`-32005`), so `run.sh`'s readiness check (a real `tools/call`) never
//! passes and the row stops with that reply instead of measuring refusals.
//!
//! Stateless mode (the default) is rmcp's `NeverSessionManager` with legacy sessions off and
//! plain JSON replies; `--stateful` serves `Mcp-Session-Id` sessions with SSE replies.
//! The credential a client must send is written to `--credential-file` as one header line
//! (`X-API-Key: ...` or `Authorization: Bearer ...`; empty for `bare`) before the port opens.
//! The server stops on SIGTERM or Ctrl-C.
//!
//! `--fresh-tokens FILE` (JWT modes) also writes `--fresh-token-count` (default 20,000) more
//! tokens to FILE, one per line, each with its own `jti`, before the port opens: a client that
//! sends each of them once (`BENCH_TOKENS` in `mcp.lua`) measures the verified-token cache's
//! miss path, where every request's signature and claims are checked. The `*-cold` rows of
//! `run.sh` and `callgrind.sh` do that.
//!
//! `--no-audit-file` (a diagnostic) keeps audit records on `tracing` only, to measure what the
//! JSON-lines sink costs. `--audit-successes all|none|N` (default `all`) audits every
//! successful call, none, or one in N (`Gatekeeper::audit_successes`), to measure what the
//! trail costs on disk at each setting.
//! `--any-host` (a diagnostic, bare only) switches rmcp's own `Host` allow-list check off, to
//! measure what it costs bare rmcp (the gatekeeper checks `Host` itself, with lists parsed once).
//! `--tcp-nodelay` (a diagnostic, off in the benchmark table) sets `TCP_NODELAY` on accepted
//! connections; for the gatekeeper modes it serves `Gatekeeper::into_router()` with its own
//! `axum::serve` instead of `Gatekeeper::bind`, since the builder offers no such switch.

mod bare;
mod gate;
mod idp;

use std::{path::PathBuf, process::ExitCode};

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain rmcp, no authentication.
    Bare,
    /// mcp-gatekeeper with an API key.
    ApiKey,
    /// mcp-gatekeeper with an HS256 JWT.
    Hs256,
    /// mcp-gatekeeper with an ES256 JWT.
    Es256,
    /// mcp-gatekeeper with an ES256 JWT from an identity provider's JWKS.
    Oidc,
    /// mcp-gatekeeper with an opaque token checked by introspection.
    Introspect,
}

/// The command line.
#[derive(Debug)]
struct Options {
    mode: Mode,
    stateful: bool,
    any_host: bool,
    tcp_nodelay: bool,
    bind: String,
    credential_file: Option<PathBuf>,
    audit_file: Option<PathBuf>,
    audit_successes: mcp_gatekeeper::AuditSuccesses,
    es256_private: Option<PathBuf>,
    es256_public: Option<PathBuf>,
    /// Where to write tokens for the cache-miss rows, if asked.
    fresh_tokens: Option<PathBuf>,
    /// How many tokens to write there.
    fresh_token_count: usize,
    /// The Redis that keeps the tools' rate limits, if any (else the process does).
    redis_url: Option<String>,
    /// The prefix of the Redis keys (default: new and random on every start).
    redis_prefix: Option<String>,
}

const USAGE: &str = "usage: bench-server --mode bare|apikey|hs256|es256|oidc|introspect [--stateful] [--tcp-nodelay] [--any-host] [--bind ADDR] \
[--credential-file FILE] [--audit-file FILE | --no-audit-file] [--audit-successes all|none|N] [--es256-private PEM --es256-public PEM] \
[--fresh-tokens FILE [--fresh-token-count N]] [--redis-url URL [--redis-prefix PREFIX]]";

fn parse_options() -> Result<Options, String> {
    let mut mode = None;
    let mut options = Options {
        mode: Mode::Bare,
        stateful: false,
        any_host: false,
        tcp_nodelay: false,
        bind: "127.0.0.1:8801".into(),
        credential_file: None,
        audit_file: Some(std::env::temp_dir().join("mcp-gatekeeper-bench-audit.jsonl")),
        audit_successes: mcp_gatekeeper::AuditSuccesses::All,
        es256_private: None,
        es256_public: None,
        fresh_tokens: None,
        fresh_token_count: 20_000,
        redis_url: None,
        redis_prefix: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--mode" => {
                mode = Some(match value("--mode")?.as_str() {
                    "bare" => Mode::Bare,
                    "apikey" => Mode::ApiKey,
                    "hs256" => Mode::Hs256,
                    "es256" => Mode::Es256,
                    "oidc" => Mode::Oidc,
                    "introspect" => Mode::Introspect,
                    other => return Err(format!("unknown mode `{other}`")),
                });
            }
            "--stateful" => options.stateful = true,
            "--tcp-nodelay" => options.tcp_nodelay = true,
            "--any-host" => options.any_host = true,
            "--bind" => options.bind = value("--bind")?,
            "--credential-file" => {
                options.credential_file = Some(value("--credential-file")?.into())
            }
            "--audit-file" => options.audit_file = Some(value("--audit-file")?.into()),
            "--no-audit-file" => options.audit_file = None,
            "--audit-successes" => {
                use mcp_gatekeeper::AuditSuccesses;
                options.audit_successes = match value("--audit-successes")?.as_str() {
                    "all" => AuditSuccesses::All,
                    "none" => AuditSuccesses::None,
                    n => AuditSuccesses::OneIn(n.parse().map_err(|_| {
                        format!("--audit-successes takes all, none or a number, not `{n}`")
                    })?),
                };
            }
            "--es256-private" => options.es256_private = Some(value("--es256-private")?.into()),
            "--es256-public" => options.es256_public = Some(value("--es256-public")?.into()),
            "--fresh-tokens" => options.fresh_tokens = Some(value("--fresh-tokens")?.into()),
            "--fresh-token-count" => {
                options.fresh_token_count = value("--fresh-token-count")?
                    .parse()
                    .map_err(|_| "--fresh-token-count needs a number".to_owned())?;
            }
            "--redis-url" => options.redis_url = Some(value("--redis-url")?),
            "--redis-prefix" => options.redis_prefix = Some(value("--redis-prefix")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    options.mode = mode.ok_or_else(|| format!("--mode is required\n{USAGE}"))?;
    if matches!(options.mode, Mode::Es256 | Mode::Oidc)
        && (options.es256_private.is_none() || options.es256_public.is_none())
    {
        return Err("--mode es256 and oidc need --es256-private and --es256-public".into());
    }
    if options.fresh_tokens.is_some()
        && !matches!(options.mode, Mode::Hs256 | Mode::Es256 | Mode::Oidc)
    {
        return Err("--fresh-tokens needs --mode hs256, es256 or oidc".into());
    }
    if options.redis_url.is_some() && options.mode == Mode::Bare {
        return Err("--redis-url needs a gatekeeper mode (bare has no rate limit)".into());
    }
    if options.redis_prefix.is_some() && options.redis_url.is_none() {
        return Err("--redis-prefix needs --redis-url".into());
    }
    Ok(options)
}

/// Binds `options.bind`; with `--tcp-nodelay`, accepted connections get `TCP_NODELAY`.
async fn listen(
    options: &Options,
) -> Result<
    axum::serve::TapIo<
        tokio::net::TcpListener,
        impl FnMut(&mut tokio::net::TcpStream) + Send + 'static,
    >,
    String,
> {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(&options.bind)
        .await
        .map_err(|e| format!("cannot bind {}: {e}", options.bind))?;
    let nodelay = options.tcp_nodelay;
    Ok(listener.tap_io(move |stream| {
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
    }))
}

/// Writes the header line a client must send (empty when none is needed).
fn write_credential(options: &Options, header: &str) -> Result<(), String> {
    if let Some(path) = &options.credential_file {
        std::fs::write(path, format!("{header}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // A production-like subscriber: warnings and errors only, so audit INFO events cost what a
    // disabled callsite costs.
    #[cfg(feature = "otel")]
    let _provider = tracing_with_spans();
    #[cfg(not(feature = "otel"))]
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let result = match options.mode {
        Mode::Bare => bare::run(&options).await,
        Mode::ApiKey | Mode::Hs256 | Mode::Es256 | Mode::Oidc | Mode::Introspect => {
            gate::run(&options).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The same subscriber, and with `BENCH_OTEL=1` the gatekeeper's spans (target
/// `mcp_gatekeeper::otel`) made into OpenTelemetry spans as a traced server makes them: sampled,
/// ended into a batch processor, exported by an exporter that drops them (the cost of a real
/// exporter's network is not the gatekeeper's).
#[cfg(feature = "otel")]
fn tracing_with_spans() -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

    #[derive(Debug)]
    struct Dropped;
    impl opentelemetry_sdk::trace::SpanExporter for Dropped {
        async fn export(
            &self,
            _batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
    }

    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        );
    let provider = (std::env::var_os("BENCH_OTEL").is_some_and(|v| v == "1")).then(|| {
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(Dropped)
            .build()
    });
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("bench-server"))
            .with_filter(tracing_subscriber::filter::Targets::new().with_target(
                mcp_gatekeeper::otel::TARGET,
                tracing_subscriber::filter::LevelFilter::INFO,
            ))
    });
    tracing_subscriber::registry().with(logs).with(spans).init();
    provider
}
