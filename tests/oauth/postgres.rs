//! The authorization server on PostgreSQL over real HTTP: the `oauth` example run with
//! `DATABASE_URL`, an outage of the database (the endpoints refuse with `503` and recover
//! without a restart), and two replicas sharing one schema (a revocation through one is
//! refused by the other at once).
//!
//! These tests need a PostgreSQL server: `DATABASE_URL`, or the local one; each uses a schema of
//! its own and drops it at the end.

use std::{net::SocketAddr, process::Command, sync::Arc, time::Duration};

use mcp_gatekeeper::{
    AuditLog,
    store::{PostgresOptions, PostgresStore, Store},
};
use serde_json::json;
use tokio::{net::TcpListener, task::JoinHandle};

use super::*;
use crate::common::{Cred, Mcp, Version, example_binary, process::CapturedProcess};

/// Where the tests' server is: `DATABASE_URL`, else the local server's `test` database.
fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
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

/// A connection for the test's own statements; fails the test with how to start the server
/// when it cannot be reached.
async fn admin() -> tokio_postgres::Client {
    let url = database_url();
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => panic!(
            "PostgreSQL not reachable at {}: {e}: start it (e.g. `service postgresql start`) \
             or set DATABASE_URL",
            without_password(&url)
        ),
    }
}

/// A schema name no other test uses, and the guard that drops it.
struct Schema(String);

impl Schema {
    fn fresh(test: &str) -> Self {
        Self(format!(
            "gk_{test}_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Its own thread and runtime: the test's runtime may be the one dropping this.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
                        .await
                        .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_example_runs_on_postgres() {
    admin().await;
    let schema = Schema::fresh("example");
    let dir = std::env::temp_dir().join(format!("mcpgk-oauth-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut example = CapturedProcess::spawn(
        Command::new(example_binary("oauth"))
            .env("BIND", "127.0.0.1:0")
            .env("DATABASE_URL", database_url())
            .env("OAUTH_DATABASE_SCHEMA", &schema.0)
            .env("OAUTH_DATA_DIR", &dir)
            .env("OAUTH_USER_PASSWORD", "alice-password-1")
            .env("OAUTH_SERVICE_ID", "reporting")
            .env("OAUTH_SERVICE_SECRET", "reporting-secret-0123456789")
            .env("RUST_LOG", "off"),
        "the oauth example",
    );
    let base = format!("http://{}", example.listening());
    let printed = example.printed();
    assert!(
        printed.contains(&format!("PostgreSQL (DATABASE_URL, schema {})", schema.0)),
        "{printed}"
    );
    assert!(!dir.join("oauth.db").exists(), "a SQLite file was made");

    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/oauth/token"))
        .basic_auth("reporting", Some("reporting-secret-0123456789"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().expect("an access token");
    let reply = Mcp::new(
        &format!("{base}/mcp"),
        Cred::Bearer(token.into()),
        Version::V2026_07_28,
    )
    .request("tools/list", json!({}))
    .await;
    assert_eq!(reply.status, 200, "{reply:#?}");
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // The client and the signing key are in the database, where a second replica finds them.
    let store =
        PostgresStore::connect_with(&database_url(), PostgresOptions::new().schema(&schema.0))
            .await
            .unwrap();
    assert!(store.get_client("reporting").await.unwrap().is_some());
    assert_eq!(store.signing_keys().await.unwrap().len(), 1);
    drop(example);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP relay in front of the database, which the test can cut and restore: a database that
/// goes away and comes back, for the pool.
struct Relay {
    listen: SocketAddr,
    upstream: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = listener.local_addr().unwrap();
        let mut relay = Self {
            listen,
            upstream,
            task: None,
        };
        relay.task = Some(tokio::spawn(relay_loop(listener, upstream)));
        relay
    }

    /// Closes the listener and every relayed connection.
    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same address.
    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.listen).await.unwrap();
        self.task = Some(tokio::spawn(relay_loop(listener, self.upstream)));
    }
}

/// Relays every accepted connection to `upstream`; aborting it ends them all (the set of
/// connection tasks goes with it).
async fn relay_loop(listener: TcpListener, upstream: SocketAddr) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// The database's address, and `DATABASE_URL` rewritten (in key=value form) to go through
/// `relay` instead.
fn through_relay(relay_port: u16) -> (SocketAddr, String) {
    let url = database_url();
    let config: tokio_postgres::Config = url.parse().expect("DATABASE_URL parses");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .unwrap()
        .next()
        .unwrap();
    let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut relayed = format!("host=127.0.0.1 port={relay_port}");
    if let Some(user) = config.get_user() {
        relayed.push_str(&format!(" user={}", quote(user)));
    }
    if let Some(dbname) = config.get_dbname() {
        relayed.push_str(&format!(" dbname={}", quote(dbname)));
    }
    if let Some(password) = config.get_password() {
        relayed.push_str(&format!(
            " password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }
    (upstream, relayed)
}

/// The database goes away under a running server: tokens are refused with `503` (their
/// revocation cannot be checked), the token and revocation endpoints answer `503`,
/// `/readyz` says unavailable; when it comes back, everything works again on the same server
/// and store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_closed_and_recovers() {
    admin().await;
    let schema = Schema::fresh("outage");
    let (upstream, _) = through_relay(0);
    let mut relay = Relay::start(upstream).await;
    let (_, url) = through_relay(relay.listen.port());
    let store = PostgresStore::connect_with(
        &url,
        PostgresOptions::new()
            .schema(&schema.0)
            .connect_timeout(Duration::from_secs(2)),
    )
    .await
    .expect("the store connects through the relay");
    // The harness's server, with an audit trail in a file to read back.
    let audit_path = std::env::temp_dir().join(format!("{}.jsonl", schema.0));
    let _ = std::fs::remove_file(&audit_path);
    let audit = AuditLog::json_lines(&audit_path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/mcp");
    let oauth = configure(&base, &url)
        .store(Arc::new(store))
        .audit(audit.clone())
        .build()
        .await
        .unwrap();
    let running = Gatekeeper::new(Notes)
        .oauth(&oauth, &url)
        .audit(audit)
        .serve_on(listener)
        .unwrap();
    let h = OAuthHarness {
        base,
        url,
        oauth,
        running,
        http: reqwest::Client::new(),
    };
    let service_token = || async {
        h.token_with(
            &[("grant_type", "client_credentials")],
            Some((SERVICE_ID, SERVICE_SECRET)),
        )
        .await
    };
    let list = |token: String| {
        let url = h.url.clone();
        async move {
            Mcp::new(&url, Cred::Bearer(token), Version::V2026_07_28)
                .request("tools/list", json!({}))
                .await
        }
    };
    let ready = || async {
        let response = reqwest::get(format!("{}/readyz", h.base)).await.unwrap();
        (response.status(), response.text().await.unwrap())
    };
    let (status, _, body) = service_token().await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(list(token.clone()).await.status, 200);

    relay.cut().await;
    let reply = list(token.clone()).await;
    assert_eq!(reply.status, 503, "{reply:#?}");
    assert!(reply.header("retry-after").is_some(), "{reply:#?}");
    // The audit trail says why the token was refused.
    let mut refused = None;
    for _ in 0..50 {
        let text = std::fs::read_to_string(&audit_path).unwrap_or_default();
        refused = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["reason"] == "credential_check_unavailable");
        if refused.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("the refusal is audited");
    assert_eq!(refused["outcome"], "denied", "{refused}");
    let (status, _, body) = service_token().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    // A revocation that cannot be recorded is not acknowledged: the client learns to retry.
    let revoked = h
        .http
        .post(format!("{}/oauth/revoke", h.base))
        .basic_auth(SERVICE_ID, Some(SERVICE_SECRET))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 503);
    // A readiness answer is reused for a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");

    relay.restore().await;
    let (status, _, body) = service_token().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(list(token).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
    relay.cut().await;
    let _ = std::fs::remove_file(&audit_path);
}

/// Two replicas behind one public origin, each with its own pool on the same schema (as two
/// processes would be): a token revoked through one is refused by the other on its very next
/// request, although both had accepted it (and hold it in their verified-token caches). The
/// revocation is committed before `/oauth/revoke` answers `200`, and every replica reads the
/// store on every request; the caches only spare the signature check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_one_replica_is_refused_by_the_other_at_once() {
    use mcp_gatekeeper::store::{AuthCodeRecord, hash_secret};

    admin().await;
    let schema = Schema::fresh("replicas");
    let connect = || async {
        PostgresStore::connect_with(&database_url(), PostgresOptions::new().schema(&schema.0))
            .await
            .expect("the store connects")
    };
    // Replica A makes the schema and the signing key; B, built after it, loads both. Both
    // serve the issuer and resource of A's address, the origin a load balancer would give them.
    let a = start_oauth_with(Arc::new(connect().await), None, |s| s).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let b_oauth = configure(&a.base, &a.url)
        .store(Arc::new(connect().await))
        .build()
        .await
        .expect("replica B builds");
    let b = Gatekeeper::new(Notes)
        .oauth(&b_oauth, &a.url)
        .serve_on(listener)
        .unwrap();
    let list = |url: &str, token: &str| {
        let mcp = Mcp::new(url, Cred::Bearer(token.to_owned()), Version::V2026_07_28);
        async move { mcp.request("tools/list", json!({})).await }
    };
    let revoke = |form: Vec<(&'static str, String)>, basic: Option<(&str, &str)>| {
        let mut request = a.http.post(format!("{}/oauth/revoke", a.base)).form(&form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        async move { request.send().await.unwrap().status() }
    };

    // An access token (`jti`), revoked by the client that holds it.
    let (status, _, body) = a
        .token_with(
            &[("grant_type", "client_credentials")],
            Some((SERVICE_ID, SERVICE_SECRET)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    for url in [&a.url, &b_url, &a.url, &b_url] {
        assert_eq!(list(url, &token).await.status, 200, "accepted by {url}");
    }
    let status = revoke(
        vec![("token", token.clone())],
        Some((SERVICE_ID, SERVICE_SECRET)),
    )
    .await;
    assert_eq!(status, 200);
    let revoked_at = std::time::Instant::now();
    let refused = list(&b_url, &token).await;
    let seen_after = revoked_at.elapsed();
    assert_eq!(
        refused.status, 401,
        "B's first request after the revocation: {refused:#?}"
    );
    assert_eq!(list(&a.url, &token).await.status, 401);
    eprintln!("access token: refused by the other replica {seen_after:?} after the revocation");
    assert!(seen_after < Duration::from_secs(1), "{seen_after:?}");

    // A grant: revoking its refresh token ends the access tokens issued from it (their family).
    let code = pkce().0;
    let (verifier, challenge) = pkce();
    let callback = "http://127.0.0.1:4567/callback";
    a.oauth
        .store()
        .put_code(AuthCodeRecord {
            code_hash: hash_secret(&code),
            client_id: APP_ID.into(),
            subject: USER.into(),
            redirect_uri: callback.into(),
            code_challenge: challenge,
            scope: "notes:read".into(),
            resource: Some(a.url.clone()),
            family_id: pkce().0,
            expires_at: crate::common::now() as i64 + 300,
        })
        .await
        .unwrap();
    let (status, _, body) = a
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", callback),
            ("code_verifier", &verifier),
            ("client_id", APP_ID),
            ("resource", &a.url),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    for url in [&a.url, &b_url] {
        assert_eq!(list(url, &access).await.status, 200, "accepted by {url}");
    }
    let status = revoke(
        vec![
            ("token", refresh),
            ("token_type_hint", "refresh_token".into()),
            ("client_id", APP_ID.into()),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let revoked_at = std::time::Instant::now();
    let refused = list(&b_url, &access).await;
    let seen_after = revoked_at.elapsed();
    assert_eq!(refused.status, 401, "{refused:#?}");
    eprintln!("grant: refused by the other replica {seen_after:?} after the revocation");
    assert!(seen_after < Duration::from_secs(1), "{seen_after:?}");

    b.shutdown().await.unwrap();
    a.stop().await;
}
