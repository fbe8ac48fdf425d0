//! Tests of the parent module.

use super::*;
use crate::{AuthMethod, auth::AuthErrorKind};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

pub(crate) const EC_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgf7wBFoJiJFr4pVg/
39fj1I1G9KoaBoOtdGjKQo8vkDKhRANCAATWTqbge7qqRIHMWgcTkkBpAdjoCejf
dolkzLOiOJ9XEQP8hn2g8jY+X2H8YqD876k/oLWr9yx3ESJCFjijJ0Qc
-----END PRIVATE KEY-----";
pub(crate) const EC_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1k6m4Hu6qkSBzFoHE5JAaQHY6Ano
33aJZMyzojifVxED/IZ9oPI2Pl9h/GKg/O+pP6C1q/csdxEiQhY4oydEHA==
-----END PUBLIC KEY-----";
const ED_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICPJ0/MMsVCtZOPpejlsUa1qNKBG0nKm5a0Pk7/WzFEo
-----END PRIVATE KEY-----";
const ED_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAP5zfbNKAjsbRiyuy/Ag8/aMF+PI5ujAraBlaoQyWbaw=
-----END PUBLIC KEY-----";
pub(crate) const RSA_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDbUvfNeoMXtZOg
yJ2PawgSkzCS1oOa8zND8ZD98uPtSbxz7kkz6LDvSCLMxkFC4Sn7jjaUOcF0f/TX
BKIuM1ytURAcupuBx97VtqYKlxoodOGsVO/t4OD46ca/2VE0/G+v0QC5gJ8czYTH
FyZSw8xetWgJRmJnwYVJtHYQXup7DL9+mDoEGyC6SO5Y+9Z/O6/3LpTmU8mJ6vxg
65U/fGAj8IOFFZaJqSPIY9j72LdPGDUlriOPSH5gFy17K8VXCG0xv0BxFzbHQo0N
ziake/mR3Da2bwvUJAyaNYLz3YWJSLrUSxfmraYvqPyqer6o+ng38C6GDIQBqoHL
t/HJQUXzAgMBAAECggEAA04vGhbGsAF82pdh0urP7qIiQSxGqnvc1QebrrNNuEji
tE3HwHNsazn6lq+sOLfpz10+Be9C5gcU2qkhHcu8K1Tr7PFRBtxkx6X4WNnpiBxb
pFW/xSWDYaz54Yocahod2TGWSBvTChBjRMupnuWAu7KsATiUb7ATQROdR4AVGsqe
WYs788Ed9JC0itG65t3sxlYVAik0AMelCinzIRJHmFLT768qIVJMok4qAAz305+X
HFKmVbXkKitNawAys1Tin8rQFGI3gmuOuD0gkNNiNyD+Y9hVs4odeu40NNPicC/X
bt6estbozR9SEDP4ADzRAH43WKY1p6ryWWFHcAyVuQKBgQDww6Jvo3pt3UPEcEsR
Is2JsOWB1LsM6AWjLLP4zddY+g4vxcdiDKQeaJ024jcL6gaoovFBzTb0kZUOZsni
DYW6fZ8A4VATPzFQ8WFXu7wkzSJfvFGe5YKPqoePlq/0Vg1cWbsYfmR6NO1l3WH6
jmQ4IJibScc/I9tddYWb20HhWQKBgQDpNAFMrJqNrKp4zKdOHAPfIzPcf55yxKqj
Jems0bKKVnwCl6ZF/LbB++lJA21lrOk8fvbE/55wd+Vrb4I78pvF461ozKLasKor
3GS4bIH6bNvdwffos3rWhpU27RTgGrfMz+zffGWReB9Naz61y4ezHcqKbpclObd/
5qKB9VpMKwKBgQCUKD8oJdhsDRHrqxJ2nA0RYxsIVuk4GvuFGzgwrjKLnWzndvSn
4JGJ6OR95pzrJvssAQEndeoQfBnWf+hRw/J7/VvAReZpwaROZAt72pn/p4A0m4U6
m49Jay36bUcfu2iDYPBiNT0Nes5vtdjaP49qfpyKSs9iimUuUOiELVuQGQKBgQDn
7Pql4LtMzz4zKYXyntYS4xW+44UXqxPxcdE2OM8R2fU3Ns78p9qyjfBy1t/D0PWd
Xr/ZKEfQns0hziJ9sEjPxCFAKtSEHlL/kA7zg6a5Ae6gWzpMycMO+4YGvD6YqrnF
Db0MftEcnZS0EEar0qFAuA4pItdbBE3E/AD+sp59RQKBgQDJ0yu58dZhRlEoeb2q
SKbqOXVuS2k+IyPIodTJU06iadJ8YMO08cdiyXtuQ0CVowPMxVJoTScuM4w7fdgU
ikyUQWbU188Z6UgI/Y+RWoPd2gjTPmcS+jHgnhSJ2SbuI4fHjplUUKlR67weLcaC
s1rmuz0T5jVxkFIzbstLdYy2Aw==
-----END PRIVATE KEY-----";
pub(crate) const RSA_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA21L3zXqDF7WToMidj2sI
EpMwktaDmvMzQ/GQ/fLj7Um8c+5JM+iw70gizMZBQuEp+442lDnBdH/01wSiLjNc
rVEQHLqbgcfe1bamCpcaKHThrFTv7eDg+OnGv9lRNPxvr9EAuYCfHM2ExxcmUsPM
XrVoCUZiZ8GFSbR2EF7qewy/fpg6BBsgukjuWPvWfzuv9y6U5lPJier8YOuVP3xg
I/CDhRWWiakjyGPY+9i3Txg1Ja4jj0h+YBcteyvFVwhtMb9AcRc2x0KNDc4mpHv5
kdw2tm8L1CQMmjWC892FiUi61EsX5q2mL6j8qnq+qPp4N/AuhgyEAaqBy7fxyUFF
8wIDAQAB
-----END PUBLIC KEY-----";
const RSA_1024_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDqhVRjzVPLaUYQhKG1nLKWGqbV
gy684OG5gIWe2vLBlCHdTycetEvAZuP1PBiwLl7b/e/uCl84xDnluGq4fJ1bXZ9T
ZUIASEUyyd+OFwRNCAhKenoaeNmDAC0sziWEC9PCBEcNF2nv13hB9KOP/uE5LW3B
TlvHNUaF7TxkpfrVfQIDAQAB
-----END PUBLIC KEY-----";

fn claims() -> Value {
    let now = now();
    json!({
        "sub": "alice",
        "exp": now + 600,
        "iat": now,
        "jti": "tok-1",
        "client_id": "cli",
        "role": "admin",
        "roles": ["ops", "admin"],
        "scope": "tools:read tools:write",
        "permissions": ["audit"],
    })
}

fn with(mut base: Value, patch: Value) -> Value {
    if let (Value::Object(base), Value::Object(patch)) = (&mut base, patch) {
        for (k, v) in patch {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
    }
    base
}

fn hs256_token(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn hs256() -> Jwt {
    Jwt::hs256(SECRET).unwrap()
}

/// `token` with the top bit of its last base64url character flipped: the signature's
/// bytes always change (a fixed replacement character would leave the token unchanged one
/// time in 64, or change only bits a lenient decoder ignores).
fn with_last_char_changed(token: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (head, last) = token.split_at(token.len() - 1);
    let value = ALPHABET
        .iter()
        .position(|c| *c == last.as_bytes()[0])
        .unwrap();
    format!("{head}{}", ALPHABET[value ^ 0b10_0000] as char)
}

#[test]
fn cached_tokens_follow_the_rules_of_the_verifier_they_were_checked_by() {
    let token = hs256_token(&json!({ "sub": "a", "iss": "one", "exp": now() + 600 }));
    let one = hs256().issuer("one");
    let first = one.verify_cached(&token).unwrap();
    let again = one.clone().verify_cached(&token).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second check is a cache hit"
    );
    // A clone reconfigured with other rules does not inherit what the original accepted.
    assert!(one.clone().issuer("two").verify_cached(&token).is_err());
    assert!(one.clone().audience("aud").verify_cached(&token).is_err());
    // A refused token is never cached, and a forged one never matches a cached one.
    let forged = with_last_char_changed(&token);
    assert!(one.verify_cached(&forged).is_err());
    assert!(one.verify_cached(&forged).is_err());
}

#[test]
fn a_cached_token_expires_like_any_other() {
    let token = hs256_token(&json!({ "sub": "a", "exp": now() + 1 }));
    let jwt = hs256().leeway(Duration::ZERO);
    assert!(jwt.verify_cached(&token).is_ok());
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        jwt.verify_cached(&token).unwrap_err().kind(),
        AuthErrorKind::Expired,
        "the cache does not extend a token's life"
    );
}

fn assert_invalid(result: Result<Principal, AuthError>) {
    let err = result.expect_err("token should be refused");
    assert_eq!(err.kind(), AuthErrorKind::InvalidToken);
    assert_eq!(err.description(), "Invalid token");
}

fn assert_full_principal(p: &Principal) {
    assert_eq!(p.subject(), "alice");
    assert_eq!(p.method(), AuthMethod::Jwt);
    assert_eq!(p.roles().collect::<Vec<_>>(), ["admin", "ops"]);
    assert_eq!(
        p.scopes().collect::<Vec<_>>(),
        ["audit", "tools:read", "tools:write"]
    );
    assert_eq!(p.client_id(), Some("cli"));
    assert_eq!(p.credential_id(), Some("tok-1"));
    assert!(p.expires_at().is_some());
}

fn verdict(jwt: &Jwt, credential: Option<Credential<'_>>) -> Verdict {
    let parts = http::Request::new(()).into_parts().0;
    let request = AuthRequest {
        credential,
        parts: &parts,
    };
    futures::executor::block_on(jwt.authenticate(&request).verdict())
}

#[test]
fn valid_hs256_token_is_accepted() {
    let p = hs256().verify(&hs256_token(&claims())).unwrap();
    assert_full_principal(&p);
}

#[test]
fn valid_es256_token_is_accepted() {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = encode(&Header::new(Algorithm::ES256), &claims(), &key).unwrap();
    let jwt = Jwt::es256_pem(EC_PUBLIC.as_bytes()).unwrap();
    assert_full_principal(&jwt.verify(&token).unwrap());
}

#[test]
fn valid_eddsa_token_is_accepted() {
    let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    let token = encode(&Header::new(Algorithm::EdDSA), &claims(), &key).unwrap();
    let jwt = Jwt::eddsa_pem(ED_PUBLIC.as_bytes()).unwrap();
    assert_full_principal(&jwt.verify(&token).unwrap());
}

#[test]
fn valid_rs256_token_is_accepted() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let token = encode(&Header::new(Algorithm::RS256), &claims(), &key).unwrap();
    let jwt = Jwt::rs256_pem(RSA_PUBLIC.as_bytes()).unwrap();
    assert_full_principal(&jwt.verify(&token).unwrap());
    // The same key under another RSA algorithm is another verifier: RS256 tokens fail.
    assert_invalid(
        Jwt::rs512_pem(RSA_PUBLIC.as_bytes())
            .unwrap()
            .verify(&token),
    );
}

#[test]
fn azp_is_the_client_id_when_client_id_is_absent() {
    let c = with(claims(), json!({"client_id": null, "azp": "spa"}));
    let p = hs256().verify(&hs256_token(&c)).unwrap();
    assert_eq!(p.client_id(), Some("spa"));
}

#[test]
fn expired_token_says_so() {
    let c = with(claims(), json!({"exp": now() - 3600, "iat": now() - 7200}));
    let err = hs256().verify(&hs256_token(&c)).unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::Expired);
    assert_eq!(err.description(), "Token expired");
}

#[test]
fn leeway_tolerates_small_skew() {
    let c = with(claims(), json!({"exp": now() - 10}));
    assert!(hs256().verify(&hs256_token(&c)).is_ok());
    let strict = hs256().leeway(Duration::ZERO);
    assert_eq!(
        strict.verify(&hs256_token(&c)).unwrap_err().kind(),
        AuthErrorKind::Expired
    );
}

#[test]
fn token_not_yet_valid_is_refused() {
    let c = with(claims(), json!({"nbf": now() + 3600}));
    assert_invalid(hs256().verify(&hs256_token(&c)));
}

#[test]
fn token_issued_in_the_future_is_refused() {
    let c = with(claims(), json!({"iat": now() + 3600}));
    assert_invalid(hs256().verify(&hs256_token(&c)));
    let c = with(claims(), json!({"iat": now() + 5}));
    assert!(hs256().verify(&hs256_token(&c)).is_ok());
}

#[test]
fn missing_exp_or_sub_is_refused() {
    assert_invalid(hs256().verify(&hs256_token(&with(claims(), json!({"exp": null})))));
    assert_invalid(hs256().verify(&hs256_token(&with(claims(), json!({"sub": null})))));
    assert_invalid(hs256().verify(&hs256_token(&with(claims(), json!({"sub": ""})))));
}

#[test]
fn claims_of_the_wrong_type_are_refused() {
    for patch in [
        json!({"sub": 42}),
        json!({"exp": "tomorrow"}),
        json!({"iat": "now"}),
        json!({"role": ["admin"]}),
        json!({"roles": "admin"}),
        json!({"scope": ["a"]}),
        json!({"scp": 7}),
        json!({"scp": ["a", 1]}),
        json!({"permissions": "a b"}),
        json!({"jti": 1}),
        json!({"client_id": {}}),
    ] {
        let token = hs256_token(&with(claims(), patch.clone()));
        assert_invalid(hs256().verify(&token));
        let _ = patch;
    }
}

#[test]
fn wrong_signature_is_refused() {
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough!!").unwrap(),
    )
    .unwrap();
    assert_invalid(hs256().verify(&token));
    // A tampered payload under the original signature.
    let good = hs256_token(&claims());
    let mut parts = good.split('.');
    let (header, _, signature) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
    let forged = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&with(claims(), json!({"role": "root"}))).unwrap());
    assert_invalid(hs256().verify(&format!("{header}.{forged}.{signature}")));
}

#[test]
fn alg_none_is_refused() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let token = format!("{header}.{payload}.");
    assert!(Credential::Bearer(&token).looks_like_jwt());
    assert_invalid(hs256().verify(&token));
    let Verdict::Reject(err) = verdict(&hs256(), Some(Credential::Bearer(&token))) else {
        panic!("alg none must be rejected, not passed on");
    };
    assert_eq!(err.description(), "Invalid token");
}

#[test]
fn key_confusion_is_refused() {
    // The attacker signs HS256 with the public key bytes as the HMAC secret.
    for (public, jwt) in [
        (RSA_PUBLIC, Jwt::rs256_pem(RSA_PUBLIC.as_bytes()).unwrap()),
        (EC_PUBLIC, Jwt::es256_pem(EC_PUBLIC.as_bytes()).unwrap()),
        (ED_PUBLIC, Jwt::eddsa_pem(ED_PUBLIC.as_bytes()).unwrap()),
    ] {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(public.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_invalid(jwt.verify(&token));
    }
    // And an HS512 token to an HS256 verifier with the same secret.
    let token = encode(
        &Header::new(Algorithm::HS512),
        &claims(),
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    assert_invalid(hs256().verify(&token));
}

#[test]
fn crit_header_is_refused() {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    assert_invalid(hs256().verify(&token));
}

#[test]
fn issuer_is_checked_when_configured() {
    let jwt = hs256().issuer("https://issuer.example");
    let good = with(claims(), json!({"iss": "https://issuer.example"}));
    assert!(jwt.verify(&hs256_token(&good)).is_ok());
    let wrong = with(claims(), json!({"iss": "https://evil.example"}));
    assert_invalid(jwt.verify(&hs256_token(&wrong)));
    assert_invalid(jwt.verify(&hs256_token(&claims())));
    // Without a configured issuer, any is fine.
    assert!(hs256().verify(&hs256_token(&wrong)).is_ok());
}

#[test]
fn audience_is_checked_when_configured() {
    let jwt = hs256().audience("tools").audience("admin-api");
    for aud in [
        json!("tools"),
        json!("admin-api"),
        json!(["other", "tools"]),
    ] {
        let c = with(claims(), json!({ "aud": aud }));
        assert!(jwt.verify(&hs256_token(&c)).is_ok(), "{aud}");
    }
    for aud in [json!("other"), json!(["other"]), json!([])] {
        let c = with(claims(), json!({ "aud": aud }));
        assert_invalid(jwt.verify(&hs256_token(&c)));
    }
    assert_invalid(jwt.verify(&hs256_token(&claims())));
}

#[test]
fn scp_may_be_an_array_or_a_string() {
    let base = with(claims(), json!({"scope": null, "permissions": null}));
    for scp in [json!(["a", "b"]), json!("a b")] {
        let c = with(base.clone(), json!({ "scp": scp }));
        let p = hs256().verify(&hs256_token(&c)).unwrap();
        assert_eq!(p.scopes().collect::<Vec<_>>(), ["a", "b"]);
    }
}

#[test]
fn custom_role_and_scope_claims_are_read() {
    let jwt = hs256()
        .role_claim("https://example.com/role")
        .scope_claims(["perms"]);
    let c = json!({
        "sub": "bob",
        "exp": now() + 60,
        "https://example.com/role": ["editor"],
        "perms": "x y",
        "role": "ignored",
        "scope": "ignored",
    });
    let p = jwt.verify(&hs256_token(&c)).unwrap();
    assert_eq!(p.roles().collect::<Vec<_>>(), ["editor"]);
    assert_eq!(p.scopes().collect::<Vec<_>>(), ["x", "y"]);
    let bad = with(c, json!({"perms": 5}));
    assert_invalid(jwt.verify(&hs256_token(&bad)));
}

#[test]
fn roles_may_be_nested_and_mapped() {
    let c = json!({
        "sub": "carol",
        "exp": now() + 60,
        "realm_access": { "roles": ["mcp-admins", "offline_access"] },
        "resource_access": { "my.client": { "roles": "mcp-users" } },
        "https://example.com/roles": ["namespaced"],
    });
    let token = hs256_token(&c);
    let nested = hs256().role_claim("realm_access.roles");
    let p = nested.verify(&token).unwrap();
    assert_eq!(
        p.roles().collect::<Vec<_>>(),
        ["mcp-admins", "offline_access"]
    );
    let mapped = nested
        .map_role("mcp-admins", "admin")
        .map_role("mcp-admins", "editor");
    assert_eq!(mapped.configured_roles(), ["admin", "editor"]);
    let p = mapped.verify(&token).unwrap();
    assert_eq!(
        p.roles().collect::<Vec<_>>(),
        ["admin", "editor"],
        "unmapped names grant nothing"
    );
    let dotted_client = hs256().role_claim(ClaimPath::segments([
        "resource_access",
        "my.client",
        "roles",
    ]));
    let p = dotted_client.verify(&token).unwrap();
    assert_eq!(p.roles().collect::<Vec<_>>(), ["mcp-users"]);
    let p = hs256()
        .role_claim("https://example.com/roles")
        .verify(&token)
        .unwrap();
    assert_eq!(p.roles().collect::<Vec<_>>(), ["namespaced"]);
    // A path through something that is not an object finds nothing; a value of the wrong type
    // at its end is refused.
    let p = hs256().role_claim("sub.roles").verify(&token).unwrap();
    assert_eq!(p.roles().count(), 0);
    let bad = hs256_token(&with(c, json!({ "realm_access": { "roles": [1] } })));
    assert_invalid(hs256().role_claim("realm_access.roles").verify(&bad));
}

#[test]
fn only_jwt_shaped_bearers_are_decided() {
    let jwt = hs256();
    assert!(matches!(verdict(&jwt, None), Verdict::Pass));
    assert!(matches!(
        verdict(&jwt, Some(Credential::Bearer("sk-live-123"))),
        Verdict::Pass
    ));
    let token = hs256_token(&claims());
    assert!(matches!(
        verdict(&jwt, Some(Credential::ApiKey(&token))),
        Verdict::Pass
    ));
    assert!(matches!(
        verdict(&jwt, Some(Credential::Bearer(&token))),
        Verdict::Accept(p) if p.subject() == "alice"
    ));
    assert!(matches!(
        verdict(&jwt, Some(Credential::Bearer("eyJhbGciOi.eyJzdWIi.sig"))),
        Verdict::Reject(_)
    ));
    assert_eq!(jwt.name(), "jwt");
    assert!(jwt.configured_roles().is_empty());
}

#[test]
fn garbage_never_panics() {
    let jwt = hs256();
    for token in [
        "eyJ..",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.%%%.sig",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.!!!",
        "eyJ9.eyJ9.eyJ9",
    ] {
        assert_invalid(jwt.verify(token));
    }
    let huge = with(claims(), json!({"exp": u64::MAX, "iat": 1e300}));
    assert_invalid(jwt.verify(&hs256_token(&huge)));
    // Too far in the future to be a point in time this system can represent.
    let huge = with(claims(), json!({"exp": u64::MAX}));
    assert_invalid(jwt.verify(&hs256_token(&huge)));
    let negative = with(claims(), json!({"iat": -5}));
    assert_invalid(jwt.verify(&hs256_token(&negative)));
}

#[test]
fn short_hmac_secrets_are_refused_without_echoing_them() {
    let err = Jwt::hs256("short-secret-value").unwrap_err();
    assert!(!err.to_string().contains("short-secret-value"));
    assert!(Jwt::hs256([7u8; 32]).is_ok());
    assert!(Jwt::hs384([7u8; 32]).is_err());
    assert!(Jwt::hs384([7u8; 48]).is_ok());
    assert!(Jwt::hs512([7u8; 48]).is_err());
    assert!(Jwt::hs512([7u8; 64]).is_ok());
    assert!(Jwt::hmac(JwtAlgorithm::Rs256, SECRET).is_err());
}

#[test]
fn missing_env_secret_is_reported() {
    let var = "MCP_GATEKEEPER_TEST_UNSET_JWT_SECRET_7f3a";
    assert!(matches!(
        Jwt::hs256_from_env(var),
        Err(ConfigError::MissingEnv(v)) if v == var
    ));
}

#[test]
fn unfit_public_keys_are_refused() {
    assert!(Jwt::rs256_pem(EC_PUBLIC.as_bytes()).is_err());
    assert!(Jwt::rs256_pem(RSA_1024_PUBLIC.as_bytes()).is_err());
    assert!(Jwt::rs256_pem(RSA_PRIVATE.as_bytes()).is_err());
    assert!(Jwt::es256_pem(RSA_PUBLIC.as_bytes()).is_err());
    assert!(Jwt::es256_pem(EC_PRIVATE.as_bytes()).is_err());
    assert!(Jwt::es384_pem(EC_PUBLIC.as_bytes()).is_err());
    assert!(Jwt::eddsa_pem(EC_PUBLIC.as_bytes()).is_err());
    assert!(Jwt::eddsa_pem(b"not a pem").is_err());
    assert!(Jwt::from_pem(JwtAlgorithm::Hs256, RSA_PUBLIC.as_bytes()).is_err());
}

#[test]
fn debug_hides_the_key() {
    let shown = format!("{:?}", hs256());
    assert!(!shown.contains("0123456789abcdef"));
    assert!(shown.contains("<redacted>"));
    assert!(shown.contains("HS256") || shown.contains("Hs256"));
}

/// A token with exactly this header and payload JSON, HS256-signed with [`SECRET`] by
/// `jsonwebtoken`.
fn signed_raw(header_json: &str, payload_json: &str) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(payload_json)
    );
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256);
    format!("{signed}.{}", signature.unwrap())
}

#[test]
fn a_payload_that_is_not_one_json_object_is_refused() {
    let exp = now() + 600;
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let good = format!(r#"{{"sub":"a","exp":{exp}}}"#);
    assert!(hs256().verify(&signed_raw(header, &good)).is_ok());
    for payload in [
        "not json".to_owned(),
        String::new(),
        "null".to_owned(),
        r#""a""#.to_owned(),
        // What a derived struct would read by position.
        format!(r#"["a",{exp}]"#),
        format!("{good}x"),
        format!("{good}{good}"),
        format!(r#"{{"sub":"a","exp":{exp}"#),
    ] {
        assert_invalid(hs256().verify(&signed_raw(header, &payload)));
    }
}

#[test]
fn a_claim_given_twice_is_refused() {
    let exp = now() + 600;
    let header = r#"{"alg":"HS256"}"#;
    for payload in [
        format!(r#"{{"sub":"a","sub":"b","exp":{exp}}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"exp":{exp}}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"role":"x","role":"admin"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"nbf":null,"nbf":1}}"#),
    ] {
        assert_invalid(hs256().verify(&signed_raw(header, &payload)));
    }
    let jwt = hs256().issuer("one").audience("tools").role_claim("grp");
    for payload in [
        format!(r#"{{"sub":"a","exp":{exp},"aud":"tools","iss":"one","iss":"one"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"iss":"one","aud":"x","aud":"tools"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"iss":"one","aud":"tools","grp":"a","grp":"b"}}"#),
    ] {
        assert_invalid(jwt.verify(&signed_raw(header, &payload)));
    }
    // Claims nobody reads may repeat, as JSON allows.
    let payload = format!(r#"{{"sub":"a","exp":{exp},"x":1,"x":2}}"#);
    assert!(hs256().verify(&signed_raw(header, &payload)).is_ok());
}

#[test]
fn claims_with_escapes_are_read() {
    let exp = now() + 600;
    let payload =
        format!(r#"{{"\u0073ub":"al\u0069ce","exp":{exp},"role":"a\"b","scope":"x\ty"}}"#);
    let p = hs256()
        .verify(&signed_raw(r#"{"alg":"HS256"}"#, &payload))
        .unwrap();
    assert_eq!(p.subject(), "alice");
    assert_eq!(p.roles().collect::<Vec<_>>(), ["a\"b"]);
    assert_eq!(p.scopes().collect::<Vec<_>>(), ["x", "y"]);
}

#[test]
fn a_token_for_another_algorithm_is_refused_though_its_signature_is_valid() {
    let es = encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    let ed = encode(
        &Header::new(Algorithm::EdDSA),
        &claims(),
        &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims(),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    let es256 = Jwt::es256_pem(EC_PUBLIC.as_bytes()).unwrap();
    let eddsa = Jwt::eddsa_pem(ED_PUBLIC.as_bytes()).unwrap();
    let rs256 = Jwt::rs256_pem(RSA_PUBLIC.as_bytes()).unwrap();
    assert!(es256.verify(&es).is_ok());
    for token in [&es, &ed, &rs] {
        assert_invalid(hs256().verify(token));
    }
    assert_invalid(es256.verify(&hs256_token(&claims())));
    assert_invalid(es256.verify(&ed));
    assert_invalid(es256.verify(&rs));
    assert_invalid(eddsa.verify(&es));
    assert_invalid(rs256.verify(&es));
    // Nor is an ES256 token one for an ES384 verifier.
    let es384 = Jwt::es384_pem(&p384_public_pem(&p384_pair().1)).unwrap();
    assert_invalid(es384.verify(&es));
}

#[test]
fn aud_of_the_wrong_type_is_refused_when_audiences_are_configured() {
    let jwt = hs256().audience("tools");
    for aud in [
        json!(5),
        json!([5]),
        json!(["tools", 5]),
        json!({"tools": true}),
        json!([["tools"]]),
        json!(true),
    ] {
        let c = with(claims(), json!({ "aud": aud }));
        assert_invalid(jwt.verify(&hs256_token(&c)));
        // Without configured audiences `aud` is not read, whatever it holds.
        assert!(hs256().verify(&hs256_token(&c)).is_ok(), "{aud}");
    }
    let c = with(claims(), json!({"aud": ["x", "tools", "y"]}));
    assert!(jwt.verify(&hs256_token(&c)).is_ok());
}

#[test]
fn iss_must_be_the_configured_string() {
    let jwt = hs256().issuer("https://issuer.example");
    for iss in [
        json!(["https://issuer.example"]),
        json!(5),
        json!({"iss": "https://issuer.example"}),
        json!("https://issuer.example/"),
        json!("HTTPS://ISSUER.EXAMPLE"),
        json!(""),
    ] {
        let c = with(claims(), json!({ "iss": iss }));
        assert_invalid(jwt.verify(&hs256_token(&c)));
        // Without a configured issuer `iss` is not read, whatever it holds.
        assert!(hs256().verify(&hs256_token(&c)).is_ok(), "{iss}");
    }
    let with_null = signed_raw(
        r#"{"alg":"HS256"}"#,
        &format!(r#"{{"sub":"a","exp":{},"iss":null}}"#, now() + 60),
    );
    assert_invalid(jwt.verify(&with_null));
}

#[test]
fn nbf_is_honoured_within_the_leeway_and_must_be_a_date() {
    let soon = with(claims(), json!({"nbf": now() + 10}));
    assert!(hs256().verify(&hs256_token(&soon)).is_ok());
    assert_invalid(hs256().leeway(Duration::ZERO).verify(&hs256_token(&soon)));
    let past = with(claims(), json!({"nbf": now() - 10}));
    assert!(
        hs256()
            .leeway(Duration::ZERO)
            .verify(&hs256_token(&past))
            .is_ok()
    );
    let fraction = with(claims(), json!({"nbf": (now() - 10) as f64 + 0.5}));
    assert!(hs256().verify(&hs256_token(&fraction)).is_ok());
    for nbf in [
        json!("now"),
        json!(-1),
        json!(-0.5),
        json!([1]),
        json!(1e300),
    ] {
        let c = with(claims(), json!({ "nbf": nbf }));
        assert_invalid(hs256().verify(&hs256_token(&c)));
    }
    let payload = format!(r#"{{"sub":"a","exp":{},"nbf":null}}"#, now() + 60);
    assert!(
        hs256()
            .verify(&signed_raw(r#"{"alg":"HS256"}"#, &payload))
            .is_ok()
    );
}

#[test]
fn exp_may_be_a_fraction_but_not_negative_or_null() {
    let fraction = with(claims(), json!({"exp": (now() + 60) as f64 + 0.25}));
    assert!(hs256().verify(&hs256_token(&fraction)).is_ok());
    for exp in [json!(-1), json!(-1.5), json!(true), json!([now() + 60])] {
        let c = with(claims(), json!({ "exp": exp }));
        assert_invalid(hs256().verify(&hs256_token(&c)));
    }
    let payload = r#"{"sub":"a","exp":null}"#;
    assert_invalid(hs256().verify(&signed_raw(r#"{"alg":"HS256"}"#, payload)));
}

#[test]
fn an_expired_token_is_still_invalid_when_it_is_malformed() {
    let old = now() - 3600;
    for patch in [json!({"sub": null}), json!({"sub": 5}), json!({"role": 5})] {
        let c = with(claims(), patch);
        let c = with(c, json!({ "exp": old }));
        assert_invalid(hs256().verify(&hs256_token(&c)));
    }
    // A missing issuer or audience is reported as invalid, not expired.
    let c = with(claims(), json!({ "exp": old }));
    assert_invalid(hs256().issuer("one").verify(&hs256_token(&c)));
    assert_invalid(hs256().audience("aud").verify(&hs256_token(&c)));
}

#[test]
fn claims_this_verifier_does_not_read_are_not_type_checked() {
    let jwt = hs256().role_claim("grp").scope_claims(["perms"]);
    let c = with(
        claims(),
        json!({"scp": 7, "iss": 1, "aud": {}, "other": [1, {"a": null}], "grp": ["g"]}),
    );
    let p = jwt.verify(&hs256_token(&c)).unwrap();
    assert_eq!(p.roles().collect::<Vec<_>>(), ["g", "ops", "admin"]);
    // `scp` is read by the default verifier, which then checks it.
    assert_invalid(hs256().verify(&hs256_token(&c)));
}

fn p384_pair() -> (Vec<u8>, Vec<u8>) {
    use aws_lc_rs::{
        encoding::AsDer,
        rand::SystemRandom,
        signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
    };
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let spki = pair.public_key().as_der().unwrap();
    (pkcs8.as_ref().to_vec(), spki.as_ref().to_vec())
}

fn p384_public_pem(spki: &[u8]) -> Vec<u8> {
    use base64::engine::general_purpose::STANDARD;
    let body = STANDARD.encode(spki);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

#[test]
fn valid_es384_token_is_accepted() {
    let (pkcs8, spki) = p384_pair();
    let key = EncodingKey::from_ec_der(&pkcs8);
    let token = encode(&Header::new(Algorithm::ES384), &claims(), &key).unwrap();
    let jwt = Jwt::es384_pem(&p384_public_pem(&spki)).unwrap();
    assert_full_principal(&jwt.verify(&token).unwrap());
    // A P-384 key is not a P-256 one.
    assert!(Jwt::es256_pem(&p384_public_pem(&spki)).is_err());
    let forged = with_last_char_changed(&token);
    assert_invalid(jwt.verify(&forged));
}

#[test]
fn rs384_rs512_hs384_and_hs512_tokens_are_accepted() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    for (algorithm, jwt) in [
        (Algorithm::RS384, Jwt::rs384_pem(RSA_PUBLIC.as_bytes())),
        (Algorithm::RS512, Jwt::rs512_pem(RSA_PUBLIC.as_bytes())),
    ] {
        let token = encode(&Header::new(algorithm), &claims(), &rsa).unwrap();
        assert_full_principal(&jwt.unwrap().verify(&token).unwrap());
    }
    let secret = [9u8; 64];
    let hmac = EncodingKey::from_secret(&secret).unwrap();
    for (algorithm, jwt) in [
        (Algorithm::HS384, Jwt::hs384(secret)),
        (Algorithm::HS512, Jwt::hs512(secret)),
    ] {
        let token = encode(&Header::new(algorithm), &claims(), &hmac).unwrap();
        let jwt = jwt.unwrap();
        assert_full_principal(&jwt.verify(&token).unwrap());
        assert_invalid(hs256().verify(&token));
    }
}

#[test]
fn an_oauth_verifier_with_an_unusable_key_refuses_every_token() {
    let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
    let off_curve = DecodingKey::from_ec_components(&zero, &zero).unwrap();
    let jwt = Jwt::from_decoding_key(JwtAlgorithm::Es256, off_curve);
    assert_eq!(jwt.algorithm(), JwtAlgorithm::Es256);
    let token = encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_invalid(jwt.verify(&token));
    // The same path with a good key accepts, and says how the caller authenticated.
    let good = DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap();
    let p = Jwt::from_decoding_key(JwtAlgorithm::Es256, good)
        .verify(&token)
        .unwrap();
    assert_eq!(p.method(), AuthMethod::OAuth);
}

// What `jsonwebtoken` decides since the hand-written JWS parser went (DESIGN.md 17): the
// rules it enforced still hold, and where `jsonwebtoken` differs the tests say so.

/// A token with exactly these three segments, the signature HMAC-SHA256 of the first two as
/// written.
fn signed_segments(header: &str, payload: &str) -> String {
    let signed = format!("{header}.{payload}");
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256);
    format!("{signed}.{}", signature.unwrap())
}

fn good_payload() -> String {
    format!(r#"{{"sub":"a","exp":{}}}"#, now() + 600)
}

#[test]
fn tokens_without_exactly_three_base64url_segments_are_refused() {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JOSE"}"#);
    let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"bob","exp":99999999999}"#);
    let good = signed_segments(&header, &payload);
    assert!(hs256().verify(&good).is_ok());
    let signature = good.rsplit_once('.').unwrap().1;
    for bad in [
        String::new(),
        format!("{header}.{payload}"),
        signed_segments(&header, &format!("{payload}.{payload}")),
        format!("{good}.{signature}"),
        format!(".{good}"),
        // Padding, and bytes outside the base64url alphabet, in each segment.
        signed_segments(&format!("{header}="), &payload),
        signed_segments(&header, &format!("{payload}=")),
        format!("{good}="),
        signed_segments(&format!("+{header}"), &payload),
        signed_segments(&header, &format!("{payload}/")),
        format!("{good}*"),
    ] {
        assert_invalid(hs256().verify(&bad));
    }
    // A signature whose last character carries bits that must be zero: another string for
    // the same bytes, refused.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = signature.as_bytes()[signature.len() - 1];
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    let twin = format!(
        "{}{}",
        &good[..good.len() - 1],
        char::from(ALPHABET[index | 1])
    );
    assert_invalid(hs256().verify(&twin));
}

#[test]
fn headers_that_are_not_one_json_object_with_one_alg_are_refused() {
    let payload = good_payload();
    for header in [
        "not json",
        "",
        r#"["HS256"]"#,
        "null",
        r#"{"alg":"HS256"}x"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":["HS256"]}"#,
        r#"{"typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"hs256"}"#,
        r#"{"alg":"HS256 "}"#,
    ] {
        assert_invalid(hs256().verify(&signed_raw(header, &payload)));
    }
    // `alg` written with escapes is still `HS256`.
    let escaped = signed_raw(r#"{"alg":"HS\u0032\u0035\u0036"}"#, &payload);
    assert!(hs256().verify(&escaped).is_ok());
}

#[test]
fn crit_is_refused_when_it_names_anything() {
    let payload = good_payload();
    for header in [
        r#"{"alg":"HS256","crit":["exp"]}"#,
        r#"{"alg":"HS256","crit":[]}"#,
        r#"{"alg":"HS256","crit":"b64"}"#,
        // `jsonwebtoken` 12 accepts this one (`b64: true` changes nothing); we understand no
        // extension, so it is refused as before.
        r#"{"alg":"HS256","crit":["b64"],"b64":true}"#,
        r#"{"alg":"HS256","b64":false}"#,
    ] {
        assert_invalid(hs256().verify(&signed_raw(header, &payload)));
    }
    // Moved: `"crit": null` names no extension and is read as no `crit` (the hand-written
    // parser refused it).
    let null_crit = signed_raw(r#"{"alg":"HS256","crit":null}"#, &payload);
    assert!(hs256().verify(&null_crit).is_ok());
}

#[test]
fn registered_header_members_must_have_their_types() {
    // Moved: the hand-written parser looked at `alg` and `crit` only; `jsonwebtoken` reads the
    // registered members with their types.
    let payload = good_payload();
    for header in [
        r#"{"alg":"HS256","typ":5}"#,
        r#"{"alg":"HS256","kid":{"k":[1]}}"#,
        r#"{"alg":"HS256","jwk":"?"}"#,
    ] {
        assert_invalid(hs256().verify(&signed_raw(header, &payload)));
    }
    let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","x5c":null,"other":{"a":[1]}}"#;
    assert!(hs256().verify(&signed_raw(header, &payload)).is_ok());
}

#[test]
fn ecdsa_signatures_must_be_fixed_size_r_and_s() {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair},
    };
    let pkcs8 = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let good = encode(&Header::new(Algorithm::ES256), &claims(), &pkcs8).unwrap();
    let es256 = Jwt::es256_pem(EC_PUBLIC.as_bytes()).unwrap();
    assert!(es256.verify(&good).is_ok());
    let (signed, signature) = good.rsplit_once('.').unwrap();
    let fixed = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert_eq!(fixed.len(), 64);
    for bad in [
        &fixed[..63],
        &fixed[1..],
        &[fixed.as_slice(), &[0]].concat()[..],
    ] {
        assert_invalid(es256.verify(&format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bad))));
    }
    // The same key's signature in ASN.1 DER form, as X.509 would carry it.
    let der_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_bytes());
    let der = der_key
        .unwrap()
        .sign(&SystemRandom::new(), signed.as_bytes())
        .unwrap();
    assert_invalid(es256.verify(&format!("{signed}.{}", URL_SAFE_NO_PAD.encode(der))));
}

#[test]
fn an_expired_token_is_expired_only_when_its_signature_and_claims_are_good() {
    let old = now() - 3600;
    let expired = with(claims(), json!({ "exp": old }));
    let token = hs256_token(&expired);
    assert_eq!(
        hs256().verify(&token).unwrap_err().kind(),
        AuthErrorKind::Expired
    );
    // Forged: invalid, though the payload says it expired.
    assert_invalid(hs256().verify(&with_last_char_changed(&token)));
    // Validly signed, expired, and with a claim of the wrong type that only this crate reads
    // (`jsonwebtoken` reports the expiry first): invalid, as before.
    let jwt = hs256().role_claim("grp").scope_claims(["perms"]);
    for patch in [
        json!({"grp": 5}),
        json!({"perms": {}}),
        json!({"iat": "yesterday"}),
        json!({"roles": "admin"}),
        json!({"jti": 1}),
        json!({"nbf": "later"}),
    ] {
        assert_invalid(jwt.verify(&hs256_token(&with(expired.clone(), patch))));
    }
    let with_crit = signed_raw(
        r#"{"alg":"HS256","crit":["b64"],"b64":true}"#,
        &format!(r#"{{"sub":"a","exp":{old}}}"#),
    );
    assert_invalid(hs256().verify(&with_crit));
    // An expired token whose issuer, audience, `nbf` or `iat` is wrong is still expired: the
    // expiry is checked first, and it is what the client can act on.
    let jwt = hs256().issuer("one").audience("tools");
    let patch = json!({"iss": "two", "aud": "other", "nbf": now() + 600, "iat": now() + 600});
    assert_eq!(
        jwt.verify(&hs256_token(&with(expired, patch)))
            .unwrap_err()
            .kind(),
        AuthErrorKind::Expired
    );
}

#[test]
fn registered_claims_nobody_configured_may_not_repeat() {
    // Moved: `jsonwebtoken` refuses a second `iss` or `aud` even when no issuer or audience is
    // configured (the hand-written parser did not read them then).
    let exp = now() + 600;
    for payload in [
        format!(r#"{{"sub":"a","exp":{exp},"iss":"x","iss":"y"}}"#),
        format!(r#"{{"sub":"a","exp":{exp},"aud":"x","aud":"y"}}"#),
    ] {
        assert_invalid(hs256().verify(&signed_raw(r#"{"alg":"HS256"}"#, &payload)));
    }
}

#[test]
fn verifiers_refuse_keys_aws_lc_cannot_use() {
    // On the curve's equation or not, jsonwebtoken's PEM parsing takes any 65-byte point; the
    // verifier checks it at start-up.
    let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
    let off_curve = DecodingKey::from_ec_components(&zero, &zero).unwrap();
    assert!(!key_parses(JwtAlgorithm::Es256, &off_curve));
    let good = DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap();
    assert!(key_parses(JwtAlgorithm::Es256, &good));
    assert!(!key_parses(JwtAlgorithm::Es384, &good));
    assert!(!key_parses(JwtAlgorithm::Hs256, &good));
    let secret = DecodingKey::from_secret(SECRET).unwrap();
    assert!(key_parses(JwtAlgorithm::Hs256, &secret));
    assert!(!key_parses(JwtAlgorithm::Es256, &secret));
}

#[test]
fn a_certificate_bound_token_carries_its_thumbprint() {
    let thumbprint = [7u8; 32];
    let encoded = URL_SAFE_NO_PAD.encode(thumbprint);
    let bound = with(claims(), json!({ "cnf": { "x5t#S256": encoded } }));
    let principal = hs256().verify(&hs256_token(&bound)).unwrap();
    assert_eq!(principal.certificate_thumbprint(), Some(&thumbprint));
    assert_full_principal(&principal);
    let unbound = hs256().verify(&hs256_token(&claims())).unwrap();
    assert_eq!(unbound.certificate_thumbprint(), None);
    // `"cnf": null` is no `cnf`, as for every claim.
    let null = json!({ "sub": "a", "exp": now() + 600, "cnf": null });
    assert_eq!(
        hs256()
            .verify(&hs256_token(&null))
            .unwrap()
            .certificate_thumbprint(),
        None
    );
}

#[test]
fn a_binding_this_crate_cannot_check_is_refused() {
    let thumbprint = URL_SAFE_NO_PAD.encode([7u8; 32]);
    for cnf in [
        // A DPoP key or a JWK: accepting these tokens as bearer tokens would drop the binding.
        json!({ "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" }),
        json!({ "x5t#S256": thumbprint, "jkt": "x" }),
        json!({}),
        json!("x"),
        json!([thumbprint]),
        json!({ "x5t#S256": 5 }),
        json!({ "x5t#S256": "c2hvcnQ" }),
        json!({ "x5t#S256": URL_SAFE_NO_PAD.encode([7u8; 33]) }),
        json!({ "x5t#S256": format!("{thumbprint}=") }),
        json!({ "x5t#S256": base64::engine::general_purpose::STANDARD.encode([0xfb; 32]) }),
    ] {
        let token = hs256_token(&with(claims(), json!({ "cnf": cnf })));
        assert_invalid(hs256().verify(&token));
    }
    // Given twice, it is refused as every claim read is.
    let exp = now() + 600;
    let payload =
        format!(r#"{{"sub":"a","exp":{exp},"cnf":{{"x5t#S256":"{thumbprint}"}},"cnf":null}}"#);
    assert_invalid(hs256().verify(&signed_raw(r#"{"alg":"HS256"}"#, &payload)));
}

/// Secrets of a verifier by kid: the one being retired and its successor.
const PREVIOUS_SECRET: &str = "the-previous-hs256-secret-of-32-bytes-or-more";
const CURRENT_SECRET: &str = "the-current-hs256-secret-of-32-bytes-or-more!";

/// The full claims, HS256-signed with `secret` under a header naming `kid` (none when `None`).
fn hs256_token_by_kid(kid: Option<&str>, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A verifier during a rotation: the previous secret as `k1`, the current one as `k2`.
fn two_kids() -> Jwt {
    Jwt::hs256_keys([("k1", PREVIOUS_SECRET), ("k2", CURRENT_SECRET)]).unwrap()
}

#[test]
fn tokens_signed_with_each_kid_verify() {
    let jwt = two_kids();
    for (kid, secret) in [("k1", PREVIOUS_SECRET), ("k2", CURRENT_SECRET)] {
        let token = hs256_token_by_kid(Some(kid), secret);
        assert_full_principal(&jwt.verify(&token).unwrap());
        let first = jwt.verify_cached(&token).unwrap();
        let again = jwt.verify_cached(&token).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "a known token is a cache hit");
        assert!(matches!(
            verdict(&jwt, Some(Credential::Bearer(&token))),
            Verdict::Accept(_)
        ));
    }
    // Another HMAC algorithm takes secrets of its own length, by kid all the same.
    let hs384 = Jwt::hmac_keys(JwtAlgorithm::Hs384, [("k1", [7u8; 48])]).unwrap();
    let mut header = Header::new(Algorithm::HS384);
    header.kid = Some("k1".to_owned());
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&[7u8; 48]).unwrap(),
    )
    .unwrap();
    assert_full_principal(&hs384.verify(&token).unwrap());
}

#[test]
fn a_token_of_a_retired_kid_is_refused() {
    let previous = hs256_token_by_kid(Some("k1"), PREVIOUS_SECRET);
    let current = hs256_token_by_kid(Some("k2"), CURRENT_SECRET);
    assert!(
        two_kids().verify_cached(&previous).is_ok(),
        "during overlap"
    );
    let after = Jwt::hs256_keys([("k2", CURRENT_SECRET)]).unwrap();
    assert_invalid(after.verify(&previous));
    assert_eq!(
        after.key.keys.for_token(&previous).err(),
        Some("unknown_kid")
    );
    assert!(after.verify(&current).is_ok());
}

#[test]
fn a_token_without_kid_or_with_an_unknown_kid_is_refused() {
    let jwt = two_kids();
    let without = hs256_token_by_kid(None, CURRENT_SECRET);
    let unknown = hs256_token_by_kid(Some("k3"), CURRENT_SECRET);
    let empty = hs256_token_by_kid(Some(""), CURRENT_SECRET);
    for token in [&without, &unknown, &empty] {
        assert_invalid(jwt.verify(token));
        assert!(jwt.verify_cached(token).is_err());
        // Decided here, never passed on to a more lenient authenticator.
        assert!(matches!(
            verdict(&jwt, Some(Credential::Bearer(token))),
            Verdict::Reject(_)
        ));
    }
    assert_eq!(jwt.key.keys.for_token(&without).err(), Some("missing_kid"));
    assert_eq!(jwt.key.keys.for_token(&unknown).err(), Some("unknown_kid"));
    assert_eq!(jwt.key.keys.for_token(&empty).err(), Some("unknown_kid"));
    // A malformed token is refused for what it is, not for its kid.
    assert_eq!(jwt.key.keys.for_token("a.b.c").err(), Some("malformed"));
    // A verifier of one secret reads no kid, as it never did.
    let single = Jwt::hs256(CURRENT_SECRET).unwrap();
    assert!(single.verify(&without).is_ok());
    assert!(single.verify(&unknown).is_ok());
}

#[test]
fn a_kid_header_with_another_kids_secret_is_refused() {
    let jwt = two_kids();
    for (kid, secret) in [("k1", CURRENT_SECRET), ("k2", PREVIOUS_SECRET)] {
        let swapped = hs256_token_by_kid(Some(kid), secret);
        assert_invalid(jwt.verify(&swapped));
        assert!(jwt.verify_cached(&swapped).is_err());
    }
}

/// The message of the error building a verifier of `keys` by kid.
fn key_set_refusal(keys: &[(&str, &str)]) -> String {
    Jwt::hs256_keys(keys.iter().copied())
        .unwrap_err()
        .to_string()
}

#[test]
fn key_sets_are_checked_without_showing_secrets() {
    let short = "short-secret-value";
    let message = key_set_refusal(&[("k1", CURRENT_SECRET), ("k2", short)]);
    assert!(
        message.contains("HMAC key 2") && message.contains("\"k2\""),
        "{message}"
    );
    assert!(message.contains("32 bytes"), "{message}");
    assert!(!message.contains(short), "{message}");
    let message = key_set_refusal(&[("k1", PREVIOUS_SECRET), ("k1", CURRENT_SECRET)]);
    assert!(
        message.contains("HMAC key 2") && message.contains("HMAC key 1"),
        "{message}"
    );
    assert!(!message.contains(PREVIOUS_SECRET) && !message.contains(CURRENT_SECRET));
    for kid in ["", "k 1", "clé", "k1\n"] {
        let message = key_set_refusal(&[(kid, CURRENT_SECRET)]);
        assert!(message.contains("visible ASCII"), "{kid:?}: {message}");
        assert!(!message.contains(CURRENT_SECRET));
    }
    assert!(key_set_refusal(&[]).contains("no HS256 key"));
    assert!(Jwt::hmac_keys(JwtAlgorithm::Rs256, [("k1", CURRENT_SECRET)]).is_err());
    assert!(Jwt::hmac_keys(JwtAlgorithm::Hs384, [("k1", [7u8; 32])]).is_err());
    assert!(Jwt::hmac_keys(JwtAlgorithm::Hs512, [("k1", [7u8; 64])]).is_ok());
}

#[test]
fn key_lists_from_the_environment_parse() {
    // Split at the first `:`: the second secret holds one. Whitespace and empty entries go.
    let value = format!(" k1:{PREVIOUS_SECRET} ,\n k2 : {CURRENT_SECRET}:more ,");
    let jwt = Jwt::hs256_keys_in("JWT_KEYS", &value).unwrap();
    assert_eq!(jwt.key.keys.kids(), Some(vec!["k1", "k2"]));
    assert!(
        jwt.verify(&hs256_token_by_kid(Some("k1"), PREVIOUS_SECRET))
            .is_ok()
    );
    let with_colon = format!("{CURRENT_SECRET}:more");
    assert!(
        jwt.verify(&hs256_token_by_kid(Some("k2"), &with_colon))
            .is_ok()
    );
    assert_invalid(jwt.verify(&hs256_token_by_kid(Some("k2"), CURRENT_SECRET)));
}

#[test]
fn key_list_errors_name_the_variable_and_the_entry_never_a_secret() {
    let refusal = |value: &str| {
        Jwt::hs256_keys_in("JWT_KEYS", value)
            .unwrap_err()
            .to_string()
    };
    let short = "short-sekrit-value";
    let cases = [
        (
            format!("k1:{PREVIOUS_SECRET},{CURRENT_SECRET}"),
            "key entry 2: expected KID:SECRET",
        ),
        // Counted among the non-empty entries, as `ApiKeys::from_env` counts them.
        (
            format!(",k1:{PREVIOUS_SECRET},,k1:{CURRENT_SECRET}"),
            "key entry 2: has the same kid as key entry 1",
        ),
        (format!(":{CURRENT_SECRET}"), "key entry 1: the kid must be"),
        (
            format!("k 1:{CURRENT_SECRET}"),
            "key entry 1: the kid must be",
        ),
        (
            format!("k1:{short}"),
            "key entry 1: the HS256 secret is too short",
        ),
        (
            "k1:".to_owned(),
            "key entry 1: the HS256 secret is too short",
        ),
        (" , ,".to_owned(), "holds no key"),
    ];
    for (value, expected) in &cases {
        let message = refusal(value);
        assert!(
            message.starts_with("environment variable `JWT_KEYS`: "),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
        for secret in [PREVIOUS_SECRET, CURRENT_SECRET, short] {
            assert!(!message.contains(secret), "{message}");
        }
    }
    // A secret holding `:` written without its `KID:`: what precedes the `:` is read as the
    // kid, and so is never printed either.
    let message = refusal(&format!("sekrit:{}", &CURRENT_SECRET[..20]));
    assert!(message.contains("key entry 1"), "{message}");
    assert!(!message.contains("sekrit"), "{message}");
    let unset = "MCP_GATEKEEPER_TEST_UNSET_JWT_KEYS_41d9";
    assert!(matches!(
        Jwt::hs256_keys_from_env(unset),
        Err(ConfigError::MissingEnv(v)) if v == unset
    ));
}

#[test]
fn debug_names_kids_not_secrets() {
    let shown = format!("{:?}", two_kids());
    assert!(shown.contains(r#"kids: ["k1", "k2"]"#), "{shown}");
    assert!(!shown.contains(PREVIOUS_SECRET) && !shown.contains(CURRENT_SECRET));
    assert!(!format!("{:?}", hs256()).contains("kids"));
}
