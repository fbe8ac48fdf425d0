//! Trusted proxies: which peers may tell us the client's address.
//!
//! Behind a load balancer every connection comes from the balancer, so lockouts, throttles and
//! the audit would see one address for everyone. A peer listed as a trusted proxy may name the
//! client in `Forwarded` (RFC 7239) or, when that is absent, `X-Forwarded-For`; the client is
//! the rightmost hop that is not itself a trusted proxy (everything left of it was written by
//! the client and proves nothing). From any other peer those headers are ignored, and audited.
//!
//! The layer runs first on every route of the server and replaces the request's
//! `ConnectInfo<SocketAddr>` with the client's address, so every consumer — the MCP endpoint,
//! the OAuth endpoints, routes the application merges — reads the client as axum users expect.
//! The connection's own peer stays available as [`PeerAddr`].

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
};

use axum::extract::{ConnectInfo, Request};
use http::{HeaderMap, HeaderName};
use tower::{Layer, Service};

use crate::{AuditEvent, AuditLog, AuditRecord, ConfigError, Outcome};

/// The TCP peer of a request's connection, when a trusted proxy named another client address
/// (then `ConnectInfo<SocketAddr>` holds the client's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Most hops read from the headers: a longer chain is cut (only its right end matters).
const MAX_HOPS: usize = 32;

/// A network of trusted proxies: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `10.0.0.0/8`, `fd00::/8`, or a single address.
    fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = || {
            ConfigError::invalid(format!(
                "trusted proxy `{text}` is not an IP address or CIDR network (e.g. 10.0.0.0/8)"
            ))
        };
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| invalid())?,
            None => max,
        };
        if prefix > max {
            return Err(invalid());
        }
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps.
        let (addr, prefix) = match canonical(addr) {
            IpAddr::V4(v4) if addr.is_ipv6() => {
                (IpAddr::V4(v4), prefix.checked_sub(96).ok_or_else(invalid)?)
            }
            other => (other, prefix),
        };
        Ok(Self { addr, prefix })
    }

    fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                prefix_matches(u32::from(net).into(), u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_matches(u128::from(net), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_matches(net: u128, addr: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (net >> shift) == (addr >> shift)
}

/// The configured trusted proxies (none by default).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    networks: Vec<Network>,
}

impl TrustedProxies {
    /// Parses addresses and CIDR networks; an entry that does not parse is an error.
    pub(crate) fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ConfigError> {
        Ok(Self {
            networks: entries
                .iter()
                .map(|e| Network::parse(e.as_ref()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether `addr` is a trusted proxy.
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(addr))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The client of a request that reached us from `peer`: `Some` when `peer` is a trusted
    /// proxy whose headers name another address.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !self.contains(peer) {
            return None;
        }
        let hops = forwarded_hops(headers);
        let mut client = None;
        for hop in hops.iter().rev() {
            match hop {
                // An unknown or obfuscated hop: nothing to its left can be trusted either.
                None => break,
                Some(addr) => {
                    client = Some(*addr);
                    if !self.contains(*addr) {
                        break;
                    }
                }
            }
        }
        client
    }
}

/// The hops of `Forwarded` (its `for=` parameters) or, without it, of `X-Forwarded-For`, left
/// to right; `None` for a hop that is not an IP address (`unknown`, `_hidden`, garbage). At
/// most [`MAX_HOPS`], the rightmost ones.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    let values = |name: &HeaderName| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or(""))
            .collect::<Vec<_>>()
    };
    let forwarded = values(&FORWARDED);
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim())
            });
            hops.push(node.and_then(parse_node));
        }
    } else {
        for element in values(&X_FORWARDED_FOR).iter().flat_map(|v| v.split(',')) {
            hops.push(parse_node(element.trim()));
        }
    }
    if hops.len() > MAX_HOPS {
        hops.drain(..hops.len() - MAX_HOPS);
    }
    hops
}

/// An address from a `Forwarded` node (`192.0.2.1`, `"[2001:db8::1]:4711"`, `192.0.2.1:80`) or
/// an `X-Forwarded-For` element.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(addr) = node.parse::<IpAddr>() {
        return Some(canonical(addr));
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let inner = node.strip_prefix('[')?;
    let (addr, _) = inner.split_once(']')?;
    addr.parse::<IpAddr>().ok().map(canonical)
}

/// The layer that sets every request's client address (see the [module docs](self)).
#[derive(Clone)]
pub(crate) struct ClientAddrLayer {
    shared: Arc<Shared>,
}

struct Shared {
    proxies: TrustedProxies,
    audit: AuditLog,
}

impl ClientAddrLayer {
    pub(crate) fn new(proxies: TrustedProxies, audit: AuditLog) -> Self {
        Self {
            shared: Arc::new(Shared { proxies, audit }),
        }
    }
}

impl<S> Layer<S> for ClientAddrLayer {
    type Service = ClientAddrService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientAddrService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`ClientAddrLayer`].
#[derive(Clone)]
pub(crate) struct ClientAddrService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for ClientAddrService<S>
where
    S: Service<Request, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        self.resolve(&mut request);
        self.inner.call(request)
    }
}

impl<S> ClientAddrService<S> {
    fn resolve(&self, request: &mut Request) {
        let headers = request.headers();
        // The common case costs two header lookups: no forwarding headers at all.
        if !headers.contains_key(&FORWARDED) && !headers.contains_key(&X_FORWARDED_FOR) {
            return;
        }
        let Some(peer) = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
        else {
            return;
        };
        let proxies = &self.shared.proxies;
        if proxies.is_empty() || !proxies.contains(peer.ip()) {
            let mut record = AuditRecord::new(AuditEvent::Authentication, Outcome::Denied);
            record.reason = Some("forwarded_header_ignored");
            record.detail =
                Some("Forwarded/X-Forwarded-For from a peer that is not a trusted proxy");
            record.remote_addr = Some(peer);
            self.shared.audit.record(&record);
            return;
        }
        if let Some(client) = proxies.client(peer.ip(), headers) {
            let extensions = request.extensions_mut();
            extensions.insert(PeerAddr(peer));
            // The client's port is not known (and not meaningful across a proxy).
            extensions.insert(ConnectInfo(SocketAddr::new(client, 0)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(entries).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn networks_parse_and_match() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.7", "fd00::/8", "::ffff:172.16.0.1"]);
        for inside in [
            "10.1.2.3",
            "192.168.1.7",
            "fd12::1",
            "172.16.0.1",
            "::ffff:10.9.9.9",
        ] {
            assert!(p.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "fe80::1", "172.16.0.2"] {
            assert!(!p.contains(ip(outside)), "{outside}");
        }
        assert!(proxies(&["0.0.0.0/0"]).contains(ip("8.8.8.8")));
        assert!(proxies(&["::ffff:10.0.0.0/104"]).contains(ip("10.200.0.1")));
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "proxy.local",
            "10.0.0.0/x",
            "",
            "::ffff:10.0.0.0/64",
        ] {
            assert!(TrustedProxies::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        let xff = |v: &str| headers(&[("x-forwarded-for", v)]);
        assert_eq!(p.client(peer, &xff("203.0.113.9")), Some(ip("203.0.113.9")));
        // The client wrote the left part itself: it cannot pick its own address.
        assert_eq!(
            p.client(peer, &xff("1.2.3.4, 203.0.113.9, 10.0.0.2")),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            p.client(peer, &xff("10.0.0.3, 10.0.0.2")),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(
            p.client(peer, &xff("1.2.3.4, unknown, 10.0.0.2")),
            Some(ip("10.0.0.2")),
            "an unknown hop stops the walk"
        );
        assert_eq!(
            p.client(ip("8.8.8.8"), &xff("1.2.3.4")),
            None,
            "untrusted peer"
        );
        assert_eq!(p.client(peer, &HeaderMap::new()), None);
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                r#"for=1.2.3.4;proto=https, for="[2001:db8:cafe::17]:4711";by=10.0.0.1"#,
            ),
        ]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), Some(ip("2001:db8:cafe::17")));
        let h = headers(&[
            ("forwarded", "for=198.51.100.17:8080"),
            ("forwarded", "For=10.1.1.1"),
        ]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), Some(ip("198.51.100.17")));
        let h = headers(&[("forwarded", "for=_hidden, for=10.1.1.1")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), Some(ip("10.1.1.1")));
    }

    #[test]
    fn long_chains_are_cut() {
        let p = proxies(&["10.0.0.0/8"]);
        let chain = vec!["10.0.0.5"; 1000].join(", ");
        let h = headers(&[("x-forwarded-for", &chain)]);
        assert_eq!(forwarded_hops(&h).len(), MAX_HOPS);
        assert_eq!(p.client(ip("10.0.0.1"), &h), Some(ip("10.0.0.5")));
    }
}
