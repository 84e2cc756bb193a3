//! The rules for notification targets: what the submit function accepts, restated in Rust.
//!
//! The function library (`store/lua/`) is the judge at submission; the notifiers check
//! again with these functions before sending, so a target can never be accepted by one and
//! refused by the other. `tests/it/door.rs` runs one table of targets through both.
//! Deliberately narrower than the RFCs: no quoted local parts, IP-literal mail domains, comments,
//! lists or credentials — things a shop's checkout never means and a mail or HTTP client may
//! read differently.

/// The longest email address accepted.
pub const MAX_EMAIL: usize = 254;
/// The longest webhook URL accepted.
pub const MAX_URL: usize = 2048;
/// The largest Telegram chat id magnitude (2^53 - 1: exact in every JSON parser).
pub const MAX_CHAT_ID: i64 = 9_007_199_254_740_991;

fn valid_labels(host: &str, min_labels: usize) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let mut count = 0;
    for label in host.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return false;
        }
        count += 1;
    }
    count >= min_labels
}

/// Why `email` is not an address paywatch sends to, or `None` when it is.
pub fn email_problem(email: &str) -> Option<&'static str> {
    if email.len() > MAX_EMAIL {
        return Some("is longer than 254 characters");
    }
    let mut parts = email.split('@');
    let (Some(user), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Some("must contain exactly one @");
    };
    if user.is_empty() || user.len() > 64 {
        return Some("must have 1 to 64 characters before the @");
    }
    if !user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b))
    {
        return Some("may only use letters, digits and !#$%&'*+/=?^_`{|}~.- before the @");
    }
    if user.starts_with('.') || user.ends_with('.') || user.contains("..") {
        return Some("must not start or end with a dot or have two in a row before the @");
    }
    let tld = domain.rsplit('.').next().unwrap_or_default();
    if !valid_labels(domain, 2) || !tld.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Some("must have a domain name after the @ (like example.com)");
    }
    None
}

/// Why `url` is not a webhook URL paywatch posts to, or `None` when it is.
pub fn webhook_url_problem(url: &str) -> Option<&'static str> {
    if url.len() > MAX_URL {
        return Some("is longer than 2048 characters");
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("may only contain printable ASCII without spaces");
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Some("must start with http:// or https://");
    };
    if url.contains('#') {
        return Some("must not contain a fragment (#)");
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Some("must not contain credentials");
    }
    // Hosts are read as the notifiers' URL parser reads them (WHATWG): a bracketed host must be
    // an IPv6 address, and one whose last label is a number must be an IPv4 address.
    let port = if authority.starts_with('[') {
        let Some(end) = authority.find(']') else {
            return Some("has an invalid IPv6 host");
        };
        let (host, port) = authority.split_at(end + 1);
        if !matches!(url::Host::parse(host), Ok(url::Host::Ipv6(_))) {
            return Some("has an invalid IPv6 host");
        }
        port
    } else {
        let (host, port) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
        if !valid_labels(host, 1) {
            return Some("must have a host name");
        }
        if matches!(
            url::Host::parse(host),
            Err(url::ParseError::InvalidIpv4Address)
        ) {
            return Some("has a host that ends in a number but is not a valid IPv4 address");
        }
        port
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':').unwrap_or_default();
        let ok = !digits.is_empty()
            && digits.len() <= 5
            && digits.bytes().all(|b| b.is_ascii_digit())
            && matches!(digits.parse::<u32>(), Ok(1..=65535));
        if !ok {
            return Some("has an invalid port");
        }
    }
    let bytes = tail.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Some("has an invalid percent-escape");
        }
    }
    None
}

/// The address a webhook URL without a [`webhook_url_problem`] names as its host, if it is an
/// IP literal (`127.1` included: URL parsers read it as 127.0.0.1).
pub fn webhook_ip_literal(url: &str) -> Option<std::net::IpAddr> {
    match url::Url::parse(url).ok()?.host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// What the submit function says of an IP-literal webhook URL in `range` that the notifiers'
/// allow-list does not cover.
pub fn blocked_webhook_problem(range: crate::ip_ranges::Blocked) -> String {
    format!(
        "points at an address webhooks may not reach ({range}) unless the notifiers allow it in \
         PAYWATCH_WEBHOOK_ALLOW_HOSTS"
    )
}

/// What the submit function says of `url` when the notifiers allow-list no address: its
/// [`webhook_url_problem`], else the [`blocked_webhook_problem`] of an IP literal in a blocked
/// range, else nothing (the verdict the notifiers' own checks reach at delivery).
pub fn webhook_url_problem_unlisted(url: &str) -> Option<String> {
    if let Some(problem) = webhook_url_problem(url) {
        return Some(problem.to_owned());
    }
    webhook_ip_literal(url)
        .and_then(crate::ip_ranges::classify)
        .map(blocked_webhook_problem)
}

/// Why `chat_id` is not a Telegram chat paywatch sends to, or `None` when it is.
pub fn telegram_chat_problem(chat_id: i64) -> Option<&'static str> {
    if chat_id == 0 {
        Some("must not be 0")
    } else if !(-MAX_CHAT_ID..=MAX_CHAT_ID).contains(&chat_id) {
        Some("must be between -9007199254740991 and 9007199254740991")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "buyer@example.com",
            "a.b+tag@sub.example.co",
            "x@xn--80ak6aa92e.com",
            "o'neil@example.org",
        ] {
            assert_eq!(email_problem(ok), None, "{ok}");
        }
        for bad in [
            "a@b.com,c@d.com",
            "a@b.com;c@d.com",
            "x@[127.0.0.1]",
            "x@1.2.3.4",
            "nope",
            "a@b",
            "@b.com",
            ".a@b.com",
            "a..b@c.com",
            "a b@c.com",
            "a@-b.com",
            "\"q\"@b.com",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn webhook_urls() {
        for ok in [
            "https://shop.example/hooks/paywatch",
            "http://127.0.0.1:8080/hook?x=%20",
            "https://[::1]:8443/h",
            "http://localhost/h",
        ] {
            assert_eq!(webhook_url_problem(ok), None, "{ok}");
            assert!(url::Url::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://user:pass@example.com/h",
            "ftp://x/",
            "https://shop.example/h#frag",
            "https://shop.example/a b",
            "https:///nohost",
            "https://shop.example:0/",
            "https://shop.example:99999/",
            "https://shop.example/%zz",
            "https://shop.example/%4",
            "HTTPS://shop.example/",
        ] {
            assert!(webhook_url_problem(bad).is_some(), "{bad}");
        }
        // What URL parsers refuse as hosts: not IPv4 though the last label is a number, not
        // IPv6 though bracketed.
        for bad in [
            "http://shop.123/",
            "http://1.2.3.256/",
            "http://1.2.3.4.5/",
            "http://09/",
            "https://[1:2]/",
            "https://[::1::]/",
            "https://[::ffff:1.2.3.04]/",
        ] {
            assert!(webhook_url_problem(bad).is_some(), "{bad}");
            assert!(url::Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_literals_are_the_addresses_url_parsers_connect_to() {
        for (url, ip) in [
            ("http://127.1/", Some("127.0.0.1")),
            ("http://0x7f.0.0.1/", Some("127.0.0.1")),
            ("http://2130706433/", Some("127.0.0.1")),
            ("http://0177.0.0.01/", Some("127.0.0.1")),
            ("http://[::ffff:10.0.0.1]/", Some("::ffff:10.0.0.1")),
            ("http://shop.example/", None),
        ] {
            assert_eq!(webhook_url_problem(url), None, "{url}");
            assert_eq!(
                webhook_ip_literal(url),
                ip.map(|ip| ip.parse().expect("ip")),
                "{url}"
            );
        }
    }

    #[test]
    fn chat_ids() {
        assert_eq!(telegram_chat_problem(-1001234567890), None);
        assert!(telegram_chat_problem(0).is_some());
        assert!(telegram_chat_problem(MAX_CHAT_ID + 1).is_some());
    }
}
