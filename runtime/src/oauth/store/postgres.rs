//! [`PostgresStore`]: the store on PostgreSQL, shared by every replica of a server.
//!
//! See [`PostgresStore`] for the schema and how concurrent replicas stay consistent.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use deadpool_postgres::{
    Client, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use futures::future::BoxFuture;
use tokio_postgres::{NoTls, Row, config::SslMode, error::SqlState, types::ToSql};

use super::{
    AuthCodeRecord, ClientRecord, CodeRedemption, FAMILY_REVOCATION_RETENTION_SECS,
    RefreshTokenRecord, Rotation, SessionRecord, SigningKeyRecord, Store, StoreError,
    TlsClientAuth, UNUSED_CLIENT_RETENTION_SECS, UserRecord, session_evictions, within_grace,
};

#[cfg(test)]
mod tests;

/// The table that records which migrations ran, in the store's schema.
const MIGRATIONS_TABLE: &str = "gatekeeper_schema_migrations";

/// First key of the advisory lock migrations take (the second is the schema's `hashtext`), so
/// replicas migrating different schemas of one database do not wait for each other.
const MIGRATION_LOCK_CLASS: i32 = 0x6d63_7067; // "mcpg"

/// First key of the advisory lock that makes starting a session one step at a time in a schema
/// (the second is the schema's `hashtext`), so that two replicas signing users in at once
/// cannot both pass a bound on sessions.
const SESSION_LOCK_CLASS: i32 = 0x6d63_7073; // "mcps"

/// First key of the advisory lock that makes installing a signing key one step at a time in a
/// schema (the second is the schema's `hashtext`), so that replicas starting or rotating
/// together cannot each install a key of their own.
const SIGNING_KEY_LOCK_CLASS: i32 = 0x6d63_706b; // "mcpk"

/// The migration scripts, in order; script `i` takes the schema from version `i` to `i + 1`.
/// Never edit a released script: append one.
const MIGRATIONS: &[&str] = &[
    // 1: the data model of the SQLite store's schema version 3, in PostgreSQL's types.
    r#"
    CREATE TABLE clients (
        client_id text PRIMARY KEY,
        secret_hash bytea CHECK (secret_hash IS NULL OR octet_length(secret_hash) = 32),
        name text NOT NULL,
        redirect_uris text[] NOT NULL,
        grant_types text[] NOT NULL,
        allowed_scopes text[] NOT NULL,
        role text,
        token_endpoint_auth_method text NOT NULL,
        metadata_url text,
        created_at bigint NOT NULL,
        self_registered boolean NOT NULL DEFAULT false,
        tls_client_auth text
            CHECK (tls_client_auth IN ('subject_dn', 'san_dns', 'san_uri', 'san_email', 'self_signed')),
        tls_client_auth_values text[]
    );
    CREATE INDEX clients_unvouched ON clients (created_at)
        WHERE self_registered OR metadata_url IS NOT NULL;

    CREATE TABLE users (
        username text PRIMARY KEY,
        password_hash text NOT NULL,
        role text,
        scopes text[] NOT NULL,
        created_at bigint NOT NULL
    );

    CREATE TABLE auth_codes (
        code_hash bytea PRIMARY KEY CHECK (octet_length(code_hash) = 32),
        client_id text NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
        subject text NOT NULL,
        redirect_uri text NOT NULL,
        code_challenge text NOT NULL,
        scope text NOT NULL,
        resource text,
        family_id text NOT NULL,
        expires_at bigint NOT NULL,
        used_at bigint
    );
    CREATE INDEX auth_codes_client ON auth_codes (client_id);
    CREATE INDEX auth_codes_family ON auth_codes (family_id);
    CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

    CREATE TABLE refresh_tokens (
        token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
        family_id text NOT NULL,
        client_id text NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
        subject text NOT NULL,
        scope text NOT NULL,
        resource text,
        expires_at bigint NOT NULL,
        rotated_at bigint,
        replaced_by bytea CHECK (replaced_by IS NULL OR octet_length(replaced_by) = 32),
        certificate_thumbprint bytea
            CHECK (certificate_thumbprint IS NULL OR octet_length(certificate_thumbprint) = 32)
    );
    CREATE UNIQUE INDEX refresh_tokens_current ON refresh_tokens (family_id)
        WHERE rotated_at IS NULL;
    CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
    CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);
    CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

    CREATE TABLE revoked_families (
        family_id text PRIMARY KEY,
        revoked_at bigint NOT NULL
    );
    CREATE INDEX revoked_families_revoked ON revoked_families (revoked_at);

    CREATE TABLE revoked_access_tokens (
        jti text PRIMARY KEY,
        expires_at bigint NOT NULL
    );
    CREATE INDEX revoked_access_tokens_expires ON revoked_access_tokens (expires_at);

    CREATE TABLE signing_keys (
        kid text PRIMARY KEY,
        algorithm text NOT NULL,
        private_key_der bytea NOT NULL,
        public_key_der bytea NOT NULL,
        created_at bigint NOT NULL,
        retired_at bigint,
        stored bigint GENERATED ALWAYS AS IDENTITY
    );
    "#,
    // 2: what the authorization pages kept in each process, so that every replica serves any
    // step of a sign-in (SQLite schema version 4): the secret their keys are derived from, the
    // sessions of signed-in browsers, and the consent decisions already made.
    r#"
    CREATE TABLE shared_secrets (
        name text PRIMARY KEY,
        secret bytea NOT NULL CHECK (octet_length(secret) = 32)
    );

    CREATE TABLE sessions (
        session_hash bytea PRIMARY KEY CHECK (octet_length(session_hash) = 32),
        subject text NOT NULL,
        scopes text[],
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL
    );
    CREATE INDEX sessions_subject ON sessions (subject, created_at);
    CREATE INDEX sessions_expires ON sessions (expires_at);

    CREATE TABLE used_once (
        key bytea PRIMARY KEY CHECK (octet_length(key) = 32),
        expires_at bigint NOT NULL
    );
    CREATE INDEX used_once_expires ON used_once (expires_at);
    "#,
];

/// How a [`PostgresStore`] connects: the schema it keeps its tables in and the pool's bounds.
///
/// The defaults suit a server replica: schema `mcp_gatekeeper`, at most 16 connections, 5 s to
/// connect or to wait for a free connection, 10 s per statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    schema: String,
    max_connections: usize,
    connect_timeout: Duration,
    statement_timeout: Duration,
    tls: Option<TrustedRoots>,
}

/// The certificates a TLS connection to PostgreSQL trusts for the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TrustedRoots {
    /// The CA certificates of a PEM file (a managed database's bundle, a private CA).
    CaFile(PathBuf),
    /// The operating system's trusted roots.
    System,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "mcp_gatekeeper".to_owned(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

impl PostgresOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema the store's tables live in (created at start-up if missing): lower-case
    /// letters, digits and `_`, starting with a letter or `_`, at most 63 bytes. A dedicated
    /// schema keeps the store's generic table names (`clients`, `users`) apart from an
    /// application's, and lets tests use a fresh one per run.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the pool opens (at least 1).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long opening a connection, or waiting for a free one, may take before the
    /// operation fails as [`StoreError::Unavailable`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one statement may run (row-lock waits included) before the server cancels it
    /// and the operation fails as [`StoreError::Unavailable`].
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Connects over TLS, trusting the CA certificates of the PEM file at `path` for the
    /// server's certificate (a managed database's CA bundle, or the private CA that signed the
    /// server's certificate). The certificate must also name the host of the URL, as libpq's
    /// `sslmode=verify-full` requires; a connection is never made without TLS, whatever the
    /// URL's `sslmode` says (`disable` is then an error). The file is read at
    /// [`PostgresStore::connect_with`].
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls = Some(TrustedRoots::CaFile(path.into()));
        self
    }

    /// Connects over TLS, trusting the operating system's roots for the server's certificate
    /// (databases whose certificate a public CA signed), as [`tls_ca_file`](Self::tls_ca_file)
    /// otherwise. A URL with `sslmode=require` and no TLS option gets this: the certificate is
    /// verified, where libpq's `require` would take any.
    pub fn tls_system_roots(mut self) -> Self {
        self.tls = Some(TrustedRoots::System);
        self
    }
}

/// The TLS client configuration that trusts `roots`.
fn tls_config(roots: &TrustedRoots) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};

    let mut store = rustls::RootCertStore::empty();
    match roots {
        TrustedRoots::CaFile(path) => {
            let read = |e: &dyn fmt::Display| {
                StoreError::backend(format!(
                    "cannot read the PostgreSQL CA file {}: {e}",
                    path.display()
                ))
            };
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| read(&e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| read(&e))?;
            if certificates.is_empty() {
                return Err(read(&"it holds no certificate"));
            }
            for certificate in certificates {
                store.add(certificate).map_err(|e| read(&e))?;
            }
        }
        TrustedRoots::System => {
            let found = rustls_native_certs::load_native_certs();
            // Some unreadable entries are normal on many systems; none readable is not.
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(StoreError::backend(
                    "no trusted root certificate found on this system for PostgreSQL's TLS; \
                     name a CA file (PostgresOptions::tls_ca_file)",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::backend(format!("PostgreSQL TLS: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// A [`Store`] on PostgreSQL: one database shared by every replica of a server, so codes,
/// refresh tokens and revocations are honoured whichever replica a request reaches.
///
/// A bounded connection pool (deadpool-postgres over tokio-postgres, no TLS to the database:
/// run it on a private network or a local socket proxy). Each connection is checked before it
/// is handed out, so connections the server dropped (a restart, a failover,
/// `pg_terminate_backend`) are replaced without restarting the process. While the database
/// cannot be reached every operation fails with [`StoreError::Unavailable`]: the OAuth
/// endpoints answer `503 temporarily_unavailable` and the MCP endpoint refuses tokens whose
/// revocation it cannot check (`503`), and both say so in the audit trail.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use mcp_gatekeeper::{
///     oauth::AuthorizationServer,
///     store::{PostgresOptions, PostgresStore},
/// };
///
/// // Every replica connects to the same database and schema.
/// let store = PostgresStore::connect_with(
///     &std::env::var("DATABASE_URL")?,
///     PostgresOptions::new().schema("oauth").max_connections(8),
/// )
/// .await?;
/// let oauth = AuthorizationServer::new("https://mcp.example.com")
///     .resource("https://mcp.example.com/mcp")
///     .store(Arc::new(store))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
///
/// # Concurrency
///
/// Every single-use decision runs in one transaction that first locks the row it decides on
/// (`SELECT ... FOR UPDATE`): of two replicas redeeming one code, the second waits for the
/// first to commit, then reads the code as used (a replay, which revokes the family). A retried
/// rotation also locks the successor it replaces, always in grant order (older token first), so
/// two transactions never wait for each other in a cycle. A family's single current refresh
/// token is a partial unique index, so even a path that forgot a lock could not fork a grant.
/// [`Store::purge_expired`] deletes by condition only, so replicas may run it at the same time.
///
/// A future dropped before its transaction committed (a client that hung up) rolls the
/// transaction back: an answer nobody received changed nothing, and nothing is ever half done.
///
/// Starting a session ([`Store::put_session`]) takes a transaction-level advisory lock for
/// the schema, so the bounds on sessions hold across replicas; sign-ins are few (each costs a
/// password check), so they queue for a moment at most. Installing a signing key
/// ([`Store::replace_signing_key`]: the first one, a rotation) takes another such lock, so
/// replicas starting or rotating together install one key. [`Store::shared_secret`] and
/// [`Store::use_once`] are single `INSERT ... ON CONFLICT` statements: the unique index makes
/// a concurrent second insert wait for the first, then see its row.
///
/// # Schema (version 2)
///
/// The data model of `SqliteStore`'s schema version 4, in the schema
/// chosen with [`PostgresOptions::schema`]: tables `clients`, `users`, `auth_codes`,
/// `refresh_tokens`, `revoked_families`, `revoked_access_tokens`, `signing_keys`,
/// `shared_secrets`, `sessions`, `used_once`, with the same columns. Times are `bigint` unix seconds, hashes `bytea` (32 bytes, checked),
/// lists `text[]`, flags `boolean`; `signing_keys.stored` (an identity column) orders keys
/// created in the same second.
///
/// Migrations are numbered scripts compiled in; the versions applied are rows of
/// `gatekeeper_schema_migrations`. Connecting applies the missing ones in one transaction
/// holding a transaction-level advisory lock (`pg_advisory_xact_lock`) for the schema, so
/// replicas starting together apply each script once and the others wait, then see it done.
/// A schema migrated by a newer build is refused ([`StoreError::SchemaTooNew`]).
pub struct PostgresStore {
    pool: Pool,
    schema: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, or
    /// libpq's `key=value` form) with the default [`PostgresOptions`] and brings the schema up
    /// to date.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the database cannot be reached, [`StoreError::Backend`] if
    /// the URL is invalid or a migration fails, [`StoreError::SchemaTooNew`] if a newer build
    /// migrated the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// [`connect`](Self::connect) with options: another schema, pool size or timeouts.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), and [`StoreError::Invalid`] for a schema name outside
    /// the allowed characters.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        check_schema_name(&options.schema)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            // The URL may hold a password: name the failure, not the text.
            StoreError::backend_from("invalid PostgreSQL connection URL", e)
        })?;
        // Per-session settings in the startup packet, so every pooled connection has them
        // from its first statement: the schema, and bounds on statements and on a session
        // that died inside a transaction holding row locks.
        let mut session = config.get_options().unwrap_or_default().to_owned();
        session.push_str(&format!(
            " -c search_path={} -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            options.schema,
            options.statement_timeout.as_millis(),
            (options.statement_timeout * 3).as_millis(),
        ));
        config.options(session.trim_start());
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("mcp-gatekeeper");
        }
        // One empty query per checkout: a connection the server closed while it sat in the
        // pool is replaced before an operation runs on it.
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        };
        // libpq's `require` encrypts without checking the certificate; here a URL that asks
        // for TLS gets it verified (the system's roots unless a CA file is named).
        let asks_for_tls = matches!(config.get_ssl_mode(), SslMode::Require);
        let roots = match (options.tls, asks_for_tls) {
            (Some(roots), _) => Some(roots),
            (None, true) => Some(TrustedRoots::System),
            (None, false) => None,
        };
        let manager = match roots {
            Some(roots) => {
                if matches!(config.get_ssl_mode(), SslMode::Disable) {
                    return Err(StoreError::Invalid(
                        "the PostgreSQL URL says sslmode=disable, but TLS is configured",
                    ));
                }
                // Never `prefer`: a server (or someone in the path) refusing TLS must not get
                // the connection in the clear.
                config.ssl_mode(SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&roots)?);
                Manager::from_config(config, tls, recycling())
            }
            None => Manager::from_config(config, NoTls, recycling()),
        };
        let pool = Pool::builder(manager)
            .max_size(options.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::backend_from("cannot build the PostgreSQL pool", e))?;
        let store = Self {
            pool,
            schema: options.schema,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema the store's tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<Client, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Applies the migrations the schema lacks, under the schema's advisory lock.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin migration"))?;
        // Held until the transaction ends: a second replica blocks here, then finds the
        // versions recorded.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&MIGRATION_LOCK_CLASS, &self.schema],
        )
        .await
        .map_err(db("take the migration lock"))?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&self.schema],
            )
            .await
            .map_err(db("look up the schema"))?
            .is_some();
        if !exists {
            // The name was checked: letters, digits and `_` only, so it needs no quoting.
            tx.batch_execute(&format!("CREATE SCHEMA {}", self.schema))
                .await
                .map_err(db("create the schema"))?;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (\
                 version integer PRIMARY KEY, \
                 applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(db("create the migrations table"))?;
        let found: i32 = tx
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}"),
                &[],
            )
            .await
            .map_err(db("read the schema version"))?
            .try_get(0)
            .map_err(db("read the schema version"))?;
        let known = MIGRATIONS.len() as i64;
        if i64::from(found) > known {
            return Err(StoreError::SchemaTooNew {
                found: found.into(),
                known,
            });
        }
        for (index, script) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            let version = index as i32 + 1;
            tx.batch_execute(script).await.map_err(|e| {
                db_error(&format!("migration to schema version {version} failed"), e)
            })?;
            tx.execute(
                &format!("INSERT INTO {MIGRATIONS_TABLE} (version) VALUES ($1)"),
                &[&version],
            )
            .await
            .map_err(db("record the schema version"))?;
        }
        tx.commit().await.map_err(db("commit the migration"))
    }
}

/// Refuses schema names that would need quoting (they go into `search_path` and DDL).
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "a PostgreSQL schema name is lower-case letters, digits and `_` (at most 63 bytes)",
        ))
    }
}

/// Whether a driver error means the database cannot be reached or cannot serve now, rather
/// than that a statement was wrong.
fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    let Some(code) = error.code() else {
        // No SQLSTATE: the socket, a timeout, or the connection's end.
        return error.as_db_error().is_none();
    };
    let class = &code.code()[..2];
    // 08: connection exception; 53: insufficient resources (too many connections, disk
    // full); 57: operator intervention (shutdown, a cancelled or timed-out statement).
    matches!(class, "08" | "53" | "57") || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// A [`StoreError`] for a driver error; `context` says what was being done.
///
/// A database error's own `Display` carries its `DETAIL`, which may quote a row (hashes
/// included), so only its SQLSTATE and message are kept, and not the error itself.
fn db_error(context: &str, error: tokio_postgres::Error) -> StoreError {
    if error.code() == Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE) {
        return StoreError::Invalid("PostgreSQL text cannot hold a NUL character");
    }
    let unavailable = is_unavailable(&error);
    let (message, source) = match error.as_db_error() {
        Some(db) => (
            format!(
                "PostgreSQL: {context}: {} ({})",
                db.message(),
                db.code().code()
            ),
            None,
        ),
        None => {
            // The causes too: "error performing TLS handshake" alone does not say that the
            // certificate names another host.
            let mut message = format!("PostgreSQL: {context}: {error}");
            let mut cause = std::error::Error::source(&error);
            while let Some(next) = cause {
                message.push_str(&format!(": {next}"));
                cause = next.source();
            }
            (
                message,
                Some(Box::new(error) as Box<dyn std::error::Error + Send + Sync>),
            )
        }
    };
    if unavailable {
        StoreError::Unavailable { message, source }
    } else {
        StoreError::Backend { message, source }
    }
}

/// [`db_error`] as a `map_err` argument.
fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |error| db_error(context, error)
}

/// A [`StoreError`] for a connection the pool could not hand out: the database is unavailable.
fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => db_error("cannot connect", error),
        other => StoreError::Unavailable {
            message: format!("PostgreSQL: no connection: {other}"),
            source: Some(Box::new(other)),
        },
    }
}

/// Maps an insert's unique and foreign-key violations to the store's conflicts.
fn insert_error(
    conflict: &'static str,
    client_id: &str,
) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |error| match error.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
            match error.as_db_error().and_then(|db| db.constraint()) {
                Some("refresh_tokens_current") => {
                    StoreError::Conflict("current refresh token of the family")
                }
                _ => StoreError::Conflict(conflict),
            }
        }
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => {
            StoreError::UnknownClient(client_id.to_owned())
        }
        _ => db_error("insert", error),
    }
}

/// Whether a text key can be stored: PostgreSQL text cannot hold NUL, so no stored key has
/// one, and binding one fails the statement. Lookups answer "none" for such keys instead (a
/// client id or user name from a request may hold anything).
fn storable(key: &str) -> bool {
    !key.contains('\0')
}

/// Reads column `index` of a row, calling a value of the wrong type corrupt.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

/// Reads a 32-byte hash column.
fn hash(row: &Row, index: usize) -> Result<[u8; 32], StoreError> {
    let bytes: &[u8] = get(row, index)?;
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("column {index}: not a 32-byte hash")))
}

/// Reads a nullable 32-byte hash column.
fn optional_hash(row: &Row, index: usize) -> Result<Option<[u8; 32]>, StoreError> {
    match get::<Option<&[u8]>>(row, index)? {
        None => Ok(None),
        Some(_) => hash(row, index).map(Some),
    }
}

const CLIENT_COLUMNS: &str = "client_id, secret_hash, name, redirect_uris, grant_types, \
     allowed_scopes, role, token_endpoint_auth_method, metadata_url, created_at, self_registered, \
     tls_client_auth, tls_client_auth_values";

/// A mutual-TLS client's expected certificate as its two columns: the kind and its values.
fn tls_client_auth_columns(
    auth: Option<&TlsClientAuth>,
) -> (Option<&'static str>, Option<Vec<String>>) {
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
    (Some(kind), Some(values))
}

/// The expected certificate of a client row (columns `kind` and `kind + 1`).
fn tls_client_auth_from_row(row: &Row, kind: usize) -> Result<Option<TlsClientAuth>, StoreError> {
    let Some(name) = get::<Option<String>>(row, kind)? else {
        return Ok(None);
    };
    let corrupt = |why: &str| StoreError::Corrupt(format!("tls_client_auth_values: {why}"));
    let mut values: Vec<String> = get::<Option<Vec<String>>>(row, kind + 1)?.unwrap_or_default();
    let mut single = || match values.len() {
        1 => values.pop().ok_or_else(|| corrupt("no value")),
        _ => Err(corrupt("expected one value")),
    };
    Ok(Some(match name.as_str() {
        "subject_dn" => TlsClientAuth::SubjectDn(single()?),
        "san_dns" => TlsClientAuth::SanDns(single()?),
        "san_uri" => TlsClientAuth::SanUri(single()?),
        "san_email" => TlsClientAuth::SanEmail(single()?),
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
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(corrupt("unknown tls_client_auth")),
    }))
}

fn client_from_row(row: &Row) -> Result<ClientRecord, StoreError> {
    Ok(ClientRecord {
        client_id: get(row, 0)?,
        secret_hash: optional_hash(row, 1)?,
        name: get(row, 2)?,
        redirect_uris: get(row, 3)?,
        grant_types: get(row, 4)?,
        allowed_scopes: get(row, 5)?,
        role: get(row, 6)?,
        token_endpoint_auth_method: get(row, 7)?,
        metadata_url: get(row, 8)?,
        created_at: get(row, 9)?,
        self_registered: get(row, 10)?,
        tls_client_auth: tls_client_auth_from_row(row, 11)?,
    })
}

const USER_COLUMNS: &str = "username, password_hash, role, scopes, created_at";

fn user_from_row(row: &Row) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        username: get(row, 0)?,
        password_hash: get(row, 1)?,
        role: get(row, 2)?,
        scopes: get(row, 3)?,
        created_at: get(row, 4)?,
    })
}

const CODE_COLUMNS: &str = "code_hash, client_id, subject, redirect_uri, code_challenge, scope, \
     resource, family_id, expires_at, used_at";

/// A code and when it was used.
fn code_from_row(row: &Row) -> Result<(AuthCodeRecord, Option<i64>), StoreError> {
    Ok((
        AuthCodeRecord {
            code_hash: hash(row, 0)?,
            client_id: get(row, 1)?,
            subject: get(row, 2)?,
            redirect_uri: get(row, 3)?,
            code_challenge: get(row, 4)?,
            scope: get(row, 5)?,
            resource: get(row, 6)?,
            family_id: get(row, 7)?,
            expires_at: get(row, 8)?,
        },
        get(row, 9)?,
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

fn refresh_from_row(row: &Row) -> Result<StoredRefresh, StoreError> {
    Ok(StoredRefresh {
        record: RefreshTokenRecord {
            token_hash: hash(row, 0)?,
            family_id: get(row, 1)?,
            client_id: get(row, 2)?,
            subject: get(row, 3)?,
            scope: get(row, 4)?,
            resource: get(row, 5)?,
            certificate_thumbprint: optional_hash(row, 9)?,
            expires_at: get(row, 6)?,
        },
        rotated_at: get(row, 7)?,
        replaced_by: optional_hash(row, 8)?,
    })
}

const KEY_COLUMNS: &str = "kid, algorithm, private_key_der, public_key_der, created_at, retired_at";

fn key_from_row(row: &Row) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: get(row, 0)?,
        algorithm: get(row, 1)?,
        private_key_der: get(row, 2)?,
        public_key_der: get(row, 3)?,
        created_at: get(row, 4)?,
        retired_at: get(row, 5)?,
    })
}

const SESSION_COLUMNS: &str = "session_hash, subject, scopes, created_at, expires_at";

fn session_from_row(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        session_hash: hash(row, 0)?,
        subject: get(row, 1)?,
        scopes: get(row, 2)?,
        created_at: get(row, 3)?,
        expires_at: get(row, 4)?,
    })
}

/// Runs one statement on a pooled connection (prepared once per connection) and returns the
/// rows.
async fn query(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, params).await
}

/// [`query`] inside a transaction.
async fn tx_query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query(&statement, params).await
}

/// [`tx_query`] for a statement without rows; the number of rows it changed.
async fn tx_execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await
}

const REVOKE_FAMILY: &str = "INSERT INTO revoked_families (family_id, revoked_at) VALUES ($1, $2) \
     ON CONFLICT (family_id) DO NOTHING";

/// The refresh token with this hash, locked until the transaction ends.
async fn lock_refresh(
    tx: &Transaction<'_>,
    token_hash: &[u8; 32],
) -> Result<Option<StoredRefresh>, StoreError> {
    let rows = tx_query(
        tx,
        &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE"),
        &[token_hash],
    )
    .await
    .map_err(db("read a refresh token"))?;
    rows.first().map(refresh_from_row).transpose()
}

/// Whether the token `old` (already rotated, locked) may be retried at `now`: within the grace
/// period, its successor still the family's unused, unexpired current token. Locks the
/// successor, so a concurrent rotation of it waits for this transaction, or this one reads it
/// rotated.
async fn may_retry(
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
    Ok(lock_refresh(tx, &successor).await?.is_some_and(|next| {
        next.rotated_at.is_none()
            && next.record.family_id == old.record.family_id
            && now < next.record.expires_at
    }))
}

/// Inserts `new` as its family's current token and records it as `old_hash`'s successor.
async fn replace_with(
    tx: &Transaction<'_>,
    old_hash: &[u8; 32],
    new: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    insert_refresh(tx, new).await?;
    tx_execute(
        tx,
        "UPDATE refresh_tokens SET replaced_by = $2 WHERE token_hash = $1",
        &[old_hash, &new.token_hash],
    )
    .await
    .map_err(db("record the successor"))?;
    Ok(())
}

async fn insert_refresh(
    tx: &Transaction<'_>,
    token: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    tx_execute(
        tx,
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, subject, scope, resource, \
         expires_at, certificate_thumbprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &token.token_hash,
            &token.family_id,
            &token.client_id,
            &token.subject,
            &token.scope,
            &token.resource,
            &token.expires_at,
            &token.certificate_thumbprint,
        ],
    )
    .await
    .map_err(insert_error("refresh token", &token.client_id))?;
    Ok(())
}

impl PostgresStore {
    /// Runs one statement on a pooled connection and returns its rows.
    async fn rows(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        query(&client, sql, params).await.map_err(db(context))
    }

    /// Runs one statement on a pooled connection; the number of rows it changed.
    async fn execute(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(db(context))?;
        client
            .execute(&statement, params)
            .await
            .map_err(db(context))
    }
}

/// Runs `$body` (a future using `$tx`, a reference to the transaction) in a transaction on a
/// pooled connection and commits when it is `Ok`; an `Err` rolls back (dropping the
/// transaction does). A macro rather than a function taking a closure: the closure's future
/// would borrow its argument, which closures cannot express.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let transaction = client.transaction().await.map_err(db("begin"))?;
        let $tx = &transaction;
        // Named, so `?` inside the body knows its error type.
        let value: Result<_, StoreError> = $body.await;
        let value = value?;
        transaction.commit().await.map_err(db("commit"))?;
        Ok(value)
    }};
}

impl Store for PostgresStore {
    fn put_client(&self, client: ClientRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // An upsert keeps the row (and so the client's codes and tokens).
            let (tls_kind, tls_values) = tls_client_auth_columns(client.tls_client_auth.as_ref());
            self.execute(
                "store a client",
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
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
                &[
                    &client.client_id,
                    &client.secret_hash,
                    &client.name,
                    &client.redirect_uris,
                    &client.grant_types,
                    &client.allowed_scopes,
                    &client.role,
                    &client.token_endpoint_auth_method,
                    &client.metadata_url,
                    &client.created_at,
                    &client.self_registered,
                    &tls_kind,
                    &tls_values,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn get_client<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClientRecord>, StoreError>> {
        Box::pin(async move {
            if !storable(client_id) {
                // Still a round trip: the readiness probe looks up an impossible client id to
                // learn whether the database answers.
                self.rows("reach the database", "SELECT 1", &[]).await?;
                return Ok(None);
            }
            let rows = self
                .rows(
                    "read a client",
                    &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"),
                    &[&client_id],
                )
                .await?;
            rows.first().map(client_from_row).transpose()
        })
    }

    fn delete_client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if !storable(client_id) {
                return Ok(false);
            }
            let deleted = self
                .execute(
                    "delete a client",
                    "DELETE FROM clients WHERE client_id = $1",
                    &[&client_id],
                )
                .await?;
            Ok(deleted > 0)
        })
    }

    fn put_user(&self, user: UserRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.execute(
                "store a user",
                &format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (username) DO UPDATE SET \
                     password_hash = excluded.password_hash, role = excluded.role, \
                     scopes = excluded.scopes, created_at = excluded.created_at"
                ),
                &[
                    &user.username,
                    &user.password_hash,
                    &user.role,
                    &user.scopes,
                    &user.created_at,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn get_user<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserRecord>, StoreError>> {
        Box::pin(async move {
            if !storable(username) {
                self.rows("reach the database", "SELECT 1", &[]).await?;
                return Ok(None);
            }
            let rows = self
                .rows(
                    "read a user",
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"),
                    &[&username],
                )
                .await?;
            rows.first().map(user_from_row).transpose()
        })
    }

    fn delete_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if !storable(username) {
                return Ok(false);
            }
            in_transaction!(self, |tx| async {
                // The families of the rows actually deleted (a token a concurrent rotation
                // inserted after this statement's snapshot stays, in a family revoked here),
                // dated by their latest expiry (see `Store::delete_user`).
                tx_execute(
                    tx,
                    "WITH codes AS (DELETE FROM auth_codes WHERE subject = $1 \
                                    RETURNING family_id, expires_at), \
                          tokens AS (DELETE FROM refresh_tokens WHERE subject = $1 \
                                     RETURNING family_id, expires_at) \
                     INSERT INTO revoked_families (family_id, revoked_at) \
                     SELECT family_id, max(expires_at) \
                     FROM (SELECT * FROM codes UNION ALL SELECT * FROM tokens) AS held \
                     GROUP BY family_id \
                     ON CONFLICT (family_id) DO UPDATE \
                     SET revoked_at = GREATEST(revoked_families.revoked_at, excluded.revoked_at)",
                    &[&username],
                )
                .await
                .map_err(db("end a user's grants"))?;
                tx_execute(tx, "DELETE FROM sessions WHERE subject = $1", &[&username])
                    .await
                    .map_err(db("end a user's sessions"))?;
                let deleted = tx_execute(tx, "DELETE FROM users WHERE username = $1", &[&username])
                    .await
                    .map_err(db("delete a user"))?;
                Ok(deleted > 0)
            })
        })
    }

    fn end_sessions_of<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            if !storable(subject) {
                return Ok(0);
            }
            let rows = self
                .rows(
                    "end a user's sessions",
                    "WITH ended AS (DELETE FROM sessions WHERE subject = $1 RETURNING expires_at) \
                     SELECT count(*) FROM ended WHERE expires_at > $2",
                    &[&subject, &now],
                )
                .await?;
            let live: i64 = rows
                .first()
                .map(|row| get(row, 0))
                .transpose()?
                .unwrap_or_default();
            Ok(u64::try_from(live).unwrap_or_default())
        })
    }

    fn list_clients(&self) -> BoxFuture<'_, Result<Vec<ClientRecord>, StoreError>> {
        Box::pin(async move {
            // `COLLATE "C"`: byte order, as the other backends sort, whatever the database's
            // locale would make of the ids.
            let rows = self
                .rows(
                    "list the clients",
                    &format!(
                        "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id COLLATE \"C\""
                    ),
                    &[],
                )
                .await?;
            rows.iter().map(client_from_row).collect()
        })
    }

    fn list_users(&self) -> BoxFuture<'_, Result<Vec<UserRecord>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows(
                    "list the users",
                    &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username COLLATE \"C\""),
                    &[],
                )
                .await?;
            rows.iter().map(user_from_row).collect()
        })
    }

    fn put_code(&self, code: AuthCodeRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // One statement: the primary key reports a duplicate before the foreign key reports
            // an unknown client, the order the contract names them in.
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "INSERT INTO auth_codes ({CODE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)"
                ))
                .await
                .map_err(db("store an authorization code"))?;
            client
                .execute(
                    &statement,
                    &[
                        &code.code_hash,
                        &code.client_id,
                        &code.subject,
                        &code.redirect_uri,
                        &code.code_challenge,
                        &code.scope,
                        &code.resource,
                        &code.family_id,
                        &code.expires_at,
                    ],
                )
                .await
                .map_err(insert_error("authorization code", &code.client_id))?;
            Ok(())
        })
    }

    fn redeem_code(
        &self,
        code_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<CodeRedemption, StoreError>> {
        Box::pin(async move {
            in_transaction!(self, |tx| async {
                // The row lock makes concurrent redemptions queue: the first marks the code
                // used and commits; each later one then reads it used (a replay).
                let rows = tx_query(
                    tx,
                    &format!(
                        "SELECT {CODE_COLUMNS} FROM auth_codes WHERE code_hash = $1 FOR UPDATE"
                    ),
                    &[&code_hash],
                )
                .await
                .map_err(db("read an authorization code"))?;
                let Some(row) = rows.first() else {
                    return Ok(CodeRedemption::Unknown);
                };
                let (code, used_at) = code_from_row(row)?;
                if used_at.is_some() {
                    tx_execute(tx, REVOKE_FAMILY, &[&code.family_id, &now])
                        .await
                        .map_err(db("revoke a family"))?;
                    return Ok(CodeRedemption::Replayed {
                        family_id: code.family_id,
                    });
                }
                if now >= code.expires_at {
                    return Ok(CodeRedemption::Expired);
                }
                tx_execute(
                    tx,
                    "UPDATE auth_codes SET used_at = $2 WHERE code_hash = $1",
                    &[&code_hash, &now],
                )
                .await
                .map_err(db("use an authorization code"))?;
                Ok(CodeRedemption::Redeemed(code))
            })
        })
    }

    fn put_refresh(&self, token: RefreshTokenRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // The primary key and the partial unique index on current tokens decide the
            // conflicts, also against a concurrent insert.
            in_transaction!(self, |tx| insert_refresh(tx, &token))
        })
    }

    fn get_refresh(
        &self,
        token_hash: [u8; 32],
    ) -> BoxFuture<'_, Result<Option<RefreshTokenRecord>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows(
                    "read a refresh token",
                    &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1"),
                    &[&token_hash],
                )
                .await?;
            Ok(rows
                .first()
                .map(refresh_from_row)
                .transpose()?
                .map(|token| token.record))
        })
    }

    fn rotate_refresh(
        &self,
        old_hash: [u8; 32],
        new: RefreshTokenRecord,
        now: i64,
        grace: i64,
    ) -> BoxFuture<'_, Result<Rotation, StoreError>> {
        Box::pin(async move {
            in_transaction!(self, |tx| async {
                // Locked first: concurrent rotations of one token queue here and each reads
                // what the one before it committed.
                let Some(old) = lock_refresh(tx, &old_hash).await? else {
                    return Ok(Rotation::Unknown);
                };
                let family_id = &old.record.family_id;
                let revoked = tx_query(
                    tx,
                    "SELECT 1 FROM revoked_families WHERE family_id = $1",
                    &[family_id],
                )
                .await
                .map_err(db("read a family revocation"))?;
                if !revoked.is_empty() {
                    return Ok(Rotation::Revoked);
                }
                if old.rotated_at.is_some() {
                    if !may_retry(tx, &old, now, grace).await? {
                        tx_execute(tx, REVOKE_FAMILY, &[family_id, &now])
                            .await
                            .map_err(db("revoke a family"))?;
                        return Ok(Rotation::Reused {
                            family_id: old.record.family_id,
                        });
                    }
                    check_grant(&old.record, &new)?;
                    // The unused successor is retired first (the family may have one current
                    // token), then `new` takes its place.
                    tx_execute(
                        tx,
                        "UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1",
                        &[&old.replaced_by, &now],
                    )
                    .await
                    .map_err(db("retire a refresh token"))?;
                    replace_with(tx, &old_hash, &new).await?;
                    return Ok(Rotation::Retried(old.record));
                }
                if now >= old.record.expires_at {
                    return Ok(Rotation::Expired);
                }
                check_grant(&old.record, &new)?;
                tx_execute(
                    tx,
                    "UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1",
                    &[&old_hash, &now],
                )
                .await
                .map_err(db("rotate a refresh token"))?;
                replace_with(tx, &old_hash, &new).await?;
                Ok(Rotation::Rotated(old.record))
            })
        })
    }

    fn revoke_refresh(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            // One statement: the family of the token, revoked if the token exists.
            let rows = self
                .rows(
                    "revoke a refresh token",
                    "WITH token AS (SELECT family_id FROM refresh_tokens WHERE token_hash = $1), \
                     revoked AS (INSERT INTO revoked_families (family_id, revoked_at) \
                         SELECT family_id, $2 FROM token \
                         ON CONFLICT (family_id) DO NOTHING) \
                     SELECT 1 FROM token",
                    &[&token_hash, &now],
                )
                .await?;
            Ok(!rows.is_empty())
        })
    }

    fn revoke_family<'a>(
        &'a self,
        family_id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.execute("revoke a family", REVOKE_FAMILY, &[&family_id, &now])
                .await?;
            Ok(())
        })
    }

    fn is_family_revoked<'a>(
        &'a self,
        family_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows(
                    "read a family revocation",
                    "SELECT 1 FROM revoked_families WHERE family_id = $1",
                    &[&family_id],
                )
                .await?;
            Ok(!rows.is_empty())
        })
    }

    fn revoke_access_token<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.execute(
                "revoke an access token",
                "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (jti) DO UPDATE SET \
                 expires_at = greatest(revoked_access_tokens.expires_at, excluded.expires_at)",
                &[&jti, &expires_at],
            )
            .await?;
            Ok(())
        })
    }

    fn is_access_token_revoked<'a>(
        &'a self,
        jti: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows(
                    "read an access-token revocation",
                    "SELECT 1 FROM revoked_access_tokens WHERE jti = $1",
                    &[&jti],
                )
                .await?;
            Ok(!rows.is_empty())
        })
    }

    fn put_signing_key(&self, key: SigningKeyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                ))
                .await
                .map_err(db("store a signing key"))?;
            client
                .execute(
                    &statement,
                    &[
                        &key.kid,
                        &key.algorithm,
                        &key.private_key_der,
                        &key.public_key_der,
                        &key.created_at,
                        &key.retired_at,
                    ],
                )
                .await
                .map_err(insert_error("signing key", ""))?;
            Ok(())
        })
    }

    fn signing_keys(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows(
                    "read the signing keys",
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, stored DESC"
                    ),
                    &[],
                )
                .await?;
            rows.iter().map(key_from_row).collect()
        })
    }

    fn retire_signing_key<'a>(
        &'a self,
        kid: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let updated = self
                .execute(
                    "retire a signing key",
                    "UPDATE signing_keys SET retired_at = coalesce(retired_at, $2) WHERE kid = $1",
                    &[&kid, &now],
                )
                .await?;
            Ok(updated > 0)
        })
    }

    fn delete_signing_key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = self
                .execute(
                    "delete a signing key",
                    "DELETE FROM signing_keys WHERE kid = $1",
                    &[&kid],
                )
                .await?;
            Ok(deleted > 0)
        })
    }

    fn replace_signing_key<'a>(
        &'a self,
        replaces: Option<&'a str>,
        key: SigningKeyRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if key.retired_at.is_some() {
                return Err(StoreError::Invalid("a new signing key cannot be retired"));
            }
            if !storable(&key.kid) || !storable(&key.algorithm) {
                return Err(StoreError::Invalid(
                    "PostgreSQL text cannot hold a NUL character",
                ));
            }
            in_transaction!(self, |tx| async {
                // Held until commit: replacements run one at a time in this schema. Row locks
                // would not do: on an empty store there is no row to lock. The read below
                // starts after the lock is granted, so (READ COMMITTED) it sees the key the
                // previous holder committed.
                tx_execute(
                    tx,
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    &[&SIGNING_KEY_LOCK_CLASS, &self.schema],
                )
                .await
                .map_err(db("take the signing-key lock"))?;
                let rows = tx_query(
                    tx,
                    "SELECT kid, retired_at IS NULL FROM signing_keys \
                     ORDER BY created_at DESC, stored DESC",
                    &[],
                )
                .await
                .map_err(db("read the signing keys"))?;
                let mut current: Option<String> = None;
                for row in &rows {
                    let kid: String = get(row, 0)?;
                    if kid == key.kid {
                        return Err(StoreError::Conflict("signing key"));
                    }
                    let unretired: bool = get(row, 1)?;
                    if unretired && current.is_none() {
                        current = Some(kid);
                    }
                }
                if current.as_deref() != replaces {
                    return Ok(false);
                }
                tx_execute(
                    tx,
                    "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL",
                    &[&now],
                )
                .await
                .map_err(db("retire the signing key"))?;
                tx_execute(
                    tx,
                    &format!(
                        "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                    ),
                    &[
                        &key.kid,
                        &key.algorithm,
                        &key.private_key_der,
                        &key.public_key_der,
                        &key.created_at,
                        &key.retired_at,
                    ],
                )
                .await
                .map_err(insert_error("signing key", ""))?;
                Ok(true)
            })
        })
    }

    fn purge_expired(&self, now: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            // Deletes by condition only: a replica purging at the same time deletes the
            // rows this one did not (a row locked by the other waits, then is gone), so the
            // two never fail each other. Each statement commits on its own (each sees what
            // the earlier ones removed): no transaction holds the rows of several tables
            // while waiting for more, which could deadlock with a client's cascade delete.
            let client = self.client().await?;
            let family_cutoff = now.saturating_sub(FAMILY_REVOCATION_RETENTION_SECS);
            let client_cutoff = now.saturating_sub(UNUSED_CLIENT_RETENTION_SECS);
            let mut removed = 0;
            for (sql, cutoff) in [
                ("DELETE FROM auth_codes WHERE expires_at <= $1", now),
                ("DELETE FROM refresh_tokens WHERE expires_at <= $1", now),
                (
                    "DELETE FROM revoked_access_tokens WHERE expires_at <= $1",
                    now,
                ),
                ("DELETE FROM sessions WHERE expires_at <= $1", now),
                ("DELETE FROM used_once WHERE expires_at <= $1", now),
                (
                    "DELETE FROM revoked_families f WHERE revoked_at <= $1 \
                         AND NOT EXISTS (SELECT 1 FROM auth_codes c WHERE c.family_id = f.family_id) \
                         AND NOT EXISTS (SELECT 1 FROM refresh_tokens t \
                                         WHERE t.family_id = f.family_id)",
                    family_cutoff,
                ),
                // After the expired codes and tokens are gone: clients nobody vouched for
                // that hold nothing any more (the condition matches `clients_unvouched`).
                (
                    "DELETE FROM clients k \
                         WHERE (self_registered OR metadata_url IS NOT NULL) \
                         AND created_at < $1 \
                         AND NOT EXISTS (SELECT 1 FROM auth_codes c WHERE c.client_id = k.client_id) \
                         AND NOT EXISTS (SELECT 1 FROM refresh_tokens t \
                                         WHERE t.client_id = k.client_id)",
                    client_cutoff,
                ),
            ] {
                let statement = client
                    .prepare_cached(sql)
                    .await
                    .map_err(db("purge expired records"))?;
                removed += client
                    .execute(&statement, &[&cutoff])
                    .await
                    .map_err(db("purge expired records"))?;
            }
            Ok(removed)
        })
    }

    fn shared_secret<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, Result<[u8; 32], StoreError>> {
        Box::pin(async move {
            if !storable(name) {
                return Err(StoreError::Invalid(
                    "PostgreSQL text cannot hold a NUL character",
                ));
            }
            // Two statements, not one: a statement's snapshot would not see a row another
            // replica committed while this insert waited for it. After the insert, a row is
            // committed under `name`, this one's or the first one's.
            self.execute(
                "store a shared secret",
                "INSERT INTO shared_secrets (name, secret) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate],
            )
            .await?;
            let rows = self
                .rows(
                    "read a shared secret",
                    "SELECT secret FROM shared_secrets WHERE name = $1",
                    &[&name],
                )
                .await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::backend("the shared secret just stored is missing"))?;
            hash(row, 0)
        })
    }

    fn put_session(
        &self,
        session: SessionRecord,
        max_per_subject: usize,
        max_live: usize,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            if !storable(&session.subject)
                || session
                    .scopes
                    .as_ref()
                    .is_some_and(|scopes| scopes.iter().any(|s| !storable(s)))
            {
                return Err(StoreError::Invalid(
                    "PostgreSQL text cannot hold a NUL character",
                ));
            }
            in_transaction!(self, |tx| async {
                // Held until commit: sessions start one at a time in this schema, so the
                // counts below stay true until the insert.
                tx_execute(
                    tx,
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    &[&SESSION_LOCK_CLASS, &self.schema],
                )
                .await
                .map_err(db("take the session lock"))?;
                let live: i64 = tx_query(
                    tx,
                    "SELECT count(*) FROM sessions WHERE expires_at > $1",
                    &[&now],
                )
                .await
                .map_err(db("count the sessions"))?
                .first()
                .map(|row| get(row, 0))
                .transpose()?
                .unwrap_or_default();
                let mine = tx_query(
                    tx,
                    "SELECT session_hash FROM sessions WHERE subject = $1 AND expires_at > $2 \
                     ORDER BY created_at, session_hash",
                    &[&session.subject, &now],
                )
                .await
                .map_err(db("read a user's sessions"))?;
                let live = usize::try_from(live).unwrap_or(usize::MAX);
                let Some(evict) = session_evictions(live, mine.len(), max_per_subject, max_live)
                else {
                    return Ok(false);
                };
                for row in &mine[..evict] {
                    let oldest = hash(row, 0)?;
                    tx_execute(
                        tx,
                        "DELETE FROM sessions WHERE session_hash = $1",
                        &[&oldest],
                    )
                    .await
                    .map_err(db("end a user's oldest session"))?;
                }
                tx_execute(
                    tx,
                    &format!(
                        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                    ),
                    &[
                        &session.session_hash,
                        &session.subject,
                        &session.scopes,
                        &session.created_at,
                        &session.expires_at,
                    ],
                )
                .await
                .map_err(insert_error("session", ""))?;
                Ok(true)
            })
        })
    }

    fn get_session(
        &self,
        session_hash: [u8; 32],
        now: i64,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows(
                    "read a session",
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions \
                         WHERE session_hash = $1 AND expires_at > $2"
                    ),
                    &[&session_hash, &now],
                )
                .await?;
            rows.first().map(session_from_row).transpose()
        })
    }

    fn delete_session(&self, session_hash: [u8; 32]) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = self
                .execute(
                    "end a session",
                    "DELETE FROM sessions WHERE session_hash = $1",
                    &[&session_hash],
                )
                .await?;
            Ok(deleted > 0)
        })
    }

    fn use_once(
        &self,
        key: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            // A concurrent insert of the same key waits for the first to commit, then takes
            // the conflict branch and finds the use live: one row changed in all.
            let changed = self
                .execute(
                    "record a single use",
                    "INSERT INTO used_once (key, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE used_once.expires_at <= $3",
                    &[&key, &expires_at, &now],
                )
                .await?;
            Ok(changed > 0)
        })
    }
}

/// Refuses a successor that does not continue the old token's grant.
fn check_grant(old: &RefreshTokenRecord, new: &RefreshTokenRecord) -> Result<(), StoreError> {
    if old.same_grant(new) {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "the new refresh token does not continue the old one's grant",
        ))
    }
}
