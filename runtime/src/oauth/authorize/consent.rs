//! The consent page (`GET /oauth/authorize/consent?request=<id>`) and the user's decision
//! (`POST /oauth/authorize/decision`), which issues the authorization code.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    response::Response,
};
use http::{HeaderMap, StatusCode};

use super::{
    Remote, audit, cookie,
    form::Form,
    from_another_site, pages,
    pending::{PendingRequest, Refused},
    respond,
};
use crate::{
    AuditEvent, Outcome,
    oauth::{AsState, issue, random_id, random_secret, unix_now},
    store::{AuthCodeRecord, hash_secret},
};

/// The consent page of a waiting request, or its login page when the browser is not signed in
/// with the session the request was sealed for (another user's request, or a sign-in that has
/// ended).
pub(super) async fn show(
    State(state): State<Arc<AsState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let now = unix_now();
    let sealed = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "request")
        .map(|(_, value)| value.into_owned());
    let Some(sealed) = sealed else {
        return pages::expired(&state);
    };
    let Some(request) = state.pending.request(&sealed, now) else {
        return pages::expired(&state);
    };
    match cookie::signed_in(&state, &headers, now).await {
        Ok(Some((key, session))) if request.is_for(&key) => {
            pages::consent(&state, &sealed, &request, &key, &session)
        }
        Ok(_) => pages::login(&state, &sealed, &request, None, ""),
        Err(error) => {
            tracing::error!(target: crate::AUDIT_TARGET, %error, "looking up a session failed");
            pages::unavailable(&state)
        }
    }
}

/// The user's decision: approve (with the scopes left checked) or deny. Needs the session the
/// consent page was shown to and the request's CSRF token; uses the request up.
pub(super) async fn decide(
    State(state): State<Arc<AsState>>,
    Remote(remote): Remote,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = unix_now();
    let form = Form::parse(&body);
    let refused = |reason: &'static str| {
        audit(&state, AuditEvent::Authorization, Outcome::Denied, |r| {
            r.reason = Some(reason);
            r.remote_addr = remote;
        });
    };
    if from_another_site(&headers) {
        refused("cross_site");
        return forbidden(&state);
    }
    let (Some(id), Some(csrf), Some(decision)) =
        (form.one("request"), form.one("csrf"), form.one("decision"))
    else {
        refused("invalid_request");
        return pages::expired(&state);
    };
    let approve = match decision {
        "approve" => true,
        "deny" => false,
        _ => {
            refused("invalid_request");
            return pages::expired(&state);
        }
    };
    let (key, session) = match cookie::signed_in(&state, &headers, now).await {
        Ok(Some(signed_in)) => signed_in,
        Ok(None) => {
            refused("not_signed_in");
            return forbidden(&state);
        }
        Err(error) => {
            tracing::error!(target: crate::AUDIT_TARGET, %error, "looking up a session failed");
            refused("temporarily_unavailable");
            return pages::unavailable(&state);
        }
    };
    let request = match state.pending.take(id, csrf, key, now).await {
        Ok(request) => request,
        Err(why) => {
            audit(&state, AuditEvent::Authorization, Outcome::Denied, |r| {
                r.reason = Some(why.reason());
                r.subject = Some(&session.subject);
                r.remote_addr = remote;
            });
            if why == Refused::Unavailable {
                return pages::unavailable(&state);
            }
            return pages::expired(&state);
        }
    };
    if !approve {
        audit(&state, AuditEvent::Authorization, Outcome::Denied, |r| {
            r.reason = Some("access_denied");
            r.subject = Some(&session.subject);
            r.client_id = Some(&request.client_id);
            r.remote_addr = remote;
        });
        return respond::error_to_client(
            &state,
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            "the user denied the request",
        );
    }
    // Only what was offered can be granted: unknown or smuggled values are ignored.
    let offered = request.offered(session.scopes.as_deref());
    let checked: Vec<&str> = form.all("scope").collect();
    let granted: Vec<&str> = offered
        .into_iter()
        .filter(|scope| checked.contains(scope))
        .collect();
    issue_code(&state, &request, &session.subject, &granted, remote).await
}

/// Stores an authorization code for `subject` with the `granted` scopes and sends the browser
/// back to the client with it. Only the code's hash is stored; the code itself appears only in
/// the redirect.
pub(super) async fn issue_code(
    state: &AsState,
    request: &PendingRequest,
    subject: &str,
    granted: &[&str],
    remote: Option<SocketAddr>,
) -> Response {
    let code = random_secret();
    let scope = issue::normalize_scope(granted.iter().copied());
    let record = AuthCodeRecord {
        code_hash: hash_secret(&code),
        client_id: request.client_id.clone(),
        subject: subject.to_owned(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        scope: scope.clone(),
        resource: Some(request.resource.clone()),
        family_id: random_id(),
        expires_at: unix_now() + state.code_lifetime,
    };
    if let Err(error) = state.store.put_code(record).await {
        tracing::error!(target: crate::AUDIT_TARGET, %error, "storing an authorization code failed");
        audit(state, AuditEvent::Authorization, Outcome::Denied, |r| {
            r.reason = Some("temporarily_unavailable");
            r.subject = Some(subject);
            r.client_id = Some(&request.client_id);
            r.remote_addr = remote;
        });
        return respond::error_to_client(
            state,
            &request.redirect_uri,
            request.state.as_deref(),
            "temporarily_unavailable",
            "the server cannot answer right now; try again",
        );
    }
    audit(state, AuditEvent::Authorization, Outcome::Allowed, |r| {
        r.subject = Some(subject);
        r.client_id = Some(&request.client_id);
        r.detail = Some(&scope);
        r.remote_addr = remote;
    });
    respond::to_client(
        state,
        &request.redirect_uri,
        &[("code", &code)],
        request.state.as_deref(),
    )
}

/// A decision without a session, or from another site.
fn forbidden(state: &AsState) -> Response {
    pages::error(
        state,
        StatusCode::FORBIDDEN,
        "Not signed in",
        "Your sign-in has ended, or this request did not come from this server's page.",
    )
}
