//! `keys new`, `keys hash` and `keys check`: API keys and the key files that hold their
//! digests (the format `ApiKeys::from_file` reads).

use std::{
    io::{ErrorKind, IsTerminal as _, Read as _},
    path::PathBuf,
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use mcp_gatekeeper::{ApiKey, ApiKeys, ConfigError};
use rand::{TryRngCore as _, rngs::OsRng};

use crate::{
    outcome::{Failure, Outcome, note, print},
    time,
};

/// What every generated key starts with, so that secret scanners (and people) recognise one.
const KEY_PREFIX: &str = "mgk_";

/// Random bytes in a key: 256 bits, beyond any guessing.
const KEY_BYTES: usize = 32;

/// Keys expiring sooner than this are pointed out by `keys check`.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// The most `keys hash` reads from standard input: keys are short, and a stray file piped in
/// by mistake should not be read whole.
const MAX_STDIN_BYTES: u64 = 64 * 1024;

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate a new API key and the key-file line that holds its digest.
    ///
    /// The key is printed once and never stored: hand it to the client now. The line holds
    /// only the key's SHA-256 digest; append it to the server's key file (ApiKeys::from_file).
    #[command(after_help = "\
Examples:
  mcp-gatekeeper keys new --role admin
  mcp-gatekeeper keys new --role viewer --scope data:read --expires 90d --id ci-runner
  mcp-gatekeeper keys new --role - --subject reports@example.com --expires 2027-01-01
  mcp-gatekeeper keys new --role editor --json | jq -r .line >> keys.txt")]
    New(NewArgs),
    /// Print the `sha256:HEX` digest of an existing key, as key files hold it.
    ///
    /// Reads the key from standard input when KEY is omitted or `-` (so that it stays out of
    /// the shell history); one trailing newline is removed.
    #[command(after_help = "\
Examples:
  printf %s \"$KEY\" | mcp-gatekeeper keys hash
  mcp-gatekeeper keys hash < key.txt")]
    Hash(HashArgs),
    /// Check a key file as the server will read it, and point out keys that expire soon.
    ///
    /// Prints \"N keys OK\", or the error naming the line (exit 1). Keys already expired or
    /// expiring within 14 days are warned about without failing the check.
    #[command(after_help = "\
Examples:
  mcp-gatekeeper keys check /etc/mcp/keys.txt && systemctl reload mcp-server")]
    Check(CheckArgs),
}

#[derive(Args)]
pub(crate) struct NewArgs {
    /// The role the key grants (letters, digits, `_`, `-`), or `-` for none.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    role: String,
    /// A scope the key grants; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    scopes: Vec<String>,
    /// When the key stops working: an RFC 3339 timestamp, a date (midnight UTC) or a duration
    /// from now (`90d`, `12h`).
    #[arg(long, value_name = "WHEN", value_parser = time::parse_expiry)]
    expires: Option<DateTime<Utc>>,
    /// The key's name in logs and audit records [default: key-<8 random hex digits>].
    #[arg(long, value_name = "NAME", value_parser = parse_id)]
    id: Option<String>,
    /// Who the key speaks for [default: its id].
    #[arg(long, value_name = "SUB", value_parser = parse_subject)]
    subject: Option<String>,
    /// Print {"key", "line", "id"} as JSON, for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct HashArgs {
    /// The key; omit it (or give `-`) to read it from standard input.
    #[arg(value_name = "KEY")]
    key: Option<String>,
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The key file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

pub(crate) fn run(command: KeysCommand) -> Result<Outcome, Failure> {
    match command {
        KeysCommand::New(args) => new_key(&args),
        KeysCommand::Hash(args) => hash(args),
        KeysCommand::Check(args) => check(&args),
    }
}

fn new_key(args: &NewArgs) -> Result<Outcome, Failure> {
    let key = format!(
        "{KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<KEY_BYTES>()?)
    );
    let id = match &args.id {
        Some(id) => id.clone(),
        None => format!("key-{}", hex::encode(random_bytes::<4>()?)),
    };
    let line = key_file_line(&id, args, &ApiKey::digest_hex(&key));
    verify_line(&line, &key, &args.role)?;
    if args.json {
        let json = serde_json::json!({ "key": key, "line": line, "id": id });
        print(&json.to_string())?;
    } else {
        print("API key (shown only this once; give it to the client now, e.g. as X-API-Key):")?;
        print(&key)?;
        print("")?;
        print("Key-file line (holds only the key's digest; append it to the server's key file):")?;
        print(&line)?;
    }
    Ok(Outcome::Success)
}

/// `ID ROLE sha256:HEX [scopes=A,B] [expires=RFC3339] [subject=NAME]`.
fn key_file_line(id: &str, args: &NewArgs, digest_hex: &str) -> String {
    let mut line = format!("{id} {} sha256:{digest_hex}", args.role);
    if !args.scopes.is_empty() {
        line.push_str(&format!(" scopes={}", args.scopes.join(",")));
    }
    if let Some(at) = &args.expires {
        line.push_str(&format!(" expires={}", time::rfc3339(at)));
    }
    if let Some(subject) = &args.subject {
        line.push_str(&format!(" subject={subject}"));
    }
    line
}

/// Reads `line` back with the server's own parser and checks that `key` authenticates with
/// it, so that a line this tool prints is one the server accepts.
fn verify_line(line: &str, key: &str, role: &str) -> Result<(), Failure> {
    let keys = ApiKeys::parse_file(line)
        .map_err(|error| Failure::Usage(format!("the key-file line would not load: {error}")))?;
    let principal = keys
        .verify(key)
        .map_err(|error| Failure::Unable(format!("the new key does not verify: {error}")))?;
    let roles_match = if role == "-" {
        principal.roles().len() == 0
    } else {
        principal.roles().eq([role])
    };
    if roles_match {
        Ok(())
    } else {
        Err(Failure::Unable(
            "the new key does not carry the role asked for".to_owned(),
        ))
    }
}

fn hash(args: HashArgs) -> Result<Outcome, Failure> {
    let key = match args.key {
        Some(key) if key.is_empty() => return Err(Failure::Usage("no key given".to_owned())),
        Some(key) if key != "-" => {
            note(
                "note: a key given as an argument may stay in your shell history; pipe it on \
                 standard input instead",
            );
            key
        }
        _ => read_key_from_stdin()?,
    };
    if key.is_empty() {
        return Err(Failure::Usage("no key given".to_owned()));
    }
    if key.trim() != key {
        note("warning: the key starts or ends with whitespace, which is part of what is hashed");
    }
    print(&format!("sha256:{}", ApiKey::digest_hex(&key)))?;
    Ok(Outcome::Success)
}

/// The key on standard input without its one trailing newline.
fn read_key_from_stdin() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let mut text = String::new();
    let read = if stdin.is_terminal() {
        // Interactive: the key ends with Enter rather than end-of-file.
        note("Paste the key and press Enter:");
        stdin.read_line(&mut text).map(|_| ())
    } else {
        let mut bytes = Vec::new();
        stdin
            .lock()
            .take(MAX_STDIN_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| Failure::Unable(format!("cannot read standard input: {error}")))?;
        if bytes.len() as u64 > MAX_STDIN_BYTES {
            return Err(Failure::Usage(format!(
                "standard input holds more than {MAX_STDIN_BYTES} bytes: that is not a key"
            )));
        }
        text = String::from_utf8(bytes)
            .map_err(|_| Failure::Usage("the key on standard input is not UTF-8".to_owned()))?;
        Ok(())
    };
    read.map_err(|error| Failure::Unable(format!("cannot read standard input: {error}")))?;
    let without_newline = text
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest));
    if let Some(key) = without_newline {
        text.truncate(key.len());
    }
    Ok(text)
}

fn check(args: &CheckArgs) -> Result<Outcome, Failure> {
    let keys = match ApiKeys::from_file(&args.file) {
        Ok(keys) => keys,
        // A file that is not UTF-8 was read: it is an invalid key file, not an I/O failure.
        Err(ConfigError::Io { path, source }) if source.kind() == ErrorKind::InvalidData => {
            note(&format!(
                "invalid key file: `{}` is not UTF-8 text",
                path.display()
            ));
            return Ok(Outcome::ProblemFound);
        }
        Err(error @ ConfigError::Io { .. }) => return Err(Failure::Unable(error.to_string())),
        Err(error) => {
            note(&format!("invalid key file: {error}"));
            return Ok(Outcome::ProblemFound);
        }
    };
    let count = keys.len();
    print(&format!(
        "{count} {} OK",
        if count == 1 { "key" } else { "keys" }
    ))?;
    if count == 0 {
        note("warning: the file holds no key: the server would refuse every X-API-Key");
    }
    // The public API does not tell a loaded key's expiry, so the file is read again for the
    // warnings; the check above already proved it parses.
    if let Ok(text) = std::fs::read_to_string(&args.file) {
        for warning in expiry_warnings(&text, Utc::now()) {
            note(&format!("warning: {warning}"));
        }
    }
    Ok(Outcome::Success)
}

/// Warnings about keys in a valid key file that have expired or expire within
/// [`EXPIRY_WARNING_DAYS`] of `now`.
fn expiry_warnings(text: &str, now: DateTime<Utc>) -> Vec<String> {
    let soon = now + chrono::Duration::days(EXPIRY_WARNING_DAYS);
    let mut warnings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut fields = line
            .split_whitespace()
            .take_while(|field| !field.starts_with('#'));
        let Some(id) = fields.next() else { continue };
        let Some(expiry) = fields.find_map(|field| field.strip_prefix("expires=")) else {
            continue;
        };
        let Ok(at) = DateTime::parse_from_rfc3339(expiry) else {
            continue;
        };
        let at = at.with_timezone(&Utc);
        let number = index + 1;
        if at <= now {
            warnings.push(format!(
                "line {number}: key `{id}` expired at {} ({} ago)",
                time::rfc3339(&at),
                time::roughly(now - at)
            ));
        } else if at <= soon {
            warnings.push(format!(
                "line {number}: key `{id}` expires at {} (in {})",
                time::rfc3339(&at),
                time::roughly(at - now)
            ));
        }
    }
    warnings
}

/// `N` bytes from the operating system's random number generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Failure> {
    let mut bytes = [0u8; N];
    OsRng.try_fill_bytes(&mut bytes).map_err(|error| {
        Failure::Unable(format!(
            "the operating system's random number generator failed: {error}"
        ))
    })?;
    Ok(bytes)
}

fn parse_role(text: &str) -> Result<String, String> {
    if text == "-" || is_name(text) {
        Ok(text.to_owned())
    } else {
        Err("a role is letters, digits, `_` and `-` (or `-` alone for none)".to_owned())
    }
}

fn parse_scope(text: &str) -> Result<String, String> {
    // Scopes are comma-separated in the file and space-separated in tokens.
    if !text.is_empty()
        && !text.starts_with('#')
        && text.bytes().all(|b| b.is_ascii_graphic() && b != b',')
    {
        Ok(text.to_owned())
    } else {
        Err("a scope is visible ASCII without commas, not starting with `#`".to_owned())
    }
}

fn parse_id(text: &str) -> Result<String, String> {
    if !text.is_empty() && !text.starts_with('#') && text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.to_owned())
    } else {
        Err("a key id is visible ASCII without spaces, not starting with `#`".to_owned())
    }
}

fn parse_subject(text: &str) -> Result<String, String> {
    parse_id(text)
        .map_err(|_| "a subject is visible ASCII without spaces, not starting with `#`".to_owned())
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expired_or_expiring_soon_are_named_with_their_line() {
        let now = DateTime::parse_from_rfc3339("2030-01-10T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let digest = format!("sha256:{}", "a".repeat(64));
        let text = format!(
            "# comment expires=2000-01-01T00:00:00Z\n\
             old - {digest} expires=2030-01-01T00:00:00Z\n\
             soon admin {digest} scopes=a expires=2030-01-15T00:00:00Z\n\
             later admin {digest} expires=2031-01-01T00:00:00Z\n\
             never admin {digest} # expires=2030-01-11T00:00:00Z\n"
        );
        let warnings = expiry_warnings(&text, now);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("line 2: key `old` expired at 2030-01-01T00:00:00Z (9 days ago)")
        );
        assert!(
            warnings[1]
                .starts_with("line 3: key `soon` expires at 2030-01-15T00:00:00Z (in 5 days)")
        );
    }

    #[test]
    fn argument_checks() {
        assert!(parse_role("-").is_ok() && parse_role("data_admin-2").is_ok());
        assert!(parse_role("a b").is_err() && parse_role("").is_err());
        assert!(parse_scope("data:read").is_ok());
        assert!(parse_scope("a,b").is_err() && parse_scope("#x").is_err());
        assert!(parse_id("ci-runner").is_ok() && parse_id("ci runner").is_err());
    }
}
