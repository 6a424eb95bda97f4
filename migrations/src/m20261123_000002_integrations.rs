//! Pingui-style integrations (a Telegram chat linked to a bot, with scoped tokens and a daily
//! quota), user plans, once-per-cluster scheduled runs and named leases.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Plan,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    IntegrationId,
}

#[derive(DeriveIden)]
enum Integrations {
    Table,
    Id,
    OwnerId,
    ChannelId,
    Name,
    ChatId,
    Status,
    StatusDetail,
    Scopes,
    DailyQuota,
    UsedToday,
    QuotaDay,
    LinkCodeHash,
    LinkExpiresAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IntegrationTokens {
    Table,
    Id,
    IntegrationId,
    Kind,
    Scopes,
    ExpiresAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ScheduledRuns {
    Table,
    Id,
    Job,
    Slot,
    Node,
    StartedAt,
    FinishedAt,
    Outcome,
    Detail,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    Name,
    Holder,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ChannelAccounts {
    Table,
    Id,
    UpdateOffset,
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

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(ColumnDef::new(Users::Plan).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(
                        ColumnDef::new(Messages::IntegrationId)
                            .string_len(36)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(ChannelAccounts::Table)
                    .add_column(
                        ColumnDef::new(ChannelAccounts::UpdateOffset)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Integrations::Table)
                    .col(
                        ColumnDef::new(Integrations::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Integrations::OwnerId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Integrations::ChannelId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Integrations::Name).string().not_null())
                    .col(ColumnDef::new(Integrations::ChatId).string_len(32).null())
                    .col(
                        ColumnDef::new(Integrations::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Integrations::StatusDetail).text().null())
                    .col(ColumnDef::new(Integrations::Scopes).string().not_null())
                    .col(
                        ColumnDef::new(Integrations::DailyQuota)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Integrations::UsedToday)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Integrations::QuotaDay).string_len(10).null())
                    .col(
                        ColumnDef::new(Integrations::LinkCodeHash)
                            .string_len(64)
                            .null()
                            .unique_key(),
                    )
                    .col(ts_null(Integrations::LinkExpiresAt))
                    .col(ts(Integrations::CreatedAt))
                    .col(ts(Integrations::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Integrations::Table, Integrations::ChannelId)
                            .to(ChannelAccounts::Table, ChannelAccounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_integrations_chat")
                    .table(Integrations::Table)
                    .col(Integrations::ChatId)
                    .col(Integrations::ChannelId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_integrations_owner")
                    .table(Integrations::Table)
                    .col(Integrations::OwnerId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IntegrationTokens::Table)
                    .col(
                        ColumnDef::new(IntegrationTokens::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IntegrationTokens::IntegrationId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IntegrationTokens::Kind)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IntegrationTokens::Scopes)
                            .string()
                            .not_null(),
                    )
                    .col(ts_null(IntegrationTokens::ExpiresAt))
                    .col(ts_null(IntegrationTokens::RevokedAt))
                    .col(ts(IntegrationTokens::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(IntegrationTokens::Table, IntegrationTokens::IntegrationId)
                            .to(Integrations::Table, Integrations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_integration_tokens_integration")
                    .table(IntegrationTokens::Table)
                    .col(IntegrationTokens::IntegrationId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ScheduledRuns::Table)
                    .col(
                        ColumnDef::new(ScheduledRuns::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ScheduledRuns::Job).string_len(64).not_null())
                    .col(
                        ColumnDef::new(ScheduledRuns::Slot)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ScheduledRuns::Node)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ts(ScheduledRuns::StartedAt))
                    .col(ts_null(ScheduledRuns::FinishedAt))
                    .col(ColumnDef::new(ScheduledRuns::Outcome).string_len(16).null())
                    .col(ColumnDef::new(ScheduledRuns::Detail).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_scheduled_runs_job_slot")
                    .table(ScheduledRuns::Table)
                    .col(ScheduledRuns::Job)
                    .col(ScheduledRuns::Slot)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Leases::Table)
                    .col(
                        ColumnDef::new(Leases::Name)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Leases::Holder).string_len(128).not_null())
                    .col(ts(Leases::ExpiresAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Leases::Table.into_iden(),
            ScheduledRuns::Table.into_iden(),
            IntegrationTokens::Table.into_iden(),
            Integrations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(ChannelAccounts::Table)
                    .drop_column(ChannelAccounts::UpdateOffset)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .drop_column(Messages::IntegrationId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::Plan)
                    .to_owned(),
            )
            .await
    }
}
