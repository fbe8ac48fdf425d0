//! `GET /oauth/authorize`: validates the request, then answers with the login page, the consent
//! page (already signed in), or — in test mode — a code at once.

use std::sync::Arc;

use axum::{
    extract::{RawQuery, State},
    response::Response,
};
use http::HeaderMap;

use super::{
    Remote, audit, consent, cookie, pages,
    pending::PendingRequest,
    request::{self, Refusal, Validated},
    respond,
};
use crate::{
    AuditEvent, Outcome,
    oauth::{AsState, unix_now},
};

/// The authorization request.
pub(super) async fn authorize(
    State(state): State<Arc<AsState>>,
    Remote(remote): Remote,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let now = unix_now();
    let validated = match request::parse(query.as_deref().unwrap_or_default()) {
        Ok(params) => request::validate(&state, params, remote.map(|a| a.ip())).await,
        Err(refusal) => Err(refusal),
    };
    let validated = match validated {
        Ok(validated) => validated,
        Err(refusal) => return refuse(&state, refusal, remote),
    };
    if let Some(username) = &state.auto_approve {
        return auto_approve(&state, validated, username, remote).await;
    }
    let session = match cookie::signed_in(&state, &headers, now).await {
        Ok(session) => session,
        Err(error) => {
            tracing::error!(target: crate::AUDIT_TARGET, %error, "looking up a session failed");
            return pages::unavailable(&state);
        }
    };
    let request = PendingRequest::new(validated, now);
    // Nothing is kept for the request: it travels sealed in the page (see `pending`).
    let sealed = state
        .pending
        .seal(&request, session.as_ref().map(|(key, _)| *key));
    match session {
        Some((key, session)) => pages::consent(&state, &sealed, &request, &key, &session),
        None => pages::login(&state, &sealed, &request, None, ""),
    }
}

/// Answers an invalid request: an error page when the client or redirect URI is not
/// established, else a redirect with the error.
fn refuse(state: &AsState, refusal: Refusal, remote: Option<std::net::SocketAddr>) -> Response {
    match refusal {
        Refusal::Page {
            status,
            reason,
            message,
            client_id,
        } => {
            audit(state, AuditEvent::Authorization, Outcome::Denied, |r| {
                r.reason = Some(reason);
                r.detail = Some(&message);
                r.client_id = client_id.as_deref();
                r.remote_addr = remote;
            });
            pages::error(state, status, "This request cannot be accepted", &message)
        }
        Refusal::Redirect {
            client_id,
            redirect_uri,
            state: client_state,
            error,
            description,
        } => {
            audit(state, AuditEvent::Authorization, Outcome::Denied, |r| {
                r.reason = Some(error);
                r.detail = Some(&description);
                r.client_id = Some(&client_id);
                r.remote_addr = remote;
            });
            respond::error_to_client(
                state,
                &redirect_uri,
                client_state.as_deref(),
                error,
                &description,
            )
        }
    }
}

/// Test mode: approves the request at once for the configured user, with every scope offered.
async fn auto_approve(
    state: &AsState,
    validated: Validated,
    username: &str,
    remote: Option<std::net::SocketAddr>,
) -> Response {
    let request = PendingRequest::new(validated, unix_now());
    let (error, description) = match state.users.get(username).await {
        Ok(Some(user)) => {
            let granted = request.offered(user.scopes.as_deref());
            return consent::issue_code(state, &request, &user.subject, &granted, remote).await;
        }
        Ok(None) => {
            tracing::error!(
                target: crate::AUDIT_TARGET,
                user = username,
                "the auto-approve user does not exist"
            );
            ("server_error", "the server is misconfigured")
        }
        Err(error) => {
            tracing::error!(target: crate::AUDIT_TARGET, %error, "looking up the auto-approve user failed");
            (
                "temporarily_unavailable",
                "the server cannot answer right now; try again",
            )
        }
    };
    audit(state, AuditEvent::Authorization, Outcome::Denied, |r| {
        r.reason = Some(error);
        r.client_id = Some(&request.client_id);
        r.remote_addr = remote;
    });
    respond::error_to_client(
        state,
        &request.redirect_uri,
        request.state.as_deref(),
        error,
        description,
    )
}
