//! Property tests that keep state across cases (a prepared shard, a server).

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

/// Runs `test` on `cases` inputs from `strategy`, failing with proptest's minimal case.
pub fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = TestRunner::new(Config::with_cases(cases)).run(&strategy, test) {
        panic!("{e}");
    }
}
