//! Status-event subscriptions: an owner's delivery outcomes (sent, delivered, read, failed,
//! skipped) posted to one of their webhook channels, numbered per subscription.
//!
//! The events themselves are messages on that webhook channel (recipient = the subscription's
//! id), so they share the outbox's retries, pacing and recovery; the failed ones are the
//! subscription's dead letters.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    Id,
    OwnerId,
    ChannelId,
    Events,
    SourceChannelId,
    Sequence,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    ChannelId,
    Recipient,
    Status,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Subscriptions::Table)
                    .col(
                        ColumnDef::new(Subscriptions::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::OwnerId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::ChannelId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Subscriptions::Events).string().not_null())
                    .col(
                        ColumnDef::new(Subscriptions::SourceChannelId)
                            .string_len(36)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::Sequence)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_subscriptions_owner")
                    .table(Subscriptions::Table)
                    .col(Subscriptions::OwnerId)
                    .to_owned(),
            )
            .await?;
        // A subscription's dead letters: its channel's failed messages addressed to it.
        manager
            .create_index(
                Index::create()
                    .name("ix_messages_channel_recipient_status")
                    .table(Messages::Table)
                    .col(Messages::ChannelId)
                    .col(Messages::Recipient)
                    .col(Messages::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_messages_channel_recipient_status")
                    .table(Messages::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Subscriptions::Table).to_owned())
            .await
    }
}
