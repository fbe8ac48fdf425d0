//! Two authorization servers (replicas: one store, one issuer) sharing their lockouts through
//! Redis (`REDIS_URL`, default the local server): password guessing alternated between them
//! from several loopback addresses, and wrong client secrets at `/oauth/token`.

use std::time::Duration;

use http::header;
use mcp_gatekeeper::{Lockout, RedisLockout, RunningServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::common::{client_from, hidden};

const CALLBACK: &str = "http://127.0.0.1:4567/callback";

/// The shared Redis; fails (never skips) with how to start one when it does not answer.
async fn redis_url() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let address = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let ping = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await.ok()?;
        Some(&answer == b"+PONG\r\n")
    };
    assert!(
        matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Some(true))
        ),
        "these tests need Redis at {url} (set REDIS_URL to use another): start one with \
         `redis-server --port 6379 --save '' --appendonly no`"
    );
    url
}

fn fresh_prefix() -> String {
    format!("mcp-it-{:016x}:", rand::random::<u64>())
}

fn policy(max: u32) -> Lockout {
    Lockout::new(max, Duration::from_secs(60), Duration::from_secs(300))
}

/// Two replicas of one authorization server: one store, one issuer (A's origin), each with
/// `shared` as its lockout's Redis.
struct Replicas {
    a: OAuthHarness,
    /// B's origin (it serves A's issuer, as behind a load balancer).
    b_base: String,
    b: RunningServer,
}

impl Replicas {
    async fn start(max: u32, shared: impl Fn() -> RedisLockout) -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = start_oauth_with(store.clone(), None, |c| {
            c.lockout(policy(max)).shared_lockout(shared())
        })
        .await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b_base = format!("http://{}", listener.local_addr().unwrap());
        let b_oauth = configure(&a.base, &a.url)
            .store(store)
            .lockout(policy(max))
            .shared_lockout(shared())
            .build()
            .await
            .expect("replica B builds");
        let b = Gatekeeper::new(Notes)
            .oauth(&b_oauth, &a.url)
            .serve_on(listener)
            .unwrap();
        Self { a, b_base, b }
    }

    /// The origin of replica `n` (0: A, else B).
    fn base(&self, n: usize) -> &str {
        if n == 0 { &self.a.base } else { &self.b_base }
    }

    async fn stop(self) {
        self.b.shutdown().await.expect("clean shutdown");
        self.a.stop().await;
    }
}

/// A fresh login form from replica `base`: `(request, csrf)`.
async fn login_form(base: &str, browser: &reqwest::Client) -> (String, String) {
    let (_, challenge) = pkce();
    let url = format!(
        "{base}/oauth/authorize?response_type=code&client_id={APP_ID}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&scope=notes%3Aread",
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
    );
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    (hidden(&page, "request"), hidden(&page, "csrf"))
}

/// Posts a login to replica `base` with a form of any replica; the status and the cookies
/// set (`name=value`).
async fn log_in(
    base: &str,
    browser: &reqwest::Client,
    form: &(String, String),
    user: &str,
    password: &str,
    cookie: Option<&str>,
) -> (u16, Vec<String>) {
    let mut request = browser
        .post(format!("{base}/oauth/authorize/login"))
        .form(&[
            ("request", form.0.as_str()),
            ("csrf", form.1.as_str()),
            ("username", user),
            ("password", password),
        ]);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    (response.status().as_u16(), cookies)
}

#[tokio::test]
async fn a_password_lockout_holds_across_both_replicas() {
    let url = redis_url().await;
    let prefix = fresh_prefix();
    let r = Replicas::start(3, || RedisLockout::new(&url).prefix(&prefix)).await;
    let guesser = client_from("127.0.0.2");
    let form = login_form(r.base(0), &guesser).await;
    // Three wrong passwords alternating A, B, A: each replica saw at most two, yet the third
    // locks the pair.
    assert_eq!(
        log_in(r.base(0), &guesser, &form, USER, "wrong-1", None)
            .await
            .0,
        200
    );
    assert_eq!(
        log_in(r.base(1), &guesser, &form, USER, "wrong-2", None)
            .await
            .0,
        200
    );
    assert_eq!(
        log_in(r.base(0), &guesser, &form, USER, "wrong-3", None)
            .await
            .0,
        429
    );
    // Locked on B too, which saw one failure only — even with the right password.
    assert_eq!(
        log_in(r.base(1), &guesser, &form, USER, PASSWORD, None)
            .await
            .0,
        429
    );
    // Alice at her own address signs in through either replica; Olivia at the guesser's.
    for n in 0..2 {
        let alice = client_from("127.0.0.3");
        let form = login_form(r.base(n), &alice).await;
        assert_eq!(
            log_in(r.base(n), &alice, &form, USER, PASSWORD, None)
                .await
                .0,
            303
        );
    }
    let form = login_form(r.base(1), &guesser).await;
    assert_eq!(
        log_in(r.base(1), &guesser, &form, OWNER, OWNER_PASSWORD, None)
            .await
            .0,
        303
    );
    r.stop().await;
}

#[tokio::test]
async fn guessing_spread_over_replicas_and_addresses_slows_new_browsers_but_not_the_users_own() {
    let url = redis_url().await;
    let prefix = fresh_prefix();
    let r = Replicas::start(4, || RedisLockout::new(&url).prefix(&prefix)).await;
    // Alice signed in before through B, from her browser, which got a device cookie.
    let alice = client_from("127.0.0.5");
    let form = login_form(r.base(1), &alice).await;
    let (status, cookies) = log_in(r.base(1), &alice, &form, USER, PASSWORD, None).await;
    assert_eq!(status, 303);
    let device = cookies
        .iter()
        .find(|c| c.starts_with("mcp_gatekeeper_device="))
        .expect("a device cookie")
        .clone();
    // Two guessers, each through its own replica and under its own pair's limit: together
    // they put the account in slow mode, on both replicas.
    for (n, source) in ["127.0.0.2", "127.0.0.3"].into_iter().enumerate() {
        let guesser = client_from(source);
        let form = login_form(r.base(n), &guesser).await;
        for _ in 0..2 {
            let (status, _) = log_in(r.base(n), &guesser, &form, USER, "wrong", None).await;
            assert_eq!(status, 200, "from {source}");
        }
    }
    let stranger = client_from("127.0.0.4");
    for n in 0..2 {
        let form = login_form(r.base(n), &stranger).await;
        assert_eq!(
            log_in(r.base(n), &stranger, &form, USER, PASSWORD, None)
                .await
                .0,
            429,
            "replica {n}"
        );
    }
    // Alice's own browser is not slowed, through either replica, from another address too.
    for (n, source) in [(0, "127.0.0.5"), (1, "127.0.0.6"), (0, "127.0.0.6")] {
        let browser = client_from(source);
        let form = login_form(r.base(n), &browser).await;
        let (status, _) = log_in(r.base(n), &browser, &form, USER, PASSWORD, Some(&device)).await;
        assert_eq!(status, 303, "through replica {n} from {source}");
    }
    r.stop().await;
}

/// Posts a client-credentials request with `secret` for the service client to replica `base`.
async fn service_token(base: &str, client: &reqwest::Client, secret: &str) -> reqwest::Response {
    client
        .post(format!("{base}/oauth/token"))
        .basic_auth(SERVICE_ID, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_client_secrets_are_throttled_across_both_replicas() {
    let url = redis_url().await;
    let prefix = fresh_prefix();
    let r = Replicas::start(3, || RedisLockout::new(&url).prefix(&prefix)).await;
    let guesser = client_from("127.0.0.2");
    for n in 0..2 {
        let response = service_token(r.base(n), &guesser, "guessed-secret-0000000").await;
        assert_eq!(response.status(), 401, "replica {n}");
    }
    // The third failure, on A, throttles the address; B answers 429 at its first failure
    // after it.
    let response = service_token(r.base(0), &guesser, "guessed-secret-0000000").await;
    assert_eq!(response.status(), 429);
    let response = service_token(r.base(1), &guesser, "guessed-secret-0000000").await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 290 && retry <= 300, "{retry}");
    // The right secret is never refused, and other addresses are not throttled.
    for n in 0..2 {
        let response = service_token(r.base(n), &guesser, SERVICE_SECRET).await;
        assert_eq!(response.status(), 200, "replica {n}");
        let other = client_from("127.0.0.3");
        let response = service_token(r.base(n), &other, "guessed-secret-0000000").await;
        assert_eq!(response.status(), 401, "replica {n}");
    }
    r.stop().await;
}

#[tokio::test]
async fn an_unreachable_redis_leaves_each_replica_its_own_lockout() {
    // Nothing listens on port 1: every replica counts on its own.
    let r = Replicas::start(2, || {
        RedisLockout::new("redis://127.0.0.1:1").timeout(Duration::from_millis(200))
    })
    .await;
    let guesser = client_from("127.0.0.2");
    let form = login_form(r.base(0), &guesser).await;
    for expected in [200, 429] {
        let (status, _) = log_in(r.base(0), &guesser, &form, USER, "wrong", None).await;
        assert_eq!(status, expected);
    }
    // B has seen nothing: the guesser gets the limit again there (the price of the outage),
    // and nobody is refused because Redis is down.
    assert_eq!(
        log_in(r.base(1), &guesser, &form, USER, "wrong", None)
            .await
            .0,
        200
    );
    let alice = client_from("127.0.0.3");
    for n in 0..2 {
        let form = login_form(r.base(n), &alice).await;
        assert_eq!(
            log_in(r.base(n), &alice, &form, USER, PASSWORD, None)
                .await
                .0,
            303
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn an_unusable_redis_setting_fails_the_build() {
    let error = configure("http://127.0.0.1:1", "http://127.0.0.1:1/mcp")
        .shared_lockout(RedisLockout::new("not a url"))
        .build()
        .await
        .expect_err("a URL that does not parse");
    assert!(error.to_string().contains("Redis URL"), "{error}");
    let error = configure("http://127.0.0.1:1", "http://127.0.0.1:1/mcp")
        .shared_lockout(RedisLockout::new("redis://127.0.0.1:6379").timeout(Duration::ZERO))
        .build()
        .await
        .expect_err("a zero timeout");
    assert!(error.to_string().contains("timeout"), "{error}");
}
