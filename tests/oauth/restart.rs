//! Restart durability: with a SQLite store, a restarted server (same issuer, same file) keeps
//! its signing keys, clients, users, refresh-token families and revocations.

use std::sync::Arc;

use mcp_gatekeeper::store::{AuthCodeRecord, SqliteStore, Store, hash_secret};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::*;
use crate::common::{Cred, Mcp, Version, now};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-gatekeeper-{name}-{}-{}",
        std::process::id(),
        now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("oauth.db")
}

/// A code for the desktop app, put straight into the store (the pages are tested elsewhere).
async fn code_for_app(store: &dyn Store, resource: &str, challenge: &str) -> String {
    let code = format!("code-{}", rand::random::<u64>());
    store
        .put_code(AuthCodeRecord {
            code_hash: hash_secret(&code),
            client_id: APP_ID.into(),
            subject: USER.into(),
            redirect_uri: "http://127.0.0.1:4567/callback".into(),
            code_challenge: challenge.into(),
            scope: "notes:read notes:write".into(),
            resource: Some(resource.into()),
            family_id: format!("family-{}", rand::random::<u64>()),
            expires_at: now() as i64 + 300,
        })
        .await
        .unwrap();
    code
}

async fn list_with(url: &str, token: &str) -> Vec<String> {
    Mcp::connect(url, Cred::Bearer(token.into()), Version::V2025_11_25)
        .await
        .list()
        .await
}

#[tokio::test]
async fn nothing_is_lost_across_a_restart() {
    let db = temp_db("restart");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let h = start_oauth_with(store.clone(), Some(listener), |c| c).await;

    // A self-registered client, a service token, a user grant with a refresh token, and a
    // revoked token.
    let registered: Value = h
        .http
        .post(format!("{}/oauth/register", h.base))
        .json(&json!({
            "client_name": "Restart test",
            "redirect_uris": ["http://127.0.0.1/cb"],
            "token_endpoint_auth_method": "none"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registered_id = registered["client_id"].as_str().unwrap().to_owned();
    let (status, _, service) = h
        .token_with(
            &[("grant_type", "client_credentials")],
            Some((SERVICE_ID, SERVICE_SECRET)),
        )
        .await;
    assert_eq!(status, 200, "{service}");
    let service_token = service["access_token"].as_str().unwrap().to_owned();
    let (verifier, challenge) = pkce();
    let code = code_for_app(store.as_ref(), &h.url, &challenge).await;
    let (status, _, grant) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", APP_ID),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:4567/callback"),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(status, 200, "{grant}");
    let user_token = grant["access_token"].as_str().unwrap().to_owned();
    let refresh = grant["refresh_token"].as_str().unwrap().to_owned();
    let (status, _, revoked) = h
        .token_with(
            &[("grant_type", "client_credentials")],
            Some((SERVICE_ID, SERVICE_SECRET)),
        )
        .await;
    assert_eq!(status, 200);
    let revoked_token = revoked["access_token"].as_str().unwrap().to_owned();
    let response = h
        .http
        .post(format!("{}/oauth/revoke", h.base))
        .basic_auth(SERVICE_ID, Some(SERVICE_SECRET))
        .form(&[("token", revoked_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let jwks_before: Value = h
        .http
        .get(format!("{}/.well-known/jwks.json", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = h.url.clone();
    assert!(!list_with(&url, &user_token).await.is_empty());
    h.stop().await;
    drop(store);

    // Same file, same address (so the same issuer).
    let listener = TcpListener::bind(addr)
        .await
        .expect("the port is free again");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let h = start_oauth_with(store.clone(), Some(listener), |c| c).await;
    let jwks_after: Value = h
        .http
        .get(format!("{}/.well-known/jwks.json", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks_after, jwks_before, "the signing key survived");

    // Tokens issued before the restart still verify; the revoked one stays revoked.
    assert!(!list_with(&h.url, &user_token).await.is_empty());
    assert!(!list_with(&h.url, &service_token).await.is_empty());
    let refused = Mcp::new(&h.url, Cred::Bearer(revoked_token), Version::V2025_11_25)
        .request("initialize", json!({}))
        .await;
    assert_eq!(refused.status, 401, "a revoked token stays revoked");

    // The registered client, the users and the refresh-token family are still there.
    assert!(store.get_client(&registered_id).await.unwrap().is_some());
    assert!(store.get_user(USER).await.unwrap().is_some());
    let (status, _, rotated) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", APP_ID),
            ("refresh_token", &refresh),
        ])
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refresh_token"].as_str().unwrap(), refresh);
    // Its successor is used, so the old token can no longer pass for a retry of a lost answer
    // (the grace period) ...
    let (status, _, next) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", APP_ID),
            ("refresh_token", rotated["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(status, 200, "{next}");
    // ... and its history: the rotated token is recognised as reused.
    let (status, _, reused) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", APP_ID),
            ("refresh_token", &refresh),
        ])
        .await;
    assert_eq!(status, 400);
    assert_eq!(reused["error"], "invalid_grant");
    h.stop().await;
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}
