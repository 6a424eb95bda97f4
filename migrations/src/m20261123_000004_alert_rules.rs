//! Alert rules: events that match a rule (service, metadata values) are forwarded as alerts to
//! an integration or a chat, at most `max_per_minute` per rule.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AlertRules {
    Table,
    Id,
    OwnerId,
    Name,
    Service,
    Conditions,
    IntegrationId,
    ChannelId,
    ChatId,
    MaxPerMinute,
    Enabled,
    FiredCount,
    SuppressedCount,
    LastFiredAt,
    CreatedAt,
    UpdatedAt,
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AlertRules::Table)
                    .col(
                        ColumnDef::new(AlertRules::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AlertRules::OwnerId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AlertRules::Name).string().not_null())
                    .col(ColumnDef::new(AlertRules::Service).string_len(100).null())
                    .col(ColumnDef::new(AlertRules::Conditions).text().not_null())
                    .col(
                        ColumnDef::new(AlertRules::IntegrationId)
                            .string_len(36)
                            .null(),
                    )
                    .col(ColumnDef::new(AlertRules::ChannelId).string_len(36).null())
                    .col(ColumnDef::new(AlertRules::ChatId).string_len(32).null())
                    .col(
                        ColumnDef::new(AlertRules::MaxPerMinute)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AlertRules::Enabled).boolean().not_null())
                    .col(
                        ColumnDef::new(AlertRules::FiredCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(AlertRules::SuppressedCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(AlertRules::LastFiredAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ts(AlertRules::CreatedAt))
                    .col(ts(AlertRules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_alert_rules_owner")
                    .table(AlertRules::Table)
                    .col(AlertRules::OwnerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AlertRules::Table).to_owned())
            .await
    }
}
