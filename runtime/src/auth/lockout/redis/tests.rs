//! The shared failure throttle against a real Redis: `REDIS_URL`, default the local server.

use std::sync::Arc;

use super::*;
use crate::auth::FailureThrottle;

use ::redis::Client;

use crate::redis_link::{test_prefix as fresh_prefix, test_redis_url as redis_url};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Two replicas' throttles sharing one Redis and prefix.
fn replicas(url: &str, prefix: &str, policy: Lockout) -> [FailureThrottle; 2] {
    [(); 2].map(|()| {
        let shared = RedisLockout::new(url).prefix(prefix).build().unwrap();
        FailureThrottle::new(policy).shared(Some(Arc::new(shared)))
    })
}

/// Every key under `prefix`, with its value.
async fn keys(url: &str, prefix: &str) -> Vec<(String, String)> {
    let client = Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let names: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    let mut all = Vec::new();
    for name in names {
        let value: String = ::redis::cmd("GET")
            .arg(&name)
            .query_async(&mut connection)
            .await
            .unwrap();
        all.push((name, value));
    }
    all
}

#[tokio::test]
async fn a_throttle_started_on_one_replica_holds_on_the_other() {
    let url = redis_url().await;
    let prefix = fresh_prefix();
    let policy = Lockout::new(3, Duration::from_secs(60), Duration::from_secs(300));
    let [a, b] = replicas(&url, &prefix, policy);
    let guesser = ip("10.9.8.7");
    assert_eq!(a.record(guesser).await, None);
    assert_eq!(b.record(guesser).await, None);
    let wait = a
        .record(guesser)
        .await
        .expect("the third failure throttles");
    assert!(wait > Duration::from_secs(299), "{wait:?}");
    // Replica B has counted one failure itself, yet throttles the next.
    let wait = b.record(guesser).await.expect("throttled on B too");
    assert!(wait > Duration::from_secs(298), "{wait:?}");
    // Another address is not affected, on either replica.
    assert_eq!(a.record(ip("10.9.8.6")).await, None);
    assert_eq!(b.record(ip("10.9.8.6")).await, None);
    // No address in the keys or values: only hashes, a count or the lock marker.
    let stored = keys(&url, &prefix).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    for (name, value) in &stored {
        assert!(!name.contains("10.9.8"), "{name}");
        let hash = name.strip_prefix(&format!("{prefix}lo:")).unwrap();
        assert!(hash.len() == 32 && hash.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(value == "x" || value.parse::<u32>().is_ok(), "{value}");
    }
}

#[tokio::test]
async fn counts_and_blocks_expire() {
    let url = redis_url().await;
    let prefix = fresh_prefix();
    let policy = Lockout::new(2, Duration::from_millis(300), Duration::from_millis(400));
    let shared = RedisLockout::new(&url).prefix(&prefix).build().unwrap();
    let guesser = ip("2001:db8::1");
    // The window passes between two failures: the count starts afresh.
    assert_eq!(shared.record_failure(guesser, &policy).await, Ok(None));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(shared.record_failure(guesser, &policy).await, Ok(None));
    // Counted per /64, as locally.
    let blocked = shared
        .record_failure(ip("2001:db8::ffff:2"), &policy)
        .await
        .unwrap()
        .expect("the second failure in the window throttles");
    assert!(blocked <= Duration::from_millis(400));
    assert!(
        shared
            .record_failure(guesser, &policy)
            .await
            .unwrap()
            .is_some()
    );
    // The block ends with its duration, and leaves nothing behind.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(keys(&url, &prefix).await.is_empty());
    assert_eq!(shared.record_failure(guesser, &policy).await, Ok(None));
}

#[tokio::test]
async fn the_hash_key_changes_the_names() {
    let plain = RedisLockout::new("redis://127.0.0.1:1").build().unwrap();
    let keyed = RedisLockout::new("redis://127.0.0.1:1")
        .hash_key("a secret of the replicas")
        .build()
        .unwrap();
    let addr = ip("192.0.2.1");
    assert_ne!(plain.key(addr), keyed.key(addr));
    assert_eq!(plain.key(addr), plain.key(ip("::ffff:192.0.2.1")));
}

#[tokio::test]
async fn an_unreachable_redis_falls_back_to_the_local_count() {
    // Nothing listens on port 1: every exchange fails, fast.
    let shared = RedisLockout::new("redis://127.0.0.1:1")
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let policy = Lockout::new(2, Duration::from_secs(60), Duration::from_secs(300));
    let throttle = FailureThrottle::new(policy).shared(Some(Arc::new(shared)));
    let guesser = ip("10.1.1.1");
    assert_eq!(throttle.record(guesser).await, None);
    assert_eq!(
        throttle.record(guesser).await,
        Some(Duration::from_secs(300))
    );
    assert_eq!(throttle.record(ip("10.1.1.2")).await, None);
}

#[test]
fn settings_are_checked_when_built() {
    assert!(RedisLockout::new("not a url").build().is_err());
    // A CA file belongs to a `rediss://` URL.
    assert!(
        RedisLockout::new("redis://127.0.0.1:6379")
            .tls_ca_file("/etc/ssl/certs/ca-certificates.crt")
            .build()
            .is_err()
    );
    assert!(
        RedisLockout::new("redis://127.0.0.1:6379")
            .timeout(Duration::ZERO)
            .build()
            .is_err()
    );
}
