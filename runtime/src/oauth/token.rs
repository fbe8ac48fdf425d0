//! The token endpoint (RFC 6749 §3.2, OAuth 2.1 §3.2): the `client_credentials` grant for
//! confidential clients, the `authorization_code` grant with mandatory PKCE S256 (RFC 7636), and
//! the `refresh_token` grant with rotation and reuse detection (RFC 9700 §4.14.2; a retry of a
//! rotation whose answer was lost is honoured for a short grace period). Access tokens are bound
//! to one resource (RFC 8707), and to the client certificate of the token request when there
//! is one (RFC 8705 §3, see [`exchange`]).
//!
//! Every answer, success or error, is JSON with `Cache-Control: no-store` and `Pragma: no-cache`,
//! and is audited (event `token`) without any token, code or secret in the record.
//!
//! The form reading shared with the revocation endpoint ([`read_form`]) lives here too.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderMap, StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    AsState, MAX_BODY_BYTES,
    clients::{self, PresentedClient},
    error::{OAuthError, no_store_json},
    grants,
    issue::{self, AccessToken, TokenGrant},
    paths, unix_now,
    users::SignedIn,
};
use crate::{
    AuditEvent, AuditRecord, Outcome,
    store::{
        AuthCodeRecord, ClientRecord, CodeRedemption, RefreshTokenRecord, Rotation, hash_secret,
    },
};

/// The endpoint's routes.
pub(super) fn routes() -> Router<Arc<AsState>> {
    Router::new().route(paths::TOKEN, post(token_endpoint))
}

// ---------------------------------------------------------------------------------------------
// Form requests (shared with the revocation endpoint)
// ---------------------------------------------------------------------------------------------

/// The parameters of a form body. Deliberately not `Debug`: they hold secrets (codes, refresh
/// tokens, client secrets, PKCE verifiers).
pub(super) struct FormParams(Vec<(String, String)>);

impl FormParams {
    /// Parses `application/x-www-form-urlencoded` bytes. `Err` names a parameter sent more than
    /// once (RFC 6749 §3.2: parameters MUST NOT be included more than once), which would
    /// otherwise let a proxy and this server read different values.
    fn parse(body: &[u8]) -> Result<Self, String> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            if params.iter().any(|(n, _)| *n == name) {
                return Err(name.into_owned());
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(params))
    }

    /// The value of `name`; a parameter sent without a value counts as absent (RFC 6749 §3.1).
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// A form POST to the token or revocation endpoint, read.
pub(super) struct FormRequest {
    /// The request headers (for `Authorization: Basic`).
    pub(super) headers: HeaderMap,
    /// The parameters.
    pub(super) params: FormParams,
    /// The client certificate the request came with (TLS handshake or trusted proxy).
    #[cfg(feature = "mtls")]
    certificate: Option<Arc<crate::auth::ClientCertificate>>,
}

impl FormRequest {
    /// The client credentials sent: in the body (`client_secret_post`, or a public or
    /// mutual-TLS client's id) and, for a mutual-TLS client, the request's certificate.
    pub(super) fn presented_client(&self) -> PresentedClient<'_> {
        PresentedClient {
            form_id: self.params.get("client_id"),
            form_secret: self.params.get("client_secret"),
            #[cfg(feature = "mtls")]
            certificate: self.certificate.as_deref(),
        }
    }

    /// The SHA-256 thumbprint of the request's client certificate, if it came with one.
    fn certificate_thumbprint(&self) -> Option<[u8; 32]> {
        #[cfg(feature = "mtls")]
        return self.certificate.as_ref().map(|c| *c.thumbprint());
        #[cfg(not(feature = "mtls"))]
        return None;
    }
}

/// The peer address of a request, when the server was started with connect info.
pub(super) fn peer(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// Reads a form body: the content type must be `application/x-www-form-urlencoded`
/// (RFC 6749 §3.2), the body at most [`MAX_BODY_BYTES`], and no parameter repeated.
pub(super) async fn read_form(request: Request) -> Result<FormRequest, OAuthError> {
    let (parts, body) = request.into_parts();
    if !is_form(&parts.headers) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| OAuthError::invalid_request("the request body could not be read"))?;
    let params = FormParams::parse(&bytes).map_err(|name| {
        if name == "resource" {
            // RFC 8707 allows several resources; this server issues a token for one only.
            OAuthError::invalid_target()
        } else {
            OAuthError::invalid_request("a parameter is repeated (RFC 6749 §3.2)")
        }
    })?;
    Ok(FormRequest {
        #[cfg(feature = "mtls")]
        certificate: parts
            .extensions
            .get::<Arc<crate::auth::ClientCertificate>>()
            .cloned(),
        headers: parts.headers,
        params,
    })
}

/// Whether the content type is a form, parameters such as `charset` aside.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Whether a client authentication failure was already audited by [`clients::authenticate`].
pub(super) fn audited_by_authenticate(error: &OAuthError) -> bool {
    matches!(error.code(), "invalid_client" | "slow_down")
}

/// Revokes a grant's family, logging (not failing on) a store error: the caller is already
/// answering with an error, and the family's code or token is used up anyway.
pub(super) async fn revoke_family(state: &AsState, family_id: &str, now: i64) {
    if let Err(error) = state.store.revoke_family(family_id, now).await {
        tracing::error!(
            target: crate::AUDIT_TARGET,
            %error,
            family_id,
            "revoking a grant's family failed"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The token endpoint
// ---------------------------------------------------------------------------------------------

/// What the audit record of a token request says, filled in as the request is understood.
#[derive(Default)]
struct Trail {
    /// The caller's address.
    peer: Option<SocketAddr>,
    /// The grant type, when it is one this server knows (never attacker-chosen text).
    grant_type: Option<&'static str>,
    /// The authenticated client.
    client_id: Option<String>,
    /// The subject the token is (or would have been) for.
    subject: Option<String>,
    /// The refusal was audited already (by client authentication).
    audited: bool,
    /// Why an issued token deserves a note in its audit record (a retried refresh).
    note: Option<&'static str>,
}

impl Trail {
    /// A `token` record with what is known so far.
    fn record(&self, outcome: Outcome) -> AuditRecord<'_> {
        let mut record = AuditRecord::new(AuditEvent::Token, outcome);
        record.detail = self.grant_type;
        record.client_id = self.client_id.as_deref();
        record.subject = self.subject.as_deref();
        record.remote_addr = self.peer;
        record
    }

    /// Audits an issued access token by its `jti`.
    fn issued(&self, state: &AsState, jti: &str) {
        let mut record = self.record(Outcome::Allowed);
        record.credential_id = Some(jti);
        record.reason = self.note;
        state.audit.record(&record);
    }

    /// Audits a refusal by its error code, unless client authentication did already.
    fn refused(&self, state: &AsState, error: &OAuthError) {
        if self.audited {
            return;
        }
        let mut record = self.record(Outcome::Denied);
        record.reason = Some(error.code());
        state.audit.record(&record);
    }

    /// A replayed code or reused refresh token revoked its family: a likely stolen credential.
    fn family_revoked(&self, state: &AsState, family_id: &str, reason: &'static str) {
        let mut record = AuditRecord::new(AuditEvent::Revocation, Outcome::Allowed);
        record.reason = Some(reason);
        record.detail = Some("the grant's refresh and access tokens are revoked");
        record.client_id = self.client_id.as_deref();
        record.credential_id = Some(family_id);
        record.remote_addr = self.peer;
        state.audit.record(&record);
    }
}

/// A successful token response and the `jti` of its access token.
struct Issued {
    /// The `200` answer with the tokens.
    response: Response,
    /// The access token's `jti`, for the audit record.
    jti: String,
}

/// `POST /oauth/token`.
async fn token_endpoint(State(state): State<Arc<AsState>>, request: Request) -> Response {
    let now = unix_now();
    let mut trail = Trail {
        peer: peer(&request),
        ..Trail::default()
    };
    match exchange(&state, request, now, &mut trail).await {
        Ok(issued) => {
            trail.issued(&state, &issued.jti);
            #[cfg(feature = "metrics")]
            if let Some(grants) = state.grant_metrics.get() {
                grants.count(trail.grant_type, "issued");
            }
            issued.response
        }
        Err(error) => {
            trail.refused(&state, &error);
            #[cfg(feature = "metrics")]
            if let Some(grants) = state.grant_metrics.get() {
                grants.count(trail.grant_type, error.code());
            }
            error.into_response()
        }
    }
}

/// Reads the request, authenticates the client and runs its grant.
///
/// When the request comes with a client certificate (the TLS handshake's, or a trusted
/// proxy's), the access token is bound to it (`cnf.x5t#S256`, RFC 8705 §3), whatever the
/// client's authentication method: a client that presents a certificate to this server
/// presents it to the resources on the same server too, and a bound token is worthless to
/// whoever steals it. A mutual-TLS client's tokens are thus always bound (its certificate is
/// its credential); a public client's refresh token is bound as well (RFC 8705 §4: nothing
/// else ties it to the client), a confidential client's is not (its authentication does, and
/// a renewed certificate must not end its grant). Each refresh binds the new access token to
/// the certificate presented then.
async fn exchange(
    state: &AsState,
    request: Request,
    now: i64,
    trail: &mut Trail,
) -> Result<Issued, OAuthError> {
    let form = read_form(request).await?;
    let params = &form.params;
    let requested = params.get("grant_type");
    trail.grant_type = requested.and_then(known_grant);
    let client = clients::authenticate(
        state,
        &form.headers,
        form.presented_client(),
        trail.peer.map(|p| p.ip()),
        AuditEvent::Token,
    )
    .await
    .inspect_err(|error| trail.audited = audited_by_authenticate(error))?;
    trail.client_id = Some(client.client_id.clone());
    let certificate = form.certificate_thumbprint();
    if certificate.is_some() {
        trail.note = Some("certificate_bound");
    }
    let Some(requested) = requested else {
        return Err(OAuthError::invalid_request("grant_type is required"));
    };
    let grant = known_grant(requested).ok_or_else(OAuthError::unsupported_grant_type)?;
    if !client.grant_types.iter().any(|g| g == grant) {
        return Err(OAuthError::unauthorized_client(
            "the client is not registered for this grant type",
        ));
    }
    let request = GrantRequest {
        client: &client,
        params,
        certificate: certificate.as_ref(),
    };
    match grant {
        grants::CLIENT_CREDENTIALS => client_credentials(state, request, now, trail),
        grants::AUTHORIZATION_CODE => authorization_code(state, request, now, trail).await,
        grants::REFRESH_TOKEN => refresh(state, request, now, trail).await,
        _ => Err(OAuthError::unsupported_grant_type()),
    }
}

/// What every grant works from: the authenticated client, the form, and the thumbprint of the
/// client certificate the request came with (its tokens are bound to it).
#[derive(Clone, Copy)]
struct GrantRequest<'a> {
    client: &'a ClientRecord,
    params: &'a FormParams,
    certificate: Option<&'a [u8; 32]>,
}

/// The grant type as this server spells it, if it implements it.
fn known_grant(requested: &str) -> Option<&'static str> {
    [
        grants::AUTHORIZATION_CODE,
        grants::REFRESH_TOKEN,
        grants::CLIENT_CREDENTIALS,
    ]
    .into_iter()
    .find(|g| *g == requested)
}

/// The space-separated scope tokens of `scope` (RFC 6749 §3.3).
fn scope_tokens(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|s| !s.is_empty())
}

/// The JSON token response (RFC 6749 §5.1).
fn token_response(access: AccessToken, scope: &str, refresh_token: Option<&str>) -> Issued {
    let mut body = json!({
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": access.expires_in,
    });
    if !scope.is_empty() {
        body["scope"] = json!(scope);
    }
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    Issued {
        response: no_store_json(StatusCode::OK, body),
        jti: access.jti,
    }
}

// ---------------------------------------------------------------------------------------------
// client_credentials
// ---------------------------------------------------------------------------------------------

/// RFC 6749 §4.4: a confidential client gets a token for itself, with the requested scopes it
/// may have (or all of them), for the requested resource.
fn client_credentials(
    state: &AsState,
    GrantRequest {
        client,
        params,
        certificate,
    }: GrantRequest<'_>,
    now: i64,
    trail: &mut Trail,
) -> Result<Issued, OAuthError> {
    // A public client has proved nothing about itself: it must not act on its own behalf.
    if !client.is_confidential() {
        return Err(OAuthError::unauthorized_client(
            "client_credentials is for confidential clients only",
        ));
    }
    let scope = client_scope(client, params.get("scope"))?;
    let resource = state
        .resource_for(params.get("resource"))
        .ok_or_else(OAuthError::invalid_target)?;
    trail.subject = Some(client.client_id.clone());
    let access = issue::access_token(
        state,
        TokenGrant {
            subject: &client.client_id,
            client_id: &client.client_id,
            scope: &scope,
            role: client.role.as_deref(),
            resource: &resource,
            family_id: None,
            certificate,
        },
        now,
    )?;
    Ok(token_response(access, &scope, None))
}

/// The scopes a client-credentials token gets: the requested ones the client is allowed (others
/// are dropped, RFC 6749 §3.3), or all allowed ones when none are requested.
fn client_scope(client: &ClientRecord, requested: Option<&str>) -> Result<String, OAuthError> {
    let allowed = |s: &&str| client.allowed_scopes.iter().any(|a| a == s);
    match requested {
        None => Ok(issue::normalize_scope(
            client.allowed_scopes.iter().map(String::as_str),
        )),
        Some(requested) => {
            let granted = issue::normalize_scope(scope_tokens(requested).filter(allowed));
            if granted.is_empty() {
                Err(OAuthError::invalid_scope(
                    "none of the requested scopes is allowed for this client",
                ))
            } else {
                Ok(granted)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// authorization_code
// ---------------------------------------------------------------------------------------------

/// The parameters of a code exchange, all required.
struct CodeExchange<'a> {
    /// The authorization code.
    code: &'a str,
    /// Must equal the authorization request's.
    redirect_uri: &'a str,
    /// The PKCE verifier.
    code_verifier: &'a str,
    /// Optional; must name the code's resource.
    resource: Option<&'a str>,
}

impl<'a> CodeExchange<'a> {
    /// Reads the parameters; a missing one is `invalid_request` (the code is not used up).
    fn read(params: &'a FormParams) -> Result<Self, OAuthError> {
        let required = |name: &'static str| {
            params
                .get(name)
                .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
        };
        Ok(Self {
            code: required("code")?,
            redirect_uri: required("redirect_uri")?,
            // OAuth 2.1 requires PKCE on every code: no verifier is a malformed request.
            code_verifier: required("code_verifier")?,
            resource: params.get("resource"),
        })
    }
}

/// RFC 6749 §4.1.3 with PKCE: redeems the code (single use), checks it was issued to this
/// client for this redirect URI and verifier, and issues tokens of the code's family.
async fn authorization_code(
    state: &AsState,
    grant_request: GrantRequest<'_>,
    now: i64,
    trail: &mut Trail,
) -> Result<Issued, OAuthError> {
    let request = CodeExchange::read(grant_request.params)?;
    let grant = match state
        .store
        .redeem_code(hash_secret(request.code), now)
        .await?
    {
        CodeRedemption::Redeemed(grant) => grant,
        CodeRedemption::Replayed { family_id } => {
            // The store revoked the family; its access tokens carry it in their `jti`, so the
            // resource server refuses them too (OAuth 2.1 §4.1.3).
            trail.family_revoked(state, &family_id, "code_replayed");
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ));
        }
        CodeRedemption::Expired | CodeRedemption::Unknown => {
            return Err(OAuthError::invalid_grant(
                "the authorization code is invalid or expired",
            ));
        }
    };
    trail.subject = Some(grant.subject.clone());
    match issue_for_code(state, grant_request, &request, &grant, now).await {
        Ok(issued) => Ok(issued),
        Err(error) => {
            // The code is used up; whatever a failed exchange could have issued must not live.
            revoke_family(state, &grant.family_id, now).await;
            Err(error)
        }
    }
}

/// Checks a redeemed code against the request and issues its tokens.
async fn issue_for_code(
    state: &AsState,
    GrantRequest {
        client,
        certificate,
        ..
    }: GrantRequest<'_>,
    request: &CodeExchange<'_>,
    grant: &AuthCodeRecord,
    now: i64,
) -> Result<Issued, OAuthError> {
    if grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    // Exact comparison: the URI the code was sent to (RFC 6749 §4.1.3).
    if grant.redirect_uri != request.redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    if !pkce_matches(request.code_verifier, &grant.code_challenge) {
        return Err(OAuthError::invalid_grant("the PKCE code_verifier is wrong"));
    }
    let resource = grant_resource(state, grant.resource.as_deref());
    check_requested_resource(state, request.resource, &resource)?;
    let user = current_user(state, &grant.subject).await?;
    let scope = token_scope(&grant.scope, client, &user);
    let access = user_access_token(
        state,
        (client, certificate),
        &user,
        (&grant.subject, &grant.family_id),
        (&scope, &resource),
        now,
    )?;
    if !client
        .grant_types
        .iter()
        .any(|g| g == grants::REFRESH_TOKEN)
    {
        return Ok(token_response(access, &scope, None));
    }
    let refresh_token = issue::refresh_token();
    state
        .store
        .put_refresh(RefreshTokenRecord {
            token_hash: hash_secret(&refresh_token),
            family_id: grant.family_id.clone(),
            client_id: client.client_id.clone(),
            subject: grant.subject.clone(),
            // The refresh token keeps the consented scope; only access tokens are narrowed.
            scope: grant.scope.clone(),
            resource: Some(resource.clone()),
            // RFC 8705 §4: a public client's refresh token is bound to its certificate, the
            // only thing that ties the token to the client; a confidential client's is bound
            // by its authentication, and may outlive a renewed certificate.
            certificate_thumbprint: certificate.copied().filter(|_| !client.is_confidential()),
            expires_at: now + state.refresh_token_lifetime,
        })
        .await?;
    Ok(token_response(access, &scope, Some(&refresh_token)))
}

/// RFC 7636 §4.1: a verifier is 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn verifier_is_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6, method S256: `BASE64URL-NOPAD(SHA256(verifier)) == challenge`, compared in
/// constant time. A malformed verifier never matches, even if its hash would.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    if !verifier_is_well_formed(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// The resource a grant's tokens are for: the one consented to, or the default one.
fn grant_resource(state: &AsState, resource: Option<&str>) -> String {
    resource.map_or_else(|| state.resources[0].clone(), str::to_owned)
}

/// A `resource` sent with a code exchange or refresh must name the grant's resource (RFC 8707
/// §2.2: the token request may only narrow what was consented to).
fn check_requested_resource(
    state: &AsState,
    requested: Option<&str>,
    granted: &str,
) -> Result<(), OAuthError> {
    match requested {
        None => Ok(()),
        Some(requested) => match state.resource_for(Some(requested)) {
            Some(canonical) if canonical == granted => Ok(()),
            _ => Err(OAuthError::invalid_target()),
        },
    }
}

/// The grant's user as of now (current role and scopes); a deleted user's grants end.
async fn current_user(state: &AsState, subject: &str) -> Result<SignedIn, OAuthError> {
    state
        .users
        .get(subject)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the user of this grant no longer exists"))
}

/// An access token for a user's grant (authorization code or refresh): the user's current role,
/// the grant's family.
fn user_access_token(
    state: &AsState,
    (client, certificate): (&ClientRecord, Option<&[u8; 32]>),
    user: &SignedIn,
    (subject, family_id): (&str, &str),
    (scope, resource): (&str, &str),
    now: i64,
) -> Result<AccessToken, OAuthError> {
    issue::access_token(
        state,
        TokenGrant {
            subject,
            client_id: &client.client_id,
            scope,
            role: user.role.as_deref(),
            resource,
            family_id: Some(family_id),
            certificate,
        },
        now,
    )
}

/// The scope of an access token: the grant's scopes the client may still be granted and the user
/// may still grant (a demoted user's or reconfigured client's tokens shrink).
fn token_scope(scope: &str, client: &ClientRecord, user: &SignedIn) -> String {
    issue::normalize_scope(scope_tokens(scope).filter(|s| {
        client.allowed_scopes.iter().any(|a| a == s)
            && user
                .scopes
                .as_ref()
                .is_none_or(|mine| mine.iter().any(|m| m == s))
    }))
}

// ---------------------------------------------------------------------------------------------
// refresh_token
// ---------------------------------------------------------------------------------------------

/// RFC 6749 §6 with rotation: the token is exchanged for a successor of the same grant; reusing
/// a rotated token revokes the whole family (RFC 9700 §4.14.2), unless it is a retry within the
/// grace period of a rotation whose answer was lost (`AsState::refresh_grace_period`), which
/// gets a new pair in place of the lost, unused one.
async fn refresh(
    state: &AsState,
    GrantRequest {
        client,
        params,
        certificate,
    }: GrantRequest<'_>,
    now: i64,
    trail: &mut Trail,
) -> Result<Issued, OAuthError> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let old_hash = hash_secret(presented);
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let Some(record) = state.store.get_refresh(old_hash).await? else {
        return Err(invalid());
    };
    // Checked before the token is used up: another client presenting it (a stolen token) must
    // not end its owner's grant by rotating it.
    if record.client_id != client.client_id {
        return Err(invalid());
    }
    // Also before: a bound token presented without its certificate is a stolen one (or a
    // client that lost its key), and its owner's grant stays as it is.
    if let Some(bound) = &record.certificate_thumbprint
        && !certificate.is_some_and(|presented| bool::from(presented.ct_eq(bound)))
    {
        return Err(OAuthError::invalid_grant(
            "the refresh token is bound to a client certificate the request did not present",
        ));
    }
    trail.subject = Some(record.subject.clone());
    let narrowed = requested_scope(&record, params.get("scope"))?;
    let resource = grant_resource(state, record.resource.as_deref());
    check_requested_resource(state, params.get("resource"), &resource)?;
    let user = match current_user(state, &record.subject).await {
        Ok(user) => user,
        Err(error) => {
            if error.code() == "invalid_grant" {
                revoke_family(state, &record.family_id, now).await;
            }
            return Err(error);
        }
    };
    let new_token = issue::refresh_token();
    let successor = record.successor(hash_secret(&new_token), now + state.refresh_token_lifetime);
    let rotation = state
        .store
        .rotate_refresh(old_hash, successor, now, state.refresh_grace_period)
        .await?;
    let grant = match rotation {
        Rotation::Rotated(grant) => grant,
        Rotation::Retried(grant) => {
            // Issued like a rotation, but worth telling apart in the audit trail: a run of
            // them for one grant is a flaky client, or a stolen token raced against its owner.
            trail.note = Some("refresh_retried_within_grace");
            grant
        }
        Rotation::Reused { family_id } => {
            trail.family_revoked(state, &family_id, "refresh_token_reused");
            return Err(invalid());
        }
        Rotation::Expired | Rotation::Revoked | Rotation::Unknown => return Err(invalid()),
    };
    let scope = token_scope(&narrowed, client, &user);
    let access = user_access_token(
        state,
        (client, certificate),
        &user,
        (&grant.subject, &grant.family_id),
        (&scope, &resource),
        now,
    )?;
    Ok(token_response(access, &scope, Some(&new_token)))
}

/// The scope asked for on refresh: a subset of the grant's (RFC 6749 §6: no escalation), or the
/// grant's when none is asked for.
fn requested_scope(
    record: &RefreshTokenRecord,
    requested: Option<&str>,
) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(record.scope.clone());
    };
    let granted: Vec<&str> = scope_tokens(&record.scope).collect();
    if scope_tokens(requested).all(|s| granted.contains(&s)) {
        Ok(issue::normalize_scope(scope_tokens(requested)))
    } else {
        Err(OAuthError::invalid_scope(
            "the requested scope exceeds the scope of the grant",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn pkce_s256_matches_the_rfc_example() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches(
            VERIFIER,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches(VERIFIER, ""));
        assert!(!pkce_matches(VERIFIER, VERIFIER), "plain is not accepted");
        let other = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX";
        assert!(!pkce_matches(other, CHALLENGE));
    }

    fn challenge_of(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }

    #[test]
    fn malformed_verifiers_never_match_even_with_their_own_challenge() {
        let short = "a".repeat(42);
        let long = "a".repeat(129);
        let plus = format!("{}+", "a".repeat(42));
        let space = format!("{} ", "a".repeat(42));
        let non_ascii = format!("{}é", "a".repeat(42));
        for bad in [&short, &long, &plus, &space, &non_ascii, &String::new()] {
            assert!(!verifier_is_well_formed(bad), "{bad:?}");
            assert!(!pkce_matches(bad, &challenge_of(bad)), "{bad:?}");
        }
        for good in [
            "a".repeat(43),
            "a".repeat(128),
            format!("{}-._~", "Z9".repeat(20)),
        ] {
            assert!(verifier_is_well_formed(&good), "{good}");
            assert!(pkce_matches(&good, &challenge_of(&good)), "{good}");
        }
    }

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_are_absent() {
        assert_eq!(
            FormParams::parse(b"a=1&b=2&a=3").err().as_deref(),
            Some("a")
        );
        let params = FormParams::parse(b"a=1&b=&c=x%20y+z").unwrap();
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c"), Some("x y z"));
        assert_eq!(params.get("d"), None);
    }

    #[test]
    fn only_forms_are_read() {
        let mut headers = HeaderMap::new();
        assert!(!is_form(&headers));
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_form(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
                .parse()
                .unwrap(),
        );
        assert!(is_form(&headers));
    }

    fn record(scope: &str) -> RefreshTokenRecord {
        RefreshTokenRecord {
            token_hash: [0; 32],
            family_id: "f".into(),
            client_id: "c".into(),
            subject: "s".into(),
            scope: scope.into(),
            resource: None,
            certificate_thumbprint: None,
            expires_at: 0,
        }
    }

    #[test]
    fn refresh_scope_may_narrow_but_never_widen() {
        let grant = record("a b");
        assert_eq!(requested_scope(&grant, None).unwrap(), "a b");
        assert_eq!(requested_scope(&grant, Some("b")).unwrap(), "b");
        assert_eq!(requested_scope(&grant, Some("b a b")).unwrap(), "a b");
        assert_eq!(
            requested_scope(&grant, Some("a c")).unwrap_err().code(),
            "invalid_scope"
        );
    }

    #[test]
    fn client_credentials_scopes_are_filtered() {
        let client = ClientRecord {
            client_id: "svc".into(),
            secret_hash: Some([1; 32]),
            name: "svc".into(),
            redirect_uris: vec![],
            grant_types: vec![grants::CLIENT_CREDENTIALS.into()],
            allowed_scopes: vec!["b".into(), "a".into()],
            role: None,
            token_endpoint_auth_method: "client_secret_basic".into(),
            tls_client_auth: None,
            metadata_url: None,
            self_registered: false,
            created_at: 0,
        };
        assert_eq!(client_scope(&client, None).unwrap(), "a b");
        assert_eq!(client_scope(&client, Some("a c")).unwrap(), "a");
        assert_eq!(
            client_scope(&client, Some("c")).unwrap_err().code(),
            "invalid_scope"
        );
        let user = SignedIn {
            subject: "u".into(),
            role: None,
            scopes: Some(vec!["a".into(), "c".into()]),
        };
        assert_eq!(token_scope("a b c", &client, &user), "a");
    }
}
