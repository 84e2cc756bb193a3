//! `REDIS_URL`, read once for every process: one server, a Cluster's seed list, or a Sentinel set.
//!
//! - `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS): one server.
//! - `redis://a:7000,redis://b:7001,…`: the seed nodes of a Redis Cluster.
//! - `redis+sentinel://[user:password@]s1:26379,s2:26379/<primary-name>[/db]` (or
//!   `rediss+sentinel://` for TLS to the sentinels and the data nodes): a primary that Sentinel
//!   watches. The user and password are the data nodes'; sentinels that require their own are
//!   given them as `?sentinel_username=…&sentinel_password=…`.
//!
//! Errors never repeat the URL: it may carry a password.

use percent_encoding::percent_decode_str;
use redis::{ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

/// The port a sentinel listens on when its address names none.
const SENTINEL_PORT: u16 = 26379;

/// Why `REDIS_URL` could not be read; the message never repeats the URL (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("REDIS_URL: {0}")]
pub struct UrlError(pub String);

/// What `REDIS_URL` names.
#[derive(Debug)]
pub(crate) enum Target {
    /// One server.
    Single(ConnectionInfo),
    /// A Cluster's seed nodes.
    Cluster(Vec<ConnectionInfo>),
    /// A Sentinel-watched primary.
    Sentinel(SentinelTarget),
}

/// A primary found through Sentinel.
#[derive(Debug)]
pub(crate) struct SentinelTarget {
    /// The sentinels to ask.
    pub sentinels: Vec<ConnectionInfo>,
    /// The name the sentinels know the primary by (`sentinel monitor <name> …`).
    pub service: String,
    /// How to talk to the primary once found (user, password, database).
    pub node: RedisConnectionInfo,
    /// Whether the primary speaks TLS.
    pub tls: bool,
}

/// Reads `REDIS_URL`.
pub(crate) fn parse(url: &str) -> Result<Target, UrlError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(UrlError("is empty".into()));
    }
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some(tls) = match scheme {
            "redis+sentinel" => Some(false),
            "rediss+sentinel" => Some(true),
            _ => None,
        }
    {
        return sentinel(rest, tls).map(Target::Sentinel);
    }
    let urls: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    match urls.as_slice() {
        [one] => Ok(Target::Single(server(one)?)),
        many => Ok(Target::Cluster(
            many.iter().map(|u| server(u)).collect::<Result<_, _>>()?,
        )),
    }
}

/// One `redis://` or `rediss://` URL.
fn server(url: &str) -> Result<ConnectionInfo, UrlError> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix:")) {
        return Err(UrlError(
            "must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel:// \
             (several redis:// URLs, comma-separated, for a Cluster's seed nodes)"
                .into(),
        ));
    }
    url.into_connection_info()
        .map_err(|e| UrlError(format!("is not a valid Redis URL ({})", e.kind_text())))
}

/// The part of a Sentinel URL after its scheme.
fn sentinel(rest: &str, tls: bool) -> Result<SentinelTarget, UrlError> {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = before_query.split_once('/').ok_or_else(|| {
        UrlError("a Sentinel URL must name the primary: redis+sentinel://host:26379/<name>".into())
    })?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let service =
        segments.next().map(decode).transpose()?.ok_or_else(|| {
            UrlError("a Sentinel URL must name the primary after the hosts".into())
        })?;
    let db = match segments.next() {
        None => 0,
        Some(db) => db.parse::<i64>().map_err(|_| {
            UrlError("the database after the primary's name must be a number".into())
        })?,
    };
    if segments.next().is_some() {
        return Err(UrlError(
            "a Sentinel URL's path is /<primary-name>[/<db>]".into(),
        ));
    }
    let mut node = RedisConnectionInfo::default().set_db(db);
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        if !user.is_empty() {
            node = node.set_username(decode(user)?);
        }
        if !password.is_empty() {
            node = node.set_password(decode(password)?);
        }
    }
    let mut sentinel_auth = RedisConnectionInfo::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sentinel_username" => sentinel_auth = sentinel_auth.set_username(decode(value)?),
            "sentinel_password" => sentinel_auth = sentinel_auth.set_password(decode(value)?),
            other => {
                return Err(UrlError(format!(
                    "unknown Sentinel URL parameter '{other}' (known: sentinel_username, \
                     sentinel_password)"
                )));
            }
        }
    }
    let sentinels = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            sentinel_addr(h, tls)?
                .as_str()
                .into_connection_info()
                .map(|i| i.set_redis_settings(sentinel_auth.clone()))
                .map_err(|e| UrlError(format!("has an invalid sentinel ({})", e.kind_text())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.is_empty() {
        return Err(UrlError(
            "a Sentinel URL must list at least one sentinel".into(),
        ));
    }
    Ok(SentinelTarget {
        sentinels,
        service,
        node,
        tls,
    })
}

/// `host[:port]` or `[v6]:port` of one sentinel, as the URL the redis crate reads.
fn sentinel_addr(host_port: &str, tls: bool) -> Result<String, UrlError> {
    let bad = || UrlError("has a sentinel address that is not host:port".into());
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if after.is_empty() => SENTINEL_PORT,
            None => return Err(bad()),
        };
        (format!("[{host}]"), port)
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse::<u16>().map_err(|_| bad())?),
            None => (host_port.to_owned(), SENTINEL_PORT),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad());
    }
    let scheme = if tls { "rediss" } else { "redis" };
    Ok(format!("{scheme}://{host}:{port}"))
}

fn decode(text: &str) -> Result<String, UrlError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| UrlError("has a part that is not valid percent-encoded UTF-8".into()))
}

/// The words of a URL error without any part of the URL.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for redis::RedisError {
    fn kind_text(&self) -> String {
        // The redis crate's parse errors say what is wrong ("Redis URL did not parse", "Invalid
        // database number") without echoing the URL; keep only the category and that text.
        match self.detail() {
            Some(detail) => format!("{}: {detail}", self.category()),
            None => self.category().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel_of(url: &str) -> SentinelTarget {
        match parse(url) {
            Ok(Target::Sentinel(s)) => s,
            other => panic!("{url} did not read as Sentinel: {other:?}"),
        }
    }

    #[test]
    fn one_server_a_cluster_and_a_sentinel_set() {
        assert!(matches!(
            parse("redis://127.0.0.1:6379"),
            Ok(Target::Single(_))
        ));
        assert!(matches!(
            parse("redis://a:7000, redis://b:7001,redis://c:7002"),
            Ok(Target::Cluster(nodes)) if nodes.len() == 3
        ));
        let s = sentinel_of("redis+sentinel://u:p%40ss@s1:26380,s2,[::1]:5000/mymaster/2");
        assert_eq!(s.service, "mymaster");
        assert_eq!(s.sentinels.len(), 3);
        assert_eq!(s.node.db(), 2);
        assert_eq!(s.node.username(), Some("u"));
        assert_eq!(s.node.password(), Some("p@ss"));
        assert!(!s.tls);
        let ports: Vec<String> = s.sentinels.iter().map(|i| i.addr().to_string()).collect();
        assert!(
            ports[0].ends_with(":26380") && ports[1].ends_with(":26379"),
            "{ports:?}"
        );
        assert!(ports[2].ends_with(":5000"), "{ports:?}");
        let tls = sentinel_of("rediss+sentinel://s1/m?sentinel_password=x");
        assert!(tls.tls);
        assert_eq!(tls.sentinels[0].redis_settings().password(), Some("x"));
    }

    #[test]
    fn mistakes_are_named_without_repeating_the_url() {
        for bad in [
            "",
            "http://host:6379",
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1:notaport/m",
            "redis+sentinel://:secretpw@s1/m/notadb",
            "redis+sentinel://:secretpw@s1/m?password=secretpw",
            "redis://:secretpw@host:6379,ftp://x",
        ] {
            let e = match parse(bad) {
                Err(e) => e.to_string(),
                Ok(t) => panic!("{bad:?} was accepted as {t:?}"),
            };
            assert!(e.starts_with("REDIS_URL: "), "{e}");
            assert!(!e.contains("secretpw"), "{e} repeats the password");
        }
    }
}
