//! Templates of a definition: text with `{placeholders}` filled per request.
//!
//! A placeholder is `{` + a lowercase identifier + `}`; any other brace is literal text, so a
//! JSON body template needs no escaping (`{"id": "{payment_id}"}`).

use std::collections::BTreeMap;

use crate::secret::Secret;

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    PaymentId,
    Timestamp,
    Method,
    Path,
    Body,
    Credential(String),
}

/// Which placeholders a template may use, besides `{payment_id}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowed {
    /// Credentials by name (`{api_key}`): headers, query, body, HMAC messages.
    pub credentials: bool,
    /// `{timestamp}`, `{method}`, `{path}`, `{body}`: the HMAC message only.
    pub signing: bool,
    /// `{payment_id}`; a webhook's signed message has none.
    pub payment_id: bool,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// How a filled value is escaped where it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As it is (headers, query values — the URL encoder escapes those —, signed text).
    None,
    /// Inside a JSON string.
    Json,
}

/// The values a template is filled with.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The payment id.
    pub payment_id: &'a str,
    /// The resolved credentials by name.
    pub credentials: &'a BTreeMap<String, Secret>,
    /// Unix seconds, for signatures.
    pub timestamp: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request path (with its query, if any).
    pub path: &'a str,
    /// The request body.
    pub body: &'a str,
}

impl Template {
    /// Parses `text`; the error names the placeholder that is not allowed here.
    pub fn parse(
        text: &str,
        allowed: Allowed,
        credentials: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(after.len());
            let is_placeholder = name_len > 0
                && after[name_len..].starts_with('}')
                && after.starts_with(|c: char| c.is_ascii_lowercase());
            if !is_placeholder {
                literal.push('{');
                rest = after;
                continue;
            }
            let name = &after[..name_len];
            let piece = match name {
                "payment_id" if allowed.payment_id => Piece::PaymentId,
                "timestamp" if allowed.signing => Piece::Timestamp,
                "method" if allowed.signing => Piece::Method,
                "path" if allowed.signing => Piece::Path,
                "body" if allowed.signing => Piece::Body,
                credential if allowed.credentials && credentials.contains_key(credential) => {
                    Piece::Credential(credential.to_owned())
                }
                other => {
                    let mut known = Vec::new();
                    if allowed.payment_id {
                        known.push("{payment_id}".to_owned());
                    }
                    if allowed.signing {
                        known.extend(
                            ["{timestamp}", "{method}", "{path}", "{body}"].map(str::to_owned),
                        );
                    }
                    if allowed.credentials {
                        known.extend(credentials.keys().map(|k| format!("{{{k}}}")));
                    }
                    let known = if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    };
                    return Err(format!(
                        "placeholder {{{other}}} is not allowed here (allowed: {known})"
                    ));
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            rest = &after[name_len + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self { pieces })
    }

    /// Whether the template uses a credential (its output is then a secret).
    pub fn uses_credentials(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Credential(_)))
    }

    /// Whether the template uses `{payment_id}`.
    pub fn uses_payment_id(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::PaymentId))
    }

    /// The template filled with `vars`, each value escaped by `escape`.
    pub fn render(&self, vars: &Vars<'_>, escape: Escape) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            let value = match piece {
                Piece::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Piece::PaymentId => vars.payment_id,
                Piece::Timestamp => vars.timestamp,
                Piece::Method => vars.method,
                Piece::Path => vars.path,
                Piece::Body => vars.body,
                // Parsing checked the name against the declared credentials, which resolve
                // all together; an absent one renders empty rather than panicking.
                Piece::Credential(name) => {
                    vars.credentials.get(name).map(Secret::expose).unwrap_or("")
                }
            };
            match escape {
                Escape::None => out.push_str(value),
                Escape::Json => {
                    let quoted = serde_json::Value::from(value).to_string();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> BTreeMap<String, String> {
        BTreeMap::from([("key".to_owned(), "K_ENV".to_owned())])
    }

    fn all() -> Allowed {
        Allowed {
            credentials: true,
            signing: true,
            payment_id: true,
        }
    }

    #[test]
    fn fills_placeholders_and_keeps_other_braces() {
        let t =
            Template::parse(r#"{"id": "{payment_id}", "k": "{key}"}"#, all(), &creds()).unwrap();
        let secrets = BTreeMap::from([("key".to_owned(), Secret::new("s\"x"))]);
        let vars = Vars {
            payment_id: "p\"1",
            credentials: &secrets,
            timestamp: "",
            method: "GET",
            path: "/",
            body: "",
        };
        assert_eq!(
            t.render(&vars, Escape::Json),
            r#"{"id": "p\"1", "k": "s\"x"}"#
        );
        assert!(t.uses_credentials());
        assert!(t.uses_payment_id());
    }

    #[test]
    fn refuses_placeholders_not_allowed_here() {
        let only_id = Allowed {
            payment_id: true,
            ..Allowed::default()
        };
        let e = Template::parse("/x/{key}", only_id, &creds()).unwrap_err();
        assert!(e.contains("{key}") && e.contains("{payment_id}"), "{e}");
        let e = Template::parse("{nope}", all(), &creds()).unwrap_err();
        assert!(e.contains("{nope}"), "{e}");
    }
}
