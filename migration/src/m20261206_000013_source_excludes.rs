//! `sources.filter_rules`: what a source's backups leave out, as JSON
//! (`{"exclude":["*.tmp"],"exclude_caches":true,"one_file_system":false,
//! "exclude_larger_than":1048576}`); NULL for a source that leaves out nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sources {
    Table,
    FilterRules,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Sources::Table)
                    .add_column(ColumnDef::new(Sources::FilterRules).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Sources::Table)
                    .drop_column(Sources::FilterRules)
                    .to_owned(),
            )
            .await
    }
}
