//! Where the run's notifications land, counted as a shop would see them: an SMTP server, the
//! sandbox's Telegram Bot API, and a webhook endpoint that verifies every signature.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// Its `webhook-id` header.
    pub id: String,
    /// Its body, byte for byte.
    pub body: Bytes,
    /// Whether its Standard Webhooks signature verified with the shop's secret.
    pub verified: bool,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// A shop's webhook endpoint on a loopback port: verifies, records, answers 204 (401 to a bad
/// signature, as a careful shop would).
#[derive(Debug, Clone)]
pub struct VerifyingReceiver {
    /// Its URL.
    pub url: String,
    received: Arc<Mutex<Vec<ReceivedWebhook>>>,
}

type Shared = (
    Arc<standardwebhooks::Webhook>,
    Arc<Mutex<Vec<ReceivedWebhook>>>,
);

async fn receive(
    State((verifier, log)): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let verified = verifier.verify(&body, &headers).is_ok();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(ReceivedWebhook {
            id,
            body,
            verified,
            at: Utc::now(),
        });
    if verified {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

impl VerifyingReceiver {
    /// Starts one on a random loopback port, verifying with `secret` (`whsec_…`).
    pub async fn start(secret: &str) -> anyhow::Result<Self> {
        let verifier = standardwebhooks::Webhook::new(secret)
            .map_err(|e| anyhow::anyhow!("webhook secret: {e}"))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/shop/webhooks", axum::routing::post(receive))
            .with_state((Arc::new(verifier), received.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/shop/webhooks", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, received })
    }

    /// Everything received so far, grouped by `webhook-id`, in arrival order.
    pub fn by_id(&self) -> BTreeMap<String, Vec<ReceivedWebhook>> {
        let mut grouped: BTreeMap<String, Vec<ReceivedWebhook>> = BTreeMap::new();
        for w in self
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            grouped.entry(w.id.clone()).or_default().push(w.clone());
        }
        grouped
    }
}
