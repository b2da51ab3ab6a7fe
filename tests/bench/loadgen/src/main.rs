//! `coffer-loadgen`: an open-loop HTTP/1.1 load generator for Coffer's speed-at-scale
//! benchmark (`tests/bench/scale.sh`).
//!
//! Requests are *scheduled* at a fixed rate (request `i` at `start + i / rate`), whatever
//! the server does; a pool of keep-alive connections sends them. Each latency is measured
//! from the scheduled time to the last byte of the response, so a request that had to
//! wait for a free connection because the server stalled counts the wait: coordinated
//! omission cannot hide a stall. Requests scheduled during the warm-up are sent but not
//! recorded. With several URLs, requests go to them in turn (the rate is shared).
//!
//! A request still unsent `--timeout` after its scheduled time is not sent: it counts as
//! an error (a client would have given up), with that lateness as its latency. So a
//! saturated server ends the run about `--timeout` after the measured period instead of
//! draining an ever longer queue.
//!
//! Prints, per URL: requests recorded, errors (non-2xx, I/O, timeouts), achieved rate
//! and p50/p90/p99/p99.9/max latency; and one tab-separated `result` line per URL for
//! scripts.

mod http;
mod stats;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser as _;
use tokio::time::Instant;

use crate::http::{Connection, RequestError, Url, get_request};
use crate::stats::{Summary, summarize};

/// Open-loop load at a fixed rate; latency from each request's scheduled send time.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "coffer-loadgen", version, about)]
struct Options {
    /// http://host:port/path?query (repeat for several; they take turns).
    #[arg(long = "url", value_name = "URL", required = true, value_parser = Url::parse)]
    urls: Vec<Url>,
    /// Requests per second, over all URLs.
    #[arg(long, default_value_t = 200.0, value_parser = positive)]
    rate: f64,
    /// Measured period, in seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = measured)]
    duration: Duration,
    /// Unrecorded period before it, in seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds)]
    warmup: Duration,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    connections: u16,
    /// Per request, connecting included, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    timeout: Duration,
    /// Send `Authorization: Bearer TOKEN` (LOADGEN_TOKEN keeps the token out of the
    /// process list).
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// A positive, finite number.
fn positive(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("expected a positive number, got `{v}`"))
}

/// Seconds, 0 or more.
fn seconds(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("expected seconds, got `{v}`"))
}

/// Seconds, more than 0.
fn measured(v: &str) -> Result<Duration, String> {
    seconds(v).and_then(|d| {
        if d.is_zero() {
            Err("must be more than 0".to_owned())
        } else {
            Ok(d)
        }
    })
}

/// What is recorded for one URL.
#[derive(Default)]
struct Record {
    /// Latencies in microseconds, of every recorded request (errors included).
    latencies: Vec<u64>,
    errors: u64,
    /// Non-2xx statuses seen, and how often.
    statuses: BTreeMap<u16, u64>,
    /// Requests given up unsent, more than the timeout behind schedule.
    not_sent: u64,
    /// The first transport error, to show.
    first_failure: Option<String>,
}

struct Target {
    url: Url,
    record: Mutex<Record>,
}

struct Plan {
    targets: Vec<Target>,
    /// The bearer token sent with every request.
    token: Option<String>,
    /// When request 0 is due.
    start: Instant,
    /// Requests scheduled before this are not recorded.
    measure_from: Instant,
    /// No request is scheduled at or after this.
    end: Instant,
    rate: f64,
    timeout: Duration,
    /// The next request index to send.
    next: AtomicU64,
}

impl Plan {
    fn due(&self, index: u64) -> Instant {
        #[allow(clippy::cast_precision_loss)]
        let offset = Duration::from_secs_f64(index as f64 / self.rate);
        self.start + offset
    }
}

fn lock(record: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One connection: takes the next due request, waits for its time (or sends at once
/// when it is already late), sends it, records the latency from the due time.
async fn worker(plan: Arc<Plan>, mut conn: Option<Connection>) {
    loop {
        let index = plan.next.fetch_add(1, Ordering::Relaxed);
        let due = plan.due(index);
        if due >= plan.end {
            return;
        }
        tokio::time::sleep_until(due).await;
        let target = &plan.targets[usize::try_from(index).unwrap_or(0) % plan.targets.len()];
        let late = Instant::now().saturating_duration_since(due);
        if late > plan.timeout {
            if due >= plan.measure_from {
                let mut record = lock(&target.record);
                record
                    .latencies
                    .push(u64::try_from(late.as_micros()).unwrap_or(u64::MAX));
                record.errors += 1;
                record.not_sent += 1;
            }
            continue;
        }
        if conn
            .as_ref()
            .is_some_and(|c| c.authority != target.url.authority)
        {
            conn = None;
        }
        let outcome = tokio::time::timeout(plan.timeout, async {
            if conn.is_none() {
                conn = Some(Connection::open(&target.url.authority, plan.timeout).await?);
            }
            match conn.as_mut() {
                Some(c) => {
                    c.send(get_request(&target.url, plan.token.as_deref()))
                        .await
                }
                None => unreachable!("connected above"),
            }
        })
        .await
        .unwrap_or(Err(RequestError::Timeout));
        let latency = Instant::now().saturating_duration_since(due);
        let keep = matches!(&outcome, Ok(r) if !r.close);
        if !keep {
            conn = None;
        }
        if due < plan.measure_from {
            continue;
        }
        let mut record = lock(&target.record);
        record
            .latencies
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        match outcome {
            Ok(r) if (200..300).contains(&r.status) => {}
            Ok(r) => {
                record.errors += 1;
                *record.statuses.entry(r.status).or_default() += 1;
            }
            Err(e) => {
                record.errors += 1;
                record.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = Options::parse();
    let targets: Vec<Target> = options
        .urls
        .iter()
        .map(|url| Target {
            url: url.clone(),
            record: Mutex::new(Record::default()),
        })
        .collect();
    // Connect the pool first, so that connecting is not part of the first requests.
    let mut pool = Vec::with_capacity(usize::from(options.connections));
    for _ in 0..options.connections {
        match Connection::open(&targets[0].url.authority, options.timeout).await {
            Ok(c) => pool.push(Some(c)),
            Err(e) => {
                eprintln!("coffer-loadgen: cannot connect to {}: {e}", targets[0].url);
                return ExitCode::FAILURE;
            }
        }
    }
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + options.warmup;
    let plan = Arc::new(Plan {
        targets,
        token: options.token.clone().filter(|t| !t.is_empty()),
        start,
        measure_from,
        end: measure_from + options.duration,
        rate: options.rate,
        timeout: options.timeout,
        next: AtomicU64::new(0),
    });
    eprintln!(
        "coffer-loadgen: {} req/s for {:.0} s after {:.0} s of warm-up, {} connections, {} URL(s)",
        options.rate,
        options.duration.as_secs_f64(),
        options.warmup.as_secs_f64(),
        options.connections,
        plan.targets.len()
    );
    let workers: Vec<_> = pool
        .into_iter()
        .map(|conn| tokio::spawn(worker(plan.clone(), conn)))
        .collect();
    for w in workers {
        let _ = w.await;
    }
    // The measured period ends with the last response (later than `end` when the server
    // fell behind).
    let elapsed = Instant::now()
        .saturating_duration_since(plan.measure_from)
        .max(options.duration);

    println!(
        "{:<44} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "url", "count", "errors", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let mut results = Vec::new();
    let mut failed = false;
    for target in &plan.targets {
        let mut record = lock(&target.record);
        let errors = record.errors;
        let summary: Option<Summary> = summarize(&mut record.latencies);
        let count = summary.map_or(0, |s| s.count);
        #[allow(clippy::cast_precision_loss)]
        let rate = count as f64 / elapsed.as_secs_f64();
        let s = summary.unwrap_or(Summary {
            count: 0,
            p50: 0,
            p90: 0,
            p99: 0,
            p999: 0,
            max: 0,
        });
        failed |= count == 0;
        println!(
            "{:<44} {:>7} {:>6} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            target.url.target,
            count,
            errors,
            rate,
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.p999),
            ms(s.max)
        );
        if !record.statuses.is_empty() {
            let statuses: Vec<String> = record
                .statuses
                .iter()
                .map(|(status, n)| format!("{n} x {status}"))
                .collect();
            println!("    non-2xx: {}", statuses.join(", "));
        }
        if record.not_sent > 0 {
            println!(
                "    not sent (more than {:.0} s behind schedule): {}",
                options.timeout.as_secs_f64(),
                record.not_sent
            );
        }
        if let Some(first) = &record.first_failure {
            println!("    first transport error: {first}");
        }
        results.push(format!(
            "result\t{}\t{count}\t{errors}\t{rate:.1}\t{:.2}\t{:.2}\t{:.2}\t{:.2}\t{:.2}",
            target.url.target,
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.p999),
            ms(s.max)
        ));
    }
    println!("# result\turl\tcount\terrors\trate\tp50_ms\tp90_ms\tp99_ms\tp999_ms\tmax_ms");
    for line in results {
        println!("{line}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("coffer-loadgen").chain(list.iter().copied()))
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact values parsed from exact text
    fn defaults_and_overrides() {
        let o = parse(&["--url", "http://127.0.0.1:1/a"]).unwrap();
        assert_eq!(o.rate, 200.0);
        assert_eq!(o.duration, Duration::from_secs(30));
        assert_eq!(o.warmup, Duration::from_secs(5));
        assert_eq!(o.connections, 16);
        let o = parse(&[
            "--url=http://h:2/x",
            "--url",
            "http://h:2/y",
            "--rate",
            "50.5",
            "--duration=1.5",
            "--warmup",
            "0",
            "--connections",
            "4",
            "--token",
            "t",
        ])
        .unwrap();
        assert_eq!(o.urls.len(), 2);
        assert_eq!(o.rate, 50.5);
        assert_eq!(o.duration, Duration::from_millis(1500));
        assert!(o.warmup.is_zero());
        assert_eq!((o.connections, o.token.as_deref()), (4, Some("t")));
    }

    #[test]
    fn bad_arguments() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--url", "http://h:1/", "--rate", "0"]).is_err());
        assert!(parse(&["--url", "http://h:1/", "--duration", "0"]).is_err());
        assert!(parse(&["--url", "http://h:1/", "--connections", "0"]).is_err());
        assert!(parse(&["--url"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
    }

    #[test]
    fn schedule_is_fixed_rate() {
        let start = Instant::now();
        let plan = Plan {
            targets: Vec::new(),
            token: None,
            start,
            measure_from: start,
            end: start,
            rate: 200.0,
            timeout: Duration::from_secs(1),
            next: AtomicU64::new(0),
        };
        assert_eq!(plan.due(0), start);
        assert_eq!(plan.due(1), start + Duration::from_millis(5));
        assert_eq!(plan.due(200), start + Duration::from_secs(1));
        assert_eq!(plan.due(6_000), start + Duration::from_secs(30));
    }
}
