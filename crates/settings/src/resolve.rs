//! Resolving settings: flag (or builder) > environment > file > default, every error kept,
//! where each value came from recorded for `--print-config`.

use std::fmt;

use crate::env::Env;
use crate::error::{ConfigError, ConfigErrors, Origin};
use crate::file::FileLayer;
use crate::setting::{Merge, Setting};
use crate::url::redact_userinfo;
use crate::value::Value;

/// One resolved setting, as `--print-config` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The setting.
    pub setting: &'static Setting,
    /// Where its value came from.
    pub origin: Origin,
    /// Its value as shown: secrets hidden, URLs without userinfo.
    pub shown: String,
}

/// Every resolved setting, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The rows.
    pub rows: Vec<Row>,
}

impl Report {
    /// The origin of the setting `key` of `table`, if it has a row.
    pub fn origin(&self, table: &str, key: &str) -> Option<&Origin> {
        self.rows
            .iter()
            .find(|r| r.setting.table == table && r.setting.key == key)
            .map(|r| &r.origin)
    }

    /// `(key, origin)` of every setting not at its default.
    pub fn origins(&self) -> Vec<(&'static str, Origin)> {
        self.rows
            .iter()
            .filter(|r| r.origin != Origin::Default)
            .map(|r| (r.setting.key, r.origin.clone()))
            .collect()
    }

    /// Lines of `name = value # origin`; settings of `main` are named by key alone, others as
    /// `table.key`.
    pub fn render(&self, main: &str) -> String {
        let mut out = String::new();
        for r in &self.rows {
            let name = if r.setting.table == main {
                r.setting.key.to_owned()
            } else {
                r.setting.path()
            };
            let _ = fmt::Write::write_fmt(
                &mut out,
                format_args!("{name:<32} = {:<30} # {}\n", r.shown, r.origin),
            );
        }
        out
    }

    /// The rows of these tables only.
    pub fn only(&self, tables: &[&str]) -> Report {
        Report {
            rows: self
                .rows
                .iter()
                .filter(|r| tables.contains(&r.setting.table))
                .cloned()
                .collect(),
        }
    }

    /// Replaces how a setting is shown (a value a cross-field rule completed).
    pub fn set_shown(&mut self, setting: &Setting, shown: String) {
        if let Some(r) = self
            .rows
            .iter_mut()
            .find(|r| r.setting.table == setting.table && r.setting.key == setting.key)
        {
            r.shown = shown;
        }
    }
}

/// Resolves settings one by one and keeps every error.
pub struct Resolver<'a> {
    env: &'a dyn Env,
    file: Option<&'a FileLayer>,
    errors: Vec<ConfigError>,
    report: Report,
    /// Defaults a program sets in place of the table's (`service_name` of the gateway).
    defaults: Vec<(&'static Setting, &'static str)>,
}

impl<'a> Resolver<'a> {
    /// Reads the environment from `env`; `file`, when given, names where file values came
    /// from in errors.
    pub fn new(env: &'a dyn Env, file: Option<&'a FileLayer>) -> Resolver<'a> {
        Resolver {
            env,
            file,
            errors: Vec::new(),
            report: Report::default(),
            defaults: Vec::new(),
        }
    }

    /// Uses `text` as the default of `s` in place of the table's (a program's own default,
    /// such as the gateway's `service.name`).
    pub fn set_default(&mut self, s: &'static Setting, text: &'static str) {
        self.defaults.push((s, text));
    }

    fn env_text(&self, var: &'static str) -> Option<String> {
        self.env
            .var(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn shown<R: Value>(s: &Setting, v: &R) -> String {
        if s.secret {
            "<redacted>".to_owned()
        } else {
            redact_userinfo(&v.show())
        }
    }

    fn hidden<R: Value>(s: &Setting, text: &str) -> String {
        if s.secret || R::TEXT_IS_SECRET {
            "<redacted>".to_owned()
        } else {
            redact_userinfo(text)
        }
    }

    fn push(&mut self, s: &Setting, origin: Origin, value: String, reason: String) {
        let at = match (&origin, self.file) {
            (Origin::File(_), Some(f)) => f.at(s.table, s.key),
            _ => None,
        };
        self.errors.push(ConfigError {
            origin,
            value,
            reason,
            at,
        });
    }

    /// The environment's value of `s`: the first listed variable that is set, or all of them
    /// merged. `Err(())` when one cannot be parsed (the error is kept).
    #[allow(
        clippy::result_unit_err,
        reason = "the error is recorded in the resolver"
    )]
    fn env_value<R: Value>(&mut self, s: &'static Setting) -> Result<Option<(R, Origin)>, ()> {
        let mut found: Option<(R, Origin)> = None;
        for var in s.env {
            let Some(text) = self.env_text(var) else {
                continue;
            };
            match R::from_text(&text) {
                Ok(v) => {
                    found = Some(match found {
                        // Earlier variables win per key.
                        Some((higher, origin)) if s.merge != Merge::First => {
                            (v.merge(higher), origin)
                        }
                        Some(f) => f,
                        None => (v, Origin::Env(var)),
                    });
                    if s.merge == Merge::First {
                        break;
                    }
                }
                Err(reason) => {
                    let shown = Self::hidden::<R>(s, &text);
                    self.push(s, Origin::Env(var), shown, reason);
                    return Err(());
                }
            }
        }
        Ok(found)
    }

    /// The value of `s` from the layers, checked: `explicit` (a flag or builder), the
    /// environment, `file`, the default. `check` gets `None` only for a setting without a
    /// default that no layer sets. An unusable value is kept as an error and the default
    /// stands in for it, so that the settings that depend on it are still checked; `None`
    /// only when the default cannot stand in either.
    pub fn value<R: Value, T>(
        &mut self,
        s: &'static Setting,
        explicit: Option<&R>,
        file: Option<&R>,
        check: impl Fn(Option<R>) -> Result<T, String>,
    ) -> Option<T> {
        let default = self
            .defaults
            .iter()
            .rev()
            .find(|(d, _)| d.table == s.table && d.key == s.key)
            .map(|(_, t)| *t)
            .or(s.default);
        let Ok(env) = self.env_value::<R>(s) else {
            return self.fallback(default, &check);
        };
        let picked: Option<(R, Origin)> = if s.merge == Merge::AllLayers {
            let layers = [
                file.map(|v| (v.clone(), Origin::File(s.key))),
                env,
                explicit.map(|v| (v.clone(), Origin::Explicit(s.key))),
            ];
            layers
                .into_iter()
                .flatten()
                .reduce(|(lower, _), (higher, origin)| (lower.merge(higher), origin))
        } else if let Some(v) = explicit {
            Some((v.clone(), Origin::Explicit(s.key)))
        } else if env.is_some() {
            env
        } else {
            file.map(|v| (v.clone(), Origin::File(s.key)))
        };
        let picked = match (picked, default) {
            (Some(p), _) => Some(p),
            (None, None) => None,
            (None, Some(d)) => match R::from_text(d) {
                Ok(v) => Some((v, Origin::Default)),
                Err(reason) => {
                    self.push(s, Origin::Default, d.to_owned(), reason);
                    return None;
                }
            },
        };
        let (raw, origin, shown) = match picked {
            Some((v, origin)) => {
                let shown = Self::shown(s, &v);
                (Some(v), origin, shown)
            }
            None => (None, Origin::Default, s.default_text()),
        };
        let shown = match (&origin, s.default_doc) {
            (Origin::Default, Some(doc)) if default == s.default => doc.to_owned(),
            _ => shown,
        };
        self.report.rows.push(Row {
            setting: s,
            origin: origin.clone(),
            shown: shown.clone(),
        });
        match check(raw) {
            Ok(t) => Some(t),
            Err(reason) => {
                let fell_back = origin != Origin::Default;
                self.push(s, origin, shown, reason);
                if fell_back {
                    self.fallback(default, &check)
                } else {
                    None
                }
            }
        }
    }

    /// The checked default of `s`, standing in for a value that was refused.
    fn fallback<R: Value, T>(
        &self,
        default: Option<&'static str>,
        check: &impl Fn(Option<R>) -> Result<T, String>,
    ) -> Option<T> {
        let raw = match default {
            Some(d) => Some(R::from_text(d).ok()?),
            None => None,
        };
        check(raw).ok()
    }

    /// Where the value of `s` came from (`Default` if not resolved yet).
    pub fn origin(&self, s: &Setting) -> Origin {
        self.report
            .origin(s.table, s.key)
            .cloned()
            .unwrap_or(Origin::Default)
    }

    /// A rule across settings found the value of `s` unusable.
    pub fn reject(&mut self, s: &Setting, reason: impl Into<String>) {
        let (origin, shown) = self
            .report
            .rows
            .iter()
            .find(|r| r.setting.table == s.table && r.setting.key == s.key)
            .map_or((Origin::Default, String::new()), |r| {
                (r.origin.clone(), r.shown.clone())
            });
        self.push(s, origin, shown, reason.into());
    }

    /// Keeps an error found elsewhere (a file's or a flag's).
    pub fn keep(&mut self, errors: impl IntoIterator<Item = ConfigError>) {
        self.errors.extend(errors);
    }

    /// The report so far, for rules that complete a shown value.
    pub fn report_mut(&mut self) -> &mut Report {
        &mut self.report
    }

    /// Whether no error has been found.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// The report, or every error found.
    pub fn finish(self) -> Result<Report, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.report)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// A check for a setting that always has a value (it has a default): `f` of the value.
pub fn req<R, T>(f: impl Fn(R) -> Result<T, String>) -> impl Fn(Option<R>) -> Result<T, String> {
    move |v| match v {
        Some(v) => f(v),
        None => Err("has no value and no default".to_owned()),
    }
}

/// A check for a setting that may be unset: `None` stays `None`, a value goes through `f`.
pub fn opt<R, T>(
    f: impl Fn(R) -> Result<T, String>,
) -> impl Fn(Option<R>) -> Result<Option<T>, String> {
    move |v| v.map(&f).transpose()
}

/// The value as it is.
pub fn ok<T>(v: T) -> Result<T, String> {
    Ok(v)
}
