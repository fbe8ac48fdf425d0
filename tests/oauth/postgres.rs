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
    // A token signed with a key this replica does not know — another replica's new key as far
    // as it can tell without the store — is not refused as invalid either: `503`.
    let unknown_key = forged_token(&test_es256_key(), &h.base, &h.url);
    let reply = list(unknown_key).await;
    assert_eq!(reply.status, 503, "{reply:#?}");
    assert!(reply.header("retry-after").is_some(), "{reply:#?}");
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

/// A page's hidden input `name`, read the way a headless client does.
fn hidden(body: &str, name: &str) -> String {
    let start = format!(r#"<input type="hidden" name="{name}" value=""#);
    let at = body
        .find(&start)
        .unwrap_or_else(|| panic!("no hidden {name} in {body}"));
    let rest = &body[at + start.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// `name=value` of the session cookie a response sets, if it sets one with a value.
fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with("mcp_gatekeeper_session=") && !pair.ends_with('='))
        .map(str::to_owned)
}

/// The value of query parameter `name` of a redirect's `Location`.
fn location_param(response: &reqwest::Response, name: &str) -> Option<String> {
    let location = response
        .headers()
        .get(http::header::LOCATION)?
        .to_str()
        .ok()?;
    let url = url::Url::parse(location).ok()?;
    url.query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// Every step of a sign-in on the other replica than the one before it, each with its own pool
/// on one schema (as two processes behind a load balancer would be): the login page from A is
/// posted to B, B's redirect to the consent page is followed on A, the decision goes to B. Then
/// what must hold across replicas: a replayed decision on A gives no second code, a code
/// redeemed through A is refused by B (a replay, which ends the grant on both), a sign-out
/// through A ends the session on B, and a login form of A posted to B with a forged CSRF token
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_may_alternate_between_replicas() {
    admin().await;
    let schema = Schema::fresh("pages");
    let connect = || async {
        PostgresStore::connect_with(&database_url(), PostgresOptions::new().schema(&schema.0))
            .await
            .expect("the store connects")
    };
    let a = start_oauth_with(Arc::new(connect().await), None, |s| s).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_base = format!("http://{}", listener.local_addr().unwrap());
    let b_oauth = configure(&a.base, &a.url)
        .store(Arc::new(connect().await))
        .build()
        .await
        .expect("replica B builds");
    let b = Gatekeeper::new(Notes)
        .oauth(&b_oauth, &a.url)
        .serve_on(listener)
        .unwrap();
    let browser = &a.http; // never follows redirects
    let callback = "http://127.0.0.1:4567/callback";
    let authorize_url = |base: &str, challenge: &str| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", APP_ID)
            .append_pair("redirect_uri", callback)
            .append_pair("state", "s-1")
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", "notes:read")
            .append_pair("resource", &a.url)
            .finish();
        format!("{base}/oauth/authorize?{query}")
    };

    // The login page from A, its form posted to B.
    let (verifier, challenge) = pkce();
    let page = browser
        .get(authorize_url(&a.base, &challenge))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    let (request, csrf) = (hidden(&body, "request"), hidden(&body, "csrf"));
    let forged = browser
        .post(format!("{b_base}/oauth/authorize/login"))
        .form(&[
            ("request", request.as_str()),
            ("csrf", "forged"),
            ("username", USER),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400, "a forged CSRF token");
    let signed_in = browser
        .post(format!("{b_base}/oauth/authorize/login"))
        .form(&[
            ("request", request.as_str()),
            ("csrf", csrf.as_str()),
            ("username", USER),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        signed_in.status(),
        303,
        "B accepts A's login page: {:?}",
        signed_in.text().await
    );
    let cookie = session_cookie(&signed_in).expect("a session cookie from B");
    let next = signed_in.headers()[http::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        next.starts_with("/oauth/authorize/consent?request="),
        "{next}"
    );

    // The consent page from A, for B's session; the decision to B.
    let consent = browser
        .get(format!("{}{next}", a.base))
        .header(http::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 200);
    let body = consent.text().await.unwrap();
    assert!(
        body.contains(r#"action="/oauth/authorize/decision""#),
        "A shows the consent page to B's session: {body}"
    );
    let decision = [
        ("request", hidden(&body, "request")),
        ("csrf", hidden(&body, "csrf")),
        ("decision", "approve".to_owned()),
        ("scope", "notes:read".to_owned()),
    ];
    let decide = |base: &str| {
        browser
            .post(format!("{base}/oauth/authorize/decision"))
            .header(http::header::COOKIE, &cookie)
            .form(&decision)
            .send()
    };
    let approved = decide(&b_base).await.unwrap();
    assert_eq!(approved.status(), 303);
    let code = location_param(&approved, "code").expect("a code from B");
    assert_eq!(
        location_param(&approved, "iss").as_deref(),
        Some(a.base.as_str())
    );
    // The same decision replayed on A: no second code.
    let replayed = decide(&a.base).await.unwrap();
    assert_eq!(
        replayed.status(),
        400,
        "a replayed decision on the other replica"
    );
    assert!(location_param(&replayed, "code").is_none());

    // The code through A; again through B: a replay, which ends the grant everywhere.
    let exchange = |base: String| {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", callback),
            ("code_verifier", verifier.as_str()),
            ("client_id", APP_ID),
            ("resource", a.url.as_str()),
        ];
        let request = browser.post(format!("{base}/oauth/token")).form(&form);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, tokens) = exchange(a.base.clone()).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let b_url = format!("{b_base}/mcp");
    let list = |url: &str| {
        let mcp = Mcp::new(url, Cred::Bearer(access.clone()), Version::V2026_07_28);
        async move { mcp.request("tools/list", json!({})).await.status }
    };
    assert_eq!(list(&b_url).await, 200, "B accepts A's token");
    let (status, refused) = exchange(b_base.clone()).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_grant");
    assert_eq!(list(&a.url).await, 401, "the replay revoked the grant");
    assert_eq!(list(&b_url).await, 401);

    // Signed in on every replica: B goes straight to consent for the session B started.
    let (_, challenge) = pkce();
    let page = browser
        .get(authorize_url(&b_base, &challenge))
        .header(http::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let body = page.text().await.unwrap();
    assert!(
        body.contains(r#"action="/oauth/authorize/decision""#),
        "{body}"
    );
    // "Not you?" through A ends the session on B too.
    let signed_out = browser
        .post(format!("{}/oauth/authorize/logout", a.base))
        .header(http::header::COOKIE, &cookie)
        .form(&[
            ("request", hidden(&body, "request")),
            ("csrf", hidden(&body, "csrf")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    let (_, challenge) = pkce();
    let page = browser
        .get(authorize_url(&b_base, &challenge))
        .header(http::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let body = page.text().await.unwrap();
    assert!(
        body.contains(r#"action="/oauth/authorize/login""#),
        "B shows the login page after the sign-out on A: {body}"
    );

    b.shutdown().await.unwrap();
    a.stop().await;
}

/// One request the round-robin proxy forwarded.
#[derive(Debug, Clone)]
struct Forwarded {
    /// Which replica it went to (0 or 1).
    replica: usize,
    method: String,
    /// The path, without the query.
    path: String,
    /// The replica's answer.
    status: u16,
}

/// What the proxy's handler shares.
#[derive(Clone)]
struct Proxy {
    replicas: Arc<Vec<String>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    log: Arc<std::sync::Mutex<Vec<Forwarded>>>,
    client: reqwest::Client,
}

/// Headers that belong to one connection, not to the message: never forwarded.
fn hop_by_hop(name: &http::HeaderName) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    ]
    .contains(&name.as_str())
}

/// Sends the request to the next replica in turn, whole, and its answer back, whole (the
/// replicas are stateless: no stream outlives its request).
async fn forward(
    axum::extract::State(proxy): axum::extract::State<Proxy>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let replica =
        proxy.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % proxy.replicas.len();
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    // The Host header goes on as the client sent it (the public origin), as a load balancer's
    // would.
    let mut outbound = proxy
        .client
        .request(
            parts.method.clone(),
            format!("{}{target}", proxy.replicas[replica]),
        )
        .body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outbound = outbound.header(name, value);
        }
    }
    let answer = match outbound.send().await {
        Ok(answer) => answer,
        Err(error) => return (http::StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    proxy.log.lock().unwrap().push(Forwarded {
        replica,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        status: status.as_u16(),
    });
    let mut response = axum::response::Response::new(axum::body::Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

/// A reverse proxy on loopback in front of replicas, alternating per *request* (not per
/// connection: clients keep connections alive), recording where each request went. Prints
/// what it forwarded when the test fails.
struct RoundRobin {
    log: Arc<std::sync::Mutex<Vec<Forwarded>>>,
    task: JoinHandle<()>,
}

impl RoundRobin {
    fn start(listener: TcpListener, replicas: Vec<String>) -> Self {
        let proxy = Proxy {
            replicas: Arc::new(replicas),
            next: Arc::default(),
            log: Arc::default(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
        };
        let log = proxy.log.clone();
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { log, task }
    }

    fn log(&self) -> Vec<Forwarded> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() {
            for f in self.log.lock().map(|l| l.clone()).unwrap_or_default() {
                eprintln!(
                    "proxy: replica {} {} {} → {}",
                    f.replica, f.method, f.path, f.status
                );
            }
        }
    }
}

/// The official TypeScript MCP SDK client's whole flow (`e2e/sdk-oauth.mjs --replicas`)
/// through a proxy that sends each request to the other of two `oauth` example processes on one
/// PostgreSQL schema, both serving the proxy's origin as issuer and resource: discovery,
/// registration, the login and consent pages (each form posted to the other replica than the
/// one whose page it is), token, tools, step-up, refresh rotation and reuse detection, and, on
/// top, a consent decision replayed on the other replica and a code redeemed twice across
/// them (both refused). The replicas are stateless (`STATELESS=1`): an MCP session would live
/// in one process and need sticky routing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_flow_alternates_between_two_replicas() {
    use super::e2e::{E2E_PASSWORD, E2E_USER, node_22, run_script};

    let node = node_22(false);
    admin().await;
    let schema = Schema::fresh("sdk");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let data = std::env::temp_dir().join(format!("mcpgk-replicas-{}", schema.0));
    let start = |name: &str| {
        let dir = data.join(name);
        CapturedProcess::spawn(
            Command::new(example_binary("oauth"))
                .env("BIND", "127.0.0.1:0")
                .env("STATELESS", "1")
                .env("OAUTH_ISSUER", &origin)
                .env("DATABASE_URL", database_url())
                .env("OAUTH_DATABASE_SCHEMA", &schema.0)
                .env("OAUTH_DATA_DIR", &dir)
                .env("OAUTH_USER", E2E_USER)
                .env("OAUTH_USER_PASSWORD", E2E_PASSWORD)
                .env("RUST_LOG", "off"),
            name,
        )
    };
    // One after the other: the first makes the schema, the signing key and the pages' secret,
    // the second finds them.
    let mut a = start("replica a");
    let a_addr = a.listening();
    let mut b = start("replica b");
    let b_addr = b.listening();
    for replica in [&a, &b] {
        let printed = replica.printed();
        assert!(
            printed.contains(&format!("{origin}/.well-known/oauth-authorization-server")),
            "each replica serves the proxy's origin:\n{printed}"
        );
    }
    let proxy = RoundRobin::start(
        listener,
        vec![format!("http://{a_addr}"), format!("http://{b_addr}")],
    );

    run_script(
        &node,
        "sdk-oauth.mjs",
        &[format!("{origin}/mcp"), "--replicas".to_owned()],
        Duration::from_secs(150),
    )
    .await;

    let log = proxy.log();
    let summary =
        |f: &Forwarded| format!("{} {} → {} on {}", f.method, f.path, f.status, f.replica);
    // Both replicas served tool calls, tokens and the pages (a signed-in browser's request
    // goes straight to the consent page, so the consent URL itself is fetched only once).
    for (method, path) in [
        ("POST", "/mcp"),
        ("POST", "/oauth/token"),
        ("GET", "/oauth/authorize"),
        ("POST", "/oauth/authorize/decision"),
    ] {
        for replica in 0..2 {
            assert!(
                log.iter()
                    .any(|f| f.replica == replica && f.method == method && f.path == path),
                "replica {replica} never served {method} {path}"
            );
        }
    }
    // Every form was posted to the other replica than the one that served its page (a form
    // posted again, the replay below, follows its first post, not a page).
    let (mut logins, mut decisions, mut across) = (Vec::new(), Vec::new(), 0);
    for (i, f) in log.iter().enumerate() {
        let posts_a_form = f.method == "POST"
            && (f.path == "/oauth/authorize/login" || f.path == "/oauth/authorize/decision");
        if !posts_a_form {
            continue;
        }
        let before = log[..i]
            .iter()
            .rev()
            .find(|g| g.path.starts_with("/oauth/authorize"))
            .unwrap_or_else(|| panic!("no page before {}", summary(f)));
        if before.method == "GET" {
            assert_ne!(
                before.replica,
                f.replica,
                "{} after the page {}",
                summary(f),
                summary(before)
            );
            across += 1;
        }
        if f.path.ends_with("/login") {
            logins.push(f.clone());
        } else {
            decisions.push(f.clone());
        }
    }
    assert!(!logins.is_empty(), "no login");
    assert!(across >= 4, "{across} forms posted across replicas");
    assert!(logins.iter().all(|f| f.status == 303), "{logins:?}");
    // The last decision was the replay of the one before it, on the other replica: refused.
    let [.., approved, replayed] = decisions.as_slice() else {
        panic!("no replayed decision: {decisions:?}");
    };
    assert_eq!(
        (approved.status, replayed.status),
        (303, 400),
        "{decisions:?}"
    );
    assert_ne!(approved.replica, replayed.replica);
    // A grant used up on one replica was refused by the other on the very next request: the
    // code redeemed twice (the last such pair), and before it a rotated refresh token reused.
    let token = |f: &Forwarded| f.method == "POST" && f.path == "/oauth/token";
    let refused_next: Vec<(&Forwarded, &Forwarded)> = log
        .windows(2)
        .filter(|w| token(&w[0]) && token(&w[1]) && (w[0].status, w[1].status) == (200, 400))
        .map(|w| (&w[0], &w[1]))
        .collect();
    assert!(refused_next.len() >= 2, "{refused_next:?}");
    for (used, refused) in &refused_next {
        assert_ne!(used.replica, refused.replica);
    }
    println!(
        "proxy: {} requests, {} to replica 0, {} to replica 1; {} sign-ins, {} decisions",
        log.len(),
        log.iter().filter(|f| f.replica == 0).count(),
        log.iter().filter(|f| f.replica == 1).count(),
        logins.len(),
        decisions.len()
    );
    drop(proxy);
    drop((a, b));
    let _ = std::fs::remove_dir_all(&data);
}

// --- Signing keys across replicas (DESIGN.md 49) ---

/// The least time between two reads of the signing keys that tokens with unknown `kid`s
/// start in one replica (`oauth::keys::RELOAD_COOLDOWN`).
const KEY_READ_COOLDOWN: Duration = Duration::from_secs(2);

/// A store on the test's schema, with a pool of its own (a replica's).
async fn replica_store(schema: &Schema) -> PostgresStore {
    PostgresStore::connect_with(&database_url(), PostgresOptions::new().schema(&schema.0))
        .await
        .expect("the store connects")
}

/// One replica of the authorization server (and MCP server) on its own address; every replica
/// has the same issuer and resource, the origin a load balancer would give them.
struct Replica {
    base: String,
    /// This replica's MCP endpoint.
    mcp: String,
    oauth: OAuthServer,
    running: RunningServer,
}

impl Replica {
    fn serve(oauth: OAuthServer, resource: &str, listener: TcpListener) -> Self {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let running = Gatekeeper::new(Notes)
            .oauth(&oauth, resource)
            .serve_on(listener)
            .unwrap();
        Self {
            mcp: format!("{base}/mcp"),
            base,
            oauth,
            running,
        }
    }

    /// A client-credentials access token from this replica's token endpoint.
    async fn token(&self) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(SERVICE_ID, Some(SERVICE_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", self.base);
        let body: serde_json::Value = response.json().await.unwrap();
        body["access_token"].as_str().expect("a token").to_owned()
    }

    /// The status of `tools/list` on this replica with `token`.
    async fn list(&self, token: &str) -> u16 {
        Mcp::new(
            &self.mcp,
            Cred::Bearer(token.to_owned()),
            Version::V2026_07_28,
        )
        .request("tools/list", json!({}))
        .await
        .status
    }

    /// The `kid`s of this replica's JWKS.
    async fn jwks(&self) -> Vec<String> {
        let body: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut kids: Vec<String> = body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort_unstable();
        kids
    }

    async fn stop(self) {
        self.running.shutdown().await.unwrap();
    }
}

/// The `kid` a token names.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("a kid")
}

/// The `kid`s of the unretired keys in the store.
async fn current_kids(store: &dyn Store) -> Vec<String> {
    store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| k.kid)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_on_an_empty_schema_sign_with_one_key() {
    admin().await;
    let schema = Schema::fresh("keys_start");
    let (la, lb) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let issuer = format!("http://{}", la.local_addr().unwrap());
    let resource = format!("{issuer}/mcp");
    // Both connect (and migrate) at once, then build at once: both find the schema without a
    // key and try to install one.
    let (sa, sb) = tokio::join!(replica_store(&schema), replica_store(&schema));
    let (a, b) = tokio::join!(
        configure(&issuer, &resource).store(Arc::new(sa)).build(),
        configure(&issuer, &resource).store(Arc::new(sb)).build(),
    );
    let store = replica_store(&schema).await;
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "one key for both replicas: {keys:?}");
    let kid = keys[0].kid.clone();
    let a = Replica::serve(a.expect("replica A builds"), &resource, la);
    let b = Replica::serve(b.expect("replica B builds"), &resource, lb);

    let (from_a, from_b) = (a.token().await, b.token().await);
    assert_eq!(kid_of(&from_a), kid);
    assert_eq!(kid_of(&from_b), kid);
    for (replica, token) in [(&a, &from_b), (&b, &from_a), (&a, &from_a), (&b, &from_b)] {
        assert_eq!(replica.list(token).await, 200, "{}", replica.base);
    }
    assert_eq!(a.jwks().await, std::slice::from_ref(&kid));
    assert_eq!(b.jwks().await, [kid]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotated_on_one_replica_is_accepted_by_the_other_at_once() {
    admin().await;
    let schema = Schema::fresh("keys_rotate");
    let (la, lb) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let issuer = format!("http://{}", la.local_addr().unwrap());
    let resource = format!("{issuer}/mcp");
    let build = |store: PostgresStore| configure(&issuer, &resource).store(Arc::new(store)).build();
    let a = build(replica_store(&schema).await).await.unwrap();
    let b = build(replica_store(&schema).await).await.unwrap();
    let (a, b) = (
        Replica::serve(a, &resource, la),
        Replica::serve(b, &resource, lb),
    );
    let old_token = a.token().await;
    let old = kid_of(&old_token);
    assert_eq!(b.list(&old_token).await, 200);

    // A rotates; its next token is signed with a key B has never read.
    let new = a.oauth.rotate_signing_key().await.unwrap();
    assert_ne!(new, old);
    let new_token = a.token().await;
    assert_eq!(kid_of(&new_token), new);
    let asked = std::time::Instant::now();
    let status = b.list(&new_token).await;
    let took = asked.elapsed();
    assert_eq!(status, 200, "B's first request with A's new key");
    eprintln!("a token of the new key: accepted by the other replica's first request in {took:?}");
    // No request had made B read the keys yet, so it read them at once (one indexed read).
    assert!(took < Duration::from_secs(1), "{took:?}");

    // Having read them, B publishes the new key beside the old one and signs with the key the
    // store names current; tokens of the old key stay valid on both.
    let mut both = vec![old.clone(), new.clone()];
    both.sort_unstable();
    assert_eq!(b.jwks().await, both);
    let from_b = b.token().await;
    assert_eq!(kid_of(&from_b), new, "B signs with the current key");
    assert_eq!(a.list(&from_b).await, 200);
    assert_eq!(b.list(&old_token).await, 200);
    assert_eq!(a.list(&old_token).await, 200);
    assert_eq!(
        current_kids(b.oauth.store().as_ref()).await,
        std::slice::from_ref(&new)
    );

    // Another rotation on A, and the new token revoked through B before B read the keys: B
    // finds the key in the store, so the revocation is recorded, and A refuses the token.
    let newer = a.oauth.rotate_signing_key().await.unwrap();
    let newer_token = a.token().await;
    assert_eq!(kid_of(&newer_token), newer);
    assert_eq!(a.list(&newer_token).await, 200);
    let revoked = reqwest::Client::new()
        .post(format!("{}/oauth/revoke", b.base))
        .basic_auth(SERVICE_ID, Some(SERVICE_SECRET))
        .form(&[("token", newer_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(a.list(&newer_token).await, 401, "revoked through B");
    assert_eq!(b.list(&newer_token).await, 401);
    a.stop().await;
    b.stop().await;
}

/// A [`PostgresStore`] that counts the reads of the signing keys, and otherwise only passes
/// every call on.
struct CountingStore {
    inner: PostgresStore,
    key_reads: std::sync::atomic::AtomicU64,
}

impl CountingStore {
    fn key_reads(&self) -> u64 {
        self.key_reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

mod counting {
    use futures::future::BoxFuture;
    use mcp_gatekeeper::store::{
        AuthCodeRecord, ClientRecord, CodeRedemption, RefreshTokenRecord, Rotation, SessionRecord,
        SigningKeyRecord, Store, StoreError, UserRecord,
    };

    use super::CountingStore;

    type Answer<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

    impl Store for CountingStore {
        fn put_client(&self, client: ClientRecord) -> Answer<'_, ()> {
            self.inner.put_client(client)
        }
        fn get_client<'a>(&'a self, client_id: &'a str) -> Answer<'a, Option<ClientRecord>> {
            self.inner.get_client(client_id)
        }
        fn delete_client<'a>(&'a self, client_id: &'a str) -> Answer<'a, bool> {
            self.inner.delete_client(client_id)
        }
        fn put_user(&self, user: UserRecord) -> Answer<'_, ()> {
            self.inner.put_user(user)
        }
        fn get_user<'a>(&'a self, username: &'a str) -> Answer<'a, Option<UserRecord>> {
            self.inner.get_user(username)
        }
        fn delete_user<'a>(&'a self, username: &'a str) -> Answer<'a, bool> {
            self.inner.delete_user(username)
        }
        fn put_code(&self, code: AuthCodeRecord) -> Answer<'_, ()> {
            self.inner.put_code(code)
        }
        fn redeem_code(&self, code_hash: [u8; 32], now: i64) -> Answer<'_, CodeRedemption> {
            self.inner.redeem_code(code_hash, now)
        }
        fn put_refresh(&self, token: RefreshTokenRecord) -> Answer<'_, ()> {
            self.inner.put_refresh(token)
        }
        fn get_refresh(&self, token_hash: [u8; 32]) -> Answer<'_, Option<RefreshTokenRecord>> {
            self.inner.get_refresh(token_hash)
        }
        fn rotate_refresh(
            &self,
            old_hash: [u8; 32],
            new: RefreshTokenRecord,
            now: i64,
            grace: i64,
        ) -> Answer<'_, Rotation> {
            self.inner.rotate_refresh(old_hash, new, now, grace)
        }
        fn revoke_refresh(&self, token_hash: [u8; 32], now: i64) -> Answer<'_, bool> {
            self.inner.revoke_refresh(token_hash, now)
        }
        fn revoke_family<'a>(&'a self, family_id: &'a str, now: i64) -> Answer<'a, ()> {
            self.inner.revoke_family(family_id, now)
        }
        fn is_family_revoked<'a>(&'a self, family_id: &'a str) -> Answer<'a, bool> {
            self.inner.is_family_revoked(family_id)
        }
        fn revoke_access_token<'a>(&'a self, jti: &'a str, expires_at: i64) -> Answer<'a, ()> {
            self.inner.revoke_access_token(jti, expires_at)
        }
        fn is_access_token_revoked<'a>(&'a self, jti: &'a str) -> Answer<'a, bool> {
            self.inner.is_access_token_revoked(jti)
        }
        fn put_signing_key(&self, key: SigningKeyRecord) -> Answer<'_, ()> {
            self.inner.put_signing_key(key)
        }
        fn signing_keys(&self) -> Answer<'_, Vec<SigningKeyRecord>> {
            self.key_reads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.signing_keys()
        }
        fn retire_signing_key<'a>(&'a self, kid: &'a str, now: i64) -> Answer<'a, bool> {
            self.inner.retire_signing_key(kid, now)
        }
        fn delete_signing_key<'a>(&'a self, kid: &'a str) -> Answer<'a, bool> {
            self.inner.delete_signing_key(kid)
        }
        fn replace_signing_key<'a>(
            &'a self,
            replaces: Option<&'a str>,
            key: SigningKeyRecord,
            now: i64,
        ) -> Answer<'a, bool> {
            self.inner.replace_signing_key(replaces, key, now)
        }
        fn purge_expired(&self, now: i64) -> Answer<'_, u64> {
            self.inner.purge_expired(now)
        }
        fn shared_secret<'a>(&'a self, name: &'a str, candidate: [u8; 32]) -> Answer<'a, [u8; 32]> {
            self.inner.shared_secret(name, candidate)
        }
        fn put_session(
            &self,
            session: SessionRecord,
            max_per_subject: usize,
            max_live: usize,
            now: i64,
        ) -> Answer<'_, bool> {
            self.inner
                .put_session(session, max_per_subject, max_live, now)
        }
        fn get_session(
            &self,
            session_hash: [u8; 32],
            now: i64,
        ) -> Answer<'_, Option<SessionRecord>> {
            self.inner.get_session(session_hash, now)
        }
        fn delete_session(&self, session_hash: [u8; 32]) -> Answer<'_, bool> {
            self.inner.delete_session(session_hash)
        }
        fn use_once(&self, key: [u8; 32], expires_at: i64, now: i64) -> Answer<'_, bool> {
            self.inner.use_once(key, expires_at, now)
        }
    }
}

/// A token signed with a key of the test's own under a random `kid` of the shape the server
/// makes, claiming to be from `issuer` for `resource`.
fn forged_token(key: &jsonwebtoken::EncodingKey, issuer: &str, resource: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()));
    header.typ = Some("at+jwt".into());
    let now = crate::common::now();
    let claims = json!({
        "iss": issuer, "aud": resource, "sub": "mallory", "client_id": SERVICE_ID,
        "scope": "notes:read", "iat": now, "exp": now + 300, "jti": "forged",
    });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// A P-256 key of the test's own, which no replica ever published.
fn test_es256_key() -> jsonwebtoken::EncodingKey {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
    };
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_kids_cost_the_store_one_key_read_per_cooldown() {
    admin().await;
    let schema = Schema::fresh("keys_forged");
    let (la, lb) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let issuer = format!("http://{}", la.local_addr().unwrap());
    let resource = format!("{issuer}/mcp");
    let a = configure(&issuer, &resource)
        .store(Arc::new(replica_store(&schema).await))
        .build()
        .await
        .unwrap();
    let counted = Arc::new(CountingStore {
        inner: replica_store(&schema).await,
        key_reads: Default::default(),
    });
    let b = configure(&issuer, &resource)
        .store(counted.clone())
        .build()
        .await
        .unwrap();
    let (a, b) = (
        Arc::new(Replica::serve(a, &resource, la)),
        Arc::new(Replica::serve(b, &resource, lb)),
    );
    let key = test_es256_key();

    // Another issuer's tokens (on their way to another authenticator) never cost a read.
    let before = counted.key_reads();
    for _ in 0..5 {
        let token = forged_token(&key, "https://idp.example", &resource);
        assert_eq!(b.list(&token).await, 401);
    }
    assert_eq!(
        counted.key_reads(),
        before,
        "no read for another issuer's tokens"
    );

    // Waves of forged tokens naming this issuer, each with a new `kid`, sent at once.
    let wave = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (b, token) = (b.clone(), forged_token(&key, &issuer, &resource));
                tokio::spawn(async move { b.list(&token).await })
            })
            .collect();
        async move {
            for task in tasks {
                let status = task.await.unwrap();
                // 429 once the address's failures reach the lockout's limit.
                assert!(status == 401 || status == 429, "{status}");
            }
        }
    };
    let started = std::time::Instant::now();
    let before = counted.key_reads();
    for _ in 0..3 {
        wave(40).await;
    }
    let reads = counted.key_reads() - before;
    let elapsed = started.elapsed();
    let allowed = 1 + (elapsed.as_secs_f64() / KEY_READ_COOLDOWN.as_secs_f64()).ceil() as u64;
    eprintln!("120 forged kids in {elapsed:?}: {reads} reads of the keys (at most {allowed})");
    assert!(reads >= 1, "an unknown kid of this issuer is looked for");
    assert!(reads <= allowed, "{reads} reads in {elapsed:?}");

    // A rotation on A in the middle of a flood: B still accepts A's new token (on its first
    // request, after at most the cool-down), while the flood goes on being refused.
    let flood = tokio::spawn(wave(40));
    let new = a.oauth.rotate_signing_key().await.unwrap();
    let token = a.token().await;
    assert_eq!(kid_of(&token), new);
    let asked = std::time::Instant::now();
    assert_eq!(b.list(&token).await, 200, "A's new key, during the flood");
    let took = asked.elapsed();
    eprintln!("the new key's token accepted during the flood in {took:?}");
    assert!(
        took < KEY_READ_COOLDOWN * 2 + Duration::from_secs(2),
        "{took:?}"
    );
    flood.await.unwrap();
    let reads = counted.key_reads() - before;
    let allowed =
        1 + (started.elapsed().as_secs_f64() / KEY_READ_COOLDOWN.as_secs_f64()).ceil() as u64;
    assert!(reads <= allowed, "{reads} reads in {:?}", started.elapsed());

    for replica in [a, b] {
        Arc::into_inner(replica).unwrap().stop().await;
    }
}
