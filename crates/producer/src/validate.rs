//! Turning a request body into an [`OrderSpec`], with errors that name the field.

use paywatch_core::store::OrderSpec;
use paywatch_core::{NotifyTargets, OrderId, PaymentId, Provider};
use serde_json::{Map, Value};

/// A request that cannot become an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The offending field (dotted path).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

const TOP_LEVEL: [&str; 5] = ["order_id", "provider", "payment_id", "notify", "metadata"];
const NOTIFY: [&str; 3] = ["email", "telegram_chat_id", "webhook_url"];

/// Validates a parsed JSON body.
pub fn order_spec(body: &Value) -> Result<OrderSpec, FieldError> {
    let obj = body
        .as_object()
        .ok_or_else(|| err("body", "must be a JSON object"))?;
    reject_unknown(obj, &TOP_LEVEL, "")?;
    let order_id = required_str(obj, "order_id")?;
    let order_id: OrderId = order_id
        .parse()
        .map_err(|e| err("order_id", format!("{e}")))?;
    let provider: Provider = required_str(obj, "provider")?.parse().map_err(|_| {
        err(
            "provider",
            "must be one of cashless, handcash, miraclecash, foxreload",
        )
    })?;
    let payment_id: PaymentId = required_str(obj, "payment_id")?
        .parse()
        .map_err(|e| err("payment_id", format!("{e}")))?;
    let notify = match obj.get("notify") {
        None | Some(Value::Null) => NotifyTargets::default(),
        Some(Value::Object(n)) => notify_targets(n)?,
        Some(_) => return Err(err("notify", "must be an object")),
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            if v.to_string().len() > 16 * 1024 {
                return Err(err("metadata", "must be at most 16 KiB of JSON"));
            }
            Some(v.clone())
        }
        Some(_) => return Err(err("metadata", "must be an object")),
    };
    Ok(OrderSpec {
        order_id,
        provider,
        payment_id,
        notify,
        metadata,
    })
}

fn reject_unknown(obj: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), FieldError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(err(
            &format!("{path}{k}"),
            format!("unknown field; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(err(field, "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(err(field, "must be a string")),
    }
}

fn notify_targets(n: &Map<String, Value>) -> Result<NotifyTargets, FieldError> {
    reject_unknown(n, &NOTIFY, "notify.")?;
    let email = match n.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if looks_like_email(s) => Some(s.clone()),
        Some(_) => return Err(err("notify.email", "must be an email address")),
    };
    let telegram_chat_id = match n.get("telegram_chat_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(num)) => Some(
            num.as_i64()
                .ok_or_else(|| err("notify.telegram_chat_id", "must be an integer"))?,
        ),
        Some(Value::String(s)) => Some(
            s.parse::<i64>()
                .map_err(|_| err("notify.telegram_chat_id", "must be an integer"))?,
        ),
        Some(_) => return Err(err("notify.telegram_chat_id", "must be an integer")),
    };
    let webhook_url = match n.get("webhook_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let url = url::Url::parse(s)
                .map_err(|e| err("notify.webhook_url", format!("is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(err(
                    "notify.webhook_url",
                    "must be an http(s) URL with a host",
                ));
            }
            Some(s.clone())
        }
        Some(_) => return Err(err("notify.webhook_url", "must be a string")),
    };
    Ok(NotifyTargets {
        email,
        telegram_chat_id,
        webhook_url,
    })
}

fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_a_full_order() {
        let spec = order_spec(&json!({
            "order_id": "o-1", "provider": "cashless", "payment_id": "bill-1",
            "notify": {"email": "a@b.co", "telegram_chat_id": 42, "webhook_url": "https://shop.example/hook"},
            "metadata": {"cart": 3}
        }))
        .expect("valid");
        assert_eq!(spec.notify.telegram_chat_id, Some(42));
    }

    #[test]
    fn names_the_bad_field() {
        let cases = [
            (
                json!({"provider": "cashless", "payment_id": "p"}),
                "order_id",
            ),
            (
                json!({"order_id": "o", "provider": "paypal", "payment_id": "p"}),
                "provider",
            ),
            (
                json!({"order_id": "o", "provider": "cashless"}),
                "payment_id",
            ),
            (
                json!({"order_id": "o", "provider": "cashless", "payment_id": "p", "notify": {"email": "nope"}}),
                "notify.email",
            ),
            (
                json!({"order_id": "o", "provider": "cashless", "payment_id": "p", "notify": {"webhook_url": "ftp://x"}}),
                "notify.webhook_url",
            ),
            (
                json!({"order_id": "o", "provider": "cashless", "payment_id": "p", "amount": 3}),
                "amount",
            ),
            (
                json!({"order_id": "", "provider": "cashless", "payment_id": "p"}),
                "order_id",
            ),
            (json!([1, 2]), "body"),
        ];
        for (body, field) in cases {
            let e = order_spec(&body).expect_err("invalid");
            assert_eq!(e.field, field, "{body}: {e}");
        }
    }
}
