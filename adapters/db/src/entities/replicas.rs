use sea_orm::entity::prelude::*;

/// A replica (off-site copy) and the outcome of its copies.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "replicas")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub backend: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub root: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub prefix: Option<String>,
    pub path_style: Option<bool>,
    #[sea_orm(column_type = "Text", nullable)]
    pub credentials_file: Option<String>,
    pub append_only: bool,
    pub schedule: Option<String>,
    pub max_lag_snapshots: Option<i32>,
    pub max_lag_hours: Option<i32>,
    pub from_config: bool,
    pub created_at: DateTimeUtc,
    pub last_success_at: Option<DateTimeUtc>,
    pub copied_through: Option<DateTimeUtc>,
    pub last_failure_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub next_run_at: Option<DateTimeUtc>,
    pub last_run_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
