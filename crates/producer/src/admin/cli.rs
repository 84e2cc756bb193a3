//! `paywatch-producer admin …`: the operator's command line. Tables for people by default,
//! `--json` (the API's bodies) for scripts. Text that came from outside (reasons, ids, payloads)
//! is printed with control characters escaped, so nothing in a dead letter can drive the
//! operator's terminal.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::model::{DeadLetterView, QueueReport};
use super::{Action, Admin, AdminError, Selection};

/// `admin` options.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Print JSON (the bodies of the /v1/admin API) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to look at or do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin's commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Every queue (each check shard and the notifier queues): jobs due now, scheduled later,
    /// leased, dead, and the time until the next due job.
    Stats,
    /// Dead letters: list, show, retry, purge.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// An order's record, status, phase, notifications and timeline.
    Order {
        /// The order id.
        order_id: String,
    },
    /// The health verdict: are checks on time, providers answering, webhooks arriving,
    /// notifications flowing, orders without a check job, Redis healthy; each with its likely
    /// cause. Exits 0 whatever the verdict (read it from the output or `--json`).
    Health,
}

/// `admin dead …`.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead letters, oldest first: id, queue, reason, when, attempts.
    List {
        /// Only this queue (`check-payment` means every check shard).
        #[arg(long)]
        queue: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = super::DEFAULT_LIMIT)]
        limit: usize,
    },
    /// One dead letter: its reason and its payload (secrets redacted).
    Show {
        /// The job id (a check's is its order id).
        id: String,
        /// Its queue (`check-payment`: the check shard the id belongs to).
        #[arg(long)]
        queue: String,
    },
    /// Move dead letters back to their queue, due now, with fresh attempts.
    Retry(Targets),
    /// Delete dead letters for good.
    Purge {
        /// Which.
        #[command(flatten)]
        targets: Targets,
        /// Confirm `--all`: every dead letter of the queue is deleted, which cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// The dead letters a retry or purge applies to.
#[derive(Debug, Args)]
pub struct Targets {
    /// Job ids.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Every dead letter of the queue.
    #[arg(long)]
    pub all: bool,
    /// The queue (`check-payment` means every check shard; ids find their own).
    #[arg(long)]
    pub queue: String,
}

impl Targets {
    fn selection(&self) -> Result<Selection, AdminError> {
        if self.all {
            Ok(Selection::All)
        } else {
            Selection::ids(&self.ids, "ID")
        }
    }
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminCliError {
    /// The admin refused or failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// `purge --all` without `--yes`.
    #[error(
        "purge --all deletes every dead letter of {0} for good; add --yes if that is what you want"
    )]
    Unconfirmed(String),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding JSON failed.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs an admin command, writing its answer to `out`.
pub async fn run(
    admin: &Admin,
    args: &AdminArgs,
    out: &mut impl Write,
) -> Result<(), AdminCliError> {
    let now = Utc::now();
    match &args.command {
        AdminCommand::Stats => {
            let queues = admin.queues().await?;
            if args.json {
                return json(out, &super::model::QueuesReply { queues });
            }
            stats_table(out, &queues)?;
        }
        AdminCommand::Dead(DeadCommand::List { queue, limit }) => {
            let limit = super::limit(Some(*limit))?;
            let page = admin.dead_letters(queue.as_deref(), limit).await?;
            if args.json {
                return json(out, &page);
            }
            if page.letters.is_empty() {
                writeln!(out, "no dead letters")?;
                return Ok(());
            }
            dead_table(out, &page.letters, now)?;
            writeln!(
                out,
                "\n{} dead letter(s) in all; {} shown (oldest first). `admin dead show ID --queue Q` for one in full.",
                page.total,
                page.letters.len()
            )?;
        }
        AdminCommand::Dead(DeadCommand::Show { id, queue }) => {
            let detail = admin.dead_letter(queue, id).await?;
            if args.json {
                return json(out, &detail);
            }
            let d = &detail.letter;
            let when = format!("{} ({})", d.at, ago(&d.at, now));
            let rows = [
                ("queue", d.queue.as_str()),
                ("id", d.id.as_str()),
                ("order", d.order_id.as_deref().unwrap_or("-")),
                ("attempts", &d.attempts.to_string()),
                ("when", &when),
                ("reason", &d.reason),
            ]
            .map(|(k, v)| vec![k.to_owned(), clean(v)]);
            write!(out, "{}", table(&[], &rows))?;
            writeln!(
                out,
                "payload ({}, secrets redacted):",
                detail.payload_format
            )?;
            match &detail.payload {
                serde_json::Value::String(text) if detail.payload_format == "text" => {
                    writeln!(out, "{}", clean(text))?
                }
                value => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
            }
        }
        AdminCommand::Dead(DeadCommand::Retry(targets)) => {
            act(admin, args, out, Action::Retry, targets).await?;
        }
        AdminCommand::Dead(DeadCommand::Purge { targets, yes }) => {
            if targets.all && !yes {
                return Err(AdminCliError::Unconfirmed(targets.queue.clone()));
            }
            act(admin, args, out, Action::Purge, targets).await?;
        }
        AdminCommand::Health => {
            let report = admin.health().await?;
            if args.json {
                return json(out, &report);
            }
            health_text(out, &report)?;
        }
        AdminCommand::Order { order_id } => {
            let report = admin.order(order_id).await?;
            if args.json {
                return json(out, &report);
            }
            let o = &report.order;
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::Null => "-".to_owned(),
                serde_json::Value::String(s) => clean(s),
                other => other.to_string(),
            };
            let mut rows = vec![
                ("order", text(&o["order_id"])),
                (
                    "status",
                    format!("{} ({})", text(&o["status"]), text(&o["phase"])),
                ),
                (
                    "provider",
                    format!(
                        "{} payment {}",
                        text(&o["provider"]),
                        text(&o["payment_id"])
                    ),
                ),
                ("raw status", text(&o["raw_status"])),
                ("checks", text(&o["checks"])),
                ("next check", text(&o["next_check_at"])),
                ("accepted", text(&o["created_at"])),
                ("final at", text(&o["terminal_at"])),
                ("last error", text(&o["last_error"])),
                ("check queue", clean(&report.check_queue)),
                (
                    "notified",
                    if o["notified"] == serde_json::Value::Bool(true) {
                        "yes".to_owned()
                    } else {
                        "no".to_owned()
                    },
                ),
            ];
            if let Some(d) = &report.dead_letter {
                rows.push((
                    "dead letter",
                    format!(
                        "in {} since {}: {} (retry: admin dead retry {} --queue {})",
                        d.queue,
                        d.at,
                        clean(&d.reason),
                        clean(&d.id),
                        d.queue
                    ),
                ));
            }
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|(k, v)| vec![k.to_owned(), v])
                .collect();
            write!(out, "{}", table(&[], &rows))?;
            if !report.notifications.is_empty() {
                writeln!(out, "\nnotifications:")?;
                let rows: Vec<Vec<String>> = report
                    .notifications
                    .iter()
                    .map(|n| {
                        vec![
                            n.channel.clone(),
                            serde_json::to_value(n.state)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            clean(&n.job_id),
                            clean(n.reason.as_deref().unwrap_or("")),
                        ]
                    })
                    .collect();
                write!(
                    out,
                    "{}",
                    table(&["CHANNEL", "STATE", "JOB", "REASON"], &rows)
                )?;
            }
            writeln!(out, "\ntimeline (oldest first):")?;
            let rows: Vec<Vec<String>> = report
                .timeline
                .iter()
                .map(|t| {
                    vec![
                        t.at.clone(),
                        t.event.clone(),
                        t.status.clone().unwrap_or_default(),
                        clean(&t.text),
                    ]
                })
                .collect();
            write!(out, "{}", table(&["AT", "EVENT", "STATUS", "WHAT"], &rows))?;
        }
    }
    Ok(())
}

async fn act(
    admin: &Admin,
    args: &AdminArgs,
    out: &mut impl Write,
    action: Action,
    targets: &Targets,
) -> Result<(), AdminCliError> {
    let report = admin
        .act(action, &targets.queue, &targets.selection()?)
        .await?;
    if args.json {
        return json(out, &report);
    }
    let what = match action {
        Action::Retry => "retried (due now, attempts start over)",
        Action::Purge => "purged",
    };
    writeln!(
        out,
        "{}: {} dead letter(s) {what}",
        clean(&report.queue),
        report.done
    )?;
    if !report.missing.is_empty() {
        let missing: Vec<String> = report.missing.iter().map(|m| clean(m)).collect();
        writeln!(out, "not in the dead letters: {}", missing.join(", "))?;
    }
    Ok(())
}

fn json(out: &mut impl Write, value: &impl Serialize) -> Result<(), AdminCliError> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn stats_table(out: &mut impl Write, queues: &[QueueReport]) -> Result<(), AdminCliError> {
    let mut rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.due.to_string(),
                q.scheduled.to_string(),
                q.leased.to_string(),
                q.dead.to_string(),
                next_due(q.next_due_in_seconds),
                q.completed.to_string(),
                q.dead_lettered.to_string(),
            ]
        })
        .collect();
    let sum = |f: fn(&QueueReport) -> u64| queues.iter().map(f).sum::<u64>().to_string();
    let earliest = queues
        .iter()
        .filter_map(|q| q.next_due_in_seconds)
        .min_by(f64::total_cmp);
    rows.push(vec![
        "all".into(),
        sum(|q| q.due),
        sum(|q| q.scheduled),
        sum(|q| q.leased),
        sum(|q| q.dead),
        next_due(earliest),
        sum(|q| q.completed),
        sum(|q| q.dead_lettered),
    ]);
    write!(
        out,
        "{}",
        table(
            &[
                "QUEUE",
                "DUE NOW",
                "SCHEDULED",
                "LEASED",
                "DEAD",
                "NEXT DUE",
                "COMPLETED",
                "DEAD-LETTERED",
            ],
            &rows,
        )
    )?;
    Ok(())
}

fn health_text(
    out: &mut impl Write,
    report: &super::health::model::HealthReport,
) -> Result<(), AdminCliError> {
    use super::health::model::Verdict;
    let v = |verdict: Verdict| verdict.as_str().to_uppercase();
    writeln!(
        out,
        "paywatch health: {} (at {})",
        v(report.verdict),
        report.checked_at
    )?;
    let c = &report.checks;
    let p = &report.providers;
    let w = &report.webhooks;
    let n = &report.notifications;
    let o = &report.orphans;
    let r = &report.redis;
    let rows: Vec<Vec<String>> = vec![
        vec![
            "checks".into(),
            v(c.verdict),
            format!(
                "{} due, late {}, {} running, {} scheduled, {} worker(s)",
                c.due,
                span(c.late_seconds),
                c.leased,
                c.scheduled,
                c.workers
            ),
        ],
        vec![
            "providers".into(),
            v(p.verdict),
            p.providers
                .iter()
                .map(|x| {
                    format!(
                        "{} breaker {}, {}/{} failed",
                        clean(&x.provider),
                        x.breaker,
                        x.failures,
                        x.calls
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ],
        vec![
            "webhooks".into(),
            v(w.verdict),
            w.providers
                .iter()
                .map(|x| {
                    let when = x
                        .last_seen_seconds_ago
                        .map_or(String::new(), |s| format!(" {} ago", span(s)));
                    format!("{} {}{when}", clean(&x.provider), x.state)
                })
                .collect::<Vec<_>>()
                .join("; "),
        ],
        vec![
            "notifications".into(),
            v(n.verdict),
            n.channels
                .iter()
                .map(|x| {
                    format!(
                        "{} {} due, {} dead, {}/{} failed",
                        x.channel, x.due, x.dead, x.failures, x.attempts
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ],
        vec![
            "orphans".into(),
            v(o.verdict),
            format!(
                "{} orphan(s) among {} looked at{}",
                o.orphans,
                o.scanned,
                if o.complete {
                    ""
                } else {
                    " (incomplete: budget reached)"
                }
            ),
        ],
        vec![
            "redis".into(),
            v(r.verdict),
            r.nodes
                .iter()
                .map(|x| {
                    let memory = x.memory_ratio.map_or("no maxmemory".to_owned(), |m| {
                        format!("memory {:.0}%", m * 100.0)
                    });
                    format!(
                        "{} {memory}, policy {}, {} replica(s), aof {}",
                        x.node,
                        x.maxmemory_policy,
                        x.connected_replicas,
                        if x.aof_enabled { "on" } else { "off" }
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ],
    ];
    write!(out, "{}", table(&["SUBSYSTEM", "VERDICT", "SEEN"], &rows))?;
    if !report.causes.is_empty() {
        writeln!(out, "\nlikely causes (worst first):")?;
        for cause in &report.causes {
            writeln!(out, "- {}", clean(cause))?;
        }
    }
    if !o.examples.is_empty() {
        let ids: Vec<String> = o.examples.iter().map(|id| clean(id)).collect();
        writeln!(out, "\norphans: {}", ids.join(", "))?;
    }
    Ok(())
}

fn dead_table(
    out: &mut impl Write,
    letters: &[DeadLetterView],
    now: DateTime<Utc>,
) -> Result<(), AdminCliError> {
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|d| {
            vec![
                clean(&d.id),
                d.queue.clone(),
                clean(d.order_id.as_deref().unwrap_or("-")),
                d.attempts.to_string(),
                format!("{} ({})", d.at, ago(&d.at, now)),
                shorten(&clean(&d.reason), 100),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(
            &["ID", "QUEUE", "ORDER", "ATTEMPTS", "WHEN", "REASON"],
            &rows
        )
    )?;
    Ok(())
}

/// "in 3.2 s", "late 1.0 s", or "-" when nothing is pending.
fn next_due(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 0.0 => format!("late {}", span(-s)),
        Some(s) => format!("in {}", span(s)),
    }
}

fn span(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

fn ago(at: &str, now: DateTime<Utc>) -> String {
    match DateTime::parse_from_rfc3339(at) {
        Ok(t) => {
            let s = (now - t.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0;
            format!("{} ago", span(s))
        }
        Err(_) => "?".into(),
    }
}

/// Text from outside with control characters (escape sequences, newlines) escaped.
fn clean(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}

/// Left-aligned columns two spaces apart; the header row only when `headers` is not empty.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0; columns];
    let head: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&head).chain(rows) {
        for (i, value) in row.iter().enumerate() {
            widths[i] = widths[i].max(value.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |row: &[String]| {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i + 1 == row.len() {
                    v.clone()
                } else {
                    format!("{v:<width$}", width = widths[i])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    };
    if !headers.is_empty() {
        line(&head);
    }
    for row in rows {
        line(row);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_escape_control_characters() {
        let rows = vec![
            vec!["a".to_owned(), clean("x\u{1b}[31mred\nline")],
            vec!["long-name".to_owned(), "y".to_owned()],
        ];
        let text = table(&["K", "V"], &rows);
        assert_eq!(
            text,
            "K          V\na          x\\u{1b}[31mred\\nline\nlong-name  y\n"
        );
    }

    #[test]
    fn times_read_naturally() {
        assert_eq!(next_due(None), "-");
        assert_eq!(next_due(Some(3.24)), "in 3.2 s");
        assert_eq!(next_due(Some(-90.0)), "late 1.5 min");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
