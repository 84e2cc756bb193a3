//! Providers declared in files: a payment provider described in TOML, polled by the generic
//! adapter ([`crate::adapters`]) with the same guarantees as a built-in one.
//!
//! - [`definition`]: the file format and its validation; every mistake names the file, the line
//!   and the field ([`DefinitionError`]).
//! - [`template`]: `{payment_id}`-style templates of paths, queries, headers, bodies.
//! - [`auth`]: how requests authenticate (none, bearer, Basic, header, query, HMAC).
//! - [`answer`]: reading an answer: JSON pointers, the status table, HTTP classes, fields.
//! - [`webhook`]: verifying a provider's webhook (HMAC of the raw body, or a secret field).
//!
//! Definitions are loaded once at start-up ([`load_dir`]); loading registers each name as a
//! [`Provider::Declared`] of the process. Credentials are never in a file: it names the
//! environment variables holding them, read by [`Definition::resolve`].

pub mod answer;
pub mod auth;
pub mod definition;
pub mod template;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use url::Url;

pub use crate::adapters::declared::{Prepared, prepare};
pub use definition::{Definition, DefinitionError};

use crate::provider::Provider;
use crate::secret::Secret;

/// The file name extension of definitions in a directory.
pub const EXTENSION: &str = "toml";

/// Loads every `*.toml` in `dir` (sorted by name), registering each provider; a second file
/// declaring a name already loaded is an error naming both.
pub fn load_dir(dir: &Path) -> Result<Vec<Arc<Definition>>, DefinitionError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DefinitionError::io(dir, &e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == EXTENSION) && path.is_file())
        .collect();
    files.sort();
    let mut loaded: Vec<Arc<Definition>> = Vec::new();
    for file in files {
        let definition = load_file(&file)?;
        if let Some(first) = loaded.iter().find(|d| d.provider == definition.provider) {
            return Err(DefinitionError {
                file: file.display().to_string(),
                line: definition.name_line,
                field: "name".into(),
                problem: format!(
                    "{} is already declared by {}",
                    definition.provider,
                    first.file.display()
                ),
            });
        }
        let path = definition.webhook.as_ref().map(|w| w.path.as_str());
        if let Some(first) = loaded
            .iter()
            .find(|d| path.is_some() && d.webhook.as_ref().map(|w| w.path.as_str()) == path)
        {
            return Err(DefinitionError {
                file: file.display().to_string(),
                line: definition.name_line,
                field: "webhook.path".into(),
                problem: format!("is already the webhook of {}", first.file.display()),
            });
        }
        loaded.push(Arc::new(definition));
    }
    Ok(loaded)
}

/// Loads one definition file and registers its provider.
pub fn load_file(file: &Path) -> Result<Definition, DefinitionError> {
    let text = std::fs::read_to_string(file).map_err(|e| DefinitionError::io(file, &e))?;
    Definition::parse(&text, file)
}

/// A definition with its base URL and credentials read from the environment: what the
/// generic adapter needs to make requests.
#[derive(Clone)]
pub struct Resolved {
    /// The definition.
    pub definition: Arc<Definition>,
    /// The provider's base URL.
    pub base_url: Url,
    /// Credentials by the names the file gives them.
    pub credentials: BTreeMap<String, Secret>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("provider", &self.definition.provider)
            .field(
                "base_url",
                &crate::secret::redact_url(self.base_url.as_str()),
            )
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A variable a definition names is unset or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem} (named by {file} for provider {provider})")]
pub struct ResolveError {
    /// The environment variable.
    pub variable: String,
    /// What is wrong.
    pub problem: String,
    /// The definition file.
    pub file: String,
    /// The provider.
    pub provider: Provider,
}

impl Resolved {
    /// Points `definition` at a paywatch-sandbox at `base` (`{base}/{name}`), with the
    /// sandbox's credentials for it ([`sandbox_credential`]).
    pub fn sandbox(definition: Arc<Definition>, base: &Url) -> Self {
        let mut base_url = base.clone();
        if let Ok(mut segments) = base_url.path_segments_mut() {
            segments.pop_if_empty().push(definition.provider.as_str());
        }
        let credentials = definition
            .credentials
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    Secret::new(sandbox_credential(definition.provider, name)),
                )
            })
            .collect();
        Self {
            definition,
            base_url,
            credentials,
        }
    }

    /// Reads the base URL and every credential from `env` (the process environment in the
    /// binaries); the error names the variable.
    pub fn from_env(
        definition: Arc<Definition>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ResolveError> {
        let fail = |variable: &str, problem: &str| ResolveError {
            variable: variable.to_owned(),
            problem: problem.to_owned(),
            file: definition.file.display().to_string(),
            provider: definition.provider,
        };
        let variable = &definition.base_url_env;
        let raw = env(variable).ok_or_else(|| fail(variable, "is not set"))?;
        let base_url = Url::parse(raw.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| fail(variable, "must be an absolute http(s) URL with a host"))?;
        let mut credentials = BTreeMap::new();
        for (name, variable) in &definition.credentials {
            let value = env(variable).ok_or_else(|| fail(variable, "is not set"))?;
            if value.trim().is_empty() {
                return Err(fail(variable, "is empty"));
            }
            credentials.insert(name.clone(), Secret::new(value));
        }
        Ok(Self {
            definition: Arc::clone(&definition),
            base_url,
            credentials,
        })
    }

    /// The values of the credentials, for scrubbing error snippets.
    pub fn secrets(&self) -> Vec<Secret> {
        self.credentials.values().cloned().collect()
    }
}

/// The credential the sandbox expects for `name` of a declared provider: `sandbox-<provider>-<name>`.
pub fn sandbox_credential(provider: Provider, name: &str) -> String {
    format!("sandbox-{provider}-{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/providers")
    }

    const GOOD: &str = r#"name = "unit-good"
base_url_env = "UNIT_GOOD_URL"

[credentials]
key = "UNIT_GOOD_KEY"

[auth]
kind = "bearer"
token = "key"

[request]
path = "/p/{payment_id}"

[answer]
status = "/status"

[answer.statuses]
open = "pending"
done = "paid"
"#;

    fn parse(text: &str) -> Result<Definition, DefinitionError> {
        Definition::parse(text, Path::new("unit.toml"))
    }

    #[test]
    fn the_shipped_examples_load() {
        let loaded = load_dir(&examples()).unwrap();
        let names: Vec<_> = loaded.iter().map(|d| d.provider.as_str()).collect();
        assert_eq!(names, ["cashless-file", "miraclecash-file", "paylink"]);
        let paylink = &loaded[2];
        assert_eq!(
            paylink.rate_limit,
            Some((100, std::time::Duration::from_secs(60)))
        );
        assert!(paylink.webhook.is_some());
        assert_eq!(paylink.answer.fields.len(), 2);
        assert_eq!(
            loaded[0].policy,
            crate::policy::PollPolicy::cashless(),
            "the file states Cashless's own policy"
        );
        assert_eq!(loaded[1].policy, crate::policy::PollPolicy::miraclecash());
    }

    #[test]
    fn a_good_file_parses() {
        let d = parse(GOOD).unwrap();
        assert_eq!(d.provider.as_str(), "unit-good");
        assert_eq!(d.name_line, 1);
        assert_eq!(d.answer.map("DONE"), Some(crate::PaymentStatus::Paid));
    }

    /// Each mistake is named by its line and field.
    #[test]
    fn mistakes_name_the_file_line_and_field() {
        let cases: &[(&str, &str, usize, &str)] = &[
            ("token = \"key\"", "token = \"nope\"", 9, "auth.token"),
            ("kind = \"bearer\"", "kind = \"oauth\"", 8, "auth.kind"),
            (
                "done = \"paid\"",
                "done = \"settled\"",
                19,
                "answer.statuses.done",
            ),
            (
                "path = \"/p/{payment_id}\"",
                "path = \"/p/{id}\"",
                12,
                "request.path",
            ),
            (
                "status = \"/status\"",
                "status = \"status\"",
                15,
                "answer.status",
            ),
            ("UNIT_GOOD_KEY", "unit good key", 5, "credentials.key"),
            ("[answer]\n", "[answer]\nstatuz = 1\n", 15, "statuz"),
            ("name = \"unit-good\"", "name = \"cashless\"", 1, "name"),
            (
                "done = \"paid\"",
                "done = \"pending\"",
                17,
                "answer.statuses",
            ),
        ];
        for (from, to, line, field) in cases {
            let text = GOOD.replacen(from, to, 1);
            let e = parse(&text).expect_err(to);
            assert_eq!((e.line, e.field.as_str()), (*line, *field), "{to}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("unit.toml:{line}: {field}: ")),
                "{e}"
            );
        }
        let e = parse(&GOOD.replace("[request]\npath = \"/p/{payment_id}\"\n", "")).unwrap_err();
        assert!(e.field.contains("request"), "{e}");
        let e = parse("name = \n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn environment_supplies_every_credential_and_names_the_missing_one() {
        let d = Arc::new(parse(GOOD).unwrap());
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let e =
            Resolved::from_env(Arc::clone(&d), env(&[("UNIT_GOOD_URL", "http://h")])).unwrap_err();
        assert_eq!(e.variable, "UNIT_GOOD_KEY");
        let r = Resolved::from_env(
            Arc::clone(&d),
            env(&[("UNIT_GOOD_URL", "http://h"), ("UNIT_GOOD_KEY", "hunter2")]),
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
        let e = Resolved::from_env(
            d,
            env(&[("UNIT_GOOD_URL", "ftp://h"), ("UNIT_GOOD_KEY", "k")]),
        )
        .unwrap_err();
        assert_eq!(e.variable, "UNIT_GOOD_URL");
    }
}
