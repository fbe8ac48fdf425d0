//! Running the configured authenticators in order.

use std::sync::Arc;

use super::{AuthError, AuthRequest, Authenticator, Verdict};
use crate::Principal;

/// The ordered list of authenticators of a server.
#[derive(Clone, Default)]
pub(crate) struct AuthChain {
    authenticators: Arc<[Arc<dyn Authenticator>]>,
    /// Whether a request with no credential at all gets an anonymous principal instead of `401`.
    allow_anonymous: bool,
    anonymous: Option<Arc<Principal>>,
}

/// Who decided, for the audit trail.
pub(crate) struct Decision {
    pub(crate) result: Result<Arc<Principal>, AuthError>,
    pub(crate) authenticator: Option<&'static str>,
}

impl AuthChain {
    pub(crate) fn new(authenticators: Vec<Arc<dyn Authenticator>>, allow_anonymous: bool) -> Self {
        Self {
            authenticators: authenticators.into(),
            allow_anonymous,
            anonymous: allow_anonymous.then(|| Arc::new(Principal::anonymous())),
        }
    }

    pub(crate) async fn authenticate(&self, request: &AuthRequest<'_>) -> Decision {
        if request.credential.is_none() {
            // Schemes such as mTLS authenticate without a header credential, so they are
            // still asked; only when none of them recognises the request is it anonymous.
            for authenticator in self.authenticators.iter() {
                match authenticator.authenticate(request).verdict().await {
                    Verdict::Pass => continue,
                    Verdict::Accept(p) => return decided(Ok(p), authenticator.name()),
                    Verdict::Reject(e) => return decided(Err(e), authenticator.name()),
                }
            }
            return Decision {
                result: match (&self.anonymous, self.allow_anonymous) {
                    (Some(anonymous), true) => Ok(anonymous.clone()),
                    _ => Err(AuthError::missing()),
                },
                authenticator: None,
            };
        }
        for authenticator in self.authenticators.iter() {
            match authenticator.authenticate(request).verdict().await {
                Verdict::Pass => continue,
                Verdict::Accept(p) => return decided(Ok(p), authenticator.name()),
                Verdict::Reject(e) => return decided(Err(e), authenticator.name()),
            }
        }
        // A credential no authenticator recognises is invalid, never anonymous.
        Decision {
            result: Err(AuthError::invalid_token()),
            authenticator: None,
        }
    }
}

fn decided(result: Result<Arc<Principal>, AuthError>, name: &'static str) -> Decision {
    Decision {
        result,
        authenticator: Some(name),
    }
}
