//! The definition file: its TOML model, and validation into a [`Definition`] whose every
//! mistake names the file, the line and the field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderName;
use serde::Deserialize;
use toml::Spanned;

use super::answer::{Answer, Field, HttpClasses, Unknown};
use super::auth::{Algorithm, Auth, Encoding};
use super::template::{Allowed, Template};
use super::webhook::{Verify, Webhook};
use crate::durations::parse_duration;
use crate::policy::PollPolicy;
use crate::provider::Provider;
use crate::status::PaymentStatus;

/// A definition file is wrong: where, which field, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {problem}")]
pub struct DefinitionError {
    /// The file.
    pub file: String,
    /// The line, from 1 (0 when the file could not be read at all).
    pub line: usize,
    /// The field, dotted (`answer.statuses.PAID`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl DefinitionError {
    pub(crate) fn io(path: &Path, error: &std::io::Error) -> Self {
        Self {
            file: path.display().to_string(),
            line: 0,
            field: "-".into(),
            problem: format!("cannot be read: {error}"),
        }
    }
}

/// The status request.
#[derive(Debug, Clone)]
pub struct Request {
    /// GET or POST.
    pub method: Method,
    /// The path's segments under the base URL, each a template.
    pub path: Vec<Template>,
    /// Query parameters.
    pub query: Vec<(String, Template)>,
    /// Extra headers.
    pub headers: Vec<(HeaderName, Template)>,
    /// A JSON body (POST).
    pub body: Option<Template>,
}

/// A validated provider definition.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The provider, registered in this process.
    pub provider: Provider,
    /// The file it came from.
    pub file: PathBuf,
    /// The line of `name`.
    pub name_line: usize,
    /// The variable holding the base URL.
    pub base_url_env: String,
    /// Credential names → the variables holding them.
    pub credentials: BTreeMap<String, String>,
    /// How requests authenticate.
    pub auth: Auth,
    /// The status request.
    pub request: Request,
    /// How answers are read.
    pub answer: Answer,
    /// Which HTTP answers mean what.
    pub http: HttpClasses,
    /// The poll policy (unscaled).
    pub policy: PollPolicy,
    /// The fleet-wide request budget: `limit` per `window`.
    pub rate_limit: Option<(u32, Duration)>,
    /// The provider's webhook, if it sends any.
    pub webhook: Option<Webhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Spanned<String>,
    base_url_env: Spanned<String>,
    credentials: Option<BTreeMap<String, Spanned<String>>>,
    auth: Option<Spanned<RawAuth>>,
    request: Spanned<RawRequest>,
    answer: Spanned<RawAnswer>,
    http: Option<RawHttp>,
    policy: Option<RawPolicy>,
    rate_limit: Option<Spanned<String>>,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
    webhook: Option<Spanned<RawWebhook>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    kind: Spanned<String>,
    token: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    header: Option<Spanned<String>>,
    param: Option<Spanned<String>>,
    value: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    algorithm: Option<Spanned<String>>,
    encoding: Option<Spanned<String>>,
    message: Option<Spanned<String>>,
    timestamp_header: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    #[serde(default)]
    query: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnswer {
    status: Spanned<OneOrMany>,
    amount: Option<Spanned<String>>,
    paid: Option<Spanned<String>>,
    statuses: Spanned<BTreeMap<String, Spanned<String>>>,
    case_sensitive: Option<bool>,
    unknown: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    transient: Option<Spanned<Vec<u16>>>,
    rate_limited: Option<Spanned<Vec<u16>>>,
    not_found: Option<Spanned<Vec<u16>>>,
    bad_credentials: Option<Spanned<Vec<u16>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    first_delay: Option<Spanned<String>>,
    multiplier: Option<Spanned<f64>>,
    max_delay: Option<Spanned<String>>,
    jitter: Option<Spanned<f64>>,
    fast_window: Option<Spanned<String>>,
    grace_interval: Option<Spanned<String>>,
    deadline: Option<Spanned<String>>,
    not_found_retries: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Spanned<String>,
    pointer: Spanned<String>,
    #[serde(default)]
    telegram: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    path: Spanned<String>,
    payment_id: Spanned<String>,
    verify: Spanned<String>,
    secret: Option<Spanned<String>>,
    header: Option<Spanned<String>>,
    algorithm: Option<Spanned<String>>,
    encoding: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    timestamp_header: Option<Spanned<String>>,
    tolerance: Option<Spanned<String>>,
    signed: Option<Spanned<String>>,
    pointer: Option<Spanned<String>>,
}

/// Turns byte spans into lines and builds errors for one file.
struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: &Range<usize>, field: &str, problem: impl Into<String>) -> DefinitionError {
        DefinitionError {
            file: self.file.display().to_string(),
            line: self.line(span),
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    fn at<T>(
        &self,
        spanned: &Spanned<T>,
        field: &str,
        problem: impl Into<String>,
    ) -> DefinitionError {
        self.err(&spanned.span(), field, problem)
    }

    /// A TOML or shape error: toml's message names the field; the field is taken from it.
    fn toml_error(&self, error: &toml::de::Error) -> DefinitionError {
        let message = error.message().trim().to_owned();
        let span = error.span().unwrap_or(0..0);
        let field = message
            .split('`')
            .nth(1)
            .map(str::to_owned)
            .or_else(|| {
                let key = self.text.get(span.clone())?.trim();
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    .then(|| key.to_owned())
                    .filter(|k| !k.is_empty())
            })
            .unwrap_or_else(|| "-".to_owned());
        self.err(&span, &field, message)
    }
}

/// A JSON pointer: empty, or `/`-separated tokens.
fn pointer(ctx: &Ctx<'_>, value: &Spanned<String>, field: &str) -> Result<String, DefinitionError> {
    let text = value.get_ref();
    if !text.is_empty() && !text.starts_with('/') {
        return Err(ctx.at(
            value,
            field,
            format!("{text:?} is not a JSON pointer (it starts with '/', e.g. \"/status\")"),
        ));
    }
    Ok(text.clone())
}

fn duration(
    ctx: &Ctx<'_>,
    value: &Spanned<String>,
    field: &str,
) -> Result<Duration, DefinitionError> {
    parse_duration(value.get_ref()).map_err(|_| {
        ctx.at(
            value,
            field,
            format!(
                "{:?} is not a duration (e.g. \"5s\", \"10m\")",
                value.get_ref()
            ),
        )
    })
}

/// A credential name the file declares.
fn credential(
    ctx: &Ctx<'_>,
    value: &Spanned<String>,
    field: &str,
    credentials: &BTreeMap<String, String>,
) -> Result<String, DefinitionError> {
    let name = value.get_ref();
    if credentials.contains_key(name) {
        Ok(name.clone())
    } else {
        let known: Vec<&str> = credentials.keys().map(String::as_str).collect();
        Err(ctx.at(
            value,
            field,
            format!(
                "{name:?} is not a credential of this file (declared in [credentials]: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ))
    }
}

fn required<'a, T>(
    ctx: &Ctx<'_>,
    value: &'a Option<Spanned<T>>,
    table: &Range<usize>,
    field: &str,
    why: &str,
) -> Result<&'a Spanned<T>, DefinitionError> {
    value
        .as_ref()
        .ok_or_else(|| ctx.err(table, field, format!("is required {why}")))
}

fn header_name(
    ctx: &Ctx<'_>,
    value: &Spanned<String>,
    field: &str,
) -> Result<HeaderName, DefinitionError> {
    HeaderName::from_bytes(value.get_ref().as_bytes()).map_err(|_| {
        ctx.at(
            value,
            field,
            format!("{:?} is not an HTTP header name", value.get_ref()),
        )
    })
}

fn algorithm(
    ctx: &Ctx<'_>,
    value: Option<&Spanned<String>>,
    field: &str,
) -> Result<Algorithm, DefinitionError> {
    match value.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "sha256")) => Ok(Algorithm::Sha256),
        Some((_, "sha512")) => Ok(Algorithm::Sha512),
        Some((v, other)) => Err(ctx.at(
            v,
            field,
            format!("{other:?}: expected \"sha256\" or \"sha512\""),
        )),
    }
}

fn encoding(
    ctx: &Ctx<'_>,
    value: Option<&Spanned<String>>,
    field: &str,
) -> Result<Encoding, DefinitionError> {
    match value.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "hex")) => Ok(Encoding::Hex),
        Some((_, "base64")) => Ok(Encoding::Base64),
        Some((v, other)) => Err(ctx.at(
            v,
            field,
            format!("{other:?}: expected \"hex\" or \"base64\""),
        )),
    }
}

fn codes(
    ctx: &Ctx<'_>,
    value: &Option<Spanned<Vec<u16>>>,
    field: &str,
    default: &[u16],
) -> Result<Vec<u16>, DefinitionError> {
    match value {
        None => Ok(default.to_vec()),
        Some(list) => {
            if let Some(bad) = list.get_ref().iter().find(|c| !(400..=599).contains(*c)) {
                return Err(ctx.at(
                    list,
                    field,
                    format!("{bad} is not an HTTP error status (400 to 599)"),
                ));
            }
            Ok(list.get_ref().clone())
        }
    }
}

/// `"100/min"`, `"10/s"`, `"100/6s"`.
fn rate_limit(ctx: &Ctx<'_>, value: &Spanned<String>) -> Result<(u32, Duration), DefinitionError> {
    let bad = |problem: &str| {
        ctx.at(
            value,
            "rate_limit",
            format!(
                "{:?}: {problem} (expected e.g. \"100/min\")",
                value.get_ref()
            ),
        )
    };
    let (count, per) = value
        .get_ref()
        .trim()
        .split_once('/')
        .ok_or_else(|| bad("no '/'"))?;
    let limit: u32 = count
        .trim()
        .parse()
        .map_err(|_| bad("the count is not a whole number"))?;
    let per = per.trim();
    let per = if per.starts_with(|c: char| c.is_ascii_alphabetic()) {
        format!("1{per}")
    } else {
        per.to_owned()
    };
    let window = parse_duration(&per).map_err(|_| bad("the window is not a duration"))?;
    if limit == 0 {
        return Err(bad("the count must be at least 1"));
    }
    if window < Duration::from_millis(100) {
        return Err(bad("the window must be at least 100ms"));
    }
    Ok((limit, window))
}

impl Definition {
    /// The header an HMAC-signed request carries its timestamp in, if any.
    pub fn auth_timestamp_header(&self) -> Option<&HeaderName> {
        match &self.auth {
            Auth::Hmac {
                timestamp_header, ..
            } => timestamp_header.as_ref(),
            _ => None,
        }
    }

    /// Parses and validates the text of `file`, registering the provider it declares.
    pub fn parse(text: &str, file: &Path) -> Result<Self, DefinitionError> {
        let ctx = Ctx { text, file };
        let raw: Raw = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;

        let provider = Provider::declare(raw.name.get_ref())
            .map_err(|e| ctx.at(&raw.name, "name", e.to_string()))?;
        let env_name = |v: &Spanned<String>, field: &str| -> Result<String, DefinitionError> {
            let name = v.get_ref();
            let ok = !name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if ok {
                Ok(name.clone())
            } else {
                Err(ctx.at(v, field, format!(
                    "{name:?} is not an environment variable name (A-Z, 0-9, _; the value itself never goes in the file)"
                )))
            }
        };
        let base_url_env = env_name(&raw.base_url_env, "base_url_env")?;
        let mut credentials = BTreeMap::new();
        for (name, variable) in raw.credentials.iter().flatten() {
            let field = format!("credentials.{name}");
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid
                || matches!(
                    name.as_str(),
                    "payment_id" | "timestamp" | "method" | "path" | "body"
                )
            {
                return Err(ctx.at(variable, &field, format!(
                    "{name:?} cannot name a credential (a-z, 0-9, _, not a placeholder paywatch fills)"
                )));
            }
            credentials.insert(name.clone(), env_name(variable, &field)?);
        }

        let auth = match &raw.auth {
            None => Auth::None,
            Some(auth) => Self::auth(&ctx, auth, &credentials)?,
        };
        let request = Self::request(&ctx, &raw.request, &credentials)?;
        let (answer, fields) = (&raw.answer, &raw.fields);
        let answer = Self::answer(&ctx, answer, fields)?;
        let http = match &raw.http {
            None => HttpClasses::default(),
            Some(h) => {
                let d = HttpClasses::default();
                HttpClasses {
                    transient: codes(&ctx, &h.transient, "http.transient", &d.transient)?,
                    rate_limited: codes(
                        &ctx,
                        &h.rate_limited,
                        "http.rate_limited",
                        &d.rate_limited,
                    )?,
                    not_found: codes(&ctx, &h.not_found, "http.not_found", &d.not_found)?,
                    bad_credentials: codes(
                        &ctx,
                        &h.bad_credentials,
                        "http.bad_credentials",
                        &d.bad_credentials,
                    )?,
                }
            }
        };
        let policy = Self::policy(&ctx, raw.policy.as_ref())?;
        let rate_limit = raw
            .rate_limit
            .as_ref()
            .map(|r| rate_limit(&ctx, r))
            .transpose()?;
        let webhook = raw
            .webhook
            .as_ref()
            .map(|w| Self::webhook(&ctx, w, &credentials))
            .transpose()?;
        Ok(Self {
            provider,
            file: file.to_owned(),
            name_line: ctx.line(&raw.name.span()),
            base_url_env,
            credentials,
            auth,
            request,
            answer,
            http,
            policy,
            rate_limit,
            webhook,
        })
    }

    fn auth(
        ctx: &Ctx<'_>,
        auth: &Spanned<RawAuth>,
        credentials: &BTreeMap<String, String>,
    ) -> Result<Auth, DefinitionError> {
        let table = auth.span();
        let a = auth.get_ref();
        let with_creds = Allowed {
            credentials: true,
            ..Allowed::default()
        };
        let template = |v: &Spanned<String>, field: &str, allowed: Allowed| {
            Template::parse(v.get_ref(), allowed, credentials).map_err(|e| ctx.at(v, field, e))
        };
        let kind = a.kind.get_ref().as_str();
        let why = format!("for kind = \"{kind}\"");
        Ok(match kind {
            "none" => Auth::None,
            "bearer" => Auth::Bearer {
                token: credential(
                    ctx,
                    required(ctx, &a.token, &table, "auth.token", &why)?,
                    "auth.token",
                    credentials,
                )?,
            },
            "basic" => Auth::Basic {
                username: credential(
                    ctx,
                    required(ctx, &a.username, &table, "auth.username", &why)?,
                    "auth.username",
                    credentials,
                )?,
                password: credential(
                    ctx,
                    required(ctx, &a.password, &table, "auth.password", &why)?,
                    "auth.password",
                    credentials,
                )?,
            },
            "header" => {
                let header = required(ctx, &a.header, &table, "auth.header", &why)?;
                let value = required(ctx, &a.value, &table, "auth.value", &why)?;
                Auth::Header {
                    name: header_name(ctx, header, "auth.header")?,
                    value: template(value, "auth.value", with_creds)?,
                }
            }
            "query" => {
                let param = required(ctx, &a.param, &table, "auth.param", &why)?;
                let value = required(ctx, &a.value, &table, "auth.value", &why)?;
                Auth::Query {
                    param: param.get_ref().clone(),
                    value: template(value, "auth.value", with_creds)?,
                }
            }
            "hmac" => {
                let header = required(ctx, &a.header, &table, "auth.header", &why)?;
                let secret = required(ctx, &a.secret, &table, "auth.secret", &why)?;
                let message = required(ctx, &a.message, &table, "auth.message", &why)?;
                let signing = Allowed {
                    credentials: true,
                    signing: true,
                    payment_id: true,
                };
                Auth::Hmac {
                    header: header_name(ctx, header, "auth.header")?,
                    secret: credential(ctx, secret, "auth.secret", credentials)?,
                    algorithm: algorithm(ctx, a.algorithm.as_ref(), "auth.algorithm")?,
                    encoding: encoding(ctx, a.encoding.as_ref(), "auth.encoding")?,
                    message: template(message, "auth.message", signing)?,
                    timestamp_header: a
                        .timestamp_header
                        .as_ref()
                        .map(|h| header_name(ctx, h, "auth.timestamp_header"))
                        .transpose()?,
                    prefix: a
                        .prefix
                        .as_ref()
                        .map(|p| p.get_ref().clone())
                        .unwrap_or_default(),
                }
            }
            other => {
                return Err(ctx.at(
                    &a.kind,
                    "auth.kind",
                    format!("{other:?}: expected one of none, bearer, basic, header, query, hmac"),
                ));
            }
        })
    }

    fn request(
        ctx: &Ctx<'_>,
        request: &Spanned<RawRequest>,
        credentials: &BTreeMap<String, String>,
    ) -> Result<Request, DefinitionError> {
        let r = request.get_ref();
        let method = match r
            .method
            .as_ref()
            .map(|m| (m, m.get_ref().to_ascii_uppercase()))
        {
            None => Method::GET,
            Some((_, m)) if m == "GET" => Method::GET,
            Some((_, m)) if m == "POST" => Method::POST,
            Some((m, other)) => {
                return Err(ctx.at(
                    m,
                    "request.method",
                    format!("{other:?}: expected GET or POST"),
                ));
            }
        };
        let only_id = Allowed {
            payment_id: true,
            ..Allowed::default()
        };
        let with_creds = Allowed {
            payment_id: true,
            credentials: true,
            ..Allowed::default()
        };
        let path_text = r.path.get_ref();
        if !path_text.starts_with('/') || path_text.contains(['?', '#']) {
            return Err(ctx.at(&r.path, "request.path", format!(
                "{path_text:?} must start with '/' and hold no query or fragment (use request.query)"
            )));
        }
        let mut path = Vec::new();
        for segment in path_text.trim_start_matches('/').split('/') {
            path.push(
                Template::parse(segment, only_id, credentials)
                    .map_err(|e| ctx.at(&r.path, "request.path", e))?,
            );
        }
        let mut query = Vec::new();
        for (name, value) in &r.query {
            let field = format!("request.query.{name}");
            query.push((
                name.clone(),
                Template::parse(value.get_ref(), with_creds, credentials)
                    .map_err(|e| ctx.at(value, &field, e))?,
            ));
        }
        let mut headers = Vec::new();
        for (name, value) in &r.headers {
            let field = format!("request.headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ctx.at(
                    value,
                    &field,
                    format!("{name:?} is not an HTTP header name"),
                )
            })?;
            headers.push((
                header,
                Template::parse(value.get_ref(), with_creds, credentials)
                    .map_err(|e| ctx.at(value, &field, e))?,
            ));
        }
        let body = match &r.body {
            None => None,
            Some(body) if method == Method::GET => {
                return Err(ctx.at(
                    body,
                    "request.body",
                    "a GET request has no body; set method = \"POST\"",
                ));
            }
            Some(body) => Some(
                Template::parse(body.get_ref(), with_creds, credentials)
                    .map_err(|e| ctx.at(body, "request.body", e))?,
            ),
        };
        let uses_id = path.iter().any(Template::uses_payment_id)
            || query.iter().any(|(_, t)| t.uses_payment_id())
            || body.as_ref().is_some_and(Template::uses_payment_id);
        if !uses_id {
            return Err(ctx.at(
                &r.path,
                "request.path",
                "no {payment_id} in the path, the query or the body",
            ));
        }
        Ok(Request {
            method,
            path,
            query,
            headers,
            body,
        })
    }

    fn answer(
        ctx: &Ctx<'_>,
        answer: &Spanned<RawAnswer>,
        fields: &[Spanned<RawField>],
    ) -> Result<Answer, DefinitionError> {
        let a = answer.get_ref();
        let status_pointers = match a.status.get_ref() {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        };
        if status_pointers.is_empty() {
            return Err(ctx.at(&a.status, "answer.status", "names no JSON pointer"));
        }
        for p in &status_pointers {
            if !p.starts_with('/') {
                return Err(ctx.at(
                    &a.status,
                    "answer.status",
                    format!("{p:?} is not a JSON pointer (it starts with '/', e.g. \"/status\")"),
                ));
            }
        }
        let case_sensitive = a.case_sensitive.unwrap_or(false);
        let mut statuses = Vec::new();
        for (raw, status) in a.statuses.get_ref() {
            let field = format!("answer.statuses.{raw}");
            let mapped = match status.get_ref().as_str() {
                "pending" => PaymentStatus::Pending,
                "partially_paid" => PaymentStatus::PartiallyPaid,
                "processing" => PaymentStatus::Processing,
                "paid" => PaymentStatus::Paid,
                "failed" => PaymentStatus::Failed,
                "expired" => PaymentStatus::Expired,
                "cancelled" => PaymentStatus::Cancelled,
                other => {
                    return Err(ctx.at(status, &field, format!(
                        "{other:?}: expected one of pending, partially_paid, processing, paid, failed, expired, cancelled"
                    )));
                }
            };
            let clash = statuses.iter().any(|(seen, _): &(String, PaymentStatus)| {
                if case_sensitive {
                    seen == raw
                } else {
                    seen.eq_ignore_ascii_case(raw)
                }
            });
            if clash {
                return Err(ctx.at(status, &field, "is mapped twice (statuses are compared ignoring case unless answer.case_sensitive = true)"));
            }
            statuses.push((raw.clone(), mapped));
        }
        if statuses.is_empty() {
            return Err(ctx.at(&a.statuses, "answer.statuses", "maps no status"));
        }
        if !statuses.iter().any(|(_, s)| s.is_terminal()) {
            return Err(ctx.at(&a.statuses, "answer.statuses", "maps no status to a final one (paid, failed, expired, cancelled): no payment could ever finish"));
        }
        let unknown = match a.unknown.as_ref().map(|u| (u, u.get_ref().as_str())) {
            None | Some((_, "error")) => Unknown::Error,
            Some((_, "pending")) => Unknown::Pending,
            Some((u, other)) => {
                return Err(ctx.at(
                    u,
                    "answer.unknown",
                    format!("{other:?}: expected \"error\" or \"pending\""),
                ));
            }
        };
        let mut out_fields = Vec::new();
        for field in fields {
            let f = field.get_ref();
            let name = f.name.get_ref();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(ctx.at(
                    &f.name,
                    "fields.name",
                    format!("{name:?}: use letters, digits, _ and -"),
                ));
            }
            if out_fields.iter().any(|o: &Field| &o.name == name) {
                return Err(ctx.at(
                    &f.name,
                    "fields.name",
                    format!("{name:?} is declared twice"),
                ));
            }
            out_fields.push(Field {
                name: name.clone(),
                pointer: pointer(ctx, &f.pointer, "fields.pointer")?,
                telegram: f.telegram,
            });
        }
        Ok(Answer {
            status: status_pointers,
            amount: a
                .amount
                .as_ref()
                .map(|p| pointer(ctx, p, "answer.amount"))
                .transpose()?,
            paid: a
                .paid
                .as_ref()
                .map(|p| pointer(ctx, p, "answer.paid"))
                .transpose()?,
            statuses,
            case_sensitive,
            unknown,
            fields: out_fields,
        })
    }

    fn policy(ctx: &Ctx<'_>, raw: Option<&RawPolicy>) -> Result<PollPolicy, DefinitionError> {
        // The seeds' common shape: 5 s × 1.5 to 30 s for 10 min, then every 5 min to 24 h.
        let mut policy = PollPolicy::handcash();
        let Some(p) = raw else {
            return Ok(policy);
        };
        if let Some(v) = &p.first_delay {
            policy.first_delay = duration(ctx, v, "policy.first_delay")?;
        }
        if let Some(v) = &p.multiplier {
            policy.multiplier = *v.get_ref();
        }
        if let Some(v) = &p.max_delay {
            policy.max_delay = duration(ctx, v, "policy.max_delay")?;
        }
        if let Some(v) = &p.jitter {
            policy.jitter = *v.get_ref();
        }
        if let Some(v) = &p.fast_window {
            policy.fast_window = duration(ctx, v, "policy.fast_window")?;
        }
        if let Some(v) = &p.grace_interval {
            policy.grace_interval = duration(ctx, v, "policy.grace_interval")?;
        }
        if let Some(v) = &p.deadline {
            policy.deadline = duration(ctx, v, "policy.deadline")?;
        }
        if let Some(v) = &p.not_found_retries {
            policy.not_found_retries = *v.get_ref();
        }
        if let Err(e) = policy.validate() {
            // Point at the field at fault when the file sets it, else at the first one set.
            let span = match e.field {
                "first_delay" => p.first_delay.as_ref().map(Spanned::span),
                "multiplier" => p.multiplier.as_ref().map(Spanned::span),
                "max_delay" => p.max_delay.as_ref().map(Spanned::span),
                "jitter" => p.jitter.as_ref().map(Spanned::span),
                "grace_interval" => p.grace_interval.as_ref().map(Spanned::span),
                "deadline" => p.deadline.as_ref().map(Spanned::span),
                _ => None,
            };
            let span = span
                .or_else(|| p.first_delay.as_ref().map(Spanned::span))
                .or_else(|| p.max_delay.as_ref().map(Spanned::span))
                .unwrap_or(0..0);
            return Err(ctx.err(&span, &format!("policy.{}", e.field), e.reason));
        }
        Ok(policy)
    }

    fn webhook(
        ctx: &Ctx<'_>,
        webhook: &Spanned<RawWebhook>,
        credentials: &BTreeMap<String, String>,
    ) -> Result<Webhook, DefinitionError> {
        let table = webhook.span();
        let w = webhook.get_ref();
        let path = w.path.get_ref();
        let valid_path = path.starts_with("/webhooks/")
            && path.len() > "/webhooks/".len()
            && path["/webhooks/".len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_path {
            return Err(ctx.at(
                &w.path,
                "webhook.path",
                format!("{path:?} must be /webhooks/<name> (letters, digits, - and _)"),
            ));
        }
        if matches!(path.as_str(), "/webhooks/cashless" | "/webhooks/handcash") {
            return Err(ctx.at(
                &w.path,
                "webhook.path",
                format!("{path:?} is a built-in provider's webhook"),
            ));
        }
        let kind = w.verify.get_ref().as_str();
        let why = format!("for verify = \"{kind}\"");
        let verify = match kind {
            "none" => Verify::None,
            "hmac" => {
                let secret = required(ctx, &w.secret, &table, "webhook.secret", &why)?;
                let header = required(ctx, &w.header, &table, "webhook.header", &why)?;
                let signing = Allowed {
                    signing: true,
                    ..Allowed::default()
                };
                let signed = match &w.signed {
                    Some(s) => Template::parse(s.get_ref(), signing, credentials)
                        .map_err(|e| ctx.at(s, "webhook.signed", e))?,
                    None => Template::parse("{body}", signing, credentials)
                        .map_err(|e| ctx.at(&w.verify, "webhook.signed", e))?,
                };
                let timestamp_header = w
                    .timestamp_header
                    .as_ref()
                    .map(|h| header_name(ctx, h, "webhook.timestamp_header"))
                    .transpose()?;
                let tolerance = match &w.tolerance {
                    Some(t) => duration(ctx, t, "webhook.tolerance")?,
                    None => Duration::from_secs(300),
                };
                Verify::Hmac {
                    secret: credential(ctx, secret, "webhook.secret", credentials)?,
                    header: header_name(ctx, header, "webhook.header")?,
                    algorithm: algorithm(ctx, w.algorithm.as_ref(), "webhook.algorithm")?,
                    encoding: encoding(ctx, w.encoding.as_ref(), "webhook.encoding")?,
                    prefix: w
                        .prefix
                        .as_ref()
                        .map(|p| p.get_ref().clone())
                        .unwrap_or_default(),
                    timestamp_header,
                    tolerance,
                    signed,
                }
            }
            "body_secret" => {
                let secret = required(ctx, &w.secret, &table, "webhook.secret", &why)?;
                let field = required(ctx, &w.pointer, &table, "webhook.pointer", &why)?;
                Verify::BodySecret {
                    secret: credential(ctx, secret, "webhook.secret", credentials)?,
                    pointer: pointer(ctx, field, "webhook.pointer")?,
                }
            }
            other => {
                return Err(ctx.at(
                    &w.verify,
                    "webhook.verify",
                    format!("{other:?}: expected one of hmac, body_secret, none"),
                ));
            }
        };
        Ok(Webhook {
            path: path.clone(),
            payment_id: pointer(ctx, &w.payment_id, "webhook.payment_id")?,
            verify,
        })
    }
}
