//! The email channel: one multipart (text + HTML) message per notification over SMTP.
//!
//! The transport comes from one `SMTP_URL` (see [`EmailConfig::smtp_url`] for the accepted
//! forms) and is lettre's async SMTP client, one connection per email. The URL's password is
//! never logged or returned: errors and `Debug` output name the server as `host:port` only.
//!
//! Why no connection pool: lettre's async client only times out connecting, not waiting for a
//! reply, so a stuck server is cut off by dropping the whole send after
//! [`EmailConfig::timeout`]. Dropping closes an unpooled connection; a pooled one would be
//! parked mid-dialogue and answer the next email with the stale reply.
//!
//! SMTP replies are classified as the server meant them: a 4xx reply (greylisting, a full queue)
//! is [`DeliveryError::Transient`], a 5xx rejection is [`DeliveryError::Permanent`], both with the
//! server's code and text; connection failures and timeouts are transient.

pub(crate) mod templates;

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use lettre::error::Error as EmailError;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder, MultiPart, SinglePart};
use lettre::transport::smtp;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use paywatch_core::Notification;
use paywatch_core::secret::REDACTED;
use sha2::{Digest, Sha256};
use url::Url;

use super::DeliveryError;

/// Plain SMTP port, used by `smtp://` without `tls`.
const SMTP_PORT: u16 = 25;
/// Submission port, the default for `smtp://…?tls=required|opportunistic` (STARTTLS).
const SUBMISSION_PORT: u16 = 587;
/// Submissions port, the default for `smtps://` (TLS from the first byte).
const SUBMISSIONS_PORT: u16 = 465;

/// How to reach the SMTP server and whom the emails are from.
#[derive(Clone)]
pub struct EmailConfig {
    /// The SMTP server, as one URL (`SMTP_URL`). Accepted forms:
    ///
    /// - `smtp://host[:port]`: plain SMTP, no TLS at all (port 25); for local sinks only.
    /// - `smtp://host[:port]?tls=required`: STARTTLS, refusing to go on without it (port 587).
    /// - `smtp://host[:port]?tls=opportunistic`: STARTTLS when the server offers it (port 587).
    /// - `smtps://host[:port]`: implicit TLS from the first byte (port 465).
    ///
    /// Any form may carry `user:password@` before the host (percent-encoded; both parts are
    /// decoded) and a path naming the EHLO host (`smtps://mail.example.com/worker-1.example.com`).
    /// Certificates are checked against the Mozilla roots (webpki-roots).
    pub smtp_url: String,
    /// The `From` mailbox (`Shop <shop@example.com>` or `shop@example.com`).
    pub from: String,
    /// An optional `Reply-To` mailbox.
    pub reply_to: Option<String>,
    /// Limit for one whole delivery: connecting, TLS, the SMTP dialogue and `QUIT`.
    pub timeout: Duration,
}

// Hand-written: the URL may hold a password.
impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = Url::parse(&self.smtp_url)
            .ok()
            .and_then(|url| endpoint_of(&url).ok())
            .unwrap_or_else(|| REDACTED.to_owned());
        f.debug_struct("EmailConfig")
            .field("smtp_server", &server)
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why an [`EmailSender`] could not be built. Never contains the URL's credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailConfigError {
    /// `SMTP_URL` does not parse as a URL.
    #[error("SMTP_URL is not a valid URL: {0}")]
    InvalidUrl(#[from] url::ParseError),
    /// `SMTP_URL` has a scheme other than `smtp` or `smtps`.
    #[error("SMTP_URL scheme {0:?} is not supported; use smtp:// or smtps://")]
    UnsupportedScheme(String),
    /// `SMTP_URL` names no host.
    #[error("SMTP_URL names no host")]
    MissingHost,
    /// `SMTP_URL` has a query parameter other than `tls`, or `tls` with an unknown value.
    #[error("SMTP_URL for {server}: {problem}")]
    InvalidParameter {
        /// The server, as `host:port`.
        server: String,
        /// What is wrong with the parameters.
        problem: String,
    },
    /// `SMTP_URL` has credentials that cannot be used.
    #[error("SMTP_URL for {server}: {problem}")]
    InvalidCredentials {
        /// The server, as `host:port`.
        server: String,
        /// What is wrong (never the credentials themselves).
        problem: &'static str,
    },
    /// `from` or `reply_to` is not a mailbox.
    #[error("{field} is not a valid mailbox: {reason}")]
    InvalidMailbox {
        /// `"from"` or `"reply_to"`.
        field: &'static str,
        /// Why it does not parse.
        reason: String,
    },
    /// lettre refused to set up the transport (for example a host that is no valid TLS name).
    #[error("cannot set up the SMTP transport for {server}: {reason}")]
    Transport {
        /// The server, as `host:port`.
        server: String,
        /// lettre's reason.
        reason: String,
    },
}

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS (`smtp://host`).
    Plain,
    /// STARTTLS, required (`smtp://host?tls=required`).
    StartTlsRequired,
    /// STARTTLS when offered (`smtp://host?tls=opportunistic`).
    StartTlsOpportunistic,
    /// TLS from the first byte (`smtps://host`).
    ImplicitTls,
}

/// Sends notification emails through one SMTP server.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    server: String,
    security: SmtpSecurity,
    timeout: Duration,
    /// The decoded and the raw (percent-encoded) password, scrubbed from every error message in
    /// case a server or library echoes them.
    scrub: Vec<String>,
}

impl fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailSender")
            .field("server", &self.server)
            .field("security", &self.security)
            .field("timeout", &self.timeout)
            .field("from", &self.from.to_string())
            .field("reply_to", &self.reply_to.as_ref().map(ToString::to_string))
            .finish_non_exhaustive()
    }
}

impl EmailSender {
    /// Validates `config` and sets up the (lazily connecting) SMTP transport.
    pub fn new(config: EmailConfig) -> Result<Self, EmailConfigError> {
        let parsed = ParsedUrl::parse(&config.smtp_url)?;
        let from = parse_mailbox("from", &config.from)?;
        let reply_to = config
            .reply_to
            .as_deref()
            .map(|r| parse_mailbox("reply_to", r))
            .transpose()?;
        let transport_error = |e: smtp::Error| EmailConfigError::Transport {
            server: parsed.server.clone(),
            reason: scrub(&e.to_string(), &parsed.scrub),
        };
        // lettre's own URL reader covers every accepted form; `ParsedUrl` only validated it
        // first so that mistakes get precise messages without the URL in them.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(transport_error)?
            .timeout(Some(config.timeout))
            .build();
        Ok(Self {
            transport,
            from,
            reply_to,
            server: parsed.server,
            security: parsed.security,
            timeout: config.timeout,
            scrub: parsed.scrub,
        })
    }

    /// The SMTP server as `host:port` (safe to log).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How the connection to the server is secured.
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// Sends the email announcing `n` to `n.target`.
    ///
    /// An invalid recipient address or a status no email announces is
    /// [`DeliveryError::Permanent`]; SMTP failures are classified as described in the module
    /// docs.
    pub async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let to = recipient(&n.target)?;
        let Some(rendered) = templates::render(n) else {
            return Err(DeliveryError::Permanent(format!(
                "no email announces the non-final status {}",
                n.status
            )));
        };
        let message = self
            .headers(to, rendered.subject, n.identity().as_bytes())
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ));
        self.transmit(message).await?;
        tracing::debug!(order_id = %n.order_id, status = %n.status, server = %self.server, "email accepted");
        Ok(())
    }

    /// Sends a plain-text email to `target` (the ops digest); classified like [`send`](Self::send).
    pub async fn send_text(
        &self,
        target: &str,
        subject: &str,
        text: &str,
    ) -> Result<(), DeliveryError> {
        let to = recipient(target)?;
        let subject = templates::one_line(subject);
        // The same digest resent after a failure keeps its Message-ID.
        let seed = [target.as_bytes(), subject.as_bytes(), text.as_bytes()].join(&0u8);
        let message = self
            .headers(to, subject, &seed)
            .singlepart(SinglePart::plain(text.to_owned()));
        self.transmit(message).await?;
        tracing::debug!(server = %self.server, "text email accepted");
        Ok(())
    }

    /// The headers every email carries; `id_seed` determines the Message-ID.
    fn headers(&self, to: Mailbox, subject: String, id_seed: &[u8]) -> MessageBuilder {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id(id_seed, &self.from)))
            .header(AutoSubmitted);
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        builder
    }

    async fn transmit(&self, message: Result<Message, EmailError>) -> Result<(), DeliveryError> {
        // Only a bug (a missing From) fails to build; such a message could never be sent.
        let message = message
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the email: {e}")))?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(err)) => Err(self.classify(&err)),
            // Dropping the send closed the connection. If the server had already taken the
            // message, the retry is a duplicate with the same Message-ID.
            Err(_elapsed) => Err(DeliveryError::Transient(format!(
                "SMTP server {} timed out after {:?}",
                self.server, self.timeout
            ))),
        }
    }

    fn classify(&self, err: &smtp::Error) -> DeliveryError {
        let server = &self.server;
        if let Some(code) = err.status() {
            // lettre keeps the server's reply text as the error's source.
            let reply = err.source().map(|s| s.to_string()).unwrap_or_default();
            let reply = scrub(&templates::one_line(reply.trim()), &self.scrub);
            let message = format!("SMTP server {server} answered {code} {reply}");
            if err.is_permanent() {
                return DeliveryError::Permanent(message);
            }
            return DeliveryError::Transient(message);
        }
        let what = if err.is_timeout() {
            format!("SMTP server {server} timed out")
        } else {
            format!("SMTP server {server}: {err}")
        };
        // Everything else (connection refused or reset, TLS handshake, garbled replies) may
        // heal; the queue's backoff and attempt limit decide when to give up.
        DeliveryError::Transient(scrub(&templates::one_line(&what), &self.scrub))
    }
}

/// What `SMTP_URL` says, validated.
struct ParsedUrl {
    server: String,
    security: SmtpSecurity,
    scrub: Vec<String>,
}

impl ParsedUrl {
    fn parse(raw: &str) -> Result<Self, EmailConfigError> {
        let url = Url::parse(raw.trim())?;
        let server = endpoint_of(&url)?;
        let mut tls = None;
        for (name, value) in url.query_pairs() {
            if name != "tls" {
                return Err(EmailConfigError::InvalidParameter {
                    server,
                    problem: format!("unknown parameter {name:?} (only `tls` is understood)"),
                });
            }
            tls = Some(value.into_owned());
        }
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => SmtpSecurity::Plain,
            ("smtp", Some("required")) => SmtpSecurity::StartTlsRequired,
            ("smtp", Some("opportunistic")) => SmtpSecurity::StartTlsOpportunistic,
            ("smtps", None) => SmtpSecurity::ImplicitTls,
            ("smtps", Some(_)) => {
                return Err(EmailConfigError::InvalidParameter {
                    server,
                    problem: "smtps:// is always TLS; drop the `tls` parameter".to_owned(),
                });
            }
            (_, Some(_)) => {
                return Err(EmailConfigError::InvalidParameter {
                    server,
                    problem: "tls must be `required` or `opportunistic`".to_owned(),
                });
            }
            // `endpoint_of` already refused other schemes.
            (scheme, None) => return Err(EmailConfigError::UnsupportedScheme(scheme.to_owned())),
        };
        let mut scrub = Vec::new();
        match url.password() {
            Some(password) => {
                // Decoded here only to know what to scrub; lettre decodes it again itself.
                let decoded = percent_decode(password).ok_or_else(|| {
                    EmailConfigError::InvalidCredentials {
                        server: server.clone(),
                        problem: "the password is not valid UTF-8 once percent-decoded",
                    }
                })?;
                if percent_decode(url.username()).is_none() {
                    return Err(EmailConfigError::InvalidCredentials {
                        server,
                        problem: "the user name is not valid UTF-8 once percent-decoded",
                    });
                }
                scrub.push(decoded);
                scrub.push(password.to_owned());
            }
            // lettre would silently ignore a user without a password.
            None if !url.username().is_empty() => {
                return Err(EmailConfigError::InvalidCredentials {
                    server,
                    problem: "a user name without a password (write user:password@host)",
                });
            }
            None => {}
        }
        Ok(Self {
            server,
            security,
            scrub,
        })
    }
}

/// `host:port` of an SMTP URL, with the port its scheme and `tls` parameter imply.
fn endpoint_of(url: &Url) -> Result<String, EmailConfigError> {
    let scheme = url.scheme();
    let default_port = match scheme {
        "smtps" => SUBMISSIONS_PORT,
        "smtp" if url.query_pairs().any(|(k, _)| k == "tls") => SUBMISSION_PORT,
        "smtp" => SMTP_PORT,
        other => return Err(EmailConfigError::UnsupportedScheme(other.to_owned())),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(EmailConfigError::MissingHost)?;
    Ok(format!("{host}:{}", url.port().unwrap_or(default_port)))
}

fn percent_decode(text: &str) -> Option<String> {
    let hex = |b: &u8| char::from(*b).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            )
            && let Ok(byte) = u8::try_from(high * 16 + low)
        {
            out.push(byte);
            i += 3;
        } else {
            // A `%` not followed by two hex digits stays as it is, like lettre's decoder.
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_mailbox(field: &'static str, value: &str) -> Result<Mailbox, EmailConfigError> {
    value
        .trim()
        .parse()
        .map_err(
            |e: lettre::address::AddressError| EmailConfigError::InvalidMailbox {
                field,
                reason: e.to_string(),
            },
        )
}

/// Replaces every non-trivial `secret` in `text` with `[redacted]`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        // One or two characters would redact half a sentence and hide nothing.
        if secret.len() >= 3 {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
}

/// The recipient mailbox; an unparsable address is permanent.
fn recipient(target: &str) -> Result<Mailbox, DeliveryError> {
    // The same rule the submit function applied: an address it accepted is never refused here.
    if let Some(problem) = paywatch_core::targets::email_problem(target) {
        return Err(DeliveryError::Permanent(format!(
            "invalid recipient address: it {problem}"
        )));
    }
    target.parse().map_err(|e| {
        DeliveryError::Permanent(format!(
            "invalid recipient address {:?}: {e}",
            templates::one_line(target)
                .chars()
                .take(254)
                .collect::<String>()
        ))
    })
}

/// A Message-ID that is the same on every attempt for one email, so a retry after an ambiguous
/// failure (a timeout after DATA) lets mail clients fold the duplicate.
fn message_id(seed: &[u8], from: &Mailbox) -> String {
    let digest = Sha256::digest(seed);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<paywatch.{hex}@{}>", from.email.domain())
}

/// `Auto-Submitted: auto-generated` (RFC 3834): asks vacation responders not to answer.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> EmailConfig {
        EmailConfig {
            smtp_url: url.to_owned(),
            from: "Shop <shop@example.com>".to_owned(),
            reply_to: Some("support@example.com".to_owned()),
            timeout: Duration::from_secs(5),
        }
    }

    fn build(url: &str) -> Result<EmailSender, EmailConfigError> {
        EmailSender::new(config(url))
    }

    #[tokio::test]
    async fn accepted_url_forms() {
        let cases = [
            (
                "smtp://127.0.0.1:2525",
                "127.0.0.1:2525",
                SmtpSecurity::Plain,
            ),
            ("smtp://localhost", "localhost:25", SmtpSecurity::Plain),
            (
                "smtp://mail.example.com?tls=required",
                "mail.example.com:587",
                SmtpSecurity::StartTlsRequired,
            ),
            (
                "smtp://mail.example.com:2587?tls=opportunistic",
                "mail.example.com:2587",
                SmtpSecurity::StartTlsOpportunistic,
            ),
            (
                "smtps://mail.example.com",
                "mail.example.com:465",
                SmtpSecurity::ImplicitTls,
            ),
            (
                "smtps://user%40example.com:p%40ss@mail.example.com:4650/helo.example.com",
                "mail.example.com:4650",
                SmtpSecurity::ImplicitTls,
            ),
        ];
        for (url, server, security) in cases {
            let sender = build(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(sender.server(), server, "{url}");
            assert_eq!(sender.security(), security, "{url}");
        }
    }

    #[tokio::test]
    async fn rejected_urls_never_show_the_password() {
        let cases = [
            "http://user:hunter22@mail.example.com",
            "smtp://user:hunter22@mail.example.com?tls=maybe",
            "smtps://user:hunter22@mail.example.com?tls=required",
            "smtp://user:hunter22@mail.example.com?starttls=1",
            "smtp://user:hunter22%ff@mail.example.com",
            "smtp://user@mail.example.com",
            "smtp://user:hunter22@",
            "not a url hunter22",
        ];
        for url in cases {
            let err = build(url).expect_err(url);
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("hunter22"), "{url}: {shown}");
        }
    }

    #[tokio::test]
    async fn url_errors_are_precise() {
        assert!(matches!(
            build("http://mail.example.com"),
            Err(EmailConfigError::UnsupportedScheme(s)) if s == "http"
        ));
        assert!(matches!(
            build("smtp://mail.example.com?tls=maybe"),
            Err(EmailConfigError::InvalidParameter { server, .. }) if server == "mail.example.com:587"
        ));
        assert!(matches!(
            build("smtp://user@mail.example.com"),
            Err(EmailConfigError::InvalidCredentials { .. })
        ));
    }

    #[tokio::test]
    async fn mailboxes_are_validated_by_field() {
        let mut bad_from = config("smtp://127.0.0.1:2525");
        bad_from.from = "not an address".to_owned();
        assert!(matches!(
            EmailSender::new(bad_from),
            Err(EmailConfigError::InvalidMailbox { field: "from", .. })
        ));
        let mut bad_reply = config("smtp://127.0.0.1:2525");
        bad_reply.reply_to = Some("@example.com".to_owned());
        let err = EmailSender::new(bad_reply).unwrap_err();
        assert!(matches!(
            err,
            EmailConfigError::InvalidMailbox {
                field: "reply_to",
                ..
            }
        ));
        assert!(err.to_string().starts_with("reply_to"), "{err}");
    }

    #[tokio::test]
    async fn debug_output_hides_the_password() {
        let config = config("smtp://user:hunter22@mail.example.com:2525");
        assert!(!format!("{config:?}").contains("hunter22"));
        assert!(format!("{config:?}").contains("mail.example.com:2525"));
        let sender = EmailSender::new(config).unwrap();
        assert!(!format!("{sender:?}").contains("hunter22"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("p%40ss%3Aw0rd").as_deref(),
            Some("p@ss:w0rd")
        );
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn scrub_replaces_secrets() {
        let secrets = vec!["p@ss:w0rd".to_owned(), "p%40ss%3Aw0rd".to_owned()];
        assert_eq!(
            scrub("auth p@ss:w0rd and p%40ss%3Aw0rd", &secrets),
            "auth [redacted] and [redacted]"
        );
    }
}
