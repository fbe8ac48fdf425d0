//! The behaviour every [`Store`] backend must show, written once: [`run_all`] runs it against
//! any backend (this crate's own run each check as a separate test).

use std::sync::Arc;

use super::*;

/// A `grace` of [`Store::rotate_refresh`] that turns retries off: any second presentation is
/// reuse.
pub(crate) const NO_GRACE: i64 = 0;

/// The grace period of the retry tests, in seconds (the server's default).
const GRACE: i64 = 60;

/// Calls `$by_ref!($arg; check, ...)` with the checks that take `&dyn Store` and
/// `$by_arc!($arg; check, ...)` with those that take `Arc<dyn Store>` (they race tasks against
/// one store): the one list of every check, used by both `store_conformance_tests!` and
/// [`run_all`].
macro_rules! for_each_check {
    ($by_ref:ident, $by_arc:ident; $arg:tt) => {
        $by_ref!($arg;
            client_round_trip,
            mutual_tls_clients_round_trip,
            user_round_trip,
            clients_are_listed_whole_in_id_order,
            users_are_listed_whole_in_name_order,
            code_single_use,
            code_replay_returns_family_and_revokes_it,
            expired_and_unknown_codes,
            code_conflicts_and_unknown_client,
            refresh_rotation,
            certificate_bound_refresh_tokens_stay_bound,
            refresh_reuse_revokes_family,
            expired_and_unknown_refresh_tokens,
            refresh_invariants,
            refresh_retry_within_grace_replaces_the_unused_successor,
            refresh_retry_outside_grace_or_after_expiry_revokes,
            refresh_retry_after_the_successor_was_used_revokes,
            refresh_retries_within_grace_leave_only_the_last_token_current,
            revoke_refresh_revokes_family,
            revoked_family_refuses_later_tokens,
            access_token_revocation,
            signing_keys_order_and_retirement,
            signing_key_replacement_is_conditional,
            purge_expired,
            purge_removes_unused_clients_nobody_vouched_for,
            delete_client_cascades,
            deleting_a_user_ends_what_they_hold,
            ending_a_users_sessions_keeps_the_rest,
            shared_secret_is_stored_once,
            session_round_trip,
            sessions_are_bounded_per_subject_and_in_all,
            use_once_is_single_use_until_it_expires,
            purge_removes_expired_sessions_and_uses,
        );
        $by_arc!($arg;
            concurrent_redeem_has_one_winner,
            concurrent_rotation_has_one_winner,
            concurrent_retries_have_one_winner,
            concurrent_first_secrets_agree,
            concurrent_signing_key_replacements_leave_one_current,
            concurrent_sessions_keep_the_bounds,
            concurrent_uses_have_one_winner,
        );
    };
}

/// One `#[tokio::test]` per check taking `&dyn Store`; see `store_conformance_tests!`.
#[cfg(test)]
macro_rules! conformance_tests_by_ref {
    ($make:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (store, _keep_alive) = $make();
            crate::store::conformance::$name(&*store).await;
        }
    )*};
}

/// One `#[tokio::test]` per check taking `Arc<dyn Store>`; see `store_conformance_tests!`.
#[cfg(test)]
macro_rules! conformance_tests_by_arc {
    ($make:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let (store, _keep_alive) = $make();
            crate::store::conformance::$name(store).await;
        }
    )*};
}

/// Generates one `#[tokio::test]` per conformance check, for this crate's own backends. `$make`
/// is a function returning `(Arc<dyn Store>, keep_alive)`; `keep_alive` lives until the test
/// ends (a temp file guard).
#[cfg(test)]
macro_rules! store_conformance_tests {
    ($make:path) => {
        crate::store::conformance::for_each_check!(
            conformance_tests_by_ref,
            conformance_tests_by_arc;
            $make
        );
    };
}
#[cfg(test)]
pub(crate) use for_each_check;
#[cfg(test)]
pub(crate) use {conformance_tests_by_arc, conformance_tests_by_ref, store_conformance_tests};

/// Runs every conformance check against a backend, each on a fresh, empty store from `make`;
/// panics at the first check the backend fails, naming it. The same checks run against this
/// crate's `MemoryStore` and `SqliteStore`.
///
/// A new backend (a shared database for several replicas, say) runs it from a test:
///
/// ```no_run
/// # use std::sync::Arc;
/// # use mcp_gatekeeper::store::{MemoryStore, Store};
/// #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
/// async fn my_store_honours_the_store_contract() {
///     mcp_gatekeeper::store::conformance::run_all(|| async {
///         Arc::new(MemoryStore::new()) as Arc<dyn Store>  // your backend, on an empty schema
///     })
///     .await;
/// }
/// ```
///
/// Some checks race tasks against one store: run it on a multi-threaded runtime.
pub async fn run_all<F, Fut>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    macro_rules! run_by_ref {
        ($make:ident; $($name:ident),* $(,)?) => {$(
            eprintln!("store conformance: {}", stringify!($name));
            $name(&*$make().await).await;
        )*};
    }
    macro_rules! run_by_arc {
        ($make:ident; $($name:ident),* $(,)?) => {$(
            eprintln!("store conformance: {}", stringify!($name));
            $name($make().await).await;
        )*};
    }
    for_each_check!(run_by_ref, run_by_arc; make);
}

/// Records to test with.
pub(crate) mod fixtures {
    use super::*;

    /// The hash of a named test secret.
    pub(crate) fn h(name: &str) -> [u8; 32] {
        hash_secret(name)
    }

    pub(crate) fn client(client_id: &str) -> ClientRecord {
        ClientRecord {
            client_id: client_id.into(),
            secret_hash: Some(h("client-secret")),
            name: "Test client".into(),
            redirect_uris: vec![
                "http://127.0.0.1/callback".into(),
                "https://app.example/cb".into(),
            ],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            allowed_scopes: vec!["data:read".into(), "data:write".into()],
            role: Some("editor".into()),
            token_endpoint_auth_method: "client_secret_basic".into(),
            tls_client_auth: None,
            metadata_url: None,
            self_registered: false,
            created_at: 1_000,
        }
    }

    pub(crate) fn public_client(client_id: &str) -> ClientRecord {
        ClientRecord {
            secret_hash: None,
            role: None,
            token_endpoint_auth_method: "none".into(),
            tls_client_auth: None,
            metadata_url: Some(client_id.into()),
            grant_types: vec![],
            ..client(client_id)
        }
    }

    /// A client that registered itself (RFC 7591), created at `created_at`.
    pub(crate) fn registered_client(client_id: &str, created_at: i64) -> ClientRecord {
        ClientRecord {
            secret_hash: None,
            role: None,
            token_endpoint_auth_method: "none".into(),
            tls_client_auth: None,
            self_registered: true,
            created_at,
            ..client(client_id)
        }
    }

    pub(crate) fn user(username: &str) -> UserRecord {
        UserRecord {
            username: username.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            role: Some("viewer".into()),
            scopes: vec!["data:read".into()],
            created_at: 1_000,
        }
    }

    pub(crate) fn code(
        name: &str,
        client_id: &str,
        family_id: &str,
        expires_at: i64,
    ) -> AuthCodeRecord {
        AuthCodeRecord {
            code_hash: h(name),
            client_id: client_id.into(),
            subject: "alice".into(),
            redirect_uri: "http://127.0.0.1/callback".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            scope: "data:read data:write".into(),
            resource: Some("https://api.example/mcp".into()),
            family_id: family_id.into(),
            expires_at,
        }
    }

    pub(crate) fn refresh(
        name: &str,
        client_id: &str,
        family_id: &str,
        expires_at: i64,
    ) -> RefreshTokenRecord {
        RefreshTokenRecord {
            token_hash: h(name),
            family_id: family_id.into(),
            client_id: client_id.into(),
            subject: "alice".into(),
            scope: "data:read".into(),
            resource: Some("https://api.example/mcp".into()),
            certificate_thumbprint: None,
            expires_at,
        }
    }

    /// A session of `subject` named `name`, started at `created_at`, for an hour.
    pub(crate) fn session(name: &str, subject: &str, created_at: i64) -> SessionRecord {
        SessionRecord {
            session_hash: h(name),
            subject: subject.into(),
            scopes: Some(vec!["data:read".into(), "data:write".into()]),
            created_at,
            expires_at: created_at + 3_600,
        }
    }

    pub(crate) fn key(kid: &str, created_at: i64) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.into(),
            algorithm: if kid.len().is_multiple_of(2) {
                "ES256"
            } else {
                "EdDSA"
            }
            .into(),
            private_key_der: format!("private-{kid}").into_bytes(),
            public_key_der: format!("public-{kid}").into_bytes(),
            created_at,
            retired_at: None,
        }
    }

    /// Stores one of everything, in every state, as of `now`.
    #[cfg(test)]
    pub(crate) async fn put_all(store: &dyn Store, now: i64) {
        store.put_client(client("c1")).await.unwrap();
        store
            .put_client(public_client("https://app.example/client.json"))
            .await
            .unwrap();
        store
            .put_client(registered_client("dcr", now))
            .await
            .unwrap();
        store.put_user(user("alice")).await.unwrap();
        store
            .put_code(code("used", "c1", "f-used", now + 600))
            .await
            .unwrap();
        store
            .put_code(code("fresh", "c1", "f-fresh", now + 600))
            .await
            .unwrap();
        assert!(matches!(
            store.redeem_code(h("used"), now).await.unwrap(),
            CodeRedemption::Redeemed(_)
        ));
        let r1 = refresh("r1", "c1", "f-used", now + 3_600);
        store.put_refresh(r1.clone()).await.unwrap();
        let r2 = r1.successor(h("r2"), now + 7_200);
        assert!(matches!(
            store
                .rotate_refresh(h("r1"), r2, now, NO_GRACE)
                .await
                .unwrap(),
            Rotation::Rotated(_)
        ));
        // A rotation whose answer was lost, to be retried after the restart.
        let t1 = refresh("t1", "c1", "f-retry", now + 3_600);
        store.put_refresh(t1.clone()).await.unwrap();
        assert!(matches!(
            store
                .rotate_refresh(h("t1"), t1.successor(h("t2"), now + 7_200), now, GRACE)
                .await
                .unwrap(),
            Rotation::Rotated(_)
        ));
        store
            .put_refresh(refresh("dead", "c1", "f-dead", now + 3_600))
            .await
            .unwrap();
        store.revoke_family("f-dead", now).await.unwrap();
        store.revoke_access_token("jti-1", now + 300).await.unwrap();
        store.put_signing_key(key("old", now - 100)).await.unwrap();
        store.put_signing_key(key("new", now)).await.unwrap();
        store.retire_signing_key("old", now).await.unwrap();
        assert_eq!(
            store.shared_secret("pages", [7; 32]).await.unwrap(),
            [7; 32]
        );
        assert!(
            store
                .put_session(session("s1", "alice", now), 16, 100, now)
                .await
                .unwrap()
        );
        assert!(store.use_once(h("decision"), now + 600, now).await.unwrap());
    }

    /// Finds everything [`put_all`] stored, in the same state.
    #[cfg(test)]
    pub(crate) async fn check_all(store: &dyn Store, now: i64) {
        assert_eq!(store.get_client("c1").await.unwrap(), Some(client("c1")));
        let cimd = "https://app.example/client.json";
        assert_eq!(
            store.get_client(cimd).await.unwrap(),
            Some(public_client(cimd))
        );
        assert_eq!(
            store.get_client("dcr").await.unwrap(),
            Some(registered_client("dcr", now))
        );
        assert_eq!(store.get_user("alice").await.unwrap(), Some(user("alice")));
        // The successor of t1 was remembered: the retry is recognised, and t2 is retired.
        let t1 = refresh("t1", "c1", "f-retry", now + 3_600);
        assert_eq!(
            store
                .rotate_refresh(h("t1"), t1.successor(h("t3"), now + 7_200), now, GRACE)
                .await
                .unwrap(),
            Rotation::Retried(t1.clone())
        );
        assert_eq!(
            store
                .rotate_refresh(h("t2"), t1.successor(h("t4"), now + 7_200), now, GRACE)
                .await
                .unwrap(),
            Rotation::Reused {
                family_id: "f-retry".into()
            }
        );
        assert_eq!(
            store.redeem_code(h("used"), now).await.unwrap(),
            CodeRedemption::Replayed {
                family_id: "f-used".into()
            }
        );
        assert_eq!(
            store.redeem_code(h("fresh"), now).await.unwrap(),
            CodeRedemption::Redeemed(code("fresh", "c1", "f-fresh", now + 600))
        );
        // The replay above revoked f-used, so its current token is refused now.
        assert_eq!(
            store
                .rotate_refresh(
                    h("r2"),
                    refresh("r3", "c1", "f-used", now + 9_000),
                    now,
                    NO_GRACE
                )
                .await
                .unwrap(),
            Rotation::Revoked
        );
        assert_eq!(
            store.get_refresh(h("r2")).await.unwrap(),
            Some(refresh("r1", "c1", "f-used", now + 3_600).successor(h("r2"), now + 7_200))
        );
        assert!(store.is_family_revoked("f-dead").await.unwrap());
        assert_eq!(
            store
                .rotate_refresh(
                    h("dead"),
                    refresh("x", "c1", "f-dead", now + 9_000),
                    now,
                    NO_GRACE
                )
                .await
                .unwrap(),
            Rotation::Revoked
        );
        assert!(store.is_access_token_revoked("jti-1").await.unwrap());
        let mut old = key("old", now - 100);
        old.retired_at = Some(now);
        assert_eq!(
            store.signing_keys().await.unwrap(),
            vec![key("new", now), old]
        );
        assert_eq!(
            store.shared_secret("pages", [8; 32]).await.unwrap(),
            [7; 32]
        );
        assert_eq!(
            store.get_session(h("s1"), now).await.unwrap(),
            Some(session("s1", "alice", now))
        );
        assert!(!store.use_once(h("decision"), now + 600, now).await.unwrap());
    }
}

use fixtures::*;

pub(crate) async fn client_round_trip(store: &dyn Store) {
    assert_eq!(store.get_client("c1").await.unwrap(), None);
    store.put_client(client("c1")).await.unwrap();
    assert_eq!(store.get_client("c1").await.unwrap(), Some(client("c1")));

    let cimd = "https://app.example/client.json";
    store.put_client(public_client(cimd)).await.unwrap();
    let stored = store.get_client(cimd).await.unwrap().unwrap();
    assert_eq!(stored, public_client(cimd));
    assert_eq!(stored.secret_hash, None);
    assert!(stored.grant_types.is_empty());

    let renamed = ClientRecord {
        name: "Renamed".into(),
        secret_hash: Some(h("rotated-secret")),
        redirect_uris: vec!["https://other.example/cb".into()],
        role: None,
        ..client("c1")
    };
    store.put_client(renamed.clone()).await.unwrap();
    assert_eq!(store.get_client("c1").await.unwrap(), Some(renamed));

    assert!(store.delete_client("c1").await.unwrap());
    assert!(!store.delete_client("c1").await.unwrap());
    assert_eq!(store.get_client("c1").await.unwrap(), None);
    assert!(store.get_client(cimd).await.unwrap().is_some());
}

pub(crate) async fn clients_are_listed_whole_in_id_order(store: &dyn Store) {
    assert_eq!(store.list_clients().await.unwrap(), vec![]);
    let mutual_tls = ClientRecord {
        secret_hash: None,
        token_endpoint_auth_method: "self_signed_tls_client_auth".into(),
        tls_client_auth: Some(TlsClientAuth::SelfSigned(vec![h("cert")])),
        ..client("mtls")
    };
    // Stored out of order; byte order puts upper case first and non-ASCII last, whatever
    // the database's locale would say.
    let stored = [
        client("b"),
        registered_client("a", 5),
        public_client("https://app.example/client.json"),
        client("\u{e9}-app"),
        client("B"),
        mutual_tls.clone(),
    ];
    for record in &stored {
        store.put_client(record.clone()).await.unwrap();
    }
    let mut expected = stored.to_vec();
    expected.sort_by(|a, b| a.client_id.as_bytes().cmp(b.client_id.as_bytes()));
    let listed = store.list_clients().await.unwrap();
    assert_eq!(listed, expected, "every field of every client, in id order");
    assert_eq!(
        listed
            .iter()
            .map(|c| c.client_id.as_str())
            .collect::<Vec<_>>(),
        [
            "B",
            "a",
            "b",
            "https://app.example/client.json",
            "mtls",
            "\u{e9}-app"
        ]
    );

    // A replaced client is listed once, as it is now; a deleted one not at all.
    let rotated = ClientRecord {
        secret_hash: Some(h("rotated-secret")),
        ..client("b")
    };
    store.put_client(rotated.clone()).await.unwrap();
    assert!(store.delete_client("a").await.unwrap());
    let listed = store.list_clients().await.unwrap();
    assert_eq!(listed.len(), stored.len() - 1);
    assert!(listed.iter().all(|c| c.client_id != "a"));
    assert_eq!(listed.iter().find(|c| c.client_id == "b"), Some(&rotated));
}

pub(crate) async fn users_are_listed_whole_in_name_order(store: &dyn Store) {
    assert_eq!(store.list_users().await.unwrap(), vec![]);
    let admin = UserRecord {
        role: Some("admin".into()),
        scopes: vec!["*".into()],
        created_at: 7,
        ..user("alice")
    };
    let hook = UserRecord {
        password_hash: "!login-hook".into(),
        role: None,
        scopes: vec![],
        ..user("Zoe")
    };
    let stored = [user("bob"), admin.clone(), user("\u{e4}rger"), hook];
    for record in &stored {
        store.put_user(record.clone()).await.unwrap();
    }
    let listed = store.list_users().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["Zoe", "alice", "bob", "\u{e4}rger"]
    );
    assert_eq!(listed[1], admin, "every field, the hash included");
    assert!(!listed[0].has_password() && listed[1].has_password());

    assert!(store.delete_user("bob").await.unwrap());
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["Zoe", "alice", "\u{e4}rger"]);
}

pub(crate) async fn mutual_tls_clients_round_trip(store: &dyn Store) {
    let with = |id: &str, auth: TlsClientAuth| ClientRecord {
        secret_hash: None,
        token_endpoint_auth_method: auth.auth_method().into(),
        tls_client_auth: Some(auth),
        ..client(id)
    };
    let clients = [
        with(
            "dn",
            TlsClientAuth::SubjectDn("CN=svc,O=Example\\, Inc.".into()),
        ),
        with("dns", TlsClientAuth::SanDns("svc.example.org".into())),
        with(
            "uri",
            TlsClientAuth::SanUri("spiffe://example.org/svc".into()),
        ),
        with("email", TlsClientAuth::SanEmail("svc@example.org".into())),
        with("one", TlsClientAuth::SelfSigned(vec![h("cert-1")])),
        with(
            "two",
            TlsClientAuth::SelfSigned(vec![h("cert-1"), h("cert-2")]),
        ),
    ];
    for client in &clients {
        store.put_client(client.clone()).await.unwrap();
        let stored = store.get_client(&client.client_id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(client));
        assert!(client.is_confidential());
    }
    // Replaced by a client with a secret: the certificate is forgotten.
    store.put_client(client("dns")).await.unwrap();
    assert_eq!(
        store
            .get_client("dns")
            .await
            .unwrap()
            .unwrap()
            .tls_client_auth,
        None
    );
}

pub(crate) async fn user_round_trip(store: &dyn Store) {
    assert_eq!(store.get_user("alice").await.unwrap(), None);
    store.put_user(user("alice")).await.unwrap();
    assert_eq!(store.get_user("alice").await.unwrap(), Some(user("alice")));
    assert_eq!(
        store.get_user("Alice").await.unwrap(),
        None,
        "usernames are exact"
    );

    let promoted = UserRecord {
        role: Some("admin".into()),
        scopes: vec![],
        ..user("alice")
    };
    store.put_user(promoted.clone()).await.unwrap();
    assert_eq!(store.get_user("alice").await.unwrap(), Some(promoted));

    assert!(store.delete_user("alice").await.unwrap());
    assert!(!store.delete_user("alice").await.unwrap());
    assert_eq!(store.get_user("alice").await.unwrap(), None);
}

pub(crate) async fn code_single_use(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    let code = code("code-1", "c1", "fam-1", 600);
    store.put_code(code.clone()).await.unwrap();
    assert_eq!(
        store.redeem_code(h("code-1"), 100).await.unwrap(),
        CodeRedemption::Redeemed(code)
    );
    assert!(matches!(
        store.redeem_code(h("code-1"), 101).await.unwrap(),
        CodeRedemption::Replayed { .. }
    ));
}

pub(crate) async fn code_replay_returns_family_and_revokes_it(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    store
        .put_code(code("code-1", "c1", "fam-1", 600))
        .await
        .unwrap();
    assert!(matches!(
        store.redeem_code(h("code-1"), 100).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    // The tokens issued from the code.
    store
        .put_refresh(refresh("rt-1", "c1", "fam-1", 10_000))
        .await
        .unwrap();
    assert!(!store.is_family_revoked("fam-1").await.unwrap());

    for now in [200, 10_000] {
        // Also after expiry: a used code is remembered until purged.
        assert_eq!(
            store.redeem_code(h("code-1"), now).await.unwrap(),
            CodeRedemption::Replayed {
                family_id: "fam-1".into()
            }
        );
    }
    assert!(store.is_family_revoked("fam-1").await.unwrap());
    assert_eq!(
        store
            .rotate_refresh(
                h("rt-1"),
                refresh("rt-2", "c1", "fam-1", 20_000),
                300,
                NO_GRACE
            )
            .await
            .unwrap(),
        Rotation::Revoked
    );
}

pub(crate) async fn expired_and_unknown_codes(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    store
        .put_code(code("late", "c1", "fam-1", 600))
        .await
        .unwrap();
    store
        .put_code(code("in-time", "c1", "fam-2", 600))
        .await
        .unwrap();
    // Expired exactly at expires_at.
    assert_eq!(
        store.redeem_code(h("late"), 600).await.unwrap(),
        CodeRedemption::Expired
    );
    // An expired code stays unused: still expired, not a replay.
    assert_eq!(
        store.redeem_code(h("late"), 700).await.unwrap(),
        CodeRedemption::Expired
    );
    assert!(!store.is_family_revoked("fam-1").await.unwrap());
    assert!(matches!(
        store.redeem_code(h("in-time"), 599).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert_eq!(
        store.redeem_code(h("never-issued"), 0).await.unwrap(),
        CodeRedemption::Unknown
    );
}

pub(crate) async fn code_conflicts_and_unknown_client(store: &dyn Store) {
    match store.put_code(code("code-1", "nobody", "fam-1", 600)).await {
        Err(StoreError::UnknownClient(id)) => assert_eq!(id, "nobody"),
        other => panic!("expected UnknownClient, got {other:?}"),
    }
    store.put_client(client("c1")).await.unwrap();
    store
        .put_code(code("code-1", "c1", "fam-1", 600))
        .await
        .unwrap();
    assert!(matches!(
        store.put_code(code("code-1", "c1", "fam-2", 900)).await,
        Err(StoreError::Conflict("authorization code"))
    ));
    // The first code is untouched.
    assert_eq!(
        store.redeem_code(h("code-1"), 0).await.unwrap(),
        CodeRedemption::Redeemed(code("code-1", "c1", "fam-1", 600))
    );
}

pub(crate) async fn refresh_rotation(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = refresh("r1", "c1", "fam", 1_000);
    store.put_refresh(r1.clone()).await.unwrap();
    assert_eq!(store.get_refresh(h("r1")).await.unwrap(), Some(r1.clone()));

    let r2 = r1.successor(h("r2"), 2_000);
    assert_eq!(
        store
            .rotate_refresh(h("r1"), r2.clone(), 500, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Rotated(r1.clone())
    );
    let r3 = r2.successor(h("r3"), 3_000);
    assert_eq!(
        store
            .rotate_refresh(h("r2"), r3.clone(), 1_500, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Rotated(r2.clone())
    );
    // Rotated tokens are remembered (for reuse detection) and still readable.
    assert_eq!(store.get_refresh(h("r1")).await.unwrap(), Some(r1));
    assert_eq!(store.get_refresh(h("r3")).await.unwrap(), Some(r3.clone()));
    assert!(!store.is_family_revoked("fam").await.unwrap());
    // The current token keeps working until it expires.
    assert_eq!(
        store
            .rotate_refresh(h("r3"), r3.successor(h("r4"), 4_000), 2_999, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Rotated(r3)
    );
}

pub(crate) async fn certificate_bound_refresh_tokens_stay_bound(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = RefreshTokenRecord {
        certificate_thumbprint: Some(h("client-certificate")),
        ..refresh("r1", "c1", "fam", 10_000)
    };
    store.put_refresh(r1.clone()).await.unwrap();
    assert_eq!(store.get_refresh(h("r1")).await.unwrap(), Some(r1.clone()));
    // A successor must keep the binding: dropping it would turn the grant into a bearer one.
    let unbound = RefreshTokenRecord {
        certificate_thumbprint: None,
        ..r1.successor(h("r2"), 10_000)
    };
    assert!(matches!(
        store.rotate_refresh(h("r1"), unbound, 100, NO_GRACE).await,
        Err(StoreError::Invalid(_))
    ));
    let r2 = r1.successor(h("r2"), 10_000);
    assert_eq!(
        store
            .rotate_refresh(h("r1"), r2.clone(), 100, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Rotated(r1)
    );
    let stored = store.get_refresh(h("r2")).await.unwrap().unwrap();
    assert_eq!(stored.certificate_thumbprint, Some(h("client-certificate")));
    assert_eq!(stored, r2);
}

pub(crate) async fn refresh_reuse_revokes_family(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = refresh("r1", "c1", "fam", 10_000);
    store.put_refresh(r1.clone()).await.unwrap();
    store
        .rotate_refresh(h("r1"), r1.successor(h("r2"), 10_000), 100, NO_GRACE)
        .await
        .unwrap();

    // The rotated r1 comes back: reuse.
    assert_eq!(
        store
            .rotate_refresh(
                h("r1"),
                r1.successor(h("r2-attacker"), 10_000),
                200,
                NO_GRACE
            )
            .await
            .unwrap(),
        Rotation::Reused {
            family_id: "fam".into()
        }
    );
    assert!(store.is_family_revoked("fam").await.unwrap());
    assert_eq!(store.get_refresh(h("r2-attacker")).await.unwrap(), None);
    // The family's current token no longer works either.
    assert_eq!(
        store
            .rotate_refresh(h("r2"), r1.successor(h("r3"), 10_000), 300, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Revoked
    );
    // Neither does r1 again.
    assert_eq!(
        store
            .rotate_refresh(h("r1"), r1.successor(h("r4"), 10_000), 400, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Revoked
    );
}

pub(crate) async fn expired_and_unknown_refresh_tokens(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = refresh("r1", "c1", "fam", 1_000);
    store.put_refresh(r1.clone()).await.unwrap();
    assert_eq!(
        store
            .rotate_refresh(h("r1"), r1.successor(h("r2"), 2_000), 1_000, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Expired
    );
    assert_eq!(store.get_refresh(h("r2")).await.unwrap(), None);
    assert!(!store.is_family_revoked("fam").await.unwrap());
    assert_eq!(
        store
            .rotate_refresh(h("nope"), r1.successor(h("r3"), 2_000), 0, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Unknown
    );
    assert_eq!(store.get_refresh(h("nope")).await.unwrap(), None);
}

pub(crate) async fn refresh_invariants(store: &dyn Store) {
    let r1 = refresh("r1", "c1", "fam", 10_000);
    match store.put_refresh(r1.clone()).await {
        Err(StoreError::UnknownClient(id)) => assert_eq!(id, "c1"),
        other => panic!("expected UnknownClient, got {other:?}"),
    }
    store.put_client(client("c1")).await.unwrap();
    store.put_refresh(r1.clone()).await.unwrap();
    assert!(matches!(
        store
            .put_refresh(refresh("r1", "c1", "other", 10_000))
            .await,
        Err(StoreError::Conflict("refresh token"))
    ));
    assert!(matches!(
        store.put_refresh(refresh("r1b", "c1", "fam", 10_000)).await,
        Err(StoreError::Conflict("current refresh token of the family"))
    ));

    // A successor that does not continue the grant changes nothing.
    let wrong = [
        RefreshTokenRecord {
            family_id: "other".into(),
            ..r1.successor(h("r2"), 10_000)
        },
        RefreshTokenRecord {
            client_id: "c2".into(),
            ..r1.successor(h("r2"), 10_000)
        },
        RefreshTokenRecord {
            subject: "mallory".into(),
            ..r1.successor(h("r2"), 10_000)
        },
        RefreshTokenRecord {
            scope: "data:read data:admin".into(),
            ..r1.successor(h("r2"), 10_000)
        },
        RefreshTokenRecord {
            resource: None,
            ..r1.successor(h("r2"), 10_000)
        },
    ];
    for new in wrong {
        assert!(matches!(
            store.rotate_refresh(h("r1"), new, 100, NO_GRACE).await,
            Err(StoreError::Invalid(_))
        ));
    }
    // A successor under an existing hash changes nothing either.
    store
        .put_refresh(refresh("taken", "c1", "fam-2", 10_000))
        .await
        .unwrap();
    assert!(matches!(
        store
            .rotate_refresh(h("r1"), r1.successor(h("taken"), 10_000), 100, NO_GRACE)
            .await,
        Err(StoreError::Conflict("refresh token"))
    ));
    assert_eq!(store.get_refresh(h("r2")).await.unwrap(), None);
    assert_eq!(
        store
            .rotate_refresh(h("r1"), r1.successor(h("r2"), 10_000), 100, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Rotated(r1)
    );
}

pub(crate) async fn revoke_refresh_revokes_family(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = refresh("r1", "c1", "fam", 10_000);
    store.put_refresh(r1.clone()).await.unwrap();
    store
        .rotate_refresh(h("r1"), r1.successor(h("r2"), 10_000), 100, NO_GRACE)
        .await
        .unwrap();
    // Revoking the current token ends the family.
    assert!(store.revoke_refresh(h("r2"), 200).await.unwrap());
    assert!(store.is_family_revoked("fam").await.unwrap());
    assert_eq!(
        store
            .rotate_refresh(h("r2"), r1.successor(h("r3"), 10_000), 300, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Revoked
    );
    assert!(!store.revoke_refresh(h("unknown"), 200).await.unwrap());

    // Revoking an old (rotated) token of another family ends that family too.
    let s1 = refresh("s1", "c1", "fam-2", 10_000);
    store.put_refresh(s1.clone()).await.unwrap();
    store
        .rotate_refresh(h("s1"), s1.successor(h("s2"), 10_000), 100, NO_GRACE)
        .await
        .unwrap();
    assert!(store.revoke_refresh(h("s1"), 200).await.unwrap());
    assert_eq!(
        store
            .rotate_refresh(h("s2"), s1.successor(h("s3"), 10_000), 300, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Revoked
    );
}

pub(crate) async fn revoked_family_refuses_later_tokens(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    assert!(!store.is_family_revoked("fam").await.unwrap());
    store.revoke_family("fam", 100).await.unwrap();
    store.revoke_family("fam", 200).await.unwrap();
    assert!(store.is_family_revoked("fam").await.unwrap());
    assert!(!store.is_family_revoked("fam-other").await.unwrap());
    // A token issued into the family after its revocation (a race with a code replay) is stored
    // but refused.
    let r1 = refresh("r1", "c1", "fam", 10_000);
    store.put_refresh(r1.clone()).await.unwrap();
    assert_eq!(
        store
            .rotate_refresh(h("r1"), r1.successor(h("r2"), 10_000), 300, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Revoked
    );
    // The first revocation time is kept: purged one retention period after 100, not 200.
    let cutoff = 100 + FAMILY_REVOCATION_RETENTION_SECS;
    store.purge_expired(10_000).await.unwrap(); // the token expires
    assert!(store.is_family_revoked("fam").await.unwrap());
    assert_eq!(store.purge_expired(cutoff - 1).await.unwrap(), 0);
    assert_eq!(store.purge_expired(cutoff).await.unwrap(), 1);
    assert!(!store.is_family_revoked("fam").await.unwrap());
}

pub(crate) async fn access_token_revocation(store: &dyn Store) {
    assert!(!store.is_access_token_revoked("jti-1").await.unwrap());
    store.revoke_access_token("jti-1", 200).await.unwrap();
    assert!(store.is_access_token_revoked("jti-1").await.unwrap());
    assert!(!store.is_access_token_revoked("jti-2").await.unwrap());

    // Revoking again keeps the later expiry.
    store.revoke_access_token("jti-2", 300).await.unwrap();
    store.revoke_access_token("jti-2", 100).await.unwrap();

    assert_eq!(store.purge_expired(199).await.unwrap(), 0);
    assert_eq!(store.purge_expired(200).await.unwrap(), 1);
    assert!(!store.is_access_token_revoked("jti-1").await.unwrap());
    assert!(store.is_access_token_revoked("jti-2").await.unwrap());
    assert_eq!(store.purge_expired(300).await.unwrap(), 1);
    assert!(!store.is_access_token_revoked("jti-2").await.unwrap());
}

pub(crate) async fn signing_keys_order_and_retirement(store: &dyn Store) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    for (kid, created_at) in [("k1", 100), ("k2", 200), ("k3", 200), ("k0", 50)] {
        store.put_signing_key(key(kid, created_at)).await.unwrap();
    }
    let kids = |keys: Vec<SigningKeyRecord>| keys.into_iter().map(|k| k.kid).collect::<Vec<_>>();
    // Newest first; k3 and k2 were created in the same second, k3 stored last.
    assert_eq!(
        kids(store.signing_keys().await.unwrap()),
        ["k3", "k2", "k1", "k0"]
    );
    assert_eq!(store.signing_keys().await.unwrap()[3], key("k0", 50));

    assert!(matches!(
        store.put_signing_key(key("k1", 999)).await,
        Err(StoreError::Conflict("signing key"))
    ));

    assert!(store.retire_signing_key("k2", 300).await.unwrap());
    assert!(store.retire_signing_key("k2", 400).await.unwrap());
    assert!(!store.retire_signing_key("nope", 300).await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(kids(keys.clone()), ["k3", "k2", "k1", "k0"]);
    assert_eq!(
        keys[1].retired_at,
        Some(300),
        "the first retirement time is kept"
    );
    assert!(
        keys.iter()
            .filter(|k| k.kid != "k2")
            .all(|k| k.retired_at.is_none())
    );

    assert!(store.delete_signing_key("k0").await.unwrap());
    assert!(!store.delete_signing_key("k0").await.unwrap());
    assert_eq!(
        kids(store.signing_keys().await.unwrap()),
        ["k3", "k2", "k1"]
    );
}

pub(crate) async fn signing_key_replacement_is_conditional(store: &dyn Store) {
    let state = |keys: Vec<SigningKeyRecord>| {
        keys.into_iter()
            .map(|k| (k.kid, k.retired_at))
            .collect::<Vec<_>>()
    };
    let s = |kid: &str, retired: Option<i64>| (kid.to_owned(), retired);
    // An empty store has no current key: only a replacement of none succeeds.
    assert!(
        !store
            .replace_signing_key(Some("k0"), key("k1", 100), 100)
            .await
            .unwrap()
    );
    assert!(store.signing_keys().await.unwrap().is_empty());
    assert!(
        store
            .replace_signing_key(None, key("k1", 100), 100)
            .await
            .unwrap()
    );
    assert_eq!(store.signing_keys().await.unwrap(), [key("k1", 100)]);
    assert!(
        !store
            .replace_signing_key(None, key("k2", 100), 100)
            .await
            .unwrap(),
        "k1 is current now"
    );

    // A rotation retires the replaced key as of `now`.
    assert!(
        store
            .replace_signing_key(Some("k1"), key("k2", 200), 200)
            .await
            .unwrap()
    );
    assert_eq!(
        state(store.signing_keys().await.unwrap()),
        [s("k2", None), s("k1", Some(200))]
    );
    // A replacement of a key that is no longer current changes nothing.
    assert!(
        !store
            .replace_signing_key(Some("k1"), key("k3", 300), 300)
            .await
            .unwrap()
    );
    assert_eq!(store.signing_keys().await.unwrap().len(), 2);

    // Key material is never replaced under a `kid`, and a new key is not retired.
    assert!(matches!(
        store
            .replace_signing_key(Some("k2"), key("k1", 300), 300)
            .await,
        Err(StoreError::Conflict("signing key"))
    ));
    let mut retired = key("k3", 300);
    retired.retired_at = Some(300);
    assert!(matches!(
        store.replace_signing_key(Some("k2"), retired, 300).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        state(store.signing_keys().await.unwrap()),
        [s("k2", None), s("k1", Some(200))]
    );

    // Several unretired keys (stored by hand): the newest is current, and a replacement
    // retires every one of them; a retired key keeps its first retirement time.
    store.put_signing_key(key("k4", 250)).await.unwrap();
    store.put_signing_key(key("k5", 150)).await.unwrap();
    assert!(
        !store
            .replace_signing_key(Some("k2"), key("k6", 300), 300)
            .await
            .unwrap(),
        "k4 is the newest"
    );
    assert!(
        store
            .replace_signing_key(Some("k4"), key("k6", 300), 300)
            .await
            .unwrap()
    );
    assert_eq!(
        state(store.signing_keys().await.unwrap()),
        [
            s("k6", None),
            s("k4", Some(300)),
            s("k2", Some(300)),
            s("k5", Some(300)),
            s("k1", Some(200)),
        ]
    );

    // With every key retired there is no current key again.
    assert!(store.retire_signing_key("k6", 400).await.unwrap());
    assert!(
        !store
            .replace_signing_key(Some("k6"), key("k7", 500), 500)
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_signing_key(None, key("k7", 500), 500)
            .await
            .unwrap()
    );
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys[0], key("k7", 500));
    assert_eq!(keys.iter().filter(|k| k.retired_at.is_none()).count(), 1);
}

pub(crate) async fn purge_expired(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    // Codes: one used, one never used.
    store
        .put_code(code("code-a", "c1", "fam-a", 100))
        .await
        .unwrap();
    store
        .put_code(code("code-b", "c1", "fam-b", 200))
        .await
        .unwrap();
    store.redeem_code(h("code-a"), 10).await.unwrap();
    // Family 1: r1 (expires 100) rotated into r2 (expires 300).
    let r1 = refresh("r1", "c1", "fam-1", 100);
    store.put_refresh(r1.clone()).await.unwrap();
    store
        .rotate_refresh(h("r1"), r1.successor(h("r2"), 300), 10, NO_GRACE)
        .await
        .unwrap();
    // Family 2: revoked at 20, its token expires at 150.
    store
        .put_refresh(refresh("r3", "c1", "fam-2", 150))
        .await
        .unwrap();
    store.revoke_family("fam-2", 20).await.unwrap();
    // Family 3: revoked at 30, no tokens.
    store.revoke_family("fam-3", 30).await.unwrap();
    // Family 4: revoked at 0, a long-lived token.
    store
        .put_refresh(refresh("r5", "c1", "fam-4", 200_000))
        .await
        .unwrap();
    store.revoke_family("fam-4", 0).await.unwrap();
    // Access-token revocations.
    store.revoke_access_token("jti-1", 100).await.unwrap();
    store.revoke_access_token("jti-2", 500).await.unwrap();

    assert_eq!(store.purge_expired(99).await.unwrap(), 0);
    // code-a, r1, jti-1.
    assert_eq!(store.purge_expired(100).await.unwrap(), 3);
    assert_eq!(
        store.redeem_code(h("code-a"), 100).await.unwrap(),
        CodeRedemption::Unknown
    );
    assert_eq!(store.get_refresh(h("r1")).await.unwrap(), None);
    assert_eq!(
        store
            .rotate_refresh(h("r1"), r1.successor(h("x"), 300), 100, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Unknown,
        "reuse of a purged token is no longer detected"
    );
    assert!(!store.is_access_token_revoked("jti-1").await.unwrap());
    assert!(store.is_access_token_revoked("jti-2").await.unwrap());
    assert!(store.get_refresh(h("r2")).await.unwrap().is_some());

    // r3.
    assert_eq!(store.purge_expired(150).await.unwrap(), 1);
    assert!(
        store.is_family_revoked("fam-2").await.unwrap(),
        "kept for the retention period"
    );

    let retention = FAMILY_REVOCATION_RETENTION_SECS;
    // code-b, r2, jti-2, fam-2 (revoked at 20).
    assert_eq!(store.purge_expired(20 + retention).await.unwrap(), 4);
    assert!(!store.is_family_revoked("fam-2").await.unwrap());
    assert!(store.is_family_revoked("fam-3").await.unwrap());
    assert_eq!(
        store.redeem_code(h("code-b"), 0).await.unwrap(),
        CodeRedemption::Unknown
    );
    // fam-3.
    assert_eq!(store.purge_expired(30 + retention).await.unwrap(), 1);
    assert!(!store.is_family_revoked("fam-3").await.unwrap());

    // fam-4 stays revoked while its token exists, then goes with it.
    assert_eq!(store.purge_expired(199_999).await.unwrap(), 0);
    assert!(store.is_family_revoked("fam-4").await.unwrap());
    assert_eq!(store.purge_expired(200_000).await.unwrap(), 2);
    assert!(!store.is_family_revoked("fam-4").await.unwrap());

    // Clients, users and signing keys never expire.
    assert!(store.get_client("c1").await.unwrap().is_some());
    assert_eq!(store.purge_expired(i64::MAX).await.unwrap(), 0);
}

/// Rotates `old` into a successor named `new` at `now` with the grace period [`GRACE`].
async fn rotate(store: &dyn Store, old: &RefreshTokenRecord, new: &str, now: i64) -> Rotation {
    let next = old.successor(h(new), 10_000);
    store
        .rotate_refresh(old.token_hash, next, now, GRACE)
        .await
        .unwrap()
}

/// The first refresh token of family `family_id`, stored (expiring at 10 000).
async fn first_token(store: &dyn Store, name: &str, family_id: &str) -> RefreshTokenRecord {
    let token = refresh(name, "c1", family_id, 10_000);
    store.put_refresh(token.clone()).await.unwrap();
    token
}

/// The stored token named `name`.
async fn token(store: &dyn Store, name: &str) -> RefreshTokenRecord {
    store.get_refresh(h(name)).await.unwrap().expect(name)
}

pub(crate) async fn refresh_retry_within_grace_replaces_the_unused_successor(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = first_token(store, "r1", "fam").await;
    assert_eq!(
        rotate(store, &r1, "r2", 100).await,
        Rotation::Rotated(r1.clone())
    );
    // The answer carrying r2 was lost; the client presents r1 again. A successor that does not
    // continue the grant still changes nothing.
    let wrong = RefreshTokenRecord {
        scope: "data:read data:write".into(),
        ..r1.successor(h("r3"), 10_000)
    };
    assert!(matches!(
        store.rotate_refresh(h("r1"), wrong, 130, GRACE).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        rotate(store, &r1, "r3", 130).await,
        Rotation::Retried(r1.clone())
    );
    assert!(!store.is_family_revoked("fam").await.unwrap());
    // The new token is the family's current one and works.
    let r3 = token(store, "r3").await;
    assert_eq!(rotate(store, &r3, "r4", 140).await, Rotation::Rotated(r3));
    // The replaced successor was never delivered; whoever presents it now holds a copy the
    // client never received: reuse, and the family ends.
    let r2 = token(store, "r2").await;
    assert_eq!(
        rotate(store, &r2, "r5", 150).await,
        Rotation::Reused {
            family_id: "fam".into()
        }
    );
    assert!(store.is_family_revoked("fam").await.unwrap());
    let r4 = token(store, "r4").await;
    assert_eq!(rotate(store, &r4, "r6", 160).await, Rotation::Revoked);
}

pub(crate) async fn refresh_retry_outside_grace_or_after_expiry_revokes(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    // The window is inclusive: a retry GRACE seconds after the rotation is still one.
    let a1 = first_token(store, "a1", "fam-a").await;
    rotate(store, &a1, "a2", 100).await;
    assert_eq!(
        rotate(store, &a1, "a3", 100 + GRACE).await,
        Rotation::Retried(a1)
    );
    // One second later it is reuse.
    let b1 = first_token(store, "b1", "fam-b").await;
    rotate(store, &b1, "b2", 100).await;
    assert_eq!(
        rotate(store, &b1, "b3", 101 + GRACE).await,
        Rotation::Reused {
            family_id: "fam-b".into()
        }
    );
    assert!(store.is_family_revoked("fam-b").await.unwrap());
    let b2 = token(store, "b2").await;
    assert_eq!(
        rotate(store, &b2, "b4", 102 + GRACE).await,
        Rotation::Revoked
    );
    // Without a grace period, even a retry in the same second is reuse.
    let n1 = first_token(store, "n1", "fam-c").await;
    rotate(store, &n1, "n2", 100).await;
    assert_eq!(
        store
            .rotate_refresh(h("n1"), n1.successor(h("n3"), 10_000), 100, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Reused {
            family_id: "fam-c".into()
        }
    );
    // A successor that expired cannot be stood in for.
    let d1 = first_token(store, "d1", "fam-d").await;
    store
        .rotate_refresh(h("d1"), d1.successor(h("d2"), 110), 100, GRACE)
        .await
        .unwrap();
    assert_eq!(
        rotate(store, &d1, "d3", 110).await,
        Rotation::Reused {
            family_id: "fam-d".into()
        }
    );
    // A revoked family stays revoked, retry or not.
    let e1 = first_token(store, "e1", "fam-e").await;
    rotate(store, &e1, "e2", 100).await;
    store.revoke_family("fam-e", 105).await.unwrap();
    assert_eq!(rotate(store, &e1, "e3", 110).await, Rotation::Revoked);
    assert_eq!(store.get_refresh(h("e3")).await.unwrap(), None);
}

pub(crate) async fn refresh_retry_after_the_successor_was_used_revokes(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = first_token(store, "r1", "fam").await;
    rotate(store, &r1, "r2", 100).await;
    let r2 = token(store, "r2").await;
    // The client received r2 and used it: r1 coming back is no lost answer.
    assert_eq!(rotate(store, &r2, "r3", 110).await, Rotation::Rotated(r2));
    assert_eq!(
        rotate(store, &r1, "r4", 120).await,
        Rotation::Reused {
            family_id: "fam".into()
        }
    );
    assert!(store.is_family_revoked("fam").await.unwrap());
    assert_eq!(store.get_refresh(h("r4")).await.unwrap(), None);
    let r3 = token(store, "r3").await;
    assert_eq!(rotate(store, &r3, "r5", 130).await, Rotation::Revoked);
}

pub(crate) async fn refresh_retries_within_grace_leave_only_the_last_token_current(
    store: &dyn Store,
) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = first_token(store, "r1", "fam").await;
    rotate(store, &r1, "r2", 100).await;
    // Two answers lost in a row: both retries are honoured.
    assert_eq!(
        rotate(store, &r1, "r3", 110).await,
        Rotation::Retried(r1.clone())
    );
    assert_eq!(
        rotate(store, &r1, "r4", 150).await,
        Rotation::Retried(r1.clone())
    );
    // Only the last one is current.
    let r4 = token(store, "r4").await;
    assert_eq!(rotate(store, &r4, "r5", 155).await, Rotation::Rotated(r4));
    let r3 = token(store, "r3").await;
    assert_eq!(
        rotate(store, &r3, "r6", 156).await,
        Rotation::Reused {
            family_id: "fam".into()
        }
    );

    // The window is measured from the first rotation, not from the latest retry.
    let s1 = first_token(store, "s1", "fam-s").await;
    rotate(store, &s1, "s2", 100).await;
    assert_eq!(
        rotate(store, &s1, "s3", 150).await,
        Rotation::Retried(s1.clone())
    );
    assert_eq!(
        rotate(store, &s1, "s4", 101 + GRACE).await,
        Rotation::Reused {
            family_id: "fam-s".into()
        }
    );
}

pub(crate) async fn purge_removes_unused_clients_nobody_vouched_for(store: &dyn Store) {
    let created = 1_000;
    let old_enough = created + UNUSED_CLIENT_RETENTION_SECS + 1;
    // Configured: never purged.
    store.put_client(client("configured")).await.unwrap();
    // Self-registered and metadata-document clients that hold nothing.
    store
        .put_client(registered_client("unused", created))
        .await
        .unwrap();
    let cimd = "https://app.example/client.json";
    store
        .put_client(ClientRecord {
            created_at: created,
            ..public_client(cimd)
        })
        .await
        .unwrap();
    // Too young.
    store
        .put_client(registered_client(
            "young",
            old_enough - UNUSED_CLIENT_RETENTION_SECS,
        ))
        .await
        .unwrap();
    // Holding a code, a refresh token, or a refresh token that expires by the purge.
    for id in ["with-code", "with-token", "token-expires"] {
        store
            .put_client(registered_client(id, created))
            .await
            .unwrap();
    }
    store
        .put_code(code("code", "with-code", "fam-1", old_enough + 600))
        .await
        .unwrap();
    store
        .put_refresh(refresh("rt", "with-token", "fam-2", old_enough + 600))
        .await
        .unwrap();
    store
        .put_refresh(refresh("rt-old", "token-expires", "fam-3", old_enough))
        .await
        .unwrap();
    assert!(
        store
            .get_client("unused")
            .await
            .unwrap()
            .unwrap()
            .self_registered
    );

    // Exactly the retention period old: kept.
    assert_eq!(
        store
            .purge_expired(created + UNUSED_CLIENT_RETENTION_SECS)
            .await
            .unwrap(),
        0
    );
    // unused, the metadata-document client, rt-old and then token-expires.
    assert_eq!(store.purge_expired(old_enough).await.unwrap(), 4);
    for (id, kept) in [
        ("configured", true),
        ("unused", false),
        (cimd, false),
        ("young", true),
        ("with-code", true),
        ("with-token", true),
        ("token-expires", false),
    ] {
        assert_eq!(store.get_client(id).await.unwrap().is_some(), kept, "{id}");
    }
    // Once its code or token is gone, a client goes too: code, rt, with-code, with-token, and
    // young, now old enough.
    assert_eq!(store.purge_expired(old_enough + 600).await.unwrap(), 5);
    for id in ["with-code", "with-token", "young"] {
        assert!(store.get_client(id).await.unwrap().is_none(), "{id}");
    }
    assert!(store.get_client("configured").await.unwrap().is_some());
}

pub(crate) async fn delete_client_cascades(store: &dyn Store) {
    store.put_client(client("c1")).await.unwrap();
    store.put_client(client("c2")).await.unwrap();
    store
        .put_code(code("code-1", "c1", "fam-1", 600))
        .await
        .unwrap();
    store
        .put_code(code("code-2", "c2", "fam-2", 600))
        .await
        .unwrap();
    store
        .put_refresh(refresh("r1", "c1", "fam-1", 600))
        .await
        .unwrap();
    store
        .put_refresh(refresh("r2", "c2", "fam-2", 600))
        .await
        .unwrap();

    // Replacing a client keeps its codes and tokens.
    store
        .put_client(ClientRecord {
            name: "Renamed".into(),
            ..client("c1")
        })
        .await
        .unwrap();
    assert!(store.get_refresh(h("r1")).await.unwrap().is_some());

    assert!(store.delete_client("c1").await.unwrap());
    assert_eq!(
        store.redeem_code(h("code-1"), 0).await.unwrap(),
        CodeRedemption::Unknown
    );
    assert_eq!(store.get_refresh(h("r1")).await.unwrap(), None);
    // The other client is untouched.
    assert!(matches!(
        store.redeem_code(h("code-2"), 0).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert!(store.get_refresh(h("r2")).await.unwrap().is_some());
    // The family's current token went with the client: the family can start again if the
    // client comes back.
    assert!(matches!(
        store.put_refresh(refresh("r1", "c1", "fam-1", 600)).await,
        Err(StoreError::UnknownClient(_))
    ));
    store.put_client(client("c1")).await.unwrap();
    store
        .put_refresh(refresh("r1", "c1", "fam-1", 600))
        .await
        .unwrap();
}

pub(crate) async fn deleting_a_user_ends_what_they_hold(store: &dyn Store) {
    let now = 100;
    let retention = FAMILY_REVOCATION_RETENTION_SECS;
    store.put_client(client("c1")).await.unwrap();
    store.put_user(user("alice")).await.unwrap();
    store.put_user(user("bob")).await.unwrap();
    // Alice: a code not yet exchanged; a grant whose code was exchanged and whose first token
    // was rotated; a long-lived grant revoked long ago.
    store
        .put_code(code("a-code", "c1", "fa-code", 600))
        .await
        .unwrap();
    store
        .put_code(code("a-used", "c1", "fa", 600))
        .await
        .unwrap();
    store.redeem_code(h("a-used"), now).await.unwrap();
    let r1 = refresh("r1", "c1", "fa", 5_000);
    store.put_refresh(r1.clone()).await.unwrap();
    let r2 = r1.successor(h("r2"), 9_000);
    store
        .rotate_refresh(h("r1"), r2.clone(), now, NO_GRACE)
        .await
        .unwrap();
    store
        .put_refresh(refresh("a-long", "c1", "fa-long", 200_000))
        .await
        .unwrap();
    store.revoke_family("fa-long", 5).await.unwrap();
    // Bob: a code and a token of his own.
    store
        .put_code(AuthCodeRecord {
            subject: "bob".into(),
            ..code("b-code", "c1", "fb-code", 600)
        })
        .await
        .unwrap();
    let b1 = RefreshTokenRecord {
        subject: "bob".into(),
        ..refresh("b1", "c1", "fb", 9_000)
    };
    store.put_refresh(b1.clone()).await.unwrap();
    for s in [
        session("s-a1", "alice", now),
        session("s-a2", "alice", now + 1),
        session("s-b1", "bob", now),
        session("s-carol", "carol", now),
    ] {
        assert!(store.put_session(s, 16, 100, now).await.unwrap());
    }

    assert!(store.delete_user("alice").await.unwrap());
    assert_eq!(store.get_user("alice").await.unwrap(), None);
    for name in ["s-a1", "s-a2"] {
        assert_eq!(
            store.get_session(h(name), now).await.unwrap(),
            None,
            "{name}"
        );
    }
    for name in ["a-code", "a-used"] {
        assert_eq!(
            store.redeem_code(h(name), now).await.unwrap(),
            CodeRedemption::Unknown,
            "{name}"
        );
    }
    for name in ["r1", "r2", "a-long"] {
        assert_eq!(store.get_refresh(h(name)).await.unwrap(), None, "{name}");
    }
    assert_eq!(
        store
            .rotate_refresh(h("r2"), r2.successor(h("r3"), 9_000), now, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Unknown
    );
    for family in ["fa-code", "fa", "fa-long"] {
        assert!(store.is_family_revoked(family).await.unwrap(), "{family}");
    }
    // A token a code exchange under way stores afterwards is refused: its family is revoked.
    let late = refresh("late", "c1", "fa", 9_000);
    store.put_refresh(late.clone()).await.unwrap();
    assert_eq!(
        store
            .rotate_refresh(h("late"), late.successor(h("late-2"), 9_000), now, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Revoked
    );

    // Bob keeps everything.
    assert!(store.get_user("bob").await.unwrap().is_some());
    assert!(store.get_session(h("s-b1"), now).await.unwrap().is_some());
    for family in ["fb-code", "fb"] {
        assert!(!store.is_family_revoked(family).await.unwrap(), "{family}");
    }
    assert!(matches!(
        store.redeem_code(h("b-code"), now).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert!(matches!(
        store
            .rotate_refresh(h("b1"), b1.successor(h("b2"), 9_000), now, NO_GRACE)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));

    // With the rows gone, a revocation is remembered for the retention period past the
    // latest expiry of what was deleted (the code's, 600)...
    store.purge_expired(600 + retention - 1).await.unwrap();
    assert!(store.is_family_revoked("fa-code").await.unwrap());
    store.purge_expired(600 + retention).await.unwrap();
    assert!(!store.is_family_revoked("fa-code").await.unwrap());
    // ...and an earlier revocation (at 5) is kept as long: its token lived until 200 000.
    assert!(store.is_family_revoked("fa-long").await.unwrap());
    store.purge_expired(200_000 + retention - 1).await.unwrap();
    assert!(store.is_family_revoked("fa-long").await.unwrap());
    store.purge_expired(200_000 + retention).await.unwrap();
    assert!(!store.is_family_revoked("fa-long").await.unwrap());

    assert!(!store.delete_user("alice").await.unwrap());
    // No user, but sessions left under the name (a user deleted before sessions were
    // ended with it): ended all the same.
    assert!(!store.delete_user("carol").await.unwrap());
    assert_eq!(store.get_session(h("s-carol"), now).await.unwrap(), None);
}

pub(crate) async fn ending_a_users_sessions_keeps_the_rest(store: &dyn Store) {
    let now = 5_000;
    store.put_client(client("c1")).await.unwrap();
    store.put_user(user("alice")).await.unwrap();
    store.put_user(user("bob")).await.unwrap();
    let r1 = first_token(store, "r1", "fam").await;
    // Stored while all of them were live; at `now` the oldest has expired.
    for s in [
        session("a-old", "alice", now - 3_600),
        session("a1", "alice", now - 10),
        session("a2", "alice", now),
        session("b1", "bob", now),
    ] {
        assert!(store.put_session(s, 16, 100, now - 3_600).await.unwrap());
    }

    assert_eq!(
        store.end_sessions_of("alice", now).await.unwrap(),
        2,
        "the live ones"
    );
    for name in ["a-old", "a1", "a2"] {
        assert_eq!(
            store.get_session(h(name), now - 3_600).await.unwrap(),
            None,
            "{name}"
        );
    }
    assert_eq!(
        store.purge_expired(now).await.unwrap(),
        0,
        "the expired one went too"
    );
    assert!(store.get_session(h("b1"), now).await.unwrap().is_some());
    assert_eq!(store.get_user("alice").await.unwrap(), Some(user("alice")));
    assert!(!store.is_family_revoked("fam").await.unwrap());
    assert!(matches!(
        rotate(store, &r1, "r2", now).await,
        Rotation::Rotated(_)
    ));

    assert_eq!(store.end_sessions_of("alice", now).await.unwrap(), 0);
    assert_eq!(store.end_sessions_of("nobody", now).await.unwrap(), 0);
    assert!(
        store
            .put_session(session("a3", "alice", now), 16, 100, now)
            .await
            .unwrap(),
        "signing in again works"
    );
    assert!(store.get_session(h("a3"), now).await.unwrap().is_some());
}

pub(crate) async fn shared_secret_is_stored_once(store: &dyn Store) {
    assert_eq!(
        store.shared_secret("pages", [1; 32]).await.unwrap(),
        [1; 32],
        "the first candidate is stored"
    );
    assert_eq!(
        store.shared_secret("pages", [2; 32]).await.unwrap(),
        [1; 32],
        "a stored secret is never replaced"
    );
    assert_eq!(
        store.shared_secret("other", [3; 32]).await.unwrap(),
        [3; 32],
        "names are independent"
    );
    assert_eq!(
        store.shared_secret("pages", [4; 32]).await.unwrap(),
        [1; 32]
    );
}

pub(crate) async fn session_round_trip(store: &dyn Store) {
    let now = 1_000;
    let s1 = session("s1", "alice", now);
    assert!(store.put_session(s1.clone(), 16, 100, now).await.unwrap());
    assert_eq!(
        store.get_session(h("s1"), now).await.unwrap(),
        Some(s1.clone())
    );
    let everything = SessionRecord {
        scopes: None,
        ..session("s2", "bob", now)
    };
    assert!(
        store
            .put_session(everything.clone(), 16, 100, now)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_session(h("s2"), now).await.unwrap(),
        Some(everything),
        "no scopes (every scope) is not an empty list"
    );
    let none = SessionRecord {
        scopes: Some(vec![]),
        ..session("s3", "carol", now)
    };
    assert!(store.put_session(none.clone(), 16, 100, now).await.unwrap());
    assert_eq!(store.get_session(h("s3"), now).await.unwrap(), Some(none));
    assert!(matches!(
        store.put_session(s1.clone(), 16, 100, now).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_session(h("unknown"), now).await.unwrap(), None);
    // Live until its expiry only.
    assert!(
        store
            .get_session(h("s1"), s1.expires_at - 1)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.get_session(h("s1"), s1.expires_at).await.unwrap(),
        None
    );
    // Ended at once.
    assert!(store.delete_session(h("s1")).await.unwrap());
    assert!(!store.delete_session(h("s1")).await.unwrap());
    assert_eq!(store.get_session(h("s1"), now).await.unwrap(), None);
}

pub(crate) async fn sessions_are_bounded_per_subject_and_in_all(store: &dyn Store) {
    let now = 10_000;
    // Per subject: the oldest go first.
    for i in 0..5 {
        let s = session(&format!("a{i}"), "alice", now + i);
        assert!(store.put_session(s, 3, 100, now + 10).await.unwrap());
    }
    for (i, live) in [false, false, true, true, true].into_iter().enumerate() {
        assert_eq!(
            store
                .get_session(h(&format!("a{i}")), now + 10)
                .await
                .unwrap()
                .is_some(),
            live,
            "a{i}"
        );
    }
    // Another subject's sessions are not the user's to lose.
    assert!(
        store
            .put_session(session("b0", "bob", now), 3, 100, now + 10)
            .await
            .unwrap()
    );
    assert!(
        store
            .get_session(h("a2"), now + 10)
            .await
            .unwrap()
            .is_some()
    );
    // In all: 4 live sessions; a bound of 4 refuses a new subject's, changing nothing...
    assert!(
        !store
            .put_session(session("c0", "carol", now), 3, 4, now + 10)
            .await
            .unwrap()
    );
    assert_eq!(store.get_session(h("c0"), now + 10).await.unwrap(), None);
    assert!(
        store
            .get_session(h("b0"), now + 10)
            .await
            .unwrap()
            .is_some()
    );
    // ...but lets a subject at its own bound replace its oldest.
    assert!(
        store
            .put_session(session("a5", "alice", now + 5), 3, 4, now + 10)
            .await
            .unwrap()
    );
    assert_eq!(store.get_session(h("a2"), now + 10).await.unwrap(), None);
    assert!(
        store
            .get_session(h("a5"), now + 10)
            .await
            .unwrap()
            .is_some()
    );
    // Expired sessions count for nothing: an hour later the store is empty of live ones.
    let later = now + 10 + 3_600;
    assert!(
        store
            .put_session(session("c1", "carol", later), 3, 1, later)
            .await
            .unwrap()
    );
    // Zero bounds store nothing.
    assert!(
        !store
            .put_session(session("d0", "dave", later), 0, 10, later)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_session(session("d1", "dave", later), 3, 0, later)
            .await
            .unwrap()
    );
    assert_eq!(store.get_session(h("d0"), later).await.unwrap(), None);
}

pub(crate) async fn use_once_is_single_use_until_it_expires(store: &dyn Store) {
    assert!(store.use_once(h("d1"), 700, 100).await.unwrap());
    assert!(!store.use_once(h("d1"), 700, 100).await.unwrap());
    assert!(
        !store.use_once(h("d1"), 900, 699).await.unwrap(),
        "remembered until it expires"
    );
    assert!(store.use_once(h("d2"), 700, 100).await.unwrap(), "per key");
    assert!(
        store.use_once(h("d1"), 1_300, 700).await.unwrap(),
        "an expired use is forgotten"
    );
    assert!(!store.use_once(h("d1"), 1_300, 701).await.unwrap());
}

pub(crate) async fn purge_removes_expired_sessions_and_uses(store: &dyn Store) {
    let now = 1_000;
    store
        .put_session(session("old", "alice", now), 16, 100, now)
        .await
        .unwrap();
    store
        .put_session(session("new", "alice", now + 100), 16, 100, now)
        .await
        .unwrap();
    store.use_once(h("u-old"), now + 50, now).await.unwrap();
    store.use_once(h("u-new"), now + 5_000, now).await.unwrap();
    store.shared_secret("pages", [9; 32]).await.unwrap();
    let removed = store.purge_expired(now + 3_600).await.unwrap();
    assert_eq!(removed, 2, "the old session and the old use");
    let at = now + 100;
    assert_eq!(store.get_session(h("old"), at).await.unwrap(), None);
    assert!(store.get_session(h("new"), at).await.unwrap().is_some());
    assert!(store.use_once(h("u-old"), now + 9_000, at).await.unwrap());
    assert!(!store.use_once(h("u-new"), now + 9_000, at).await.unwrap());
    assert_eq!(
        store.shared_secret("pages", [1; 32]).await.unwrap(),
        [9; 32],
        "the secret stays"
    );
}

/// Tasks that wait for each other, then race.
const RACERS: usize = 20;

pub(crate) async fn concurrent_first_secrets_agree(store: Arc<dyn Store>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.shared_secret("pages", [i as u8; 32]).await.unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    assert_eq!(
        store.shared_secret("pages", [99; 32]).await.unwrap(),
        seen[0]
    );
}

/// [`RACERS`] tasks replacing the current signing key `replaces` at once, racer `i` with key
/// `{prefix}-{i}`; the kids of the winners.
async fn race_key_replacements(
    store: &Arc<dyn Store>,
    replaces: Option<&str>,
    prefix: &str,
    now: i64,
) -> Vec<String> {
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            let replaces = replaces.map(str::to_owned);
            let kid = format!("{prefix}-{i}");
            tokio::spawn(async move {
                barrier.wait().await;
                let won = store
                    .replace_signing_key(replaces.as_deref(), key(&kid, now), now)
                    .await
                    .unwrap();
                won.then_some(kid)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    winners
}

/// Replicas starting together on an empty store, then finding the key due together: one key
/// each time, whoever wins.
pub(crate) async fn concurrent_signing_key_replacements_leave_one_current(store: Arc<dyn Store>) {
    let first = race_key_replacements(&store, None, "first", 100).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(store.signing_keys().await.unwrap(), [key(&first[0], 100)]);

    let second = race_key_replacements(&store, Some(&first[0]), "second", 200).await;
    assert_eq!(second.len(), 1, "{second:?}");
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], key(&second[0], 200));
    assert_eq!(
        (keys[1].kid.as_str(), keys[1].retired_at),
        (first[0].as_str(), Some(200))
    );
}

pub(crate) async fn concurrent_sessions_keep_the_bounds(store: Arc<dyn Store>) {
    const PER_SUBJECT: usize = 3;
    const IN_ALL: usize = 5;
    let now = 1_000;
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                // Half alice's, half each their own subject's.
                let subject = if i % 2 == 0 {
                    "alice".to_owned()
                } else {
                    format!("user-{i}")
                };
                let s = session(&format!("s{i}"), &subject, now + i as i64);
                store
                    .put_session(s, PER_SUBJECT, IN_ALL, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += usize::from(task.await.unwrap());
    }
    assert!(stored >= IN_ALL, "{stored} stored");
    let (mut live, mut alices) = (0, 0);
    for i in 0..RACERS {
        if let Some(s) = store.get_session(h(&format!("s{i}")), now).await.unwrap() {
            live += 1;
            alices += usize::from(s.subject == "alice");
        }
    }
    assert!(live <= IN_ALL, "{live} live sessions");
    assert!(alices <= PER_SUBJECT, "{alices} of alice's");
}

pub(crate) async fn concurrent_uses_have_one_winner(store: Arc<dyn Store>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.use_once(h("decision"), 700, 100).await.unwrap()
            })
        })
        .collect();
    let mut first = 0;
    for task in tasks {
        first += usize::from(task.await.unwrap());
    }
    assert_eq!(first, 1);
}

pub(crate) async fn concurrent_redeem_has_one_winner(store: Arc<dyn Store>) {
    store.put_client(client("c1")).await.unwrap();
    store
        .put_code(code("code-1", "c1", "fam-1", 600))
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.redeem_code(h("code-1"), 100).await.unwrap()
            })
        })
        .collect();
    let mut redeemed = 0;
    for task in tasks {
        match task.await.unwrap() {
            CodeRedemption::Redeemed(_) => redeemed += 1,
            CodeRedemption::Replayed { family_id } => assert_eq!(family_id, "fam-1"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(redeemed, 1);
    assert!(store.is_family_revoked("fam-1").await.unwrap());
}

/// Stores `r1` (client `c1`, family `fam`) and has [`RACERS`] tasks rotate it at once, racer
/// `i` to `next-i`, with `grace`; their outcomes by racer.
async fn race_rotations(
    store: &Arc<dyn Store>,
    grace: i64,
) -> (RefreshTokenRecord, Vec<(usize, Rotation)>) {
    store.put_client(client("c1")).await.unwrap();
    let r1 = refresh("r1", "c1", "fam", 10_000);
    store.put_refresh(r1.clone()).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            let next = r1.successor(h(&format!("next-{i}")), 20_000);
            tokio::spawn(async move {
                barrier.wait().await;
                (
                    i,
                    store
                        .rotate_refresh(h("r1"), next, 100, grace)
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    (r1, outcomes)
}

pub(crate) async fn concurrent_rotation_has_one_winner(store: Arc<dyn Store>) {
    let (r1, outcomes) = race_rotations(&store, NO_GRACE).await;
    let (mut rotated, mut reused, mut winner) = (0, 0, None);
    for outcome in outcomes {
        match outcome {
            (i, Rotation::Rotated(old)) => {
                assert_eq!(old, r1);
                rotated += 1;
                winner = Some(i);
            }
            (_, Rotation::Reused { family_id }) => {
                assert_eq!(family_id, "fam");
                reused += 1;
            }
            (_, Rotation::Revoked) => {}
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rotated, 1);
    assert!(reused >= 1, "the first loser detects the reuse");
    assert!(store.is_family_revoked("fam").await.unwrap());
    // Only the winner's successor was stored, and the revocation covers it.
    let winner = winner.unwrap();
    for i in 0..RACERS {
        let stored = store.get_refresh(h(&format!("next-{i}"))).await.unwrap();
        assert_eq!(stored.is_some(), i == winner);
    }
    assert_eq!(
        store
            .rotate_refresh(
                h(&format!("next-{winner}")),
                r1.successor(h("after"), 30_000),
                200,
                NO_GRACE
            )
            .await
            .unwrap(),
        Rotation::Revoked
    );
}

/// Concurrent presentations of one refresh token within the grace period (a client retrying
/// while its first request is still in flight): one wins the rotation, the others are retries,
/// the grant survives, and afterwards the family has a single current token.
pub(crate) async fn concurrent_retries_have_one_winner(store: Arc<dyn Store>) {
    let (r1, outcomes) = race_rotations(&store, GRACE).await;
    let (mut rotated, mut retried) = (0, 0);
    for (_, outcome) in outcomes {
        match outcome {
            Rotation::Rotated(old) => {
                assert_eq!(old, r1);
                rotated += 1;
            }
            Rotation::Retried(old) => {
                assert_eq!(old, r1);
                retried += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((rotated, retried), (1, RACERS - 1));
    assert!(!store.is_family_revoked("fam").await.unwrap());
    // The family has a current token: the last racer's, which r1 now points at. One more retry
    // replaces it, and the replacement rotates normally.
    assert!(matches!(
        store
            .put_refresh(refresh("extra", "c1", "fam", 20_000))
            .await,
        Err(StoreError::Conflict("current refresh token of the family"))
    ));
    assert_eq!(
        store
            .rotate_refresh(h("r1"), r1.successor(h("last"), 20_000), 110, GRACE)
            .await
            .unwrap(),
        Rotation::Retried(r1.clone())
    );
    let last = store.get_refresh(h("last")).await.unwrap().unwrap();
    assert!(matches!(
        store
            .rotate_refresh(h("last"), last.successor(h("after"), 30_000), 120, GRACE)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    // No racer's token was left live beside it: each is refused (the first as reuse, which
    // ends the family).
    for i in 0..RACERS {
        let name = format!("next-{i}");
        let racer = store.get_refresh(h(&name)).await.unwrap().expect("stored");
        let outcome = store
            .rotate_refresh(
                h(&name),
                racer.successor(h(&format!("probe-{i}")), 30_000),
                130,
                NO_GRACE,
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, Rotation::Reused { .. } | Rotation::Revoked),
            "{name}: {outcome:?}"
        );
    }
    assert!(store.is_family_revoked("fam").await.unwrap());
}
