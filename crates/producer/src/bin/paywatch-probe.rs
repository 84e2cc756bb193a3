//! `paywatch-probe`: one HTTP GET of a health URL, exit status 0 on a 2xx answer.
//!
//! The container image has no shell and no curl, so its `HEALTHCHECK` needs a binary of the
//! image to ask `/readyz`; this is that binary's only job. It asks a port of its own container,
//! so plain `http://` over loopback is all it speaks: a request line out, a status line back.
//! No logs and no Redis: a health check reads the exit status and one line of stderr.

use std::time::Duration;

use std::process::ExitCode;

use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The URL the image's `HEALTHCHECK` asks by default: every binary's `/readyz` on the metrics
/// port the image sets (`PAYWATCH_METRICS_LISTEN`, `PAYWATCH_PRODUCER_METRICS_LISTEN`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9464/readyz";

/// The probe's command line.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "paywatch-probe: GET a health URL once (default: this container's /readyz) and exit \
             0 on a 2xx answer, 1 otherwise; the image's HEALTHCHECK.",
    long_about = None
)]
pub struct ProbeArgs {
    /// `http://host:port/path` to GET; a 2xx answer within the timeout is healthy (exit 0),
    /// anything else is not (exit 1).
    #[arg(long, env = "PAYWATCH_PROBE_URL", default_value = DEFAULT_URL, value_parser = HttpUrl::parse)]
    pub url: HttpUrl,
    /// How long to wait for the answer.
    #[arg(long, env = "PAYWATCH_PROBE_TIMEOUT", default_value = "2s",
        value_parser = paywatch_core::durations::parse_duration)]
    pub timeout: Duration,
}

/// A plain `http://host:port/path` URL, split for the request.
#[derive(Debug, Clone)]
pub struct HttpUrl {
    /// `host:port`.
    authority: String,
    /// From the first `/` on (`/` when none).
    path: String,
}

impl HttpUrl {
    /// Reads `http://host:port/path`; no user, password or other scheme.
    fn parse(value: &str) -> Result<Self, String> {
        let rest = value
            .strip_prefix("http://")
            .ok_or("must start with http:// (the probe asks its own container)")?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("must not carry a user or password".into());
        }
        if !authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        }) {
            return Err("must name host:port, e.g. http://127.0.0.1:9464/readyz".into());
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the path must not contain spaces or control characters".into());
        }
        Ok(Self {
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer within the timeout.
    #[error("{0}: no answer in time")]
    Timeout(HttpUrl),
    /// Refused, reset, or closed before a status line.
    #[error("{url}: {source}")]
    Io {
        /// The URL asked.
        url: HttpUrl,
        /// What the socket reported.
        source: std::io::Error,
    },
    /// An answer that is not HTTP, or not 2xx (503 from `/readyz` while Redis does not answer).
    #[error("{url}: answered {status_line:?}")]
    Status {
        /// The URL asked.
        url: HttpUrl,
        /// The answer's first line.
        status_line: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap's errors, reworded to name the environment variable at fault.
    let args: ProbeArgs = paywatch_core::cli::parse();
    match probe(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// GETs `args.url` once.
pub async fn probe(args: &ProbeArgs) -> Result<(), ProbeError> {
    let url = &args.url;
    let status_line = tokio::time::timeout(args.timeout, status_line(url))
        .await
        .map_err(|_| ProbeError::Timeout(url.clone()))?
        .map_err(|source| ProbeError::Io {
            url: url.clone(),
            source,
        })?;
    // `HTTP/1.1 200 OK`
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status_line.starts_with("HTTP/") && code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else {
        Err(ProbeError::Status {
            url: url.clone(),
            status_line: status_line.trim_end().chars().take(80).collect(),
        })
    }
}

/// Sends the request and reads the answer's first line.
async fn status_line(url: &HttpUrl) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(&url.authority).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        url.path, url.authority
    );
    stream.write_all(request.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream)
        .take(256)
        .read_line(&mut line)
        .await?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_host_port() {
        let url = HttpUrl::parse(DEFAULT_URL).expect("default");
        assert_eq!(url.to_string(), DEFAULT_URL);
        assert_eq!(HttpUrl::parse("http://[::1]:9464").expect("v6").path, "/");
        for bad in [
            "https://host:9464/readyz",
            "redis://127.0.0.1:6379",
            "http://u:p@host:1/",
            "http://host/readyz",
            "http://host:0/",
            "http://host:1/a b",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
