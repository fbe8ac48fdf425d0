//! Dynamic Client Registration (RFC 7591): `POST /oauth/register`, and the client-metadata
//! rules it shares with Client ID Metadata Documents.
//!
//! A self-registered client is an authorization-code client only (public, confidential with a
//! generated secret, or confidential by its TLS client certificate, RFC 8705 §2, when the server
//! sees client certificates): `client_credentials` would hand tokens without a user to anyone
//! who can reach the endpoint. Registrations are limited per address, per network prefix and overall
//! ([`limits`]), so a flood from many addresses neither fills the store nor, short of many
//! networks, locks everyone else out; unused self-registered clients are purged after a day
//! ([`Store::purge_expired`](crate::store::Store::purge_expired)).

pub(super) mod limits;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    body::Bytes,
    extract::{ConnectInfo, State},
    response::{IntoResponse, Response},
    routing::post,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use self::limits::RegistrationLimits;
use super::{
    AsState,
    error::{OAuthError, no_store, no_store_json},
    grants, paths, random_id, random_secret, redirect, unix_now,
};
use crate::{
    AuditEvent, AuditRecord, Outcome,
    store::{ClientRecord, TlsClientAuth, hash_secret},
};

/// Most redirect URIs one client may register.
const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI accepted, in bytes.
const MAX_REDIRECT_URI_BYTES: usize = 2000;
/// Longest `client_name`, in characters (it is shown on the consent page).
const MAX_NAME_CHARS: usize = 200;
/// The name stored for a client that sends none.
const UNNAMED: &str = "Unnamed client";

/// The auth methods a registering client may ask for.
mod auth_methods {
    /// A public client: PKCE only.
    pub(crate) const NONE: &str = "none";
    /// The secret in HTTP Basic (RFC 7591's default).
    pub(crate) const BASIC: &str = "client_secret_basic";
    /// The secret as form parameters.
    pub(crate) const POST: &str = "client_secret_post";
    /// A certificate from a trusted CA with a registered name (RFC 8705 §2.1).
    pub(crate) const TLS: &str = "tls_client_auth";
    /// A registered (self-signed) certificate (RFC 8705 §2.2).
    pub(crate) const SELF_SIGNED_TLS: &str = "self_signed_tls_client_auth";

    /// The methods a client may register with.
    #[cfg(feature = "mtls")]
    pub(crate) const SUPPORTED: [&str; 5] = [NONE, BASIC, POST, TLS, SELF_SIGNED_TLS];
    /// The methods a client may register with (no certificate reaches a build without `mtls`).
    #[cfg(not(feature = "mtls"))]
    pub(crate) const SUPPORTED: [&str; 3] = [NONE, BASIC, POST];
}

/// The RFC 8705 §2.1.2 members naming a `tls_client_auth` client's certificate.
const TLS_CLIENT_AUTH_MEMBERS: [&str; 4] = [
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_email",
];

/// The registration route. It answers 404 when registration is turned off, as if it were not
/// mounted (the metadata then has no `registration_endpoint`).
pub(super) fn routes() -> Router<Arc<AsState>> {
    let limiter = Arc::new(RegistrationLimits::new(limits::Config::default()));
    Router::new().route(
        paths::REGISTER,
        post(
            move |State(state): State<Arc<AsState>>,
                  connect: Option<Extension<ConnectInfo<SocketAddr>>>,
                  headers: HeaderMap,
                  body: Bytes| {
                let limiter = limiter.clone();
                async move {
                    if !state.dynamic_registration {
                        return StatusCode::NOT_FOUND.into_response();
                    }
                    let remote = connect.map(|Extension(ConnectInfo(addr))| addr);
                    register(&state, &limiter, remote, &headers, &body).await
                }
            },
        ),
    )
}

/// Handles one registration request: validate, count, store, answer 201.
async fn register(
    state: &AsState,
    limiter: &RegistrationLimits,
    remote: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let request = match parse_request(state, headers, body) {
        Ok(request) => request,
        Err(error) => {
            audit(state, Outcome::Denied, None, remote, Some(error.code()));
            return error.into_response();
        }
    };
    if let Err(wait) = limiter.try_register(remote.map(|a| a.ip())) {
        let mut record = AuditRecord::new(AuditEvent::Registration, Outcome::RateLimited);
        record.reason = Some("registration_limit");
        record.remote_addr = remote;
        record.retry_after_seconds = Some(wait.as_secs().max(1));
        state.audit.record(&record);
        return too_many_registrations(wait);
    }
    let now = unix_now();
    let secret = [auth_methods::BASIC, auth_methods::POST]
        .contains(&request.auth_method.as_str())
        .then(random_secret);
    let record = ClientRecord {
        client_id: random_id(),
        secret_hash: secret.as_deref().map(hash_secret),
        name: request
            .metadata
            .client_name
            .clone()
            .unwrap_or_else(|| UNNAMED.to_owned()),
        redirect_uris: request.metadata.redirect_uris.clone(),
        grant_types: request.metadata.grant_types.clone(),
        allowed_scopes: request.allowed_scopes.clone(),
        role: None,
        token_endpoint_auth_method: request.auth_method.clone(),
        tls_client_auth: request.metadata.tls_client_auth.clone(),
        metadata_url: None,
        self_registered: true,
        created_at: now,
    };
    if let Err(error) = state.store.put_client(record.clone()).await {
        return OAuthError::from(error).into_response();
    }
    audit(
        state,
        Outcome::Allowed,
        Some(&record.client_id),
        remote,
        None,
    );
    no_store_json(
        StatusCode::CREATED,
        response_body(&record, &request, secret.as_deref()),
    )
}

/// The 201 body: the registered metadata (RFC 7591 §3.2.1). The secret appears here once and is
/// never retrievable again (only its hash is stored).
fn response_body(record: &ClientRecord, request: &Request, secret: Option<&str>) -> Value {
    let mut body = json!({
        "client_id": record.client_id,
        "client_id_issued_at": record.created_at,
        "client_name": record.name,
        "redirect_uris": record.redirect_uris,
        "grant_types": record.grant_types,
        "response_types": request.metadata.response_types,
        "token_endpoint_auth_method": record.token_endpoint_auth_method,
    });
    if !record.allowed_scopes.is_empty() {
        body["scope"] = json!(record.allowed_scopes.join(" "));
    }
    if let Some(secret) = secret {
        body["client_secret"] = json!(secret);
        // 0: the secret does not expire (RFC 7591 §3.2.1).
        body["client_secret_expires_at"] = json!(0);
    }
    if let Some(application_type) = &request.metadata.application_type {
        body["application_type"] = json!(application_type);
    }
    if let Some((member, value)) = record
        .tls_client_auth
        .as_ref()
        .and_then(TlsClientAuth::metadata_member)
    {
        body[member] = json!(value);
    }
    if let Some(jwks) = &request.jwks {
        body["jwks"] = jwks.clone();
    }
    body
}

/// Audits a registration (never with the secret).
fn audit(
    state: &AsState,
    outcome: Outcome,
    client_id: Option<&str>,
    remote: Option<SocketAddr>,
    reason: Option<&str>,
) {
    let mut record = AuditRecord::new(AuditEvent::Registration, outcome);
    record.method = Some("dynamic_registration");
    record.client_id = client_id;
    record.remote_addr = remote;
    record.reason = reason;
    state.audit.record(&record);
}

/// 429 with `Retry-After`. RFC 7591 has no error code for this; `temporarily_unavailable`
/// (RFC 6749) tells the client to come back later.
fn too_many_registrations(wait: Duration) -> Response {
    let body = json!({
        "error": "temporarily_unavailable",
        "error_description": "too many client registrations; try again later",
    });
    let mut response =
        (StatusCode::TOO_MANY_REQUESTS, no_store(), axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(wait.as_secs().max(1)),
    );
    response
}

/// A validated registration request.
struct Request {
    /// The validated metadata.
    metadata: ClientMetadata,
    /// The `token_endpoint_auth_method`, defaulted.
    auth_method: String,
    /// The requested scopes, or every server scope.
    allowed_scopes: Vec<String>,
    /// The `jwks` a `self_signed_tls_client_auth` client registered its certificates in,
    /// echoed in the answer (only their thumbprints are stored).
    jwks: Option<Value>,
}

/// Parses and validates the body under the server's registration policy.
fn parse_request(state: &AsState, headers: &HeaderMap, body: &[u8]) -> Result<Request, OAuthError> {
    if !is_json_content_type(headers) {
        return Err(OAuthError::invalid_client_metadata(
            "the registration request must be application/json",
        ));
    }
    let document: Value = serde_json::from_slice(body).map_err(|_| {
        OAuthError::invalid_client_metadata("the registration request is not valid JSON")
    })?;
    let metadata = ClientMetadata::parse(&document).map_err(MetadataError::into_oauth)?;
    // RFC 7591 §2: the default is client_secret_basic.
    let auth_method = metadata
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| auth_methods::BASIC.to_owned());
    if let Some(auth) = &metadata.tls_client_auth {
        // Registering a method whose certificates never reach the token endpoint would make a
        // client that can never authenticate (the metadata does not offer it either).
        let seen = &state.client_certificates;
        let reaches = match auth {
            TlsClientAuth::SelfSigned(_) => seen.self_signed(),
            _ => seen.ca_issued(),
        };
        if !reaches {
            return Err(OAuthError::invalid_client_metadata(format!(
                "token_endpoint_auth_method `{}` is not available: no such client certificate \
                 reaches this server",
                auth.auth_method()
            )));
        }
    }
    let jwks = matches!(metadata.tls_client_auth, Some(TlsClientAuth::SelfSigned(_)))
        .then(|| document.get("jwks").cloned())
        .flatten();
    let allowed_scopes = match &metadata.scope {
        Some(requested) => {
            if let Some(unknown) = requested.iter().find(|s| !state.scopes.contains(s)) {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "scope `{unknown}` is not one this server grants"
                )));
            }
            requested.clone()
        }
        None => state.scopes.clone(),
    };
    Ok(Request {
        metadata,
        auth_method,
        allowed_scopes,
        jwks,
    })
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub(super) fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_media_type)
}

/// Whether a `Content-Type` value names JSON: `application/json` or `application/*+json`.
pub(super) fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Why client metadata was refused, mapped to an RFC 7591 error code by registration and to an
/// audit reason by the metadata-document fetcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MetadataError {
    /// `invalid_redirect_uri`.
    RedirectUri(String),
    /// `invalid_client_metadata`.
    Metadata(String),
}

impl MetadataError {
    /// The RFC 7591 error answer.
    fn into_oauth(self) -> OAuthError {
        match self {
            MetadataError::RedirectUri(why) => OAuthError::invalid_redirect_uri(why),
            MetadataError::Metadata(why) => OAuthError::invalid_client_metadata(why),
        }
    }

    /// The human-readable reason (for the audit of a metadata document).
    #[cfg(feature = "http-client")]
    pub(super) fn description(&self) -> &str {
        match self {
            MetadataError::RedirectUri(why) | MetadataError::Metadata(why) => why,
        }
    }
}

/// Client metadata (RFC 7591 §2) as this server accepts it, from a registration request or a
/// Client ID Metadata Document. Fields the server does not use are ignored (RFC 7591 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientMetadata {
    /// Non-empty, each registrable (https, or http on loopback), at most 10, no duplicates.
    pub(super) redirect_uris: Vec<String>,
    /// ⊆ {authorization_code, refresh_token}, containing authorization_code; default
    /// `["authorization_code"]`.
    pub(super) grant_types: Vec<String>,
    /// Only `code`; default `["code"]`.
    pub(super) response_types: Vec<String>,
    /// `none`, `client_secret_basic`, `client_secret_post` or (with the `mtls` feature)
    /// `tls_client_auth` or `self_signed_tls_client_auth`, when given.
    pub(super) token_endpoint_auth_method: Option<String>,
    /// The certificate a mutual-TLS client authenticates with: exactly when the method is one
    /// of RFC 8705's.
    pub(super) tls_client_auth: Option<TlsClientAuth>,
    /// At most 200 characters, no control characters, when given.
    pub(super) client_name: Option<String>,
    /// The requested scopes (syntactically valid, deduplicated), when given.
    pub(super) scope: Option<Vec<String>>,
    /// `native` or `web`, when given.
    pub(super) application_type: Option<String>,
}

impl ClientMetadata {
    /// Validates a metadata object.
    pub(super) fn parse(document: &Value) -> Result<Self, MetadataError> {
        let Some(object) = document.as_object() else {
            return Err(invalid("client metadata must be a JSON object"));
        };
        let redirect_uris = redirect_uris(object)?;
        let grant_types = string_list(object, "grant_types")?
            .unwrap_or_else(|| vec![grants::AUTHORIZATION_CODE.to_owned()]);
        check_grant_types(&grant_types)?;
        let response_types =
            string_list(object, "response_types")?.unwrap_or_else(|| vec!["code".to_owned()]);
        if response_types.is_empty() || response_types.iter().any(|t| t != "code") {
            return Err(invalid("response_types: only `code` is supported"));
        }
        let token_endpoint_auth_method = string(object, "token_endpoint_auth_method")?;
        if let Some(method) = &token_endpoint_auth_method
            && !auth_methods::SUPPORTED.contains(&method.as_str())
        {
            return Err(invalid(format!(
                "token_endpoint_auth_method: supported are {}",
                auth_methods::SUPPORTED.join(", ")
            )));
        }
        let tls_client_auth = tls_client_auth(object, token_endpoint_auth_method.as_deref())?;
        let client_name = string(object, "client_name")?;
        if let Some(name) = &client_name {
            check_client_name(name)?;
        }
        let scope = match string(object, "scope")? {
            Some(scope) => Some(scopes(&scope)?),
            None => None,
        };
        let application_type = string(object, "application_type")?;
        if let Some(kind) = &application_type
            && kind != "native"
            && kind != "web"
        {
            return Err(invalid("application_type must be `native` or `web`"));
        }
        Ok(Self {
            redirect_uris,
            grant_types: dedup(grant_types),
            response_types: dedup(response_types),
            token_endpoint_auth_method,
            tls_client_auth,
            client_name,
            scope,
            application_type,
        })
    }
}

/// The certificate a mutual-TLS client registers: for `tls_client_auth` exactly one of the
/// `tls_client_auth_*` members (RFC 8705 §2.1.2), checked and stored as the token endpoint
/// compares it; for `self_signed_tls_client_auth` its certificates, in `jwks` (the first `x5c`
/// entry of each key, RFC 8705 §2.2.2; a `jwks_uri` is not fetched). Those members are refused
/// with any other method, which would silently ignore them.
fn tls_client_auth(
    object: &Map<String, Value>,
    method: Option<&str>,
) -> Result<Option<TlsClientAuth>, MetadataError> {
    let mut named = Vec::new();
    for member in TLS_CLIENT_AUTH_MEMBERS {
        if let Some(value) = string(object, member)? {
            named.push((member, value));
        }
    }
    let auth = match method {
        Some(auth_methods::TLS) => {
            let [(member, value)] = named.as_slice() else {
                return Err(invalid(format!(
                    "tls_client_auth needs exactly one of {}",
                    TLS_CLIENT_AUTH_MEMBERS.join(", ")
                )));
            };
            let value = value.clone();
            match *member {
                "tls_client_auth_subject_dn" => TlsClientAuth::SubjectDn(value),
                "tls_client_auth_san_dns" => TlsClientAuth::SanDns(value),
                "tls_client_auth_san_uri" => TlsClientAuth::SanUri(value),
                _ => TlsClientAuth::SanEmail(value),
            }
        }
        Some(auth_methods::SELF_SIGNED_TLS) => {
            if !named.is_empty() {
                return Err(invalid(
                    "tls_client_auth_* members are for token_endpoint_auth_method tls_client_auth",
                ));
            }
            if !matches!(object.get("jwks_uri"), None | Some(Value::Null)) {
                return Err(invalid(
                    "jwks_uri is not fetched: register the certificates in jwks (x5c)",
                ));
            }
            TlsClientAuth::SelfSigned(registered_certificates(object)?)
        }
        _ if named.is_empty() => return Ok(None),
        _ => {
            return Err(invalid(
                "tls_client_auth_* members are for token_endpoint_auth_method tls_client_auth",
            ));
        }
    };
    super::clients::checked_tls_client_auth(&auth)
        .map(Some)
        .map_err(invalid)
}

/// The SHA-256 thumbprints of the certificates in `jwks`: the first `x5c` entry (base64 DER,
/// RFC 7517 §4.7) of each key, each a readable X.509 certificate.
#[cfg(feature = "mtls")]
fn registered_certificates(object: &Map<String, Value>) -> Result<Vec<[u8; 32]>, MetadataError> {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use sha2::{Digest as _, Sha256};
    use x509_parser::prelude::FromDer as _;

    let needed = || {
        invalid("self_signed_tls_client_auth needs jwks: keys, each with its certificate in x5c")
    };
    let keys = object
        .get("jwks")
        .and_then(|jwks| jwks.get("keys"))
        .and_then(Value::as_array)
        .filter(|keys| !keys.is_empty())
        .ok_or_else(needed)?;
    if keys.len() > super::clients::MAX_CLIENT_CERTIFICATES {
        return Err(invalid(format!(
            "at most {} certificates may be registered",
            super::clients::MAX_CLIENT_CERTIFICATES
        )));
    }
    let mut thumbprints = Vec::with_capacity(keys.len());
    for key in keys {
        let encoded = key
            .get("x5c")
            .and_then(Value::as_array)
            .and_then(|chain| chain.first())
            .and_then(Value::as_str)
            .ok_or_else(needed)?;
        let der = STANDARD
            .decode(encoded)
            .map_err(|_| invalid("an x5c entry is not base64 (RFC 7517 §4.7)"))?;
        if !matches!(
            x509_parser::certificate::X509Certificate::from_der(&der),
            Ok(([], _))
        ) {
            return Err(invalid("an x5c entry is not an X.509 certificate"));
        }
        thumbprints.push(Sha256::digest(&der).into());
    }
    Ok(thumbprints)
}

/// Without the `mtls` feature `self_signed_tls_client_auth` is refused before this is asked.
#[cfg(not(feature = "mtls"))]
fn registered_certificates(_object: &Map<String, Value>) -> Result<Vec<[u8; 32]>, MetadataError> {
    Err(invalid("client certificates need the mtls feature"))
}

/// An `invalid_client_metadata` refusal.
fn invalid(why: impl Into<String>) -> MetadataError {
    MetadataError::Metadata(why.into())
}

/// An optional string member (`null` counts as absent).
fn string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, MetadataError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{key} must be a string"))),
    }
}

/// An optional array-of-strings member (`null` counts as absent).
fn string_list(
    object: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, MetadataError> {
    let items = match object.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid(format!("{key} must be an array of strings"))),
    };
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| invalid(format!("{key} must be an array of strings")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The required `redirect_uris`: present, 1 to 10 of them, each registrable and not too long.
fn redirect_uris(object: &Map<String, Value>) -> Result<Vec<String>, MetadataError> {
    let Some(uris) = string_list(object, "redirect_uris")? else {
        return Err(invalid("redirect_uris is required"));
    };
    if uris.is_empty() {
        return Err(MetadataError::RedirectUri(
            "at least one redirect URI is required".into(),
        ));
    }
    let uris = dedup(uris);
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(MetadataError::RedirectUri(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs may be registered"
        )));
    }
    for uri in &uris {
        if uri.len() > MAX_REDIRECT_URI_BYTES {
            return Err(MetadataError::RedirectUri(format!(
                "a redirect URI is at most {MAX_REDIRECT_URI_BYTES} bytes"
            )));
        }
        redirect::check_registrable(uri).map_err(MetadataError::RedirectUri)?;
    }
    Ok(uris)
}

/// Grant types a self-introduced client may have: the authorization-code grant and refresh.
fn check_grant_types(grant_types: &[String]) -> Result<(), MetadataError> {
    for grant in grant_types {
        match grant.as_str() {
            grants::AUTHORIZATION_CODE | grants::REFRESH_TOKEN => {}
            grants::CLIENT_CREDENTIALS => {
                // Tokens without a user for anyone who can register: never.
                return Err(invalid(
                    "client_credentials is not available to self-registered clients",
                ));
            }
            _ => {
                return Err(invalid(
                    "grant_types: supported are authorization_code and refresh_token",
                ));
            }
        }
    }
    if !grant_types.iter().any(|g| g == grants::AUTHORIZATION_CODE) {
        return Err(invalid("grant_types must include authorization_code"));
    }
    Ok(())
}

/// A name fit for the consent page and the logs.
fn check_client_name(name: &str) -> Result<(), MetadataError> {
    if name.trim().is_empty() {
        return Err(invalid("client_name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "client_name is at most {MAX_NAME_CHARS} characters"
        )));
    }
    // Control characters would let a name forge lines in logs; bidirectional overrides would
    // let it display as something else on the consent page.
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if name.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(invalid("client_name contains control characters"));
    }
    Ok(())
}

/// Splits a `scope` value into scope tokens (RFC 6749 §3.3 syntax), deduplicated.
fn scopes(scope: &str) -> Result<Vec<String>, MetadataError> {
    let tokens: Vec<String> = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let valid_char = |c: char| c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c);
    if tokens.iter().any(|t| !t.chars().all(valid_char)) {
        return Err(invalid(
            "scope contains characters a scope token cannot have",
        ));
    }
    Ok(dedup(tokens))
}

/// Removes repeated entries, keeping the first occurrence's position.
fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<ClientMetadata, MetadataError> {
        ClientMetadata::parse(&value)
    }

    #[test]
    fn defaults_follow_rfc_7591() {
        let m = parse(json!({ "redirect_uris": ["https://app.example/cb"] })).unwrap();
        assert_eq!(m.grant_types, ["authorization_code"]);
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(m.token_endpoint_auth_method, None);
        assert_eq!(m.client_name, None);
        assert_eq!(m.scope, None);
    }

    #[test]
    fn metadata_is_validated() {
        let uri = json!(["https://app.example/cb"]);
        let redirect_errors = [
            json!({ "redirect_uris": ["http://evil.example/cb"] }),
            json!({ "redirect_uris": ["javascript:alert(1)"] }),
            json!({ "redirect_uris": ["com.example.app:/cb"] }),
            json!({ "redirect_uris": [] }),
            json!({ "redirect_uris": [format!("https://a.example/{}", "x".repeat(2000))] }),
            json!({ "redirect_uris": (0..11).map(|i| format!("https://a.example/{i}")).collect::<Vec<_>>() }),
        ];
        for bad in redirect_errors {
            assert!(
                matches!(parse(bad.clone()), Err(MetadataError::RedirectUri(_))),
                "{bad}"
            );
        }
        let metadata_errors = [
            json!([]),
            json!({}),
            json!({ "redirect_uris": "https://app.example/cb" }),
            json!({ "redirect_uris": [1] }),
            json!({ "redirect_uris": uri, "grant_types": ["client_credentials"] }),
            json!({ "redirect_uris": uri, "grant_types": ["authorization_code", "client_credentials"] }),
            json!({ "redirect_uris": uri, "grant_types": ["password"] }),
            json!({ "redirect_uris": uri, "grant_types": ["refresh_token"] }),
            json!({ "redirect_uris": uri, "grant_types": "authorization_code" }),
            json!({ "redirect_uris": uri, "response_types": ["token"] }),
            json!({ "redirect_uris": uri, "token_endpoint_auth_method": "private_key_jwt" }),
            json!({ "redirect_uris": uri, "client_name": "x".repeat(201) }),
            json!({ "redirect_uris": uri, "client_name": "evil\nline" }),
            json!({ "redirect_uris": uri, "client_name": "ppa\u{202e}Trusted" }),
            json!({ "redirect_uris": uri, "client_name": " " }),
            json!({ "redirect_uris": uri, "client_name": 5 }),
            json!({ "redirect_uris": uri, "scope": "a\"b" }),
            json!({ "redirect_uris": uri, "application_type": "service" }),
        ];
        for bad in metadata_errors {
            assert!(
                matches!(parse(bad.clone()), Err(MetadataError::Metadata(_))),
                "{bad}"
            );
        }
        let ok = parse(json!({
            "redirect_uris": ["http://127.0.0.1/cb", "http://127.0.0.1/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "client_name": "é".repeat(200),
            "scope": "a  b a",
            "application_type": "native",
            "logo_uri": "ignored",
        }))
        .unwrap();
        assert_eq!(ok.redirect_uris, ["http://127.0.0.1/cb"]);
        assert_eq!(ok.scope, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(ok.application_type.as_deref(), Some("native"));
    }

    #[cfg(feature = "mtls")]
    #[test]
    fn mutual_tls_registrations_name_exactly_one_certificate() {
        use base64::{Engine as _, engine::general_purpose::STANDARD};
        use sha2::Digest as _;

        let uri = json!(["https://app.example/cb"]);
        let m = parse(json!({
            "redirect_uris": uri,
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "cn=app, o=Example",
        }))
        .unwrap();
        assert_eq!(
            m.tls_client_auth,
            Some(TlsClientAuth::SubjectDn("CN=app,O=Example".into()))
        );
        let m = parse(json!({
            "redirect_uris": uri,
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_san_uri": "spiffe://example.org/app",
        }))
        .unwrap();
        assert_eq!(
            m.tls_client_auth,
            Some(TlsClientAuth::SanUri("spiffe://example.org/app".into()))
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let der = rcgen::CertificateParams::new(vec!["app.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        let x5c = STANDARD.encode(&der);
        let m = parse(json!({
            "redirect_uris": uri,
            "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "jwks": { "keys": [{ "kty": "EC", "x5c": [x5c] }] },
        }))
        .unwrap();
        let thumbprint: [u8; 32] = sha2::Sha256::digest(&der).into();
        assert_eq!(
            m.tls_client_auth,
            Some(TlsClientAuth::SelfSigned(vec![thumbprint]))
        );
        for bad in [
            json!({ "token_endpoint_auth_method": "tls_client_auth" }),
            json!({
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_san_dns": "a.example",
                "tls_client_auth_san_uri": "spiffe://example.org/a",
            }),
            json!({ "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "" }),
            json!({ "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "nonsense" }),
            json!({ "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": 5 }),
            json!({ "token_endpoint_auth_method": "none", "tls_client_auth_san_dns": "a.example" }),
            json!({ "tls_client_auth_san_dns": "a.example" }),
            json!({ "token_endpoint_auth_method": "self_signed_tls_client_auth" }),
            json!({
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks_uri": "https://app.example/jwks.json",
            }),
            json!({
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": { "keys": [{ "kty": "EC" }] },
            }),
            json!({
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": { "keys": [{ "x5c": ["bm90IGEgY2VydGlmaWNhdGU="] }] },
            }),
            json!({
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": { "keys": [{ "x5c": [x5c] }] },
                "tls_client_auth_san_dns": "a.example",
            }),
        ] {
            let mut document = bad.clone();
            document["redirect_uris"] = uri.clone();
            assert!(
                matches!(parse(document), Err(MetadataError::Metadata(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/client-metadata+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
        assert!(!is_json_media_type("text/json+html"));
    }
}
