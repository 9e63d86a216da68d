//! The types a setting's raw value can have, and how each is read from the environment or a
//! flag (text) and from a configuration file (TOML). One grammar per type, everywhere: a
//! boolean is `true/false/1/0/yes/no/on/off` in any case whether it comes from a variable, a
//! flag or a file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::secret::Secret;

/// A setting's raw value: what a person writes, before the setting's check makes it typed.
pub trait Value: Clone + Sized {
    /// What the README calls this type.
    const KIND: &'static str;

    /// From an environment variable or a flag (already trimmed, not empty).
    fn from_text(text: &str) -> Result<Self, String>;

    /// From a configuration file.
    fn from_toml(value: &toml::Value) -> Result<Self, String>;

    /// As `--print-config` and errors show it; secrets show as `<redacted>`.
    fn show(&self) -> String;

    /// Whether text that fails to parse as this type may hold a secret, and so is never
    /// repeated in an error.
    const TEXT_IS_SECRET: bool = false;

    /// `self` with `over` laid on top, for settings that merge layers (maps merge per key).
    fn merge(self, over: Self) -> Self {
        over
    }
}

/// Parses a boolean: `true/false/1/0/yes/no/on/off`, any case.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (or 1/0, yes/no, on/off)".into()),
    }
}

fn wrong_type(want: &str, got: &toml::Value) -> String {
    format!("expected {want}, found {}", got.type_str())
}

impl Value for bool {
    const KIND: &'static str = "boolean";

    fn from_text(text: &str) -> Result<bool, String> {
        parse_bool(text)
    }

    fn from_toml(value: &toml::Value) -> Result<bool, String> {
        match value {
            toml::Value::Boolean(b) => Ok(*b),
            toml::Value::String(s) => parse_bool(s),
            toml::Value::Integer(0) => Ok(false),
            toml::Value::Integer(1) => Ok(true),
            v => Err(wrong_type("true or false", v)),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

macro_rules! whole_number {
    ($($t:ty),*) => {$(
        impl Value for $t {
            const KIND: &'static str = "whole number";

            fn from_text(text: &str) -> Result<$t, String> {
                text.trim()
                    .parse()
                    .map_err(|_| "expected a whole number".to_owned())
            }

            fn from_toml(value: &toml::Value) -> Result<$t, String> {
                match value {
                    toml::Value::Integer(n) => <$t>::try_from(*n)
                        .map_err(|_| format!("{n} is out of range")),
                    toml::Value::String(s) => Self::from_text(s),
                    v => Err(wrong_type("a whole number", v)),
                }
            }

            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

whole_number!(u16, u32, u64, usize);

impl Value for f64 {
    const KIND: &'static str = "number";

    fn from_text(text: &str) -> Result<f64, String> {
        text.trim()
            .parse()
            .map_err(|_| "expected a number".to_owned())
    }

    fn from_toml(value: &toml::Value) -> Result<f64, String> {
        match value {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(n) => Ok(*n as f64),
            toml::Value::String(s) => Self::from_text(s),
            v => Err(wrong_type("a number", v)),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for String {
    const KIND: &'static str = "text";

    fn from_text(text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }

    fn from_toml(value: &toml::Value) -> Result<String, String> {
        match value {
            toml::Value::String(s) => Ok(s.clone()),
            v => Err(wrong_type("a string", v)),
        }
    }

    fn show(&self) -> String {
        self.clone()
    }
}

impl Value for PathBuf {
    const KIND: &'static str = "path";

    fn from_text(text: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(text))
    }

    fn from_toml(value: &toml::Value) -> Result<PathBuf, String> {
        String::from_toml(value).map(PathBuf::from)
    }

    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl Value for Secret {
    const KIND: &'static str = "secret text";
    const TEXT_IS_SECRET: bool = true;

    fn from_text(text: &str) -> Result<Secret, String> {
        Ok(Secret::new(text))
    }

    fn from_toml(value: &toml::Value) -> Result<Secret, String> {
        match value {
            toml::Value::String(s) => Ok(Secret::new(s.clone())),
            // The value itself is never repeated.
            v => Err(format!("expected a string, found {}", v.type_str())),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

/// A list: comma-separated in text (empty items dropped), an array of strings in a file.
impl Value for Vec<String> {
    const KIND: &'static str = "list";

    fn from_text(text: &str) -> Result<Vec<String>, String> {
        Ok(text
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect())
    }

    fn from_toml(value: &toml::Value) -> Result<Vec<String>, String> {
        match value {
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    v => Err(format!(
                        "item {} {}",
                        i + 1,
                        wrong_type("a string", v).replacen("expected", "should be", 1)
                    )),
                })
                .collect(),
            toml::Value::String(s) => Self::from_text(s),
            v => Err(wrong_type("an array of strings", v)),
        }
    }

    fn show(&self) -> String {
        self.join(",")
    }
}

/// Parses a W3C-baggage-like `key=value,key2=value2` list; values are percent-decoded.
/// The error never contains a value (header values are often secrets).
pub fn parse_kv_list(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, entry) in s.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = entry.split_once('=') else {
            return Err(format!("entry {} is not key=value", i + 1));
        };
        let key = k.trim();
        if key.is_empty() {
            return Err(format!("entry {} has an empty key", i + 1));
        }
        let value = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of `{key}` is not valid UTF-8 once decoded"))?;
        out.push((key.to_owned(), value.into_owned()));
    }
    Ok(out)
}

/// A map value: what a map of settings holds (text or a secret).
pub trait MapValue: Clone + std::fmt::Display {
    /// Whether the values are secrets.
    const SECRET: bool;

    /// From text.
    fn new(text: String) -> Self;
}

impl MapValue for String {
    const SECRET: bool = false;

    fn new(text: String) -> String {
        text
    }
}

impl MapValue for Secret {
    const SECRET: bool = true;

    fn new(text: String) -> Secret {
        Secret::new(text)
    }
}

/// A map: `k=v,k2=v2` in text (values percent-decoded), a table of strings in a file. Maps
/// merge per key.
impl<V: MapValue> Value for BTreeMap<String, V> {
    const KIND: &'static str = "key=value list";
    const TEXT_IS_SECRET: bool = V::SECRET;

    fn from_text(text: &str) -> Result<BTreeMap<String, V>, String> {
        Ok(parse_kv_list(text)?
            .into_iter()
            .map(|(k, v)| (k, V::new(v)))
            .collect())
    }

    fn from_toml(value: &toml::Value) -> Result<BTreeMap<String, V>, String> {
        match value {
            toml::Value::Table(t) => t
                .iter()
                .map(|(k, v)| match v {
                    toml::Value::String(s) => Ok((k.clone(), V::new(s.clone()))),
                    // The value itself is never repeated: it may be a secret.
                    v => Err(format!(
                        "the value of `{k}` should be a string, not {}",
                        v.type_str()
                    )),
                })
                .collect(),
            v => Err(wrong_type("a table of strings", v)),
        }
    }

    fn show(&self) -> String {
        self.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn merge(mut self, over: Self) -> Self {
        self.extend(over);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_boolean_grammar_everywhere() {
        for t in ["true", "TRUE", "1", "yes", "On"] {
            assert_eq!(bool::from_text(t), Ok(true), "{t}");
            assert_eq!(
                bool::from_toml(&toml::Value::String(t.into())),
                Ok(true),
                "{t}"
            );
        }
        for f in ["false", "False", "0", "no", "OFF"] {
            assert_eq!(bool::from_text(f), Ok(false), "{f}");
        }
        assert!(bool::from_text("maybe").is_err());
        assert_eq!(bool::from_toml(&toml::Value::Boolean(true)), Ok(true));
        assert!(bool::from_toml(&toml::Value::Float(1.0)).is_err());
    }

    #[test]
    fn numbers_lists_and_maps() {
        assert_eq!(u64::from_text(" 42 "), Ok(42));
        assert!(u64::from_text("-1").is_err());
        assert!(u16::from_toml(&toml::Value::Integer(70_000)).is_err());
        assert_eq!(f64::from_toml(&toml::Value::Integer(3)), Ok(3.0));
        assert_eq!(
            Vec::<String>::from_text("a, b,,c"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        let m = BTreeMap::<String, String>::from_text("a=1, b = x%20y ,,c=%2C").unwrap();
        assert_eq!(m["b"], "x y");
        assert_eq!(m["c"], ",");
        let merged = BTreeMap::from([("a".to_owned(), "1".to_owned())])
            .merge(BTreeMap::from([("b".to_owned(), "2".to_owned())]));
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn secrets_are_never_echoed() {
        let err = BTreeMap::<String, Secret>::from_text("api-key=sk-secret,broken").unwrap_err();
        assert!(!err.contains("sk-secret"), "{err}");
        let m = BTreeMap::<String, Secret>::from_text("api-key=sk-secret").unwrap();
        assert_eq!(m.show(), "api-key=<redacted>");
        assert!(parse_kv_list("=1").is_err());
        assert!(parse_kv_list("a=%ff").is_err());
    }
}
