//! Redirect-URI rules: which URIs a client may register (https, or http on loopback) and when a
//! requested URI matches a registered one (exactly, except the port of a loopback URI, RFC 8252
//! §7.3).

use url::{Host, Url};

/// Whether `host` names the local machine: `localhost`, `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a redirect URI a client registers: an absolute `https` URI, or `http` on a loopback
/// host (native apps, RFC 8252 §7.3); no fragment (RFC 6749 §3.1.2) and no user info.
pub(crate) fn check_registrable(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|_| format!("`{uri}` is not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(format!("`{uri}` has a fragment (RFC 6749 §3.1.2)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{uri}` carries user information"));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) => d.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(format!("`{uri}` has no host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&host) => Ok(()),
        _ => Err(format!(
            "`{uri}` must use https, or http on a loopback address (localhost, 127.0.0.1, [::1])"
        )),
    }
}

/// Whether the `requested` redirect URI of an authorization request matches `registered`:
/// byte-for-byte, or — for an `http` loopback URI — everything but the port (native apps pick a
/// free port at run time, RFC 8252 §7.3).
pub(crate) fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    reg.scheme() == "http"
        && req.scheme() == "http"
        && reg.host_str().is_some_and(is_loopback_host)
        && reg.host_str() == req.host_str()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.fragment().is_none()
        && req.username().is_empty()
        && req.password().is_none()
        // Port-insensitive, but only when the registered URI names the path the client listens
        // on: comparing the serialised forms without their ports catches any other difference.
        && without_port(&reg) == without_port(&req)
}

fn without_port(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_port(None);
    url.to_string()
}

/// The registered redirect URI that `requested` matches, if any. An absent `requested` is
/// allowed only when exactly one URI is registered (RFC 6749 §3.1.2.3), and then stands for it.
pub(crate) fn resolve<'a>(registered: &'a [String], requested: Option<&'a str>) -> Option<&'a str> {
    match requested {
        Some(requested) => registered
            .iter()
            .any(|r| matches(r, requested))
            .then_some(requested),
        None if registered.len() == 1 => Some(&registered[0]),
        None => None,
    }
}

/// The host a redirect URI sends the user to, shown on the consent page.
pub(crate) fn host_of(uri: &str) -> String {
    Url::parse(uri)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(port) => format!("{h}:{port}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| uri.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_uris() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1:8080/callback",
            "http://localhost/cb",
            "http://[::1]:3000/cb",
            "https://app.example.com/cb?x=1",
        ] {
            assert!(check_registrable(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example.com/cb",
            "http://evil/cb",
            "javascript:alert(1)",
            "com.example.app:/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
            "/relative",
            "http://127.0.0.1.evil.com/cb",
        ] {
            assert!(check_registrable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact_except_loopback_ports() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
        assert!(!matches(
            "https://a.example/cb",
            "https://a.example:8443/cb"
        ));
        assert!(!matches("https://a.example/cb", "https://a.example/cb?x=1"));
        assert!(!matches("https://a.example/cb", "https://A.example/cb"));
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:53682/cb"));
        assert!(matches(
            "http://127.0.0.1:1000/cb",
            "http://127.0.0.1:2000/cb"
        ));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:5/other"));
        assert!(!matches("http://127.0.0.1/cb", "http://localhost:5/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:5/cb#x"));
        assert!(!matches("http://127.0.0.1/cb", "http://u@127.0.0.1:5/cb"));
    }

    #[test]
    fn resolve_needs_a_uri_unless_exactly_one_is_registered() {
        let one = vec!["https://a.example/cb".to_owned()];
        let two = vec![
            "https://a.example/cb".to_owned(),
            "https://a.example/2".into(),
        ];
        assert_eq!(resolve(&one, None), Some("https://a.example/cb"));
        assert_eq!(resolve(&two, None), None);
        assert_eq!(
            resolve(&two, Some("https://a.example/2")),
            Some("https://a.example/2")
        );
        assert_eq!(resolve(&two, Some("https://evil.example/")), None);
    }

    #[test]
    fn host_for_the_consent_page() {
        assert_eq!(host_of("https://app.example.com/cb"), "app.example.com");
        assert_eq!(host_of("http://127.0.0.1:9000/cb"), "127.0.0.1:9000");
    }
}
