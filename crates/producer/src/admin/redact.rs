//! Payloads as an operator may see them: what a job is about, without the secrets it carries.
//!
//! A check's payload is the order's record: its FoxReload delivered codes are replaced by
//! `[redacted]` and its webhook URL reduced to scheme and host (URLs routinely carry tokens). A
//! notification's payload gets the same treatment (its `target` too, on the webhook channel), and
//! so does any JSON payload, key by key. A payload that is not JSON is shown as stored: it is the
//! reason it is in the dead letters, and paywatch cannot know what it holds.

use paywatch_core::secret::{REDACTED, redact_url};
use paywatch_core::store::StoredOrder;
use serde_json::{Map, Value, json};

use super::kind::QueueKind;

/// Keys whose values are URLs that may carry credentials.
const URL_KEYS: [&str; 2] = ["webhook_url", "url"];
/// Keys whose values are secrets outright.
const SECRET_KEYS: [&str; 4] = ["delivered_codes", "secret", "token", "password"];

/// The payload's format (`json` or `text`) and the payload to show.
pub fn payload(kind: QueueKind, id: &str, raw: &str) -> (&'static str, Value) {
    if kind == QueueKind::Check
        && let Ok(record) = StoredOrder::from_json(raw)
    {
        return ("json", order_record(id, &record));
    }
    match readable(raw) {
        Ok(mut value) => {
            redact_value(&mut value);
            ("json", value)
        }
        Err(_) => ("text", Value::String(raw.to_owned())),
    }
}

/// The order a job is about: a check's id is the order id; a notification names it.
pub fn order_id(kind: QueueKind, id: &str, raw: &str) -> Option<String> {
    match kind {
        QueueKind::Check => Some(id.to_owned()),
        QueueKind::Notify => readable(raw)
            .ok()?
            .get("order_id")?
            .as_str()
            .map(str::to_owned),
        QueueKind::Ops => None,
    }
}

/// A check's order record, spelled out with names instead of positions.
fn order_record(id: &str, record: &StoredOrder) -> Value {
    let state = record.state.as_ref();
    let metadata = record
        .metadata
        .as_ref()
        .and_then(|m| readable(m.get()).ok());
    json!({
        "order_id": id,
        "provider": record.provider,
        "payment_id": record.payment_id,
        "notify": {
            "email": record.notify.email,
            "telegram_chat_id": record.notify.telegram_chat_id,
            "webhook_url": record.notify.webhook_url.as_deref().map(redact_url),
        },
        "created_at": record.created_at(),
        "metadata": metadata,
        "status": record.status(),
        "raw_status": state.and_then(|s| s.raw_status.as_deref()),
        "checks": state.map_or(0, |s| s.poll.checks),
        "last_error": state.and_then(|s| s.last_error.as_deref()),
        "delivered_codes": state
            .filter(|s| !s.delivered_codes.is_empty())
            .map(|_| REDACTED),
        "history": state.map(|s| s.history.as_slice()).unwrap_or_default(),
    })
}

/// A JSON document as a [`Value`] an operator can read, whatever numbers it holds.
///
/// Payloads echo the shop's metadata exactly as written, and some numbers there have no `f64`
/// (`1e400`) or would be rewritten by one (`1.50`, 25-digit integers): such a number is shown as
/// a string of its text, so the payload is still read (and redacted) as JSON rather than shown
/// as stored text, secrets and all.
fn readable(raw: &str) -> Result<Value, serde_json::Error> {
    use serde_json::value::RawValue;
    let text = raw.trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let members: std::collections::BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(text)?;
            members
                .into_iter()
                .map(|(key, value)| Ok((key, readable(value.get())?)))
                .collect::<Result<Map<String, Value>, _>>()
                .map(Value::Object)
        }
        Some(b'[') => {
            let items: Vec<Box<RawValue>> = serde_json::from_str(text)?;
            items
                .iter()
                .map(|item| readable(item.get()))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        Some(b'-' | b'0'..=b'9') => {
            // Checked as JSON first: only a number as written is shown as its text.
            serde_json::from_str::<&RawValue>(text)?;
            // (Not `Value == &str`: that compares a Value::String.)
            Ok(match serde_json::from_str::<Value>(text) {
                Ok(number) if serde_json::to_string(&number).is_ok_and(|again| again == text) => {
                    number
                }
                _ => Value::String(text.to_owned()),
            })
        }
        _ => serde_json::from_str(text),
    }
}

/// Redacts secrets anywhere in a JSON document, by key.
fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => redact_map(map),
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

fn redact_map(map: &mut Map<String, Value>) {
    // A notification's target is a URL on the webhook channel.
    let webhook = map.get("channel").and_then(Value::as_str) == Some("webhook");
    for (key, value) in map.iter_mut() {
        let is_url = URL_KEYS.contains(&key.as_str()) || (webhook && key == "target");
        if SECRET_KEYS.contains(&key.as_str()) {
            if !matches!(value, Value::Null) && value.as_array().is_none_or(|a| !a.is_empty()) {
                *value = Value::String(REDACTED.to_owned());
            }
        } else if is_url {
            if let Some(url) = value.as_str() {
                *value = Value::String(redact_url(url));
            }
        } else {
            redact_value(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_lose_codes_and_url_paths() {
        let raw = json!({
            "order_id": "o-1", "status": "paid", "channel": "webhook",
            "target": "https://shop.example/hooks/tok-3434?key=k-9",
            "provider": "foxreload", "payment_id": "fx", "raw_status": "completed",
            "delivered_codes": ["CODE-1234"], "occurred_at": "2024-01-01T00:00:00Z",
            "metadata": {"nested": {"url": "https://x.example/p?secret=s3"}},
        })
        .to_string();
        let (format, shown) = payload(QueueKind::Notify, "o-1:paid:webhook", &raw);
        assert_eq!(format, "json");
        let text = shown.to_string();
        for secret in ["CODE-1234", "tok-3434", "k-9", "s3"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(shown["target"], json!("https://shop.example/[redacted]"));
        assert_eq!(
            order_id(QueueKind::Notify, "o-1:paid:webhook", &raw).as_deref(),
            Some("o-1")
        );
    }

    #[test]
    fn check_records_are_spelled_out_and_redacted() {
        let raw = r#"["foxreload","fx-1","a@b.example",null,"https://shop.example/h/tok-77",1700000000000,{"cart":1},{"s":"paid","p":{"checks":2,"started_at":"2024-01-01T00:00:00Z","current_delay":"1s","last_status":"paid","errors_in_row":0,"fast_since":"2024-01-01T00:00:00Z"},"c":["CODE-9999"]}]"#;
        let (format, shown) = payload(QueueKind::Check, "o-9", raw);
        assert_eq!(format, "json", "{shown}");
        let text = shown.to_string();
        assert!(
            !text.contains("CODE-9999") && !text.contains("tok-77"),
            "{text}"
        );
        assert_eq!(shown["order_id"], json!("o-9"));
        assert_eq!(shown["delivered_codes"], json!(REDACTED));
        assert_eq!(shown["metadata"], json!({"cart": 1}));
    }

    #[test]
    fn payloads_with_numbers_no_f64_holds_are_still_read_and_redacted() {
        let raw = r#"{"order_id":"o-2","status":"paid","channel":"webhook","target":"https://shop.example/hooks/tok-5656","delivered_codes":["CODE-5678"],"metadata":{"a":1e400,"b":1.50,"c":7,"d":[-0,1234567890123456789012345]}}"#;
        let (format, shown) = payload(QueueKind::Notify, "o-2:paid:webhook", raw);
        assert_eq!(format, "json", "{shown}");
        let text = shown.to_string();
        assert!(
            !text.contains("CODE-5678") && !text.contains("tok-5656"),
            "{text}"
        );
        assert_eq!(
            shown["metadata"],
            json!({"a": "1e400", "b": "1.50", "c": 7, "d": ["-0", "1234567890123456789012345"]})
        );
        assert_eq!(
            order_id(QueueKind::Notify, "o-2:paid:webhook", raw).as_deref(),
            Some("o-2")
        );
        let record = r#"["cashless","b-1",null,null,null,1700000000000,{"x":-1e400}]"#;
        let (format, shown) = payload(QueueKind::Check, "o-3", record);
        assert_eq!(format, "json", "{shown}");
        assert_eq!(shown["metadata"], json!({"x": "-1e400"}));
        // Not JSON at all is still text.
        assert_eq!(payload(QueueKind::Notify, "x", "1e400 x").0, "text");
    }

    #[test]
    fn text_is_shown_as_stored() {
        let (format, shown) = payload(QueueKind::Notify, "x", "<script>not json");
        assert_eq!(
            (format, shown),
            ("text", Value::String("<script>not json".into()))
        );
    }
}
