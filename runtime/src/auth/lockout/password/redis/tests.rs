//! The password guard shared through a real Redis (`REDIS_URL`, default the local server):
//! two replicas' guards on one prefix, expiry, outages, and the script against the tables on
//! random sequences.

use std::{
    process::{Child, Command, Stdio},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use ::redis::AsyncCommands as _;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

use super::*;
use crate::{
    RedisLockout,
    auth::lockout::password::{Attempt, Now, PasswordGuard},
    redis_link::{test_connection, test_prefix, test_redis_url},
};

fn policy(max: u32) -> Lockout {
    Lockout::new(max, Duration::from_secs(60), Duration::from_secs(300))
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

/// A guard counting in the Redis at `url` under `prefix`.
fn shared_guard(url: &str, prefix: &str, policy: Lockout) -> PasswordGuard {
    let (_, passwords) = RedisLockout::new(url)
        .prefix(prefix)
        .build_for_authorization_server()
        .unwrap();
    PasswordGuard::new(policy).shared(Some(Arc::new(passwords)))
}

/// Two replicas' guards sharing one Redis and prefix.
fn replicas(url: &str, prefix: &str, policy: Lockout) -> [PasswordGuard; 2] {
    [(); 2].map(|()| shared_guard(url, prefix, policy))
}

/// Begins an attempt and fails it; the lock it caused, if any.
async fn fail(guard: &PasswordGuard, account: &str, addr: Option<IpAddr>) -> Option<Duration> {
    guard
        .begin(account, addr, None)
        .await
        .expect("admitted")
        .failed()
        .await
}

/// Every key under `prefix` with its time to live (ms) and its fields or members.
async fn stored(url: &str, prefix: &str) -> Vec<(String, i64, Vec<String>)> {
    let mut connection = test_connection(url).await;
    let names: Vec<String> = connection.keys(format!("{prefix}*")).await.unwrap();
    let mut all = Vec::new();
    for name in names {
        let ttl: i64 = connection.pttl(&name).await.unwrap();
        let kind: String = ::redis::cmd("TYPE")
            .arg(&name)
            .query_async(&mut connection)
            .await
            .unwrap();
        let values: Vec<String> = if kind == "zset" {
            connection.zrange(&name, 0, -1).await.unwrap()
        } else {
            let fields: Vec<(String, String)> = connection.hgetall(&name).await.unwrap();
            fields
                .into_iter()
                .map(|(f, v)| format!("{f}={v}"))
                .collect()
        };
        all.push((name, ttl, values));
    }
    all
}

#[tokio::test]
async fn a_pair_locked_on_one_replica_is_locked_on_the_other() {
    let url = test_redis_url().await;
    let prefix = test_prefix();
    let [a, b] = replicas(&url, &prefix, policy(3));
    let guesser = ip("10.7.0.1");
    assert_eq!(fail(&a, "alice", guesser).await, None);
    assert_eq!(fail(&b, "alice", guesser).await, None);
    // The third failure, on A, locks the pair for both.
    assert_eq!(
        fail(&a, "Alice", guesser).await,
        Some(Duration::from_secs(300))
    );
    let wait = b.begin("alice", guesser, None).await.unwrap_err();
    assert!(wait > Duration::from_secs(299), "{wait:?}");
    assert!(a.begin("ALICE", guesser, None).await.is_err());
    // B counted one failure itself: alone it would not have refused.
    let local = PasswordGuard::new(policy(3));
    assert_eq!(fail(&local, "alice", guesser).await, None);
    // Alice from elsewhere, and Bob from the guesser's address, are not locked.
    a.begin("alice", ip("10.7.0.2"), None)
        .await
        .unwrap()
        .succeeded()
        .await;
    b.begin("bob", guesser, None)
        .await
        .unwrap()
        .succeeded()
        .await;
    // A device's pair is shared too.
    let device = Some([9; 16]);
    for replica in [&a, &b, &a] {
        let _ = replica
            .begin("carol", guesser, device)
            .await
            .unwrap()
            .failed()
            .await;
    }
    assert!(b.begin("carol", guesser, device).await.is_err());
    assert!(b.begin("carol", guesser, Some([8; 16])).await.is_ok());
}

#[tokio::test]
async fn parallel_attempts_through_both_replicas_never_exceed_the_limit() {
    let url = test_redis_url().await;
    let prefix = test_prefix();
    let [a, b] = replicas(&url, &prefix, policy(10));
    let addr = ip("10.7.1.1");
    let begins = (0..100u32).map(|n| {
        let guard = if n.is_multiple_of(2) { &a } else { &b };
        guard.begin("alice", addr, None)
    });
    let attempts = futures::future::join_all(begins).await;
    let admitted: Vec<Attempt<'_>> = attempts.into_iter().filter_map(Result::ok).collect();
    assert_eq!(admitted.len(), 10);
    let mut locked = None;
    for attempt in admitted {
        locked = locked.or(attempt.failed().await);
    }
    assert_eq!(locked, Some(Duration::from_secs(300)));
}

#[tokio::test]
async fn a_success_on_one_replica_gives_back_on_both() {
    let url = test_redis_url().await;
    let prefix = test_prefix();
    let [a, b] = replicas(&url, &prefix, policy(3));
    let user = ip("10.7.2.1");
    assert_eq!(fail(&a, "alice", user).await, None);
    assert_eq!(fail(&b, "alice", user).await, None);
    // Signing in on A forgives the pair everywhere.
    a.begin("alice", user, None)
        .await
        .unwrap()
        .succeeded()
        .await;
    // B has seen two failures of its own (which alone would lock at the next), but the
    // pair starts afresh: two more are allowed, the third locks.
    assert_eq!(fail(&b, "alice", user).await, None);
    assert_eq!(fail(&b, "alice", user).await, None);
    assert!(fail(&b, "alice", user).await.is_some());
    // An abandoned attempt is given back on both, too.
    let other = ip("10.7.2.2");
    for _ in 0..5 {
        a.begin("dave", other, None).await.unwrap().abandon().await;
        b.begin("dave", other, None).await.unwrap().abandon().await;
    }
    assert_eq!(fail(&a, "dave", other).await, None);
}

#[tokio::test]
async fn guessing_spread_over_replicas_slows_the_account_for_unknown_browsers_only() {
    let url = test_redis_url().await;
    let prefix = test_prefix();
    let [a, b] = replicas(&url, &prefix, policy(4));
    // Two guessers, each through its own replica, each under its own pair's limit.
    for _ in 0..2 {
        assert_eq!(fail(&a, "alice", ip("10.7.3.1")).await, None);
        assert_eq!(fail(&b, "alice", ip("10.7.3.2")).await, None);
    }
    // Slow mode on both replicas: one attempt per 300 s / 4.
    for replica in [&a, &b] {
        let wait = replica
            .begin("alice", ip("10.7.3.3"), None)
            .await
            .unwrap_err();
        assert!(
            wait <= Duration::from_secs(75) && wait > Duration::from_secs(70),
            "{wait:?}"
        );
    }
    // A browser that signed in to the account before is never slowed.
    for replica in [&a, &b, &a, &b] {
        replica
            .begin("alice", ip("10.7.3.3"), Some([7; 16]))
            .await
            .unwrap()
            .succeeded()
            .await;
    }
    // Spraying: four accounts from one address, through both replicas, slow the address.
    let sprayer = ip("10.7.3.9");
    for (replica, account) in [(&a, "p"), (&b, "q"), (&a, "r"), (&b, "s")] {
        assert_eq!(fail(replica, account, sprayer).await, None);
    }
    for replica in [&a, &b] {
        assert!(replica.begin("t", sprayer, None).await.is_err());
        assert!(replica.begin("t", sprayer, Some([1; 16])).await.is_ok());
        assert!(replica.begin("t", ip("10.7.3.10"), None).await.is_ok());
    }
}

#[tokio::test]
async fn keys_name_nothing_in_clear_and_expire_with_their_window_or_lock() {
    let url = test_redis_url().await;
    let prefix = test_prefix();
    let short = Lockout::new(2, Duration::from_millis(300), Duration::from_millis(600));
    let [a, b] = replicas(&url, &prefix, short);
    let guesser = ip("10.7.4.1");
    assert_eq!(fail(&a, "alice", guesser).await, None);
    assert_eq!(
        fail(&b, "alice", guesser).await,
        Some(Duration::from_millis(600))
    );
    let keys = stored(&url, &prefix).await;
    // A pair, the account's and the address's spreads, and their three indexes.
    assert_eq!(keys.len(), 6, "{keys:#?}");
    let grace = IN_FLIGHT_GRACE.as_millis() as i64;
    for (name, ttl, values) in &keys {
        let rest = name.strip_prefix(&prefix).unwrap();
        let (kind, hash) = rest.split_once(':').unwrap();
        assert!(["pw", "pwa", "pwi", "pwx"].contains(&kind), "{name}");
        assert!(hash.len() == 32 && hash.bytes().all(|c| c.is_ascii_hexdigit()));
        // Expiring with the lock (the longest here) plus the grace for attempts in flight.
        assert!(*ttl > 0 && *ttl <= 600 + grace, "{name}: {ttl}");
        for value in values {
            assert!(
                !value.contains("alice") && !value.contains("10.7"),
                "{name}: {value}"
            );
        }
    }
    // The lock ends with its duration (the keys stay a grace longer, harmlessly).
    assert!(a.begin("alice", guesser, None).await.is_err());
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.begin("alice", guesser, None)
        .await
        .expect("the lock is over")
        .succeeded()
        .await;
    // A success removes its pair's key at once.
    let kinds: Vec<String> = stored(&url, &prefix)
        .await
        .into_iter()
        .filter_map(|(name, _, _)| {
            let rest = name.strip_prefix(&prefix)?;
            Some(rest.split_once(':')?.0.to_owned())
        })
        .collect();
    assert!(!kinds.contains(&"pw".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn each_kind_of_key_is_bounded() {
    let url = test_redis_url().await;
    let prefix = test_prefix();
    let mut settings = crate::redis_link::RedisSettings::new(&url);
    settings.prefix = prefix.clone();
    let link = Arc::new(settings.build("test").unwrap());
    let shared = Arc::new(SharedPasswords::with_cap(link, 2));
    let guard = PasswordGuard::new(policy(2)).shared(Some(shared));
    let device = Some([5; 16]);
    // Two pairs fill the table of pairs: a third is not tracked, so never locked, as in a
    // full local table.
    for account in ["a", "b"] {
        for _ in 0..2 {
            let _ = guard
                .begin(account, ip("10.7.5.1"), device)
                .await
                .unwrap()
                .failed()
                .await;
        }
        assert!(guard.begin(account, ip("10.7.5.1"), device).await.is_err());
    }
    // (The local tables, mirroring, would lock it: only Redis decides while it answers.)
    for _ in 0..5 {
        let attempt = guard.begin("c", ip("10.7.5.1"), device).await;
        assert!(attempt.is_ok(), "untracked");
        assert_eq!(attempt.unwrap().failed().await, None);
    }
    let pairs = stored(&url, &prefix)
        .await
        .into_iter()
        .filter(|(name, _, _)| name.starts_with(&format!("{prefix}pw:")))
        .count();
    assert_eq!(pairs, 2);
}

#[tokio::test]
async fn an_attempt_dropped_unresolved_fails_on_every_replica() {
    let url = test_redis_url().await;
    let prefix = test_prefix();
    let [a, b] = replicas(&url, &prefix, policy(1));
    let guesser = ip("10.7.6.1");
    // The request was abandoned while its password was being checked.
    drop(a.begin("alice", guesser, None).await.unwrap());
    // The failure (which locks the pair, at a limit of one) is sent on a task of its own.
    let started = Instant::now();
    loop {
        match b.begin("alice", guesser, None).await {
            Err(wait) if wait > Duration::from_secs(200) => break,
            Err(_) => {}
            Ok(attempt) => panic!("admitted: {attempt:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never locked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_unreachable_redis_leaves_the_decision_to_the_local_tables() {
    // Nothing listens on port 1: every exchange fails, fast.
    let (_, passwords) = RedisLockout::new("redis://127.0.0.1:1")
        .timeout(Duration::from_millis(200))
        .build_for_authorization_server()
        .unwrap();
    let guard = PasswordGuard::new(policy(2)).shared(Some(Arc::new(passwords)));
    let guesser = ip("10.7.7.1");
    assert_eq!(fail(&guard, "alice", guesser).await, None);
    assert_eq!(
        fail(&guard, "alice", guesser).await,
        Some(Duration::from_secs(300))
    );
    assert!(guard.begin("alice", guesser, None).await.is_err());
    // Nobody else is locked out by the outage.
    guard
        .begin("alice", ip("10.7.7.2"), None)
        .await
        .unwrap()
        .succeeded()
        .await;
}

/// A Redis of the test's own, to stop mid-test (the shared one is never disturbed).
struct OwnRedis {
    url: String,
    process: Child,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (install Redis to run this test)");
        let url = format!("redis://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let client = ::redis::Client::open(url.as_str()).unwrap();
            if let Ok(Ok(mut connection)) = tokio::time::timeout(
                Duration::from_millis(500),
                client.get_multiplexed_async_connection(),
            )
            .await
                && ::redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server does not answer"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { url, process }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn the_local_tables_are_current_when_redis_goes_away() {
    let redis = OwnRedis::start().await;
    let shared = {
        let (_, passwords) = RedisLockout::new(&redis.url)
            .timeout(Duration::from_millis(300))
            .build_for_authorization_server()
            .unwrap();
        Arc::new(passwords)
    };
    let guard = PasswordGuard::new(policy(3)).shared(Some(shared));
    let guesser = ip("10.7.8.1");
    // Two failures while Redis answers: counted there and here.
    assert_eq!(fail(&guard, "alice", guesser).await, None);
    assert_eq!(fail(&guard, "alice", guesser).await, None);
    drop(redis);
    // The third, with Redis gone, locks the pair from this replica's own count.
    assert_eq!(
        fail(&guard, "alice", guesser).await,
        Some(Duration::from_secs(300))
    );
    assert!(guard.begin("alice", guesser, None).await.is_err());
    // An attempt begun while Redis answered and resolved after it went away is resolved here.
    let redis = OwnRedis::start().await;
    let (_, passwords) = RedisLockout::new(&redis.url)
        .timeout(Duration::from_millis(300))
        .build_for_authorization_server()
        .unwrap();
    let guard = PasswordGuard::new(policy(3)).shared(Some(Arc::new(passwords)));
    let attempts = [
        guard.begin("bob", guesser, None).await.unwrap(),
        guard.begin("bob", guesser, None).await.unwrap(),
        guard.begin("bob", guesser, None).await.unwrap(),
    ];
    drop(redis);
    let mut locked = None;
    for attempt in attempts {
        locked = locked.or(attempt.failed().await);
    }
    assert_eq!(locked, Some(Duration::from_secs(300)));
}

/// One step of a random sequence.
#[derive(Debug)]
enum Op {
    Begin {
        account: &'static str,
        addr: Option<IpAddr>,
        device: Option<[u8; 16]>,
    },
    Resolve {
        index: usize,
        resolution: Resolution,
    },
    Wait(u64),
}

fn random_op(rng: &mut StdRng, in_flight: usize) -> Op {
    const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
    const ADDRESSES: [&str; 4] = ["10.8.0.1", "10.8.0.2", "2001:db8::1", "2001:db8::2"];
    match rng.random_range(0..100) {
        0..50 => Op::Begin {
            account: ACCOUNTS[rng.random_range(0..ACCOUNTS.len())],
            addr: match rng.random_range(0..20) {
                0 => None,
                n => ip(ADDRESSES[n % ADDRESSES.len()]),
            },
            device: match rng.random_range(0..10) {
                0 | 1 => Some([1; 16]),
                2 => Some([2; 16]),
                _ => None,
            },
        },
        50..90 if in_flight > 0 => Op::Resolve {
            index: rng.random_range(0..in_flight),
            resolution: match rng.random_range(0..10) {
                0..6 => Resolution::Failed,
                6..8 => Resolution::Succeeded,
                _ => Resolution::Abandoned,
            },
        },
        90..95 => Op::Wait(rng.random_range(0..12_000)),
        _ => Op::Wait(rng.random_range(0..700)),
    }
}

/// Whether the local tables refuse an attempt at `account` because of its pair (rather than
/// its account's or address's slow mode).
fn pair_refuses(
    guard: &PasswordGuard,
    account: &str,
    addr: Option<IpAddr>,
    device: Option<[u8; 16]>,
    now: Now,
) -> bool {
    let source = match device {
        Some(id) => Source::Device(id),
        None => Source::Address(crate::auth::lockout::address_key(
            addr.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
        )),
    };
    let tables = crate::auth::lockout::lock(&guard.tables);
    tables
        .pairs
        .entries
        .get(&(account.into(), source))
        .is_some_and(|pair| {
            pair.locked(now.instant).is_some() || pair.failures >= guard.policy.max_failures
        })
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= Duration::from_millis(1)
}

/// The script against the tables: the same random sequence of attempts, resolutions and
/// waits (on a clock the test moves) gives the same verdicts, locks and waits (to the
/// millisecond the script counts in).
#[tokio::test]
async fn the_script_decides_as_the_local_tables_do() {
    let url = test_redis_url().await;
    // 20 s / 3: a slow-mode interval that is not a whole number of milliseconds.
    let policy = Lockout::new(3, Duration::from_secs(5), Duration::from_secs(20));
    for seed in 0..6u64 {
        let prefix = test_prefix();
        let local = PasswordGuard::new(policy);
        let shared = shared_guard(&url, &prefix, policy);
        let mut rng = StdRng::seed_from_u64(seed);
        let start = Instant::now();
        let start_ms = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let mut elapsed = 0u64;
        let now = |elapsed: u64| Now {
            instant: start + Duration::from_millis(elapsed),
            unix_ms: start_ms + elapsed,
        };
        let mut in_flight: Vec<(Attempt<'_>, Attempt<'_>)> = Vec::new();
        let (mut refused, mut locks, mut slowed) = (0, 0, 0);
        for step in 0..2000 {
            let op = random_op(&mut rng, in_flight.len());
            let context = format!("seed {seed}, step {step}, t = {elapsed} ms: {op:?}");
            match op {
                Op::Begin {
                    account,
                    addr,
                    device,
                } => {
                    let expected = local.begin_at(account, addr, device, now(elapsed)).await;
                    let actual = shared.begin_at(account, addr, device, now(elapsed)).await;
                    match (expected, actual) {
                        (Ok(expected), Ok(actual)) => in_flight.push((expected, actual)),
                        (Err(expected), Err(actual)) => {
                            assert!(
                                close(expected, actual),
                                "{context}: {expected:?} {actual:?}"
                            );
                            refused += 1;
                            if !pair_refuses(&local, account, addr, device, now(elapsed)) {
                                slowed += 1;
                            }
                        }
                        (expected, actual) => panic!(
                            "{context}: {:?} but {:?}",
                            expected.map(drop),
                            actual.map(drop)
                        ),
                    }
                }
                Op::Resolve { index, resolution } => {
                    let (mut expected, mut actual) = in_flight.swap_remove(index);
                    let expected = expected.resolve(resolution, now(elapsed)).await;
                    let actual = actual.resolve(resolution, now(elapsed)).await;
                    match (expected, actual) {
                        (None, None) => {}
                        (Some(expected), Some(actual)) if close(expected, actual) => locks += 1,
                        (expected, actual) => panic!("{context}: {expected:?} but {actual:?}"),
                    }
                }
                Op::Wait(ms) => elapsed += ms,
            }
        }
        // The sequences reached every part of the policy.
        assert!(
            refused > 50 && locks > 5 && slowed > 0,
            "seed {seed}: {refused} refused, {locks} locks, {slowed} slowed"
        );
        for (mut expected, mut actual) in in_flight {
            expected.resolve(Resolution::Abandoned, now(elapsed)).await;
            actual.resolve(Resolution::Abandoned, now(elapsed)).await;
        }
    }
}

#[tokio::test]
async fn the_authorization_servers_client_throttle_keeps_apart_from_the_servers() {
    // One prefix for both, as the examples do: the two throttles are apart locally, and in
    // Redis too.
    let server = RedisLockout::new("redis://127.0.0.1:1").build().unwrap();
    let (oauth, _) = RedisLockout::new("redis://127.0.0.1:1")
        .build_for_authorization_server()
        .unwrap();
    let addr = "192.0.2.1".parse().unwrap();
    assert_ne!(server.key(addr), oauth.key(addr));
    assert!(server.key(addr).starts_with("mcp:lo:"));
    assert!(oauth.key(addr).starts_with("mcp:loc:"));
}
