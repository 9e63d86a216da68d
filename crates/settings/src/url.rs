//! URL checks that every URL setting shares: hiding userinfo, and a port that is a number.

/// `scheme://user:pass@host/…?key=v` → `scheme://<redacted>@host/…?<redacted>`, for logs,
/// errors and `--print-config`: userinfo and a query (which may hold an API key) are hidden.
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // A password may hold an unescaped `/`, which ends the authority early: everything up to
    // the last `@` before the query goes (an `@` in a path is rare enough to hide too much).
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let cut = rest[..query].rfind('@');
    let sep = if scheme.is_empty() { "" } else { "://" };
    let (user, host_path) = match cut {
        Some(at) => ("<redacted>@", &rest[at + 1..query]),
        None => ("", &rest[..query]),
    };
    let tail = match rest[query..].chars().next() {
        Some('?') => "?<redacted>",
        Some('#') => "#<redacted>",
        _ => "",
    };
    if user.is_empty() && tail.is_empty() {
        return url.to_owned();
    }
    format!("{scheme}{sep}{user}{host_path}{tail}")
}

/// Checks the port of a URL's authority (`host:port`, perhaps with userinfo), when it names
/// one: a number from 1 to 65535. (The `http` crate accepts `host:notaport` and reports no
/// port, which a client would then replace with the scheme's default.)
pub fn check_port(authority: &str) -> Result<(), String> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port,
    };
    let Some((_, port)) = after_host.rsplit_once(':') else {
        return Ok(());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        // The text is not repeated: with a password that holds a `/`, it may be part of it.
        _ => Err("the port is not a number from 1 to 65535".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("https://user:pw@collector:4318/v1/traces"),
            "https://<redacted>@collector:4318/v1/traces"
        );
        assert_eq!(
            redact_userinfo("http://collector:4317"),
            "http://collector:4317"
        );
        assert_eq!(
            redact_userinfo("u:p@collector:4317"),
            "<redacted>@collector:4317"
        );
        // A query may hold a key: hidden too.
        assert_eq!(redact_userinfo("http://c/x?a=b@c"), "http://c/x?<redacted>");
        assert_eq!(
            redact_userinfo("https://c:4318/v1/traces?key=sk-test-secret"),
            "https://c:4318/v1/traces?<redacted>"
        );
        // A password holding `/` ends the authority early; it is hidden all the same.
        assert_eq!(
            redact_userinfo("https://user:ab/cd@collector:4318/v1/traces"),
            "https://<redacted>@collector:4318/v1/traces"
        );
    }

    #[test]
    fn ports_are_numbers() {
        assert!(check_port("h:80").is_ok());
        assert!(check_port("h").is_ok());
        assert!(check_port("[::1]:4317").is_ok());
        assert!(check_port("h:notaport").is_err());
        assert!(check_port("h:0").is_err());
        assert!(check_port("u:p/w@h:99999").is_err());
    }
}
