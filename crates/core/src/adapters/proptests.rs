//! Property tests of the four adapters' response parsers and the HTTP helpers around them:
//! whatever a provider (or something pretending to be one) answers, the result is an observation
//! or a classified error, never a panic, and what is kept from the body stays bounded and clean.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::http::parse_retry_after;
use super::{MAX_RAW_LEN, Parsed, cashless, foxreload, handcash, miraclecash};
use crate::secret::{REDACTED, SNIPPET_BYTES, Secret, redacted_snippet};

type Parser = fn(&[u8], DateTime<Utc>) -> Result<Parsed, super::BodyError>;

const PARSERS: [(&str, Parser); 4] = [
    ("cashless", cashless::parse),
    ("handcash", handcash::parse),
    ("miraclecash", miraclecash::parse),
    ("foxreload", foxreload::parse),
];

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_738_000_000, 0).expect("valid instant")
}

/// Arbitrary JSON, a few levels deep, with the keys the adapters look for mixed in.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "status",
            "name",
            "id",
            "items",
            "externalData",
            "error",
            "cancelReason",
            "transactionId",
            "paymentsCount",
            "expiresAt",
            "blockchainId",
            "bill",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        prop::sample::select(vec![
            "FULLY_PAID",
            "completed",
            "paid",
            "cancelled",
            "expired",
            "successful",
            "payment_expiration",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_parsed(parsed: &Parsed) -> Result<(), TestCaseError> {
    let o = &parsed.observation;
    prop_assert!(
        o.raw_status.chars().count() <= MAX_RAW_LEN,
        "{:?}",
        o.raw_status
    );
    prop_assert!(
        !o.raw_status.chars().any(char::is_control),
        "{:?}",
        o.raw_status
    );
    prop_assert!(
        o.status != crate::PaymentStatus::Unresolved,
        "only paywatch decides unresolved"
    );
    if let Some(detail) = &o.detail {
        prop_assert!(!detail.chars().any(char::is_control), "{detail:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_are_an_observation_or_an_error(body in prop::collection::vec(any::<u8>(), 0..512)) {
        for (_, parse) in PARSERS {
            if let Ok(parsed) = parse(&body, now()) {
                check_parsed(&parsed)?;
            }
        }
    }

    #[test]
    fn any_json_is_an_observation_or_an_error(value in json_value()) {
        let body = serde_json::to_vec(&value).expect("serializable");
        for (_, parse) in PARSERS {
            if let Ok(parsed) = parse(&body, now()) {
                check_parsed(&parsed)?;
            }
        }
    }

    #[test]
    fn any_status_string_is_kept_bounded_and_mapped_consistently(raw in any::<String>()) {
        let cases: [(Parser, Value, Option<crate::PaymentStatus>); 3] = [
            (cashless::parse, json!({"status": raw}), cashless::map_status(&raw)),
            (miraclecash::parse, json!({"status": raw}), miraclecash::map_status(&raw)),
            (foxreload::parse, json!({"status": raw}), foxreload::map_status(&raw, None)),
        ];
        for (parse, body, mapped) in cases {
            let parsed = parse(body.to_string().as_bytes(), now()).expect("a status string parses");
            check_parsed(&parsed)?;
            prop_assert_eq!(parsed.recognised, mapped.is_some());
            prop_assert_eq!(parsed.observation.status, mapped.unwrap_or(crate::PaymentStatus::Pending));
        }
        let parsed = handcash::parse(json!({"status": raw}).to_string().as_bytes(), now())
            .expect("a status string parses");
        check_parsed(&parsed)?;
    }

    #[test]
    fn handcash_odd_numbers_and_dates_never_panic(
        expires in prop_oneof![any::<i64>().prop_map(|n| json!(n)), any::<f64>().prop_map(|f| json!(f)), any::<String>().prop_map(|s| json!(s))],
        count in prop_oneof![any::<i64>().prop_map(|n| json!(n)), any::<f64>().prop_map(|f| json!(f)), "[ 0-9.-]{0,12}".prop_map(|s| json!(s))],
    ) {
        let body = json!({"id": "pr-1", "status": "pending", "expiresAt": expires, "paymentsCount": count});
        let parsed = handcash::parse(body.to_string().as_bytes(), now()).expect("parses");
        check_parsed(&parsed)?;
    }

    #[test]
    fn foxreload_codes_come_only_with_paid(
        status in prop::sample::select(vec!["active", "paid", "processing", "completed", "cancelled", "failed", "??"]),
        codes in prop::collection::vec(json_value(), 0..4),
    ) {
        let body = json!({"status": status, "items": [{"externalData": codes}]});
        let parsed = foxreload::parse(body.to_string().as_bytes(), now()).expect("parses");
        check_parsed(&parsed)?;
        if parsed.observation.status != crate::PaymentStatus::Paid {
            prop_assert!(parsed.observation.delivered_codes.is_empty());
        }
    }

    #[test]
    fn retry_after_never_panics(value in any::<String>(), secs in any::<u64>()) {
        let _ = parse_retry_after(&value, now());
        prop_assert_eq!(
            parse_retry_after(&secs.to_string(), now()),
            Some(std::time::Duration::from_secs(secs))
        );
    }

    #[test]
    fn snippets_are_bounded_clean_and_never_quote_a_known_secret(
        body in prop::collection::vec(any::<u8>(), 0..600),
        secret in "[A-Za-z0-9]{4,40}",
        at in any::<prop::sample::Index>(),
    ) {
        let mut with_secret = body.clone();
        let i = at.index(with_secret.len() + 1);
        with_secret.splice(i..i, secret.bytes());
        let known = Secret::new(secret.clone());
        for body in [&body, &with_secret] {
            let snippet = redacted_snippet(body, &[&known]);
            prop_assert!(snippet.len() <= SNIPPET_BYTES);
            prop_assert!(!snippet.chars().any(char::is_control), "{snippet:?}");
            prop_assert!(!snippet.contains(&secret), "{secret} in {snippet:?}");
        }
        prop_assert!(!REDACTED.contains(&secret) || secret.len() < 4);
    }

    #[test]
    fn snippets_of_json_hide_secret_sounding_values(
        key in prop::sample::select(vec!["appSecret", "api_key", "token", "password", "externalData", "pin"]),
        value in "[A-Za-z0-9]{6,30}",
        prefix in "[ a-z{\":,]{0,40}",
    ) {
        let body = format!("{prefix}{{\"{key}\": \"{value}\", \"status\": \"ok\"}}");
        let snippet = redacted_snippet(body.as_bytes(), &[]);
        prop_assert!(!snippet.contains(&value), "{value} in {snippet:?}");
    }
}
