//! The `ThrottleCounters` contract, on both backends: counters round-trip, blank ones
//! leave no row, a lock dropped unsaved changes nothing, two pools on one database (two
//! servers) never lose an update of a counter they share, and the purge forgets idle
//! counters and keeps each kind bounded.

use std::sync::Arc;

use coffer_domain::throttle::{
    Attempt, CounterKey, FailureCounter, LoginThrottle, SharedCounters, ThrottleCounters,
    ThrottlePolicy, ThrottleReason,
};

use super::*;

fn counter(failures: u32, last: i64, locked_until: Option<i64>) -> FailureCounter {
    FailureCounter {
        failures,
        last: t(last),
        locked_until: locked_until.map(t),
    }
}

/// The stored counters of `keys`, read through a lock that is then dropped.
async fn read(store: &dyn ThrottleCounters, keys: &[CounterKey]) -> SharedCounters {
    store.lock(keys).await.expect("lock").0
}

/// Runs a case on two pools over one fresh database: two servers on one catalog.
macro_rules! two_servers {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = TestDatabase::sqlite();
                let (a, b) = (migrated(&t.url).await, migrated(&t.url).await);
                ($body)(a.clone(), b.clone()).await;
                a.close().await.expect("close");
                b.close().await.expect("close");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(t) =
                    TestDatabase::postgres(concat!(stringify!($name), "::postgres")).await
                else {
                    return;
                };
                let (a, b) = (migrated(&t.url).await, migrated(&t.url).await);
                ($body)(a.clone(), b.clone()).await;
                a.close().await.expect("close");
                b.close().await.expect("close");
                t.cleanup().await;
            }
        }
    };
}

contract!(
    counters_round_trip_and_blank_ones_leave_no_row,
    |db: Database| async move {
        let store = db.throttle_counters();
        let (admin, addr, dev) = (
            CounterKey::account("admin"),
            CounterKey::address("10.0.0.9"),
            CounterKey::device("dev-1"),
        );
        let keys = [dev.clone(), admin.clone(), addr.clone()];
        assert!(read(&store, &keys).await.is_empty(), "nothing stored yet");

        let (mut counters, lock) = store.lock(&keys).await.expect("lock");
        assert!(counters.is_empty());
        counters.insert(admin.clone(), counter(3, 10, None));
        counters.insert(addr.clone(), counter(0, 20, Some(920)));
        counters.insert(dev.clone(), counter(0, 30, None));
        lock.save(&counters).await.expect("save");
        let stored = read(&store, &keys).await;
        assert_eq!(stored.get(&admin), Some(&counter(3, 10, None)));
        assert_eq!(stored.get(&addr), Some(&counter(0, 20, Some(920))));
        assert_eq!(stored.get(&dev), None, "a blank counter is no row");
        // Only the keys asked for are returned.
        assert_eq!(
            read(&store, std::slice::from_ref(&admin))
                .await
                .into_keys()
                .collect::<Vec<_>>(),
            std::slice::from_ref(&admin)
        );

        // A lock dropped unsaved changes nothing.
        let (mut counters, lock) = store.lock(&keys).await.expect("lock");
        counters.remove(&admin);
        drop(lock);
        assert_eq!(
            read(&store, &keys).await.get(&admin),
            Some(&counter(3, 10, None))
        );

        // Saving a counter that is absent deletes it; one not locked is refused.
        let (mut counters, lock) = store.lock(&keys).await.expect("lock");
        counters.remove(&admin);
        lock.save(&counters).await.expect("save");
        assert_eq!(read(&store, &keys).await.get(&admin), None);
        let (mut counters, lock) = store.lock(std::slice::from_ref(&addr)).await.expect("lock");
        counters.insert(admin.clone(), counter(1, 40, None));
        assert!(matches!(
            lock.save(&counters).await,
            Err(RepoError::Conflict(_))
        ));
        assert_eq!(read(&store, &keys).await.get(&admin), None);
        assert_eq!(
            read(&store, &keys).await.get(&addr),
            Some(&counter(0, 20, Some(920))),
            "nothing written by the refused save"
        );
    }
);

two_servers!(
    two_servers_never_lose_an_update_of_a_shared_counter,
    |a: Database, b: Database| async move {
        let stores: [Arc<dyn ThrottleCounters>; 2] = [
            Arc::new(a.throttle_counters()),
            Arc::new(b.throttle_counters()),
        ];
        let shared = CounterKey::account("admin");
        let tasks: Vec<_> = (0..40_u32)
            .map(|i| {
                let store = stores[usize::try_from(i % 2).expect("0 or 1")].clone();
                let shared = shared.clone();
                // Each also holds a key of its own, locked in order with the shared one.
                let own = CounterKey::address(&format!("10.0.0.{i}"));
                tokio::spawn(async move {
                    let keys = [own.clone(), shared.clone()];
                    let (mut counters, lock) = store.lock(&keys).await.expect("lock");
                    let c = counters
                        .entry(shared)
                        .or_insert_with(|| counter(0, 0, None));
                    c.failures += 1;
                    c.last = t(i64::from(i));
                    // Another attempt would read here, were the counter not held.
                    tokio::task::yield_now().await;
                    counters.insert(own, counter(1, i64::from(i), None));
                    lock.save(&counters).await.expect("save");
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let total = read(stores[0].as_ref(), std::slice::from_ref(&shared)).await;
        assert_eq!(total[&shared].failures, 40, "every increment counted");
    }
);

two_servers!(
    two_throttles_over_one_catalog_share_the_lockout,
    |a: Database, b: Database| async move {
        let mut servers = [
            (
                LoginThrottle::new(ThrottlePolicy::default()),
                a.throttle_counters(),
            ),
            (
                LoginThrottle::new(ThrottlePolicy::default()),
                b.throttle_counters(),
            ),
        ];
        let now = t(0);
        // Ten failures for admin, from ten addresses, alternating between the servers.
        for i in 0..10 {
            let (throttle, store) = &mut servers[i % 2];
            let address = format!("10.0.{i}.1");
            let attempt = Attempt {
                username: "admin",
                address: &address,
                device: None,
            };
            let (mut counters, lock) = store.lock(&attempt.counter_keys()).await.expect("lock");
            let r = throttle
                .begin(&attempt, &mut counters, now)
                .expect("allowed");
            lock.save(&counters).await.expect("save");
            let (mut counters, lock) = store.lock(&r.counter_keys()).await.expect("lock");
            throttle.failed(r, &mut counters, now);
            lock.save(&counters).await.expect("save");
        }
        for (throttle, store) in &mut servers {
            let attempt = Attempt {
                username: "admin",
                address: "192.168.1.1",
                device: None,
            };
            let (mut counters, lock) = store.lock(&attempt.counter_keys()).await.expect("lock");
            let refused = throttle
                .begin(&attempt, &mut counters, now)
                .expect_err("locked on both servers");
            assert_eq!(refused.reason, ThrottleReason::AccountLocked);
            lock.save(&counters).await.expect("save");
        }
    }
);

contract!(
    the_purge_forgets_idle_counters_and_bounds_each_kind,
    |db: Database| async move {
        let store = db.throttle_counters();
        let save = |key: CounterKey, c: FailureCounter| {
            let store = store.clone();
            async move {
                let (mut counters, lock) =
                    store.lock(std::slice::from_ref(&key)).await.expect("lock");
                counters.insert(key, c);
                lock.save(&counters).await.expect("save");
            }
        };
        // Idle since before 100: forgotten unless still locked at 1000.
        save(CounterKey::address("old"), counter(7, 50, None)).await;
        save(
            CounterKey::account("old-locked"),
            counter(0, 50, Some(2000)),
        )
        .await;
        save(
            CounterKey::account("old-unlocked"),
            counter(0, 50, Some(900)),
        )
        .await;
        // Recent: kept, but only the 3 latest of each kind.
        for i in 0..5 {
            save(
                CounterKey::device(&format!("d{i}")),
                counter(1, 200 + i, None),
            )
            .await;
        }
        save(CounterKey::address("new"), counter(2, 300, None)).await;

        let gone = store.purge(t(1000), t(100), 3).await.expect("purge");
        assert_eq!(gone, 4, "two idle, two devices beyond the bound");
        let all: Vec<CounterKey> = [
            CounterKey::address("old"),
            CounterKey::account("old-locked"),
            CounterKey::account("old-unlocked"),
            CounterKey::address("new"),
        ]
        .into_iter()
        .chain((0..5).map(|i| CounterKey::device(&format!("d{i}"))))
        .collect();
        let mut left: Vec<CounterKey> = read(&store, &all).await.into_keys().collect();
        left.sort();
        let mut expected = vec![
            CounterKey::account("old-locked"),
            CounterKey::address("new"),
            CounterKey::device("d2"),
            CounterKey::device("d3"),
            CounterKey::device("d4"),
        ];
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(store.purge(t(1000), t(100), 3).await.expect("purge"), 0);
        // The lock over, the stale counter goes too.
        assert_eq!(store.purge(t(2001), t(100), 3).await.expect("purge"), 1);
    }
);
