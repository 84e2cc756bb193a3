//! Providers declared in files, served from the same definitions the workers read: a status
//! endpoint at the definition's path under `/{provider}`, checking the request as the
//! definition authenticates it (the same request built with the sandbox's credentials,
//! `sandbox-<provider>-<credential>`), answering from a scripted timeline; and, when the
//! definition has a webhook and the sandbox a webhook target, a webhook signed as the
//! definition verifies it at every step after the first.
//!
//! Payments are created with `POST /_admin/declared/payments`
//! `{"provider": "paylink", "id": "ch-1", "timeline": [{"after_ms": 0, "status": "…",
//! "fields": {…}}]}` or [`DeclaredProviders::create`]. Fault injection is the built-ins' only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use paywatch_core::PaymentId;
use paywatch_core::declared::template::{Escape, Vars};
use paywatch_core::declared::{Definition, Resolved, prepare};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// One step of a declared payment's timeline.
#[derive(Debug, Clone, Deserialize)]
pub struct DeclaredStep {
    /// When it takes effect, after creation (scaled by the sandbox's time scale).
    pub after_ms: u64,
    /// The provider's raw status from then on.
    pub status: String,
    /// More of the answer, merged into it (e.g. `{"charge": {"vouchers": ["V-1"]}}`).
    #[serde(default)]
    pub fields: Map<String, Value>,
}

#[derive(Debug)]
struct Payment {
    created: Instant,
    steps: Vec<DeclaredStep>,
}

struct Inner {
    providers: BTreeMap<String, Resolved>,
    payments: Mutex<HashMap<(String, String), Payment>>,
    webhook_target: Option<String>,
    time_scale: f64,
    http: reqwest::Client,
}

/// The declared providers a sandbox serves; cheap to clone.
#[derive(Clone)]
pub struct DeclaredProviders {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DeclaredProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeclaredProviders")
            .field(
                "providers",
                &self.inner.providers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A declared payment could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DeclaredError {
    /// No definition of that name is loaded.
    #[error("no declared provider {0:?} in this sandbox")]
    UnknownProvider(String),
    /// The timeline is empty.
    #[error("timeline must have at least one step")]
    EmptyTimeline,
}

/// Sets `value` at JSON `pointer` in `root`, creating objects on the way.
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let mut at = root;
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, token) in tokens.iter().enumerate() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else { return };
        if i + 1 == tokens.len() {
            map.insert(token.clone(), value);
            return;
        }
        at = map
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Merges `extra` into `into`, objects recursively.
fn merge(into: &mut Value, extra: &Map<String, Value>) {
    if !into.is_object() {
        *into = Value::Object(Map::new());
    }
    if let Value::Object(map) = into {
        for (k, v) in extra {
            match (map.get_mut(k), v) {
                (Some(existing @ Value::Object(_)), Value::Object(more)) => merge(existing, more),
                _ => {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

impl DeclaredProviders {
    /// Serves `definitions`; webhooks go to `{webhook_target}{webhook.path}`.
    pub fn new(
        definitions: &[Arc<Definition>],
        webhook_target: Option<String>,
        time_scale: f64,
    ) -> Self {
        // The host is never looked at: only the path under `/{provider}` matters.
        let base = url::Url::parse("http://sandbox.invalid/").ok();
        let providers = definitions
            .iter()
            .filter_map(|d| {
                let base = base.as_ref()?;
                Some((
                    d.provider.as_str().to_owned(),
                    Resolved::sandbox(Arc::clone(d), base),
                ))
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                providers,
                payments: Mutex::default(),
                webhook_target,
                time_scale,
                http: reqwest::Client::new(),
            }),
        }
    }

    /// Scripts a payment of `provider` under `id` (replacing one of that id); its webhooks, if
    /// any, are sent as its steps come.
    pub fn create(
        &self,
        provider: &str,
        id: &str,
        steps: Vec<DeclaredStep>,
    ) -> Result<(), DeclaredError> {
        let resolved = self
            .inner
            .providers
            .get(provider)
            .ok_or_else(|| DeclaredError::UnknownProvider(provider.to_owned()))?;
        if steps.is_empty() {
            return Err(DeclaredError::EmptyTimeline);
        }
        let mut steps = steps;
        steps.sort_by_key(|s| s.after_ms);
        let later: Vec<u64> = steps.iter().skip(1).map(|s| s.after_ms).collect();
        self.inner
            .payments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (provider.to_owned(), id.to_owned()),
                Payment {
                    created: Instant::now(),
                    steps,
                },
            );
        if let (Some(target), Some(_)) = (&self.inner.webhook_target, &resolved.definition.webhook)
        {
            let this = self.clone();
            let (target, provider, id) = (target.clone(), provider.to_owned(), id.to_owned());
            tokio::spawn(async move {
                for after in later {
                    let at = Duration::from_millis(after).mul_f64(this.inner.time_scale);
                    tokio::time::sleep(at).await;
                    this.send_webhook(&target, &provider, &id).await;
                }
            });
        }
        Ok(())
    }

    /// Posts one signed webhook naming payment `id` of `provider`.
    async fn send_webhook(&self, target: &str, provider: &str, id: &str) {
        let Some(resolved) = self.inner.providers.get(provider) else {
            return;
        };
        let Some(webhook) = &resolved.definition.webhook else {
            return;
        };
        let mut body = json!({"type": "payment.updated"});
        set_pointer(&mut body, &webhook.payment_id, Value::String(id.to_owned()));
        let bytes = body.to_string().into_bytes();
        let url = format!("{}{}", target.trim_end_matches('/'), webhook.path);
        let mut request = self
            .inner
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in webhook.sign(&bytes, &resolved.credentials, chrono::Utc::now()) {
            request = request.header(name, value);
        }
        if let Err(e) = request.body(bytes).send().await {
            tracing::warn!(provider, error = %e, "declared provider webhook not delivered");
        }
    }

    /// The answer for payment `id` now: its current step's status and fields.
    fn answer(&self, resolved: &Resolved, id: &str) -> Option<Value> {
        let payments = self
            .inner
            .payments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let payment = payments.get(&(
            resolved.definition.provider.as_str().to_owned(),
            id.to_owned(),
        ))?;
        let elapsed = payment.created.elapsed().as_secs_f64() * 1000.0;
        let step = payment
            .steps
            .iter()
            .rev()
            .find(|s| (s.after_ms as f64) * self.inner.time_scale <= elapsed)
            .or(payment.steps.first())?;
        let mut body = Value::Object(Map::new());
        let pointer = resolved.definition.answer.status.first()?;
        set_pointer(&mut body, pointer, Value::String(step.status.clone()));
        merge(&mut body, &step.fields);
        Some(body)
    }

    /// The payment id a request path under `/{provider}` names, by the definition's path.
    fn payment_id(resolved: &Resolved, rest: &str) -> Option<String> {
        const MARK: &str = "\u{1}";
        let templates = &resolved.definition.request.path;
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        if segments.len() != templates.len() {
            return None;
        }
        let none = BTreeMap::new();
        let vars = Vars {
            payment_id: MARK,
            credentials: &none,
            timestamp: "",
            method: "",
            path: "",
            body: "",
        };
        let mut id = None;
        for (template, segment) in templates.iter().zip(segments) {
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .ok()?;
            let expected = template.render(&vars, Escape::None);
            match expected.split_once(MARK) {
                None if expected == decoded => {}
                None => return None,
                Some((before, after)) => {
                    let middle = decoded.strip_prefix(before)?.strip_suffix(after)?;
                    id = Some(middle.to_owned());
                }
            }
        }
        id
    }

    /// Whether the request carries what the definition's request would (auth included).
    fn authentic(resolved: &Resolved, id: &str, headers: &HeaderMap, query: Option<&str>) -> bool {
        let Ok(payment_id) = PaymentId::new(id) else {
            return false;
        };
        let signed_at = resolved
            .definition
            .auth_timestamp_header()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .unwrap_or_else(chrono::Utc::now);
        let Ok(expected) = prepare(resolved, &payment_id, signed_at) else {
            return false;
        };
        let headers_match = expected
            .headers
            .iter()
            .filter(|(name, _)| *name != header::ACCEPT && *name != header::CONTENT_TYPE)
            .all(|(name, value)| headers.get(name) == Some(value));
        let got: Vec<(String, String)> = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let query_match = expected
            .url
            .query_pairs()
            .into_owned()
            .all(|pair| got.contains(&pair));
        headers_match && query_match
    }

    /// The routes: each provider's status endpoint and the admin endpoint.
    pub fn routes(&self) -> Router {
        let mut router = Router::new().route("/_admin/declared/payments", post(admin_create));
        for name in self.inner.providers.keys() {
            let provider = name.clone();
            router = router.route(
                &format!("/{name}/{{*rest}}"),
                any(
                    move |state: State<DeclaredProviders>,
                          rest: Path<String>,
                          query: RawQuery,
                          method: Method,
                          headers: HeaderMap| {
                        let provider = provider.clone();
                        async move { status(state, provider, rest, query, method, headers).await }
                    },
                ),
            );
        }
        router.with_state(self.clone())
    }
}

#[derive(Deserialize)]
struct CreateBody {
    provider: String,
    id: Option<String>,
    timeline: Vec<DeclaredStep>,
}

async fn admin_create(State(this): State<DeclaredProviders>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<CreateBody>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected {provider, id?, timeline: [{after_ms, status, fields?}]}",
        );
    };
    let id = body
        .id
        .unwrap_or_else(|| format!("{}-{}", body.provider, uuid::Uuid::new_v4().simple()));
    match this.create(&body.provider, &id, body.timeline) {
        Ok(()) => (
            StatusCode::CREATED,
            axum::Json(json!({"provider": body.provider, "id": id})),
        )
            .into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}

async fn status(
    State(this): State<DeclaredProviders>,
    provider: String,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(resolved) = this.inner.providers.get(&provider) else {
        return error(StatusCode::NOT_FOUND, "no such sandbox route");
    };
    if method != resolved.definition.request.method {
        return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let Some(id) = DeclaredProviders::payment_id(resolved, &rest) else {
        return error(StatusCode::NOT_FOUND, "no such sandbox route");
    };
    if !DeclaredProviders::authentic(resolved, &id, &headers, query.as_deref()) {
        return error(StatusCode::UNAUTHORIZED, "invalid credentials");
    }
    match this.answer(resolved, &id) {
        Some(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        None => error(StatusCode::NOT_FOUND, "payment not found"),
    }
}
