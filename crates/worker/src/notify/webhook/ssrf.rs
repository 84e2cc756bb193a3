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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use paywatch_core::ip_ranges::{AddrRange, Blocked, classify};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::WebhookConfigError;

/// The operator's exceptions to the SSRF guard: host names, addresses and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowList {
    /// Lowercase, without a trailing dot.
    hosts: Vec<String>,
    nets: Vec<AddrRange>,
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
                list.nets.push(AddrRange::network(addr, prefix));
            } else if let Some(addr) = parse_ip(entry) {
                let prefix = if addr.is_ipv4() { 32 } else { 128 };
                list.nets.push(AddrRange::network(addr, prefix));
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

    /// The addresses and networks, as published to the submit function (host names are left
    /// out: it judges only IP-literal URLs).
    pub(crate) fn published(&self) -> String {
        paywatch_core::ip_ranges::publish_text(&self.nets)
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
