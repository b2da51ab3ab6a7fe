use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub username: String,
    pub action: String,
    pub resource: Option<String>,
    pub timestamp: DateTimeUtc,
    pub ip_address: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub user_agent: Option<String>,
    pub success: bool,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
    /// The previous row's `row_hash` ("" for the first row).
    pub prev_hash: String,
    /// SHA-256 (hex) of this row's content and `prev_hash`.
    pub row_hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
