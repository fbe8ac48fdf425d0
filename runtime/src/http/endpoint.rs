//! The MCP endpoint as one tower service: the [`GatekeeperLayer`]'s checks, then rmcp.
//!
//! The endpoint runs the very code of the public layer ([`GatekeeperLayer::run`]), but is not
//! `layer.layer(rmcp_service)`: as a tower service, rmcp's [`StreamableHttpService`] clones
//! itself (with its configuration) and boxes a second future on every request, while here a
//! request costs one reference-count increment and one boxed future before rmcp's own
//! [`StreamableHttpService::handle`] runs, borrowed.

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

use crate::http::layer::GatekeeperLayer;

/// The MCP endpoint: cheap to clone (axum clones a route's service for every request).
pub(crate) struct McpEndpoint<S, M> {
    shared: Arc<Shared<S, M>>,
}

struct Shared<S, M> {
    /// Built with the gatekeeper's tools (step-up, one audit record per tool call).
    layer: GatekeeperLayer,
    mcp: StreamableHttpService<S, M>,
}

impl<S, M> McpEndpoint<S, M>
where
    S: ServerHandler + Clone + Send + Sync + 'static,
    M: SessionManager,
{
    /// A router serving `handler` at `path` behind `layer`, with sessions kept by `sessions`.
    pub(crate) fn route(
        path: &str,
        layer: GatekeeperLayer,
        handler: S,
        sessions: Arc<M>,
        config: StreamableHttpServerConfig,
    ) -> Router {
        let mcp = StreamableHttpService::new(move || Ok(handler.clone()), sessions, config);
        let endpoint = Self {
            shared: Arc::new(Shared { layer, mcp }),
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
            shared
                .layer
                .run(request, |request| async move {
                    Ok(mcp.handle(request).await.map(Body::new))
                })
                .await
        })
    }
}
