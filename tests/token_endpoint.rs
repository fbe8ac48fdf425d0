//! The seed's `POST /auth/token`: client credentials in, an HS256 JWT out, usable at `/mcp`.

use serde_json::{Value, json};

use crate::common::*;

async fn token(server: &Server, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/auth/token", server.base))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_credentials_buy_a_token_that_opens_the_tools() {
    let server = start_rbac(false).await;
    let response = token(
        &server,
        json!({ "client_id": "svc-admin", "client_secret": "admin-secret-000022" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let mcp = Mcp::connect(&server.url, Cred::Bearer(access), Version::V2025_11_25).await;
    assert_eq!(mcp.list().await.len(), 4);
    assert!(
        mcp.call("delete-data", json!({ "key": "k" }))
            .await
            .result()
            .is_object()
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_client_credentials_get_invalid_client() {
    let server = start_rbac(false).await;
    for body in [
        json!({ "client_id": "svc-admin", "client_secret": "wrong" }),
        json!({ "client_id": "nobody", "client_secret": "admin-secret-000022" }),
    ] {
        let response = token(&server, body).await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
    let response = token(&server, json!({ "client_id": "svc-admin" })).await;
    assert_eq!(response.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn a_viewer_token_from_the_endpoint_is_a_viewer() {
    let server = start_rbac(true).await;
    let response = reqwest::Client::new()
        .post(format!("{}/auth/token", server.base))
        .basic_auth("svc-viewer", Some("viewer-secret-00001"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let mcp = Mcp::connect(
        &server.url,
        Cred::Bearer(body["access_token"].as_str().unwrap().into()),
        Version::V2026_07_28,
    )
    .await;
    assert_eq!(mcp.list().await, ["read-data"]);
    server.stop().await;
}
