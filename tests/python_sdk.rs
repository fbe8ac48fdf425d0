//! The official Python MCP SDK (2.x, which negotiates protocol 2026-07-28) as a client of the
//! rbac example's gatekeeper: `e2e/python_client.py`, run with the venv that `e2e/setup.sh`
//! creates (the first end-to-end test of a process runs it; `tests/common/e2e.rs`).

use std::{process::Stdio, time::Duration};

use tokio::process::Command;

use crate::common::{VIEWER_KEY, e2e, jwt, start_rbac};

/// An API-key session and a JWT session through the SDK: `tools/list` filtered by role, a
/// seeded read, a refused `delete-data` with `data.reason = "missing_role"`, a write and its
/// read-back. The checks themselves are in the script, which prints each one.
#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_client_sees_and_calls_what_its_role_allows() {
    let python = e2e::python_with_mcp_sdk();
    let server = start_rbac(false).await;
    let subject = "python-editor";
    let child = Command::new(&python)
        .arg(e2e::e2e_dir().join("python_client.py"))
        .arg(&server.url)
        // Credentials in the environment, not in argv (which any local user can read).
        .env("VIEWER_KEY", VIEWER_KEY)
        .env("EDITOR_JWT", jwt(subject, "editor"))
        .env("EDITOR_SUBJECT", subject)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("python_client.py finishes within 60 s")
        .expect("python_client.py runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python_client.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // Every check ran (a script that returned early would pass silently otherwise).
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        8,
        "{stdout}"
    );
    println!("{stdout}");
    server.stop().await;
}
