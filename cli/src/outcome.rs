//! How a command ends, the exit codes scripts rely on, and output that never panics.
//!
//! `println!` and `eprintln!` panic when their stream is closed (`mcp-gatekeeper ... | head
//! -1`); everything here writes through `write!` instead and turns a closed stdout into an
//! ordinary failure.

use std::io::Write as _;

/// How a command that ran to its end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a check or probe found something wrong, and has said what.
    ProblemFound,
}

/// Why a command could not run to its end.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Exit 2: the arguments or the input cannot be used as given.
    Usage(String),
    /// Exit 3: something outside the tool failed (a file, the network, the environment).
    Unable(String),
}

impl Failure {
    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Usage(message) | Failure::Unable(message) => message,
        }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Unable(_) => 3,
        }
    }
}

/// Writes `text` and a newline to stdout.
pub(crate) fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::Unable(format!("cannot write to standard output: {error}")))
}

/// Writes `text` and a newline to stderr. A closed stderr is ignored: the messages there are
/// commentary, and the exit code still tells the outcome.
pub(crate) fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
