//! Configuration errors: everything that can be wrong before the server accepts a request.

use std::path::PathBuf;

/// A server configuration that cannot be used. Returned at start-up, never at request time:
/// a misconfigured server refuses to start rather than run with weaker security than intended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required environment variable is not set.
    #[error("environment variable `{0}` is not set")]
    MissingEnv(String),
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A configuration value does not parse; the message says where and what was expected.
    #[error("{0}")]
    Invalid(String),
    /// A credential grants a role the tools do not declare.
    #[error("{source_name} grants role `{role}`, which is not one of the tools' roles ({known})")]
    UnknownRole {
        /// Where the role was configured (`"api_key"`, `"jwt"`, ...).
        source_name: String,
        /// The role name found.
        role: String,
        /// The declared roles, comma-separated.
        known: String,
    },
    /// A secret shorter than the minimum this crate accepts: it could be guessed (an API key,
    /// a client secret, a user's password, an HMAC key).
    #[error("{what} is shorter than {minimum} {unit}")]
    WeakSecret {
        /// Whose secret (`the secret of token client \`ci\``); never the secret.
        what: String,
        /// The shortest accepted.
        minimum: usize,
        /// `characters` or `bytes`.
        unit: &'static str,
    },
    /// A URL that cannot be used where it is configured (an issuer, a resource URI).
    #[error("{what} `{url}`: {reason}")]
    InvalidUrl {
        /// What the URL is for (`issuer`, `resource URI`).
        what: &'static str,
        /// The URL as configured.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A JWT verifier that would accept tokens issued for any service (MCP: a server must
    /// accept only tokens issued for it).
    #[error(
        "a JWT verifier must check the audience: set `.audience(\"<this server's resource URL, \
         e.g. https://mcp.example.com/mcp>\")`, or `.accept_tokens_for_any_audience()` to accept \
         tokens issued for any service"
    )]
    MissingAudience,
    /// An identity provider could not be used when its authenticator was built: unreachable,
    /// metadata naming another issuer, or a key set without a usable key.
    #[error("identity provider `{issuer}`: {reason}")]
    IdentityProvider {
        /// The issuer identifier as configured.
        issuer: String,
        /// What went wrong, said so that an operator can fix it.
        reason: String,
    },
    /// The authorization server's store failed while the server was being built.
    #[cfg(feature = "oauth")]
    #[error("OAuth store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A tool's declaration cannot be served (for example its input schema is not an object).
    #[error("tool `{tool}`: {message}")]
    Tool {
        /// The tool's name.
        tool: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A [`ConfigError::Invalid`] with the given message.
    pub fn invalid(message: impl Into<String>) -> Self {
        ConfigError::Invalid(message.into())
    }
}

/// Reads environment variable `var`: unset is [`ConfigError::MissingEnv`], not UTF-8 is
/// [`ConfigError::Invalid`]. The value is never part of an error.
pub(crate) fn env_var(var: &str) -> Result<String, ConfigError> {
    match std::env::var(var) {
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => Err(ConfigError::MissingEnv(var.to_owned())),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::invalid(format!(
            "environment variable `{var}` is not valid UTF-8"
        ))),
    }
}

/// Says which environment variable a configuration error came from.
#[cfg(feature = "jwt")]
pub(crate) fn in_env_var(var: &str, error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid(message) => {
            ConfigError::invalid(format!("environment variable `{var}`: {message}"))
        }
        other => other,
    }
}
