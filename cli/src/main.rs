//! `mcp-gatekeeper`: the command line of the mcp-gatekeeper framework.
//!
//! It makes API keys and the key-file lines that hold their digests, hashes and checks key
//! files, mints development JWTs, prints MCP client configurations for a remote server,
//! probes a running server the way a client would, and administers the OAuth authorization
//! server's store (clients, users, signing keys; features `sqlite` and `postgres`). Every
//! command is described by its `--help`.

mod config;
mod header;
mod keys;
mod outcome;
mod probe;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod store;
mod time;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::outcome::Outcome;

/// The exit codes, shown at the end of the top-level `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a check or probe found a problem (an invalid key file, a misconfigured server), or
     the client or user to change is not in the store
  2  usage error (an unknown option, a missing or malformed argument)
  3  could not do it (a file that cannot be read, a server or database that cannot be
     reached, JWT_SECRET not set)

Examples:
  mcp-gatekeeper keys new --role admin --expires 90d >> new-key.txt
  mcp-gatekeeper keys check keys.txt
  mcp-gatekeeper token --sub alice --role admin --aud http://127.0.0.1:3000/mcp
  mcp-gatekeeper config vscode https://mcp.example.com/mcp --header 'X-API-Key: mgk_...'
  mcp-gatekeeper probe https://mcp.example.com/mcp
  mcp-gatekeeper clients list --store sqlite:oauth-data/oauth.db";

/// Tools for servers built with mcp-gatekeeper: API keys, development tokens, client
/// configurations, and a probe of a running server.
#[derive(Parser)]
#[command(name = "mcp-gatekeeper", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new API key, hash an existing one, or check a key file.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Mint a short-lived development JWT (HS256 with $JWT_SECRET, or RS256/ES256 with --key).
    ///
    /// Signed with HS256 and the secret in $JWT_SECRET (at least 32 bytes), or with the private key
    /// given by --key (PEM, PKCS#8 or PKCS#1 RSA: RS256 for RSA, ES256/ES384 for P-256/P-384, EdDSA
    /// for Ed25519). The token carries the claims mcp-gatekeeper's Jwt verifier reads: `sub`,
    /// `role` (one role) or `roles` (several), `scope` (space-separated), `aud`, `iss`, `exp`,
    /// `nbf`, `iat`, `jti`, and `mcp_gatekeeper_dev: true`. Only the token goes to standard output.
    Token(token::TokenArgs),
    /// Print an MCP client's configuration for a remote server.
    ///
    /// The JSON goes to standard output; where the file goes, and which environment variables to
    /// set, goes to standard error. A secret given with --header (Authorization, X-API-Key, or a
    /// name holding key/token/secret/auth/password/session) is replaced by the client's
    /// placeholder: an environment variable (Claude Desktop via mcp-remote, Claude Code, Cursor) or
    /// a password prompt (VS Code). Without --header, the client signs in with OAuth if the server
    /// offers it.
    Config(config::ConfigArgs),
    /// Check a server as a client sees it: its challenge, OAuth metadata and, with
    /// credentials, its tools.
    ///
    /// Steps: an `initialize` without credentials (expecting 401 and a WWW-Authenticate
    /// challenge); the RFC 9728 protected-resource metadata (the URL the challenge names, else
    /// `/.well-known/oauth-protected-resource/PATH`, then the root); the metadata of the
    /// authorization server it names (RFC 8414, then OpenID Connect discovery): issuer,
    /// endpoints, PKCE S256, client registration; and with --header an authenticated
    /// `initialize` and `tools/list`. One finding per line, marked ok, info, warn or fail. Every
    /// request times out after 10 s and reads at most 1 MiB. Exit 1 when a finding is a failure,
    /// 3 when the server cannot be reached.
    Probe(probe::ProbeArgs),
    /// Add, list and remove the OAuth clients in an authorization server's store, and give
    /// confidential ones new secrets.
    ///
    /// Every store command takes --store (`sqlite:PATH` or a `postgres://` URL, or
    /// $OAUTH_STORE) and, for PostgreSQL, --schema. Running servers on the store see the
    /// changes at once.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[command(subcommand)]
    Clients(store::clients::ClientsCommand),
    /// Add, list and remove the users who sign in at an authorization server, and set their
    /// passwords (read from standard input, stored as argon2id hashes).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[command(subcommand)]
    Users(store::users::UsersCommand),
    /// List an authorization server's signing keys, or put a new one in force.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[command(subcommand)]
    SigningKeys(store::signing_keys::SigningKeysCommand),
}

fn main() -> ExitCode {
    // clap exits with 2 on a usage error and 0 after --help or --version.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keys(command) => keys::run(command),
        Command::Token(args) => token::run(&args),
        Command::Config(args) => config::run(&args),
        Command::Probe(args) => probe::run(&args),
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        Command::Clients(command) => store::clients::run(command),
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        Command::Users(command) => store::users::run(command),
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        Command::SigningKeys(command) => store::signing_keys::run(command),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::ProblemFound) => ExitCode::from(1),
        Err(failure) => {
            outcome::note(&format!("error: {}", failure.message()));
            ExitCode::from(failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
