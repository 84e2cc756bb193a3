//! The W3C `traceparent` an order may carry (HTTP header, or the `traceparent` field of the
//! `FCALL paywatch_submit` body): its format rules, the same words as the submit function's
//! (store/lua/order.lua `traceparent_problem`), so every door refuses a bad one alike.
//!
//! Strict on purpose: version `00` only, lowercase hex, neither id all zeros. A context paywatch
//! cannot read would silently start a new trace, which is worse than a clear refusal.

use std::fmt;

/// The field name every door's refusal names.
pub const FIELD: &str = "traceparent";

/// What the format is, as the refusal says it.
pub const FORMAT_PROBLEM: &str = "must be a W3C trace context: 00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 lowercase hex flags>";
/// Why an all-zero trace id is refused.
pub const ZERO_TRACE: &str = "the trace id must not be all zeros";
/// Why an all-zero parent id is refused.
pub const ZERO_PARENT: &str = "the parent id must not be all zeros";

/// A valid `traceparent`: `00-<trace id>-<parent id>-<flags>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id, 16 bytes.
    pub trace_id: [u8; 16],
    /// The parent span id, 8 bytes.
    pub span_id: [u8; 8],
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Why a `traceparent` was refused: one of [`FORMAT_PROBLEM`], [`ZERO_TRACE`], [`ZERO_PARENT`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("traceparent: {0}")]
pub struct TraceParentError(pub &'static str);

impl TraceParent {
    /// Reads a `traceparent` with the submit function's rules.
    pub fn parse(s: &str) -> Result<Self, TraceParentError> {
        let b = s.as_bytes();
        let format = TraceParentError(FORMAT_PROBLEM);
        if b.len() != 55 || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' {
            return Err(format);
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flags = [0u8; 1];
        hex(&b[3..35], &mut trace_id).ok_or(format.clone())?;
        hex(&b[36..52], &mut span_id).ok_or(format.clone())?;
        hex(&b[53..55], &mut flags).ok_or(format)?;
        if trace_id == [0; 16] {
            return Err(TraceParentError(ZERO_TRACE));
        }
        if span_id == [0; 8] {
            return Err(TraceParentError(ZERO_PARENT));
        }
        Ok(Self {
            trace_id,
            span_id,
            flags: flags[0],
        })
    }

    /// Whether the caller sampled this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Lowercase hex only: the W3C format forbids uppercase.
fn hex(src: &[u8], out: &mut [u8]) -> Option<()> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_the_w3c_form() {
        let tp = TraceParent::parse(GOOD).expect("valid");
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), GOOD);
        assert_eq!(tp.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    }

    #[test]
    fn refuses_what_the_function_refuses() {
        let bad = |s: &str| TraceParent::parse(s).expect_err(s).0;
        assert_eq!(bad(""), FORMAT_PROBLEM);
        assert_eq!(bad(&GOOD.to_uppercase()), FORMAT_PROBLEM);
        assert_eq!(bad(&GOOD.replacen("00-", "01-", 1)), FORMAT_PROBLEM);
        assert_eq!(bad(&format!("{GOOD}-x")), FORMAT_PROBLEM);
        assert_eq!(bad(&GOOD.replace('-', "_")), FORMAT_PROBLEM);
        assert_eq!(bad(&GOOD.replacen('4', "g", 1)), FORMAT_PROBLEM);
        assert_eq!(
            bad("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            ZERO_TRACE
        );
        assert_eq!(
            bad("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            ZERO_PARENT
        );
        assert_eq!(
            TraceParent::parse("x").expect_err("x").to_string(),
            format!("traceparent: {FORMAT_PROBLEM}")
        );
    }
}
