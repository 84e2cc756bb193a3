//! Exemplars: for some histograms, the trace id of a recent observation per bucket, so a slow
//! bucket on a dashboard leads to one order's trace.
//!
//! metrics-exporter-prometheus (which renders every other metric) has no exemplars, and moving
//! every metric to another registry would change every crate's recording. So the histograms stay
//! where they are, and this side store remembers, per bucket of the histograms named in
//! [`EXEMPLAR_HISTOGRAMS`], the last observation made inside a sampled span. When Prometheus asks
//! for OpenMetrics (`Accept: application/openmetrics-text`), [`openmetrics`] turns the exporter's
//! text into an OpenMetrics exposition and appends each bucket's exemplar; the plain text format
//! is served unchanged.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The histograms that carry exemplars: a check's lateness, the detection lag of a settled order
/// and a provider request's duration.
pub const EXEMPLAR_HISTOGRAMS: &[&str] = &[
    "paywatch_queue_lateness_seconds",
    "paywatch_order_detection_lag_seconds",
    crate::metrics::PROVIDER_REQUEST_SECONDS,
];

/// One remembered observation.
#[derive(Debug, Clone)]
struct Exemplar {
    trace_id: String,
    span_id: String,
    value: f64,
    at: f64,
}

/// (metric, labels sorted by name, bucket index; the bucket count means `+Inf`).
type Key = (&'static str, Vec<(&'static str, String)>, usize);

#[derive(Default)]
struct Store {
    buckets: HashMap<&'static str, Vec<f64>>,
    exemplars: HashMap<Key, Exemplar>,
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(Mutex::default)
}

/// Registers the buckets of the exemplar histograms among `buckets` (what the recorder was
/// given): an observation's bucket is found as the exporter finds it.
pub fn register(buckets: &[(&str, &[f64])]) {
    let Ok(mut store) = store().lock() else {
        return;
    };
    for (name, values) in buckets {
        if let Some(name) = EXEMPLAR_HISTOGRAMS.iter().find(|n| *n == name) {
            store.buckets.insert(name, values.to_vec());
        }
    }
}

/// Remembers `value` of histogram `metric` with `labels` as its bucket's exemplar, when the
/// current span is traced and sampled (otherwise nothing: no trace to lead to).
pub fn observe(metric: &'static str, labels: &[(&'static str, &str)], value: f64) {
    let Some((trace_id, span_id)) = crate::traces::current_ids() else {
        return;
    };
    let Ok(mut store) = store().lock() else {
        return;
    };
    let Some(bounds) = store.buckets.get(metric) else {
        return;
    };
    let index = bounds
        .iter()
        .position(|le| value <= *le)
        .unwrap_or(bounds.len());
    let mut labels: Vec<(&'static str, String)> =
        labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
    labels.sort();
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    store.exemplars.insert(
        (metric, labels, index),
        Exemplar {
            trace_id: trace_id.to_string(),
            span_id: span_id.to_string(),
            value,
            at,
        },
    );
}

/// The content type of [`openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether a scraper's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The exporter's Prometheus text as an OpenMetrics exposition, with exemplars on the buckets
/// of [`EXEMPLAR_HISTOGRAMS`]. Counters are declared by their family name (without `_total`,
/// as OpenMetrics wants), a counter not named `..._total` as `unknown`; blank lines go; `# EOF`
/// ends it.
pub fn openmetrics(text: &str) -> String {
    let mut types: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            types.insert(name, kind);
        }
    }
    let store = store().lock().ok();
    let mut out = String::with_capacity(text.len() + 1024);
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some((kind, rest)) = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)))
        {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let (family, tail) = match types.get(name).copied() {
                Some("counter") => match name.strip_suffix("_total") {
                    Some(family) => (family, tail),
                    None if kind == "TYPE" => (name, "unknown"),
                    None => (name, tail),
                },
                _ => (name, tail),
            };
            let _ = writeln!(out, "# {kind} {family} {tail}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        out.push_str(line);
        if let Some(store) = &store
            && let Some(e) = exemplar_for(store, line)
        {
            let _ = write!(
                out,
                " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {:.3}",
                e.trace_id, e.span_id, e.value, e.at
            );
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

/// The exemplar of a `<histogram>_bucket{...,le="x"} n` line, if one was remembered.
fn exemplar_for<'s>(store: &'s Store, line: &str) -> Option<&'s Exemplar> {
    let (name, rest) = line.split_once('{')?;
    let metric = name.strip_suffix("_bucket")?;
    let metric = *EXEMPLAR_HISTOGRAMS.iter().find(|m| **m == metric)?;
    let (labels, _) = rest.rsplit_once('}')?;
    let mut le = None;
    let mut pairs = Vec::new();
    for (k, v) in parse_labels(labels)? {
        if k == "le" {
            le = Some(v);
        } else {
            pairs.push((k, v));
        }
    }
    let bounds = store.buckets.get(metric)?;
    let le = le?;
    let index = if le == "+Inf" {
        bounds.len()
    } else {
        let le: f64 = le.parse().ok()?;
        bounds.iter().position(|b| *b == le)?
    };
    pairs.sort();
    store.exemplars.iter().find_map(|((m, l, i), e)| {
        (*m == metric
            && *i == index
            && l.len() == pairs.len()
            && l.iter()
                .zip(&pairs)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && v1 == v2))
        .then_some(e)
    })
}

/// `a="x",b="y"` as pairs (values unescaped); `None` when it is not that shape.
fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim().to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_declared_by_family_and_the_exposition_ends() {
        let text = "# HELP paywatch_checks_total Status checks\n# TYPE paywatch_checks_total counter\npaywatch_checks_total{provider=\"cashless\"} 3\n\n# TYPE odd counter\nodd 1\n";
        let om = openmetrics(text);
        assert_eq!(
            om,
            "# HELP paywatch_checks Status checks\n# TYPE paywatch_checks counter\npaywatch_checks_total{provider=\"cashless\"} 3\n# TYPE odd unknown\nodd 1\n# EOF\n"
        );
    }

    #[test]
    fn labels_are_read_with_escapes() {
        assert_eq!(
            parse_labels(r#"a="x",b="q\"y",le="+Inf""#).expect("labels"),
            vec![
                ("a".into(), "x".into()),
                ("b".into(), "q\"y".into()),
                ("le".into(), "+Inf".into())
            ]
        );
    }
}
