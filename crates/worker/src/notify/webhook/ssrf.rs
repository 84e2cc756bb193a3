//! The SSRF guard: webhook URLs come from shops, so the worker must not be usable to reach
//! loopback, private networks or cloud metadata endpoints unless the operator allows it.
//!
//! How DNS rebinding is defeated: the shared reqwest client is built with
//! [`GuardedResolver`] as its DNS resolver. Every connection the client opens to a host *name*
//! resolves through it, and it hands the connector only addresses it has just checked — so
//! the address we validate is the address we connect to; there is no second lookup an attacker's
//! DNS could answer differently. Pooled connections were checked when they were opened. Hosts
//! given as IP literals never reach a resolver (hyper connects to them directly), so
//! [`AllowList::check`] is applied to them before the request is built. The client also has
//! proxies disabled: a proxy would resolve the name itself, bypassing this check.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::WebhookConfigError;

/// Why an address is off limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
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
/// IPv6 addresses that embed an IPv4 destination (IPv4-mapped `::ffff:0:0/96`, and the NAT64
/// well-known prefix `64:ff9b::/96`, which a NAT64 gateway translates to that IPv4 address) are
/// judged by the embedded address.
pub(crate) fn classify(ip: IpAddr) -> Option<Blocked> {
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

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        let embedded = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return classify_v4(embedded);
    }
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

/// An IP network from the allow-list (a plain address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The operator's exceptions to the SSRF guard: host names, addresses and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowList {
    /// Lowercase, without a trailing dot.
    hosts: Vec<String>,
    nets: Vec<Cidr>,
}

impl AllowList {
    /// Parses `allow_hosts` entries: `"hooks.internal"`, `"127.0.0.1"`, `"::1"`, `"[::1]"`,
    /// `"10.0.0.0/8"`, `"fd00::/8"`.
    pub(crate) fn parse(entries: &[String]) -> Result<Self, WebhookConfigError> {
        let mut list = Self::default();
        for (index, raw) in entries.iter().enumerate() {
            let err = |reason: &str| WebhookConfigError::AllowHost {
                index,
                entry: raw.clone(),
                reason: reason.to_owned(),
            };
            let entry = raw.trim();
            if entry.is_empty() {
                return Err(err("empty entry"));
            }
            if entry.contains("://") {
                return Err(err("expected a host name, IP address or CIDR, not a URL"));
            }
            if let Some((addr, prefix)) = entry.split_once('/') {
                let addr = parse_ip(addr).ok_or_else(|| err("not an IP network (CIDR)"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix = prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| err("CIDR prefix length out of range"))?;
                list.nets.push(Cidr { addr, prefix });
            } else if let Some(addr) = parse_ip(entry) {
                let prefix = if addr.is_ipv4() { 32 } else { 128 };
                list.nets.push(Cidr { addr, prefix });
            } else {
                let host = normalize_host(entry);
                let valid = !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                if !valid {
                    return Err(err("not a host name, IP address or CIDR"));
                }
                list.hosts.push(host);
            }
        }
        Ok(list)
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.hosts.contains(&host)
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped address is matched against IPv4 entries too, so "127.0.0.1" also
        // covers ::ffff:127.0.0.1.
        let canonical = ip.to_canonical();
        self.nets
            .iter()
            .any(|net| net.contains(ip) || net.contains(canonical))
    }

    /// Refuses `host` if any of its addresses is in a blocked range and neither the host nor
    /// that address is allow-listed. "Any", not "all": the connector may pick any of them.
    pub(crate) fn check(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Result<(), SsrfRefused> {
        if self.allows_host(host) {
            return Ok(());
        }
        for addr in addrs {
            if let Some(range) = classify(addr)
                && !self.allows_ip(addr)
            {
                return Err(SsrfRefused {
                    host: host.to_owned(),
                    addr,
                    range,
                });
            }
        }
        Ok(())
    }
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok()
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The guard refused a webhook target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct SsrfRefused {
    host: String,
    addr: IpAddr,
    range: Blocked,
}

impl fmt::Display for SsrfRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { host, addr, range } = self;
        if parse_ip(host) == Some(*addr) {
            write!(
                f,
                "SSRF guard refused webhook address {addr}, a {range} address"
            )?;
        } else {
            write!(
                f,
                "SSRF guard refused webhook host {host}: it resolves to {addr}, a {range} address"
            )?;
        }
        f.write_str(" (allow-list the host or address in the webhook config if this is intended)")
    }
}

/// The client's DNS resolver: resolves with the system resolver, then applies the guard to
/// every address before the connector sees any of them.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl GuardedResolver {
    pub(crate) fn new(allow: Arc<AllowList>) -> Self {
        Self { allow }
    }
}

/// The host name resolved to nothing.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolved to no addresses")]
struct NoAddresses(String);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: hyper replaces it with the URL's port.
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(NoAddresses(host).into());
            }
            allow.check(&host, addrs.iter().map(SocketAddr::ip))?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn allow(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
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
        ];
        for (addr, expected) in cases {
            assert_eq!(classify(ip(addr)), Some(expected), "{addr}");
        }
        assert_eq!(classify(ip("::ffff:8.8.8.8")), None);
    }

    #[test]
    fn allow_list_accepts_addresses_networks_and_hosts() {
        let list = allow(&[
            "127.0.0.1",
            "[::1]",
            "10.0.0.0/8",
            "fd00::/8",
            "Hooks.Internal.",
        ]);
        assert!(list.check("127.0.0.1", [ip("127.0.0.1")]).is_ok());
        assert!(list.check("x", [ip("::ffff:127.0.0.1")]).is_ok());
        assert!(list.check("x", [ip("::1")]).is_ok());
        assert!(list.check("x", [ip("10.200.3.4")]).is_ok());
        assert!(list.check("x", [ip("fd12::1")]).is_ok());
        assert!(list.check("hooks.internal", [ip("192.168.0.1")]).is_ok());
        assert!(
            list.check("HOOKS.internal.", [ip("169.254.169.254")])
                .is_ok()
        );
        // Only what is listed.
        assert!(list.check("x", [ip("127.0.0.2")]).is_err());
        assert!(
            list.check("x", [ip("11.0.0.1"), ip("192.168.0.1")])
                .is_err()
        );
        assert!(
            list.check("hooks.internal.evil", [ip("192.168.0.1")])
                .is_err()
        );
    }

    #[test]
    fn any_blocked_address_refuses_the_host() {
        let list = AllowList::default();
        let err = list
            .check("rebind.example", [ip("93.184.216.34"), ip("127.0.0.1")])
            .unwrap_err();
        assert_eq!(err.addr, ip("127.0.0.1"));
        assert_eq!(err.range, Blocked::Loopback);
        let text = err.to_string();
        assert!(
            text.contains("rebind.example") && text.contains("loopback"),
            "{text}"
        );
        assert!(list.check("ok.example", [ip("93.184.216.34")]).is_ok());
        let literal = list.check("::1", [ip("::1")]).unwrap_err().to_string();
        assert!(
            literal.starts_with("SSRF guard refused webhook address ::1, a loopback"),
            "{literal}"
        );
    }

    #[test]
    fn cidr_edges() {
        let list = allow(&["172.16.0.0/12", "0.0.0.0/0"]);
        assert!(list.allows_ip(ip("172.31.255.255")));
        assert!(list.allows_ip(ip("1.2.3.4")));
        assert!(!list.allows_ip(ip("::1")), "an IPv4 /0 must not cover IPv6");
        let list = allow(&["192.168.1.0/24"]);
        assert!(list.allows_ip(ip("192.168.1.77")));
        assert!(!list.allows_ip(ip("192.168.2.1")));
    }

    #[test]
    fn bad_allow_list_entries_name_the_index() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "nope/8",
            "http://example.com",
            "a b",
            "1.2.3.4/x",
        ] {
            let err = AllowList::parse(&["127.0.0.1".into(), bad.into()]).unwrap_err();
            assert!(
                matches!(err, WebhookConfigError::AllowHost { index: 1, .. }),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("allow_hosts[1]"), "{err}");
        }
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_resolve_to_loopback() {
        let resolver = GuardedResolver::new(Arc::new(AllowList::default()));
        let Err(err) = resolver.resolve(Name::from_str("localhost").unwrap()).await else {
            panic!("localhost resolved through the guard");
        };
        let refused = err.downcast_ref::<SsrfRefused>().expect("an SSRF refusal");
        assert_eq!(refused.range, Blocked::Loopback);
    }

    #[tokio::test]
    async fn resolver_passes_allow_listed_names_through() {
        let resolver = GuardedResolver::new(Arc::new(allow(&["localhost"])));
        let addrs: Vec<_> = resolver
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
