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
    sync::{Arc, Mutex, Once, Weak},
    time::Duration,
};

use arc_swap::ArcSwap;

use super::ApiKeys;
use crate::{
    AuditLog, ConfigError,
    audit::{AuditEvent, AuditRecord, Outcome},
    auth::{AuthRequest, Authentication, Authenticator, CredentialKind, ServerContext},
};

/// How often the file is checked for a change unless configured.
const DEFAULT_CHECK_EVERY: Duration = Duration::from_millis(500);

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
    path: PathBuf,
    keys: ArcSwap<ApiKeys>,
    check_every: Mutex<Duration>,
    /// The file as last read: a different one is read again.
    seen: Mutex<Option<Fingerprint>>,
    /// What the servers using the keys said when they were built.
    server: Mutex<Attached>,
    watching: Once,
}

#[derive(Default)]
struct Attached {
    /// The role names every server using the keys declares (each reload is checked against
    /// all of them), `None` until a server that knows its roles is built.
    roles: Option<Vec<String>>,
    audits: Vec<AuditLog>,
}

/// What says that a file may have changed, without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt;
                (metadata.dev(), metadata.ino())
            },
        })
    }
}

impl ApiKeyFile {
    /// Reads the keys in `path` now.
    ///
    /// # Errors
    ///
    /// What [`ApiKeys::from_file`] reports: the file cannot be read, or a line is invalid.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let seen = Fingerprint::of(&path);
        let keys = ApiKeys::from_file(&path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                keys: ArcSwap::from_pointee(keys),
                check_every: Mutex::new(DEFAULT_CHECK_EVERY),
                seen: Mutex::new(seen),
                server: Mutex::default(),
                watching: Once::new(),
            }),
        })
    }

    /// How often the file is checked for a change (default: 500 ms; a check reads only the
    /// file's metadata). Set it before the keys are given to a server.
    pub fn check_every(self, interval: Duration) -> Self {
        *lock(&self.inner.check_every) = interval.max(Duration::from_millis(10));
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
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
        self.inner.reload("requested")
    }
}

impl Inner {
    fn reload(&self, cause: &str) -> Result<usize, ConfigError> {
        *lock(&self.seen) = Fingerprint::of(&self.path);
        let result = ApiKeys::from_file(&self.path).and_then(|keys| {
            self.check_roles(&keys)?;
            Ok(keys)
        });
        let server = lock(&self.server);
        match result {
            Ok(keys) => {
                let count = keys.len();
                self.keys.store(Arc::new(keys));
                let detail = format!("{count} API keys from {} ({cause})", self.path.display());
                tracing::info!(path = %self.path.display(), keys = count, cause, "API key file reloaded");
                record(
                    &server.audits,
                    Outcome::Allowed,
                    "key_file_reloaded",
                    &detail,
                );
                Ok(count)
            }
            Err(error) => {
                let detail = format!("{error} ({cause}); the keys in force stay");
                tracing::warn!(path = %self.path.display(), %error, cause, "API key file not reloaded: the keys in force stay");
                record(
                    &server.audits,
                    Outcome::Denied,
                    "key_file_rejected",
                    &detail,
                );
                Err(error)
            }
        }
    }

    /// Refuses keys whose roles a server using this file does not declare (as its build does).
    fn check_roles(&self, keys: &ApiKeys) -> Result<(), ConfigError> {
        let server = lock(&self.server);
        let Some(known) = &server.roles else {
            return Ok(());
        };
        for role in keys.configured_roles() {
            if !known.contains(&role) {
                return Err(ConfigError::UnknownRole {
                    source_name: format!("{} (API key file)", self.path.display()),
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

    /// Whether the file looks different from when it was last read.
    fn changed(&self) -> bool {
        *lock(&self.seen) != Fingerprint::of(&self.path)
    }
}

impl ApiKeyFile {
    /// Starts watching the file, once, on the current Tokio runtime (none: later).
    fn watch(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.inner.watching.call_once(|| {
            let _entered = runtime.enter();
            // Installed here, before the server answers anything: a SIGHUP sent once the
            // server runs reloads rather than ends the process.
            #[cfg(unix)]
            let hangups =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            #[cfg(not(unix))]
            let hangups: Option<()> = None;
            let every = *lock(&self.inner.check_every);
            runtime.spawn(watch(Arc::downgrade(&self.inner), every, hangups));
        });
    }
}

/// Checks the file every `every` and reloads it when it changed or on a hangup; ends with the
/// keys.
#[cfg(unix)]
async fn watch(
    inner: Weak<Inner>,
    every: Duration,
    mut hangups: Option<tokio::signal::unix::Signal>,
) {
    loop {
        let hangup = async {
            match &mut hangups {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        let cause = tokio::select! {
            () = tokio::time::sleep(every) => None,
            _ = hangup => Some("SIGHUP"),
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match cause {
            Some(cause) => {
                let _ = inner.reload(cause);
            }
            None if inner.changed() => {
                let _ = inner.reload("the file changed");
            }
            None => {}
        }
    }
}

#[cfg(not(unix))]
async fn watch(inner: Weak<Inner>, every: Duration, _hangups: Option<()>) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.changed() {
            let _ = inner.reload("the file changed");
        }
    }
}

fn record(audits: &[AuditLog], outcome: Outcome, reason: &str, detail: &str) {
    let mut record = AuditRecord::new(AuditEvent::Configuration, outcome);
    record.reason = Some(reason);
    record.detail = Some(detail);
    record.method = Some("api_key");
    for audit in audits {
        audit.record(&record);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Authenticator for ApiKeyFile {
    fn name(&self) -> &'static str {
        "api_key"
    }

    fn authenticate<'a>(&'a self, request: &'a AuthRequest<'a>) -> Authentication<'a> {
        if !self.inner.watching.is_completed() {
            // Built outside a runtime: watch from the first request on.
            self.watch();
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
        {
            let mut attached = lock(&self.inner.server);
            if let Some(roles) = server.roles {
                let roles = roles.iter().map(|r| (*r).to_owned());
                attached.roles = Some(match attached.roles.take() {
                    // Used by several servers: a role must be known to all of them.
                    Some(known) => roles.filter(|r| known.contains(r)).collect(),
                    None => roles.collect(),
                });
            }
            attached.audits.push(server.audit.clone());
        }
        self.watch();
    }
}

impl std::fmt::Debug for ApiKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyFile")
            .field("path", &self.inner.path)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}
