//! The command lines a newcomer meets first, run as a newcomer would: the README's (its "Try
//! it" blocks) and those the examples print, each against a started example binary, in a fresh
//! shell (an empty environment but `PATH` and a new `HOME`). A line that fails here is a line
//! that fails for someone pasting it.
//!
//! The README says `127.0.0.1:3000`; the examples here listen on a port of their own choosing
//! (`BIND=127.0.0.1:0`), and that address replaces `127.0.0.1:3000` in the lines, which are
//! otherwise run as written. MCP Inspector (`npx -y @modelcontextprotocol/inspector`) resolves
//! to the pinned copy in `e2e/node_modules` (the shells start in `e2e/`), with Node 22 first
//! on `PATH`, as the end-to-end set-up installs them (`tests/common/e2e.rs`).
//!
//! Also checked: every example reads the shared variables (`BIND`, `STATELESS`, and
//! `MCP_RESOURCE` where tokens are involved) and the README's table lists every variable an
//! example reads.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::common::{e2e, example_binary, process::CapturedProcess};

/// The README, as the test binary was built with it.
const README: &str = include_str!("../README.md");

/// The examples' sources, for the environment checks.
const EXAMPLES: [(&str, &str); 5] = [
    ("hello", include_str!("../examples/hello.rs")),
    ("rbac", include_str!("../examples/rbac.rs")),
    ("oauth", include_str!("../examples/oauth.rs")),
    ("oidc", include_str!("../examples/oidc.rs")),
    ("rmcp_layer", include_str!("../examples/rmcp_layer.rs")),
];

/// The address the README's lines use.
const README_ADDRESS: &str = "127.0.0.1:3000";

/// The npm packages the lines run.
const INSPECTOR: &str = "@modelcontextprotocol/inspector";

/// A fresh temporary directory (a `HOME`, a data directory).
fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "mcpgk-readme-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A started example: killed when dropped.
struct Example {
    process: CapturedProcess,
    /// `127.0.0.1:PORT`, from its `listening on` line.
    address: String,
    /// Removed when dropped.
    data_dir: PathBuf,
}

impl Example {
    /// Starts `command` (an example, directly or through bash) in an empty environment but
    /// `PATH`, a fresh `HOME` and data directory, `BIND=127.0.0.1:0` and `vars`; waits for its
    /// `listening on` line.
    fn start(mut command: Command, vars: &[(&str, &str)]) -> Self {
        let data_dir = temp_dir("example");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &data_dir)
            .env("BIND", "127.0.0.1:0")
            .env("OAUTH_DATA_DIR", data_dir.join("oauth-data"))
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdin(Stdio::null());
        let mut process = CapturedProcess::spawn(&mut command, "the example");
        let address = process.listening();
        Self {
            process,
            address,
            data_dir,
        }
    }

    /// Starts example `name` with `vars`.
    fn run(name: &str, vars: &[(&str, &str)]) -> Self {
        Self::start(Command::new(example_binary(name)), vars)
    }

    /// Starts the example a README line (`VAR=value ... cargo run --example NAME`) starts,
    /// through bash so that its assignments read exactly as a shell reads them.
    fn from_readme_line(line: &str) -> Self {
        let (prefix, name) = line
            .rsplit_once("cargo run --example ")
            .unwrap_or_else(|| panic!("not a `cargo run --example` line: {line}"));
        let mut command = Command::new("bash");
        // `exec` replaces bash with the example, so killing the child kills the example.
        command
            .arg("-c")
            .arg(format!("{prefix}exec \"$0\""))
            .arg(example_binary(name.trim()));
        Self::start(command, &[])
    }

    /// What it printed so far.
    fn printed(&self) -> String {
        self.process.printed()
    }

    /// The lines it printed under its `try it` heading (up to the next blank line): the
    /// commands, with their `#` comments, as a script.
    fn try_lines(&self) -> String {
        let printed = self.printed();
        let lines: Vec<&str> = printed
            .lines()
            .skip_while(|l| !l.starts_with("try it"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .collect();
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.starts_with("  ")),
            "no `try it` lines:\n{printed}"
        );
        lines.join("\n")
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Runs `script` with bash (`set -euo pipefail`, each command echoed to stderr) in a fresh
/// shell: in `e2e/`, with `PATH` (Node 22 first), a new `HOME` and nothing else but `vars`,
/// `stdin` as its input. Returns the output; fails the test, showing it, unless the script
/// exits 0 within two minutes.
fn run_in_fresh_shell(
    script: &str,
    vars: &[(&str, &str)],
    stdin: &str,
    example: &Example,
) -> String {
    let node = e2e::node_22_with(&[INSPECTOR], false);
    let home = temp_dir("home");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euxo pipefail\n{script}"))
        .current_dir(e2e::e2e_dir())
        .env_clear()
        .env("PATH", e2e::path_with_node(&node))
        .env("HOME", &home)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash starts");
    if let Some(mut input) = child.stdin.take() {
        let _ = std::io::Write::write_all(&mut input, stdin.as_bytes());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            // Ends only the shell this test started; what it ran is ended with it below.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!(
                "the lines did not finish within 2 minutes:\n{script}\n--- server\n{}",
                example.printed()
            )
        })
        .expect("bash ran");
    let _ = std::fs::remove_dir_all(&home);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "these lines failed ({}):\n{script}\n--- their output\n{text}\n--- server\n{}",
        output.status,
        example.printed()
    );
    // Shown with --nocapture: what the lines printed.
    println!("{text}");
    text
}

/// Fails the test unless `output` contains every one of `expected`.
fn assert_contains(output: &str, expected: &[&str], what: &str) {
    for needle in expected {
        assert!(
            output.contains(needle),
            "{what}: expected {needle:?} in:\n{output}"
        );
    }
}

/// The README's "Try it" pairs: a server line and the lines run against it.
fn readme_blocks() -> Vec<(String, String)> {
    const SERVER: &str = "<!-- tests/readme.rs starts this line's server: -->";
    const CLIENT: &str =
        "<!-- tests/readme.rs runs these lines against it, in one fresh shell: -->";
    /// The fenced block right after `marker` at `at`.
    fn block(readme: &str, at: usize, marker: &str) -> String {
        let rest = &readme[at + marker.len()..];
        let start = rest.find("```sh\n").expect("a sh block after the marker") + 6;
        let end = rest[start..].find("```").expect("the block's end") + start;
        rest[start..end].trim_end().to_owned()
    }
    let mut pairs = Vec::new();
    let mut from = 0;
    while let Some(found) = README[from..].find(SERVER) {
        let server_at = from + found;
        let server = block(README, server_at, SERVER);
        let client_at = README[server_at..]
            .find(CLIENT)
            .map(|i| server_at + i)
            .expect("client lines after a server line");
        pairs.push((server, block(README, client_at, CLIENT)));
        from = client_at + CLIENT.len();
    }
    pairs
}

#[test]
fn the_readmes_rbac_lines_work_as_written() {
    let blocks = readme_blocks();
    let (server, client) = blocks
        .iter()
        .find(|(server, _)| server.ends_with("--example rbac"))
        .expect("a README block for the rbac example");
    let example = Example::from_readme_line(server);
    let script = client.replace(README_ADDRESS, &example.address);
    let output = run_in_fresh_shell(&script, &[], "", &example);
    assert_contains(
        &output,
        &[
            // curl: the seeded value, in an SSE event
            r#""text":"welcome""#,
            // Inspector with the token: the viewer's tools
            r#""name": "read-data""#,
            // Inspector as an editor: the receipt of write-data
            r#""written_by""#,
        ],
        "the README's rbac lines",
    );
    assert!(
        !output.contains(r#""name": "write-data""#),
        "a viewer's tools/list showed write-data:\n{output}"
    );
}

#[test]
fn the_readmes_oauth_lines_work_as_written() {
    let blocks = readme_blocks();
    let (server, client) = blocks
        .iter()
        .find(|(server, _)| server.ends_with("--example oauth"))
        .expect("a README block for the oauth example");
    let example = Example::from_readme_line(server);
    let script = client.replace(README_ADDRESS, &example.address);
    let output = run_in_fresh_shell(&script, &[], "", &example);
    assert_contains(
        &output,
        &[r#""text": "welcome""#],
        "the README's oauth lines",
    );
}

#[test]
fn the_rbac_examples_printed_lines_work_as_printed() {
    let example = Example::run("rbac", &[]);
    let output = run_in_fresh_shell(&example.try_lines(), &[], "", &example);
    assert_contains(
        &output,
        &[
            r#""text":"welcome""#,
            r#""written_by""#,
            r#""access_token":"#,
        ],
        "the rbac example's lines",
    );
}

#[test]
fn the_hello_examples_printed_line_works_as_printed() {
    // Demo mode: the key generated for the run is in the line.
    let example = Example::run("hello", &[]);
    let output = run_in_fresh_shell(&example.try_lines(), &[], "", &example);
    assert_contains(&output, &["Hello, World!"], "hello's demo line");
    drop(example);

    // A configured key is never printed: the line asks for it (here on stdin).
    let key = "hello-configured-key-0123456789";
    let example = Example::run("hello", &[("MCP_API_KEYS", key)]);
    assert!(!example.printed().contains(key), "{}", example.printed());
    let output = run_in_fresh_shell(&example.try_lines(), &[], &format!("{key}\n"), &example);
    assert_contains(
        &output,
        &["Hello, World!"],
        "hello's line for a configured key",
    );
}

/// The oauth example's Inspector line signs in through the login and consent pages: the
/// "browser" it opens is `e2e/sign-in.mjs` (through `xdg-open`'s `$BROWSER`), which fills in
/// the pages as a person would. Inspector's callback listens on 127.0.0.1:6276, its default.
#[test]
fn the_oauth_examples_printed_line_signs_in_and_calls_a_tool() {
    let password = "readme-password-0123456789";
    let example = Example::run(
        "oauth",
        &[("OAUTH_USER", "alice"), ("OAUTH_USER_PASSWORD", password)],
    );
    let node = e2e::node_22_with(&[INSPECTOR], false);
    let browser = format!(
        "{} {}",
        node.display(),
        e2e::e2e_dir().join("sign-in.mjs").display()
    );
    let log = temp_dir("sign-in").join("sign-in.log");
    let log_path = log.to_string_lossy().into_owned();
    let output = run_in_fresh_shell(
        &example.try_lines(),
        &[
            ("BROWSER", &browser),
            ("E2E_USER", "alice"),
            ("E2E_PASSWORD", password),
            ("SIGN_IN_LOG", &log_path),
        ],
        "",
        &example,
    );
    let signed_in = std::fs::read_to_string(&log).unwrap_or_default();
    if let Some(dir) = log.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert_contains(
        &format!("{output}\n{signed_in}"),
        &[r#""text": "welcome""#, "the callback answered 200"],
        "the oauth example's Inspector line",
    );
}

/// The variables an example's source reads: `var("NAME")`, `var_os("NAME")` and
/// `from_env("NAME")`.
fn variables_read(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for call in ["var(\"", "var_os(\"", "from_env(\""] {
        for (at, _) in source.match_indices(call) {
            let rest = &source[at + call.len()..];
            if let Some(end) = rest.find('"') {
                let name = &rest[..end];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn every_example_follows_the_environment_convention_and_the_readme_lists_it() {
    let table_start = README
        .find("## Examples and their environment")
        .expect("the README's environment section");
    let table_end = README[table_start + 3..]
        .find("\n## ")
        .map_or(README.len(), |i| table_start + 3 + i);
    let table = &README[table_start..table_end];
    for (name, source) in EXAMPLES {
        let read = variables_read(source);
        let shared: &[&str] = if name == "hello" || name == "rmcp_layer" {
            &["BIND", "STATELESS"]
        } else {
            &["BIND", "STATELESS", "MCP_RESOURCE"]
        };
        for variable in shared {
            // The oauth and oidc examples read the shared ones through the rbac example's
            // helpers.
            let source_read = read.iter().any(|r| r == variable)
                || ((name == "oauth" || name == "oidc")
                    && variables_read(EXAMPLES[1].1).iter().any(|r| r == variable));
            assert!(source_read, "the {name} example does not read {variable}");
        }
        for variable in read {
            // `OAUTH_BIND` is read only to refuse it; the table says so in a sentence.
            assert!(
                table.contains(&format!("`{variable}`"))
                    || table.contains(&format!("`{variable}=")),
                "the README's environment table does not list {variable}, which the {name} \
                 example reads"
            );
        }
    }
}

/// A `tools/call` of protocol 2026-07-28 (no session needed) with `header`; returns the
/// reply's `Content-Type` and the JSON-RPC message.
async fn call(
    address: &str,
    host: Option<&str>,
    header: (&str, &str),
    tool: &str,
    arguments: Value,
) -> (u16, String, Option<Value>) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{address}/mcp"))
        .header(header.0, header.1)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(
            json!({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {
                    "name": tool, "arguments": arguments,
                    "_meta": {
                        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": {},
                        "io.modelcontextprotocol/clientInfo": { "name": "readme-test", "version": "0" },
                    },
                },
            })
            .to_string(),
        );
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request.send().await.expect("the example answers");
    let status = response.status().as_u16();
    let id = Some(json!(1));
    let reply = crate::common::read_reply(response, id).await;
    let content_type = reply.header("content-type").unwrap_or_default().to_owned();
    (status, content_type, reply.message)
}

/// The claims of a JWT (its payload, unverified).
fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn stateless_and_the_resource_mean_the_same_in_every_example() {
    // STATELESS=1: plain JSON instead of an event stream, in each example.
    let key = "readme-env-key-0123456789";
    let hello = Example::run("hello", &[("MCP_API_KEYS", key), ("STATELESS", "1")]);
    let (_, content_type, message) = call(
        &hello.address,
        None,
        ("x-api-key", key),
        "hello",
        json!({ "name": "env" }),
    )
    .await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(
        message.unwrap()["result"]["content"][0]["text"],
        "Hello, env!"
    );
    drop(hello);

    // rbac: the resource is the audience /auth/token writes, and its host is answered to.
    let resource = "https://mcp.example.com/mcp";
    let rbac = Example::run(
        "rbac",
        &[
            ("MCP_API_KEYS", &format!("{key}:viewer")),
            ("MCP_CLIENTS", "svc:readme-secret-0123456789:viewer"),
            ("STATELESS", "1"),
            ("MCP_RESOURCE", resource),
        ],
    );
    let (status, content_type, message) = call(
        &rbac.address,
        Some("mcp.example.com"),
        ("x-api-key", key),
        "read-data",
        json!({ "key": "a" }),
    )
    .await;
    assert_eq!(status, 200, "{message:?}\n{}", rbac.printed());
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(message.unwrap()["result"]["content"][0]["text"], "welcome");
    let token: Value = reqwest::Client::new()
        .post(format!("http://{}/auth/token", rbac.address))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", "readme-secret-0123456789"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("a token");
    assert_eq!(claims(token)["aud"], resource);
    drop(rbac);

    // oauth: the resource's origin is the issuer; STATELESS as everywhere.
    let oauth = Example::run(
        "oauth",
        &[
            ("OAUTH_USER_PASSWORD", "readme-password-0123456789"),
            ("OAUTH_SERVICE_ID", "svc"),
            ("OAUTH_SERVICE_SECRET", "readme-secret-0123456789"),
            ("STATELESS", "1"),
        ],
    );
    let origin = format!("http://{}", oauth.address);
    let metadata: Value =
        reqwest::get(format!("{origin}/.well-known/oauth-protected-resource/mcp"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(metadata["resource"], format!("{origin}/mcp"));
    assert_eq!(metadata["authorization_servers"][0], origin);
    let token: Value = reqwest::Client::new()
        .post(format!("{origin}/oauth/token"))
        .basic_auth("svc", Some("readme-secret-0123456789"))
        .form(&[("grant_type", "client_credentials"), ("scope", "data:read")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("a token");
    assert_eq!(claims(token)["aud"], format!("{origin}/mcp"));
    let bearer = format!("Bearer {token}");
    let (status, content_type, message) = call(
        &oauth.address,
        None,
        ("authorization", &bearer),
        "read-data",
        json!({ "key": "a" }),
    )
    .await;
    assert_eq!(status, 200, "{message:?}\n{}", oauth.printed());
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(message.unwrap()["result"]["content"][0]["text"], "welcome");
}

/// Starts `name` with `vars` and returns what it printed before exiting (within 30 s), failing
/// the test if it started serving instead.
fn refuses_to_start(name: &str, vars: &[(&str, &str)]) -> String {
    let dir = temp_dir("refused");
    let mut child = Command::new(example_binary(name))
        .env_clear()
        .env("HOME", &dir)
        .env("BIND", "127.0.0.1:0")
        .env("OAUTH_DATA_DIR", dir.join("oauth-data"))
        .env("OAUTH_USER_PASSWORD", "readme-password-0123456789")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example runs");
    let started = Instant::now();
    let exited = loop {
        match child.try_wait() {
            Ok(Some(_)) => break true,
            Ok(None) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                break false;
            }
        }
    };
    let output = child.wait_with_output().expect("its output");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        exited && !output.status.success(),
        "{name} started:\n{text}"
    );
    text
}

#[test]
fn the_oauth_example_refuses_an_issuer_that_is_not_the_resources_origin_and_the_old_bind_name() {
    let text = refuses_to_start(
        "oauth",
        &[
            ("OAUTH_ISSUER", "http://127.0.0.1:4000"),
            ("MCP_RESOURCE", "http://127.0.0.1:5000/mcp"),
        ],
    );
    assert!(text.contains("is not the origin of MCP_RESOURCE"), "{text}");
    let text = refuses_to_start("oauth", &[("OAUTH_BIND", "127.0.0.1:3000")]);
    assert!(text.contains("OAUTH_BIND is now BIND"), "{text}");
}
