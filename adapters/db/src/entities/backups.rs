use sea_orm::entity::prelude::*;

/// One snapshot in the catalog (the prototype's `backups` table, grown up).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "backups")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Hex id of the snapshot object in the repository.
    #[sea_orm(unique)]
    pub snapshot_id: String,
    pub source_id: Option<i64>,
    /// The source's name when the snapshot was taken (history outlives the source).
    pub source_name: String,
    /// Logical bytes in the snapshot.
    pub size: i64,
    pub created_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    pub status: String,
    /// SHA-256 of the snapshot object, hex.
    pub checksum: Option<String>,
    pub encrypted: bool,
    pub file_count: i64,
    pub dir_count: i64,
    pub bytes_added: i64,
    pub stored_bytes_added: i64,
    pub duration_ms: i64,
    /// JSON array of warnings (unreadable or changed files, skipped entries).
    #[sea_orm(column_type = "Text", nullable)]
    pub warnings: Option<String>,
    pub parent_snapshot_id: Option<String>,
    pub protected: bool,
    pub verified_at: Option<DateTimeUtc>,
    pub verify_result: Option<String>,
    /// Why the source looked empty or collapsed; NULL when it looked right.
    #[sea_orm(column_type = "Text", nullable)]
    pub suspicious: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
