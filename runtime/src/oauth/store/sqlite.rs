//! [`SqliteStore`]: the store in one SQLite file.
//!
//! See [`SqliteStore`] for the schema.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use futures::{FutureExt, future::BoxFuture};
use rusqlite::{
    Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params, types::Type,
};

use super::{
    AuthCodeRecord, ClientRecord, CodeRedemption, FAMILY_REVOCATION_RETENTION_SECS,
    RefreshTokenRecord, Rotation, SessionRecord, SigningKeyRecord, Store, StoreError,
    TlsClientAuth, UNUSED_CLIENT_RETENTION_SECS, UserRecord, session_evictions, within_grace,
};

/// How long an operation waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The migration scripts, in order; script `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE IF NOT EXISTS clients (
        client_id TEXT PRIMARY KEY NOT NULL,
        secret_hash BLOB CHECK (secret_hash IS NULL OR length(secret_hash) = 32),
        name TEXT NOT NULL,
        redirect_uris TEXT NOT NULL,
        grant_types TEXT NOT NULL,
        allowed_scopes TEXT NOT NULL,
        role TEXT,
        token_endpoint_auth_method TEXT NOT NULL,
        metadata_url TEXT,
        created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE IF NOT EXISTS users (
        username TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT NOT NULL,
        role TEXT,
        scopes TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE IF NOT EXISTS auth_codes (
        code_hash BLOB PRIMARY KEY NOT NULL CHECK (length(code_hash) = 32),
        client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
        subject TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        scope TEXT NOT NULL,
        resource TEXT,
        family_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
    ) STRICT;
    CREATE INDEX IF NOT EXISTS auth_codes_client ON auth_codes (client_id);
    CREATE INDEX IF NOT EXISTS auth_codes_family ON auth_codes (family_id);
    CREATE INDEX IF NOT EXISTS auth_codes_expires ON auth_codes (expires_at);

    CREATE TABLE IF NOT EXISTS refresh_tokens (
        token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
        family_id TEXT NOT NULL,
        client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
        subject TEXT NOT NULL,
        scope TEXT NOT NULL,
        resource TEXT,
        expires_at INTEGER NOT NULL,
        rotated_at INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX IF NOT EXISTS refresh_tokens_current
        ON refresh_tokens (family_id) WHERE rotated_at IS NULL;
    CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family_id);
    CREATE INDEX IF NOT EXISTS refresh_tokens_client ON refresh_tokens (client_id);
    CREATE INDEX IF NOT EXISTS refresh_tokens_expires ON refresh_tokens (expires_at);

    CREATE TABLE IF NOT EXISTS revoked_families (
        family_id TEXT PRIMARY KEY NOT NULL,
        revoked_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE IF NOT EXISTS revoked_access_tokens (
        jti TEXT PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS revoked_access_tokens_expires
        ON revoked_access_tokens (expires_at);

    CREATE TABLE IF NOT EXISTS signing_keys (
        kid TEXT PRIMARY KEY NOT NULL,
        algorithm TEXT NOT NULL,
        private_key_der BLOB NOT NULL,
        public_key_der BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        retired_at INTEGER
    ) STRICT;
    "#,
    // 2: which clients registered themselves (purged when unused), and each refresh token's
    // successor (for retrying a rotation whose answer was lost). Existing clients were
    // configured or came from metadata documents; existing tokens have no recorded successor,
    // so their reuse is detected as before.
    r#"
    ALTER TABLE clients ADD COLUMN self_registered INTEGER NOT NULL DEFAULT 0
        CHECK (self_registered IN (0, 1));
    CREATE INDEX IF NOT EXISTS clients_unvouched ON clients (created_at)
        WHERE self_registered = 1 OR metadata_url IS NOT NULL;

    ALTER TABLE refresh_tokens ADD COLUMN replaced_by BLOB
        CHECK (replaced_by IS NULL OR length(replaced_by) = 32);
    "#,
    // 3: mutual-TLS clients (RFC 8705 §2: which certificate field they are recognised by, and
    // its value or their certificates' thumbprints) and refresh tokens bound to a public
    // client's certificate (§4). Existing clients authenticate as before, existing tokens are
    // bound to nothing.
    r#"
    ALTER TABLE clients ADD COLUMN tls_client_auth TEXT
        CHECK (tls_client_auth IN ('subject_dn', 'san_dns', 'san_uri', 'san_email', 'self_signed'));
    ALTER TABLE clients ADD COLUMN tls_client_auth_values TEXT;

    ALTER TABLE refresh_tokens ADD COLUMN certificate_thumbprint BLOB
        CHECK (certificate_thumbprint IS NULL OR length(certificate_thumbprint) = 32);
    "#,
    // 4: what the authorization pages kept in each process, so that every process on the
    // store serves any step of a sign-in: the secret their keys are derived from, the
    // sessions of signed-in browsers, and the consent decisions already made.
    r#"
    CREATE TABLE IF NOT EXISTS shared_secrets (
        name TEXT PRIMARY KEY NOT NULL,
        secret BLOB NOT NULL CHECK (length(secret) = 32)
    ) STRICT;

    CREATE TABLE IF NOT EXISTS sessions (
        session_hash BLOB PRIMARY KEY NOT NULL CHECK (length(session_hash) = 32),
        subject TEXT NOT NULL,
        scopes TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS sessions_subject ON sessions (subject, created_at);
    CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at);

    CREATE TABLE IF NOT EXISTS used_once (
        key BLOB PRIMARY KEY NOT NULL CHECK (length(key) = 32),
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS used_once_expires ON used_once (expires_at);
    "#,
];

/// A [`Store`] in one SQLite file: the default for a single server process. Everything
/// survives a restart.
///
/// One connection, behind a mutex, in WAL mode with `synchronous=FULL` (a committed
/// revocation survives a power cut) and foreign keys on. Every operation runs on Tokio's
/// blocking pool (`spawn_blocking`), so the store must be used inside a Tokio runtime; it
/// takes the lock there and never holds it across an `await`. Single-use operations run in a
/// `BEGIN IMMEDIATE` transaction, which also makes them atomic against other processes opening
/// the same file.
///
/// # Schema (version 4)
///
/// Columns marked `?` are nullable; every other column is `NOT NULL`.
///
/// | table | key | columns |
/// |---|---|---|
/// | `clients` | `client_id` | `secret_hash` BLOB(32)?, `name`, `redirect_uris`, `grant_types`, `allowed_scopes` (JSON arrays of strings), `role`?, `token_endpoint_auth_method`, `metadata_url`?, `created_at`, `self_registered` (0 or 1, default 0; version 2), `tls_client_auth`? (`subject_dn`, `san_dns`, `san_uri`, `san_email` or `self_signed`; version 3), `tls_client_auth_values`? (JSON array: the expected name, or the base64url certificate thumbprints; version 3) |
/// | `users` | `username` | `password_hash` (argon2 PHC), `role`?, `scopes` (JSON array), `created_at` |
/// | `auth_codes` | `code_hash` BLOB(32) | `client_id` → `clients` (cascade), `subject`, `redirect_uri`, `code_challenge`, `scope`, `resource`?, `family_id`, `expires_at`, `used_at`? |
/// | `refresh_tokens` | `token_hash` BLOB(32) | `family_id`, `client_id` → `clients` (cascade), `subject`, `scope`, `resource`?, `expires_at`, `rotated_at`? (NULL = the family's current token; at most one per family, by a partial unique index; the first rotation, kept on retries), `replaced_by`? BLOB(32) (the successor's hash, the latest after retries; no foreign key: either may be purged first; version 2), `certificate_thumbprint`? BLOB(32) (the client certificate the token is bound to; version 3) |
/// | `revoked_families` | `family_id` | `revoked_at` (what the retention counts from: when the family was revoked, or, for a family ended with its user, the latest expiry of the codes and tokens deleted with it) |
/// | `revoked_access_tokens` | `jti` | `expires_at` |
/// | `signing_keys` | `kid` | `algorithm`, `private_key_der` BLOB, `public_key_der` BLOB, `created_at`, `retired_at`? |
/// | `shared_secrets` | `name` | `secret` BLOB(32) (version 4) |
/// | `sessions` | `session_hash` BLOB(32) | `subject`, `scopes`? (JSON array; NULL: every scope), `created_at`, `expires_at` (version 4) |
/// | `used_once` | `key` BLOB(32) | `expires_at` (version 4) |
///
/// Tables are `STRICT`; times are INTEGER unix seconds; hashes are 32-byte BLOBs (checked).
/// Lists are JSON text: they are always read and written whole and never searched by element,
/// so a child table would add joins and nothing else. Indexes cover expiry (purging), families,
/// the client foreign keys and the clients the purge may remove.
///
/// The schema version is SQLite's `PRAGMA user_version`. An ordered list of migration scripts
/// is compiled in; opening a database applies, in one `BEGIN IMMEDIATE` transaction, the
/// scripts past its version and sets the version, so concurrent openers apply each script once
/// (the version check is what guards a script: `ALTER TABLE ... ADD COLUMN` has no
/// `IF NOT EXISTS`; `CREATE` statements use it anyway). A failed script rolls the whole
/// upgrade back. Never edit a released script: append a new one. A database whose version is
/// newer than the newest script is refused ([`StoreError::SchemaTooNew`]).
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// A missing parent directory is created (mode `0700` on Unix) and a missing file is
    /// created with mode `0600` (SQLite gives its `-wal` and `-shm` files the same mode); an
    /// existing file keeps its mode. Blocking: call it at startup, or in `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the file cannot be created or opened, WAL mode cannot be
    /// enabled or a migration fails; [`StoreError::SchemaTooNew`] if a newer build wrote the
    /// database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent).map_err(|e| {
                StoreError::backend_from(format!("cannot create directory {}", parent.display()), e)
            })?;
        }
        create_private_file(path).map_err(|e| {
            StoreError::backend_from(format!("cannot create {}", path.display()), e)
        })?;
        let conn = Connection::open(path)
            .map_err(|e| StoreError::backend_from(format!("cannot open {}", path.display()), e))?;
        let mut store = Self::prepare(conn, true)?;
        store.path = Some(path.to_owned());
        Ok(store)
    }

    /// An empty database in memory (no WAL; gone when the store is dropped), for tests.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if SQLite fails.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().db()?;
        Self::prepare(conn, false)
    }

    fn prepare(mut conn: Connection, wal: bool) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT).db()?;
        if wal {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .db()?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::backend(format!(
                    "cannot enable WAL mode (journal mode is {mode})"
                )));
            }
        }
        conn.pragma_update(None, "synchronous", "FULL").db()?;
        conn.pragma_update(None, "foreign_keys", "ON").db()?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: None,
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    fn run<T, F>(&self, f: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        async move {
            let task = tokio::task::spawn_blocking(move || {
                // A panic inside a transaction rolled it back (rusqlite rolls back on drop), so
                // the connection is consistent even if the lock is poisoned.
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                f(&mut conn)
            });
            match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(StoreError::backend("store task panicked")),
                Err(_) => Err(StoreError::backend("store task was cancelled")),
            }
        }
        .boxed()
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committed when `f` succeeds.
    fn transaction<T, F>(&self, f: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .db()?;
            let value = f(&tx)?;
            tx.commit().db()?;
            Ok(value)
        })
    }
}

/// Applies the migrations the database lacks.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .db()?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (version, script) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(script).map_err(|e| {
            StoreError::backend_from(
                format!("migration to schema version {} failed", version + 1),
                e,
            )
        })?;
        tx.pragma_update(None, "user_version", version as i64 + 1)
            .db()?;
    }
    tx.commit().db()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates `path` empty and owner-only unless it exists.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Turns rusqlite errors into [`StoreError`]s (their messages name columns and constraints,
/// never bound values).
trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
            e => StoreError::backend_from("SQLite", e),
        })
    }
}

fn to_json(list: &[String]) -> String {
    // A list of strings always serialises.
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

fn json_list(row: &Row<'_>, index: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

const CLIENT_COLUMNS: &str = "client_id, secret_hash, name, redirect_uris, grant_types, \
     allowed_scopes, role, token_endpoint_auth_method, metadata_url, created_at, self_registered, \
     tls_client_auth, tls_client_auth_values";

/// A mutual-TLS client's expected certificate as its two columns: the kind and a JSON list.
fn tls_client_auth_columns(auth: Option<&TlsClientAuth>) -> (Option<&'static str>, Option<String>) {
    let Some(auth) = auth else {
        return (None, None);
    };
    let (kind, values) = match auth {
        TlsClientAuth::SubjectDn(dn) => ("subject_dn", vec![dn.clone()]),
        TlsClientAuth::SanDns(dns) => ("san_dns", vec![dns.clone()]),
        TlsClientAuth::SanUri(uri) => ("san_uri", vec![uri.clone()]),
        TlsClientAuth::SanEmail(email) => ("san_email", vec![email.clone()]),
        TlsClientAuth::SelfSigned(thumbprints) => (
            "self_signed",
            thumbprints
                .iter()
                .map(|t| URL_SAFE_NO_PAD.encode(t))
                .collect(),
        ),
    };
    (Some(kind), Some(to_json(&values)))
}

/// The expected certificate of a client row (columns `kind` and `kind + 1`).
fn tls_client_auth_from_row(row: &Row<'_>, kind: usize) -> rusqlite::Result<Option<TlsClientAuth>> {
    let Some(name) = row.get::<_, Option<String>>(kind)? else {
        return Ok(None);
    };
    let corrupt = |why: &str| {
        rusqlite::Error::FromSqlConversionFailure(kind + 1, Type::Text, why.to_owned().into())
    };
    let mut values = json_list(row, kind + 1)?;
    let single = |values: &mut Vec<String>| match values.len() {
        1 => values.pop().ok_or_else(|| corrupt("no value")),
        _ => Err(corrupt("expected one value")),
    };
    Ok(Some(match name.as_str() {
        "subject_dn" => TlsClientAuth::SubjectDn(single(&mut values)?),
        "san_dns" => TlsClientAuth::SanDns(single(&mut values)?),
        "san_uri" => TlsClientAuth::SanUri(single(&mut values)?),
        "san_email" => TlsClientAuth::SanEmail(single(&mut values)?),
        "self_signed" => TlsClientAuth::SelfSigned(
            values
                .iter()
                .map(|value| {
                    let mut thumbprint = [0u8; 32];
                    match URL_SAFE_NO_PAD.decode_slice(value, &mut thumbprint) {
                        Ok(32) => Ok(thumbprint),
                        _ => Err(corrupt("not a certificate thumbprint")),
                    }
                })
                .collect::<rusqlite::Result<_>>()?,
        ),
        _ => return Err(corrupt("unknown tls_client_auth")),
    }))
}

fn client_from_row(row: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    Ok(ClientRecord {
        client_id: row.get(0)?,
        secret_hash: row.get(1)?,
        name: row.get(2)?,
        redirect_uris: json_list(row, 3)?,
        grant_types: json_list(row, 4)?,
        allowed_scopes: json_list(row, 5)?,
        role: row.get(6)?,
        token_endpoint_auth_method: row.get(7)?,
        metadata_url: row.get(8)?,
        created_at: row.get(9)?,
        self_registered: row.get(10)?,
        tls_client_auth: tls_client_auth_from_row(row, 11)?,
    })
}

const USER_COLUMNS: &str = "username, password_hash, role, scopes, created_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        username: row.get(0)?,
        password_hash: row.get(1)?,
        role: row.get(2)?,
        scopes: json_list(row, 3)?,
        created_at: row.get(4)?,
    })
}

const CODE_COLUMNS: &str = "code_hash, client_id, subject, redirect_uri, code_challenge, scope, \
     resource, family_id, expires_at, used_at";

/// A code and when it was used.
fn code_from_row(row: &Row<'_>) -> rusqlite::Result<(AuthCodeRecord, Option<i64>)> {
    Ok((
        AuthCodeRecord {
            code_hash: row.get(0)?,
            client_id: row.get(1)?,
            subject: row.get(2)?,
            redirect_uri: row.get(3)?,
            code_challenge: row.get(4)?,
            scope: row.get(5)?,
            resource: row.get(6)?,
            family_id: row.get(7)?,
            expires_at: row.get(8)?,
        },
        row.get(9)?,
    ))
}

const REFRESH_COLUMNS: &str = "token_hash, family_id, client_id, subject, scope, resource, \
     expires_at, rotated_at, replaced_by, certificate_thumbprint";

/// A refresh token with its rotation state.
struct StoredRefresh {
    /// The token.
    record: RefreshTokenRecord,
    /// When it was first rotated; `None` while it is its family's current token.
    rotated_at: Option<i64>,
    /// The hash of the token that replaced it (the latest one, after retries).
    replaced_by: Option<[u8; 32]>,
}

fn refresh_from_row(row: &Row<'_>) -> rusqlite::Result<StoredRefresh> {
    Ok(StoredRefresh {
        record: RefreshTokenRecord {
            token_hash: row.get(0)?,
            family_id: row.get(1)?,
            client_id: row.get(2)?,
            subject: row.get(3)?,
            scope: row.get(4)?,
            resource: row.get(5)?,
            certificate_thumbprint: row.get(9)?,
            expires_at: row.get(6)?,
        },
        rotated_at: row.get(7)?,
        replaced_by: row.get(8)?,
    })
}

/// The refresh token with this hash, whatever its state.
fn stored_refresh(
    conn: &Connection,
    token_hash: [u8; 32],
) -> Result<Option<StoredRefresh>, StoreError> {
    conn.query_row(
        &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = ?1"),
        [token_hash],
        refresh_from_row,
    )
    .optional()
    .db()
}

const KEY_COLUMNS: &str = "kid, algorithm, private_key_der, public_key_der, created_at, retired_at";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        kid: row.get(0)?,
        algorithm: row.get(1)?,
        private_key_der: row.get(2)?,
        public_key_der: row.get(3)?,
        created_at: row.get(4)?,
        retired_at: row.get(5)?,
    })
}

const SESSION_COLUMNS: &str = "session_hash, subject, scopes, created_at, expires_at";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let scopes = match row.get::<_, Option<String>>(2)? {
        Some(_) => Some(json_list(row, 2)?),
        None => None,
    };
    Ok(SessionRecord {
        session_hash: row.get(0)?,
        subject: row.get(1)?,
        scopes,
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
    })
}

fn exists(tx: &Transaction<'_>, sql: &str, key: impl rusqlite::ToSql) -> Result<bool, StoreError> {
    tx.query_row(sql, [key], |_| Ok(()))
        .optional()
        .map(|row| row.is_some())
        .db()
}

fn require_client(tx: &Transaction<'_>, client_id: &str) -> Result<(), StoreError> {
    if exists(tx, "SELECT 1 FROM clients WHERE client_id = ?1", client_id)? {
        Ok(())
    } else {
        Err(StoreError::UnknownClient(client_id.to_owned()))
    }
}

fn revoke_family(conn: &Connection, family_id: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO revoked_families (family_id, revoked_at) VALUES (?1, ?2) \
         ON CONFLICT (family_id) DO NOTHING",
        params![family_id, now],
    )
    .db()?;
    Ok(())
}

/// Whether the token `old` (already rotated) may be retried at `now`: within the grace period,
/// its successor still the family's unused, unexpired current token.
fn may_retry(
    tx: &Transaction<'_>,
    old: &StoredRefresh,
    now: i64,
    grace: i64,
) -> Result<bool, StoreError> {
    let (Some(rotated_at), Some(successor)) = (old.rotated_at, old.replaced_by) else {
        return Ok(false);
    };
    if !within_grace(rotated_at, now, grace) {
        return Ok(false);
    }
    // Unrotated means current: the partial unique index allows one such token per family.
    Ok(stored_refresh(tx, successor)?.is_some_and(|next| {
        next.rotated_at.is_none()
            && next.record.family_id == old.record.family_id
            && now < next.record.expires_at
    }))
}

/// Checks that `new` may be stored as `old`'s successor (same grant, unused hash).
fn check_successor(
    tx: &Transaction<'_>,
    old: &RefreshTokenRecord,
    new: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    if !old.same_grant(new) {
        return Err(StoreError::Invalid(
            "the new refresh token does not continue the old one's grant",
        ));
    }
    if exists(
        tx,
        "SELECT 1 FROM refresh_tokens WHERE token_hash = ?1",
        new.token_hash,
    )? {
        return Err(StoreError::Conflict("refresh token"));
    }
    Ok(())
}

/// Stores `new` as its family's current token and as the successor of `old_hash` (whose
/// family has no current token any more).
fn replace_with(
    tx: &Transaction<'_>,
    old_hash: [u8; 32],
    new: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    insert_refresh(tx, new)?;
    tx.execute(
        "UPDATE refresh_tokens SET replaced_by = ?2 WHERE token_hash = ?1",
        params![old_hash, new.token_hash],
    )
    .db()?;
    Ok(())
}

fn insert_refresh(tx: &Transaction<'_>, token: &RefreshTokenRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, subject, scope, resource, \
         expires_at, rotated_at, replaced_by, certificate_thumbprint) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8)",
        params![
            token.token_hash,
            token.family_id,
            token.client_id,
            token.subject,
            token.scope,
            token.resource,
            token.expires_at,
            token.certificate_thumbprint,
        ],
    )
    .db()?;
    Ok(())
}

impl Store for SqliteStore {
    fn put_client(&self, client: ClientRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.run(move |conn| {
            // An upsert, not INSERT OR REPLACE: replacing would delete the row and cascade to
            // the client's codes and tokens.
            let (tls_kind, tls_values) = tls_client_auth_columns(client.tls_client_auth.as_ref());
            conn.execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                     ON CONFLICT (client_id) DO UPDATE SET \
                     secret_hash = excluded.secret_hash, name = excluded.name, \
                     redirect_uris = excluded.redirect_uris, grant_types = excluded.grant_types, \
                     allowed_scopes = excluded.allowed_scopes, role = excluded.role, \
                     token_endpoint_auth_method = excluded.token_endpoint_auth_method, \
                     metadata_url = excluded.metadata_url, created_at = excluded.created_at, \
                     self_registered = excluded.self_registered, \
                     tls_client_auth = excluded.tls_client_auth, \
                     tls_client_auth_values = excluded.tls_client_auth_values"
                ),
                params![
                    client.client_id,
                    client.secret_hash,
                    client.name,
                    to_json(&client.redirect_uris),
                    to_json(&client.grant_types),
                    to_json(&client.allowed_scopes),
                    client.role,
                    client.token_endpoint_auth_method,
                    client.metadata_url,
                    client.created_at,
                    client.self_registered,
                    tls_kind,
                    tls_values,
                ],
            )
            .db()?;
            Ok(())
        })
    }

    fn get_client<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClientRecord>, StoreError>> {
        let client_id = client_id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?1"),
                [client_id],
                client_from_row,
            )
            .optional()
            .db()
        })
    }

    fn delete_client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let client_id = client_id.to_owned();
        self.run(move |conn| {
            let deleted = conn
                .execute("DELETE FROM clients WHERE client_id = ?1", [client_id])
                .db()?;
            Ok(deleted > 0)
        })
    }

    fn put_user(&self, user: UserRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.run(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (username) DO UPDATE SET \
                     password_hash = excluded.password_hash, role = excluded.role, \
                     scopes = excluded.scopes, created_at = excluded.created_at"
                ),
                params![
                    user.username,
                    user.password_hash,
                    user.role,
                    to_json(&user.scopes),
                    user.created_at,
                ],
            )
            .db()?;
            Ok(())
        })
    }

    fn get_user<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserRecord>, StoreError>> {
        let username = username.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
                [username],
                user_from_row,
            )
            .optional()
            .db()
        })
    }

    fn delete_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let username = username.to_owned();
        self.transaction(move |tx| {
            // Dated by the latest expiry of what is deleted (see `Store::delete_user`): the
            // rows that would have kept the revocation alive go. `WHERE true` keeps SQLite
            // from reading the upsert's `ON` as a join constraint.
            tx.execute(
                "INSERT INTO revoked_families (family_id, revoked_at) \
                 SELECT family_id, max(expires_at) FROM ( \
                     SELECT family_id, expires_at FROM auth_codes WHERE subject = ?1 \
                     UNION ALL \
                     SELECT family_id, expires_at FROM refresh_tokens WHERE subject = ?1) \
                 WHERE true GROUP BY family_id \
                 ON CONFLICT (family_id) DO UPDATE \
                 SET revoked_at = max(revoked_at, excluded.revoked_at)",
                [&username],
            )
            .db()?;
            for sql in [
                "DELETE FROM auth_codes WHERE subject = ?1",
                "DELETE FROM refresh_tokens WHERE subject = ?1",
                "DELETE FROM sessions WHERE subject = ?1",
            ] {
                tx.execute(sql, [&username]).db()?;
            }
            let deleted = tx
                .execute("DELETE FROM users WHERE username = ?1", [&username])
                .db()?;
            Ok(deleted > 0)
        })
    }

    fn end_sessions_of<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let subject = subject.to_owned();
        self.transaction(move |tx| {
            let live: i64 = tx
                .query_row(
                    "SELECT count(*) FROM sessions WHERE subject = ?1 AND expires_at > ?2",
                    params![subject, now],
                    |row| row.get(0),
                )
                .db()?;
            tx.execute("DELETE FROM sessions WHERE subject = ?1", [&subject])
                .db()?;
            Ok(u64::try_from(live).unwrap_or_default())
        })
    }

    fn list_clients(&self) -> BoxFuture<'_, Result<Vec<ClientRecord>, StoreError>> {
        self.run(|conn| {
            // TEXT compares with the BINARY collation unless told otherwise: byte order.
            let mut statement = conn
                .prepare(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id"
                ))
                .db()?;
            let clients = statement
                .query_map([], client_from_row)
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()?;
            Ok(clients)
        })
    }

    fn list_users(&self) -> BoxFuture<'_, Result<Vec<UserRecord>, StoreError>> {
        self.run(|conn| {
            let mut statement = conn
                .prepare(&format!(
                    "SELECT {USER_COLUMNS} FROM users ORDER BY username"
                ))
                .db()?;
            let users = statement
                .query_map([], user_from_row)
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()?;
            Ok(users)
        })
    }

    fn put_code(&self, code: AuthCodeRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.transaction(move |tx| {
            if exists(
                tx,
                "SELECT 1 FROM auth_codes WHERE code_hash = ?1",
                code.code_hash,
            )? {
                return Err(StoreError::Conflict("authorization code"));
            }
            require_client(tx, &code.client_id)?;
            tx.execute(
                &format!(
                    "INSERT INTO auth_codes ({CODE_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)"
                ),
                params![
                    code.code_hash,
                    code.client_id,
                    code.subject,
                    code.redirect_uri,
                    code.code_challenge,
                    code.scope,
                    code.resource,
                    code.family_id,
                    code.expires_at,
                ],
            )
            .db()?;
            Ok(())
        })
    }

    fn redeem_code(
        &self,
        code_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<CodeRedemption, StoreError>> {
        self.transaction(move |tx| {
            let Some((code, used_at)) = tx
                .query_row(
                    &format!("SELECT {CODE_COLUMNS} FROM auth_codes WHERE code_hash = ?1"),
                    [code_hash],
                    code_from_row,
                )
                .optional()
                .db()?
            else {
                return Ok(CodeRedemption::Unknown);
            };
            if used_at.is_some() {
                revoke_family(tx, &code.family_id, now)?;
                return Ok(CodeRedemption::Replayed {
                    family_id: code.family_id,
                });
            }
            if now >= code.expires_at {
                return Ok(CodeRedemption::Expired);
            }
            tx.execute(
                "UPDATE auth_codes SET used_at = ?2 WHERE code_hash = ?1",
                params![code_hash, now],
            )
            .db()?;
            Ok(CodeRedemption::Redeemed(code))
        })
    }

    fn put_refresh(&self, token: RefreshTokenRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.transaction(move |tx| {
            if exists(
                tx,
                "SELECT 1 FROM refresh_tokens WHERE token_hash = ?1",
                token.token_hash,
            )? {
                return Err(StoreError::Conflict("refresh token"));
            }
            if exists(
                tx,
                "SELECT 1 FROM refresh_tokens WHERE family_id = ?1 AND rotated_at IS NULL",
                &token.family_id,
            )? {
                return Err(StoreError::Conflict("current refresh token of the family"));
            }
            require_client(tx, &token.client_id)?;
            insert_refresh(tx, &token)
        })
    }

    fn get_refresh(
        &self,
        token_hash: [u8; 32],
    ) -> BoxFuture<'_, Result<Option<RefreshTokenRecord>, StoreError>> {
        self.run(move |conn| Ok(stored_refresh(conn, token_hash)?.map(|token| token.record)))
    }

    fn rotate_refresh(
        &self,
        old_hash: [u8; 32],
        new: RefreshTokenRecord,
        now: i64,
        grace: i64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>> {
        self.transaction(move |tx| {
            let Some(old) = stored_refresh(tx, old_hash)? else {
                return Ok(Rotation::Unknown);
            };
            let family_id = &old.record.family_id;
            if exists(
                tx,
                "SELECT 1 FROM revoked_families WHERE family_id = ?1",
                family_id,
            )? {
                return Ok(Rotation::Revoked);
            }
            if old.rotated_at.is_some() {
                if !may_retry(tx, &old, now, grace)? {
                    revoke_family(tx, family_id, now)?;
                    return Ok(Rotation::Reused {
                        family_id: old.record.family_id,
                    });
                }
                check_successor(tx, &old.record, &new)?;
                // The unused successor is retired first (the family may have one current
                // token), then `new` takes its place.
                tx.execute(
                    "UPDATE refresh_tokens SET rotated_at = ?2 WHERE token_hash = ?1",
                    params![old.replaced_by, now],
                )
                .db()?;
                replace_with(tx, old_hash, &new)?;
                return Ok(Rotation::Retried(old.record));
            }
            if now >= old.record.expires_at {
                return Ok(Rotation::Expired);
            }
            check_successor(tx, &old.record, &new)?;
            tx.execute(
                "UPDATE refresh_tokens SET rotated_at = ?2 WHERE token_hash = ?1",
                params![old_hash, now],
            )
            .db()?;
            replace_with(tx, old_hash, &new)?;
            Ok(Rotation::Rotated(old.record))
        })
    }

    fn revoke_refresh(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.transaction(move |tx| {
            let family_id: Option<String> = tx
                .query_row(
                    "SELECT family_id FROM refresh_tokens WHERE token_hash = ?1",
                    [token_hash],
                    |row| row.get(0),
                )
                .optional()
                .db()?;
            let Some(family_id) = family_id else {
                return Ok(false);
            };
            revoke_family(tx, &family_id, now)?;
            Ok(true)
        })
    }

    fn revoke_family<'a>(
        &'a self,
        family_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let family_id = family_id.to_owned();
        self.run(move |conn| revoke_family(conn, &family_id, now))
    }

    fn is_family_revoked<'a>(
        &'a self,
        family_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let family_id = family_id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT 1 FROM revoked_families WHERE family_id = ?1",
                [family_id],
                |_| Ok(()),
            )
            .optional()
            .map(|row| row.is_some())
            .db()
        })
    }

    fn revoke_access_token<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let jti = jti.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES (?1, ?2) \
                 ON CONFLICT (jti) DO UPDATE SET \
                 expires_at = max(expires_at, excluded.expires_at)",
                params![jti, expires_at],
            )
            .db()?;
            Ok(())
        })
    }

    fn is_access_token_revoked<'a>(
        &'a self,
        jti: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let jti = jti.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT 1 FROM revoked_access_tokens WHERE jti = ?1",
                [jti],
                |_| Ok(()),
            )
            .optional()
            .map(|row| row.is_some())
            .db()
        })
    }

    fn put_signing_key(&self, key: SigningKeyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.transaction(move |tx| {
            if exists(tx, "SELECT 1 FROM signing_keys WHERE kid = ?1", &key.kid)? {
                return Err(StoreError::Conflict("signing key"));
            }
            tx.execute(
                &format!(
                    "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    key.kid,
                    key.algorithm,
                    key.private_key_der,
                    key.public_key_der,
                    key.created_at,
                    key.retired_at,
                ],
            )
            .db()?;
            Ok(())
        })
    }

    fn signing_keys(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, StoreError>> {
        self.run(|conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, rowid DESC"
                ))
                .db()?;
            let keys = statement
                .query_map([], key_from_row)
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()?;
            Ok(keys)
        })
    }

    fn retire_signing_key<'a>(
        &'a self,
        kid: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let kid = kid.to_owned();
        self.run(move |conn| {
            let updated = conn
                .execute(
                    "UPDATE signing_keys SET retired_at = coalesce(retired_at, ?2) WHERE kid = ?1",
                    params![kid, now],
                )
                .db()?;
            Ok(updated > 0)
        })
    }

    fn delete_signing_key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let kid = kid.to_owned();
        self.run(move |conn| {
            let deleted = conn
                .execute("DELETE FROM signing_keys WHERE kid = ?1", [kid])
                .db()?;
            Ok(deleted > 0)
        })
    }

    fn replace_signing_key<'a>(
        &'a self,
        replaces: Option<&'a str>,
        key: SigningKeyRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let replaces = replaces.map(str::to_owned);
        // `BEGIN IMMEDIATE` holds the write lock from the read of the current key to the
        // insert, so concurrent replacements (other processes on the file included) are one
        // after the other and only the first finds the key it names current.
        self.transaction(move |tx| {
            if key.retired_at.is_some() {
                return Err(StoreError::Invalid("a new signing key cannot be retired"));
            }
            if exists(tx, "SELECT 1 FROM signing_keys WHERE kid = ?1", &key.kid)? {
                return Err(StoreError::Conflict("signing key"));
            }
            let current: Option<String> = tx
                .query_row(
                    "SELECT kid FROM signing_keys WHERE retired_at IS NULL \
                     ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    [],
                    |row| row.get(0),
                )
                .optional()
                .db()?;
            if current != replaces {
                return Ok(false);
            }
            tx.execute(
                "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
                [now],
            )
            .db()?;
            tx.execute(
                &format!(
                    "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    key.kid,
                    key.algorithm,
                    key.private_key_der,
                    key.public_key_der,
                    key.created_at,
                    key.retired_at,
                ],
            )
            .db()?;
            Ok(true)
        })
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.transaction(move |tx| {
            let mut removed = 0;
            for sql in [
                "DELETE FROM auth_codes WHERE expires_at <= ?1",
                "DELETE FROM refresh_tokens WHERE expires_at <= ?1",
                "DELETE FROM revoked_access_tokens WHERE expires_at <= ?1",
                "DELETE FROM sessions WHERE expires_at <= ?1",
                "DELETE FROM used_once WHERE expires_at <= ?1",
            ] {
                removed += tx.execute(sql, [now]).db()?;
            }
            removed += tx
                .execute(
                    "DELETE FROM revoked_families WHERE revoked_at <= ?1 \
                     AND NOT EXISTS (SELECT 1 FROM auth_codes c \
                                     WHERE c.family_id = revoked_families.family_id) \
                     AND NOT EXISTS (SELECT 1 FROM refresh_tokens t \
                                     WHERE t.family_id = revoked_families.family_id)",
                    [now.saturating_sub(FAMILY_REVOCATION_RETENTION_SECS)],
                )
                .db()?;
            // After the expired codes and tokens are gone: clients nobody vouched for that
            // hold nothing any more (the condition matches the `clients_unvouched` index).
            removed += tx
                .execute(
                    "DELETE FROM clients \
                     WHERE (self_registered = 1 OR metadata_url IS NOT NULL) \
                     AND created_at < ?1 \
                     AND NOT EXISTS (SELECT 1 FROM auth_codes c \
                                     WHERE c.client_id = clients.client_id) \
                     AND NOT EXISTS (SELECT 1 FROM refresh_tokens t \
                                     WHERE t.client_id = clients.client_id)",
                    [now.saturating_sub(UNUSED_CLIENT_RETENTION_SECS)],
                )
                .db()?;
            Ok(removed as u64)
        })
    }

    fn shared_secret<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, Result<[u8; 32], StoreError>> {
        let name = name.to_owned();
        self.transaction(move |tx| {
            tx.execute(
                "INSERT INTO shared_secrets (name, secret) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO NOTHING",
                params![name, candidate],
            )
            .db()?;
            tx.query_row(
                "SELECT secret FROM shared_secrets WHERE name = ?1",
                [name],
                |row| row.get::<_, [u8; 32]>(0),
            )
            .db()
        })
    }

    fn put_session(
        &self,
        session: SessionRecord,
        max_per_subject: usize,
        max_live: usize,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        // `BEGIN IMMEDIATE` holds the write lock from the first count to the insert, so
        // concurrent sign-ins (other processes on the file included) never pass a bound.
        self.transaction(move |tx| {
            if exists(
                tx,
                "SELECT 1 FROM sessions WHERE session_hash = ?1",
                session.session_hash,
            )? {
                return Err(StoreError::Conflict("session"));
            }
            let live: i64 = tx
                .query_row(
                    "SELECT count(*) FROM sessions WHERE expires_at > ?1",
                    [now],
                    |row| row.get(0),
                )
                .db()?;
            let mine = {
                let mut statement = tx
                    .prepare_cached(
                        "SELECT session_hash FROM sessions WHERE subject = ?1 AND expires_at > ?2 \
                         ORDER BY created_at, session_hash",
                    )
                    .db()?;
                statement
                    .query_map(params![session.subject, now], |row| {
                        row.get::<_, [u8; 32]>(0)
                    })
                    .db()?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .db()?
            };
            let live = usize::try_from(live).unwrap_or(usize::MAX);
            let Some(evict) = session_evictions(live, mine.len(), max_per_subject, max_live) else {
                return Ok(false);
            };
            for hash in &mine[..evict] {
                tx.execute("DELETE FROM sessions WHERE session_hash = ?1", [hash])
                    .db()?;
            }
            tx.execute(
                &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![
                    session.session_hash,
                    session.subject,
                    session.scopes.as_deref().map(to_json),
                    session.created_at,
                    session.expires_at,
                ],
            )
            .db()?;
            Ok(true)
        })
    }

    fn get_session(
        &self,
        session_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, StoreError>> {
        self.run(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions \
                     WHERE session_hash = ?1 AND expires_at > ?2"
                ),
                params![session_hash, now],
                session_from_row,
            )
            .optional()
            .db()
        })
    }

    fn delete_session(&self, session_hash: [u8; 32]) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.run(move |conn| {
            let deleted = conn
                .execute(
                    "DELETE FROM sessions WHERE session_hash = ?1",
                    [session_hash],
                )
                .db()?;
            Ok(deleted > 0)
        })
    }

    fn use_once(
        &self,
        key: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        // One statement: inserted, or an expired use replaced; a live one changes nothing.
        self.run(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO used_once (key, expires_at) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE used_once.expires_at <= ?3",
                    params![key, expires_at, now],
                )
                .db()?;
            Ok(changed > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::store::conformance::{self, fixtures};

    /// A database file in a fresh directory under the temp dir, removed on drop.
    struct TempDb {
        dir: PathBuf,
    }

    impl TempDb {
        fn new() -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let dir = std::env::temp_dir().join(format!(
                "mcp-gatekeeper-store-{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            Self { dir }
        }

        fn path(&self) -> PathBuf {
            self.dir.join("state").join("store.db")
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn store() -> (Arc<dyn Store>, TempDb) {
        let db = TempDb::new();
        let store = SqliteStore::open(db.path()).expect("open");
        (Arc::new(store), db)
    }

    use crate::store::conformance::{conformance_tests_by_arc, conformance_tests_by_ref};
    conformance::store_conformance_tests!(store);

    fn user_version(store: &SqliteStore) -> i64 {
        let conn = store.conn.lock().unwrap();
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn in_memory_store_works() {
        let store = SqliteStore::open_in_memory().unwrap();
        conformance::client_round_trip(&store).await;
        conformance::refresh_rotation(&store).await;
    }

    #[tokio::test]
    async fn everything_survives_a_restart() {
        let db = TempDb::new();
        let now = 1_000;
        {
            let store = SqliteStore::open(db.path()).unwrap();
            fixtures::put_all(&store, now).await;
        }
        let store = SqliteStore::open(db.path()).unwrap();
        fixtures::check_all(&store, now).await;
    }

    /// Two connections to one file (as two processes would have) still let exactly one
    /// redemption and one rotation through: `BEGIN IMMEDIATE` plus the busy timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_connections_race_safely() {
        let db = TempDb::new();
        let stores: [Arc<dyn Store>; 2] = [
            Arc::new(SqliteStore::open(db.path()).unwrap()),
            Arc::new(SqliteStore::open(db.path()).unwrap()),
        ];
        stores[0].put_client(fixtures::client("c1")).await.unwrap();
        stores[0]
            .put_code(fixtures::code("code", "c1", "fam-code", 600))
            .await
            .unwrap();
        let r1 = fixtures::refresh("r1", "c1", "fam", 10_000);
        stores[1].put_refresh(r1.clone()).await.unwrap();

        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = Arc::clone(&stores[i % 2]);
                let next = r1.successor(fixtures::h(&format!("next-{i}")), 20_000);
                tokio::spawn(async move {
                    let code = store.redeem_code(fixtures::h("code"), 100).await.unwrap();
                    let rotation = store
                        .rotate_refresh(fixtures::h("r1"), next, 100, conformance::NO_GRACE)
                        .await;
                    (code, rotation.unwrap())
                })
            })
            .collect();
        let (mut redeemed, mut rotated) = (0, 0);
        for task in tasks {
            let (code, rotation) = task.await.unwrap();
            redeemed += usize::from(matches!(code, CodeRedemption::Redeemed(_)));
            rotated += usize::from(matches!(rotation, Rotation::Rotated(_)));
        }
        assert_eq!((redeemed, rotated), (1, 1));
        for store in &stores {
            assert!(store.is_family_revoked("fam").await.unwrap());
            assert!(store.is_family_revoked("fam-code").await.unwrap());
        }
    }

    #[tokio::test]
    async fn migrations_run_once() {
        let db = TempDb::new();
        let store = SqliteStore::open(db.path()).unwrap();
        assert_eq!(user_version(&store), MIGRATIONS.len() as i64);
        store.put_client(fixtures::client("c1")).await.unwrap();
        drop(store);

        let store = SqliteStore::open(db.path()).unwrap();
        assert_eq!(user_version(&store), MIGRATIONS.len() as i64);
        assert!(store.get_client("c1").await.unwrap().is_some());

        // The initial script only creates what is missing: running it again changes nothing.
        // (Later scripts add columns, which only the version check can guard.)
        let conn = store.conn.lock().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        let clients: i64 = conn
            .query_row("SELECT count(*) FROM clients", [], |row| row.get(0))
            .unwrap();
        assert_eq!(clients, 1);
    }

    /// A database written by a build that knew only schema version 1 is upgraded in place:
    /// its clients count as not self-registered, its tokens keep working, and reuse of a token
    /// rotated before the upgrade (no successor recorded) is still detected.
    #[tokio::test]
    async fn a_version_1_database_is_upgraded() {
        let db = TempDb::new();
        std::fs::create_dir_all(db.path().parent().unwrap()).unwrap();
        {
            let conn = Connection::open(db.path()).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO clients (client_id, secret_hash, name, redirect_uris, grant_types, \
                 allowed_scopes, role, token_endpoint_auth_method, metadata_url, created_at) \
                 VALUES ('c1', NULL, 'Old', '[]', '[]', '[]', NULL, 'none', NULL, 0);",
            )
            .unwrap();
            let row = |name: &str, rotated_at: Option<i64>| {
                conn.execute(
                    "INSERT INTO refresh_tokens (token_hash, family_id, client_id, subject, \
                     scope, resource, expires_at, rotated_at) \
                     VALUES (?1, 'fam', 'c1', 'alice', 'data:read', NULL, 10000, ?2)",
                    params![fixtures::h(name), rotated_at],
                )
                .unwrap();
            };
            row("r1", Some(100));
            row("r2", None);
        }
        let store = SqliteStore::open(db.path()).unwrap();
        assert_eq!(user_version(&store), MIGRATIONS.len() as i64);
        let client = store.get_client("c1").await.unwrap().unwrap();
        assert!(!client.self_registered);
        assert!(client.vouched_for());
        let r2 = store.get_refresh(fixtures::h("r2")).await.unwrap().unwrap();
        assert!(matches!(
            store
                .rotate_refresh(
                    fixtures::h("r2"),
                    r2.successor(fixtures::h("r3"), 20_000),
                    150,
                    60
                )
                .await
                .unwrap(),
            Rotation::Rotated(_)
        ));
        // r1 was rotated at 100 (within 60 s of 150) but its successor is unknown: reuse.
        assert_eq!(
            store
                .rotate_refresh(
                    fixtures::h("r1"),
                    r2.successor(fixtures::h("r4"), 20_000),
                    150,
                    60
                )
                .await
                .unwrap(),
            Rotation::Reused {
                family_id: "fam".into()
            }
        );
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let db = TempDb::new();
        drop(SqliteStore::open(db.path()).unwrap());
        {
            let conn = Connection::open(db.path()).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        match SqliteStore::open(db.path()) {
            Err(StoreError::SchemaTooNew { found: 99, known }) => {
                assert_eq!(known, MIGRATIONS.len() as i64);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn wal_mode_and_pragmas_are_on() {
        let (_, db) = store();
        let store = SqliteStore::open(db.path()).unwrap();
        let conn = store.conn.lock().unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let foreign_keys: i64 = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .unwrap();
        assert_eq!(foreign_keys, 1);
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");
        let timeout: i64 = conn
            .pragma_query_value(None, "busy_timeout", |row| row.get(0))
            .unwrap();
        assert_eq!(timeout, 5_000);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (store, db) = store();
        store.put_client(fixtures::client("c1")).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&db.path()), 0o600);
        assert_eq!(mode(db.path().parent().unwrap()), 0o700);
        let wal = db.path().with_extension("db-wal");
        assert!(wal.exists());
        assert_eq!(mode(&wal), 0o600);
    }

    #[tokio::test]
    async fn hashes_are_blobs_and_lists_are_json() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.put_client(fixtures::client("c1")).await.unwrap();
        let conn = store.conn.lock().unwrap();
        let (kind, uris): (String, String) = conn
            .query_row(
                "SELECT typeof(secret_hash), redirect_uris FROM clients",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(kind, "blob");
        assert_eq!(
            uris,
            r#"["http://127.0.0.1/callback","https://app.example/cb"]"#
        );
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported_without_their_content() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.put_client(fixtures::client("c1")).await.unwrap();
        store
            .conn
            .lock()
            .unwrap()
            .execute("UPDATE clients SET redirect_uris = 'not-json-SECRET'", [])
            .unwrap();
        let err = store.get_client("c1").await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
