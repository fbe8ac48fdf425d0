//! Per-request authentication cost: API key lookup (10 and 100,000 keys, valid and unknown
//! keys) and JWT verification (HS256, ES256, EdDSA).
//!
//! Targets (issue "Side-by-side performance"): API key ≤ 1 µs at 100,000 keys, HS256 ≤ 5 µs,
//! ES256 ≤ 60 µs.
//!
//! Run with `cargo bench -p mcp-gatekeeper --bench auth`.

use std::{
    hint::black_box,
    time::{SystemTime, UNIX_EPOCH},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::request::Parts;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use mcp_gatekeeper::{
    __bench, ApiKey, ApiKeys, Jwt,
    auth::{AuthRequest, Authentication, Authenticator, Credential, Verdict},
};
use serde_json::json;

/// HS256 secret (32+ bytes, as `Jwt::hs256` requires).
const HS256_SECRET: &[u8] = b"bench-secret-0123456789abcdef-0123456789abcdef";

/// A P-256 key pair (the fixture of the unit tests in `runtime/src/auth/jwt.rs`).
const EC_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgf7wBFoJiJFr4pVg/
39fj1I1G9KoaBoOtdGjKQo8vkDKhRANCAATWTqbge7qqRIHMWgcTkkBpAdjoCejf
dolkzLOiOJ9XEQP8hn2g8jY+X2H8YqD876k/oLWr9yx3ESJCFjijJ0Qc
-----END PRIVATE KEY-----";
const EC_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1k6m4Hu6qkSBzFoHE5JAaQHY6Ano
33aJZMyzojifVxED/IZ9oPI2Pl9h/GKg/O+pP6C1q/csdxEiQhY4oydEHA==
-----END PUBLIC KEY-----";

/// An Ed25519 key pair (the fixture of the unit tests in `runtime/src/auth/jwt.rs`).
const ED_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICPJ0/MMsVCtZOPpejlsUa1qNKBG0nKm5a0Pk7/WzFEo
-----END PRIVATE KEY-----";
const ED_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAP5zfbNKAjsbRiyuy/Ag8/aMF+PI5ujAraBlaoQyWbaw=
-----END PUBLIC KEY-----";

const ISSUER: &str = "mcp-auth-server";

/// The length of every generated secret.
const SECRET_LEN: usize = 50;

/// A secret shaped like a real generated key: a prefix and 40 hex digits.
fn secret(i: usize) -> String {
    let mixed = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let secret = format!("mcpk_live_{i:08x}{mixed:032x}");
    debug_assert_eq!(secret.len(), SECRET_LEN);
    secret
}

/// `n` keys with mixed roles, one scope each, as a deployment would load them, and their
/// secrets back to back in one string (a request's key bytes are in cache, having just been
/// read from its header; one heap string per key would add a cache miss of the benchmark's
/// own making).
fn api_keys(n: usize) -> (ApiKeys, String) {
    let roles = ["viewer", "editor", "admin"];
    let mut secrets = String::with_capacity(n * SECRET_LEN);
    let keys = (0..n).fold(ApiKeys::new(), |keys, i| {
        let secret = secret(i);
        secrets.push_str(&secret);
        keys.with_key(
            ApiKey::new(format!("key-{i:07}"), &secret)
                .role(roles[i % roles.len()])
                .scopes(["data:read"]),
        )
    });
    assert_eq!(keys.len(), n);
    (keys, secrets)
}

/// A request head as the HTTP layer sees it; built once, outside the measured loop.
fn parts() -> Parts {
    http::Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// One authentication through the `Authenticator` trait; `true` when accepted.
fn authenticate(keys: &ApiKeys, parts: &Parts, key: &str) -> bool {
    let request = AuthRequest {
        credential: Some(Credential::ApiKey(key)),
        parts,
    };
    match keys.authenticate(&request) {
        Authentication::Ready(Verdict::Accept(principal)) => {
            black_box(principal);
            true
        }
        Authentication::Ready(Verdict::Reject(error)) => {
            black_box(error);
            false
        }
        Authentication::Ready(Verdict::Pass) | Authentication::Pending(_) => {
            panic!("API keys decide every X-API-Key synchronously")
        }
    }
}

fn bench_api_keys(c: &mut Criterion) {
    let parts = parts();
    let mut group = c.benchmark_group("api_key");
    for n in [10, 100_000] {
        let (keys, secrets) = api_keys(n);
        // Cycle through every valid key, as many clients would: with 100,000 keys each lookup
        // touches a table entry and a principal that are not in cache.
        let mut i = 0;
        group.bench_function(format!("{n}_keys"), |b| {
            b.iter(|| {
                i = (i + 1) % n;
                let secret = &secrets[i * SECRET_LEN..(i + 1) * SECRET_LEN];
                assert!(authenticate(&keys, &parts, black_box(secret)));
            });
        });
        if n == 100_000 {
            let unknown = "mcpk_live_ffffffffthis-key-was-never-issued-000";
            assert!(!authenticate(&keys, &parts, unknown));
            group.bench_function(format!("{n}_keys_invalid"), |b| {
                b.iter(|| assert!(!authenticate(&keys, &parts, black_box(unknown))));
            });
        }
    }
    group.finish();
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims like those of an access token from an authorization server.
fn claims() -> serde_json::Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "sub": "user-0000123",
        "exp": now + 3600,
        "iat": now,
        "jti": "0b5c1f9e-6a0d-4c53-9a57-3f2e8d1c7b44",
        "client_id": "claude-desktop",
        "role": "editor",
        "scope": "data:read data:write",
    })
}

fn bench_jwt(c: &mut Criterion) {
    let cases = [
        (
            "hs256",
            Jwt::hs256(HS256_SECRET).unwrap(),
            Algorithm::HS256,
            EncodingKey::from_secret(HS256_SECRET).unwrap(),
        ),
        (
            "es256",
            Jwt::es256_pem(EC_PUBLIC.as_bytes()).unwrap(),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        ),
        (
            "eddsa",
            Jwt::eddsa_pem(ED_PUBLIC.as_bytes()).unwrap(),
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("jwt");
    for (name, jwt, algorithm, key) in cases {
        let jwt = jwt.issuer(ISSUER);
        let token = encode(&Header::new(algorithm), &claims(), &key).unwrap();
        let principal = jwt.verify(&token).expect("the minted token verifies");
        assert_eq!(principal.subject(), "user-0000123");
        group.bench_function(name, |b| {
            b.iter(|| jwt.verify(black_box(&token)).unwrap());
        });
        // What a request pays once its token has been seen: the verified-token cache.
        group.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| assert!(__bench::verify_cached(&jwt, black_box(&token))));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_api_keys, bench_jwt);
criterion_main!(benches);
