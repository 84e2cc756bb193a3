//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! The signing itself is the `standardwebhooks` crate's (the reference implementation, also what
//! the tests verify with); this module adds what the crate leaves to us: strict secret checks at
//! start-up (prefix, base64, minimum length, errors naming the field without quoting the secret)
//! and key rotation (every key signs, all signatures in one header).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use paywatch_core::Secret;
use standardwebhooks::Webhook;

use super::WebhookConfigError;

/// The prefix Standard Webhooks puts in front of a base64 signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The shortest key accepted, in bytes: the spec's lower bound (192 bits). Shorter keys are
/// almost always a truncated or placeholder secret, which is better caught at startup.
pub const MIN_KEY_BYTES: usize = 24;

/// The signing keys, ready to use: the primary first, then the rotation keys.
#[derive(Clone)]
pub(crate) struct SigningKeys {
    /// One signer per key (the crate's signer is neither `Clone` nor `Debug`, hence the `Arc`).
    keys: Arc<[Webhook]>,
    /// The base64 parts of the secrets, so response snippets that echo one can be redacted.
    redact: Vec<Secret>,
}

/// A body that cannot be signed: Standard Webhooks signs text, and it is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the webhook body is not UTF-8, so it cannot be signed")]
pub struct UnsignableBody;

impl SigningKeys {
    /// Decodes and checks every secret; errors name the config field at fault.
    pub(crate) fn new(primary: &Secret, extra: &[Secret]) -> Result<Self, WebhookConfigError> {
        let fields = std::iter::once(("signing_secret".to_owned(), primary)).chain(
            extra
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("extra_secrets[{i}]"), s)),
        );
        let mut keys = Vec::with_capacity(1 + extra.len());
        let mut redact = Vec::with_capacity(1 + extra.len());
        for (field, secret) in fields {
            let (key, encoded) = decode_secret(&field, secret)?;
            keys.push(key);
            redact.push(Secret::new(encoded));
        }
        Ok(Self {
            keys: keys.into(),
            redact,
        })
    }

    /// The `webhook-signature` header value: one `v1,<sig>` per key, space-separated, primary
    /// first, so receivers that know either the old or the new key accept during a rotation.
    pub(crate) fn header(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<String, UnsignableBody> {
        let signatures = self
            .keys
            .iter()
            .map(|key| {
                key.sign(msg_id, timestamp, body)
                    .map_err(|_| UnsignableBody)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(signatures.join(" "))
    }

    /// How many keys sign each message.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The secrets' encoded forms, for redacting echoes of them.
    pub(crate) fn redactions(&self) -> &[Secret] {
        &self.redact
    }
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Why [`sign`] could not sign.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignError {
    /// The secret is not a usable `whsec_` secret.
    #[error(transparent)]
    Secret(#[from] WebhookConfigError),
    /// The body is not UTF-8.
    #[error(transparent)]
    Body(#[from] UnsignableBody),
}

/// Signs one message with one `whsec_` secret; exposed for receivers and tools that need to
/// produce or check a signature the same way the sender does.
pub fn sign(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignError> {
    let (key, _) = decode_secret("secret", secret)?;
    let signature = key
        .sign(msg_id, timestamp, body)
        .map_err(|_| UnsignableBody)?;
    Ok(signature)
}

/// `whsec_<base64>` → a signer and the base64 part. Checked here rather than by the crate, which
/// accepts a missing prefix and any key length; errors never quote the secret: even a base64
/// decode error's byte/offset details would leak part of it.
fn decode_secret(field: &str, secret: &Secret) -> Result<(Webhook, String), WebhookConfigError> {
    let field = field.to_owned();
    let encoded = secret
        .expose()
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| WebhookConfigError::SecretPrefix {
            field: field.clone(),
        })?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| WebhookConfigError::SecretBase64 {
            field: field.clone(),
        })?;
    if key.len() < MIN_KEY_BYTES {
        return Err(WebhookConfigError::SecretTooShort {
            field,
            len: key.len(),
        });
    }
    let signer =
        Webhook::from_bytes(key).map_err(|_| WebhookConfigError::SecretBase64 { field })?;
    Ok((signer, encoded.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC_TS: i64 = 1_649_367_553;
    const SPEC_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn reproduces_the_standard_webhooks_test_vector() {
        let sig = sign(&Secret::new(SPEC_SECRET), SPEC_ID, SPEC_TS, SPEC_BODY).unwrap();
        assert_eq!(sig, SPEC_SIG);
        let keys = SigningKeys::new(&Secret::new(SPEC_SECRET), &[]).unwrap();
        assert_eq!(keys.header(SPEC_ID, SPEC_TS, SPEC_BODY).unwrap(), SPEC_SIG);
    }

    #[test]
    fn every_key_signs_primary_first() {
        let other = Secret::new(format!("whsec_{}", STANDARD.encode([7u8; 32])));
        let keys =
            SigningKeys::new(&Secret::new(SPEC_SECRET), std::slice::from_ref(&other)).unwrap();
        let header = keys.header(SPEC_ID, SPEC_TS, SPEC_BODY).unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2, "{header}");
        assert_eq!(parts[0], SPEC_SIG);
        assert_eq!(parts[1], sign(&other, SPEC_ID, SPEC_TS, SPEC_BODY).unwrap());
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn signature_covers_id_timestamp_and_body() {
        let s = Secret::new(SPEC_SECRET);
        let base = sign(&s, SPEC_ID, SPEC_TS, SPEC_BODY).unwrap();
        assert_ne!(sign(&s, "msg_other", SPEC_TS, SPEC_BODY).unwrap(), base);
        assert_ne!(sign(&s, SPEC_ID, SPEC_TS + 1, SPEC_BODY).unwrap(), base);
        assert_ne!(sign(&s, SPEC_ID, SPEC_TS, b"{}").unwrap(), base);
    }

    #[test]
    fn bad_secrets_name_the_field_and_never_quote_the_secret() {
        let missing_prefix =
            SigningKeys::new(&Secret::new("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"), &[]).unwrap_err();
        assert_eq!(
            missing_prefix,
            WebhookConfigError::SecretPrefix {
                field: "signing_secret".into()
            }
        );

        let bad_base64 = Secret::new("whsec_not*base64*at-all!!");
        let err = SigningKeys::new(&Secret::new(SPEC_SECRET), &[bad_base64]).unwrap_err();
        assert_eq!(
            err,
            WebhookConfigError::SecretBase64 {
                field: "extra_secrets[0]".into()
            }
        );
        let text = err.to_string();
        assert!(text.contains("extra_secrets[0]"), "{text}");
        assert!(!text.contains("not*base64"), "{text}");

        let short = Secret::new(format!("whsec_{}", STANDARD.encode([1u8; 8])));
        let err = SigningKeys::new(&short, &[]).unwrap_err();
        assert_eq!(
            err,
            WebhookConfigError::SecretTooShort {
                field: "signing_secret".into(),
                len: 8
            }
        );
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_not_mangled() {
        let keys = SigningKeys::new(&Secret::new(SPEC_SECRET), &[]).unwrap();
        assert_eq!(
            keys.header(SPEC_ID, SPEC_TS, b"\xff\xfe"),
            Err(UnsignableBody)
        );
    }

    #[test]
    fn debug_does_not_show_keys() {
        let keys = SigningKeys::new(&Secret::new(SPEC_SECRET), &[]).unwrap();
        let debug = format!("{keys:?}");
        assert!(!debug.contains("C2FV"), "{debug}");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.redactions()[0].expose(), &SPEC_SECRET[6..]);
    }
}
