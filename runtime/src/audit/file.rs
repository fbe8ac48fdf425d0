//! The JSON-lines file: formatted on the request side, written by a thread of its own, rotated
//! by size and reopened on request (or on `SIGHUP`) by that thread, never on the request path.
//!
//! The request side talks to the writer thread only through the line queue and a few atomics
//! (the size limit, how many old files to keep, "reopen now"), which the thread reads once per
//! batch: no lock is shared between them, so no request ever waits for the disk.

use std::{
    ffi::OsString,
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel},
    },
    time::{Duration, SystemTime},
};

use super::{AUDIT_TARGET, AuditRecord, json_line};
use crate::ConfigError;

/// Room for a typical line, so that writing one allocates once.
const LINE_CAPACITY: usize = 384;

/// How many records may wait for the writer before new ones are dropped (and counted).
const QUEUE: usize = 65_536;

/// How long a record may wait in memory before it is written to the file.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Old files kept by default once a size limit is set.
pub(super) const DEFAULT_KEEP_FILES: u32 = 5;

/// The most old files kept: each rotation renames every one of them.
pub(super) const MAX_KEEP_FILES: u32 = 1000;

/// The JSON-lines file writer.
pub(super) struct JsonLinesSink {
    pub(super) path: PathBuf,
    sender: SyncSender<String>,
    pub(super) dropped: AtomicU64,
    control: Arc<Control>,
    /// `reopen_on_sighup` was asked for and no handler is installed yet (no Tokio runtime was
    /// current): the next record made inside a runtime installs it.
    #[cfg(unix)]
    hangup_wanted: AtomicBool,
    /// Dropped with the sink, which ends the task listening for `SIGHUP`.
    #[cfg(unix)]
    alive: tokio::sync::watch::Sender<()>,
}

/// What the request side tells the writer thread.
struct Control {
    /// Rotate before a line would take the file past this size; 0: never.
    max_bytes: AtomicU64,
    /// Rotated files kept (`.1` … `.keep`).
    keep: AtomicU32,
    /// Reopen the file at its path before the next batch.
    reopen: AtomicBool,
}

impl JsonLinesSink {
    /// Opens (or creates, mode 0600) `path` for appending and starts the writer thread.
    pub(super) fn open(path: &Path) -> Result<Self, ConfigError> {
        let io_error = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let writer = Writer::open(path).map_err(io_error)?;
        let control = Arc::new(Control {
            max_bytes: AtomicU64::new(0),
            keep: AtomicU32::new(DEFAULT_KEEP_FILES),
            reopen: AtomicBool::new(false),
        });
        let (sender, receiver) = sync_channel(QUEUE);
        let thread_control = control.clone();
        std::thread::Builder::new()
            .name("mcp-gatekeeper-audit".into())
            .spawn(move || writer.run(receiver, &thread_control))
            .map_err(io_error)?;
        Ok(Self {
            path: path.to_owned(),
            sender,
            dropped: AtomicU64::new(0),
            control,
            #[cfg(unix)]
            hangup_wanted: AtomicBool::new(false),
            #[cfg(unix)]
            alive: tokio::sync::watch::Sender::new(()),
        })
    }

    /// Queues `record` as one line.
    pub(super) fn write(&self, record: &AuditRecord<'_>) {
        #[cfg(unix)]
        if self.hangup_wanted.load(Ordering::Relaxed) {
            self.install_hangup_handler();
        }
        let mut line = String::with_capacity(LINE_CAPACITY);
        json_line::write_record(&mut line, SystemTime::now(), record);
        line.push('\n');
        match self.sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(target: AUDIT_TARGET, dropped, "audit file writer is behind; record dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: AUDIT_TARGET, "audit file writer stopped; record dropped");
            }
        }
    }

    /// Rotate before a line would take the file past `bytes` (0: never).
    pub(super) fn set_max_bytes(&self, bytes: u64) {
        self.control.max_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Keep `files` rotated files (at most [`MAX_KEEP_FILES`]).
    pub(super) fn set_keep_files(&self, files: u32) {
        self.control
            .keep
            .store(files.min(MAX_KEEP_FILES), Ordering::Relaxed);
    }

    /// The size limit and the files kept, for `Debug`.
    pub(super) fn rotation(&self) -> (u64, u32) {
        (
            self.control.max_bytes.load(Ordering::Relaxed),
            self.control.keep.load(Ordering::Relaxed),
        )
    }

    /// Asks the writer thread to reopen the file at its path before its next batch.
    pub(super) fn reopen(&self) {
        self.control.reopen.store(true, Ordering::Relaxed);
    }

    /// Reopen the file whenever the process receives `SIGHUP`: now if a Tokio runtime is
    /// current, otherwise from the first record made inside one.
    #[cfg(unix)]
    pub(super) fn reopen_on_sighup(&self) {
        self.hangup_wanted.store(true, Ordering::Relaxed);
        self.install_hangup_handler();
    }

    /// Without Unix signals there is no `SIGHUP`: [`JsonLinesSink::reopen`] is the only way.
    #[cfg(not(unix))]
    pub(super) fn reopen_on_sighup(&self) {}

    /// Starts a task on the current Tokio runtime that turns each `SIGHUP` into a reopen
    /// request, if one is wanted and a runtime is current (if none is, it stays wanted).
    #[cfg(unix)]
    #[cold]
    fn install_hangup_handler(&self) {
        use tokio::signal::unix::{SignalKind, signal};

        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.hangup_wanted.swap(false, Ordering::AcqRel) {
            return; // another thread got here first
        }
        // Registered here, synchronously, so that a SIGHUP sent once this returns is seen.
        // `signal` panics in a runtime built without I/O; a server's runtime always has I/O
        // (it serves sockets), but a record made elsewhere must not take its caller down.
        match std::panic::catch_unwind(|| signal(SignalKind::hangup())) {
            Ok(Ok(hangups)) => {
                runtime.spawn(forward_hangups(
                    hangups,
                    self.control.clone(),
                    self.alive.subscribe(),
                ));
            }
            Ok(Err(error)) => {
                tracing::error!(target: AUDIT_TARGET, %error, "cannot listen for SIGHUP; the audit file will not be reopened on it");
            }
            Err(_) => {
                tracing::error!(target: AUDIT_TARGET, "cannot listen for SIGHUP in a Tokio runtime without I/O; the audit file will not be reopened on it");
            }
        }
    }
}

/// Sets the reopen flag on every `SIGHUP` until the sink is dropped.
#[cfg(unix)]
async fn forward_hangups(
    mut hangups: tokio::signal::unix::Signal,
    control: Arc<Control>,
    mut alive: tokio::sync::watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            received = hangups.recv() => match received {
                Some(()) => control.reopen.store(true, Ordering::Relaxed),
                None => return,
            },
            // The sender never sends: this ends only when the sink is dropped.
            _ = alive.changed() => return,
        }
    }
}

/// The writer thread's side: the open file and how big it is.
struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the file (as opened, plus what this writer added).
    size: u64,
    /// The last attempt to open `path` failed: lines still go to the file already open, and
    /// opening is retried before every batch (the failure is reported once).
    open_failed: bool,
}

impl Writer {
    /// A writer appending to `path`.
    fn open(path: &Path) -> io::Result<Self> {
        let (out, size) = open_append(path)?;
        Ok(Self {
            path: path.to_owned(),
            out,
            size,
            open_failed: false,
        })
    }

    /// Every [`FLUSH_EVERY`]: reopen if asked, write whatever is queued (rotating as needed),
    /// flush once.
    ///
    /// It polls instead of blocking on the queue so that a busy server never pays for waking
    /// it: a record costs the request one queue push, never a syscall, and the file sees one
    /// write per batch instead of one per record.
    fn run(mut self, lines: Receiver<String>, control: &Control) {
        loop {
            if control.reopen.swap(false, Ordering::Relaxed) || self.open_failed {
                self.reopen();
            }
            let max_bytes = control.max_bytes.load(Ordering::Relaxed);
            let keep = control.keep.load(Ordering::Relaxed);
            let mut wrote = false;
            loop {
                match lines.try_recv() {
                    Ok(line) => {
                        self.write_line(&line, max_bytes, keep);
                        wrote = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        let _ = self.out.flush();
                        return;
                    }
                }
            }
            if wrote && self.out.flush().is_err() {
                tracing::error!(target: AUDIT_TARGET, "cannot write to the audit file");
            }
            std::thread::sleep(FLUSH_EVERY);
        }
    }

    /// Appends one line, rotating first if it would take the file past `max_bytes` (a line
    /// longer than the limit still goes whole into a file of its own).
    fn write_line(&mut self, line: &str, max_bytes: u64, keep: u32) {
        let len = line.len() as u64;
        if max_bytes > 0
            && self.size > 0
            && self.size.saturating_add(len) > max_bytes
            && !self.open_failed
        {
            self.rotate(keep);
        }
        match self.out.write_all(line.as_bytes()) {
            Ok(()) => self.size = self.size.saturating_add(len),
            Err(_) => tracing::error!(target: AUDIT_TARGET, "cannot write to the audit file"),
        }
    }

    /// `audit.jsonl.{keep-1}` → `.{keep}`, …, `.1` → `.2`, `audit.jsonl` → `.1` (the oldest is
    /// replaced), then a new `audit.jsonl`. With `keep` 0 the full file is deleted instead.
    fn rotate(&mut self, keep: u32) {
        if self.out.flush().is_err() {
            tracing::error!(target: AUDIT_TARGET, "cannot write to the audit file");
        }
        for n in (1..keep).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    tracing::error!(target: AUDIT_TARGET, %error, "cannot rotate the audit file");
                }
                _ => {}
            }
        }
        let moved = match keep {
            0 => std::fs::remove_file(&self.path),
            _ => std::fs::rename(&self.path, self.numbered(1)),
        };
        if let Err(error) = moved {
            // Keep writing to the same file; try again once another `max_bytes` are written
            // rather than on every line.
            tracing::error!(target: AUDIT_TARGET, %error, "cannot rotate the audit file");
            self.size = 0;
            return;
        }
        self.reopen();
    }

    /// Opens the file at the path (creating it, mode 0600) and writes there from now on. If
    /// that fails, the file already open is kept and opening is retried before each batch.
    fn reopen(&mut self) {
        match open_append(&self.path) {
            Ok((out, size)) => {
                if self.out.flush().is_err() {
                    tracing::error!(target: AUDIT_TARGET, "cannot write to the audit file");
                }
                self.out = out;
                self.size = size;
                self.open_failed = false;
            }
            Err(error) => {
                if !self.open_failed {
                    tracing::error!(target: AUDIT_TARGET, %error, path = %self.path.display(), "cannot open the audit file; writing to the one already open");
                }
                self.open_failed = true;
            }
        }
    }

    /// `audit.jsonl.{n}`.
    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

/// `path` opened for appending (created with mode 0600 on Unix), and its size.
fn open_append(path: &Path) -> io::Result<(BufWriter<File>, u64)> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    let size = file.metadata().map_or(0, |m| m.len());
    Ok((BufWriter::new(file), size))
}
