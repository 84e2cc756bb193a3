//! Webhooks of providers declared in files (`PAYWATCH_PROVIDERS_DIR`): each at the path its
//! definition gives, verified as it says (an HMAC of the raw body, or a shared secret in the
//! body, compared in constant time), then the same fast path as the built-ins' webhooks: the
//! order watching the payment is checked now; the provider's API stays the truth.
//!
//! Answers: 200 once handled (also for payments no order watches), 400 for a body the
//! definition cannot read, 401 for a delivery that does not verify, 404 when the secret's
//! variable is unset here (the webhook is not enabled), 503 when Redis is down.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use paywatch_core::Secret;
use paywatch_core::declared::Definition;
use paywatch_core::declared::webhook::Refused;
use serde_json::json;

use crate::Producer;
use crate::webhooks::WebhookState;

/// One declared provider's webhook, with the credentials its verification needs (`None` when
/// a variable is unset: the webhook is then not enabled on this producer).
#[derive(Clone)]
pub struct DeclaredWebhook {
    /// The definition.
    pub definition: Arc<Definition>,
    /// The verification's credentials by name.
    pub credentials: Option<BTreeMap<String, Secret>>,
}

impl std::fmt::Debug for DeclaredWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeclaredWebhook")
            .field("provider", &self.definition.provider)
            .field("enabled", &self.credentials.is_some())
            .finish()
    }
}

impl DeclaredWebhook {
    /// The webhooks of `definitions`, their secrets read with `env` (the process environment).
    pub fn from_definitions(
        definitions: &[Arc<Definition>],
        env: impl Fn(&str) -> Option<String>,
    ) -> Vec<Self> {
        definitions
            .iter()
            .filter_map(|definition| {
                let webhook = definition.webhook.as_ref()?;
                let mut credentials = BTreeMap::new();
                for name in webhook.credentials() {
                    let variable = definition.credentials.get(name)?;
                    match env(variable).filter(|v| !v.trim().is_empty()) {
                        Some(value) => {
                            credentials.insert(name.to_owned(), Secret::new(value));
                        }
                        None => {
                            tracing::warn!(
                                provider = %definition.provider,
                                variable = variable.as_str(),
                                "the provider's webhook is not enabled: its secret's variable is unset"
                            );
                            return Some(Self {
                                definition: Arc::clone(definition),
                                credentials: None,
                            });
                        }
                    }
                }
                Some(Self {
                    definition: Arc::clone(definition),
                    credentials: Some(credentials),
                })
            })
            .collect()
    }
}

/// The routes of every declared webhook.
pub fn router(producer: Producer, hooks: Vec<DeclaredWebhook>) -> Router {
    let mut router = Router::new();
    for hook in hooks {
        let Some(path) = hook.definition.webhook.as_ref().map(|w| w.path.clone()) else {
            continue;
        };
        let state = WebhookState {
            producer: producer.clone(),
            handcash_app_secret: None,
        };
        let hook = Arc::new(hook);
        router = router.route(
            &path,
            post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                let hook = Arc::clone(&hook);
                async move { receive(&state, &hook, &headers, &body).await }
            }),
        );
    }
    router
}

async fn receive(
    state: &WebhookState,
    hook: &DeclaredWebhook,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let provider = hook.definition.provider;
    let (Some(webhook), Some(credentials)) = (&hook.definition.webhook, &hook.credentials) else {
        return crate::webhooks::received(
            provider,
            "unconfigured",
            (
                StatusCode::NOT_FOUND,
                axum::Json(
                    json!({"error": format!("{provider} webhooks are not enabled on this server")}),
                ),
            )
                .into_response(),
        );
    };
    match webhook.verify(headers, body, credentials, chrono::Utc::now()) {
        Ok(id) => crate::webhooks::check_now(state, provider, &id).await,
        Err(refused) => {
            let (status, outcome) = match refused {
                Refused::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
                Refused::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            };
            if status == StatusCode::UNAUTHORIZED {
                tracing::warn!(%provider, reason = %refused, "provider webhook refused");
            }
            crate::webhooks::received(
                provider,
                outcome,
                (status, axum::Json(json!({"error": refused.to_string()}))).into_response(),
            )
        }
    }
}
