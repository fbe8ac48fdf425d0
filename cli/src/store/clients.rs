//! `clients add|list|remove|rotate-secret`: the OAuth clients in a store.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use clap::{ArgGroup, Args, Subcommand};
use mcp_gatekeeper::{
    oauth::{OAuthClient, TlsClientAuth},
    store::{ClientRecord, hash_secret},
};
use serde_json::json;

use super::{Create, StoreArgs, block_on, parse_role, parse_scope, store_failure, table};
use crate::{
    keys::random_bytes,
    outcome::{Failure, Outcome, note, print},
};

/// Random bytes in a client secret: 256 bits, as the authorization server's own secrets.
const SECRET_BYTES: usize = 32;

#[derive(Subcommand)]
pub(crate) enum ClientsCommand {
    /// Register a client ahead of time (what `AuthorizationServer::client` does in code).
    ///
    /// A public client (the default) signs users in with the authorization code grant and
    /// PKCE; give it --redirect-uri. A --confidential client gets a fresh secret, printed once
    /// (only its SHA-256 is stored), and may use the client-credentials grant, acting as itself
    /// with --role. A mutual-TLS client (RFC 8705) is confidential without a secret: it
    /// authenticates with its TLS client certificate, named with --tls-subject-dn or a
    /// --tls-san-* option (a certificate from a CA the server trusts) or registered with
    /// --self-signed-certificate; its tokens are bound to that certificate. Without --grant the
    /// grants follow from the client's kind, as in code.
    /// Running servers on the store see the client at once. The tool does not know the
    /// server's scopes: give every scope the client may be granted with --scope.
    #[command(after_help = "\
Examples:
  mcp-gatekeeper clients add my-app --name 'My App' --redirect-uri https://my.app/cb \\
      --scope data:read --store sqlite:oauth-data/oauth.db
  OAUTH_STORE=postgres://gk@db/app mcp-gatekeeper clients add reporting --confidential \\
      --role viewer --scope data:read --json | jq -r .client_secret
  mcp-gatekeeper clients add reporting --tls-subject-dn 'CN=reporting,O=Example' \\
      --role viewer --scope data:read --store sqlite:oauth-data/oauth.db
  mcp-gatekeeper clients add batch --self-signed-certificate batch-cert.pem \\
      --scope data:read --store sqlite:oauth-data/oauth.db")]
    // Boxed: its many options would make every command as large (clippy's large_enum_variant).
    Add(Box<AddArgs>),
    /// List the clients: id, authentication, grants, role, scopes, origin, creation.
    ///
    /// Origin is `configured` (in code or by `clients add`), `registered` (Dynamic Client
    /// Registration) or `metadata` (a Client ID Metadata Document). Secrets are never shown.
    List(ListArgs),
    /// Remove a client with its authorization codes and refresh tokens.
    ///
    /// Access tokens already issued to it stay valid until they expire. A client configured in
    /// a server's code is stored again when that server starts. Exit 1 when there is no such
    /// client.
    Remove(IdArgs),
    /// Give a confidential client a new secret, printed once; the old one stops working.
    ///
    /// Only the new secret's SHA-256 is stored. Refresh tokens already issued to the client
    /// stay valid (it presents the new secret with them). Exit 1 when there is no such client.
    RotateSecret(RotateArgs),
}

/// How an added client authenticates: at most one of a secret or a certificate (none: public).
const AUTHENTICATION: &str = "authentication";

#[derive(Args)]
#[command(group(ArgGroup::new(AUTHENTICATION).multiple(false)))]
pub(crate) struct AddArgs {
    /// The client id (printable, without `:`).
    #[arg(value_name = "CLIENT_ID")]
    client_id: String,
    /// The name shown on the consent page [default: the id].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A redirect URI (https, or http on a loopback address); repeat for several.
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// A confidential client: generate a secret (printed once).
    #[arg(long, group = AUTHENTICATION)]
    confidential: bool,
    /// A mutual-TLS client (tls_client_auth) presenting a certificate from a CA the server
    /// trusts with this subject distinguished name (RFC 4514, e.g. `CN=reporting,O=Example`).
    #[arg(long, value_name = "DN", group = AUTHENTICATION)]
    tls_subject_dn: Option<String>,
    /// A mutual-TLS client (tls_client_auth) presenting a certificate from a CA the server
    /// trusts with this DNS name among its subject alternative names.
    #[arg(long, value_name = "NAME", group = AUTHENTICATION)]
    tls_san_dns: Option<String>,
    /// A mutual-TLS client (tls_client_auth) presenting a certificate from a CA the server
    /// trusts with this URI (a SPIFFE ID) among its subject alternative names.
    #[arg(long, value_name = "URI", group = AUTHENTICATION)]
    tls_san_uri: Option<String>,
    /// A mutual-TLS client (tls_client_auth) presenting a certificate from a CA the server
    /// trusts with this e-mail address among its subject alternative names.
    #[arg(long, value_name = "ADDRESS", group = AUTHENTICATION)]
    tls_san_email: Option<String>,
    /// A mutual-TLS client (self_signed_tls_client_auth) presenting one of the certificates in
    /// this PEM file, whoever issued them; only their SHA-256 thumbprints are stored. Repeat
    /// (or put several certificates in the file) to register the next certificate before the
    /// current one expires.
    #[arg(long, value_name = "FILE.pem", group = AUTHENTICATION)]
    self_signed_certificate: Vec<PathBuf>,
    /// The role of the client's own (client-credentials) tokens.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    role: Option<String>,
    /// A scope the client may be granted; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    scopes: Vec<String>,
    /// A grant type the client may use; repeat for several [default: authorization_code and
    /// refresh_token with a redirect URI, and client_credentials for a confidential client].
    #[arg(
        long = "grant",
        value_name = "GRANT",
        value_parser = ["authorization_code", "refresh_token", "client_credentials"]
    )]
    grants: Vec<String>,
    /// Print {"client_id", "client_secret", ...} as JSON, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    /// Print a JSON array instead of a table (with a mutual-TLS client's certificate name or
    /// thumbprints in `tls_client_auth`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub(crate) struct IdArgs {
    /// The client id.
    #[arg(value_name = "CLIENT_ID")]
    client_id: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub(crate) struct RotateArgs {
    /// The client id.
    #[arg(value_name = "CLIENT_ID")]
    client_id: String,
    /// Print {"client_id", "client_secret"} as JSON, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) fn run(command: ClientsCommand) -> Result<Outcome, Failure> {
    block_on(async move {
        match command {
            ClientsCommand::Add(args) => add(&args).await,
            ClientsCommand::List(args) => list(&args).await,
            ClientsCommand::Remove(args) => remove(&args).await,
            ClientsCommand::RotateSecret(args) => rotate_secret(&args).await,
        }
    })
}

/// A new client secret: 256 random bits, base64url.
fn new_secret() -> Result<String, Failure> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>()?))
}

/// The certificate a mutual-TLS client is to present, from the options; `None` for a client
/// with a secret or a public one.
fn tls_client_auth(args: &AddArgs) -> Result<Option<TlsClientAuth>, Failure> {
    // clap lets through at most one of these options (the `authentication` group).
    let named = args
        .tls_subject_dn
        .clone()
        .map(TlsClientAuth::SubjectDn)
        .or_else(|| args.tls_san_dns.clone().map(TlsClientAuth::SanDns))
        .or_else(|| args.tls_san_uri.clone().map(TlsClientAuth::SanUri))
        .or_else(|| args.tls_san_email.clone().map(TlsClientAuth::SanEmail));
    if named.is_some() || args.self_signed_certificate.is_empty() {
        return Ok(named);
    }
    let mut thumbprints = Vec::new();
    for path in &args.self_signed_certificate {
        if let TlsClientAuth::SelfSigned(more) = read_certificates(path)? {
            thumbprints.extend(more);
        }
    }
    // Duplicates and the limit on their number are the runtime's checks (`to_record`).
    Ok(Some(TlsClientAuth::SelfSigned(thumbprints)))
}

/// The certificates of the PEM file at `path`, as `self_signed_tls_client_auth` registers them.
/// A path that names no file, or a file without a certificate, is a usage error (exit 2), like
/// any other argument that cannot be used; a file that cannot be read (permissions, I/O) is
/// something outside the tool failing (exit 3).
fn read_certificates(path: &Path) -> Result<TlsClientAuth, Failure> {
    let pem = std::fs::read(path).map_err(|error| {
        let message = format!(
            "cannot read --self-signed-certificate `{}`: {error}",
            path.display()
        );
        match error.kind() {
            ErrorKind::NotFound | ErrorKind::IsADirectory => Failure::Usage(message),
            _ => Failure::Unable(message),
        }
    })?;
    TlsClientAuth::self_signed_pem(&pem).map_err(|error| {
        Failure::Usage(format!(
            "--self-signed-certificate `{}` holds no usable certificate ({error})",
            path.display()
        ))
    })
}

async fn add(args: &AddArgs) -> Result<Outcome, Failure> {
    let secret = if args.confidential {
        Some(new_secret()?)
    } else {
        None
    };
    let certificate = tls_client_auth(args)?;
    let mut client = match (&secret, certificate) {
        (Some(secret), _) => OAuthClient::confidential(&args.client_id, secret),
        (None, Some(certificate)) => OAuthClient::mutual_tls(&args.client_id, certificate),
        (None, None) => OAuthClient::public(&args.client_id),
    }
    .redirect_uris(&args.redirect_uris);
    if let Some(name) = &args.name {
        client = client.name(name);
    }
    if let Some(role) = &args.role {
        client = client.role(role);
    }
    if !args.scopes.is_empty() {
        client = client.scopes(&args.scopes);
    }
    if !args.grants.is_empty() {
        client = client.grant_types(&args.grants);
    }
    // The runtime's own checks, as a server makes them on a client configured in code; the
    // client's scopes stand in for the server's, which this tool does not know.
    let record = client
        .to_record(&args.scopes, super::unix_now())
        .map_err(|error| Failure::Usage(error.to_string()))?;
    let opened = args.store.open(Create::IfMissing).await?;
    let store = opened.store.as_ref();
    if store
        .get_client(&args.client_id)
        .await
        .map_err(store_failure)?
        .is_some()
    {
        return Err(Failure::Usage(format!(
            "client `{}` already exists in {} (remove it first, or give it a new secret with \
             `clients rotate-secret`)",
            args.client_id, opened.name
        )));
    }
    // Tokens of a client and of a user with one name would share a subject (RFC 9700 §4.15);
    // the server refuses that configuration in code too.
    if store
        .get_user(&args.client_id)
        .await
        .map_err(store_failure)?
        .is_some()
    {
        return Err(Failure::Usage(format!(
            "`{}` is a user's name: a client with that id would get tokens with the user's subject",
            args.client_id
        )));
    }
    store
        .put_client(record.clone())
        .await
        .map_err(store_failure)?;
    if args.json {
        let mut json = client_json(&record);
        json["client_secret"] = json!(secret);
        json["store"] = json!(opened.name);
        print(&json.to_string())?;
    } else {
        print(&format!(
            "client `{}` added to {}: {}",
            record.client_id,
            opened.name,
            describe(&record)
        ))?;
        if let Some(secret) = &secret {
            print("")?;
            print("Client secret (shown only this once; only its hash is stored):")?;
            print(secret)?;
        }
    }
    if record.allowed_scopes.is_empty() {
        note(
            "warning: the client may be granted no scope; add it again with --scope for each \
             scope it needs",
        );
    }
    Ok(Outcome::Success)
}

/// One line about a client: its kind (and certificate), grants, role and scopes.
fn describe(record: &ClientRecord) -> String {
    let kind = match &record.tls_client_auth {
        Some(auth) => format!(
            "confidential by mutual TLS ({}: {})",
            auth.auth_method(),
            describe_certificate(auth)
        ),
        None if record.is_confidential() => "confidential".to_owned(),
        None => "public".to_owned(),
    };
    let mut text = format!("{kind}, grants {}", or_none(&record.grant_types.join(" ")));
    if let Some(role) = &record.role {
        text.push_str(&format!(", role {role}"));
    }
    text.push_str(&format!(
        ", scopes {}",
        or_none(&record.allowed_scopes.join(" "))
    ));
    text
}

/// The certificate a mutual-TLS client must present, in words.
fn describe_certificate(auth: &TlsClientAuth) -> String {
    match auth {
        TlsClientAuth::SelfSigned(thumbprints) => format!(
            "certificate x5t#S256 {}",
            x5t_s256(thumbprints).join(" or ")
        ),
        other => match other.metadata_member() {
            Some((member, value)) => format!("{member} {value}"),
            None => format!("{other:?}"),
        },
    }
}

/// The certificate a mutual-TLS client must present, as JSON: the RFC 8705 metadata member of
/// its name (`{"tls_client_auth_subject_dn": "CN=..."}`), or the base64url SHA-256 thumbprints
/// of its registered certificates, as a bound token's `cnf` holds one (`{"x5t#S256": [...]}`).
fn certificate_json(auth: &TlsClientAuth) -> serde_json::Value {
    let mut member = serde_json::Map::new();
    match auth {
        TlsClientAuth::SelfSigned(thumbprints) => {
            member.insert("x5t#S256".to_owned(), json!(x5t_s256(thumbprints)));
        }
        other => {
            if let Some((name, value)) = other.metadata_member() {
                member.insert(name.to_owned(), json!(value));
            }
        }
    }
    serde_json::Value::Object(member)
}

/// Certificate thumbprints as RFC 8705 writes them (`x5t#S256`: base64url without padding).
fn x5t_s256(thumbprints: &[[u8; 32]]) -> Vec<String> {
    thumbprints
        .iter()
        .map(|t| URL_SAFE_NO_PAD.encode(t))
        .collect()
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "none" } else { text }
}

/// Where a client came from.
fn origin(record: &ClientRecord) -> &'static str {
    if record.metadata_url.is_some() {
        "metadata"
    } else if record.self_registered {
        "registered"
    } else {
        "configured"
    }
}

/// A client as JSON for scripts: everything but its secret's hash. A mutual-TLS client's
/// certificate is shown (`tls_client_auth`, null for others): its name or thumbprints are
/// public, and they are what an operator checks the registration against.
fn client_json(record: &ClientRecord) -> serde_json::Value {
    json!({
        "client_id": record.client_id,
        "name": record.name,
        "confidential": record.is_confidential(),
        "token_endpoint_auth_method": record.token_endpoint_auth_method,
        "tls_client_auth": record.tls_client_auth.as_ref().map(certificate_json),
        "redirect_uris": record.redirect_uris,
        "grant_types": record.grant_types,
        "scopes": record.allowed_scopes,
        "role": record.role,
        "origin": origin(record),
        "metadata_url": record.metadata_url,
        "created_at": record.created_at,
    })
}

async fn list(args: &ListArgs) -> Result<Outcome, Failure> {
    let opened = args.store.open(Create::Never).await?;
    let clients = opened.store.list_clients().await.map_err(store_failure)?;
    if args.json {
        let all: Vec<serde_json::Value> = clients.iter().map(client_json).collect();
        print(&serde_json::Value::Array(all).to_string())?;
        return Ok(Outcome::Success);
    }
    if clients.is_empty() {
        note(&format!("no clients in {}", opened.name));
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            vec![
                c.client_id.clone(),
                c.token_endpoint_auth_method.clone(),
                c.grant_types.join(","),
                c.role.clone().unwrap_or_default(),
                c.allowed_scopes.join(","),
                origin(c).to_owned(),
                super::timestamp(c.created_at),
                c.redirect_uris.join(","),
            ]
        })
        .collect();
    table::print_table(
        &[
            "CLIENT_ID",
            "AUTH",
            "GRANTS",
            "ROLE",
            "SCOPES",
            "ORIGIN",
            "CREATED",
            "REDIRECT_URIS",
        ],
        &rows,
    )?;
    Ok(Outcome::Success)
}

async fn remove(args: &IdArgs) -> Result<Outcome, Failure> {
    let opened = args.store.open(Create::Never).await?;
    if !opened
        .store
        .delete_client(&args.client_id)
        .await
        .map_err(store_failure)?
    {
        note(&format!(
            "no client `{}` in {}",
            args.client_id, opened.name
        ));
        return Ok(Outcome::ProblemFound);
    }
    print(&format!(
        "client `{}` removed from {}, with its authorization codes and refresh tokens",
        args.client_id, opened.name
    ))?;
    note("note: access tokens already issued to it stay valid until they expire");
    Ok(Outcome::Success)
}

async fn rotate_secret(args: &RotateArgs) -> Result<Outcome, Failure> {
    let opened = args.store.open(Create::Never).await?;
    let store = opened.store.as_ref();
    let Some(mut record) = store
        .get_client(&args.client_id)
        .await
        .map_err(store_failure)?
    else {
        note(&format!(
            "no client `{}` in {}",
            args.client_id, opened.name
        ));
        return Ok(Outcome::ProblemFound);
    };
    if record.tls_client_auth.is_some() {
        return Err(Failure::Usage(format!(
            "client `{}` authenticates with a TLS client certificate, not a secret",
            args.client_id
        )));
    }
    if record.secret_hash.is_none() {
        return Err(Failure::Usage(format!(
            "client `{}` is public and has no secret (remove it and add it again with \
             --confidential to make it confidential)",
            args.client_id
        )));
    }
    let secret = new_secret()?;
    record.secret_hash = Some(hash_secret(&secret));
    // Replacing the record keeps the client's codes and refresh tokens (`Store::put_client`).
    store.put_client(record).await.map_err(store_failure)?;
    if args.json {
        let json = json!({ "client_id": args.client_id, "client_secret": secret });
        print(&json.to_string())?;
    } else {
        print(&format!(
            "client `{}` in {} has a new secret; the old one no longer works",
            args.client_id, opened.name
        ))?;
        print("")?;
        print("Client secret (shown only this once; only its hash is stored):")?;
        print(&secret)?;
    }
    Ok(Outcome::Success)
}
