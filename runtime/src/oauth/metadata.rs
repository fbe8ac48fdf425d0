//! Discovery: the RFC 8414 authorization-server metadata and the JWKS.

use std::sync::Arc;

use axum::{Json, Router, extract::State, response::IntoResponse, routing::get};
use http::{HeaderValue, header};
use serde_json::{Value, json};

use super::{AsState, grants, paths};

/// The metadata and JWKS routes. (Not the OpenID Connect discovery location: this server issues
/// no ID tokens, and MCP clients try RFC 8414 first.)
pub(super) fn routes() -> Router<Arc<AsState>> {
    Router::new()
        .route(paths::METADATA, get(metadata))
        .route(paths::JWKS, get(jwks))
}

async fn metadata(State(state): State<Arc<AsState>>) -> impl IntoResponse {
    (cache_for(300), Json(document(&state)))
}

async fn jwks(State(state): State<Arc<AsState>>) -> impl IntoResponse {
    // The keys as the store holds them (read again unless that was done in the last seconds):
    // another server on the store may have installed a key since this one last read them.
    let keys = state
        .keys
        .for_jwks(state.store.as_ref(), super::unix_now())
        .await;
    // Short: a rotation must reach verifiers before the new key signs much.
    (cache_for(300), Json(keys.jwks().as_ref().clone()))
}

fn cache_for(seconds: u32) -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={seconds}"))
            .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
    )]
}

/// The client authentication methods of the token and revocation endpoints: the secret
/// methods and public clients always, RFC 8705's mutual-TLS methods when the certificates they
/// need can reach the server (see [`ClientCertificates`](super::ClientCertificates)).
fn client_auth_methods(state: &AsState) -> Vec<&'static str> {
    let mut methods = vec!["client_secret_basic", "client_secret_post", "none"];
    if state.client_certificates.ca_issued() {
        methods.push("tls_client_auth");
    }
    if state.client_certificates.self_signed() {
        methods.push("self_signed_tls_client_auth");
    }
    methods
}

/// The RFC 8414 document. `issuer` is the configured identifier byte for byte.
pub(super) fn document(state: &AsState) -> Value {
    let mut doc = json!({
        "issuer": state.issuer,
        "authorization_endpoint": state.url(paths::AUTHORIZE),
        "token_endpoint": state.url(paths::TOKEN),
        "jwks_uri": state.url(paths::JWKS),
        "revocation_endpoint": state.url(paths::REVOKE),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            grants::AUTHORIZATION_CODE,
            grants::REFRESH_TOKEN,
            grants::CLIENT_CREDENTIALS,
        ],
        "token_endpoint_auth_methods_supported": client_auth_methods(state),
        "revocation_endpoint_auth_methods_supported": client_auth_methods(state),
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": state.scopes,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": state.fetches_metadata_documents(),
    });
    if state.dynamic_registration {
        doc["registration_endpoint"] = json!(state.url(paths::REGISTER));
    }
    if state.client_certificates.any() {
        // RFC 8705 §3.3: tokens are bound to the certificate a client presents at the token
        // endpoint. Said only when a certificate can arrive there.
        doc["tls_client_certificate_bound_access_tokens"] = json!(true);
    }
    doc
}
