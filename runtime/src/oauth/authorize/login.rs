//! The login form (`POST /oauth/authorize/login`) and "not you?" (`POST
//! /oauth/authorize/logout`).
//!
//! Failed sign-ins count toward the lockout of the username and of the address; the answer never
//! says whether the user exists (no user enumeration), and unknown users cost the same argon2
//! run as wrong passwords (see `Users::sign_in`).

use std::{net::SocketAddr, sync::Arc};

use axum::{body::Bytes, extract::State, response::Response};
use http::{HeaderMap, StatusCode};

use super::{
    Remote, audit, consent_url, cookie, form::Form, from_another_site, pages,
    pending::PendingRequest, respond,
};
use crate::{
    AuditEvent, Outcome,
    oauth::{AsState, unix_now},
};

/// Longest username accepted; longer ones fail like a wrong password.
const MAX_USERNAME: usize = 256;
/// Longest password accepted (bounds the argon2 work an attacker can ask for).
const MAX_PASSWORD: usize = 1024;

/// The message of every failed sign-in: the same whether the user exists or not.
const WRONG_CREDENTIALS: &str = "Wrong username or password.";

/// Signs the user in for a waiting request, then sends the browser to the consent page.
pub(super) async fn sign_in(
    State(state): State<Arc<AsState>>,
    Remote(remote): Remote,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = unix_now();
    let form = Form::parse(&body);
    let Some((id, request)) = checked_request(&state, &headers, &form, remote, now) else {
        return pages::expired(&state);
    };
    let username = form.one("username").unwrap_or_default();
    let password = form.one("password").unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return pages::login(
            &state,
            id,
            &request,
            Some("Enter your username and password."),
            username,
        );
    }
    if let Some(wait) = remote
        .and_then(|addr| state.address_lockout.locked(addr.ip()))
        .or_else(|| state.client_lockout.locked(username.to_owned()))
    {
        audit(&state, AuditEvent::Login, Outcome::RateLimited, |r| {
            r.reason = Some("locked_out");
            r.subject = Some(username);
            r.client_id = Some(&request.client_id);
            r.remote_addr = remote;
            r.retry_after_seconds = Some(wait.as_secs());
        });
        return pages::locked_out(&state, wait);
    }
    let signed_in = if username.len() > MAX_USERNAME || password.len() > MAX_PASSWORD {
        Ok(None)
    } else {
        state.users.sign_in(username, password).await
    };
    let user = match signed_in {
        Ok(Some(user)) => user,
        Ok(None) => return failed(&state, id, &request, username, remote),
        Err(error) => {
            tracing::error!(target: crate::AUDIT_TARGET, %error, "signing a user in failed");
            return unavailable(&state);
        }
    };
    state.client_lockout.forgive(username.to_owned());
    audit(&state, AuditEvent::Login, Outcome::Allowed, |r| {
        r.subject = Some(&user.subject);
        r.client_id = Some(&request.client_id);
        r.remote_addr = remote;
    });
    // A new session on every sign-in (never reuse one the browser brought: session fixation).
    for old in cookie::values(&state, &headers) {
        state.pending.end_session(old);
    }
    let Some((secret, key)) = state.pending.start_session(user, now) else {
        tracing::warn!(target: crate::AUDIT_TARGET, "too many sessions; refusing a sign-in");
        return unavailable(&state);
    };
    state.pending.bind(id, key, now);
    respond::see_other(&consent_url(id), cookie::set(&state, &secret))
}

/// Ends the browser's session and shows the login page for the same request.
pub(super) async fn sign_out(
    State(state): State<Arc<AsState>>,
    Remote(remote): Remote,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let Some((id, _)) = checked_request(&state, &headers, &form, remote, unix_now()) else {
        return pages::expired(&state);
    };
    for secret in cookie::values(&state, &headers) {
        state.pending.end_session(secret);
    }
    respond::see_other(&consent_url(id), cookie::clear(&state))
}

/// The waiting request a form names, if the form is this server's own (same site, right CSRF
/// token). Refusals are audited.
fn checked_request<'f>(
    state: &AsState,
    headers: &HeaderMap,
    form: &'f Form,
    remote: Option<SocketAddr>,
    now: i64,
) -> Option<(&'f str, PendingRequest)> {
    let reason = if from_another_site(headers) {
        "cross_site"
    } else {
        match (form.one("request"), form.one("csrf")) {
            (Some(id), Some(csrf)) => match state.pending.checked_request(id, csrf, now) {
                Some(request) => return Some((id, request)),
                None => "unknown_request_or_csrf_mismatch",
            },
            _ => "invalid_request",
        }
    };
    audit(state, AuditEvent::Login, Outcome::Denied, |r| {
        r.reason = Some(reason);
        r.remote_addr = remote;
    });
    None
}

/// A wrong username or password: counted, audited, and the login page again.
fn failed(
    state: &AsState,
    id: &str,
    request: &PendingRequest,
    username: &str,
    remote: Option<SocketAddr>,
) -> Response {
    let by_address = remote.and_then(|addr| state.address_lockout.record_failure(addr.ip()));
    let by_name = state.client_lockout.record_failure(username.to_owned());
    audit(state, AuditEvent::Login, Outcome::Denied, |r| {
        r.reason = Some("invalid_credentials");
        r.subject = Some(username);
        r.client_id = Some(&request.client_id);
        r.remote_addr = remote;
    });
    match by_address.or(by_name) {
        Some(wait) => pages::locked_out(state, wait),
        None => pages::login(state, id, request, Some(WRONG_CREDENTIALS), username),
    }
}

/// The page answering a store failure.
fn unavailable(state: &AsState) -> Response {
    pages::error(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        "The server cannot sign you in right now.",
    )
}
