//! Running the configured authenticators in order.

use std::sync::Arc;

use super::{AuthError, AuthErrorKind, AuthRequest, Authenticator, Verdict};
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
                    Verdict::Accept(p) => return accepted(p, request, authenticator.name()),
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
                Verdict::Accept(p) => return accepted(p, request, authenticator.name()),
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

/// An authenticator accepted `principal`: it stands if its token is not bound to a client
/// certificate, or the request came with that certificate.
fn accepted(principal: Arc<Principal>, request: &AuthRequest<'_>, name: &'static str) -> Decision {
    match check_certificate_binding(&principal, request) {
        Ok(()) => decided(Ok(principal), name),
        Err(error) => decided(Err(error), name),
    }
}

/// RFC 8705 §3: a certificate-bound token (`cnf.x5t#S256`, carried as
/// [`Principal::certificate_thumbprint`]) is accepted only on a request whose client
/// certificate (from this server's TLS handshake or a trusted proxy) has that SHA-256
/// thumbprint, compared in constant time. The one place every authenticator's tokens pass, so
/// a bound token from any issuer (this crate's authorization server, a `Jwt` key, an identity
/// provider, an introspection answer) is held to it, on every request: the principal may come
/// from a cache, the certificate comes with the connection. A token without `cnf` costs one
/// branch. Without the `mtls` feature no certificate can come with a request, so every bound
/// token is refused: a bound token that is accepted without its certificate is a bearer token
/// again, which is what binding it was meant to prevent.
fn check_certificate_binding(
    principal: &Principal,
    request: &AuthRequest<'_>,
) -> Result<(), AuthError> {
    let Some(expected) = principal.certificate_thumbprint() else {
        return Ok(());
    };
    #[cfg(feature = "mtls")]
    let presented = request
        .parts
        .extensions
        .get::<Arc<super::ClientCertificate>>()
        .map(|certificate| certificate.thumbprint());
    #[cfg(not(feature = "mtls"))]
    let presented: Option<&[u8; 32]> = {
        let _ = request;
        None
    };
    let description = match presented {
        None => "Token is bound to a client certificate; the request came without one",
        Some(thumbprint) => {
            use subtle::ConstantTimeEq as _;
            if bool::from(thumbprint.ct_eq(expected)) {
                return Ok(());
            }
            "Token is bound to another client certificate"
        }
    };
    let mut error = AuthError::new(AuthErrorKind::InvalidToken, description);
    if let Some(id) = principal.credential_id() {
        error = error.with_credential_id(id);
    }
    Err(error)
}

fn decided(result: Result<Arc<Principal>, AuthError>, name: &'static str) -> Decision {
    Decision {
        result,
        authenticator: Some(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthMethod, auth::Authentication};

    /// Accepts every request as the principal it was made with.
    struct Fixed(Arc<Principal>);

    impl Authenticator for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }

        fn authenticate<'a>(&'a self, _request: &'a AuthRequest<'a>) -> Authentication<'a> {
            Verdict::Accept(self.0.clone()).into()
        }
    }

    fn bound_to(thumbprint: Option<[u8; 32]>) -> Arc<Principal> {
        let mut builder = Principal::builder(AuthMethod::OAuth, "svc").credential_id("jti-1");
        if let Some(thumbprint) = thumbprint {
            builder = builder.certificate_thumbprint(thumbprint);
        }
        Arc::new(builder.build())
    }

    /// What the chain decides for a bearer request made as `principal`, with `parts`.
    fn decide(principal: Arc<Principal>, parts: &http::request::Parts) -> Decision {
        let chain = AuthChain::new(vec![Arc::new(Fixed(principal))], false);
        let request = AuthRequest {
            credential: Some(crate::auth::Credential::Bearer("a.b.c")),
            parts,
        };
        futures::executor::block_on(chain.authenticate(&request))
    }

    #[test]
    fn an_unbound_token_needs_no_certificate() {
        let parts = http::Request::new(()).into_parts().0;
        let decision = decide(bound_to(None), &parts);
        assert_eq!(decision.result.unwrap().subject(), "svc");
    }

    #[test]
    fn a_bound_token_without_a_certificate_is_refused_and_named() {
        let parts = http::Request::new(()).into_parts().0;
        let error = decide(bound_to(Some([7; 32])), &parts).result.unwrap_err();
        assert_eq!(error.kind(), AuthErrorKind::InvalidToken);
        assert_eq!(
            error.description(),
            "Token is bound to a client certificate; the request came without one"
        );
        assert_eq!(error.credential_id(), Some("jti-1"), "for the audit trail");
    }

    #[cfg(feature = "mtls")]
    #[test]
    fn a_bound_token_needs_its_own_certificate() {
        use sha2::{Digest as _, Sha256};

        use crate::auth::{CertificateSource, ClientCertificate};

        let certificate = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let der = rcgen::CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap()
                .der()
                .to_vec();
            let thumbprint: [u8; 32] = Sha256::digest(&der).into();
            let parsed = ClientCertificate::from_der(&der, CertificateSource::Tls).unwrap();
            (thumbprint, Arc::new(parsed))
        };
        let (mine, my_certificate) = certificate("mine.example");
        let (_, other_certificate) = certificate("other.example");
        let with = |certificate: &Arc<ClientCertificate>| {
            let mut parts = http::Request::new(()).into_parts().0;
            parts.extensions.insert(certificate.clone());
            parts
        };
        assert!(
            decide(bound_to(Some(mine)), &with(&my_certificate))
                .result
                .is_ok()
        );
        let error = decide(bound_to(Some(mine)), &with(&other_certificate))
            .result
            .unwrap_err();
        assert_eq!(
            error.description(),
            "Token is bound to another client certificate"
        );
        // A certificate that did not chain to a CA binds as well: holding its key is the point.
        let unverified = Arc::new((*my_certificate).clone().not_ca_verified());
        assert!(
            decide(bound_to(Some(mine)), &with(&unverified))
                .result
                .is_ok()
        );
        // A certificate on an unbound token changes nothing.
        assert!(
            decide(bound_to(None), &with(&other_certificate))
                .result
                .is_ok()
        );
    }
}
