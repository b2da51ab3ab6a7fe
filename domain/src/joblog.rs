//! A job's log: what happened while it ran, line by line (start, phases, warnings such
//! as unreadable or changed files, the final summary), kept with the job in the catalog
//! and readable while the job runs.
//!
//! The work writes into a [`JobLog`] (part of the job's [`Progress`](crate::engine::Progress))
//! from any thread; the job runner takes the new lines every few seconds and at the end
//! and appends them to the catalog ([`JobLogRepository`]), so that a log follows live on
//! every server instance and outlives the process.
//!
//! A log is bounded: at most [`MAX_LINES`] lines and [`MAX_BYTES`] bytes of messages, each
//! message at most [`MAX_MESSAGE_CHARS`] characters. Lines beyond the bound are counted,
//! not kept; the final lines (the outcome and the summary, written with
//! [`JobLog::push_final`]) are always kept and say how many lines were left out. A backup
//! of a tree with a million unreadable files therefore stores a few hundred kilobytes,
//! not a million rows.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::JobId;
use crate::engine::SnapshotStatus;
use crate::jobs::{Job, JobKind, JobResult, JobState};
use crate::ports::{Clock, RepoError};
use crate::units::human_bytes;

/// Lines one job's log keeps (beyond them, lines are counted, not kept).
pub const MAX_LINES: u64 = 2_000;
/// Bytes of messages one job's log keeps.
pub const MAX_BYTES: u64 = 512 * 1024;
/// Characters of one message; a longer one is cut and marked so.
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// Final lines a log may add beyond its bound (the outcome, the summary, the lists of a
/// result that were not written live, and the count of what was left out).
pub const MAX_FINAL_LINES: u64 = 200;

/// How much a line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub const ALL: [Self; 3] = [Self::Info, Self::Warning, Self::Error];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

named!(LogLevel);

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 1, 2, 3, ... in the order the lines were written.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub level: LogLevel,
    pub message: String,
    /// The message names what is in a backup (a file name, a path inside a snapshot, a
    /// restore target): a caller without the `restore` permission sees
    /// [`HIDDEN`](crate::jobs::HIDDEN) instead (see [`crate::jobs::Job::without_contents`]).
    pub contents: bool,
}

impl LogLine {
    /// This line as a caller who may (`may_see_contents`) or may not see what is in a
    /// backup reads it.
    #[must_use]
    pub fn shown(mut self, may_see_contents: bool) -> Self {
        if self.contents && !may_see_contents {
            crate::jobs::HIDDEN.clone_into(&mut self.message);
        }
        self
    }
}

struct Pending {
    at: Option<DateTime<Utc>>,
    level: LogLevel,
    message: String,
    contents: bool,
}

#[derive(Default)]
struct State {
    /// The sequence number of the last line written (kept or not taken yet).
    last_seq: u64,
    pending: Vec<(u64, Pending)>,
    kept_lines: u64,
    kept_bytes: u64,
    final_lines: u64,
    /// Lines left out by the bound, by level.
    dropped: [u64; LogLevel::ALL.len()],
}

/// The log of a running job: written from any thread, taken by the job runner.
///
/// Lines are stamped with the time they are written by the clock given to
/// [`with_clock`](Self::with_clock); a log without one (the command line's operations,
/// which keep no job record) stamps them when they are taken.
#[derive(Default)]
pub struct JobLog {
    clock: Option<Arc<dyn Clock>>,
    state: Mutex<State>,
}

impl fmt::Debug for JobLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("JobLog")
            .field("lines", &state.last_seq)
            .field("pending", &state.pending.len())
            .field("dropped", &state.dropped)
            .finish_non_exhaustive()
    }
}

impl JobLog {
    /// A log whose lines carry the time `clock` gives when they are written.
    #[must_use]
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock: Some(clock),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep logging.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A line about the job itself (no file names in it).
    pub fn info(&self, message: impl Into<String>) {
        self.push(LogLevel::Info, false, message.into());
    }

    /// A warning that names something in the backup (a file, a path).
    pub fn warn_contents(&self, message: impl Into<String>) {
        self.push(LogLevel::Warning, true, message.into());
    }

    /// A line, kept while the log is within its bound, else counted.
    pub fn push(&self, level: LogLevel, contents: bool, message: String) {
        self.write(level, contents, message, false);
    }

    /// A line of the job's end (its outcome, its summary): kept beyond the bound, up to
    /// [`MAX_FINAL_LINES`] of them.
    pub fn push_final(&self, level: LogLevel, contents: bool, message: String) {
        self.write(level, contents, message, true);
    }

    fn write(&self, level: LogLevel, contents: bool, message: String, last: bool) {
        let at = self.clock.as_ref().map(|c| c.now());
        let message = bounded(message);
        let mut state = self.state();
        let bytes = message.len() as u64;
        let within = state.kept_lines < MAX_LINES && state.kept_bytes + bytes <= MAX_BYTES;
        let room = within || (last && state.final_lines < MAX_FINAL_LINES);
        if !room {
            state.dropped[level as usize] += 1;
            return;
        }
        if last {
            state.final_lines += 1;
        }
        state.kept_lines += 1;
        state.kept_bytes += bytes;
        state.last_seq += 1;
        let seq = state.last_seq;
        state.pending.push((
            seq,
            Pending {
                at,
                level,
                message,
                contents,
            },
        ));
    }

    /// Lines left out by the bound so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.state().dropped.iter().sum()
    }

    /// The final line that says what the bound left out, if anything was: written once
    /// by the runner at the job's end.
    pub fn note_dropped(&self) {
        let dropped = self.state().dropped;
        let total: u64 = dropped.iter().sum();
        if total == 0 {
            return;
        }
        let by_level: Vec<String> = LogLevel::ALL
            .into_iter()
            .filter(|l| dropped[*l as usize] > 0)
            .map(|l| format!("{} {}", dropped[l as usize], plural(l, dropped[l as usize])))
            .collect();
        self.push_final(
            LogLevel::Warning,
            false,
            format!(
                "{total} more lines were not kept ({}): a job's log keeps at most {MAX_LINES} \
                 lines and {} KiB",
                by_level.join(", "),
                MAX_BYTES / 1024
            ),
        );
    }

    /// The lines written since the last call, oldest first; those without a time get
    /// `now`.
    #[must_use]
    pub fn take(&self, now: DateTime<Utc>) -> Vec<LogLine> {
        let pending = std::mem::take(&mut self.state().pending);
        pending
            .into_iter()
            .map(|(seq, p)| LogLine {
                seq,
                at: p.at.unwrap_or(now),
                level: p.level,
                message: p.message,
                contents: p.contents,
            })
            .collect()
    }

    /// Lines taken by [`take`](Self::take) that could not be stored are given back, to
    /// be stored with the next ones.
    pub fn give_back(&self, mut lines: Vec<LogLine>) {
        if lines.is_empty() {
            return;
        }
        let mut state = self.state();
        let later = std::mem::take(&mut state.pending);
        state.pending = lines
            .drain(..)
            .map(|l| {
                (
                    l.seq,
                    Pending {
                        at: Some(l.at),
                        level: l.level,
                        message: l.message,
                        contents: l.contents,
                    },
                )
            })
            .chain(later)
            .collect();
    }
}

const fn plural(level: LogLevel, n: u64) -> &'static str {
    match (level, n) {
        (LogLevel::Info, 1) => "note",
        (LogLevel::Info, _) => "notes",
        (LogLevel::Warning, 1) => "warning",
        (LogLevel::Warning, _) => "warnings",
        (LogLevel::Error, 1) => "error",
        (LogLevel::Error, _) => "errors",
    }
}

/// `message` cut to [`MAX_MESSAGE_CHARS`], on a character boundary, marked when cut.
fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => message,
        Some((cut, _)) => format!("{}… (cut)", &message[..cut]),
    }
}

/// A line to write: its level, whether it names what is in a backup, its message.
pub type Line = (LogLevel, bool, String);

/// How long `secs` seconds read: `0.4 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
#[must_use]
pub fn human_duration(millis: i64) -> String {
    let millis = millis.max(0);
    if millis < 60_000 {
        #[allow(clippy::cast_precision_loss)]
        return format!("{:.1} s", millis as f64 / 1000.0);
    }
    let secs = millis / 1000;
    if secs < 3600 {
        return format!("{} min {:02} s", secs / 60, secs % 60);
    }
    format!("{} h {:02} min", secs / 3600, secs % 3600 / 60)
}

/// The first line of a job's log: what it does, who asked and when, where it runs.
#[must_use]
pub fn start_line(job: &Job, described: &str, instance: &str) -> Line {
    (
        LogLevel::Info,
        // A restore's description names its path and target.
        job.kind() == JobKind::Restore,
        format!(
            "{described} started (queued by {} at {}; server instance {instance})",
            job.requested_by,
            job.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        ),
    )
}

/// The lines that end the log of `job`, which has ended: the outcome with the job's
/// duration and a summary, then what its result lists that the work did not write while
/// it ran (a restore's warnings, damage found, what an import skipped). A backup's
/// warnings are written as they happen, so its summary only counts them.
#[must_use]
pub fn end_lines(job: &Job) -> Vec<Line> {
    let took = match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) => format!(" after {}", human_duration((f - s).num_milliseconds())),
        _ => String::new(),
    };
    let mut lines = Vec::new();
    match job.state {
        JobState::Cancelled => lines.push((LogLevel::Warning, false, format!("cancelled{took}"))),
        JobState::Failed => {
            let (code, message) = job
                .error
                .as_ref()
                .map_or(("unknown", "no error was recorded"), |e| {
                    (e.code.as_str(), e.message.as_str())
                });
            // The same rule as `Job::without_contents`: a restore's or a verification's
            // failure may name a file.
            let contents = matches!(job.kind(), JobKind::Restore | JobKind::Verify);
            lines.push((
                LogLevel::Error,
                contents,
                format!("failed{took}: {message} ({code})"),
            ));
        }
        JobState::Succeeded => {
            if let Some(result) = &job.result {
                result_lines(result, &took, &mut lines);
            } else {
                lines.push((LogLevel::Info, false, format!("succeeded{took}")));
            }
        }
        JobState::Queued | JobState::Running => {}
    }
    lines
}

fn each(lines: &mut Vec<Line>, level: LogLevel, contents: bool, items: &[String]) {
    lines.extend(items.iter().map(|i| (level, contents, i.clone())));
}

fn result_lines(result: &JobResult, took: &str, lines: &mut Vec<Line>) {
    let done = |ok: bool| {
        if ok {
            LogLevel::Info
        } else {
            LogLevel::Warning
        }
    };
    match result {
        JobResult::Backup {
            snapshot_id,
            status,
            files,
            bytes,
            bytes_added,
            warnings,
        } => {
            let partial = *status == SnapshotStatus::Partial;
            let warned = if warnings.is_empty() {
                String::new()
            } else {
                let n = warnings.len();
                format!("; {n} warning{} (above)", if n == 1 { "" } else { "s" })
            };
            lines.push((
                done(!partial),
                false,
                format!(
                    "succeeded{took}: snapshot {} ({status}), {files} files, {} read, {} new{warned}",
                    snapshot_id.short(),
                    human_bytes(*bytes),
                    human_bytes(*bytes_added),
                ),
            ));
        }
        JobResult::Restore {
            snapshot_id,
            target,
            files,
            dirs,
            symlinks,
            hardlinks,
            bytes,
            warnings,
        } => {
            lines.push((
                done(warnings.is_empty()),
                true,
                format!(
                    "succeeded{took}: snapshot {} restored into {target}: {files} files \
                     ({hardlinks} as hard links), {dirs} directories, {symlinks} symlinks, {}",
                    snapshot_id.short(),
                    human_bytes(*bytes),
                ),
            ));
            each(lines, LogLevel::Warning, true, warnings);
        }
        JobResult::Verify {
            snapshot_id,
            ok,
            problems,
            damaged_files,
            bytes_read,
        } => {
            lines.push(if *ok {
                (
                    LogLevel::Info,
                    false,
                    format!(
                        "succeeded{took}: snapshot {} is intact ({} read)",
                        snapshot_id.short(),
                        human_bytes(*bytes_read)
                    ),
                )
            } else {
                (
                    LogLevel::Error,
                    false,
                    format!(
                        "finished{took}: snapshot {} is DAMAGED: {} problems, {} damaged files",
                        snapshot_id.short(),
                        problems.len(),
                        damaged_files.len()
                    ),
                )
            });
            each(lines, LogLevel::Error, true, problems);
            let damaged: Vec<String> = damaged_files
                .iter()
                .map(|f| format!("damaged: {f}"))
                .collect();
            each(lines, LogLevel::Error, true, &damaged);
        }
        JobResult::Prune {
            snapshots,
            packs_deleted,
            packs_repacked,
            bytes_before,
            bytes_after,
        } => lines.push((
            LogLevel::Info,
            false,
            format!(
                "succeeded{took}: {snapshots} snapshots kept; {packs_deleted} packs deleted, \
                 {packs_repacked} repacked; storage {} before, {} after",
                human_bytes(*bytes_before),
                human_bytes(*bytes_after),
            ),
        )),
        JobResult::Check {
            ok,
            snapshots,
            slice,
            slices,
            packs_read,
            bytes_read,
            problems,
            damaged_snapshots,
        } => {
            let read = format!(
                "{snapshots} snapshots' structure checked; data slice {} of {slices} re-read \
                 ({packs_read} packs, {})",
                slice + 1,
                human_bytes(*bytes_read)
            );
            lines.push(if *ok {
                (
                    LogLevel::Info,
                    false,
                    format!("succeeded{took}: {read}; no damage"),
                )
            } else {
                (
                    LogLevel::Error,
                    false,
                    format!(
                        "finished{took}: DAMAGE found: {} problems, {} damaged snapshots; {read}",
                        problems.len(),
                        damaged_snapshots.len()
                    ),
                )
            });
            each(lines, LogLevel::Error, false, problems);
            let damaged: Vec<String> = damaged_snapshots
                .iter()
                .map(|s| format!("damaged snapshot: {s}"))
                .collect();
            each(lines, LogLevel::Error, false, &damaged);
        }
        JobResult::Copy {
            replica,
            snapshots,
            replica_snapshots,
            objects_copied,
            bytes_copied,
            objects_present,
            snapshots_deleted,
        } => lines.push((
            LogLevel::Info,
            false,
            format!(
                "succeeded{took}: {objects_copied} objects ({}) copied to replica `{replica}`, \
                 {objects_present} already there; it holds {replica_snapshots} of \
                 {snapshots} snapshots; {snapshots_deleted} removed by retention",
                human_bytes(*bytes_copied)
            ),
        )),
        JobResult::Import {
            dry_run,
            source,
            imported,
            already_imported,
            skipped,
            users,
            user_notes,
            audit_rows,
            settings,
        } => {
            let verb = if *dry_run { "would import" } else { "imported" };
            lines.push((
                done(skipped.is_empty()),
                false,
                format!(
                    "succeeded{took}{}: {verb} {imported} backups into source `{source}` \
                     ({already_imported} imported before, {} skipped), {users} users, \
                     {audit_rows} audit rows",
                    if *dry_run { " (dry run)" } else { "" },
                    skipped.len()
                ),
            ));
            each(lines, LogLevel::Warning, true, skipped);
            each(lines, LogLevel::Info, false, user_notes);
            each(lines, LogLevel::Info, false, settings);
        }
    }
}

/// A page of a job's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// Lines after the `after` asked for, oldest first.
    pub lines: Vec<LogLine>,
    /// What to ask for next (`after`): the last line's number, or `after` when none.
    pub next_after: u64,
    /// The job has ended and every line of its log has been read: nothing more will come.
    pub complete: bool,
}

/// Where jobs' logs are kept.
///
/// Contract: `append` stores lines of a job (each `(job, seq)` at most once: a line
/// appended again is ignored, so a retried append is harmless); `read` returns up to
/// `limit` lines of `job` with `seq > after`, in `seq` order; the lines of a job that
/// does not exist are none.
#[async_trait]
pub trait JobLogRepository: Send + Sync {
    async fn append(&self, job: JobId, lines: &[LogLine]) -> Result<(), RepoError>;
    async fn read(&self, job: JobId, after: u64, limit: u64) -> Result<Vec<LogLine>, RepoError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    struct Fixed(DateTime<Utc>);

    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 8, 0, s).unwrap()
    }

    #[test]
    fn lines_are_numbered_stamped_and_taken_once() {
        let log = JobLog::with_clock(Arc::new(Fixed(t(1))));
        log.info("started");
        log.warn_contents("home/ann/a.txt: changed while read");
        let lines = log.take(t(9));
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.seq, l.at, l.level))
                .collect::<Vec<_>>(),
            [(1, t(1), LogLevel::Info), (2, t(1), LogLevel::Warning)]
        );
        assert!(log.take(t(9)).is_empty());
        log.info("next");
        assert_eq!(log.take(t(9))[0].seq, 3);
        // Without a clock, lines take the time they are taken.
        let plain = JobLog::default();
        plain.info("x");
        assert_eq!(plain.take(t(7))[0].at, t(7));
    }

    #[test]
    fn the_bound_counts_what_it_leaves_out_and_keeps_the_end() {
        let log = JobLog::default();
        for i in 0..MAX_LINES + 25 {
            log.warn_contents(format!("file {i}: unreadable"));
        }
        log.info("one more note");
        assert_eq!(log.dropped(), 26);
        log.push_final(LogLevel::Info, false, "succeeded".into());
        log.note_dropped();
        let lines = log.take(t(0));
        assert_eq!(lines.len() as u64, MAX_LINES + 2);
        let last = &lines[lines.len() - 1];
        assert!(
            last.message
                .starts_with("26 more lines were not kept (1 note, 25 warnings)"),
            "{}",
            last.message
        );
        assert_eq!(lines[lines.len() - 2].message, "succeeded");
        // Numbers stay dense: the reader's `after` never skips a kept line.
        assert!(lines.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }

    #[test]
    fn the_byte_bound_holds_and_long_messages_are_cut() {
        let log = JobLog::default();
        let too_long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        log.info(too_long);
        let line = &log.take(t(0))[0];
        assert!(line.message.ends_with("… (cut)"));
        assert_eq!(
            line.message.chars().count(),
            MAX_MESSAGE_CHARS + "… (cut)".chars().count()
        );
        let big = "x".repeat(MAX_MESSAGE_CHARS);
        for _ in 0..MAX_LINES {
            log.info(big.clone());
        }
        let kept: u64 = log.take(t(0)).iter().map(|l| l.message.len() as u64).sum();
        assert!(kept <= MAX_BYTES, "{kept}");
        assert!(log.dropped() > 0);
    }

    #[test]
    fn final_lines_have_a_bound_of_their_own() {
        let log = JobLog::default();
        for _ in 0..MAX_LINES {
            log.info("n");
        }
        for _ in 0..MAX_FINAL_LINES + 5 {
            log.push_final(LogLevel::Warning, true, "problem".into());
        }
        assert_eq!(log.take(t(0)).len() as u64, MAX_LINES + MAX_FINAL_LINES);
        assert_eq!(log.dropped(), 5);
    }

    #[test]
    fn given_back_lines_come_first_again() {
        let log = JobLog::default();
        log.info("a");
        log.info("b");
        let taken = log.take(t(0));
        log.info("c");
        log.give_back(taken);
        let again: Vec<u64> = log.take(t(0)).iter().map(|l| l.seq).collect();
        assert_eq!(again, [1, 2, 3]);
    }

    fn ended(params: crate::jobs::JobParams, state: JobState) -> Job {
        let mut job = Job::queued(JobId::from_uuid(uuid::Uuid::nil()), params, "alice", t(0));
        job.state = state;
        job.started_at = Some(t(1));
        job.finished_at = Some(t(13));
        job
    }

    #[test]
    fn the_end_of_a_log_tells_the_outcome_and_what_was_not_written_live() {
        let snapshot = crate::SnapshotId::parse(&"ab".repeat(32)).unwrap();
        let mut backup = ended(
            crate::jobs::JobParams::Backup {
                source_id: crate::SourceId::new(1),
                source_name: "docs".into(),
            },
            JobState::Succeeded,
        );
        backup.result = Some(JobResult::Backup {
            snapshot_id: snapshot.clone(),
            status: SnapshotStatus::Partial,
            files: 10,
            bytes: 2048,
            bytes_added: 1024,
            warnings: vec!["a.txt: unreadable".into()],
        });
        let lines = end_lines(&backup);
        assert_eq!(
            lines.len(),
            1,
            "a backup's warnings were written live: {lines:?}"
        );
        assert_eq!(lines[0].0, LogLevel::Warning);
        assert_eq!(
            lines[0].2,
            "succeeded after 12.0 s: snapshot abababababab (partial), 10 files, 2.00 KiB read, \
             1.00 KiB new; 1 warning (above)"
        );

        let mut verify = ended(
            crate::jobs::JobParams::Verify {
                snapshot_id: snapshot.clone(),
                read_data: true,
            },
            JobState::Succeeded,
        );
        verify.result = Some(JobResult::Verify {
            snapshot_id: snapshot,
            ok: false,
            problems: vec!["chunk 12 of b.txt: missing".into()],
            damaged_files: vec!["b.txt".into()],
            bytes_read: 0,
        });
        let lines = end_lines(&verify);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.0 == LogLevel::Error));
        assert!(lines[0].2.contains("DAMAGED"), "{}", lines[0].2);
        assert_eq!((lines[2].1, lines[2].2.as_str()), (true, "damaged: b.txt"));

        let mut failed = ended(
            crate::jobs::JobParams::Restore {
                snapshot_id: crate::SnapshotId::parse(&"cd".repeat(32)).unwrap(),
                path: None,
                target: "/srv/r".into(),
            },
            JobState::Failed,
        );
        failed.error = Some(crate::jobs::JobError::new("io", "/srv/r: disk full"));
        assert_eq!(
            end_lines(&failed),
            [(
                LogLevel::Error,
                true,
                "failed after 12.0 s: /srv/r: disk full (io)".to_owned()
            )]
        );
        let mut cancelled = failed;
        cancelled.state = JobState::Cancelled;
        cancelled.finished_at = Some(t(1) + chrono::TimeDelta::seconds(125));
        assert_eq!(end_lines(&cancelled)[0].2, "cancelled after 2 min 05 s");
        assert!(
            start_line(&cancelled, "restore of x", "i1").1,
            "a restore names its target"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(-5), "0.0 s");
        assert_eq!(human_duration(420), "0.4 s");
        assert_eq!(human_duration(59_940), "59.9 s");
        assert_eq!(human_duration(60_000), "1 min 00 s");
        assert_eq!(human_duration(7_380_000), "2 h 03 min");
    }

    #[test]
    fn hidden_lines_keep_their_level_and_number() {
        let line = LogLine {
            seq: 4,
            at: t(0),
            level: LogLevel::Warning,
            message: "home/ann/diary.txt: unreadable".into(),
            contents: true,
        };
        let hidden = line.clone().shown(false);
        assert_eq!(hidden.message, crate::jobs::HIDDEN);
        assert_eq!((hidden.seq, hidden.level), (4, LogLevel::Warning));
        assert_eq!(line.clone().shown(true), line);
    }
}
