//! mcp-gatekeeper with the same one tool, behind a role guard, a rate limit that never
//! triggers (counted in the process, or in Redis with `--redis-url`) and a JSON-lines audit
//! trail; callers authenticate with an API key or a JWT.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_gatekeeper::{AuditLog, RedisRateLimiter, auth::Oidc, prelude::*};
use serde::Serialize;

use mcp_gatekeeper::shutdown_signal as stop_signal;

use crate::{Mode, Options, listen, write_credential};

/// The benchmark's one role.
#[derive(Roles, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// May call `echo`.
    Viewer,
}

/// The benchmark's tools.
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

/// The claims of the benchmark's JWTs.
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    role: &'a str,
    iat: u64,
    exp: u64,
    /// Only on the cache-miss rows' tokens, to make each one different.
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
}

const ISSUER: &str = "mcp-gatekeeper-bench";
/// The audience of the benchmark's tokens (checked, as every server must).
const AUDIENCE: &str = "http://127.0.0.1/mcp";

/// A random hex string of `bytes` bytes.
fn random_hex(bytes: usize) -> String {
    hex::encode(
        (0..bytes)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<u8>>(),
    )
}

/// A one-day token for a `viewer`, signed with `key`, with `jti` if given.
fn mint(algorithm: Algorithm, key: &EncodingKey, jti: Option<&str>) -> Result<String, String> {
    mint_for(ISSUER, algorithm, key, jti)
}

/// [`mint`] for tokens of `issuer`, with the identity provider's `kid`.
fn mint_for(
    issuer: &str,
    algorithm: Algorithm,
    key: &EncodingKey,
    jti: Option<&str>,
) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = Claims {
        sub: "bench-client",
        iss: issuer,
        aud: AUDIENCE,
        role: "viewer",
        iat: now,
        exp: now + 86_400,
        jti,
    };
    let mut header = Header::new(algorithm);
    if issuer != ISSUER {
        header.kid = Some(crate::idp::KID.to_owned());
    }
    jsonwebtoken::encode(&header, &claims, key)
        .map_err(|e| format!("cannot sign the benchmark token: {e}"))
}

/// Writes `options.fresh_token_count` distinct tokens to `--fresh-tokens`, if asked: the
/// client of a cache-miss row sends each once, so every request is verified in full.
fn write_fresh_tokens(
    options: &Options,
    algorithm: Algorithm,
    key: &EncodingKey,
) -> Result<(), String> {
    let Some(path) = &options.fresh_tokens else {
        return Ok(());
    };
    let mut lines = String::new();
    for i in 0..options.fresh_token_count {
        lines.push_str(&mint(algorithm, key, Some(&format!("fresh-{i}")))?);
        lines.push('\n');
    }
    std::fs::write(path, lines).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read(path: Option<&std::path::PathBuf>) -> Result<Vec<u8>, String> {
    let path = path.ok_or("missing key file")?;
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The server for `options` (credentials configured, not yet bound) and the header line a
/// client must send.
async fn server(
    options: &Options,
    audit: AuditLog,
) -> Result<(Gatekeeper<EchoTools>, String), String> {
    let server = Gatekeeper::new(EchoTools)
        .audit(audit)
        .audit_successes(options.audit_successes);
    let (server, header) = match options.mode {
        Mode::ApiKey => {
            let key = format!("bench-{}", random_hex(16));
            let keys = ApiKeys::new().with_key(ApiKey::new("bench", &key).role("viewer"));
            (server.authenticate(keys), format!("X-API-Key: {key}"))
        }
        Mode::Hs256 => {
            let secret = random_hex(32);
            let jwt = Jwt::hs256(&secret)
                .map_err(|e| e.to_string())?
                .issuer(ISSUER)
                .audience(AUDIENCE);
            let key = EncodingKey::from_secret(secret.as_bytes())
                .map_err(|e| format!("bad HS256 secret: {e}"))?;
            let token = mint(Algorithm::HS256, &key, None)?;
            write_fresh_tokens(options, Algorithm::HS256, &key)?;
            (
                server.authenticate(jwt),
                format!("Authorization: Bearer {token}"),
            )
        }
        Mode::Es256 => {
            let public = read(options.es256_public.as_ref())?;
            let private = read(options.es256_private.as_ref())?;
            let jwt = Jwt::es256_pem(&public)
                .map_err(|e| e.to_string())?
                .issuer(ISSUER)
                .audience(AUDIENCE);
            let key = EncodingKey::from_ec_pem(&private)
                .map_err(|e| format!("bad ES256 private key (PKCS#8 PEM expected): {e}"))?;
            let token = mint(Algorithm::ES256, &key, None)?;
            write_fresh_tokens(options, Algorithm::ES256, &key)?;
            (
                server.authenticate(jwt),
                format!("Authorization: Bearer {token}"),
            )
        }
        Mode::Oidc => {
            let public = read(options.es256_public.as_ref())?;
            let private = read(options.es256_private.as_ref())?;
            let key = EncodingKey::from_ec_pem(&private)
                .map_err(|e| format!("bad ES256 private key (PKCS#8 PEM expected): {e}"))?;
            let provider = crate::idp::serve(&public, None).await?;
            let oidc = Oidc::issuer(&provider)
                .audience(AUDIENCE)
                .role_claim("role")
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let token = mint_for(&provider, Algorithm::ES256, &key, None)?;
            if let Some(path) = &options.fresh_tokens {
                let mut lines = String::new();
                for i in 0..options.fresh_token_count {
                    let jti = format!("fresh-{i}");
                    lines.push_str(&mint_for(&provider, Algorithm::ES256, &key, Some(&jti))?);
                    lines.push('\n');
                }
                std::fs::write(path, lines)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            (
                server.authenticate(oidc),
                format!("Authorization: Bearer {token}"),
            )
        }
        Mode::Introspect => {
            let token = format!("opaque-{}", random_hex(24));
            let provider = crate::idp::serve(&[], Some((&token, AUDIENCE))).await?;
            let oidc = Oidc::issuer(&provider)
                .audience(AUDIENCE)
                .role_claim("role")
                .introspection(crate::idp::CLIENT_ID, crate::idp::CLIENT_SECRET)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            (
                server.authenticate(oidc),
                format!("Authorization: Bearer {token}"),
            )
        }
        Mode::Bare => return Err("not a gatekeeper mode".into()),
    };
    let server = match &options.redis_url {
        // A prefix of its own per start: no run shares a caller's budget with another.
        Some(url) => {
            let prefix = options
                .redis_prefix
                .clone()
                .unwrap_or_else(|| format!("mcp-gatekeeper-bench:{}:", random_hex(8)));
            server.rate_limiter(RedisRateLimiter::new(url).prefix(prefix))
        }
        None => server,
    };
    Ok(if options.stateful {
        // One client opens every session of the stateful rows (`SESSIONS`, default 32): more
        // than a caller may hold by default (16), which would end the oldest mid-run.
        (
            server.session_limits(mcp_gatekeeper::SessionLimits::new().per_caller(1024)),
            header,
        )
    } else {
        (server.stateless(), header)
    })
}

/// Serves mcp-gatekeeper until SIGTERM, then reports dropped audit records on stderr.
pub(crate) async fn run(options: &Options) -> Result<(), String> {
    // The same sink `.audit_file(path)` builds; kept here to report drops at the end.
    let audit = match &options.audit_file {
        Some(path) => AuditLog::json_lines(path).map_err(|e| e.to_string())?,
        None => AuditLog::tracing_only(),
    };
    let (server, header) = server(options, audit.clone()).await?;
    write_credential(options, &header)?;
    if options.tcp_nodelay {
        // Diagnostic only: the same router, served with TCP_NODELAY on accepted connections.
        let router = server.into_router().map_err(|e| e.to_string())?;
        let listener = listen(options).await?;
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stop_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
        eprintln!("bench-server: audit records dropped: {}", audit.dropped());
        return Ok(());
    }
    let running = server
        .bind(options.bind.as_str())
        .await
        .map_err(|e| e.to_string())?;
    stop_signal().await;
    let stopped = tokio::time::timeout(Duration::from_secs(5), running.shutdown()).await;
    eprintln!(
        "bench-server: audit records dropped: {}{}",
        audit.dropped(),
        if stopped.is_err() {
            " (shutdown timed out)"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use mcp_gatekeeper::McpTools;

    use super::EchoTools;

    #[test]
    fn tools_announce_the_crate_that_declares_them() {
        // The macros expand in this crate, so its name and version are the server's default
        // identity (`Gatekeeper::server_info` overrides it).
        let info = <EchoTools as McpTools>::__server_info();
        assert_eq!(info.name, env!("CARGO_PKG_NAME"));
        assert_eq!(info.name, "mcp-gatekeeper-bench");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }
}
