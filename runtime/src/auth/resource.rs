//! The MCP server as an OAuth protected resource: RFC 9728 metadata telling clients which
//! authorization server issues tokens for it, and the challenges that point clients there.

use std::sync::Arc;

use axum::{Json, Router, response::IntoResponse, routing::get};
use http::{HeaderValue, Uri, header};
use serde_json::{Value, json};

use crate::ConfigError;

/// Where the metadata of a protected resource lives (RFC 9728 §3).
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The MCP endpoint's identity as an OAuth protected resource.
///
/// ```
/// use mcp_gatekeeper::ProtectedResource;
/// let resource = ProtectedResource::new("https://mcp.example.com/mcp")?
///     .authorization_server("https://auth.example.com");
/// assert_eq!(
///     resource.metadata_url(),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// # Ok::<(), mcp_gatekeeper::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProtectedResource {
    resource: String,
    origin: String,
    path: String,
    authorization_servers: Vec<String>,
    name: Option<String>,
    documentation: Option<String>,
    scopes: Option<Vec<String>>,
}

impl ProtectedResource {
    /// The canonical URI of the MCP endpoint as clients reach it (`https://host/mcp`): the value
    /// of the metadata's `resource`, and so of the token audience clients request (RFC 8707).
    /// A trailing slash is removed; a query or fragment is refused.
    pub fn new(resource: &str) -> Result<Self, ConfigError> {
        let invalid = |why: &str| ConfigError::InvalidUrl {
            what: "resource URI",
            url: resource.to_owned(),
            reason: why.to_owned(),
        };
        if resource.contains('#') {
            return Err(invalid("a resource URI has no fragment (RFC 8707 §2)"));
        }
        let uri: Uri = resource
            .parse()
            .map_err(|_| invalid("not an absolute URI"))?;
        let scheme = uri
            .scheme_str()
            .filter(|s| *s == "https" || *s == "http")
            .ok_or_else(|| invalid("expected an https:// (or, for local use, http://) URI"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("missing host"))?
            .as_str()
            .to_ascii_lowercase();
        if uri.query().is_some() {
            return Err(invalid("a resource URI has no query"));
        }
        let path = uri.path().trim_end_matches('/').to_owned();
        let origin = format!("{scheme}://{authority}");
        Ok(Self {
            resource: format!("{origin}{path}"),
            origin,
            path,
            authorization_servers: Vec::new(),
            name: None,
            documentation: None,
            scopes: None,
        })
    }

    /// Adds an authorization server (its issuer identifier) that issues tokens for this
    /// resource. Clients use the first one.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// A human-readable name (`resource_name`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A documentation URL (`resource_documentation`).
    pub fn documentation(mut self, url: impl Into<String>) -> Self {
        self.documentation = Some(url.into());
        self
    }

    /// The scopes to advertise (`scopes_supported`) and to name in `401` challenges. By default,
    /// every scope a tool declares.
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The canonical resource URI.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The URL of the metadata document for this resource (path-inserted, RFC 9728 §3.1).
    pub fn metadata_url(&self) -> String {
        format!("{}{WELL_KNOWN}{}", self.origin, self.path)
    }

    /// Adds the authorization servers `authenticators` accept tokens of (an external identity
    /// provider's issuers), after the ones configured, each once.
    pub(crate) fn with_servers_of(
        mut self,
        authenticators: &[Arc<dyn crate::auth::Authenticator>],
    ) -> Self {
        for issuer in authenticators
            .iter()
            .flat_map(|a| a.authorization_servers())
        {
            if !self.authorization_servers.contains(&issuer) {
                self.authorization_servers.push(issuer);
            }
        }
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.authorization_servers.is_empty() {
            return Err(ConfigError::invalid(format!(
                "protected resource `{}` names no authorization server (RFC 9728 requires one)",
                self.resource
            )));
        }
        Ok(())
    }

    fn document(&self, resource: &str, scopes: &[String]) -> Value {
        let mut doc = json!({
            "resource": resource,
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
        });
        if !scopes.is_empty() {
            doc["scopes_supported"] = json!(scopes);
        }
        if let Some(name) = &self.name {
            doc["resource_name"] = json!(name);
        }
        if let Some(url) = &self.documentation {
            doc["resource_documentation"] = json!(url);
        }
        doc
    }

    /// The scopes to advertise, given the tools' declared scopes.
    pub(crate) fn advertised_scopes(&self, declared: &[&str]) -> Vec<String> {
        match &self.scopes {
            Some(scopes) => scopes.clone(),
            None => declared.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The metadata routes: the path-inserted document for the MCP endpoint and, when the
    /// endpoint has a path, the root document for the origin.
    pub(crate) fn routes(&self, scopes: &[String]) -> Router {
        let specific = Arc::new(self.document(&self.resource, scopes));
        let mut router = Router::new().route(
            &format!("{WELL_KNOWN}{}", self.path),
            get(move || serve(specific.clone())),
        );
        if !self.path.is_empty() {
            let root = Arc::new(self.document(&self.origin, scopes));
            router = router.route(WELL_KNOWN, get(move || serve(root.clone())));
        }
        router
    }
}

async fn serve(document: Arc<Value>) -> impl IntoResponse {
    (
        [
            // Browser-based clients (the Inspector's web UI) fetch metadata cross-origin.
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        Json(document.as_ref().clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_and_metadata_url() {
        let r = ProtectedResource::new("HTTPS://MCP.Example.com/mcp/").unwrap();
        assert_eq!(r.resource(), "https://mcp.example.com/mcp");
        assert_eq!(
            r.metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let root = ProtectedResource::new("http://127.0.0.1:3000").unwrap();
        assert_eq!(root.resource(), "http://127.0.0.1:3000");
        assert_eq!(
            root.metadata_url(),
            "http://127.0.0.1:3000/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn bad_resource_uris_are_refused() {
        for bad in [
            "mcp.example.com/mcp",
            "ftp://x/mcp",
            "https://x/mcp#frag",
            "https://x/mcp?a=1",
            "/mcp",
        ] {
            assert!(ProtectedResource::new(bad).is_err(), "{bad}");
        }
        assert!(
            ProtectedResource::new("https://x/mcp")
                .unwrap()
                .check()
                .is_err()
        );
    }
}
