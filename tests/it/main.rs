//! paywatch's integration and end-to-end tests, one module per area, linked into one binary.
//!
//! One binary instead of one per file: each test binary links the whole workspace, and linking
//! forty of them was most of `just test`'s build time. cargo-nextest still runs every test in
//! its own process, so tests that start servers, set fail points or hold ports stay isolated.
//! Run one area with `cargo nextest run -p paywatch-tests --test it <area>::` (or
//! `cargo test -p paywatch-tests --test it <area>::`).

mod acl;
mod adaptive;
mod admin;
mod board;
mod chaos;
mod clients;
mod cluster;
mod config_errors;
mod crash;
mod declared;
mod deploy;
mod doc_numbers;
mod door;
mod door_exact;
mod door_serve;
mod events;
mod failover;
mod finalize;
mod harness;
mod health;
mod help;
mod image;
mod local_smtp;
mod notify_email;
mod notify_once;
mod notify_telegram;
mod notify_webhook;
mod observability;
mod operations;
mod prop_handcash_webhook;
mod prop_payloads;
mod prop_submit_paths;
mod prop_webhook_hosts;
mod prop_webhook_signing;
mod provider_webhooks;
mod queue;
mod readme;
mod schemathesis;
mod secrets;
mod servers;
mod spine;
mod topology;
mod traces;
mod up;
mod worst_day;
