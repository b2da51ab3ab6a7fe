use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sources")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub path: String,
    /// Cron expression, when the source is scheduled.
    pub schedule: Option<String>,
    /// JSON retention override, when the source has one.
    #[sea_orm(column_type = "Text", nullable)]
    pub retention: Option<String>,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_run_at: Option<DateTimeUtc>,
    pub next_run_at: Option<DateTimeUtc>,
    /// JSON of what the source leaves out; NULL when it leaves out nothing.
    #[sea_orm(column_type = "Text", nullable)]
    pub filter_rules: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
