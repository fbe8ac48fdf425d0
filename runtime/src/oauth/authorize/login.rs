//! The login form (`POST /oauth/authorize/login`) and "not you?" (`POST
//! /oauth/authorize/logout`).
//!
//! Every attempt is counted before its password is checked, per (account, source), and given
//! back when it succeeds (see [`crate::auth::lockout`]); a browser that signed in to an account gets
//! a device cookie that keeps it out of the account's slow mode. The answer never says whether
//! the user exists (no user enumeration), and unknown users cost the same argon2 run, under
//! the same bound on parallel checks, as wrong passwords (see `Users::sign_in`).

use std::{net::SocketAddr, sync::Arc};

use axum::{body::Bytes, extract::State, response::Response};
use http::{HeaderMap, StatusCode};

use super::{
    Remote, audit, consent_url, cookie, form::Form, from_another_site, pages,
    pending::PendingRequest, respond,
};
use crate::{
    AuditEvent, Outcome,
    oauth::{AsState, unix_now, users::SignInError},
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
    let (id, request) = match checked_request(&state, &headers, &form, remote, now).await {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
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
    if username.len() > MAX_USERNAME || password.len() > MAX_PASSWORD {
        // No account has such a name or password: refused without a password check, and not
        // remembered (a table keyed by 60 KB names would be an easy way to fill memory).
        audit(&state, AuditEvent::Login, Outcome::Denied, |r| {
            r.reason = Some("invalid_credentials");
            r.subject = Some(username);
            r.client_id = Some(&request.client_id);
            r.remote_addr = remote;
        });
        return pages::login(&state, id, &request, Some(WRONG_CREDENTIALS), "");
    }
    // Counted before the password is checked, so parallel attempts cannot run more checks
    // than the policy allows; given back if the password is right.
    let device = cookie::trusted_device(&state, &headers, username, now);
    let attempt = match state
        .logins
        .begin(username, remote.map(|a| a.ip()), device)
        .await
    {
        Ok(attempt) => attempt,
        Err(wait) => {
            audit(&state, AuditEvent::Login, Outcome::RateLimited, |r| {
                r.reason = Some("locked_out");
                r.subject = Some(username);
                r.client_id = Some(&request.client_id);
                r.remote_addr = remote;
                r.retry_after_seconds = Some(wait.as_secs().max(1));
            });
            return pages::locked_out(&state, wait);
        }
    };
    let user = match state.users.sign_in(username, password).await {
        Ok(Some(user)) => {
            attempt.succeeded().await;
            user
        }
        Ok(None) => {
            let locked = attempt.failed().await;
            return failed(&state, id, &request, username, remote, locked);
        }
        Err(SignInError::Busy(wait)) => {
            attempt.abandon().await;
            audit(&state, AuditEvent::Login, Outcome::RateLimited, |r| {
                r.reason = Some("server_busy");
                r.subject = Some(username);
                r.client_id = Some(&request.client_id);
                r.remote_addr = remote;
                r.retry_after_seconds = Some(wait.as_secs().max(1));
            });
            return busy(&state, wait);
        }
        Err(SignInError::Store(error)) => {
            attempt.abandon().await;
            tracing::error!(target: crate::AUDIT_TARGET, %error, "signing a user in failed");
            return pages::unavailable(&state);
        }
    };
    audit(&state, AuditEvent::Login, Outcome::Allowed, |r| {
        r.subject = Some(&user.subject);
        r.client_id = Some(&request.client_id);
        r.remote_addr = remote;
    });
    // A new session on every sign-in (never reuse one the browser brought: session fixation).
    for old in cookie::values(&state, &headers) {
        if let Err(error) = state.pending.end_session(old).await {
            tracing::error!(target: crate::AUDIT_TARGET, %error, "ending a replaced session failed");
            return pages::unavailable(&state);
        }
    }
    let trusted = cookie::trust_device(&state, &headers, username, now);
    let (secret, key) = match state.pending.start_session(user, now).await {
        Ok(Some(started)) => started,
        Ok(None) => {
            tracing::warn!(target: crate::AUDIT_TARGET, "too many sessions; refusing a sign-in");
            return pages::unavailable(&state);
        }
        Err(error) => {
            tracing::error!(target: crate::AUDIT_TARGET, %error, "starting a session failed");
            return pages::unavailable(&state);
        }
    };
    // The request goes on sealed for the new session: only it sees the consent page.
    let sealed = state.pending.seal(&request, Some(key));
    respond::see_other(
        &consent_url(&sealed),
        [cookie::set(&state, &secret), trusted],
    )
}

/// Ends the browser's session and shows the login page for the same request.
pub(super) async fn sign_out(
    State(state): State<Arc<AsState>>,
    Remote(remote): Remote,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let (id, _) = match checked_request(&state, &headers, &form, remote, unix_now()).await {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
    };
    // Ended in the store, so on every replica at once (not only in this browser).
    for secret in cookie::values(&state, &headers) {
        if let Err(error) = state.pending.end_session(secret).await {
            tracing::error!(target: crate::AUDIT_TARGET, %error, "ending a session failed");
            return pages::unavailable(&state);
        }
    }
    respond::see_other(&consent_url(id), [cookie::clear(&state), None])
}

/// The waiting request a form names, if the form is this server's own (same site, the CSRF
/// token of the login form, or of the consent form shown to the browser's session); else the
/// page to answer with. Refusals are audited. The session is looked up in the store only when
/// the token is not the login form's.
async fn checked_request<'f>(
    state: &AsState,
    headers: &HeaderMap,
    form: &'f Form,
    remote: Option<SocketAddr>,
    now: i64,
) -> Result<(&'f str, PendingRequest), Response> {
    let reason = if from_another_site(headers) {
        "cross_site"
    } else {
        match (form.one("request"), form.one("csrf")) {
            (Some(id), Some(csrf)) => {
                if let Some(request) = state.pending.checked_request(id, csrf, None, now) {
                    return Ok((id, request));
                }
                let session = match cookie::signed_in(state, headers, now).await {
                    Ok(session) => session,
                    Err(error) => {
                        tracing::error!(target: crate::AUDIT_TARGET, %error, "looking up a session failed");
                        return Err(pages::unavailable(state));
                    }
                };
                match session
                    .and_then(|(key, _)| state.pending.checked_request(id, csrf, Some(&key), now))
                {
                    Some(request) => return Ok((id, request)),
                    None => "unknown_request_or_csrf_mismatch",
                }
            }
            _ => "invalid_request",
        }
    };
    audit(state, AuditEvent::Login, Outcome::Denied, |r| {
        r.reason = Some(reason);
        r.remote_addr = remote;
    });
    Err(pages::expired(state))
}

/// A wrong username or password (already counted): audited, and the login page again, or the
/// locked-out page when this failure locked the pair.
fn failed(
    state: &AsState,
    id: &str,
    request: &PendingRequest,
    username: &str,
    remote: Option<SocketAddr>,
    locked: Option<std::time::Duration>,
) -> Response {
    audit(state, AuditEvent::Login, Outcome::Denied, |r| {
        r.reason = Some("invalid_credentials");
        r.subject = Some(username);
        r.client_id = Some(&request.client_id);
        r.remote_addr = remote;
    });
    match locked {
        Some(wait) => pages::locked_out(state, wait),
        None => pages::login(state, id, request, Some(WRONG_CREDENTIALS), username),
    }
}

/// The page answering a sign-in when every password check is taken for longer than the queue
/// may wait.
fn busy(state: &AsState, wait: std::time::Duration) -> Response {
    let mut response = pages::error(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        "The server is checking too many sign-ins right now.",
    );
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(wait.as_secs().max(1)),
    );
    response
}
