//! The session cookie of a signed-in user. It holds only a random id; the session itself stays
//! in the store (see [`super::pending`]), where every replica finds it.
//!
//! `HttpOnly` (no script reads it) and `SameSite=Lax` (not sent with another site's form POST,
//! so a cross-site request cannot decide for the user; still sent when the client's link brings
//! the user back). On an https issuer it carries the `__Host-` prefix with `Secure; Path=/`,
//! which stops a sibling subdomain from planting or overwriting it; on a loopback http issuer it
//! is scoped to `/oauth`.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;

use super::pending::{SESSION_LIFETIME, Session, SessionKey};
use crate::{oauth::AsState, store::StoreError};

/// The cookie name on http (loopback) issuers.
const NAME: &str = "mcp_gatekeeper_session";
/// The cookie name on https issuers.
const HOST_NAME: &str = "__Host-mcp_gatekeeper_session";
/// Most session cookies of one request looked up (or ended): a browser sends one, or a few
/// for different paths; each costs a store round trip, so a request carrying hundreds must not
/// cost hundreds.
const MAX_SESSION_COOKIES: usize = 4;

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

/// The values of the session cookies the request carries (a browser may send several with the
/// same name, e.g. for different paths), the first [`MAX_SESSION_COOKIES`] of them.
pub(super) fn values<'a>(state: &AsState, headers: &'a HeaderMap) -> Vec<&'a str> {
    let mut values = named(headers, name(state));
    values.truncate(MAX_SESSION_COOKIES);
    values
}

/// The values of every cookie called `name`.
fn named<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
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
///
/// # Errors
/// When the store cannot say (the pages then answer `503`: a browser that is signed in must
/// not be shown the login page as if it were not).
pub(super) async fn signed_in(
    state: &AsState,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<(SessionKey, Session)>, StoreError> {
    for secret in values(state, headers) {
        if let Some(found) = state.pending.session(secret, now).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// Device cookies
// ---------------------------------------------------------------------------------------------

/// The device cookie's name on http (loopback) issuers.
const DEVICE_NAME: &str = "mcp_gatekeeper_device";
/// The device cookie's name on https issuers.
const DEVICE_HOST_NAME: &str = "__Host-mcp_gatekeeper_device";
/// How long a browser stays trusted for an account after signing in to it (seconds).
pub(super) const DEVICE_LIFETIME: i64 = 30 * 86_400;
/// Most accounts one browser is trusted for (the most recent sign-ins).
const MAX_DEVICE_ENTRIES: usize = 4;
/// Bytes of an entry: when it was issued (8) and its tag (16).
const ENTRY_LEN: usize = 24;

/// The tag of a device-cookie entry for `account` issued at `issued_at`: only this server can
/// make one, and it names neither the account nor anything else readable.
fn device_tag(state: &AsState, account: &str, issued_at: i64) -> [u8; 16] {
    let account = account.to_ascii_lowercase();
    let mac =
        state
            .pending
            .secrets()
            .mac(&[b"device", account.as_bytes(), &issued_at.to_be_bytes()]);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&mac[..16]);
    tag
}

/// The entries of the request's device cookies that are not too old: (issued at, tag).
fn device_entries(state: &AsState, headers: &HeaderMap, now: i64) -> Vec<(i64, [u8; 16])> {
    let name = if secure(state) {
        DEVICE_HOST_NAME
    } else {
        DEVICE_NAME
    };
    named(headers, name)
        .into_iter()
        .flat_map(|value| value.split('.'))
        .filter_map(|entry| URL_SAFE_NO_PAD.decode(entry).ok())
        .filter(|bytes| bytes.len() == ENTRY_LEN)
        .map(|bytes| {
            let mut issued = [0u8; 8];
            issued.copy_from_slice(&bytes[..8]);
            let mut tag = [0u8; 16];
            tag.copy_from_slice(&bytes[8..]);
            (i64::from_be_bytes(issued), tag)
        })
        .filter(|(issued_at, _)| *issued_at <= now && now - issued_at < DEVICE_LIFETIME)
        .take(MAX_DEVICE_ENTRIES)
        .collect()
}

/// The id of this browser for `account` (see [`crate::auth::lockout`]), if its device cookie proves
/// an earlier successful sign-in to the account.
pub(super) fn trusted_device(
    state: &AsState,
    headers: &HeaderMap,
    account: &str,
    now: i64,
) -> Option<[u8; 16]> {
    device_entries(state, headers, now)
        .into_iter()
        .find(|(issued_at, tag)| bool::from(device_tag(state, account, *issued_at).ct_eq(tag)))
        .map(|(_, tag)| tag)
}

/// The `Set-Cookie` value that trusts this browser for `account` from `now` on, keeping the
/// browser's other recent entries.
pub(super) fn trust_device(
    state: &AsState,
    headers: &HeaderMap,
    account: &str,
    now: i64,
) -> Option<HeaderValue> {
    let mut entries = vec![(now, device_tag(state, account, now))];
    entries.extend(
        device_entries(state, headers, now)
            .into_iter()
            .filter(|(issued_at, tag)| {
                !bool::from(device_tag(state, account, *issued_at).ct_eq(tag))
            })
            .take(MAX_DEVICE_ENTRIES - 1),
    );
    let value: Vec<String> = entries
        .iter()
        .map(|(issued_at, tag)| {
            let mut bytes = [0u8; ENTRY_LEN];
            bytes[..8].copy_from_slice(&issued_at.to_be_bytes());
            bytes[8..].copy_from_slice(tag);
            URL_SAFE_NO_PAD.encode(bytes)
        })
        .collect();
    let (name, attributes) = if secure(state) {
        (
            DEVICE_HOST_NAME,
            "HttpOnly; SameSite=Strict; Secure; Path=/",
        )
    } else {
        (DEVICE_NAME, "HttpOnly; SameSite=Strict; Path=/oauth")
    };
    HeaderValue::from_str(&format!(
        "{name}={}; Max-Age={DEVICE_LIFETIME}; {attributes}",
        value.join(".")
    ))
    .ok()
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
        state
            .store
            .put_user(crate::store::conformance::fixtures::user("alice"))
            .await
            .unwrap();
        let user = SignedIn {
            subject: "alice".into(),
            role: None,
            scopes: None,
        };
        let now = crate::oauth::unix_now();
        let (secret, key) = state
            .pending
            .start_session(user, now)
            .await
            .unwrap()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1".parse().unwrap());
        headers.append(
            header::COOKIE,
            format!("mcp_gatekeeper_session=stale; mcp_gatekeeper_session={secret}; b=2")
                .parse()
                .unwrap(),
        );
        assert_eq!(values(&state, &headers), ["stale", secret.as_str()]);
        let (found, session) = signed_in(&state, &headers, now).await.unwrap().unwrap();
        assert_eq!((found, session.subject.as_str()), (key, "alice"));
        // Only the first few cookies are looked up.
        let mut many = HeaderMap::new();
        let stale = "mcp_gatekeeper_session=stale; ".repeat(MAX_SESSION_COOKIES);
        many.insert(
            header::COOKIE,
            format!("{stale}mcp_gatekeeper_session={secret}")
                .parse()
                .unwrap(),
        );
        assert_eq!(values(&state, &many).len(), MAX_SESSION_COOKIES);
        assert!(signed_in(&state, &many, now).await.unwrap().is_none());
        // The https cookie name is not accepted on an http issuer, nor the other way round.
        let mut other = HeaderMap::new();
        other.insert(
            header::COOKIE,
            format!("__Host-mcp_gatekeeper_session={secret}")
                .parse()
                .unwrap(),
        );
        assert!(signed_in(&state, &other, now).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn device_cookies_vouch_for_their_account_only() {
        let state = test_state("http://127.0.0.1:1").await;
        let now = 1_000_000;
        let none = HeaderMap::new();
        assert!(trusted_device(&state, &none, "alice", now).is_none());
        let set = trust_device(&state, &none, "Alice", now).unwrap();
        let set = set.to_str().unwrap();
        assert!(set.starts_with("mcp_gatekeeper_device="), "{set}");
        assert!(
            set.contains("HttpOnly; SameSite=Strict; Path=/oauth"),
            "{set}"
        );
        assert!(!set.to_lowercase().contains("alice"));
        let value = set.split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value.parse().unwrap());
        let id = trusted_device(&state, &headers, "alice", now + 5).unwrap();
        assert!(trusted_device(&state, &headers, "bob", now + 5).is_none());
        assert!(
            trusted_device(&state, &headers, "alice", now + DEVICE_LIFETIME).is_none(),
            "expired"
        );
        // A second account joins the first; both stay trusted.
        let both = trust_device(&state, &headers, "bob", now + 10).unwrap();
        let both = both.to_str().unwrap().split(';').next().unwrap().to_owned();
        headers.insert(header::COOKIE, both.parse().unwrap());
        assert_eq!(
            trusted_device(&state, &headers, "alice", now + 11),
            Some(id)
        );
        assert!(trusted_device(&state, &headers, "bob", now + 11).is_some());
        // Another server's (or process's) cookie proves nothing.
        let other = test_state("http://127.0.0.1:1").await;
        assert!(trusted_device(&other, &headers, "alice", now + 11).is_none());
        let https = test_state("https://auth.example.com").await;
        let set = trust_device(&https, &none, "alice", now).unwrap();
        assert!(
            set.to_str()
                .unwrap()
                .starts_with("__Host-mcp_gatekeeper_device=")
        );
    }
}
