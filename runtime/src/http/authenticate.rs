//! What the authentication layer ([`GatekeeperLayer`](crate::GatekeeperLayer)) does to every
//! request (POST, GET, DELETE) before the service behind it sees the request: the
//! `Host`/`Origin` check, the credential from the headers, the 401/403/429 answers, the session
//! owner, the scope step-up, and the caller in the request's extensions. The MCP endpoint and
//! the public layer both run [`authenticate_request`].

use std::{borrow::Cow, net::SocketAddr, sync::Arc};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, Request},
    response::{IntoResponse, Response},
};
use http::{HeaderName, HeaderValue, StatusCode, header};

use crate::{
    AuditLog,
    audit::{AuditEvent, AuditRecord, Outcome, SuccessSampler},
    auth::FailureThrottle,
    auth::{
        AuthChain, AuthError, AuthErrorKind, AuthRequest, Authenticator, Credential, CredentialKind,
    },
    http::host_guard::HostGuard,
    http::sessions::{Binding, SessionBindings, budget_of},
    principal::Authenticated,
    principal::{AuthMethod, Principal},
    rate_limit::in_flight::{InFlight, InFlightKey, Permit},
    rate_limit::retry_after_seconds,
    tools::ScopeOracle,
};

/// Everything the layer needs per request, built once (by
/// [`GatekeeperLayerBuilder::build`](crate::layer::GatekeeperLayerBuilder::build) or the
/// [`Gatekeeper`](crate::Gatekeeper) builder) and shared by every request through an `Arc`.
pub(crate) struct AuthLayerState {
    pub(crate) hosts: HostGuard,
    pub(crate) chain: AuthChain,
    pub(crate) audit: AuditLog,
    /// Failed credentials per address (a correct credential is never refused by it).
    pub(crate) failures: Arc<FailureThrottle>,
    /// Shared by the layers of one server, so a session is bound once whichever route saw it.
    pub(crate) sessions: Arc<SessionBindings>,
    pub(crate) challenge: Challenge,
    /// The event streams each caller holds open.
    pub(crate) streams: Arc<InFlight>,
    /// Which requests let through that made no tool-call record are audited.
    pub(crate) successes: Arc<SuccessSampler>,
    /// Set only in front of the gatekeeper's own tools; see [`GatekeeperTools`].
    pub(crate) tools: Option<GatekeeperTools>,
    /// What the layer decided, counted per authenticator (no-ops without a recorder).
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::AuthMetrics,
}

impl AuthLayerState {
    /// The same checks for routes that are not the gatekeeper's MCP endpoint: same
    /// authenticators, allow-lists, audit log, failure throttle and session owners, but no
    /// step-up (which would read any `POST` body looking for a tool call) and the caller as an
    /// `Arc<Principal>`.
    pub(crate) fn without_tools(&self) -> Self {
        Self {
            hosts: self.hosts.clone(),
            chain: self.chain.clone(),
            audit: self.audit.clone(),
            failures: self.failures.clone(),
            sessions: self.sessions.clone(),
            challenge: self.challenge.clone(),
            streams: self.streams.clone(),
            successes: self.successes.clone(),
            tools: None,
            #[cfg(feature = "metrics")]
            metrics: self.metrics.clone(),
        }
    }
}

/// What only the gatekeeper's own tools behind the layer (`tools::dispatch`) make possible:
/// a scope step-up decided from the scopes they declare, and one audit record per tool call
/// (the dispatcher writes it and says so in the request's [`Authenticated`] record, which then
/// travels instead of a bare `Arc<Principal>`).
pub(crate) struct GatekeeperTools {
    /// Which tool needs which scopes.
    pub(crate) scopes: Arc<dyn ScopeOracle>,
    /// The most a step-up reads of a body to find the tool a call names.
    pub(crate) max_body_bytes: usize,
}

/// How this server answers a refused credential: the parameters every challenge carries, what
/// a client without a credential is told to send, and the whole answer to such a request (every
/// OAuth client's first request gets it), all formatted once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    /// `, resource_metadata="<url>"` when the server is an OAuth protected resource.
    resource_metadata: String,
    /// `, scope="<scopes>"` for `401`s, when scopes are advertised.
    scope: String,
    /// Whether the server is an OAuth protected resource, where a client can get a new token.
    /// Without one, MCP clients (Inspector, mcp-remote, apps on the SDKs) still answer every
    /// `401` by starting OAuth discovery, which fails on its own terms ("Dynamic Client
    /// Registration rejected") and hides the server's reason; so a presented credential that
    /// is wrong gets `403` there (see [`unauthorized`]).
    offers_oauth: bool,
    /// `send `X-API-Key: <key>` or `Authorization: Bearer <token>``: only the credentials the
    /// configured authenticators accept; empty when none is read from a header.
    how_to_authenticate: String,
    /// The `WWW-Authenticate` value of a `401` without an error code (no credential).
    missing_header: Option<HeaderValue>,
    /// The JSON body of the `401` for a request without a credential.
    missing_body: Bytes,
}

impl Default for Challenge {
    fn default() -> Self {
        Self::new(None, &[])
    }
}

impl Challenge {
    /// The challenge of a server that is an OAuth protected resource when `metadata_url` (its
    /// RFC 9728 metadata) is given, advertising `scopes` in the `401` for a missing credential.
    pub(crate) fn new(metadata_url: Option<&str>, scopes: &[String]) -> Self {
        Self {
            resource_metadata: metadata_url
                .map(|url| format!(", resource_metadata=\"{}\"", quote_safe(url)))
                .unwrap_or_default(),
            scope: if scopes.is_empty() {
                String::new()
            } else {
                format!(", scope=\"{}\"", quote_safe(&scopes.join(" ")))
            },
            offers_oauth: metadata_url.is_some(),
            how_to_authenticate: String::new(),
            missing_header: None,
            missing_body: Bytes::new(),
        }
        .formatted()
    }

    /// Tells clients without a credential to send one of those `authenticators` accept (the
    /// union of their [`Authenticator::accepted_credentials`], in chain order).
    pub(crate) fn accepting(mut self, authenticators: &[Arc<dyn Authenticator>]) -> Self {
        let mut kinds: Vec<CredentialKind> = Vec::new();
        for kind in authenticators.iter().flat_map(|a| a.accepted_credentials()) {
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        let ways: Vec<&str> = kinds.iter().map(|k| k.how_to_send()).collect();
        self.how_to_authenticate = if ways.is_empty() {
            String::new()
        } else {
            format!("send {}", ways.join(" or "))
        };
        self.formatted()
    }

    /// Formats the answer to a request without a credential from the other fields.
    fn formatted(mut self) -> Self {
        let header = format!(
            "Bearer realm=\"mcp\"{}{}",
            self.resource_metadata, self.scope
        );
        self.missing_header = HeaderValue::from_str(&header).ok();
        let description = self.described(AuthError::missing().description());
        self.missing_body = Bytes::from(error_body("unauthorized", &description));
        self
    }

    /// `description`, followed by what to send when the server reads credentials from headers.
    fn described(&self, description: &str) -> String {
        if self.how_to_authenticate.is_empty() {
            description.to_owned()
        } else {
            format!("{description}: {}", self.how_to_authenticate)
        }
    }
}

/// `{"error": <error>, "error_description": <description>}`, the body of every refusal.
fn error_body(error: &str, description: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": error, "error_description": description });
    // Serialising a map of two strings cannot fail; an empty body would still be an answer.
    serde_json::to_vec(&body).unwrap_or_default()
}

static SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// Query parameters that carry credentials in other APIs. OAuth 2.1 and MCP forbid tokens in
/// URLs (they end up in logs and browser history), so a request carrying one is refused even
/// if it also has a valid header.
const CREDENTIAL_QUERY_PARAMS: [&str; 5] =
    ["access_token", "api_key", "apikey", "api-key", "token"];

/// The caller as the request carries it to the service behind the layer.
enum Carried {
    /// For any service: the principal alone.
    Principal(Arc<Principal>),
    /// For the gatekeeper's tools, which mark the record once they audited the call.
    Record(Arc<Authenticated>),
}

/// Authenticates `request` and, once it is let through, hands it to `next` (the service behind
/// the layer) with the caller in its extensions: an `Arc<Principal>`, or in front of the
/// gatekeeper's own tools their [`Authenticated`] record. A refusal is an `Ok` response; only
/// `next` can fail.
pub(crate) async fn authenticate_request<F, Fut, E>(
    state: &AuthLayerState,
    request: Request,
    next: F,
) -> Result<Response, E>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response, E>>,
{
    let (mut parts, body) = request.into_parts();
    let remote_addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Err(refusal) = state.hosts.check(&parts.uri, &parts.headers) {
        let mut record = AuditRecord::new(AuditEvent::Authentication, Outcome::Denied);
        record.reason = Some(refusal.reason());
        record.remote_addr = remote_addr;
        state.audit.record(&record);
        return Ok((refusal.status(), refusal.message()).into_response());
    }
    let query_credential = credential_in_query(parts.uri.query());
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    #[cfg(feature = "otel")]
    let span = crate::otel::authentication(&parts.headers, remote_addr);
    let outcome = match query_credential {
        true => Err((
            AuthError::new(
                AuthErrorKind::InvalidRequest,
                "credentials in the query string are not accepted; send an Authorization header",
            ),
            None,
        )),
        false => match Credential::from_headers(&parts.headers) {
            Err(error) => Err((error, None)),
            Ok(credential) => {
                let request = AuthRequest {
                    credential,
                    parts: &parts,
                };
                let decision = state.chain.authenticate(&request);
                #[cfg(feature = "otel")]
                let decision = tracing::Instrument::instrument(decision, span.clone());
                let decision = decision.await;
                #[cfg(feature = "otel")]
                if let Ok(principal) = &decision.result {
                    crate::otel::authenticated(&span, decision.authenticator, principal);
                }
                #[cfg(feature = "metrics")]
                if let Ok(principal) = &decision.result {
                    // Anonymous callers are let through by the chain itself, by no authenticator.
                    let method = match principal.method() {
                        AuthMethod::Anonymous => Some("anonymous"),
                        _ => decision.authenticator,
                    };
                    let outcome = crate::metrics::AuthOutcome::Allowed;
                    state.metrics.record(method, outcome, started.elapsed());
                }
                decision.result.map_err(|e| (e, decision.authenticator))
            }
        },
    };
    let principal = match outcome {
        Ok(principal) => principal,
        Err((error, authenticator)) => {
            // Only an unknown or forged credential is a guess: a validly signed but expired
            // token (an MCP client started with a stale one) is not, nor a missing or
            // malformed header. Past the limit, failures from the address are answered 429;
            // a correct credential from it is still served (it never reaches this branch).
            let throttled_for = match (error.kind() == AuthErrorKind::InvalidToken)
                .then_some(remote_addr)
                .flatten()
            {
                Some(addr) => state.failures.record(addr.ip()).await,
                None => None,
            };
            let mut record = AuditRecord::new(
                AuditEvent::Authentication,
                if throttled_for.is_some() {
                    Outcome::RateLimited
                } else {
                    Outcome::Denied
                },
            );
            record.reason = Some(error.kind().as_str());
            record.detail = Some(error.description());
            record.method = authenticator;
            record.credential_id = error.credential_id();
            record.remote_addr = remote_addr;
            record.retry_after_seconds = throttled_for.map(retry_after_seconds);
            state.audit.record(&record);
            #[cfg(feature = "metrics")]
            state.metrics.record(
                authenticator,
                match (throttled_for, error.kind()) {
                    (Some(_), _) => crate::metrics::AuthOutcome::Throttled,
                    (None, AuthErrorKind::Unavailable) => crate::metrics::AuthOutcome::Unavailable,
                    (None, _) => crate::metrics::AuthOutcome::Denied,
                },
                started.elapsed(),
            );
            #[cfg(feature = "otel")]
            crate::otel::refused(
                &span,
                authenticator,
                match (throttled_for, error.kind()) {
                    (Some(_), _) => "throttled",
                    (None, AuthErrorKind::Unavailable) => "unavailable",
                    (None, _) => "denied",
                },
                error.kind().as_str(),
            );
            if let Some(wait) = throttled_for {
                return Ok(throttled(&error, &state.challenge, wait));
            }
            let mut response = unauthorized(&error, &state.challenge);
            if query_credential && state.challenge.offers_oauth {
                // MCP: a request without a usable token is answered 401, so clients
                // re-authorize instead of retrying the same URL. Without OAuth there is
                // nothing to re-authorize with, and a 401 would only send clients into OAuth
                // discovery instead of showing this reason: it stays 400.
                *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            }
            return Ok(response);
        }
    };
    let session = parts
        .headers
        .get(&SESSION_HEADER)
        .and_then(|v| v.to_str().ok());
    if let Some(session) = session
        && state.sessions.check(session, principal.caller_key()).await == Binding::Foreign
    {
        let mut record =
            AuditRecord::new(AuditEvent::Authentication, Outcome::Denied).principal(&principal);
        record.remote_addr = remote_addr;
        record.reason = Some("foreign_session");
        state.audit.record(&record);
        // The same answer as for a session that does not exist: no hint that it does.
        return Ok((http::StatusCode::NOT_FOUND, "Not Found: Session not found").into_response());
    }
    let body = match &state.tools {
        Some(tools) => match step_up(tools, state, &parts, body, &principal, remote_addr).await {
            Ok(body) => body,
            Err(response) => return Ok(response),
        },
        None => body,
    };
    // A GET opens an event stream, which lasts as long as the client keeps it: one over the
    // caller's limit is refused. A POST is answered by a stream only while its request is
    // being answered (a tool call's stream is bounded by the calls a caller may have in
    // flight): it is counted once its answer turns out to be one, and never refused, so that
    // a caller at its call limit hears the tool's own refusal.
    let stream_key = InFlightKey::of(&principal, remote_addr.map(|a| a.ip()));
    let stream = match parts.method {
        http::Method::GET => match state.streams.try_acquire(stream_key) {
            Some(permit) => Some(permit),
            None => {
                let mut record = AuditRecord::new(AuditEvent::Authentication, Outcome::RateLimited)
                    .principal(&principal);
                record.remote_addr = remote_addr;
                record.reason = Some("stream_limit");
                record.retry_after_seconds = Some(STREAM_RETRY_SECONDS);
                state.audit.record(&record);
                return Ok(too_many_streams(state.streams.limit()));
            }
        },
        _ => None,
    };
    let is_post = parts.method == http::Method::POST;
    let ending_session = (parts.method == http::Method::DELETE)
        .then(|| session.map(str::to_owned))
        .flatten();
    let opening_session = session.is_none();
    // What a new session counts against (only requests that may open one need it).
    let budget = opening_session.then(|| budget_of(&principal, remote_addr.map(|a| a.ip())));
    if let Some(budget) = &budget
        && parts.method == http::Method::POST
        && let Err(total) = state.sessions.admit(budget).await
    {
        let mut record =
            AuditRecord::new(AuditEvent::Authentication, Outcome::Denied).principal(&principal);
        record.remote_addr = remote_addr;
        record.reason = Some("session_limit");
        state.audit.record(&record);
        return Ok(sessions_exhausted(total));
    }
    // In front of the gatekeeper's tools, a tool call's own audit record names the caller, its
    // credential and address, so the "authentication allowed" record is written only for
    // requests that made no tool-call record (initialize, tools/list, ...): one record per call
    // instead of two. Any other service gets the principal alone (one insertion either way).
    let carried = if state.tools.is_some() {
        let authenticated = Arc::new(Authenticated::new(principal));
        parts.extensions.insert(authenticated.clone());
        Carried::Record(authenticated)
    } else {
        parts.extensions.insert(principal.clone());
        Carried::Principal(principal)
    };
    let result = next(Request::from_parts(parts, body)).await;
    let principal = match &carried {
        Carried::Record(authenticated) => &authenticated.principal,
        Carried::Principal(principal) => principal,
    };
    if !matches!(&carried, Carried::Record(a) if a.tool_call_audited()) && state.successes.take() {
        let mut record =
            AuditRecord::new(AuditEvent::Authentication, Outcome::Allowed).principal(principal);
        record.remote_addr = remote_addr;
        state.audit.record(&record);
    }
    let mut response = result?;
    if let Some(budget) = budget
        && let Some(new_session) = response
            .headers()
            .get(&SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        let evicted = state
            .sessions
            .bind(new_session, principal.caller_key().clone(), budget);
        if !evicted.is_empty() {
            for _ in &evicted {
                let mut record = AuditRecord::new(AuditEvent::Authentication, Outcome::Denied)
                    .principal(principal);
                record.remote_addr = remote_addr;
                record.reason = Some("session_evicted");
                state.audit.record(&record);
            }
            state.sessions.end(evicted);
        }
    }
    if let Some(session) = ending_session
        && response.status().is_success()
    {
        state.sessions.forget(&session);
        // rmcp answers the end of a session with 202 Accepted, which the Python MCP SDK
        // logs as a failed termination on every close (it expects 200 or 204); the MCP
        // spec names no status, and both reference SDK servers answer 200.
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::OK;
        }
    }
    // An event stream keeps its place until it ends; a plain reply gives it back now.
    let stream = stream.filter(|_| is_event_stream(&response)).or_else(|| {
        (is_post && is_event_stream(&response)).then(|| state.streams.acquire(stream_key))
    });
    if let Some(permit) = stream {
        let client = match carried {
            Carried::Record(authenticated) => Some(authenticated),
            Carried::Principal(_) => None,
        };
        response = response.map(|body| {
            Body::new(OpenStream {
                body,
                _permit: permit,
                client,
                ended: false,
            })
        });
    }
    Ok(response)
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// An event stream on its way to the client, holding one of the caller's places for open
/// responses. Dropped before its end, the client went away: a tool call still answering
/// through it is told (its stream in a session is not otherwise ended by rmcp).
struct OpenStream {
    body: Body,
    _permit: Permit,
    client: Option<Arc<Authenticated>>,
    ended: bool,
}

impl http_body::Body for OpenStream {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if !self.ended
            && let Some(client) = &self.client
        {
            client.disconnect();
        }
    }
}

/// Refuses, with `403 insufficient_scope`, a tool call whose tool needs scopes the caller's
/// token lacks, before rmcp runs, so the client can re-authorize with them. Returns the body
/// (read, for clients older than 2026-07-28 that name the tool only in it) to pass on.
///
/// Only bearer tokens are challenged: an API key or a client certificate can never be replaced
/// by an OAuth flow, and a client challenged anyway starts one that cannot help (mcp-remote
/// 0.15 then waits for a browser sign-in and never answers the call). Their calls go on to the
/// tool guard, whose JSON-RPC error names the missing scopes.
async fn step_up(
    tools: &GatekeeperTools,
    state: &AuthLayerState,
    parts: &http::request::Parts,
    body: Body,
    principal: &Principal,
    remote_addr: Option<SocketAddr>,
) -> Result<Body, Response> {
    // Most requests never need a look: no tool declares scopes, or this caller holds them all.
    let declared = tools.scopes.declared_scopes();
    if parts.method != http::Method::POST
        || matches!(principal.method(), AuthMethod::ApiKey | AuthMethod::Mtls)
        || declared.iter().all(|s| principal.has_scope(s))
    {
        return Ok(body);
    }
    let (tool, body) = match tool_named_in_headers(parts) {
        Some(tool) => (Some(tool.to_owned()), body),
        None => {
            let bytes = axum::body::to_bytes(body, tools.max_body_bytes)
                .await
                .map_err(|_| {
                    (http::StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response()
                })?;
            (tool_named_in_body(&bytes), Body::from(bytes))
        }
    };
    let Some(required) = tool
        .as_deref()
        .and_then(|t| tools.scopes.step_up(t, principal))
    else {
        return Ok(body);
    };
    let mut record = AuditRecord::new(AuditEvent::ToolCall, Outcome::Denied).principal(principal);
    record.tool = tool.as_deref();
    record.reason = Some("insufficient_scope");
    record.remote_addr = remote_addr;
    state.audit.record(&record);
    #[cfg(feature = "metrics")]
    if let Some(tool) = tool.as_deref() {
        tools.scopes.count_insufficient_scope(tool);
    }
    Err(insufficient_scope(
        tool.as_deref().unwrap_or_default(),
        required,
        principal.scopes(),
        &state.challenge,
    ))
}

/// The tool of a 2026-07-28 `tools/call`, from its `Mcp-Name` header. Trusted only for those
/// versions: rmcp rejects a request whose headers disagree with its body.
fn tool_named_in_headers(parts: &http::request::Parts) -> Option<&str> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let version = header("mcp-protocol-version")?;
    if version < "2026-07-28" || header("mcp-method")? != "tools/call" {
        return None;
    }
    header("mcp-name")
}

/// The tool of a `tools/call` request body, reading only `method` and `params.name`.
fn tool_named_in_body(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        method: Option<Cow<'a, str>>,
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        name: Option<Cow<'a, str>>,
    }
    let message: Message<'_> = serde_json::from_slice(bytes).ok()?;
    if message.method.as_deref() != Some("tools/call") {
        return None;
    }
    message.params?.name.map(Cow::into_owned)
}

/// `403` with an RFC 6750 `insufficient_scope` challenge naming every scope the tool needs (one
/// challenge for the whole operation, as MCP 2026-07-28 asks) together with the scopes the token
/// already holds: a client that re-authorizes with exactly the challenged scopes then keeps what
/// it could do before (MCP 2025-11-25's recommended approach; 2026-07-28 asks clients to take the
/// union themselves, which this makes harmless).
fn insufficient_scope<'a>(
    tool: &str,
    required: &[&str],
    held: impl Iterator<Item = &'a str>,
    challenge: &Challenge,
) -> Response {
    let mut scopes: Vec<&str> = held.collect();
    for scope in required {
        if !scopes.contains(scope) {
            scopes.push(scope);
        }
    }
    let scope = scopes.join(" ");
    let description = format!("tool `{tool}` requires scope `{}`", required.join(" "));
    let header_value = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", error_description=\"{}\"{}",
        quote_safe(&scope),
        quote_safe(&description),
        challenge.resource_metadata
    );
    let body = serde_json::json!({
        "error": "insufficient_scope",
        "error_description": description,
        "scope": scope,
    });
    let mut response = (http::StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&header_value) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `429` for a credential that failed from an address over its failure limit: the same
/// challenge and body as the `401` (or, without OAuth, `403`) it would otherwise get (so a
/// client still learns that its credential is invalid), with `Retry-After`.
fn throttled(error: &AuthError, challenge: &Challenge, wait: std::time::Duration) -> Response {
    let mut response = unauthorized(error, challenge);
    *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_seconds(wait)),
    );
    response
}

/// The answer to an `initialize` while the server holds its most sessions: `503`, retry later.
fn sessions_exhausted(total: usize) -> Response {
    let description = format!(
        "the server holds its maximum of {total} sessions; retry later, or use the server \
         without a session"
    );
    let mut response = refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        Bytes::from(error_body("too_many_sessions", &description)),
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(UNAVAILABLE_RETRY_AFTER),
    );
    response
}

/// What a caller over its open streams is told to wait, in seconds.
const STREAM_RETRY_SECONDS: u64 = 1;

/// The answer to a `GET` of a caller that holds its most open event streams: `429`.
fn too_many_streams(limit: u32) -> Response {
    let description = format!(
        "this caller holds {limit} open event streams, the most it may; close one, then retry"
    );
    let mut response = refusal(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        Bytes::from(error_body("too_many_streams", &description)),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(STREAM_RETRY_SECONDS));
    response
}

/// What a request whose credential could not be checked is told to wait, in seconds.
const UNAVAILABLE_RETRY_AFTER: &str = "5";

fn credential_in_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            CREDENTIAL_QUERY_PARAMS
                .iter()
                .any(|p| name.eq_ignore_ascii_case(p))
        })
    })
}

/// The answer to a refused credential, with a JSON body saying what is wrong:
/// - no credential, or one in a scheme other than `Bearer` (RFC 6750 §3.1: no authentication
///   information): `401` with a challenge without an error code, and a body naming what the
///   server accepts;
/// - an invalid or expired credential: `401` with an `invalid_token` challenge when the server
///   is an OAuth protected resource (the client can get a new token); otherwise `403` without a
///   challenge, which MCP clients show instead of starting OAuth discovery (RFC 9110 §15.5.4:
///   the credentials presented do not grant access; do not repeat them);
/// - a malformed request (two credentials, a malformed header): `400 invalid_request`;
/// - a credential that cannot be checked now (its identity provider is unreachable): `503`
///   with `Retry-After`.
pub(crate) fn unauthorized(error: &AuthError, params: &Challenge) -> Response {
    let kind = error.kind();
    if kind == AuthErrorKind::Missing {
        // The commonest refusal (every OAuth client's first request) is fully prepared.
        let body = if error.description() == AuthError::missing().description() {
            params.missing_body.clone()
        } else {
            Bytes::from(error_body(
                "unauthorized",
                &params.described(error.description()),
            ))
        };
        return refusal(
            StatusCode::UNAUTHORIZED,
            params.missing_header.clone(),
            body,
        );
    }
    if kind == AuthErrorKind::Unavailable {
        // Nothing the client can fix with another credential: retry later.
        let body = Bytes::from(error_body("temporarily_unavailable", error.description()));
        let mut response = refusal(StatusCode::SERVICE_UNAVAILABLE, None, body);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(UNAVAILABLE_RETRY_AFTER),
        );
        return response;
    }
    let code = kind.error_code().unwrap_or("unauthorized");
    let body = Bytes::from(error_body(code, error.description()));
    if !params.offers_oauth && matches!(kind, AuthErrorKind::InvalidToken | AuthErrorKind::Expired)
    {
        // No `WWW-Authenticate`: MCP Inspector takes a 403 carrying one for an OAuth
        // challenge too.
        return refusal(StatusCode::FORBIDDEN, None, body);
    }
    let challenge = format!(
        "Bearer realm=\"mcp\"{}, error=\"{code}\", error_description=\"{}\"",
        params.resource_metadata,
        quote_safe(error.description())
    );
    refusal(kind.status(), HeaderValue::from_str(&challenge).ok(), body)
}

/// A refusal with a JSON `body`, the challenge if any, never cached.
fn refusal(status: StatusCode, challenge: Option<HeaderValue>, body: Bytes) -> Response {
    let mut response = (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response();
    if let Some(value) = challenge {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Keeps a description inside its quoted-string: drops `"`, `\` and control characters.
fn quote_safe(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_is_read_from_the_body_cheaply() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":{"x":[1,2,3]}}}"#;
        assert_eq!(tool_named_in_body(body).as_deref(), Some("write"));
        assert_eq!(tool_named_in_body(br#"{"method":"tools/list"}"#), None);
        assert_eq!(tool_named_in_body(b"not json"), None);
        assert_eq!(tool_named_in_body(br#"[{"method":"tools/call"}]"#), None);
    }

    #[test]
    fn a_credential_that_cannot_be_checked_now_is_a_503_without_a_challenge() {
        let error = AuthError::unavailable("The identity provider cannot be reached");
        for params in [
            Challenge::new(
                Some("https://h/.well-known/oauth-protected-resource/mcp"),
                &[],
            ),
            Challenge::default(),
        ] {
            let response = unauthorized(&error, &params);
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
            assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        }
        assert_eq!(error.kind().as_str(), "credential_check_unavailable");
    }

    #[test]
    fn challenges_carry_the_metadata_url_and_scopes() {
        let params = Challenge::new(
            Some("https://h/.well-known/oauth-protected-resource/mcp"),
            &["a".into(), "b".into()],
        );
        let missing = unauthorized(&AuthError::missing(), &params);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"mcp\", resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\", scope=\"a b\""
        );
        let forbidden = insufficient_scope("w", &["a", "c"], ["b", "a"].into_iter(), &params);
        assert_eq!(forbidden.status(), 403);
        assert_eq!(
            forbidden.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_scope\", scope=\"b a c\", error_description=\"tool `w` requires scope `a c`\", resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\""
        );
    }

    #[test]
    fn query_credentials_are_detected() {
        assert!(credential_in_query(Some("access_token=abc")));
        assert!(credential_in_query(Some("x=1&API_KEY=abc")));
        assert!(credential_in_query(Some("token")));
        assert!(!credential_in_query(Some("tokens=1&x=access_token")));
        assert!(!credential_in_query(None));
    }

    /// The JSON body of a response built here (they are all in memory).
    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn challenge_shapes_follow_rfc_6750() {
        let none = Challenge::default();
        let missing = unauthorized(&AuthError::missing(), &none);
        assert_eq!(missing.status(), 401);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"mcp\""
        );
        let oauth = Challenge::new(Some("https://h/m"), &[]);
        let expired = unauthorized(&AuthError::expired(), &oauth);
        assert_eq!(expired.status(), 401);
        assert_eq!(
            expired.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"mcp\", resource_metadata=\"https://h/m\", error=\"invalid_token\", error_description=\"Token expired\""
        );
        let other_scheme = unauthorized(
            &AuthError::new(AuthErrorKind::Missing, crate::auth::UNSUPPORTED_SCHEME),
            &oauth,
        );
        assert_eq!(other_scheme.status(), 401);
        assert_eq!(
            other_scheme.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"mcp\", resource_metadata=\"https://h/m\""
        );
        let bad = unauthorized(
            &AuthError::new(AuthErrorKind::InvalidRequest, "two \"creds\""),
            &none,
        );
        assert_eq!(bad.status(), 400);
        assert!(
            bad.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("two creds")
        );
    }

    #[tokio::test]
    async fn without_oauth_a_wrong_credential_is_forbidden_with_its_reason() {
        let none = Challenge::default();
        for error in [
            AuthError::new(AuthErrorKind::InvalidToken, "Invalid API key"),
            AuthError::expired(),
        ] {
            let response = unauthorized(&error, &none);
            assert_eq!(response.status(), 403, "{error:?}");
            assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            let body = body_of(response).await;
            assert_eq!(body["error"], "invalid_token");
            assert_eq!(body["error_description"], error.description());
        }
        let throttled = throttled(
            &AuthError::invalid_token(),
            &none,
            std::time::Duration::from_secs(3),
        );
        assert_eq!(throttled.status(), 429);
        assert_eq!(throttled.headers()[header::RETRY_AFTER], "3");
        assert!(throttled.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[tokio::test]
    async fn the_401_body_names_only_accepted_credentials() {
        let keys: Arc<dyn Authenticator> =
            Arc::new(crate::ApiKeys::parse_env_value("key-0123456789abcdef").unwrap());
        let jwt: Arc<dyn Authenticator> = Arc::new(
            crate::Jwt::hs256("a-secret-of-at-least-32-bytes-0123456789")
                .unwrap()
                .accept_tokens_for_any_audience(),
        );
        let described = |authenticators: &[Arc<dyn Authenticator>]| {
            let challenge = Challenge::default().accepting(authenticators);
            async move {
                body_of(unauthorized(&AuthError::missing(), &challenge)).await["error_description"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        };
        assert_eq!(
            described(&[keys.clone(), jwt.clone()]).await,
            "Authentication required: send `X-API-Key: <key>` or `Authorization: Bearer <token>`"
        );
        assert_eq!(
            described(&[jwt.clone(), keys]).await,
            "Authentication required: send `Authorization: Bearer <token>` or `X-API-Key: <key>`"
        );
        assert_eq!(
            described(std::slice::from_ref(&jwt)).await,
            "Authentication required: send `Authorization: Bearer <token>`"
        );
        assert_eq!(described(&[]).await, "Authentication required");
        let challenge = Challenge::default().accepting(&[jwt]);
        let other_scheme = unauthorized(
            &AuthError::new(AuthErrorKind::Missing, crate::auth::UNSUPPORTED_SCHEME),
            &challenge,
        );
        assert_eq!(other_scheme.status(), 401);
        assert_eq!(
            body_of(other_scheme).await,
            serde_json::json!({
                "error": "unauthorized",
                "error_description": "Unsupported authorization scheme: send `Authorization: Bearer <token>`",
            })
        );
    }
}
