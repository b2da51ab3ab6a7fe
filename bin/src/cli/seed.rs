//! `coffer dev seed` (hidden): fills the configured catalog with benchmark data —
//! snapshots over bench sources and a valid audit hash chain — for
//! `tests/bench/scale.sh`. It refuses a catalog that looks in use unless `--force`, and a
//! data directory a running server holds.

use std::time::{Duration, Instant};

use coffer_db::bench_seed::{SeedOptions, SeedProgress, seed_bench};

/// Developer tools; not part of the product.
#[derive(Debug, clap::Subcommand)]
pub enum DevCommand {
    /// Fill the catalog with benchmark data: N snapshots spread over K sources and the
    /// last year, and M audit rows continuing the hash chain. Refuses a catalog with
    /// users besides the bootstrap admin or more than a handful of snapshots.
    Seed {
        /// Snapshots (catalog rows) to add.
        #[arg(long, default_value_t = 100_000)]
        snapshots: u64,
        /// Audit rows to add.
        #[arg(long, default_value_t = 1_000_000)]
        audit_rows: u64,
        /// Sources to spread the snapshots over (`bench-01`, ...; reused when present).
        /// The last one stops backing up half-way through the year.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        sources: u32,
        /// Seed even a catalog that looks in use.
        #[arg(long)]
        force: bool,
    },
}

/// Prints progress at most once a second, with the rate of the current phase.
struct Meter {
    phase: &'static str,
    phase_start: Instant,
    last_print: Instant,
}

impl Meter {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            phase: "",
            phase_start: now,
            last_print: now,
        }
    }

    fn update(&mut self, p: SeedProgress) {
        let now = Instant::now();
        if p.phase != self.phase {
            self.phase = p.phase;
            self.phase_start = now;
            self.last_print = now;
        }
        let finished = p.done >= p.total;
        if !finished && now.duration_since(self.last_print) < Duration::from_secs(1) {
            return;
        }
        self.last_print = now;
        let secs = now.duration_since(self.phase_start).as_secs_f64().max(1e-3);
        #[allow(clippy::cast_precision_loss)]
        let rate = p.done as f64 / secs;
        out!(
            "{:<10} {:>9} / {:<9} {:>8.0} rows/s{}",
            p.phase,
            p.done,
            p.total,
            rate,
            if finished { "  done" } else { "" }
        );
    }
}

pub async fn run(settings: &coffer_config::Settings, command: DevCommand) -> anyhow::Result<()> {
    let DevCommand::Seed {
        snapshots,
        audit_rows,
        sources,
        force,
    } = command;
    // Not beside a server on this data directory: it caches nothing, but a seeded catalog
    // under a server that is serving real requests is exactly the accident to avoid.
    let _lock = coffer::server_lock(&settings.data_dir)?;
    // The repository the seeded catalog belongs to (created on first use, as a server's
    // first start would): a catalog that knows snapshots beside no repository at all is
    // what an unmounted share looks like, and every later command would refuse it.
    let store: std::sync::Arc<dyn coffer_domain::storage::ObjectStore> =
        std::sync::Arc::new(coffer::open_storage(settings)?);
    coffer::repo::open_engine(settings, store).await?;
    let db = coffer::open_database(settings).await?;
    out!(
        "seeding the {} catalog: {snapshots} snapshots over {sources} sources, {audit_rows} audit rows",
        db.backend()
    );
    let options = SeedOptions {
        snapshots,
        audit_rows,
        sources,
        force,
        now: chrono::Utc::now(),
        audit_chain: coffer::audit_chain(settings)?.0,
    };
    let mut meter = Meter::new();
    let started = Instant::now();
    let result = seed_bench(&db, &options, &mut |p| meter.update(p)).await;
    db.close().await?;
    let report = result?;
    #[allow(clippy::cast_precision_loss)]
    let rate = |rows: u64, secs: f64| rows as f64 / secs.max(1e-3);
    out!(
        "seeded {} snapshots in {:.1} s ({:.0} rows/s; {} sources created), counters recomputed in {:.2} s, \
         {} audit rows in {:.1} s ({:.0} rows/s); total {:.1} s",
        report.snapshots,
        report.snapshots_secs,
        rate(report.snapshots, report.snapshots_secs),
        report.sources_created,
        report.counters_secs,
        report.audit_rows,
        report.audit_secs,
        rate(report.audit_rows, report.audit_secs),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
