//! inferscope's settings machinery. Each setting is one row in a table declared with
//! [`settings!`]: its TOML key, flag, environment variables, raw type, check, default and one
//! line of documentation. From the rows come:
//!
//! - the raw struct a file, flags or a builder fill in (every field optional; serde reads it
//!   too, unknown keys refused),
//! - the typed struct, resolved with flag > environment > file > default by
//!   [`Resolver`], every error reported at once and naming its origin (a file's errors name
//!   the file, the key and the line),
//! - the command-line flags ([`cli`], feature `cli`),
//! - `--print-config` with each value's origin, secrets hidden ([`Report`]),
//! - the README's tables ([`doc`]).
//!
//! Rules that span several settings (port clashes, an exporter pointed at the gateway's own
//! ingest) stay named functions next to the table that needs them.
//!
//! ```
//! use std::time::Duration;
//! use inferscope_settings::{Flag, Resolver, Setting, req, settings};
//!
//! fn millis(v: u64) -> Result<Duration, String> {
//!     Ok(Duration::from_millis(v))
//! }
//!
//! settings! {
//!     /// The `[demo]` table.
//!     pub struct DemoSettings => DemoValues, table "demo", rows demo_rows {
//!         /// How long to wait, milliseconds.
//!         wait_ms: u64 => Duration = req(millis), {
//!             default: Some("250"), flag: Flag::Value("wait-ms"), env: &["DEMO_WAIT_MS"],
//!         },
//!     }
//! }
//!
//! fn main() {
//!     let env = [("DEMO_WAIT_MS", "1000")];
//!     let mut r = Resolver::new(&env, None);
//!     let none = DemoSettings::default();
//!     let values = DemoValues::resolve(&none, &none, &mut r).unwrap();
//!     assert_eq!(values.wait_ms, Duration::from_secs(1));
//!     assert!(r.finish().unwrap().render("demo").contains("DEMO_WAIT_MS"));
//! }
//! ```

#[cfg(feature = "cli")]
pub mod cli;
pub mod doc;
mod env;
mod error;
mod file;
mod resolve;
mod secret;
mod setting;
mod url;
mod value;

pub use env::{Env, NoEnv, ProcessEnv};
pub use error::{ConfigError, ConfigErrors, Origin};
pub use file::{Entry, FileLayer};
pub use resolve::{Report, Resolver, Row, ok, opt, req};
pub use secret::Secret;
pub use setting::{Flag, Merge, Setting, Table};
pub use url::{check_port, redact_userinfo};
pub use value::{MapValue, Value, parse_bool, parse_kv_list};

#[doc(hidden)]
pub use serde as __serde;
#[doc(hidden)]
pub use toml as __toml;

/// Declares a table of settings. For each row: its doc comment (one line for the README),
/// `key: RawType => TypedType = check, { Setting fields }`. The key is the TOML key and the
/// name in `--print-config`; `check` turns `Option<RawType>` into the typed value (see
/// [`req`], [`opt`]); the braces set [`Setting`]'s fields other than `table`, `key`, `doc`
/// and `kind` (`default`, `flag`, `env`, `secret`, `merge`, `default_doc`).
///
/// Generates the raw struct (`Option` of each raw type, `Deserialize`, [`Table`]), the typed
/// struct with `resolve` and `defaults`, and a module of the rows as statics (`rows::key`,
/// `rows::ALL`).
#[macro_export]
macro_rules! settings {
    (
        $(#[$meta:meta])*
        $vis:vis struct $Raw:ident => $Values:ident, table $table:literal, rows $rows:ident {
            $(
                $(#[doc = $doc:literal])+
                $key:ident : $raw:ty => $ty:ty = $check:expr, { $($k:ident : $v:expr),* $(,)? }
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, $crate::__serde::Deserialize)]
        #[serde(deny_unknown_fields, crate = "inferscope_settings::__serde")]
        $vis struct $Raw {
            $( $(#[doc = $doc])+ pub $key: Option<$raw>, )*
        }

        #[doc = concat!("The typed values of [`", stringify!($Raw), "`], resolved.")]
        #[derive(Debug, Clone)]
        $vis struct $Values {
            $( $(#[doc = $doc])+ pub $key: $ty, )*
        }

        #[doc = concat!("The rows of [`", stringify!($Raw), "`], one static per setting.")]
        #[allow(non_upper_case_globals, unused_imports)]
        $vis mod $rows {
            use super::*;
            $(
                #[doc = concat!("`", stringify!($key), "`.")]
                pub static $key: $crate::Setting = $crate::Setting {
                    table: $table,
                    key: stringify!($key),
                    doc: concat!($($doc, " "),+),
                    kind: <$raw as $crate::Value>::KIND,
                    $($k: $v,)*
                    ..$crate::Setting::BLANK
                };
            )*
            /// Every row, in order.
            pub static ALL: &[&$crate::Setting] = &[$(&$key),*];

            #[cfg(test)]
            #[test]
            fn defaults_resolve() {
                let defaults = super::$Values::defaults();
                assert!(defaults.is_ok(), "{:?}", defaults.err());
            }
        }

        impl $Raw {
            /// These settings with every field `over` sets replacing this one's.
            pub fn merged(self, over: $Raw) -> $Raw {
                $Raw { $( $key: over.$key.or(self.$key), )* }
            }
        }

        impl $crate::Table for $Raw {
            const TABLE: &'static str = $table;

            fn settings() -> &'static [&'static $crate::Setting] {
                $rows::ALL
            }

            fn set_text(
                &mut self,
                key: &str,
                text: &str,
            ) -> Option<(&'static $crate::Setting, Result<(), String>)> {
                match key {
                    $(
                        stringify!($key) => Some((
                            &$rows::$key,
                            <$raw as $crate::Value>::from_text(text).map(|v| self.$key = Some(v)),
                        )),
                    )*
                    _ => None,
                }
            }

            fn set_toml(
                &mut self,
                key: &str,
                value: &$crate::__toml::Value,
            ) -> Option<(&'static $crate::Setting, Result<(), String>)> {
                match key {
                    $(
                        stringify!($key) => Some((
                            &$rows::$key,
                            <$raw as $crate::Value>::from_toml(value).map(|v| self.$key = Some(v)),
                        )),
                    )*
                    _ => None,
                }
            }
        }

        impl $Values {
            /// Resolves each setting from `explicit` (flags or a builder), the environment,
            /// `file` and its default; `None` if any is unusable (the resolver keeps why).
            pub fn resolve(
                explicit: &$Raw,
                file: &$Raw,
                r: &mut $crate::Resolver<'_>,
            ) -> Option<$Values> {
                $(
                    let $key = r.value::<$raw, $ty>(
                        &$rows::$key,
                        explicit.$key.as_ref(),
                        file.$key.as_ref(),
                        $check,
                    );
                )*
                Some($Values { $( $key: $key?, )* })
            }

            /// Every setting at its default.
            pub fn defaults() -> Result<$Values, $crate::ConfigErrors> {
                let mut r = $crate::Resolver::new(&$crate::NoEnv, None);
                let values = $Values::resolve(&$Raw::default(), &$Raw::default(), &mut r);
                r.finish()?;
                values.ok_or_else(|| $crate::ConfigErrors(Vec::new()))
            }
        }
    };
}
