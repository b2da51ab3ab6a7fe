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

use tokio::time::Instant;

use crate::http::{Connection, RequestError, Url, get_request};
use crate::stats::{Summary, summarize};

const USAGE: &str = "\
usage: coffer-loadgen --url URL [--url URL ...] [options]

Open-loop load at a fixed rate; latency from each request's scheduled send time.

options:
  --url URL          http://host:port/path?query (repeat for several; they take turns)
  --rate N           requests per second, over all URLs        [default: 200]
  --duration SECS    measured period                           [default: 30]
  --warmup SECS      unrecorded period before it               [default: 5]
  --connections N    keep-alive connections                    [default: 16]
  --timeout SECS     per request, connecting included          [default: 10]
  --token TOKEN      send `Authorization: Bearer TOKEN` (or set LOADGEN_TOKEN,
                     which keeps the token out of the process list)
  -h, --help         this text
";

#[derive(Debug, Clone)]
struct Options {
    urls: Vec<Url>,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    timeout: Duration,
    token: Option<String>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        urls: Vec::new(),
        rate: 200.0,
        duration: Duration::from_secs(30),
        warmup: Duration::from_secs(5),
        connections: 16,
        timeout: Duration::from_secs(10),
        token: std::env::var("LOADGEN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let secs = |name: &str, v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{name}: expected seconds, got `{v}`"))
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--url" => options.urls.push(Url::parse(&value()?)?),
            "--rate" => {
                let v = value()?;
                options.rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| format!("--rate: expected a positive number, got `{v}`"))?;
            }
            "--duration" => options.duration = secs("--duration", &value()?)?,
            "--warmup" => options.warmup = secs("--warmup", &value()?)?,
            "--timeout" => options.timeout = secs("--timeout", &value()?)?,
            "--connections" => {
                let v = value()?;
                options.connections = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("--connections: expected 1-10000, got `{v}`"))?;
            }
            "--token" => options.token = Some(value()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if options.urls.is_empty() {
        return Err("give at least one --url".to_owned());
    }
    if options.duration.is_zero() {
        return Err("--duration must be more than 0".to_owned());
    }
    Ok(Some(options))
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
    request: Vec<u8>,
    record: Mutex<Record>,
}

struct Plan {
    targets: Vec<Target>,
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
                Some(c) => c.send(&target.request).await,
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
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("coffer-loadgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let targets: Vec<Target> = options
        .urls
        .iter()
        .map(|url| Target {
            url: url.clone(),
            request: get_request(url, options.token.as_deref()),
            record: Mutex::new(Record::default()),
        })
        .collect();
    // Connect the pool first, so that connecting is not part of the first requests.
    let mut pool = Vec::with_capacity(options.connections);
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

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact values parsed from exact text
    fn defaults_and_overrides() {
        let o = parse_args(args(&["--url", "http://127.0.0.1:1/a"]))
            .unwrap()
            .unwrap();
        assert_eq!(o.rate, 200.0);
        assert_eq!(o.duration, Duration::from_secs(30));
        assert_eq!(o.warmup, Duration::from_secs(5));
        assert_eq!(o.connections, 16);
        let o = parse_args(args(&[
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
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.urls.len(), 2);
        assert_eq!(o.rate, 50.5);
        assert_eq!(o.duration, Duration::from_millis(1500));
        assert!(o.warmup.is_zero());
        assert_eq!((o.connections, o.token.as_deref()), (4, Some("t")));
    }

    #[test]
    fn bad_arguments() {
        assert!(parse_args(args(&[])).is_err());
        assert!(parse_args(args(&["--url", "http://h:1/", "--rate", "0"])).is_err());
        assert!(parse_args(args(&["--url", "http://h:1/", "--duration", "0"])).is_err());
        assert!(parse_args(args(&["--url", "http://h:1/", "--connections", "0"])).is_err());
        assert!(parse_args(args(&["--url"])).is_err());
        assert!(parse_args(args(&["--bogus"])).is_err());
        assert!(parse_args(args(&["--help"])).unwrap().is_none());
    }

    #[test]
    fn schedule_is_fixed_rate() {
        let start = Instant::now();
        let plan = Plan {
            targets: Vec::new(),
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
