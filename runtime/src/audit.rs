//! The audit trail: every authentication, denial, rate-limit hit and tool call, as structured
//! `tracing` events under one target, and optionally as JSON lines in a file.
//!
//! Records never contain a secret: they name the credential by its id (API key id, token
//! `jti`), never by its value.
//!
//! What an outsider can make the trail hold is bounded: every string field is cut to a fixed
//! length (`bound`), and refusals are sampled per remote address (`refusals`), with one decision
//! for both sinks. The file is rotated by size and reopened on request or `SIGHUP` (`file`).

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde::Serialize;

mod bound;
mod file;
mod json_line;
mod refusals;
mod successes;

pub use successes::AuditSuccesses;
pub(crate) use successes::SuccessSampler;

use self::{
    bound::Room,
    file::JsonLinesSink,
    refusals::{Refusals, Summary},
};
use crate::{ConfigError, Principal};

/// The `tracing` target of every audit event: filter on it (`RUST_LOG=mcp_gatekeeper::audit=info`)
/// or route it to its own subscriber layer.
pub const AUDIT_TARGET: &str = "mcp_gatekeeper::audit";

/// Refusals written per remote address per window, by default.
const DEFAULT_REFUSALS_PER_ADDRESS: u32 = 20;

/// The window of [`DEFAULT_REFUSALS_PER_ADDRESS`].
const DEFAULT_REFUSAL_WINDOW: Duration = Duration::from_secs(60);

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
    /// The server's configuration changed while it runs, or a change was refused (an API-key
    /// file reloaded: `reason` is `key_file_reloaded` or `key_file_rejected`, `detail` says
    /// what and why). Never sampled away.
    Configuration,
    /// A summary written by the log itself: refusals from one remote address beyond the
    /// per-window limit (see [`AuditLog::refusals_per_address`]) were counted instead of
    /// written. `suppressed` says how many, `remote_addr` names the address (port 0; for IPv6
    /// the /64 network, host bits zero) or is absent for records that had none, `outcome` is
    /// `denied` and `reason` is `refusals_suppressed`.
    Suppressed,
}

impl AuditEvent {
    /// The snake_case name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Authentication => "authentication",
            AuditEvent::ToolCall => "tool_call",
            AuditEvent::Token => "token",
            AuditEvent::Configuration => "configuration",
            AuditEvent::Authorization => "authorization",
            AuditEvent::Login => "login",
            AuditEvent::Registration => "registration",
            AuditEvent::Revocation => "revocation",
            AuditEvent::Suppressed => "suppressed",
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
///
/// The log writes at most 256 bytes of each string field (1,024 of `detail`), cut at a
/// character boundary and followed by a marker such as `…[+8000 bytes]` saying how many bytes
/// were left out, in the file and in the `tracing` event alike.
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
    /// The issuer of the caller's token, when it came from an external identity provider
    /// (two issuers may use the same subject for different callers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<&'a str>,
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
    /// For [`AuditEvent::Suppressed`] summaries: how many refusals were counted, not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
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
            issuer: None,
            method: None,
            credential_id: None,
            client_id: None,
            tool: None,
            remote_addr: None,
            retry_after_seconds: None,
            suppressed: None,
        }
    }

    /// Fills the caller's fields from a principal.
    pub fn principal(mut self, principal: &'a Principal) -> Self {
        self.subject = Some(principal.subject());
        self.issuer = principal.issuer();
        self.method = Some(principal.method().as_str());
        self.credential_id = principal.credential_id();
        self.client_id = principal.client_id();
        self
    }

    /// The record that says how many refusals `summary` counted.
    fn summary(summary: &Summary) -> AuditRecord<'static> {
        let mut record = AuditRecord::new(AuditEvent::Suppressed, Outcome::Denied);
        record.reason = Some("refusals_suppressed");
        record.detail = Some(summary.detail());
        record.remote_addr = summary.remote_addr();
        record.suppressed = Some(summary.suppressed);
        record
    }
}

/// Where audit records go: always to `tracing` (target [`AUDIT_TARGET`]), and to a JSON-lines
/// file when one is configured.
///
/// Clones share everything: the file, its writer thread and rotation settings, and the
/// refusal counts. The builder methods that change the refusal limits give the log a new,
/// empty table of counts.
#[derive(Clone)]
pub struct AuditLog {
    sinks: Arc<Sinks>,
}

/// The sinks of one log and the sampler that decides for both.
struct Sinks {
    file: Option<Arc<JsonLinesSink>>,
    /// `None` when refusals are not limited.
    refusals: Option<Refusals>,
}

impl Default for AuditLog {
    fn default() -> Self {
        Self::tracing_only()
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.sinks.file.as_deref();
        f.debug_struct("AuditLog")
            .field("file", &file.map(|s| &s.path))
            .field("rotation", &file.map(JsonLinesSink::rotation))
            .field(
                "refusals_per_address",
                &self.sinks.refusals.as_ref().map(Refusals::limits),
            )
            .finish()
    }
}

impl AuditLog {
    /// Audit to `tracing` only.
    pub fn tracing_only() -> Self {
        Self::with_file(None)
    }

    /// Also append one JSON object per line to `path` (created if missing, mode 0600 on Unix).
    ///
    /// Lines are written by a dedicated thread in batches, at most 20 ms after the event, so a
    /// slow disk never delays a request. If the writer falls more than 65,536 records behind,
    /// further records are counted as dropped and reported on the `tracing` target instead of
    /// blocking callers. The file grows without limit unless [`AuditLog::max_file_bytes`] is
    /// set, and is reopened only by [`AuditLog::reopen`] or, once asked for,
    /// [`AuditLog::reopen_on_sighup`].
    pub fn json_lines(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Ok(Self::with_file(Some(Arc::new(JsonLinesSink::open(
            path.as_ref(),
        )?))))
    }

    /// A log with the default refusal limits, writing to `file` if given.
    fn with_file(file: Option<Arc<JsonLinesSink>>) -> Self {
        Self {
            sinks: Arc::new(Sinks {
                file,
                refusals: Some(Refusals::new(
                    DEFAULT_REFUSALS_PER_ADDRESS,
                    DEFAULT_REFUSAL_WINDOW,
                )),
            }),
        }
    }

    /// Writes at most `max` refusals (`denied` and `rate_limited` records) per remote address
    /// (IPv4 alone, IPv6 per /64, records without an address together) per `window`, which
    /// opens with the address's first refusal; the rest are counted, and once the window has
    /// ended one [`AuditEvent::Suppressed`] record says how many. The default is 20 per 60
    /// seconds. Allowed records are never held back. The same decision applies to the
    /// `tracing` event and the file.
    ///
    /// At most 4,096 addresses are tracked at once; when the table is full and no window has
    /// ended, further addresses share one window.
    pub fn refusals_per_address(self, max: u32, window: Duration) -> Self {
        self.with_refusals(Some(Refusals::new(max, window)))
    }

    /// Writes every refusal (no per-address limit).
    pub fn unlimited_refusals(self) -> Self {
        self.with_refusals(None)
    }

    /// The same sinks with a new refusal sampler (a fresh table of counts), or none.
    fn with_refusals(self, refusals: Option<Refusals>) -> Self {
        Self {
            sinks: Arc::new(Sinks {
                file: self.sinks.file.clone(),
                refusals,
            }),
        }
    }

    /// Rotates the file before a line would take it past `bytes`: `audit.jsonl` becomes
    /// `audit.jsonl.1` (`.1` becomes `.2`, and so on up to [`AuditLog::keep_files`], the
    /// oldest being deleted), and a new `audit.jsonl` is created (mode 0600). `0`, the
    /// default, never rotates. Rotation happens on the writer thread, between lines. No effect
    /// on a `tracing`-only log.
    pub fn max_file_bytes(self, bytes: u64) -> Self {
        if let Some(file) = &self.sinks.file {
            file.set_max_bytes(bytes);
        }
        self
    }

    /// How many rotated files to keep (default 5, at most 1,000); `0` deletes the full file
    /// instead of keeping it.
    pub fn keep_files(self, files: u32) -> Self {
        if let Some(file) = &self.sinks.file {
            file.set_keep_files(files);
        }
        self
    }

    /// Reopens the file whenever the process receives `SIGHUP` (Unix; logrotate's "move, then
    /// signal"). Off by default, because listening changes what `SIGHUP` does to the whole
    /// process: it no longer ends it.
    ///
    /// The signal is heard by a task on the Tokio runtime (which needs I/O enabled, as serving
    /// does), which sets a flag the writer thread reads before each batch. Called inside a
    /// runtime, the handler is in place when this returns; called outside one, it is installed
    /// by the first record made inside a runtime, and not at all if there is none. Elsewhere
    /// than on Unix this does nothing; use [`AuditLog::reopen`].
    pub fn reopen_on_sighup(self) -> Self {
        if let Some(file) = &self.sinks.file {
            file.reopen_on_sighup();
        }
        self
    }

    /// Asks the writer thread to reopen the file at its path (creating it if it was moved
    /// away) before its next batch, at most 20 ms from now. Records queued before then may
    /// still go to the old file. No effect on a `tracing`-only log.
    pub fn reopen(&self) {
        if let Some(file) = &self.sinks.file {
            file.reopen();
        }
    }

    /// Records one event.
    pub fn record(&self, record: &AuditRecord<'_>) {
        self.sinks.record(record);
    }

    /// How many records the file sink had to drop because its writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.sinks
            .file
            .as_ref()
            .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    /// How many refusals were counted instead of written (see
    /// [`AuditLog::refusals_per_address`]).
    pub fn suppressed(&self) -> u64 {
        self.sinks.refusals.as_ref().map_or(0, Refusals::suppressed)
    }
}

impl Sinks {
    /// Decides once whether `record` is written, then writes it to both sinks, after any
    /// summary that has come due.
    fn record(&self, record: &AuditRecord<'_>) {
        // Empty, so without an allocation, unless a summary is due.
        let mut summaries = Vec::new();
        // Configuration changes come from the operator, not from callers: never sampled.
        let sampled = record.event != AuditEvent::Configuration;
        let write = match (&self.refusals, record.outcome) {
            (None, _) => true,
            (Some(refusals), _) if !sampled => {
                refusals.summaries_due(&mut summaries);
                true
            }
            (Some(refusals), Outcome::Allowed) => {
                refusals.summaries_due(&mut summaries);
                true
            }
            (Some(refusals), Outcome::Denied | Outcome::RateLimited) => {
                refusals.admit(record.remote_addr, &mut summaries)
            }
        };
        for summary in &summaries {
            self.write(&AuditRecord::summary(summary));
        }
        if write {
            if record.within_bounds() {
                self.write(record);
            } else {
                self.write_cut(record);
            }
        }
    }

    /// Writes a record with a field over its cap: the cut copy lives on this (cold) frame.
    #[cold]
    #[inline(never)]
    fn write_cut(&self, record: &AuditRecord<'_>) {
        let mut room = Room::new();
        self.write(&bound::bounded(record, &mut room));
    }

    /// Writes a record whose fields are within their caps to both sinks.
    fn write(&self, record: &AuditRecord<'_>) {
        emit_tracing(record);
        if let Some(file) = &self.file {
            file.write(record);
        }
    }
}

impl Drop for Sinks {
    /// Summarises what is still counted, so that a shutdown loses no count.
    fn drop(&mut self) {
        let mut summaries = Vec::new();
        if let Some(refusals) = &self.refusals {
            refusals.drain(&mut summaries);
        }
        for summary in &summaries {
            self.write(&AuditRecord::summary(summary));
        }
    }
}

/// The record as one `tracing` event: INFO when allowed, WARN when refused.
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
                issuer = r.issuer,
                method = r.method,
                credential_id = r.credential_id,
                client_id = r.client_id,
                tool = r.tool,
                remote_addr = r.remote_addr.map(tracing::field::display),
                retry_after_seconds = r.retry_after_seconds,
                suppressed = r.suppressed,
                detail = r.detail,
            )
        };
    }
    match r.outcome {
        Outcome::Allowed => audit_event!(tracing::Level::INFO),
        Outcome::Denied | Outcome::RateLimited => audit_event!(tracing::Level::WARN),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        path::PathBuf,
        sync::{Arc, Mutex},
    };

    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::AuthMethod;

    /// A fresh file path for test `name`.
    fn audit_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcpgk-audit-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        path
    }

    /// The records in `path` once `done` holds for them (the writer thread is asynchronous).
    fn read_records(path: &Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..250 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.ends_with('\n') {
                let records: Vec<Value> = text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                if done(&records) {
                    return records;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the audit file never held what was expected");
    }

    /// One audit event's fields, as text.
    type Fields = BTreeMap<&'static str, String>;

    /// Collects the fields of every audit event.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Fields>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() == AUDIT_TARGET {
                let mut fields = FieldText::default();
                event.record(&mut fields);
                self.0.lock().unwrap().push(fields.0);
            }
        }
    }

    /// Visits an event's fields, keeping each as text.
    #[derive(Default)]
    struct FieldText(Fields);

    impl tracing::field::Visit for FieldText {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.insert(field.name(), value.to_owned());
        }

        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name(), format!("{value:?}"));
        }
    }

    /// Runs `f` with a subscriber that captures audit events; returns them.
    fn traced(f: impl FnOnce()) -> Vec<Fields> {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, f);
        capture.0.lock().unwrap().clone()
    }

    #[test]
    fn json_lines_contain_the_record_and_no_more() {
        let path = audit_path("plain");
        let log = AuditLog::json_lines(&path).unwrap();
        let principal = Principal::builder(AuthMethod::ApiKey, "alice")
            .credential_id("key-1")
            .build();
        let mut record =
            AuditRecord::new(AuditEvent::ToolCall, Outcome::RateLimited).principal(&principal);
        record.tool = Some("delete-data");
        record.retry_after_seconds = Some(6);
        log.record(&record);
        let records = read_records(&path, |r| !r.is_empty());
        let value = &records[0];
        assert_eq!(value["event"], "tool_call");
        assert_eq!(value["outcome"], "rate_limited");
        assert_eq!(value["subject"], "alice");
        assert_eq!(value["method"], "api_key");
        assert_eq!(value["credential_id"], "key-1");
        assert_eq!(value["tool"], "delete-data");
        assert_eq!(value["retry_after_seconds"], 6);
        assert!(value["ts"].as_str().unwrap().ends_with('Z'));
        assert!(value.get("client_id").is_none());
        assert!(value.get("suppressed").is_none());
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn outsized_fields_are_cut_in_the_line_and_in_the_tracing_event() {
        let path = audit_path("bounded");
        let log = AuditLog::json_lines(&path).unwrap();
        let client_id = "c".repeat(8192);
        let username = "u".repeat(60 * 1024);
        let detail = "é".repeat(2000); // 4,000 bytes; 1,024 is inside no character
        let mut record = AuditRecord::new(AuditEvent::Token, Outcome::Denied);
        record.reason = Some("invalid_client");
        record.client_id = Some(&client_id);
        record.subject = Some(&username);
        record.detail = Some(&detail);
        record.tool = Some("read-data");
        let events = traced(|| log.record(&record));

        let cut_client = format!("{}…[+7936 bytes]", "c".repeat(256));
        let cut_subject = format!("{}…[+61184 bytes]", "u".repeat(256));
        let cut_detail = format!("{}…[+2976 bytes]", "é".repeat(512));
        let records = read_records(&path, |r| !r.is_empty());
        let line = &records[0];
        assert_eq!(line["client_id"], cut_client.as_str());
        assert_eq!(line["subject"], cut_subject.as_str());
        assert_eq!(line["detail"], cut_detail.as_str());
        assert_eq!(line["reason"], "invalid_client");
        assert_eq!(line["tool"], "read-data");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < 2048, "a {}-byte line", text.len());

        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event["client_id"], cut_client);
        assert_eq!(event["subject"], cut_subject);
        assert_eq!(event["detail"], cut_detail);
        assert_eq!(event["reason"], "invalid_client");
    }

    /// A refusal from `addr`.
    fn refusal(addr: &str) -> AuditRecord<'static> {
        let mut record = AuditRecord::new(AuditEvent::Authentication, Outcome::Denied);
        record.reason = Some("invalid_credential");
        record.remote_addr = Some(addr.parse().unwrap());
        record
    }

    #[test]
    fn refusals_over_the_limit_reach_neither_sink_and_are_summarised_once() {
        let path = audit_path("sampled");
        let window = Duration::from_millis(300);
        let log = AuditLog::json_lines(&path)
            .unwrap()
            .refusals_per_address(3, window);
        let mut allowed = AuditRecord::new(AuditEvent::Authentication, Outcome::Allowed);
        allowed.remote_addr = Some("192.0.2.9:1".parse().unwrap());
        let mut limited = refusal("192.0.2.9:2");
        limited.outcome = Outcome::RateLimited;
        let events = traced(|| {
            for _ in 0..10 {
                log.record(&refusal("192.0.2.9:1"));
                log.record(&allowed);
            }
            log.record(&limited);
            log.record(&refusal("192.0.2.10:1"));
            std::thread::sleep(window + Duration::from_millis(50));
            // Any record after the window brings the summary, before itself.
            log.record(&allowed);
        });
        let outcomes: Vec<&str> = events.iter().map(|e| e["outcome"].as_str()).collect();
        let denied = outcomes.iter().filter(|o| **o == "denied").count();
        assert_eq!(outcomes.iter().filter(|o| **o == "allowed").count(), 11);
        // Three from .9, one from .10, and the summary of .9's eight others.
        assert_eq!(denied, 5, "{events:#?}");
        let summary = events.iter().find(|e| e["event"] == "suppressed").unwrap();
        assert_eq!(summary["suppressed"], "8");
        assert_eq!(summary["remote_addr"], "192.0.2.9:0");
        assert_eq!(summary["reason"], "refusals_suppressed");
        assert_eq!(events.last().unwrap()["outcome"], "allowed");
        assert_eq!(log.suppressed(), 8);

        // The file got exactly the same records.
        let records = read_records(&path, |r| r.len() == events.len());
        let line = records.iter().find(|r| r["event"] == "suppressed").unwrap();
        assert_eq!(line["suppressed"], 8);
        assert_eq!(line["outcome"], "denied");
        assert_eq!(line["remote_addr"], "192.0.2.9:0");
        assert!(line["detail"].as_str().unwrap().contains("not recorded"));
        assert_eq!(records.last().unwrap()["outcome"], "allowed");
    }

    #[test]
    fn without_limits_every_refusal_is_written() {
        let log = AuditLog::tracing_only().unlimited_refusals();
        let events = traced(|| {
            for _ in 0..100 {
                log.record(&refusal("192.0.2.1:1"));
            }
        });
        assert_eq!(events.len(), 100);
        assert_eq!(log.suppressed(), 0);
    }

    #[test]
    fn refusals_are_limited_by_default() {
        let log = AuditLog::tracing_only();
        let events = traced(|| {
            for _ in 0..100 {
                log.record(&refusal("192.0.2.1:1"));
            }
        });
        assert_eq!(events.len(), DEFAULT_REFUSALS_PER_ADDRESS as usize);
        assert_eq!(log.suppressed(), 80);
    }

    #[test]
    fn dropping_the_log_summarises_what_it_counted() {
        let events = traced(|| {
            let log = AuditLog::tracing_only().refusals_per_address(2, Duration::from_secs(3600));
            let clone = log.clone();
            for _ in 0..5 {
                clone.record(&refusal("[2001:db8:1:2::7]:443"));
            }
            drop(clone);
            drop(log);
        });
        assert_eq!(events.len(), 3, "{events:#?}");
        assert_eq!(events[2]["event"], "suppressed");
        assert_eq!(events[2]["suppressed"], "3");
        assert_eq!(events[2]["remote_addr"], "[2001:db8:1:2::]:0");
    }
}
