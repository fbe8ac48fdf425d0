//! Client-id URL rules, configuration checks, and the cache's expiry against a real loopback
//! document server. (The fetch refusals are exercised end to end in `tests/oauth/clients.rs`.)

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, routing::get};
use serde_json::json;

use super::*;
use crate::oauth::{AuthorizationServer, OAuthServer};

#[test]
fn metadata_urls_are_https_urls_with_a_path() {
    for ok in [
        "https://app.example/client.json",
        "https://app.example/oauth/metadata",
        "https://app.example:8443/c",
        "https://app.example/c?version=2",
        "https://127.0.0.1/c",
    ] {
        assert!(is_metadata_url(ok), "{ok}");
    }
    for bad in [
        "desktop-app",
        "https://app.example",
        "https://app.example/",
        "http://app.example/client.json",
        "https://app.example/client.json#frag",
        "https://user@app.example/client.json",
        "https://user:pw@app.example/client.json",
        "https://app.example/a/../client.json",
        "https://app.example/a/./client.json",
        "https://app.example/a/%2e%2e/client.json",
        "https://app.example/a/.%2E/client.json",
        "https://APP.example/client.json",
        "https://app.example:443/client.json",
        "HTTPS://app.example/client.json",
        "https://app.example/client json",
        " https://app.example/client.json",
        "ftp://app.example/client.json",
        "urn:example:client",
    ] {
        assert!(!is_metadata_url(bad), "{bad}");
    }
    let long = format!("https://app.example/{}", "a".repeat(MAX_URL_BYTES));
    assert!(!is_metadata_url(&long));
}

#[test]
fn http_urls_only_when_allowed() {
    let strict = ClientMetadataDocuments::default().into_fetcher().unwrap();
    let lenient = ClientMetadataDocuments::default()
        .insecure_allow_http()
        .into_fetcher()
        .unwrap();
    let url = "http://127.0.0.1:8080/client.json";
    assert!(!strict.is_metadata_url(url));
    assert!(lenient.is_metadata_url(url));
    assert!(!lenient.is_metadata_url("http://127.0.0.1:8080/"));
    assert!(strict.is_metadata_url("https://app.example/c"));
}

#[test]
fn settings_are_checked() {
    let d = ClientMetadataDocuments::default;
    assert!(d().timeout(Duration::ZERO).into_fetcher().is_err());
    assert!(d().max_document_size(0).into_fetcher().is_err());
    assert!(d().max_document_size(2 << 20).into_fetcher().is_err());
    assert!(
        d().cache_lifetime_bounds(Duration::from_secs(10), Duration::from_secs(5))
            .into_fetcher()
            .is_err()
    );
    let fetcher = d()
        .cache_lifetime(Duration::from_secs(1))
        .into_fetcher()
        .unwrap();
    assert_eq!(fetcher.config.default_lifetime, Duration::from_secs(300));
}

/// An authorization server (scope `a`) allowed to fetch documents from loopback over http.
async fn fetching_server() -> OAuthServer {
    AuthorizationServer::new("http://127.0.0.1:1")
        .resource("http://127.0.0.1:1/mcp")
        .scopes(["a"])
        .client_metadata_documents(Some(
            ClientMetadataDocuments::default()
                .allow_private_addresses()
                .insecure_allow_http(),
        ))
        .build()
        .await
        .unwrap()
}

/// A document server on loopback counting its requests, and an authorization server allowed
/// to fetch from it.
async fn setup() -> (OAuthServer, String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let document = json!({
        "client_id": url,
        "client_name": "Loopback App",
        "redirect_uris": ["http://127.0.0.1/cb"],
    });
    let counter = hits.clone();
    let app = Router::new().route(
        "/client.json",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = document.to_string();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fetching_server().await, url, hits)
}

#[tokio::test]
async fn stored_documents_are_used_until_they_expire() {
    let (server, url, hits) = setup().await;
    let state = &server.state;
    let fetcher = state.metadata_documents.as_ref().unwrap();

    let first = fetcher
        .client(state, &url, None)
        .await
        .unwrap()
        .expect("fetched");
    assert_eq!(first.name, "Loopback App");
    assert_eq!(first.allowed_scopes, ["a"]);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let stored = state.store.get_client(&url).await.unwrap().expect("stored");
    assert_eq!(stored.metadata_url.as_deref(), Some(url.as_str()));

    // Fresh: served from the store.
    assert!(fetcher.client(state, &url, None).await.unwrap().is_some());
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Expired (fetched long ago, as by an earlier process): fetched again.
    fetcher.expiries.lock().unwrap().clear();
    let stale = ClientRecord {
        name: "Old Name".into(),
        created_at: unix_now() - 400,
        ..stored
    };
    state.store.put_client(stale).await.unwrap();
    let refreshed = fetcher
        .client(state, &url, None)
        .await
        .unwrap()
        .expect("fetched");
    assert_eq!(refreshed.name, "Loopback App");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_configured_client_is_not_taken_for_a_document() {
    let (server, url, hits) = setup().await;
    let state = &server.state;
    // A record under the URL that did not come from a document (it cannot be configured, but
    // a store shared with other software could hold one) is not served as the document.
    let record = ClientRecord {
        client_id: url.clone(),
        secret_hash: None,
        name: "Impostor".into(),
        redirect_uris: vec!["https://evil.example/cb".into()],
        grant_types: vec!["authorization_code".into()],
        allowed_scopes: vec!["a".into()],
        role: None,
        token_endpoint_auth_method: "none".into(),
        tls_client_auth: None,
        metadata_url: None,
        self_registered: false,
        created_at: unix_now(),
    };
    state.store.put_client(record).await.unwrap();
    let fetcher = state.metadata_documents.as_ref().unwrap();
    let client = fetcher
        .client(state, &url, None)
        .await
        .unwrap()
        .expect("fetched");
    assert_eq!(client.name, "Loopback App");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_documents_one_address_makes_the_server_fetch_are_limited() {
    // A document server answering any path with a valid document for that URL: what an
    // attacker's own server can do to make the authorization server store clients.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let origin = base.clone();
    let app = Router::new().route(
        "/{name}",
        get(
            move |axum::extract::Path(name): axum::extract::Path<String>| {
                let document = json!({
                    "client_id": format!("{origin}/{name}"),
                    "client_name": "Any",
                    "redirect_uris": ["http://127.0.0.1/cb"],
                });
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        document.to_string(),
                    )
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let server = fetching_server().await;
    let state = &server.state;
    let fetcher = state.metadata_documents.as_ref().unwrap();
    let attacker = Some("10.0.0.1".parse().unwrap());
    for n in 0..FETCH_LIMITS.per_address {
        let url = format!("{base}/client-{n}");
        assert!(
            fetcher
                .client(state, &url, attacker)
                .await
                .unwrap()
                .is_some(),
            "{n}"
        );
    }
    let refused = fetcher
        .client(state, &format!("{base}/one-more"), attacker)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "temporarily_unavailable");
    // A document already fetched is served from the store without counting; another
    // address has its own budget.
    let cached = format!("{base}/client-0");
    assert!(
        fetcher
            .client(state, &cached, attacker)
            .await
            .unwrap()
            .is_some()
    );
    let other = Some("192.0.2.7".parse().unwrap());
    assert!(
        fetcher
            .client(state, &format!("{base}/one-more"), other)
            .await
            .unwrap()
            .is_some()
    );
}
