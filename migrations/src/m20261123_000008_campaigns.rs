//! Campaigns (template × audience over one channel account), the campaign's per-recipient
//! ledger as columns of `messages`, the 24 h WhatsApp window on contacts, and the dashboard
//! rollups (`daily_stats`, `monthly_stats`, `contact_stats`).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Campaigns {
    Table,
    Id,
    OwnerId,
    Name,
    ChannelId,
    TemplateId,
    Body,
    ProviderTemplate,
    MediaId,
    Audience,
    ScheduledAt,
    SendWindow,
    Status,
    StatusDetail,
    Total,
    Pending,
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
    Skipped,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    CampaignId,
    ContactId,
    ProviderTemplate,
    DeliveredAt,
    ReadAt,
    ProviderMessageId,
    Status,
}

#[derive(DeriveIden)]
enum Contacts {
    Table,
    LastInboundAt,
}

#[derive(DeriveIden)]
enum DailyStats {
    Table,
    OwnerId,
    Day,
    Sent,
    Errors,
}

#[derive(DeriveIden)]
enum MonthlyStats {
    Table,
    OwnerId,
    Month,
    Sent,
    Errors,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ContactStats {
    Table,
    ContactId,
    Month,
    OwnerId,
    Sent,
    Errors,
    UpdatedAt,
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

fn count(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

async fn add_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    col: ColumnDef,
) -> Result<(), DbErr> {
    // One column per statement: SQLite's ALTER TABLE takes one at a time.
    manager
        .alter_table(Table::alter().table(table).add_column(col).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Campaigns::Table)
                    .col(
                        ColumnDef::new(Campaigns::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Campaigns::OwnerId).string_len(36).not_null())
                    .col(ColumnDef::new(Campaigns::Name).string().not_null())
                    .col(
                        ColumnDef::new(Campaigns::ChannelId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Campaigns::TemplateId).string_len(36).null())
                    .col(ColumnDef::new(Campaigns::Body).text().not_null())
                    .col(ColumnDef::new(Campaigns::ProviderTemplate).text().null())
                    .col(ColumnDef::new(Campaigns::MediaId).string_len(36).null())
                    .col(ColumnDef::new(Campaigns::Audience).text().not_null())
                    .col(ts_null(Campaigns::ScheduledAt))
                    .col(ColumnDef::new(Campaigns::SendWindow).text().null())
                    .col(ColumnDef::new(Campaigns::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Campaigns::StatusDetail).text().null())
                    .col(count(Campaigns::Total))
                    .col(count(Campaigns::Pending))
                    .col(count(Campaigns::Queued))
                    .col(count(Campaigns::Sent))
                    .col(count(Campaigns::Delivered))
                    .col(count(Campaigns::Read))
                    .col(count(Campaigns::Failed))
                    .col(count(Campaigns::Skipped))
                    .col(ts(Campaigns::CreatedAt))
                    .col(ts(Campaigns::UpdatedAt))
                    .col(ts_null(Campaigns::StartedAt))
                    .col(ts_null(Campaigns::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_campaigns_owner")
                    .table(Campaigns::Table)
                    .col(Campaigns::OwnerId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_campaigns_status")
                    .table(Campaigns::Table)
                    .col(Campaigns::Status)
                    .to_owned(),
            )
            .await?;

        add_column(
            manager,
            Messages::Table,
            ColumnDef::new(Messages::CampaignId)
                .string_len(36)
                .null()
                .to_owned(),
        )
        .await?;
        add_column(
            manager,
            Messages::Table,
            ColumnDef::new(Messages::ContactId)
                .string_len(36)
                .null()
                .to_owned(),
        )
        .await?;
        add_column(
            manager,
            Messages::Table,
            ColumnDef::new(Messages::ProviderTemplate)
                .text()
                .null()
                .to_owned(),
        )
        .await?;
        add_column(manager, Messages::Table, ts_null(Messages::DeliveredAt)).await?;
        add_column(manager, Messages::Table, ts_null(Messages::ReadAt)).await?;
        // The ledger: one message per campaign and contact, ever (restarts and retries reuse it).
        manager
            .create_index(
                Index::create()
                    .name("ux_messages_campaign_contact")
                    .table(Messages::Table)
                    .col(Messages::CampaignId)
                    .col(Messages::ContactId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_messages_campaign_status")
                    .table(Messages::Table)
                    .col(Messages::CampaignId)
                    .col(Messages::Status)
                    .to_owned(),
            )
            .await?;
        // Status webhooks find their message by the provider's id.
        manager
            .create_index(
                Index::create()
                    .name("ix_messages_provider_id")
                    .table(Messages::Table)
                    .col(Messages::ProviderMessageId)
                    .to_owned(),
            )
            .await?;
        add_column(manager, Contacts::Table, ts_null(Contacts::LastInboundAt)).await?;

        manager
            .create_table(
                Table::create()
                    .table(DailyStats::Table)
                    .col(
                        ColumnDef::new(DailyStats::OwnerId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(DailyStats::Day).string_len(10).not_null())
                    .col(count(DailyStats::Sent))
                    .col(count(DailyStats::Errors))
                    .primary_key(
                        Index::create()
                            .col(DailyStats::OwnerId)
                            .col(DailyStats::Day),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MonthlyStats::Table)
                    .col(
                        ColumnDef::new(MonthlyStats::OwnerId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(MonthlyStats::Month).string_len(7).not_null())
                    .col(count(MonthlyStats::Sent))
                    .col(count(MonthlyStats::Errors))
                    .col(ts(MonthlyStats::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(MonthlyStats::OwnerId)
                            .col(MonthlyStats::Month),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ContactStats::Table)
                    .col(
                        ColumnDef::new(ContactStats::ContactId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ContactStats::Month).string_len(7).not_null())
                    .col(
                        ColumnDef::new(ContactStats::OwnerId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(count(ContactStats::Sent))
                    .col(count(ContactStats::Errors))
                    .col(ts(ContactStats::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ContactStats::ContactId)
                            .col(ContactStats::Month),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_contact_stats_owner_month")
                    .table(ContactStats::Table)
                    .col(ContactStats::OwnerId)
                    .col(ContactStats::Month)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ContactStats::Table.into_iden(),
            MonthlyStats::Table.into_iden(),
            DailyStats::Table.into_iden(),
            Campaigns::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        for index in [
            "ux_messages_campaign_contact",
            "ix_messages_campaign_status",
            "ix_messages_provider_id",
        ] {
            manager
                .drop_index(Index::drop().name(index).table(Messages::Table).to_owned())
                .await?;
        }
        for col in [
            Messages::CampaignId.into_iden(),
            Messages::ContactId.into_iden(),
            Messages::ProviderTemplate.into_iden(),
            Messages::DeliveredAt.into_iden(),
            Messages::ReadAt.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Contacts::Table)
                    .drop_column(Contacts::LastInboundAt)
                    .to_owned(),
            )
            .await
    }
}
