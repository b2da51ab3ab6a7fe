//! `login_throttle`: the login throttle's failure counters, shared by every server on the
//! catalog (issue 15 §4), so that failures on one server count on the others.
//!
//! One row per counter, `(kind, key)`: `kind` is `account` (a username), `address` (a
//! client address, an IPv6 /64) or `device` (a device cookie's id); `failures`, the time
//! of the `last_failure` and the account's or device's `locked_until`. The policy is
//! `coffer_domain::throttle`; a counter without failures or lock has no row, and rows idle
//! past the policy's window are purged (`idx_login_throttle_kind_last` finds them, and the
//! stalest when a kind holds too many).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, string, string_len, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Kind,
    Key,
    Failures,
    LastFailure,
    LockedUntil,
}

const KIND_LAST_INDEX: &str = "idx_login_throttle_kind_last";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoginThrottle::Table)
                    .if_not_exists()
                    .col(string_len(LoginThrottle::Kind, 16))
                    .col(string(LoginThrottle::Key))
                    .col(big_integer(LoginThrottle::Failures).default(0))
                    .col(timestamp_with_time_zone(LoginThrottle::LastFailure))
                    .col(timestamp_with_time_zone_null(LoginThrottle::LockedUntil))
                    .primary_key(
                        Index::create()
                            .col(LoginThrottle::Kind)
                            .col(LoginThrottle::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(KIND_LAST_INDEX)
                    .table(LoginThrottle::Table)
                    .col(LoginThrottle::Kind)
                    .col(LoginThrottle::LastFailure)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(LoginThrottle::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
