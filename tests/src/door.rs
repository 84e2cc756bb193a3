//! The door's table of verdicts, shared by the tests that hold every door and every server to it.

/// The door's table of bad orders: (body, the field the verdict must name). Every door (HTTP,
/// `FCALL`) must refuse each with the same field and words; tests/it/door.rs runs it on the
/// shared Redis, tests/it/servers.rs on every supported server.
pub fn bad_orders() -> Vec<(String, &'static str)> {
    let ok = r#""order_id":"o-1","provider":"cashless","payment_id":"bill-1""#;
    let with_notify = |notify: &str| format!(r#"{{{ok},"notify":{{{notify}}}}}"#);
    let with = |extra: &str| format!(r#"{{{ok},{extra}}}"#);
    let mut cases: Vec<(String, &'static str)> = vec![
        ("{not json".into(), "body"),
        ("".into(), "body"),
        ("[1,2]".into(), "body"),
        ("null".into(), "body"),
        (format!("{{{ok}}} trailing"), "body"),
        (
            r#"{"provider":"cashless","payment_id":"p"}"#.into(),
            "order_id",
        ),
        (
            r#"{"order_id":"","provider":"cashless","payment_id":"p"}"#.into(),
            "order_id",
        ),
        (
            r#"{"order_id":"a b","provider":"cashless","payment_id":"p"}"#.into(),
            "order_id",
        ),
        (
            r#"{"order_id":"caf\u00e9","provider":"cashless","payment_id":"p"}"#.into(),
            "order_id",
        ),
        (
            format!(
                r#"{{"order_id":"{}","provider":"cashless","payment_id":"p"}}"#,
                "x".repeat(129)
            ),
            "order_id",
        ),
        (
            r#"{"order_id":7,"provider":"cashless","payment_id":"p"}"#.into(),
            "order_id",
        ),
        // Duplicate keys: refused, never "last one wins".
        (
            r#"{"order_id":"A","order_id":"B","provider":"cashless","payment_id":"p"}"#.into(),
            "order_id",
        ),
        (
            r#"{"order_id":"o","provider":"paypal","provider":"cashless","payment_id":"p"}"#.into(),
            "provider",
        ),
        (
            r#"{"order_id":"o","provider":"Cashless","payment_id":"p"}"#.into(),
            "provider",
        ),
        (
            r#"{"order_id":"o","provider":" cashless","payment_id":"p"}"#.into(),
            "provider",
        ),
        (
            r#"{"order_id":"o","provider":"cashless"}"#.into(),
            "payment_id",
        ),
        (
            r#"{"order_id":"o","provider":"cashless","payment_id":["p"]}"#.into(),
            "payment_id",
        ),
        (with(r#""amount":3"#), "amount"),
        (with(r#""notify":"buyer@example.com""#), "notify"),
        (with_notify(r#""sms":"+1555""#), "notify.sms"),
        (
            with_notify(r#""email":"a@b.com","email":"c@d.com""#),
            "notify.email",
        ),
        (with_notify(r#""email":"a@b.com,c@d.com""#), "notify.email"),
        (with_notify(r#""email":"a@b.com;c@d.com""#), "notify.email"),
        (with_notify(r#""email":"x@[127.0.0.1]""#), "notify.email"),
        (with_notify(r#""email":"nope""#), "notify.email"),
        (with_notify(r#""email":5"#), "notify.email"),
        // No coercion: a string is not a number.
        (
            with_notify(r#""telegram_chat_id":"123""#),
            "notify.telegram_chat_id",
        ),
        (
            with_notify(r#""telegram_chat_id":1.5"#),
            "notify.telegram_chat_id",
        ),
        (
            with_notify(r#""telegram_chat_id":1e3"#),
            "notify.telegram_chat_id",
        ),
        (
            with_notify(r#""telegram_chat_id":0"#),
            "notify.telegram_chat_id",
        ),
        (
            with_notify(r#""telegram_chat_id":9007199254740992"#),
            "notify.telegram_chat_id",
        ),
        (
            with_notify(r#""telegram_chat_id":true"#),
            "notify.telegram_chat_id",
        ),
        (
            with_notify(r#""webhook_url":"http://user:pass@example.com/h""#),
            "notify.webhook_url",
        ),
        (
            with_notify(r#""webhook_url":"ftp://example.com/h""#),
            "notify.webhook_url",
        ),
        (
            with_notify(r#""webhook_url":"https://example.com/h#frag""#),
            "notify.webhook_url",
        ),
        (with_notify(r#""webhook_url":3"#), "notify.webhook_url"),
        (with(r#""metadata":[1]"#), "metadata"),
        (with(r#""metadata":"x""#), "metadata"),
        (with(r#""metadata":{"a":{"b":1,"b":2}}"#), "metadata.a.b"),
        (
            with(&format!(
                r#""metadata":{{"blob":"{}"}}"#,
                "x".repeat(17_000)
            )),
            "metadata",
        ),
        (
            with(&format!(
                r#""metadata":{}1{}"#,
                r#"{"a":"#.repeat(40),
                "}".repeat(40)
            )),
            "body",
        ),
        (with(r#""metadata":{"s":"\ud800"}"#), "body"),
        (with(r#""metadata":{"n":01}"#), "body"),
    ];
    cases.push((
        r#"{"order_id":"..","provider":"cashless","payment_id":"p"}"#.into(),
        "order_id",
    ));
    cases
}
