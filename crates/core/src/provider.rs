//! The payment providers paywatch knows how to poll.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, PoisonError, RwLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A payment provider. Serialized, parsed and displayed in lowercase (`"cashless"`).
///
/// The four built-ins are variants; a provider declared in a definition file
/// ([`crate::declared`]) is [`Provider::Declared`], carrying its interned name so the type
/// stays `Copy` and every map keyed by provider keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Cashless bills.
    Cashless,
    /// HandCash payment requests.
    HandCash,
    /// MiracleCash payment prompts.
    MiracleCash,
    /// FoxReload orders.
    FoxReload,
    /// A provider described by a definition file, registered at start-up.
    Declared(DeclaredName),
}

/// The name of a declared provider: interned once per process (definitions are loaded once at
/// start-up, so the few leaked names are bounded by the files, never by outside input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeclaredName(&'static str);

impl DeclaredName {
    /// The name, lowercase.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

/// The declared providers this process knows, by name.
static REGISTRY: LazyLock<RwLock<BTreeSet<&'static str>>> = LazyLock::new(RwLock::default);

/// A name cannot be registered as a declared provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclareError {
    /// The name is a built-in provider's.
    #[error("{0:?} is a built-in provider; a definition file must use another name")]
    BuiltIn(String),
    /// The name is not 1–32 of `a-z`, `0-9`, `_`, `-`, starting with a letter.
    #[error(
        "{0:?} is not a provider name: use 1 to 32 of a-z, 0-9, _ and -, starting with a letter"
    )]
    BadName(String),
}

impl Provider {
    /// Every provider, in a stable order.
    pub const ALL: [Provider; 4] = [
        Provider::Cashless,
        Provider::HandCash,
        Provider::MiracleCash,
        Provider::FoxReload,
    ];

    /// Every provider's name, comma-separated, for messages: `cashless, handcash, …`.
    pub fn names() -> String {
        Provider::ALL.map(Provider::as_str).join(", ")
    }

    /// Every provider's name, declared ones included, comma-separated.
    pub fn all_names() -> String {
        Provider::all()
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The lowercase name used on the wire, in metrics labels and in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Cashless => "cashless",
            Provider::HandCash => "handcash",
            Provider::MiracleCash => "miraclecash",
            Provider::FoxReload => "foxreload",
            Provider::Declared(name) => name.as_str(),
        }
    }

    /// Whether this provider comes from a definition file.
    pub const fn is_declared(self) -> bool {
        matches!(self, Provider::Declared(_))
    }

    /// Registers `name` as a declared provider of this process (idempotent) and returns it.
    pub fn declare(name: &str) -> Result<Provider, DeclareError> {
        let valid = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(DeclareError::BadName(name.to_owned()));
        }
        if Provider::ALL.iter().any(|p| p.as_str() == name) {
            return Err(DeclareError::BuiltIn(name.to_owned()));
        }
        // A panic elsewhere while holding the lock leaves the set usable.
        let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
        let interned = match registry.get(name) {
            Some(existing) => *existing,
            None => {
                let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
                registry.insert(leaked);
                leaked
            }
        };
        Ok(Provider::Declared(DeclaredName(interned)))
    }

    /// The declared provider registered under exactly `name`, if any.
    pub fn find_declared(name: &str) -> Option<Provider> {
        REGISTRY
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|interned| Provider::Declared(DeclaredName(interned)))
    }

    /// Every declared provider this process registered, by name.
    pub fn declared() -> Vec<Provider> {
        REGISTRY
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|interned| Provider::Declared(DeclaredName(interned)))
            .collect()
    }

    /// The built-ins, then every declared provider of this process.
    pub fn all() -> Vec<Provider> {
        let mut all = Provider::ALL.to_vec();
        all.extend(Provider::declared());
        all
    }

    /// `name` exactly as stored data spells it: a built-in's lowercase name or a registered
    /// declared provider's.
    fn exact(name: &str) -> Option<Provider> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .or_else(|| Provider::find_declared(name))
    }
}

impl Serialize for Provider {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        // Exact, as the derive was: stored data is always written lowercase.
        Provider::exact(&name).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "unknown provider {name:?} (expected one of {})",
                Provider::all_names()
            ))
        })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string named no known provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?} (expected one of {names})", names = Provider::all_names())]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Case-insensitive because people type "HandCash" in config and on command lines.
        let wanted = s.trim().to_ascii_lowercase();
        Provider::exact(&wanted).ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_strings_and_serde() {
        for provider in Provider::ALL {
            let name = provider.to_string();
            assert_eq!(name.parse::<Provider>().unwrap(), provider);
            let json = serde_json::to_string(&provider).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Provider>(&json).unwrap(), provider);
        }
    }

    #[test]
    fn names_are_lowercase() {
        let names: Vec<_> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["cashless", "handcash", "miraclecash", "foxreload"]);
    }

    #[test]
    fn parsing_is_case_insensitive_but_strict() {
        assert_eq!("HandCash".parse::<Provider>().unwrap(), Provider::HandCash);
        assert!("paypal".parse::<Provider>().is_err());
        assert!("".parse::<Provider>().is_err());
        // serde stays exact: stored data is always written lowercase.
        assert!(serde_json::from_str::<Provider>("\"HandCash\"").is_err());
    }

    #[test]
    fn declared_providers_are_interned_and_round_trip() {
        let declared = Provider::declare("unit-test-pay").unwrap();
        assert_eq!(Provider::declare("unit-test-pay").unwrap(), declared);
        assert!(declared.is_declared());
        assert_eq!(declared.to_string(), "unit-test-pay");
        assert_eq!("Unit-Test-Pay".parse::<Provider>().unwrap(), declared);
        let json = serde_json::to_string(&declared).unwrap();
        assert_eq!(serde_json::from_str::<Provider>(&json).unwrap(), declared);
        assert!(Provider::all().contains(&declared));
        assert!(serde_json::from_str::<Provider>("\"never-declared\"").is_err());
        assert!(matches!(
            Provider::declare("cashless"),
            Err(DeclareError::BuiltIn(_))
        ));
        for bad in ["", "9lives", "Upper", "has space", &"x".repeat(33)] {
            assert!(
                matches!(Provider::declare(bad), Err(DeclareError::BadName(_))),
                "{bad}"
            );
        }
    }
}
