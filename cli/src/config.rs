//! `config`: an MCP client's configuration for a remote (Streamable HTTP) server, in the
//! client's own file format.
//!
//! The formats, as the clients document them:
//! - Claude Desktop (`claude_desktop_config.json`) has no entry for a remote server with
//!   headers, so the server is reached through `mcp-remote`, a local stdio proxy started with
//!   `npx`: `{"mcpServers": {NAME: {"command": "npx", "args": ["-y", "mcp-remote", URL,
//!   "--header", "Name:${VAR}"], "env": {VAR: ...}}}}`. mcp-remote replaces `${VAR}` in its
//!   arguments from its environment; `Name:${VAR}` has no space because Claude Desktop on
//!   Windows splits arguments at spaces.
//! - Claude Code (`.mcp.json`): `{"mcpServers": {NAME: {"type": "http", "url": URL,
//!   "headers": {...}}}}`; it expands `${VAR}` in `url` and `headers`.
//! - VS Code (`.vscode/mcp.json`): `{"inputs": [...], "servers": {NAME: {"type": "http",
//!   "url": URL, "headers": {...}}}}`; `${input:ID}` prompts for a `promptString` input once
//!   and keeps it in VS Code's secret storage.
//! - Cursor (`~/.cursor/mcp.json`): `{"mcpServers": {NAME: {"url": URL, "headers": {...}}}}`;
//!   it expands `${env:VAR}`.

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};
use url::Url;

use crate::{
    header::{Header, parse_header},
    outcome::{Failure, Outcome, note, print},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Client {
    /// Claude Desktop's claude_desktop_config.json, through the mcp-remote proxy.
    ClaudeDesktop,
    /// Claude Code's .mcp.json (and the `claude mcp add` command line).
    ClaudeCode,
    /// VS Code's .vscode/mcp.json, with a password prompt for each secret.
    Vscode,
    /// Cursor's ~/.cursor/mcp.json.
    Cursor,
}

#[derive(Args)]
#[command(after_help = "\
Examples:
  mcp-gatekeeper config claude-desktop https://mcp.example.com/mcp --header 'X-API-Key: mgk_...'
  mcp-gatekeeper config claude-code https://mcp.example.com/mcp --header 'X-API-Key: mgk_...' > .mcp.json
  mcp-gatekeeper config vscode https://mcp.example.com/mcp --header 'Authorization: Bearer eyJ...' --name data
  mcp-gatekeeper config cursor https://mcp.example.com/mcp   # OAuth sign-in, no header")]
pub(crate) struct ConfigArgs {
    /// The client to configure.
    #[arg(value_enum, value_name = "CLIENT")]
    client: Client,
    /// The server's MCP endpoint, e.g. `https://mcp.example.com/mcp`.
    #[arg(value_name = "URL", value_parser = parse_endpoint)]
    url: Url,
    /// A header to send with every request, `Name: value`; repeat for several.
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    headers: Vec<Header>,
    /// The server's name in the client (letters, digits, `_`, `-`) [default: from the URL's
    /// host].
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    name: Option<String>,
    /// Write secrets into the configuration as given, instead of placeholders.
    #[arg(long)]
    inline_secrets: bool,
}

/// A header as the configuration writes it: the value, or a placeholder for a secret.
struct Planned<'a> {
    header: &'a Header,
    /// For a secret written as a placeholder: the environment variable (or VS Code input id,
    /// lower-cased with `-`) that holds it.
    variable: Option<String>,
}

impl Planned<'_> {
    /// The part of the value the variable stands for: the credential after an
    /// `Authorization` scheme (`Bearer <token>`), else the whole value.
    fn scheme_and_secret(&self) -> (Option<&str>, &str) {
        let value = self.header.value.as_str();
        if self.header.is_authorization()
            && let Some((scheme, credential)) = value.split_once(' ')
        {
            return (Some(scheme), credential.trim());
        }
        (None, value)
    }

    /// The header value with the secret replaced by `placeholder`.
    fn with_placeholder(&self, placeholder: &str) -> String {
        match self.scheme_and_secret() {
            (Some(scheme), _) => format!("{scheme} {placeholder}"),
            (None, _) => placeholder.to_owned(),
        }
    }
}

pub(crate) fn run(args: &ConfigArgs) -> Result<Outcome, Failure> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| name_from_host(&args.url));
    let planned = plan(&args.headers, args.inline_secrets);
    let url = args.url.as_str();
    let (config, notes) = match args.client {
        Client::ClaudeDesktop => claude_desktop(&name, url, &args.url, &planned),
        Client::ClaudeCode => claude_code(&name, url, &planned),
        Client::Vscode => vscode(&name, url, &planned),
        Client::Cursor => cursor(&name, url, &planned),
    };
    let text = serde_json::to_string_pretty(&config)
        .map_err(|error| Failure::Unable(format!("cannot write JSON: {error}")))?;
    print(&text)?;
    for line in notes {
        note(&format!("# {line}"));
    }
    if args.headers.is_empty() {
        note("# no --header: the client signs in with OAuth if the server offers it");
    }
    if args.url.scheme() == "http" && !is_loopback(&args.url) {
        note(
            "# warning: plain http to a remote host: credentials cross the network \
             unencrypted; use https",
        );
    }
    Ok(Outcome::Success)
}

/// Decides which headers become placeholders, and the variable of each.
fn plan(headers: &[Header], inline_secrets: bool) -> Vec<Planned<'_>> {
    let mut taken: Vec<String> = Vec::new();
    headers
        .iter()
        .map(|header| {
            let variable = (header.is_secret() && !inline_secrets).then(|| {
                let base = variable_for(header);
                let mut variable = base.clone();
                let mut n = 2;
                while taken.contains(&variable) {
                    variable = format!("{base}_{n}");
                    n += 1;
                }
                taken.push(variable.clone());
                variable
            });
            Planned { header, variable }
        })
        .collect()
}

/// `X-API-Key` → `MCP_API_KEY`, `Authorization: Bearer` → `MCP_BEARER_TOKEN`,
/// `X-Tenant-Token` → `MCP_TENANT_TOKEN`.
fn variable_for(header: &Header) -> String {
    if header.is_authorization() {
        let scheme = header.value.split(' ').next().unwrap_or_default();
        return if scheme.eq_ignore_ascii_case("bearer") {
            "MCP_BEARER_TOKEN".to_owned()
        } else if scheme.eq_ignore_ascii_case("basic") {
            "MCP_BASIC_CREDENTIALS".to_owned()
        } else {
            "MCP_AUTHORIZATION".to_owned()
        };
    }
    let upper: String = header
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let stem = upper.strip_prefix("X_").unwrap_or(&upper);
    format!("MCP_{stem}")
}

/// What to put in place of a secret the user supplies: `<your X-API-Key>`.
fn fill_me_in(planned: &Planned<'_>) -> String {
    match planned.scheme_and_secret() {
        (Some(scheme), _) => format!("<your {} {scheme} credential>", planned.header.name),
        (None, _) => format!("<your {}>", planned.header.name),
    }
}

fn claude_desktop(
    name: &str,
    url: &str,
    parsed: &Url,
    planned: &[Planned<'_>],
) -> (Value, Vec<String>) {
    let mut args = vec![json!("-y"), json!("mcp-remote"), json!(url)];
    if parsed.scheme() == "http" && !is_loopback(parsed) {
        // mcp-remote refuses plain http to anything but localhost unless told.
        args.push(json!("--allow-http"));
    }
    let mut env = Map::new();
    let mut notes = vec![
        "claude_desktop_config.json: on macOS ~/Library/Application Support/Claude/, on Windows \
         %APPDATA%\\Claude\\; merge the entry into \"mcpServers\" and restart Claude Desktop"
            .to_owned(),
        "needs Node.js (npx starts the mcp-remote proxy, which connects to the server)".to_owned(),
    ];
    for (index, entry) in planned.iter().enumerate() {
        let header = entry.header;
        // A value with a space goes through the environment too: Claude Desktop on Windows
        // splits arguments at spaces.
        let variable = entry.variable.clone().or_else(|| {
            header
                .value
                .contains(' ')
                .then(|| format!("MCP_HEADER_{}", index + 1))
        });
        match variable {
            Some(variable) => {
                args.push(json!("--header"));
                args.push(json!(format!("{}:${{{variable}}}", header.name)));
                let value = if entry.variable.is_some() {
                    note_secret(&mut notes, &variable, "env", &header.name);
                    fill_me_in_whole(entry)
                } else {
                    header.value.clone()
                };
                env.insert(variable, json!(value));
            }
            None => {
                args.push(json!("--header"));
                args.push(json!(format!("{}:{}", header.name, header.value)));
            }
        }
    }
    let mut server = Map::new();
    server.insert("command".into(), json!("npx"));
    server.insert("args".into(), Value::Array(args));
    if !env.is_empty() {
        server.insert("env".into(), Value::Object(env));
    }
    (json!({ "mcpServers": { name: server } }), notes)
}

/// For mcp-remote the variable holds the whole header value, scheme included.
fn fill_me_in_whole(planned: &Planned<'_>) -> String {
    match planned.scheme_and_secret() {
        (Some(scheme), _) => format!("{scheme} <your credential>"),
        (None, _) => fill_me_in(planned),
    }
}

fn note_secret(notes: &mut Vec<String>, variable: &str, place: &str, header: &str) {
    notes.push(format!(
        "replace the placeholder of {variable} in \"{place}\" with your {header} value (or run \
         again with --inline-secrets); the file then holds a secret: keep it private"
    ));
}

fn claude_code(name: &str, url: &str, planned: &[Planned<'_>]) -> (Value, Vec<String>) {
    let mut headers = Map::new();
    let mut command = format!("claude mcp add --transport http --scope project {name} {url}");
    let mut variables = Vec::new();
    for entry in planned {
        let value = match &entry.variable {
            Some(variable) => {
                variables.push(variable.clone());
                entry.with_placeholder(&format!("${{{variable}}}"))
            }
            None => entry.header.value.clone(),
        };
        // Single quotes keep the shell from expanding the placeholder: Claude Code expands it
        // itself whenever it connects, so the secret never lands in the file.
        command.push_str(&format!(" --header '{}: {}'", entry.header.name, value));
        headers.insert(entry.header.name.clone(), json!(value));
    }
    let mut server = Map::new();
    server.insert("type".into(), json!("http"));
    server.insert("url".into(), json!(url));
    if !headers.is_empty() {
        server.insert("headers".into(), Value::Object(headers));
    }
    let mut notes = vec![
        ".mcp.json at the project's root (merge into \"mcpServers\"); Claude Code asks to \
         approve project servers before using them"
            .to_owned(),
        format!("or let Claude Code write it: {command}"),
    ];
    if !variables.is_empty() {
        notes.push(format!(
            "set {} in the environment Claude Code starts from",
            variables.join(" and ")
        ));
    }
    (json!({ "mcpServers": { name: server } }), notes)
}

fn vscode(name: &str, url: &str, planned: &[Planned<'_>]) -> (Value, Vec<String>) {
    let mut headers = Map::new();
    let mut inputs = Vec::new();
    for entry in planned {
        let value = match &entry.variable {
            Some(variable) => {
                let id = variable.to_ascii_lowercase().replace('_', "-");
                inputs.push(json!({
                    "type": "promptString",
                    "id": id,
                    "description": format!("{} for the MCP server {name}", secret_label(entry)),
                    "password": true,
                }));
                entry.with_placeholder(&format!("${{input:{id}}}"))
            }
            None => entry.header.value.clone(),
        };
        headers.insert(entry.header.name.clone(), json!(value));
    }
    let mut server = Map::new();
    server.insert("type".into(), json!("http"));
    server.insert("url".into(), json!(url));
    if !headers.is_empty() {
        server.insert("headers".into(), Value::Object(headers));
    }
    let mut notes = vec![
        ".vscode/mcp.json in the workspace, or the user configuration (command \"MCP: Open User \
         Configuration\"); merge into \"servers\" and \"inputs\""
            .to_owned(),
    ];
    if !inputs.is_empty() {
        notes.push(
            "VS Code asks for each secret when it first starts the server and keeps it in its \
             secret storage"
                .to_owned(),
        );
    }
    (
        json!({ "inputs": inputs, "servers": { name: server } }),
        notes,
    )
}

/// `X-API-Key`, or `Bearer token` for an `Authorization` header.
fn secret_label(planned: &Planned<'_>) -> String {
    match planned.scheme_and_secret() {
        (Some(scheme), _) => format!("{scheme} token"),
        (None, _) => planned.header.name.clone(),
    }
}

fn cursor(name: &str, url: &str, planned: &[Planned<'_>]) -> (Value, Vec<String>) {
    let mut headers = Map::new();
    let mut variables = Vec::new();
    for entry in planned {
        let value = match &entry.variable {
            Some(variable) => {
                variables.push(variable.clone());
                entry.with_placeholder(&format!("${{env:{variable}}}"))
            }
            None => entry.header.value.clone(),
        };
        headers.insert(entry.header.name.clone(), json!(value));
    }
    let mut server = Map::new();
    server.insert("url".into(), json!(url));
    if !headers.is_empty() {
        server.insert("headers".into(), Value::Object(headers));
    }
    let mut notes = vec![
        "~/.cursor/mcp.json for every project, or .cursor/mcp.json in one project; merge into \
         \"mcpServers\""
            .to_owned(),
    ];
    if !variables.is_empty() {
        notes.push(format!(
            "set {} in the environment Cursor starts from",
            variables.join(" and ")
        ));
    }
    (json!({ "mcpServers": { name: server } }), notes)
}

/// `mcp.example.com` → `mcp-example-com`; a name that would not start with a letter gets
/// `mcp-` in front (`127.0.0.1` → `mcp-127-0-0-1`).
fn name_from_host(url: &Url) -> String {
    let host = url.host_str().unwrap_or("server");
    let mut name = String::new();
    for c in host.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_matches('-');
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.to_owned()
    } else {
        format!("mcp-{name}").trim_end_matches('-').to_owned()
    }
}

/// Whether the URL's host is this machine.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An absolute `http(s)://` URL with a host and no credentials in it.
pub(crate) fn parse_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("not a URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http:// or https:// URL with a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in --header, not in the URL".to_owned());
    }
    if url.fragment().is_some() {
        return Err("an MCP endpoint has no #fragment".to_owned());
    }
    Ok(url)
}

fn parse_name(text: &str) -> Result<String, String> {
    let valid = text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err("a server name starts with a letter, then letters, digits, `_` and `-`".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Header {
        parse_header(text).unwrap()
    }

    #[test]
    fn secrets_get_variables_named_after_their_header() {
        let headers = [
            header("X-API-Key: k"),
            header("Authorization: Bearer t"),
            header("X-Tenant: acme"),
            header("X-Api-Key: second"),
        ];
        let planned = plan(&headers, false);
        let variables: Vec<Option<&str>> = planned.iter().map(|p| p.variable.as_deref()).collect();
        assert_eq!(
            variables,
            [
                Some("MCP_API_KEY"),
                Some("MCP_BEARER_TOKEN"),
                None,
                Some("MCP_API_KEY_2")
            ]
        );
        assert_eq!(planned[1].with_placeholder("${X}"), "Bearer ${X}");
        assert!(plan(&headers, true).iter().all(|p| p.variable.is_none()));
    }

    #[test]
    fn default_names_come_from_the_host() {
        let name = |url: &str| name_from_host(&Url::parse(url).unwrap());
        assert_eq!(name("https://mcp.example.com/mcp"), "mcp-example-com");
        assert_eq!(name("http://127.0.0.1:3000/mcp"), "mcp-127-0-0-1");
        assert_eq!(name("http://[::1]:3000/mcp"), "mcp-1");
        assert_eq!(name("http://localhost:3000/mcp"), "localhost");
    }
}
