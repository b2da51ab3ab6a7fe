//! The CLI's command groups, one module each, and what they share: the local
//! administrator they act as, the services they open, output and progress.
//!
//! Every command goes through the same application services as the API, so both obey
//! the same rules and leave the same audit trail; `--json` prints the API's schema for
//! the same thing (`coffer_http::schema`), with the API's field names.

/// `println!` that ends the program quietly when stdout is closed (`coffer ls | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}

pub mod audit;
pub mod backup;
pub mod catalog;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod maintenance;
pub mod notify;
pub mod replicas;
pub mod report;
pub mod restore;
pub mod retention;
#[cfg(feature = "bench-seed")]
pub mod seed;
pub mod server;
pub mod sources;
pub mod tokens;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use coffer_config::Settings;
use coffer_domain::auth::Actor;
use coffer_domain::engine::{Cancel, Progress};
use coffer_domain::secrets::Secret;
use indicatif::{ProgressBar, ProgressStyle};

pub(crate) use coffer_domain::units::human_bytes as human;

/// The local system administrator: whoever runs the CLI on the server's machine.
pub(crate) fn local_admin() -> Actor {
    let os_user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    Actor::local_admin(&os_user)
}

/// The services, opened for a CLI command.
pub(crate) async fn services(settings: &Settings) -> anyhow::Result<coffer::Services> {
    coffer::Services::open(settings).await
}

/// Prints `value` as pretty JSON.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A password from standard input, or a generated one (returned to be printed).
pub(crate) fn password_input(from_stdin: bool) -> anyhow::Result<(Secret, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        Ok((Secret::new(password), false))
    } else {
        Ok((Secret::new(coffer_crypto::random_token(18)?), true))
    }
}

/// A cancel that Ctrl-C triggers (the work stops at its next safe point).
pub(crate) fn interruptible() -> Cancel {
    let cancel = Cancel::default();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    cancel
}

/// A spinner with live counters on a terminal (nothing when stderr is not one, or with
/// --json), updated from the operation's progress counters.
pub(crate) struct Bar {
    bar: ProgressBar,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// A progress spinner whose counted items are `unit` (files, packs).
pub(crate) fn counted_bar(
    progress: &Arc<Progress>,
    json: bool,
    verb: &'static str,
    unit: &'static str,
) -> Option<Bar> {
    use std::io::IsTerminal as _;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(verb);
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let progress = progress.clone();
    let shown = bar.clone();
    let started = chrono::Utc::now();
    tokio::spawn(async move {
        loop {
            let p = progress.read();
            let now = chrono::Utc::now();
            let rate = p.rate(started, now).unwrap_or(0.0);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rate = human(rate as u64);
            let done = human(p.bytes_done);
            let message = match (p.files_total, p.bytes_total) {
                (Some(files), Some(bytes)) => {
                    let eta = p.eta_secs(started, now).map_or_else(
                        || ", counting".to_owned(),
                        |s| format!(", ETA {}", indicatif::HumanDuration(Duration::from_secs(s))),
                    );
                    format!(
                        "{}/{files} {unit}, {done}/{} ({rate}/s{eta})",
                        p.files_done,
                        human(bytes)
                    )
                }
                _ => format!("{} {unit}, {done} ({rate}/s)", p.files_done),
            };
            shown.set_message(message);
            shown.tick();
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep(Duration::from_millis(150)) => {}
            }
        }
    });
    Some(Bar { bar, stop })
}

impl Bar {
    pub(crate) fn finish(self) {
        let _ = self.stop.send(());
        self.bar.finish_and_clear();
    }
}

/// Where the time of a backup or restore went, on stderr (`--timings`).
pub(crate) fn print_timings(progress: &Progress, wall: Duration) {
    let phases: Vec<String> = progress
        .phases
        .read()
        .iter()
        .map(|(phase, d)| format!("{} {:.2}", phase.name(), d.as_secs_f64()))
        .collect();
    eprintln!(
        "timings: wall {:.2} s; thread seconds by phase: {}",
        wall.as_secs_f64(),
        phases.join(", ")
    );
}

/// A spinner counting files.
pub(crate) fn bar(progress: &Arc<Progress>, json: bool, verb: &'static str) -> Option<Bar> {
    counted_bar(progress, json, verb, "files")
}
