//! `signing-keys list|rotate`: the keys the authorization server signs access tokens with.
//! Only their ids, algorithms and dates are ever printed, never key material.

use clap::{Args, Subcommand, ValueEnum};
use mcp_gatekeeper::{oauth::SigningAlgorithm, store::SigningKeyRecord};
use serde_json::json;

use super::{Create, StoreArgs, block_on, store_failure, table};
use crate::outcome::{Failure, Outcome, note, print};

/// How often a rotation is tried when servers on the store replace the key at the same time.
const ATTEMPTS: usize = 3;

#[derive(Subcommand)]
pub(crate) enum SigningKeysCommand {
    /// List the signing keys: id, algorithm, state, creation and retirement.
    ///
    /// The `current` key signs new tokens; `retired` keys are still published in the JWKS
    /// until the tokens they signed have expired, then the servers delete them.
    List(ListArgs),
    /// Put a freshly generated signing key in force; the current one is retired.
    ///
    /// The retired key stays published until its tokens expire, so no issued token stops
    /// working. Servers on the store take the new key up within a minute (at once on a JWKS
    /// request or a token signed with it). The algorithm stays the current key's unless
    /// --algorithm says otherwise (a server configured with another algorithm installs a key
    /// of its own when it starts).
    #[command(after_help = "\
Examples:
  mcp-gatekeeper signing-keys rotate --store sqlite:oauth-data/oauth.db
  OAUTH_STORE=postgres://gk@db/app mcp-gatekeeper signing-keys rotate --algorithm EdDSA")]
    Rotate(RotateArgs),
}

#[derive(Args)]
pub(crate) struct ListArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub(crate) struct RotateArgs {
    /// The new key's algorithm [default: the current key's, else ES256].
    #[arg(long, value_name = "ALG", value_enum)]
    algorithm: Option<Algorithm>,
    /// Print {"kid", "algorithm", "retired"} as JSON, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// The algorithms a signing key may have, by their JWS names.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Algorithm {
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
}

impl From<Algorithm> for SigningAlgorithm {
    fn from(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Es256 => SigningAlgorithm::Es256,
            Algorithm::EdDsa => SigningAlgorithm::EdDsa,
        }
    }
}

pub(crate) fn run(command: SigningKeysCommand) -> Result<Outcome, Failure> {
    block_on(async move {
        match command {
            SigningKeysCommand::List(args) => list(&args).await,
            SigningKeysCommand::Rotate(args) => rotate(&args).await,
        }
    })
}

/// The current key: the newest unretired one (`Store::signing_keys` lists newest first).
fn current(keys: &[SigningKeyRecord]) -> Option<&SigningKeyRecord> {
    keys.iter().find(|k| k.retired_at.is_none())
}

/// The state of `key` among `keys`.
fn state(key: &SigningKeyRecord, keys: &[SigningKeyRecord]) -> &'static str {
    if current(keys).is_some_and(|c| c.kid == key.kid) {
        "current"
    } else if key.retired_at.is_some() {
        "retired"
    } else {
        // Only a store written by hand holds an unretired key that is not the newest.
        "unretired"
    }
}

async fn list(args: &ListArgs) -> Result<Outcome, Failure> {
    let opened = args.store.open(Create::Never).await?;
    let keys = opened.store.signing_keys().await.map_err(store_failure)?;
    if args.json {
        let all: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                json!({
                    "kid": k.kid,
                    "algorithm": k.algorithm,
                    "state": state(k, &keys),
                    "created_at": k.created_at,
                    "retired_at": k.retired_at,
                })
            })
            .collect();
        print(&serde_json::Value::Array(all).to_string())?;
        return Ok(Outcome::Success);
    }
    if keys.is_empty() {
        note(&format!(
            "no signing keys in {} (a server makes one when it first starts)",
            opened.name
        ));
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.kid.clone(),
                k.algorithm.clone(),
                state(k, &keys).to_owned(),
                super::timestamp(k.created_at),
                k.retired_at.map(super::timestamp).unwrap_or_default(),
            ]
        })
        .collect();
    table::print_table(&["KID", "ALG", "STATE", "CREATED", "RETIRED"], &rows)?;
    Ok(Outcome::Success)
}

async fn rotate(args: &RotateArgs) -> Result<Outcome, Failure> {
    let opened = args.store.open(Create::Never).await?;
    let store = opened.store.as_ref();
    for _ in 0..ATTEMPTS {
        let keys = store.signing_keys().await.map_err(store_failure)?;
        let replaced = current(&keys);
        let algorithm = match (args.algorithm, replaced) {
            (Some(algorithm), _) => algorithm.into(),
            (None, Some(key)) => algorithm_named(&key.algorithm)?,
            (None, None) => SigningAlgorithm::default(),
        };
        let now = super::unix_now();
        let key = algorithm
            .generate_key(now)
            .map_err(|error| Failure::Unable(error.to_string()))?;
        let kid = key.kid.clone();
        let replaces = replaced.map(|k| k.kid.clone());
        // The compare-and-swap servers use: it fails only when another server (or another
        // run of this command) put a key in force since the read above; then read again.
        if store
            .replace_signing_key(replaces.as_deref(), key, now)
            .await
            .map_err(store_failure)?
        {
            let retired: Vec<&str> = keys
                .iter()
                .filter(|k| k.retired_at.is_none())
                .map(|k| k.kid.as_str())
                .collect();
            if args.json {
                let json = json!({
                    "kid": kid,
                    "algorithm": algorithm.jws_name(),
                    "retired": retired,
                });
                print(&json.to_string())?;
            } else {
                print(&format!(
                    "signing key `{kid}` ({}) is in force in {}",
                    algorithm.jws_name(),
                    opened.name
                ))?;
                for old in retired {
                    print(&format!(
                        "retired `{old}`: still published until the tokens it signed expire"
                    ))?;
                }
                note(
                    "servers on this store sign with the new key within a minute (at once after \
                     a JWKS request or a token signed with it)",
                );
            }
            return Ok(Outcome::Success);
        }
    }
    Err(Failure::Unable(
        "other servers replaced the signing key at every attempt to rotate it; try again"
            .to_owned(),
    ))
}

/// The algorithm a stored key names.
fn algorithm_named(name: &str) -> Result<SigningAlgorithm, Failure> {
    [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa]
        .into_iter()
        .find(|a| a.jws_name() == name)
        .ok_or_else(|| {
            Failure::Unable(format!(
                "the current signing key's algorithm `{name}` is unknown to this build: give \
                 --algorithm"
            ))
        })
}
