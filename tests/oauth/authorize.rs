//! The authorization endpoint with its login and consent pages, driven like a browser would
//! (forms parsed from the HTML, cookies carried by hand, redirects read from `Location`).

use std::time::Duration;

use http::header;
use mcp_gatekeeper::{
    AuditLog, Lockout,
    store::{CodeRedemption, hash_secret},
};

use super::*;

/// A loopback redirect URI on another port than the registered `APP_REDIRECT` (RFC 8252 §7.3).
const CALLBACK: &str = "http://127.0.0.1:4567/callback";
const STATE: &str = "st-123/é&x";
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// One HTTP answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> Option<url::Url> {
        let location = self.headers.get(header::LOCATION)?.to_str().ok()?;
        url::Url::parse(location).ok()
    }

    /// The client redirect's parameters, every value of `name`.
    fn param(&self, name: &str) -> Vec<String> {
        let url = self.location().expect("an absolute Location");
        url.query_pairs()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    /// The single value of redirect parameter `name`.
    fn one(&self, name: &str) -> String {
        let values = self.param(name);
        assert_eq!(values.len(), 1, "{name} in {:?}", self.location());
        values[0].clone()
    }

    /// `name=value` of the session cookie this answer sets (with a value).
    fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|pair| pair.starts_with("mcp_gatekeeper_session=") && !pair.ends_with('='))
            .map(str::to_owned)
    }

    /// The value of hidden input `name`, parsed the way a headless client does.
    fn hidden(&self, name: &str) -> String {
        let start = format!(r#"<input type="hidden" name="{name}" value=""#);
        let at = self
            .body
            .find(&start)
            .unwrap_or_else(|| panic!("{name} in {}", self.body));
        let rest = &self.body[at + start.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// Asserts the security headers of every answer of the endpoint.
    fn assert_secure(&self) {
        let h = &self.headers;
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with(CSP), "{csp}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    /// An HTML error page, not a redirect.
    fn assert_page(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.headers.get(header::LOCATION).is_none());
        assert!(self.session_cookie().is_none());
        assert!(
            self.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        self.assert_secure();
    }

    /// A 303 back to the client at `CALLBACK` with `error`, the state and `iss`.
    fn assert_error_redirect(&self, h: &OAuthHarness, error: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        let location = self.location().unwrap();
        assert!(location.as_str().starts_with(CALLBACK), "{location}");
        assert_eq!(self.one("error"), error);
        assert!(!self.one("error_description").is_empty());
        assert_eq!(self.one("state"), STATE);
        assert_eq!(self.one("iss"), h.base);
        assert!(self.param("code").is_empty());
        self.assert_secure();
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the server answers");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap_or_default(),
    }
}

/// An authorization request of the desktop app; `changes` replace (`Some`) or remove (`None`)
/// parameters, or add new ones.
fn authorize_url(h: &OAuthHarness, challenge: &str, changes: &[(&str, Option<&str>)]) -> String {
    let mut params: Vec<(&str, Option<&str>)> = vec![
        ("response_type", Some("code")),
        ("client_id", Some(APP_ID)),
        ("redirect_uri", Some(CALLBACK)),
        ("state", Some(STATE)),
        ("code_challenge", Some(challenge)),
        ("code_challenge_method", Some("S256")),
        ("scope", Some("notes:read notes:write")),
        ("resource", Some(&h.url)),
    ];
    for (name, value) in changes {
        match params.iter_mut().find(|(n, _)| n == name) {
            Some(param) => param.1 = *value,
            None => params.push((name, *value)),
        }
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    format!("{}/oauth/authorize?{}", h.base, query.finish())
}

async fn get(h: &OAuthHarness, url: &str, cookie: Option<&str>) -> Answer {
    let mut request = h.http.get(url);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(request).await
}

/// POSTs a form to `action` (a path of the server).
async fn post(
    h: &OAuthHarness,
    action: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> Answer {
    let mut request = h.http.post(format!("{}{action}", h.base)).form(form);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(request).await
}

/// A login page's form.
struct Login {
    request: String,
    csrf: String,
}

async fn login_page(h: &OAuthHarness, url: &str) -> Login {
    let page = get(h, url, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(r#"action="/oauth/authorize/login""#),
        "{}",
        page.body
    );
    Login {
        request: page.hidden("request"),
        csrf: page.hidden("csrf"),
    }
}

async fn submit_login(h: &OAuthHarness, login: &Login, user: &str, password: &str) -> Answer {
    post(
        h,
        "/oauth/authorize/login",
        &[
            ("request", &login.request),
            ("csrf", &login.csrf),
            ("username", user),
            ("password", password),
        ],
        None,
    )
    .await
}

/// A consent page shown to a signed-in browser.
struct Consent {
    request: String,
    csrf: String,
    cookie: String,
    page: Answer,
}

/// Opens `url`, signs in as `user` and follows the redirect to the consent page.
async fn sign_in(h: &OAuthHarness, url: &str, user: &str, password: &str) -> Consent {
    let login = login_page(h, url).await;
    let signed_in = submit_login(h, &login, user, password).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    let cookie = signed_in.session_cookie().expect("a session cookie");
    let set_cookie = signed_in.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    assert!(set_cookie.contains("Path=/oauth"), "{set_cookie}");
    // The request goes on sealed anew, for the session just started.
    let next = signed_in.headers[header::LOCATION].to_str().unwrap();
    assert!(
        next.starts_with("/oauth/authorize/consent?request=") && !next.ends_with(&login.request),
        "{next}"
    );
    let page = get(h, &format!("{}{next}", h.base), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(r#"action="/oauth/authorize/decision""#),
        "{}",
        page.body
    );
    Consent {
        request: page.hidden("request"),
        csrf: page.hidden("csrf"),
        cookie,
        page,
    }
}

async fn decide(h: &OAuthHarness, consent: &Consent, decision: &str, scopes: &[&str]) -> Answer {
    let mut form = vec![
        ("request", consent.request.as_str()),
        ("csrf", consent.csrf.as_str()),
        ("decision", decision),
    ];
    form.extend(scopes.iter().map(|s| ("scope", *s)));
    post(h, "/oauth/authorize/decision", &form, Some(&consent.cookie)).await
}

/// Uses the code up through the store and returns its grant.
async fn redeem(h: &OAuthHarness, code: &str) -> mcp_gatekeeper::store::AuthCodeRecord {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    match h
        .oauth
        .store()
        .redeem_code(hash_secret(code), now)
        .await
        .unwrap()
    {
        CodeRedemption::Redeemed(grant) => grant,
        other => panic!("the code is not redeemable: {other:?}"),
    }
}

/// A successful redirect back to the client: its code.
fn code_of(h: &OAuthHarness, answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert!(answer.location().unwrap().as_str().starts_with(CALLBACK));
    assert_eq!(answer.one("state"), STATE);
    assert_eq!(answer.one("iss"), h.base);
    assert!(answer.param("error").is_empty());
    answer.one("code")
}

#[tokio::test]
async fn the_full_flow_issues_a_code_bound_to_the_request() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let consent = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    let body = &consent.page.body;
    assert!(body.contains("Desktop App"), "{body}");
    assert!(
        body.contains("127.0.0.1:4567"),
        "the redirect host is shown"
    );
    assert!(body.contains(r#"<input type="checkbox" name="scope" value="notes:read" checked>"#));
    assert!(body.contains(r#"<input type="checkbox" name="scope" value="notes:write" checked>"#));
    assert!(body.contains(USER));
    assert!(
        consent.page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .ends_with("form-action 'self' http://127.0.0.1:4567"),
        "the redirect after the decision is allowed by the CSP"
    );

    let approved = decide(&h, &consent, "approve", &["notes:read", "notes:write"]).await;
    let code = code_of(&h, &approved);
    approved.assert_secure();
    let grant = redeem(&h, &code).await;
    assert_eq!(grant.client_id, APP_ID);
    assert_eq!(grant.subject, USER);
    assert_eq!(grant.redirect_uri, CALLBACK);
    assert_eq!(grant.code_challenge, challenge);
    assert_eq!(grant.scope, "notes:read notes:write");
    assert_eq!(grant.resource.as_deref(), Some(h.url.as_str()));
    assert!(!grant.family_id.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn the_code_is_exchanged_at_the_token_endpoint_with_the_verifier() {
    let h = start_oauth(|c| c).await;
    let (verifier, challenge) = pkce();
    let consent = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    let code = code_of(&h, &decide(&h, &consent, "approve", &["notes:read"]).await);
    let token = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("client_id", APP_ID),
        ("resource", h.url.as_str()),
    ];
    let (status, _, body) = h
        .token(&[&token[..], &[("code_verifier", "wrong")]].concat())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The failed attempt used the code up; a new one is exchanged with the right verifier.
    let consent = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    let code = code_of(&h, &decide(&h, &consent, "approve", &["notes:read"]).await);
    let token = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("client_id", APP_ID),
        ("resource", h.url.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, _, body) = h.token(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    assert_eq!(body["scope"], "notes:read");
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_client_gets_an_error_page_never_a_redirect() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let answer = get(
        &h,
        &authorize_url(&h, &challenge, &[("client_id", Some("nobody"))]),
        None,
    )
    .await;
    answer.assert_page(StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("not known"), "{}", answer.body);
    let answer = get(
        &h,
        &authorize_url(&h, &challenge, &[("client_id", None)]),
        None,
    )
    .await;
    answer.assert_page(StatusCode::BAD_REQUEST);
    h.stop().await;
}

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_an_error_page_never_a_redirect() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    for evil in [
        "https://evil.example/cb",
        "http://127.0.0.1:4567/other",
        "http://localhost:4567/callback",
    ] {
        let url = authorize_url(&h, &challenge, &[("redirect_uri", Some(evil))]);
        get(&h, &url, None)
            .await
            .assert_page(StatusCode::BAD_REQUEST);
    }
    // Even when everything else is wrong too: nothing is reported to an unverified URI.
    let url = authorize_url(
        &h,
        &challenge,
        &[
            ("redirect_uri", Some("https://evil.example/cb")),
            ("response_type", Some("token")),
        ],
    );
    get(&h, &url, None)
        .await
        .assert_page(StatusCode::BAD_REQUEST);
    h.stop().await;
}

#[tokio::test]
async fn a_repeated_parameter_gets_an_error_page() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    for name in ["client_id", "redirect_uri", "state", "code_challenge"] {
        let url = authorize_url(&h, &challenge, &[]);
        let value = url::Url::parse(&url)
            .unwrap()
            .query_pairs()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .into_owned();
        let repeated = format!(
            "{url}&{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair(name, &value)
                .finish()
        );
        let answer = get(&h, &repeated, None).await;
        answer.assert_page(StatusCode::BAD_REQUEST);
        assert!(answer.body.contains(name), "{name}: {}", answer.body);
    }
    h.stop().await;
}

#[tokio::test]
async fn pkce_is_required() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&h, &challenge, &[("code_challenge", None)]);
    get(&h, &url, None)
        .await
        .assert_error_redirect(&h, "invalid_request");
    h.stop().await;
}

#[tokio::test]
async fn the_plain_pkce_method_is_refused() {
    let h = start_oauth(|c| c).await;
    let (verifier, _) = pkce();
    let url = authorize_url(&h, &verifier, &[("code_challenge_method", Some("plain"))]);
    get(&h, &url, None)
        .await
        .assert_error_redirect(&h, "invalid_request");
    h.stop().await;
}

#[tokio::test]
async fn the_pkce_method_must_be_named() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&h, &challenge, &[("code_challenge_method", None)]);
    get(&h, &url, None)
        .await
        .assert_error_redirect(&h, "invalid_request");
    // And the challenge must be an S256 one.
    let url = authorize_url(&h, "too-short", &[]);
    get(&h, &url, None)
        .await
        .assert_error_redirect(&h, "invalid_request");
    h.stop().await;
}

#[tokio::test]
async fn only_the_code_response_type_is_supported() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&h, &challenge, &[("response_type", Some("token"))]);
    get(&h, &url, None)
        .await
        .assert_error_redirect(&h, "unsupported_response_type");
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_scope_is_refused() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&h, &challenge, &[("scope", Some("notes:read payroll"))]);
    get(&h, &url, None)
        .await
        .assert_error_redirect(&h, "invalid_scope");
    h.stop().await;
}

#[tokio::test]
async fn a_foreign_resource_is_refused() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let url = authorize_url(
        &h,
        &challenge,
        &[("resource", Some("https://other.example/mcp"))],
    );
    get(&h, &url, None)
        .await
        .assert_error_redirect(&h, "invalid_target");
    h.stop().await;
}

#[tokio::test]
async fn a_client_without_the_code_grant_is_refused() {
    let h = start_oauth(|c| {
        c.client(
            OAuthClient::public("refresh-only")
                .redirect_uris([APP_REDIRECT])
                .grant_types(["refresh_token"]),
        )
    })
    .await;
    let (_, challenge) = pkce();
    let url = authorize_url(&h, &challenge, &[("client_id", Some("refresh-only"))]);
    get(&h, &url, None)
        .await
        .assert_error_redirect(&h, "unauthorized_client");
    h.stop().await;
}

/// Reads the JSON-lines audit file until `count` lines are there or a second has passed.
async fn audit_lines(path: &std::path::Path, count: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..50 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines
}

#[tokio::test]
async fn a_wrong_password_shows_the_login_page_again_and_is_audited() {
    let dir = std::env::temp_dir().join(format!("mcpgk-authorize-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wrong-password.jsonl");
    let _ = std::fs::remove_file(&path);
    let log = AuditLog::json_lines(&path).unwrap();
    let h = start_oauth(|c| c.audit(log)).await;
    let (_, challenge) = pkce();
    let login = login_page(&h, &authorize_url(&h, &challenge, &[])).await;

    let wrong = submit_login(&h, &login, USER, "not-the-password").await;
    let unknown = submit_login(&h, &login, "mallory", "not-the-password").await;
    for answer in [&wrong, &unknown] {
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.session_cookie().is_none());
        assert!(answer.headers.get(header::SET_COOKIE).is_none());
        assert!(answer.headers.get(header::LOCATION).is_none());
        assert!(
            answer.body.contains("Wrong username or password."),
            "{}",
            answer.body
        );
        assert_eq!(
            answer.hidden("request"),
            login.request,
            "the same request, again"
        );
        answer.assert_secure();
    }
    // No user enumeration: an unknown user gets the same page as a wrong password.
    assert_eq!(
        wrong.body.replace(USER, "mallory"),
        unknown.body,
        "the pages differ only by the username typed"
    );

    let lines = audit_lines(&path, 2).await;
    let denied: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "login" && l["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 2, "{lines:?}");
    assert_eq!(denied[0]["reason"], "invalid_credentials");
    assert_eq!(denied[0]["client_id"], APP_ID);
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("not-the-password")
    );

    // The right password still works afterwards.
    let ok = submit_login(&h, &login, USER, PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert!(ok.session_cookie().is_some());
    let lines = audit_lines(&path, 3).await;
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "login" && l["outcome"] == "allowed" && l["subject"] == USER),
        "{lines:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_login_out_even_with_the_right_password() {
    let h = start_oauth(|c| {
        c.lockout(Lockout::new(
            3,
            Duration::from_secs(60),
            Duration::from_secs(300),
        ))
    })
    .await;
    let (_, challenge) = pkce();
    let login = login_page(&h, &authorize_url(&h, &challenge, &[])).await;
    for attempt in 0..2 {
        let answer = submit_login(&h, &login, USER, "wrong-password").await;
        assert_eq!(answer.status, StatusCode::OK, "attempt {attempt}");
    }
    let third = submit_login(&h, &login, USER, "wrong-password").await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    let locked = submit_login(&h, &login, USER, PASSWORD).await;
    locked.assert_page(StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = locked.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    h.stop().await;
}

#[tokio::test]
async fn a_login_with_the_wrong_csrf_token_is_refused() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let login = login_page(&h, &authorize_url(&h, &challenge, &[])).await;
    let forged = Login {
        request: login.request.clone(),
        csrf: "forged".into(),
    };
    submit_login(&h, &forged, USER, PASSWORD)
        .await
        .assert_page(StatusCode::BAD_REQUEST);
    let other = Login {
        request: "no-such-request".into(),
        csrf: login.csrf.clone(),
    };
    submit_login(&h, &other, USER, PASSWORD)
        .await
        .assert_page(StatusCode::BAD_REQUEST);
    h.stop().await;
}

#[tokio::test]
async fn a_cross_site_login_post_is_refused() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let login = login_page(&h, &authorize_url(&h, &challenge, &[])).await;
    let answer = send(
        h.http
            .post(format!("{}/oauth/authorize/login", h.base))
            .header("sec-fetch-site", "cross-site")
            .form(&[
                ("request", login.request.as_str()),
                ("csrf", login.csrf.as_str()),
                ("username", USER),
                ("password", PASSWORD),
            ]),
    )
    .await;
    answer.assert_page(StatusCode::BAD_REQUEST);
    // The same form from the server's own page signs in.
    let answer = send(
        h.http
            .post(format!("{}/oauth/authorize/login", h.base))
            .header("sec-fetch-site", "same-origin")
            .form(&[
                ("request", login.request.as_str()),
                ("csrf", login.csrf.as_str()),
                ("username", USER),
                ("password", PASSWORD),
            ]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    h.stop().await;
}

#[tokio::test]
async fn a_decision_with_the_wrong_csrf_token_gives_no_code() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let mut consent = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    let csrf = std::mem::replace(&mut consent.csrf, "forged".into());
    decide(&h, &consent, "approve", &["notes:read"])
        .await
        .assert_page(StatusCode::BAD_REQUEST);
    // The real page's form still works: the forgery did not decide anything.
    consent.csrf = csrf;
    code_of(&h, &decide(&h, &consent, "approve", &["notes:read"]).await);
    h.stop().await;
}

#[tokio::test]
async fn a_decision_without_a_session_gives_no_code() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let consent = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    let answer = post(
        &h,
        "/oauth/authorize/decision",
        &[
            ("request", &consent.request),
            ("csrf", &consent.csrf),
            ("decision", "approve"),
            ("scope", "notes:read"),
        ],
        None,
    )
    .await;
    answer.assert_page(StatusCode::FORBIDDEN);
    let answer = post(
        &h,
        "/oauth/authorize/decision",
        &[
            ("request", &consent.request),
            ("csrf", &consent.csrf),
            ("decision", "approve"),
        ],
        Some("mcp_gatekeeper_session=forged"),
    )
    .await;
    answer.assert_page(StatusCode::FORBIDDEN);
    h.stop().await;
}

#[tokio::test]
async fn a_decision_with_another_users_session_gives_no_code() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let alice = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    let olivia = sign_in(
        &h,
        &authorize_url(&h, &challenge, &[]),
        OWNER,
        OWNER_PASSWORD,
    )
    .await;
    let mixed = Consent {
        request: alice.request.clone(),
        csrf: alice.csrf.clone(),
        cookie: olivia.cookie.clone(),
        page: alice.page,
    };
    decide(&h, &mixed, "approve", &["notes:read"])
        .await
        .assert_page(StatusCode::BAD_REQUEST);
    // Olivia opening Alice's consent page is asked to sign in, and sees no consent form.
    let page = get(
        &h,
        &format!(
            "{}/oauth/authorize/consent?request={}",
            h.base, alice.request
        ),
        Some(&olivia.cookie),
    )
    .await;
    assert!(
        page.body.contains(r#"action="/oauth/authorize/login""#),
        "{}",
        page.body
    );
    assert!(!page.body.contains("decision"));
    // Alice's own decision is still possible, and issues Alice's code.
    let alice = Consent {
        page,
        cookie: alice.cookie,
        ..mixed
    };
    let grant = redeem(&h, &code_of(&h, &decide(&h, &alice, "approve", &[]).await)).await;
    assert_eq!(grant.subject, USER);
    h.stop().await;
}

#[tokio::test]
async fn a_replayed_decision_gives_no_second_code() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let consent = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    code_of(&h, &decide(&h, &consent, "approve", &["notes:read"]).await);
    decide(&h, &consent, "approve", &["notes:read"])
        .await
        .assert_page(StatusCode::BAD_REQUEST);
    decide(&h, &consent, "deny", &[])
        .await
        .assert_page(StatusCode::BAD_REQUEST);
    h.stop().await;
}

#[tokio::test]
async fn denying_sends_access_denied_with_state_and_iss() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let consent = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    decide(&h, &consent, "deny", &["notes:read"])
        .await
        .assert_error_redirect(&h, "access_denied");
    h.stop().await;
}

#[tokio::test]
async fn unchecked_scopes_are_not_granted_and_unoffered_ones_are_ignored() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let consent = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    let answer = decide(
        &h,
        &consent,
        "approve",
        &["notes:read", "notes:admin", "bogus"],
    )
    .await;
    let grant = redeem(&h, &code_of(&h, &answer)).await;
    assert_eq!(grant.scope, "notes:read");
    h.stop().await;
}

#[tokio::test]
async fn without_a_requested_scope_the_user_is_offered_what_both_may_have() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    // The app may have every scope; Alice may grant notes:read and notes:write only.
    let url = authorize_url(&h, &challenge, &[("scope", None)]);
    let consent = sign_in(&h, &url, USER, PASSWORD).await;
    assert!(consent.page.body.contains(r#"value="notes:read" checked"#));
    assert!(consent.page.body.contains(r#"value="notes:write" checked"#));
    assert!(!consent.page.body.contains("notes:admin"));
    let answer = decide(&h, &consent, "approve", &SCOPES).await;
    let grant = redeem(&h, &code_of(&h, &answer)).await;
    assert_eq!(grant.scope, "notes:read notes:write");
    h.stop().await;
}

#[tokio::test]
async fn every_page_and_redirect_carries_the_security_headers() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&h, &challenge, &[]);
    get(&h, &url, None).await.assert_secure(); // login page
    let consent = sign_in(&h, &url, USER, PASSWORD).await;
    consent.page.assert_secure();
    get(
        &h,
        &authorize_url(&h, &challenge, &[("client_id", Some("x"))]),
        None,
    )
    .await
    .assert_secure(); // error page
    get(
        &h,
        &format!("{}/oauth/authorize/consent?request=nope", h.base),
        None,
    )
    .await
    .assert_secure();
    decide(&h, &consent, "approve", &[]).await.assert_secure();
    h.stop().await;
}

#[tokio::test]
async fn a_signed_in_browser_goes_straight_to_consent_and_can_sign_out() {
    let h = start_oauth(|c| c).await;
    let (_, challenge) = pkce();
    let first = sign_in(&h, &authorize_url(&h, &challenge, &[]), USER, PASSWORD).await;
    code_of(&h, &decide(&h, &first, "approve", &[]).await);

    let page = get(&h, &authorize_url(&h, &challenge, &[]), Some(&first.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(r#"action="/oauth/authorize/decision""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"action="/oauth/authorize/logout""#));
    let (request, csrf) = (page.hidden("request"), page.hidden("csrf"));

    // "Not you?": the session ends and the same request asks for a sign-in.
    let out = post(
        &h,
        "/oauth/authorize/logout",
        &[("request", &request), ("csrf", &csrf)],
        Some(&first.cookie),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let next = out.headers[header::LOCATION].to_str().unwrap();
    let page = get(&h, &format!("{}{next}", h.base), Some(&first.cookie)).await;
    assert!(
        page.body.contains(r#"action="/oauth/authorize/login""#),
        "{}",
        page.body
    );
    let stale = Consent {
        request,
        csrf,
        cookie: first.cookie,
        page,
    };
    decide(&h, &stale, "approve", &[])
        .await
        .assert_page(StatusCode::FORBIDDEN);
    h.stop().await;
}

#[tokio::test]
async fn auto_approve_mode_redirects_with_a_code_at_once() {
    let h = start_oauth(|c| c.insecure_auto_approve(USER)).await;
    let (_, challenge) = pkce();
    let answer = get(&h, &authorize_url(&h, &challenge, &[]), None).await;
    let grant = redeem(&h, &code_of(&h, &answer)).await;
    assert_eq!(grant.subject, USER);
    assert_eq!(grant.client_id, APP_ID);
    assert_eq!(grant.scope, "notes:read notes:write");
    assert_eq!(grant.code_challenge, challenge);
    // Invalid requests are still refused.
    get(
        &h,
        &authorize_url(&h, &challenge, &[("code_challenge", None)]),
        None,
    )
    .await
    .assert_error_redirect(&h, "invalid_request");
    h.stop().await;
}

#[tokio::test]
async fn a_client_name_is_escaped_on_the_pages() {
    let h = start_oauth(|c| {
        c.client(
            OAuthClient::public("scripted")
                .name("<script>alert(1)</script>")
                .redirect_uris([APP_REDIRECT]),
        )
    })
    .await;
    let (_, challenge) = pkce();
    let url = authorize_url(&h, &challenge, &[("client_id", Some("scripted"))]);
    let login = get(&h, &url, None).await;
    assert!(!login.body.contains("<script>"), "{}", login.body);
    assert!(login.body.contains("&lt;script&gt;"));
    let consent = sign_in(&h, &url, USER, PASSWORD).await;
    assert!(
        !consent.page.body.contains("<script>"),
        "{}",
        consent.page.body
    );
    assert!(consent.page.body.contains("&lt;script&gt;alert(1)"));
    h.stop().await;
}
