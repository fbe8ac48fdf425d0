//! The MCP endpoint as one tower service: the `Host`/`Origin` check, authentication, then rmcp.
//!
//! A hand-written service rather than `axum::middleware::from_fn` around rmcp's service: the
//! middleware boxes the inner route a second time and clones it (with rmcp's configuration) on
//! every request, while here a request costs one reference-count increment and one boxed
//! future before rmcp's own [`StreamableHttpService::handle`] runs.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{Router, body::Body, extract::Request, response::Response};
use futures::future::BoxFuture;
use rmcp::{
    ServerHandler,
    transport::streamable_http_server::{
        SessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
};

use crate::http::authenticate::{AuthLayerState, authenticate_request};

/// The MCP endpoint: cheap to clone (axum clones a route's service for every request).
pub(crate) struct McpEndpoint<S, M> {
    shared: Arc<Shared<S, M>>,
}

struct Shared<S, M> {
    auth: AuthLayerState,
    mcp: StreamableHttpService<S, M>,
}

impl<S, M> McpEndpoint<S, M>
where
    S: ServerHandler + Clone + Send + Sync + 'static,
    M: SessionManager,
{
    /// A router serving `handler` at `path` behind `auth`, with sessions kept by `sessions`.
    pub(crate) fn route(
        path: &str,
        auth: AuthLayerState,
        handler: S,
        sessions: M,
        config: StreamableHttpServerConfig,
    ) -> Router {
        let mcp =
            StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(sessions), config);
        let endpoint = Self {
            shared: Arc::new(Shared { auth, mcp }),
        };
        Router::new().route_service(path, endpoint)
    }
}

impl<S, M> Clone for McpEndpoint<S, M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S, M> tower::Service<Request> for McpEndpoint<S, M>
where
    S: ServerHandler + Send + 'static,
    M: SessionManager,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let mcp = &shared.mcp;
            let response = authenticate_request(&shared.auth, request, |request| async move {
                mcp.handle(request).await.map(Body::new)
            })
            .await;
            Ok(response)
        })
    }
}
