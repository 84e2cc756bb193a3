//! Fleet-wide pacing of Telegram sends in Redis (the budgets are in `pace.lua`).
//!
//! Keys, all under one hash tag per bot so the script may touch them together in a cluster:
//! `<prefix>:{tg:<bot id>}:chat:<chat id>` (one per chat that got a message in the last
//! interval) and `<prefix>:{tg:<bot id>}:bot` (the last second's sends). Both expire by
//! themselves, so idle chats cost nothing.

use std::sync::LazyLock;
use std::time::Duration;

use paywatch_queue::RedisConn;
use redis::Script;

static PACE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("pace.lua")));

/// The per-bot budget's sliding window.
const BOT_WINDOW_MS: u64 = 1_000;

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// One message per chat per interval.
    Chat,
    /// The bot's messages per second.
    Bot,
}

/// What the pacer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// A slot was reserved in both budgets: send now.
    Go,
    /// Nothing was reserved; try again after this long.
    Wait {
        /// How long until the budget has room.
        after: Duration,
        /// The budget that is full (the one with the longer wait).
        budget: Budget,
    },
}

/// Checks and reserves pacing slots for one bot.
#[derive(Clone)]
pub(crate) struct Pacer {
    redis: RedisConn,
    keys: crate::keys::PacingKeys,
    chat_interval_ms: u64,
    bot_limit: u32,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("keys", &self.keys)
            .field("chat_interval_ms", &self.chat_interval_ms)
            .field("bot_limit", &self.bot_limit)
            .finish_non_exhaustive()
    }
}

impl Pacer {
    /// A pacer for the bot `bot_id` (the public numeric part of its token).
    pub(crate) fn new(
        redis: RedisConn,
        prefix: &str,
        bot_id: &str,
        chat_interval: Duration,
        bot_limit: u32,
    ) -> Self {
        Self {
            redis,
            keys: crate::keys::PacingKeys::new(prefix, bot_id),
            // Whole milliseconds, rounded up so a sub-millisecond interval still paces.
            chat_interval_ms: u64::try_from(chat_interval.as_micros().div_ceil(1_000))
                .unwrap_or(u64::MAX),
            bot_limit,
        }
    }

    /// Reserves a slot for one message to `chat`, or says how long to wait.
    pub(crate) async fn reserve(&self, chat: &str) -> Result<Pace, redis::RedisError> {
        let mut redis = self.redis.clone();
        let (wait_ms, budget): (u64, u8) = PACE
            .key(self.keys.chat(chat))
            .key(self.keys.bot())
            .arg(self.chat_interval_ms)
            .arg(self.bot_limit)
            .arg(BOT_WINDOW_MS)
            .arg(chat)
            .invoke_async(&mut redis)
            .await?;
        if wait_ms == 0 {
            return Ok(Pace::Go);
        }
        Ok(Pace::Wait {
            after: Duration::from_millis(wait_ms),
            budget: if budget == 2 {
                Budget::Bot
            } else {
                Budget::Chat
            },
        })
    }
}
