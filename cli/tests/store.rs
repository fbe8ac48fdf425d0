//! The store commands (`clients`, `users`, `signing-keys`) of the built binary against an
//! authorization server on the same store: a SQLite file in a temporary directory, and the
//! PostgreSQL server of `DATABASE_URL` (else the local one; a test fails, loudly, when it
//! cannot be reached, and never skips). What the binary writes is then used the way clients
//! use it: a client-credentials grant at the server's token endpoint (by secret, or by a TLS
//! client certificate forwarded as a TLS-terminating proxy forwards it), its token at the MCP
//! endpoint, the server's JWKS.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use mcp_gatekeeper::{
    ForwardedCertificate, Gatekeeper, RunningServer,
    oauth::AuthorizationServer,
    prelude::*,
    store::{
        PostgresOptions, PostgresStore, RefreshTokenRecord, SessionRecord, SqliteStore, Store,
        TlsClientAuth, hash_secret,
    },
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};
use tokio::{net::TcpListener, process::Command};

mod common;

use common::{BIN, Run, run_command};

#[derive(Roles, Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Viewer,
    Admin,
}

/// One tool, so that the server has something to protect.
struct Tools;

#[mcp_tools(roles = Role)]
impl Tools {
    /// The caller's subject.
    #[mcp_tool(name = "whoami", role = "viewer")]
    async fn whoami(&self, caller: Caller<Role>) -> String {
        caller.subject().to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// How the binary is told where the store is.
#[derive(Clone)]
enum At {
    /// `--store sqlite:PATH`.
    Sqlite(PathBuf),
    /// $OAUTH_STORE with the URL (as a URL with a password is best given) and `--schema`.
    Postgres { url: String, schema: String },
}

impl At {
    /// Runs the binary with `args` and the store's arguments, `stdin` on its standard input.
    async fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("OAUTH_STORE")
            .env_remove("OAUTH_DATABASE_SCHEMA");
        match self {
            At::Sqlite(path) => {
                command
                    .arg("--store")
                    .arg(format!("sqlite:{}", path.display()));
            }
            At::Postgres { url, schema } => {
                command.env("OAUTH_STORE", url).args(["--schema", schema]);
            }
        }
        run_command(command, stdin).await
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None).await
    }

    /// Runs `args` and expects exit 0.
    async fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        run
    }
}

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("cli-store", name)
}

// ---------------------------------------------------------------------------------------------
// A server on the store, and its clients' side

struct Server {
    running: RunningServer,
    base: String,
    url: String,
    http: reqwest::Client,
}

/// The header client certificates arrive in at the servers of the mutual-TLS tests, as a
/// TLS-terminating proxy (on 127.0.0.1, where the tests connect from) forwards them.
const CERTIFICATE_HEADER: &str = "x-ssl-client-cert";

impl Server {
    /// The authorization server and an MCP endpoint on `store`, serving scope `data:read`.
    async fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, false).await
    }

    /// The same, behind a TLS-terminating proxy on 127.0.0.1 that forwards the client's
    /// certificate in `CERTIFICATE_HEADER`: the mutual-TLS clients' grants, without a TLS stack.
    async fn start_behind_proxy(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, true).await
    }

    async fn start_with(store: Arc<dyn Store>, behind_proxy: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let url = format!("{base}/mcp");
        let oauth = AuthorizationServer::new(&base)
            .resource(&url)
            .store(store)
            .scopes(["data:read"])
            .build()
            .await
            .unwrap();
        let mut gatekeeper = Gatekeeper::new(Tools).oauth(&oauth, &url);
        if behind_proxy {
            gatekeeper = gatekeeper
                .trusted_proxies(["127.0.0.1"])
                .client_certificate_header(ForwardedCertificate::pem_header(CERTIFICATE_HEADER));
        }
        let running = gatekeeper.serve_on(listener).unwrap();
        Self {
            running,
            base,
            url,
            http: reqwest::Client::new(),
        }
    }

    /// A client-credentials grant: the access token, or the status and error body.
    async fn grant(&self, client_id: &str, secret: &str) -> Result<String, (u16, String)> {
        let response = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        access_token(response).await
    }

    /// A client-credentials grant of a mutual-TLS client presenting `certificate` (through the
    /// proxy's header): the access token, or the status and error body.
    async fn grant_with_certificate(
        &self,
        client_id: &str,
        certificate: &rcgen::Certificate,
    ) -> Result<String, (u16, String)> {
        let response = self
            .http
            .post(format!("{}/oauth/token", self.base))
            // base64 DER without the PEM armour, as Traefik forwards it
            .header(CERTIFICATE_HEADER, STANDARD.encode(certificate.der()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
            ])
            .send()
            .await
            .unwrap();
        access_token(response).await
    }

    /// The status of an MCP `initialize` with `token` as its bearer token.
    async fn initialize(&self, token: &str) -> u16 {
        let initialize = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": { "name": "cli-store-tests", "version": "0" } }
        });
        self.http
            .post(&self.url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The `kid`s the JWKS publishes.
    async fn jwks_kids(&self) -> Vec<String> {
        let jwks: Value = self
            .http
            .get(format!("{}/.well-known/jwks.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The (unverified) header and claims of a JWT.
/// The access token of a token endpoint's answer, or its status and error body.
async fn access_token(response: reqwest::Response) -> Result<String, (u16, String)> {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    if status != 200 {
        return Err((status, body));
    }
    let json: Value = serde_json::from_str(&body).unwrap();
    Ok(json["access_token"].as_str().unwrap().to_owned())
}

fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || {
        let part = parts.next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    (decode(), decode())
}

/// The row of `name` in a table the binary printed: its cells.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row `{name}` in\n{table}"))
}

// ---------------------------------------------------------------------------------------------
// The checks, on either backend

/// `clients add`, `list`, `rotate-secret` and `remove`, each followed by the grant it should
/// allow or refuse.
async fn clients_lifecycle(at: &At, server: &Server) {
    let added = at
        .ok(&[
            "clients",
            "add",
            "svc",
            "--confidential",
            "--role",
            "viewer",
            "--scope",
            "data:read",
            "--json",
        ])
        .await;
    let added = added.json();
    let secret = added["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "256 bits: {secret}");
    assert_eq!(added["grant_types"], json!(["client_credentials"]));

    let token = server
        .grant("svc", &secret)
        .await
        .expect("the new client's grant");
    let (header, claims) = jwt_parts(&token);
    assert_eq!(claims["sub"], "svc");
    assert_eq!(claims["role"], "viewer", "{claims}");
    assert_eq!(claims["scope"], "data:read", "{claims}");
    assert!(header["kid"].is_string());
    assert_eq!(server.initialize(&token).await, 200);

    // The same id again is refused, and the stored client is untouched.
    let again = at.run(&["clients", "add", "svc", "--confidential"]).await;
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("already exists"), "{again:?}");
    server
        .grant("svc", &secret)
        .await
        .expect("still the first secret");

    // A public client: no secret printed, and none to rotate.
    let public = at
        .ok(&[
            "clients",
            "add",
            "my-app",
            "--name",
            "My App",
            "--redirect-uri",
            "https://my.app/cb",
            "--scope",
            "data:read",
        ])
        .await;
    assert!(
        public.stdout.contains("client `my-app` added"),
        "{public:?}"
    );
    assert!(!public.stdout.contains("secret"), "{public:?}");
    let rotate_public = at.run(&["clients", "rotate-secret", "my-app"]).await;
    assert_eq!(rotate_public.code, 2, "{rotate_public:?}");

    let list = at.ok(&["clients", "list"]).await;
    assert_eq!(
        row(&list.stdout, "svc"),
        [
            "svc",
            "client_secret_basic",
            "client_credentials",
            "viewer",
            "data:read",
            "configured",
            row(&list.stdout, "svc")[6],
            "-"
        ]
    );
    assert_eq!(
        &row(&list.stdout, "my-app")[1..6],
        [
            "none",
            "authorization_code,refresh_token",
            "-",
            "data:read",
            "configured"
        ]
    );
    assert!(list.stdout.starts_with("CLIENT_ID"), "{list:?}");
    let listed = at.ok(&["clients", "list", "--json"]).await.json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["my-app", "svc"], "in id order");
    assert_eq!(listed[0]["redirect_uris"], json!(["https://my.app/cb"]));
    assert_eq!(listed[0]["name"], "My App");
    assert!(!listed.to_string().contains("hash"), "{listed}");

    // A new secret: the old one stops working at once, the new one works.
    let rotated = at
        .ok(&["clients", "rotate-secret", "svc", "--json"])
        .await
        .json();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let (status, body) = server.grant("svc", &secret).await.unwrap_err();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_client"), "{body}");
    let token = server
        .grant("svc", &new_secret)
        .await
        .expect("the new secret");
    assert_eq!(server.initialize(&token).await, 200);

    // Removed: no grant any more; removing again finds nothing (exit 1).
    let removed = at.ok(&["clients", "remove", "svc"]).await;
    assert!(
        removed.stdout.contains("client `svc` removed"),
        "{removed:?}"
    );
    let (status, body) = server.grant("svc", &new_secret).await.unwrap_err();
    assert_eq!(status, 401, "{body}");
    let missing = at.run(&["clients", "remove", "svc"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("no client `svc`"), "{missing:?}");
    let listed = at.ok(&["clients", "list", "--json"]).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

/// `signing-keys list` and `rotate`: the JWKS then publishes the new key next to the old, the
/// server signs new tokens with it, and tokens of either key are accepted.
async fn signing_key_rotation(at: &At, server: &Server) {
    let added = at
        .ok(&[
            "clients",
            "add",
            "rotator",
            "--confidential",
            "--role",
            "viewer",
            "--json",
        ])
        .await;
    assert!(
        added.stderr.contains("no scope"),
        "a client without --scope is warned about: {added:?}"
    );
    let secret = added.json()["client_secret"].as_str().unwrap().to_owned();
    let before = server.grant("rotator", &secret).await.unwrap();
    let (header, _) = jwt_parts(&before);
    let old_kid = header["kid"].as_str().unwrap().to_owned();

    let keys = at.ok(&["signing-keys", "list", "--json"]).await.json();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["kid"], old_kid.as_str());
    assert_eq!(keys[0]["state"], "current");
    assert!(!keys.to_string().contains("private"), "{keys}");

    let rotated = at.ok(&["signing-keys", "rotate", "--json"]).await.json();
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotated["algorithm"], "ES256", "the current key's algorithm");
    assert_eq!(rotated["retired"], json!([old_kid]));

    let list = at.ok(&["signing-keys", "list"]).await;
    assert_eq!(&row(&list.stdout, &new_kid)[1..3], ["ES256", "current"]);
    assert_eq!(&row(&list.stdout, &old_kid)[1..3], ["ES256", "retired"]);

    // The server reads the keys again on a JWKS request (at most once per two-second
    // cool-down), so the new key shows within a few seconds at most.
    let mut kids = Vec::new();
    for _ in 0..30 {
        kids = server.jwks_kids().await;
        if kids.contains(&new_kid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        kids.contains(&new_kid),
        "the JWKS shows the new key: {kids:?}"
    );
    assert!(kids.contains(&old_kid), "and still the old one: {kids:?}");

    let after = server.grant("rotator", &secret).await.unwrap();
    let (header, _) = jwt_parts(&after);
    assert_eq!(
        header["kid"],
        new_kid.as_str(),
        "new tokens are signed with it"
    );
    assert_eq!(server.initialize(&after).await, 200);
    assert_eq!(
        server.initialize(&before).await,
        200,
        "a token of the retired key still verifies"
    );
}

/// A self-signed certificate with the subject `O=<organization>,CN=<common_name>` (RFC 4514,
/// last RDN first).
fn certificate(common_name: &str, organization: &str) -> rcgen::Certificate {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, organization);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.self_signed(&KeyPair::generate().unwrap()).unwrap()
}

/// `clients add` of mutual-TLS clients: `self_signed_tls_client_auth` with a certificate file
/// and `tls_client_auth` with a subject DN, checked in the store and by grants with the
/// certificate; unusable PEM files and conflicting options are refused (exit 2) and store
/// nothing. `server` is behind the proxy that forwards certificates.
async fn mutual_tls_clients(at: &At, server: &Server, store: &dyn Store, dir: &Path) {
    let batch = certificate("batch", "Example");
    let pem_file = dir.join("batch-cert.pem");
    std::fs::write(&pem_file, batch.pem()).unwrap();
    let pem_path = pem_file.to_str().unwrap();
    let added = at
        .ok(&[
            "clients",
            "add",
            "batch",
            "--self-signed-certificate",
            pem_path,
            "--role",
            "viewer",
            "--scope",
            "data:read",
            "--json",
        ])
        .await
        .json();
    assert_eq!(
        added["token_endpoint_auth_method"], "self_signed_tls_client_auth",
        "{added}"
    );
    assert_eq!(added["client_secret"], Value::Null, "{added}");
    assert_eq!(added["confidential"], true);
    assert_eq!(added["grant_types"], json!(["client_credentials"]));
    let thumbprint = added["tls_client_auth"]["x5t#S256"][0]
        .as_str()
        .unwrap_or_else(|| panic!("the thumbprint is shown: {added}"))
        .to_owned();

    let stored = store.get_client("batch").await.unwrap().unwrap();
    assert_eq!(
        stored.token_endpoint_auth_method,
        "self_signed_tls_client_auth"
    );
    assert_eq!(stored.secret_hash, None);
    assert_eq!(
        stored.tls_client_auth,
        Some(TlsClientAuth::self_signed_pem(batch.pem()).unwrap())
    );

    // The server, computing the thumbprint of the certificate it is shown, finds the client
    // and binds the token to it.
    let token = server
        .grant_with_certificate("batch", &batch)
        .await
        .expect("the registered certificate's grant");
    let (_, claims) = jwt_parts(&token);
    assert_eq!(claims["sub"], "batch");
    assert_eq!(claims["role"], "viewer", "{claims}");
    assert_eq!(claims["cnf"]["x5t#S256"], thumbprint.as_str(), "{claims}");
    let impostor = certificate("batch", "Example");
    let (status, body) = server
        .grant_with_certificate("batch", &impostor)
        .await
        .unwrap_err();
    assert_eq!(status, 401, "{body}");

    // A subject DN, stored in RFC 4514's form (short type names, no spaces) and matched
    // against the forwarded certificate's.
    let reporting = at
        .ok(&[
            "clients",
            "add",
            "reporting",
            "--tls-subject-dn",
            "cn=reporting, o=Example",
            "--scope",
            "data:read",
        ])
        .await;
    assert!(
        reporting.stdout.contains("client `reporting` added")
            && reporting
                .stdout
                .contains("tls_client_auth_subject_dn CN=reporting,O=Example"),
        "{reporting:?}"
    );
    assert!(!reporting.stdout.contains("secret"), "{reporting:?}");
    let stored = store.get_client("reporting").await.unwrap().unwrap();
    assert_eq!(stored.token_endpoint_auth_method, "tls_client_auth");
    assert_eq!(stored.secret_hash, None);
    assert_eq!(
        stored.tls_client_auth,
        Some(TlsClientAuth::SubjectDn("CN=reporting,O=Example".into()))
    );
    let token = server
        .grant_with_certificate("reporting", &certificate("reporting", "Example"))
        .await
        .expect("a certificate with the registered subject");
    assert_eq!(jwt_parts(&token).1["sub"], "reporting");
    let (status, body) = server
        .grant_with_certificate("reporting", &certificate("reporting", "Elsewhere"))
        .await
        .unwrap_err();
    assert_eq!(status, 401, "{body}");

    let list = at.ok(&["clients", "list"]).await;
    assert_eq!(
        &row(&list.stdout, "batch")[1..3],
        ["self_signed_tls_client_auth", "client_credentials"]
    );
    assert_eq!(
        &row(&list.stdout, "reporting")[1..3],
        ["tls_client_auth", "client_credentials"]
    );
    let listed = at.ok(&["clients", "list", "--json"]).await.json();
    let listed = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == id)
            .unwrap_or_else(|| panic!("`{id}` is listed: {listed}"))
            .clone()
    };
    assert_eq!(
        listed("batch")["tls_client_auth"],
        json!({ "x5t#S256": [thumbprint] })
    );
    assert_eq!(
        listed("reporting")["tls_client_auth"],
        json!({ "tls_client_auth_subject_dn": "CN=reporting,O=Example" })
    );
    let rotate = at.run(&["clients", "rotate-secret", "batch"]).await;
    assert_eq!(rotate.code, 2, "{rotate:?}");

    // Files that are no certificate: missing, a private key, not PEM at all.
    let key_file = dir.join("batch-key.pem");
    std::fs::write(&key_file, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let text_file = dir.join("notes.txt");
    std::fs::write(&text_file, "not a certificate\n").unwrap();
    let missing_file = dir.join("missing.pem");
    for file in [&missing_file, &key_file, &text_file] {
        let path = file.to_str().unwrap();
        let refused = at
            .run(&["clients", "add", "bad", "--self-signed-certificate", path])
            .await;
        assert_eq!(refused.code, 2, "{path}: {refused:?}");
        assert!(
            refused.stderr.contains(&format!("`{path}`")),
            "the file is named: {refused:?}"
        );
        assert!(!refused.stderr.contains("panicked"), "{refused:?}");
    }

    // One way to authenticate: a secret, a certificate name or registered certificates.
    for conflicting in [
        &["--confidential", "--tls-subject-dn", "CN=bad"][..],
        &["--confidential", "--self-signed-certificate", pem_path],
        &[
            "--tls-san-dns",
            "bad.example",
            "--self-signed-certificate",
            pem_path,
        ],
        &[
            "--tls-subject-dn",
            "CN=bad",
            "--tls-san-uri",
            "spiffe://example.org/bad",
        ],
        &[
            "--tls-san-email",
            "bad@example.org",
            "--tls-san-dns",
            "bad.example",
        ],
    ] {
        let args: Vec<&str> = ["clients", "add", "bad"]
            .iter()
            .chain(conflicting)
            .copied()
            .collect();
        let refused = at.run(&args).await;
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        assert!(
            refused.stderr.contains("cannot be used with"),
            "{refused:?}"
        );
    }
    assert_eq!(
        store.get_client("bad").await.unwrap(),
        None,
        "nothing stored"
    );
}

/// `users add`, `list`, `passwd` and `remove`, checked against the stored records with the
/// runtime's own password check.
async fn users_lifecycle(at: &At, store: &dyn Store) {
    let added = at
        .run_with(
            &["users", "add", "alice", "--role", "admin"],
            Some("correct horse battery\n"),
        )
        .await;
    assert_eq!(added.code, 0, "{added:?}");
    assert!(added.stdout.contains("user `alice` added"), "{added:?}");
    let alice = store.get_user("alice").await.unwrap().unwrap();
    assert!(alice.verify_password("correct horse battery"));
    assert!(!alice.verify_password("correct horse battery\n"));
    assert_eq!(alice.role.as_deref(), Some("admin"));
    assert_eq!(alice.scopes, ["*"], "every scope the server supports");

    let bob = at
        .run_with(
            &[
                "users",
                "add",
                "bob",
                "--scope",
                "data:read",
                "--password-stdin",
            ],
            Some("bobs-password"),
        )
        .await;
    assert_eq!(bob.code, 0, "{bob:?}");

    for (args, stdin, why) in [
        (&["users", "add", "alice"][..], "another-password", "exists"),
        (&["users", "add", "carol"], "short", "too short"),
        (&["users", "add", "carol"], "", "no password"),
        (&["users", "add", "carol"], "two\nlines\n", "two lines"),
    ] {
        let refused = at.run_with(args, Some(stdin)).await;
        assert_eq!(refused.code, 2, "{why}: {refused:?}");
    }
    assert!(store.get_user("carol").await.unwrap().is_none());

    let list = at.ok(&["users", "list"]).await;
    assert_eq!(
        &row(&list.stdout, "alice")[..4],
        ["alice", "admin", "*", "password"]
    );
    assert_eq!(
        &row(&list.stdout, "bob")[..4],
        ["bob", "-", "data:read", "password"]
    );
    assert!(!list.stdout.contains("argon2"), "{list:?}");
    let listed = at.ok(&["users", "list", "--json"]).await;
    assert!(!listed.stdout.contains("argon2"), "{listed:?}");
    let names: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    let changed = at
        .run_with(&["users", "passwd", "alice"], Some("a new password\n"))
        .await;
    assert_eq!(changed.code, 0, "{changed:?}");
    let alice = store.get_user("alice").await.unwrap().unwrap();
    assert!(alice.verify_password("a new password"));
    assert!(!alice.verify_password("correct horse battery"));
    assert_eq!(alice.role.as_deref(), Some("admin"), "the role stays");
    let nobody = at
        .run_with(&["users", "passwd", "nobody"], Some("whatever-password"))
        .await;
    assert_eq!(nobody.code, 1, "{nobody:?}");

    at.ok(&["users", "remove", "bob"]).await;
    assert!(store.get_user("bob").await.unwrap().is_none());
    let again = at.run(&["users", "remove", "bob"]).await;
    assert_eq!(again.code, 1, "{again:?}");
}

/// A sign-in session named `name` of `subject`, started at `now` for an hour, as the login
/// page stores one.
fn session(name: &str, subject: &str, now: i64) -> SessionRecord {
    SessionRecord {
        session_hash: hash_secret(name),
        subject: subject.to_owned(),
        scopes: None,
        created_at: now,
        expires_at: now + 3_600,
    }
}

/// The first refresh token of `subject`'s grant `family_id` at client `app`, for a day.
fn refresh_token(name: &str, subject: &str, family_id: &str, now: i64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: hash_secret(name),
        family_id: family_id.to_owned(),
        client_id: "app".to_owned(),
        subject: subject.to_owned(),
        scope: "data:read".to_owned(),
        resource: None,
        certificate_thumbprint: None,
        expires_at: now + 86_400,
    }
}

/// Whether the session named `name` is live in the store.
async fn signed_in(store: &dyn Store, name: &str, now: i64) -> bool {
    store
        .get_session(hash_secret(name), now)
        .await
        .unwrap()
        .is_some()
}

/// `users passwd` signs the user out on every server of the store and leaves their tokens;
/// `users remove` ends their sessions and tokens and revokes their grants. Another user keeps
/// everything.
async fn users_end_what_they_hold(at: &At, store: &dyn Store) {
    for name in ["dave", "erin"] {
        let added = at
            .run_with(&["users", "add", name], Some("a long password\n"))
            .await;
        assert_eq!(added.code, 0, "{added:?}");
    }
    at.ok(&[
        "clients",
        "add",
        "app",
        "--redirect-uri",
        "https://app.example/cb",
        "--scope",
        "data:read",
    ])
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (name, subject) in [("dave-1", "dave"), ("dave-2", "dave"), ("erin-1", "erin")] {
        let stored = store.put_session(session(name, subject, now), 16, 10_000, now);
        assert!(stored.await.unwrap(), "{name}");
    }
    for (name, subject) in [("dave-r", "dave"), ("erin-r", "erin")] {
        let token = refresh_token(name, subject, &format!("grant-{subject}"), now);
        store.put_refresh(token).await.unwrap();
    }

    let changed = at
        .run_with(
            &["users", "passwd", "dave"],
            Some("another long password\n"),
        )
        .await;
    assert_eq!(changed.code, 0, "{changed:?}");
    assert!(
        changed
            .stdout
            .contains("2 sign-in sessions of `dave` ended"),
        "{changed:?}"
    );
    assert!(!signed_in(store, "dave-1", now).await);
    assert!(!signed_in(store, "dave-2", now).await);
    assert!(signed_in(store, "erin-1", now).await);
    assert!(
        store
            .get_refresh(hash_secret("dave-r"))
            .await
            .unwrap()
            .is_some(),
        "a password change leaves the tokens"
    );
    assert!(!store.is_family_revoked("grant-dave").await.unwrap());

    // Signed in again with the new password, then removed.
    let stored = store.put_session(session("dave-3", "dave", now), 16, 10_000, now);
    assert!(stored.await.unwrap());
    let removed = at.ok(&["users", "remove", "dave"]).await;
    assert!(
        removed.stdout.contains("user `dave` removed"),
        "{removed:?}"
    );
    assert!(!signed_in(store, "dave-3", now).await);
    assert_eq!(
        store.get_refresh(hash_secret("dave-r")).await.unwrap(),
        None
    );
    assert!(store.is_family_revoked("grant-dave").await.unwrap());
    assert!(signed_in(store, "erin-1", now).await);
    assert!(
        store
            .get_refresh(hash_secret("erin-r"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(!store.is_family_revoked("grant-erin").await.unwrap());

    let nobody = at
        .run_with(&["users", "passwd", "dave"], Some("whatever-password"))
        .await;
    assert_eq!(nobody.code, 1, "{nobody:?}");
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// The server's SQLite store, opened as a server opens it (the binary opens the same file).
fn sqlite(dir: &Path) -> (Arc<dyn Store>, At) {
    let path = dir.join("oauth.db");
    let store = SqliteStore::open(&path).unwrap();
    (Arc::new(store), At::Sqlite(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_from_the_command_line_get_tokens_from_a_server_on_sqlite() {
    let dir = temp_dir("clients");
    let (store, at) = sqlite(&dir);
    let server = Server::start(store).await;
    clients_lifecycle(&at, &server).await;
    server.running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_clients_from_the_command_line_get_tokens_with_their_certificates_on_sqlite() {
    let dir = temp_dir("mtls");
    let (store, at) = sqlite(&dir);
    let server = Server::start_behind_proxy(store.clone()).await;
    mutual_tls_clients(&at, &server, store.as_ref(), &dir).await;
    server.running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotation_on_sqlite_reaches_the_jwks_and_new_tokens() {
    let dir = temp_dir("keys");
    let (store, at) = sqlite(&dir);
    let server = Server::start(store).await;
    signing_key_rotation(&at, &server).await;
    server.running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_from_the_command_line_have_the_password_given_on_stdin() {
    let dir = temp_dir("users");
    let (store, at) = sqlite(&dir);
    // A user and a client may not share a name; the same check holds the other way round.
    at.ok(&[
        "clients",
        "add",
        "svc",
        "--confidential",
        "--scope",
        "data:read",
    ])
    .await;
    let clash = at
        .run_with(&["users", "add", "svc"], Some("a-long-password"))
        .await;
    assert_eq!(clash.code, 2, "{clash:?}");
    users_lifecycle(&at, store.as_ref()).await;
    let clash = at.run(&["clients", "add", "alice", "--confidential"]).await;
    assert_eq!(clash.code, 2, "{clash:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_passwd_and_remove_on_sqlite_end_what_the_user_holds() {
    let dir = temp_dir("sessions");
    let (store, at) = sqlite(&dir);
    users_end_what_they_hold(&at, store.as_ref()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_store_and_a_malformed_one_are_refused_without_creating_files() {
    let dir = temp_dir("missing");
    let at = At::Sqlite(dir.join("nope/oauth.db"));
    for args in [
        &["clients", "list"][..],
        &["clients", "remove", "x"],
        &["users", "list"],
        &["signing-keys", "rotate"],
    ] {
        let run = at.run(args).await;
        assert_eq!(run.code, 3, "{args:?}: {run:?}");
        assert!(run.stderr.contains("there is no store"), "{run:?}");
    }
    assert!(!dir.join("nope").exists(), "nothing was created");

    let mut command = std::process::Command::new(BIN);
    let output = command
        .args(["clients", "list", "--store", "mysql://root:hunter2@db/x"])
        .env_remove("OAUTH_STORE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("hunter2"),
        "the password is not repeated: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// Where the tests' PostgreSQL is: `DATABASE_URL`, else the local server's `test` database
/// (as the runtime's PostgreSQL tests).
fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of the test's own, dropped when the guard is.
struct Schema(String);

impl Schema {
    fn fresh(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self(format!("gk_cli_{test}_{}_{nanos}", std::process::id()))
    }

    /// The server's store on the schema; the test fails, saying why, when PostgreSQL cannot
    /// be reached.
    async fn store(&self) -> (Arc<dyn Store>, At) {
        let url = database_url();
        let store = PostgresStore::connect_with(&url, PostgresOptions::new().schema(&self.0))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at DATABASE_URL (or the local default) is needed for this test \
                     and failed: {e}: start it (e.g. `service postgresql start`) or set \
                     DATABASE_URL"
                )
            });
        let at = At::Postgres {
            url,
            schema: self.0.clone(),
        };
        (Arc::new(store), at)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // A thread and runtime of its own: the test's runtime may be the one dropping this.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
                        .await
                        .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_users_on_postgres() {
    let schema = Schema::fresh("clients");
    let (store, at) = schema.store().await;
    let server = Server::start(store.clone()).await;
    clients_lifecycle(&at, &server).await;
    users_lifecycle(&at, store.as_ref()).await;
    users_end_what_they_hold(&at, store.as_ref()).await;
    server.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotation_on_postgres() {
    let schema = Schema::fresh("keys");
    let (store, at) = schema.store().await;
    let server = Server::start(store).await;
    signing_key_rotation(&at, &server).await;
    server.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_clients_on_postgres() {
    let schema = Schema::fresh("mtls");
    let (store, at) = schema.store().await;
    let server = Server::start_behind_proxy(store.clone()).await;
    let dir = temp_dir("mtls-postgres");
    mutual_tls_clients(&at, &server, store.as_ref(), &dir).await;
    server.running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The local PostgreSQL's own certificate (Debian's `ssl-cert-snakeoil`, `CN=localhost`).
const POSTGRES_CERTIFICATE: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_reached_over_verified_tls_with_store_ca_file() {
    assert!(
        Path::new(POSTGRES_CERTIFICATE).exists(),
        "{POSTGRES_CERTIFICATE} is missing: this test needs the local PostgreSQL's own \
         certificate (Debian's ssl-cert package, `ssl = on`)"
    );
    let schema = Schema::fresh("tls");
    // Made (and migrated) in the clear first, as the server would.
    let _ = schema.store().await;
    let url = database_url();
    let config: tokio_postgres::Config = url.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("test");
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let with_host = |host: &str| At::Postgres {
        url: format!("postgres://{user}{password}@{host}:{port}/{dbname}"),
        schema: schema.0.clone(),
    };
    let list = ["clients", "list", "--store-ca-file", POSTGRES_CERTIFICATE];
    // The certificate names localhost: verified, the command works.
    with_host("localhost").ok(&list).await;
    // Not 127.0.0.1: refused before any credential is sent, exit 3 (the store is out of
    // reach), saying why.
    let refused = with_host("127.0.0.1").run(&list).await;
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains("certificate"), "{refused:?}");
}
