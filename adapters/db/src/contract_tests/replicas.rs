//! The `ReplicaRepository` contract, on both backends.

use coffer_domain::ports::RepoError;
use coffer_domain::replicas::{
    LagLimits, ReplicaLocation, ReplicaName, ReplicaRepository, ReplicaSpec, S3Location,
};
use coffer_domain::schedule::Schedule;

use super::*;

fn spec(name: &str, root: &str) -> ReplicaSpec {
    ReplicaSpec {
        name: ReplicaName::parse(name).expect("a name"),
        location: ReplicaLocation::Fs {
            root: root.to_owned(),
        },
        append_only: false,
        schedule: None,
        lag: LagLimits::default(),
    }
}

contract!(
    replicas_round_trip_and_names_are_unique,
    |db: Database| async move {
        let repo = db.replicas();
        assert!(repo.list().await.expect("list").is_empty());
        let mut nas = spec("nas", "/mnt/nas/coffer");
        nas.append_only = true;
        nas.schedule = Some(Schedule::parse("0 2 * * *").expect("cron"));
        nas.lag = LagLimits {
            max_snapshots: Some(5),
            max_age_hours: Some(48),
        };
        let created = repo.create(&nas, false, t(1)).await.expect("create");
        assert_eq!(created.spec, nas);
        assert!(!created.from_config);
        assert_eq!(created.created_at, t(1));
        assert_eq!(created.last_success_at, None);
        assert_eq!(created.last_error, None);
        repo.create(&spec("b-disk", "/mnt/b"), true, t(2))
            .await
            .expect("create second");
        let err = repo
            .create(&spec("nas", "/elsewhere"), false, t(3))
            .await
            .expect_err("a taken name");
        assert!(matches!(err, RepoError::Conflict(_)), "{err:?}");

        let listed = repo.list().await.expect("list");
        let names: Vec<&str> = listed.iter().map(|r| r.spec.name.as_str()).collect();
        assert_eq!(names, ["b-disk", "nas"]);
        assert!(listed[0].from_config);
        let got = repo.get(&nas.name).await.expect("get").expect("present");
        assert_eq!(got, created);
        assert_eq!(
            repo.get(&ReplicaName::parse("none").expect("name"))
                .await
                .expect("get"),
            None
        );
    }
);

contract!(
    replica_outcomes_and_updates_are_kept_apart,
    |db: Database| async move {
        let repo = db.replicas();
        let nas = spec("nas", "/mnt/nas");
        repo.create(&nas, false, t(0)).await.expect("create");
        repo.record_success(&nas.name, t(10), t(5))
            .await
            .expect("success");
        repo.record_failure(&nas.name, t(20), "storage unavailable")
            .await
            .expect("failure");
        repo.set_plan(&nas.name, Some(t(100)), Some(t(20)))
            .await
            .expect("plan");
        let mut changed = nas.clone();
        changed.append_only = true;
        // From a directory to a bucket: every field of the place round-trips.
        changed.location = ReplicaLocation::S3(S3Location {
            endpoint: Some("http://127.0.0.1:3900".into()),
            bucket: "offsite".into(),
            region: "garage".into(),
            prefix: "coffer/".into(),
            path_style: false,
            credentials_file: "/etc/coffer/offsite.credentials".into(),
        });
        changed.lag.max_snapshots = Some(3);
        assert!(repo.update(&changed, false).await.expect("update"));
        let got = repo.get(&nas.name).await.expect("get").expect("present");
        assert_eq!(got.spec, changed);
        // The outcome of copies survives a change of configuration, and one kind of
        // outcome does not erase the other.
        assert_eq!(got.last_success_at, Some(t(10)));
        assert_eq!(got.copied_through, Some(t(5)));
        assert_eq!(got.last_failure_at, Some(t(20)));
        assert_eq!(got.last_error.as_deref(), Some("storage unavailable"));
        assert_eq!(got.next_run_at, Some(t(100)));
        assert_eq!(got.last_run_at, Some(t(20)));

        let ghost = ReplicaName::parse("ghost").expect("name");
        assert!(
            !repo
                .update(&spec("ghost", "/g"), false)
                .await
                .expect("update")
        );
        repo.record_success(&ghost, t(1), t(1))
            .await
            .expect("a removed replica's copy ends quietly");
        assert!(repo.delete(&nas.name).await.expect("delete"));
        assert!(!repo.delete(&nas.name).await.expect("second delete"));
        assert!(repo.list().await.expect("list").is_empty());
    }
);
