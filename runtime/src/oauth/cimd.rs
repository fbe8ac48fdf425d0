//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, MCP SEP-991): a
//! `client_id` that is an `https` URL names a JSON document describing the client, which the
//! server fetches — carefully, since the URL comes from whoever sends the authorization
//! request — validates, and keeps in the store for a while.
//!
//! The fetch is built against server-side request forgery: only public addresses (checked on
//! the resolved addresses the connection then uses, see [`address`]), no redirects, no proxy, a
//! timeout and a hard size cap. Any failure makes the client unknown; nothing is retried.

mod address;
mod document;

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Duration};

use http::{StatusCode, header};
use tokio::sync::Semaphore;
use url::{Host, Url};

use self::document::Refusal;
use super::{
    AsState,
    error::OAuthError,
    register::{
        is_json_media_type,
        limits::{self, RegistrationLimits},
    },
    unix_now,
};
use crate::{AuditEvent, AuditRecord, ConfigError, Outcome, store::ClientRecord};

/// Longest `client_id` URL considered, in bytes.
const MAX_URL_BYTES: usize = 2000;
/// Largest `max_document_size` accepted: documents are a few hundred bytes.
const MAX_DOCUMENT_SIZE_LIMIT: usize = 1024 * 1024;
/// Fetches in progress at once; more wait (within the timeout), so a burst of authorization
/// requests naming fresh URLs cannot open unbounded outgoing connections.
const MAX_CONCURRENT_FETCHES: usize = 16;
/// Documents whose cache expiry is remembered in memory; beyond this, a document falls back
/// to the shortest lifetime.
const MAX_REMEMBERED_EXPIRIES: usize = 10_000;

/// How Client ID Metadata Documents are fetched and cached.
///
/// The defaults suit production: 5-second timeout, 5 KiB documents, cached for the response's
/// `Cache-Control: max-age` within 5 minutes to 24 hours (1 hour without one), and only public
/// addresses fetched over `https`.
///
/// ```
/// use std::time::Duration;
/// use mcp_gatekeeper::oauth::ClientMetadataDocuments;
/// let documents = ClientMetadataDocuments::default()
///     .timeout(Duration::from_secs(3))
///     .cache_lifetime_bounds(Duration::from_secs(60), Duration::from_secs(3600));
/// # let _ = documents;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientMetadataDocuments {
    /// Non-public addresses allowed (tests, intranets).
    allow_private_addresses: bool,
    /// `http://` ids allowed (tests).
    allow_http: bool,
    /// Per fetch, connecting and reading included.
    timeout: Duration,
    /// Largest document read.
    max_bytes: usize,
    /// Shortest cache lifetime.
    min_lifetime: Duration,
    /// Cache lifetime without `max-age`.
    default_lifetime: Duration,
    /// Longest cache lifetime.
    max_lifetime: Duration,
}

impl Default for ClientMetadataDocuments {
    fn default() -> Self {
        Self {
            allow_private_addresses: false,
            allow_http: false,
            timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
            min_lifetime: Duration::from_secs(300),
            default_lifetime: Duration::from_secs(3600),
            max_lifetime: Duration::from_secs(86_400),
        }
    }
}

impl ClientMetadataDocuments {
    /// How long one fetch may take, connecting and reading included (default 5 seconds). A
    /// slower document server makes the client unknown.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest document accepted, in bytes (default 5 KiB, at most 1 MiB). Reading stops
    /// as soon as a response goes beyond it, whatever its `Content-Length` says.
    pub fn max_document_size(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How long a document is used without a `Cache-Control: max-age` (default 1 hour; kept
    /// within the bounds).
    pub fn cache_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// The shortest and longest time a fetched document is used before it is fetched again,
    /// whatever its `Cache-Control` says (default 5 minutes and 24 hours). A client whose
    /// document changed or disappeared keeps working with the old one for at most `max`.
    pub fn cache_lifetime_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_lifetime = min;
        self.max_lifetime = max;
        self
    }

    /// **Tests and intranets only:** also fetch documents from loopback, private, link-local
    /// and other non-public addresses. Anyone who can start an authorization request can then
    /// make the server send GET requests into its own network.
    pub fn allow_private_addresses(mut self) -> Self {
        self.allow_private_addresses = true;
        self
    }

    /// **Tests only:** also accept `http://` client ids, so a test can serve a document from
    /// loopback without TLS. The document and the redirect URIs in it can then be altered on
    /// the way.
    pub fn insecure_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Checks the settings and builds the HTTP client used for every fetch.
    pub(crate) fn into_fetcher(self) -> Result<Fetcher, ConfigError> {
        let invalid = |why: &str| ConfigError::invalid(format!("client metadata documents: {why}"));
        if self.timeout.is_zero() {
            return Err(invalid("the fetch timeout must be positive"));
        }
        if self.max_bytes == 0 || self.max_bytes > MAX_DOCUMENT_SIZE_LIMIT {
            return Err(invalid("the maximum document size must be 1 byte to 1 MiB"));
        }
        if self.min_lifetime > self.max_lifetime {
            return Err(invalid(
                "the shortest cache lifetime exceeds the longest one",
            ));
        }
        if self.allow_private_addresses || self.allow_http {
            tracing::warn!(
                target: crate::AUDIT_TARGET,
                private_addresses = self.allow_private_addresses,
                http = self.allow_http,
                "client metadata documents: SSRF protections relaxed (tests only)"
            );
        }
        let http = reqwest::Client::builder()
            // A redirect could lead anywhere, including past the address checks of an IP
            // literal: it is a refusal.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, bypassing the resolver below.
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .https_only(!self.allow_http)
            .dns_resolver(address::PublicOnlyResolver {
                allow_private: self.allow_private_addresses,
            })
            .user_agent(concat!("mcp-gatekeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(&format!("cannot build the HTTP client: {e}")))?;
        Ok(Fetcher {
            config: Self {
                default_lifetime: self
                    .default_lifetime
                    .clamp(self.min_lifetime, self.max_lifetime),
                ..self
            },
            http,
            expiries: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(MAX_CONCURRENT_FETCHES),
            fetch_limits: RegistrationLimits::new(FETCH_LIMITS),
        })
    }
}

/// Fetches, validates and caches documents for one authorization server.
pub(crate) struct Fetcher {
    /// The checked settings.
    config: ClientMetadataDocuments,
    /// Built once: no redirects, no proxy, the timeout, the public-only resolver.
    http: reqwest::Client,
    /// When each document fetched by this process must be fetched again (unix seconds), from
    /// its `Cache-Control`. Documents stored by another process (or before a restart) fall
    /// back to their `created_at` plus the shortest lifetime.
    expiries: Mutex<HashMap<String, i64>>,
    /// Bounds the fetches in progress.
    in_flight: Semaphore,
    /// Bounds how many documents the requests of one address (and one network) make the server
    /// fetch: every fetched document becomes a stored client, and an attacker's own web server
    /// can answer any number of distinct URLs.
    fetch_limits: RegistrationLimits,
}

/// Document fetches (cache misses) per requesting address and network, as for registrations
/// but twice as many: a legitimate client fetches its one document once per cache lifetime.
const FETCH_LIMITS: limits::Config = limits::Config {
    per_address: 60,
    per_prefix: 240,
    window: Duration::from_secs(3600),
    global: 20_000,
    global_window: Duration::from_secs(86_400),
    max_tracked: 10_000,
};

impl Fetcher {
    /// Whether `client_id` names a metadata document this fetcher would fetch: [`is_metadata_url`],
    /// or its `http` form when [`ClientMetadataDocuments::insecure_allow_http`] is set.
    pub(crate) fn is_metadata_url(&self, client_id: &str) -> bool {
        is_metadata_url(client_id) || (self.config.allow_http && is_document_url(client_id, true))
    }

    /// The client a metadata-document URL stands for: from the store while its cache lifetime
    /// lasts, else fetched again. `Ok(None)` when the document cannot be fetched or is invalid
    /// (audited with the reason); `Err` only when the store fails.
    ///
    /// A fetch counts toward the limits of the requester's address `remote` (and its network);
    /// past them the answer is [`OAuthError::too_many_fetches`].
    pub(crate) async fn client(
        &self,
        state: &AsState,
        client_id: &str,
        remote: Option<IpAddr>,
    ) -> Result<Option<ClientRecord>, OAuthError> {
        if !self.is_metadata_url(client_id) {
            return Ok(None);
        }
        let now = unix_now();
        if let Some(record) = state.store.get_client(client_id).await?
            && record.metadata_url.as_deref() == Some(client_id)
            && now < self.expiry_of(&record)
        {
            return Ok(Some(record));
        }
        if let Err(wait) = self.fetch_limits.try_register(remote) {
            let refusal = Refusal::new(
                "fetch_limit",
                "too many client metadata documents fetched for this address",
            );
            audit(state, client_id, Outcome::RateLimited, Some(&refusal));
            return Err(OAuthError::too_many_fetches(wait));
        }
        match self.fetch(client_id, &state.scopes, now).await {
            Ok((record, lifetime)) => {
                state.store.put_client(record.clone()).await?;
                self.remember(
                    client_id,
                    now.saturating_add(lifetime.as_secs() as i64),
                    now,
                );
                audit(state, client_id, Outcome::Allowed, None);
                Ok(Some(record))
            }
            Err(refusal) => {
                audit(state, client_id, Outcome::Denied, Some(&refusal));
                Ok(None)
            }
        }
    }

    /// When a stored document must be fetched again.
    fn expiry_of(&self, record: &ClientRecord) -> i64 {
        let fallback = record
            .created_at
            .saturating_add(self.config.min_lifetime.as_secs() as i64);
        let remembered = self
            .expiries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&record.client_id)
            .copied();
        remembered.map_or(fallback, |at| at.max(fallback))
    }

    /// Remembers a document's expiry, in a table that never grows beyond its bound.
    fn remember(&self, client_id: &str, expires_at: i64, now: i64) {
        let mut expiries = self.expiries.lock().unwrap_or_else(|e| e.into_inner());
        if expiries.len() >= MAX_REMEMBERED_EXPIRIES && !expiries.contains_key(client_id) {
            expiries.retain(|_, at| *at > now);
            if expiries.len() >= MAX_REMEMBERED_EXPIRIES {
                return;
            }
        }
        expiries.insert(client_id.to_owned(), expires_at);
    }

    /// Fetches and validates the document; the record and how long it may be used.
    async fn fetch(
        &self,
        url: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<(ClientRecord, Duration), Refusal> {
        let parsed = Url::parse(url).map_err(|_| Refusal::new("invalid_url", "not a URL"))?;
        self.check_literal_host(&parsed)?;
        let timeout = || Refusal::new("timeout", "the document server did not answer in time");
        // The permit is held for the fetch only; it is not a lock on shared data.
        let _permit = tokio::time::timeout(self.config.timeout, self.in_flight.acquire())
            .await
            .map_err(|_| timeout())?
            .map_err(|_| Refusal::new("fetch_failed", "the fetcher is shut down"))?;
        let (body, cache_control) =
            tokio::time::timeout(self.config.timeout, self.download(parsed))
                .await
                .map_err(|_| timeout())??;
        let document: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| Refusal::new("invalid_json", "the document is not valid JSON"))?;
        let record = document::client_record(url, &document, scopes, now)?;
        let lifetime = document::cache_lifetime(
            cache_control.as_deref(),
            self.config.min_lifetime,
            self.config.default_lifetime,
            self.config.max_lifetime,
        );
        Ok((record, lifetime))
    }

    /// An IP-literal host never reaches the resolver (the connector uses it as is), so its
    /// address is checked here.
    fn check_literal_host(&self, url: &Url) -> Result<(), Refusal> {
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) | None => return Ok(()),
        };
        if self.config.allow_private_addresses || address::is_public(ip) {
            Ok(())
        } else {
            Err(Refusal::new(
                "address_refused",
                "the document URL names a non-public address",
            ))
        }
    }

    /// GETs the document: status 200, a JSON content type, at most `max_bytes` read. Returns the
    /// body and the `Cache-Control` header.
    async fn download(&self, url: Url) -> Result<(Vec<u8>, Option<String>), Refusal> {
        let mut response = self
            .http
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(request_refusal)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Refusal::new(
                "redirect",
                format!("the document URL answered {status}; redirects are not followed"),
            ));
        }
        if status != StatusCode::OK {
            return Err(Refusal::new(
                "status",
                format!("the document URL answered {status}"),
            ));
        }
        let headers = response.headers();
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !json {
            return Err(Refusal::new(
                "content_type",
                "the document is not served as application/json",
            ));
        }
        let cache_control = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let too_large = || {
            Refusal::new(
                "too_large",
                format!("the document exceeds {} bytes", self.config.max_bytes),
            )
        };
        // An early answer only; the loop below enforces the limit whatever the header says.
        if response
            .content_length()
            .is_some_and(|n| n > self.config.max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_refusal)? {
            if body.len() + chunk.len() > self.config.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, cache_control))
    }
}

/// Names a failed request: a refused address (found in the error chain), a timeout, or
/// anything else.
fn request_refusal(error: reqwest::Error) -> Refusal {
    if error.is_timeout() {
        return Refusal::new("timeout", "the document server did not answer in time");
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if e.is::<address::AddressRefused>() {
            return Refusal::new(
                "address_refused",
                "the document's host resolves to a non-public address",
            );
        }
        source = e.source();
    }
    Refusal::new("fetch_failed", error.without_url().to_string())
}

/// Audits a fetch: the client loaded, or refused with its reason.
fn audit(state: &AsState, client_id: &str, outcome: Outcome, refusal: Option<&Refusal>) {
    let mut record = AuditRecord::new(AuditEvent::Registration, outcome);
    record.method = Some("client_metadata_document");
    record.client_id = Some(client_id);
    record.reason = refusal.map(|r| r.reason);
    record.detail = refusal.map(|r| r.detail.as_str());
    state.audit.record(&record);
}

/// Whether a `client_id` is a metadata-document URL: `https`, a host, a path other than `/`,
/// no fragment, no user information, no `.` or `..` segments, and written in canonical form
/// (so the exact comparison with the document's `client_id` cannot be dodged).
pub(crate) fn is_metadata_url(client_id: &str) -> bool {
    is_document_url(client_id, false)
}

/// [`is_metadata_url`], with `http` allowed too when `allow_http`.
fn is_document_url(client_id: &str, allow_http: bool) -> bool {
    if client_id.len() > MAX_URL_BYTES {
        return false;
    }
    let Ok(url) = Url::parse(client_id) else {
        return false;
    };
    let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
    // The parser resolves dot segments (also percent-encoded ones) and normalises case and
    // default ports, so a non-canonical id differs from its serialisation.
    let dot_segment = client_id
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split('/')
        .skip(3)
        .any(|s| {
            let s = s.to_ascii_lowercase();
            matches!(s.as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e.")
        });
    scheme_ok
        && url.as_str() == client_id
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && url.path() != "/"
        && !dot_segment
}

#[cfg(test)]
mod tests;
