//! The JSON-lines audit trail: every decision recorded, no secret ever written, nothing an
//! outsider sends written at length or without limit, and the file rotated and reopened.

use std::time::Duration;

use mcp_gatekeeper::{AuditEvent, AuditLog, AuditRecord, Outcome};
use serde_json::{Value, json};

use crate::common::*;

/// The records of the audit file, once the writer thread has written the one `last` matches
/// (the record of the last request made).
async fn read_records(path: &std::path::Path, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    for _ in 0..250 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if records.iter().any(&last) {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the audit file never recorded the last request");
}

/// The rbac example with an audit file of its own (named after `test`), started.
async fn start_audited(test: &str) -> (Server, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("mcpgk-audit-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&path);
    let mut config = rbac_config(true);
    config.audit_log = Some(path.clone());
    (start(crate::rbac::gatekeeper(config).unwrap()).await, path)
}

#[tokio::test]
async fn decisions_are_audited_without_secrets() {
    let (server, path) = start_audited("it").await;

    let viewer_token = jwt("auditee", "viewer");
    let viewer = Mcp::connect(
        &server.url,
        Cred::Bearer(viewer_token.clone()),
        Version::V2025_06_18,
    )
    .await;
    viewer.call("read-data", json!({ "key": "k" })).await;
    viewer.call("delete-data", json!({ "key": "k" })).await;
    let stranger = Mcp::new(
        &server.url,
        Cred::ApiKey("wrong-key-abcdefghijkl".into()),
        Version::V2025_06_18,
    );
    stranger.call("read-data", json!({ "key": "k" })).await;
    let admin = Mcp::connect(
        &server.url,
        Cred::ApiKey(ADMIN_KEY.into()),
        Version::V2025_06_18,
    )
    .await;
    for _ in 0..11 {
        admin.call("delete-data", json!({ "key": "k" })).await;
    }

    let records = read_records(&path, |r: &Value| r["outcome"] == "rate_limited").await;
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [
        viewer_token.as_str(),
        ADMIN_KEY,
        "wrong-key-abcdefghijkl",
        SECRET,
    ] {
        assert!(!text.contains(secret), "the audit log contains a secret");
    }
    let find = |pred: &dyn Fn(&Value) -> bool| records.iter().find(|r| pred(r)).cloned();
    let allowed = find(&|r| {
        r["event"] == "tool_call" && r["outcome"] == "allowed" && r["subject"] == "auditee"
    })
    .unwrap();
    assert_eq!(allowed["tool"], "read-data");
    assert_eq!(allowed["method"], "jwt");
    assert!(
        allowed["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let denied = find(&|r| r["event"] == "tool_call" && r["outcome"] == "denied").unwrap();
    assert_eq!(
        (denied["tool"].as_str(), denied["reason"].as_str()),
        (Some("delete-data"), Some("missing_role"))
    );
    let refused = find(&|r| r["event"] == "authentication" && r["outcome"] == "denied").unwrap();
    assert_eq!(refused["reason"], "invalid_credential");
    assert_eq!(refused["method"], "api_key");
    let limited = find(&|r| r["outcome"] == "rate_limited").unwrap();
    assert_eq!(limited["tool"], "delete-data");
    assert!(limited["retry_after_seconds"].as_u64().unwrap() >= 1);
    assert!(
        limited["credential_id"]
            .as_str()
            .unwrap()
            .starts_with("env-")
    );
    server.stop().await;
}

#[tokio::test]
async fn one_record_per_tool_call_and_one_per_other_request() {
    let (server, path) = start_audited("once").await;
    let client = Mcp::connect(
        &server.url,
        Cred::Bearer(jwt("counted", "viewer")),
        Version::V2025_06_18,
    )
    .await;
    client.call("read-data", json!({ "key": "k" })).await;
    client.call("delete-data", json!({ "key": "k" })).await;
    client.list().await;
    read_records(&path, |r| {
        r["event"] == "authentication" && r["subject"] == "counted"
    })
    .await;
    // Let any straggler be written before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let records: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["subject"] == "counted")
        .collect();
    assert!(records.len() >= 4);
    let tool_calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .collect();
    assert_eq!(tool_calls.len(), 2, "{records:#?}");
    assert_eq!(
        (
            tool_calls[0]["outcome"].as_str(),
            tool_calls[1]["outcome"].as_str()
        ),
        (Some("allowed"), Some("denied"))
    );
    // initialize and notifications/initialized (made by `connect`) and tools/list are audited
    // as authentications; the two tool calls are not audited twice.
    let authentications = records
        .iter()
        .filter(|r| r["event"] == "authentication" && r["outcome"] == "allowed")
        .count();
    assert_eq!(authentications, 3, "{records:#?}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A fresh audit file path for `test`.
fn audit_path(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpgk-audit-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("audit.jsonl")
}

/// The records of `path`, every line parsed (a line that does not parse fails the test).
fn records_of(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits (up to 5 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}

/// An allowed record naming `subject`.
fn allowed(subject: &str) -> AuditRecord<'_> {
    let mut record = AuditRecord::new(AuditEvent::ToolCall, Outcome::Allowed);
    record.subject = Some(subject);
    record.tool = Some("read-data");
    record.remote_addr = Some("127.0.0.1:40000".parse().unwrap());
    record
}

#[tokio::test]
async fn a_flood_of_outsized_client_ids_is_cut_and_sampled() {
    let path = audit_path("flood");
    let window = Duration::from_secs(1);
    let log = AuditLog::json_lines(&path)
        .unwrap()
        .refusals_per_address(20, window);
    let counts = log.clone();
    let h = crate::oauth::start_oauth(move |c| c.audit(log)).await;
    let client_id = "x".repeat(8 * 1024);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id.as_str()),
        ("client_secret", "not-the-secret"),
    ];
    for _ in 0..200 {
        let (status, _, _) = h.token(&form).await;
        assert!(status.is_client_error());
    }
    // Once the window has ended, the next refusal brings the summary of the rest.
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    h.token(&form).await;
    let summarised = || {
        records_of(&path)
            .iter()
            .filter_map(|r| r["suppressed"].as_u64())
            .sum::<u64>()
    };
    eventually("every suppressed refusal is summarised", || {
        counts.suppressed() > 0 && summarised() == counts.suppressed()
    })
    .await;

    let records = records_of(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines().all(|l| l.len() < 1024),
        "every line is short, whatever the client id"
    );
    let refusals: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] != "allowed" && r["event"] != "suppressed")
        .collect();
    let summaries: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "suppressed")
        .collect();
    assert!(!summaries.is_empty());
    // At most 20 refusals per window (and the one that brought the last summary).
    assert!(
        refusals.len() <= 20 * summaries.len() + 1,
        "{} refusals, {} summaries",
        refusals.len(),
        summaries.len()
    );
    let cut = format!("{}…[+7936 bytes]", "x".repeat(256));
    assert!(refusals.iter().all(|r| r["client_id"] == cut.as_str()));
    for summary in &summaries {
        assert_eq!(summary["outcome"], "denied");
        assert_eq!(summary["reason"], "refusals_suppressed");
        assert_eq!(summary["remote_addr"], "127.0.0.1:0");
    }
    // Without the bounds and the sampling this file would hold 200 lines of 8 KB.
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    h.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn the_file_rotates_by_size_and_keeps_whole_lines() {
    let path = audit_path("rotate");
    let limit = 2000;
    let log = AuditLog::json_lines(&path)
        .unwrap()
        .max_file_bytes(limit)
        .keep_files(2);
    let subjects: Vec<String> = (0..60).map(|i| format!("rotated-{i:03}")).collect();
    for subject in &subjects {
        log.record(&allowed(subject));
    }
    eventually("the last record is written", || {
        records_of(&path)
            .last()
            .is_some_and(|r| r["subject"] == "rotated-059")
    })
    .await;
    let numbered = |n: u32| std::path::PathBuf::from(format!("{}.{n}", path.display()));
    assert!(numbered(1).exists() && numbered(2).exists());
    assert!(!numbered(3).exists(), "only two old files are kept");
    // Oldest first: the lines of `.2`, `.1` and the current file continue one another.
    let mut written = Vec::new();
    for file in [numbered(2), numbered(1), path.clone()] {
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(size <= limit, "{} is {size} bytes", file.display());
        written.extend(
            records_of(&file)
                .iter()
                .map(|r| r["subject"].as_str().unwrap().to_owned()),
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }
    assert!(
        written.len() < subjects.len(),
        "the oldest file was deleted"
    );
    assert_eq!(written, subjects[subjects.len() - written.len()..]);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn reopen_after_a_move_writes_a_new_file_at_the_path() {
    let path = audit_path("reopen");
    let moved = path.with_extension("jsonl.moved");
    let log = AuditLog::json_lines(&path).unwrap();
    log.record(&allowed("before-the-move"));
    eventually("the first record is written", || {
        !records_of(&path).is_empty()
    })
    .await;
    // logrotate's way: move the file, then ask the writer to reopen.
    std::fs::rename(&path, &moved).unwrap();
    log.reopen();
    eventually("the file is created again at its path", || path.exists()).await;
    log.record(&allowed("after-the-move"));
    eventually("the next record goes to the new file", || {
        !records_of(&path).is_empty()
    })
    .await;
    let old = records_of(&moved);
    let new = records_of(&path);
    assert_eq!(
        (old.len(), old[0]["subject"].as_str()),
        (1, Some("before-the-move"))
    );
    assert_eq!(
        (new.len(), new[0]["subject"].as_str()),
        (1, Some("after-the-move"))
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Sends `SIGHUP` to this test process. Safe for the other tests: the process listens for it
/// (through Tokio) before it is sent, so it ends nothing, and only logs that asked to be
/// reopened on it react.
#[cfg(unix)]
#[tokio::test]
async fn sighup_reopens_the_file_when_asked_to() {
    use tokio::signal::unix::{SignalKind, signal};

    // Listening first makes the process immune to SIGHUP whatever the log under test does.
    let mut hangups = signal(SignalKind::hangup()).unwrap();
    let path = audit_path("sighup");
    let moved = path.with_extension("jsonl.moved");
    let log = AuditLog::json_lines(&path).unwrap().reopen_on_sighup();
    log.record(&allowed("before-the-signal"));
    eventually("the first record is written", || {
        !records_of(&path).is_empty()
    })
    .await;
    std::fs::rename(&path, &moved).unwrap();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    hangups.recv().await;
    eventually("the file is created again at its path", || path.exists()).await;
    log.record(&allowed("after-the-signal"));
    eventually("the next record goes to the new file", || {
        !records_of(&path).is_empty()
    })
    .await;
    assert_eq!(records_of(&path)[0]["subject"], "after-the-signal");
    assert_eq!(records_of(&moved)[0]["subject"], "before-the-signal");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A stateless `hello` server auditing successes as `configure` says, to a file of its own.
async fn hello_audited(
    test: &str,
    configure: impl FnOnce(
        mcp_gatekeeper::Gatekeeper<crate::hello::Hello>,
    ) -> mcp_gatekeeper::Gatekeeper<crate::hello::Hello>,
) -> (mcp_gatekeeper::RunningServer, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("mcpgk-audit-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let keys = mcp_gatekeeper::ApiKeys::new().with_key(mcp_gatekeeper::ApiKey::new(
        "sampled",
        "sampled-audit-key-0123456789abcdef",
    ));
    let server = configure(
        mcp_gatekeeper::Gatekeeper::new(crate::hello::Hello)
            .authenticate(keys)
            .stateless()
            .audit_file(&path),
    )
    .bind("127.0.0.1:0")
    .await
    .unwrap();
    let url = format!("http://{}/mcp", server.local_addr());
    (server, url, path)
}

/// Makes `calls` successful calls of `hello`, then one refused request (the marker that the
/// writer caught up), and returns the audit records.
async fn audited_after(url: &str, path: &std::path::Path, calls: usize) -> Vec<Value> {
    let mcp = Mcp::new(
        url,
        Cred::ApiKey("sampled-audit-key-0123456789abcdef".into()),
        Version::V2025_06_18,
    );
    for _ in 0..calls {
        assert_eq!(mcp.call("hello", json!({ "name": "x" })).await.status, 200);
    }
    let wrong = Mcp::new(
        url,
        Cred::ApiKey("wrong-audit-key-0123456789abcdef".into()),
        Version::V2025_06_18,
    );
    assert_eq!(
        wrong.call("hello", json!({ "name": "x" })).await.status,
        403
    );
    read_records(path, |r| r["outcome"] == "denied").await
}

fn allowed_calls(records: &[Value]) -> usize {
    records
        .iter()
        .filter(|r| r["event"] == "tool_call" && r["outcome"] == "allowed")
        .count()
}

#[tokio::test]
async fn successes_are_audited_all_one_in_n_or_none_and_refusals_always() {
    use mcp_gatekeeper::AuditSuccesses;
    let (server, url, path) = hello_audited("all", |g| g).await;
    assert_eq!(allowed_calls(&audited_after(&url, &path, 30).await), 30);
    server.shutdown().await.unwrap();

    let (server, url, path) =
        hello_audited("one-in", |g| g.audit_successes(AuditSuccesses::OneIn(10))).await;
    let records = audited_after(&url, &path, 100).await;
    assert_eq!(allowed_calls(&records), 10);
    server.shutdown().await.unwrap();

    let (server, url, path) =
        hello_audited("none", |g| g.audit_successes(AuditSuccesses::None)).await;
    let records = audited_after(&url, &path, 30).await;
    assert_eq!(allowed_calls(&records), 0);
    // Nor is the request audited as an authentication instead; the refusal is.
    assert!(
        !records
            .iter()
            .any(|r| r["event"] == "authentication" && r["outcome"] == "allowed"),
        "{records:?}"
    );
    assert_eq!(
        records.iter().filter(|r| r["outcome"] == "denied").count(),
        1
    );
    server.shutdown().await.unwrap();

    // A tool may differ from the server.
    let (server, url, path) = hello_audited("per-tool", |g| {
        g.audit_successes(AuditSuccesses::None)
            .audit_successes_of("hello", AuditSuccesses::All)
    })
    .await;
    assert_eq!(allowed_calls(&audited_after(&url, &path, 20).await), 20);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn audit_settings_that_cannot_hold_fail_the_build() {
    use mcp_gatekeeper::AuditSuccesses;
    for (configure, expected) in [
        (
            Box::new(|g: mcp_gatekeeper::Gatekeeper<crate::hello::Hello>| {
                g.audit_successes_of("helo", AuditSuccesses::None)
            }) as Box<dyn FnOnce(_) -> _>,
            "no tool is named `helo`",
        ),
        (
            Box::new(|g: mcp_gatekeeper::Gatekeeper<crate::hello::Hello>| {
                g.audit_successes(AuditSuccesses::OneIn(0))
            }),
            "OneIn(0)",
        ),
    ] {
        let built = configure(
            mcp_gatekeeper::Gatekeeper::new(crate::hello::Hello).authenticate(
                mcp_gatekeeper::ApiKeys::new().with_key(mcp_gatekeeper::ApiKey::new(
                    "k",
                    "sampled-audit-key-0123456789abcdef",
                )),
            ),
        )
        .bind("127.0.0.1:0")
        .await;
        let Err(error) = built else {
            panic!("built with {expected}");
        };
        assert!(error.to_string().contains(expected), "{error}");
    }
}
