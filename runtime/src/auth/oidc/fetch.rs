//! Outbound HTTP to an identity provider: its discovery document, its key set, its
//! introspection endpoint.
//!
//! The provider is configured by the operator, so unlike a client metadata document (which
//! whoever sends an authorization request chooses) it may live on a private network; what is
//! bounded is the work and memory a provider, or anyone between us and it, can cost us: every
//! exchange has a timeout, every answer a size cap, and a redirect is followed only to the same
//! origin, at most [`MAX_REDIRECTS`] times. Plain `http://` is accepted only for loopback hosts
//! (a provider started on this machine for local testing).

use std::{fmt, net::IpAddr, time::Duration};

use reqwest::{header, redirect};
use url::Url;

use crate::ConfigError;

/// Redirects followed, all to the origin first asked.
const MAX_REDIRECTS: usize = 3;

/// Why an exchange with the provider failed (for logs and the audit trail; no secret in it).
#[derive(Debug, Clone)]
pub(crate) enum FetchError {
    /// No answer: connection refused, DNS, TLS, timeout.
    Unreachable(String),
    /// An answer with an unexpected status.
    Status(u16),
    /// An answer larger than the cap.
    TooLarge(usize),
    /// An answer that is not the JSON expected.
    Malformed(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Unreachable(why) => write!(f, "unreachable ({why})"),
            FetchError::Status(status) => write!(f, "answered HTTP {status}"),
            FetchError::TooLarge(cap) => write!(f, "answered more than {cap} bytes"),
            FetchError::Malformed(why) => write!(f, "answered malformed JSON ({why})"),
        }
    }
}

/// An answer: its body and how long it may be cached (`Cache-Control: max-age`).
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    pub(crate) max_age: Option<Duration>,
}

/// How a client authenticates to the introspection endpoint (RFC 7662 §2.1, with the methods
/// of RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuthentication {
    /// HTTP Basic (`client_secret_basic`), the method every provider supports.
    #[default]
    Basic,
    /// The credentials in the form body (`client_secret_post`).
    Post,
}

/// The HTTP client of one [`Oidc`](super::Oidc) authenticator.
pub(crate) struct Fetcher {
    http: reqwest::Client,
    max_bytes: usize,
}

impl Fetcher {
    /// A client whose every exchange ends within `timeout` and reads at most `max_bytes`.
    pub(crate) fn new(timeout: Duration, max_bytes: usize) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .redirect(redirect::Policy::custom(|attempt| {
                let same_origin = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.origin() == attempt.url().origin());
                if same_origin && attempt.previous().len() <= MAX_REDIRECTS {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("mcp-gatekeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, max_bytes })
    }

    /// `GET url`, expecting `200` and JSON.
    pub(crate) async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        let request = self
            .http
            .get(url.clone())
            .header(header::ACCEPT, "application/json");
        self.exchange(request).await
    }

    /// `POST url` with a form body, authenticated as `client_id` with `secret` by `method`.
    pub(crate) async fn post_form(
        &self,
        url: &Url,
        client_id: &str,
        secret: &str,
        method: ClientAuthentication,
        form: &[(&str, &str)],
    ) -> Result<Fetched, FetchError> {
        let request = self
            .http
            .post(url.clone())
            .header(header::ACCEPT, "application/json");
        let request = match method {
            // RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic encoding.
            ClientAuthentication::Basic => request
                .basic_auth(form_encode(client_id), Some(form_encode(secret)))
                .form(form),
            ClientAuthentication::Post => {
                let mut fields = Vec::with_capacity(form.len() + 2);
                fields.extend_from_slice(form);
                fields.push(("client_id", client_id));
                fields.push(("client_secret", secret));
                request.form(&fields)
            }
        };
        self.exchange(request).await
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Fetched, FetchError> {
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let max_age = response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, max_age })
    }
}

/// Why reqwest failed, without the URL (which the caller's log line names) and without a
/// chain of sources longer than a line.
fn unreachable(error: reqwest::Error) -> FetchError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_redirect() {
        "redirected too often"
    } else if error.is_body() || error.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    FetchError::Unreachable(what.to_owned())
}

/// `max-age` of a `Cache-Control` value; `no-store` and `no-cache` count as zero (the caller
/// clamps to its shortest lifetime).
pub(crate) fn max_age(cache_control: &str) -> Option<Duration> {
    let mut found = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            found = value
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    found
}

/// RFC 6749 Appendix B: `application/x-www-form-urlencoded` of one value.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Whether `url` may be fetched: `https://`, or `http://` on a loopback host (a provider on
/// this machine, for local testing); no user info, no fragment.
pub(crate) fn check_url(url: &Url) -> Result<(), &'static str> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user info");
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment");
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err("must be https:// (http:// only for a loopback host, for local testing)"),
        _ => Err("must be an https:// URL"),
    }
}

/// `localhost`, or a loopback address.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_and_no_store_is_zero() {
        assert_eq!(max_age("max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(
            max_age("public, MAX-AGE=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("max-age=60, no-cache"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=-1"), None);
        assert_eq!(max_age("max-age=lots"), None);
    }

    #[test]
    fn only_https_or_loopback_http_is_fetched() {
        for ok in [
            "https://idp.example.com/realms/x",
            "http://127.0.0.1:8080/",
            "http://127.0.0.9/",
            "http://[::1]:80/x",
            "http://LOCALHOST:1/",
        ] {
            assert_eq!(check_url(&Url::parse(ok).unwrap()), Ok(()), "{ok}");
        }
        for bad in [
            "http://idp.example.com/",
            "http://10.0.0.1/",
            "ftp://idp.example.com/",
            "https://user:pw@idp.example.com/",
            "https://idp.example.com/#frag",
            "file:///etc/passwd",
        ] {
            assert!(check_url(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(form_encode("a b:c/d+e%"), "a+b%3Ac%2Fd%2Be%25");
    }
}
