//! Telegram message texts: a few lines per outcome in Telegram's HTML parse mode.
//!
//! Every value that came from outside is escaped. Delivered codes never appear (a paid order
//! with codes says they went by email), and the shop's metadata is left to the email: a chat
//! message stays short and holds nothing secret.

use std::fmt::Write as _;

use paywatch_core::{Notification, PaymentStatus};

use crate::notify::email::templates::{escape_html, one_line};

/// Provider detail longer than this many characters is cut (Telegram caps a message at 4096).
const MAX_DETAIL_CHARS: usize = 300;

/// Telegram's limit on a message, in characters after entity parsing.
const MAX_MESSAGE_CHARS: usize = 4096;

/// `text` cut to fit one message (before escaping: Telegram counts the parsed text).
pub(crate) fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The message text for `n`, or `None` for a status no message announces (not final).
pub(crate) fn render(n: &Notification) -> Option<String> {
    let headline = match n.status {
        PaymentStatus::Paid => "✅ <b>Payment received</b>",
        PaymentStatus::Failed => "❌ <b>Payment failed</b>",
        PaymentStatus::Expired => "⌛ <b>Payment expired</b>",
        PaymentStatus::Cancelled => "🚫 <b>Payment cancelled</b>",
        PaymentStatus::Unresolved => "⚠️ <b>Payment unresolved</b>",
        PaymentStatus::Pending | PaymentStatus::PartiallyPaid | PaymentStatus::Processing => {
            return None;
        }
    };
    let mut text = String::new();
    let _ = writeln!(text, "{headline}");
    if n.status == PaymentStatus::Unresolved {
        // Not a failure: say so, and say what to do.
        text.push_str(
            "paywatch stopped watching; the payment may still settle. Check it manually.\n",
        );
    }
    let _ = writeln!(
        text,
        "Order <code>{}</code> · {}",
        escape_html(n.order_id.as_str()),
        n.provider
    );
    let raw = n
        .raw_status
        .as_deref()
        .map(|raw| format!(" ({})", escape_html(&one_line(raw))))
        .unwrap_or_default();
    let _ = writeln!(
        text,
        "Payment <code>{}</code>{raw}",
        escape_html(n.payment_id.as_str())
    );
    if let Some(detail) = n.detail.as_deref().filter(|d| !d.trim().is_empty()) {
        let mut detail: String = one_line(detail).chars().take(MAX_DETAIL_CHARS).collect();
        if detail.chars().count() == MAX_DETAIL_CHARS {
            detail.push('…');
        }
        let _ = writeln!(text, "{}", escape_html(&detail));
    }
    // No time: a transition recorded again after a Redis failover must read the same (Telegram
    // shows when each message arrived).
    text.pop();
    // Delivered codes are a secret for the buyer: chats are shared, forwarded and synced to every
    // device, so they go only to the email and the signed webhook (docs/notifications.md).
    if n.status == PaymentStatus::Paid && !n.delivered_codes.is_empty() {
        text.push_str("\nYour codes were sent by email.");
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use paywatch_core::{Channel, OrderId, PaymentId, Provider};

    use super::*;

    fn notification(status: PaymentStatus) -> Notification {
        Notification {
            order_id: OrderId::new("ORD<&>").unwrap(),
            status,
            channel: Channel::Telegram,
            target: "42".into(),
            provider: Provider::FoxReload,
            payment_id: PaymentId::new("p-1").unwrap(),
            raw_status: Some("<done>".into()),
            detail: Some("x".repeat(500)),
            metadata: None,
            delivered_codes: vec!["A<1>".into()],
            occurred_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
            traceparent: None,
        }
    }

    #[test]
    fn paid_is_escaped_and_keeps_codes_out_of_the_chat() {
        let text = render(&notification(PaymentStatus::Paid)).unwrap();
        assert!(text.starts_with("✅ <b>Payment received</b>\n"), "{text}");
        assert!(
            text.contains("Order <code>ORD&lt;&amp;&gt;</code> · foxreload"),
            "{text}"
        );
        assert!(
            text.contains("Payment <code>p-1</code> (&lt;done&gt;)"),
            "{text}"
        );
        // No time in the text: the same transition recorded later reads the same.
        let mut later = notification(PaymentStatus::Paid);
        later.occurred_at += chrono::Duration::seconds(61);
        assert_eq!(render(&later).as_deref(), Some(text.as_str()));
        assert!(
            !text.contains("A&lt;1") && !text.contains("A<1"),
            "no codes in chats: {text}"
        );
        assert!(text.ends_with("Your codes were sent by email."), "{text}");
        assert!(text.contains(&format!("{}…", "x".repeat(MAX_DETAIL_CHARS))));
        assert!(!text.contains(&"x".repeat(MAX_DETAIL_CHARS + 1)));
    }

    #[test]
    fn other_outcomes_have_no_codes() {
        for status in [
            PaymentStatus::Failed,
            PaymentStatus::Expired,
            PaymentStatus::Cancelled,
            PaymentStatus::Unresolved,
        ] {
            let text = render(&notification(status)).unwrap();
            assert!(!text.contains("A&lt;1"), "{status}: {text}");
        }
        let unresolved = render(&notification(PaymentStatus::Unresolved)).unwrap();
        assert!(unresolved.contains("may still settle"), "{unresolved}");
    }

    #[test]
    fn long_text_is_cut_to_the_limit() {
        assert_eq!(truncate("short"), "short");
        let cut = truncate(&"é".repeat(5000));
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn open_statuses_have_no_message() {
        assert!(render(&notification(PaymentStatus::Processing)).is_none());
    }
}
