use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    /// UUID v7, text.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: String,
    pub state: String,
    pub source_id: Option<i64>,
    pub snapshot_id: Option<String>,
    pub requested_by: String,
    #[sea_orm(column_type = "Text")]
    pub params: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub progress: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub result: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// What at most one active job may work on (`backup:<source>`, `prune`, ...):
    /// unique among queued and running jobs.
    pub subject: Option<String>,
    /// Who the job runs as (JSON).
    #[sea_orm(column_type = "Text", nullable)]
    pub actor: Option<String>,
    /// The server instance running it.
    pub instance: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub cancel_requested: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
