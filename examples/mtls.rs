//! The RBAC data store over HTTPS, with client certificates as the callers (mutual TLS).
//!
//! The tools and rates of the `rbac` example (`read-data` viewer, `write-data` editor,
//! `delete-data` and `manage-users` admin); a client authenticates with nothing but its
//! certificate, which must be issued by one of the trusted client CAs. Roles come from rules
//! matched against the certificate's names; a certificate no rule names gets no role, so every
//! tool refuses it.
//!
//! ```text
//! cargo run --example mtls
//! ```
//!
//! Configuration:
//! - `TLS_CERT`, `TLS_KEY`: the server's certificate chain and private key (PEM);
//! - `TLS_CLIENT_CA`: the PEM bundle of the CAs whose client certificates are trusted;
//! - `TLS_CLIENT_CRL` (optional): a PEM CRL of those CAs, refusing the certificates it revokes;
//! - `MTLS_ROLES`: comma-separated `PATTERN=ROLE` rules, matched against the certificate's SAN
//!   URIs, SAN DNS names and subject CN (a pattern ending in `*` is a prefix), for example
//!   `spiffe://example.org/ops/*=admin,reporting.example.org=viewer`.
//!
//! When the three PEM variables are unset it generates a demo CA, a server certificate for
//! `localhost` and `127.0.0.1` and one client certificate per role into a directory it prints,
//! and prints a ready `curl` line per role. The files are replaced on the next run and are
//! reloaded while the server runs when they change (as are the configured ones).
//!
//! And, as in every example: `BIND` (default `127.0.0.1:3443`; port 0 picks a free port),
//! `STATELESS=1` (plain JSON replies, no sessions), `MCP_RESOURCE` (the endpoint's URL as
//! clients reach it; its host is answered to besides the loopback names), `METRICS_BIND`
//! (Prometheus metrics at `/metrics` on that address), `OTEL_TRACES_EXPORTER=console` (the
//! gatekeeper's OpenTelemetry spans printed on stdout).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use mcp_gatekeeper::{ConfigError, Tls, auth::ClientCertificates, prelude::*};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[path = "rbac.rs"]
#[allow(dead_code)]
pub mod rbac;

use rbac::DataTools;

/// The roles of the `rbac` example, least privileged first.
pub const ROLES: [&str; 3] = ["viewer", "editor", "admin"];

/// How the example is configured.
pub struct MtlsConfig {
    /// The server's certificate, key and trusted client CAs.
    pub tls: Tls,
    /// `MTLS_ROLES`: `PATTERN=ROLE,...`.
    pub roles: String,
    /// Serve without sessions.
    pub stateless: bool,
    /// The endpoint's URL as clients reach it.
    pub resource: String,
}

/// The example server, ready to serve.
///
/// # Errors
/// When a role rule is malformed or `MCP_RESOURCE` is not a URL.
pub fn gatekeeper(config: MtlsConfig) -> Result<Gatekeeper<DataTools>, ConfigError> {
    let certificates = ClientCertificates::new().parse_roles(&config.roles)?;
    let mut server = Gatekeeper::new(DataTools::default())
        .server_info("mtls-data-store", env!("CARGO_PKG_VERSION"))
        .authenticate(certificates)
        .tls(config.tls);
    if let Some(hosts) = rbac::allowed_hosts(&config.resource)? {
        server = server.allowed_hosts(hosts);
    }
    if config.stateless {
        server = server.stateless();
    }
    Ok(server)
}

/// The SAN URI of the demo client certificate of `role`.
pub fn demo_identity(role: &str) -> String {
    format!("spiffe://demo.mcp-gatekeeper.local/{role}")
}

/// Files written by [`generate_demo`].
pub struct DemoFiles {
    /// The directory holding them.
    pub dir: PathBuf,
    /// The demo CA's certificate: the server's issuer and the trusted client CA.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// `(role, certificate, key)` of each role's client.
    pub clients: Vec<(String, PathBuf, PathBuf)>,
    /// The `MTLS_ROLES` giving each demo client its role.
    pub roles: String,
}

/// Generates a demo CA, a server certificate for `localhost` and `127.0.0.1`, and one client
/// certificate per role (SAN URI [`demo_identity`]), valid for 30 days, into `dir`.
///
/// # Errors
/// When a file cannot be written (or, never in practice, a key cannot be generated).
pub fn generate_demo(dir: &Path) -> Result<DemoFiles, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        // An hour back: a client whose clock is a little behind still accepts them.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "mcp-gatekeeper demo CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let write = |name: &str, text: &str| -> std::io::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let ca_path = write("ca.pem", &ca_cert.pem())?;

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    server.distinguished_name = rcgen::DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server);
    let server_cert = server.signed_by(&server_key, &issuer)?;
    let server_cert_path = write("server.pem", &server_cert.pem())?;
    let server_key_path = write("server.key", &server_key.serialize_pem())?;

    let mut clients = Vec::new();
    for role in ROLES {
        let key = KeyPair::generate()?;
        let mut client = CertificateParams::default();
        client.distinguished_name = rcgen::DistinguishedName::new();
        client
            .distinguished_name
            .push(DnType::CommonName, format!("demo {role}"));
        client.subject_alt_names = vec![SanType::URI(demo_identity(role).try_into()?)];
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut client);
        let cert = client.signed_by(&key, &issuer)?;
        clients.push((
            role.to_owned(),
            write(&format!("{role}.pem"), &cert.pem())?,
            write(&format!("{role}.key"), &key.serialize_pem())?,
        ));
    }
    let roles = ROLES
        .iter()
        .map(|role| format!("{}={role}", demo_identity(role)))
        .collect::<Vec<_>>()
        .join(",");
    Ok(DemoFiles {
        dir: dir.to_owned(),
        ca: ca_path,
        server_cert: server_cert_path,
        server_key: server_key_path,
        clients,
        roles,
    })
}

/// `path` quoted for a POSIX shell.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// What the environment says, or the demo files to generate.
enum Source {
    Configured {
        cert: String,
        key: String,
        client_ca: String,
        crl: Option<String>,
        roles: String,
    },
    Demo,
}

fn source_from_env() -> Result<Source, String> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let names = ["TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA"];
    let values: Vec<Option<String>> = names.iter().map(|name| var(name)).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    if missing.len() == names.len() {
        return Ok(Source::Demo);
    }
    if !missing.is_empty() {
        return Err(format!(
            "{} set but {} not: set all three of TLS_CERT, TLS_KEY and TLS_CLIENT_CA (PEM files), \
             or none for a generated demo CA",
            names
                .iter()
                .filter(|n| !missing.contains(n))
                .copied()
                .collect::<Vec<_>>()
                .join(" and "),
            missing.join(" and ")
        ));
    }
    let mut values = values.into_iter().flatten();
    let (Some(cert), Some(key), Some(client_ca)) = (values.next(), values.next(), values.next())
    else {
        unreachable!("all three are set");
    };
    let roles = var("MTLS_ROLES").ok_or(
        "MTLS_ROLES is not set: without rules no certificate gets a role and every tool refuses \
         every caller; set it to PATTERN=ROLE rules, e.g. \
         MTLS_ROLES='spiffe://example.org/ops/*=admin,reporting.example.org=viewer'",
    )?;
    Ok(Source::Configured {
        cert,
        key,
        client_ca,
        crl: var("TLS_CLIENT_CRL"),
        roles,
    })
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Read before binding: a wrong variable is said at once, without holding the port.
    let source = source_from_env()?;
    let env = rbac::SharedEnv::from_env_with("127.0.0.1:3443", "https").await?;
    let (tls, roles, demo) = match source {
        Source::Configured {
            cert,
            key,
            client_ca,
            crl,
            roles,
        } => {
            let mut tls = Tls::from_pem_files(cert, key).client_ca_file(client_ca);
            if let Some(crl) = crl {
                tls = tls.crl_file(crl);
            }
            (tls, roles, None)
        }
        Source::Demo => {
            let port = env.listener.local_addr()?.port();
            let dir = std::env::temp_dir().join(format!("mcp-gatekeeper-mtls-{port}"));
            let demo = generate_demo(&dir)?;
            let tls =
                Tls::from_pem_files(&demo.server_cert, &demo.server_key).client_ca_file(&demo.ca);
            (tls, demo.roles.clone(), Some(demo))
        }
    };
    let config = MtlsConfig {
        tls,
        roles: roles.clone(),
        stateless: env.stateless,
        resource: env.resource.clone(),
    };
    let local = env.listener.local_addr()?;
    let running = env
        .with_metrics(gatekeeper(config)?)
        .serve_on(env.listener)?;
    let url = format!("{}/mcp", env.origin);
    println!("mtls: MCP endpoint {url} (HTTPS; client certificates required)");
    println!("certificate roles:      {roles}");
    if let Some(demo) = &demo {
        println!(
            "demo mode: generated a CA, a server certificate and one client certificate per role in {}",
            demo.dir.display()
        );
        println!("\ntry it from another shell (each line works alone):");
        let (key, _) = rbac::WELCOME;
        let ca = shell_quote(&demo.ca);
        for (role, cert, key_path) in &demo.clients {
            let options = format!(
                "--cacert {ca} --cert {} --key {}",
                shell_quote(cert),
                shell_quote(key_path)
            );
            let (tool, arguments) = match role.as_str() {
                "viewer" => ("read-data", serde_json::json!({ "key": key })),
                "editor" => (
                    "write-data",
                    serde_json::json!({ "key": "b", "value": "written with a certificate" }),
                ),
                _ => ("delete-data", serde_json::json!({ "key": "b" })),
            };
            println!("  # {role} ({}): {tool}", demo_identity(role));
            println!(
                "  {}",
                rbac::curl_tool_call_with(&options, &url, tool, &arguments)
            );
        }
        println!(
            "  # without a client certificate the TLS handshake is refused:\n  curl -sS --cacert {ca} {url}"
        );
    }
    println!("\nlistening on {local}");
    rbac::wait_until_signal(running).await?;
    Ok(())
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = match rbac::init_logging() {
        Ok(telemetry) => telemetry,
        Err(error) => return rbac::exit_code("mtls", Err(error.into())),
    };
    rbac::exit_code("mtls", run().await)
}
