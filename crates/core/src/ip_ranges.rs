//! Address ranges webhooks may not reach by default (the SSRF guard's), shared by the webhook
//! notifier, which refuses to connect to them, and the submit function, which refuses IP-literal
//! webhook URLs in them at submission (`store/lua/ip.lua` restates [`classify`]); and the text
//! form in which notifiers publish their allow-list to the function.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is off limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// 0.0.0.0, `::`.
    Unspecified,
    /// 0.0.0.0/8 other than 0.0.0.0 ("this network"; Linux routes it to the local host).
    ThisNetwork,
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7, and the deprecated site-local fec0::/10.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT shared space (often reaches provider-internal hosts).
    SharedCgnat,
    /// 169.254.0.0/16 (cloud metadata lives here), fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 240.0.0.0/4 and the deprecated IPv4-compatible `::/96`: never a legitimate endpoint.
    Reserved,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::ThisNetwork => "\"this network\" (0.0.0.0/8)",
            Self::Loopback => "loopback",
            Self::Private => "private-network",
            Self::SharedCgnat => "carrier-grade NAT (100.64.0.0/10)",
            Self::LinkLocal => "link-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
        })
    }
}

/// Whether `ip` is in a range webhooks may not reach by default, and which.
///
/// IPv6 addresses that carry an IPv4 destination ([`embedded_ipv4`]) are judged by it.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        _ if ip.is_unspecified() => Blocked::Unspecified,
        _ if ip.is_broadcast() => Blocked::Broadcast,
        (0, _) => Blocked::ThisNetwork,
        (127, _) => Blocked::Loopback,
        (10, _) => Blocked::Private,
        (172, 16..=31) => Blocked::Private,
        (192, 168) => Blocked::Private,
        (100, 64..=127) => Blocked::SharedCgnat,
        (169, 254) => Blocked::LinkLocal,
        (224..=239, _) => Blocked::Multicast,
        (240..=255, _) => Blocked::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address delivers to, when it carries one:
///
/// - IPv4-mapped `::ffff:0:0/96`: the last 32 bits;
/// - NAT64, the well-known `64:ff9b::/96` and the local-use `64:ff9b:1::/48` (RFC 8215): the last
///   32 bits, which a NAT64 gateway translates to;
/// - 6to4 `2002::/16`: bits 16-47, where a 6to4 relay sends the packet;
/// - Teredo `2001::/32`: the client's address, the last 32 bits inverted (RFC 4380).
///
/// The submit function (`store/lua/ip.lua`'s `embedded_v4`) reads them the same way.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    // Truncations keep exactly the 32 bits each prefix puts the address in.
    let last = bits as u32;
    let segments = ip.segments();
    if ip.to_ipv4_mapped().is_some()
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || segments[..3] == [0x64, 0xff9b, 1]
    {
        return Some(Ipv4Addr::from(last));
    }
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    if segments[..2] == [0x2001, 0] {
        return Some(Ipv4Addr::from(!last));
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    if let Some(v4) = embedded_ipv4(ip) {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    Some(match segments[0] {
        _ if ip.is_unspecified() => Blocked::Unspecified,
        _ if ip.is_loopback() => Blocked::Loopback,
        // The rest of ::/96: deprecated IPv4-compatible addresses.
        0 if segments[1..6] == [0; 5] => Blocked::Reserved,
        s if s & 0xfe00 == 0xfc00 => Blocked::Private,
        s if s & 0xffc0 == 0xfe80 => Blocked::LinkLocal,
        s if s & 0xffc0 == 0xfec0 => Blocked::Private,
        s if s & 0xff00 == 0xff00 => Blocked::Multicast,
        _ => return None,
    })
}

/// An inclusive range of addresses of one family (an allow-listed network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    /// The first address.
    pub first: IpAddr,
    /// The last address, of the same family.
    pub last: IpAddr,
}

impl AddrRange {
    /// The addresses of `addr/prefix` (a prefix past the family's width is the address alone).
    pub fn network(addr: IpAddr, prefix: u8) -> Self {
        match addr {
            IpAddr::V4(a) => {
                let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                let first = u32::from(a) & !host;
                Self {
                    first: Ipv4Addr::from(first).into(),
                    last: Ipv4Addr::from(first | host).into(),
                }
            }
            IpAddr::V6(a) => {
                let host = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                let first = u128::from(a) & !host;
                Self {
                    first: Ipv6Addr::from(first).into(),
                    last: Ipv6Addr::from(first | host).into(),
                }
            }
        }
    }

    /// Whether `ip` is in the range (never for the other family).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.first, self.last, ip) {
            (IpAddr::V4(first), IpAddr::V4(last), IpAddr::V4(ip)) => (first..=last).contains(&ip),
            (IpAddr::V6(first), IpAddr::V6(last), IpAddr::V6(ip)) => (first..=last).contains(&ip),
            _ => false,
        }
    }
}

/// An address as the function library compares it: `4:` or `6:` and fixed-width lowercase hex
/// (8 or 32 digits), so that string order is address order.
fn hex(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{:08x}", u32::from(a)),
        IpAddr::V6(a) => format!("{:032x}", u128::from(a)),
    }
}

/// The allow-list text a notifier publishes in every shard's meta hash for the submit function:
/// one `<family>:<first>-<last>` per range, space-separated (empty: nothing allowed).
pub fn publish_text(ranges: &[AddrRange]) -> String {
    ranges
        .iter()
        .map(|r| {
            let family = if r.first.is_ipv4() { 4 } else { 6 };
            format!("{family}:{}-{}", hex(r.first), hex(r.last))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn classifies_blocked_ipv4_ranges() {
        let cases = [
            ("0.0.0.0", Blocked::Unspecified),
            ("0.1.2.3", Blocked::ThisNetwork),
            ("127.0.0.1", Blocked::Loopback),
            ("127.255.255.254", Blocked::Loopback),
            ("10.0.0.1", Blocked::Private),
            ("10.255.255.255", Blocked::Private),
            ("172.16.0.1", Blocked::Private),
            ("172.31.255.255", Blocked::Private),
            ("192.168.1.1", Blocked::Private),
            ("100.64.0.1", Blocked::SharedCgnat),
            ("100.127.255.255", Blocked::SharedCgnat),
            ("169.254.169.254", Blocked::LinkLocal),
            ("224.0.0.1", Blocked::Multicast),
            ("239.255.255.250", Blocked::Multicast),
            ("255.255.255.255", Blocked::Broadcast),
            ("240.0.0.1", Blocked::Reserved),
        ];
        for (addr, expected) in cases {
            assert_eq!(classify(ip(addr)), Some(expected), "{addr}");
        }
    }

    #[test]
    fn public_ipv4_neighbours_of_blocked_ranges_pass() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "223.255.255.255",
            "1.0.0.0",
        ] {
            assert_eq!(classify(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn classifies_blocked_ipv6_ranges() {
        let cases = [
            ("::", Blocked::Unspecified),
            ("::1", Blocked::Loopback),
            ("::7f00:1", Blocked::Reserved),
            ("fc00::1", Blocked::Private),
            ("fd12:3456::1", Blocked::Private),
            ("fe80::1", Blocked::LinkLocal),
            ("febf::1", Blocked::LinkLocal),
            ("fec0::1", Blocked::Private),
            ("ff02::1", Blocked::Multicast),
        ];
        for (addr, expected) in cases {
            assert_eq!(classify(ip(addr)), Some(expected), "{addr}");
        }
        for addr in [
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "fbff::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(classify(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn ipv6_addresses_embedding_ipv4_are_judged_by_the_ipv4_address() {
        let cases = [
            ("::ffff:127.0.0.1", Blocked::Loopback),
            ("::ffff:10.1.2.3", Blocked::Private),
            ("::ffff:169.254.169.254", Blocked::LinkLocal),
            ("::ffff:100.64.0.1", Blocked::SharedCgnat),
            ("::ffff:0.0.0.0", Blocked::Unspecified),
            ("::ffff:255.255.255.255", Blocked::Broadcast),
            ("::ffff:224.0.0.1", Blocked::Multicast),
            ("64:ff9b::127.0.0.1", Blocked::Loopback),
            ("64:ff9b::192.168.0.1", Blocked::Private),
            // Local-use NAT64 (64:ff9b:1::/48), 6to4 (2002::/16), Teredo (2001::/32).
            ("64:ff9b:1::7f00:1", Blocked::Loopback),
            ("64:ff9b:1:ffff::a9fe:a9fe", Blocked::LinkLocal),
            ("2002:7f00:1::", Blocked::Loopback),
            ("2002:a00:1:ffff::1", Blocked::Private),
            ("2002:a9fe:a9fe::", Blocked::LinkLocal),
            // Teredo's client 127.0.0.1, inverted: 0x80ff_fffe.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Blocked::Loopback),
            ("2001:0:4136:e378:8000:63bf:f5ff:fffe", Blocked::Private),
        ];
        for (addr, expected) in cases {
            assert_eq!(classify(ip(addr)), Some(expected), "{addr}");
        }
        assert_eq!(classify(ip("::ffff:8.8.8.8")), None);
        for public in [
            "64:ff9b:1::808:808",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "2001:db8::1",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
        assert_eq!(
            embedded_ipv4("2002:c000:201::".parse().expect("6to4")),
            Some(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert_eq!(
            embedded_ipv4("2001:0:1:2:3:4:3fff:fdfe".parse().expect("teredo")),
            Some(Ipv4Addr::new(192, 0, 2, 1))
        );
    }

    #[test]
    fn networks_publish_as_fixed_width_hex_ranges() {
        let ranges = [
            AddrRange::network(ip("10.1.2.3"), 8),
            AddrRange::network(ip("127.0.0.1"), 32),
            AddrRange::network(ip("fd00::"), 8),
            AddrRange::network(ip("::1"), 128),
            AddrRange::network(ip("0.0.0.0"), 0),
        ];
        assert_eq!(
            publish_text(&ranges),
            "4:0a000000-0affffff 4:7f000001-7f000001 \
             6:fd000000000000000000000000000000-fdffffffffffffffffffffffffffffff \
             6:00000000000000000000000000000001-00000000000000000000000000000001 \
             4:00000000-ffffffff"
        );
        assert_eq!(publish_text(&[]), "");
    }
}
