//! Property tests of outgoing webhook signatures, through the worker's public `sign` only (its
//! implementation is being moved onto the standardwebhooks crate): for any key, message id,
//! timestamp and body, the signature is the one the Standard Webhooks reference computes and
//! verifies, a changed body or id fails verification, and any malformed secret is a classified
//! configuration error, never a panic.

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use paywatch_core::Secret;
use paywatch_worker::notify::webhook::{
    MIN_KEY_BYTES, SECRET_PREFIX, SignError, WebhookConfigError, sign,
};
use proptest::prelude::*;

fn secret_of(key: &[u8]) -> String {
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn headers(id: &str, timestamp: i64, signature: &str) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(id).ok()?);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert("webhook-signature", HeaderValue::from_str(signature).ok()?);
    Some(headers)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signatures_match_the_reference_for_any_input(
        key in prop::collection::vec(any::<u8>(), MIN_KEY_BYTES..80),
        id in "[ -~]{0,60}",
        timestamp in any::<i64>(),
        body in any::<String>(),
    ) {
        let secret = secret_of(&key);
        let ours = sign(&Secret::new(secret.clone()), &id, timestamp, body.as_bytes())
            .expect("a valid secret signs");
        let reference = standardwebhooks::Webhook::new(&secret)
            .expect("reference accepts the secret")
            .sign(&id, timestamp, body.as_bytes())
            .expect("reference signs UTF-8");
        prop_assert_eq!(ours, reference);
    }

    #[test]
    fn the_reference_verifies_ours_and_rejects_any_change(
        key in prop::collection::vec(any::<u8>(), MIN_KEY_BYTES..64),
        id in "msg_[A-Za-z0-9]{1,30}",
        body in any::<String>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let secret = secret_of(&key);
        let timestamp = now();
        let signature = sign(&Secret::new(secret.clone()), &id, timestamp, body.as_bytes())
            .expect("signs");
        let verifier = standardwebhooks::Webhook::new(&secret).expect("reference key");
        let good = headers(&id, timestamp, &signature).expect("header-safe values");
        prop_assert!(verifier.verify(body.as_bytes(), &good).is_ok());

        let mut changed = body.clone().into_bytes();
        if !changed.is_empty() {
            let i = flip.index(changed.len());
            changed[i] ^= 0x01;
            if let Ok(changed) = String::from_utf8(changed) {
                prop_assert!(verifier.verify(changed.as_bytes(), &good).is_err());
            }
        }
        let other_id = headers(&format!("{id}x"), timestamp, &signature).expect("header-safe");
        prop_assert!(verifier.verify(body.as_bytes(), &other_id).is_err());
    }

    #[test]
    fn any_malformed_secret_is_a_classified_error(
        secret in prop_oneof![
            any::<String>(),
            "whsec_[A-Za-z0-9+/=]{0,40}",
            prop::collection::vec(any::<u8>(), 0..MIN_KEY_BYTES).prop_map(|k| secret_of(&k)),
        ],
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        match sign(&Secret::new(secret.clone()), "msg_1", 0, &body) {
            Ok(signature) => prop_assert!(signature.starts_with("v1,")),
            Err(e) => {
                prop_assert!(matches!(
                    e,
                    SignError::Secret(
                        WebhookConfigError::SecretPrefix { .. }
                            | WebhookConfigError::SecretBase64 { .. }
                            | WebhookConfigError::SecretTooShort { .. }
                    ) | SignError::Body(_)
                ), "{e:?}");
                // The error names the field, never the secret.
                let shown = format!("{e} {e:?}");
                let encoded = secret.trim().trim_start_matches(SECRET_PREFIX);
                prop_assert!(encoded.len() < 8 || !shown.contains(encoded), "{shown}");
            }
        }
    }
}
