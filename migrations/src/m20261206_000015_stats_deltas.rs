//! `stats_deltas`: what each recorded outcome adds to the dashboard rollups, written in the
//! outcome's own transaction (one insert, no shared row), and folded into `daily_stats`,
//! `monthly_stats` and `contact_stats` about once a second and before every read. Updating the
//! rollups in the outcome's transaction made every send of one owner wait for the previous one's
//! commit on the same `(owner, day)` row: about 160 deliveries a second on PostgreSQL.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StatsDeltas {
    Table,
    Id,
    OwnerId,
    ContactId,
    Day,
    Sent,
    Errors,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatsDeltas::Table)
                    .col(
                        ColumnDef::new(StatsDeltas::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(StatsDeltas::OwnerId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(StatsDeltas::ContactId).string_len(36).null())
                    .col(ColumnDef::new(StatsDeltas::Day).string_len(10).not_null())
                    .col(ColumnDef::new(StatsDeltas::Sent).big_integer().not_null())
                    .col(ColumnDef::new(StatsDeltas::Errors).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(StatsDeltas::Table).to_owned())
            .await
    }
}
