//! Command-line flags made from settings tables: `clap` arguments from each setting's
//! [`Flag`], and the values given collected into the explicit layer. Values are read with the
//! same grammar as the environment, and their errors join the others.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::error::{ConfigError, Origin};
use crate::setting::{Flag, Setting, Table};

/// A set of settings that a command offers as flags.
pub trait FlagSet {
    /// The settings, of every table the command reads.
    fn settings() -> Vec<&'static Setting>;
}

/// What one flag gave.
#[derive(Debug, Clone, PartialEq)]
enum Given {
    /// A value, read like an environment variable.
    Text(String),
    /// A value already typed (a switch, a repeated flag's list, a table's parts).
    Toml(toml::Value),
}

/// The flags given on a command line, per setting. Used with `#[command(flatten)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Flags<S: FlagSet> {
    given: Vec<(&'static Setting, Given)>,
    set: PhantomData<S>,
}

impl<S: FlagSet> Default for Flags<S> {
    fn default() -> Flags<S> {
        Flags {
            given: Vec::new(),
            set: PhantomData,
        }
    }
}

fn id(s: &Setting) -> String {
    match s.flag {
        Flag::Choice(name, _) => name.to_owned(),
        _ => format!("{}.{}", s.table, s.key),
    }
}

fn help(s: &Setting) -> String {
    let mut h = match s.flag {
        Flag::Negated(_) => format!("Turns off: {}", s.doc_line()),
        _ => s.doc_line(),
    };
    let mut notes = Vec::new();
    if !matches!(
        s.flag,
        Flag::Switch(_) | Flag::Negated(_) | Flag::Choice(..)
    ) {
        notes.push(format!("default: {}", s.default_text()));
    }
    if !s.env.is_empty() {
        notes.push(format!("env: {}", s.env.join(", ")));
    }
    if !notes.is_empty() {
        h.push_str(&format!(" [{}]", notes.join("; ")));
    }
    h
}

/// The `clap` arguments of `settings`.
pub fn args(settings: &[&'static Setting]) -> Vec<Arg> {
    let mut out: Vec<Arg> = Vec::new();
    let mut choices: BTreeMap<&'static str, (Vec<&'static str>, String)> = BTreeMap::new();
    let mut parts: Vec<(&'static str, String)> = Vec::new();
    for s in settings {
        let arg = match s.flag {
            Flag::None => continue,
            Flag::Value(n) => Arg::new(id(s))
                .long(n)
                .value_name(s.kind.to_uppercase().replace(' ', "_"))
                .num_args(1)
                .action(ArgAction::Set),
            Flag::Switch(n) | Flag::Negated(n) => {
                Arg::new(id(s)).long(n).action(ArgAction::SetTrue)
            }
            Flag::Repeat(n) => Arg::new(id(s))
                .long(n)
                .value_name("VALUE")
                .num_args(1)
                .action(ArgAction::Append),
            Flag::Choice(n, v) => {
                let entry = choices
                    .entry(n)
                    .or_insert_with(|| (Vec::new(), String::new()));
                entry.0.push(v);
                if !entry.1.is_empty() {
                    entry.1.push_str(", ");
                }
                entry.1.push_str(&format!("{v} (`{}`)", s.path()));
                continue;
            }
            Flag::Parts(pairs) => {
                for (n, field) in pairs {
                    parts.push((n, format!("`{field}` of {}", help(s))));
                }
                continue;
            }
        };
        out.push(arg.help(help(s)));
    }
    for (n, (values, what)) in choices {
        out.push(
            Arg::new(n)
                .long(n)
                .value_name("WHAT")
                .num_args(1)
                .action(ArgAction::Append)
                .value_parser(clap::builder::PossibleValuesParser::new(values))
                .help(format!("Turns a switch on (repeatable): {what}")),
        );
    }
    for (n, h) in parts {
        out.push(
            Arg::new(n)
                .long(n)
                .value_name("NUMBER")
                .num_args(1)
                .action(ArgAction::Set)
                .help(h),
        );
    }
    out
}

impl<S: FlagSet> Flags<S> {
    /// What `matches` holds for the settings of `S`.
    pub fn collect(matches: &ArgMatches) -> Flags<S> {
        let mut given: Vec<(&'static Setting, Given)> = Vec::new();
        for s in S::settings() {
            let g = match s.flag {
                Flag::None => None,
                Flag::Value(_) => matches
                    .get_one::<String>(&id(s))
                    .map(|v| Given::Text(v.clone())),
                Flag::Switch(_) => matches
                    .get_flag(&id(s))
                    .then_some(Given::Toml(toml::Value::Boolean(true))),
                Flag::Negated(_) => matches
                    .get_flag(&id(s))
                    .then_some(Given::Toml(toml::Value::Boolean(false))),
                Flag::Repeat(_) => matches.get_many::<String>(&id(s)).map(|vs| {
                    Given::Toml(toml::Value::Array(
                        vs.map(|v| toml::Value::String(v.clone())).collect(),
                    ))
                }),
                Flag::Choice(n, v) => matches
                    .get_many::<String>(n)
                    .is_some_and(|mut vs| vs.any(|x| x == v))
                    .then_some(Given::Toml(toml::Value::Boolean(true))),
                Flag::Parts(pairs) => {
                    // The parts given join into one table.
                    let table: toml::map::Map<String, toml::Value> = pairs
                        .iter()
                        .filter_map(|(n, field)| {
                            let text = matches.get_one::<String>(n)?;
                            let value = text
                                .trim()
                                .parse::<f64>()
                                .map(toml::Value::Float)
                                .unwrap_or_else(|_| toml::Value::String(text.clone()));
                            Some(((*field).to_owned(), value))
                        })
                        .collect();
                    (!table.is_empty()).then_some(Given::Toml(toml::Value::Table(table)))
                }
            };
            if let Some(g) = g {
                given.push((s, g));
            }
        }
        Flags {
            given,
            set: PhantomData,
        }
    }

    /// The explicit layer of table `T`; values that cannot be read go to `errors`.
    pub fn table<T: Table>(&self, errors: &mut Vec<ConfigError>) -> T {
        let mut raw = T::default();
        for (s, g) in &self.given {
            if s.table != T::TABLE {
                continue;
            }
            let (shown, result) = match g {
                Given::Text(t) => (t.clone(), raw.set_text(s.key, t)),
                Given::Toml(v) => (v.to_string(), raw.set_toml(s.key, v)),
            };
            if let Some((s, Err(reason))) = result {
                let value = if s.secret {
                    "<redacted>".to_owned()
                } else {
                    crate::url::redact_userinfo(&shown)
                };
                errors.push(ConfigError::new(Origin::Explicit(s.key), value, reason));
            }
        }
        raw
    }

    /// Whether no flag of `S` was given.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }
}

impl<S: FlagSet> clap::FromArgMatches for Flags<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Flags::collect(matches))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Flags::collect(matches);
        Ok(())
    }
}

impl<S: FlagSet> clap::Args for Flags<S> {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(args(&S::settings()))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
