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
pub(crate) fn in_env_var(var: &str, error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid(message) => {
            ConfigError::invalid(format!("environment variable `{var}`: {message}"))
        }
        other => other,
    }
}
