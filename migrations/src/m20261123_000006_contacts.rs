//! Contacts (one per owner and E.164 phone) and CSV imports with their per-row errors.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Contacts {
    Table,
    Id,
    OwnerId,
    Phone,
    Name,
    Noun,
    GroupName,
    TelegramChatId,
    Attributes,
    OptedOut,
    OptedOutAt,
    Source,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ContactImports {
    Table,
    Id,
    OwnerId,
    Node,
    Filename,
    DefaultRegion,
    Status,
    TotalRows,
    Imported,
    Failed,
    Error,
    CreatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum ContactImportErrors {
    Table,
    ImportId,
    RowNumber,
    Phone,
    Code,
    Message,
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string_len(36)
        .not_null()
        .primary_key()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Contacts::Table)
                    .col(id(Contacts::Id))
                    .col(ColumnDef::new(Contacts::OwnerId).string_len(36).not_null())
                    .col(ColumnDef::new(Contacts::Phone).string_len(20).not_null())
                    .col(ColumnDef::new(Contacts::Name).string().null())
                    .col(ColumnDef::new(Contacts::Noun).string().null())
                    .col(ColumnDef::new(Contacts::GroupName).string().null())
                    .col(
                        ColumnDef::new(Contacts::TelegramChatId)
                            .string_len(32)
                            .null(),
                    )
                    .col(ColumnDef::new(Contacts::Attributes).text().null())
                    .col(
                        ColumnDef::new(Contacts::OptedOut)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ts_null(Contacts::OptedOutAt))
                    .col(ColumnDef::new(Contacts::Source).string_len(64).null())
                    .col(ts(Contacts::CreatedAt))
                    .col(ts(Contacts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_contacts_owner_phone")
                    .table(Contacts::Table)
                    .col(Contacts::OwnerId)
                    .col(Contacts::Phone)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_contacts_owner_group")
                    .table(Contacts::Table)
                    .col(Contacts::OwnerId)
                    .col(Contacts::GroupName)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ContactImports::Table)
                    .col(id(ContactImports::Id))
                    .col(
                        ColumnDef::new(ContactImports::OwnerId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ContactImports::Node).string().not_null())
                    .col(ColumnDef::new(ContactImports::Filename).string().not_null())
                    .col(
                        ColumnDef::new(ContactImports::DefaultRegion)
                            .string_len(2)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContactImports::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContactImports::TotalRows)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(ContactImports::Imported)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(ContactImports::Failed)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(ContactImports::Error).text().null())
                    .col(ts(ContactImports::CreatedAt))
                    .col(ts_null(ContactImports::FinishedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ContactImportErrors::Table)
                    .col(
                        ColumnDef::new(ContactImportErrors::ImportId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContactImportErrors::RowNumber)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ContactImportErrors::Phone).string().null())
                    .col(
                        ColumnDef::new(ContactImportErrors::Code)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContactImportErrors::Message)
                            .text()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ContactImportErrors::ImportId)
                            .col(ContactImportErrors::RowNumber),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ContactImportErrors::Table.into_iden(),
            ContactImports::Table.into_iden(),
            Contacts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
