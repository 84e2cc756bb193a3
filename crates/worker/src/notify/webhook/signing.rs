//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use paywatch_core::Secret;
use sha2::Sha256;

use super::WebhookConfigError;

/// The prefix Standard Webhooks puts in front of a base64 signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The shortest key accepted, in bytes: the spec's lower bound (192 bits). Shorter keys are
/// almost always a truncated or placeholder secret, which is better caught at startup.
pub const MIN_KEY_BYTES: usize = 24;

/// The signing keys, ready to use: the primary first, then the rotation keys.
///
/// Each entry is an HMAC already keyed with the secret, cloned per signature, so signing cannot
/// fail at send time and the raw key bytes are not kept around separately.
#[derive(Clone)]
pub(crate) struct SigningKeys {
    keys: Vec<Hmac<Sha256>>,
    /// The base64 parts of the secrets, so response snippets that echo one can be redacted.
    redact: Vec<Secret>,
}

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
        Ok(Self { keys, redact })
    }

    /// The `webhook-signature` header value: one `v1,<sig>` per key, space-separated, primary
    /// first, so receivers that know either the old or the new key accept during a rotation.
    pub(crate) fn header(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        self.keys
            .iter()
            .map(|key| sign_with(key.clone(), msg_id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
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

/// Signs one message with one `whsec_` secret; exposed for receivers and tools that need to
/// produce or check a signature the same way the sender does.
pub fn sign(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, WebhookConfigError> {
    let (key, _) = decode_secret("secret", secret)?;
    Ok(sign_with(key, msg_id, timestamp, body))
}

fn sign_with(mut mac: Hmac<Sha256>, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    // Fed piecewise so the body (which can be large) is never copied into a format! buffer.
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// `whsec_<base64>` → a keyed HMAC and the base64 part. Errors never quote the secret: even a
/// base64 decode error's byte/offset details would leak part of it.
fn decode_secret(
    field: &str,
    secret: &Secret,
) -> Result<(Hmac<Sha256>, String), WebhookConfigError> {
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
    let mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| WebhookConfigError::SecretBase64 { field })?;
    Ok((mac, encoded.to_owned()))
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
        assert_eq!(keys.header(SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    }

    #[test]
    fn every_key_signs_primary_first() {
        let other = Secret::new(format!("whsec_{}", STANDARD.encode([7u8; 32])));
        let keys =
            SigningKeys::new(&Secret::new(SPEC_SECRET), std::slice::from_ref(&other)).unwrap();
        let header = keys.header(SPEC_ID, SPEC_TS, SPEC_BODY);
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
    fn debug_does_not_show_keys() {
        let keys = SigningKeys::new(&Secret::new(SPEC_SECRET), &[]).unwrap();
        let debug = format!("{keys:?}");
        assert!(!debug.contains("C2FV"), "{debug}");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.redactions()[0].expose(), &SPEC_SECRET[6..]);
    }
}
