//! Durable state of the OAuth authorization server: clients, users, authorization codes,
//! refresh-token families, revocations and signing keys.
//!
//! [`Store`] is the interface the OAuth endpoints use; [`MemoryStore`] keeps everything in
//! the process (tests, throw-away servers) and `SqliteStore` (feature `sqlite`) in one SQLite
//! file (one process, survives restarts), and `PostgresStore` (feature `postgres`) in a
//! PostgreSQL database that several replicas share. Each implements the same trait, so
//! callers hold an `Arc<dyn Store>` and never name the backend.
//!
//! # Contract of every backend
//!
//! - **Time comes from the caller.** Every operation that depends on time takes `now` (unix
//!   seconds); the store never reads the clock. A record is expired when `now >= expires_at`.
//! - **Secrets are stored only as hashes.** Authorization codes, refresh tokens and client
//!   secrets are generated with high entropy and stored as their SHA-256 ([`hash_secret`]);
//!   user passwords as argon2 PHC strings, hashed by the caller. The `Debug` output of every
//!   record hides hashes, secrets and key material, and [`StoreError`] never contains them.
//! - **Codes and tokens belong to a stored client.** [`Store::put_code`] and
//!   [`Store::put_refresh`] fail with [`StoreError::UnknownClient`] otherwise (store a Client
//!   ID Metadata Document client with [`Store::put_client`] first, with its `metadata_url`), and
//!   [`Store::delete_client`] deletes the client's codes and refresh tokens with it.
//! - **Records name their user by username.** Codes, refresh tokens and sessions carry the
//!   user's `username` as their `subject`; [`Store::delete_user`] ends all of them with the
//!   user (revoking the families of the codes and tokens), in one step, and
//!   [`Store::end_sessions_of`] signs a user out everywhere and keeps the rest.
//! - **Grants form families.** The authorization request picks a random `family_id` and stores
//!   it in the code; every refresh token issued from that code, directly or by rotation,
//!   carries the same `family_id`. Revoking the family ([`Store::revoke_family`]) makes every
//!   refresh token of it fail with [`Rotation::Revoked`], including ones stored afterwards.
//!   Access tokens are JWTs the store never sees: a resource server that must honour family
//!   revocation checks [`Store::is_family_revoked`] with a family claim, or the caller revokes
//!   the tokens' `jti`s with [`Store::revoke_access_token`].
//! - **Single use is atomic.** [`Store::redeem_code`] and [`Store::rotate_refresh`] decide and
//!   record in one step: of any number of concurrent calls for the same code, exactly one
//!   succeeds, and a family never has more than one current refresh token. A replayed code or a
//!   reused (already rotated) refresh token revokes its family in the same step (RFC 9700
//!   §4.14.2, OAuth 2.1 §4.1.3), with one exception below.
//! - **A lost rotation may be retried, briefly.** A rotation whose answer never reached the
//!   client (a timeout, a crash after the commit) would otherwise make the client's retry look
//!   like reuse and end its grant. So [`Store::rotate_refresh`] takes a `grace` period: within
//!   it, a token presented again while the token that replaced it (its direct successor) is
//!   still unused is exchanged once more ([`Rotation::Retried`]). The retry gets a *fresh*
//!   successor and the unused one is retired: only hashes are stored, so the earlier token
//!   cannot be sent again, and replacing it keeps at most one live refresh token per family, so
//!   a retry never forks the grant. The window is measured from the presented token's first
//!   rotation, so a second lost answer can be retried too within the same window. Outside the
//!   window, once the successor was used (the client evidently received it), or when the
//!   retired successor is presented later (it is nobody's predecessor), it is reuse as before.
//!   The trade-off: an attacker replaying a stolen, just-rotated token within the window gets a
//!   pair, and the legitimate client's next refresh (with the retired successor) is then
//!   detected as reuse and revokes the family — the same outcome as when the two race without a
//!   window.
//! - **Nothing expires by itself.** Expired records are still answered as expired (or replayed,
//!   for used codes and rotated tokens) until [`Store::purge_expired`] removes them; call it
//!   periodically (every few minutes). The purge also removes clients nobody vouched for
//!   ([`ClientRecord::vouched_for`]) once they hold nothing and are older than
//!   [`UNUSED_CLIENT_RETENTION_SECS`], so self-registrations cannot pile up.
//! - **Futures run to completion.** Dropping a future does not undo an operation that already
//!   reached the backend (a redeemed code stays redeemed).
//! - **The authorization pages share their state through the store too**, so that replicas on
//!   one store serve any step of a sign-in: the secret their keys are derived from
//!   ([`Store::shared_secret`], stored once, the same for every caller), the sessions of
//!   signed-in browsers ([`Store::put_session`], at most so many per user and in all) and the
//!   single use of each consent decision ([`Store::use_once`]).
//! - **One signing key at a time, agreed through the store.** Servers install a new signing
//!   key (the first one, a rotation, a change of algorithm) with
//!   [`Store::replace_signing_key`], a compare-and-swap on the current key, so replicas that
//!   start or rotate together end with one current key, and every one of them signs with the
//!   key the store names current.
//!
//! # Typical token-endpoint flows
//!
//! ```no_run
//! # use mcp_gatekeeper::store::*;
//! # async fn flows(store: &dyn Store, code: &str, refresh: &str, new_refresh: &str, now: i64)
//! # -> Result<(), StoreError> {
//! // authorization_code grant
//! match store.redeem_code(hash_secret(code), now).await? {
//!     CodeRedemption::Redeemed(grant) => { /* check client, redirect_uri, PKCE; issue tokens */ }
//!     CodeRedemption::Replayed { family_id } => { /* invalid_grant; the family is revoked */ }
//!     CodeRedemption::Expired | CodeRedemption::Unknown => { /* invalid_grant */ }
//! }
//!
//! // refresh_token grant: check the client the token was issued to before using the token up
//! let Some(old) = store.get_refresh(hash_secret(refresh)).await? else { return Ok(()) };
//! let next = old.successor(hash_secret(new_refresh), now + 30 * 86_400);
//! match store.rotate_refresh(old.token_hash, next, now, 60).await? {
//!     Rotation::Rotated(grant) | Rotation::Retried(grant) => {
//!         /* issue an access token for grant.scope/resource (audit a retry as such) */
//!     }
//!     Rotation::Reused { family_id } => { /* invalid_grant; the family is revoked */ }
//!     Rotation::Expired | Rotation::Revoked | Rotation::Unknown => { /* invalid_grant */ }
//! }
//! # Ok(()) }
//! ```

use std::fmt;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod conformance;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;

/// How long a family revocation is remembered after it was made (for a family ended with its
/// user, after the date [`Store::delete_user`] gives it), in seconds, once no code or refresh
/// token of the family is left (one day). Access tokens must not live longer (the
/// authorization server refuses to build with a longer `access_token_lifetime`): a resource
/// server checking [`Store::is_family_revoked`] must never see a revoked family come back while
/// one of its access tokens is still unexpired.
pub const FAMILY_REVOCATION_RETENTION_SECS: i64 = 86_400;

/// How long a client nobody vouched for ([`ClientRecord::vouched_for`] is `false`) is kept
/// while it holds no authorization code and no refresh token, in seconds since it was created
/// (one day). Long enough to finish a sign-in that started with the registration; short enough
/// that registrations which were never used do not accumulate.
pub const UNUSED_CLIENT_RETENTION_SECS: i64 = 86_400;

/// The SHA-256 of a generated secret (authorization code, refresh token, client secret), the
/// form in which the store keeps it.
///
/// Only for secrets with at least 128 bits of entropy; user passwords are argon2-hashed.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether a token first rotated at `rotated_at` may still be retried at `now` with a grace
/// period of `grace` seconds (step 3 of [`Store::rotate_refresh`]). Shared by the backends so
/// they draw the line at the same second.
fn within_grace(rotated_at: i64, now: i64, grace: i64) -> bool {
    grace > 0 && now.saturating_sub(rotated_at) <= grace
}

/// How many of a subject's live sessions [`Store::put_session`] deletes to store a new one
/// (its oldest first), or `None` when the new one may not be stored: `live` sessions are live
/// in all, `mine` of them the subject's. Shared by the backends so they draw the same lines.
fn session_evictions(
    live: usize,
    mine: usize,
    max_per_subject: usize,
    max_live: usize,
) -> Option<usize> {
    if max_per_subject == 0 || max_live == 0 {
        return None;
    }
    let evict = (mine + 1).saturating_sub(max_per_subject).min(mine);
    (live.saturating_sub(evict) < max_live).then_some(evict)
}

/// Durable OAuth state. Object safe: hold it as `Arc<dyn Store>`.
///
/// Every method returns a boxed `Send` future; see the [module documentation](self) for the
/// rules all backends follow. Methods named `put_*` for codes, refresh tokens and signing keys
/// insert and fail with [`StoreError::Conflict`] when the key exists; `put_client` and
/// `put_user` insert or replace.
pub trait Store: Send + Sync + 'static {
    /// Inserts a client, or replaces the client with the same `client_id` (its codes and
    /// refresh tokens stay).
    fn put_client(&self, client: ClientRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The client with this `client_id`.
    fn get_client<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClientRecord>, StoreError>>;

    /// Deletes a client with its authorization codes and refresh tokens; `false` if there was
    /// no such client.
    fn delete_client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Inserts a user, or replaces the user with the same `username` (compared exactly).
    fn put_user(&self, user: UserRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The user with this `username`.
    fn get_user<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserRecord>, StoreError>>;

    /// Deletes a user and ends everything the user holds, atomically: their sign-in sessions,
    /// their authorization codes and refresh tokens (every record whose `subject` is
    /// `username`), and the families of those codes and tokens, which are revoked, so that the
    /// access tokens already issued from them are refused by resource servers that check
    /// [`Store::is_family_revoked`]. `false` if there was no such user; whatever was left under
    /// the name is ended all the same.
    ///
    /// A refresh token of the user is then unknown ([`Rotation::Unknown`]); one stored into
    /// such a family afterwards (by a code exchange or rotation that was under way) is refused
    /// as [`Rotation::Revoked`]. Access tokens whose family holds no code or refresh token any
    /// more (a grant without a refresh token, once its code was purged) cannot be found: they
    /// end at their expiry.
    ///
    /// Other revocations are dated by the caller's `now`; this operation has none (and the
    /// store never reads the clock), so a family it revokes is dated by the latest expiry of
    /// the codes and tokens deleted with it, or by an earlier revocation of the family if that
    /// is later. [`Store::purge_expired`] keeps the revocation
    /// [`FAMILY_REVOCATION_RETENTION_SECS`] past that date: longer than any access token
    /// issued with those codes and tokens can live.
    fn delete_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Ends every sign-in session of `subject` (a username) at once, on every server of the
    /// store, without touching the user: after a password change, say, so that whoever signed
    /// in with the old password is signed out. Returns how many live sessions (`now <
    /// expires_at`) were ended; expired ones of the subject are deleted too, uncounted. Tokens
    /// already issued stay valid.
    ///
    /// The default answers with a [`StoreError::Backend`] saying the store cannot end a user's
    /// sessions, so that a backend written before this method existed still compiles; every
    /// backend of this crate implements it, and the conformance suite checks it. An error,
    /// not `Ok(0)`: an administrator who asked to sign someone out must not be told it was
    /// done.
    fn end_sessions_of<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let _ = (subject, now);
        Box::pin(async {
            Err(StoreError::backend(
                "this store cannot end a user's sessions",
            ))
        })
    }

    /// Every stored client, ordered by `client_id` (byte order), for administration (the
    /// `mcp-gatekeeper clients list` command); the endpoints never list clients.
    ///
    /// Unbounded: the answer holds every client at once. That is meant: the clients are the
    /// configured ones plus the self-registered and metadata-document ones, which the
    /// authorization server caps and [`Store::purge_expired`] removes once unused.
    ///
    /// The default answers with a [`StoreError::Backend`] saying the store cannot list its
    /// clients, so that a backend written before this method existed still compiles; every
    /// backend of this crate implements it, and the conformance suite checks it.
    fn list_clients(&self) -> BoxFuture<'_, Result<Vec<ClientRecord>, StoreError>> {
        Box::pin(async { Err(StoreError::backend("this store cannot list its clients")) })
    }

    /// Every stored user, ordered by `username` (byte order), for administration (the
    /// `mcp-gatekeeper users list` command). The records hold the password hashes, as
    /// [`Store::get_user`]'s do; whoever shows them leaves the hashes out.
    ///
    /// Unbounded, like [`Store::list_clients`]: users are created by the operator (in code or
    /// from the command line) or by a [`Login`](crate::oauth::Login) hook, one per person
    /// who signed in. The default, as for [`Store::list_clients`], answers that the store
    /// cannot list its users.
    fn list_users(&self) -> BoxFuture<'_, Result<Vec<UserRecord>, StoreError>> {
        Box::pin(async { Err(StoreError::backend("this store cannot list its users")) })
    }

    /// Stores a new, unused authorization code.
    ///
    /// Fails with [`StoreError::Conflict`] if a code with this hash exists and with
    /// [`StoreError::UnknownClient`] if its client is not stored.
    fn put_code(&self, code: AuthCodeRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Uses up an authorization code, atomically.
    ///
    /// In this order: no such code → [`CodeRedemption::Unknown`]; the code was redeemed before →
    /// its family is revoked (as of `now`) and [`CodeRedemption::Replayed`]; `now >=
    /// expires_at` → [`CodeRedemption::Expired`]; otherwise the code is marked used and
    /// [`CodeRedemption::Redeemed`] returns its grant. A used code is remembered until it is
    /// purged after its expiry.
    fn redeem_code(
        &self,
        code_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<CodeRedemption, StoreError>>;

    /// Stores the first refresh token of a family (the one issued with the code's access token)
    /// as the family's current token.
    ///
    /// Fails with [`StoreError::Conflict`] if a token with this hash exists or the family
    /// already has a current token (continue a family with [`Store::rotate_refresh`]), and with
    /// [`StoreError::UnknownClient`] if its client is not stored. A token stored into a revoked
    /// family is stored, and refused when used.
    fn put_refresh(&self, token: RefreshTokenRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The refresh token with this hash, whatever its state (current, rotated, expired, or of a
    /// revoked family).
    ///
    /// For checking, before [`Store::rotate_refresh`] or [`Store::revoke_refresh`], that the
    /// token was issued to the authenticated client (RFC 6749 §6, RFC 7009 §2.1), and for
    /// building the successor ([`RefreshTokenRecord::successor`]). Whether the token may be
    /// used is decided only by [`Store::rotate_refresh`].
    fn get_refresh(
        &self,
        token_hash: [u8; 32],
    ) -> BoxFuture<'_, Result<Option<RefreshTokenRecord>, StoreError>>;

    /// Exchanges a refresh token for its successor `new`, atomically; `grace` is the retry
    /// window in seconds (zero or less: none).
    ///
    /// In this order:
    /// 1. no token `old_hash` → [`Rotation::Unknown`];
    /// 2. its family is revoked → [`Rotation::Revoked`];
    /// 3. it was rotated before, and all of these hold: `now - rotated_at <= grace` (`rotated_at`
    ///    being its first rotation), the token that replaced it (its direct successor) is still
    ///    the family's current token (never used itself) and `now` is before the successor's
    ///    `expires_at` → a retry of a rotation whose answer was lost: the successor is marked
    ///    rotated (as of `now`), `new` becomes the family's current token and `old`'s successor,
    ///    and [`Rotation::Retried`] returns the old record;
    /// 4. it was rotated before otherwise (reuse: a copy was stolen, the client replayed it, or
    ///    it is a successor a retry retired) → the family is revoked (as of `now`) and
    ///    [`Rotation::Reused`];
    /// 5. `now >= expires_at` → [`Rotation::Expired`];
    /// 6. otherwise `old` is marked rotated, `new` becomes the family's current token and `old`'s
    ///    successor, and [`Rotation::Rotated`] returns the old record.
    ///
    /// See the [module documentation](self) for why a retry gets a fresh successor and what the
    /// window costs. `new` must continue the grant: same `family_id`, `client_id`, `subject`,
    /// `scope` and `resource` as `old` (RFC 6749 §6), else [`StoreError::Invalid`] and nothing
    /// changes; build it with [`RefreshTokenRecord::successor`]. A `new.token_hash` that exists
    /// is a [`StoreError::Conflict`]. A rotated token is remembered until it is purged after its
    /// own expiry; reuse after that is [`Rotation::Unknown`].
    fn rotate_refresh(
        &self,
        old_hash: [u8; 32],
        new: RefreshTokenRecord,
        now: i64,
        grace: i64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>>;

    /// Revokes a refresh token by revoking its whole family (RFC 7009 §2.1: revoking a refresh
    /// token ends the grant); `false` if the token is unknown (RFC 7009 answers success anyway).
    fn revoke_refresh(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Revokes a family as of `now`: its refresh tokens, present and future, are refused.
    /// Revoking a revoked family keeps the first revocation time.
    fn revoke_family<'a>(
        &'a self,
        family_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Whether the family is revoked (remembered as long as
    /// [`FAMILY_REVOCATION_RETENTION_SECS`] describes).
    fn is_family_revoked<'a>(
        &'a self,
        family_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Revokes an access token by its `jti` until `expires_at` (its `exp`), after which the
    /// token is refused anyway and the revocation may be purged. Revoking again keeps the later
    /// expiry.
    fn revoke_access_token<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Whether the access token with this `jti` is revoked.
    fn is_access_token_revoked<'a>(
        &'a self,
        jti: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Stores a new signing key; [`StoreError::Conflict`] if its `kid` exists (key material is
    /// never replaced under a published `kid`).
    fn put_signing_key(&self, key: SigningKeyRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every signing key, retired ones included, newest first (by `created_at`; keys created in
    /// the same second: the one stored last first). Sign with the newest unretired key; publish
    /// every key whose tokens may still be alive.
    fn signing_keys(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, StoreError>>;

    /// Retires a signing key as of `now`: no longer used for signing, still published for
    /// verification. Retiring a retired key keeps the first time; `false` if the key is unknown.
    fn retire_signing_key<'a>(
        &'a self,
        kid: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Deletes a signing key (once no token signed with it can be alive); `false` if unknown.
    fn delete_signing_key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Makes `key` the current signing key if the current one is still `replaces`, in one
    /// atomic step: the compare-and-swap that lets servers sharing a store agree on one key.
    ///
    /// The *current* signing key is the newest unretired key (the first unretired one in
    /// [`Store::signing_keys`]' order), `None` when there is no unretired key. When it is
    /// `replaces`, `key` is stored, every other unretired key is retired as of `now` (still
    /// published until its tokens expire), and the answer is `true`. Otherwise nothing changes
    /// and the answer is `false`: another server installed a key first, and the caller signs
    /// with that one (read it with [`Store::signing_keys`]). Of any number of concurrent calls
    /// naming the same current key exactly one succeeds, so servers starting together on an
    /// empty store (`replaces` `None`), or finding the key due for rotation together, end with
    /// one current key.
    ///
    /// Fails with [`StoreError::Conflict`] if a key with `key.kid` exists, and with
    /// [`StoreError::Invalid`] if `key` is already retired.
    fn replace_signing_key<'a>(
        &'a self,
        replaces: Option<&'a str>,
        key: SigningKeyRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Removes what has expired by `now`: authorization codes and refresh tokens (used or not),
    /// access-token revocations, sessions and recorded single uses
    /// ([`Store::use_once`]), family revocations older than
    /// [`FAMILY_REVOCATION_RETENTION_SECS`] with no code or refresh token left, and unused
    /// clients nobody vouched for: self-registered or metadata-document clients
    /// ([`ClientRecord::vouched_for`] is `false`) created more than
    /// [`UNUSED_CLIENT_RETENTION_SECS`] before `now` that hold no authorization code and no
    /// refresh token (after the expired ones are gone). Configured clients stay whatever their
    /// age. Returns the number of records removed.
    ///
    /// A purged client that comes back is unknown (`invalid_client`): an RFC 7591 client
    /// registers again, a metadata-document client is fetched again. A self-registered client
    /// that never holds a refresh token (no `refresh_token` grant) is purged a day after its
    /// registration however often it signs users in.
    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The secret named `name`, the same for every server on this store: the one stored under
    /// `name`, or, when there is none yet, `candidate`, stored now. Of any number of concurrent
    /// first calls (replicas starting together) exactly one candidate is stored and every call
    /// returns that one; a stored secret is never replaced (delete it by hand to rotate it,
    /// then restart every server).
    ///
    /// The authorization server derives the keys of its pages from one (sealed authorization
    /// requests, CSRF tokens, device cookies), so that a page one replica served is accepted
    /// by all. It is as sensitive as the signing keys stored next to it; nothing prints it.
    fn shared_secret<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, Result<[u8; 32], StoreError>>;

    /// Starts a browser session, atomically, within two bounds: a subject keeps at most
    /// `max_per_subject` live sessions (its oldest live ones, by `created_at`, are deleted to
    /// make room for the new one) and the store at most `max_live` live sessions in all.
    ///
    /// Returns `false` and changes nothing when the new session would make more than
    /// `max_live` live sessions after those deletions (or a bound is zero). Concurrent calls
    /// never exceed either bound. A session is live while `now < expires_at`. Fails with
    /// [`StoreError::Conflict`] if a session with this hash exists.
    fn put_session(
        &self,
        session: SessionRecord,
        max_per_subject: usize,
        max_live: usize,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// The live session with this hash (`now < expires_at`); `None` for an unknown, ended or
    /// expired one.
    fn get_session(
        &self,
        session_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, StoreError>>;

    /// Ends a session at once (sign-out, a new sign-in in the same browser); `false` if there
    /// was none.
    fn delete_session(&self, session_hash: [u8; 32]) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Records the single use of `key` (the hash of something that may be used once, such as
    /// a consent decision) until `expires_at`: `true` the first time, `false` while an earlier
    /// use is remembered (`now < expires_at` of that use). Atomic: of any number of concurrent
    /// calls with one key exactly one gets `true`. Once the remembered use has expired the key
    /// counts as unused (whatever it stood for must have expired with it).
    fn use_once(
        &self,
        key: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
}

/// A registered OAuth client (RFC 7591 registration, a Client ID Metadata Document, or
/// configuration).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The `client_id` (for a metadata-document client, the document's URL).
    pub client_id: String,
    /// SHA-256 of the client secret ([`hash_secret`]); `None` for a public client.
    pub secret_hash: Option<[u8; 32]>,
    /// Human-readable name shown on the consent page (`client_name`).
    pub name: String,
    /// The registered redirect URIs, matched exactly (loopback ports aside) by the caller.
    pub redirect_uris: Vec<String>,
    /// The grant types the client may use (`authorization_code`, `refresh_token`,
    /// `client_credentials`).
    pub grant_types: Vec<String>,
    /// The scopes the client may be granted.
    pub allowed_scopes: Vec<String>,
    /// The role of client-credentials tokens issued to this client, if any.
    pub role: Option<String>,
    /// How the client authenticates at the token endpoint (`none`, `client_secret_basic`,
    /// `client_secret_post`, `tls_client_auth`, `self_signed_tls_client_auth`,
    /// `private_key_jwt`).
    pub token_endpoint_auth_method: String,
    /// The certificate a client authenticating with mutual TLS must present (RFC 8705 §2):
    /// `Some` exactly when `token_endpoint_auth_method` is `tls_client_auth` or
    /// `self_signed_tls_client_auth` (then `secret_hash` is `None`).
    pub tls_client_auth: Option<TlsClientAuth>,
    /// The URL of the client's metadata document (CIMD), if it registered that way.
    pub metadata_url: Option<String>,
    /// The client registered itself (RFC 7591): not vouched for by the operator. `false` for
    /// configured clients and for metadata-document clients (those have a `metadata_url`).
    pub self_registered: bool,
    /// When the client was registered (unix seconds).
    pub created_at: i64,
}

impl ClientRecord {
    /// Whether the client authenticates (with a secret or a TLS client certificate), rather
    /// than only naming itself as a public client does.
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some() || self.tls_client_auth.is_some()
    }

    /// Whether the operator vouched for the client, its redirect URIs included: it was
    /// configured, neither self-registered nor introduced by a metadata document. Anyone can
    /// create a client that is not, so such clients are never trusted to receive error
    /// redirects, and are purged when unused ([`Store::purge_expired`]).
    pub fn vouched_for(&self) -> bool {
        !self.self_registered && self.metadata_url.is_none()
    }
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("secret_hash", &self.secret_hash.as_ref().map(|_| Redacted))
            .field("name", &self.name)
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("allowed_scopes", &self.allowed_scopes)
            .field("role", &self.role)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("tls_client_auth", &self.tls_client_auth)
            .field("metadata_url", &self.metadata_url)
            .field("self_registered", &self.self_registered)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// How a client that authenticates with mutual TLS (RFC 8705 §2) is recognised by the
/// certificate it presents at the token endpoint.
///
/// The first four are `tls_client_auth` (§2.1): a certificate that chains to a CA the server
/// trusts, with the name registered in one of the RFC's `tls_client_auth_*` client-metadata
/// members. [`SelfSigned`](Self::SelfSigned) is `self_signed_tls_client_auth` (§2.2): one of
/// the certificates the client registered, whoever issued it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsClientAuth {
    /// `tls_client_auth_subject_dn`: the subject's distinguished name, as RFC 4514 writes it
    /// and `ClientCertificate::subject_dn` writes a certificate's (the authorization server
    /// stores a configured or registered name in that form: type names in their short form,
    /// values as written).
    SubjectDn(String),
    /// `tls_client_auth_san_dns`: a DNS name among the certificate's subject alternative names
    /// (compared without regard to ASCII case, as DNS names are).
    SanDns(String),
    /// `tls_client_auth_san_uri`: a URI among its subject alternative names (a SPIFFE ID).
    SanUri(String),
    /// `tls_client_auth_san_email`: an e-mail address among its subject alternative names.
    SanEmail(String),
    /// `self_signed_tls_client_auth`: the SHA-256 thumbprints of the certificates the client
    /// registered (its DER encoding hashed, as `x5t#S256`); any one of them authenticates.
    SelfSigned(Vec<[u8; 32]>),
}

impl TlsClientAuth {
    /// The `token_endpoint_auth_method`: `tls_client_auth` or `self_signed_tls_client_auth`.
    pub fn auth_method(&self) -> &'static str {
        match self {
            TlsClientAuth::SelfSigned(_) => "self_signed_tls_client_auth",
            _ => "tls_client_auth",
        }
    }

    /// The RFC 8705 client-metadata member naming the expected certificate and its value, for
    /// the four `tls_client_auth` forms.
    pub fn metadata_member(&self) -> Option<(&'static str, &str)> {
        match self {
            TlsClientAuth::SubjectDn(dn) => Some(("tls_client_auth_subject_dn", dn)),
            TlsClientAuth::SanDns(dns) => Some(("tls_client_auth_san_dns", dns)),
            TlsClientAuth::SanUri(uri) => Some(("tls_client_auth_san_uri", uri)),
            TlsClientAuth::SanEmail(email) => Some(("tls_client_auth_san_email", email)),
            TlsClientAuth::SelfSigned(_) => None,
        }
    }
}

#[cfg(feature = "mtls")]
impl TlsClientAuth {
    /// `self_signed_tls_client_auth` with the certificates in this PEM text (every
    /// `CERTIFICATE` section: a client may register the next certificate next to the current
    /// one, to change it without a gap). Only their SHA-256 thumbprints are kept.
    ///
    /// # Errors
    /// When the text holds no certificate, or a section that does not read as PEM or as an
    /// X.509 certificate.
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls")))]
    pub fn self_signed_pem(pem: impl AsRef<[u8]>) -> Result<Self, crate::ConfigError> {
        let invalid = |why: String| {
            crate::ConfigError::invalid(format!("self-signed client certificate PEM: {why}"))
        };
        let mut thumbprints = Vec::new();
        for section in x509_parser::pem::Pem::iter_from_buffer(pem.as_ref()) {
            let section = section.map_err(|e| invalid(e.to_string()))?;
            if section.label != "CERTIFICATE" {
                continue;
            }
            section.parse_x509().map_err(|e| invalid(e.to_string()))?;
            thumbprints.push(Sha256::digest(&section.contents).into());
        }
        if thumbprints.is_empty() {
            return Err(invalid("no CERTIFICATE section".to_owned()));
        }
        Ok(Self::SelfSigned(thumbprints))
    }
}

impl fmt::Debug for TlsClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsClientAuth::SelfSigned(thumbprints) => f
                .debug_tuple("SelfSigned")
                .field(&thumbprints.iter().map(hex::encode).collect::<Vec<_>>())
                .finish(),
            other => {
                let (member, value) = other.metadata_member().unwrap_or_default();
                write!(f, "{member}: {value:?}")
            }
        }
    }
}

/// A user who can sign in at the authorization endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The login name, also the `sub` of the user's tokens.
    pub username: String,
    /// The password as an argon2 PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// The user's role, if any.
    pub role: Option<String>,
    /// The scopes the user may grant.
    pub scopes: Vec<String>,
    /// When the user was created (unix seconds).
    pub created_at: i64,
}

impl UserRecord {
    /// Whether `password` is the user's password: the argon2 check the login page makes,
    /// without its queue and lockout, for tools and tests that hold a record (an
    /// administrator checking a password just set). It takes tens of milliseconds of CPU:
    /// call it off the async threads (`spawn_blocking`) where that matters.
    ///
    /// `false` for a user with no password (one a `Login` hook signed in) and for a hash that
    /// does not parse.
    pub fn verify_password(&self, password: &str) -> bool {
        use argon2::{
            Argon2,
            password_hash::{PasswordHash, PasswordVerifier},
        };
        PasswordHash::new(&self.password_hash).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    }

    /// Whether the user signs in with a password stored here (an argon2 hash), rather than
    /// through the application's `Login` hook, whose users are stored without one.
    pub fn has_password(&self) -> bool {
        argon2::password_hash::PasswordHash::new(&self.password_hash).is_ok()
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("password_hash", &Redacted)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// An authorization code and the grant it stands for.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthCodeRecord {
    /// SHA-256 of the code ([`hash_secret`]).
    pub code_hash: [u8; 32],
    /// The client the code was issued to.
    pub client_id: String,
    /// The user who consented (the tokens' `sub`).
    pub subject: String,
    /// The `redirect_uri` of the authorization request, to compare at the token endpoint.
    pub redirect_uri: String,
    /// The PKCE `code_challenge` (method `S256`).
    pub code_challenge: String,
    /// The consented scopes, space-separated.
    pub scope: String,
    /// The RFC 8707 `resource` the tokens are for, if one was requested.
    pub resource: Option<String>,
    /// The family of every token issued from this code.
    pub family_id: String,
    /// When the code expires (unix seconds; at most 10 minutes after issue).
    pub expires_at: i64,
}

impl fmt::Debug for AuthCodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCodeRecord")
            .field("code_hash", &Redacted)
            .field("client_id", &self.client_id)
            .field("subject", &self.subject)
            .field("redirect_uri", &self.redirect_uri)
            .field("code_challenge", &Redacted)
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field("family_id", &self.family_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A refresh token and the grant it continues.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token ([`hash_secret`]).
    pub token_hash: [u8; 32],
    /// The family (grant) the token belongs to.
    pub family_id: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The user the grant is for (the tokens' `sub`).
    pub subject: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// The RFC 8707 `resource` the grant is for, if any.
    pub resource: Option<String>,
    /// The SHA-256 thumbprint of the client certificate the token is bound to, if any: a
    /// public client's refresh token is bound to the certificate it presented when the token
    /// was issued (RFC 8705 §4), and is only honoured with that certificate. Successors keep it.
    pub certificate_thumbprint: Option<[u8; 32]>,
    /// When the token expires (unix seconds).
    pub expires_at: i64,
}

impl RefreshTokenRecord {
    /// The token that replaces this one on rotation: the same grant (family, client, subject,
    /// scope, resource, certificate binding) under a new hash and expiry.
    pub fn successor(&self, token_hash: [u8; 32], expires_at: i64) -> Self {
        Self {
            token_hash,
            expires_at,
            ..self.clone()
        }
    }

    /// Whether `next` continues the same grant as `self`.
    fn same_grant(&self, next: &Self) -> bool {
        self.family_id == next.family_id
            && self.client_id == next.client_id
            && self.subject == next.subject
            && self.scope == next.scope
            && self.resource == next.resource
            && self.certificate_thumbprint == next.certificate_thumbprint
    }
}

impl fmt::Debug for RefreshTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenRecord")
            .field("token_hash", &Redacted)
            .field("family_id", &self.family_id)
            .field("client_id", &self.client_id)
            .field("subject", &self.subject)
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field(
                "certificate_thumbprint",
                &self.certificate_thumbprint.map(hex::encode),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A key the authorization server signs access tokens with.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id (`kid` header and JWKS entry).
    pub kid: String,
    /// The JWS algorithm: `ES256` or `EdDSA`.
    pub algorithm: String,
    /// The private key, PKCS#8 DER.
    pub private_key_der: Vec<u8>,
    /// The public key, SubjectPublicKeyInfo DER.
    pub public_key_der: Vec<u8>,
    /// When the key was created (unix seconds).
    pub created_at: i64,
    /// When the key stopped being used for signing, if it did.
    pub retired_at: Option<i64>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_key_der", &Redacted)
            .field(
                "public_key_der",
                &format_args!("{} bytes", self.public_key_der.len()),
            )
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// A browser signed in at the authorization server's login page: the session its cookie
/// names. Only the cookie's hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session cookie's value ([`hash_secret`]).
    pub session_hash: [u8; 32],
    /// The signed-in user (the `sub` of the tokens the user consents to).
    pub subject: String,
    /// The scopes the user may grant; `None`: every scope the server supports.
    pub scopes: Option<Vec<String>>,
    /// When the session started (unix seconds): a subject's oldest sessions go first.
    pub created_at: i64,
    /// When it ends (unix seconds).
    pub expires_at: i64,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("session_hash", &Redacted)
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The outcome of [`Store::redeem_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// The code was unused and unexpired; it is now used. The grant to check and issue.
    Redeemed(AuthCodeRecord),
    /// The code was redeemed before. The store has revoked the family; the caller answers
    /// `invalid_grant` and revokes whatever else it issued from the code (access-token `jti`s).
    Replayed {
        /// The family of the tokens issued from the code.
        family_id: String,
    },
    /// The code expired unused.
    Expired,
    /// No such code (never issued, or purged).
    Unknown,
}

/// The outcome of [`Store::rotate_refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was its family's current token; the successor replaced it. The old record, for
    /// the grant's client, subject, scope and resource.
    Rotated(RefreshTokenRecord),
    /// The token had been rotated moments ago (within the grace period) and its successor was
    /// never used: a retry of a rotation whose answer was lost. The unused successor is retired
    /// and the new one replaced it. The old record, as for [`Rotation::Rotated`].
    Retried(RefreshTokenRecord),
    /// The token had been rotated before: reuse. The store has revoked the family.
    Reused {
        /// The revoked family.
        family_id: String,
    },
    /// The token expired.
    Expired,
    /// The token's family is revoked.
    Revoked,
    /// No such token (never issued, or purged).
    Unknown,
}

/// Why a store operation failed. Messages never contain secrets or hashes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, database error, a task that did not finish). The message says
    /// what failed; the underlying error, when there is one, is the [`source`](std::error::Error::source)
    /// (a `rusqlite::Error`, an `std::io::Error`, ...), for callers that tell causes apart.
    #[error("store backend failed: {message}")]
    Backend {
        /// What failed, with the cause's own description.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The backend cannot be reached or cannot serve right now (a database that is down,
    /// restarting or overloaded, a connection that was lost, a pool with no free connection
    /// in time). The operation may be retried later; one whose connection was lost while it
    /// committed may have taken effect (a retried code redemption then reads as a replay). The
    /// HTTP layer answers `503` and never treats it as a negative answer (a revocation check
    /// that cannot be made refuses the token).
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What failed, with the cause's own description.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// A record with the same key exists: the named kind of record (`authorization code`,
    /// `refresh token`, `current refresh token of the family`, `signing key`, `session`).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The record names a client the store does not hold.
    #[error("unknown client `{0}`")]
    UnknownClient(String),
    /// The request is inconsistent (a rotation that does not continue the grant).
    #[error("invalid store request: {0}")]
    Invalid(&'static str),
    /// Stored data could not be read back (a corrupt or hand-edited database).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database was written by a newer version with a schema this version does not know.
    #[error("database schema version {found} is newer than the newest this build knows ({known})")]
    SchemaTooNew {
        /// The schema version found in the database.
        found: i64,
        /// The newest schema version this build knows.
        known: i64,
    },
}

impl StoreError {
    /// A backend failure with no underlying error (a task that did not finish, a state the
    /// backend cannot be in).
    pub fn backend(message: impl Into<String>) -> Self {
        StoreError::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// A backend failure caused by `source`; `context` says what was being done (the message is
    /// `"<context>: <source>"`).
    pub fn backend_from(
        context: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend {
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let client = ClientRecord {
            client_id: "c1".into(),
            secret_hash: Some([0xAB; 32]),
            name: "Client".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into()],
            allowed_scopes: vec!["read".into()],
            role: None,
            token_endpoint_auth_method: "client_secret_basic".into(),
            tls_client_auth: None,
            metadata_url: None,
            self_registered: false,
            created_at: 1,
        };
        let user = UserRecord {
            username: "alice".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            role: Some("admin".into()),
            scopes: vec![],
            created_at: 1,
        };
        let code = AuthCodeRecord {
            code_hash: [0xAB; 32],
            client_id: "c1".into(),
            subject: "alice".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "CHALLENGE-VALUE".into(),
            scope: "read".into(),
            resource: None,
            family_id: "f1".into(),
            expires_at: 10,
        };
        let refresh = RefreshTokenRecord {
            token_hash: [0xAB; 32],
            family_id: "f1".into(),
            client_id: "c1".into(),
            subject: "alice".into(),
            scope: "read".into(),
            resource: None,
            certificate_thumbprint: None,
            expires_at: 10,
        };
        let key = SigningKeyRecord {
            kid: "k1".into(),
            algorithm: "ES256".into(),
            private_key_der: vec![0xAB; 40],
            public_key_der: vec![0xCD; 20],
            created_at: 1,
            retired_at: None,
        };
        let session = SessionRecord {
            session_hash: [0xAB; 32],
            subject: "alice".into(),
            scopes: None,
            created_at: 1,
            expires_at: 10,
        };
        let printed = format!(
            "{client:?} {user:?} {code:?} {refresh:?} {key:?} {session:?} {:?}",
            CodeRedemption::Redeemed(code.clone())
        );
        for secret in ["171", "ab", "AB", "argon2", "CHALLENGE", "205", "cd"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("<redacted>"));
        assert!(printed.contains("alice") && printed.contains("f1") && printed.contains("k1"));
        assert!(printed.contains("20 bytes"));
    }

    #[test]
    fn sessions_make_room_within_their_bounds() {
        // (live, mine, per subject, in all) → evictions
        assert_eq!(session_evictions(0, 0, 16, 10), Some(0));
        assert_eq!(session_evictions(5, 15, 16, 100), Some(0));
        assert_eq!(session_evictions(16, 16, 16, 100), Some(1));
        assert_eq!(
            session_evictions(20, 20, 16, 100),
            Some(5),
            "over the bound"
        );
        assert_eq!(session_evictions(10, 0, 16, 10), None, "full");
        assert_eq!(
            session_evictions(10, 16, 16, 10),
            Some(1),
            "a replacement fits"
        );
        assert_eq!(session_evictions(0, 0, 0, 10), None);
        assert_eq!(session_evictions(0, 0, 1, 0), None);
        assert_eq!(session_evictions(1, 1, 1, 1), Some(1));
    }

    #[test]
    fn hash_secret_is_sha256() {
        assert_eq!(
            hex::encode(hash_secret("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn successor_keeps_the_grant() {
        let old = RefreshTokenRecord {
            token_hash: [1; 32],
            family_id: "f".into(),
            client_id: "c".into(),
            subject: "s".into(),
            scope: "a b".into(),
            resource: Some("https://rs.example/mcp".into()),
            certificate_thumbprint: None,
            expires_at: 100,
        };
        let next = old.successor([2; 32], 200);
        assert_eq!(next.token_hash, [2; 32]);
        assert_eq!(next.expires_at, 200);
        assert!(old.same_grant(&next));
        assert!(!old.same_grant(&RefreshTokenRecord {
            scope: "a".into(),
            ..next
        }));
    }

    #[test]
    fn store_is_object_safe() {
        fn takes(_: &dyn Store) {}
        takes(&MemoryStore::new());
    }
}
