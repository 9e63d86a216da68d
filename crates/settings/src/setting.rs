//! One setting, described once: the row every layer, the flags, `--print-config` and the
//! README's tables are made from.

/// How a setting is given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// No flag.
    None,
    /// `--NAME VALUE`, read with the same grammar as the environment.
    Value(&'static str),
    /// `--NAME` alone sets a boolean to true.
    Switch(&'static str),
    /// `--NAME` alone sets a boolean to false (`--no-inject-usage`).
    Negated(&'static str),
    /// `--NAME VALUE`, repeated, for a list.
    Repeat(&'static str),
    /// `--FLAG VALUE` (repeatable) sets this boolean when VALUE is the second name
    /// (`--hide inputs`): one flag for a family of switches.
    Choice(&'static str, &'static str),
    /// Each `--FLAG VALUE` sets one field of a table-valued setting: (flag, field) pairs.
    Parts(&'static [(&'static str, &'static str)]),
}

impl Flag {
    /// The flag's name, without dashes.
    pub fn name(&self) -> Option<&'static str> {
        match *self {
            Flag::None => None,
            Flag::Value(n)
            | Flag::Switch(n)
            | Flag::Negated(n)
            | Flag::Repeat(n)
            | Flag::Choice(n, _) => Some(n),
            Flag::Parts(parts) => parts.first().map(|(n, _)| *n),
        }
    }

    /// How the README shows it.
    pub fn usage(&self) -> String {
        match *self {
            Flag::None => String::new(),
            Flag::Value(n) | Flag::Switch(n) | Flag::Negated(n) => format!("`--{n}`"),
            Flag::Parts(parts) => parts
                .iter()
                .map(|(n, _)| format!("`--{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            Flag::Repeat(n) => format!("`--{n}` (repeat)"),
            Flag::Choice(n, v) => format!("`--{n} {v}`"),
        }
    }
}

/// How a setting's layers combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The first layer that has a value wins (flag > environment > file > default), and of
    /// several variables the first listed that is set.
    First,
    /// As [`Merge::First`] across layers, but every listed variable that is set is merged,
    /// the first listed winning per key (`OTEL_EXPORTER_OTLP_TRACES_HEADERS` over
    /// `OTEL_EXPORTER_OTLP_HEADERS`).
    EnvVars,
    /// Every layer is merged, the higher winning per key (`OTEL_RESOURCE_ATTRIBUTES` over the
    /// file's `resource_attributes`).
    AllLayers,
}

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The configuration file's table (`""` for the top level).
    pub table: &'static str,
    /// The key in that table, and the setting's name.
    pub key: &'static str,
    /// One line of documentation.
    pub doc: &'static str,
    /// The raw value's type, as the README names it.
    pub kind: &'static str,
    /// The default, written as an environment variable would give it; `None`: unset.
    pub default: Option<&'static str>,
    /// How the README and `--print-config` describe the default, when the text above is
    /// not the whole story (`from the open-file limit`).
    pub default_doc: Option<&'static str>,
    /// The command-line flag.
    pub flag: Flag,
    /// Environment variables, the first set one winning.
    pub env: &'static [&'static str],
    /// The whole value is a secret: never shown.
    pub secret: bool,
    /// How layers combine.
    pub merge: Merge,
}

impl Setting {
    /// A row to start from (`..Setting::BLANK`).
    pub const BLANK: Setting = Setting {
        table: "",
        key: "",
        doc: "",
        kind: "",
        default: None,
        default_doc: None,
        flag: Flag::None,
        env: &[],
        secret: false,
        merge: Merge::First,
    };

    /// `table.key`, or `key` for the top level.
    pub fn path(&self) -> String {
        if self.table.is_empty() {
            self.key.to_owned()
        } else {
            format!("{}.{}", self.table, self.key)
        }
    }

    /// The documentation, one line, without the spaces rustdoc leaves.
    pub fn doc_line(&self) -> String {
        self.doc.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// How the default reads in the README and `--print-config`.
    pub fn default_text(&self) -> String {
        match (self.default_doc, self.default) {
            (Some(d), _) => d.to_owned(),
            (None, Some("")) => "empty".to_owned(),
            (None, Some(d)) => d.to_owned(),
            (None, None) => "none".to_owned(),
        }
    }
}

/// A table of settings: the raw struct a file, flags or a builder fill in (every field
/// optional), made by [`crate::settings!`].
pub trait Table: Default {
    /// The file's table these settings live in.
    const TABLE: &'static str;

    /// The settings, in order.
    fn settings() -> &'static [&'static Setting];

    /// Sets `key` from text (a flag's value); `None` if no setting has that key.
    fn set_text(&mut self, key: &str, text: &str)
    -> Option<(&'static Setting, Result<(), String>)>;

    /// Sets `key` from a file's value; `None` if no setting has that key.
    fn set_toml(
        &mut self,
        key: &str,
        value: &toml::Value,
    ) -> Option<(&'static Setting, Result<(), String>)>;
}
