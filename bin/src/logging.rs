//! Logging set-up: human-readable lines by default, one JSON object per line on request.
//! Logs go to stderr so that command output (`coffer openapi`, `--json`) stays clean.
//! Human lines are coloured only when stderr is a terminal (and `NO_COLOR` is not set):
//! a log redirected to a file or a journal holds no escape codes.

use coffer_config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
///
/// # Errors
/// When `level` is not a valid filter.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(env)?,
        // sea-orm-migration reports every start at info; Coffer logs what it applies.
        _ => EnvFilter::try_new(format!("{level},sea_orm_migration=warn"))
            .map_err(|e| anyhow::anyhow!("invalid log level `{level}`: {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.with_ansi(colours()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Whether human log lines may be coloured: stderr is a terminal and `NO_COLOR`
/// (<https://no-color.org>) is unset or empty.
fn colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
