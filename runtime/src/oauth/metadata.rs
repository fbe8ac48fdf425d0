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
    // Short: a rotation must reach verifiers before the new key signs much.
    (
        cache_for(300),
        Json(state.keys.current().jwks().as_ref().clone()),
    )
}

fn cache_for(seconds: u32) -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={seconds}"))
            .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
    )]
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
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": state.scopes,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": state.fetches_metadata_documents(),
    });
    if state.dynamic_registration {
        doc["registration_endpoint"] = json!(state.url(paths::REGISTER));
    }
    doc
}
