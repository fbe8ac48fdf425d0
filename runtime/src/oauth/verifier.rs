//! The resource-server side: accepting the access tokens this authorization server issued.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use super::{AsState, issue::family_of, keys, unix_now};
use crate::{
    Principal,
    auth::{
        AuthError, AuthRequest, Authentication, Authenticator, Credential, Jwt, Verdict,
        VerifiedTokens,
    },
};

/// Authenticates `Authorization: Bearer` access tokens issued by an
/// [`OAuthServer`](super::OAuthServer) for one resource. Make one with
/// [`OAuthServer::authenticator`](super::OAuthServer::authenticator).
///
/// A JWT whose `kid` is one of the server's published keys is decided here: accepted when the
/// signature verifies, `iss` is the server, `aud` is this resource (RFC 8707: a token for another
/// resource is refused), it has not expired, and neither the token (`jti`, RFC 7009) nor its
/// grant (a replayed code, a reused refresh token) was revoked. Other credentials are passed on
/// to the next authenticator.
///
/// A token naming this server as issuer under a `kid` it does not know makes it read the keys
/// from the store again first (at most once per 2 s, shared by the requests waiting): another
/// server sharing the store may have installed the key since, and its tokens are accepted
/// from the first one. When the store cannot be read, such a token is refused with `503`.
#[derive(Clone)]
pub struct OAuthTokens {
    state: Arc<AsState>,
    resource: String,
    /// One verifier per `kid`, built on first use (keys only ever get added under new kids).
    verifiers: Arc<RwLock<HashMap<String, Arc<Jwt>>>>,
    /// Tokens accepted before, by any key: looked up before the token's header is parsed.
    verified: Arc<VerifiedTokens>,
}

impl fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthTokens")
            .field("issuer", &self.state.issuer)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl OAuthTokens {
    pub(crate) fn new(state: Arc<AsState>, resource: String) -> Self {
        Self {
            state,
            resource,
            verifiers: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// The resource (audience) accepted.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The verifier for key `kid`, if the server publishes it.
    fn verifier(&self, kid: &str) -> Option<Arc<Jwt>> {
        let keys = self.state.keys.current();
        if !keys.publishes(kid) {
            return None; // retired and dropped, or never ours
        }
        if let Some(jwt) = self
            .verifiers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
        {
            return Some(jwt.clone());
        }
        let (algorithm, key) = keys.decoding_key(kid)?;
        let jwt = Arc::new(
            Jwt::from_decoding_key(algorithm, key)
                .issuer(self.state.issuer.clone())
                .audience(self.resource.clone())
                .sharing_cache(self.verified.clone()),
        );
        self.verifiers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kid.to_owned(), jwt.clone());
        Some(jwt)
    }

    /// Whether the token or its grant was revoked. Fails closed: a store error refuses.
    async fn check_not_revoked(&self, principal: Arc<Principal>) -> Verdict {
        let Some(jti) = principal.credential_id() else {
            return Verdict::Reject(AuthError::invalid_token());
        };
        let store = &self.state.store;
        let revoked = match store.is_access_token_revoked(jti).await {
            Ok(true) => true,
            Ok(false) => match family_of(jti) {
                Some(family) => match store.is_family_revoked(family).await {
                    Ok(revoked) => revoked,
                    Err(error) => return store_failed(error, jti),
                },
                None => false,
            },
            Err(error) => return store_failed(error, jti),
        };
        if revoked {
            tracing::debug!(target: "mcp_gatekeeper::auth", "revoked access token refused");
            return Verdict::Reject(AuthError::invalid_token().with_credential_id(jti));
        }
        Verdict::Accept(principal)
    }
}

/// The store could not say whether the token was revoked: the token is refused (`503`, a
/// retry may succeed; never accepted unchecked), and the audit trail says why.
fn store_failed(error: crate::store::StoreError, jti: &str) -> Verdict {
    tracing::error!(target: crate::AUDIT_TARGET, %error, jti, "revocation check failed; token refused");
    Verdict::Reject(
        AuthError::unavailable("The token's revocation status cannot be checked right now")
            .with_credential_id(jti),
    )
}

impl Authenticator for OAuthTokens {
    fn name(&self) -> &'static str {
        "oauth"
    }

    fn authenticate<'a>(&'a self, request: &'a AuthRequest<'a>) -> Authentication<'a> {
        let Some(credential @ Credential::Bearer(token)) = request.credential else {
            return Verdict::Pass.into();
        };
        if !credential.looks_like_jwt() {
            return Verdict::Pass.into();
        }
        // A token seen before skips the header parse and the signature check; revocation is
        // still checked on every request.
        if let Some(principal) = self.verified.get(token, unix_now() as u64) {
            return Authentication::Pending(Box::pin(self.check_not_revoked(principal)));
        }
        let Some(kid) = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid) else {
            return Verdict::Pass.into();
        };
        if let Some(verifier) = self.verifier(&kid) {
            return match verifier.verify_cached(token) {
                Ok(principal) => {
                    Authentication::Pending(Box::pin(self.check_not_revoked(principal)))
                }
                Err(error) => Verdict::Reject(error).into(),
            };
        }
        // A key this server does not know (yet): another server on the store may have
        // installed it since the keys were read. Read them again — at most once per
        // cool-down, shared by every request that asks meanwhile — if the token may be ours.
        if !keys::worth_reloading_for(token, &kid, &self.state.issuer, unix_now()) {
            return Verdict::Pass.into();
        }
        let since = tokio::time::Instant::now();
        Authentication::Pending(Box::pin(async move {
            let reloaded = self
                .state
                .keys
                .reloaded_since(self.state.store.as_ref(), since, &kid, unix_now())
                .await;
            if let Err(error) = reloaded {
                tracing::error!(
                    target: crate::AUDIT_TARGET,
                    %error,
                    kid,
                    "signing keys could not be read for a token with an unknown key; token refused"
                );
                return Verdict::Reject(AuthError::unavailable(
                    "The token's signing key cannot be checked right now",
                ));
            }
            let Some(verifier) = self.verifier(&kid) else {
                return Verdict::Pass; // not ours after all
            };
            match verifier.verify_cached(token) {
                Ok(principal) => self.check_not_revoked(principal).await,
                Err(error) => Verdict::Reject(error),
            }
        }))
    }

    fn configured_roles(&self) -> Vec<String> {
        self.state.configured_roles.clone()
    }
}
