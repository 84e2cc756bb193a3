//! The sandbox's tests against the real `paywatch-sandbox` over real sockets, one module per
//! area, linked into one binary (one link instead of six; cargo-nextest still runs each test in
//! its own process).

mod common;

mod admin;
mod faults;
mod help;
mod providers;
mod telegram;
mod webhooks;
