//! TODO(helper): Client ID Metadata Documents, fetched with SSRF protection.

use std::time::Duration;

use super::{AsState, error::OAuthError};
use crate::{ConfigError, store::ClientRecord};

/// How Client ID Metadata Documents are fetched.
#[derive(Debug, Clone)]
pub struct ClientMetadataDocuments {
    allow_private_addresses: bool,
    timeout: Duration,
    max_bytes: usize,
}

impl Default for ClientMetadataDocuments {
    fn default() -> Self {
        Self {
            allow_private_addresses: false,
            timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
        }
    }
}

impl ClientMetadataDocuments {
    pub(crate) fn into_fetcher(self) -> Result<Fetcher, ConfigError> {
        Ok(Fetcher { config: self })
    }
}

/// Fetches and caches documents.
pub(crate) struct Fetcher {
    #[allow(dead_code)]
    config: ClientMetadataDocuments,
}

impl Fetcher {
    /// The client a metadata-document URL stands for.
    pub(crate) async fn client(
        &self,
        state: &AsState,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, OAuthError> {
        Ok(state.store.get_client(client_id).await?)
    }
}

/// Whether a `client_id` is a metadata-document URL (https with a path).
pub(crate) fn is_metadata_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}
