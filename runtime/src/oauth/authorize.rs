//! The authorization endpoint (RFC 6749 §4.1 with PKCE, as OAuth 2.1 and the MCP spec require)
//! with its login and consent pages.
//!
//! `GET /oauth/authorize` validates the request and seals it into the page (encrypted and
//! authenticated with a key derived from a secret in the store, at most ten minutes; nothing is
//! stored for a request no one has signed in for), then shows the consent page to a signed-in
//! browser or the login page. The login form signs the user in (attempts counted before the
//! password is checked, per account and source; see [`crate::auth::lockout`]), starts a session
//! in the store (cookie: a random id only), trusts the browser for that account (device cookie)
//! and sends it to the consent page with the request sealed for the new session. The consent
//! form's decision uses the request up (recorded in the store): approve stores an authorization
//! code (only its hash) and sends the browser back to the client with it; deny sends
//! `access_denied`. Everything a later step needs is in the browser or the store, so replicas
//! sharing a store may each serve any step.
//!
//! Forms are protected three ways: a per-request CSRF token, the session cookie being
//! `SameSite=Lax` (not sent by another site's form POST), and Fetch Metadata (a browser's
//! `Sec-Fetch-Site: cross-site` POST is refused, which also stops login CSRF).

mod consent;
mod cookie;
mod form;
mod login;
mod pages;
mod pending;
mod request;
mod respond;
mod sealed;
mod start;

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, FromRequestParts},
    routing::{get, post},
};
use http::{HeaderMap, request::Parts};

use super::{AsState, paths};
use crate::{AuditEvent, AuditRecord, Outcome};

/// The login form's target.
const LOGIN: &str = "/oauth/authorize/login";
/// The consent page (`?request=<id>`); without a session it shows the login page.
const CONSENT: &str = "/oauth/authorize/consent";
/// The consent form's target.
const DECISION: &str = "/oauth/authorize/decision";
/// The "not you?" form's target.
const LOGOUT: &str = "/oauth/authorize/logout";

pub(crate) use pending::PendingRequests;
pub(crate) use sealed::{SECRET_NAME, Secrets};

/// The endpoint's routes.
pub(super) fn routes() -> Router<Arc<AsState>> {
    Router::new()
        .route(paths::AUTHORIZE, get(start::authorize))
        .route(LOGIN, post(login::sign_in))
        .route(CONSENT, get(consent::show))
        .route(DECISION, post(consent::decide))
        .route(LOGOUT, post(login::sign_out))
}

/// The peer's address, when the server was started with connect info.
pub(super) struct Remote(pub(super) Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        ))
    }
}

/// Whether a browser says this form POST comes from another site's page (Fetch Metadata). Such
/// a POST is never legitimate: the forms are served by this origin. Clients that send no such
/// header (non-browsers, old browsers) rely on the CSRF token and the `SameSite` cookie.
fn from_another_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| site == "cross-site" || site == "same-site")
}

/// An audit record of this endpoint.
fn audit<'a>(
    state: &AsState,
    event: AuditEvent,
    outcome: Outcome,
    fill: impl FnOnce(&mut AuditRecord<'a>),
) {
    let mut record = AuditRecord::new(event, outcome);
    fill(&mut record);
    state.audit.record(&record);
}

/// The consent page's URL for the sealed request `sealed`.
fn consent_url(sealed: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("request", sealed)
        .finish();
    format!("{CONSENT}?{query}")
}

/// A real server state (keys, store, audit) for the unit tests of the pages.
#[cfg(test)]
pub(super) async fn test_state(issuer: &str) -> Arc<AsState> {
    super::AuthorizationServer::new(issuer)
        .resource(format!("{issuer}/mcp"))
        .build()
        .await
        .expect("test server builds")
        .state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_live_under_the_authorization_endpoint() {
        for path in [LOGIN, CONSENT, DECISION, LOGOUT] {
            assert!(path.starts_with(paths::AUTHORIZE), "{path}");
            // The session cookie of a loopback issuer is scoped to /oauth.
            assert!(path.starts_with("/oauth/"), "{path}");
        }
        assert_eq!(consent_url("a b"), "/oauth/authorize/consent?request=a+b");
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!from_another_site(&headers));
        headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(!from_another_site(&headers));
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(from_another_site(&headers));
    }
}
