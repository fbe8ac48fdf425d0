//! Answers sent back to the client at its redirect URI (RFC 6749 §4.1.2): always a 303 (never
//! 307, which would replay the user's credentials to the client, RFC 9700 §4.12), always with
//! `iss` (RFC 9207, so a client talking to several servers can tell who answered).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::pages;
use crate::oauth::AsState;

/// A 303 to the verified `redirect_uri` with `params`, then `state` (if the client sent one)
/// and `iss`, appended to whatever query the URI already has.
pub(super) fn to_client(
    state: &AsState,
    redirect_uri: &str,
    params: &[(&str, &str)],
    client_state: Option<&str>,
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        // Unreachable for a registered URI, but never answer with a broken redirect.
        return pages::error(
            state,
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The application's redirect URI cannot be used.",
        );
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(client_state) = client_state {
            query.append_pair("state", client_state);
        }
        query.append_pair("iss", &state.issuer);
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return pages::error(
            state,
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The application's redirect URI cannot be used.",
        );
    };
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    pages::secure(response.headers_mut(), None);
    response
}

/// A 303 to the client with an RFC 6749 §4.1.2.1 error.
pub(super) fn error_to_client(
    state: &AsState,
    redirect_uri: &str,
    client_state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    to_client(
        state,
        redirect_uri,
        &[("error", error), ("error_description", description)],
        client_state,
    )
}

/// A 303 to a page of this server (after a form POST, so a reload does not repeat it), setting
/// the given cookies.
pub(super) fn see_other<const N: usize>(
    path: &str,
    set_cookies: [Option<HeaderValue>; N],
) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(path) {
        headers.insert(header::LOCATION, location);
    }
    for cookie in set_cookies.into_iter().flatten() {
        headers.append(header::SET_COOKIE, cookie);
    }
    pages::secure(headers, None);
    response
}
