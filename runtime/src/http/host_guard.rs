//! DNS-rebinding protection for the MCP endpoint: the `Host` (or HTTP/2 `:authority`) a request
//! names must be one the server answers to, and a browser's `Origin`, when an allow-list is
//! configured, must be on it.
//!
//! rmcp can do the same check, but it re-parses its allow-lists (allocating strings) and clones
//! them with its service on every request: about 5,000 instructions per request, 4 % of a whole
//! `tools/call`. Here the lists are parsed once, when the server is built — an entry that does
//! not parse is a configuration error instead of an entry silently ignored — and a request's
//! header is matched without allocating. rmcp's own check is then switched off.

use http::{HeaderMap, StatusCode, Uri, header};

use crate::ConfigError;

/// The hosts a server answers to when none are configured: loopback names only.
pub(crate) const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A host name with an optional port, lower-cased, IPv6 literals without brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    host: String,
    /// `None` matches any port.
    port: Option<u16>,
}

/// Which ports of an allowed origin match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OriginPort {
    /// `scheme://host:*`, or no port in the entry: any port.
    Any,
    /// Exactly this one; an `Origin` without a port means the scheme's default.
    Exact(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedOrigin {
    /// `null`: sandboxed frames, `file:` pages.
    Null,
    Tuple {
        scheme: String,
        host: String,
        port: OriginPort,
    },
}

/// Why a request is refused, with the status and text rmcp would have answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    HostMissing,
    HostMalformed,
    HostNotAllowed,
    OriginMalformed,
    OriginNotAllowed,
}

impl Refusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::HostMissing | Refusal::HostMalformed => StatusCode::BAD_REQUEST,
            Refusal::HostNotAllowed | Refusal::OriginMalformed | Refusal::OriginNotAllowed => {
                StatusCode::FORBIDDEN
            }
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::HostMissing => "Bad Request: missing Host header",
            Refusal::HostMalformed => "Bad Request: Invalid Host header",
            Refusal::HostNotAllowed => "Forbidden: Host header is not allowed",
            Refusal::OriginMalformed => "Forbidden: Invalid Origin header",
            Refusal::OriginNotAllowed => "Forbidden: Origin header is not allowed",
        }
    }

    /// The reason code in the audit record.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::HostMissing | Refusal::HostMalformed => "malformed_host",
            Refusal::HostNotAllowed => "host_not_allowed",
            Refusal::OriginMalformed => "malformed_origin",
            Refusal::OriginNotAllowed => "origin_not_allowed",
        }
    }
}

/// The parsed allow-lists of one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct HostGuard {
    /// Empty: any host.
    hosts: Vec<AllowedHost>,
    /// Empty: no `Origin` check.
    origins: Vec<AllowedOrigin>,
}

impl HostGuard {
    /// Parses the allow-lists. `hosts` empty accepts any host; `origins` empty checks none.
    pub(crate) fn new(hosts: &[String], origins: &[String]) -> Result<Self, ConfigError> {
        let hosts = hosts
            .iter()
            .map(|entry| {
                parse_allowed_host(entry).ok_or_else(|| {
                    ConfigError::invalid(format!(
                        "allowed host `{entry}` is not a host name, an IP address or either \
                         with a `:port`"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let origins = origins
            .iter()
            .map(|entry| {
                parse_allowed_origin(entry).ok_or_else(|| {
                    ConfigError::invalid(format!(
                        "allowed origin `{entry}` is not `scheme://host`, `scheme://host:port`, \
                         `scheme://host:*` or `null`"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { hosts, origins })
    }

    /// Checks a request's `Host` (or `:authority`) and `Origin`.
    pub(crate) fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        // RFC 9112 §3.2: a request with several `Host` headers is invalid. Whichever we read,
        // a proxy or log in front of us may have read the other; refused even when any host
        // is allowed. Several `Origin` headers are as ambiguous.
        if headers.get_all(header::HOST).iter().nth(1).is_some() {
            return Err(Refusal::HostMalformed);
        }
        if headers.get_all(header::ORIGIN).iter().nth(1).is_some() {
            return Err(Refusal::OriginMalformed);
        }
        if !self.hosts.is_empty() {
            self.check_host(uri, headers)?;
        }
        if !self.origins.is_empty() {
            self.check_origin(headers)?;
        }
        Ok(())
    }

    fn check_host(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let authority = match headers.get(header::HOST) {
            Some(value) => value.to_str().map_err(|_| Refusal::HostMalformed)?,
            // HTTP/2 names the host in `:authority`, which hyper keeps in the URI.
            None => uri.authority().ok_or(Refusal::HostMissing)?.as_str(),
        };
        let (host, port) = split_authority(authority).ok_or(Refusal::HostMalformed)?;
        let allowed = self.hosts.iter().any(|allowed| {
            allowed.host.eq_ignore_ascii_case(host) && allowed.port.is_none_or(|p| port == Some(p))
        });
        if allowed {
            Ok(())
        } else {
            Err(Refusal::HostNotAllowed)
        }
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        // Requests without `Origin` do not come from a browser page.
        let Some(value) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let value = value.to_str().map_err(|_| Refusal::OriginMalformed)?.trim();
        if value.eq_ignore_ascii_case("null") {
            return match self.origins.contains(&AllowedOrigin::Null) {
                true => Ok(()),
                false => Err(Refusal::OriginNotAllowed),
            };
        }
        let (scheme, host, port) = split_origin(value).ok_or(Refusal::OriginMalformed)?;
        let port = port.or_else(|| default_port(scheme));
        let allowed = self.origins.iter().any(|allowed| match allowed {
            AllowedOrigin::Null => false,
            AllowedOrigin::Tuple {
                scheme: s,
                host: h,
                port: p,
            } => {
                s.eq_ignore_ascii_case(scheme)
                    && h.eq_ignore_ascii_case(host)
                    && match p {
                        OriginPort::Any => true,
                        OriginPort::Exact(p) => port == Some(*p),
                    }
            }
        });
        if allowed {
            Ok(())
        } else {
            Err(Refusal::OriginNotAllowed)
        }
    }
}

fn parse_allowed_host(entry: &str) -> Option<AllowedHost> {
    let entry = entry.trim();
    // An IPv6 address may be listed without brackets (it then has no port).
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some(AllowedHost {
            host: entry.to_ascii_lowercase(),
            port: None,
        });
    }
    let (host, port) = split_authority(entry)?;
    Some(AllowedHost {
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn parse_allowed_origin(entry: &str) -> Option<AllowedOrigin> {
    let entry = entry.trim();
    if entry.eq_ignore_ascii_case("null") {
        return Some(AllowedOrigin::Null);
    }
    let (base, any_port) = match entry.strip_suffix(":*") {
        Some(base) => (base, true),
        None => (entry, false),
    };
    let (scheme, host, port) = split_origin(base)?;
    let port = match (any_port, port) {
        (true, Some(_)) => return None,
        (true, None) | (false, None) => OriginPort::Any,
        (false, Some(port)) => OriginPort::Exact(port),
    };
    Some(AllowedOrigin::Tuple {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Splits `host[:port]` or `[ipv6][:port]` into the host (without brackets) and the port.
/// `None` when it is not an authority a client may name: user info, a path, an empty host,
/// characters outside RFC 3986's host grammar, or a port that is not a number below 65536.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ipv6, after) = rest.split_once(']')?;
        if ipv6.is_empty()
            || !ipv6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (ipv6, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() || !host.bytes().all(is_reg_name_byte) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        // `host:` is a valid authority with an empty port (RFC 3986 §3.2.3).
        None | Some("") => None,
        Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// Unreserved characters and sub-delimiters: what a registered name or an IPv4 address is made
/// of (percent-encoding has no business in a `Host` header and is refused with the rest).
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// Splits an origin serialization `scheme://host[:port]` (RFC 6454 §6.2: no path, no user
/// info) into its parts.
fn split_origin(origin: &str) -> Option<(&str, &str, Option<u16>)> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let (host, port) = split_authority(authority)?;
    Some((scheme, host, port))
}

/// The port an origin without one implies (RFC 6454 §4).
fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn guard(hosts: &[&str], origins: &[&str]) -> HostGuard {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        HostGuard::new(&owned(hosts), &owned(origins)).unwrap()
    }

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    /// Asserts that `check` answers `expected` for each of `values`.
    fn expect_all(
        check: impl Fn(&[u8]) -> Result<(), Refusal>,
        values: &[&[u8]],
        expected: Result<(), Refusal>,
    ) {
        for value in values {
            assert_eq!(check(value), expected, "{}", String::from_utf8_lossy(value));
        }
    }

    fn host(guard: &HostGuard, value: &[u8]) -> Result<(), Refusal> {
        guard.check(&Uri::from_static("/mcp"), &headers(&[("host", value)]))
    }

    #[test]
    fn loopback_default_accepts_loopback_names_on_any_port() {
        let g = guard(&LOOPBACK_HOSTS, &[]);
        expect_all(
            |value| host(&g, value),
            &[
                &b"localhost"[..],
                b"LOCALHOST:8080",
                b"127.0.0.1:3000",
                b"[::1]",
                b"[::1]:443",
                b"localhost:",
            ],
            Ok(()),
        );
    }

    #[test]
    fn other_hosts_are_refused_with_403() {
        let g = guard(&LOOPBACK_HOSTS, &[]);
        expect_all(
            |value| host(&g, value),
            &[
                &b"evil.example.com"[..],
                b"localhost.evil.com",
                b"127.0.0.2",
                b"[::2]:80",
                b"0.0.0.0",
            ],
            Err(Refusal::HostNotAllowed),
        );
        assert_eq!(Refusal::HostNotAllowed.status(), 403);
    }

    #[test]
    fn malformed_hosts_are_refused_with_400() {
        let g = guard(&LOOPBACK_HOSTS, &[]);
        expect_all(
            |value| host(&g, value),
            &[
                &b""[..],
                b"user@localhost",
                b"localhost/path",
                b"localhost:port",
                b"localhost:99999",
                b"localhost:123456",
                b"[::1",
                b"[::1]x",
                b"[]",
                b"::1",
                b"local host",
                b"localhost%00",
                b"\xffhost",
            ],
            Err(Refusal::HostMalformed),
        );
        assert_eq!(Refusal::HostMalformed.status(), 400);
    }

    #[test]
    fn an_empty_port_is_no_port() {
        // RFC 3986 §3.2.3 allows `host:` with nothing after the colon.
        let g = guard(&LOOPBACK_HOSTS, &[]);
        assert_eq!(split_authority("[::1]:"), Some(("::1", None)));
        assert_eq!(host(&g, b"[::1]:"), Ok(()));
    }

    #[test]
    fn a_port_in_the_entry_must_match() {
        let g = guard(&["mcp.example.com:8443"], &[]);
        assert_eq!(host(&g, b"mcp.example.com:8443"), Ok(()));
        assert_eq!(host(&g, b"MCP.Example.COM:8443"), Ok(()));
        assert_eq!(host(&g, b"mcp.example.com"), Err(Refusal::HostNotAllowed));
        assert_eq!(
            host(&g, b"mcp.example.com:443"),
            Err(Refusal::HostNotAllowed)
        );
    }

    #[test]
    fn http2_authority_is_used_without_a_host_header() {
        let g = guard(&["mcp.example.com"], &[]);
        let uri = Uri::from_static("https://mcp.example.com/mcp");
        assert_eq!(g.check(&uri, &HeaderMap::new()), Ok(()));
        let evil = Uri::from_static("https://evil.example.com/mcp");
        assert_eq!(
            g.check(&evil, &HeaderMap::new()),
            Err(Refusal::HostNotAllowed)
        );
        assert_eq!(
            g.check(&Uri::from_static("/mcp"), &HeaderMap::new()),
            Err(Refusal::HostMissing)
        );
    }

    #[test]
    fn no_hosts_means_any_host() {
        let g = guard(&[], &[]);
        assert_eq!(host(&g, b"anything.example"), Ok(()));
        assert_eq!(
            g.check(&Uri::from_static("/mcp"), &HeaderMap::new()),
            Ok(())
        );
    }

    fn origin(guard: &HostGuard, value: &[u8]) -> Result<(), Refusal> {
        guard.check(
            &Uri::from_static("/mcp"),
            &headers(&[("host", b"localhost"), ("origin", value)]),
        )
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let g = guard(
            &LOOPBACK_HOSTS,
            &[
                "http://localhost:6274",
                "https://app.example.com",
                "http://[::1]:*",
                "https://exact.example.com:443",
            ],
        );
        expect_all(
            |value| origin(&g, value),
            &[
                &b"http://localhost:6274"[..],
                b"HTTP://LOCALHOST:6274",
                b"https://app.example.com",
                b"https://app.example.com:8443",
                b"http://[::1]:1234",
                b"https://exact.example.com",
                b"https://exact.example.com:443",
            ],
            Ok(()),
        );
        expect_all(
            |value| origin(&g, value),
            &[
                &b"http://localhost:6275"[..],
                b"http://localhost",
                b"https://localhost:6274",
                b"http://app.example.com",
                b"https://exact.example.com:8443",
                b"http://evil.example.com",
                b"null",
            ],
            Err(Refusal::OriginNotAllowed),
        );
    }

    #[test]
    fn malformed_origins_are_refused() {
        let g = guard(&LOOPBACK_HOSTS, &["http://localhost:6274"]);
        expect_all(
            |value| origin(&g, value),
            &[
                &b"localhost:6274"[..],
                b"http://",
                b"http://user@localhost:6274",
                b"http://localhost:6274/path",
                b"1http://localhost",
                b"\xff",
            ],
            Err(Refusal::OriginMalformed),
        );
    }

    #[test]
    fn null_origin_only_when_listed() {
        let g = guard(&LOOPBACK_HOSTS, &["null"]);
        assert_eq!(origin(&g, b"null"), Ok(()));
        assert_eq!(
            origin(&g, b"http://localhost"),
            Err(Refusal::OriginNotAllowed)
        );
    }

    #[test]
    fn without_an_origin_list_any_origin_passes() {
        let g = guard(&LOOPBACK_HOSTS, &[]);
        assert_eq!(origin(&g, b"http://evil.example.com"), Ok(()));
    }

    #[test]
    fn unparsable_entries_are_configuration_errors() {
        let owned = |s: &str| vec![s.to_owned()];
        for host in ["", "a b", "host:port", "user@host", "[::1"] {
            assert!(HostGuard::new(&owned(host), &[]).is_err(), "{host:?}");
        }
        for origin in [
            "localhost:6274",
            "http://localhost:6274:*",
            "null:*",
            "http://a/b",
        ] {
            assert!(HostGuard::new(&[], &owned(origin)).is_err(), "{origin:?}");
        }
    }

    #[test]
    fn several_host_or_origin_headers_are_refused() {
        let uri: Uri = "/mcp".parse().unwrap();
        for hosts in [&LOOPBACK_HOSTS[..], &[]] {
            let g = guard(hosts, &[]);
            let mut headers = HeaderMap::new();
            headers.append(header::HOST, "localhost".parse().unwrap());
            assert!(g.check(&uri, &headers).is_ok());
            headers.append(header::HOST, "evil.example".parse().unwrap());
            assert_eq!(g.check(&uri, &headers), Err(Refusal::HostMalformed));
            let mut headers = HeaderMap::new();
            headers.append(header::HOST, "localhost".parse().unwrap());
            headers.append(header::ORIGIN, "http://localhost".parse().unwrap());
            headers.append(header::ORIGIN, "http://evil.example".parse().unwrap());
            assert_eq!(g.check(&uri, &headers), Err(Refusal::OriginMalformed));
        }
    }
}
