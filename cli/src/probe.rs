//! `probe`: what an MCP client finds at a server, step by step, and what is wrong with it.
//!
//! The steps are a client's: an `initialize` without credentials (the `401` and its
//! `WWW-Authenticate` challenge), the RFC 9728 protected-resource metadata, the metadata of
//! the authorization server it names (RFC 8414, or OpenID Connect discovery), and with
//! `--header` an authenticated `initialize` and `tools/list`. Each finding is one line.

use std::time::Duration;

use clap::Args;
use reqwest::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use serde_json::{Value, json};
use url::Url;

use crate::{
    config::{is_loopback, parse_endpoint},
    header::{Header, parse_header},
    outcome::{Failure, Outcome, note, print},
};

/// Every request gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a body that is read; metadata and MCP answers are far smaller.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The protocol version the probe speaks: one every current server and SDK accepts.
const PROTOCOL_VERSION: &str = "2025-06-18";

#[derive(Args)]
#[command(after_help = "\
Examples:
  mcp-gatekeeper probe https://mcp.example.com/mcp
  mcp-gatekeeper probe http://127.0.0.1:3000/mcp --header \"X-API-Key: $MCP_API_KEY\"
  mcp-gatekeeper probe https://mcp.example.com/mcp --header \"Authorization: Bearer $TOKEN\"")]
pub(crate) struct ProbeArgs {
    /// The server's MCP endpoint, e.g. `https://mcp.example.com/mcp`.
    #[arg(value_name = "URL", value_parser = parse_endpoint)]
    url: Url,
    /// A credential (or other header) for the authenticated steps, `Name: value`; repeat for
    /// several.
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    headers: Vec<Header>,
}

pub(crate) fn run(args: &ProbeArgs) -> Result<Outcome, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Unable(format!("cannot start the async runtime: {error}")))?;
    runtime.block_on(probe(args))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Info,
    Warn,
    Fail,
}

/// The findings so far, printed as they are made.
struct Report {
    failed: bool,
}

impl Report {
    fn say(&mut self, level: Level, text: &str) -> Result<(), Failure> {
        let marker = match level {
            Level::Ok => "ok  ",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        self.failed |= level == Level::Fail;
        print(&format!("{marker}  {text}"))
    }
}

/// An answer, its body read up to the cap.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text for a message: at most 200 characters of its first line.
    fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let first = text.lines().next().unwrap_or_default().trim();
        let mut excerpt: String = first.chars().take(200).collect();
        if excerpt.len() < first.len() {
            excerpt.push('…');
        }
        if excerpt.is_empty() {
            "(empty body)".to_owned()
        } else {
            excerpt
        }
    }

    /// The `error_description` of a JSON error body, else an excerpt.
    fn description(&self) -> String {
        self.json()
            .and_then(|body| body["error_description"].as_str().map(str::to_owned))
            .unwrap_or_else(|| self.excerpt())
    }
}

struct Http {
    client: reqwest::Client,
}

impl Http {
    fn new() -> Result<Self, Failure> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // A redirect is itself a finding: MCP clients do not follow one on POST.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcp-gatekeeper-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Failure::Unable(format!("cannot set up HTTP: {error}")))?;
        Ok(Self { client })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<String>,
    ) -> Result<Answer, String> {
        let mut request = self.client.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| describe_error(&error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| describe_error(&error))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!(
                    "{url} answered with a body larger than {} KiB",
                    MAX_BODY_BYTES / 1024
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn get(&self, url: &str) -> Result<Answer, String> {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("application/json"));
        self.send(Method::GET, url, headers, None).await
    }

    /// POSTs a JSON-RPC message as a Streamable HTTP client does.
    async fn post_mcp(
        &self,
        url: &str,
        mut headers: HeaderMap,
        message: &Value,
    ) -> Result<Answer, String> {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        self.send(Method::POST, url, headers, Some(message.to_string()))
            .await
    }
}

/// A transport error with its causes ("connection refused", "operation timed out"), which
/// reqwest's own message leaves out.
fn describe_error(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        format!("no answer within {} s", TIMEOUT.as_secs())
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn initialize_message(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "mcp-gatekeeper-probe", "version": env!("CARGO_PKG_VERSION") }
        }
    })
}

async fn probe(args: &ProbeArgs) -> Result<Outcome, Failure> {
    let http = Http::new()?;
    let url = args.url.as_str();
    let mut report = Report { failed: false };
    if args.url.scheme() == "http" && !is_loopback(&args.url) {
        report.say(
            Level::Warn,
            "plain http to a remote host: credentials cross the network unencrypted, and MCP \
             clients require https for remote servers",
        )?;
    }

    // 1. What a client without credentials is told.
    let first = http
        .post_mcp(url, HeaderMap::new(), &initialize_message(1))
        .await
        .map_err(|error| Failure::Unable(format!("cannot reach {url}: {error}")))?;
    let first = unauthenticated(&mut report, &args.url, &first)?;

    // 2. and 3. OAuth discovery.
    if let First::Challenged(challenge) = &first {
        discover(&mut report, &http, &args.url, challenge).await?;
    }

    // 4. With the caller's credentials.
    if first == First::Refused {
        // The same refusal would come again, credentials or not.
        if !args.headers.is_empty() {
            report.say(
                Level::Info,
                "the credentials were not tried: the endpoint refused the request before \
                 authentication",
            )?;
        }
    } else if args.headers.is_empty() {
        report.say(
            Level::Info,
            "give --header 'X-API-Key: …' or --header 'Authorization: Bearer …' to check a \
             credential and list the tools it sees",
        )?;
    } else {
        authenticated(&mut report, &http, url, &args.headers).await?;
    }

    if report.failed {
        note("the probe found problems (the `fail` lines above)");
        Ok(Outcome::ProblemFound)
    } else {
        Ok(Outcome::Success)
    }
}

/// What the answer to the `initialize` without credentials showed.
#[derive(PartialEq, Eq)]
enum First {
    /// `401`: the server asks for credentials.
    Challenged(Challenge),
    /// A success: the server takes no credentials.
    Open,
    /// Any other answer: the endpoint is not usable as it is (a refused `Host`, a wrong path).
    Refused,
}

/// What the `401` to a request without credentials says.
#[derive(Default, PartialEq, Eq)]
struct Challenge {
    /// `resource_metadata="..."` of the `WWW-Authenticate` header.
    resource_metadata: Option<String>,
}

/// Reads the answer to the unauthenticated `initialize`.
fn unauthenticated(report: &mut Report, url: &Url, answer: &Answer) -> Result<First, Failure> {
    let status = answer.status;
    if status == StatusCode::UNAUTHORIZED {
        report.say(
            Level::Ok,
            "the server requires credentials (401 to an initialize without any)",
        )?;
        let mut challenge = Challenge::default();
        match answer.header("www-authenticate") {
            Some(value) => {
                let parameters = auth_parameters(value);
                let scheme = value.split_whitespace().next().unwrap_or_default();
                if !scheme.eq_ignore_ascii_case("bearer") {
                    report.say(
                        Level::Warn,
                        &format!(
                            "the challenge's scheme is `{scheme}`, not Bearer: OAuth clients \
                             will not recognise it"
                        ),
                    )?;
                }
                challenge.resource_metadata = parameter(&parameters, "resource_metadata");
                if let Some(scope) = parameter(&parameters, "scope") {
                    report.say(
                        Level::Info,
                        &format!("the challenge asks for scopes `{scope}`"),
                    )?;
                }
            }
            None => report.say(
                Level::Warn,
                "the 401 has no WWW-Authenticate header: clients cannot tell how to \
                 authenticate (RFC 9110 §11.6.1 requires one)",
            )?,
        }
        accepted_credentials(report, answer)?;
        return Ok(First::Challenged(challenge));
    }
    if status.is_success() {
        report.say(
            Level::Warn,
            "the server answered initialize without any credentials: anyone who reaches it \
             can use its tools (allow_anonymous?)",
        )?;
        return Ok(First::Open);
    }
    let text = String::from_utf8_lossy(&answer.body);
    // The Host header as sent: the host and any port.
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let finding = if text.contains("Host header is not allowed") {
        format!(
            "Host not allowed: the server refused the Host header `{host}` ({status}): \
             configure allowed_hosts with the name clients use (Gatekeeper::allowed_hosts)"
        )
    } else if text.contains("Origin header is not allowed") {
        format!("Origin not allowed ({status}): configure allowed_origins")
    } else if status.is_redirection() {
        format!(
            "the endpoint redirects ({status}) to `{}`: MCP clients do not follow redirects on \
             POST; use the final URL",
            answer.header("location").unwrap_or("?")
        )
    } else if status == StatusCode::NOT_FOUND {
        format!(
            "nothing at {} (404): check the path (mcp-gatekeeper serves /mcp unless told \
             otherwise)",
            url.path()
        )
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        "the URL does not take POST (405): it is not a Streamable HTTP MCP endpoint".to_owned()
    } else if status == StatusCode::FORBIDDEN {
        format!(
            "403 to a request without credentials: clients cannot start authenticating ({})",
            answer.description()
        )
    } else {
        format!(
            "unexpected {status} to initialize without credentials: {}",
            answer.description()
        )
    };
    report.say(Level::Fail, &finding)?;
    Ok(First::Refused)
}

/// Says which credentials the `401`'s body tells clients to send (mcp-gatekeeper writes
/// "send `X-API-Key: <key>` or `Authorization: Bearer <token>`").
fn accepted_credentials(report: &mut Report, answer: &Answer) -> Result<(), Failure> {
    let description = answer.description();
    let mut ways = Vec::new();
    if description.contains("X-API-Key") {
        ways.push("API keys in X-API-Key");
    }
    if description.contains("Authorization: Bearer") {
        ways.push("bearer tokens in Authorization");
    }
    if ways.is_empty() {
        report.say(
            Level::Info,
            "the 401 does not say which credentials the server accepts",
        )
    } else {
        report.say(
            Level::Info,
            &format!("the server accepts {}", ways.join(" and ")),
        )
    }
}

/// The protected-resource metadata, then the authorization servers it names.
async fn discover(
    report: &mut Report,
    http: &Http,
    url: &Url,
    challenge: &Challenge,
) -> Result<(), Failure> {
    let candidates = match &challenge.resource_metadata {
        Some(named) => vec![named.clone()],
        None => protected_resource_locations(url),
    };
    let mut found = None;
    let mut tried = Vec::new();
    for candidate in &candidates {
        match http.get(candidate).await {
            Ok(answer) if answer.status == StatusCode::OK => match answer.json() {
                Some(metadata) if metadata.is_object() => {
                    found = Some((candidate.clone(), metadata));
                    break;
                }
                _ => tried.push(format!("{candidate} (200 but not a JSON object)")),
            },
            Ok(answer) => tried.push(format!("{candidate} ({})", answer.status)),
            Err(error) => tried.push(format!("{candidate} ({error})")),
        }
    }
    let Some((location, metadata)) = found else {
        if challenge.resource_metadata.is_some() {
            report.say(
                Level::Fail,
                &format!(
                    "the challenge names protected-resource metadata that cannot be fetched: {}",
                    tried.join("; ")
                ),
            )?;
        } else {
            report.say(
                Level::Warn,
                "no protected-resource metadata: OAuth clients cannot discover how to sign in \
                 (fine when callers bring API keys or tokens from elsewhere)",
            )?;
        }
        return Ok(());
    };
    report.say(
        Level::Ok,
        &format!("protected-resource metadata (RFC 9728) at {location}"),
    )?;
    if challenge.resource_metadata.is_none() {
        report.say(
            Level::Info,
            "the challenge has no resource_metadata parameter; clients find the metadata at \
             its well-known location",
        )?;
    }
    match metadata["resource"].as_str() {
        Some(resource) if same_resource(resource, url) => report.say(
            Level::Ok,
            &format!("the metadata's resource is this endpoint ({resource})"),
        )?,
        Some(resource) => report.say(
            Level::Fail,
            &format!(
                "the metadata names the resource `{resource}`, not this endpoint `{url}`: \
                 clients refuse it (RFC 9728 §3.3), and tokens are issued for the wrong audience; \
                 configure the resource URL clients use"
            ),
        )?,
        None => report.say(
            Level::Fail,
            "the metadata has no `resource`: clients refuse it (RFC 9728 §2)",
        )?,
    }
    if let Some(scopes) = string_list(&metadata["scopes_supported"]) {
        report.say(
            Level::Info,
            &format!("scopes offered: {}", scopes.join(" ")),
        )?;
    }
    if let Some(methods) = string_list(&metadata["bearer_methods_supported"])
        && !methods.iter().any(|m| m == "header")
    {
        report.say(
            Level::Warn,
            "bearer_methods_supported does not list `header`: MCP clients send tokens in the \
             Authorization header",
        )?;
    }
    let servers = string_list(&metadata["authorization_servers"]).unwrap_or_default();
    if servers.is_empty() {
        report.say(
            Level::Warn,
            "the metadata names no authorization server: OAuth clients cannot sign in",
        )?;
    }
    for issuer in servers.iter().take(3) {
        authorization_server(report, http, issuer).await?;
    }
    Ok(())
}

/// RFC 9728 §3.1: the well-known path inserted before the resource's path, then (as clients
/// fall back) at the root.
fn protected_resource_locations(url: &Url) -> Vec<String> {
    let origin = origin(url);
    let path = url.path().trim_end_matches('/');
    let mut locations = Vec::new();
    if !path.is_empty() {
        locations.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    locations.push(format!("{origin}/.well-known/oauth-protected-resource"));
    locations
}

/// The metadata of one authorization server, and what a client needs of it.
async fn authorization_server(
    report: &mut Report,
    http: &Http,
    issuer: &str,
) -> Result<(), Failure> {
    let Ok(issuer_url) = Url::parse(issuer) else {
        return report.say(
            Level::Fail,
            &format!("the authorization server `{issuer}` is not a URL"),
        );
    };
    let mut tried = Vec::new();
    let mut found = None;
    for (kind, location) in authorization_server_locations(&issuer_url) {
        match http.get(&location).await {
            Ok(answer) if answer.status == StatusCode::OK => match answer.json() {
                Some(metadata) if metadata.is_object() => {
                    found = Some((kind, location, metadata));
                    break;
                }
                _ => tried.push(format!("{location} (200 but not a JSON object)")),
            },
            Ok(answer) => tried.push(format!("{location} ({})", answer.status)),
            Err(error) => tried.push(format!("{location} ({error})")),
        }
    }
    let Some((kind, location, metadata)) = found else {
        return report.say(
            Level::Fail,
            &format!(
                "the authorization server {issuer} publishes no metadata, so clients cannot find \
                 its endpoints; tried {}",
                tried.join("; ")
            ),
        );
    };
    report.say(
        Level::Ok,
        &format!("authorization server {issuer}: {kind} at {location}"),
    )?;
    match metadata["issuer"].as_str() {
        Some(named) if named == issuer => {}
        Some(named) => report.say(
            Level::Fail,
            &format!(
                "its metadata says issuer `{named}`, not `{issuer}`: clients must refuse it \
                 (RFC 8414 §3.3)"
            ),
        )?,
        None => report.say(Level::Fail, "its metadata has no `issuer`")?,
    }
    for endpoint in ["authorization_endpoint", "token_endpoint"] {
        if metadata[endpoint].as_str().is_none() {
            report.say(
                Level::Fail,
                &format!("its metadata has no `{endpoint}`: clients cannot sign in"),
            )?;
        }
    }
    let pkce = string_list(&metadata["code_challenge_methods_supported"]).unwrap_or_default();
    if pkce.iter().any(|method| method == "S256") {
        report.say(Level::Ok, "it supports PKCE S256")?;
    } else {
        report.say(
            Level::Fail,
            "the authorization server does not support PKCE S256 \
             (code_challenge_methods_supported): MCP clients refuse to sign in without it",
        )?;
    }
    let registration = metadata["registration_endpoint"].as_str();
    let documents = metadata["client_id_metadata_document_supported"].as_bool() == Some(true);
    if let Some(endpoint) = registration {
        report.say(
            Level::Ok,
            &format!("dynamic client registration (RFC 7591) at {endpoint}"),
        )?;
    }
    if documents {
        report.say(Level::Ok, "it accepts client ID metadata documents")?;
    }
    if registration.is_none() && !documents {
        report.say(
            Level::Warn,
            "neither dynamic client registration nor client ID metadata documents: every \
             client needs a pre-registered client id",
        )?;
    }
    if let Some(grants) = string_list(&metadata["grant_types_supported"]) {
        report.say(Level::Info, &format!("grant types: {}", grants.join(", ")))?;
        if !grants.iter().any(|grant| grant == "authorization_code") {
            report.say(
                Level::Warn,
                "the authorization_code grant is not offered: interactive clients cannot sign in",
            )?;
        }
    }
    Ok(())
}

/// RFC 8414 §3.1 and OpenID Connect discovery, in the order the MCP specification has clients
/// try them: for an issuer with a path, the well-known segment inserted before the path, then
/// OpenID Connect's appended form.
fn authorization_server_locations(issuer: &Url) -> Vec<(&'static str, String)> {
    const RFC_8414: &str = "RFC 8414 metadata";
    const OIDC: &str = "OpenID Connect discovery";
    let origin = origin(issuer);
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            (
                RFC_8414,
                format!("{origin}/.well-known/oauth-authorization-server"),
            ),
            (OIDC, format!("{origin}/.well-known/openid-configuration")),
        ]
    } else {
        vec![
            (
                RFC_8414,
                format!("{origin}/.well-known/oauth-authorization-server{path}"),
            ),
            (
                OIDC,
                format!("{origin}/.well-known/openid-configuration{path}"),
            ),
            (
                OIDC,
                format!("{origin}{path}/.well-known/openid-configuration"),
            ),
        ]
    }
}

/// `initialize`, `notifications/initialized` and `tools/list` with the caller's headers.
async fn authenticated(
    report: &mut Report,
    http: &Http,
    url: &str,
    headers: &[Header],
) -> Result<(), Failure> {
    let mut base = HeaderMap::new();
    for header in headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_str(&header.value),
        ) else {
            return Err(Failure::Usage(format!(
                "--header `{}` cannot be sent",
                header.name
            )));
        };
        base.append(name, value);
    }
    let answer = match http
        .post_mcp(url, base.clone(), &initialize_message(1))
        .await
    {
        Ok(answer) => answer,
        Err(error) => {
            return report.say(
                Level::Fail,
                &format!("the authenticated initialize failed: {error}"),
            );
        }
    };
    if answer.status == StatusCode::UNAUTHORIZED || answer.status == StatusCode::FORBIDDEN {
        return report.say(
            Level::Fail,
            &format!(
                "the server refused the credentials given with --header ({}): {}",
                answer.status,
                answer.description()
            ),
        );
    }
    if !answer.status.is_success() {
        return report.say(
            Level::Fail,
            &format!(
                "unexpected {} to the authenticated initialize: {}",
                answer.status,
                answer.description()
            ),
        );
    }
    let Some(result) = rpc_result(&answer, 1) else {
        return report.say(
            Level::Fail,
            &format!(
                "the answer to initialize is not a JSON-RPC result: {}",
                answer.excerpt()
            ),
        );
    };
    let server = &result["serverInfo"];
    report.say(
        Level::Ok,
        &format!(
            "the credentials are accepted: initialize answered by {} {} (protocol {})",
            server["name"].as_str().unwrap_or("an unnamed server"),
            server["version"].as_str().unwrap_or(""),
            result["protocolVersion"].as_str().unwrap_or("?")
        ),
    )?;
    let mut session = base.clone();
    if let Some(id) = answer.headers.get("mcp-session-id") {
        session.insert("mcp-session-id", id.clone());
    }
    if let Some(version) = result["protocolVersion"]
        .as_str()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        session.insert("mcp-protocol-version", version);
    }
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    if let Err(error) = http.post_mcp(url, session.clone(), &initialized).await {
        report.say(
            Level::Warn,
            &format!("notifications/initialized failed: {error}"),
        )?;
    }
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {} });
    let tools = http.post_mcp(url, session.clone(), &list).await;
    match tools {
        Ok(answer) if answer.status.is_success() => match rpc_result(&answer, 2) {
            Some(result) => {
                let names: Vec<&str> = result["tools"]
                    .as_array()
                    .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
                    .unwrap_or_default();
                if names.is_empty() {
                    report.say(
                        Level::Warn,
                        "no tool is listed for these credentials: their role and scopes may \
                         grant none",
                    )?;
                } else {
                    report.say(
                        Level::Ok,
                        &format!(
                            "{} {} listed for these credentials: {}",
                            names.len(),
                            if names.len() == 1 { "tool" } else { "tools" },
                            names.join(", ")
                        ),
                    )?;
                }
            }
            None => report.say(
                Level::Fail,
                &format!(
                    "tools/list did not answer with a result: {}",
                    answer.excerpt()
                ),
            )?,
        },
        Ok(answer) => report.say(
            Level::Fail,
            &format!(
                "tools/list answered {}: {}",
                answer.status,
                answer.description()
            ),
        )?,
        Err(error) => report.say(Level::Fail, &format!("tools/list failed: {error}"))?,
    }
    if session.contains_key("mcp-session-id") {
        // Ends the session rather than leaving it to time out; the answer does not matter.
        let _ = http.send(Method::DELETE, url, session, None).await;
    }
    Ok(())
}

/// The `result` of the JSON-RPC response with `id`, from a JSON body or a server-sent event
/// stream.
fn rpc_result(answer: &Answer, id: u64) -> Option<Value> {
    let is_stream = answer
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let messages: Vec<Value> = if is_stream {
        sse_data(&String::from_utf8_lossy(&answer.body))
            .iter()
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect()
    } else {
        match answer.json()? {
            Value::Array(batch) => batch,
            single => vec![single],
        }
    };
    messages
        .into_iter()
        .find(|message| message["id"] == json!(id))
        .and_then(|message| message.get("result").cloned())
}

/// The `data` of each event in a server-sent event stream (multi-line data joined by `\n`).
fn sse_data(stream: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in stream.lines() {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(data.join("\n"));
                data.clear();
            }
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if !data.is_empty() {
        events.push(data.join("\n"));
    }
    events
}

/// The parameters of a `WWW-Authenticate` challenge: `name="quoted"` or `name=token` pairs
/// (names lower-cased).
fn auth_parameters(challenge: &str) -> Vec<(String, String)> {
    let rest = challenge
        .trim()
        .split_once(char::is_whitespace)
        .map_or("", |(_, rest)| rest);
    let mut parameters = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => {
                        value.push(c);
                        escaped = false;
                    }
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        parameters.push((name, value));
    }
    parameters
}

fn parameter(parameters: &[(String, String)], name: &str) -> Option<String> {
    parameters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn string_list(value: &Value) -> Option<Vec<String>> {
    value.as_array().map(|items| {
        items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect()
    })
}

/// `scheme://host[:port]`.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Whether `resource` names the endpoint at `url` (a trailing slash aside).
fn same_resource(resource: &str, url: &Url) -> bool {
    let normalise = |text: &str| {
        Url::parse(text)
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|_| text.trim_end_matches('/').to_owned())
    };
    normalise(resource) == normalise(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_are_read() {
        let parameters = auth_parameters(
            r#"Bearer realm="mcp", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp", scope="a b", error=invalid_token"#,
        );
        assert_eq!(
            parameter(&parameters, "resource_metadata").as_deref(),
            Some("https://h/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(parameter(&parameters, "scope").as_deref(), Some("a b"));
        assert_eq!(
            parameter(&parameters, "error").as_deref(),
            Some("invalid_token")
        );
        assert!(auth_parameters("Bearer").is_empty());
        assert_eq!(
            parameter(&auth_parameters(r#"Bearer realm="a\"b""#), "realm").as_deref(),
            Some("a\"b")
        );
    }

    #[test]
    fn well_known_locations() {
        let url = Url::parse("https://h.example/tenant/mcp").unwrap();
        assert_eq!(
            protected_resource_locations(&url),
            [
                "https://h.example/.well-known/oauth-protected-resource/tenant/mcp",
                "https://h.example/.well-known/oauth-protected-resource"
            ]
        );
        let root = Url::parse("https://as.example").unwrap();
        let locations: Vec<String> = authorization_server_locations(&root)
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(
            locations,
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration"
            ]
        );
        let tenant = Url::parse("https://as.example/realms/x").unwrap();
        assert_eq!(authorization_server_locations(&tenant).len(), 3);
    }

    #[test]
    fn event_streams_yield_their_data() {
        let stream = "id: 1\nevent: message\ndata: {\"a\":1}\n\ndata: {\"b\":\ndata: 2}\n\n";
        assert_eq!(sse_data(stream), ["{\"a\":1}", "{\"b\":\n2}"]);
        assert!(same_resource(
            "http://127.0.0.1:1/mcp/",
            &Url::parse("http://127.0.0.1:1/mcp").unwrap()
        ));
    }
}
