//! The HTML pages (login, consent, errors) and the headers every answer of the authorization
//! endpoint carries.
//!
//! Templates are embedded in the binary and parsed once. Every value is auto-escaped (the
//! templates are named `*.html`): client names and URIs come from strangers through dynamic
//! registration and metadata documents. The pages need no script and load nothing external;
//! the Content-Security-Policy forbids both, and framing (clickjacking, RFC 9700 §4.16).

use std::{sync::LazyLock, time::Duration};

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use minijinja::{Environment, UndefinedBehavior, context};
use serde::Serialize;

use super::pending::{PendingRequest, Session, SessionKey};
use crate::oauth::{AsState, redirect};

/// The templates, by name.
const TEMPLATES: [(&str, &str); 4] = [
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("consent.html", include_str!("../templates/consent.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// The parsed templates; auto-escaping is on for `*.html`.
static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A misspelled variable is an error (caught by the tests), not silently empty text.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    for (name, source) in TEMPLATES {
        if let Err(error) = env.add_template(name, source) {
            tracing::error!(template = name, %error, "an authorization page template is invalid");
        }
    }
    env
});

/// The CSP of every page. `form-action 'self'` keeps forms on this server; the consent page
/// adds the client's redirect origin, because browsers apply `form-action` to the redirect that
/// answers the form too.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// Sets the security headers of every answer: no framing, no caching (pages carry CSRF tokens;
/// redirects carry codes), no referrer (codes and request ids stay out of other sites' logs).
/// `form_action` is an extra origin the page's forms may end up at.
pub(super) fn secure(headers: &mut HeaderMap, form_action: Option<&str>) {
    let csp = form_action
        .and_then(|origin| HeaderValue::from_str(&format!("{CSP} {origin}")).ok())
        .unwrap_or(HeaderValue::from_static(CSP));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// What every page shows: the server it belongs to.
fn server(state: &AsState) -> String {
    redirect::host_of(&state.issuer)
}

/// Renders `template` into an answer with the security headers.
fn page(
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
    form_action: Option<&str>,
) -> Response {
    let rendered = ENVIRONMENT
        .get_template(template)
        .and_then(|t| t.render(ctx));
    let mut response = match rendered {
        Ok(body) => (status, Html(body)).into_response(),
        Err(error) => {
            tracing::error!(template, %error, "rendering an authorization page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>The page cannot be shown.</p>"),
            )
                .into_response()
        }
    };
    secure(response.headers_mut(), form_action);
    response
}

/// An error page.
pub(super) fn error(state: &AsState, status: StatusCode, title: &str, message: &str) -> Response {
    let hint =
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            "Wait a moment, then start again from the application."
        } else {
            "Return to the application and start again. If this keeps happening, contact the \
         application's developer."
        };
    page(
        status,
        "error.html",
        context! {
            server => server(state),
            issuer => state.issuer,
            title,
            message,
            hint,
        },
        None,
    )
}

/// The page answering a request whose id is unknown, expired or already decided.
pub(super) fn expired(state: &AsState) -> Response {
    error(
        state,
        StatusCode::BAD_REQUEST,
        "This request has expired",
        "The sign-in request is no longer valid: it was already answered, or it waited too long.",
    )
}

/// The page answering a store failure (the sign-in cannot go on now).
pub(super) fn unavailable(state: &AsState) -> Response {
    error(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        "The server cannot sign you in right now.",
    )
}

/// The page answering too many failed sign-ins.
pub(super) fn locked_out(state: &AsState, wait: Duration) -> Response {
    let mut response = error(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        "Too many failed sign-ins. Sign-in is paused for a while.",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(wait.as_secs().max(1)),
    );
    response
}

/// The login page for the sealed request `sealed`, with an error message after a failed
/// attempt.
pub(super) fn login(
    state: &AsState,
    sealed: &str,
    request: &PendingRequest,
    failure: Option<&str>,
    username: &str,
) -> Response {
    page(
        StatusCode::OK,
        "login.html",
        context! {
            server => server(state),
            issuer => state.issuer,
            request => sealed,
            csrf => state.pending.login_csrf(request),
            client_name => request.client_name,
            redirect_host => redirect::host_of(&request.redirect_uri),
            error => failure,
            username,
        },
        None,
    )
}

/// The consent page's context.
#[derive(Serialize)]
struct Consent<'a> {
    server: String,
    issuer: &'a str,
    request: &'a str,
    csrf: String,
    client_name: &'a str,
    client_id_url: Option<&'a str>,
    redirect_host: String,
    loopback_warning: bool,
    subject: &'a str,
    scopes: Vec<&'a str>,
}

/// The consent page for the sealed request `sealed` (sealed for the session `key`), shown to
/// the signed-in `session`.
pub(super) fn consent(
    state: &AsState,
    sealed: &str,
    request: &PendingRequest,
    key: &SessionKey,
    session: &Session,
) -> Response {
    let redirect = url::Url::parse(&request.redirect_uri).ok();
    let origin = redirect.as_ref().map(|u| u.origin().ascii_serialization());
    let ctx = Consent {
        server: server(state),
        issuer: &state.issuer,
        request: sealed,
        csrf: state.pending.consent_csrf(request, key),
        client_name: &request.client_name,
        client_id_url: request.client_id_url.as_deref(),
        redirect_host: redirect::host_of(&request.redirect_uri),
        // A metadata document is published by whoever controls its URL, but a loopback redirect
        // can be claimed by any program on the user's machine (CIMD §6): say so.
        loopback_warning: request.client_id_url.is_some()
            && redirect
                .as_ref()
                .and_then(|u| u.host_str())
                .is_some_and(redirect::is_loopback_host),
        subject: &session.subject,
        scopes: request.offered(session.scopes.as_deref()),
    };
    page(
        StatusCode::OK,
        "consent.html",
        minijinja::Value::from_serialize(&ctx),
        origin.as_deref().filter(|o| *o != "null"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(ENVIRONMENT.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn content_security_policy_adds_only_a_valid_origin() {
        let mut headers = HeaderMap::new();
        secure(&mut headers, Some("http://127.0.0.1:4567"));
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            format!("{CSP} http://127.0.0.1:4567")
        );
        secure(&mut headers, Some("bad\nvalue"));
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn session(scopes: Option<Vec<String>>) -> Session {
        Session {
            subject: "alice".into(),
            scopes,
        }
    }

    #[tokio::test]
    async fn the_consent_page_escapes_and_lists_what_is_offered() {
        let state = crate::oauth::authorize::test_state("http://127.0.0.1:1").await;
        let request = PendingRequest::example(
            "<script>alert(1)</script>",
            None,
            "https://app.example/cb",
            1,
        );
        let key = [7; 32];
        let response = consent(
            &state,
            "req-1",
            &request,
            &key,
            &session(Some(vec!["b".into()])),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            format!("{CSP} https://app.example")
        );
        let html = body(response).await;
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(html.contains(r#"<form method="post" action="/oauth/authorize/decision">"#));
        assert!(html.contains(r#"<input type="hidden" name="request" value="req-1">"#));
        let csrf = format!(
            r#"<input type="hidden" name="csrf" value="{}">"#,
            state.pending.consent_csrf(&request, &key)
        );
        assert!(html.contains(&csrf));
        assert!(html.contains(r#"<input type="checkbox" name="scope" value="b" checked>"#));
        assert!(!html.contains(r#"value="a""#), "not a scope of the user");
        assert!(html.contains(r#"<button type="submit" name="decision" value="approve""#));
        assert!(html.contains(r#"<button type="submit" name="decision" value="deny""#));
        assert!(html.contains("app.example"));
        assert!(!html.contains("local address"));
        assert!(!html.contains("identified by"));
    }

    #[tokio::test]
    async fn a_metadata_document_client_shows_its_url_and_a_loopback_warning() {
        let state = crate::oauth::authorize::test_state("http://127.0.0.1:1").await;
        let request = PendingRequest::example(
            "Tool",
            Some("https://tool.example/client.json"),
            "http://127.0.0.1:7777/cb",
            1,
        );
        let html = body(consent(&state, "r", &request, &[7; 32], &session(None))).await;
        assert!(html.contains("identified by"), "{html}");
        assert!(html.contains("https:&#x2f;&#x2f;tool.example&#x2f;client.json"));
        assert!(html.contains("on your own computer"));
        assert!(html.contains("127.0.0.1:7777"));
        assert!(html.contains(r#"value="a" checked"#) && html.contains(r#"value="b" checked"#));
    }

    #[tokio::test]
    async fn the_login_page_keeps_the_username_escaped() {
        let state = crate::oauth::authorize::test_state("https://auth.example.com").await;
        let request = PendingRequest::example("App", None, "https://app.example/cb", 1);
        let response = login(&state, "r", &request, Some("Wrong."), "\"><b>x");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let html = body(response).await;
        assert!(html.contains(r#"<form method="post" action="/oauth/authorize/login">"#));
        assert!(html.contains(r#"value="&quot;&gt;&lt;b&gt;x""#), "{html}");
        assert!(html.contains("Wrong."));
        assert!(html.contains("auth.example.com"));
    }
}
