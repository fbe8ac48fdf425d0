//! The store contract on PostgreSQL, races between two pools (two replicas), migrations run by
//! replicas starting together, and recovery from lost connections.
//!
//! Every test needs a PostgreSQL server: `DATABASE_URL`, or the local one. Each store gets a
//! schema of its own, dropped when the test ends.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use super::*;
use crate::store::conformance::{self, fixtures};

/// Where the tests' server is: `DATABASE_URL`, else the local server's `test` database.
pub(crate) fn database_url() -> String {
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

/// A schema name no other test (of this or a concurrent run) uses.
fn fresh_schema_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "gk_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// Connects a store to `schema`, failing the test with how to start the server when it
/// cannot be reached.
async fn connect(schema: &str) -> PostgresStore {
    let url = database_url();
    match PostgresStore::connect_with(&url, PostgresOptions::new().schema(schema)).await {
        Ok(store) => store,
        Err(e @ StoreError::Unavailable { .. }) => panic!(
            "PostgreSQL not reachable at {}: {e}: start it (e.g. `service postgresql start`) \
             or set DATABASE_URL",
            without_password(&url)
        ),
        Err(e) => panic!(
            "cannot set up the PostgreSQL store at {}: {e}",
            without_password(&url)
        ),
    }
}

/// Drops the test's schema when the test ends (best effort: a server that went away keeps it).
pub(crate) struct DropSchema(String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Its own thread and runtime: this may run inside a test's runtime, which cannot
        // block on a future.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&database_url(), NoTls).await.ok()?;
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

/// A store on a fresh schema, and the guard that drops the schema.
async fn fresh() -> (PostgresStore, DropSchema) {
    let schema = fresh_schema_name();
    let store = connect(&schema).await;
    (store, DropSchema(schema))
}

/// For `store_conformance_tests!`, whose factory is synchronous: every conformance test runs
/// on a multi-threaded runtime, where a worker may block on the connection.
fn store() -> (Arc<dyn Store>, DropSchema) {
    let (store, guard) =
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fresh()));
    (Arc::new(store), guard)
}

use crate::store::conformance::{conformance_tests_by_arc, conformance_tests_by_ref};
conformance::store_conformance_tests!(store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_reconnect() {
    let (store, _guard) = fresh().await;
    let now = 1_000;
    fixtures::put_all(&store, now).await;
    let schema = store.schema().to_owned();
    drop(store);
    let store = connect(&schema).await;
    fixtures::check_all(&store, now).await;
}

/// Two pools on one schema, as two replicas have: of 50 redemptions of one code and 50
/// rotations of one token, spread over both, exactly one of each wins; the code's replays and
/// the token's reuse revoke both families, as either replica sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_race_safely() {
    const RACERS: usize = 50;
    let (first, guard) = fresh().await;
    let second = connect(&guard.0).await;
    let stores: [Arc<dyn Store>; 2] = [Arc::new(first), Arc::new(second)];
    stores[0].put_client(fixtures::client("c1")).await.unwrap();
    stores[0]
        .put_code(fixtures::code("code", "c1", "fam-code", 600))
        .await
        .unwrap();
    let r1 = fixtures::refresh("r1", "c1", "fam", 10_000);
    stores[1].put_refresh(r1.clone()).await.unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let barrier = Arc::clone(&barrier);
            let next = r1.successor(fixtures::h(&format!("next-{i}")), 20_000);
            tokio::spawn(async move {
                barrier.wait().await;
                let (code, rotation) = tokio::join!(
                    store.redeem_code(fixtures::h("code"), 100),
                    store.rotate_refresh(fixtures::h("r1"), next, 100, conformance::NO_GRACE),
                );
                (code.unwrap(), rotation.unwrap())
            })
        })
        .collect();
    let (mut redeemed, mut replayed, mut rotated, mut reused) = (0, 0, 0, 0);
    for task in tasks {
        let (code, rotation) = task.await.unwrap();
        match code {
            CodeRedemption::Redeemed(_) => redeemed += 1,
            CodeRedemption::Replayed { family_id } => {
                assert_eq!(family_id, "fam-code");
                replayed += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
        match rotation {
            Rotation::Rotated(_) => rotated += 1,
            // Reuse revokes the family; who comes after that reads it revoked.
            Rotation::Reused { .. } | Rotation::Revoked => reused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((redeemed, replayed), (1, RACERS - 1));
    assert_eq!((rotated, reused), (1, RACERS - 1));
    for store in &stores {
        assert!(store.is_family_revoked("fam").await.unwrap());
        assert!(store.is_family_revoked("fam-code").await.unwrap());
    }
}

/// What the authorization pages share, raced from two pools (two replicas starting and
/// signing users in at once): one secret for all, one winner per decision, and the bounds on
/// sessions kept across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_share_the_pages_state() {
    const RACERS: usize = 40;
    const PER_SUBJECT: usize = 4;
    const IN_ALL: usize = 10;
    let (first, guard) = fresh().await;
    let second = connect(&guard.0).await;
    let stores: [Arc<dyn Store>; 2] = [Arc::new(first), Arc::new(second)];
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let subject = if i % 3 == 0 {
                    "alice".to_owned()
                } else {
                    format!("user-{i}")
                };
                let session = fixtures::session(&format!("s{i}"), &subject, 1_000 + i as i64);
                let (secret, used, started) = tokio::join!(
                    store.shared_secret("pages", [i as u8; 32]),
                    store.use_once(fixtures::h("decision"), 700, 100),
                    store.put_session(session, PER_SUBJECT, IN_ALL, 1_000),
                );
                (secret.unwrap(), used.unwrap(), started.unwrap())
            })
        })
        .collect();
    let (mut secrets, mut first_uses) = (Vec::new(), 0);
    for task in tasks {
        let (secret, used, _) = task.await.unwrap();
        secrets.push(secret);
        first_uses += usize::from(used);
    }
    assert!(secrets.iter().all(|s| *s == secrets[0]));
    assert_eq!(first_uses, 1);
    let (mut live, mut alices) = (0, 0);
    for i in 0..RACERS {
        let found = stores[(i + 1) % 2]
            .get_session(fixtures::h(&format!("s{i}")), 1_000)
            .await
            .unwrap();
        if let Some(session) = found {
            live += 1;
            alices += usize::from(session.subject == "alice");
        }
    }
    assert_eq!(live, IN_ALL, "filled to the bound, never past it");
    assert!(alices <= PER_SUBJECT, "{alices}");
}

/// Signing keys installed from two pools at once (replicas starting together on an empty
/// schema, then rotating together): one key each time, as both see.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_agree_on_one_signing_key() {
    const RACERS: usize = 40;
    let (first, guard) = fresh().await;
    let second = connect(&guard.0).await;
    let stores: [Arc<dyn Store>; 2] = [Arc::new(first), Arc::new(second)];
    let race = |replaces: Option<String>, round: i64| {
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let store = Arc::clone(&stores[i % 2]);
                let (barrier, replaces) = (Arc::clone(&barrier), replaces.clone());
                tokio::spawn(async move {
                    let kid = format!("r{round}-{i}");
                    barrier.wait().await;
                    let won = store
                        .replace_signing_key(replaces.as_deref(), fixtures::key(&kid, round), round)
                        .await
                        .unwrap();
                    won.then_some(kid)
                })
            })
            .collect::<Vec<_>>();
        async move {
            let mut winners = Vec::new();
            for task in tasks {
                winners.extend(task.await.unwrap());
            }
            winners
        }
    };
    let first = race(None, 100).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let second = race(Some(first[0].clone()), 200).await;
    assert_eq!(second.len(), 1, "{second:?}");
    for store in &stores {
        let keys = store.signing_keys().await.unwrap();
        let state: Vec<_> = keys
            .iter()
            .map(|k| (k.kid.as_str(), k.retired_at))
            .collect();
        assert_eq!(
            state,
            [(second[0].as_str(), None), (first[0].as_str(), Some(200))]
        );
    }
}

/// Retries within the grace period raced from two pools: one rotation, the rest retries, and
/// the family keeps exactly one current token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_race_retries_safely() {
    const RACERS: usize = 20;
    let (first, guard) = fresh().await;
    let second = Arc::new(connect(&guard.0).await);
    let stores: [Arc<dyn Store>; 2] = [Arc::new(first), second.clone()];
    stores[0].put_client(fixtures::client("c1")).await.unwrap();
    let r1 = fixtures::refresh("r1", "c1", "fam", 10_000);
    stores[0].put_refresh(r1.clone()).await.unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let next = r1.successor(fixtures::h(&format!("next-{i}")), 20_000);
            tokio::spawn(async move {
                store
                    .rotate_refresh(fixtures::h("r1"), next, 100, 60)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let (mut rotated, mut retried) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Rotation::Rotated(_) => rotated += 1,
            Rotation::Retried(_) => retried += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((rotated, retried), (1, RACERS - 1));
    let client = second.client().await.unwrap();
    let current: i64 = client
        .query_one(
            "SELECT count(*) FROM refresh_tokens WHERE family_id = 'fam' AND rotated_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, 1);
}

/// Replicas starting together on an empty schema: each migration runs once, all of them
/// connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let schema = fresh_schema_name();
    let _guard = DropSchema(schema.clone());
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(async move { connect(&schema).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap());
    }
    let client = stores[0].client().await.unwrap();
    let versions: Vec<i32> = client
        .query(&format!("SELECT version FROM {MIGRATIONS_TABLE}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=MIGRATIONS.len() as i32).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let (store, guard) = fresh().await;
    store
        .client()
        .await
        .unwrap()
        .execute(
            &format!("INSERT INTO {MIGRATIONS_TABLE} (version) VALUES (99)"),
            &[],
        )
        .await
        .unwrap();
    match PostgresStore::connect_with(&database_url(), PostgresOptions::new().schema(&guard.0))
        .await
    {
        Err(StoreError::SchemaTooNew { found: 99, known }) => {
            assert_eq!(known, MIGRATIONS.len() as i64);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn schema_names_that_need_quoting_are_refused() {
    for bad in ["", "Public", "a-b", "a;drop", "1abc", &"x".repeat(64)] {
        let result =
            PostgresStore::connect_with(&database_url(), PostgresOptions::new().schema(bad)).await;
        assert!(
            matches!(result, Err(StoreError::Invalid(_))),
            "{bad}: {result:?}"
        );
    }
}

/// The server ends every connection of the store (a restart, a failover): the next operations
/// succeed on new connections, without a new store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_are_replaced() {
    // Its own application name, so the test ends its own connections and no other test's.
    let schema = fresh_schema_name();
    let guard = DropSchema(schema.clone());
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = PostgresStore::connect_with(
        &format!("{url}{separator}application_name={schema}"),
        PostgresOptions::new().schema(&schema),
    )
    .await
    .unwrap();
    store.put_client(fixtures::client("c1")).await.unwrap();
    // Several connections in the pool, all idle.
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| store.client())).await;
    drop(held);
    terminate_backends(&guard.0).await;
    for i in 0..10 {
        assert!(
            store.get_client("c1").await.unwrap().is_some(),
            "attempt {i}"
        );
    }
    store
        .put_code(fixtures::code("code", "c1", "fam", 600))
        .await
        .unwrap();
    assert!(matches!(
        store.redeem_code(fixtures::h("code"), 100).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
}

/// Ends, from another session, every connection whose application name is `name`.
async fn terminate_backends(name: &str) {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let ended = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND application_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert!(!ended.is_empty(), "no connection named {name} to end");
}

/// A database that cannot be reached is `Unavailable`, within the connect timeout, and says
/// where the failure is without the password.
#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    // A port nothing listens on (the discard port, closed on test machines).
    let started = std::time::Instant::now();
    let result = PostgresStore::connect_with(
        "postgres://user:hunter2@127.0.0.1:9/db",
        PostgresOptions::new().connect_timeout(std::time::Duration::from_secs(2)),
    )
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// Errors from the database never quote the row (its `DETAIL` holds hashes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_errors_do_not_quote_rows() {
    let (store, _guard) = fresh().await;
    store.put_client(fixtures::client("c1")).await.unwrap();
    let client = store.client().await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE clients ADD CONSTRAINT named_short CHECK (length(name) < 3) NOT VALID",
        )
        .await
        .unwrap();
    let error = store.put_client(fixtures::client("c2")).await.unwrap_err();
    let printed = format!("{error} {error:?}");
    assert!(printed.contains("named_short"), "{printed}");
    assert!(!printed.contains("Test client"), "{printed}");
    assert!(!printed.to_lowercase().contains("\\x"), "{printed}");
}

/// PostgreSQL text cannot hold NUL: lookups of such keys answer "none" (after reaching the
/// database, which the readiness probe relies on), writes are refused as invalid, and
/// revocation checks fail rather than answer "not revoked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_nul_are_never_found_nor_stored() {
    let (store, _guard) = fresh().await;
    assert_eq!(store.get_client("\u{0}probe").await.unwrap(), None);
    assert_eq!(store.get_user("al\u{0}ice").await.unwrap(), None);
    assert!(!store.delete_client("\u{0}").await.unwrap());
    assert!(!store.delete_user("\u{0}").await.unwrap());
    assert!(matches!(
        store.put_client(fixtures::client("c\u{0}1")).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store.is_access_token_revoked("j\u{0}ti").await.is_err());
}

// ---------------------------------------------------------------------------------------------
// TLS: the local server's own certificate (Debian's `ssl-cert-snakeoil`, `CN=localhost`,
// which its PostgreSQL serves by default), trusted by file; every other way must fail.

/// The certificate the local server presents, as a CA file.
const SERVER_CERTIFICATE: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The test server's URL with `host` instead of its host, and `extra` parameters.
fn url_with_host(host: &str, extra: &str) -> String {
    let config: tokio_postgres::Config = database_url().parse().expect("DATABASE_URL parses");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("test");
    let mut url = format!("host={host} port={port} user={user} dbname={dbname} {extra}");
    if let Some(password) = config.get_password() {
        url.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
    }
    url
}

fn server_certificate() -> &'static str {
    assert!(
        std::path::Path::new(SERVER_CERTIFICATE).exists(),
        "{SERVER_CERTIFICATE} is missing: the TLS tests need the local PostgreSQL's own \
         certificate (Debian's ssl-cert package; `ssl = on` in postgresql.conf)"
    );
    SERVER_CERTIFICATE
}

#[tokio::test]
async fn tls_with_the_servers_ca_is_verified_and_encrypted() {
    let schema = fresh_schema_name();
    let _guard = DropSchema(schema.clone());
    let store = PostgresStore::connect_with(
        &url_with_host("localhost", ""),
        PostgresOptions::new()
            .schema(&schema)
            .tls_ca_file(server_certificate()),
    )
    .await
    .expect("TLS to the local server, its certificate trusted by file");
    let encrypted: bool = store
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the server sees the connection encrypted");
    // The store works over it.
    store
        .put_client(fixtures::public_client("over-tls"))
        .await
        .unwrap();
    assert!(store.get_client("over-tls").await.unwrap().is_some());
}

#[tokio::test]
async fn tls_refuses_what_it_cannot_verify() {
    let schema = fresh_schema_name();
    let _guard = DropSchema(schema.clone());
    let options = || {
        PostgresOptions::new()
            .schema(&schema)
            .connect_timeout(std::time::Duration::from_secs(3))
    };
    // The right CA, but the certificate does not name the address connected to.
    let by_address = PostgresStore::connect_with(
        &url_with_host("127.0.0.1", ""),
        options().tls_ca_file(server_certificate()),
    )
    .await;
    assert_refused_certificate(by_address, "a certificate for localhost is not 127.0.0.1's");
    // Another CA.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("gk-pg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let stranger = PostgresStore::connect_with(
        &url_with_host("localhost", ""),
        options().tls_ca_file(&other_ca),
    )
    .await;
    assert_refused_certificate(stranger, "a certificate another CA signed is refused");
    // `sslmode=require` alone: the system's roots, and the certificate is verified (libpq
    // would take it unverified; whether this system trusts the local certificate is its own
    // business, but it never names 127.0.0.1).
    let required =
        PostgresStore::connect_with(&url_with_host("127.0.0.1", "sslmode=require"), options())
            .await;
    assert_refused_certificate(required, "sslmode=require verifies the certificate");
    // TLS configured and refused by the URL: a configuration error, before any connection.
    match PostgresStore::connect_with(
        &url_with_host("localhost", "sslmode=disable"),
        options().tls_ca_file(server_certificate()),
    )
    .await
    {
        Err(StoreError::Invalid(message)) => assert!(message.contains("sslmode"), "{message}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A CA file that is missing, or holds no certificate: named in the error.
    let missing = dir.join("missing.pem");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for file in [&missing, &empty] {
        match PostgresStore::connect_with(
            &url_with_host("localhost", ""),
            options().tls_ca_file(file),
        )
        .await
        {
            Err(StoreError::Backend { message, .. }) => {
                assert!(message.contains(&*file.to_string_lossy()), "{message}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `connected` failed because the server's certificate was not trusted (not for any other
/// reason: a server that is down would pass a bare `is_err`).
fn assert_refused_certificate(connected: Result<PostgresStore, StoreError>, why: &str) {
    match connected {
        Ok(_) => panic!("{why}: connected"),
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            assert!(text.contains("certificate"), "{why}: {text}");
        }
    }
}
