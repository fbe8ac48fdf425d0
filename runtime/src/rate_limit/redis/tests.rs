//! The GCRA script against a real Redis: `REDIS_URL`, default the local server.

use std::{sync::Arc, time::Duration};

use super::*;
use crate::AuthMethod;

use crate::redis_link::{
    test_connection, test_prefix as fresh_prefix, test_redis_url as redis_url,
};

fn caller(name: &str) -> Principal {
    Principal::builder(AuthMethod::ApiKey, name).build()
}

fn limiter(calls: u32, per: Duration) -> ToolLimiter {
    ToolLimiter::new(Rate { calls, per }).unwrap()
}

async fn limits(url: &str) -> SharedLimits {
    RedisRateLimiter::new(url)
        .prefix(fresh_prefix())
        .build()
        .unwrap()
}

#[tokio::test]
async fn exactly_the_rate_passes_under_concurrency() {
    let url = redis_url().await;
    let shared = Arc::new(limits(&url).await);
    let local = Arc::new(limiter(10, Duration::from_secs(60)));
    let bot = Arc::new(caller("bot"));
    let calls = (0..100).map(|_| {
        let (shared, local, bot) = (shared.clone(), local.clone(), bot.clone());
        tokio::spawn(async move { shared.check("t", &bot, &local).await })
    });
    let verdicts = futures::future::join_all(calls).await;
    let passed = verdicts
        .iter()
        .filter(|v| matches!(v.as_ref().unwrap(), Verdict::Passed))
        .count();
    assert_eq!(passed, 10);
    for verdict in verdicts {
        match verdict.unwrap() {
            Verdict::Passed => {}
            // Each call reads the clock before it reaches Redis, so one that waited in the
            // queue is told a little more than the 6 s of a call checked at once.
            Verdict::Limited(wait) => assert!(
                wait > Duration::from_secs(4) && wait <= Duration::from_millis(6500),
                "{wait:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
    // Another caller and another tool have budgets of their own.
    assert_eq!(
        shared.check("t", &caller("other"), &local).await,
        Verdict::Passed
    );
    assert_eq!(shared.check("u", &bot, &local).await, Verdict::Passed);
}

#[tokio::test]
async fn the_burst_refills_at_the_rate_and_the_wait_is_right() {
    let url = redis_url().await;
    let shared = limits(&url).await;
    let local = limiter(4, Duration::from_millis(800));
    let alice = caller("alice");
    for _ in 0..4 {
        assert_eq!(shared.check("t", &alice, &local).await, Verdict::Passed);
    }
    let Verdict::Limited(wait) = shared.check("t", &alice, &local).await else {
        panic!("the burst of 4 is spent");
    };
    assert!(
        wait <= Duration::from_millis(200) && wait > Duration::from_millis(100),
        "{wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(5)).await;
    assert_eq!(
        shared.check("t", &alice, &local).await,
        Verdict::Passed,
        "one call refilled"
    );
    assert!(matches!(
        shared.check("t", &alice, &local).await,
        Verdict::Limited(_)
    ));
}

#[tokio::test]
async fn keys_expire_when_the_budget_is_full_and_name_nobody() {
    let url = redis_url().await;
    let prefix = fresh_prefix();
    let shared = RedisRateLimiter::new(&url)
        .prefix(prefix.clone())
        .build()
        .unwrap();
    let local = limiter(2, Duration::from_millis(300));
    let alice = caller("alice@example.com");
    assert_eq!(shared.check("t", &alice, &local).await, Verdict::Passed);
    let mut connection = test_connection(&url).await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys, [shared.key("t", alice.caller_key())]);
    assert!(!keys[0].contains("alice"), "{keys:?}");
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 151,
        "expires when the budget is full: {ttl} ms"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let exists: bool = ::redis::cmd("EXISTS")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let url = redis_url().await;
    let shared = limits(&url).await;
    let local = limiter(3, Duration::from_secs(60));
    let bot = caller("bot");
    assert_eq!(shared.check("t", &bot, &local).await, Verdict::Passed);
    let mut connection = test_connection(&url).await;
    ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec_async(&mut connection)
        .await
        .unwrap();
    // EVALSHA answers NOSCRIPT; the client loads the script and runs it again, once.
    assert_eq!(shared.check("t", &bot, &local).await, Verdict::Passed);
    assert_eq!(shared.check("t", &bot, &local).await, Verdict::Passed);
    assert!(matches!(
        shared.check("t", &bot, &local).await,
        Verdict::Limited(_)
    ));
}

#[test]
fn hash_keys_change_the_names_and_settings_are_checked() {
    let plain = RedisRateLimiter::new("redis://127.0.0.1:1")
        .build()
        .unwrap();
    let keyed = RedisRateLimiter::new("redis://127.0.0.1:1")
        .hash_key("a shared secret")
        .build()
        .unwrap();
    assert_eq!(plain.key("t", "api_key:a"), plain.key("t", "api_key:a"));
    assert_ne!(plain.key("t", "api_key:a"), keyed.key("t", "api_key:a"));
    assert_ne!(plain.key("t", "api_key:a"), plain.key("u", "api_key:a"));
    assert!(plain.key("t", "api_key:a").starts_with("mcp:rl:"));
    assert!(RedisRateLimiter::new("not a url").build().is_err());
    // A CA file belongs to a `rediss://` URL.
    assert!(
        RedisRateLimiter::new("redis://127.0.0.1:6379")
            .tls_ca_file("/etc/ssl/certs/ca-certificates.crt")
            .build()
            .is_err()
    );
    assert!(
        RedisRateLimiter::new("redis://127.0.0.1")
            .timeout(Duration::ZERO)
            .build()
            .is_err()
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn an_unreachable_redis_follows_the_policy() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let local = limiter(2, Duration::from_secs(60));
    let bot = caller("bot");
    let closed = RedisRateLimiter::new(&url).build().unwrap();
    assert_eq!(closed.check("t", &bot, &local).await, Verdict::Unavailable);
    assert!(crate::http::ReadinessCheck::ready(&closed).await.is_err());

    let fallback = RedisRateLimiter::new(&url)
        .on_unavailable(FailurePolicy::FallBackToLocal)
        .build()
        .unwrap();
    assert_eq!(
        fallback.check("t", &bot, &local).await,
        Verdict::PassedLocally
    );
    assert_eq!(
        fallback.check("t", &bot, &local).await,
        Verdict::PassedLocally
    );
    assert!(matches!(
        fallback.check("t", &bot, &local).await,
        Verdict::Limited(_)
    ));
    assert!(crate::http::ReadinessCheck::ready(&fallback).await.is_ok());
}
