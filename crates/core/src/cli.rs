//! Reading a binary's flags and environment with clap, with the rules every paywatch binary
//! shares: an error about a value names the environment variable it came from (not only the
//! flag), never repeats a secret, and a secret set to the empty string is refused.
//!
//! A secret is an argument with `hide_env_values = true`: the same attribute that keeps its
//! value out of `--help` keeps it out of errors here.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgMatches, Command, Parser};

use crate::secret::REDACTED;

/// Parses the process's arguments and environment into `T`; on an error, prints it (naming
/// the variable) and exits as clap does (status 2; 0 for `--help` and `--version`).
pub fn parse<T: Parser>() -> T {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parses `args` (the program name first) and the environment into `T`. A value error names
/// the argument's environment variable; a secret that is set but empty is an error naming it.
pub fn try_parse_from<T, I, A>(args: I) -> Result<T, clap::Error>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let mut cmd = T::command();
    let mut matches = cmd
        .try_get_matches_from_mut(args)
        .map_err(|e| name_variable(&mut cmd, e))?;
    if let Some((variable, flag)) = empty_secret(&cmd, &matches) {
        let message =
            format!("{variable}: is set but empty (for {flag}); give it a value or unset it");
        return Err(cmd.error(ErrorKind::InvalidValue, message));
    }
    T::from_arg_matches_mut(&mut matches).map_err(|e| {
        let e = e.with_cmd(&cmd);
        name_variable(&mut cmd, e)
    })
}

/// The argument of `cmd` (or of any of its subcommands) whose long flag is `long`, with an
/// environment variable.
fn find_arg<'a>(cmd: &'a Command, long: &str) -> Option<&'a clap::Arg> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long) && a.get_env().is_some())
        .or_else(|| cmd.get_subcommands().find_map(|sub| find_arg(sub, long)))
}

/// `error`, reworded to start with the environment variable of the argument it is about (and
/// with the value replaced by `[redacted]` when that argument is a secret). Errors about no
/// particular argument, or about one without a variable, are returned as they are.
fn name_variable(cmd: &mut Command, mut error: clap::Error) -> clap::Error {
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    // `--lease <LEASE>`: the flag is the first word.
    let flag = shown.split_whitespace().next().unwrap_or_default();
    let Some(arg) = flag.strip_prefix("--").and_then(|long| find_arg(cmd, long)) else {
        return error;
    };
    let Some(variable) = arg.get_env().map(|v| v.to_string_lossy().into_owned()) else {
        return error;
    };
    // A secret's value is never repeated; nor is a URL that carries credentials, whatever
    // argument it was given to (`https://user:password@host` in a base-URL setting).
    let carries_credentials = matches!(
        error.get(ContextKind::InvalidValue),
        Some(ContextValue::String(v)) if url_with_credentials(v)
    );
    if (arg.is_hide_env_values_set() && error.get(ContextKind::InvalidValue).is_some())
        || carries_credentials
    {
        error.insert(
            ContextKind::InvalidValue,
            ContextValue::String(REDACTED.to_owned()),
        );
    }
    let kind = error.kind();
    let rendered = error.render().to_string();
    let text = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    // The advice clap appends is added again by `Command::error`.
    let text = text
        .split("\n\nFor more information")
        .next()
        .unwrap_or(text)
        .trim_end();
    cmd.error(kind, format!("{variable}: {text}"))
}

/// Whether `value` looks like a URL with a user or password before its host.
fn url_with_credentials(value: &str) -> bool {
    value.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority.contains('@')
    })
}

/// The variable (and flag) of the first secret argument given an empty value, in the command
/// that ran or one of the subcommands it ran.
fn empty_secret(cmd: &Command, matches: &ArgMatches) -> Option<(String, String)> {
    for arg in cmd.get_arguments() {
        let Some(variable) = arg.get_env() else {
            continue;
        };
        if !arg.is_hide_env_values_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        let given = matches!(
            matches.value_source(id),
            Some(clap::parser::ValueSource::EnvVariable | clap::parser::ValueSource::CommandLine)
        );
        let empty = matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .is_some_and(|mut values| values.any(|v| v.is_empty()));
        if given && empty {
            let flag = arg
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| id.to_owned());
            return Some((variable.to_string_lossy().into_owned(), flag));
        }
    }
    let (name, sub_matches) = matches.subcommand()?;
    empty_secret(cmd.find_subcommand(name)?, sub_matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command like the binaries': a secret, a plain value, and a subcommand with its own.
    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, env = "PWTEST_CLI_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, env = "PWTEST_CLI_COUNT", default_value_t = 1)]
        count: u32,
        #[arg(long, env = "PWTEST_CLI_URL", hide_env_values = true, value_parser = no_url)]
        url: Option<String>,
        #[arg(long, env = "PWTEST_CLI_BASE", value_parser = no_url)]
        base: Option<String>,
        #[command(subcommand)]
        command: Option<Sub>,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Serve {
            #[arg(long, env = "PWTEST_CLI_LISTEN")]
            listen: Option<std::net::SocketAddr>,
            #[arg(long, env = "PWTEST_CLI_KEY", hide_env_values = true)]
            key: Option<String>,
        },
    }

    fn no_url(_: &str) -> Result<String, String> {
        Err("is not a URL".into())
    }

    fn error(args: &[&str]) -> String {
        try_parse_from::<Cli, _, _>(std::iter::once("prog").chain(args.iter().copied()))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn value_errors_name_the_variable() {
        let text = error(&["--count", "banana"]);
        assert!(text.starts_with("error: PWTEST_CLI_COUNT: "), "{text}");
        assert!(
            text.contains("'banana'") && text.contains("--count"),
            "{text}"
        );
        let text = error(&["serve", "--listen", "nowhere"]);
        assert!(text.contains("PWTEST_CLI_LISTEN: "), "{text}");
    }

    #[test]
    fn secret_values_are_not_repeated() {
        let text = error(&["--url", "redis://:hunter2-pw@host"]);
        assert!(text.contains("PWTEST_CLI_URL: "), "{text}");
        assert!(text.contains("is not a URL"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        // Not a secret setting, but a URL with credentials in it: not repeated either.
        let text = error(&["--base", "https://user:hunter3-pw@host/x"]);
        assert!(text.contains("PWTEST_CLI_BASE: "), "{text}");
        assert!(!text.contains("hunter3"), "{text}");
        let text = error(&["--base", "https://host/x@y"]);
        assert!(text.contains("https://host/x@y"), "{text}");
    }

    #[test]
    fn empty_secrets_are_refused_by_name() {
        let text = error(&["--token", ""]);
        assert!(
            text.contains("PWTEST_CLI_TOKEN: is set but empty"),
            "{text}"
        );
        let text = error(&["serve", "--key", ""]);
        assert!(text.contains("PWTEST_CLI_KEY: is set but empty"), "{text}");
        let cli: Cli = try_parse_from(["prog", "--token", "t", "serve"]).expect("parses");
        assert_eq!(cli.token.as_deref(), Some("t"));
    }
}
