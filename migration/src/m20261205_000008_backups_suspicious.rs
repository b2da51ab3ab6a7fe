//! `backups.suspicious`: why the source looked empty or collapsed when the snapshot was
//! taken (NULL for a snapshot that looked right). Such a snapshot is kept but replaces no
//! older one in retention.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Backups {
    Table,
    Suspicious,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Backups::Table)
                    .add_column(ColumnDef::new(Backups::Suspicious).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Backups::Table)
                    .drop_column(Backups::Suspicious)
                    .to_owned(),
            )
            .await
    }
}
