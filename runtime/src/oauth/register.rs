//! TODO(helper): see the module list in `mod.rs`.

use std::sync::Arc;

use axum::Router;

use super::AsState;

/// The endpoint's routes.
pub(super) fn routes() -> Router<Arc<AsState>> {
    Router::new()
}
