//! Reading and validating an authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636;
//! RFC 8707 `resource`).
//!
//! The order matters: until the client and its redirect URI are established, every problem is
//! shown to the user on an error page and never redirected (RFC 6749 §4.1.2.1: redirecting to
//! an unverified URI makes the server an open redirector). After that, problems go back to the
//! client at its redirect URI, but only when the operator vouched for that URI (a configured
//! client): anyone can register a client whose redirect URI is their own site, and an error
//! redirect needs no login or consent, so for self-registered and metadata-document clients it
//! would turn this server into an open redirector again (RFC 9700 §4.11.2). Their invalid
//! requests get the error page instead; their valid ones still pass the login and consent
//! pages, which show the redirect host.

use std::borrow::Cow;

use http::StatusCode;

use crate::{
    oauth::{AsState, clients, grants, redirect},
    store::ClientRecord,
};

/// Longest query string accepted. Real authorization requests are a few hundred bytes; the cap
/// bounds what a waiting request can hold in memory.
const MAX_QUERY_BYTES: usize = 8 * 1024;

/// Length of a PKCE S256 challenge: base64url without padding of a SHA-256 (RFC 7636 §4.2).
const S256_CHALLENGE_LEN: usize = 43;

/// The parameters of an authorization request. Each appears at most once (RFC 6749 §3.1);
/// empty ones count as absent.
#[derive(Debug, Default)]
pub(super) struct Params {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// RFC 8707 allows several; this server issues tokens for one audience.
    resources: Vec<String>,
}

/// A valid authorization request.
pub(super) struct Validated {
    /// The client asking.
    pub(super) client: ClientRecord,
    /// The redirect URI, matched against the client's registered ones.
    pub(super) redirect_uri: String,
    /// The client's `state`.
    pub(super) state: Option<String>,
    /// The PKCE S256 challenge.
    pub(super) code_challenge: String,
    /// Requested (or all the client's) scopes ∩ the client's, in the server's order.
    pub(super) scopes: Vec<String>,
    /// The canonical resource.
    pub(super) resource: String,
}

/// Why a request is refused.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The client or redirect URI is not established, or nobody vouched for the redirect URI:
    /// an error page, never a redirect.
    Page {
        /// 400, or 503 when the store failed.
        status: StatusCode,
        /// The audit reason.
        reason: &'static str,
        /// What the user is told.
        message: Cow<'static, str>,
        /// The client named, if any (for the audit).
        client_id: Option<String>,
    },
    /// Reported to the client at its (verified) redirect URI, for a client the operator vouched
    /// for ([`ClientRecord::vouched_for`]).
    Redirect {
        /// The client.
        client_id: String,
        /// Where to.
        redirect_uri: String,
        /// The client's `state`, echoed.
        state: Option<String>,
        /// The RFC 6749 §4.1.2.1 error code.
        error: &'static str,
        /// `error_description`.
        description: Cow<'static, str>,
    },
}

impl Refusal {
    fn page(reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Refusal::Page {
            status: StatusCode::BAD_REQUEST,
            reason,
            message: message.into(),
            client_id: None,
        }
    }
}

/// Reads the query string of an authorization request.
///
/// # Errors
/// The message for the error page when the query is too long or a parameter is repeated (which
/// cannot be reported to the client: it might be `client_id` or `redirect_uri` itself).
pub(super) fn parse(query: &str) -> Result<Params, Refusal> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(Refusal::page(
            "request_too_large",
            "The authorization request is too long.",
        ));
    }
    let mut params = Params::default();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if value.is_empty() {
            continue; // RFC 6749 §3.1: a parameter without a value is treated as omitted.
        }
        let slot = match name.as_ref() {
            "response_type" => &mut params.response_type,
            "client_id" => &mut params.client_id,
            "redirect_uri" => &mut params.redirect_uri,
            "scope" => &mut params.scope,
            "state" => &mut params.state,
            "code_challenge" => &mut params.code_challenge,
            "code_challenge_method" => &mut params.code_challenge_method,
            "resource" => {
                params.resources.push(value.into_owned());
                continue;
            }
            _ => continue, // unknown parameters are ignored (RFC 6749 §3.1)
        };
        if slot.is_some() {
            return Err(Refusal::page(
                "repeated_parameter",
                format!("The parameter `{name}` appears more than once in the request."),
            ));
        }
        *slot = Some(value.into_owned());
    }
    Ok(params)
}

/// Validates a request: client and redirect URI first, then the rest.
/// `remote` is the requester's address (a metadata document fetched for it counts toward its
/// limits).
pub(super) async fn validate(
    state: &AsState,
    params: Params,
    remote: Option<std::net::IpAddr>,
) -> Result<Validated, Refusal> {
    let client = find_client(state, params.client_id.as_deref(), remote).await?;
    let Some(redirect_uri) =
        redirect::resolve(&client.redirect_uris, params.redirect_uri.as_deref()).map(str::to_owned)
    else {
        return Err(Refusal::Page {
            status: StatusCode::BAD_REQUEST,
            reason: "invalid_redirect_uri",
            message: if params.redirect_uri.is_some() {
                "The redirect URI is not registered for this application.".into()
            } else {
                "The request names no redirect URI, and the application has several.".into()
            },
            client_id: Some(client.client_id),
        });
    };
    let vouched_for = client.vouched_for();
    let refuse = |error: &'static str, description: Cow<'static, str>| {
        if vouched_for {
            Refusal::Redirect {
                client_id: client.client_id.clone(),
                redirect_uri: redirect_uri.clone(),
                state: params.state.clone(),
                error,
                description,
            }
        } else {
            Refusal::Page {
                status: StatusCode::BAD_REQUEST,
                reason: error,
                message: description,
                client_id: Some(client.client_id.clone()),
            }
        }
    };
    if !client
        .grant_types
        .iter()
        .any(|g| g == grants::AUTHORIZATION_CODE)
    {
        return Err(refuse(
            "unauthorized_client",
            "the client may not use the authorization code grant".into(),
        ));
    }
    check_response_type(params.response_type.as_deref())
        .map_err(|(error, why)| refuse(error, why.into()))?;
    let code_challenge = check_pkce(
        params.code_challenge.as_deref(),
        params.code_challenge_method.as_deref(),
    )
    .map_err(|why| refuse("invalid_request", why.into()))?;
    let scopes = offered_scopes(state, &client, params.scope.as_deref())
        .map_err(|why| refuse("invalid_scope", why))?;
    let resource = match params.resources.as_slice() {
        [] => state.resource_for(None),
        [one] => state.resource_for(Some(one)),
        _ => None, // tokens have a single audience
    }
    .ok_or_else(|| {
        refuse(
            "invalid_target",
            "the requested resource is not served by this authorization server".into(),
        )
    })?;
    Ok(Validated {
        redirect_uri,
        state: params.state,
        code_challenge,
        scopes,
        resource,
        client,
    })
}

/// The client named by `client_id`, or the error page.
async fn find_client(
    state: &AsState,
    client_id: Option<&str>,
    remote: Option<std::net::IpAddr>,
) -> Result<ClientRecord, Refusal> {
    let Some(client_id) = client_id else {
        return Err(Refusal::page(
            "invalid_request",
            "The request names no application (client_id is missing).",
        ));
    };
    match clients::find(state, client_id, remote).await {
        Ok(Some(client)) => Ok(client),
        Ok(None) => Err(Refusal::Page {
            status: StatusCode::BAD_REQUEST,
            reason: "unknown_client",
            message: "The application asking for access is not known to this server.".into(),
            client_id: Some(client_id.to_owned()),
        }),
        Err(error) => {
            let unavailable = error.code() == "temporarily_unavailable";
            Err(Refusal::Page {
                status: if unavailable {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_REQUEST
                },
                reason: error.code(),
                message: if unavailable {
                    "The server cannot answer right now. Try again in a moment.".into()
                } else {
                    format!(
                        "The application could not be identified: {}",
                        error.description()
                    )
                    .into()
                },
                client_id: Some(client_id.to_owned()),
            })
        }
    }
}

/// Only the code flow exists (no implicit grant: OAuth 2.1).
fn check_response_type(response_type: Option<&str>) -> Result<(), (&'static str, &'static str)> {
    match response_type {
        Some("code") => Ok(()),
        None => Err(("invalid_request", "response_type is required")),
        Some(_) => Err((
            "unsupported_response_type",
            "only response_type=code is supported",
        )),
    }
}

/// PKCE is required, with S256 only (`plain` would expose the verifier; RFC 9700 §2.1.1).
fn check_pkce(challenge: Option<&str>, method: Option<&str>) -> Result<String, &'static str> {
    let challenge = challenge.ok_or("PKCE is required: send code_challenge")?;
    match method {
        Some("S256") => {}
        None => return Err("code_challenge_method is required and must be S256"),
        Some(_) => return Err("code_challenge_method must be S256"),
    }
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if challenge.len() != S256_CHALLENGE_LEN || !challenge.bytes().all(base64url) {
        return Err("code_challenge must be 43 base64url characters (an S256 challenge)");
    }
    Ok(challenge.to_owned())
}

/// The scopes the request may be granted: the requested ones (or, when none are requested, all
/// the client's) that the client is allowed, in the server's order. An unknown scope refuses
/// the request; a known one the client may not have is silently left out (RFC 6749 §3.3).
fn offered_scopes(
    state: &AsState,
    client: &ClientRecord,
    requested: Option<&str>,
) -> Result<Vec<String>, Cow<'static, str>> {
    let requested: Option<Vec<&str>> =
        requested.map(|s| s.split(' ').filter(|s| !s.is_empty()).collect());
    if let Some(requested) = &requested {
        for scope in requested {
            if !state.scopes.iter().any(|s| s == scope) {
                return Err(format!("unknown scope `{scope}`").into());
            }
        }
    }
    Ok(state
        .scopes
        .iter()
        .filter(|s| client.allowed_scopes.contains(s))
        .filter(|s| requested.as_ref().is_none_or(|r| r.contains(&s.as_str())))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_once_and_empty_ones_ignored() {
        let p = parse("response_type=code&client_id=a%20b&state=&scope=x+y&foo=1&foo=2").unwrap();
        assert_eq!(p.response_type.as_deref(), Some("code"));
        assert_eq!(p.client_id.as_deref(), Some("a b"));
        assert_eq!(p.state, None);
        assert_eq!(p.scope.as_deref(), Some("x y"));
        for repeated in [
            "client_id=a&client_id=a",
            "redirect_uri=x&redirect_uri=y",
            "state=1&state=2",
            "code_challenge=a&code_challenge=b",
        ] {
            assert!(
                matches!(
                    parse(repeated),
                    Err(Refusal::Page {
                        reason: "repeated_parameter",
                        ..
                    })
                ),
                "{repeated}"
            );
        }
        assert_eq!(parse("resource=a&resource=b").unwrap().resources.len(), 2);
        assert!(parse(&"a".repeat(MAX_QUERY_BYTES + 1)).is_err());
    }

    #[test]
    fn pkce_must_be_s256() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(
            check_pkce(Some(challenge), Some("S256")).unwrap(),
            challenge
        );
        assert!(check_pkce(None, Some("S256")).is_err());
        assert!(check_pkce(Some(challenge), None).is_err());
        assert!(check_pkce(Some(challenge), Some("plain")).is_err());
        assert!(check_pkce(Some(&challenge[1..]), Some("S256")).is_err());
        assert!(check_pkce(Some(&challenge.replace('-', "+")), Some("S256")).is_err());
    }

    #[test]
    fn only_the_code_flow() {
        assert!(check_response_type(Some("code")).is_ok());
        assert_eq!(
            check_response_type(Some("token")).unwrap_err().0,
            "unsupported_response_type"
        );
        assert_eq!(check_response_type(None).unwrap_err().0, "invalid_request");
    }
}
