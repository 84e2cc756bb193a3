//! Credentials that must never reach a log line, and redaction of text that might contain them.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// What every redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// A credential (API key, secret, client id). `Debug` and `Display` print `[redacted]`.
///
/// There is deliberately no `Serialize`: a config round-trip must not write credentials out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself; call this only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the credential is the empty string (usually a missing environment variable).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// What `Debug` shows of a list of secrets (delivered codes): whether there are any, never them.
pub fn redact_all<T>(secrets: &[T]) -> &'static str {
    if secrets.is_empty() { "none" } else { REDACTED }
}

/// A URL reduced to `scheme://host[:port]/[redacted]` (or just `[redacted]` when it does not
/// parse): webhook and API URLs routinely carry tokens in their path, query or user info.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => match url.host_str() {
            Some(host) => {
                let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{host}{port}/{REDACTED}", url.scheme())
            }
            None => REDACTED.to_owned(),
        },
        Err(_) => REDACTED.to_owned(),
    }
}

/// A URL that may carry credentials (`redis://:password@host`, `smtps://user:pass@host`).
/// `Debug` and `Display` show it with the password, and the values of secret-sounding query
/// parameters, replaced by `[redacted]`, so the host stays visible in logs and errors; text that
/// does not parse as a URL is redacted whole.
///
/// It derefs to the URL text so it can be handed to a client as `&str`; nothing else exposes it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The URL itself, credentials included; call this only where it is used to connect.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be shown: password and secret query values replaced.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.0) else {
            return REDACTED.to_owned();
        };
        // A placeholder the URL serializer leaves alone, swapped for REDACTED afterwards (the
        // brackets of REDACTED would be percent-encoded in userinfo).
        const MARK: &str = "REDACTEDMARK";
        if url.password().is_some() && url.set_password(Some(MARK)).is_err() {
            return REDACTED.to_owned();
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let lowered = k.to_ascii_lowercase();
                    let secret =
                        SECRET_KEYS.iter().any(|s| lowered.contains(s)) || lowered.contains("pass");
                    (
                        k.into_owned(),
                        if secret {
                            MARK.to_owned()
                        } else {
                            v.into_owned()
                        },
                    )
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        if url.fragment().is_some() {
            url.set_fragment(None);
        }
        url.as_str().replace(MARK, REDACTED)
    }
}

impl std::ops::Deref for SecretUrl {
    type Target = String;

    fn deref(&self) -> &String {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// How many bytes of a response body an error message may quote.
pub const SNIPPET_BYTES: usize = 120;

/// How far into a body redaction looks; secrets starting later are never quoted anyway.
const REDACTION_WINDOW: usize = 2048;

/// JSON keys whose values are treated as secret (matched case-insensitively as substrings).
const SECRET_KEYS: &[&str] = &[
    "secret",
    "token",
    "key",
    "password",
    "passwd",
    "auth",
    "signature",
    "code",
    "pin",
    "externaldata",
    "credential",
];

/// Runs of token-like characters at least this long are redacted: they look like keys.
const LONG_TOKEN: usize = 32;

/// The first [`SNIPPET_BYTES`] of `body` as text, with anything secret-looking replaced by
/// `[redacted]`: the given `known` secrets, values of JSON keys that sound secret, and long
/// opaque tokens.
///
/// Redaction runs on a larger window before truncating so that a secret straddling the cut is
/// still caught.
pub fn redacted_snippet(body: &[u8], known: &[&Secret]) -> String {
    let window = &body[..body.len().min(REDACTION_WINDOW)];
    let mut text = String::from_utf8_lossy(window).into_owned();
    for secret in known {
        let value = secret.expose();
        // Short values would redact half the body by accident; they are not worth hiding.
        if value.len() >= 4 {
            text = text.replace(value, REDACTED);
        }
    }
    let text = redact_secret_keys(&text);
    let text = redact_long_tokens(&text);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_at_char_boundary(&text, SNIPPET_BYTES).to_owned()
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Replaces the value after `"<secret-sounding key>":` with `"[redacted]"`.
fn redact_secret_keys(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(key_len) = text[i + 1..].find('"') else {
            break;
        };
        let key = &text[i + 1..i + 1 + key_len];
        let after_key = i + 1 + key_len + 1;
        let mut j = after_key;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let is_key = j < bytes.len() && bytes[j] == b':';
        let lowered = key.to_ascii_lowercase();
        if !is_key || !SECRET_KEYS.iter().any(|k| lowered.contains(k)) {
            // Try the next quote, not the one after this "string": the body is broken JSON, and
            // one stray quote would otherwise pair every later quote wrongly and hide the keys
            // (`"{"appSecret": "…"` leaked the secret).
            i += 1;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let value_end = json_value_end(bytes, j);
        out.push_str(&text[copied..j]);
        out.push('"');
        out.push_str(REDACTED);
        out.push('"');
        copied = value_end;
        i = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// End (exclusive) of the JSON value starting at `start`, or the end of the text if the value
/// is cut off; tolerant because the body is already known not to parse.
fn json_value_end(bytes: &[u8], start: usize) -> usize {
    let Some(&first) = bytes.get(start) else {
        return bytes.len();
    };
    match first {
        b'"' => {
            let mut k = start + 1;
            while k < bytes.len() {
                match bytes[k] {
                    b'\\' => k += 2,
                    b'"' => return k + 1,
                    _ => k += 1,
                }
            }
            bytes.len()
        }
        b'[' | b'{' => {
            let mut depth = 0usize;
            let mut in_string = false;
            let mut k = start;
            while k < bytes.len() {
                let b = bytes[k];
                if in_string {
                    match b {
                        b'\\' => k += 1,
                        b'"' => in_string = false,
                        _ => {}
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                return k + 1;
                            }
                        }
                        _ => {}
                    }
                }
                k += 1;
            }
            bytes.len()
        }
        _ => {
            let mut k = start;
            while k < bytes.len() && !matches!(bytes[k], b',' | b'}' | b']' | b'\n') {
                k += 1;
            }
            k
        }
    }
}

fn redact_long_tokens(text: &str) -> String {
    let is_token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-' | '.');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let looks_secret = run.len() >= LONG_TOKEN
            && run.chars().any(|c| c.is_ascii_digit())
            && run.chars().any(|c| c.is_ascii_alphabetic());
        if looks_secret {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }

    #[test]
    fn secret_url_shows_the_host_but_not_the_password() {
        let url = SecretUrl::new("redis://default:hunter2-pw@redis.internal:6380/2");
        let shown = format!("{url:?} {url}");
        assert!(!shown.contains("hunter2-pw"), "{shown}");
        assert!(shown.contains("redis.internal:6380"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert_eq!(
            url.expose(),
            "redis://default:hunter2-pw@redis.internal:6380/2"
        );
        assert_eq!(
            SecretUrl::new("redis://127.0.0.1:6379").redacted(),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn secret_url_redacts_secret_query_values_and_unparsable_text() {
        let url = SecretUrl::new("smtps://mail.example:465?tls=required&password=p4ss-word#frag");
        let shown = url.redacted();
        assert!(!shown.contains("p4ss-word"), "{shown}");
        assert!(shown.contains("tls=required"), "{shown}");
        assert_eq!(SecretUrl::new("not a url: s3cret").redacted(), REDACTED);
    }

    #[test]
    fn secret_deserializes_from_a_string() {
        let secret: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(secret.expose(), "abc");
    }

    #[test]
    fn snippet_is_truncated_to_the_limit() {
        let body = "x".repeat(500);
        let snippet = redacted_snippet(body.as_bytes(), &[]);
        assert_eq!(snippet.len(), SNIPPET_BYTES);
    }

    #[test]
    fn snippet_truncation_respects_utf8() {
        let body = "é".repeat(200);
        let snippet = redacted_snippet(body.as_bytes(), &[]);
        assert!(snippet.len() <= SNIPPET_BYTES);
        assert!(snippet.chars().all(|c| c == 'é'));
    }

    #[test]
    fn snippet_redacts_known_secrets() {
        let key = Secret::new("sandbox-cashless-secret");
        let body = b"<html>bad gateway for sandbox-cashless-secret</html>";
        let snippet = redacted_snippet(body, &[&key]);
        assert!(!snippet.contains("sandbox-cashless-secret"), "{snippet}");
        assert!(snippet.contains(REDACTED));
    }

    #[test]
    fn snippet_redacts_secret_sounding_json_values() {
        let body = br#"{"status": "completed", "appSecret": "s3cr3t", "items": [{"externalData": ["CODE-1", "CODE-2"]}], "api_key": 12345"#;
        let snippet = redacted_snippet(body, &[]);
        assert!(!snippet.contains("s3cr3t"), "{snippet}");
        assert!(!snippet.contains("CODE-1"), "{snippet}");
        assert!(!snippet.contains("12345"), "{snippet}");
        assert!(snippet.contains("completed"), "{snippet}");
    }

    #[test]
    fn snippet_redacts_secret_values_after_a_stray_quote() {
        // Found by the providers' property tests.
        for body in [
            r#""{"appSecret": "aa0Aa0", "status": "ok"}"#,
            r#"x" "y {"token": "aa0Aa0"}"#,
            r#"{"note": "a " b", "api_key": "aa0Aa0"}"#,
        ] {
            let snippet = redacted_snippet(body.as_bytes(), &[]);
            assert!(!snippet.contains("aa0Aa0"), "{body} -> {snippet}");
        }
    }

    #[test]
    fn snippet_redacts_a_cut_off_secret_value() {
        let body = br#"{"token": "abcdef"#;
        let snippet = redacted_snippet(body, &[]);
        assert!(!snippet.contains("abcdef"), "{snippet}");
    }

    #[test]
    fn snippet_redacts_long_opaque_tokens() {
        let body = b"Authorization: Bearer 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 rejected";
        let snippet = redacted_snippet(body, &[]);
        assert!(!snippet.contains("9f86d081"), "{snippet}");
        assert!(snippet.contains("rejected"), "{snippet}");
    }

    #[test]
    fn snippet_replaces_control_characters() {
        let snippet = redacted_snippet(b"line1\nline2\r\x1b[31m", &[]);
        assert!(!snippet.chars().any(char::is_control), "{snippet:?}");
    }
}
