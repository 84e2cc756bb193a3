//! How a declared provider's requests authenticate, and the HMAC both requests and webhooks use.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderName;
use sha2::{Sha256, Sha512};

use super::template::Template;

/// The authentication of the status request; names refer to `[credentials]`.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The credential holding the token.
        token: String,
    },
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The credential holding the user name.
        username: String,
        /// The credential holding the password.
        password: String,
    },
    /// A header whose value is a template over the credentials.
    Header {
        /// The header.
        name: HeaderName,
        /// Its value.
        value: Template,
    },
    /// A query parameter whose value is a template over the credentials.
    Query {
        /// The parameter.
        param: String,
        /// Its value.
        value: Template,
    },
    /// An HMAC of a message about the request, sent in a header.
    Hmac {
        /// The header carrying the signature.
        header: HeaderName,
        /// The credential keying the HMAC.
        secret: String,
        /// SHA-256 or SHA-512.
        algorithm: Algorithm,
        /// Hex or base64.
        encoding: Encoding,
        /// What is signed: a template over `{method}`, `{path}`, `{body}`, `{timestamp}`, ….
        message: Template,
        /// A header carrying `{timestamp}` (unix seconds), when the provider wants one.
        timestamp_header: Option<HeaderName>,
        /// Text before the signature (`"sha256="`).
        prefix: String,
    },
}

/// The hash of an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase hex (uppercase accepted when verifying).
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The HMAC of `message` under `key`.
pub fn mac(algorithm: Algorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    // Hmac accepts keys of any length, so new_from_slice cannot fail; an empty MAC would only
    // ever fail verification.
    match algorithm {
        Algorithm::Sha256 => Hmac::<Sha256>::new_from_slice(key)
            .map(|mut m| {
                m.update(message);
                m.finalize().into_bytes().to_vec()
            })
            .unwrap_or_default(),
        Algorithm::Sha512 => Hmac::<Sha512>::new_from_slice(key)
            .map(|mut m| {
                m.update(message);
                m.finalize().into_bytes().to_vec()
            })
            .unwrap_or_default(),
    }
}

/// `bytes` written in `encoding`.
pub fn encode(encoding: Encoding, bytes: &[u8]) -> String {
    match encoding {
        Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Encoding::Base64 => STANDARD.encode(bytes),
    }
}

/// `text` read in `encoding`; `None` when it is not.
pub fn decode(encoding: Encoding, text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    match encoding {
        Encoding::Hex => {
            if !text.len().is_multiple_of(2) || !text.is_ascii() {
                return None;
            }
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
                .collect()
        }
        Encoding::Base64 => STANDARD.decode(text).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = mac(Algorithm::Sha256, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            encode(Encoding::Hex, &mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            decode(Encoding::Hex, &encode(Encoding::Hex, &mac)),
            Some(mac.clone())
        );
        assert_eq!(
            decode(Encoding::Base64, &encode(Encoding::Base64, &mac)),
            Some(mac)
        );
        assert_eq!(decode(Encoding::Hex, "zz"), None);
    }
}
