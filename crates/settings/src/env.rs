//! Reading the environment through a trait, so tests pass a map instead of mutating the
//! process environment.

use std::collections::{BTreeMap, HashMap};

/// A source of environment variables.
pub trait Env: Send + Sync {
    /// The value of `key`, if set. Callers treat an empty value as unset, as the
    /// OpenTelemetry specification asks.
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl<S: std::hash::BuildHasher + Send + Sync> Env for HashMap<String, String, S> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl Env for [(&str, &str)] {
    fn var(&self, key: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_owned())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, key: &str) -> Option<String> {
        self.as_slice().var(key)
    }
}

impl Env for Vec<(&str, &str)> {
    fn var(&self, key: &str) -> Option<String> {
        self.as_slice().var(key)
    }
}

/// No environment at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _key: &str) -> Option<String> {
        None
    }
}
