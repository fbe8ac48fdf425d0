//! `token`: short-lived development JWTs carrying the claims the server's `Jwt` verifier reads
//! (`role`/`roles`, `scope`, `sub`, `aud`, `iss`, `exp`, `nbf`, `iat`, `jti`).

use std::{path::PathBuf, time::Duration};

use chrono::Utc;
use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_gatekeeper::Jwt;
use rand::{TryRngCore as _, rngs::OsRng};
use serde_json::{Map, Value, json};

use crate::{
    outcome::{Failure, Outcome, note, print},
    time,
};

/// The environment variable holding the HS256 secret, as the examples and servers read it.
const SECRET_VAR: &str = "JWT_SECRET";

/// RFC 7518 §3.2: an HS256 key is at least as long as the hash output.
const MIN_SECRET_BYTES: usize = 32;

/// Development tokens live a day at most: they are for trying things, not for deployments.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A private claim marking the token as minted by this tool, so that logs and reviews can
/// tell it from a token of a real issuer.
const DEV_CLAIM: &str = "mcp_gatekeeper_dev";

#[derive(Args)]
#[command(after_help = "\
Examples:
  export JWT_SECRET=\"$(openssl rand -hex 32)\"
  TOKEN=$(mcp-gatekeeper token --sub alice --role admin --aud http://127.0.0.1:3000/mcp --iss mcp-auth-server)
  curl -H \"Authorization: Bearer $TOKEN\" ...
  mcp-gatekeeper token --sub ci --role viewer --scope data:read --ttl 15m --key signing-key.pem --aud https://mcp.example.com/mcp")]
pub(crate) struct TokenArgs {
    /// The subject (`sub`): who the token speaks for.
    #[arg(long, value_name = "SUB", value_parser = parse_non_empty)]
    sub: String,
    /// A role (`role` claim; `roles` when several); repeat for several.
    #[arg(long = "role", value_name = "ROLE", value_parser = parse_word)]
    roles: Vec<String>,
    /// A scope (the space-separated `scope` claim); repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_word)]
    scopes: Vec<String>,
    /// The audience (`aud`): the server's resource URL, which mcp-gatekeeper servers require.
    /// Repeat for several.
    #[arg(long = "aud", value_name = "AUD", value_parser = parse_non_empty)]
    audiences: Vec<String>,
    /// The issuer (`iss`), when the server requires one.
    #[arg(long, value_name = "ISS", value_parser = parse_non_empty)]
    iss: Option<String>,
    /// How long the token is valid (at most 24h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Sign with this private key (PEM) instead of $JWT_SECRET.
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
}

pub(crate) fn run(args: &TokenArgs) -> Result<Outcome, Failure> {
    let claims = claims(args)?;
    let (token, algorithm) = match &args.key {
        Some(path) => sign_with_key_file(path, &claims)?,
        None => {
            let secret = secret_from_env()?;
            let unable = |error: jsonwebtoken::errors::Error| {
                Failure::Unable(format!("cannot sign the token: {error}"))
            };
            let key = EncodingKey::from_secret(&secret).map_err(unable)?;
            let token = sign(Algorithm::HS256, &key, &claims).map_err(unable)?;
            verify_hs256(&secret, args, &token)?;
            (token, Algorithm::HS256)
        }
    };
    print(&token)?;
    describe(args, algorithm);
    Ok(Outcome::Success)
}

fn claims(args: &TokenArgs) -> Result<Value, Failure> {
    let now = Utc::now().timestamp();
    let ttl = i64::try_from(args.ttl.as_secs()).unwrap_or(i64::MAX);
    let mut jti = [0u8; 16];
    OsRng.try_fill_bytes(&mut jti).map_err(|error| {
        Failure::Unable(format!(
            "the operating system's random number generator failed: {error}"
        ))
    })?;
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(args.sub));
    match args.roles.as_slice() {
        [] => {}
        [role] => {
            claims.insert("role".into(), json!(role));
        }
        roles => {
            claims.insert("roles".into(), json!(roles));
        }
    }
    if !args.scopes.is_empty() {
        claims.insert("scope".into(), json!(args.scopes.join(" ")));
    }
    match args.audiences.as_slice() {
        [] => {}
        [audience] => {
            claims.insert("aud".into(), json!(audience));
        }
        audiences => {
            claims.insert("aud".into(), json!(audiences));
        }
    }
    if let Some(issuer) = &args.iss {
        claims.insert("iss".into(), json!(issuer));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(ttl)));
    claims.insert("jti".into(), json!(hex::encode(jti)));
    claims.insert(DEV_CLAIM.into(), json!(true));
    Ok(Value::Object(claims))
}

/// `$JWT_SECRET`'s bytes, refused when missing or too short.
fn secret_from_env() -> Result<Vec<u8>, Failure> {
    let secret = match std::env::var(SECRET_VAR) {
        Ok(secret) => secret,
        Err(std::env::VarError::NotPresent) => {
            return Err(Failure::Unable(format!(
                "{SECRET_VAR} is not set: export the server's HS256 secret (at least \
                 {MIN_SECRET_BYTES} bytes), or sign with --key PEM"
            )));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(Failure::Unable(format!(
                "{SECRET_VAR} is not UTF-8 (servers read it as UTF-8 text)"
            )));
        }
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Failure::Unable(format!(
            "{SECRET_VAR} is {} bytes long; an HS256 secret has at least {MIN_SECRET_BYTES} \
             (RFC 7518 §3.2), and servers refuse shorter ones",
            secret.len()
        )));
    }
    Ok(secret.into_bytes())
}

/// Checks the token with the server's own verifier, configured as the token asks, so that
/// what is printed is what a server with this secret accepts.
fn verify_hs256(secret: &[u8], args: &TokenArgs, token: &str) -> Result<(), Failure> {
    let broken = |why: String| Failure::Unable(format!("the minted token does not verify: {why}"));
    let mut verifier = Jwt::hs256(secret).map_err(|error| broken(error.to_string()))?;
    verifier = if args.audiences.is_empty() {
        verifier.accept_tokens_for_any_audience()
    } else {
        args.audiences
            .iter()
            .fold(verifier, |verifier, audience| verifier.audience(audience))
    };
    if let Some(issuer) = &args.iss {
        verifier = verifier.issuer(issuer);
    }
    let principal = verifier
        .verify(token)
        .map_err(|error| broken(error.to_string()))?;
    if principal.roles().eq(args.roles.iter().map(String::as_str)) {
        Ok(())
    } else {
        Err(broken("its roles differ from those asked for".to_owned()))
    }
}

/// Signs with the private key in `path`; the algorithm follows from the key's type.
fn sign_with_key_file(path: &PathBuf, claims: &Value) -> Result<(String, Algorithm), Failure> {
    let pem = std::fs::read(path)
        .map_err(|error| Failure::Unable(format!("cannot read `{}`: {error}", path.display())))?;
    let unusable = |why: &str| Failure::Usage(format!("`{}`: {why}", path.display()));
    if pem
        .windows(b"EC PRIVATE KEY".len())
        .any(|w| w == b"EC PRIVATE KEY")
    {
        return Err(unusable(
            "a SEC1 EC key (BEGIN EC PRIVATE KEY) cannot be used as it is; convert it to PKCS#8 \
             with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`",
        ));
    }
    if pem.windows(b"PUBLIC KEY".len()).any(|w| w == b"PUBLIC KEY") {
        return Err(unusable(
            "this is a public key; tokens are signed with the private key",
        ));
    }
    // Each kind of key, with the algorithms its curve or size allows, the commonest first.
    let candidates: [(Option<EncodingKey>, &[Algorithm]); 3] = [
        (EncodingKey::from_rsa_pem(&pem).ok(), &[Algorithm::RS256]),
        (
            EncodingKey::from_ec_pem(&pem).ok(),
            &[Algorithm::ES256, Algorithm::ES384],
        ),
        (EncodingKey::from_ed_pem(&pem).ok(), &[Algorithm::EdDSA]),
    ];
    for (key, algorithms) in candidates {
        let Some(key) = key else { continue };
        // An EC key on another curve than the algorithm's fails to sign.
        for algorithm in algorithms {
            if let Ok(token) = sign(*algorithm, &key, claims) {
                return Ok((token, *algorithm));
            }
        }
    }
    Err(unusable(
        "not a private key this tool signs with: expected an RSA (RS256), P-256 (ES256), P-384 \
         (ES384) or Ed25519 (EdDSA) private key in PEM (PKCS#8, or PKCS#1 for RSA)",
    ))
}

fn sign(
    algorithm: Algorithm,
    key: &EncodingKey,
    claims: &Value,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key)
}

/// Says on stderr what was minted, and what a server will make of it.
fn describe(args: &TokenArgs, algorithm: Algorithm) {
    let roles = if args.roles.is_empty() {
        "no role".to_owned()
    } else {
        format!("role {}", args.roles.join(", "))
    };
    let expires = chrono::Duration::from_std(args.ttl)
        .ok()
        .and_then(|ttl| Utc::now().checked_add_signed(ttl))
        .map(|at| time::rfc3339(&at))
        .unwrap_or_default();
    note(&format!(
        "development token ({algorithm:?}) for `{}` with {roles}, valid until {expires}",
        args.sub
    ));
    if args.audiences.is_empty() {
        note(
            "warning: no --aud: servers that check the audience (every mcp-gatekeeper server \
             unless told otherwise) refuse this token; pass --aud <the server's resource URL>",
        );
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = time::parse_duration(text)?;
    if ttl > MAX_TTL {
        return Err(format!(
            "development tokens live at most 24h; `{text}` is longer"
        ));
    }
    Ok(ttl)
}

fn parse_non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

/// A role or scope: it goes into a space-separated claim, so it holds no whitespace.
fn parse_word(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.to_owned())
    } else {
        Err("must be visible ASCII without spaces".to_owned())
    }
}
