//! What a Client ID Metadata Document must say, and how long it may be cached.

use std::time::Duration;

use serde_json::Value;

use super::super::register::ClientMetadata;
use crate::store::ClientRecord;

/// Why a document was refused: a stable reason code for the audit record and a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// A stable code (`address_refused`, `client_id_mismatch`, ...).
    pub(super) reason: &'static str,
    /// What was wrong, for the audit record's detail.
    pub(super) detail: String,
}

impl Refusal {
    pub(super) fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Validates a fetched document for the client id `url` and makes the client record: the
/// document names itself exactly, has a name and redirect URIs, and asks for no shared secret
/// (a public document cannot hold one).
pub(super) fn client_record(
    url: &str,
    document: &Value,
    server_scopes: &[String],
    now: i64,
) -> Result<ClientRecord, Refusal> {
    // Exact string comparison (CIMD §4.1): no normalisation, so a document cannot claim to be
    // a different, equivalent-looking URL.
    if document.get("client_id").and_then(Value::as_str) != Some(url) {
        return Err(Refusal::new(
            "client_id_mismatch",
            "the document's client_id is not its URL",
        ));
    }
    let metadata = ClientMetadata::parse(document)
        .map_err(|e| Refusal::new("invalid_document", e.description()))?;
    let Some(name) = metadata.client_name.clone() else {
        return Err(Refusal::new("invalid_document", "client_name is required"));
    };
    match metadata.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(_) => {
            return Err(Refusal::new(
                "secret_auth_method",
                "a metadata-document client is public: token_endpoint_auth_method must be none",
            ));
        }
    }
    // Scopes the server does not grant are ignored rather than refused: the document is
    // written for many authorization servers.
    let allowed_scopes = match &metadata.scope {
        Some(requested) => server_scopes
            .iter()
            .filter(|s| requested.contains(s))
            .cloned()
            .collect(),
        None => server_scopes.to_vec(),
    };
    Ok(ClientRecord {
        client_id: url.to_owned(),
        secret_hash: None,
        name,
        redirect_uris: metadata.redirect_uris,
        grant_types: metadata.grant_types,
        allowed_scopes,
        role: None,
        token_endpoint_auth_method: "none".to_owned(),
        tls_client_auth: None,
        metadata_url: Some(url.to_owned()),
        // Recognised by its `metadata_url`: the document, not the client, speaks for it.
        self_registered: false,
        created_at: now,
    })
}

/// How long a fetched document may be served from the store: the response's
/// `Cache-Control: max-age` clamped to `[min, max]`, or `default`. `no-store` and `no-cache`
/// mean the shortest lifetime, not none: every authorization request would otherwise fetch.
pub(super) fn cache_lifetime(
    cache_control: Option<&str>,
    min: Duration,
    default: Duration,
    max: Duration,
) -> Duration {
    let Some(value) = cache_control else {
        return default;
    };
    let mut lifetime = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return min;
        }
        if name.eq_ignore_ascii_case("max-age") {
            lifetime = argument
                .and_then(|a| a.parse::<u64>().ok())
                .map(Duration::from_secs);
        }
    }
    lifetime.unwrap_or(default).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const URL: &str = "https://app.example/oauth/client.json";

    fn scopes() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    fn valid() -> Value {
        json!({
            "client_id": URL,
            "client_name": "Example App",
            "redirect_uris": ["http://127.0.0.1/cb", "https://app.example/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        })
    }

    #[test]
    fn a_valid_document_makes_a_public_client() {
        let record = client_record(URL, &valid(), &scopes(), 7).unwrap();
        assert_eq!(record.client_id, URL);
        assert_eq!(record.metadata_url.as_deref(), Some(URL));
        assert_eq!(record.secret_hash, None);
        assert_eq!(record.name, "Example App");
        assert_eq!(record.token_endpoint_auth_method, "none");
        assert_eq!(record.allowed_scopes, scopes());
        assert_eq!(record.created_at, 7);
        assert_eq!(record.role, None);

        let mut narrowed = valid();
        narrowed["scope"] = json!("b unknown");
        let record = client_record(URL, &narrowed, &scopes(), 7).unwrap();
        assert_eq!(record.allowed_scopes, ["b"]);
    }

    #[test]
    fn invalid_documents_are_refused() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: [(&str, Edit); 9] = [
            (
                "client_id_mismatch",
                Box::new(|d| d["client_id"] = json!("https://evil.example/c")),
            ),
            (
                "client_id_mismatch",
                Box::new(|d| d["client_id"] = json!(format!("{URL}/"))),
            ),
            (
                "client_id_mismatch",
                Box::new(|d| {
                    d.as_object_mut().unwrap().remove("client_id");
                }),
            ),
            (
                "invalid_document",
                Box::new(|d| {
                    d.as_object_mut().unwrap().remove("client_name");
                }),
            ),
            (
                "invalid_document",
                Box::new(|d| {
                    d.as_object_mut().unwrap().remove("redirect_uris");
                }),
            ),
            (
                "invalid_document",
                Box::new(|d| d["redirect_uris"] = json!(["http://evil.example/cb"])),
            ),
            (
                "invalid_document",
                Box::new(|d| d["grant_types"] = json!(["client_credentials"])),
            ),
            (
                "secret_auth_method",
                Box::new(|d| d["token_endpoint_auth_method"] = json!("client_secret_basic")),
            ),
            (
                "secret_auth_method",
                Box::new(|d| d["token_endpoint_auth_method"] = json!("client_secret_post")),
            ),
        ];
        for (reason, edit) in cases {
            let mut document = valid();
            edit(&mut document);
            let refusal = client_record(URL, &document, &scopes(), 0).unwrap_err();
            assert_eq!(refusal.reason, reason, "{document}");
        }
        let refusal = client_record(URL, &json!([URL]), &scopes(), 0).unwrap_err();
        assert_eq!(refusal.reason, "client_id_mismatch");
    }

    #[test]
    fn cache_lifetimes_are_clamped() {
        let min = Duration::from_secs(300);
        let default = Duration::from_secs(3600);
        let max = Duration::from_secs(86_400);
        let life = |v: Option<&str>| cache_lifetime(v, min, default, max).as_secs();
        assert_eq!(life(None), 3600);
        assert_eq!(life(Some("public, max-age=7200")), 7200);
        assert_eq!(life(Some("max-age=\"600\"")), 600);
        assert_eq!(life(Some("max-age=10")), 300);
        assert_eq!(life(Some("max-age=99999999999")), 86_400);
        assert_eq!(life(Some("no-store")), 300);
        assert_eq!(life(Some("max-age=7200, no-cache")), 300);
        assert_eq!(life(Some("max-age=abc")), 3600);
        assert_eq!(life(Some("private")), 3600);
    }
}
