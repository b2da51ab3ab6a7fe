//! Logging set-up: human-readable lines by default, one JSON object per line on request.
//! Logs go to stderr so that command output (`coffer openapi`, `--json`) stays clean.
//! Human lines are coloured only when stderr is a terminal (and `NO_COLOR` is not set):
//! a log redirected to a file or a journal holds no escape codes.

use coffer_config::LogFormat;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`, except for
/// the [`SILENCED`] crates, which never log.
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
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Human => layer.with_ansi(colours()).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    };
    let quiet = tracing_subscriber::filter::filter_fn(|meta| !meta.target().starts_with(SILENCED));
    tracing_subscriber::registry()
        .with(layer.with_filter(quiet).with_filter(filter))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Crates whose log lines may carry secrets (every target starting with this), dropped
/// at every level: the S3 request signer's debug lines print its credential provider
/// with the secret key in clear (`reqsign_core`: "Successfully loaded credential from
/// provider: StaticCredentialProvider { access_key_id: .., secret_access_key: .. }"), and
/// its warning about a provider that failed prints the provider too. Nothing Coffer needs
/// is lost: a signing failure is the request's error, which Coffer reports without the
/// store's credentials.
const SILENCED: &str = "reqsign";

/// Whether human log lines may be coloured: stderr is a terminal and `NO_COLOR`
/// (<https://no-color.org>) is unset or empty.
fn colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
