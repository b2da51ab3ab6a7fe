//! Login throttling: a pure policy over failure counters, with time passed in.
//!
//! It follows OWASP's guidance (Authentication and Credential Stuffing cheat sheets,
//! "device cookies") so that an attacker can slow logins down but cannot keep an
//! account's owner out:
//!
//! - **Per client address, growing delays.** An address (IPv4, or an IPv6 /64: one host
//!   holds a whole /64, see [`address_key`]) may fail `address_free_failures` times; each
//!   further attempt from it must wait a delay that doubles per failure, from
//!   `address_base_delay` up to `max_address_delay`. This slows guessing and spraying
//!   from one place.
//! - **Per account, a lockout for unknown clients.** After `account_limit` failures for
//!   one username from clients it does not know, such clients are refused for that
//!   username for `lockout`. This stops guessing spread over many addresses.
//! - **Known clients are exempt.** A client holding a valid device cookie issued to that
//!   username by an earlier successful login (see `TokenCodec::issue_device`) is judged
//!   by its own counter only: the owner's browser gets in while the account is under
//!   attack, even from the attacker's address. After `device_limit` failures a device
//!   cookie stops counting as known for `lockout` (a stolen cookie buys few guesses).
//! - **Reserved, not checked then recorded.** [`LoginThrottle::begin`] checks *and*
//!   counts the attempt as a failure while the attempt's counters are locked, before the
//!   password is looked at; a success refunds it ([`LoginThrottle::succeeded`]). So
//!   parallel attempts cannot all pass the check, and at most `max_in_flight` attempts
//!   per address (or per device cookie) are being checked at any moment: the queue of
//!   password checks is bounded per client.
//! - **Refusals are coalesced.** The first refusal of a lockout is reported for the audit
//!   trail ([`Refusal::first_of_lockout`]); the further ones are only counted, and when
//!   the lockout is over [`LoginThrottle::take_finished`] hands back one
//!   [`LockoutSummary`] with their number. An unauthenticated client cannot grow the
//!   audit trail by hammering a locked door.
//!
//! **Shared and per-process state.** The failure counters that decide delays and
//! lockouts ([`FailureCounter`], one per address, account and device cookie) are
//! [`SharedCounters`]: the caller loads the ones an attempt touches from a
//! [`ThrottleCounters`] store (the catalog database, so that every server on it sees
//! every failure), locked against other attempts on them, passes them in, and saves
//! them back. What stays in the [`LoginThrottle`] of each process: the attempts in
//! flight (`max_in_flight` bounds each process's own queue of password checks) and the
//! coalescing of refusals for the audit trail (each process reports the first refusal
//! of a lockout it sees; the lockout itself is shared).
//!
//! Counters forget failures after `window` without any (a counter idle that long starts
//! afresh, and the store purges it); the store keeps at most `max_entries` counters of
//! each kind (the stalest are forgotten first), and the process at most `max_entries`
//! lockouts being coalesced.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::ports::RepoError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures from one address before its attempts are delayed.
    pub address_free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub address_base_delay: TimeDelta,
    /// The longest delay per address.
    pub max_address_delay: TimeDelta,
    /// Failures for one username from unknown clients that lock it for them.
    pub account_limit: u32,
    /// Failures with one device cookie after which it no longer counts as known.
    pub device_limit: u32,
    /// How long an account (for unknown clients) or a device cookie stays locked.
    pub lockout: TimeDelta,
    /// Counters forget failures after this long without any.
    pub window: TimeDelta,
    /// Attempts per address (or device cookie) being checked at once, in one process.
    pub max_in_flight: u32,
    /// Most counters kept per kind (by the store's purge; the stalest go first), and
    /// most lockouts one process coalesces refusals of.
    pub max_entries: usize,
    /// How often a process asks the store to purge ([`LoginThrottle::purge_due`]).
    pub purge_every: TimeDelta,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            address_free_failures: 5,
            address_base_delay: TimeDelta::seconds(5),
            max_address_delay: TimeDelta::minutes(15),
            account_limit: 10,
            device_limit: 5,
            lockout: TimeDelta::minutes(15),
            window: TimeDelta::hours(1),
            max_in_flight: 4,
            max_entries: 10_000,
            purge_every: TimeDelta::minutes(1),
        }
    }
}

/// The throttle's key for a client address: an IPv4 address as is (also when it comes
/// IPv4-mapped, `::ffff:a.b.c.d`), an IPv6 address as its /64 network (`2001:db8::/64`),
/// no address (the local command line) as `local`, anything unparsable as given.
#[must_use]
pub fn address_key(ip: Option<&str>) -> String {
    let Some(ip) = ip else {
        return "local".to_owned();
    };
    match ip.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(net))
        }
        Err(_) => ip.to_owned(),
    }
}

/// What a failure counter counts the failures of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CounterKind {
    /// A username, for attempts from unknown clients.
    Account,
    /// A client's [`address_key`], for attempts from unknown clients.
    Address,
    /// A device cookie's id.
    Device,
}

impl CounterKind {
    pub const ALL: [Self; 3] = [Self::Account, Self::Address, Self::Device];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Address => "address",
            Self::Device => "device",
        }
    }
}

named!(CounterKind);

/// Names one failure counter. Ordered (kind, then key): stores lock counters in this
/// order, so that two attempts sharing counters cannot wait for each other.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterKey {
    pub kind: CounterKind,
    pub key: String,
}

impl CounterKey {
    #[must_use]
    pub fn account(username: &str) -> Self {
        Self {
            kind: CounterKind::Account,
            key: username.to_owned(),
        }
    }

    #[must_use]
    pub fn address(address: &str) -> Self {
        Self {
            kind: CounterKind::Address,
            key: address.to_owned(),
        }
    }

    #[must_use]
    pub fn device(device: &str) -> Self {
        Self {
            kind: CounterKind::Device,
            key: device.to_owned(),
        }
    }
}

/// The shared state of one counter: what every server must see alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCounter {
    /// Failures, attempts in flight (on any server) included.
    pub failures: u32,
    /// The last failure (or the start of the last attempt counted).
    pub last: DateTime<Utc>,
    /// Locked (the account for unknown clients, or the device cookie) until then.
    pub locked_until: Option<DateTime<Utc>>,
}

impl FailureCounter {
    const fn new(now: DateTime<Utc>) -> Self {
        Self {
            failures: 0,
            last: now,
            locked_until: None,
        }
    }

    /// No failures and no lock: the same as no counter at all (a store keeps no row).
    #[must_use]
    pub const fn is_blank(&self) -> bool {
        self.failures == 0 && self.locked_until.is_none()
    }

    fn locked_for(&self, now: DateTime<Utc>) -> Option<u64> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| secs_until(until, now))
    }

    fn idle(&self, now: DateTime<Utc>, window: TimeDelta) -> bool {
        now - self.last > window && self.locked_for(now).is_none()
    }
}

/// The counters one attempt is judged by, as loaded from the store: a key absent is a
/// counter without failures or lock.
pub type SharedCounters = BTreeMap<CounterKey, FailureCounter>;

/// The failure counters, shared by every server on one catalog.
///
/// Contract:
/// - `lock(keys)` returns the stored counters of `keys` (a key without a row, or whose
///   row [`FailureCounter::is_blank`], is absent) and holds them against every other
///   `lock` of any of those keys, from this process or another on the same database,
///   until the returned [`CounterLock`] is saved or dropped: the read, the policy's
///   decision and the write of one attempt are atomic, so two attempts on two servers
///   cannot both see the last free failure. Keys are locked in [`CounterKey`] order.
/// - [`CounterLock::save`] writes the counters of the locked keys as given (a key
///   absent, or blank, is deleted) and releases them; dropping the lock unsaved
///   releases them unchanged.
/// - `purge(now, idle_since, keep)` deletes every counter whose last failure is before
///   `idle_since` and that is not locked at `now`, then of each kind every counter
///   beyond the `keep` with the latest failures; it returns how many went.
#[async_trait]
pub trait ThrottleCounters: Send + Sync {
    async fn lock(
        &self,
        keys: &[CounterKey],
    ) -> Result<(SharedCounters, Box<dyn CounterLock>), RepoError>;

    async fn purge(
        &self,
        now: DateTime<Utc>,
        idle_since: DateTime<Utc>,
        keep: u64,
    ) -> Result<u64, RepoError>;
}

/// Counters held by [`ThrottleCounters::lock`].
#[async_trait]
pub trait CounterLock: Send {
    /// Writes `counters` back and releases the lock.
    ///
    /// # Errors
    /// A counter in `counters` that was not locked is a [`RepoError::Conflict`] (and
    /// nothing is written).
    async fn save(self: Box<Self>, counters: &SharedCounters) -> Result<(), RepoError>;
}

/// One login attempt, as the throttle sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The username as typed.
    pub username: &'a str,
    /// The client's [`address_key`].
    pub address: &'a str,
    /// The id of a valid device cookie issued to this very username, if the client sent
    /// one.
    pub device: Option<&'a str>,
}

impl Attempt<'_> {
    /// The counters [`LoginThrottle::begin`] needs, in locking order.
    #[must_use]
    pub fn counter_keys(&self) -> Vec<CounterKey> {
        let mut keys = vec![
            CounterKey::account(self.username),
            CounterKey::address(self.address),
        ];
        keys.extend(self.device.map(CounterKey::device));
        keys.sort();
        keys
    }
}

/// Why an attempt is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// This address (or device cookie) already has `max_in_flight` attempts being checked.
    InFlight,
    /// Too many failures from this address: wait for the delay.
    AddressSlowed,
    /// Too many failures for this username from unknown clients.
    AccountLocked,
}

/// What a refusal is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockSubject {
    Address(String),
    Account(String),
    Device(String),
}

/// An attempt refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Whole seconds to wait (at least 1).
    pub retry_after_secs: u64,
    pub reason: ThrottleReason,
    /// The first refusal of this lockout: record it. Later ones are only counted.
    pub first_of_lockout: bool,
}

/// An attempt let through: it is already counted as a failure. Hand it back with
/// [`LoginThrottle::succeeded`] or [`LoginThrottle::failed`] (with its counters locked
/// again, see [`Reservation::counter_keys`]), or, when they cannot be had, with
/// [`LoginThrottle::abandoned`]; exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a reservation must be settled with succeeded(), failed() or abandoned()"]
pub struct Reservation {
    username: String,
    address: String,
    /// Set for a known client: the device cookie's id.
    device: Option<String>,
    /// This attempt's reservation locked the account (unknown clients) or the device.
    locked: bool,
}

impl Reservation {
    /// Whether the attempt came from a known client (a valid device cookie).
    #[must_use]
    pub const fn known_client(&self) -> bool {
        self.device.is_some()
    }

    /// The counters [`LoginThrottle::succeeded`] and [`LoginThrottle::failed`] update,
    /// in locking order.
    #[must_use]
    pub fn counter_keys(&self) -> Vec<CounterKey> {
        match &self.device {
            Some(device) => vec![CounterKey::device(device)],
            None => vec![
                CounterKey::account(&self.username),
                CounterKey::address(&self.address),
            ],
        }
    }

    /// The counter whose attempts in flight this one is one of.
    fn in_flight_key(&self) -> CounterKey {
        self.device
            .as_deref()
            .map_or_else(|| CounterKey::address(&self.address), CounterKey::device)
    }
}

/// A lockout that is over, with how many attempts it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutSummary {
    pub subject: LockSubject,
    /// The username of the first refused attempt.
    pub username: String,
    /// The address of the first refused attempt.
    pub address: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// Attempts refused, the first (already reported) included.
    pub refused: u32,
}

#[derive(Debug, Clone)]
struct Episode {
    username: String,
    address: String,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    until: DateTime<Utc>,
    refused: u32,
}

/// One process's part of the throttle: the attempts it has in flight and the lockouts
/// whose refusals it coalesces. Keep one per server (behind a mutex); it holds no
/// secrets. The failure counters come in as [`SharedCounters`].
#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    /// Attempts being checked, per address or device cookie; no entry at zero.
    in_flight: HashMap<CounterKey, u32>,
    episodes: HashMap<LockSubject, Episode>,
    /// Lockouts over, not yet taken.
    finished: Vec<LockoutSummary>,
    /// When this process last asked for a purge.
    purged: Option<DateTime<Utc>>,
}

fn secs_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (until - now).num_milliseconds().max(0);
    u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
}

/// The counter for `key`, started afresh when idle past the window.
fn counter<'m>(
    counters: &'m mut SharedCounters,
    key: CounterKey,
    now: DateTime<Utc>,
    policy: &ThrottlePolicy,
) -> &'m mut FailureCounter {
    let counter = counters
        .entry(key)
        .or_insert_with(|| FailureCounter::new(now));
    if counter.idle(now, policy.window) {
        *counter = FailureCounter::new(now);
    }
    counter
}

/// When the next attempt from an address with `c`'s failures may come, if not now.
fn address_ready(
    c: &FailureCounter,
    now: DateTime<Utc>,
    policy: &ThrottlePolicy,
) -> Option<DateTime<Utc>> {
    let excess = c.failures.checked_sub(policy.address_free_failures)?;
    let factor = 1_i32 << excess.min(20);
    let delay = (policy.address_base_delay * factor).min(policy.max_address_delay);
    let ready = c.last + delay;
    (now < ready).then_some(ready)
}

impl LoginThrottle {
    #[must_use]
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    #[must_use]
    pub const fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    fn in_flight(&self, key: &CounterKey) -> u32 {
        self.in_flight.get(key).copied().unwrap_or(0)
    }

    fn release(&mut self, key: &CounterKey) {
        if let Some(n) = self.in_flight.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(key);
            }
        }
    }

    /// Checks an attempt and, when it may proceed, counts it as a failure at once in
    /// `counters` (locked for [`Attempt::counter_keys`]; save them back when this returns
    /// a reservation). Call before looking at the password.
    ///
    /// # Errors
    /// A [`Refusal`] with the wait when the attempt may not proceed now (the counters are
    /// then unchanged but for idle ones started afresh).
    pub fn begin(
        &mut self,
        attempt: &Attempt<'_>,
        counters: &mut SharedCounters,
        now: DateTime<Utc>,
    ) -> Result<Reservation, Refusal> {
        let policy = self.policy.clone();
        let known = attempt.device.filter(|d| {
            counters
                .get(&CounterKey::device(d))
                .is_none_or(|c| c.locked_for(now).is_none())
        });
        if let Some(device) = known {
            let key = CounterKey::device(device);
            if self.in_flight(&key) >= policy.max_in_flight {
                return Err(self.refuse(
                    LockSubject::Device(device.to_owned()),
                    ThrottleReason::InFlight,
                    now + TimeDelta::seconds(1),
                    attempt,
                    now,
                ));
            }
            let c = counter(counters, key.clone(), now, &policy);
            c.failures += 1;
            c.last = now;
            let locked = c.failures >= policy.device_limit;
            if locked {
                c.locked_until = Some(now + policy.lockout);
                c.failures = 0;
            }
            *self.in_flight.entry(key).or_default() += 1;
            return Ok(Reservation {
                username: attempt.username.to_owned(),
                address: attempt.address.to_owned(),
                device: Some(device.to_owned()),
                locked,
            });
        }

        let address_key = CounterKey::address(attempt.address);
        let in_flight = self.in_flight(&address_key);
        let address = counter(counters, address_key.clone(), now, &policy);
        let refusal = if in_flight >= policy.max_in_flight {
            Some((ThrottleReason::InFlight, now + TimeDelta::seconds(1)))
        } else {
            address_ready(address, now, &policy).map(|at| (ThrottleReason::AddressSlowed, at))
        };
        if let Some((reason, until)) = refusal {
            let subject = LockSubject::Address(attempt.address.to_owned());
            return Err(self.refuse(subject, reason, until, attempt, now));
        }
        let account = counter(
            counters,
            CounterKey::account(attempt.username),
            now,
            &policy,
        );
        if let Some(until) = account.locked_until.filter(|u| *u > now) {
            let subject = LockSubject::Account(attempt.username.to_owned());
            return Err(self.refuse(subject, ThrottleReason::AccountLocked, until, attempt, now));
        }
        account.failures += 1;
        account.last = now;
        let locked = account.failures >= policy.account_limit;
        if locked {
            account.locked_until = Some(now + policy.lockout);
            account.failures = 0;
        }
        // Borrowed again: the account's counter needed `counters` in between.
        let address = counter(counters, address_key.clone(), now, &policy);
        address.failures += 1;
        address.last = now;
        *self.in_flight.entry(address_key).or_default() += 1;
        Ok(Reservation {
            username: attempt.username.to_owned(),
            address: attempt.address.to_owned(),
            device: None,
            locked,
        })
    }

    /// The attempt failed: its failure stays counted, and the address's delay (or the
    /// device's) runs from now. `counters` are those of [`Reservation::counter_keys`],
    /// locked; save them back. Returns true when further attempts like it are now
    /// throttled.
    pub fn failed(
        &mut self,
        reservation: Reservation,
        counters: &mut SharedCounters,
        now: DateTime<Utc>,
    ) -> bool {
        self.release(&reservation.in_flight_key());
        // Taken apart: a reservation is settled once.
        let Reservation {
            address,
            device,
            locked,
            ..
        } = reservation;
        if let Some(device) = device {
            if let Some(c) = counters.get_mut(&CounterKey::device(&device)) {
                c.last = now;
            }
            return locked;
        }
        let mut slowed = false;
        if let Some(c) = counters.get_mut(&CounterKey::address(&address)) {
            // The delay runs from the failure, not from when the check began.
            c.last = now;
            slowed = c.failures >= self.policy.address_free_failures;
        }
        locked || slowed
    }

    /// The attempt succeeded: its failure is refunded, and the owner's account counter
    /// (or device counter) starts afresh. A lock that another attempt set stays.
    /// `counters` are those of [`Reservation::counter_keys`], locked; save them back.
    pub fn succeeded(&mut self, reservation: Reservation, counters: &mut SharedCounters) {
        self.release(&reservation.in_flight_key());
        let Reservation {
            username,
            address,
            device,
            locked,
        } = reservation;
        if let Some(device) = device {
            if let Some(c) = counters.get_mut(&CounterKey::device(&device)) {
                c.failures = 0;
                if locked {
                    c.locked_until = None;
                }
            }
            return;
        }
        if let Some(c) = counters.get_mut(&CounterKey::address(&address)) {
            c.failures = c.failures.saturating_sub(1);
        }
        if let Some(c) = counters.get_mut(&CounterKey::account(&username)) {
            if locked {
                c.locked_until = None;
            }
            if c.locked_until.is_none() {
                c.failures = 0;
            }
        }
    }

    /// The attempt is settled without its counters (they could not be had, or the
    /// request was abandoned): its failure stays counted as [`Self::begin`] saved it;
    /// only its place in flight is given back.
    #[allow(clippy::needless_pass_by_value)] // taken: a reservation is settled once
    pub fn abandoned(&mut self, reservation: Reservation) {
        self.release(&reservation.in_flight_key());
    }

    /// Whether this process should ask the store to purge now: at most once per
    /// `purge_every`.
    pub fn purge_due(&mut self, now: DateTime<Utc>) -> bool {
        let due = self
            .purged
            .is_none_or(|at| now - at >= self.policy.purge_every || now < at);
        if due {
            self.purged = Some(now);
        }
        due
    }

    /// Lockouts that are over by `now` and refused more than their first attempt, each
    /// with its count (the first refusal was reported when it happened).
    pub fn take_finished(&mut self, now: DateTime<Utc>) -> Vec<LockoutSummary> {
        let over: Vec<LockSubject> = self
            .episodes
            .iter()
            .filter(|(_, e)| e.until <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for subject in over {
            self.finish(&subject);
        }
        std::mem::take(&mut self.finished)
    }

    fn finish(&mut self, subject: &LockSubject) {
        if let Some(e) = self.episodes.remove(subject)
            && e.refused > 1
        {
            self.finished.push(LockoutSummary {
                subject: subject.clone(),
                username: e.username,
                address: e.address,
                first: e.first,
                last: e.last,
                refused: e.refused,
            });
        }
    }

    fn refuse(
        &mut self,
        subject: LockSubject,
        reason: ThrottleReason,
        until: DateTime<Utc>,
        attempt: &Attempt<'_>,
        now: DateTime<Utc>,
    ) -> Refusal {
        let secs = secs_until(until, now);
        if let Some(e) = self.episodes.get_mut(&subject)
            && e.until > now
        {
            e.refused += 1;
            e.last = now;
            e.until = e.until.max(until);
            return Refusal {
                retry_after_secs: secs,
                reason,
                first_of_lockout: false,
            };
        }
        self.finish(&subject);
        if self.episodes.len() >= self.policy.max_entries {
            // Memory bound: the lockout ending first is reported now.
            if let Some(first) = self
                .episodes
                .iter()
                .min_by_key(|(_, e)| e.until)
                .map(|(s, _)| s.clone())
            {
                self.finish(&first);
            }
        }
        self.episodes.insert(
            subject,
            Episode {
                username: attempt.username.to_owned(),
                address: attempt.address.to_owned(),
                first: now,
                last: now,
                until,
                refused: 1,
            },
        );
        Refusal {
            retry_after_secs: secs,
            reason,
            first_of_lockout: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use chrono::TimeZone;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    fn unknown<'a>(username: &'a str, address: &'a str) -> Attempt<'a> {
        Attempt {
            username,
            address,
            device: None,
        }
    }

    /// The counters' store, in memory: what `ThrottleCounters` keeps in the database.
    type Store = RefCell<SharedCounters>;

    /// One server: its own throttle over the shared store, loading and saving the
    /// counters of each step as `AuthService` does through `ThrottleCounters`.
    struct Server<'s> {
        throttle: LoginThrottle,
        store: &'s Store,
    }

    impl<'s> Server<'s> {
        fn new(store: &'s Store) -> Self {
            Self::with(store, ThrottlePolicy::default())
        }

        fn with(store: &'s Store, policy: ThrottlePolicy) -> Self {
            Self {
                throttle: LoginThrottle::new(policy),
                store,
            }
        }

        fn load(&self, keys: &[CounterKey]) -> SharedCounters {
            let store = self.store.borrow();
            keys.iter()
                .filter_map(|k| store.get(k).map(|c| (k.clone(), c.clone())))
                .collect()
        }

        fn save(&self, keys: &[CounterKey], counters: &SharedCounters) {
            let mut store = self.store.borrow_mut();
            for k in keys {
                match counters.get(k).filter(|c| !c.is_blank()) {
                    Some(c) => store.insert(k.clone(), c.clone()),
                    None => store.remove(k),
                };
            }
        }

        fn begin(&mut self, a: &Attempt<'_>, now: DateTime<Utc>) -> Result<Reservation, Refusal> {
            let keys = a.counter_keys();
            let mut counters = self.load(&keys);
            let begun = self.throttle.begin(a, &mut counters, now);
            if begun.is_ok() {
                self.save(&keys, &counters);
            }
            begun
        }

        fn failed(&mut self, r: Reservation, now: DateTime<Utc>) -> bool {
            let keys = r.counter_keys();
            let mut counters = self.load(&keys);
            let throttled = self.throttle.failed(r, &mut counters, now);
            self.save(&keys, &counters);
            throttled
        }

        fn succeeded(&mut self, r: Reservation) {
            let keys = r.counter_keys();
            let mut counters = self.load(&keys);
            self.throttle.succeeded(r, &mut counters);
            self.save(&keys, &counters);
        }

        fn take_finished(&mut self, now: DateTime<Utc>) -> Vec<LockoutSummary> {
            self.throttle.take_finished(now)
        }
    }

    /// A failed attempt, start to end, at `now`.
    fn fail(t: &mut Server<'_>, a: &Attempt<'_>, now: DateTime<Utc>) -> Result<bool, Refusal> {
        let r = t.begin(a, now)?;
        Ok(t.failed(r, now))
    }

    #[test]
    fn address_keys_aggregate_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(address_key(Some("203.0.113.9")), "203.0.113.9");
        assert_eq!(address_key(Some("::ffff:203.0.113.9")), "203.0.113.9");
        assert_eq!(address_key(Some("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_eq!(
            address_key(Some("2001:db8:1:2:ffff:eeee:dddd:cccc")),
            "2001:db8:1:2::/64"
        );
        assert_ne!(
            address_key(Some("2001:db8:1:3::1")),
            address_key(Some("2001:db8:1:2::1"))
        );
        assert_eq!(address_key(Some("::1")), "::/64");
        assert_eq!(address_key(None), "local");
        assert_eq!(address_key(Some("not an ip")), "not an ip");
    }

    #[test]
    fn delays_per_address_grow_and_are_capped() {
        let store = Store::default();
        let mut t = Server::new(&store);
        let now = t0();
        for i in 0..5 {
            assert_eq!(
                fail(&mut t, &unknown(&format!("u{i}"), "10.0.0.9"), now),
                Ok(i == 4),
                "free failure {i}"
            );
        }
        // Five failures: 5 s, then 10, 20, ... from the last failure, at most 15 minutes.
        let mut at = now;
        for (i, expected) in [5, 10, 20, 40, 80, 160, 320, 640, 900, 900]
            .into_iter()
            .enumerate()
        {
            let name = format!("x{i}");
            let refused = fail(&mut t, &unknown(&name, "10.0.0.9"), at).expect_err("slowed");
            assert_eq!(refused.reason, ThrottleReason::AddressSlowed);
            assert_eq!(refused.retry_after_secs, expected);
            at += secs(i64::try_from(expected).unwrap());
            assert_eq!(fail(&mut t, &unknown(&name, "10.0.0.9"), at), Ok(true));
        }
        // Another address is not slowed.
        assert_eq!(fail(&mut t, &unknown("x", "10.0.0.1"), at), Ok(false));
        // An hour without failures and the address starts afresh.
        let later = at + TimeDelta::hours(1) + secs(1);
        assert_eq!(fail(&mut t, &unknown("y", "10.0.0.9"), later), Ok(false));
    }

    #[test]
    fn a_burst_is_bounded_by_reservations_and_in_flight_attempts() {
        let store = Store::default();
        let mut t = Server::new(&store);
        let now = t0();
        // Fifty attempts begun before any has finished.
        let results: Vec<_> = (0..50)
            .map(|_| t.begin(&unknown("admin", "10.0.0.9"), now))
            .collect();
        let passed = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(passed, 4, "at most max_in_flight at once");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|r| r.reason == ThrottleReason::InFlight && r.retry_after_secs == 1)
        );
        for r in results.into_iter().flatten() {
            t.failed(r, now);
        }
        // The fifth is let through, then the address waits.
        assert_eq!(fail(&mut t, &unknown("admin", "10.0.0.9"), now), Ok(true));
        assert_eq!(
            t.begin(&unknown("admin", "10.0.0.9"), now)
                .expect_err("slowed")
                .reason,
            ThrottleReason::AddressSlowed
        );
    }

    #[test]
    fn a_success_refunds_its_reservation() {
        let store = Store::default();
        let mut t = Server::new(&store);
        let now = t0();
        // A busy office behind one address: many logins, all fine, never slowed.
        for _ in 0..100 {
            let r = t
                .begin(&unknown("alice", "10.0.0.9"), now)
                .expect("allowed");
            t.succeeded(r);
        }
        assert!(store.borrow().is_empty(), "successes leave no counters");
        for _ in 0..4 {
            assert_eq!(fail(&mut t, &unknown("alice", "10.0.0.9"), now), Ok(false));
        }
        // The owner's success clears their account's failures, not the address's.
        let r = t
            .begin(&unknown("alice", "10.0.0.9"), now)
            .expect("allowed");
        t.succeeded(r);
        assert_eq!(fail(&mut t, &unknown("bob", "10.0.0.9"), now), Ok(true));
    }

    #[test]
    fn an_account_locks_for_unknown_clients_but_not_for_known_ones() {
        let store = Store::default();
        let mut t = Server::new(&store);
        let now = t0();
        // Distributed guessing: one failure from each of ten addresses.
        for i in 0..10 {
            let locked =
                fail(&mut t, &unknown("admin", &format!("10.0.{i}.1")), now).expect("allowed");
            assert_eq!(locked, i == 9);
        }
        let refused = t
            .begin(&unknown("admin", "192.168.1.1"), now)
            .expect_err("locked");
        assert_eq!(refused.reason, ThrottleReason::AccountLocked);
        assert_eq!(refused.retry_after_secs, 900);
        // The owner's browser, with its device cookie, gets in, even from an address
        // that is being slowed.
        for _ in 0..5 {
            let _ = fail(&mut t, &unknown("someone", "10.0.0.1"), now);
        }
        let known = Attempt {
            username: "admin",
            address: "10.0.0.1",
            device: Some("dev-1"),
        };
        let r = t.begin(&known, now).expect("known client");
        assert!(r.known_client());
        t.succeeded(r);
        // Other users are not affected by admin's lock.
        assert!(t.begin(&unknown("bob", "192.168.1.1"), now).is_ok());
        // The lock ends.
        assert!(
            t.begin(
                &unknown("admin", "192.168.1.2"),
                now + TimeDelta::minutes(15)
            )
            .is_ok()
        );
    }

    #[test]
    fn a_device_cookie_that_fails_too_often_is_no_longer_known() {
        let store = Store::default();
        let mut t = Server::new(&store);
        let now = t0();
        let stolen = Attempt {
            username: "admin",
            address: "10.0.0.66",
            device: Some("dev-1"),
        };
        for i in 0..5 {
            assert_eq!(fail(&mut t, &stolen, now), Ok(i == 4));
        }
        // Now judged as an unknown client: the address's counter starts.
        let r = t.begin(&stolen, now).expect("as unknown");
        assert!(!r.known_client());
        t.failed(r, now);
    }

    #[test]
    fn refusals_are_coalesced_into_one_report_per_lockout() {
        let store = Store::default();
        let mut t = Server::new(&store);
        let now = t0();
        for i in 0..5 {
            let _ = fail(&mut t, &unknown(&format!("u{i}"), "10.0.0.9"), now);
        }
        let first = t.begin(&unknown("x", "10.0.0.9"), now).expect_err("slowed");
        assert!(first.first_of_lockout);
        for i in 1..30 {
            let again = t
                .begin(
                    &unknown("x", "10.0.0.9"),
                    now + TimeDelta::milliseconds(i * 100),
                )
                .expect_err("slowed");
            assert!(!again.first_of_lockout);
        }
        assert!(t.take_finished(now + secs(4)).is_empty(), "not over yet");
        let over = t.take_finished(now + secs(5));
        assert_eq!(
            over,
            [LockoutSummary {
                subject: LockSubject::Address("10.0.0.9".into()),
                username: "x".into(),
                address: "10.0.0.9".into(),
                first: now,
                last: now + TimeDelta::milliseconds(2900),
                refused: 30,
            }]
        );
        assert!(t.take_finished(now + secs(6)).is_empty(), "reported once");
        // A lockout that refused one attempt needs no second report.
        let _ = fail(&mut t, &unknown("x", "10.0.0.9"), now + secs(5));
        let one = t
            .begin(&unknown("x", "10.0.0.9"), now + secs(5))
            .expect_err("slowed");
        assert!(one.first_of_lockout);
        assert!(t.take_finished(now + secs(60)).is_empty());
    }

    #[test]
    fn two_servers_over_one_store_share_delays_and_lockouts() {
        let store = Store::default();
        let mut a = Server::new(&store);
        let mut b = Server::new(&store);
        let now = t0();
        // Guessing spread over two servers (and ten addresses) locks the account on both.
        for i in 0..10 {
            let server = if i % 2 == 0 { &mut a } else { &mut b };
            let locked =
                fail(server, &unknown("admin", &format!("10.0.{i}.1")), now).expect("allowed");
            assert_eq!(locked, i == 9);
        }
        for server in [&mut a, &mut b] {
            let refused = server
                .begin(&unknown("admin", "192.168.1.1"), now)
                .expect_err("locked on every server");
            assert_eq!(refused.reason, ThrottleReason::AccountLocked);
            // Each server reports the first refusal it sees.
            assert!(refused.first_of_lockout);
        }
        // An address's failures on one server delay it on the other.
        for i in 0..5 {
            let _ = fail(&mut a, &unknown(&format!("u{i}"), "10.0.0.9"), now);
        }
        let slowed = b
            .begin(&unknown("v", "10.0.0.9"), now)
            .expect_err("slowed on the other server");
        assert_eq!(slowed.reason, ThrottleReason::AddressSlowed);
        // The owner's known client gets in through either.
        let known = Attempt {
            username: "admin",
            address: "10.0.0.9",
            device: Some("dev-1"),
        };
        let r = b.begin(&known, now).expect("known client");
        b.succeeded(r);
    }

    #[test]
    fn in_process_memory_is_bounded() {
        let store = Store::default();
        let mut t = Server::with(
            &store,
            ThrottlePolicy {
                max_entries: 100,
                ..ThrottlePolicy::default()
            },
        );
        let now = t0();
        for i in 0..300 {
            let (user, address) = (format!("u{i}"), format!("a{i}"));
            for _ in 0..5 {
                let _ = fail(&mut t, &unknown(&user, &address), now + secs(i));
            }
            // A sixth is refused: one lockout being coalesced per address.
            assert!(t.begin(&unknown(&user, &address), now + secs(i)).is_err());
            let device = format!("d{i}");
            let known = Attempt {
                username: "u",
                address: "a",
                device: Some(&device),
            };
            if let Ok(r) = t.begin(&known, now + secs(i)) {
                t.failed(r, now + secs(i));
            }
        }
        assert!(
            t.throttle.in_flight.is_empty(),
            "settled attempts leave nothing"
        );
        assert!(t.throttle.episodes.len() <= 100);
    }

    #[test]
    fn a_purge_is_asked_for_at_most_once_a_minute() {
        let mut t = LoginThrottle::default();
        let now = t0();
        assert!(t.purge_due(now));
        assert!(!t.purge_due(now + secs(59)));
        assert!(t.purge_due(now + secs(60)));
        assert!(!t.purge_due(now + secs(61)));
    }

    #[test]
    fn attempts_name_their_counters_in_locking_order() {
        let known = Attempt {
            username: "zed",
            address: "10.0.0.1",
            device: Some("dev-1"),
        };
        let keys = known.counter_keys();
        assert_eq!(
            keys,
            [
                CounterKey::account("zed"),
                CounterKey::address("10.0.0.1"),
                CounterKey::device("dev-1"),
            ]
        );
        assert!(keys.is_sorted());
        assert_eq!("device".parse(), Ok(CounterKind::Device));
    }
}
