//! The parts of the settings that need no service: validation and the stored form.

use super::*;

#[test]
fn quota_limits_are_checked() {
    let ok = QuotaMib {
        max_storage_mb: 500,
        warning_threshold_mb: 400,
    };
    assert!(check_quota(ok).is_ok());
    // No quota, but a warning: allowed (warn without a hard limit).
    assert!(
        check_quota(QuotaMib {
            max_storage_mb: 0,
            warning_threshold_mb: 400,
        })
        .is_ok()
    );
    let above = check_quota(QuotaMib {
        max_storage_mb: 500,
        warning_threshold_mb: 501,
    })
    .unwrap_err();
    assert_eq!(above.code(), "invalid_quota");
    let huge = check_quota(QuotaMib {
        max_storage_mb: MAX_QUOTA_MB + 1,
        warning_threshold_mb: 0,
    })
    .unwrap_err();
    assert_eq!(huge.code(), "invalid_quota");
}

#[test]
fn stored_values_read_back_and_damaged_ones_are_refused() {
    let q = QuotaMib {
        max_storage_mb: 7,
        warning_threshold_mb: 5,
    };
    assert_eq!(parse_quota(&quota_json(q)), Some(q));
    let r = RetentionStatus {
        enabled: false,
        defaults: Retention {
            max_backups: 3,
            max_age_days: 9,
            keep_within_days: 1,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
            keep_yearly: 2,
        },
    };
    assert_eq!(parse_retention(&retention_json(r)), Some(r));
    assert_eq!(
        parse_quota(&json!({"max_storage_mb": -1, "warning_threshold_mb": 0})),
        None
    );
    assert_eq!(parse_quota(&json!({"max_storage_mb": 1})), None);
    let mut v = retention_json(r);
    v["keep_daily"] = json!(u64::from(u32::MAX) + 1);
    assert_eq!(parse_retention(&v), None);
}

#[test]
fn descriptions_name_values_and_origin() {
    let q = QuotaMib {
        max_storage_mb: 0,
        warning_threshold_mb: 10,
    };
    assert_eq!(
        describe_quota(q, Origin::Dashboard),
        "max none, warning 10 MiB (dashboard)"
    );
}
