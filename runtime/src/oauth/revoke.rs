//! Token revocation (RFC 7009): a client ends one of its refresh tokens (and with it the whole
//! grant) or one of its access tokens.
//!
//! The answer is `200` with an empty body whether or not anything was revoked: a token that is
//! unknown, malformed, expired or another client's revokes nothing, and the caller cannot tell
//! (RFC 7009 §2.2), so the endpoint cannot be used to probe tokens.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::post,
};
use http::StatusCode;
use jsonwebtoken::Validation;
use serde::Deserialize;

use super::{
    AsState, clients,
    error::{OAuthError, no_store},
    paths,
    token::{audited_by_authenticate, peer, read_form},
    unix_now,
};
use crate::{
    AuditEvent, AuditRecord, Outcome,
    store::{ClientRecord, hash_secret},
};

/// The endpoint's routes.
pub(super) fn routes() -> Router<Arc<AsState>> {
    Router::new().route(paths::REVOKE, post(revoke_endpoint))
}

/// What a revocation request achieved, for the audit trail only (the client learns nothing).
enum Revoked {
    /// A refresh token's family (the whole grant).
    Grant {
        /// The revoked family.
        family_id: String,
    },
    /// One access token.
    AccessToken {
        /// The revoked token's `jti`.
        jti: String,
    },
    /// Nothing: the token is not one this client may revoke, or is already useless.
    Nothing {
        /// Why, as an audit reason code.
        reason: &'static str,
    },
}

/// `POST /oauth/revoke`.
async fn revoke_endpoint(State(state): State<Arc<AsState>>, request: Request) -> Response {
    let now = unix_now();
    let peer = peer(&request);
    let mut client_id = None;
    match revoke(&state, request, peer, now, &mut client_id).await {
        Ok(revoked) => {
            audit(&state, peer, client_id.as_deref(), &revoked);
            (StatusCode::OK, no_store()).into_response()
        }
        Err(error) => {
            if !audited_by_authenticate(&error) {
                let mut record = AuditRecord::new(AuditEvent::Revocation, Outcome::Denied);
                record.reason = Some(error.code());
                record.client_id = client_id.as_deref();
                record.remote_addr = peer;
                state.audit.record(&record);
            }
            error.into_response()
        }
    }
}

/// Reads the request, authenticates the client and revokes the token if it is the client's.
async fn revoke(
    state: &AsState,
    request: Request,
    peer: Option<SocketAddr>,
    now: i64,
    client_id: &mut Option<String>,
) -> Result<Revoked, OAuthError> {
    let form = read_form(request).await?;
    let params = &form.params;
    let client = clients::authenticate(
        state,
        &form.headers,
        form.presented_client(),
        peer.map(|p| p.ip()),
        AuditEvent::Revocation,
    )
    .await?;
    *client_id = Some(client.client_id.clone());
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    // The hint only orders the look-ups; an unknown hint is ignored (RFC 7009 §2.1).
    let access_first = params.get("token_type_hint") == Some("access_token");
    let revoked = if access_first {
        match revoke_access_token(state, &client, token, now).await? {
            Revoked::Nothing { .. } => revoke_refresh_token(state, &client, token, now).await?,
            revoked => revoked,
        }
    } else {
        match revoke_refresh_token(state, &client, token, now).await? {
            Revoked::Nothing { .. } => revoke_access_token(state, &client, token, now).await?,
            revoked => revoked,
        }
    };
    Ok(revoked)
}

/// Revokes a refresh token of `client` by revoking its family (RFC 7009 §2.1: revoking a refresh
/// token ends the grant, so the grant's access tokens are refused too).
async fn revoke_refresh_token(
    state: &AsState,
    client: &ClientRecord,
    token: &str,
    now: i64,
) -> Result<Revoked, OAuthError> {
    let hash = hash_secret(token);
    let Some(record) = state.store.get_refresh(hash).await? else {
        return Ok(Revoked::Nothing {
            reason: "unknown_token",
        });
    };
    if record.client_id != client.client_id {
        return Ok(Revoked::Nothing {
            reason: "token_of_another_client",
        });
    }
    state.store.revoke_refresh(hash, now).await?;
    Ok(Revoked::Grant {
        family_id: record.family_id,
    })
}

/// The claims of our access tokens that revocation needs.
#[derive(Deserialize)]
struct AccessClaims {
    /// Must be this server.
    iss: String,
    /// Must be the client asking for revocation.
    client_id: String,
    /// What is revoked.
    jti: String,
    /// Until when the revocation must be remembered.
    exp: i64,
}

/// Revokes an access token of `client` by its `jti`, until it expires anyway.
async fn revoke_access_token(
    state: &AsState,
    client: &ClientRecord,
    token: &str,
    now: i64,
) -> Result<Revoked, OAuthError> {
    let Some(claims) = verify_own_token(state, token, now).await? else {
        return Ok(Revoked::Nothing {
            reason: "unknown_token",
        });
    };
    if claims.client_id != client.client_id {
        return Ok(Revoked::Nothing {
            reason: "token_of_another_client",
        });
    }
    if claims.exp <= now {
        // Refused by every resource server already: nothing to remember.
        return Ok(Revoked::Nothing {
            reason: "expired_token",
        });
    }
    state
        .store
        .revoke_access_token(&claims.jti, claims.exp)
        .await?;
    Ok(Revoked::AccessToken { jti: claims.jti })
}

/// The claims of `token` if it is a JWT this server signed (with a key it still publishes) as
/// this issuer. Expiry is not checked: the caller decides what an expired token means. A key
/// this server does not know yet (installed by another server on the store since it read the
/// keys) is looked for in the store, as by the resource server's verifier; `Err` when the
/// store cannot say.
async fn verify_own_token(
    state: &AsState,
    token: &str,
    now: i64,
) -> Result<Option<AccessClaims>, OAuthError> {
    let Some(kid) = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid) else {
        return Ok(None);
    };
    let mut keys = state.keys.current();
    if !keys.publishes(&kid) && super::keys::worth_reloading_for(token, &kid, &state.issuer, now) {
        let since = tokio::time::Instant::now();
        keys = state
            .keys
            .reloaded_since(state.store.as_ref(), since, &kid, now)
            .await?;
    }
    Ok(verify_with(state, &keys, &kid, token))
}

/// The claims of `token`, verified with key `kid` of `keys`.
fn verify_with(
    state: &AsState,
    keys: &super::keys::KeySet,
    kid: &str,
    token: &str,
) -> Option<AccessClaims> {
    let (algorithm, key) = keys.decoding_key(kid)?;
    // Only the key's own algorithm: a header naming another (`none`, HS256) fails.
    let mut validation = Validation::new(algorithm.to_jsonwebtoken());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
        .ok()?
        .claims;
    (claims.iss == state.issuer && !claims.jti.is_empty()).then_some(claims)
}

/// Audits what a successful request did.
fn audit(state: &AsState, peer: Option<SocketAddr>, client_id: Option<&str>, revoked: &Revoked) {
    let mut record = match revoked {
        Revoked::Grant { family_id } => {
            let mut record = AuditRecord::new(AuditEvent::Revocation, Outcome::Allowed);
            record.detail = Some("refresh_token");
            record.credential_id = Some(family_id);
            record
        }
        Revoked::AccessToken { jti } => {
            let mut record = AuditRecord::new(AuditEvent::Revocation, Outcome::Allowed);
            record.detail = Some("access_token");
            record.credential_id = Some(jti);
            record
        }
        // Answered 200 (RFC 7009 §2.2), but nothing was revoked: worth a look when it is another
        // client's token.
        Revoked::Nothing { reason } => {
            let mut record = AuditRecord::new(AuditEvent::Revocation, Outcome::Denied);
            record.reason = Some(reason);
            record
        }
    };
    record.client_id = client_id;
    record.remote_addr = peer;
    state.audit.record(&record);
}
