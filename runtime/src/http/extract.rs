//! The caller, for handlers behind a [`GatekeeperLayer`](crate::GatekeeperLayer): [`Principal`]
//! as an axum extractor and as an rmcp tool parameter. Both fail closed: a handler reached
//! without the layer gets no caller, and the request is refused.

use std::sync::{Arc, Once};

use axum::{
    body::Bytes,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header, request::Parts};
use rmcp::{
    ErrorData,
    handler::server::common::{AsRequestContext, FromContextPart},
    model::ErrorCode,
};

use crate::{Principal, principal::Authenticated, tools::codes};

/// The caller the layer put in `extensions`: an `Arc<Principal>`, or, in front of the
/// gatekeeper's own tools, the [`Authenticated`] record holding it.
pub(crate) fn principal_in(extensions: &http::Extensions) -> Option<&Arc<Principal>> {
    extensions.get::<Arc<Principal>>().or_else(|| {
        extensions
            .get::<Arc<Authenticated>>()
            .map(|authenticated| &authenticated.principal)
    })
}

/// Says once per process that a handler was reached without the layer: a configuration
/// mistake, which a client could otherwise make the server log on every request.
fn warn_once(handler: &'static str) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            target: "mcp_gatekeeper::auth",
            handler,
            "a handler asked for the caller, but no GatekeeperLayer ran before it; refusing (put \
             the route behind the layer, e.g. Gatekeeper::merge_authenticated)"
        );
    });
}

/// The caller of an axum handler behind the layer; without the layer, the request is refused
/// with [`MissingPrincipal`] (`401`). `Option<Principal>` never refuses.
///
/// ```
/// use mcp_gatekeeper::Principal;
///
/// async fn stats(caller: Principal) -> String {
///     format!("hello, {}", caller.subject())
/// }
/// # let _ = axum::Router::<()>::new().route("/admin/stats", axum::routing::get(stats));
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = MissingPrincipal;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match principal_in(&parts.extensions) {
            Some(principal) => Ok(Principal::clone(principal)),
            None => {
                warn_once("axum");
                Err(MissingPrincipal)
            }
        }
    }
}

/// The caller, if the layer let the request through (`None` otherwise).
impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(principal_in(&parts.extensions).map(|p| Principal::clone(p)))
    }
}

/// The caller of an rmcp tool (a `#[tool]` method's parameter) served behind the layer: rmcp
/// passes the HTTP request head (`http::request::Parts`) in the request context's extensions,
/// and the layer's caller is in the head's. Without the layer, the call fails with the JSON-RPC
/// error [`codes::UNAUTHENTICATED`].
impl<C: AsRequestContext> FromContextPart<C> for Principal {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        let head = context.as_request_context().extensions.get::<Parts>();
        match head.and_then(|head| principal_in(&head.extensions)) {
            Some(principal) => Ok(Principal::clone(principal)),
            None => {
                warn_once("rmcp");
                Err(ErrorData::new(
                    ErrorCode(codes::UNAUTHENTICATED),
                    "unauthenticated: this server must be mounted behind the gatekeeper's \
                     authentication layer",
                    None,
                ))
            }
        }
    }
}

/// The refusal of a handler that asked for the [`Principal`] when no
/// [`GatekeeperLayer`](crate::GatekeeperLayer) ran before it: `401`, as for a request without
/// a credential, so a route left outside the layer by mistake stays closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingPrincipal;

impl IntoResponse for MissingPrincipal {
    fn into_response(self) -> Response {
        const BODY: &[u8] =
            br#"{"error":"unauthorized","error_description":"Authentication required"}"#;
        (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mcp\""),
                ),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            Bytes::from_static(BODY),
        )
            .into_response()
    }
}

impl std::fmt::Display for MissingPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no authenticated caller: the request did not pass a GatekeeperLayer")
    }
}

impl std::error::Error for MissingPrincipal {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    fn head() -> Parts {
        http::Request::new(()).into_parts().0
    }

    #[tokio::test]
    async fn the_extractor_finds_the_caller_in_either_form() {
        let alice = Arc::new(Principal::builder(AuthMethod::ApiKey, "alice").build());
        let mut parts = head();
        parts.extensions.insert(alice.clone());
        let found = <Principal as FromRequestParts<()>>::from_request_parts(&mut parts, &()).await;
        assert_eq!(found.unwrap().subject(), "alice");

        let mut parts = head();
        parts
            .extensions
            .insert(Arc::new(Authenticated::new(alice.clone())));
        let found = <Principal as FromRequestParts<()>>::from_request_parts(&mut parts, &()).await;
        assert_eq!(found.unwrap().subject(), "alice");
    }

    #[tokio::test]
    async fn without_the_layer_the_extractor_refuses_with_401() {
        let mut parts = head();
        // Only what the layer inserts counts: an `Arc<Principal>` or the gatekeeper's record.
        parts
            .extensions
            .insert(Principal::builder(AuthMethod::ApiKey, "forged").build());
        let refused = <Principal as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err()
            .into_response();
        assert_eq!(refused.status(), 401);
        assert_eq!(
            refused.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"mcp\""
        );
        let optional =
            <Principal as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &()).await;
        assert!(optional.unwrap().is_none());
    }
}
