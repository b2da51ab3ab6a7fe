//! Login throttling: a pure policy over failure counters, with time passed in.
//!
//! Three counters, so that an attacker can slow a login down but never lock its owner
//! out for good:
//! - per (username, client address): after `pair_limit` failures that pair is locked for
//!   `lockout` — this stops guessing from one place;
//! - per client address: after `ip_limit` failures (any usernames) the address is locked
//!   for `lockout` — this stops spraying many names from one place;
//! - per username, from anywhere: after `user_soft_limit` failures each further attempt
//!   must wait a delay that doubles per failure up to `max_user_delay` — distributed
//!   guessing is slowed to a crawl, while the owner, from an address that has not failed,
//!   waits at most `max_user_delay`.
//!
//! Counters forget failures older than `window`; a successful login clears its
//! (username, address) and username counters.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub pair_limit: u32,
    pub ip_limit: u32,
    pub user_soft_limit: u32,
    pub lockout: TimeDelta,
    pub window: TimeDelta,
    pub max_user_delay: TimeDelta,
    /// Most counters kept per kind; beyond it the stalest are forgotten (memory bound).
    pub max_entries: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            pair_limit: 5,
            ip_limit: 20,
            user_soft_limit: 10,
            lockout: TimeDelta::minutes(15),
            window: TimeDelta::minutes(15),
            max_user_delay: TimeDelta::seconds(60),
            max_entries: 10_000,
        }
    }
}

/// Why an attempt is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// Too many failures for this username from this address.
    PairLocked,
    /// Too many failures from this address.
    AddressLocked,
    /// Too many failures for this username; wait before the next attempt.
    UsernameSlowed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    Allow,
    Deny {
        /// Whole seconds to wait (at least 1).
        retry_after_secs: u64,
        reason: ThrottleReason,
    },
}

#[derive(Debug, Clone)]
struct Counter {
    failures: u32,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    locked_until: Option<DateTime<Utc>>,
}

impl Counter {
    const fn new(now: DateTime<Utc>) -> Self {
        Self {
            failures: 0,
            first: now,
            last: now,
            locked_until: None,
        }
    }
}

/// The counters. Keep one per server (behind a mutex); it holds no secrets.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    pairs: HashMap<(String, String), Counter>,
    addresses: HashMap<String, Counter>,
    users: HashMap<String, Counter>,
}

fn secs_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (until - now).num_milliseconds().max(0);
    u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
}

fn locked(counter: Option<&Counter>, now: DateTime<Utc>) -> Option<u64> {
    counter
        .and_then(|c| c.locked_until)
        .filter(|until| *until > now)
        .map(|until| secs_until(until, now))
}

/// Adds a failure; returns true when this failure starts a lockout.
fn bump<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Counter>,
    key: &K,
    now: DateTime<Utc>,
    policy: &ThrottlePolicy,
    limit: Option<u32>,
) -> bool {
    if map.len() >= policy.max_entries && !map.contains_key(key) {
        prune(map, now, policy);
    }
    let counter = map.entry(key.clone()).or_insert_with(|| Counter::new(now));
    if now - counter.last > policy.window && counter.locked_until.is_none_or(|u| u <= now) {
        *counter = Counter::new(now);
    }
    counter.failures += 1;
    counter.last = now;
    match limit {
        Some(limit)
            if counter.failures >= limit && counter.locked_until.is_none_or(|u| u <= now) =>
        {
            counter.locked_until = Some(now + policy.lockout);
            counter.failures = 0;
            counter.first = now;
            true
        }
        _ => false,
    }
}

/// Forgets expired counters, then the stalest, until there is room for one more.
fn prune<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Counter>,
    now: DateTime<Utc>,
    policy: &ThrottlePolicy,
) {
    map.retain(|_, c| now - c.last <= policy.window || c.locked_until.is_some_and(|u| u > now));
    while map.len() >= policy.max_entries {
        let Some(stalest) = map
            .iter()
            .min_by_key(|(_, c)| c.last)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&stalest);
    }
}

impl LoginThrottle {
    #[must_use]
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Whether an attempt for `username` from `address` may proceed now.
    #[must_use]
    pub fn check(&self, username: &str, address: &str, now: DateTime<Utc>) -> ThrottleDecision {
        let pair = (username.to_owned(), address.to_owned());
        if let Some(secs) = locked(self.pairs.get(&pair), now) {
            return ThrottleDecision::Deny {
                retry_after_secs: secs,
                reason: ThrottleReason::PairLocked,
            };
        }
        if let Some(secs) = locked(self.addresses.get(address), now) {
            return ThrottleDecision::Deny {
                retry_after_secs: secs,
                reason: ThrottleReason::AddressLocked,
            };
        }
        if let Some(user) = self.users.get(username)
            && user.failures >= self.policy.user_soft_limit
            && now - user.last <= self.policy.window
        {
            let excess = user.failures - self.policy.user_soft_limit;
            let delay = TimeDelta::seconds(1_i64 << excess.min(20)).min(self.policy.max_user_delay);
            let ready = user.last + delay;
            if now < ready {
                return ThrottleDecision::Deny {
                    retry_after_secs: secs_until(ready, now),
                    reason: ThrottleReason::UsernameSlowed,
                };
            }
        }
        ThrottleDecision::Allow
    }

    /// Records a failed attempt. Returns true when it locked the pair or the address.
    pub fn record_failure(&mut self, username: &str, address: &str, now: DateTime<Utc>) -> bool {
        let policy = self.policy.clone();
        let pair = (username.to_owned(), address.to_owned());
        let pair_locked = bump(
            &mut self.pairs,
            &pair,
            now,
            &policy,
            Some(policy.pair_limit),
        );
        let address_locked = bump(
            &mut self.addresses,
            &address.to_owned(),
            now,
            &policy,
            Some(policy.ip_limit),
        );
        bump(&mut self.users, &username.to_owned(), now, &policy, None);
        pair_locked || address_locked
    }

    /// Records a successful login: the owner's counters start afresh.
    pub fn record_success(&mut self, username: &str, address: &str) {
        self.pairs
            .remove(&(username.to_owned(), address.to_owned()));
        self.users.remove(username);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    #[test]
    fn five_failures_lock_the_pair_for_fifteen_minutes() {
        let mut t = LoginThrottle::default();
        let now = t0();
        for i in 0..4 {
            assert!(!t.record_failure("admin", "10.0.0.9", now + secs(i)));
            assert_eq!(
                t.check("admin", "10.0.0.9", now + secs(i)),
                ThrottleDecision::Allow
            );
        }
        assert!(t.record_failure("admin", "10.0.0.9", now + secs(4)));
        assert_eq!(
            t.check("admin", "10.0.0.9", now + secs(5)),
            ThrottleDecision::Deny {
                retry_after_secs: 899,
                reason: ThrottleReason::PairLocked
            }
        );
        // The owner, from elsewhere, is not locked out.
        assert_eq!(
            t.check("admin", "10.0.0.1", now + secs(5)),
            ThrottleDecision::Allow
        );
        // The lock ends.
        assert_eq!(
            t.check("admin", "10.0.0.9", now + secs(4) + TimeDelta::minutes(15)),
            ThrottleDecision::Allow
        );
    }

    #[test]
    fn spraying_names_from_one_address_locks_the_address() {
        let mut t = LoginThrottle::default();
        let now = t0();
        let mut locked = false;
        for i in 0..20 {
            locked = t.record_failure(&format!("user{i}"), "10.0.0.9", now);
        }
        assert!(locked);
        assert!(matches!(
            t.check("someone-else", "10.0.0.9", now),
            ThrottleDecision::Deny {
                reason: ThrottleReason::AddressLocked,
                ..
            }
        ));
        assert_eq!(
            t.check("someone-else", "10.0.0.1", now),
            ThrottleDecision::Allow
        );
    }

    #[test]
    fn distributed_guessing_is_slowed_never_locked() {
        let mut t = LoginThrottle::default();
        let now = t0();
        for i in 0..10 {
            t.record_failure("admin", &format!("10.0.{i}.1"), now);
        }
        // 10 failures: next attempt must wait 1 s.
        assert_eq!(
            t.check("admin", "192.168.1.1", now),
            ThrottleDecision::Deny {
                retry_after_secs: 1,
                reason: ThrottleReason::UsernameSlowed
            }
        );
        assert_eq!(
            t.check("admin", "192.168.1.1", now + secs(1)),
            ThrottleDecision::Allow
        );
        // The delay doubles, up to a minute, never more.
        for i in 10..40 {
            t.record_failure("admin", &format!("10.1.{i}.1"), now);
        }
        assert_eq!(
            t.check("admin", "192.168.1.1", now),
            ThrottleDecision::Deny {
                retry_after_secs: 60,
                reason: ThrottleReason::UsernameSlowed
            }
        );
        assert_eq!(
            t.check("admin", "192.168.1.1", now + secs(60)),
            ThrottleDecision::Allow
        );
    }

    #[test]
    fn success_clears_the_owners_counters_and_old_failures_are_forgotten() {
        let mut t = LoginThrottle::default();
        let now = t0();
        for _ in 0..4 {
            t.record_failure("admin", "10.0.0.9", now);
        }
        t.record_success("admin", "10.0.0.9");
        for _ in 0..4 {
            assert!(!t.record_failure("admin", "10.0.0.9", now));
        }
        // Failures spread over more than the window never add up to a lock.
        let mut t = LoginThrottle::default();
        for i in 0..10 {
            assert!(!t.record_failure("bob", "10.0.0.9", now + TimeDelta::minutes(16 * i)));
        }
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = LoginThrottle::new(ThrottlePolicy {
            max_entries: 100,
            ..ThrottlePolicy::default()
        });
        let now = t0();
        for i in 0..1000 {
            t.record_failure(&format!("u{i}"), &format!("a{i}"), now + secs(i));
        }
        assert!(t.pairs.len() <= 100 && t.addresses.len() <= 100 && t.users.len() <= 100);
    }
}
