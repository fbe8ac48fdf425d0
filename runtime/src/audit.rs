//! The audit trail: every authentication, denial, rate-limit hit and tool call, as structured
//! `tracing` events under one target, and optionally as JSON lines in a file.
//!
//! Records never contain a secret: they name the credential by its id (API key id, token
//! `jti`), never by its value.

use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel},
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;

mod json_line;

use crate::{ConfigError, Principal};

/// The `tracing` target of every audit event: filter on it (`RUST_LOG=mcp_gatekeeper::audit=info`)
/// or route it to its own subscriber layer.
pub const AUDIT_TARGET: &str = "mcp_gatekeeper::audit";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// A request's credential was checked.
    Authentication,
    /// A tool call was decided.
    ToolCall,
    /// The authorization server's token endpoint answered (`detail` names the grant).
    Token,
    /// An authorization request was decided (consent given or refused, or the request refused).
    Authorization,
    /// A user signed in, or failed to, at the authorization endpoint.
    Login,
    /// A client registered (RFC 7591) or was loaded from its metadata document.
    Registration,
    /// A token was revoked (RFC 7009), or tokens were revoked because a code or refresh token
    /// was replayed.
    Revocation,
}

impl AuditEvent {
    /// The snake_case name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Authentication => "authentication",
            AuditEvent::ToolCall => "tool_call",
            AuditEvent::Token => "token",
            AuditEvent::Authorization => "authorization",
            AuditEvent::Login => "login",
            AuditEvent::Registration => "registration",
            AuditEvent::Revocation => "revocation",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Let through.
    Allowed,
    /// Refused: bad credential, missing role or scope.
    Denied,
    /// Refused by a rate limit.
    RateLimited,
}

impl Outcome {
    /// The snake_case name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    /// What happened.
    pub event: AuditEvent,
    /// How it ended.
    pub outcome: Outcome,
    /// Why (a stable reason code such as `missing_role`, `invalid_credential`), when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// A human-readable detail (the message sent to the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// The caller's subject, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    /// How the caller authenticated (`api_key`, `jwt`, ...), or which authenticator refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    /// The credential's id (API key id or token `jti`), never the credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<&'a str>,
    /// The OAuth client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    /// The tool called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a str>,
    /// The peer address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<SocketAddr>,
    /// For rate-limit hits: seconds until the next call would pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl<'a> AuditRecord<'a> {
    /// A record with only `event` and `outcome` set.
    pub fn new(event: AuditEvent, outcome: Outcome) -> Self {
        Self {
            event,
            outcome,
            reason: None,
            detail: None,
            subject: None,
            method: None,
            credential_id: None,
            client_id: None,
            tool: None,
            remote_addr: None,
            retry_after_seconds: None,
        }
    }

    /// Fills the caller's fields from a principal.
    pub fn principal(mut self, principal: &'a Principal) -> Self {
        self.subject = Some(principal.subject());
        self.method = Some(principal.method().as_str());
        self.credential_id = principal.credential_id();
        self.client_id = principal.client_id();
        self
    }
}

/// Where audit records go: always to `tracing` (target [`AUDIT_TARGET`]), and to a JSON-lines
/// file when one is configured.
#[derive(Clone, Default)]
pub struct AuditLog {
    file: Option<Arc<JsonLinesSink>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("file", &self.file.as_ref().map(|s| &s.path))
            .finish()
    }
}

impl AuditLog {
    /// Audit to `tracing` only.
    pub fn tracing_only() -> Self {
        Self::default()
    }

    /// Also append one JSON object per line to `path` (created if missing, mode 0600 on Unix).
    ///
    /// Lines are written by a dedicated thread in batches, at most 20 ms after the event, so a
    /// slow disk never delays a request. If the writer falls more than 65,536 records behind,
    /// further records are counted as dropped and reported on the `tracing` target instead of
    /// blocking callers.
    pub fn json_lines(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Ok(Self {
            file: Some(Arc::new(JsonLinesSink::open(path.as_ref())?)),
        })
    }

    /// Records one event.
    pub fn record(&self, record: &AuditRecord<'_>) {
        emit_tracing(record);
        if let Some(sink) = &self.file {
            sink.write(record);
        }
    }

    /// How many records the file sink had to drop because its writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.file
            .as_ref()
            .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }
}

fn emit_tracing(r: &AuditRecord<'_>) {
    macro_rules! audit_event {
        ($level:expr) => {
            tracing::event!(
                target: AUDIT_TARGET,
                $level,
                event = r.event.as_str(),
                outcome = r.outcome.as_str(),
                reason = r.reason,
                subject = r.subject,
                method = r.method,
                credential_id = r.credential_id,
                client_id = r.client_id,
                tool = r.tool,
                remote_addr = r.remote_addr.map(tracing::field::display),
                retry_after_seconds = r.retry_after_seconds,
                detail = r.detail,
            )
        };
    }
    match r.outcome {
        Outcome::Allowed => audit_event!(tracing::Level::INFO),
        Outcome::Denied | Outcome::RateLimited => audit_event!(tracing::Level::WARN),
    }
}

/// Room for a typical line, so that writing one allocates once.
const LINE_CAPACITY: usize = 256;

/// The JSON-lines file writer.
struct JsonLinesSink {
    path: PathBuf,
    sender: SyncSender<String>,
    dropped: AtomicU64,
}

impl JsonLinesSink {
    fn open(path: &Path) -> Result<Self, ConfigError> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let (sender, receiver) = sync_channel(65_536);
        std::thread::Builder::new()
            .name("mcp-gatekeeper-audit".into())
            .spawn(move || write_lines(BufWriter::new(file), receiver))
            .map_err(|source| ConfigError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            sender,
            dropped: AtomicU64::new(0),
        })
    }

    fn write(&self, record: &AuditRecord<'_>) {
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
}

/// How long a record may wait in memory before it is written to the file.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// The writer thread: every [`FLUSH_EVERY`] it writes whatever is queued and flushes once.
///
/// It polls instead of blocking on the queue so that a busy server never pays for waking it:
/// a record costs the request one queue push, never a syscall, and the file sees one write per
/// batch instead of one per record.
fn write_lines(mut out: BufWriter<std::fs::File>, lines: Receiver<String>) {
    loop {
        let mut wrote = false;
        loop {
            match lines.try_recv() {
                Ok(line) => {
                    if out.write_all(line.as_bytes()).is_err() {
                        tracing::error!(target: AUDIT_TARGET, "cannot write to the audit file");
                    }
                    wrote = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if wrote && out.flush().is_err() {
            tracing::error!(target: AUDIT_TARGET, "cannot write to the audit file");
        }
        std::thread::sleep(FLUSH_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    #[test]
    fn json_lines_contain_the_record_and_no_more() {
        let dir = std::env::temp_dir().join(format!("mcpgk-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::json_lines(&path).unwrap();
        let principal = Principal::builder(AuthMethod::ApiKey, "alice")
            .credential_id("key-1")
            .build();
        let mut record =
            AuditRecord::new(AuditEvent::ToolCall, Outcome::RateLimited).principal(&principal);
        record.tool = Some("delete-data");
        record.retry_after_seconds = Some(6);
        log.record(&record);
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.ends_with('\n') {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(value["event"], "tool_call");
        assert_eq!(value["outcome"], "rate_limited");
        assert_eq!(value["subject"], "alice");
        assert_eq!(value["method"], "api_key");
        assert_eq!(value["credential_id"], "key-1");
        assert_eq!(value["tool"], "delete-data");
        assert_eq!(value["retry_after_seconds"], 6);
        assert!(value["ts"].as_str().unwrap().ends_with('Z'));
        assert!(value.get("client_id").is_none());
        assert_eq!(log.dropped(), 0);
    }
}
