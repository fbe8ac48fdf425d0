//! The session cookie of a signed-in user. It holds only a random id; the session itself stays
//! on the server (see [`super::pending`]).
//!
//! `HttpOnly` (no script reads it) and `SameSite=Lax` (not sent with another site's form POST,
//! so a cross-site request cannot decide for the user; still sent when the client's link brings
//! the user back). On an https issuer it carries the `__Host-` prefix with `Secure; Path=/`,
//! which stops a sibling subdomain from planting or overwriting it; on a loopback http issuer it
//! is scoped to `/oauth`.

use http::{HeaderMap, HeaderValue, header};

use super::pending::{SESSION_LIFETIME, Session, SessionKey};
use crate::oauth::AsState;

/// The cookie name on http (loopback) issuers.
const NAME: &str = "mcp_gatekeeper_session";
/// The cookie name on https issuers.
const HOST_NAME: &str = "__Host-mcp_gatekeeper_session";

/// Whether the issuer is served over https (then the cookie is `Secure` and `__Host-`).
fn secure(state: &AsState) -> bool {
    state.issuer.starts_with("https://")
}

/// The cookie name for this issuer.
fn name(state: &AsState) -> &'static str {
    if secure(state) { HOST_NAME } else { NAME }
}

/// The cookie attributes for this issuer.
fn attributes(state: &AsState) -> &'static str {
    if secure(state) {
        "HttpOnly; SameSite=Lax; Secure; Path=/"
    } else {
        "HttpOnly; SameSite=Lax; Path=/oauth"
    }
}

/// The `Set-Cookie` value that signs the browser in with session `secret`.
pub(super) fn set(state: &AsState, secret: &str) -> Option<HeaderValue> {
    let cookie = format!(
        "{}={secret}; Max-Age={SESSION_LIFETIME}; {}",
        name(state),
        attributes(state)
    );
    HeaderValue::from_str(&cookie).ok()
}

/// The `Set-Cookie` value that removes the cookie.
pub(super) fn clear(state: &AsState) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{}=; Max-Age=0; {}",
        name(state),
        attributes(state)
    ))
    .ok()
}

/// The values of every session cookie the request carries (a browser may send several with the
/// same name, e.g. for different paths).
pub(super) fn values<'a>(state: &AsState, headers: &'a HeaderMap) -> Vec<&'a str> {
    let name = name(state);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| v)
        .collect()
}

/// The live session of the browser, if it is signed in.
pub(super) fn signed_in(
    state: &AsState,
    headers: &HeaderMap,
    now: i64,
) -> Option<(SessionKey, Session)> {
    values(state, headers)
        .into_iter()
        .find_map(|secret| state.pending.session(secret, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::{authorize::test_state, users::SignedIn};

    #[tokio::test]
    async fn https_issuers_use_a_host_only_secure_cookie() {
        let state = test_state("https://auth.example.com").await;
        let set = set(&state, "s3cret").unwrap();
        assert_eq!(
            set,
            "__Host-mcp_gatekeeper_session=s3cret; Max-Age=3600; HttpOnly; SameSite=Lax; Secure; Path=/"
        );
        let local = test_state("http://127.0.0.1:1").await;
        assert_eq!(
            super::set(&local, "s3cret").unwrap(),
            "mcp_gatekeeper_session=s3cret; Max-Age=3600; HttpOnly; SameSite=Lax; Path=/oauth"
        );
        assert!(
            clear(&local)
                .unwrap()
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }

    #[tokio::test]
    async fn the_session_is_read_from_any_cookie_header() {
        let state = test_state("http://127.0.0.1:1").await;
        let user = SignedIn {
            subject: "alice".into(),
            role: None,
            scopes: None,
        };
        let (secret, key) = state.pending.start_session(user, 1).unwrap();
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1".parse().unwrap());
        headers.append(
            header::COOKIE,
            format!("mcp_gatekeeper_session=stale; mcp_gatekeeper_session={secret}; b=2")
                .parse()
                .unwrap(),
        );
        assert_eq!(values(&state, &headers), ["stale", secret.as_str()]);
        let (found, session) = signed_in(&state, &headers, 2).unwrap();
        assert_eq!((found, session.subject.as_str()), (key, "alice"));
        // The https cookie name is not accepted on an http issuer, nor the other way round.
        let mut other = HeaderMap::new();
        other.insert(
            header::COOKIE,
            format!("__Host-mcp_gatekeeper_session={secret}")
                .parse()
                .unwrap(),
        );
        assert!(signed_in(&state, &other, 2).is_none());
    }
}
