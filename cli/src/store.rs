//! The OAuth authorization server's store, administered from the command line: `clients`,
//! `users` and `signing-keys`. The store is opened with the runtime's own backends
//! (`SqliteStore`, `PostgresStore`), so what these commands write is what a server reads.

pub(crate) mod clients;
pub(crate) mod signing_keys;
mod table;
pub(crate) mod users;

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use clap::Args;
use mcp_gatekeeper::store::{Store, StoreError};

use crate::outcome::Failure;

/// The schema the `oauth` example (and `PostgresOptions`) use unless told otherwise.
const DEFAULT_SCHEMA: &str = "mcp_gatekeeper";

/// Where the store is; every store command takes these.
#[derive(Args)]
pub(crate) struct StoreArgs {
    /// The OAuth store: `sqlite:PATH` (the file a server opened with `SqliteStore::open`; the
    /// oauth example's is `OAUTH_DATA_DIR/oauth.db`) or a PostgreSQL URL
    /// (`postgres://USER:PASSWORD@HOST/DATABASE`). A URL holding a password is better given in
    /// $OAUTH_STORE than on the command line, where `ps` and the shell history show it.
    #[arg(
        long,
        value_name = "STORE",
        env = "OAUTH_STORE",
        hide_env_values = true
    )]
    store: String,
    /// The PostgreSQL schema of the store's tables (as the server's
    /// `PostgresOptions::schema`); unused with SQLite.
    #[arg(
        long,
        value_name = "NAME",
        env = "OAUTH_DATABASE_SCHEMA",
        default_value = DEFAULT_SCHEMA
    )]
    schema: String,
    /// Connect to PostgreSQL over TLS, verifying the server's certificate against the CA
    /// certificates of this PEM file (as the server's `PostgresOptions::tls_ca_file`). Without
    /// it, a URL with `?sslmode=require` is verified against the system's roots.
    #[arg(long, value_name = "FILE", env = "OAUTH_DATABASE_CA_FILE")]
    store_ca_file: Option<PathBuf>,
}

/// An open store and how to name it in messages (never with a database password).
pub(crate) struct Opened {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) name: String,
}

/// Whether a missing SQLite file may be created: only by commands that add something, so
/// that a mistyped path given to `list` or `remove` is an error rather than a new, empty store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    IfMissing,
    Never,
}

/// Where `--store` points.
enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreArgs {
    fn location(&self) -> Result<Location, Failure> {
        let text = self.store.trim();
        if let Some(path) = text.strip_prefix("sqlite:") {
            // `sqlite:///var/lib/x.db` is read as the absolute path, like a URL would be.
            let path = if path.starts_with("///") {
                &path[2..]
            } else {
                path
            };
            if path.is_empty() {
                return Err(Failure::Usage("--store sqlite: names no file".to_owned()));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Location::Postgres(text.to_owned()));
        }
        // The value itself is not repeated: it may be a URL with a password in it.
        Err(Failure::Usage(
            "--store is `sqlite:PATH` or a `postgres://` URL".to_owned(),
        ))
    }

    /// Opens the store (a PostgreSQL schema is created and migrated as a server would).
    pub(crate) async fn open(&self, create: Create) -> Result<Opened, Failure> {
        match self.location()? {
            Location::Sqlite(path) => open_sqlite(&path, create),
            Location::Postgres(url) => {
                open_postgres(&url, &self.schema, self.store_ca_file.as_deref()).await
            }
        }
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &Path, create: Create) -> Result<Opened, Failure> {
    if create == Create::Never && !path.exists() {
        return Err(Failure::Unable(format!(
            "there is no store at `{}` (a server creates it when it first starts)",
            path.display()
        )));
    }
    let store = mcp_gatekeeper::store::SqliteStore::open(path).map_err(store_failure)?;
    Ok(Opened {
        store: Arc::new(store),
        name: format!("SQLite ({})", path.display()),
    })
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_: &Path, _: Create) -> Result<Opened, Failure> {
    Err(Failure::Usage(
        "this mcp-gatekeeper was built without SQLite support (feature `sqlite`)".to_owned(),
    ))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, schema: &str, ca_file: Option<&Path>) -> Result<Opened, Failure> {
    use mcp_gatekeeper::store::{PostgresOptions, PostgresStore};
    let mut options = PostgresOptions::new().schema(schema);
    if let Some(ca_file) = ca_file {
        options = options.tls_ca_file(ca_file);
    }
    let store = PostgresStore::connect_with(url, options)
        .await
        .map_err(store_failure)?;
    Ok(Opened {
        store: Arc::new(store),
        name: format!("PostgreSQL (schema {schema})"),
    })
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, _: &str, _: Option<&Path>) -> Result<Opened, Failure> {
    Err(Failure::Usage(
        "this mcp-gatekeeper was built without PostgreSQL support (feature `postgres`)".to_owned(),
    ))
}

/// Runs a store command on a runtime of its own (the rest of the tool is synchronous).
pub(crate) fn block_on<T>(future: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Unable(format!("cannot start the async runtime: {error}")))?
        .block_on(future)
}

/// A store error as a failure. Store errors never hold secrets or hashes.
pub(crate) fn store_failure(error: StoreError) -> Failure {
    Failure::Unable(format!("the store failed: {error}"))
}

/// Seconds since the epoch, as the store's timestamps are.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A unix time as an RFC 3339 timestamp, for tables.
pub(crate) fn timestamp(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map_or_else(|| unix.to_string(), |at| crate::time::rfc3339(&at))
}

/// Checks a role name: letters, digits, `_` and `-`, as roles are declared.
pub(crate) fn parse_role(text: &str) -> Result<String, String> {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(text.to_owned())
    } else {
        Err("a role is letters, digits, `_` and `-`".to_owned())
    }
}

/// Checks a scope: an RFC 6749 §3.3 scope token (visible ASCII but `"` and `\`).
pub(crate) fn parse_scope(text: &str) -> Result<String, String> {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        Ok(text.to_owned())
    } else {
        Err("a scope is visible ASCII without spaces, `\"` or `\\`".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(store: &str) -> Result<Location, Failure> {
        StoreArgs {
            store: store.to_owned(),
            schema: DEFAULT_SCHEMA.to_owned(),
            store_ca_file: None,
        }
        .location()
    }

    #[test]
    fn store_locations() {
        let sqlite = |text: &str| match location(text) {
            Ok(Location::Sqlite(path)) => path,
            _ => panic!("{text} is not a SQLite location"),
        };
        assert_eq!(sqlite("sqlite:data/oauth.db"), Path::new("data/oauth.db"));
        assert_eq!(
            sqlite("sqlite:///var/lib/oauth.db"),
            Path::new("/var/lib/oauth.db")
        );
        assert!(matches!(
            location("postgres://u:p@h/db"),
            Ok(Location::Postgres(_))
        ));
        assert!(matches!(
            location("postgresql://h/db"),
            Ok(Location::Postgres(_))
        ));
        for bad in ["sqlite:", "oauth.db", "mysql://u:secret@h/db"] {
            match location(bad) {
                Err(failure) => assert!(!failure.message().contains("secret")),
                Ok(_) => panic!("{bad} was accepted"),
            }
        }
    }

    #[test]
    fn roles_and_scopes() {
        assert!(parse_role("data_admin-2").is_ok());
        assert!(parse_role("a b").is_err() && parse_role("").is_err());
        assert!(parse_scope("data:read").is_ok() && parse_scope("https://x/y").is_ok());
        assert!(parse_scope("a b").is_err() && parse_scope("a\"").is_err());
    }
}
