//! A configuration file: TOML, read into tables of entries that remember their line, so an
//! error names the file, the key and the line. Every problem is reported, not the first.

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, ConfigErrors, Origin};
use crate::setting::Table;

/// One `key = value` of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: toml::Value,
    /// Its line, from 1.
    pub line: usize,
}

/// A configuration file, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileLayer {
    /// The file's name, for errors.
    name: String,
    /// Entries per table (`""` for the top level).
    tables: BTreeMap<String, Vec<Entry>>,
}

fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1
}

fn to_value(v: &DeValue<'_>) -> Result<toml::Value, String> {
    Ok(match v {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => toml::Value::Integer(
            i64::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| format!("{} is out of range", i.as_str()))?,
        ),
        DeValue::Float(f) => toml::Value::Float(
            f.as_str()
                .parse()
                .map_err(|_| format!("{} is not a number", f.as_str()))?,
        ),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(a) => toml::Value::Array(
            a.iter()
                .map(|v| to_value(v.get_ref()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| Ok((k.get_ref().to_string(), to_value(v.get_ref())?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

impl FileLayer {
    /// No file.
    pub fn empty() -> FileLayer {
        FileLayer::default()
    }

    /// Reads `path`. `tables` names the tables its settings live in (`""` when settings sit
    /// at the top level); anything else in the file is an error. Returns what could be read
    /// and the file's problems, which the caller reports with every other error at once; only
    /// a file that cannot be read at all is an error here.
    pub fn read(
        path: &Path,
        tables: &[&str],
    ) -> Result<(FileLayer, Vec<ConfigError>), ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                origin: Origin::FileSyntax,
                value: String::new(),
                reason: format!("cannot read {name}: {e}"),
                at: None,
            }])
        })?;
        Ok(FileLayer::parse(&name, &text, tables))
    }

    /// Parses `text` (named `name` in errors); returns what could be read and every problem.
    pub fn parse(name: &str, text: &str, tables: &[&str]) -> (FileLayer, Vec<ConfigError>) {
        let mut layer = FileLayer {
            name: name.to_owned(),
            tables: BTreeMap::new(),
        };
        let mut errors = Vec::new();
        let doc = match DeTable::parse(text) {
            Ok(doc) => doc,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start));
                errors.push(ConfigError {
                    origin: Origin::FileSyntax,
                    value: String::new(),
                    reason: e
                        .message()
                        .lines()
                        .next()
                        .unwrap_or("invalid TOML")
                        .to_owned(),
                    at: Some(match line {
                        Some(l) => format!("{name}, line {l}"),
                        None => name.to_owned(),
                    }),
                });
                return (layer, errors);
            }
        };
        let mut add =
            |layer: &mut FileLayer, table: &str, key: &str, span_start, v: &DeValue<'_>| {
                let line = line_of(text, span_start);
                match to_value(v) {
                    Ok(value) => layer
                        .tables
                        .entry(table.to_owned())
                        .or_default()
                        .push(Entry {
                            key: key.to_owned(),
                            value,
                            line,
                        }),
                    Err(reason) => errors.push(ConfigError {
                        origin: Origin::FileKey(qualified(table, key)),
                        value: String::new(),
                        reason,
                        at: Some(format!("{name}, line {line}")),
                    }),
                }
            };
        let mut unknown = Vec::new();
        for (k, v) in doc.get_ref() {
            let key = k.get_ref().as_ref();
            let start = k.span().start;
            match v.get_ref() {
                DeValue::Table(t) if !key.is_empty() && tables.contains(&key) => {
                    for (k2, v2) in t {
                        add(&mut layer, key, k2.get_ref(), k2.span().start, v2.get_ref());
                    }
                }
                other if tables.contains(&"") => add(&mut layer, "", key, start, other),
                _ => unknown.push((key.to_owned(), line_of(text, start))),
            }
        }
        for (key, line) in unknown {
            errors.push(ConfigError {
                origin: Origin::FileKey(key),
                value: String::new(),
                reason: format!(
                    "unknown key or table (the file has {})",
                    tables
                        .iter()
                        .map(|t| if t.is_empty() {
                            "top-level keys".to_owned()
                        } else {
                            format!("[{t}]")
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                at: Some(format!("{name}, line {line}")),
            });
        }
        (layer, errors)
    }

    /// The entries of `table`.
    pub fn entries(&self, table: &str) -> &[Entry] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }

    /// Where `key` of `table` is written: `file, line N`.
    pub fn at(&self, table: &str, key: &str) -> Option<String> {
        self.entries(table)
            .iter()
            .find(|e| e.key == key)
            .map(|e| format!("{}, line {}", self.name, e.line))
    }

    /// The settings of table `T` that the file sets; unknown keys and unusable values go to
    /// `errors`.
    pub fn table<T: Table>(&self, errors: &mut Vec<ConfigError>) -> T {
        let mut raw = T::default();
        for e in self.entries(T::TABLE) {
            let at = Some(format!("{}, line {}", self.name, e.line));
            match raw.set_toml(&e.key, &e.value) {
                Some((_, Ok(()))) => {}
                Some((s, Err(reason))) => errors.push(ConfigError {
                    origin: Origin::File(s.key),
                    value: if s.secret {
                        "<redacted>".to_owned()
                    } else {
                        crate::url::redact_userinfo(&short(&e.value))
                    },
                    reason,
                    at,
                }),
                None => errors.push(ConfigError {
                    origin: Origin::FileKey(qualified(T::TABLE, &e.key)),
                    // An unknown key's value is not repeated: it may be a misspelt secret.
                    value: String::new(),
                    reason: format!(
                        "unknown key (known: {})",
                        T::settings()
                            .iter()
                            .map(|s| s.key)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    at,
                }),
            }
        }
        raw
    }
}

fn qualified(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("[{table}] {key}")
    }
}

/// A file value as an error shows it: strings bare, others as TOML.
fn short(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_tables_and_unknown_keys() {
        let text = "# c\n[gateway]\nlisten = \"x\"\n\n[exporter]\nheaders = { a = \"b\" }\n[bogus]\nx = 1\n";
        let (layer, errors) = FileLayer::parse("f.toml", text, &["gateway", "exporter"]);
        assert_eq!(
            layer.at("gateway", "listen").as_deref(),
            Some("f.toml, line 3")
        );
        assert_eq!(layer.entries("exporter")[0].line, 6);
        assert!(layer.entries("exporter")[0].value.is_table());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].at.as_deref(), Some("f.toml, line 7"));
        let (_, errors) = FileLayer::parse("f.toml", "a = \n", &[""]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("f.toml, line 1"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn top_level_keys_and_nested_tables() {
        let text =
            "model = \"m\"\n[engine]\nmax_num_seqs = 4\n[engine.fixed_timing]\nttft_ms = 20\n";
        let (layer, errors) = FileLayer::parse("sim.toml", text, &["", "engine"]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(layer.entries("").len(), 1);
        let engine = layer.entries("engine");
        assert_eq!(engine.len(), 2);
        let fixed = engine.iter().find(|e| e.key == "fixed_timing").unwrap();
        assert_eq!(fixed.line, 4);
        assert!(fixed.value.is_table());
    }
}
