//! Users, API keys, channel accounts, media and the message ledger.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Subject,
    Name,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    OwnerId,
    Name,
    TokenHash,
    Prefix,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum ChannelAccounts {
    Table,
    Id,
    OwnerId,
    Kind,
    Name,
    Credentials,
    ExternalId,
    Username,
    Limits,
    Status,
    StatusDetail,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Media {
    Table,
    Id,
    OwnerId,
    StorageKey,
    ContentType,
    Filename,
    Size,
    Sha256,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    OwnerId,
    ChannelId,
    Recipient,
    Body,
    ParseMode,
    MediaId,
    IdempotencyKey,
    RequestHash,
    Status,
    Attempts,
    ProviderMessageId,
    LastErrorCode,
    LastError,
    NextAttemptAt,
    LockedUntil,
    LockedBy,
    EnqueuedAt,
    CreatedAt,
    UpdatedAt,
    SentAt,
}

#[derive(DeriveIden)]
enum MessageEvents {
    Table,
    Id,
    MessageId,
    At,
    Kind,
    Outcome,
    ErrorCode,
    Detail,
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string_len(36)
        .not_null()
        .primary_key()
        .to_owned()
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

fn fk(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(36).not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(ColumnDef::new(Users::Subject).string().null().unique_key())
                    .col(ColumnDef::new(Users::Name).string().not_null())
                    .col(ColumnDef::new(Users::Role).string_len(16).not_null())
                    .col(ts(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(id(ApiKeys::Id))
                    .col(fk(ApiKeys::OwnerId))
                    .col(ColumnDef::new(ApiKeys::Name).string().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::TokenHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::Prefix).string_len(16).not_null())
                    .col(ts(ApiKeys::CreatedAt))
                    .col(ts_null(ApiKeys::LastUsedAt))
                    .col(ts_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChannelAccounts::Table)
                    .col(id(ChannelAccounts::Id))
                    .col(fk(ChannelAccounts::OwnerId))
                    .col(
                        ColumnDef::new(ChannelAccounts::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ChannelAccounts::Name).string().not_null())
                    .col(
                        ColumnDef::new(ChannelAccounts::Credentials)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ChannelAccounts::ExternalId).string().null())
                    .col(ColumnDef::new(ChannelAccounts::Username).string().null())
                    .col(ColumnDef::new(ChannelAccounts::Limits).text().null())
                    .col(
                        ColumnDef::new(ChannelAccounts::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ChannelAccounts::StatusDetail).text().null())
                    .col(ts(ChannelAccounts::CreatedAt))
                    .col(ts(ChannelAccounts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ChannelAccounts::Table, ChannelAccounts::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Media::Table)
                    .col(id(Media::Id))
                    .col(fk(Media::OwnerId))
                    .col(ColumnDef::new(Media::StorageKey).string().not_null())
                    .col(ColumnDef::new(Media::ContentType).string().not_null())
                    .col(ColumnDef::new(Media::Filename).string().null())
                    .col(ColumnDef::new(Media::Size).big_integer().not_null())
                    .col(ColumnDef::new(Media::Sha256).string_len(64).not_null())
                    .col(ts(Media::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Media::Table, Media::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(id(Messages::Id))
                    .col(fk(Messages::OwnerId))
                    .col(fk(Messages::ChannelId))
                    .col(ColumnDef::new(Messages::Recipient).string().not_null())
                    .col(ColumnDef::new(Messages::Body).text().not_null())
                    .col(ColumnDef::new(Messages::ParseMode).string_len(16).null())
                    .col(ColumnDef::new(Messages::MediaId).string_len(36).null())
                    .col(ColumnDef::new(Messages::IdempotencyKey).string().null())
                    .col(ColumnDef::new(Messages::RequestHash).string_len(64).null())
                    .col(ColumnDef::new(Messages::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Messages::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Messages::ProviderMessageId).string().null())
                    .col(
                        ColumnDef::new(Messages::LastErrorCode)
                            .string_len(64)
                            .null(),
                    )
                    .col(ColumnDef::new(Messages::LastError).text().null())
                    .col(ts(Messages::NextAttemptAt))
                    .col(ts_null(Messages::LockedUntil))
                    .col(ColumnDef::new(Messages::LockedBy).string_len(64).null())
                    .col(ts_null(Messages::EnqueuedAt))
                    .col(ts(Messages::CreatedAt))
                    .col(ts(Messages::UpdatedAt))
                    .col(ts_null(Messages::SentAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_messages_owner_idempotency")
                    .table(Messages::Table)
                    .col(Messages::OwnerId)
                    .col(Messages::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_messages_status_next_attempt")
                    .table(Messages::Table)
                    .col(Messages::Status)
                    .col(Messages::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_messages_channel")
                    .table(Messages::Table)
                    .col(Messages::ChannelId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MessageEvents::Table)
                    .col(
                        ColumnDef::new(MessageEvents::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(fk(MessageEvents::MessageId))
                    .col(ts(MessageEvents::At))
                    .col(
                        ColumnDef::new(MessageEvents::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(MessageEvents::Outcome).string_len(32).null())
                    .col(
                        ColumnDef::new(MessageEvents::ErrorCode)
                            .string_len(64)
                            .null(),
                    )
                    .col(ColumnDef::new(MessageEvents::Detail).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(MessageEvents::Table, MessageEvents::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_message_events_message")
                    .table(MessageEvents::Table)
                    .col(MessageEvents::MessageId)
                    .col(MessageEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MessageEvents::Table.into_iden(),
            Messages::Table.into_iden(),
            Media::Table.into_iden(),
            ChannelAccounts::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
