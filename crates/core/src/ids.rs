//! Validated identifiers: [`OrderId`] (ours) and [`PaymentId`] (the provider's).
//!
//! Both end up in Redis keys, URLs and log lines, so they are restricted to printable ASCII
//! without whitespace and a bounded length.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest identifier accepted, in bytes (all characters are ASCII).
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier was empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which identifier ("order id" or "payment id").
        kind: &'static str,
    },
    /// The identifier was longer than [`MAX_ID_LEN`].
    #[error("{kind} is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which identifier.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// An order id of `.` or `..`, which URLs read as path steps, so no link could reach it.
    #[error("{kind} must not be . or ..")]
    DotSegment {
        /// Which identifier.
        kind: &'static str,
    },
    /// The identifier contained whitespace, a control character or non-ASCII.
    #[error(
        "{kind} may only contain printable ASCII without whitespace (bad character at byte {index})"
    )]
    InvalidChar {
        /// Which identifier.
        kind: &'static str,
        /// Byte offset of the first offending character.
        index: usize,
    },
}

fn validate(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: value.len(),
        });
    }
    // `is_ascii_graphic` is exactly printable ASCII minus the space.
    if let Some(index) = value.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(IdError::InvalidChar { kind, index });
    }
    if kind == "order id" && matches!(value, "." | "..") {
        return Err(IdError::DotSegment { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as an owned string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;

            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// paywatch's (the merchant's) identifier of an order.
    OrderId,
    "order id"
);

id_type!(
    /// The provider's identifier of a payment (bill, payment request, prompt or order).
    PaymentId,
    "payment id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_ids() {
        for id in [
            "550e8400-e29b-41d4-a716-446655440000",
            "9ac9182acae19902",
            "ord_01krgfgww8eth9xvvysd6y7r4j",
            "a",
            "weird/but?printable#~",
        ] {
            assert_eq!(PaymentId::new(id).unwrap().as_str(), id);
            assert_eq!(id.parse::<OrderId>().unwrap().to_string(), id);
        }
    }

    #[test]
    fn accepts_exactly_the_maximum_length() {
        assert!(OrderId::new("x".repeat(MAX_ID_LEN)).is_ok());
        assert_eq!(
            OrderId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong {
                kind: "order id",
                len: MAX_ID_LEN + 1
            })
        );
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(
            PaymentId::new(""),
            Err(IdError::Empty { kind: "payment id" })
        );
    }

    #[test]
    fn rejects_whitespace_control_and_non_ascii() {
        for (bad, index) in [
            ("a b", 1),
            (" a", 0),
            ("a\t", 1),
            ("a\nb", 1),
            ("ab\u{7f}", 2),
            ("zé", 1),
            ("\0", 0),
        ] {
            assert_eq!(
                PaymentId::new(bad),
                Err(IdError::InvalidChar {
                    kind: "payment id",
                    index
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn try_from_string_and_serde_validate() {
        assert!(OrderId::try_from(String::from("ok")).is_ok());
        assert!(OrderId::try_from(String::from("not ok")).is_err());
        let id: OrderId = serde_json::from_str("\"order-1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"order-1\"");
        assert!(serde_json::from_str::<OrderId>("\"has space\"").is_err());
        assert!(serde_json::from_str::<PaymentId>("\"\"").is_err());
    }

    #[test]
    fn error_messages_name_the_identifier() {
        let err = PaymentId::new("").unwrap_err();
        assert_eq!(err.to_string(), "payment id must not be empty");
    }
}
