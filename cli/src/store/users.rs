//! `users add|passwd|remove|list`: the users who sign in at the authorization server's login
//! page. Passwords are read from standard input, never from the command line, and stored as
//! the runtime's argon2id hashes; no command prints a hash.

use std::io::{IsTerminal as _, Read as _};

use clap::{Args, Subcommand};
use mcp_gatekeeper::{oauth::User, store::UserRecord};
use serde_json::json;

use super::{Create, StoreArgs, block_on, parse_role, parse_scope, store_failure, table};
use crate::outcome::{Failure, Outcome, note, print};

/// The most read from standard input for a password: a stray file piped in by mistake should
/// not be read whole, and argon2 hashes every byte.
const MAX_PASSWORD_BYTES: u64 = 4096;

/// What a user's scopes hold to mean "every scope the server supports".
const ALL_SCOPES: &str = "*";

#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user who signs in with a password (at least 8 characters).
    ///
    /// The password is read from standard input (one line; prompted for, without echo, on a
    /// terminal), never from the command line. Without --scope the user may grant every scope
    /// the server supports.
    #[command(after_help = "\
Examples:
  mcp-gatekeeper users add alice --role admin --store sqlite:oauth-data/oauth.db
  printf %s \"$PASSWORD\" | mcp-gatekeeper users add bob --role viewer --scope data:read \\
      --password-stdin --store sqlite:oauth-data/oauth.db")]
    Add(AddArgs),
    /// Set a user's password (read as for `users add`); role and scopes stay.
    ///
    /// Ends the user's sign-in sessions on every server of the store, so that whoever signed
    /// in with the old password must sign in again. Tokens already issued stay valid until
    /// they expire. Exit 1 when there is no such user.
    Passwd(PasswdArgs),
    /// Remove a user: the user can no longer sign in.
    ///
    /// Ends everything the user holds: their sign-in sessions, authorization codes and refresh
    /// tokens, and their grants, which are revoked, so that their access tokens are refused
    /// wherever revocations are checked (a server's own MCP endpoint checks them). A user
    /// configured in a server's code is stored again when that server starts. Exit 1 when
    /// there is no such user.
    Remove(NameArgs),
    /// List the users: name, role, scopes, how they sign in, creation. Never their password
    /// hashes.
    List(ListArgs),
}

#[derive(Args)]
pub(crate) struct AddArgs {
    /// The login name, also the subject (`sub`) of the user's tokens.
    #[arg(value_name = "USER")]
    username: String,
    /// The role the user's tokens carry.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    role: Option<String>,
    /// A scope the user may grant; repeat for several [default: every scope the server
    /// supports].
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    scopes: Vec<String>,
    #[command(flatten)]
    password: PasswordArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub(crate) struct PasswdArgs {
    /// The login name.
    #[arg(value_name = "USER")]
    username: String,
    #[command(flatten)]
    password: PasswordArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub(crate) struct PasswordArgs {
    /// Read the password from standard input without prompting, even on a terminal (the
    /// default already reads it from standard input when that is not a terminal).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args)]
pub(crate) struct NameArgs {
    /// The login name.
    #[arg(value_name = "USER")]
    username: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) fn run(command: UsersCommand) -> Result<Outcome, Failure> {
    block_on(async move {
        match command {
            UsersCommand::Add(args) => add(&args).await,
            UsersCommand::Passwd(args) => passwd(&args).await,
            UsersCommand::Remove(args) => remove(&args).await,
            UsersCommand::List(args) => list(&args).await,
        }
    })
}

async fn add(args: &AddArgs) -> Result<Outcome, Failure> {
    // The store is opened first: a password is not asked for when it could not be stored.
    let opened = args.store.open(Create::IfMissing).await?;
    let store = opened.store.as_ref();
    if store
        .get_user(&args.username)
        .await
        .map_err(store_failure)?
        .is_some()
    {
        return Err(Failure::Usage(format!(
            "user `{}` already exists in {} (set a new password with `users passwd`)",
            args.username, opened.name
        )));
    }
    if store
        .get_client(&args.username)
        .await
        .map_err(store_failure)?
        .is_some()
    {
        return Err(Failure::Usage(format!(
            "`{}` is a client's id: a user with that name would get tokens with the client's \
             subject",
            args.username
        )));
    }
    let password = read_password(&args.username, &args.password)?;
    let mut user = User::new(&args.username, password);
    if let Some(role) = &args.role {
        user = user.role(role);
    }
    if !args.scopes.is_empty() {
        user = user.scopes(&args.scopes);
    }
    let record = hashed(user, super::unix_now()).await?;
    let summary = describe(&record);
    store.put_user(record).await.map_err(store_failure)?;
    print(&format!(
        "user `{}` added to {}: {summary}",
        args.username, opened.name
    ))?;
    Ok(Outcome::Success)
}

async fn passwd(args: &PasswdArgs) -> Result<Outcome, Failure> {
    let opened = args.store.open(Create::Never).await?;
    let store = opened.store.as_ref();
    let Some(existing) = store
        .get_user(&args.username)
        .await
        .map_err(store_failure)?
    else {
        note(&format!("no user `{}` in {}", args.username, opened.name));
        return Ok(Outcome::ProblemFound);
    };
    if !existing.has_password() {
        note(
            "note: the user signed in through the application's login hook so far; the hook \
             is still asked first",
        );
    }
    let password = read_password(&args.username, &args.password)?;
    // Everything but the password stays as it is, the creation time included.
    let mut user = User::new(&args.username, password).scopes(existing.scopes);
    if let Some(role) = existing.role {
        user = user.role(role);
    }
    let record = hashed(user, existing.created_at).await?;
    store.put_user(record).await.map_err(store_failure)?;
    print(&format!(
        "password of user `{}` in {} changed",
        args.username, opened.name
    ))?;
    // Ended after the new password is stored, so that a sign-in with the old one cannot
    // start a session afterwards (unless its password check is under way at this moment).
    let ended = store
        .end_sessions_of(&args.username, super::unix_now())
        .await
        .map_err(|error| {
            Failure::Unable(format!(
                "the password was changed, but the user's sign-in sessions could not be \
                 ended: {error}"
            ))
        })?;
    print(&format!("{} of `{}` ended", sessions(ended), args.username))?;
    note("note: tokens already issued stay valid until they expire");
    Ok(Outcome::Success)
}

/// "1 sign-in session", "2 sign-in sessions".
fn sessions(count: u64) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} sign-in session{plural}")
}

/// The stored record of `user`, its password hashed by the runtime (argon2id).
async fn hashed(user: User, created_at: i64) -> Result<UserRecord, Failure> {
    user.into_record(created_at)
        .await
        .map_err(|error| Failure::Usage(error.to_string()))
}

async fn remove(args: &NameArgs) -> Result<Outcome, Failure> {
    let opened = args.store.open(Create::Never).await?;
    if !opened
        .store
        .delete_user(&args.username)
        .await
        .map_err(store_failure)?
    {
        note(&format!("no user `{}` in {}", args.username, opened.name));
        return Ok(Outcome::ProblemFound);
    }
    print(&format!(
        "user `{}` removed from {}; their sign-in sessions and grants are ended",
        args.username, opened.name
    ))?;
    Ok(Outcome::Success)
}

async fn list(args: &ListArgs) -> Result<Outcome, Failure> {
    let opened = args.store.open(Create::Never).await?;
    let users = opened.store.list_users().await.map_err(store_failure)?;
    if args.json {
        // Deliberately field by field: the record's password hash must never be printed.
        let all: Vec<serde_json::Value> = users
            .iter()
            .map(|u| {
                json!({
                    "username": u.username,
                    "role": u.role,
                    "scopes": u.scopes,
                    "password": u.has_password(),
                    "created_at": u.created_at,
                })
            })
            .collect();
        print(&serde_json::Value::Array(all).to_string())?;
        return Ok(Outcome::Success);
    }
    if users.is_empty() {
        note(&format!("no users in {}", opened.name));
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.username.clone(),
                u.role.clone().unwrap_or_default(),
                u.scopes.join(","),
                sign_in(u).to_owned(),
                super::timestamp(u.created_at),
            ]
        })
        .collect();
    table::print_table(&["USER", "ROLE", "SCOPES", "SIGN_IN", "CREATED"], &rows)?;
    Ok(Outcome::Success)
}

/// How a user signs in.
fn sign_in(user: &UserRecord) -> &'static str {
    if user.has_password() {
        "password"
    } else {
        "login-hook"
    }
}

/// One line about a user: role and scopes.
fn describe(user: &UserRecord) -> String {
    let scopes = if user.scopes.iter().any(|s| s == ALL_SCOPES) {
        "every scope the server supports".to_owned()
    } else if user.scopes.is_empty() {
        "no scope".to_owned()
    } else {
        format!("scopes {}", user.scopes.join(" "))
    };
    match &user.role {
        Some(role) => format!("role {role}, {scopes}"),
        None => format!("no role, {scopes}"),
    }
}

/// The password for `username` from standard input: one line, without its line ending.
/// On a terminal (unless --password-stdin) it is prompted for twice, with echo off.
fn read_password(username: &str, args: &PasswordArgs) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() && !args.password_stdin {
        let first = prompt(&format!("Password for `{username}`: "))?;
        let again = prompt("Repeat it: ")?;
        if first != again {
            return Err(Failure::Usage("the two passwords differ".to_owned()));
        }
        first
    } else {
        let mut bytes = Vec::new();
        stdin
            .lock()
            .take(MAX_PASSWORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| Failure::Unable(format!("cannot read standard input: {error}")))?;
        if bytes.len() as u64 > MAX_PASSWORD_BYTES {
            return Err(Failure::Usage(format!(
                "standard input holds more than {MAX_PASSWORD_BYTES} bytes: that is not a password"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            Failure::Usage("the password on standard input is not UTF-8".to_owned())
        })?;
        first_line(&text)?.to_owned()
    };
    if password.is_empty() {
        return Err(Failure::Usage(
            "no password on standard input (pipe it in, or run on a terminal to be asked)"
                .to_owned(),
        ));
    }
    Ok(password)
}

/// The one line of `text` without its line ending; more lines are refused, since a password
/// with a line break in it could never be typed into the login page.
fn first_line(text: &str) -> Result<&str, Failure> {
    let line = text
        .strip_suffix('\n')
        .map_or(text, |rest| rest.strip_suffix('\r').unwrap_or(rest));
    if line.contains(['\n', '\r']) {
        return Err(Failure::Usage(
            "standard input holds more than one line: give the password alone".to_owned(),
        ));
    }
    Ok(line)
}

/// Asks for a line on the terminal with echo off (`stty -echo`, where there is one; without
/// it the typing shows, which is said).
fn prompt(question: &str) -> Result<String, Failure> {
    let echo_off = set_echo(false);
    if !echo_off {
        note("(stty is not available: the password will show as you type)");
    }
    note_inline(question);
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if echo_off {
        set_echo(true);
        // The Enter that ended the line was not echoed either.
        note("");
    }
    read.map_err(|error| Failure::Unable(format!("cannot read the terminal: {error}")))?;
    Ok(first_line(&line)?.to_owned())
}

/// Writes `text` to stderr without a newline (a prompt).
fn note_inline(text: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{text}").and_then(|()| stderr.flush());
}

/// Turns the terminal's echo on or off with `stty`, on the terminal that is standard input;
/// whether that worked.
fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_ending_is_removed_and_more_lines_refused() {
        assert_eq!(first_line("secret pass\n").unwrap(), "secret pass");
        assert_eq!(first_line("secret\r\n").unwrap(), "secret");
        assert_eq!(first_line("secret").unwrap(), "secret");
        assert!(first_line("one\ntwo\n").is_err());
    }

    #[test]
    fn session_counts_read_as_english() {
        assert_eq!(sessions(0), "0 sign-in sessions");
        assert_eq!(sessions(1), "1 sign-in session");
        assert_eq!(sessions(2), "2 sign-in sessions");
    }
}
