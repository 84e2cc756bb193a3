//! Property tests of duration parsing: any text gives a duration or a classified error, never a
//! panic, and every duration paywatch writes reads back exactly.

use std::time::Duration;

use paywatch_core::durations::{format_duration, parse_duration, scale};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_parses_or_is_an_error_naming_it(text in any::<String>()) {
        if let Err(e) = parse_duration(&text) {
            prop_assert_eq!(&e.0, &text);
        }
    }

    #[test]
    fn number_and_unit_shaped_text_never_panics(
        number in "[0-9.]{0,30}",
        unit in prop::sample::select(vec!["", "ms", "s", "m", "min", "h", "d", "x", " s", "S"]),
        pad in prop::sample::select(vec!["", " ", "\t"]),
    ) {
        let text = format!("{pad}{number}{unit}{pad}");
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(d <= Duration::MAX);
        }
    }

    #[test]
    fn written_durations_read_back_exactly(millis in 0u64..=10_000_000_000_000) {
        let d = Duration::from_millis(millis);
        let text = format_duration(d);
        prop_assert_eq!(parse_duration(&text).ok(), Some(d), "{}", text);
    }

    #[test]
    fn integers_with_a_unit_are_exact(n in 0u64..=1_000_000_000, unit in 0usize..5) {
        let (suffix, millis) = [("ms", 1u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)][unit];
        let text = format!("{n}{suffix}");
        prop_assert_eq!(
            parse_duration(&text).ok(),
            Some(Duration::from_millis(n * millis)),
            "{}", text
        );
    }

    #[test]
    fn scaling_saturates_instead_of_panicking(secs in any::<u64>(), nanos in 0u32..1_000_000_000, factor in any::<f64>()) {
        let scaled = scale(Duration::new(secs, nanos), factor);
        if !(factor.is_finite() && factor > 0.0) {
            prop_assert_eq!(scaled, Duration::ZERO);
        }
    }
}
