//! The README's configuration tables, made from the settings themselves.

use crate::setting::Setting;

/// A Markdown table of `settings`: setting, flag, environment, default, meaning. Settings of
/// table `main` are named by key, the others as `table.key`.
pub fn markdown(settings: &[&Setting], main: &str) -> String {
    let mut out = String::from(
        "| setting | flag | environment | default | meaning |\n|---|---|---|---|---|\n",
    );
    for s in settings {
        let env: Vec<String> = s.env.iter().map(|v| format!("`{v}`")).collect();
        let default = s.default_text();
        let default = if default.is_empty() {
            String::new()
        } else {
            format!("`{default}`")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            if s.table == main {
                s.key.to_owned()
            } else {
                s.path()
            },
            s.flag.usage(),
            env.join(", "),
            default,
            s.doc_line().replace('|', "\\|")
        ));
    }
    out
}

/// Replaces the text between `<!-- settings:NAME -->` and `<!-- /settings:NAME -->` in
/// `doc` with `table`; `None` if the markers are missing.
pub fn splice(doc: &str, name: &str, table: &str) -> Option<String> {
    let open = format!("<!-- settings:{name} -->\n");
    let close = format!("<!-- /settings:{name} -->");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&close)?;
    Some(format!("{}{}{}", &doc[..start], table, &doc[end..]))
}
