//! The built `mcp-gatekeeper` binary, end to end: what it prints is used against real
//! in-process servers (keys loaded from the file it wrote, tokens checked by the runtime's own
//! verifier, probes of servers with API keys and with the OAuth authorization server).

use std::path::PathBuf;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use mcp_gatekeeper::{
    ApiKey, ApiKeys, Gatekeeper, Jwt, RunningServer, oauth::AuthorizationServer, prelude::*,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, process::Command};

mod common;

use common::{BIN, Run, run_command};

/// The HS256 secret of the token tests (at least 32 bytes).
const SECRET: &str = "cli-test-secret-0123456789abcdef-0123";

#[derive(Roles, Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Viewer,
    Admin,
}

/// Two tools: one any viewer may call and that says who is calling, one for admins.
struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// The caller's subject and roles.
    #[mcp_tool(name = "whoami", role = "viewer")]
    async fn whoami(&self, caller: Caller<Role>) -> String {
        let roles: Vec<&str> = caller.principal().roles().collect();
        let scopes: Vec<&str> = caller.scopes().collect();
        format!(
            "{} roles={} scopes={}",
            caller.subject(),
            roles.join(","),
            scopes.join(",")
        )
    }

    /// Something only admins may do.
    #[mcp_tool(name = "purge", role = "admin")]
    async fn purge(&self) -> String {
        "purged".to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// Runs the binary with `args`, the environment variables `env` (and no `JWT_SECRET` unless
/// given), and `stdin` on its standard input.
async fn run_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("JWT_SECRET");
    for (name, value) in env {
        command.env(name, value);
    }
    run_command(command, stdin).await
}

async fn run(args: &[&str]) -> Run {
    run_with(args, &[], None).await
}

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("cli", name)
}

/// `keys new ARGS --json`: the key, its key-file line and its id.
async fn new_key(args: &[&str]) -> (String, String, String) {
    let mut all = vec!["keys", "new", "--json"];
    all.extend_from_slice(args);
    let run = run(&all).await;
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let text = |field: &str| json[field].as_str().unwrap().to_owned();
    (text("key"), text("line"), text("id"))
}

// ---------------------------------------------------------------------------------------------
// A small MCP client over HTTP

/// The JSON-RPC messages in an answer: a JSON body or a server-sent event stream.
fn messages(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("text/event-stream") {
        body.split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                serde_json::from_str(&data.join("\n")).ok()
            })
            .collect()
    } else {
        serde_json::from_str(body)
            .map(|v| vec![v])
            .unwrap_or_default()
    }
}

/// A session with one credential header.
struct Mcp {
    http: reqwest::Client,
    url: String,
    credential: (String, String),
    session: Option<String>,
}

impl Mcp {
    /// `initialize` and `notifications/initialized`; the HTTP status and the error body when
    /// the server refuses.
    async fn connect(url: &str, name: &str, value: &str) -> Result<Self, (u16, String)> {
        let mut mcp = Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            credential: (name.to_owned(), value.to_owned()),
            session: None,
        };
        let initialize = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": { "name": "cli-tests", "version": "0" } }
        });
        let (status, session, reply) = mcp.post(&initialize).await;
        if status != 200 {
            return Err((status, reply.to_string()));
        }
        assert!(reply["result"].is_object(), "{reply}");
        mcp.session = session;
        let (status, _, _) = mcp
            .post(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        assert_eq!(status, 202);
        Ok(mcp)
    }

    /// `tools/call`: the JSON-RPC response.
    async fn call(&self, tool: &str) -> Value {
        let request = json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": { "name": tool, "arguments": {} }
        });
        let (status, _, reply) = self.post(&request).await;
        assert_eq!(status, 200, "{reply}");
        reply
    }

    async fn post(&self, message: &Value) -> (u16, Option<String>, Value) {
        let mut request = self
            .http
            .post(&self.url)
            .header(&self.credential.0, &self.credential.1)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(message.to_string());
        if let Some(session) = &self.session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let session = header("mcp-session-id");
        let content_type = header("content-type").unwrap_or_default();
        let body = response.text().await.unwrap();
        let reply = messages(&content_type, &body)
            .into_iter()
            .find(|m| m.get("id") == message.get("id"))
            .unwrap_or_else(|| serde_json::from_str(&body).unwrap_or(json!(body)));
        (status, session, reply)
    }
}

/// The text of a successful tool call.
fn tool_text(reply: &Value) -> &str {
    assert!(reply["result"].is_object(), "{reply}");
    reply["result"]["content"][0]["text"].as_str().unwrap()
}

/// The reason of a refused tool call.
fn refusal_reason(reply: &Value) -> &str {
    reply["error"]["data"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("not a refusal: {reply}"))
}

/// A listener on a free loopback port and the MCP endpoint URL it will serve.
async fn listener() -> (TcpListener, String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let url = format!("{base}/mcp");
    (listener, base, url)
}

async fn serve(gatekeeper: Gatekeeper<Tools>) -> (RunningServer, String) {
    let (listener, _, url) = listener().await;
    (gatekeeper.serve_on(listener).unwrap(), url)
}

// ---------------------------------------------------------------------------------------------
// keys

#[tokio::test]
async fn keys_from_keys_new_authenticate_with_the_role_they_were_made_with() {
    let (viewer, viewer_line, viewer_id) = new_key(&[
        "--role",
        "viewer",
        "--id",
        "ci-viewer",
        "--scope",
        "data:read",
    ])
    .await;
    let (admin, admin_line, admin_id) = new_key(&["--role", "admin", "--expires", "30d"]).await;
    for key in [&viewer, &admin] {
        assert!(key.starts_with("mgk_") && key.len() == 4 + 43, "{key}");
    }
    assert_eq!(viewer_id, "ci-viewer");
    assert!(
        admin_id.starts_with("key-") && admin_id.len() == 12,
        "{admin_id}"
    );
    assert!(viewer_line.ends_with(" scopes=data:read"), "{viewer_line}");
    assert!(admin_line.contains(" expires="), "{admin_line}");
    // Only digests are in the lines.
    assert!(!viewer_line.contains(&viewer) && !admin_line.contains(&admin));

    let dir = temp_dir("keys-new");
    let file = dir.join("keys.txt");
    std::fs::write(
        &file,
        format!("# from keys new\n{viewer_line}\n{admin_line}\n"),
    )
    .unwrap();
    let keys = ApiKeys::from_file(&file).unwrap();
    let (server, url) = serve(Gatekeeper::new(Tools).authenticate(keys)).await;

    let as_viewer = Mcp::connect(&url, "X-API-Key", &viewer).await.unwrap();
    assert_eq!(
        tool_text(&as_viewer.call("whoami").await),
        "ci-viewer roles=viewer scopes=data:read"
    );
    assert_eq!(
        refusal_reason(&as_viewer.call("purge").await),
        "missing_role"
    );

    let as_admin = Mcp::connect(&url, "X-API-Key", &admin).await.unwrap();
    assert_eq!(tool_text(&as_admin.call("purge").await), "purged");
    assert_eq!(
        tool_text(&as_admin.call("whoami").await),
        format!("{admin_id} roles=admin scopes=")
    );

    // A key that is not in the file, even one of the same shape, is refused.
    let (stranger, _, _) = new_key(&["--role", "admin"]).await;
    let Err((status, body)) = Mcp::connect(&url, "X-API-Key", &stranger).await else {
        panic!("an unknown key was accepted");
    };
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Invalid API key"), "{body}");

    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn keys_new_prints_a_labelled_key_and_a_line_in_the_file_format() {
    let run = run(&[
        "keys",
        "new",
        "--role",
        "-",
        "--subject",
        "reports@example.com",
        "--expires",
        "2099-01-02",
        "--scope",
        "a",
        "--scope",
        "b:c",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("API key"), "{run:?}");
    let key = lines[1];
    assert!(key.starts_with("mgk_"), "{run:?}");
    assert!(lines[3].starts_with("Key-file line"), "{run:?}");
    let line = lines[4];
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[1], "-");
    assert_eq!(fields[2], format!("sha256:{}", ApiKey::digest_hex(key)));
    assert_eq!(
        &fields[3..],
        [
            "scopes=a,b:c",
            "expires=2099-01-02T00:00:00Z",
            "subject=reports@example.com"
        ]
    );
    let principal = ApiKeys::parse_file(line).unwrap().verify(key).unwrap();
    assert_eq!(principal.subject(), "reports@example.com");
    assert_eq!(principal.roles().len(), 0);

    // Arguments the file format cannot hold are usage errors.
    for bad in [
        &["keys", "new", "--role", "two words"][..],
        &["keys", "new", "--role", "a", "--scope", "a,b"],
        &["keys", "new", "--role", "a", "--expires", "2001-01-01"],
        &["keys", "new", "--role", "a", "--expires", "soon"],
        &["keys", "new", "--role", "a", "--id", "#comment"],
        &["keys", "new"],
    ] {
        let run = run_with(bad, &[], None).await;
        assert_eq!(run.code, 2, "{bad:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{bad:?}: {run:?}");
    }
}

#[tokio::test]
async fn keys_hash_reads_stdin_and_matches_the_runtime_digest() {
    let key = "mgk_some-key-0123456789";
    let expected = format!("sha256:{}", ApiKey::digest_hex(key));
    for input in [format!("{key}\n"), format!("{key}\r\n"), key.to_owned()] {
        let run = run_with(&["keys", "hash"], &[], Some(&input)).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout.trim_end(), expected, "{input:?}");
    }
    let dash = run_with(&["keys", "hash", "-"], &[], Some(key)).await;
    assert_eq!(dash.stdout.trim_end(), expected);
    // Only one newline is removed: the rest is part of the key.
    let two = run_with(&["keys", "hash"], &[], Some(&format!("{key}\n\n"))).await;
    assert_eq!(
        two.stdout.trim_end(),
        format!("sha256:{}", ApiKey::digest_hex(&format!("{key}\n")))
    );
    // As an argument it works too, with a word about shell history.
    let argument = run(&["keys", "hash", key]).await;
    assert_eq!(argument.stdout.trim_end(), expected);
    assert!(argument.stderr.contains("history"), "{argument:?}");
    let empty = run_with(&["keys", "hash"], &[], Some("")).await;
    assert_eq!(empty.code, 2, "{empty:?}");
}

#[tokio::test]
async fn keys_check_passes_good_files_fails_bad_ones_and_warns_of_expiry() {
    let dir = temp_dir("keys-check");
    let (_, first, _) = new_key(&["--role", "admin"]).await;
    let (_, expiring, expiring_id) = new_key(&["--role", "viewer", "--expires", "3d"]).await;
    let good = dir.join("good.txt");
    std::fs::write(&good, format!("{first}\n\n# a comment\n{expiring}\n")).unwrap();
    let run_good = run(&["keys", "check", good.to_str().unwrap()]).await;
    assert_eq!(run_good.code, 0, "{run_good:?}");
    assert_eq!(run_good.stdout.trim_end(), "2 keys OK");
    assert!(
        run_good
            .stderr
            .contains(&format!("line 4: key `{expiring_id}` expires at")),
        "{run_good:?}"
    );

    // The second line holds a plaintext key where the digest belongs.
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, format!("{first}\nci admin mgk_plaintext-key\n")).unwrap();
    let run_bad = run(&["keys", "check", bad.to_str().unwrap()]).await;
    assert_eq!(run_bad.code, 1, "{run_bad:?}");
    assert!(run_bad.stderr.contains("line 2"), "{run_bad:?}");
    assert!(!run_bad.stderr.contains("mgk_plaintext-key"), "{run_bad:?}");
    assert!(run_bad.stdout.is_empty(), "{run_bad:?}");

    let binary = dir.join("binary.txt");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, b'\n']).unwrap();
    let run_binary = run(&["keys", "check", binary.to_str().unwrap()]).await;
    assert_eq!(run_binary.code, 1, "{run_binary:?}");

    let missing = run(&["keys", "check", dir.join("missing.txt").to_str().unwrap()]).await;
    assert_eq!(missing.code, 3, "{missing:?}");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// token

#[tokio::test]
async fn a_minted_token_is_accepted_by_a_server_with_the_secret_and_carries_its_role() {
    let (listener, _, url) = listener().await;
    let jwt = Jwt::hs256(SECRET)
        .unwrap()
        .issuer("cli-tests")
        .audience(url.clone());
    let server = Gatekeeper::new(Tools)
        .authenticate(jwt)
        .serve_on(listener)
        .unwrap();
    let secret = [("JWT_SECRET", SECRET)];
    let mint = |role: &'static str, aud: String| async move {
        let args = [
            "token",
            "--sub",
            "alice",
            "--role",
            role,
            "--scope",
            "data:read",
            "--scope",
            "data:write",
            "--aud",
            &aud,
            "--iss",
            "cli-tests",
            "--ttl",
            "10m",
        ];
        let run = run_with(&args, &secret, None).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout.lines().count(), 1, "only the token: {run:?}");
        run.stdout.trim_end().to_owned()
    };

    let admin = mint("admin", url.clone()).await;
    let mcp = Mcp::connect(&url, "Authorization", &format!("Bearer {admin}"))
        .await
        .unwrap();
    assert_eq!(
        tool_text(&mcp.call("whoami").await),
        "alice roles=admin scopes=data:read,data:write"
    );
    assert_eq!(tool_text(&mcp.call("purge").await), "purged");

    let viewer = mint("viewer", url.clone()).await;
    let mcp = Mcp::connect(&url, "Authorization", &format!("Bearer {viewer}"))
        .await
        .unwrap();
    assert_eq!(refusal_reason(&mcp.call("purge").await), "missing_role");

    // A token for another audience is refused.
    let elsewhere = mint("admin", "https://elsewhere.example/mcp".to_owned()).await;
    let refused = Mcp::connect(&url, "Authorization", &format!("Bearer {elsewhere}")).await;
    assert!(matches!(refused, Err((403, _))), "{:?}", refused.err());

    // The claims: the development marker, nbf, iat, a jti, exp ten minutes on.
    let verifier = Jwt::hs256(SECRET).unwrap().audience(url.clone());
    let principal = verifier.verify(&admin).unwrap();
    assert!(principal.credential_id().is_some_and(|jti| jti.len() == 32));
    let payload = admin.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["mcp_gatekeeper_dev"], true, "{claims}");
    assert_eq!(claims["role"], "admin", "{claims}");
    assert_eq!(claims["scope"], "data:read data:write", "{claims}");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 600, "{claims}");
    assert_eq!(claims["nbf"], claims["iat"], "{claims}");

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn token_refuses_a_missing_or_short_secret_and_long_lifetimes() {
    let missing = run(&["token", "--sub", "alice", "--aud", "x"]).await;
    assert_eq!(missing.code, 3, "{missing:?}");
    assert!(
        missing.stderr.contains("JWT_SECRET is not set"),
        "{missing:?}"
    );
    assert!(missing.stdout.is_empty());
    let short = run_with(
        &["token", "--sub", "alice", "--aud", "x"],
        &[("JWT_SECRET", "only-twenty-bytes-xx")],
        None,
    )
    .await;
    assert_eq!(short.code, 3, "{short:?}");
    assert!(short.stderr.contains("at least 32"), "{short:?}");
    let long = run_with(
        &["token", "--sub", "alice", "--ttl", "25h"],
        &[("JWT_SECRET", SECRET)],
        None,
    )
    .await;
    assert_eq!(long.code, 2, "{long:?}");
}

#[tokio::test]
async fn token_signs_with_a_private_key_file_choosing_the_algorithm_from_the_key() {
    let dir = temp_dir("token-key");
    let cases = [
        (&rcgen::PKCS_RSA_SHA256, "rs256"),
        (&rcgen::PKCS_ECDSA_P256_SHA256, "es256"),
        (&rcgen::PKCS_ECDSA_P384_SHA384, "es384"),
        (&rcgen::PKCS_ED25519, "eddsa"),
    ];
    for (algorithm, name) in cases {
        let pair = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let private = dir.join(format!("{name}.pem"));
        std::fs::write(&private, pair.serialize_pem()).unwrap();
        let run = run(&[
            "token",
            "--sub",
            "svc",
            "--role",
            "viewer",
            "--aud",
            "https://mcp.example/mcp",
            "--key",
            private.to_str().unwrap(),
        ])
        .await;
        assert_eq!(run.code, 0, "{name}: {run:?}");
        let public = pair.public_key_pem();
        let verifier = match name {
            "rs256" => Jwt::rs256_pem(public.as_bytes()),
            "es256" => Jwt::es256_pem(public.as_bytes()),
            "es384" => Jwt::es384_pem(public.as_bytes()),
            _ => Jwt::eddsa_pem(public.as_bytes()),
        }
        .unwrap()
        .audience("https://mcp.example/mcp");
        let principal = verifier.verify(run.stdout.trim_end()).unwrap();
        assert!(principal.roles().eq(["viewer"]), "{name}");
        // The public key is not a signing key.
        let public_file = dir.join(format!("{name}.pub.pem"));
        std::fs::write(&public_file, &public).unwrap();
        let refused = run_with(
            &[
                "token",
                "--sub",
                "svc",
                "--key",
                public_file.to_str().unwrap(),
            ],
            &[],
            None,
        )
        .await;
        assert_eq!(refused.code, 2, "{refused:?}");
    }
    let unreadable = run(&["token", "--sub", "svc", "--key", "/nonexistent/key.pem"]).await;
    assert_eq!(unreadable.code, 3, "{unreadable:?}");
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// config

#[tokio::test]
async fn config_prints_each_clients_format_with_secrets_as_placeholders() {
    let url = "https://mcp.example.com/mcp";
    let secret = "mgk_do-not-print-this-0123";
    let header = format!("X-API-Key: {secret}");
    let bearer = "Authorization: Bearer eyJ.do-not-print.this";
    let args = |client: &'static str| {
        vec![
            "config".to_owned(),
            client.to_owned(),
            url.to_owned(),
            "--header".to_owned(),
            header.clone(),
            "--header".to_owned(),
            bearer.to_owned(),
            "--header".to_owned(),
            "X-Tenant: acme".to_owned(),
            "--name".to_owned(),
            "data".to_owned(),
        ]
    };
    let config = |client: &'static str| {
        let args = args(client);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = run_with(&args, &[], None).await;
            assert_eq!(run.code, 0, "{client}: {run:?}");
            assert!(!run.stdout.contains(secret), "{client}: {run:?}");
            assert!(!run.stdout.contains("do-not-print"), "{client}: {run:?}");
            assert!(!run.stderr.contains("do-not-print"), "{client}: {run:?}");
            (run.json(), run.stderr)
        }
    };

    let (desktop, notes) = config("claude-desktop").await;
    let server = &desktop["mcpServers"]["data"];
    assert_eq!(server["command"], "npx");
    let server_args: Vec<&str> = server["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        server_args,
        [
            "-y",
            "mcp-remote",
            url,
            "--header",
            "X-API-Key:${MCP_API_KEY}",
            "--header",
            "Authorization:${MCP_BEARER_TOKEN}",
            "--header",
            "X-Tenant:acme"
        ]
    );
    assert!(server["env"]["MCP_API_KEY"].is_string());
    assert!(notes.contains("claude_desktop_config.json"), "{notes}");

    let (code, notes) = config("claude-code").await;
    let server = &code["mcpServers"]["data"];
    assert_eq!(server["type"], "http");
    assert_eq!(server["url"], url);
    assert_eq!(server["headers"]["X-API-Key"], "${MCP_API_KEY}");
    assert_eq!(
        server["headers"]["Authorization"],
        "Bearer ${MCP_BEARER_TOKEN}"
    );
    assert_eq!(server["headers"]["X-Tenant"], "acme");
    assert!(
        notes.contains(".mcp.json") && notes.contains("claude mcp add"),
        "{notes}"
    );

    let (vscode, notes) = config("vscode").await;
    let server = &vscode["servers"]["data"];
    assert_eq!(server["type"], "http");
    assert_eq!(server["url"], url);
    assert_eq!(server["headers"]["X-API-Key"], "${input:mcp-api-key}");
    assert_eq!(
        server["headers"]["Authorization"],
        "Bearer ${input:mcp-bearer-token}"
    );
    let inputs = vscode["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    for input in inputs {
        assert_eq!(input["type"], "promptString");
        assert_eq!(input["password"], true);
    }
    assert_eq!(inputs[0]["id"], "mcp-api-key");
    assert!(notes.contains(".vscode/mcp.json"), "{notes}");

    let (cursor, notes) = config("cursor").await;
    let server = &cursor["mcpServers"]["data"];
    assert_eq!(server["url"], url);
    assert!(server.get("type").is_none());
    assert_eq!(server["headers"]["X-API-Key"], "${env:MCP_API_KEY}");
    assert!(notes.contains("~/.cursor/mcp.json"), "{notes}");

    // Asked to, the secrets are written in as given.
    let inline = run(&[
        "config",
        "cursor",
        url,
        "--header",
        &header,
        "--inline-secrets",
    ])
    .await;
    assert_eq!(
        inline.json()["mcpServers"]["mcp-example-com"]["headers"]["X-API-Key"],
        secret
    );

    let unknown = run(&["config", "zed", url]).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    let not_a_url = run(&["config", "cursor", "mcp.example.com"]).await;
    assert_eq!(not_a_url.code, 2, "{not_a_url:?}");
}

// ---------------------------------------------------------------------------------------------
// probe

#[tokio::test]
async fn probe_of_a_server_with_api_keys_only() {
    let (key, line, _) = new_key(&["--role", "viewer"]).await;
    let keys = ApiKeys::parse_file(&line).unwrap();
    let (server, url) = serve(Gatekeeper::new(Tools).authenticate(keys)).await;

    let anonymous = run(&["probe", &url]).await;
    assert_eq!(anonymous.code, 0, "{anonymous:?}");
    let out = &anonymous.stdout;
    assert!(
        out.contains("ok    the server requires credentials"),
        "{anonymous:?}"
    );
    assert!(
        out.contains("the server accepts API keys in X-API-Key"),
        "{anonymous:?}"
    );
    assert!(
        out.contains("warn  no protected-resource metadata: OAuth clients cannot discover"),
        "{anonymous:?}"
    );
    assert!(!out.contains("fail"), "{anonymous:?}");

    let header = format!("X-API-Key: {key}");
    let with_key = run(&["probe", &url, "--header", &header]).await;
    assert_eq!(with_key.code, 0, "{with_key:?}");
    assert!(
        with_key
            .stdout
            .contains("ok    the credentials are accepted"),
        "{with_key:?}"
    );
    assert!(with_key.stdout.contains("whoami"), "{with_key:?}");

    let wrong = run(&[
        "probe",
        &url,
        "--header",
        "X-API-Key: mgk_not-a-key-0123456789",
    ])
    .await;
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong
            .stdout
            .contains("fail  the server refused the credentials"),
        "{wrong:?}"
    );
    assert!(wrong.stdout.contains("Invalid API key"), "{wrong:?}");

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn probe_of_a_server_with_the_oauth_authorization_server() {
    let (listener, base, url) = listener().await;
    let oauth = AuthorizationServer::new(&base)
        .resource(&url)
        .scopes(["data:read"])
        .build()
        .await
        .unwrap();
    let server = Gatekeeper::new(Tools)
        .oauth(&oauth, &url)
        .serve_on(listener)
        .unwrap();

    let probe = run(&["probe", &url]).await;
    assert_eq!(probe.code, 0, "{probe:?}");
    let out = &probe.stdout;
    for expected in [
        "ok    the server requires credentials",
        &format!(
            "ok    protected-resource metadata (RFC 9728) at {base}/.well-known/oauth-protected-resource/mcp"
        ),
        &format!("ok    the metadata's resource is this endpoint ({url})"),
        &format!(
            "ok    authorization server {base}: RFC 8414 metadata at {base}/.well-known/oauth-authorization-server"
        ),
        "ok    it supports PKCE S256",
        "ok    dynamic client registration",
        "the server accepts bearer tokens in Authorization",
    ] {
        assert!(out.contains(expected), "missing {expected:?}: {probe:?}");
    }
    assert!(!out.contains("fail"), "{probe:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn probe_reports_a_refused_host_and_a_closed_port() {
    let (key, line, _) = new_key(&["--role", "viewer"]).await;
    let keys = ApiKeys::parse_file(&line).unwrap();
    let (server, url) = serve(
        Gatekeeper::new(Tools)
            .authenticate(keys)
            .allowed_hosts(["mcp.example.com"]),
    )
    .await;
    let header = format!("X-API-Key: {key}");
    let refused = run(&["probe", &url, "--header", &header]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stdout.contains("fail  Host not allowed")
            && refused.stdout.contains("configure allowed_hosts"),
        "{refused:?}"
    );
    // The refusal comes before authentication: the credentials are not tried.
    assert_eq!(refused.stdout.matches("fail").count(), 1, "{refused:?}");
    assert!(refused.stdout.contains("were not tried"), "{refused:?}");
    server.shutdown().await.unwrap();

    // A port nothing listens on.
    let closed = {
        let (listener, _, url) = listener().await;
        drop(listener);
        url
    };
    let unreachable = run(&["probe", &closed]).await;
    assert_eq!(unreachable.code, 3, "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("cannot reach"),
        "{unreachable:?}"
    );
}
