//! Email bodies: a subject, a plain-text body and an HTML body per outcome, built with `format!`.
//!
//! Everything that came from outside paywatch (ids, the provider's raw status and detail, the
//! shop's metadata, delivered codes) is HTML-escaped in the HTML body and stripped of control
//! characters wherever it sits on one line. Delivered codes appear only here, in the bodies.

use std::fmt::Write as _;

use paywatch_core::{Notification, PaymentStatus};

/// One rendered email.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// The subject line.
    pub(crate) subject: String,
    /// The text/plain alternative.
    pub(crate) text: String,
    /// The text/html alternative.
    pub(crate) html: String,
}

// Hand-written so a stray `{:?}` cannot print the bodies, which may hold delivered codes.
impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The words that differ between outcomes.
struct Wording {
    /// Start of the subject, followed by " for order {id}".
    subject: &'static str,
    /// The summary, before the facts table.
    lead: String,
    /// What the reader should do, if anything.
    advice: Option<&'static str>,
}

fn wording(n: &Notification) -> Option<Wording> {
    let order = n.order_id.as_str();
    let provider = n.provider.as_str();
    let wording = match n.status {
        PaymentStatus::Paid => Wording {
            subject: "Payment received",
            lead: format!("The payment for order {order} has been received ({provider})."),
            advice: None,
        },
        PaymentStatus::Failed => Wording {
            subject: "Payment failed",
            lead: format!("{provider} reports that the payment for order {order} failed."),
            advice: None,
        },
        PaymentStatus::Expired => Wording {
            subject: "Payment expired",
            lead: format!("The payment window for order {order} closed without payment."),
            advice: None,
        },
        PaymentStatus::Cancelled => Wording {
            subject: "Payment cancelled",
            lead: format!("The payment for order {order} was cancelled."),
            advice: None,
        },
        // "Unresolved" is not a failure: the provider never gave a final answer.
        PaymentStatus::Unresolved => Wording {
            subject: "Payment unresolved",
            lead: format!(
                "paywatch stopped watching the payment for order {order} before {provider} gave \
                 a final answer. This is not a failure: the payment may still settle."
            ),
            advice: Some(
                "Check the payment manually in the provider's dashboard before acting on this \
                 order.",
            ),
        },
        PaymentStatus::Pending | PaymentStatus::PartiallyPaid | PaymentStatus::Processing => {
            return None;
        }
    };
    Some(wording)
}

/// Renders the email for `n`, or `None` for a status no email announces (not final).
pub(crate) fn render(n: &Notification) -> Option<Rendered> {
    let wording = wording(n)?;
    let order = n.order_id.as_str();
    let subject = if n.status == PaymentStatus::Unresolved {
        format!("{} for order {order}: check manually", wording.subject)
    } else {
        format!("{} for order {order}", wording.subject)
    };
    let facts = facts(n);
    // Codes belong to a paid order only; a stray list on another outcome stays out.
    let codes: &[String] = if n.status == PaymentStatus::Paid {
        &n.delivered_codes
    } else {
        &[]
    };
    let metadata = metadata_text(n);
    Some(Rendered {
        text: text_body(&wording, &facts, codes, metadata.as_deref()),
        html: html_body(&subject, &wording, &facts, codes, metadata.as_deref()),
        subject,
    })
}

/// The label/value rows every email shows, values flattened to one line.
fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Order", one_line(n.order_id.as_str())),
        ("Provider", n.provider.as_str().to_owned()),
        ("Payment id", one_line(n.payment_id.as_str())),
        ("Status", n.status.as_str().to_owned()),
        (
            "Provider status",
            n.raw_status
                .as_deref()
                .map_or_else(|| "-".to_owned(), one_line),
        ),
    ];
    if let Some(detail) = n.detail.as_deref().filter(|d| !d.trim().is_empty()) {
        rows.push(("Detail", one_line(detail)));
    }
    // No time: a transition recorded again after a Redis failover must render the same email
    // (the message's own Date header says when it was sent).
    rows
}

/// The shop's metadata as indented JSON, or `None` when there is none.
fn metadata_text(n: &Notification) -> Option<String> {
    // Indented, with every number as the shop wrote it.
    let metadata = n.metadata.as_ref().filter(|m| m.get() != "null")?;
    Some(metadata.pretty())
}

fn text_body(
    wording: &Wording,
    facts: &[(&'static str, String)],
    codes: &[String],
    metadata: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", wording.lead);
    if let Some(advice) = wording.advice {
        let _ = writeln!(out, "\n{advice}");
    }
    out.push('\n');
    let width = facts
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    for (label, value) in facts {
        let _ = writeln!(out, "{:<width$} {value}", format!("{label}:"));
    }
    if !codes.is_empty() {
        let _ = writeln!(out, "\nDelivered codes:");
        for code in codes {
            let _ = writeln!(out, "  {}", one_line(code));
        }
    }
    if let Some(metadata) = metadata {
        let _ = writeln!(out, "\nMetadata:\n{}", strip_controls(metadata));
    }
    out.push_str("\n-- \nSent by paywatch.\n");
    out
}

fn html_body(
    subject: &str,
    wording: &Wording,
    facts: &[(&'static str, String)],
    codes: &[String],
    metadata: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body style=\"font-family: sans-serif; color: #222;\">\n<p>{}</p>\n",
        escape_html(subject),
        escape_html(&wording.lead),
    );
    if let Some(advice) = wording.advice {
        let _ = writeln!(out, "<p><strong>{}</strong></p>", escape_html(advice));
    }
    out.push_str("<table cellpadding=\"4\" style=\"border-collapse: collapse;\">\n");
    for (label, value) in facts {
        let _ = writeln!(
            out,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape_html(label),
            escape_html(value),
        );
    }
    out.push_str("</table>\n");
    if !codes.is_empty() {
        out.push_str("<p>Delivered codes:</p>\n<ul>\n");
        for code in codes {
            let _ = writeln!(
                out,
                "<li><code>{}</code></li>",
                escape_html(&one_line(code))
            );
        }
        out.push_str("</ul>\n");
    }
    if let Some(metadata) = metadata {
        let _ = writeln!(
            out,
            "<p>Metadata:</p>\n<pre>{}</pre>",
            escape_html(&strip_controls(metadata)),
        );
    }
    out.push_str("<p style=\"color: #888;\">Sent by paywatch.</p>\n</body></html>\n");
    out
}

/// Escapes text for HTML element content and attribute values; also valid for Telegram's HTML
/// parse mode, which accepts these named and numeric entities.
pub(crate) fn escape_html(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

/// `text` on one line: control characters (newlines included) become spaces, so a provider's
/// value cannot forge extra lines in a plain-text body.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` without control characters other than newlines (for indented JSON).
fn strip_controls(text: &str) -> String {
    text.chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use paywatch_core::{Channel, OrderId, PaymentId, Provider};

    use super::*;

    fn notification(status: PaymentStatus) -> Notification {
        Notification {
            order_id: OrderId::new("order-<1>").unwrap(),
            status,
            channel: Channel::Email,
            target: "shop@example.com".into(),
            provider: Provider::FoxReload,
            payment_id: PaymentId::new("fr-9&9").unwrap(),
            raw_status: Some("completed\r\nBcc: evil@example.com".into()),
            detail: None,
            metadata: Some(
                paywatch_core::Metadata::from_value(
                    &serde_json::json!({"note": "<script>alert(1)</script>"}),
                )
                .unwrap(),
            ),
            delivered_codes: vec!["CODE-<A>".into(), "CODE-B".into()],
            occurred_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
            traceparent: None,
        }
    }

    #[test]
    fn paid_lists_codes_and_escapes_html() {
        let r = render(&notification(PaymentStatus::Paid)).unwrap();
        assert_eq!(r.subject, "Payment received for order order-<1>");
        assert!(r.text.contains("CODE-<A>"), "{}", r.text);
        assert!(r.html.contains("<code>CODE-&lt;A&gt;</code>"), "{}", r.html);
        assert!(r.html.contains("order-&lt;1&gt;"));
        assert!(r.html.contains("fr-9&amp;9"));
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;"));
        // No time in the content: the same transition recorded later renders the same email.
        let mut later = notification(PaymentStatus::Paid);
        later.occurred_at += chrono::Duration::seconds(61);
        assert_eq!(render(&later), Some(r));
    }

    #[test]
    fn raw_status_cannot_add_lines() {
        let r = render(&notification(PaymentStatus::Paid)).unwrap();
        assert!(
            r.text
                .lines()
                .any(|l| l.starts_with("Provider status:") && l.contains("Bcc:")),
            "{}",
            r.text
        );
        assert!(!r.text.lines().any(|l| l.starts_with("Bcc:")));
    }

    #[test]
    fn codes_only_for_paid() {
        for status in [
            PaymentStatus::Failed,
            PaymentStatus::Expired,
            PaymentStatus::Cancelled,
            PaymentStatus::Unresolved,
        ] {
            let r = render(&notification(status)).unwrap();
            assert!(!r.text.contains("CODE-B"), "{status}: {}", r.text);
            assert!(!r.html.contains("CODE-B"), "{status}");
        }
    }

    #[test]
    fn every_final_status_has_its_subject() {
        let subject = |s| render(&notification(s)).unwrap().subject;
        assert_eq!(
            subject(PaymentStatus::Failed),
            "Payment failed for order order-<1>"
        );
        assert_eq!(
            subject(PaymentStatus::Expired),
            "Payment expired for order order-<1>"
        );
        assert_eq!(
            subject(PaymentStatus::Cancelled),
            "Payment cancelled for order order-<1>"
        );
        assert_eq!(
            subject(PaymentStatus::Unresolved),
            "Payment unresolved for order order-<1>: check manually"
        );
    }

    #[test]
    fn unresolved_says_it_may_still_settle() {
        let r = render(&notification(PaymentStatus::Unresolved)).unwrap();
        assert!(r.text.contains("may still settle"), "{}", r.text);
        assert!(r.text.contains("manually"));
        assert!(!r.text.to_lowercase().contains("failed"), "{}", r.text);
    }

    #[test]
    fn open_statuses_have_no_email() {
        for status in [
            PaymentStatus::Pending,
            PaymentStatus::PartiallyPaid,
            PaymentStatus::Processing,
        ] {
            assert!(render(&notification(status)).is_none(), "{status}");
        }
    }

    #[test]
    fn debug_leaves_out_the_bodies() {
        let r = render(&notification(PaymentStatus::Paid)).unwrap();
        assert!(!format!("{r:?}").contains("CODE-B"));
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }
}
