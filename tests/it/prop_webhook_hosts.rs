//! Property tests of webhook URL hosts at the one door: the submit function must read a host as
//! the notifiers' URL parser (the `url` crate, WHATWG rules) does, because that is the address a
//! delivery would connect to. A host the parser refuses (`shop.123`, `1.2.3.256`, `[1:2]`) is
//! refused at submission; an IP literal in a range the SSRF guard blocks (`127.1`, `0x7f.0.0.1`,
//! `[::ffff:10.0.0.1]`) is refused unless the notifiers' published allow-list covers exactly
//! that address. Before any notifier has published, it is accepted (the notifier judges it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use paywatch_core::ip_ranges::{AddrRange, classify, publish_text};
use paywatch_core::store::keys::META_WEBHOOK_ALLOW;
use paywatch_core::targets::{
    webhook_ip_literal, webhook_url_problem, webhook_url_problem_unlisted,
};
use paywatch_tests::property::check;
use paywatch_tests::shard::{PreparedShard, connection};
use proptest::prelude::*;
use serde_json::json;

/// What the notifiers would make of `url` with nothing allow-listed: `None` when they would
/// deliver to it, else the submit function's message.
fn notifier_verdict(url: &str) -> Option<String> {
    if webhook_url_problem(url).is_none() {
        assert!(
            url::Url::parse(url).is_ok(),
            "accepted but unparsable: {url}"
        );
    }
    webhook_url_problem_unlisted(url)
}

fn order(url: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    json!({"order_id": id, "provider": "cashless", "payment_id": "p",
        "notify": {"webhook_url": url}})
    .to_string()
}

/// The message of a refusal as the function words it, without the `ERR paywatch: <field>: `.
fn message(reply: Result<Vec<String>, String>) -> Option<String> {
    let error = reply.err()?;
    let (_, message) = error
        .split_once("notify.webhook_url: ")
        .unwrap_or_else(|| panic!("not a webhook_url verdict: {error}"));
    Some(message.trim_end_matches(['"', ' ']).to_owned())
}

/// One IPv4 number in any of the forms URL parsers read: decimal, octal (leading 0), hex (0x),
/// too large, or not a number at all.
fn ipv4_part() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..300).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "127", "10", "0", "169", "254", "192", "168", "172", "100"
        ])
        .prop_map(str::to_owned),
        (0u32..300).prop_map(|n| format!("0{n:o}")),
        (0u32..70_000).prop_map(|n| format!("0x{n:x}")),
        (0u32..300).prop_map(|n| format!("0X{n:X}")),
        any::<u32>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| format!("0x{n:08x}")),
        "[0-9]{10,14}",
        "0x0{0,12}[0-9a-f]{1,3}",
        "0{1,6}[0-7]{1,3}",
        Just("0x".to_owned()),
        Just("09".to_owned()),
        Just("0x1g".to_owned()),
        "[a-z][a-z0-9]{0,4}",
    ]
}

/// Hosts that are, or look like, IPv4 addresses (1 to 5 labels).
fn ipv4_host() -> impl Strategy<Value = String> {
    prop::collection::vec(ipv4_part(), 1..6).prop_map(|parts| parts.join("."))
}

/// Bracketed hosts: real IPv6 addresses in their usual spellings (blocked ranges often, IPv4
/// embedded sometimes), and near misses.
fn ipv6_host() -> impl Strategy<Value = String> {
    let interesting = prop::sample::select(vec![
        0u128,
        1,
        0xffff_7f00_0001,
        0xffff_0a01_0203,
        0xffff_0808_0808,
        0x0064_ff9b_0000_0000_0000_0000_7f00_0001,
        0xfe80_0000_0000_0000_0000_0000_0000_0001,
        0xfd12_3456_0000_0000_0000_0000_0000_0001,
        0xfec0_0000_0000_0000_0000_0000_0000_0001,
        0xff02_0000_0000_0000_0000_0000_0000_0001,
        0x2001_4860_4860_0000_0000_0000_0000_8888,
        0x7f00_0001,
    ]);
    let address = prop_oneof![interesting, any::<u128>()].prop_map(Ipv6Addr::from);
    prop_oneof![
        // Rust's spelling: :: compression and, for mapped addresses, dotted IPv4.
        address.clone().prop_map(|a| format!("[{a}]")),
        // All eight pieces, no compression, leading zeros kept.
        address.clone().prop_map(|a| {
            let pieces: Vec<String> = a.segments().iter().map(|s| format!("{s:04x}")).collect();
            format!("[{}]", pieces.join(":"))
        }),
        // The last 32 bits as dotted IPv4.
        address.prop_map(|a| {
            let s = a.segments();
            let head: Vec<String> = s[..6].iter().map(|p| format!("{p:x}")).collect();
            format!(
                "[{}:{}]",
                head.join(":"),
                Ipv4Addr::from(u128::from(a) as u32)
            )
        }),
        "\\[[0-9a-f:.]{0,24}\\]",
        "\\[(::)?[0-9a-f]{1,5}(:[0-9a-f]{1,5}){0,8}(::)?\\]",
    ]
}

/// The first and last addresses of every blocked IPv4 range, and their outside neighbours.
const V4_EDGES: [u32; 22] = [
    0x0000_0000,
    0x00ff_ffff,
    0x0100_0000,
    0x09ff_ffff,
    0x0a00_0000,
    0x0aff_ffff,
    0x0b00_0000,
    0x643f_ffff,
    0x6440_0000,
    0x647f_ffff,
    0x6480_0000,
    0x7eff_ffff,
    0x7f00_0000,
    0x7fff_ffff,
    0xa9fe_0000,
    0xa9fe_ffff,
    0xac0f_ffff,
    0xac10_0000,
    0xac1f_ffff,
    0xac20_0000,
    0xc0a8_0000,
    0xdfff_ffff,
];

/// The same for IPv6: unique local, link-local, site-local and multicast boundaries, and the
/// edges of the ranges that embed IPv4 addresses.
const V6_EDGES: [u128; 12] = [
    0xfbff_ffff_ffff_ffff_ffff_ffff_ffff_ffff,
    0xfc00 << 112,
    0xfdff_ffff_ffff_ffff_ffff_ffff_ffff_ffff,
    0xfe7f_ffff_ffff_ffff_ffff_ffff_ffff_ffff,
    0xfe80 << 112,
    0xfebf_ffff_ffff_ffff_ffff_ffff_ffff_ffff,
    0xfec0 << 112,
    0xfeff_ffff_ffff_ffff_ffff_ffff_ffff_ffff,
    0xff00 << 112,
    0x0000_0000_0000_0000_0000_fffe_ffff_ffff,
    0x0000_0000_0000_0000_0001_0000_0000_0000,
    0x0064_ff9b_0000_0000_0000_0001_0000_0000,
];

/// Addresses at the edges of the blocked ranges, in dotted and single-number IPv4 form, or as
/// IPv6 with and without embedded IPv4.
fn edge_host() -> impl Strategy<Value = String> {
    let v4 = prop::sample::select(V4_EDGES.to_vec())
        .prop_flat_map(|a| prop_oneof![Just(a), Just(a.wrapping_add(1)), Just(a.wrapping_sub(1))]);
    prop_oneof![
        v4.clone().prop_map(|a| Ipv4Addr::from(a).to_string()),
        v4.clone().prop_map(|a| a.to_string()),
        v4.clone()
            .prop_map(|a| format!("[::ffff:{}]", Ipv4Addr::from(a))),
        // Carried in other IPv6 prefixes: local-use NAT64, 6to4, Teredo (inverted); with any
        // bits where the prefix leaves room.
        (v4, 0..3usize, any::<u64>()).prop_map(|(a, prefix, noise)| {
            let a = u128::from(a);
            let noise = u128::from(noise);
            let ip = match prefix {
                0 => (0x0064_ff9b_0001u128 << 80) | ((noise & 0xffff_ffff_ffff) << 32) | a,
                1 => (0x2002u128 << 112) | (a << 80) | (noise & 0xffff_ffff_ffff_ffff_ffff),
                _ => {
                    (0x2001_0000u128 << 96)
                        | ((noise << 32) & !(0xffff_ffffu128 << 96))
                        | (!a & 0xffff_ffff)
                }
            };
            format!("[{}]", Ipv6Addr::from(ip))
        }),
        prop::sample::select(V6_EDGES.to_vec()).prop_map(|a| format!("[{}]", Ipv6Addr::from(a))),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![ipv4_host(), ipv6_host(), edge_host()]
}

#[test]
fn hosts_are_read_as_the_notifiers_url_parser_reads_them() {
    // A notifier with nothing allow-listed has published.
    let shard = PreparedShard::with_webhook_allow("webhook-hosts", String::new());
    check(1500, host(), |host| {
        let mut conn = connection();
        let url = format!("http://{host}:8080/hook");
        let function = message(shard.submit(&mut conn, &order(&url)));
        prop_assert_eq!(function, notifier_verdict(&url), "{}", url);
        Ok(())
    });
}

/// The address the function computes is the parser's to the bit: an allow-list of exactly that
/// address lets the order in, and one of its neighbour does not.
#[test]
fn an_allow_list_of_exactly_the_parsed_address_lets_it_in() {
    let blocked_literal = host().prop_filter_map("a blocked IP literal", |host| {
        let url = format!("https://{host}/h");
        if webhook_url_problem(&url).is_some() {
            return None;
        }
        let ip = webhook_ip_literal(&url)?;
        classify(ip).map(|_| (url, ip))
    });
    let exact = PreparedShard::with_webhook_allow("webhook-hosts-exact", String::new());
    check(300, blocked_literal, |(url, ip)| {
        let mut conn = connection();
        let publish = |ip: IpAddr| {
            let _: () = redis::cmd("HSET")
                .arg(exact.keys().meta)
                .arg(META_WEBHOOK_ALLOW)
                .arg(publish_text(&[AddrRange::network(ip, 128)]))
                .query(&mut connection())
                .expect("HSET");
        };
        publish(ip);
        prop_assert_eq!(
            message(exact.submit(&mut conn, &order(&url))),
            None,
            "{}",
            url
        );
        let neighbour = match ip {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) ^ 1)),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) ^ 1)),
        };
        publish(neighbour);
        prop_assert!(
            message(exact.submit(&mut conn, &order(&url))).is_some(),
            "{} let in by an allow-list of {}",
            url,
            neighbour
        );
        Ok(())
    });
}

#[test]
fn ipv4_mapped_addresses_are_let_in_by_their_ipv4_entry() {
    let shard = PreparedShard::with_webhook_allow(
        "webhook-hosts-mapped",
        publish_text(&[AddrRange::network("127.0.0.0".parse().expect("ip"), 8)]),
    );
    let mut conn = connection();
    for (url, ok) in [
        ("http://127.0.0.1/h", true),
        ("http://127.1/h", true),
        ("http://[::ffff:127.0.0.1]/h", true),
        ("http://[::ffff:7f00:2]/h", true),
        // NAT64 is judged by its IPv4 address but allowed only by an IPv6 entry, as the
        // notifiers do.
        ("http://[64:ff9b::127.0.0.1]/h", false),
        ("http://[::1]/h", false),
        ("http://10.0.0.1/h", false),
    ] {
        let verdict = message(shard.submit(&mut conn, &order(url)));
        assert_eq!(verdict.is_none(), ok, "{url}: {verdict:?}");
    }
}

#[test]
fn before_any_notifier_has_published_blocked_literals_are_left_to_the_notifier() {
    let shard = PreparedShard::new("webhook-hosts-unpublished");
    let mut conn = connection();
    for url in [
        "http://127.0.0.1/h",
        "http://[::1]/h",
        "http://169.254.169.254/",
    ] {
        assert_eq!(message(shard.submit(&mut conn, &order(url))), None, "{url}");
    }
    // Host syntax is the function's own to judge, published or not.
    assert!(message(shard.submit(&mut conn, &order("http://shop.123/"))).is_some());
}

/// 6to4, Teredo and local-use NAT64 addresses deliver to the IPv4 address they carry: the door
/// and the notifiers both judge them by it (before, both let `[2002:7f00:1::]` through).
#[test]
fn ipv6_addresses_carrying_ipv4_are_judged_by_it_at_the_door() {
    let shard = PreparedShard::with_webhook_allow("webhook-hosts-embedded", String::new());
    let mut conn = connection();
    for (url, range) in [
        ("http://[2002:7f00:1::]/h", Some("loopback")),
        ("http://[2002:a00:1:ffff::1]/h", Some("private-network")),
        ("http://[2002:a9fe:a9fe::]/h", Some("link-local")),
        (
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/h",
            Some("loopback"),
        ),
        (
            "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/h",
            Some("private-network"),
        ),
        ("http://[64:ff9b:1::7f00:1]/h", Some("loopback")),
        ("http://[64:ff9b:1::10.1.2.3]/h", Some("private-network")),
        ("http://[2002:808:808::1]/h", None),
        ("http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/h", None),
        ("http://[64:ff9b:1::8.8.8.8]/h", None),
    ] {
        let function = message(shard.submit(&mut conn, &order(url)));
        assert_eq!(function, notifier_verdict(url), "{url}");
        match range {
            Some(range) => assert!(
                function
                    .as_deref()
                    .is_some_and(|m| m.contains(&format!("({range})"))),
                "{url}: {function:?}"
            ),
            None => assert_eq!(function, None, "{url}"),
        }
    }
}
