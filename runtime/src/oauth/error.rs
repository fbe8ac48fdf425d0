//! OAuth error responses (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707 §2) and the response headers
//! every JSON endpoint of the authorization server sends.

use std::{borrow::Cow, time::Duration};

use axum::{
    Json,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

/// An error answer of a JSON endpoint (token, registration, revocation).
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: Cow<'static, str>,
    /// The client tried HTTP Basic: a 401 carries a `Basic` challenge (RFC 6749 §5.2).
    basic_challenge: bool,
    retry_after: Option<Duration>,
}

impl OAuthError {
    fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
        }
    }

    /// The request is malformed: a parameter missing, repeated or unsupported.
    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Client authentication failed (unknown client, wrong secret, wrong method). `basic`: the
    /// client used HTTP Basic.
    pub(crate) fn invalid_client(basic: bool) -> Self {
        Self {
            basic_challenge: basic,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        }
    }

    /// The code, refresh token or PKCE verifier is invalid, expired, revoked, or was issued to
    /// another client or redirect URI.
    pub(crate) fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// The client may not use this grant type.
    pub(crate) fn unauthorized_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    /// The grant type is not one this server implements.
    pub(crate) fn unsupported_grant_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported grant types: authorization_code, refresh_token, client_credentials",
        )
    }

    /// A requested scope is unknown or beyond what the client or grant allows.
    pub(crate) fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// The requested `resource` is not one this server issues tokens for (RFC 8707).
    pub(crate) fn invalid_target() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "the requested resource is not served by this authorization server",
        )
    }

    /// RFC 7591: a redirect URI is not acceptable.
    pub(crate) fn invalid_redirect_uri(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
    }

    /// RFC 7591: some other client metadata is not acceptable.
    pub(crate) fn invalid_client_metadata(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            description,
        )
    }

    /// Too many failures: locked out for `wait`.
    pub(crate) fn locked_out(wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many failed attempts; try again later",
            )
        }
    }

    /// The requests of one address (or network) made the server fetch too many client
    /// metadata documents: try again after `wait`.
    #[cfg(feature = "http-client")]
    pub(crate) fn too_many_fetches(wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many client metadata documents fetched for this address; try again later",
            )
        }
    }

    /// The store failed; the request can be retried (never a 500 with internals).
    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the authorization server cannot answer right now; try again",
        )
    }

    /// The RFC 6749 error code.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable description.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!(target: crate::AUDIT_TARGET, %error, "OAuth store failed");
        OAuthError::unavailable()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "error_description": self.description });
        let mut response = (self.status, no_store(), Json(body)).into_response();
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="oauth""#),
            );
        }
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1): token responses must never
/// be cached.
pub(crate) fn no_store() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// A JSON success answer that must not be cached.
pub(crate) fn no_store_json(status: StatusCode, body: Value) -> Response {
    (status, no_store(), Json(body)).into_response()
}

/// CORS for the JSON endpoints: browser-based MCP clients (the Inspector's web UI) call
/// discovery, registration, token and revocation cross-origin. Credentials are never sent by
/// the browser (no cookies are used here), so any origin may read the answers.
pub(crate) async fn cors(request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        add_cors(response.headers_mut());
        response.headers_mut().insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return response;
    }
    let mut response = next.run(request).await;
    add_cors(response.headers_mut());
    response
}

fn add_cors(headers: &mut http::HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, mcp-protocol-version"),
    );
}
