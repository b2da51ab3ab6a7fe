//! Retention: which snapshots of one source to keep, decided from the policy, the
//! snapshots and the current time alone.
//!
//! Rules, in order of precedence (see [`decide`]):
//! 1. a `protected` snapshot is kept;
//! 2. the newest complete snapshot is kept (the newest snapshot overall when none is
//!    complete); a suspicious one (see below) is never it;
//! 3. a snapshot older than `max_age_days` is removed, whatever the keep rules say;
//! 4. a suspicious snapshot is kept;
//! 5. with no keep rule set, everything else is kept;
//! 6. otherwise a snapshot is kept when a keep rule selects it (`max_backups`,
//!    `keep_within_days`, and restic-style daily / weekly / monthly / yearly buckets).
//!
//! **Bursts.** `max_backups` counts bursts, not snapshots: every snapshot taken within one
//! window of the clock (an hour by default, [`DEFAULT_BURST_MINUTES`]; aligned to the
//! epoch, so UTC clock hours) counts once, and the newest N windows that have snapshots
//! are kept whole. Ten backups in a row — an operator's, or a script's — then never push
//! older history out: they take one place of the N. A window of 0 counts every snapshot.
//!
//! **Suspicious snapshots** (a source that came back empty, or shrank by more than the
//! configured share: an unmounted share, a deleted tree) are kept, and never replace an
//! older snapshot: they take no place among the last N, open no daily/weekly/... bucket,
//! and are never the "newest complete snapshot" that is kept whatever happens.

use chrono::{DateTime, Datelike as _, TimeDelta, Utc};

/// Which snapshots of one source to keep. 0 turns a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Keep the newest N snapshots (the brief's `max_backups`).
    pub max_backups: u32,
    /// Remove snapshots older than N days (the brief's `max_age_days`): a hard limit that
    /// the keep rules below do not override.
    pub max_age_days: u32,
    /// Keep every snapshot taken within the last N days.
    pub keep_within_days: u32,
    /// Keep the newest snapshot of each of the last N days / ISO weeks / months / years
    /// that have snapshots.
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
}

impl Retention {
    /// Whether any rule that keeps by count or bucket is set (max_backups, keep_*,
    /// including `keep_within_days`). Without one, every snapshot younger than
    /// `max_age_days` is kept.
    pub fn has_keep_rules(&self) -> bool {
        self.max_backups > 0
            || self.keep_within_days > 0
            || self.keep_daily > 0
            || self.keep_weekly > 0
            || self.keep_monthly > 0
            || self.keep_yearly > 0
    }

    /// The largest count or age a rule may set.
    pub const MAX: u32 = 100_000;

    /// Refuses counts and ages above [`Retention::MAX`].
    ///
    /// # Errors
    /// `RetentionOutOfRange` naming the limit.
    pub fn check(&self) -> Result<(), RetentionOutOfRange> {
        let all = [
            self.max_backups,
            self.max_age_days,
            self.keep_within_days,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        if all.iter().any(|n| *n > Self::MAX) {
            return Err(RetentionOutOfRange);
        }
        Ok(())
    }

    /// Whether nothing at all is set (everything is kept).
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }
}

/// A rule set above [`Retention::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("retention counts and ages are at most {}", Retention::MAX)]
pub struct RetentionOutOfRange;

/// A snapshot as retention sees it; `Id` names it (a `SnapshotId` in the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<Id> {
    pub id: Id,
    pub created_at: DateTime<Utc>,
    pub protected: bool,
    /// Status `ok` (not `partial`).
    pub complete: bool,
    /// The source looked empty or collapsed when it was taken (see the module docs).
    pub suspicious: bool,
}

/// The decision for one snapshot, with every reason that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<Id> {
    pub id: Id,
    pub created_at: DateTime<Utc>,
    pub keep: bool,
    /// Human-readable, stable wording, e.g. "protected", "newest complete snapshot",
    /// "last 10", "daily 2026-11-20", "weekly 2026-W47", "monthly 2026-11", "yearly 2026",
    /// "within 7 days", "older than 30 days", "no rule keeps it", "no limits set".
    pub reasons: Vec<String>,
}

/// Decides for every snapshot of ONE source. Output: one verdict per input snapshot,
/// newest first (ties broken by id, descending), whatever the input order.
///
/// Reasons of a kept snapshot come in this order: "protected", "newest complete
/// snapshot" / "newest snapshot", then the keep rules that select it ("last N",
/// "within N days", "daily …", "weekly …", "monthly …", "yearly …"), or "no count limit" /
/// "no limits set" when no keep rule is set. A snapshot older than `max_age_days` gets no
/// keep-rule reasons: it is kept only by rules 1–2 (their reasons alone), otherwise removed
/// with "older than N days". A removed snapshot younger than that has "no rule keeps it".
///
/// Every snapshot but a suspicious one — protected, partial, or past the age limit — counts
/// toward "last N" (by its hour) and takes its bucket; as snapshots past the age limit are
/// the oldest, they never take a place from a younger one.
pub fn decide<Id: Clone + Ord>(
    policy: &Retention,
    snapshots: &[Candidate<Id>],
    now: DateTime<Utc>,
) -> Vec<Verdict<Id>> {
    decide_with(policy, snapshots, now, DEFAULT_BURST_MINUTES)
}

/// The window (minutes) within which snapshots count as one burst for `max_backups`.
pub const DEFAULT_BURST_MINUTES: u32 = 60;

/// [`decide`] with another burst window: `burst_minutes` of 0 counts every snapshot.
pub fn decide_with<Id: Clone + Ord>(
    policy: &Retention,
    snapshots: &[Candidate<Id>],
    now: DateTime<Utc>,
    burst_minutes: u32,
) -> Vec<Verdict<Id>> {
    let mut order: Vec<&Candidate<Id>> = snapshots.iter().collect();
    order.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });

    let newest = match order.iter().position(|c| c.complete && !c.suspicious) {
        Some(i) => Some((i, "newest complete snapshot")),
        None => (!order.is_empty()).then_some((0, "newest snapshot")),
    };
    // Strictly before this instant is "older than max_age_days"; None: no age limit (the
    // rule is off, or the limit reaches before the earliest representable time).
    let age_cutoff = if policy.max_age_days > 0 {
        days_before(now, policy.max_age_days)
    } else {
        None
    };
    let selected = keep_rule_reasons(policy, &order, now, burst_minutes);

    order
        .iter()
        .zip(selected)
        .enumerate()
        .map(|(i, (c, selected))| {
            let mut reasons = Vec::new();
            if c.protected {
                reasons.push("protected".to_owned());
            }
            if let Some((_, why)) = newest.filter(|&(n, _)| n == i) {
                reasons.push(why.to_owned());
            }
            let pinned = !reasons.is_empty();
            let too_old = age_cutoff.is_some_and(|cutoff| c.created_at < cutoff);
            let keep = if too_old {
                if !pinned {
                    reasons.push(format!("older than {} days", policy.max_age_days));
                }
                pinned
            } else if c.suspicious {
                reasons.push("suspicious: kept for review".to_owned());
                true
            } else if !policy.has_keep_rules() {
                reasons.push(if policy.is_unlimited() {
                    "no limits set".to_owned()
                } else {
                    "no count limit".to_owned()
                });
                true
            } else if selected.is_empty() {
                if !pinned {
                    reasons.push("no rule keeps it".to_owned());
                }
                pinned
            } else {
                reasons.extend(selected);
                true
            };
            Verdict {
                id: c.id.clone(),
                created_at: c.created_at,
                keep,
                reasons,
            }
        })
        .collect()
}

/// `now` minus `days` days, or None when that is before the earliest representable time.
fn days_before(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    TimeDelta::try_days(i64::from(days)).and_then(|d| now.checked_sub_signed(d))
}

/// For each snapshot of `order` (newest first), the keep rules (rule 5) that select it.
fn keep_rule_reasons<Id>(
    policy: &Retention,
    order: &[&Candidate<Id>],
    now: DateTime<Utc>,
    burst_minutes: u32,
) -> Vec<Vec<String>> {
    let last_n = usize::try_from(policy.max_backups).unwrap_or(usize::MAX);
    // The bursts that count for "last N": the newest N that hold a snapshot which is not
    // suspicious. Without a window, each snapshot is its own (its place in `order`).
    let burst = |i: usize, c: &Candidate<Id>| -> i64 {
        if burst_minutes == 0 {
            -i64::try_from(i).unwrap_or(i64::MAX)
        } else {
            c.created_at
                .timestamp()
                .div_euclid(i64::from(burst_minutes) * 60)
        }
    };
    let mut bursts: Vec<i64> = Vec::new();
    for (i, c) in order.iter().enumerate().filter(|(_, c)| !c.suspicious) {
        let b = burst(i, c);
        if bursts.last() != Some(&b) {
            if bursts.len() == last_n {
                break;
            }
            bursts.push(b);
        }
    }
    // Newest first: a snapshot of that burst or a later one is among them.
    let oldest_burst = bursts.last().copied();
    // Selected when at or after this instant; None with the rule on: everything is within.
    let within_cutoff = days_before(now, policy.keep_within_days);
    let mut buckets = [
        Bucket::new("daily", policy.keep_daily, day_label),
        Bucket::new("weekly", policy.keep_weekly, week_label),
        Bucket::new("monthly", policy.keep_monthly, month_label),
        Bucket::new("yearly", policy.keep_yearly, year_label),
    ];
    order
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut reasons = Vec::new();
            if c.suspicious {
                // Kept by its own rule; it takes no place from a snapshot before it.
                return reasons;
            }
            if policy.max_backups > 0 && oldest_burst.is_none_or(|b| burst(i, c) >= b) {
                reasons.push(format!("last {}", policy.max_backups));
            }
            if policy.keep_within_days > 0
                && within_cutoff.is_none_or(|cutoff| c.created_at >= cutoff)
            {
                reasons.push(format!("within {} days", policy.keep_within_days));
            }
            reasons.extend(buckets.iter_mut().filter_map(|b| b.offer(c.created_at)));
            reasons
        })
        .collect()
}

/// One restic-style bucket rule: walking newest to oldest, the first snapshot of each new
/// bucket is selected until `remaining` buckets have been used.
struct Bucket {
    kind: &'static str,
    remaining: u32,
    last: Option<String>,
    label: fn(DateTime<Utc>) -> String,
}

impl Bucket {
    fn new(kind: &'static str, count: u32, label: fn(DateTime<Utc>) -> String) -> Self {
        Self {
            kind,
            remaining: count,
            last: None,
            label,
        }
    }

    /// The reason, when the snapshot taken at `at` opens a new bucket that is still kept.
    fn offer(&mut self, at: DateTime<Utc>) -> Option<String> {
        if self.remaining == 0 {
            return None;
        }
        let label = (self.label)(at);
        if self.last.as_deref() == Some(label.as_str()) {
            return None;
        }
        self.remaining -= 1;
        let reason = format!("{} {label}", self.kind);
        self.last = Some(label);
        Some(reason)
    }
}

/// What a new snapshot of a source is compared with to tell whether the source collapsed:
/// the files and bytes of the source's latest snapshot that was not suspicious itself, and
/// the share (percent) by which either may shrink before the new one is suspicious.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    pub files: u64,
    pub bytes: u64,
    pub shrink_percent: u8,
}

/// Why a snapshot of `files` files and `bytes` bytes looks wrong against `expected`:
/// the source came back empty, or shrank by more than the allowed share. `None` when it
/// looks right (or the check is off: a share of 0, or nothing to compare with).
#[must_use]
pub fn suspicion(expected: &Expectation, files: u64, bytes: u64) -> Option<String> {
    if expected.files == 0 {
        return None;
    }
    if files == 0 {
        return Some(format!(
            "the source is empty; its previous snapshot held {} files",
            expected.files
        ));
    }
    let share = u64::from(expected.shrink_percent.min(100));
    if share == 0 {
        return None;
    }
    // Shrank by more than `share` percent: what is left is under (100 - share) percent.
    let shrank = |now: u64, before: u64| {
        u128::from(now) * 100 < u128::from(before) * u128::from(100 - share)
    };
    if shrank(files, expected.files) {
        return Some(format!(
            "{files} files, down from {} (more than {share}% fewer)",
            expected.files
        ));
    }
    if shrank(bytes, expected.bytes) {
        return Some(format!(
            "{} bytes, down from {} (more than {share}% less)",
            bytes, expected.bytes
        ));
    }
    None
}

fn day_label(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}-{:02}", at.year(), at.month(), at.day())
}

fn week_label(at: DateTime<Utc>) -> String {
    let week = at.iso_week();
    format!("{:04}-W{:02}", week.year(), week.week())
}

fn month_label(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

fn year_label(at: DateTime<Utc>) -> String {
    format!("{:04}", at.year())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    /// Thursday 2026-11-26 12:00 UTC (ISO week 2026-W48).
    fn now() -> DateTime<Utc> {
        at(2026, 11, 26, 12, 0, 0)
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn snap(id: &str, created_at: DateTime<Utc>) -> Candidate<String> {
        Candidate {
            id: id.to_owned(),
            created_at,
            protected: false,
            complete: true,
            suspicious: false,
        }
    }

    fn protected(id: &str, created_at: DateTime<Utc>) -> Candidate<String> {
        Candidate {
            protected: true,
            ..snap(id, created_at)
        }
    }

    fn partial(id: &str, created_at: DateTime<Utc>) -> Candidate<String> {
        Candidate {
            complete: false,
            ..snap(id, created_at)
        }
    }

    /// `(id, keep, reasons)`, in output order.
    type Row<'a> = (&'a str, bool, &'a [&'a str]);

    #[track_caller]
    fn check(policy: Retention, snapshots: &[Candidate<String>], expected: &[Row<'_>]) {
        let verdicts = decide(&policy, snapshots, now());
        let got: Vec<(&str, bool, Vec<&str>)> = verdicts
            .iter()
            .map(|v| {
                (
                    v.id.as_str(),
                    v.keep,
                    v.reasons.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let want: Vec<(&str, bool, Vec<&str>)> = expected
            .iter()
            .map(|&(id, keep, reasons)| (id, keep, reasons.to_vec()))
            .collect();
        assert_eq!(got, want, "policy {policy:?}");
        // The verdict carries the snapshot's own time.
        for v in &verdicts {
            let input = snapshots.iter().find(|c| c.id == v.id).unwrap();
            assert_eq!(v.created_at, input.created_at, "{}", v.id);
        }
    }

    fn ids(verdicts: &[Verdict<String>]) -> Vec<&str> {
        verdicts.iter().map(|v| v.id.as_str()).collect()
    }

    // --- Retention helpers -------------------------------------------------------------

    #[test]
    fn has_keep_rules_and_is_unlimited() {
        let r = Retention::default;
        let table: &[(Retention, bool, bool)] = &[
            (r(), false, true),
            (
                Retention {
                    max_age_days: 30,
                    ..r()
                },
                false,
                false,
            ),
            (
                Retention {
                    max_backups: 1,
                    ..r()
                },
                true,
                false,
            ),
            (
                Retention {
                    keep_within_days: 1,
                    ..r()
                },
                true,
                false,
            ),
            (
                Retention {
                    keep_daily: 1,
                    ..r()
                },
                true,
                false,
            ),
            (
                Retention {
                    keep_weekly: 1,
                    ..r()
                },
                true,
                false,
            ),
            (
                Retention {
                    keep_monthly: 1,
                    ..r()
                },
                true,
                false,
            ),
            (
                Retention {
                    keep_yearly: 1,
                    ..r()
                },
                true,
                false,
            ),
            (
                Retention {
                    max_backups: 10,
                    max_age_days: 30,
                    ..r()
                },
                true,
                false,
            ),
        ];
        for (policy, keep_rules, unlimited) in table {
            assert_eq!(policy.has_keep_rules(), *keep_rules, "{policy:?}");
            assert_eq!(policy.is_unlimited(), *unlimited, "{policy:?}");
        }
    }

    // --- Trivial inputs ----------------------------------------------------------------

    #[test]
    fn empty_input_gives_no_verdicts() {
        let policies = [
            Retention::default(),
            Retention {
                max_backups: 10,
                max_age_days: 30,
                ..Retention::default()
            },
            Retention {
                keep_daily: 7,
                keep_weekly: 4,
                ..Retention::default()
            },
        ];
        for policy in policies {
            assert_eq!(decide::<String>(&policy, &[], now()), vec![], "{policy:?}");
        }
    }

    #[test]
    fn nothing_set_keeps_everything() {
        check(
            Retention::default(),
            &[
                snap("a", at(2020, 1, 1, 0, 0, 0)),
                snap("b", at(2026, 11, 25, 0, 0, 0)),
                partial("c", at(2026, 11, 26, 11, 0, 0)),
                protected("d", at(2024, 6, 1, 0, 0, 0)),
            ],
            &[
                ("c", true, &["no limits set"]),
                ("b", true, &["newest complete snapshot", "no limits set"]),
                ("d", true, &["protected", "no limits set"]),
                ("a", true, &["no limits set"]),
            ],
        );
    }

    #[test]
    fn single_snapshot_is_always_kept() {
        let old = at(2000, 1, 1, 0, 0, 0);
        let policy = Retention {
            max_backups: 1,
            max_age_days: 1,
            ..Retention::default()
        };
        check(
            policy,
            &[snap("a", old)],
            &[("a", true, &["newest complete snapshot"])],
        );
        check(
            policy,
            &[partial("a", old)],
            &[("a", true, &["newest snapshot"])],
        );
    }

    // --- Each rule alone ---------------------------------------------------------------

    #[test]
    fn max_backups_alone_keeps_the_newest_n() {
        check(
            Retention {
                max_backups: 3,
                ..Retention::default()
            },
            &[
                snap("s1", at(2026, 11, 20, 3, 0, 0)),
                snap("s2", at(2026, 11, 21, 3, 0, 0)),
                snap("s3", at(2026, 11, 22, 3, 0, 0)),
                snap("s4", at(2026, 11, 23, 3, 0, 0)),
                snap("s5", at(2026, 11, 24, 3, 0, 0)),
            ],
            &[
                ("s5", true, &["newest complete snapshot", "last 3"]),
                ("s4", true, &["last 3"]),
                ("s3", true, &["last 3"]),
                ("s2", false, &["no rule keeps it"]),
                ("s1", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn max_backups_larger_than_the_count_keeps_all() {
        check(
            Retention {
                max_backups: u32::MAX,
                ..Retention::default()
            },
            &[
                snap("s1", at(2026, 11, 20, 3, 0, 0)),
                snap("s2", at(2026, 11, 21, 3, 0, 0)),
            ],
            &[
                ("s2", true, &["newest complete snapshot", "last 4294967295"]),
                ("s1", true, &["last 4294967295"]),
            ],
        );
    }

    #[test]
    fn max_age_alone_removes_only_older_snapshots() {
        check(
            Retention {
                max_age_days: 7,
                ..Retention::default()
            },
            &[
                snap("d0", at(2026, 11, 26, 6, 0, 0)),
                snap("d3", at(2026, 11, 23, 6, 0, 0)),
                snap("d7", at(2026, 11, 19, 13, 0, 0)), // 6 days 23 hours old
                snap("d8", at(2026, 11, 19, 11, 0, 0)), // 7 days 1 hour old
                snap("d30", at(2026, 10, 27, 0, 0, 0)),
            ],
            &[
                ("d0", true, &["newest complete snapshot", "no count limit"]),
                ("d3", true, &["no count limit"]),
                ("d7", true, &["no count limit"]),
                ("d8", false, &["older than 7 days"]),
                ("d30", false, &["older than 7 days"]),
            ],
        );
    }

    #[test]
    fn max_age_alone_never_removes_the_newest_complete_snapshot() {
        check(
            Retention {
                max_age_days: 30,
                ..Retention::default()
            },
            &[
                snap("old2", at(2026, 9, 1, 0, 0, 0)),
                snap("old1", at(2026, 8, 1, 0, 0, 0)),
            ],
            &[
                ("old2", true, &["newest complete snapshot"]),
                ("old1", false, &["older than 30 days"]),
            ],
        );
    }

    #[test]
    fn keep_within_days_alone() {
        check(
            Retention {
                keep_within_days: 2,
                ..Retention::default()
            },
            &[
                snap("a", at(2026, 11, 26, 11, 0, 0)),
                snap("b", at(2026, 11, 24, 12, 0, 0)), // exactly 2 days old
                snap("c", at(2026, 11, 24, 11, 59, 59)),
                snap("d", at(2026, 11, 1, 0, 0, 0)),
            ],
            &[
                ("a", true, &["newest complete snapshot", "within 2 days"]),
                ("b", true, &["within 2 days"]),
                ("c", false, &["no rule keeps it"]),
                ("d", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn keep_daily_alone_takes_the_newest_of_each_day_that_has_snapshots() {
        check(
            Retention {
                keep_daily: 3,
                ..Retention::default()
            },
            &[
                snap("26-late", at(2026, 11, 26, 10, 0, 0)),
                snap("26-early", at(2026, 11, 26, 1, 0, 0)),
                // No snapshot on the 25th: it uses no bucket.
                snap("24-midnight", at(2026, 11, 24, 23, 59, 59)),
                snap("24-noon", at(2026, 11, 24, 12, 0, 0)),
                snap("24-start", at(2026, 11, 24, 0, 0, 0)),
                snap("23-end", at(2026, 11, 23, 23, 59, 59)),
                snap("22", at(2026, 11, 22, 9, 0, 0)),
                snap("21", at(2026, 11, 21, 9, 0, 0)),
            ],
            &[
                (
                    "26-late",
                    true,
                    &["newest complete snapshot", "daily 2026-11-26"],
                ),
                ("26-early", false, &["no rule keeps it"]),
                ("24-midnight", true, &["daily 2026-11-24"]),
                ("24-noon", false, &["no rule keeps it"]),
                ("24-start", false, &["no rule keeps it"]),
                ("23-end", true, &["daily 2026-11-23"]),
                ("22", false, &["no rule keeps it"]),
                ("21", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn keep_weekly_alone_uses_iso_weeks_starting_monday() {
        check(
            Retention {
                keep_weekly: 3,
                ..Retention::default()
            },
            &[
                snap("thu-w48", at(2026, 11, 26, 8, 0, 0)),
                snap("mon-w48", at(2026, 11, 23, 0, 0, 0)),
                snap("sun-w47", at(2026, 11, 22, 23, 59, 59)),
                snap("mon-w47", at(2026, 11, 16, 0, 0, 0)),
                // W46 has none.
                snap("fri-w45", at(2026, 11, 6, 12, 0, 0)),
                snap("w44", at(2026, 10, 30, 12, 0, 0)),
            ],
            &[
                (
                    "thu-w48",
                    true,
                    &["newest complete snapshot", "weekly 2026-W48"],
                ),
                ("mon-w48", false, &["no rule keeps it"]),
                ("sun-w47", true, &["weekly 2026-W47"]),
                ("mon-w47", false, &["no rule keeps it"]),
                ("fri-w45", true, &["weekly 2026-W45"]),
                ("w44", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn keep_monthly_alone() {
        check(
            Retention {
                keep_monthly: 2,
                ..Retention::default()
            },
            &[
                snap("nov-b", at(2026, 11, 2, 0, 0, 0)),
                snap("nov-a", at(2026, 11, 1, 0, 0, 0)),
                snap("oct-end", at(2026, 10, 31, 23, 59, 59)),
                snap("oct-start", at(2026, 10, 1, 0, 0, 0)),
                snap("aug", at(2026, 8, 15, 0, 0, 0)),
            ],
            &[
                (
                    "nov-b",
                    true,
                    &["newest complete snapshot", "monthly 2026-11"],
                ),
                ("nov-a", false, &["no rule keeps it"]),
                ("oct-end", true, &["monthly 2026-10"]),
                ("oct-start", false, &["no rule keeps it"]),
                ("aug", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn keep_yearly_alone() {
        check(
            Retention {
                keep_yearly: 2,
                ..Retention::default()
            },
            &[
                snap("2026-jan", at(2026, 1, 1, 0, 0, 0)),
                snap("2025-dec", at(2025, 12, 31, 23, 59, 59)),
                snap("2025-jun", at(2025, 6, 1, 0, 0, 0)),
                snap("2023", at(2023, 3, 1, 0, 0, 0)),
            ],
            &[
                (
                    "2026-jan",
                    true,
                    &["newest complete snapshot", "yearly 2026"],
                ),
                ("2025-dec", true, &["yearly 2025"]),
                ("2025-jun", false, &["no rule keeps it"]),
                ("2023", false, &["no rule keeps it"]),
            ],
        );
    }

    // --- The brief's defaults ----------------------------------------------------------

    #[test]
    fn brief_defaults_keep_ten_newest_up_to_thirty_days_plus_pinned() {
        let policy = Retention {
            max_backups: 10,
            max_age_days: 30,
            ..Retention::default()
        };
        // Twelve daily snapshots at 03:00, 11-26 back to 11-15, then older ones.
        let mut snapshots: Vec<Candidate<String>> = (15..=26)
            .map(|d| snap(&format!("n{d}"), at(2026, 11, d, 3, 0, 0)))
            .collect();
        snapshots.push(snap("oct-27", at(2026, 10, 27, 12, 0, 0))); // exactly 30 days
        snapshots.push(protected("oct-01", at(2026, 10, 1, 0, 0, 0)));
        snapshots.push(snap("sep", at(2026, 9, 1, 0, 0, 0)));
        check(
            policy,
            &snapshots,
            &[
                ("n26", true, &["newest complete snapshot", "last 10"]),
                ("n25", true, &["last 10"]),
                ("n24", true, &["last 10"]),
                ("n23", true, &["last 10"]),
                ("n22", true, &["last 10"]),
                ("n21", true, &["last 10"]),
                ("n20", true, &["last 10"]),
                ("n19", true, &["last 10"]),
                ("n18", true, &["last 10"]),
                ("n17", true, &["last 10"]),
                ("n16", false, &["no rule keeps it"]),
                ("n15", false, &["no rule keeps it"]),
                ("oct-27", false, &["no rule keeps it"]),
                ("oct-01", true, &["protected"]),
                ("sep", false, &["older than 30 days"]),
            ],
        );
    }

    #[test]
    fn brief_defaults_with_few_snapshots_apply_the_age_limit() {
        let policy = Retention {
            max_backups: 10,
            max_age_days: 30,
            ..Retention::default()
        };
        // Five snapshots: all within "last 10", but two are past 30 days.
        check(
            policy,
            &[
                snap("a", at(2026, 11, 26, 3, 0, 0)),
                snap("b", at(2026, 11, 1, 3, 0, 0)),
                snap("c", at(2026, 10, 27, 12, 0, 0)), // exactly 30 days
                snap("d", at(2026, 10, 27, 11, 59, 59)),
                snap("e", at(2025, 1, 1, 0, 0, 0)),
            ],
            &[
                ("a", true, &["newest complete snapshot", "last 10"]),
                ("b", true, &["last 10"]),
                ("c", true, &["last 10"]),
                ("d", false, &["older than 30 days"]),
                ("e", false, &["older than 30 days"]),
            ],
        );
    }

    // --- Combinations ------------------------------------------------------------------

    #[test]
    fn last_daily_and_weekly_overlap_and_list_every_reason() {
        check(
            Retention {
                max_backups: 2,
                keep_daily: 3,
                keep_weekly: 2,
                ..Retention::default()
            },
            &[
                snap("thu-pm", at(2026, 11, 26, 18, 0, 0)), // W48 (after `now`: clock skew)
                snap("thu-am", at(2026, 11, 26, 6, 0, 0)),
                snap("wed", at(2026, 11, 25, 6, 0, 0)),
                snap("mon", at(2026, 11, 23, 6, 0, 0)),
                snap("sun", at(2026, 11, 22, 6, 0, 0)), // W47
                snap("sat", at(2026, 11, 21, 6, 0, 0)),
                snap("w46", at(2026, 11, 12, 6, 0, 0)),
            ],
            &[
                (
                    "thu-pm",
                    true,
                    &[
                        "newest complete snapshot",
                        "last 2",
                        "daily 2026-11-26",
                        "weekly 2026-W48",
                    ],
                ),
                ("thu-am", true, &["last 2"]),
                ("wed", true, &["daily 2026-11-25"]),
                ("mon", true, &["daily 2026-11-23"]),
                ("sun", true, &["weekly 2026-W47"]),
                ("sat", false, &["no rule keeps it"]),
                ("w46", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn all_rules_together() {
        check(
            Retention {
                max_backups: 1,
                max_age_days: 400,
                keep_within_days: 1,
                keep_daily: 2,
                keep_weekly: 2,
                keep_monthly: 2,
                keep_yearly: 3,
            },
            &[
                snap("a", at(2026, 11, 26, 9, 0, 0)),
                snap("b", at(2026, 11, 25, 13, 0, 0)), // within 1 day
                snap("c", at(2026, 11, 25, 9, 0, 0)),
                snap("d", at(2026, 11, 20, 9, 0, 0)), // W47
                snap("e", at(2026, 10, 10, 9, 0, 0)),
                snap("f", at(2025, 12, 1, 9, 0, 0)), // 360 days old
                snap("g", at(2025, 10, 1, 9, 0, 0)), // 421 days old: past max_age
            ],
            &[
                (
                    "a",
                    true,
                    &[
                        "newest complete snapshot",
                        "last 1",
                        "within 1 days",
                        "daily 2026-11-26",
                        "weekly 2026-W48",
                        "monthly 2026-11",
                        "yearly 2026",
                    ],
                ),
                ("b", true, &["within 1 days", "daily 2026-11-25"]),
                ("c", false, &["no rule keeps it"]),
                ("d", true, &["weekly 2026-W47"]),
                ("e", true, &["monthly 2026-10"]),
                ("f", true, &["yearly 2025"]),
                ("g", false, &["older than 400 days"]),
            ],
        );
    }

    #[test]
    fn daily_across_a_month_boundary() {
        check(
            Retention {
                keep_daily: 3,
                ..Retention::default()
            },
            &[
                snap("dec-02", at(2026, 12, 2, 1, 0, 0)),
                snap("dec-01-b", at(2026, 12, 1, 0, 0, 1)),
                snap("dec-01-a", at(2026, 12, 1, 0, 0, 0)),
                snap("nov-30-b", at(2026, 11, 30, 23, 59, 59)),
                snap("nov-30-a", at(2026, 11, 30, 0, 0, 0)),
                snap("nov-29", at(2026, 11, 29, 12, 0, 0)),
            ],
            &[
                (
                    "dec-02",
                    true,
                    &["newest complete snapshot", "daily 2026-12-02"],
                ),
                ("dec-01-b", true, &["daily 2026-12-01"]),
                ("dec-01-a", false, &["no rule keeps it"]),
                ("nov-30-b", true, &["daily 2026-11-30"]),
                ("nov-30-a", false, &["no rule keeps it"]),
                ("nov-29", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn weekly_across_a_year_boundary_uses_iso_weeks() {
        // 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53; 2027-01-04 starts
        // 2027-W01. 2025-12-29 (Mon) already belongs to 2026-W01.
        check(
            Retention {
                keep_weekly: 5,
                keep_yearly: 3,
                ..Retention::default()
            },
            &[
                snap("2027-01-04", at(2027, 1, 4, 0, 0, 0)),
                snap("2027-01-03", at(2027, 1, 3, 23, 59, 59)),
                snap("2027-01-01", at(2027, 1, 1, 12, 0, 0)),
                snap("2026-12-31", at(2026, 12, 31, 12, 0, 0)),
                snap("2026-12-28", at(2026, 12, 28, 0, 0, 0)),
                snap("2026-12-27", at(2026, 12, 27, 23, 59, 59)), // Sun, 2026-W52
                snap("2026-01-02", at(2026, 1, 2, 0, 0, 0)),      // 2026-W01
                snap("2025-12-29", at(2025, 12, 29, 0, 0, 0)),    // 2026-W01 too
                snap("2025-12-28", at(2025, 12, 28, 0, 0, 0)),    // Sun, 2025-W52
            ],
            &[
                (
                    "2027-01-04",
                    true,
                    &["newest complete snapshot", "weekly 2027-W01", "yearly 2027"],
                ),
                ("2027-01-03", true, &["weekly 2026-W53"]),
                ("2027-01-01", false, &["no rule keeps it"]),
                ("2026-12-31", true, &["yearly 2026"]),
                ("2026-12-28", false, &["no rule keeps it"]),
                ("2026-12-27", true, &["weekly 2026-W52"]),
                ("2026-01-02", true, &["weekly 2026-W01"]),
                ("2025-12-29", true, &["yearly 2025"]),
                ("2025-12-28", true, &["weekly 2025-W52"]),
            ],
        );
    }

    #[test]
    fn max_age_cuts_across_keep_rules() {
        check(
            Retention {
                max_backups: 10,
                max_age_days: 3,
                keep_within_days: 5,
                keep_daily: 10,
                keep_monthly: 12,
                ..Retention::default()
            },
            &[
                snap("d0", at(2026, 11, 26, 6, 0, 0)),
                snap("d2", at(2026, 11, 24, 6, 0, 0)),
                snap("d3", at(2026, 11, 23, 12, 0, 0)), // exactly 3 days
                snap("d4", at(2026, 11, 22, 6, 0, 0)),  // within 5 days, but past 3
                snap("oct", at(2026, 10, 15, 6, 0, 0)),
            ],
            &[
                (
                    "d0",
                    true,
                    &[
                        "newest complete snapshot",
                        "last 10",
                        "within 5 days",
                        "daily 2026-11-26",
                        "monthly 2026-11",
                    ],
                ),
                (
                    "d2",
                    true,
                    &["last 10", "within 5 days", "daily 2026-11-24"],
                ),
                (
                    "d3",
                    true,
                    &["last 10", "within 5 days", "daily 2026-11-23"],
                ),
                ("d4", false, &["older than 3 days"]),
                ("oct", false, &["older than 3 days"]),
            ],
        );
    }

    // --- Pinned snapshots --------------------------------------------------------------

    #[test]
    fn protected_snapshots_survive_age_and_count() {
        check(
            Retention {
                max_backups: 1,
                max_age_days: 10,
                keep_monthly: 6,
                ..Retention::default()
            },
            &[
                snap("new", at(2026, 11, 26, 0, 0, 0)),
                protected("young", at(2026, 11, 25, 0, 0, 0)),
                snap("mid", at(2026, 11, 24, 0, 0, 0)),
                protected("old-oct", at(2026, 10, 5, 0, 0, 0)),
                snap("old-sep", at(2026, 9, 5, 0, 0, 0)),
                protected("ancient", at(2019, 1, 1, 0, 0, 0)),
            ],
            &[
                (
                    "new",
                    true,
                    &["newest complete snapshot", "last 1", "monthly 2026-11"],
                ),
                ("young", true, &["protected"]),
                ("mid", false, &["no rule keeps it"]),
                // Monthly would select it, but max_age removes the rule's say.
                ("old-oct", true, &["protected"]),
                ("old-sep", false, &["older than 10 days"]),
                ("ancient", true, &["protected"]),
            ],
        );
    }

    #[test]
    fn pinned_snapshots_count_toward_last_n_and_buckets() {
        check(
            Retention {
                max_backups: 2,
                keep_daily: 2,
                ..Retention::default()
            },
            &[
                protected("p", at(2026, 11, 26, 9, 0, 0)),
                snap("a", at(2026, 11, 26, 8, 0, 0)),
                snap("b", at(2026, 11, 25, 8, 0, 0)),
                snap("c", at(2026, 11, 24, 8, 0, 0)),
            ],
            &[
                (
                    "p",
                    true,
                    &[
                        "protected",
                        "newest complete snapshot",
                        "last 2",
                        "daily 2026-11-26",
                    ],
                ),
                ("a", true, &["last 2"]),
                ("b", true, &["daily 2026-11-25"]),
                ("c", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn newest_complete_is_kept_even_when_newer_ones_are_partial() {
        check(
            Retention {
                max_backups: 2,
                max_age_days: 30,
                ..Retention::default()
            },
            &[
                partial("p1", at(2026, 11, 26, 3, 0, 0)),
                partial("p2", at(2026, 11, 25, 3, 0, 0)),
                partial("p3", at(2026, 11, 24, 3, 0, 0)),
                snap("ok", at(2026, 10, 1, 3, 0, 0)), // past max_age, still kept
                snap("older-ok", at(2026, 9, 1, 3, 0, 0)),
            ],
            &[
                ("p1", true, &["last 2"]),
                ("p2", true, &["last 2"]),
                ("p3", false, &["no rule keeps it"]),
                ("ok", true, &["newest complete snapshot"]),
                ("older-ok", false, &["older than 30 days"]),
            ],
        );
    }

    #[test]
    fn newest_complete_also_lists_the_rules_that_select_it() {
        check(
            Retention {
                max_backups: 2,
                ..Retention::default()
            },
            &[
                partial("p", at(2026, 11, 26, 3, 0, 0)),
                snap("ok", at(2026, 11, 25, 3, 0, 0)),
                snap("ok-older", at(2026, 11, 24, 3, 0, 0)),
            ],
            &[
                ("p", true, &["last 2"]),
                ("ok", true, &["newest complete snapshot", "last 2"]),
                ("ok-older", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn partial_snapshots_take_buckets_like_any_other() {
        check(
            Retention {
                keep_daily: 1,
                ..Retention::default()
            },
            &[
                partial("p", at(2026, 11, 26, 9, 0, 0)),
                snap("ok-today", at(2026, 11, 26, 3, 0, 0)),
                snap("ok-yesterday", at(2026, 11, 25, 3, 0, 0)),
            ],
            &[
                ("p", true, &["daily 2026-11-26"]),
                ("ok-today", true, &["newest complete snapshot"]),
                ("ok-yesterday", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn without_a_complete_snapshot_the_newest_overall_is_kept() {
        check(
            Retention {
                max_backups: 1,
                max_age_days: 5,
                ..Retention::default()
            },
            &[
                partial("p-new", at(2026, 10, 1, 0, 0, 0)),
                partial("p-old", at(2026, 9, 1, 0, 0, 0)),
            ],
            &[
                ("p-new", true, &["newest snapshot"]),
                ("p-old", false, &["older than 5 days"]),
            ],
        );
        check(
            Retention {
                keep_daily: 1,
                ..Retention::default()
            },
            &[
                partial("p-new", at(2026, 11, 26, 0, 0, 0)),
                partial("p-old", at(2026, 11, 25, 0, 0, 0)),
            ],
            &[
                ("p-new", true, &["newest snapshot", "daily 2026-11-26"]),
                ("p-old", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn protected_newest_snapshot_lists_both_pins() {
        check(
            Retention {
                max_age_days: 1,
                ..Retention::default()
            },
            &[
                Candidate {
                    complete: false,
                    ..protected("pp", at(2026, 1, 1, 0, 0, 0))
                },
                partial("p", at(2025, 1, 1, 0, 0, 0)),
            ],
            &[
                ("pp", true, &["protected", "newest snapshot"]),
                ("p", false, &["older than 1 days"]),
            ],
        );
    }

    // --- Bursts and suspicious snapshots -------------------------------------------------

    fn suspicious(id: &str, created_at: DateTime<Utc>) -> Candidate<String> {
        Candidate {
            suspicious: true,
            ..snap(id, created_at)
        }
    }

    /// Ten backups in ten minutes (an operator's, or a script's) with the brief's
    /// `max_backups = 10`: before, they were "the last 10" and every older snapshot went.
    #[test]
    fn a_burst_of_backups_counts_as_one_and_keeps_the_history() {
        let mut snapshots: Vec<Candidate<String>> = (0..10)
            .map(|i| snap(&format!("burst-{i}"), at(2026, 11, 26, 11, 40 + i, 0)))
            .collect();
        snapshots.extend((1..=5).map(|d| snap(&format!("day-{d}"), at(2026, 11, 26 - d, 3, 0, 0))));
        let verdicts = decide(
            &Retention {
                max_backups: 10,
                ..Retention::default()
            },
            &snapshots,
            now(),
        );
        assert!(verdicts.iter().all(|v| v.keep), "{verdicts:?}");
        // The count is by hour: the oldest hour past the tenth goes.
        let mut hourly: Vec<Candidate<String>> = (0..12)
            .map(|h| snap(&format!("h{h:02}"), at(2026, 11, 26, 11 - h, 5, 0)))
            .collect();
        hourly.push(snap("h00-again", at(2026, 11, 26, 11, 50, 0)));
        let kept: Vec<String> = decide(
            &Retention {
                max_backups: 10,
                ..Retention::default()
            },
            &hourly,
            now(),
        )
        .into_iter()
        .filter(|v| v.keep)
        .map(|v| v.id)
        .collect();
        assert_eq!(kept.len(), 11, "ten hours, one of them with two: {kept:?}");
        assert!(!kept.contains(&"h10".to_owned()) && !kept.contains(&"h11".to_owned()));
    }

    /// A source that came back empty ten times (an unmounted share): its history stays,
    /// the suspicious snapshots are kept for review, and the newest good snapshot is the
    /// one kept whatever happens.
    #[test]
    fn suspicious_snapshots_are_kept_and_replace_nothing() {
        let mut snapshots: Vec<Candidate<String>> = (0..10)
            .map(|d| suspicious(&format!("empty-{d}"), at(2026, 11, 26, 10, d * 5, 0)))
            .collect();
        snapshots.push(snap("good-1", at(2026, 11, 25, 3, 0, 0)));
        snapshots.push(snap("good-2", at(2026, 11, 24, 3, 0, 0)));
        snapshots.push(snap("good-3", at(2026, 11, 23, 3, 0, 0)));
        check(
            Retention {
                max_backups: 2,
                keep_daily: 1,
                max_age_days: 30,
                ..Retention::default()
            },
            &snapshots,
            &[
                ("empty-9", true, &["suspicious: kept for review"]),
                ("empty-8", true, &["suspicious: kept for review"]),
                ("empty-7", true, &["suspicious: kept for review"]),
                ("empty-6", true, &["suspicious: kept for review"]),
                ("empty-5", true, &["suspicious: kept for review"]),
                ("empty-4", true, &["suspicious: kept for review"]),
                ("empty-3", true, &["suspicious: kept for review"]),
                ("empty-2", true, &["suspicious: kept for review"]),
                ("empty-1", true, &["suspicious: kept for review"]),
                ("empty-0", true, &["suspicious: kept for review"]),
                (
                    "good-1",
                    true,
                    &["newest complete snapshot", "last 2", "daily 2026-11-25"],
                ),
                ("good-2", true, &["last 2"]),
                ("good-3", false, &["no rule keeps it"]),
            ],
        );
        // The age limit still holds for them.
        let old = [
            suspicious("old", at(2026, 9, 1, 0, 0, 0)),
            snap("new", now()),
        ];
        let verdicts = decide(
            &Retention {
                max_age_days: 30,
                ..Retention::default()
            },
            &old,
            now(),
        );
        assert!(!verdicts.iter().find(|v| v.id == "old").unwrap().keep);
    }

    // --- Ordering ----------------------------------------------------------------------

    #[test]
    fn unsorted_input_comes_out_newest_first() {
        let policy = Retention {
            max_backups: 2,
            ..Retention::default()
        };
        let snapshots = [
            snap("b", at(2026, 11, 24, 0, 0, 0)),
            snap("d", at(2026, 11, 26, 0, 0, 0)),
            snap("a", at(2026, 11, 23, 0, 0, 0)),
            snap("c", at(2026, 11, 25, 0, 0, 0)),
        ];
        check(
            policy,
            &snapshots,
            &[
                ("d", true, &["newest complete snapshot", "last 2"]),
                ("c", true, &["last 2"]),
                ("b", false, &["no rule keeps it"]),
                ("a", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn equal_timestamps_are_ordered_by_id_descending() {
        let t = at(2026, 11, 25, 12, 0, 0);
        check(
            Retention {
                max_backups: 1,
                keep_daily: 2,
                ..Retention::default()
            },
            &[
                snap("id-10", t),
                snap("id-2", t),
                snap("id-30", t),
                snap("id-1", at(2026, 11, 24, 0, 0, 0)),
            ],
            // Byte order of ids: "id-30" > "id-2" > "id-10". All three were taken in one
            // hour, so "last 1" keeps them all (see `a_burst_of_backups_counts_as_one`).
            &[
                (
                    "id-30",
                    true,
                    &["newest complete snapshot", "last 1", "daily 2026-11-25"],
                ),
                ("id-2", true, &["last 1"]),
                ("id-10", true, &["last 1"]),
                ("id-1", true, &["daily 2026-11-24"]),
            ],
        );
    }

    #[test]
    fn output_does_not_depend_on_input_order() {
        let policy = Retention {
            max_backups: 2,
            max_age_days: 30,
            keep_daily: 3,
            keep_weekly: 2,
            ..Retention::default()
        };
        let t = at(2026, 11, 25, 12, 0, 0);
        let snapshots = vec![
            snap("x", t),
            partial("y", t),
            protected("z", at(2026, 1, 1, 0, 0, 0)),
            snap("w", t),
            snap("v", at(2026, 11, 20, 0, 0, 0)),
            snap("u", at(2026, 11, 26, 0, 0, 0)),
            snap("t", at(2026, 10, 1, 0, 0, 0)),
        ];
        let reference = decide(&policy, &snapshots, now());
        assert_eq!(ids(&reference), ["u", "y", "x", "w", "v", "t", "z"]);
        let mut reversed = snapshots.clone();
        reversed.reverse();
        assert_eq!(decide(&policy, &reversed, now()), reference);
        for k in 1..snapshots.len() {
            let mut rotated = snapshots.clone();
            rotated.rotate_left(k);
            assert_eq!(
                decide(&policy, &rotated, now()),
                reference,
                "rotated by {k}"
            );
        }
    }

    // --- Boundaries ----------------------------------------------------------------------

    #[test]
    fn exactly_n_days_old_is_kept_one_second_more_is_removed() {
        let boundary = at(2026, 10, 27, 12, 0, 0); // now - 30 days
        check(
            Retention {
                max_age_days: 30,
                ..Retention::default()
            },
            &[
                snap("newest", now()),
                snap("exact", boundary),
                snap("over", boundary - TimeDelta::seconds(1)),
            ],
            &[
                (
                    "newest",
                    true,
                    &["newest complete snapshot", "no count limit"],
                ),
                ("exact", true, &["no count limit"]),
                ("over", false, &["older than 30 days"]),
            ],
        );
    }

    #[test]
    fn within_n_days_is_inclusive_of_the_boundary() {
        let boundary = at(2026, 11, 19, 12, 0, 0); // now - 7 days
        check(
            Retention {
                keep_within_days: 7,
                ..Retention::default()
            },
            &[
                snap("newest", now()),
                snap("exact", boundary),
                snap("over", boundary - TimeDelta::seconds(1)),
            ],
            &[
                (
                    "newest",
                    true,
                    &["newest complete snapshot", "within 7 days"],
                ),
                ("exact", true, &["within 7 days"]),
                ("over", false, &["no rule keeps it"]),
            ],
        );
    }

    #[test]
    fn huge_limits_do_not_overflow() {
        check(
            Retention {
                max_age_days: u32::MAX,
                keep_within_days: u32::MAX,
                ..Retention::default()
            },
            &[
                snap("new", now()),
                snap("epoch", at(1970, 1, 1, 0, 0, 0)),
                snap("ancient", at(-200_000, 1, 1, 0, 0, 0)),
            ],
            &[
                (
                    "new",
                    true,
                    &["newest complete snapshot", "within 4294967295 days"],
                ),
                ("epoch", true, &["within 4294967295 days"]),
                ("ancient", true, &["within 4294967295 days"]),
            ],
        );
    }
}
