//! An API-key file that is read again while the server runs: keys are added, rotated and
//! removed by editing the file, without a restart.
//!
//! The file is checked for a change (size, modification time, inode) every
//! [`ApiKeyFile::check_every`] (default 500 ms) and read again on `SIGHUP`. A new file takes
//! effect only whole: it is parsed and checked (every role one of the tools' roles) first, and
//! a file that fails keeps the keys in force and says why, in the log and the audit trail. A
//! request reads the keys in force through one atomic load; a reload swaps them in one store.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;

use super::ApiKeys;
use crate::{
    ConfigError,
    audit::Outcome,
    auth::reload::{self, Reloadable, WatchedFile, lock},
    auth::{AuthRequest, Authentication, Authenticator, CredentialKind, ServerContext},
};

/// API keys from a file of digests (the format of [`ApiKeys::from_file`]) that is read again
/// when it changes and on `SIGHUP`, so keys are rotated without a restart.
///
/// A file that cannot be read or parsed, or names a role the tools do not declare, changes
/// nothing: the keys in force stay, and the refusal is logged and audited
/// (`configuration`, `key_file_rejected`, with the line at fault). A file taken is audited
/// `key_file_reloaded`. Cheap to clone: clones share the keys, so one kept aside can
/// [`reload`](Self::reload) on demand.
///
/// The file is watched from the first time a server is built with it (or the first request it
/// decides), on the Tokio runtime; watching installs a `SIGHUP` handler, so from then on
/// `SIGHUP` reloads the file instead of ending the process.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mcp_gatekeeper::{ApiKeyFile, Gatekeeper};
/// # struct Tools;
/// # #[mcp_gatekeeper::mcp_tools]
/// # impl Tools {
/// #     /// Ping.
/// #     #[mcp_tool(public)]
/// #     fn ping(&self) -> &'static str { "pong" }
/// # }
/// let keys = ApiKeyFile::open("/etc/mcp/api-keys")?;
/// Gatekeeper::new(Tools).authenticate(keys).serve("0.0.0.0:3000").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ApiKeyFile {
    inner: Arc<Inner>,
}

struct Inner {
    file: WatchedFile,
    keys: ArcSwap<ApiKeys>,
    /// The role names every server using the keys declares (each reload is checked against
    /// all of them), `None` until a server that knows its roles is built.
    roles: Mutex<Option<Vec<String>>>,
}

impl ApiKeyFile {
    /// Reads the keys in `path` now.
    ///
    /// # Errors
    ///
    /// What [`ApiKeys::from_file`] reports: the file cannot be read, or a line is invalid.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let file = WatchedFile::new(path.into());
        let keys = ApiKeys::from_file(file.path())?;
        Ok(Self {
            inner: Arc::new(Inner {
                file,
                keys: ArcSwap::from_pointee(keys),
                roles: Mutex::default(),
            }),
        })
    }

    /// How often the file is checked for a change (default: 500 ms; a check reads only the
    /// file's metadata). Set it before the keys are given to a server.
    pub fn check_every(self, interval: Duration) -> Self {
        self.inner.file.set_check_every(interval);
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.inner.file.path()
    }

    /// How many keys are in force.
    pub fn len(&self) -> usize {
        self.inner.keys.load().len()
    }

    /// Whether no key is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the file now and, if it is valid, puts its keys in force; returns how many.
    ///
    /// # Errors
    ///
    /// Why the file was not taken (the keys in force stay); the refusal is also audited.
    pub fn reload(&self) -> Result<usize, ConfigError> {
        self.inner.load("requested")
    }
}

impl Inner {
    fn load(&self, cause: &str) -> Result<usize, ConfigError> {
        self.file.reading();
        let path = self.file.path();
        let result = ApiKeys::from_file(path).and_then(|keys| {
            self.check_roles(&keys)?;
            Ok(keys)
        });
        match result {
            Ok(keys) => {
                let count = keys.len();
                self.keys.store(Arc::new(keys));
                tracing::info!(path = %path.display(), keys = count, cause, "API key file reloaded");
                let detail = format!("{count} API keys from {} ({cause})", path.display());
                self.file
                    .record(Outcome::Allowed, "api_key", "key_file_reloaded", &detail);
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, cause, "API key file not reloaded: the keys in force stay");
                let detail = format!("{error} ({cause}); the keys in force stay");
                self.file
                    .record(Outcome::Denied, "api_key", "key_file_rejected", &detail);
                Err(error)
            }
        }
    }

    /// Refuses keys whose roles a server using this file does not declare (as its build does).
    fn check_roles(&self, keys: &ApiKeys) -> Result<(), ConfigError> {
        let roles = lock(&self.roles);
        let Some(known) = roles.as_ref() else {
            return Ok(());
        };
        for role in keys.configured_roles() {
            if !known.contains(&role) {
                return Err(ConfigError::UnknownRole {
                    source_name: format!("{} (API key file)", self.file.path().display()),
                    role,
                    known: if known.is_empty() {
                        "none declared".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        Ok(())
    }
}

impl Reloadable for Inner {
    fn file(&self) -> &WatchedFile {
        &self.file
    }

    fn reload(&self, cause: &str) {
        let _ = self.load(cause);
    }
}

impl Authenticator for ApiKeyFile {
    fn name(&self) -> &'static str {
        "api_key"
    }

    fn authenticate<'a>(&'a self, request: &'a AuthRequest<'a>) -> Authentication<'a> {
        if !self.inner.file.is_watched() {
            // Built outside a runtime: watch from the first request on.
            reload::watch(&self.inner);
        }
        Authentication::Ready(self.inner.keys.load().decide(request.credential))
    }

    fn configured_roles(&self) -> Vec<String> {
        self.inner.keys.load().configured_roles()
    }

    fn accepted_credentials(&self) -> &'static [CredentialKind] {
        &[CredentialKind::ApiKey, CredentialKind::Bearer]
    }

    fn attach(&self, server: &ServerContext<'_>) {
        if let Some(roles) = server.roles {
            let mut known = lock(&self.inner.roles);
            let roles = roles.iter().map(|r| (*r).to_owned());
            *known = Some(match known.take() {
                // Used by several servers: a role must be known to all of them.
                Some(known) => roles.filter(|r| known.contains(r)).collect(),
                None => roles.collect(),
            });
        }
        self.inner.file.audit_to(server.audit);
        reload::watch(&self.inner);
    }
}

impl std::fmt::Debug for ApiKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyFile")
            .field("path", &self.path())
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}
