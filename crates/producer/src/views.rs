//! How an order is shown: the typed answer of `GET /v1/orders/{order_id}`
//! ([`crate::openapi::OrderView`], built by [`order_answer`]), its links, and [`OrderJson`], the
//! same view as a JSON value for the callers that add to it (the events stream, the admin's
//! report).

use paywatch_core::store::{OrderView, Phase};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::auth::ApiAuth;
use crate::openapi::{self, Links, NotifyView, StoppedView};

/// What stays unescaped in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The API path of an order, its id percent-encoded.
pub fn order_path(order_id: &str) -> String {
    format!("/v1/orders/{}", utf8_percent_encode(order_id, SEGMENT))
}

/// An order's links: itself, and its events stream (signed for browsers, with an expiry, when a
/// secret is set).
pub fn order_links(auth: &ApiAuth, order_id: &str) -> Links {
    let path = order_path(order_id);
    let events = match auth.link_query(order_id) {
        Some(query) => format!("{path}/events?{query}"),
        None => format!("{path}/events"),
    };
    Links {
        self_: path,
        events,
    }
}

/// [`order_links`] as a JSON value, for views kept as values.
pub fn links(auth: &ApiAuth, order_id: &str) -> Value {
    let Links { self_, events } = order_links(auth, order_id);
    json!({"self": self_, "events": events})
}

/// The public view of an order (no credentials, no delivered codes, webhook URL redacted), with
/// `links`: the answer of `GET /v1/orders/{order_id}`.
pub fn order_answer(view: &OrderView, links: Links) -> openapi::OrderView {
    let record = &view.record;
    let state = record.state.as_ref();
    openapi::OrderView {
        order_id: view.order_id.to_string(),
        provider: record.provider.into(),
        payment_id: record.payment_id.to_string(),
        status: record.status().into(),
        phase: view.phase.into(),
        watching: view.phase == Phase::Watching,
        stopped: view.stopped.as_ref().map(|s| StoppedView {
            reason: s.reason.clone(),
            at: s.at,
        }),
        raw_status: state.and_then(|s| s.raw_status.clone()),
        checks: state.map_or(0, |s| i64::from(s.poll.checks)),
        checking_now: view.running,
        next_check_at: view.next_check_at,
        created_at: record.created_at(),
        terminal_at: state.and_then(|s| s.final_at),
        last_error: state.and_then(|s| s.last_error.clone()),
        notified: view.notified,
        notify: NotifyView {
            email: record.notify.email.clone(),
            telegram_chat_id: record.notify.telegram_chat_id,
            webhook_url: record
                .notify
                .webhook_url
                .as_deref()
                .map(paywatch_core::secret::redact_url),
        },
        metadata: record.metadata.clone(),
        // Newest first, as a timeline is read.
        history: state
            .map(|s| s.history.iter().rev().cloned().collect())
            .unwrap_or_default(),
        links,
    }
}

/// [`order_answer`] as an [`OrderJson`], linking only to the order itself (the callers that
/// have the credentials for an events link add it).
pub fn order_view(view: &OrderView) -> OrderJson {
    let path = order_path(view.order_id.as_str());
    let mut answer = order_answer(
        view,
        Links {
            self_: path.clone(),
            events: String::new(),
        },
    );
    // Apart: a value cannot hold every number the metadata may (see [`OrderJson`]).
    let metadata = answer.metadata.take();
    // Strings, numbers, booleans and nulls only: nothing a value cannot hold.
    let mut fields = serde_json::to_value(&answer).unwrap_or_else(|_| json!({}));
    if let Some(map) = fields.as_object_mut() {
        map.remove("metadata");
    }
    fields["links"] = json!({"self": path});
    OrderJson {
        fields,
        metadata,
        with_metadata: true,
    }
}

/// An order's view as a JSON value: its fields, and the shop's metadata exactly as stored.
///
/// A [`Value`] holds every number as an `f64` or a 64-bit integer, so `1.50`, `1E3` or a 25-digit
/// integer would come back changed and `1e400` not at all; the metadata is therefore kept apart,
/// as its stored text, and written in place of the `metadata` field. Everything else reads and
/// writes through the [`Value`] it dereferences to (`view["status"]`, `view["links"] = …`).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderJson {
    fields: Value,
    metadata: Option<paywatch_core::Metadata>,
    /// Whether the view has a `metadata` field at all (a browser's view has none).
    with_metadata: bool,
}

impl OrderJson {
    /// The shop's metadata, as stored.
    pub fn metadata(&self) -> Option<&paywatch_core::Metadata> {
        self.metadata.as_ref()
    }
}

impl From<Value> for OrderJson {
    /// A view without a `metadata` field of its own: written exactly as `fields`.
    fn from(fields: Value) -> Self {
        Self {
            fields,
            metadata: None,
            with_metadata: false,
        }
    }
}

impl std::ops::Deref for OrderJson {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.fields
    }
}

impl std::ops::DerefMut for OrderJson {
    fn deref_mut(&mut self) -> &mut Value {
        &mut self.fields
    }
}

impl serde::Serialize for OrderJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if !self.with_metadata {
            return self.fields.serialize(serializer);
        }
        let empty = serde_json::Map::new();
        let fields = self.fields.as_object().unwrap_or(&empty);
        let mut map = serializer.serialize_map(Some(fields.len() + 1))?;
        let mut written = false;
        for (key, value) in fields {
            if key == "metadata" {
                continue;
            }
            // In key order, as the other fields are.
            if !written && key.as_str() > "metadata" {
                map.serialize_entry("metadata", &self.metadata)?;
                written = true;
            }
            map.serialize_entry(key, value)?;
        }
        if !written {
            map.serialize_entry("metadata", &self.metadata)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for OrderJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw =
            std::collections::BTreeMap::<String, Box<serde_json::value::RawValue>>::deserialize(
                deserializer,
            )?;
        let mut fields = serde_json::Map::new();
        let mut metadata = None;
        let with_metadata = raw.contains_key("metadata");
        for (key, value) in raw {
            if key == "metadata" {
                if value.get() != "null" {
                    metadata = Some(
                        paywatch_core::Metadata::from_json(value.get())
                            .map_err(D::Error::custom)?,
                    );
                }
            } else {
                let value = serde_json::from_str(value.get()).map_err(D::Error::custom)?;
                fields.insert(key, value);
            }
        }
        Ok(Self {
            fields: Value::Object(fields),
            metadata,
            with_metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_view_writes_metadata_as_stored() {
        let text = r#"{"a":1e400,"b":1234567890123456789012345,"c":-0,"d":1.50,"e":1E3}"#;
        let json: OrderJson = serde_json::from_str(&format!(
            r#"{{"order_id":"o","metadata":{text},"status":"paid"}}"#
        ))
        .expect("reads");
        assert_eq!(json["status"], "paid");
        assert_eq!(json.metadata().map(|m| m.get()), Some(text));
        assert_eq!(
            serde_json::to_string(&json).expect("writes"),
            format!(r#"{{"metadata":{text},"order_id":"o","status":"paid"}}"#)
        );
        // A view made from fields alone (a browser's) has no metadata field to write.
        let browser = OrderJson::from(json!({"order_id": "o", "status": "paid"}));
        assert_eq!(
            serde_json::to_string(&browser).expect("writes"),
            r#"{"order_id":"o","status":"paid"}"#
        );
    }
}
