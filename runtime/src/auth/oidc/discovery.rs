//! Finding an identity provider's endpoints from its issuer identifier: OpenID Connect
//! Discovery 1.0, falling back to RFC 8414 authorization server metadata.
//!
//! The document is looked for where each specification puts it, in this order (the issuer's
//! path, when it has one, is `/p`):
//! 1. `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery §4);
//! 2. `{origin}/.well-known/oauth-authorization-server/p` (RFC 8414 §3, path-inserted);
//! 3. `{origin}/.well-known/openid-configuration/p` (RFC 8414 §5's compatibility form).
//!
//! The first document that is found is used, and only if its `issuer` is byte-identical to the
//! configured one (OpenID Connect Discovery §4.3, RFC 8414 §3.3): a document naming another
//! issuer is an inconsistency (or an impersonation attempt), never a fallback.

use serde::Deserialize;
use url::Url;

use super::fetch::{ClientAuthentication, FetchError, Fetcher, check_url};

/// What this crate takes from a provider's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderMetadata {
    /// The key set (`jwks_uri`), when the provider publishes one.
    pub(crate) jwks_uri: Option<Url>,
    /// RFC 7662 (`introspection_endpoint`), when the provider has one.
    pub(crate) introspection_endpoint: Option<Url>,
    /// How to authenticate there: Basic unless the provider lists only `client_secret_post`.
    pub(crate) introspection_auth: ClientAuthentication,
}

/// The members of a metadata document this crate reads; the others are ignored.
#[derive(Deserialize)]
struct Document {
    issuer: String,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    introspection_endpoint: Option<String>,
    #[serde(default)]
    introspection_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// Where the metadata of `issuer` may be, in the order tried.
pub(crate) fn candidate_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let origin = issuer.origin().ascii_serialization();
    let mut urls = vec![format!("{origin}{path}/.well-known/openid-configuration")];
    urls.push(format!(
        "{origin}/.well-known/oauth-authorization-server{path}"
    ));
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/openid-configuration{path}"));
    }
    urls.iter()
        .filter_map(|u| Url::parse(u).ok())
        .collect::<Vec<_>>()
}

/// Why discovery failed, said so that an operator can fix it.
#[derive(Debug)]
pub(crate) struct DiscoveryError(pub(crate) String);

/// Reads `issuer`'s metadata.
pub(crate) async fn discover(
    fetcher: &Fetcher,
    issuer: &str,
) -> Result<ProviderMetadata, DiscoveryError> {
    let issuer_url = Url::parse(issuer)
        .map_err(|_| DiscoveryError(format!("the issuer `{issuer}` is not a URL")))?;
    let mut tried = Vec::new();
    for url in candidate_urls(&issuer_url) {
        match fetcher.get(&url).await {
            Ok(fetched) => return read_document(issuer, &url, &fetched.body),
            // Not there: try the next place. Anything else (the provider down, a broken
            // answer) would fail at the next place too, or hide a real problem behind a 404.
            Err(FetchError::Status(404 | 405 | 410)) => tried.push(url.to_string()),
            Err(error) => return Err(DiscoveryError(format!("{url} {error}"))),
        }
    }
    Err(DiscoveryError(format!(
        "no metadata document found (tried {})",
        tried.join(", ")
    )))
}

/// Checks the document found at `url` and takes what this crate uses from it.
fn read_document(issuer: &str, url: &Url, body: &[u8]) -> Result<ProviderMetadata, DiscoveryError> {
    let document: Document = serde_json::from_slice(body)
        .map_err(|e| DiscoveryError(format!("{url} {}", FetchError::Malformed(e.to_string()))))?;
    if document.issuer != issuer {
        return Err(DiscoveryError(format!(
            "{url} names the issuer `{}`, not `{issuer}`: the configured issuer must be exactly \
             the one the provider states (scheme, host, port, path and trailing slash)",
            document.issuer
        )));
    }
    let endpoint = |what: &str, value: Option<String>| -> Result<Option<Url>, DiscoveryError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let parsed = Url::parse(&value)
            .map_err(|_| DiscoveryError(format!("{url}: `{what}` is not a URL: {value}")))?;
        check_url(&parsed).map_err(|why| DiscoveryError(format!("{url}: `{what}` {why}")))?;
        Ok(Some(parsed))
    };
    let methods = document.introspection_endpoint_auth_methods_supported;
    let post_only = methods.is_some_and(|m| {
        m.iter().any(|m| m == "client_secret_post") && !m.iter().any(|m| m == "client_secret_basic")
    });
    Ok(ProviderMetadata {
        jwks_uri: endpoint("jwks_uri", document.jwks_uri)?,
        introspection_endpoint: endpoint(
            "introspection_endpoint",
            document.introspection_endpoint,
        )?,
        introspection_auth: if post_only {
            ClientAuthentication::Post
        } else {
            ClientAuthentication::Basic
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(issuer: &str) -> Vec<String> {
        candidate_urls(&Url::parse(issuer).unwrap())
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn discovery_looks_where_each_specification_says() {
        assert_eq!(
            urls("https://idp.example.com"),
            [
                "https://idp.example.com/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server",
            ]
        );
        assert_eq!(
            urls("https://idp.example.com:8443/realms/acme/"),
            [
                "https://idp.example.com:8443/realms/acme/.well-known/openid-configuration",
                "https://idp.example.com:8443/.well-known/oauth-authorization-server/realms/acme",
                "https://idp.example.com:8443/.well-known/openid-configuration/realms/acme",
            ]
        );
    }

    #[test]
    fn the_issuer_must_be_byte_identical() {
        let url = Url::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
        let doc = |issuer: &str| {
            serde_json::json!({
                "issuer": issuer,
                "jwks_uri": "https://idp.example.com/keys",
            })
            .to_string()
        };
        let found = read_document(
            "https://idp.example.com",
            &url,
            doc("https://idp.example.com").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            found.jwks_uri.unwrap().as_str(),
            "https://idp.example.com/keys"
        );
        assert_eq!(found.introspection_endpoint, None);
        for other in [
            "https://idp.example.com/",
            "https://IDP.example.com",
            "http://idp.example.com",
            "https://idp.example.com:443",
            "https://evil.example",
        ] {
            let error =
                read_document("https://idp.example.com", &url, doc(other).as_bytes()).unwrap_err();
            assert!(error.0.contains("names the issuer"), "{other}: {}", error.0);
        }
    }

    #[test]
    fn endpoints_must_be_fetchable_urls() {
        let url = Url::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
        for (member, value) in [
            ("jwks_uri", "http://idp.example.com/keys"),
            ("jwks_uri", "not a url"),
            ("introspection_endpoint", "ftp://idp.example.com/i"),
        ] {
            let doc = serde_json::json!({ "issuer": "https://idp.example.com", member: value });
            let error = read_document("https://idp.example.com", &url, doc.to_string().as_bytes())
                .unwrap_err();
            assert!(error.0.contains(member), "{}", error.0);
        }
        let bad_json = read_document("https://idp.example.com", &url, b"{\"issuer\": 5}");
        assert!(bad_json.unwrap_err().0.contains("malformed"));
    }

    #[test]
    fn introspection_uses_post_only_when_basic_is_not_offered() {
        let url = Url::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
        let with = |methods: serde_json::Value| {
            let doc = serde_json::json!({
                "issuer": "https://idp.example.com",
                "introspection_endpoint": "https://idp.example.com/introspect",
                "introspection_endpoint_auth_methods_supported": methods,
            });
            read_document("https://idp.example.com", &url, doc.to_string().as_bytes())
                .unwrap()
                .introspection_auth
        };
        assert_eq!(
            with(serde_json::json!(["client_secret_post"])),
            ClientAuthentication::Post
        );
        assert_eq!(
            with(serde_json::json!([
                "client_secret_post",
                "client_secret_basic"
            ])),
            ClientAuthentication::Basic
        );
        assert_eq!(
            with(serde_json::json!(["private_key_jwt"])),
            ClientAuthentication::Basic
        );
    }
}
