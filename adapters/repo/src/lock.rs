//! Repository locks: how garbage collection and everything that reads or adds data keep
//! out of each other's way, across processes (the server and the CLI) and machines.
//!
//! A backup decides to reuse a chunk because the index it loaded says the chunk is
//! stored. If a prune deleted that chunk before the backup's snapshot was committed, the
//! snapshot would reference data that is gone — the way backup tools have lost data.
//! Coffer rules it out with locks stored in the repository itself:
//!
//! - `locks/<random>` holds a small JSON document: shared or exclusive, purpose, host,
//!   process, creation and refresh times (nothing secret).
//! - **Shared** (backup, restore, verify, check, export): write the lock, then list the
//!   locks. A live exclusive lock means a prune is running or waiting: delete ours, wait,
//!   try again. Otherwise the lock is held.
//! - **Exclusive** (prune): write the lock, then list the locks. Any other live exclusive
//!   lock, or a lock object that cannot be read, means another prune: delete ours and
//!   report the repository busy (no clock comparison decides between prunes, so skewed
//!   clocks cannot let two run). Prunes that started together see each other and all
//!   back off: one that met another exclusive lock tries again, whole, after a random
//!   pause of up to a second, three times, before it reports the repository busy. While live shared locks exist, keep ours (so no new
//!   backup starts) and wait for them to go — at most `max_wait` (1 hour), after which the
//!   prune gives way. Then the lock is held.
//!
//! Because each side writes before it lists, two processes that start at the same moment
//! each see the other's lock: at worst both back off, never both proceed.
//!
//! **Liveness.** A lock records the host it was taken on (machine id, boot id, pid
//! namespace) and the process (pid and its start time). On the same host, a lock whose
//! process is gone — no such pid, or a pid reused by a process that started later, or a
//! machine booted since — is stale at once: a `kill -9` or a power cut during a prune
//! does not hold up the next command. A lock from another host (or another pid namespace:
//! a container) cannot be judged that way; its holder rewrites it every `refresh`
//! (5 min), and one not refreshed for `stale` (30 min) belongs to a crashed process. Stale
//! locks are ignored, and removed by a prune. A holder that has not refreshed successfully for `stale - refresh` (say the
//! machine slept) must assume its lock was taken for stale: it stops before committing
//! anything (`ensure_held`). It judges that on the monotonic clock and on the wall clock
//! (the monotonic clock does not count a suspended machine's sleep), from the time written
//! into its last successful refresh. The margin covers clock skew between machines up to
//! `refresh`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use coffer_domain::engine::Cancel;
use coffer_domain::storage::{ObjectKey, ObjectStore};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::{crypto, key};

const LOCKS: &str = "locks/";

/// How often locks are refreshed, when they count as stale, how often waiters look.
#[derive(Debug, Clone, Copy)]
pub struct LockTimings {
    pub refresh: Duration,
    pub stale: Duration,
    pub poll: Duration,
    /// How long a prune waits for running work before it gives way.
    pub max_wait: Duration,
}

impl Default for LockTimings {
    fn default() -> Self {
        Self {
            refresh: Duration::from_mins(5),
            stale: Duration::from_mins(30),
            poll: Duration::from_secs(2),
            max_wait: Duration::from_hours(1),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockDoc {
    version: u32,
    exclusive: bool,
    purpose: String,
    hostname: String,
    pid: u32,
    created_at: DateTime<Utc>,
    refreshed_at: DateTime<Utc>,
    /// Where the holder runs (absent in locks of older versions: judged by time only).
    #[serde(default)]
    machine_id: String,
    #[serde(default)]
    boot_id: String,
    #[serde(default)]
    pid_namespace: String,
    /// The holder's start time (clock ticks since boot), which a reused pid does not share.
    #[serde(default)]
    pid_start: u64,
}

/// This process and the host it runs on, as a lock records them.
#[derive(Debug, Clone, Default)]
struct Identity {
    machine_id: String,
    boot_id: String,
    pid_namespace: String,
    pid_start: u64,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`), or `None` when there is
/// no such process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted
    // from its closing parenthesis, which is the last one.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Identity {
    fn current() -> &'static Self {
        static CURRENT: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        CURRENT.get_or_init(|| {
            let machine_id = [
                read_trimmed("/etc/machine-id"),
                read_trimmed("/var/lib/dbus/machine-id"),
            ]
            .into_iter()
            .find(|id| !id.is_empty())
            .unwrap_or_default();
            Self {
                machine_id,
                boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
                pid_namespace: std::fs::read_link("/proc/self/ns/pid")
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                pid_start: process_start(std::process::id()).unwrap_or(0),
            }
        })
    }
}

impl LockDoc {
    /// Whether the lock's holder is known to be gone: it ran on this host, and the
    /// host has booted since, or its process no longer runs (a pid now used by a process
    /// that started at another time counts as gone). A lock of another host, container
    /// or older version cannot be judged here: `false`.
    fn holder_gone(&self) -> bool {
        let me = Identity::current();
        if me.machine_id.is_empty() || self.machine_id != me.machine_id || me.boot_id.is_empty() {
            return false;
        }
        if self.boot_id != me.boot_id {
            return true;
        }
        if self.pid_namespace.is_empty() || self.pid_namespace != me.pid_namespace {
            return false;
        }
        process_start(self.pid) != Some(self.pid_start)
    }

    /// Whether the lock no longer counts: its holder is gone, or it was not refreshed
    /// for `stale`.
    fn is_stale(&self, now: DateTime<Utc>, stale: chrono::Duration) -> bool {
        now - self.refreshed_at > stale || self.holder_gone()
    }
}

impl LockDoc {
    fn describe(&self) -> String {
        format!(
            "{} on {} (pid {}) since {}",
            self.purpose,
            if self.hostname.is_empty() {
                "an unknown host"
            } else {
                &self.hostname
            },
            self.pid,
            self.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// Another exclusive lock was met: the message for the operator if it stays so.
struct Contended(String);

/// When a lock's refresh time was last written successfully, on both clocks: the
/// monotonic one does not count time the machine spent suspended, the wall clock may be
/// set back; a lock is given up when either says it is too old.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    mono: Instant,
    wall: DateTime<Utc>,
}

impl Stamp {
    /// Older than others may wait before taking the lock for stale, less a margin of
    /// one refresh period for clock differences between machines.
    fn too_old(&self, timings: LockTimings) -> bool {
        let limit = timings.stale.saturating_sub(timings.refresh);
        let wall = (Utc::now() - self.wall).to_std().unwrap_or(Duration::ZERO);
        self.mono.elapsed() > limit || wall > limit
    }
}

/// A held repository lock. Release it with `release`; dropping it removes it too (in the
/// background).
pub struct RepoLock {
    store: Arc<dyn ObjectStore>,
    key: ObjectKey,
    timings: LockTimings,
    last_refresh: Arc<Mutex<Stamp>>,
    lost: Arc<AtomicBool>,
    refresher: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

/// The other locks in the repository.
struct Others {
    /// Live locks and their keys.
    live: Vec<(ObjectKey, LockDoc)>,
    /// Lock objects that cannot be read: whose they are and whether they are live is
    /// unknown.
    unreadable: Vec<ObjectKey>,
}

/// The locks other than `mine`.
async fn others(
    store: &dyn ObjectStore,
    mine: &ObjectKey,
    stale: Duration,
) -> Result<Others, EngineError> {
    let now = Utc::now();
    let stale = chrono::Duration::from_std(stale).unwrap_or(chrono::Duration::MAX);
    let mut out = Others {
        live: Vec::new(),
        unreadable: Vec::new(),
    };
    for k in store.list(LOCKS).await? {
        if &k == mine {
            continue;
        }
        let Some(bytes) = store.get(&k).await? else {
            continue; // released meanwhile
        };
        match serde_json::from_slice::<LockDoc>(&bytes) {
            Ok(doc) if doc.is_stale(now, stale) => {
                tracing::info!(lock = %k, holder = %doc.describe(), "ignoring the lock of a process that is gone");
            }
            Ok(doc) => out.live.push((k, doc)),
            Err(e) => {
                tracing::warn!(lock = %k, error = %e, "a lock object cannot be read");
                out.unreadable.push(k);
            }
        }
    }
    Ok(out)
}

/// Deletes locks nobody has refreshed for `stale`: their holders are gone.
pub async fn remove_stale(store: &dyn ObjectStore, stale: Duration) -> Result<u64, EngineError> {
    let now = Utc::now();
    let stale = chrono::Duration::from_std(stale).unwrap_or(chrono::Duration::MAX);
    let mut removed = 0;
    for k in store.list(LOCKS).await? {
        let Some(bytes) = store.get(&k).await? else {
            continue;
        };
        if let Ok(doc) = serde_json::from_slice::<LockDoc>(&bytes)
            && doc.is_stale(now, stale)
        {
            tracing::warn!(lock = %k, holder = %doc.describe(), "removing a stale repository lock");
            store.delete(&k).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

async fn sleep_or_cancel(poll: Duration, cancel: &Cancel) -> Result<(), EngineError> {
    // Wake often enough to notice a cancel quickly.
    let step = Duration::from_millis(100).min(poll);
    let until = Instant::now() + poll;
    while Instant::now() < until {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        tokio::time::sleep(step).await;
    }
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    Ok(())
}

impl RepoLock {
    async fn write(
        store: &Arc<dyn ObjectStore>,
        exclusive: bool,
        purpose: &str,
    ) -> Result<(ObjectKey, LockDoc), EngineError> {
        let now = Utc::now();
        let me = Identity::current();
        let doc = LockDoc {
            version: 1,
            exclusive,
            purpose: purpose.to_owned(),
            hostname: hostname(),
            pid: std::process::id(),
            created_at: now,
            refreshed_at: now,
            machine_id: me.machine_id.clone(),
            boot_id: me.boot_id.clone(),
            pid_namespace: me.pid_namespace.clone(),
            pid_start: me.pid_start,
        };
        let k = key(&format!("{LOCKS}{}", hex::encode(crypto::random::<16>()?)))?;
        store
            .put(
                &k,
                Bytes::from(
                    serde_json::to_vec(&doc)
                        .map_err(|e| EngineError::Other(format!("lock: {e}")))?,
                ),
            )
            .await?;
        Ok((k, doc))
    }

    /// Takes a shared lock, waiting while a prune runs or waits.
    ///
    /// # Errors
    /// `Cancelled`; storage failures.
    pub async fn shared(
        store: Arc<dyn ObjectStore>,
        timings: LockTimings,
        purpose: &str,
        cancel: &Cancel,
    ) -> Result<Self, EngineError> {
        let mut announced = false;
        loop {
            let (k, doc) = Self::write(&store, false, purpose).await?;
            let written = Instant::now();
            let blocking = match others(store.as_ref(), &k, timings.stale).await {
                Ok(list) => list.live.into_iter().find(|(_, d)| d.exclusive),
                Err(e) => {
                    let _ = store.delete(&k).await;
                    return Err(e);
                }
            };
            match blocking {
                None => return Ok(Self::held(store, k, doc, written, timings)),
                Some((_, holder)) => {
                    store.delete(&k).await?;
                    if !announced {
                        tracing::warn!(
                            "waiting for the repository: it is locked for garbage collection by {}",
                            holder.describe()
                        );
                        announced = true;
                    }
                    sleep_or_cancel(timings.poll, cancel).await?;
                }
            }
        }
    }

    /// Takes the exclusive lock, waiting for shared holders to finish.
    ///
    /// Takers that write at the same moment each see the other and all back off; so that
    /// one of them still goes ahead, a taker that met another exclusive lock tries again
    /// after a random pause, a few times, before it reports the repository busy. Each try
    /// is a whole write-then-list, so retrying never lets two through.
    ///
    /// # Errors
    /// `Busy` when another exclusive lock came first; `Cancelled`; storage failures.
    pub async fn exclusive(
        store: Arc<dyn ObjectStore>,
        timings: LockTimings,
        purpose: &str,
        cancel: &Cancel,
    ) -> Result<Self, EngineError> {
        const TRIES: u32 = 4;
        let mut tried = 1;
        loop {
            match Self::exclusive_once(store.clone(), timings, purpose, cancel).await? {
                Ok(lock) => return Ok(lock),
                Err(Contended(message)) if tried >= TRIES => {
                    return Err(EngineError::Busy(message));
                }
                Err(Contended(message)) => {
                    tracing::debug!(%message, tried, "exclusive lock: met another, trying again");
                    tried += 1;
                    // 50 ms to 1 s, drawn anew each time: two takers that tied are
                    // unlikely to tie again.
                    let mut byte = [0u8; 2];
                    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut byte)
                        .map_err(|e| EngineError::Other(format!("OS randomness failed: {e}")))?;
                    let pause = 50 + u64::from(u16::from_le_bytes(byte)) % 950;
                    sleep_or_cancel(Duration::from_millis(pause), cancel).await?;
                }
            }
        }
    }

    /// One try: `Ok(Err(Contended))` when another exclusive lock was seen (ours is
    /// removed again).
    async fn exclusive_once(
        store: Arc<dyn ObjectStore>,
        timings: LockTimings,
        purpose: &str,
        cancel: &Cancel,
    ) -> Result<Result<Self, Contended>, EngineError> {
        let written = Instant::now();
        let (k, doc) = Self::write(&store, true, purpose).await?;
        // Held from here on for refreshing, so that a long wait does not go stale; it is
        // not "acquired" until no other live lock remains.
        let lock = Self::held(store.clone(), k.clone(), doc, written, timings);
        // Any other exclusive lock seen now wins, whatever the clocks say: it was written
        // before this one was listed... or both back off. Once this lock has seen none,
        // a later prune sees this one and backs off, so only one ever proceeds.
        let first = match others(store.as_ref(), &k, timings.stale).await {
            Ok(first) => first,
            Err(e) => {
                lock.release().await;
                return Err(e);
            }
        };
        if let Some((_, other)) = first.live.iter().find(|(_, d)| d.exclusive) {
            let message = format!(
                "the repository is locked by {}; try again when it has finished",
                other.describe()
            );
            lock.release().await;
            return Ok(Err(Contended(message)));
        }
        if let Some(bad) = first.unreadable.first() {
            let message = format!(
                "the lock object {bad} cannot be read; if no Coffer process uses this \
                 repository, delete it and try again"
            );
            lock.release().await;
            return Err(EngineError::Busy(message));
        }
        let mut announced = false;
        let mut live = first.live;
        loop {
            let Some((_, holder)) = live.iter().find(|(_, d)| !d.exclusive) else {
                if let Err(e) = lock.ensure_held() {
                    lock.release().await;
                    return Err(e);
                }
                return Ok(Ok(lock));
            };
            if written.elapsed() > timings.max_wait {
                let message = format!(
                    "running work ({}) held the repository for longer than {} minutes; \
                     garbage collection gave way and will run another time",
                    holder.describe(),
                    timings.max_wait.as_secs() / 60
                );
                lock.release().await;
                return Err(EngineError::Busy(message));
            }
            if !announced {
                tracing::info!(
                    holders = live.len(),
                    first = %holder.describe(),
                    "garbage collection waits for running work to finish"
                );
                announced = true;
            }
            if let Err(e) = sleep_or_cancel(timings.poll, cancel).await {
                lock.release().await;
                return Err(e);
            }
            live = match others(store.as_ref(), &k, timings.stale).await {
                Ok(now) => now.live,
                Err(e) => {
                    lock.release().await;
                    return Err(e);
                }
            };
        }
    }

    fn held(
        store: Arc<dyn ObjectStore>,
        key: ObjectKey,
        doc: LockDoc,
        written: Instant,
        timings: LockTimings,
    ) -> Self {
        let last_refresh = Arc::new(Mutex::new(Stamp {
            mono: written,
            wall: doc.refreshed_at,
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (store, key, last_refresh, lost) = (
                store.clone(),
                key.clone(),
                last_refresh.clone(),
                lost.clone(),
            );
            tokio::spawn(async move {
                let mut doc = doc;
                loop {
                    tokio::time::sleep(timings.refresh).await;
                    if last_refresh.lock().expect("lock time").too_old(timings) {
                        // Too late: another process may have taken this lock for stale.
                        tracing::error!(lock = %key, "repository lock not refreshed in time; giving it up");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    // The time others will judge the lock by is the one written in it,
                    // stamped before the write: a slow write only makes it look older.
                    let stamp = Stamp {
                        mono: Instant::now(),
                        wall: Utc::now(),
                    };
                    doc.refreshed_at = stamp.wall;
                    let Ok(bytes) = serde_json::to_vec(&doc) else {
                        continue;
                    };
                    match store.put(&key, Bytes::from(bytes)).await {
                        Ok(()) => *last_refresh.lock().expect("lock time") = stamp,
                        Err(e) => {
                            tracing::warn!(lock = %key, error = %e, "could not refresh the repository lock");
                        }
                    }
                }
            })
        };
        Self {
            store,
            key,
            timings,
            last_refresh,
            lost,
            refresher: Some(refresher),
            released: false,
        }
    }

    /// Whether the lock is still certainly held; call it right before committing or
    /// deleting anything.
    ///
    /// # Errors
    /// `Busy` when the lock may have been taken for stale by another process.
    pub fn ensure_held(&self) -> Result<(), EngineError> {
        if self.lost.load(Ordering::SeqCst)
            || self
                .last_refresh
                .lock()
                .expect("lock time")
                .too_old(self.timings)
        {
            return Err(EngineError::Busy(
                "the repository lock was not refreshed in time (was the machine asleep?); \
                 stopped without committing, to stay safe against a concurrent prune"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Removes the lock.
    pub async fn release(mut self) {
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
        if let Err(e) = self.store.delete(&self.key).await {
            tracing::warn!(lock = %self.key, error = %e, "could not remove the repository lock; it goes stale in 30 minutes");
        }
        self.released = true;
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
        if !self.released
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (store, key) = (self.store.clone(), self.key.clone());
            handle.spawn(async move {
                let _ = store.delete(&key).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_too_old_by_either_clock() {
        let timings = LockTimings::default();
        let fresh = Stamp {
            mono: Instant::now(),
            wall: Utc::now(),
        };
        assert!(!fresh.too_old(timings));
        // A machine that slept two hours: its monotonic clock saw nothing of it.
        let slept = Stamp {
            mono: Instant::now(),
            wall: Utc::now() - chrono::Duration::hours(2),
        };
        assert!(slept.too_old(timings));
        // Inside the margin, on the wall clock.
        let recent = Stamp {
            mono: Instant::now(),
            wall: Utc::now() - chrono::Duration::minutes(24),
        };
        assert!(!recent.too_old(timings));
    }

    fn doc_of(pid: u32, pid_start: u64) -> LockDoc {
        let me = Identity::current();
        LockDoc {
            version: 1,
            exclusive: true,
            purpose: "prune".into(),
            hostname: hostname(),
            pid,
            created_at: Utc::now(),
            refreshed_at: Utc::now(),
            machine_id: me.machine_id.clone(),
            boot_id: me.boot_id.clone(),
            pid_namespace: me.pid_namespace.clone(),
            pid_start,
        }
    }

    #[test]
    fn a_lock_whose_process_is_gone_is_stale_at_once_on_its_own_host() {
        let me = Identity::current();
        if me.machine_id.is_empty() || me.boot_id.is_empty() {
            eprintln!("note: this host has no machine id or boot id; locks are judged by time");
            return;
        }
        let now = Utc::now();
        let stale = chrono::Duration::minutes(30);
        // This process: alive.
        let alive = doc_of(std::process::id(), me.pid_start);
        assert!(!alive.is_stale(now, stale));
        // A process that ran and exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = process_start(pid).unwrap_or(1);
        child.wait().unwrap();
        assert!(doc_of(pid, start).is_stale(now, stale), "exited process");
        // Our pid, but another start time: a reused pid.
        assert!(doc_of(std::process::id(), me.pid_start + 1).is_stale(now, stale));
        // The machine booted since.
        let mut rebooted = doc_of(std::process::id(), me.pid_start);
        rebooted.boot_id = "another boot".into();
        assert!(rebooted.is_stale(now, stale));
        // Another host, another container, or an older lock: by time only.
        let mut elsewhere = doc_of(pid, start);
        elsewhere.machine_id = "another machine".into();
        assert!(!elsewhere.is_stale(now, stale));
        let mut container = doc_of(pid, start);
        container.pid_namespace = "pid:[1]".into();
        assert!(!container.is_stale(now, stale));
        let old: LockDoc = serde_json::from_value(serde_json::json!({
            "version": 1, "exclusive": true, "purpose": "prune", "hostname": "h",
            "pid": pid, "created_at": now, "refreshed_at": now,
        }))
        .unwrap();
        assert!(!old.is_stale(now, stale));
        assert!(old.is_stale(now + chrono::Duration::hours(1), stale));
    }
}
