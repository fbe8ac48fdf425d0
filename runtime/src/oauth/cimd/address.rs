//! Which network addresses a metadata document may be fetched from, and the DNS resolver that
//! enforces it.
//!
//! A `client_id` URL is chosen by whoever sends the authorization request, so fetching it is a
//! server-side request forgery vector (MCP 2026-07-28, "SSRF Against Authorization Servers";
//! CIMD §6): it could reach the cloud metadata service, an admin interface on loopback, or the
//! intranet. Only globally reachable unicast addresses are allowed. The check runs on the
//! addresses the resolver hands to the connector, so the connection goes to exactly the checked
//! addresses and a DNS answer that changes between check and connect (rebinding) cannot slip
//! through.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// IPv4 ranges that are not globally reachable unicast (IANA special-purpose registry).
const NON_PUBLIC_V4: [(Ipv4Addr, u8); 15] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),  // "this network", incl. unspecified
    (Ipv4Addr::new(10, 0, 0, 0), 8), // private
    (Ipv4Addr::new(100, 64, 0, 0), 10), // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8), // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16), // link-local, incl. cloud metadata 169.254.169.254
    (Ipv4Addr::new(172, 16, 0, 0), 12), // private
    (Ipv4Addr::new(192, 0, 0, 0), 24), // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24), // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 88, 99, 0), 24), // deprecated 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16), // private
    (Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24), // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4), // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4), // reserved, incl. broadcast 255.255.255.255
];

/// IPv6 ranges inside global unicast (2000::/3) that are still not globally reachable, or that
/// embed an IPv4 address in a form we do not unwrap.
const NON_PUBLIC_V6: [(Ipv6Addr, u8); 3] = [
    // IETF protocol assignments: Teredo (embeds an obfuscated IPv4 address), benchmarking
    // 2001:2::/48, ORCHID.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),     // documentation (RFC 9637)
];

/// Whether a metadata document may be fetched from `ip`: a globally reachable unicast address.
/// IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// Outside every non-public IPv4 range.
fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !NON_PUBLIC_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        bits & mask == u32::from(net) & mask
    })
}

/// Whether `ip` is in `net`/`len`.
fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// Global unicast outside the non-public ranges; IPv4-carrying forms judged by their IPv4 address.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // ::ffff:a.b.c.d (IPv4-mapped): the socket connects to a.b.c.d.
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96) {
        return is_public_v4(Ipv4Addr::from(bits as u32));
    }
    // 64:ff9b::a.b.c.d (NAT64, RFC 6052): the translator connects to a.b.c.d.
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return is_public_v4(Ipv4Addr::from(bits as u32));
    }
    // 2002:aabb:ccdd::/48 (6to4): the relay forwards to aa.bb.cc.dd.
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return is_public_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    // Everything outside global unicast is refused: unspecified, loopback, the deprecated
    // IPv4-compatible ::/96, discard-only 100::/64, local-use NAT64 64:ff9b:1::/48, unique-local
    // fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8.
    in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
        && !NON_PUBLIC_V6.iter().any(|&(net, len)| in_v6(ip, net, len))
}

/// A resolution refused because a name resolved to a non-public address. Found again in the
/// error chain of the failed request to name the refusal in the audit record.
#[derive(Debug)]
pub(super) struct AddressRefused;

impl fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the host resolves to a non-public address")
    }
}

impl std::error::Error for AddressRefused {}

/// Resolves with the system resolver and refuses the whole name when any of its addresses is
/// not public: connecting to "the public one" would leave the choice to the attacker's DNS.
pub(super) struct PublicOnlyResolver {
    /// Tests and intranets: every address is allowed.
    pub(super) allow_private: bool,
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ok in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81b::200e",
            "2001:200::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(is_public(ip(ok)), "{ok} should be public");
        }
    }

    #[test]
    fn non_public_ipv4_ranges_are_refused() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "192.168.255.255",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(ip(bad)), "{bad} should be refused");
        }
    }

    #[test]
    fn non_public_ipv6_ranges_are_refused() {
        for bad in [
            "::",
            "::1",
            // IPv4-compatible (deprecated) and IPv4-mapped forms of non-public addresses
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:192.168.1.1",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            // NAT64 of non-public addresses, and local-use NAT64
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::a00:1",
            "64:ff9b:1::808:808",
            // 6to4 of non-public addresses
            "2002:7f00:0001::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:0101::1",
            "100::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "3fff::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "4000::1",
        ] {
            assert!(!is_public(ip(bad)), "{bad} should be refused");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_non_public_addresses() {
        let strict = PublicOnlyResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        let err = strict.resolve(name).await.err().expect("refused");
        assert!(err.downcast_ref::<AddressRefused>().is_some(), "{err}");

        let lenient = PublicOnlyResolver {
            allow_private: true,
        };
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = lenient.resolve(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
