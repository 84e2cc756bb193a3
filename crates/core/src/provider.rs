//! The payment providers paywatch knows how to poll.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A payment provider. Serialized, parsed and displayed in lowercase (`"cashless"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Cashless bills.
    Cashless,
    /// HandCash payment requests.
    HandCash,
    /// MiracleCash payment prompts.
    MiracleCash,
    /// FoxReload orders.
    FoxReload,
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

    /// The lowercase name used on the wire, in metrics labels and in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Cashless => "cashless",
            Provider::HandCash => "handcash",
            Provider::MiracleCash => "miraclecash",
            Provider::FoxReload => "foxreload",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string named no known provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?} (expected one of {names})", names = Provider::names())]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Case-insensitive because people type "HandCash" in config and on command lines.
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownProvider(s.to_owned()))
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
}
