//! A real OpenID Provider for the OpenID Connect tests: `e2e/idp.mjs` (the pinned
//! oidc-provider, on the Node 22 the end-to-end set-up installs) in a child process on a
//! loopback port, with the client-credentials tokens, the introspection and revocation calls
//! and the request counters the tests need.
//!
//! The process is started on port 0 (or on the port of a previous instance, to restart the
//! same issuer), its one line of JSON on stdout tells the issuer, port and signing key id; its
//! log (stderr) is kept for failure messages. It is killed when the [`Idp`] is dropped or
//! stopped. When Node 22 or oidc-provider is missing the test fails with the fix (see
//! [`node_22_with`]); it never skips.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use super::e2e::{e2e_dir, node_22_with};

/// How long idp.mjs may take to print its line.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The scopes idp.mjs grants (every scope the data tools declare).
pub const ALL_SCOPES: &str = "data:read data:write data:delete users:manage";

/// How a client authenticates at the token endpoint (both are accepted for every client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`.
    Basic,
    /// `client_secret_post`.
    Post,
}

/// The requests each endpoint of an idp.mjs process received since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Counters {
    pub discovery: u64,
    pub oauth_metadata: u64,
    pub jwks: u64,
    pub token: u64,
    pub introspection: u64,
    pub revocation: u64,
}

/// What idp.mjs prints once it listens.
#[derive(Deserialize)]
struct Started {
    issuer: String,
    port: u16,
    kid: String,
}

/// A fresh path for a JWK set file (the signing key idp.mjs creates and reuses across
/// restarts), under the target directory's test scratch space.
pub fn key_file(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-keys");
    std::fs::create_dir_all(&dir).expect("a directory for key files");
    dir.join(format!("{name}-{}-{nanos}.json", std::process::id()))
}

/// A running idp.mjs, killed when dropped.
pub struct Idp {
    /// Its issuer identifier (`http://127.0.0.1:PORT[/path]`).
    pub issuer: String,
    pub port: u16,
    /// The `kid` of the key signing its tokens.
    pub kid: String,
    /// The arguments it was started with (but `--port`), for [`restart`](Self::restart).
    args: Vec<String>,
    child: Option<Child>,
    /// Everything it logged (stderr), for failure messages.
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Idp {
    /// Starts `node e2e/idp.mjs ARGS --port 0` and waits for its line.
    pub async fn start(args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Self::spawn(args, 0).await
    }

    async fn spawn(args: Vec<String>, port: u16) -> Self {
        let node = node_22_with(&["oidc-provider"], false);
        let dir = e2e_dir();
        let mut child = Command::new(&node)
            .arg(dir.join("idp.mjs"))
            .args(&args)
            .arg("--port")
            .arg(port.to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", node.display()));
        // The log is drained for the process's whole life, so that it can never fill the pipe
        // and stall the provider.
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let first = tokio::time::timeout(START_LIMIT, async move {
            BufReader::new(stdout).lines().next_line().await
        })
        .await;
        let printed = |log: &Arc<Mutex<String>>| log.lock().map(|l| l.clone()).unwrap_or_default();
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(_) => {
                // Give the log a moment to arrive: it says why the process ended.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "idp.mjs {} ended before listening ({:?}):\n{}",
                    args.join(" "),
                    child.try_wait(),
                    printed(&log)
                );
            }
            Err(_) => panic!(
                "idp.mjs {} did not listen within {START_LIMIT:?}:\n{}",
                args.join(" "),
                printed(&log)
            ),
        };
        let started: Started = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("idp.mjs printed {line:?}, not its JSON line: {e}"));
        Self {
            issuer: started.issuer,
            port: started.port,
            kid: started.kid,
            args,
            child: Some(child),
            log,
            http: reqwest::Client::new(),
        }
    }

    /// Kills the process and waits until it is gone (its port is then free).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("idp.mjs killed");
        }
    }

    /// Stops it and starts it again on the same port (so under the same issuer) with the
    /// arguments of the first start and `extra` (`--new-key`, `--also-key-file PATH`). The
    /// counters start again from zero.
    pub async fn restart(&mut self, extra: &[&str]) {
        self.stop().await;
        let mut args = self.args.clone();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let port = self.port;
        let issuer = self.issuer.clone();
        let next = Self::spawn(args, port).await;
        assert_eq!(next.issuer, issuer, "restarted under another issuer");
        let first_args = std::mem::take(&mut self.args);
        *self = next;
        // Later restarts start from the first arguments again.
        self.args = first_args;
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A client-credentials access token for `client` with `scope`, for the default audience
    /// (`--audience`), the client authenticating with HTTP Basic.
    pub async fn token(&self, client: &str, scope: &str) -> String {
        self.token_for(client, scope, None, ClientAuth::Basic).await
    }

    /// A client-credentials access token for `client` with `scope` for `resource` (RFC 8707;
    /// `None`: the default audience), the client authenticating as `auth` says.
    pub async fn token_for(
        &self,
        client: &str,
        scope: &str,
        resource: Option<&str>,
        auth: ClientAuth,
    ) -> String {
        let secret = format!("{client}-secret");
        let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let mut request = self.http.post(format!("{}/token", self.issuer));
        match auth {
            ClientAuth::Basic => request = request.basic_auth(client, Some(&secret)),
            ClientAuth::Post => {
                form.push(("client_id", client));
                form.push(("client_secret", &secret));
            }
        }
        let response = request
            .form(&form)
            .send()
            .await
            .expect("token request sent");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match body["access_token"].as_str() {
            Some(token) if status == 200 => token.to_owned(),
            _ => panic!(
                "no token for {client} ({status}): {body}\n--- idp log\n{}",
                self.log()
            ),
        }
    }

    /// Revokes `token` (RFC 7009) as the resource server's client, which may revoke any.
    pub async fn revoke(&self, token: &str) {
        let response = self
            .http
            .post(format!("{}/token/revocation", self.issuer))
            .basic_auth("mcp-server", Some("mcp-server-secret"))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .expect("revocation request sent");
        assert_eq!(response.status(), 200, "revocation refused: {response:?}");
    }

    /// Its request counters.
    pub async fn counters(&self) -> Counters {
        self.http
            .get(format!("{}/test/counters", self.issuer))
            .send()
            .await
            .expect("the counters answer")
            .json()
            .await
            .expect("the counters are JSON")
    }
}
