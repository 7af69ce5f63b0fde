//! The one error type of loading: every problem found, each naming the key path and where the
//! bad value came from (file, environment variable or flag).

use std::fmt;

use super::load::Format;
use super::validate::Invalid;

/// Where a value came from, so an error can point at the right place to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file (or nothing set it and the default is at fault, which cannot happen).
    File,
    /// An environment variable, by name.
    Env(String),
    /// A command-line override of this key path.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File => Ok(()),
            Origin::Env(var) => write!(f, " (from environment variable {var})"),
            Origin::Flag(key) => write!(f, " (from command-line flag {key})"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The config file's name ends in something other than `.toml`, `.json`, `.yaml` or `.yml`.
    #[error("unsupported config file extension `{extension}`: use .toml, .json, .yaml or .yml")]
    UnsupportedFormat { extension: String },
    /// The file is not valid TOML / JSON / YAML; the message carries line and column.
    #[error("config file is not valid {format}: {message}")]
    Syntax { format: Format, message: String },
    /// No option has this key path.
    #[error("unknown key `{path}`{origin}")]
    UnknownKey { path: String, origin: Origin },
    /// A value of the wrong type or shape (`port = "x"`, `history_ttl = "5 parsecs"`,
    /// `engine.type = "etcd"`).
    #[error("`{path}`{origin}: {message}")]
    BadValue {
        path: String,
        origin: Origin,
        message: String,
    },
    /// A value that parses but breaks a rule (see [`Invalid`]).
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// Everything wrong with a configuration, in the order found (parse problems first; the
/// validation rules only run once every value parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub(super) fn one(problem: impl Into<Problem>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for problem in many {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}
