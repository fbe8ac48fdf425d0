//! The authorization server under abuse, from several loopback source addresses: password
//! attempts counted before they are checked, lockouts that a guesser cannot turn against the
//! user, public clients that cannot be locked, and authorization requests that cost nothing
//! until someone signs in.

use std::time::Duration;

use futures::StreamExt as _;
use http::header;
use mcp_gatekeeper::{
    Lockout,
    store::{AuthCodeRecord, hash_secret},
};

use super::*;
use crate::common::{client_from, hidden};

const CALLBACK: &str = "http://127.0.0.1:4567/callback";

fn authorize_url(h: &OAuthHarness) -> String {
    let (_, challenge) = pkce();
    format!(
        "{}/oauth/authorize?response_type=code&client_id={APP_ID}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&scope=notes%3Aread",
        h.base,
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
    )
}

/// The login form of a fresh authorization request: `(request, csrf)`.
async fn login_form(h: &OAuthHarness, browser: &reqwest::Client) -> (String, String) {
    let page = browser.get(authorize_url(h)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    (hidden(&page, "request"), hidden(&page, "csrf"))
}

/// Posts the login form; returns the status and the response's cookies (`name=value`).
async fn log_in(
    h: &OAuthHarness,
    browser: &reqwest::Client,
    form: &(String, String),
    user: &str,
    password: &str,
    cookie: Option<&str>,
) -> (u16, Vec<String>) {
    let mut request = browser
        .post(format!("{}/oauth/authorize/login", h.base))
        .form(&[
            ("request", form.0.as_str()),
            ("csrf", form.1.as_str()),
            ("username", user),
            ("password", password),
        ]);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect();
    (response.status().as_u16(), cookies)
}

fn policy(max: u32) -> Lockout {
    Lockout::new(max, Duration::from_secs(60), Duration::from_secs(300))
}

#[tokio::test]
async fn parallel_logins_never_run_more_password_checks_than_the_policy() {
    let h = start_oauth(|c| c.lockout(policy(10))).await;
    let browser = client_from("127.0.0.2");
    let form = login_form(&h, &browser).await;
    // A hundred attempts at once with the same form (a replayed request id and CSRF token),
    // the right password last among them.
    let attempts = (0..100).map(|n| {
        let password = if n == 99 { PASSWORD } else { "wrong-password" };
        let (h, browser, form) = (&h, &browser, &form);
        async move { log_in(h, browser, form, USER, password, None).await.0 }
    });
    let statuses: Vec<u16> = futures::stream::iter(attempts)
        .buffer_unordered(100)
        .collect()
        .await;
    let checked = statuses.iter().filter(|s| **s == 200 || **s == 303).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(checked <= 10, "{checked} passwords checked: {statuses:?}");
    assert_eq!(checked + refused, 100, "{statuses:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_guesser_at_a_username_cannot_stop_the_user_elsewhere() {
    let h = start_oauth(|c| c.lockout(policy(3))).await;
    let guesser = client_from("127.0.0.2");
    let form = login_form(&h, &guesser).await;
    for _ in 0..3 {
        log_in(&h, &guesser, &form, USER, "wrong-password", None).await;
    }
    assert_eq!(
        log_in(&h, &guesser, &form, USER, PASSWORD, None).await.0,
        429
    );
    // Alice at her own address signs in at once.
    let alice = client_from("127.0.0.3");
    let form = login_form(&h, &alice).await;
    assert_eq!(log_in(&h, &alice, &form, USER, PASSWORD, None).await.0, 303);
    // And another user at the guesser's address is not affected either.
    let form = login_form(&h, &guesser).await;
    assert_eq!(
        log_in(&h, &guesser, &form, OWNER, OWNER_PASSWORD, None)
            .await
            .0,
        303
    );
    h.stop().await;
}

#[tokio::test]
async fn guessing_from_several_addresses_slows_new_browsers_but_not_the_users_own() {
    let h = start_oauth(|c| c.lockout(policy(4))).await;
    // Alice signed in before from her browser, which got a device cookie.
    let alice = client_from("127.0.0.5");
    let form = login_form(&h, &alice).await;
    let (status, cookies) = log_in(&h, &alice, &form, USER, PASSWORD, None).await;
    assert_eq!(status, 303);
    let device = cookies
        .iter()
        .find(|c| c.starts_with("mcp_gatekeeper_device="))
        .expect("a device cookie")
        .clone();
    // Guessers from two addresses: each stays under its own lock, together they put the
    // account in slow mode.
    for source in ["127.0.0.2", "127.0.0.3"] {
        let guesser = client_from(source);
        let form = login_form(&h, &guesser).await;
        for _ in 0..2 {
            log_in(&h, &guesser, &form, USER, "wrong-password", None).await;
        }
    }
    // A browser that never signed in to the account waits...
    let stranger = client_from("127.0.0.4");
    let form = login_form(&h, &stranger).await;
    assert_eq!(
        log_in(&h, &stranger, &form, USER, PASSWORD, None).await.0,
        429
    );
    // ...Alice's own browser does not, even from another address.
    for source in ["127.0.0.5", "127.0.0.6"] {
        let browser = client_from(source);
        let form = login_form(&h, &browser).await;
        let (status, _) = log_in(&h, &browser, &form, USER, PASSWORD, Some(&device)).await;
        assert_eq!(status, 303, "from {source}");
    }
    // A device cookie vouches only for its own account.
    let form = login_form(&h, &stranger).await;
    let (status, _) = log_in(
        &h,
        &stranger,
        &form,
        USER,
        PASSWORD,
        Some("mcp_gatekeeper_device=AAAA"),
    )
    .await;
    assert_eq!(status, 429);
    h.stop().await;
}

#[tokio::test]
async fn a_public_client_cannot_be_locked_out() {
    let h = start_oauth(|c| c.lockout(policy(3))).await;
    let attacker = client_from("127.0.0.2");
    // Its id is public; anyone can present secrets for it.
    for _ in 0..10 {
        let status = attacker
            .post(format!("{}/oauth/token", h.base))
            .basic_auth(APP_ID, Some("guessed-secret-0000"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
            .send()
            .await
            .unwrap()
            .status();
        assert!(status == 401 || status == 429, "{status}");
    }
    // The app's users, even behind the attacker's address, still exchange codes.
    let code = "a-code-of-the-desktop-app-0123456789";
    let (verifier, challenge) = pkce();
    h.oauth
        .store()
        .put_code(AuthCodeRecord {
            code_hash: hash_secret(code),
            client_id: APP_ID.into(),
            subject: USER.into(),
            redirect_uri: CALLBACK.into(),
            code_challenge: challenge,
            scope: "notes:read".into(),
            resource: Some(h.url.clone()),
            family_id: "family-of-the-desktop-app".into(),
            expires_at: i64::try_from(crate::common::now()).unwrap() + 300,
        })
        .await
        .unwrap();
    let response = attacker
        .post(format!("{}/oauth/token", h.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", &verifier),
            ("client_id", APP_ID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    h.stop().await;
}

#[tokio::test]
async fn a_flood_of_authorization_requests_leaves_sign_in_working_for_others() {
    let h = start_oauth(|c| c).await;
    let flooder = client_from("127.0.0.2");
    let url = authorize_url(&h);
    // More than the 10,000 waiting requests that used to fill the server's table.
    let statuses: Vec<u16> = futures::stream::iter(0..10_500)
        .map(|_| {
            let (flooder, url) = (&flooder, &url);
            async move { flooder.get(url).send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "flood answered");
    let user = client_from("127.0.0.3");
    let form = login_form(&h, &user).await;
    assert_eq!(log_in(&h, &user, &form, USER, PASSWORD, None).await.0, 303);
    h.stop().await;
}
