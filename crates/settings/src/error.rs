//! Where a value came from, and what is wrong with one.

use std::fmt;

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An explicit setting (a command-line flag, or a builder in code) of this name.
    Explicit(&'static str),
    /// This environment variable.
    Env(&'static str),
    /// The configuration file's key of this name.
    File(&'static str),
    /// A key of the configuration file that no setting has (`[table] key`).
    FileKey(String),
    /// The configuration file as a whole (it cannot be read or is not TOML).
    FileSyntax,
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Explicit(name) => write!(f, "setting `{name}`"),
            Origin::Env(var) => f.write_str(var),
            Origin::File(name) => write!(f, "config file `{name}`"),
            Origin::FileKey(key) => write!(f, "config file `{key}`"),
            Origin::FileSyntax => f.write_str("config file"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One unusable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the value came from.
    pub origin: Origin,
    /// The value as written, or `<redacted>` for a secret.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
    /// For a value from a file: the file and the line.
    pub at: Option<String>,
}

impl ConfigError {
    /// An error without a file location.
    pub fn new(origin: Origin, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            origin,
            value: value.into(),
            reason: reason.into(),
            at: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() && matches!(self.origin, Origin::FileKey(_) | Origin::FileSyntax) {
            write!(f, "{}: {}", self.origin, self.reason)?;
        } else {
            write!(f, "{}={:?}: {}", self.origin, self.value, self.reason)?;
        }
        if let Some(at) = &self.at {
            write!(f, " ({at})")?;
        }
        Ok(())
    }
}

/// Every unusable value found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} error", self.0.len())?;
        if self.0.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// `Ok(value)` when there are no errors.
    pub fn or<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}
