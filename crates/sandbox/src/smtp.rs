//! A local SMTP server that accepts mail and keeps what a mail client would see, for the email
//! tests and the demo. The SMTP protocol (commands, replies, AUTH PLAIN/LOGIN, dot-unstuffing)
//! is the `mailin` crate's state machine; messages are parsed with `mail-parser`. This module
//! only moves lines between a tokio socket and the session, and scripts failures:
//!
//! - `reject`: `RCPT TO` for these addresses gets `550 5.1.1 <ADDR>: mailbox unavailable`;
//! - `tempfail`: `RCPT TO` for these addresses gets `451 4.3.0 try again later` N times;
//! - `auth`: AUTH (PLAIN or LOGIN, allowed without TLS: tests have no certificates) is required
//!   with these credentials; a wrong password gets `535`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use mail_parser::{MessageParser, MimeHeaders};
use mailin::response::{AUTH_OK, INVALID_CREDENTIALS, OK};
use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The longest command or message line accepted (RFC 5321 allows 1000 bytes; some slack).
const MAX_LINE: u64 = 64 * 1024;

/// How the sink behaves: which recipients fail and whether AUTH is required.
#[derive(Clone, Default)]
pub struct SmtpSinkConfig {
    /// Recipients answered with a permanent `550`.
    pub reject: HashSet<String>,
    /// Recipients answered with a transient `451` this many times before they are accepted.
    pub tempfail: HashMap<String, u32>,
    /// Required credentials (user, password); `None` accepts mail without AUTH.
    pub auth: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSinkConfig")
            .field("reject", &self.reject)
            .field("tempfail", &self.tempfail)
            .field(
                "auth",
                &self.auth.as_ref().map(|(user, _)| (user, "<redacted>")),
            )
            .finish()
    }
}

/// One accepted message, as a mail client would see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients that were accepted (`RCPT TO`).
    pub rcpt_tos: Vec<String>,
    /// The top-level MIME type, e.g. `multipart/alternative`.
    pub content_type: String,
    /// Headers by lower-case name, decoded (RFC 2047) and unfolded; the last one of a name wins.
    pub headers: BTreeMap<String, String>,
    /// Every leaf MIME part, in order, with its transfer encoding undone.
    pub parts: Vec<MailPart>,
    /// When the sink accepted the message (the end of `DATA`).
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// One leaf part of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailPart {
    /// Its MIME type, e.g. `text/plain`.
    pub content_type: String,
    /// Its decoded text (binary parts are decoded lossily).
    pub body: String,
}

#[derive(Debug, Default)]
struct Shared {
    tempfail: HashMap<String, u32>,
    messages: Vec<ReceivedMail>,
}

/// A running SMTP sink; stops (with its open sessions) when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Binds `addr` (port 0 for any free port) and starts accepting connections.
    pub async fn start(config: SmtpSinkConfig, addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            tempfail: config.tempfail.clone(),
            messages: Vec::new(),
        }));
        let mut builder = SessionBuilder::new("paywatch-sandbox");
        if config.auth.is_some() {
            builder
                .enable_auth(AuthMechanism::Plain)
                .enable_auth(AuthMechanism::Login)
                .insecure_enable_plaintext_auth();
        }
        let handler = SinkHandler {
            config: Arc::new(config),
            shared: shared.clone(),
            envelope: None,
            data: Vec::new(),
        };
        let task = tokio::spawn(accept(listener, builder, handler));
        Ok(Self { addr, shared, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL for `SMTP_URL` (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The messages accepted so far, oldest first. A message is recorded before the server
    /// answers `250` to its data, so a client that saw success finds it here.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.shared).messages.clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every open session.
        self.task.abort();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept(listener: TcpListener, builder: SessionBuilder, handler: SinkHandler) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // Out of descriptors and the like: do not spin on a failing accept.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let session = builder.build(peer.ip(), handler.clone());
                sessions.spawn(async move {
                    if let Err(e) = serve(stream, session).await {
                        tracing::debug!(error = %e, "smtp sink session ended with an error");
                    }
                });
            }
            // Reap finished sessions so the set does not grow without bound.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, mut session: mailin::Session<SinkHandler>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        let n = (&mut read)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let response = session.process(&line);
        match response.action {
            Action::Reply => write.write_all(&response.buffer()?).await?,
            Action::Close => {
                write.write_all(&response.buffer()?).await?;
                return Ok(());
            }
            // STARTTLS is never advertised, so a client asking for it gets a refusal.
            Action::UpgradeTls => {
                write.write_all(b"454 4.7.0 TLS not available\r\n").await?;
            }
            Action::NoReply => {}
        }
    }
}

/// The per-session protocol callbacks (mailin clones one per connection).
#[derive(Clone)]
struct SinkHandler {
    config: Arc<SmtpSinkConfig>,
    shared: Arc<Mutex<Shared>>,
    envelope: Option<(String, Vec<String>)>,
    data: Vec<u8>,
}

impl SinkHandler {
    fn check_credentials(&self, user: &str, password: &str) -> Response {
        match &self.config.auth {
            Some((u, p)) if u == user && p == password => AUTH_OK,
            _ => INVALID_CREDENTIALS,
        }
    }
}

impl Handler for SinkHandler {
    fn rcpt(&mut self, to: &str) -> Response {
        if self.config.reject.contains(to) {
            return Response::custom(550, format!("5.1.1 <{to}>: mailbox unavailable"));
        }
        let mut shared = lock(&self.shared);
        if let Some(left) = shared.tempfail.get_mut(to)
            && *left > 0
        {
            *left -= 1;
            return Response::custom(451, "4.3.0 try again later".to_owned());
        }
        OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.envelope = Some((from.to_owned(), to.to_vec()));
        self.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let (mail_from, rcpt_tos) = self.envelope.take().unwrap_or_default();
        let Some(mail) = parse(mail_from, rcpt_tos, &self.data) else {
            return Response::custom(554, "5.6.0 message does not parse".to_owned());
        };
        self.data.clear();
        lock(&self.shared).messages.push(mail);
        Response::custom(250, "2.0.0 OK: queued".to_owned())
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.check_credentials(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.check_credentials(user, password)
    }
}

fn mime_type(ct: Option<&mail_parser::ContentType<'_>>) -> String {
    match ct {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_owned(),
    }
}

fn parse(mail_from: String, rcpt_tos: Vec<String>, raw: &[u8]) -> Option<ReceivedMail> {
    let message = MessageParser::default().parse(raw)?;
    let root = message.root_part();
    let mut headers = BTreeMap::new();
    for header in root.headers() {
        let raw_value = &raw[header.offset_start as usize..header.offset_end as usize];
        let raw_value = String::from_utf8_lossy(raw_value);
        // As written (unfolded), except encoded words (RFC 2047), which a client shows decoded.
        let value = match header.value.as_text() {
            Some(text) if raw_value.contains("=?") => text.to_owned(),
            _ => raw_value.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        headers.insert(header.name.as_str().to_ascii_lowercase(), value);
    }
    let parts = message
        .parts
        .iter()
        .filter(|part| !part.is_multipart())
        .map(|part| MailPart {
            content_type: mime_type(part.content_type()),
            body: part
                .text_contents()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(part.contents()).into_owned()),
        })
        .collect();
    Some(ReceivedMail {
        mail_from,
        rcpt_tos,
        content_type: mime_type(root.content_type()),
        headers,
        parts,
        received_at: chrono::Utc::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_that_is_not_mime_still_records_its_text() {
        let mail = parse(
            "a@x".into(),
            vec!["b@y".into()],
            b"Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: A <a@x>\r\n\r\nhello\r\n",
        )
        .expect("parses");
        assert_eq!(mail.headers["subject"], "café");
        assert_eq!(mail.headers["from"], "A <a@x>");
        assert_eq!(mail.rcpt_tos, ["b@y"]);
        assert_eq!(mail.content_type, "text/plain");
        assert_eq!(mail.parts[0].body.trim(), "hello");
    }

    #[test]
    fn debug_hides_the_password() {
        let config = SmtpSinkConfig {
            auth: Some(("mailer".into(), "pa55word-xyz".into())),
            ..SmtpSinkConfig::default()
        };
        assert!(!format!("{config:?}").contains("pa55word-xyz"));
    }
}
