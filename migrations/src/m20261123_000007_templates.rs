//! Message templates with variables (`{{nombre}}`, `{{sustantivo}}`, any contact attribute).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Templates {
    Table,
    Id,
    OwnerId,
    Name,
    Body,
    MediaId,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Templates::Table)
                    .col(
                        ColumnDef::new(Templates::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Templates::OwnerId).string_len(36).not_null())
                    .col(ColumnDef::new(Templates::Name).string().not_null())
                    .col(ColumnDef::new(Templates::Body).text().not_null())
                    .col(ColumnDef::new(Templates::MediaId).string_len(36).null())
                    .col(
                        ColumnDef::new(Templates::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Templates::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Templates::Table).to_owned())
            .await
    }
}
