//! Property tests of the submit function's two readers: a plain body (printable ASCII, no
//! escapes, no arrays, canonical integers) is read by cjson with paywatch's own checks on top;
//! any other body by the strict parser. Whichever reads it, an order must be the same order:
//! for any valid order, its compact JSON (often the fast path) and its pretty-printed JSON (always
//! the strict parser: newlines are not plain) store byte-identical records and are recognised
//! as the same order. And a plain body the strict parser refuses is refused with the strict
//! parser's verdict.

use paywatch_tests::property::check;
use paywatch_tests::shard::{PreparedShard as Shard, connection};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Metadata values: every JSON kind, numbers of every size and form, strings with and without
/// escapes or non-ASCII, nested objects and arrays.
fn metadata_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,6}|[ -~]{0,4}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid-looking order (a few generated targets are invalid, and must be refused both ways);
/// its id is set per run, so shrinking never meets an order it submitted before.
fn order() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["cashless", "handcash", "miraclecash", "foxreload"]),
        "[!-~]{1,20}",
        prop::option::of("[a-z0-9]{1,10}@[a-z]{1,8}\\.(com|org|co)"),
        prop::option::of(prop_oneof![1i64..1_000_000_000, -1_000_000_000_000i64..-1]),
        prop::option::of("https://[a-z]{1,10}\\.example(:[1-9][0-9]{0,3})?/[a-z/%0-9A-F]{0,12}"),
        prop::option::of(prop::collection::btree_map(
            "[a-z]{1,6}",
            metadata_value(),
            0..5,
        )),
    )
        .prop_map(|(provider, payment, email, chat, webhook, metadata)| {
            let mut o = json!({"order_id": "", "provider": provider, "payment_id": payment});
            let mut notify = Map::new();
            if let Some(e) = email {
                notify.insert("email".into(), e.into());
            }
            if let Some(c) = chat {
                notify.insert("telegram_chat_id".into(), c.into());
            }
            if let Some(w) = webhook {
                notify.insert("webhook_url".into(), w.into());
            }
            if !notify.is_empty() {
                o["notify"] = Value::Object(notify);
            }
            if let Some(m) = metadata {
                o["metadata"] = Value::Object(m.into_iter().collect());
            }
            o
        })
}

fn case_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[test]
fn compact_and_pretty_bodies_are_the_same_order() {
    let shard = Shard::new("submit-paths-same");
    check(200, order(), |mut o| {
        let mut conn = connection();
        let id = case_id();
        o["order_id"] = Value::from(id.clone());
        let compact = o.to_string();
        let pretty = serde_json::to_string_pretty(&o).expect("pretty");
        let first = shard.submit(&mut conn, &compact);
        // The strict parser's verdict on the pretty body under another id, for comparison.
        let mut other = o.clone();
        other["order_id"] = Value::from(format!("{id}-pretty"));
        let second = shard.submit(
            &mut conn,
            &serde_json::to_string_pretty(&other).expect("pretty"),
        );
        match (&first, &second) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a, b);
                prop_assert_eq!(
                    shard.record(&mut conn, &id),
                    shard.record(&mut conn, &format!("{id}-pretty"))
                );
                // The same order in other words is recognised as the same order.
                let again = shard.submit(&mut conn, &pretty);
                prop_assert_eq!(
                    again,
                    Ok(vec![
                        "exists".to_owned(),
                        "pending".into(),
                        "watching".into()
                    ])
                );
            }
            (Err(a), Err(b)) => {
                // Refused both ways (a generated target or metadata can be invalid): the same
                // field and message, none of which names the order id.
                prop_assert_eq!(a, b);
            }
            _ => prop_assert!(
                false,
                "compact {first:?} but pretty {second:?} for {compact}"
            ),
        }
        Ok(())
    });
}

/// Plain bodies the strict parser refuses (repeated keys at any depth, numbers it does not
/// take) get the strict parser's verdict, never the fast path's reading; numbers the fast
/// path leaves alone (non-canonical, inexact in a double) are read by the strict parser.
#[test]
fn plain_bodies_the_strict_parser_refuses_are_refused() {
    let shard = Shard::new("submit-paths-refused");
    let number = prop_oneof![
        // Plain values: the fast path reads these, so a repeat must be caught there.
        Just("1"),
        Just("0"),
        Just("-7"),
        Just("123456789012345"),
        Just(r#""s""#),
        Just("{}"),
        Just("true"),
        Just("null"),
        // Numbers the fast path must leave to the strict parser.
        Just("01"),
        Just("-0"),
        Just("1.0"),
        Just("1e2"),
        Just("9007199254740993"),
        Just("123456789012345678"),
        Just("0x1F"),
        Just("+1"),
        Just("Infinity"),
        Just("NaN"),
    ];
    let inputs = ("[a-z]{1,4}", 0usize..3, number, any::<bool>());
    check(256, inputs, |(key, depth, number, repeat)| {
        let mut conn = connection();
        let id = case_id();
        let mut inner = if repeat {
            format!(r#"{{"{key}":1,"{key}":{number}}}"#)
        } else {
            format!(r#"{{"{key}":{number}}}"#)
        };
        for _ in 0..depth {
            inner = format!(r#"{{"x":{inner}}}"#);
        }
        let compact = format!(
            r#"{{"order_id":"{id}","provider":"cashless","payment_id":"p","metadata":{inner}}}"#
        );
        // The same body with a newline: the strict parser's reading and verdict.
        let strict_id = format!("{id}-strict");
        let strict = compact.replacen('{', "{\n", 1).replace(&id, &strict_id);
        let fast = shard.submit(&mut conn, &compact);
        let slow = shard.submit(&mut conn, &strict);
        match (&fast, &slow) {
            (Ok(_), Ok(_)) => {
                prop_assert_eq!(
                    shard.record(&mut conn, &id),
                    shard.record(&mut conn, &strict_id)
                );
            }
            (Err(a), Err(b)) => {
                // Positions in messages count the inserted newline.
                let a = a.replace(&id, "ID");
                let b = b.replace(&strict_id, "ID");
                let shift = |m: &str| m.split(" at byte ").next().unwrap_or_default().to_owned();
                prop_assert_eq!(shift(&a), shift(&b));
            }
            _ => prop_assert!(false, "plain {fast:?} but strict {slow:?} for {compact}"),
        }
        Ok(())
    });
}

#[test]
fn the_deepest_plain_body_the_strict_parser_takes_is_taken_and_one_deeper_is_not() {
    let shard = Shard::new("submit-paths-deep");
    let mut conn = connection();
    // The body is depth 1; metadata adds the rest. MAX_DEPTH is 32.
    for (levels, ok) in [(31usize, true), (32, false)] {
        let id = case_id();
        let metadata = format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
        let body = format!(
            r#"{{"order_id":"{id}","provider":"cashless","payment_id":"p","metadata":{metadata}}}"#
        );
        let reply = shard.submit(&mut conn, &body);
        assert_eq!(reply.is_ok(), ok, "{levels} levels: {reply:?}");
        if let Err(e) = reply {
            assert!(e.contains("nested deeper than 32"), "{e}");
        }
    }
}
