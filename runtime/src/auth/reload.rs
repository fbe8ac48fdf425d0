//! Configuration files read again while the server runs (API keys, the token endpoint's
//! clients): each is checked for a change every so often (its size, modification time and
//! inode, not its content) and read again on `SIGHUP`. What a file is parsed into, and what a
//! file that fails does, is its owner's ([`Reloadable`]); this module only decides when.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, Once, Weak},
    time::{Duration, SystemTime},
};

use crate::{
    AuditLog,
    audit::{AuditEvent, AuditRecord, Outcome},
};

/// How often a file is checked for a change unless configured.
pub(crate) const DEFAULT_CHECK_EVERY: Duration = Duration::from_millis(500);

/// A file whose owner reads it again when it changes.
pub(crate) struct WatchedFile {
    path: PathBuf,
    check_every: Mutex<Duration>,
    /// The file as last read: a different one is read again.
    seen: Mutex<Option<Fingerprint>>,
    /// Where reloads and refusals are recorded (the servers using the file).
    audits: Mutex<Vec<AuditLog>>,
    watching: Once,
}

/// What says that a file may have changed, without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
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

/// The owner of a [`WatchedFile`]: reads it again when asked.
pub(crate) trait Reloadable: Send + Sync + 'static {
    /// The file.
    fn file(&self) -> &WatchedFile;
    /// Reads the file again (`cause` says why, for the log and the audit); the owner keeps
    /// what it had when the file fails, and records either way (see [`WatchedFile::record`]).
    fn reload(&self, cause: &str);
}

impl WatchedFile {
    /// The file at `path`, as it is now (read by the caller right after).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            seen: Mutex::new(Fingerprint::of(&path)),
            path,
            check_every: Mutex::new(DEFAULT_CHECK_EVERY),
            audits: Mutex::default(),
            watching: Once::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How often to check for a change (at least 10 ms); takes effect when watching starts.
    pub(crate) fn set_check_every(&self, interval: Duration) {
        *lock(&self.check_every) = interval.max(Duration::from_millis(10));
    }

    /// Records where reloads are audited (each server using the file adds its log).
    pub(crate) fn audit_to(&self, audit: &AuditLog) {
        lock(&self.audits).push(audit.clone());
    }

    /// Notes that the file is being read now: a change after this is read again.
    pub(crate) fn reading(&self) {
        *lock(&self.seen) = Fingerprint::of(&self.path);
    }

    /// Whether the file looks different from when it was last read.
    fn changed(&self) -> bool {
        *lock(&self.seen) != Fingerprint::of(&self.path)
    }

    /// Whether watching has started.
    pub(crate) fn is_watched(&self) -> bool {
        self.watching.is_completed()
    }

    /// Audits a reload (`Allowed`, `reason` e.g. `key_file_reloaded`) or a refused file
    /// (`Denied`), as a configuration event of `method`.
    pub(crate) fn record(&self, outcome: Outcome, method: &str, reason: &str, detail: &str) {
        let mut record = AuditRecord::new(AuditEvent::Configuration, outcome);
        record.reason = Some(reason);
        record.detail = Some(detail);
        record.method = Some(method);
        for audit in lock(&self.audits).iter() {
            audit.record(&record);
        }
    }
}

/// Starts watching `target`'s file, once, on the current Tokio runtime (none: later, by a call
/// from inside one). Watching installs a `SIGHUP` handler first, so a `SIGHUP` sent once the
/// server answers reloads rather than ends the process. The task ends with `target`.
pub(crate) fn watch<R: Reloadable>(target: &Arc<R>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let file = target.file();
    file.watching.call_once(|| {
        let _entered = runtime.enter();
        #[cfg(unix)]
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        #[cfg(not(unix))]
        let hangups: Option<()> = None;
        let every = *lock(&file.check_every);
        runtime.spawn(run(Arc::downgrade(target), every, hangups));
    });
}

/// Checks the file every `every` and reloads it when it changed or on a hangup.
#[cfg(unix)]
async fn run<R: Reloadable>(
    target: Weak<R>,
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
        let Some(target) = target.upgrade() else {
            return;
        };
        match cause {
            Some(cause) => target.reload(cause),
            None if target.file().changed() => target.reload("the file changed"),
            None => {}
        }
    }
}

#[cfg(not(unix))]
async fn run<R: Reloadable>(target: Weak<R>, every: Duration, _hangups: Option<()>) {
    loop {
        tokio::time::sleep(every).await;
        let Some(target) = target.upgrade() else {
            return;
        };
        if target.file().changed() {
            target.reload("the file changed");
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
