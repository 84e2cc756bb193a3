//! Fake Telegram Bot API: `sendMessage` (JSON or form-encoded) and `getMe`, with scripted
//! failures for chats `-404` and `-403`, injectable faults and a record of delivered messages.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, FromRequest, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::faults::Terminal;
use crate::listener::Conn;
use crate::providers::{malformed_json, retry_after};
use crate::state::SandboxState;

/// The chat id the fake bot answers "chat not found" for.
pub const CHAT_NOT_FOUND: i64 = -404;
/// The chat id the fake bot answers "bot was blocked by the user" for.
pub const CHAT_BLOCKED: i64 = -403;
/// Telegram's limit on message text length, in characters.
const MAX_TEXT_CHARS: usize = 4096;
const BOT_NAME: &str = "Paywatch Sandbox";
const BOT_USERNAME: &str = "paywatch_sandbox_bot";

/// A chat id as Telegram accepts it: a number or a `@channelusername`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatId {
    /// A numeric chat id (negative for groups and channels).
    Id(i64),
    /// A public channel username such as `@paywatch`.
    Username(String),
}

impl ChatId {
    fn parse(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => n.as_i64().map(ChatId::Id),
            Value::String(s) => Self::parse_str(s),
            _ => None,
        }
    }

    fn parse_str(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Ok(id) = s.parse::<i64>() {
            Some(ChatId::Id(id))
        } else if s.len() > 1 && s.starts_with('@') {
            Some(ChatId::Username(s.to_string()))
        } else {
            None
        }
    }

    fn chat_json(&self) -> Value {
        match self {
            ChatId::Id(id) if *id > 0 => json!({ "id": id, "type": "private" }),
            ChatId::Id(id) if *id <= -1_000_000_000_000 => {
                json!({ "id": id, "type": "supergroup" })
            }
            ChatId::Id(id) => json!({ "id": id, "type": "group" }),
            ChatId::Username(name) => {
                json!({ "id": -1_001_000_000_000_i64, "type": "channel", "username": name.trim_start_matches('@') })
            }
        }
    }
}

/// A message the fake bot accepted, as served by `GET /_admin/telegram/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramMessage {
    /// The id the bot answered with.
    pub message_id: i64,
    /// Where it was sent.
    pub chat_id: ChatId,
    /// Its text, exactly as sent.
    pub text: String,
    /// The `parse_mode` it was sent with, if any.
    pub parse_mode: Option<String>,
    /// When the bot accepted it.
    pub at: DateTime<Utc>,
}

/// Counters for the fake bot's method calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramStats {
    /// Every call received.
    pub requests: u64,
    /// Messages accepted and recorded.
    pub delivered: u64,
    /// Calls answered by an injected fault.
    pub faulted: u64,
    /// Calls with a wrong bot token.
    pub unauthorized: u64,
    /// Calls refused as Telegram would (bad request, unknown or blocked chat, unknown method).
    pub rejected: u64,
}

#[derive(Debug, Default)]
pub(crate) struct TelegramStore {
    pub(crate) faults: crate::faults::FaultList,
    pub(crate) messages: Vec<TelegramMessage>,
    pub(crate) stats: TelegramStats,
    next_message_id: i64,
}

pub(crate) fn routes() -> Router<SandboxState> {
    Router::new().route("/telegram/{bot}/{method}", any(call))
}

#[derive(Debug, Deserialize)]
struct JsonSend {
    chat_id: Option<Value>,
    text: Option<String>,
    parse_mode: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FormSend {
    chat_id: Option<String>,
    text: Option<String>,
    parse_mode: Option<String>,
}

struct SendMessage {
    chat_id: Option<ChatId>,
    chat_id_given: bool,
    text: Option<String>,
    parse_mode: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Counted {
    Delivered,
    Faulted,
    Unauthorized,
    Rejected,
    Neutral,
}

async fn call(
    State(state): State<SandboxState>,
    Path((bot, method)): Path<(String, String)>,
    conn: Conn,
    request: Request,
) -> Response {
    let (counted, response) = handle(&state, &bot, &method, &conn, request).await;
    let mut store = state.store();
    let stats = &mut store.telegram.stats;
    stats.requests += 1;
    match counted {
        Counted::Delivered => stats.delivered += 1,
        Counted::Faulted => stats.faulted += 1,
        Counted::Unauthorized => stats.unauthorized += 1,
        Counted::Rejected => stats.rejected += 1,
        Counted::Neutral => {}
    }
    response
}

async fn handle(
    state: &SandboxState,
    bot: &str,
    method: &str,
    conn: &Conn,
    request: Request,
) -> (Counted, Response) {
    let token = &state.config().credentials.telegram_bot_token;
    if bot.strip_prefix("bot") != Some(token.as_str()) {
        return (
            Counted::Unauthorized,
            error(StatusCode::UNAUTHORIZED, "Unauthorized"),
        );
    }
    let outcome = state.store().telegram.faults.take();
    if !outcome.delay.is_zero() {
        tokio::time::sleep(outcome.delay).await;
    }
    if let Some(fault) = outcome.terminal {
        return (Counted::Faulted, fault_response(fault, conn));
    }
    match method {
        "getMe" => (Counted::Neutral, ok(bot_user(token))),
        "sendMessage" => send_message(state, token, request).await,
        _ => (Counted::Rejected, error(StatusCode::NOT_FOUND, "Not Found")),
    }
}

async fn send_message(state: &SandboxState, token: &str, request: Request) -> (Counted, Response) {
    let msg = match parse_send(state, request).await {
        Ok(msg) => msg,
        Err(description) => return bad_request(&description),
    };
    if !msg.chat_id_given {
        return bad_request("Bad Request: chat_id is empty");
    }
    let Some(text) = msg.text.filter(|t| !t.trim().is_empty()) else {
        return bad_request("Bad Request: message text is empty");
    };
    if text.chars().count() > MAX_TEXT_CHARS {
        return bad_request("Bad Request: message is too long");
    }
    if let Some(mode) = &msg.parse_mode {
        let known = ["HTML", "Markdown", "MarkdownV2"];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(mode)) {
            return bad_request("Bad Request: unsupported parse_mode");
        }
    }
    let chat_id = match msg.chat_id {
        None | Some(ChatId::Id(CHAT_NOT_FOUND)) => {
            return bad_request("Bad Request: chat not found");
        }
        Some(ChatId::Id(CHAT_BLOCKED)) => {
            let forbidden = error(
                StatusCode::FORBIDDEN,
                "Forbidden: bot was blocked by the user",
            );
            return (Counted::Rejected, forbidden);
        }
        Some(chat_id) => chat_id,
    };
    let at = Utc::now();
    let message_id = {
        let mut store = state.store();
        let tg = &mut store.telegram;
        tg.next_message_id += 1;
        tg.messages.push(TelegramMessage {
            message_id: tg.next_message_id,
            chat_id: chat_id.clone(),
            text: text.clone(),
            parse_mode: msg.parse_mode,
            at,
        });
        tg.next_message_id
    };
    tracing::debug!(message_id, "telegram message recorded");
    let result = json!({
        "message_id": message_id,
        "from": bot_user(token),
        "chat": chat_id.chat_json(),
        "date": at.timestamp(),
        "text": text,
    });
    (Counted::Delivered, ok(result))
}

/// Reads the call's parameters; Telegram accepts JSON bodies, form bodies and (for GET) the
/// query string alike.
async fn parse_send(state: &SandboxState, request: Request) -> Result<SendMessage, String> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    // axum's `Form` reads the query string for GET requests, which is what Telegram does too.
    if is_form || request.method() == Method::GET {
        let Form(form) = Form::<FormSend>::from_request(request, state)
            .await
            .map_err(|_| "Bad Request: invalid form body".to_string())?;
        return Ok(SendMessage {
            chat_id_given: form
                .chat_id
                .as_deref()
                .is_some_and(|c| !c.trim().is_empty()),
            chat_id: form.chat_id.as_deref().and_then(ChatId::parse_str),
            text: form.text,
            parse_mode: form.parse_mode.filter(|m| !m.is_empty()),
        });
    }
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|_| "Bad Request: cannot read body".to_string())?;
    let body: JsonSend = serde_json::from_slice(&bytes)
        .map_err(|_| "Bad Request: can't parse JSON object".to_string())?;
    Ok(SendMessage {
        chat_id_given: body
            .chat_id
            .as_ref()
            .is_some_and(|c| !c.is_null() && c.as_str().is_none_or(|s| !s.trim().is_empty())),
        chat_id: body.chat_id.as_ref().and_then(ChatId::parse),
        text: body.text,
        parse_mode: body.parse_mode.filter(|m| !m.is_empty()),
    })
}

fn bot_user(token: &str) -> Value {
    let id = token
        .split_once(':')
        .and_then(|(id, _)| id.parse::<i64>().ok())
        .unwrap_or(0);
    json!({ "id": id, "is_bot": true, "first_name": BOT_NAME, "username": BOT_USERNAME })
}

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

fn error(status: StatusCode, description: &str) -> Response {
    let body = json!({ "ok": false, "error_code": status.as_u16(), "description": description });
    (status, axum::Json(body)).into_response()
}

fn bad_request(description: &str) -> (Counted, Response) {
    (
        Counted::Rejected,
        error(StatusCode::BAD_REQUEST, description),
    )
}

fn fault_response(fault: Terminal, conn: &Conn) -> Response {
    match fault {
        Terminal::Status {
            code,
            retry_after_s,
        } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let retry = retry_after(code, retry_after_s);
            let mut body = json!({ "ok": false, "error_code": code });
            if code == 429 {
                let secs = retry.unwrap_or(1);
                body["description"] = json!(format!("Too Many Requests: retry after {secs}"));
                body["parameters"] = json!({ "retry_after": secs });
            } else {
                body["description"] = json!(status.canonical_reason().unwrap_or("Error"));
            }
            let mut response = (status, axum::Json(body)).into_response();
            if let Some(secs) = retry {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Terminal::Malformed => {
            malformed_json(&json!({ "ok": true, "result": { "message_id": 0 } }))
        }
        Terminal::Drop => conn.drop_response(),
    }
}
