//! TODO(helper): the authorization endpoint, login and consent pages.

use std::sync::Arc;

use axum::Router;

use super::AsState;

/// Authorization requests waiting for the user to sign in and consent.
#[derive(Default)]
pub(crate) struct PendingRequests {}

/// The endpoint's routes.
pub(super) fn routes() -> Router<Arc<AsState>> {
    Router::new()
}
